//! What `tandem status` and `tandem rollout` read with the user's own
//! credentials: the templates in force, the namespaces and the pods
//! (metadata only, a page at a time), and the ReplicaSets and Jobs that
//! lead a pod to the workload a user restarts. One list per resource and
//! no per-pod request, so a cluster of 10,000 pods costs a few dozen calls.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Namespace as NamespaceObject, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{ApiResource, DynamicObject, ListParams};
use kube::core::PartialObjectMeta;
use kube::{Api, Client, Config, Resource};
use serde::Serialize;

use super::ClusterError;
use crate::engine::{self, Drift};
use crate::facts::{INJECTION_LABEL, Namespace, Policy, UNFINISHED_PODS};
use crate::template::{SidecarTemplate, TemplateSet};

/// Items per list request: the API server's own default page for `kubectl`.
const PAGE: u32 = 500;

#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    #[error("listing {what}: {source}")]
    List {
        what: &'static str,
        #[source]
        source: kube::Error,
    },
}

/// A client with the user's kubeconfig: `path`, else `$KUBECONFIG` or
/// `~/.kube/config`, else the pod's service account.
pub async fn user_client(path: Option<&Path>) -> Result<Client, ClusterError> {
    let config = match path {
        Some(path) => super::watch::kubeconfig(path).await?,
        None => Config::infer()
            .await
            .map_err(|e| ClusterError::Infer(e.to_string()))?,
    };
    Ok(Client::try_from(config)?)
}

/// Where to look: one namespace or all, and the user's label selector.
#[derive(Clone, Debug, Default)]
pub struct Scope {
    pub namespace: Option<String>,
    pub selector: Option<String>,
}

/// The workload a user restarts to roll a pod forward: a ReplicaSet's
/// Deployment, a Job's CronJob, else the pod's controller, else the pod.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Workload {
    pub namespace: String,
    pub kind: String,
    pub name: String,
}

impl std::fmt::Display for Workload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}/{}", self.namespace, self.kind, self.name)
    }
}

impl Workload {
    /// A pod no controller owns.
    pub fn is_bare_pod(&self) -> bool {
        self.kind == "Pod"
    }
}

/// One pod, where it stands, and its workload.
#[derive(Clone, Debug)]
pub struct PodRecord {
    pub name: String,
    pub workload: Workload,
    pub drift: Drift,
}

/// The pods in scope, and what could not be read (the report says so rather
/// than failing: a user without rights on ReplicaSets still gets counts).
#[derive(Debug, Default)]
pub struct Inventory {
    pub pods: Vec<PodRecord>,
    pub notes: Vec<String>,
}

/// Hands every item of a list to `each`, a page at a time: only one page
/// of whole objects is ever held.
async fn for_each<K>(
    api: &Api<K>,
    selector: Option<&str>,
    fields: Option<&str>,
    what: &'static str,
    mut each: impl FnMut(PartialObjectMeta<K>),
) -> Result<(), InventoryError>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let mut token: Option<String> = None;
    loop {
        let mut params = ListParams::default().limit(PAGE);
        if let Some(s) = selector {
            params = params.labels(s);
        }
        if let Some(f) = fields {
            params = params.fields(f);
        }
        if let Some(t) = &token {
            params = params.continue_token(t);
        }
        let page = api
            .list_metadata(&params)
            .await
            .map_err(|source| InventoryError::List { what, source })?;
        page.items.into_iter().for_each(&mut each);
        match page.metadata.continue_.filter(|t| !t.is_empty()) {
            Some(t) => token = Some(t),
            None => return Ok(()),
        }
    }
}

/// Every item of a list.
async fn list_all<K>(
    api: &Api<K>,
    selector: Option<&str>,
    what: &'static str,
) -> Result<Vec<PartialObjectMeta<K>>, InventoryError>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let mut items = Vec::new();
    for_each(api, selector, None, what, |item| items.push(item)).await?;
    Ok(items)
}

fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    <K as Resource>::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// The templates in force in the cluster: every SidecarTemplate object
/// Tandem would accept, those in `own_namespace` cluster-wide.
pub async fn cluster_templates(
    client: &Client,
    own_namespace: &str,
) -> Result<(TemplateSet, Vec<String>), InventoryError> {
    let resource = ApiResource::erase::<SidecarTemplate>(&());
    let api = Api::<DynamicObject>::all_with(client.clone(), &resource);
    let list = api
        .list(&ListParams::default())
        .await
        .map_err(|source| InventoryError::List {
            what: "sidecartemplates.tandem.dev",
            source,
        })?;
    let objects: Vec<_> = list.items.into_iter().map(std::sync::Arc::new).collect();
    let (set, updates) = super::merge(&[], &objects, own_namespace);
    let notes = updates
        .into_iter()
        .filter_map(|u| {
            let message = u.status.message?;
            Some(format!(
                "SidecarTemplate {}/{} is not in force: {message}",
                u.namespace, u.name
            ))
        })
        .collect();
    Ok((set, notes))
}

/// The controller among an object's owners.
fn controller(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .as_deref()
        .unwrap_or_default()
        .iter()
        .find(|o| o.controller == Some(true))
}

/// `(namespace, name)` of each object to its controller's kind and name.
type Owners = HashMap<(String, String), (String, String)>;

