//! Why a pod or a template was left out: one closed set of reasons, so the
//! `tandem_skips_total{reason}` label, the audit summary, `tandem explain`
//! and `tandem inject`'s lines all say the same words, and a typo cannot
//! mint a new metric series.

use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SkipReason {
    /// A mirror pod of a static manifest: the kubelet owns it.
    MirrorPod,
    /// Tandem's own namespace, a system one, or one `--exclude-namespace` names.
    ExcludedNamespace,
    /// The namespace is labelled `tandem.dev/injection=disabled`.
    NamespaceDisabled,
    /// The pod's `tandem.dev/inject` opts out.
    OptedOut,
    /// No request, default list or selector gave a template.
    NothingSelected,
    /// Every template was already in the pod.
    AlreadyInjected,
    /// The template's only effect was a dry-run report.
    DryRun,
    /// A template that does not exist was requested.
    Missing,
    /// A name, volume, port, mount path or env var was taken.
    Conflict,
    /// The pod was denied, so nothing was applied.
    PodDenied,
    /// A native sidecar on a cluster without native sidecars.
    NativeUnsupported,
    /// A classic sidecar in a pod that does not restart (a Job) and no native
    /// sidecars to fall back on.
    JobNeedsNative,
    /// The pod carries an older version of the template.
    Outdated,
    /// What the template adds breaks the namespace's enforced Pod Security level.
    PodSecurity,
    /// A parameter's value (from the pod or its namespace) breaks its type or bounds.
    InvalidParameter,
}

impl SkipReason {
    /// Every reason, in the order the decision meets them.
    pub const ALL: [SkipReason; 15] = [
        SkipReason::MirrorPod,
        SkipReason::ExcludedNamespace,
        SkipReason::NamespaceDisabled,
        SkipReason::OptedOut,
        SkipReason::NothingSelected,
        SkipReason::AlreadyInjected,
        SkipReason::DryRun,
        SkipReason::Missing,
        SkipReason::Conflict,
        SkipReason::PodDenied,
        SkipReason::NativeUnsupported,
        SkipReason::JobNeedsNative,
        SkipReason::Outdated,
        SkipReason::PodSecurity,
        SkipReason::InvalidParameter,
    ];

    /// The label value and the word in summaries: `mirror-pod`.
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::MirrorPod => "mirror-pod",
            SkipReason::ExcludedNamespace => "excluded-namespace",
            SkipReason::NamespaceDisabled => "namespace-disabled",
            SkipReason::OptedOut => "opted-out",
            SkipReason::NothingSelected => "nothing-selected",
            SkipReason::AlreadyInjected => "already-injected",
            SkipReason::DryRun => "dry-run",
            SkipReason::Missing => "missing",
            SkipReason::Conflict => "conflict",
            SkipReason::PodDenied => "pod-denied",
            SkipReason::NativeUnsupported => "native-unsupported",
            SkipReason::JobNeedsNative => "job-needs-native",
            SkipReason::Outdated => "outdated",
            SkipReason::PodSecurity => "pod-security",
            SkipReason::InvalidParameter => "invalid-parameter",
        }
    }

    /// The reason in a sentence: `mirror pod`.
    pub fn prose(self) -> &'static str {
        match self {
            SkipReason::MirrorPod => "mirror pod",
            SkipReason::ExcludedNamespace => "excluded namespace",
            SkipReason::NamespaceDisabled => "namespace disabled",
            SkipReason::OptedOut => "opted out",
            SkipReason::NothingSelected => "nothing selected",
            SkipReason::AlreadyInjected => "already injected",
            SkipReason::DryRun => "dry run",
            SkipReason::Missing => "missing",
            SkipReason::Conflict => "conflict",
            SkipReason::PodDenied => "pod denied",
            SkipReason::NativeUnsupported => "native unsupported",
            SkipReason::JobNeedsNative => "job needs native",
            SkipReason::Outdated => "outdated",
            SkipReason::PodSecurity => "pod security",
            SkipReason::InvalidParameter => "invalid parameter",
        }
    }
}

impl std::fmt::Display for SkipReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_is_listed_once_and_serializes_as_its_label() {
        let mut seen = std::collections::BTreeSet::new();
        for r in SkipReason::ALL {
            assert!(seen.insert(r.as_str()), "{r:?} twice");
            assert_eq!(
                serde_json::to_value(r).unwrap(),
                serde_json::json!(r.as_str())
            );
            assert_eq!(r.prose(), r.as_str().replace('-', " "));
        }
    }
}
