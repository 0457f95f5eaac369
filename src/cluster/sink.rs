//! Where the watches deliver what they learn.

use std::sync::Arc;

use kube::api::DynamicObject;

use super::StatusUpdate;
use super::problem::WatchProblem;
use crate::facts::Capabilities;

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
}
