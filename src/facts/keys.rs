//! Annotation and label keys, and the namespaces Tandem never touches. Written
//! once here: the engine decides by them, the install manifests select by
//! them, and the cluster and CLI fill namespace facts with them.

/// Pod or namespace annotation: which templates, or `none`.
pub const INJECT_ANNOTATION: &str = "tandem.dev/inject";
/// `tandem.dev/inject` values, trimmed and lowercased, that opt out.
pub const INJECT_OPT_OUT: [&str; 3] = ["none", "false", "disabled"];
/// `tandem.dev/inject` values, trimmed and lowercased, that ask for whatever
/// the namespace default and the selectors give; any other value is a list
/// of template names.
pub const INJECT_DEFAULTS: [&str; 3] = ["", "true", "enabled"];
/// Pod annotation: what Tandem injected (templates with hashes, names).
pub const STATUS_ANNOTATION: &str = "tandem.dev/status";
/// Namespace label: `enabled` (opt-in webhook scope) or `disabled`.
pub const INJECTION_LABEL: &str = "tandem.dev/injection";
/// Set by the kubelet on mirror pods of static manifests.
pub const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";
pub const DEFAULT_CONTAINER_ANNOTATION: &str = "kubectl.kubernetes.io/default-container";
pub const SAFE_TO_EVICT_ANNOTATION: &str =
    "cluster-autoscaler.kubernetes.io/safe-to-evict-local-volumes";
/// Set by the API server on every namespace (1.21+); selectors match names by it.
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// Never injected, and never sent to the webhook: their pods run the control
/// plane, and a webhook that fails there can stop the cluster healing itself.
pub const SYSTEM_NAMESPACES: [&str; 3] = ["kube-system", "kube-public", "kube-node-lease"];
