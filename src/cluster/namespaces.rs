//! Namespace facts from a watch cache: labels and annotations of the pod's
//! namespace without an API call on the admission path.

use k8s_openapi::api::core::v1::Namespace as NamespaceObject;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{ObjectRef, Store};

use crate::facts::{Namespace, NamespaceFacts};

/// The reflector's store of namespace metadata.
pub struct NamespaceCache(pub Store<PartialObjectMeta<NamespaceObject>>);

impl NamespaceFacts for NamespaceCache {
    /// A namespace not in the cache yet (created within the watch's latency)
    /// gives `None`: the pod is decided on its own annotations and labels, as
    /// if the namespace had no Tandem annotations or labels. Waiting or asking
    /// the API server would put a network call on every pod creation.
    fn get(&self, name: &str) -> Option<Namespace> {
        let ns = self.0.get(&ObjectRef::new(name))?;
        Some(Namespace::new(
            name,
            ns.metadata.labels.clone().unwrap_or_default(),
            ns.metadata.annotations.clone().unwrap_or_default(),
        ))
    }
}
