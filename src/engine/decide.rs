//! `decide`: the gates every pod passes before any template is considered,
//! then one run per selected template, then the patch and its extras.

use std::sync::Arc;

use super::decision::{Decision, GateVerdict, ResourceChange, Stop};
use super::parameters;
use super::patch::{self, Plan};
use super::pod::{PodView, name_of};
use super::pod_security;
use super::qos::{QosClass, Tally};
use super::resources;
use super::run::Run;
use super::run::Security;
use super::select::{self, InjectRequest, Source, parse_request};
use super::skip::SkipReason;
use super::status::Status;
use super::{EngineError, Input};
use crate::facts::{
    DEFAULT_CONTAINER_ANNOTATION, INJECT_ANNOTATION, INJECTED_LABEL, INJECTION_LABEL, Level,
    MIRROR_ANNOTATION, PodSecurity, QosShare, SAFE_TO_EVICT_ANNOTATION, STATUS_ANNOTATION,
};
use crate::template::Template;

/// What the gates let through: the requests of the pod and of its
/// namespace, what the pod already carries, and the templates selected for it.
struct Admitted<'a> {
    pod_request: Option<InjectRequest>,
    ns_request: Option<InjectRequest>,
    raw_status: Option<&'a str>,
    existing: Option<Status>,
    selected: Vec<(String, Source)>,
}

/// Decides what to inject into one pod.
pub fn decide(input: &Input<'_>) -> Result<Decision, EngineError> {
    decide_as(input, false)
}

/// The same decision, with every gate it passed or stopped at and why, for
/// `tandem explain`.
pub fn explain(input: &Input<'_>) -> Result<Decision, EngineError> {
    decide_as(input, true)
}

fn decide_as(input: &Input<'_>, explaining: bool) -> Result<Decision, EngineError> {
    let pod = PodView::new(input.pod)?;
    let mut d = Decision::new(pod.display_name.clone(), explaining);
    let admitted = match admit(&pod, input, &mut d) {
        Ok(a) => a,
        Err(stop) => return Ok(d.stop(stop)),
    };
    let asked = admitted.asked_by_name();
    let Admitted {
        raw_status,
        existing,
        selected,
        ..
    } = admitted;
    let security = pod_security(input, &mut d);
    let mut run = Run::new(&pod, input, existing.unwrap_or_default(), security);

    // Rendered before the runs: a template with the pod's own parameter
    // values must outlive the run that places its objects.
    let prepared: Vec<Prepared> = selected
        .iter()
        .map(|(name, _)| prepare(name, &pod, input, &mut d))
        .collect();
    for ((name, source), prepared) in selected.into_iter().zip(&prepared) {
        let (verdict, why) = match prepared {
            Prepared::Invalid(t, why) => run.invalid(t, why.clone(), &mut d),
            Prepared::As(own) => run.template(&name, own.as_deref(), &mut d),
        };
        d.judge(name, source, verdict, why);
    }
    if !run.denials.is_empty() {
        return Ok(d.deny(&run.denials));
    }
    let (mut plan, status) = (run.plan, run.status);
    let injected_any = d.injected().next().is_some();
    if injected_any || asked {
        // Written even when nothing was injected, so the admission policy that
        // rejects unprocessed pods can tell "Tandem saw it" from "Tandem was down".
        let value = status.to_annotation()?;
        if raw_status != Some(value.as_str()) {
            plan.annotations
                .push((STATUS_ANNOTATION.to_string(), value));
        }
        d.status = Some(status);
    }
    // On what carries a template, however it came to (a reinvocation sees
    // the status the webhook wrote before). Patches only add: a value
    // someone else set is left, and said.
    let carries = d.status.as_ref().is_some_and(|s| !s.templates.is_empty());
    match pod.label(INJECTED_LABEL) {
        None if carries => plan
            .labels
            .push((INJECTED_LABEL.to_string(), "true".to_string())),
        Some(other) if carries && other != "true" => d.warn(format!(
            "label {INJECTED_LABEL}={other:?} is left as it is: the server's pod counts miss this pod"
        )),
        _ => {}
    }
    if injected_any {
        helpful_annotations(&pod, &mut plan);
        account_resources(&pod, &plan, &mut d);
    }
    d.patch = patch::build(&pod, plan);
    d.settle();
    Ok(d)
}

