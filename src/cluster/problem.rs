//! What a failing watch means for an operator: a missing CRD, a missing
//! RBAC grant, or something passing. Said once per retry, and the retries
//! back off from 1 s to a minute, so a cluster without the CRD gets a clear
//! line a minute, not a line a second.

use std::time::{Duration, Instant};

use kube::runtime::utils::Backoff;
use kube::runtime::watcher;

/// The resources Tandem watches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Watched {
    SidecarTemplates,
    Namespaces,
    /// Injected pods, for their counts only.
    Pods,
}

impl Watched {
    /// The resource as metrics and `/readyz` name it.
    pub fn resource(self) -> &'static str {
        match self {
            Watched::SidecarTemplates => "sidecartemplates",
            Watched::Namespaces => "namespaces",
            Watched::Pods => "pods",
        }
    }
}

/// Why a watch is not serving.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchProblem {
    /// For the metric: `not-found`, `forbidden` or `other`.
    pub reason: &'static str,
    /// For the log and `/readyz`: what is wrong and what to do.
    pub message: String,
}

impl WatchProblem {
    pub fn of(watched: Watched, error: &watcher::Error) -> WatchProblem {
        let (verb, client_error) = match error {
            watcher::Error::InitialListFailed(e) => ("list", Some(e)),
            watcher::Error::WatchStartFailed(e) | watcher::Error::WatchFailed(e) => {
                ("watch", Some(e))
            }
            _ => ("watch", None),
        };
        let code = match (client_error, error) {
            (Some(kube::Error::Api(status)), _) => Some(status.code),
            (_, watcher::Error::WatchError(status)) => Some(status.code),
            _ => None,
        };
        let resource = watched.resource();
        match (code, watched) {
            (Some(404), Watched::SidecarTemplates) => WatchProblem {
                reason: "not-found",
                message: "the SidecarTemplate CRD (sidecartemplates.tandem.dev) is not installed; \
                          install it with `tandem crd | kubectl apply -f -`"
                    .into(),
            },
            (Some(403), _) => WatchProblem {
                reason: "forbidden",
                message: format!(
                    "RBAC: Tandem's service account may not {verb} {resource} \
                     (grant it as deploy/base/rbac.yaml does): {error}"
                ),
            },
            _ => WatchProblem {
                reason: if code == Some(404) {
                    "not-found"
                } else {
                    "other"
                },
                message: format!("cannot {verb} {resource}: {error}"),
            },
        }
    }
}

/// Doubles from 1 s to 60 s between retries of a failing watch, and starts
/// over at 1 s once the watch has gone two minutes without failing.
///
/// kube's `StreamBackoff` resets its backoff on every `Ok` item, and a
/// watcher yields one (`Event::Init`) before each list it tries: a reset
/// that obeyed would retry a missing CRD every second forever. So `reset`
/// is ignored and time decides instead.
pub(super) struct CappedBackoff {
    next: Duration,
    last: Option<Instant>,
}

impl CappedBackoff {
    const FIRST: Duration = Duration::from_secs(1);
    const CAP: Duration = Duration::from_secs(60);
    const QUIET: Duration = Duration::from_secs(120);

    pub(super) fn new() -> CappedBackoff {
        CappedBackoff {
            next: Self::FIRST,
            last: None,
        }
    }
}

impl Iterator for CappedBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let now = Instant::now();
        if self
            .last
            .is_some_and(|last| now.duration_since(last) > Self::QUIET)
        {
            self.next = Self::FIRST;
        }
        self.last = Some(now);
        let delay = self.next;
        self.next = (delay * 2).min(Self::CAP);
        Some(delay)
    }
}

impl Backoff for CappedBackoff {
    fn reset(&mut self) {}
}

#[cfg(test)]
mod tests {
    use kube::core::Status;

    use super::*;

    fn api_error(code: u16) -> kube::Error {
        kube::Error::Api(Box::new(Status {
            code,
            message: "404 page not found".into(),
            reason: "Failed to parse error data".into(),
            ..Status::default()
        }))
    }

    #[test]
    fn a_missing_crd_says_how_to_install_it() {
        let p = WatchProblem::of(
            Watched::SidecarTemplates,
            &watcher::Error::InitialListFailed(api_error(404)),
        );
        assert_eq!(p.reason, "not-found");
        assert!(
            p.message.contains("sidecartemplates.tandem.dev"),
            "{}",
            p.message
        );
        assert!(
            p.message.contains("tandem crd | kubectl apply -f -"),
            "{}",
            p.message
        );
    }

    #[test]
    fn a_denial_names_the_verb_and_the_resource() {
        let p = WatchProblem::of(
            Watched::Namespaces,
            &watcher::Error::WatchStartFailed(api_error(403)),
        );
        assert_eq!(p.reason, "forbidden");
        assert!(
            p.message.contains("may not watch namespaces"),
            "{}",
            p.message
        );
        let p = WatchProblem::of(
            Watched::SidecarTemplates,
            &watcher::Error::InitialListFailed(api_error(403)),
        );
        assert!(
            p.message.contains("may not list sidecartemplates"),
            "{}",
            p.message
        );
    }

    #[test]
    fn the_backoff_doubles_to_a_minute_and_starts_over_after_a_quiet_spell() {
        let mut b = CappedBackoff::new();
        let secs: Vec<u64> = b.by_ref().take(8).map(|d| d.as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 32, 60, 60]);
        // The watcher's `Init` between retries must not start it over.
        b.reset();
        assert_eq!(b.next(), Some(Duration::from_secs(60)));
        b.last = Some(Instant::now() - Duration::from_secs(121));
        assert_eq!(b.next(), Some(Duration::from_secs(1)));
    }
}
