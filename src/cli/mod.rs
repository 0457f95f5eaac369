//! The command line, the top layer: it owns every clap type. `inject`,
//! `explain`, `check` and `test` run the engine offline on the same inputs
//! the webhook gathers (namespace facts and capabilities come from flags);
//! `status` and `rollout` read running pods with the user's kubeconfig;
//! `serve` hands the server its plain configuration; `crd`, `webhook-config`
//! and `certs` print what an install needs.

mod certs;
mod check;
mod day2;
mod explain;
mod golden;
mod inject;
pub mod manifest;
mod order;
mod policy;
mod rollout;
mod serve;
mod status;
mod webhook_config;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};

use crate::facts::{Capabilities, Namespace, NativeSidecars, OnMissing, Policy};
use crate::install::webhook::NamespaceScope;
use crate::template::{self, TemplateSet};

#[derive(Parser, Debug)]
#[command(
    name = "tandem",
    version,
    about = "Injects sidecar, ambassador, adapter and init containers into Kubernetes pods"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Inject templates into Pods and workload pod templates offline; prints the mutated manifests.
    Inject(inject::InjectArgs),
    /// Show every gate of the decision for each pod, its verdict and why.
    Explain(explain::ExplainArgs),
    /// Validate and lint templates; exit code 1 on errors.
    Check(check::CheckArgs),
    /// Run golden tests: DIR/NAME.input.yaml against DIR/NAME.expected.yaml.
    Test(golden::TestArgs),
    /// Serve the HTTPS admission webhook.
    Serve(serve::ServeArgs),
    /// Print the SidecarTemplate CustomResourceDefinition.
    Crd,
    /// Print the webhook configurations for a service or URL, after checking they are safe.
    WebhookConfig(webhook_config::WebhookConfigArgs),
    /// Compile templates to MutatingAdmissionPolicies (Kubernetes 1.36): injection without the webhook.
    Policy(policy::PolicyArgs),
    /// Count running pods per template and workload: current, outdated, or asked for and missing.
    Status(status::StatusArgs),
    /// Restart the workloads of pods with outdated templates, as `kubectl rollout restart` does.
    Rollout(rollout::RolloutArgs),
    /// Write a private CA and a serving certificate for the webhook Service (installs without cert-manager).
    Certs(certs::CertsArgs),
}

/// Where templates come from.
#[derive(Args, Debug, Clone)]
pub struct TemplateArgs {
    /// SidecarTemplate file or directory. Without it, the built-in example templates are used.
    #[arg(long, short = 'c', value_name = "PATH")]
    pub config: Option<PathBuf>,
}

impl TemplateArgs {
    pub fn load(&self) -> Result<Arc<TemplateSet>, CliError> {
        let loaded = match &self.config {
            Some(path) => template::load_path(path),
            None => {
                eprintln!("tandem: no --config given; using the built-in example templates");
                template::examples()
            }
        };
        let templates = loaded
            .map_err(|errs| CliError::Templates(errs.iter().map(ToString::to_string).collect()))?;
        TemplateSet::new(templates)
            .map(Arc::new)
            .map_err(|e| CliError::Templates(vec![e.to_string()]))
    }
}

/// Which namespaces the webhook, or the policies, reach.
#[derive(Args, Debug, Clone)]
pub struct ScopeArgs {
    /// Tandem's own namespace (never injected).
    #[arg(long, default_value = "tandem-system")]
    pub namespace: String,
    /// Which namespaces are in scope.
    #[arg(long, value_enum, default_value_t = Mode::OptIn)]
    pub mode: Mode,
    /// More namespaces to exclude (repeatable).
    #[arg(long = "exclude-namespace", value_name = "NAME")]
    pub exclude_namespaces: Vec<String>,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Namespaces labelled tandem.dev/injection=enabled.
    OptIn,
    /// Every namespace but the system ones, Tandem's own and those labelled disabled.
    ClusterWide,
}

impl ScopeArgs {
    pub fn scope(&self) -> NamespaceScope {
        match self.mode {
            Mode::OptIn => NamespaceScope::OptIn,
            Mode::ClusterWide => NamespaceScope::ClusterWide,
        }
    }
}