/// A selected template as this pod gets it.
enum Prepared<'t> {
    /// As in the set (`None`), or rendered with the pod's parameter values.
    As(Option<Arc<Template>>),
    /// A parameter value breaks its rule.
    Invalid(&'t Template, String),
}

/// Reads `name`'s parameters for this pod: warns of annotations naming
/// none, shows each value and its source, and renders the template anew
/// when a value is not the default.
fn prepare<'t>(
    name: &str,
    pod: &PodView<'_>,
    input: &'t Input<'_>,
    d: &mut Decision,
) -> Prepared<'t> {
    let Some(t) = input.templates.lookup(&input.namespace.name, name) else {
        return Prepared::As(None);
    };
    for warning in parameters::undeclared(t, pod, input.namespace) {
        d.warn(warning);
    }
    if t.spec.parameters.is_empty() {
        return Prepared::As(None);
    }
    match parameters::values(t, |k| pod.annotation(k), input.namespace) {
        Err(parameters::Invalid(why)) => {
            d.gate(format!("parameters of {name}"), GateVerdict::Stop, || {
                why.clone()
            });
            Prepared::Invalid(t, why)
        }
        Ok(values) => {
            d.gate(format!("parameters of {name}"), GateVerdict::Info, || {
                values.shown(t)
            });
            if !values.overridden {
                return Prepared::As(None);
            }
            // A value the target's core/v1 type cannot hold is refused like
            // one out of bounds; never the defaults in its place.
            match t.with_values(&values.values) {
                Ok(own) => Prepared::As(Some(own)),
                Err(e) => Prepared::Invalid(t, format!("the values do not fit their fields: {e}")),
            }
        }
    }
}

/// The gates before any template, in the order `explain` shows them.
fn admit<'a>(pod: &PodView<'a>, input: &Input<'_>, d: &mut Decision) -> Result<Admitted<'a>, Stop> {
    capabilities(input, d);
    not_a_mirror_pod(pod, d)?;
    namespace_may_be_injected(input, d)?;
    let pod_request = pod_does_not_opt_out(pod, d)?;
    let raw_status = pod.annotation(STATUS_ANNOTATION);
    let existing = earlier_injection(raw_status, d);
    let ns_request = input
        .namespace
        .annotations
        .get(INJECT_ANNOTATION)
        .map(|v| parse_request(v));
    let mut admitted = Admitted {
        pod_request,
        ns_request,
        raw_status,
        existing,
        selected: Vec::new(),
    };
    admitted.selected = selection(pod, &admitted, input, d)?;
    Ok(admitted)
}

impl Admitted<'_> {
    /// Whether the pod asked for injection, itself or through its namespace's
    /// default list: what the companion ValidatingAdmissionPolicy checks for,
    /// so such a pod always leaves with `tandem.dev/status`.
    fn asked_by_name(&self) -> bool {
        self.pod_request
            .as_ref()
            .is_some_and(InjectRequest::is_explicit)
            || matches!(self.ns_request, Some(InjectRequest::Names(_)))
    }
}

fn capabilities(input: &Input<'_>, d: &mut Decision) {
    let caps = input.capabilities;
    let native = if caps.native_sidecars {
        "available"
    } else {
        "unavailable"
    };
    d.gate("capabilities", GateVerdict::Info, || {
        format!("native sidecars {native} ({})", caps.source)
    });
}

fn not_a_mirror_pod(pod: &PodView<'_>, d: &mut Decision) -> Result<(), Stop> {
    if let Some(source) = pod.annotation(MIRROR_ANNOTATION) {
        return Err(Stop {
            gate: "mirror pod",
            reason: SkipReason::MirrorPod,
            why: format!("mirror pod of a static manifest ({source}); the kubelet owns it"),
        });
    }
    d.gate("mirror pod", GateVerdict::Pass, || {
        "not a mirror pod".into()
    });
    Ok(())
}

