//! What `tandem status` and `tandem rollout` share: the flags that say
//! which pods and which templates, and the counts per template and
//! workload that both read.

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::Args;
use serde::Serialize;

use super::{CliError, Mode};
use crate::cluster::{self, Inventory, Scope, Workload};
use crate::engine::{Drift, State};
use crate::facts::Policy;
use crate::template::{self, TemplateSet};

#[derive(Args, Debug, Clone)]
pub struct Day2Args {
    /// Namespace of the pods (default: the kubeconfig context's).
    #[arg(long, short = 'n', conflicts_with = "all_namespaces")]
    pub namespace: Option<String>,
    /// Pods of every namespace.
    #[arg(long, short = 'A')]
    pub all_namespaces: bool,
    /// Only pods matching this label selector (as kubectl's -l).
    #[arg(long, short = 'l', value_name = "SELECTOR")]
    pub selector: Option<String>,
    /// Only this template.
    #[arg(long, value_name = "NAME")]
    pub template: Option<String>,
    /// Templates from these files instead of the cluster's SidecarTemplates.
    #[arg(long, short = 'c', value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Tandem's namespace: its SidecarTemplates are cluster-wide, and its pods are never injected.
    #[arg(long, default_value = "tandem-system", value_name = "NAME")]
    pub tandem_namespace: String,
    /// Which namespaces Tandem serves: pods elsewhere are never counted as missing.
    #[arg(long, value_enum, default_value_t = Mode::OptIn)]
    pub mode: Mode,
    /// Kubeconfig (default: $KUBECONFIG, then ~/.kube/config).
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
}

/// Pods of one workload for one template, by state.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct Counts {
    pub current: usize,
    pub outdated: usize,
    pub missing: usize,
    /// Carry a parameter value the template now refuses: never restarted.
    pub refused: usize,
}

impl Counts {
    fn add(&mut self, state: State) {
        match state {
            State::Current => self.current += 1,
            State::Outdated => self.outdated += 1,
            State::Missing => self.missing += 1,
            State::Refused => self.refused += 1,
        }
    }

    fn sum(&mut self, other: &Counts) {
        self.current += other.current;
        self.outdated += other.outdated;
        self.missing += other.missing;
        self.refused += other.refused;
    }
}

#[derive(Debug, Serialize)]
pub struct WorkloadCounts {
    #[serde(flatten)]
    pub workload: Workload,
    #[serde(flatten)]
    pub counts: Counts,
}

#[derive(Debug, Serialize)]
pub struct TemplateCounts {
    pub name: String,
    /// The template's hash, which pods at its parameters' defaults carry
    /// (pods with their own values carry their own); absent for a template
    /// no longer in force.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
    #[serde(flatten)]
    pub total: Counts,
    pub workloads: Vec<WorkloadCounts>,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub templates: Vec<TemplateCounts>,
    /// Workloads with pods whose `tandem.dev/status` is not Tandem's record.
    pub unknown: Vec<WorkloadPods>,
    /// What could not be read, and how the counts are the poorer for it.
    pub notes: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct WorkloadPods {
    #[serde(flatten)]
    pub workload: Workload,
    pub pods: usize,
}

impl Report {
    pub fn outdated(&self) -> usize {
        self.templates.iter().map(|t| t.total.outdated).sum()
    }
}

/// The report of `inventory`, for `only` one template or all.
pub(super) fn report(inventory: Inventory, templates: &TemplateSet, only: Option<&str>) -> Report {
    let mut by_template: BTreeMap<String, BTreeMap<Workload, Counts>> = BTreeMap::new();
    let mut unknown: BTreeMap<Workload, usize> = BTreeMap::new();
    for pod in inventory.pods {
        match pod.drift {
            Drift::Unknown => *unknown.entry(pod.workload).or_default() += 1,
            Drift::Templates(list) => {
                for (name, state) in list {
                    if only.is_some_and(|o| o != name) {
                        continue;
                    }
                    by_template
                        .entry(name)
                        .or_default()
                        .entry(pod.workload.clone())
                        .or_default()
                        .add(state);
                }
            }
        }
    }
    // A template with no pods is still worth a line: "nothing carries it".
    for t in templates.all() {
        if only.is_none_or(|o| o == t.name) {
            by_template.entry(t.name.clone()).or_default();
        }
    }
    let templates = by_template
        .into_iter()
        .map(|(name, workloads)| {
            let mut total = Counts::default();
            let workloads = workloads
                .into_iter()
                .map(|(workload, counts)| {
                    total.sum(&counts);
                    WorkloadCounts { workload, counts }
                })
                .collect();
            // The cluster-wide template's hash; a namespace's own template
            // of the same name is counted by its own hash all the same.
            let hash = templates
                .all()
                .find(|t| t.name == name)
                .map(|t| t.hash.clone());
            TemplateCounts {
                name,
                hash,
                total,
                workloads,
            }
        })
        .collect();
    Report {
        templates,
        unknown: unknown
            .into_iter()
            .map(|(workload, pods)| WorkloadPods { workload, pods })
            .collect(),
        notes: inventory.notes,
    }
}

impl Day2Args {
    /// Connects with the user's kubeconfig, reads the templates and every
    /// pod in scope, and counts them.
    pub async fn report(&self) -> Result<(kube::Client, Report), CliError> {
        let client = cluster::user_client(self.kubeconfig.as_deref())
            .await
            .map_err(|e| CliError::Failed(e.to_string()))?;
        let (templates, mut notes) = match &self.config {
            Some(path) => {
                let loaded = template::load_path(path).map_err(|errs| {
                    CliError::Templates(errs.iter().map(ToString::to_string).collect())
                })?;
                let set = TemplateSet::new(loaded)
                    .map_err(|e| CliError::Templates(vec![e.to_string()]))?;
                (set, Vec::new())
            }
            None => cluster::cluster_templates(&client, &self.tandem_namespace)
                .await
                .map_err(|e| CliError::Failed(e.to_string()))?,
        };
        if let Some(name) = &self.template
            && !templates.all().any(|t| &t.name == name)
        {
            notes.push(format!(
                "template {name} is not in force; pods that carry it are all outdated"
            ));
        }
        let namespace = match (self.all_namespaces, &self.namespace) {
            (true, _) => None,
            (false, Some(ns)) => Some(ns.clone()),
            (false, None) => Some(client.default_namespace().to_string()),
        };
        let scope = Scope {
            namespace,
            selector: self.selector.clone(),
        };
        let mut policy = Policy::default();
        policy
            .excluded_namespaces
            .push(self.tandem_namespace.clone());
        let mut inventory = cluster::inventory(
            &client,
            &scope,
            &templates,
            &policy,
            self.mode == Mode::OptIn,
        )
        .await
        .map_err(|e| CliError::Failed(e.to_string()))?;
        notes.append(&mut inventory.notes);
        inventory.notes = notes;
        Ok((
            client,
            report(inventory, &templates, self.template.as_deref()),
        ))
    }
}

/// A runtime for a command that talks to the cluster.
pub(super) fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    crate::server::install_provider();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Failed(format!("cannot start the runtime: {e}")))
}