/// Namespace facts and cluster capabilities, given as flags offline.
#[derive(Args, Debug, Clone)]
pub struct ContextArgs {
    /// Namespace of the pods (default: the manifest's, else "default").
    #[arg(long, short = 'n')]
    pub namespace: Option<String>,
    /// Labels of the namespace, as k=v,k=v.
    #[arg(long, value_name = "K=V,...", default_value = "")]
    pub namespace_labels: String,
    /// Annotations of the namespace, as k=v,k=v (a value may hold commas: tandem.dev/inject=a,b).
    #[arg(long, value_name = "K=V,...", default_value = "")]
    pub namespace_annotations: String,
    /// Kubernetes version of the target cluster (native sidecars from 1.29).
    #[arg(long, value_name = "VERSION")]
    pub kubernetes_version: Option<String>,
    /// Native-sidecar support: auto (from the version), always or never.
    #[arg(long, default_value = "auto", value_name = "auto|always|never")]
    pub native_sidecars: NativeSidecars,
    /// A requested template that does not exist: warn, or deny the pod.
    #[arg(long, default_value = "warn", value_name = "warn|deny")]
    pub on_missing: OnMissing,
}

/// Parses `k=v,k=v`; a piece without `=` continues the previous value, so
/// `tandem.dev/inject=a,b` keeps its list.
pub fn parse_pairs(s: &str) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    let mut last: Option<String> = None;
    for piece in s.split(',').filter(|p| !p.trim().is_empty()) {
        match piece.split_once('=') {
            Some((k, v)) => {
                let k = k.trim().to_string();
                if k.is_empty() {
                    return Err(format!("{piece:?} has no key"));
                }
                out.insert(k.clone(), v.trim().to_string());
                last = Some(k);
            }
            None => match &last {
                Some(k) => {
                    let v = out.get_mut(k).expect("last key was inserted");
                    v.push(',');
                    v.push_str(piece.trim());
                }
                None => return Err(format!("{piece:?} is not k=v")),
            },
        }
    }
    Ok(out)
}

impl ContextArgs {
    pub fn namespace(&self, from_manifest: Option<&str>) -> Result<Namespace, CliError> {
        let name = self
            .namespace
            .clone()
            .or_else(|| from_manifest.map(str::to_string))
            .unwrap_or_else(|| "default".into());
        let labels = parse_pairs(&self.namespace_labels).map_err(CliError::Usage)?;
        let annotations = parse_pairs(&self.namespace_annotations).map_err(CliError::Usage)?;
        Ok(Namespace::new(&name, labels, annotations))
    }

    pub fn capabilities(&self) -> Capabilities {
        Capabilities::detect(self.kubernetes_version.as_deref(), self.native_sidecars)
    }

    pub fn policy(&self) -> Policy {
        Policy {
            on_missing: self.on_missing,
            ..Policy::default()
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Usage(String),
    #[error("{path}: {message}")]
    Input { path: String, message: String },
    #[error("templates could not be loaded:\n  {}", .0.join("\n  "))]
    Templates(Vec<String>),
    /// The command ran and found problems it already reported.
    #[error("{0}")]
    Failed(String),
}

/// Runs a command; returns the process exit code.
pub fn run(command: Command) -> i32 {
    let result = match command {
        Command::Inject(args) => inject::run(&args),
        Command::Explain(args) => explain::run(&args),
        Command::Check(args) => check::run(&args),
        Command::Test(args) => golden::run(&args),
        Command::Serve(args) => serve::run(args),
        Command::WebhookConfig(args) => webhook_config::run(&args),
        Command::Certs(args) => certs::run(&args),
        Command::Policy(args) => policy::run(&args),
        Command::Status(args) => status::run(&args),
        Command::Rollout(args) => rollout::run(&args),
        Command::Crd => crate::install::crd::yaml()
            .map(|crd| print!("{crd}"))
            .map_err(|e| CliError::Failed(e.to_string())),
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("tandem: {e}");
            1
        }
    }
}