async fn owners<K>(
    client: &Client,
    scope: &Scope,
    what: &'static str,
    notes: &mut Vec<String>,
) -> Owners
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    <K as Resource>::DynamicType: Default,
{
    let mut owners = Owners::new();
    let listed = for_each(
        &api::<K>(client, scope.namespace.as_deref()),
        None,
        None,
        what,
        |o| {
            let meta = o.metadata;
            if let (Some(owner), Some(namespace), Some(name)) =
                (controller(&meta), meta.namespace.clone(), meta.name.clone())
            {
                owners.insert((namespace, name), (owner.kind.clone(), owner.name.clone()));
            }
        },
    )
    .await;
    if let Err(e) = listed {
        notes.push(format!(
            "{e}; pods are grouped by their {what} instead of what owns it"
        ));
    }
    owners
}

/// The namespaces' labels and annotations, for namespace default lists and
/// selectors. Unreadable namespaces leave only their names known.
async fn namespaces(
    client: &Client,
    scope: &Scope,
    notes: &mut Vec<String>,
) -> HashMap<String, Namespace> {
    let api = Api::<NamespaceObject>::all(client.clone());
    let found = match &scope.namespace {
        Some(ns) => api
            .get_metadata(ns)
            .await
            .map(|m| vec![m])
            .map_err(|source| InventoryError::List {
                what: "namespaces",
                source,
            }),
        None => list_all(&api, None, "namespaces").await,
    };
    match found {
        Ok(items) => items
            .into_iter()
            .filter_map(|m| {
                let name = m.metadata.name?;
                let labels = m.metadata.labels.unwrap_or_default().into_iter().collect();
                let annotations = m
                    .metadata
                    .annotations
                    .unwrap_or_default()
                    .into_iter()
                    .collect();
                Some((name.clone(), Namespace::new(&name, labels, annotations)))
            })
            .collect(),
        Err(e) => {
            notes.push(format!(
                "{e}; namespace default lists and selectors are not known, so pods they would have injected are not counted as missing"
            ));
            HashMap::new()
        }
    }
}

/// Every pod in `scope` with its workload and where it stands for each
/// template. With `opt_in`, a pod in a namespace not labelled
/// `tandem.dev/injection=enabled` is never counted as missing: Tandem is
/// not asked about it.
pub async fn inventory(
    client: &Client,
    scope: &Scope,
    templates: &TemplateSet,
    policy: &Policy,
    opt_in: bool,
) -> Result<Inventory, InventoryError> {
    let mut notes = Vec::new();
    let namespaces = namespaces(client, scope, &mut notes).await;
    // Each pod is judged as its page arrives and kept as a few strings.
    let mut pods: Vec<(PodRecord, Option<(String, String)>)> = Vec::new();
    for_each(
        &api::<Pod>(client, scope.namespace.as_deref()),
        scope.selector.as_deref(),
        // A finished pod (an evicted one, a Job's) is never restarted into
        // anything: counting it would restart its workload on every run.
        Some(UNFINISHED_PODS),
        "pods",
        |pod| {
            let meta = pod.metadata;
            let (Some(namespace), Some(name)) = (meta.namespace.clone(), meta.name.clone()) else {
                return;
            };
            let ns = namespaces
                .get(&namespace)
                .cloned()
                .unwrap_or_else(|| Namespace::new(&namespace, BTreeMap::new(), BTreeMap::new()));
            let in_scope =
                !opt_in || ns.labels.get(INJECTION_LABEL).map(String::as_str) == Some("enabled");
            let owner = controller(&meta).map(|o| (o.kind.clone(), o.name.clone()));
            let metadata = serde_json::json!({
                "name": name,
                "labels": meta.labels,
                "annotations": meta.annotations,
            });
            let drift = match engine::drift(&metadata, &ns, templates, policy) {
                Drift::Templates(t) if !in_scope => Drift::Templates(
                    t.into_iter()
                        .filter(|(_, s)| *s != engine::State::Missing)
                        .collect(),
                ),
                d => d,
            };
            let workload = Workload {
                namespace,
                kind: "Pod".into(),
                name: name.clone(),
            };
            pods.push((
                PodRecord {
                    name,
                    workload,
                    drift,
                },
                owner,
            ));
        },
    )
    .await?;
    let owned_by = |kind: &str| {
        pods.iter()
            .any(|(_, o)| o.as_ref().is_some_and(|(k, _)| k == kind))
    };
    let replica_sets = if owned_by("ReplicaSet") {
        owners::<ReplicaSet>(client, scope, "replicasets.apps", &mut notes).await
    } else {
        Owners::new()
    };
    let jobs = if owned_by("Job") {
        owners::<Job>(client, scope, "jobs.batch", &mut notes).await
    } else {
        Owners::new()
    };
    let records = pods
        .into_iter()
        .map(|(mut record, owner)| {
            if let Some((kind, name)) = owner {
                record.workload = workload(
                    &record.workload.namespace,
                    &kind,
                    &name,
                    &replica_sets,
                    &jobs,
                );
            }
            record
        })
        .collect();
    Ok(Inventory {
        pods: records,
        notes,
    })
}

/// The workload above a pod's controller `kind`/`name`.
fn workload(
    namespace: &str,
    kind: &str,
    name: &str,
    replica_sets: &Owners,
    jobs: &Owners,
) -> Workload {
    let at = |kind: &str, name: &str| Workload {
        namespace: namespace.to_string(),
        kind: kind.to_string(),
        name: name.to_string(),
    };
    let above = match kind {
        "ReplicaSet" => replica_sets.get(&(namespace.to_string(), name.to_string())),
        "Job" => jobs.get(&(namespace.to_string(), name.to_string())),
        _ => None,
    };
    match above {
        Some((k, n)) if matches!(k.as_str(), "Deployment" | "CronJob") => at(k, n),
        _ => at(kind, name),
    }
}
