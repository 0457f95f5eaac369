//! Annotation and label keys, the namespaces Tandem never touches, and what a
//! Kubernetes name may be. Written
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
/// Pod label, `"true"` on every pod that carries an injected template: a
/// label-selected, metadata-only watch of injected pods sees them and nothing else.
pub const INJECTED_LABEL: &str = "tandem.dev/injected";
/// Pods that still run or may yet: a finished pod is never restarted into
/// anything, so day-2 counts leave it out.
pub const UNFINISHED_PODS: &str = "status.phase!=Succeeded,status.phase!=Failed";
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

/// A DNS-1123 label: lower-case letters, digits and '-', starting and
/// ending alphanumeric, at most 63. What Kubernetes requires of container,
/// volume, Service and Namespace names.
pub fn is_dns_label(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_labels() {
        for ok in ["a", "log-shipper", "a1", &"x".repeat(63)] {
            assert!(is_dns_label(ok), "{ok}");
        }
        for bad in ["", "-a", "a-", "A", "a_b", "a.b", &"x".repeat(64)] {
            assert!(!is_dns_label(bad), "{bad}");
        }
    }
}
