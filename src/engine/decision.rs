//! What a decision says: its outcome, every gate passed or stopped at, each
//! template's verdict, the warnings, and the patch. Shared by every front-end:
//! `explain` prints it, the webhook encodes it, `inject` applies its patch.

use serde::Serialize;

use super::patch::Patch;
use super::placement::Placement;
use super::qos::QosClass;
use super::resources::Requests;
use super::select::Source;
use super::skip::SkipReason;
use super::status::Status;

/// Kubernetes drops warnings past this length; ours stay under it.
pub const MAX_WARNING_CHARS: usize = 119;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "result", rename_all = "camelCase")]
pub enum Outcome {
    Patched,
    Unchanged { reason: SkipReason },
    Denied { message: String },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum GateVerdict {
    Pass,
    Stop,
    Deny,
    Info,
}

/// One step of the decision, for `tandem explain`.
#[derive(Clone, Debug, Serialize)]
pub struct Gate {
    pub gate: String,
    pub verdict: GateVerdict,
    pub why: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "verdict", rename_all = "camelCase")]
pub enum Verdict {
    Injected { placement: Placement },
    DryRun { placement: Placement },
    AlreadyInjected,
    Skipped { reason: SkipReason },
    Missing,
    Denied,
}

impl Verdict {
    /// Why the template is not in the pod when it was wanted there: the
    /// reason of a skip, `missing` for a template that does not exist. The
    /// decision's outcome and the skip metrics both read it.
    pub fn skip_reason(&self) -> Option<SkipReason> {
        match self {
            Verdict::Skipped { reason } => Some(*reason),
            Verdict::Missing => Some(SkipReason::Missing),
            _ => None,
        }
    }

    /// The group and detail of this verdict in [`Decision::summary`].
    fn summary_part(&self) -> (&'static str, &'static str) {
        match self {
            Verdict::Injected { placement } => ("injected", placement.as_str()),
            Verdict::DryRun { placement } => ("dryRun", placement.as_str()),
            Verdict::AlreadyInjected => ("present", "unchanged"),
            Verdict::Skipped { reason } => ("skipped", reason.as_str()),
            Verdict::Missing => ("missing", "not found"),
            Verdict::Denied => ("denied", "conflict"),
        }
    }

