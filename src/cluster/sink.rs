//! Where the watches deliver what they learn.

use std::sync::Arc;

use kube::api::DynamicObject;

use super::StatusUpdate;
use super::pods::PodCounts;
use super::problem::WatchProblem;
use crate::facts::{Capabilities, Namespace};
use crate::template::TemplateSet;

/// What the cluster watches feed. Narrow on purpose: the server's state
/// implements it, and nothing else of the server reaches this layer.
pub trait Sink: Send + Sync + 'static {
    /// The SidecarTemplate objects now in the cluster; returns the status
    /// each object should be given where it changed.
    fn templates(&self, objects: Vec<Arc<DynamicObject>>) -> Vec<StatusUpdate>;
    /// What the API server's version says the cluster supports.
    fn capabilities(&self, capabilities: Capabilities);
    /// A watch failed and is being retried with backoff; the last known
    /// state stays in use.
    fn watch_failed(&self, resource: &'static str, problem: &WatchProblem);
    /// A watch that failed works again.
    fn watch_recovered(&self, resource: &'static str);
    /// Both caches hold a full list: decisions can rely on them.
    fn synced(&self);
    /// The templates in force, to count injected pods against; `None`
    /// until they are known (files loaded, cluster caches synced).
    fn templates_in_force(&self) -> Option<Arc<TemplateSet>>;
    /// What is known of a namespace (its parameter defaults), for the counts.
    fn namespace(&self, name: &str) -> Namespace;
    /// Injected pods by template and state; `None` while they are unknown
    /// (the pod watch fails).
    fn injected_pods(&self, counts: Option<&PodCounts>);
}
