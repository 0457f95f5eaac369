//! The cluster side of `tandem serve`: a client, watch caches of
//! SidecarTemplates and Namespaces, the counts of injected pods, the API
//! server's version, and the publisher of Events; and what `tandem status`
//! and `tandem rollout` read and restart with the user's credentials. The watches feed a [`Sink`] (the server's state
//! implements it), so this layer never imports the server; Events arrive
//! ready-made from the admission layer and are only published here.

mod events;
mod inventory;
mod namespaces;
mod pods;
mod problem;
mod rollout;
mod sink;
mod templates;
mod watch;

pub use inventory::{
    Inventory, InventoryError, PodRecord, Scope, Workload, cluster_templates, inventory,
    user_client,
};
pub use namespaces::NamespaceCache;
pub use pods::{PodCounts, RECOUNT};
pub use problem::WatchProblem;
pub use rollout::{
    Progress, RESTARTED_AT_ANNOTATION, RolloutError, not_restartable, progress, restart,
};
pub use sink::Sink;
pub use templates::{StatusUpdate, merge};
pub use watch::{Cluster, ClusterError, in_cluster};

/// Every API call Tandem makes, as (API group, resource, verbs): the shipped
/// ClusterRole grants exactly these (a test holds `deploy/base/rbac.yaml` to it).
pub const RBAC: &[(&str, &str, &[&str])] = &[
    // watch caches (reflectors list, then watch)
    ("tandem.dev", "sidecartemplates", &["list", "watch"]),
    // valid/invalid verdicts written back to each object
    ("tandem.dev", "sidecartemplates/status", &["patch"]),
    // labels and annotations, metadata only
    ("", "namespaces", &["list", "watch"]),
    // injected pods (label-selected, metadata only), counted per template
    // into each SidecarTemplate's status and tandem_injected_pods
    ("", "pods", &["list", "watch"]),
    // skipped and denied injections; repeats are patched into one Event
    ("events.k8s.io", "events", &["create", "patch"]),
    // an Event goes only on the pod's controller as it exists (read back,
    // metadata only), and on the Deployment or CronJob above a ReplicaSet or Job
    ("apps", "replicasets", &["get"]),
    ("apps", "statefulsets", &["get"]),
    ("apps", "daemonsets", &["get"]),
    ("batch", "jobs", &["get"]),
    ("", "replicationcontrollers", &["get"]),
];
