//! What Tandem knows of the pod's namespace, and where that knowledge comes from.

use std::collections::BTreeMap;

use super::NAMESPACE_NAME_LABEL;

/// What Tandem knows of the pod's namespace.
#[derive(Clone, Debug, Default)]
pub struct Namespace {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

impl Namespace {
    /// A namespace with these labels and annotations. Its name label is set
    /// to its name, as the API server enforces, so selectors on names match.
    pub fn new(
        name: &str,
        mut labels: BTreeMap<String, String>,
        annotations: BTreeMap<String, String>,
    ) -> Namespace {
        labels.insert(NAMESPACE_NAME_LABEL.to_string(), name.to_string());
        Namespace {
            name: name.to_string(),
            labels,
            annotations,
        }
    }
}

/// Namespace facts for the pod's namespace; `None` when unknown.
pub trait NamespaceFacts: Send + Sync {
    fn get(&self, name: &str) -> Option<Namespace>;
}

/// Without a cluster: only the namespace's name is known.
pub struct NoNamespaces;

impl NamespaceFacts for NoNamespaces {
    fn get(&self, _name: &str) -> Option<Namespace> {
        None
    }
}