fn namespace_may_be_injected(input: &Input<'_>, d: &mut Decision) -> Result<(), Stop> {
    let ns = input.namespace;
    if input.policy.excluded_namespaces.contains(&ns.name) {
        return Err(Stop {
            gate: "namespace",
            reason: SkipReason::ExcludedNamespace,
            why: format!("namespace {} is excluded from injection", ns.name),
        });
    }
    if ns.labels.get(INJECTION_LABEL).map(String::as_str) == Some("disabled") {
        return Err(Stop {
            gate: "namespace",
            reason: SkipReason::NamespaceDisabled,
            why: format!(
                "namespace {} is labelled {INJECTION_LABEL}=disabled",
                ns.name
            ),
        });
    }
    d.gate("namespace", GateVerdict::Pass, || {
        format!("namespace {:?} may be injected", ns.name)
    });
    Ok(())
}

/// The pod's own `tandem.dev/inject`, parsed once for every later step.
fn pod_does_not_opt_out(
    pod: &PodView<'_>,
    d: &mut Decision,
) -> Result<Option<InjectRequest>, Stop> {
    let request = pod.annotation(INJECT_ANNOTATION).map(parse_request);
    if request == Some(InjectRequest::OptOut) {
        return Err(Stop {
            gate: "pod opt-out",
            reason: SkipReason::OptedOut,
            why: format!("pod annotation {INJECT_ANNOTATION} opts out"),
        });
    }
    d.gate("pod opt-out", GateVerdict::Pass, || {
        "pod does not opt out".into()
    });
    Ok(request)
}

/// What `tandem.dev/status` says was injected before. One Tandem did not
/// write is warned about and ignored: conflict checks still stop a double
/// injection.
fn earlier_injection(raw_status: Option<&str>, d: &mut Decision) -> Option<Status> {
    match raw_status.map(Status::parse) {
        None => {
            d.gate("status", GateVerdict::Pass, || {
                "no earlier injection recorded".into()
            });
            None
        }
        Some(Ok(s)) => {
            d.gate("status", GateVerdict::Info, || {
                let names: Vec<&str> = s.templates.iter().map(|t| t.name.as_str()).collect();
                format!("already carries {}", names.join(","))
            });
            Some(s)
        }
        Some(Err(e)) => {
            d.warn(e.to_string());
            d.gate("status", GateVerdict::Info, || {
                format!("{e}; treated as not injected")
            });
            None
        }
    }
}

/// The templates the pod gets. Nothing is a stop, unless the pod asked by
/// name: then its (empty) status is still written, so the admission policy
/// sees that Tandem answered.
fn selection(
    pod: &PodView<'_>,
    admitted: &Admitted<'_>,
    input: &Input<'_>,
    d: &mut Decision,
) -> Result<Vec<(String, Source)>, Stop> {
    let (selected, why) = select::select(
        pod,
        admitted.pod_request.as_ref(),
        admitted.ns_request.as_ref(),
        input.namespace,
        input.templates,
    );
    if !selected.is_empty() {
        d.gate("selection", GateVerdict::Pass, || why);
    } else if admitted.asked_by_name() {
        d.gate("selection", GateVerdict::Info, || {
            format!("{why}; the request is recorded in {STATUS_ANNOTATION}")
        });
    } else {
        return Err(Stop {
            gate: "selection",
            reason: SkipReason::NothingSelected,
            why,
        });
    }
    Ok(selected)
}

