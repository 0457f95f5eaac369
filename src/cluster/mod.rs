//! The cluster side: the CRD and webhook configurations Tandem ships.

pub mod crd;
pub mod events;
pub mod namespaces;
pub mod templates;
pub mod watch;
pub mod webhook;

/// Every API call Tandem makes, as (API group, resource, verbs): the shipped
/// ClusterRole grants exactly these (a test holds `deploy/base/rbac.yaml` to it).
pub const RBAC: &[(&str, &str, &[&str])] = &[
    // watch caches (reflectors list, then watch)
    ("tandem.dev", "sidecartemplates", &["list", "watch"]),
    // valid/invalid verdicts written back to each object
    ("tandem.dev", "sidecartemplates/status", &["patch"]),
    // labels and annotations, metadata only
    ("", "namespaces", &["list", "watch"]),
    // skipped and denied injections; repeats are patched into one Event
    ("events.k8s.io", "events", &["create", "patch"]),
];