    fn gate(&self) -> GateVerdict {
        match self {
            Verdict::Injected { .. } | Verdict::AlreadyInjected => GateVerdict::Pass,
            Verdict::Denied => GateVerdict::Deny,
            Verdict::DryRun { .. } => GateVerdict::Info,
            Verdict::Skipped { .. } | Verdict::Missing => GateVerdict::Stop,
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct TemplateVerdict {
    pub name: String,
    pub source: Source,
    #[serde(flatten)]
    pub verdict: Verdict,
    pub why: String,
}

#[derive(Clone, Copy, Debug, Serialize)]
pub struct ResourceChange {
    pub before: Requests,
    pub after: Requests,
    /// The pod's QoS class before and after, as the kubelet computes it.
    pub qos_before: QosClass,
    pub qos_after: QosClass,
}

#[derive(Clone, Debug, Serialize)]
pub struct Decision {
    pub pod: String,
    pub outcome: Outcome,
    /// Every gate in order, with why: filled by [`explain`](super::explain)
    /// only, empty from [`decide`](super::decide).
    pub gates: Vec<Gate>,
    pub templates: Vec<TemplateVerdict>,
    pub warnings: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceChange>,
    #[serde(skip)]
    pub patch: Patch,
    /// Whether gates are recorded. The webhook never shows them, and their
    /// texts were a sixth of what a small pod's decision cost.
    #[serde(skip)]
    explaining: bool,
}

/// Why a decision ended at a gate before any template was considered.
pub(super) struct Stop {
    pub gate: &'static str,
    pub reason: SkipReason,
    pub why: String,
}

impl Decision {
    pub(super) fn new(pod: String, explaining: bool) -> Decision {
        Decision {
            pod,
            outcome: Outcome::Unchanged {
                reason: SkipReason::NothingSelected,
            },
            gates: Vec::new(),
            templates: Vec::new(),
            warnings: Vec::new(),
            status: None,
            resources: None,
            patch: Patch::default(),
            explaining,
        }
    }

    /// Records a gate when explaining; `why` is built only then.
    pub(super) fn gate(
        &mut self,
        gate: impl Into<String>,
        verdict: GateVerdict,
        why: impl FnOnce() -> String,
    ) {
        if self.explaining {
            self.gates.push(Gate {
                gate: gate.into(),
                verdict,
                why: why(),
            });
        }
    }

    pub(super) fn warn(&mut self, text: impl AsRef<str>) {
        self.warnings.push(short_warning(text.as_ref()));
    }

    pub(super) fn stop(mut self, stop: Stop) -> Decision {
        self.gate(stop.gate, GateVerdict::Stop, || stop.why);
        self.outcome = Outcome::Unchanged {
            reason: stop.reason,
        };
        self
    }

    /// Records a template's verdict, as a gate and in the template list.
    pub(super) fn judge(&mut self, name: String, source: Source, verdict: Verdict, why: String) {
        if self.explaining {
            self.gates.push(Gate {
                gate: format!("template {name}"),
                verdict: verdict.gate(),
                why: why.clone(),
            });
        }
        self.templates.push(TemplateVerdict {
            name,
            source,
            verdict,
            why,
        });
    }

    /// Denies the pod. Nothing is patched into a denied pod, so nothing that
    /// was going to be injected is.
    pub(super) fn deny(mut self, denials: &[String]) -> Decision {
        for t in &mut self.templates {
            if let Verdict::Injected { .. } = t.verdict {
                t.verdict = Verdict::Skipped {
                    reason: SkipReason::PodDenied,
                };
                t.why.push_str("; not applied: the pod is denied");
            }
        }
        self.outcome = Outcome::Denied {
            message: denials.join("; "),
        };
        self
    }

    /// The outcome once the patch is built: patched, or why not.
    pub(super) fn settle(&mut self) {
        self.outcome = if !self.patch.is_empty() {
            Outcome::Patched
        } else if self
            .templates
            .iter()
            .all(|t| t.verdict == Verdict::AlreadyInjected)
        {
            Outcome::Unchanged {
                reason: SkipReason::AlreadyInjected,
            }
        } else {
            let reason = self
                .templates
                .iter()
                .find_map(|t| match t.verdict {
                    Verdict::DryRun { .. } => Some(SkipReason::DryRun),
                    ref v => v.skip_reason(),
                })
                .unwrap_or(SkipReason::AlreadyInjected);
            Outcome::Unchanged { reason }
        };
    }

    /// One line for audit annotations and logs, e.g.
    /// `patched injected=log-shipper(native) skipped=db-ambassador(conflict)`:
    /// templates grouped by verdict, verdicts in alphabetical order.
    pub fn summary(&self) -> String {
        let mut out = String::with_capacity(64);
        match &self.outcome {
            Outcome::Patched => out.push_str("patched"),
            Outcome::Unchanged { reason } => {
                out.push_str("unchanged(");
                out.push_str(reason.as_str());
                out.push(')');
            }
            Outcome::Denied { .. } => out.push_str("denied"),
        }
        let mut parts: Vec<_> = self
            .templates
            .iter()
            .map(|t| (t.verdict.summary_part(), t.name.as_str()))
            .collect();
        // Stable: templates keep their order within a group.
        parts.sort_by_key(|((group, _), _)| *group);
        let mut current = "";
        for ((group, detail), name) in parts {
            if group == current {
                out.push(',');
            } else {
                out.push(' ');
                out.push_str(group);
                out.push('=');
                current = group;
            }
            out.push_str(name);
            out.push('(');
            out.push_str(detail);
            out.push(')');
        }
        out
    }

    /// Templates that were injected by this decision.
    pub fn injected(&self) -> impl Iterator<Item = &str> {
        self.templates
            .iter()
            .filter(|t| matches!(t.verdict, Verdict::Injected { .. }))
            .map(|t| t.name.as_str())
    }

    /// The templates left out of the pod that were wanted in it, with why.
    pub fn skipped(&self) -> impl Iterator<Item = &TemplateVerdict> {
        self.templates
            .iter()
            .filter(|t| t.verdict.skip_reason().is_some())
    }
}

/// Shortens a warning to what the API server passes on intact.
fn short_warning(text: &str) -> String {
    let full = format!("tandem: {text}");
    if full.chars().count() <= MAX_WARNING_CHARS {
        return full;
    }
    let mut out: String = full.chars().take(MAX_WARNING_CHARS - 3).collect();
    out.push_str("...");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_groups_templates_by_verdict_in_alphabetical_order() {
        let mut d = Decision::new("web".into(), false);
        let native = Placement::Native;
        for (name, verdict) in [
            (
                "c",
                Verdict::Skipped {
                    reason: SkipReason::Conflict,
                },
            ),
            ("a", Verdict::Injected { placement: native }),
            ("m", Verdict::Missing),
            (
                "b",
                Verdict::Injected {
                    placement: Placement::Classic,
                },
            ),
            ("p", Verdict::AlreadyInjected),
            ("r", Verdict::DryRun { placement: native }),
        ] {
            d.judge(name.into(), Source::PodAnnotation, verdict, String::new());
        }
        d.outcome = Outcome::Patched;
        assert_eq!(
            d.summary(),
            "patched dryRun=r(native) injected=a(native),b(classic) missing=m(not found) \
             present=p(unchanged) skipped=c(conflict)"
        );
        d.outcome = Outcome::Unchanged {
            reason: SkipReason::DryRun,
        };
        d.templates.truncate(1);
        assert_eq!(d.summary(), "unchanged(dry-run) skipped=c(conflict)");
        assert!(d.gates.is_empty(), "gates recorded while not explaining");
    }
}