/// The namespace's Pod Security levels, for the runs: the enforced level when
/// the pod meets it (a pod that does not is the API server's to reject, as
/// without Tandem), and the levels only warned about or audited.
fn pod_security(input: &Input<'_>, d: &mut Decision) -> Security {
    let ps = PodSecurity::from_labels(&input.namespace.labels);
    for problem in &ps.problems {
        d.warn(format!("namespace label {problem}"));
    }
    let noted = [ps.warn, ps.audit]
        .into_iter()
        .flatten()
        .filter(|s| s.level != Level::Privileged)
        .collect();
    let Some(enforce) = ps.enforce.filter(|s| s.level != Level::Privileged) else {
        d.gate("pod security", GateVerdict::Pass, || {
            "no Pod Security level enforced".into()
        });
        return Security {
            enforce: None,
            noted,
        };
    };
    let already = pod_security::pod_violations(input.pod, enforce);
    if let Some(first) = already.first() {
        d.gate("pod security", GateVerdict::Info, || {
            format!("the pod itself breaks PodSecurity {enforce} ({first}); the API server decides")
        });
        return Security {
            enforce: None,
            noted,
        };
    }
    d.gate("pod security", GateVerdict::Pass, || {
        format!("the pod meets PodSecurity {enforce}; each template is held to it")
    });
    Security {
        enforce: Some(enforce),
        noted,
    }
}

/// The effective request and the QoS class before and after, warned about
/// when the request grows or a Guaranteed pod stops being one.
fn account_resources(pod: &PodView<'_>, plan: &Plan, d: &mut Decision) {
    let user_init = pod.init_containers.unwrap_or_default();
    let before = resources::effective(pod.containers, user_init, Some(pod.spec));
    let after = resources::effective(
        pod.containers
            .iter()
            .chain(plan.containers.iter().map(|c| c.doc())),
        plan.init_front
            .iter()
            .map(|c| c.doc())
            .chain(user_init)
            .chain(plan.init_back.iter().map(|c| c.doc())),
        Some(pod.spec),
    );
    d.gate("resources", GateVerdict::Info, || {
        format!("effective request {before} -> {after}")
    });
    if after.cpu > before.cpu || after.memory > before.memory {
        d.warn(format!("pod request grows from {before} to {after}"));
    }
    let pod_tally = Tally::of(pod.all_containers().map(QosShare::of));
    let added = plan
        .init_front
        .iter()
        .chain(&plan.init_back)
        .chain(&plan.containers)
        .map(|c| c.qos);
    let (qos_before, qos_after) = (pod_tally.class(), pod_tally.with(added).class());
    d.gate("qos", GateVerdict::Info, || {
        format!("QoS class {qos_before} -> {qos_after}")
    });
    if qos_before == QosClass::Guaranteed && qos_after != QosClass::Guaranteed {
        d.warn(format!(
            "pod QoS class changes from Guaranteed to {qos_after} (qos: preserve keeps it)"
        ));
    }
    d.resources = Some(ResourceChange {
        before,
        after,
        qos_before,
        qos_after,
    });
}

/// `kubectl` defaults to the first app container; the autoscaler may evict a
/// pod whose only local volumes are the scratch space Tandem added.
fn helpful_annotations(pod: &PodView<'_>, plan: &mut Plan) {
    if pod.annotation(DEFAULT_CONTAINER_ANNOTATION).is_none()
        && let Some(first) = pod.containers.first()
    {
        plan.annotations.push((
            DEFAULT_CONTAINER_ANNOTATION.to_string(),
            name_of(first).to_string(),
        ));
    }
    let added: Vec<&str> = plan
        .volumes
        .iter()
        .filter(|v| v.get("emptyDir").is_some())
        .map(|v| name_of(v))
        .collect();
    if added.is_empty() {
        return;
    }
    let existing = pod.annotation(SAFE_TO_EVICT_ANNOTATION).unwrap_or_default();
    let mut names: Vec<&str> = existing
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    let mut grew = false;
    for n in added {
        if !names.contains(&n) {
            names.push(n);
            grew = true;
        }
    }
    // Rewritten only when a name is new: the user's spelling of a list that
    // already names every volume (spaces, order) is left as it is.
    if grew {
        plan.annotations
            .push((SAFE_TO_EVICT_ANNOTATION.to_string(), names.join(",")));
    }
}
