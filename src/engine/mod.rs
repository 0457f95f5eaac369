//! The decision engine: pod + templates + namespace facts + cluster
//! capabilities → decision, patch, warnings. Pure: no I/O, no clock, no client,
//! so the webhook, the CLI and the tests get byte-identical answers.

pub mod conflicts;
pub mod placement;
pub mod pod;
pub mod resources;
pub mod select;
pub mod status;

use std::collections::BTreeMap;
use std::str::FromStr;

use json_patch::PatchOperation;
use serde::Serialize;
use serde_json::Value;

use crate::patch::{self, Plan};
use crate::template::{Mode, OnConflict, Position, Template, TemplateSet};
use conflicts::{Conflict, PodIndex};
use placement::{Placement, Unplaceable, place};
use pod::{PodView, name_of};
use resources::Requests;
use select::{Request, Source, glob, parse_request};
use status::{Injected, Status};

pub const INJECT_ANNOTATION: &str = "tandem.dev/inject";
pub const STATUS_ANNOTATION: &str = "tandem.dev/status";
pub const INJECTION_LABEL: &str = "tandem.dev/injection";
pub const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";
pub const DEFAULT_CONTAINER_ANNOTATION: &str = "kubectl.kubernetes.io/default-container";
pub const SAFE_TO_EVICT_ANNOTATION: &str =
    "cluster-autoscaler.kubernetes.io/safe-to-evict-local-volumes";

/// Kubernetes drops warnings past this length; ours stay under it.
pub const MAX_WARNING_CHARS: usize = 119;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    #[error("malformed pod: {0}")]
    MalformedPod(String),
}

/// What Tandem knows of the pod's namespace.
#[derive(Clone, Debug, Default)]
pub struct Namespace {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

/// What the cluster supports.
#[derive(Clone, Debug)]
pub struct Capabilities {
    pub native_sidecars: bool,
    /// Where that came from, for `explain` (e.g. "Kubernetes v1.36.2").
    pub source: String,
}

impl Default for Capabilities {
    fn default() -> Self {
        Capabilities {
            native_sidecars: true,
            source: "assumed Kubernetes 1.29+".into(),
        }
    }
}

/// What to do with a requested template that does not exist.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OnMissing {
    #[default]
    Warn,
    Deny,
}

impl FromStr for OnMissing {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "warn" => Ok(OnMissing::Warn),
            "deny" => Ok(OnMissing::Deny),
            _ => Err(format!("{s:?} is not warn or deny")),
        }
    }
}

/// Operator settings that shape decisions.
#[derive(Clone, Debug)]
pub struct Policy {
    pub on_missing: OnMissing,
    /// Namespaces never injected (system namespaces and Tandem's own).
    pub excluded_namespaces: Vec<String>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            on_missing: OnMissing::Warn,
            excluded_namespaces: ["kube-system", "kube-public", "kube-node-lease"]
                .map(String::from)
                .to_vec(),
        }
    }
}

/// Everything a decision depends on.
pub struct Input<'a> {
    /// The pod as raw JSON (a Pod, or a pod template's `{metadata, spec}`).
    pub pod: &'a Value,
    pub namespace: &'a Namespace,
    pub templates: &'a TemplateSet,
    pub capabilities: &'a Capabilities,
    pub policy: &'a Policy,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "result", rename_all = "camelCase")]
pub enum Outcome {
    Patched,
    Unchanged { reason: &'static str },
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
    Skipped { reason: &'static str },
    Missing,
    Denied,
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
}

#[derive(Clone, Debug, Serialize)]
pub struct Decision {
    pub pod: String,
    pub outcome: Outcome,
    pub gates: Vec<Gate>,
    pub templates: Vec<TemplateVerdict>,
    pub warnings: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceChange>,
    #[serde(skip)]
    pub patch: Vec<PatchOperation>,
}

impl Decision {
    fn gate(&mut self, gate: impl Into<String>, verdict: GateVerdict, why: impl Into<String>) {
        self.gates.push(Gate {
            gate: gate.into(),
            verdict,
            why: why.into(),
        });
    }

    fn warn(&mut self, text: impl AsRef<str>) {
        self.warnings.push(short_warning(text.as_ref()));
    }

    fn stop(mut self, gate: &str, reason: &'static str, why: impl Into<String>) -> Decision {
        self.gate(gate, GateVerdict::Stop, why);
        self.outcome = Outcome::Unchanged { reason };
        self
    }

    /// One line for audit annotations and logs, e.g.
    /// `injected=log-shipper(native) skipped=db-ambassador(conflict)`.
    pub fn summary(&self) -> String {
        let mut parts: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for t in &self.templates {
            let (key, detail) = match &t.verdict {
                Verdict::Injected { placement } => ("injected", placement.as_str()),
                Verdict::DryRun { placement } => ("dryRun", placement.as_str()),
                Verdict::AlreadyInjected => ("present", "unchanged"),
                Verdict::Skipped { reason } => ("skipped", *reason),
                Verdict::Missing => ("missing", "not found"),
                Verdict::Denied => ("denied", "conflict"),
            };
            parts
                .entry(key)
                .or_default()
                .push(format!("{}({detail})", t.name));
        }
        let mut out = match &self.outcome {
            Outcome::Patched => "patched".to_string(),
            Outcome::Unchanged { reason } => format!("unchanged({reason})"),
            Outcome::Denied { .. } => "denied".to_string(),
        };
        for (k, v) in parts {
            out.push_str(&format!(" {k}={}", v.join(",")));
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

/// Decides what to inject into one pod.
pub fn decide(input: &Input<'_>) -> Result<Decision, EngineError> {
    let pod = PodView::new(input.pod)?;
    let ns = input.namespace;
    let mut d = Decision {
        pod: pod.display_name(),
        outcome: Outcome::Unchanged {
            reason: "nothing-selected",
        },
        gates: Vec::new(),
        templates: Vec::new(),
        warnings: Vec::new(),
        status: None,
        resources: None,
        patch: Vec::new(),
    };
    let caps = input.capabilities;
    let native = if caps.native_sidecars {
        "available"
    } else {
        "unavailable"
    };
    d.gate(
        "capabilities",
        GateVerdict::Info,
        format!("native sidecars {native} ({})", caps.source),
    );

    if let Some(source) = pod.annotation(MIRROR_ANNOTATION) {
        let why = format!("mirror pod of a static manifest ({source}); the kubelet owns it");
        return Ok(d.stop("mirror pod", "mirror-pod", why));
    }
    d.gate("mirror pod", GateVerdict::Pass, "not a mirror pod");

    if input
        .policy
        .excluded_namespaces
        .iter()
        .any(|n| n == &ns.name)
    {
        let why = format!("namespace {} is excluded from injection", ns.name);
        return Ok(d.stop("namespace", "excluded-namespace", why));
    }
    if ns.labels.get(INJECTION_LABEL).map(String::as_str) == Some("disabled") {
        let why = format!(
            "namespace {} is labelled {INJECTION_LABEL}=disabled",
            ns.name
        );
        return Ok(d.stop("namespace", "namespace-disabled", why));
    }
    d.gate(
        "namespace",
        GateVerdict::Pass,
        format!("namespace {:?} may be injected", ns.name),
    );

    let pod_request = pod.annotation(INJECT_ANNOTATION).map(parse_request);
    if pod_request == Some(Request::OptOut) {
        let why = format!("pod annotation {INJECT_ANNOTATION} opts out");
        return Ok(d.stop("pod opt-out", "opted-out", why));
    }
    d.gate("pod opt-out", GateVerdict::Pass, "pod does not opt out");

    let raw_status = pod.annotation(STATUS_ANNOTATION);
    let existing = match raw_status.map(Status::parse) {
        None => {
            d.gate("status", GateVerdict::Pass, "no earlier injection recorded");
            None
        }
        Some(Ok(s)) => {
            let names: Vec<&str> = s.templates.iter().map(|t| t.name.as_str()).collect();
            let why = format!("already carries {}", names.join(","));
            d.gate("status", GateVerdict::Info, why);
            Some(s)
        }
        Some(Err(e)) => {
            d.warn(&e);
            d.gate(
                "status",
                GateVerdict::Info,
                format!("{e}; treated as not injected"),
            );
            None
        }
    };

    let (selected, why) = select::select(&pod, ns, input.templates);
    if selected.is_empty() {
        return Ok(d.stop("selection", "nothing-selected", why));
    }
    d.gate("selection", GateVerdict::Pass, why);

    let mut index = PodIndex::new(&pod);
    let mut plan = Plan::default();
    let mut status = existing.unwrap_or_default();
    let mut denials = Vec::new();
    for (name, source) in selected {
        let verdict = match input.templates.lookup(&ns.name, &name) {
            None => {
                let deny = input.policy.on_missing == OnMissing::Deny;
                let why = format!("template {name} does not exist for namespace {}", ns.name);
                d.warn(format!("requested template {name} does not exist"));
                if deny {
                    denials.push(why.clone());
                }
                let verdict = if deny {
                    Verdict::Denied
                } else {
                    Verdict::Missing
                };
                (verdict, why)
            }
            Some(t) => {
                let decided = consider(
                    t,
                    &pod,
                    caps,
                    &status,
                    &mut index,
                    &mut plan,
                    &mut d,
                    &mut denials,
                );
                if let Verdict::Injected { .. } = decided.0 {
                    record(&mut status, t);
                }
                decided
            }
        };
        let (verdict, why) = verdict;
        let gate_verdict = match verdict {
            Verdict::Injected { .. } | Verdict::AlreadyInjected => GateVerdict::Pass,
            Verdict::Denied => GateVerdict::Deny,
            Verdict::DryRun { .. } => GateVerdict::Info,
            Verdict::Skipped { .. } | Verdict::Missing => GateVerdict::Stop,
        };
        d.gate(format!("template {name}"), gate_verdict, why.clone());
        d.templates.push(TemplateVerdict {
            name,
            source,
            verdict,
            why,
        });
    }

    if !denials.is_empty() {
        // Nothing is patched into a denied pod, so nothing was injected.
        for t in &mut d.templates {
            if let Verdict::Injected { .. } = t.verdict {
                t.verdict = Verdict::Skipped {
                    reason: "pod-denied",
                };
                t.why.push_str("; not applied: the pod is denied");
            }
        }
        d.outcome = Outcome::Denied {
            message: denials.join("; "),
        };
        return Ok(d);
    }

    let injected_any = d.injected().next().is_some();
    let requested_by_pod = matches!(
        pod_request,
        Some(Request::Names(_)) | Some(Request::Defaults)
    );
    if injected_any || requested_by_pod {
        // Written even when nothing was injected, so the admission policy that
        // rejects unprocessed pods can tell "Tandem saw it" from "Tandem was down".
        let value = status.to_annotation();
        if raw_status != Some(value.as_str()) {
            plan.annotations
                .push((STATUS_ANNOTATION.to_string(), value));
        }
        d.status = Some(status);
    }
    if injected_any {
        helpful_annotations(&pod, &mut plan);
        let spec = input.pod.get("spec");
        let before = resources::effective(
            pod.containers,
            pod.init_containers.unwrap_or_default(),
            spec,
        );
        let after = resources::effective(
            pod.containers.iter().chain(&plan.containers),
            plan.init_front
                .iter()
                .chain(pod.init_containers.unwrap_or_default())
                .chain(&plan.init_back),
            spec,
        );
        d.gate(
            "resources",
            GateVerdict::Info,
            format!("effective request {before} -> {after}"),
        );
        if after.cpu > before.cpu || after.memory > before.memory {
            d.warn(format!("pod request grows from {before} to {after}"));
        }
        d.resources = Some(ResourceChange { before, after });
    }

    d.patch = patch::build(input.pod, plan);
    d.outcome = if !d.patch.is_empty() {
        Outcome::Patched
    } else if d
        .templates
        .iter()
        .all(|t| t.verdict == Verdict::AlreadyInjected)
    {
        Outcome::Unchanged {
            reason: "already-injected",
        }
    } else {
        let reason = d
            .templates
            .iter()
            .find_map(|t| match t.verdict {
                Verdict::Skipped { reason } => Some(reason),
                Verdict::Missing => Some("missing"),
                Verdict::DryRun { .. } => Some("dry-run"),
                _ => None,
            })
            .unwrap_or("already-injected");
        Outcome::Unchanged { reason }
    };
    Ok(d)
}

/// Decides one template and, when it is injected, adds it to the plan.
#[allow(clippy::too_many_arguments)]
fn consider<'a>(
    t: &'a Template,
    pod: &PodView<'a>,
    caps: &Capabilities,
    status: &Status,
    index: &mut PodIndex<'a>,
    plan: &mut Plan,
    d: &mut Decision,
    denials: &mut Vec<String>,
) -> (Verdict, String) {
    let name = &t.name;
    if let Some(prev) = status.template(name) {
        if prev.hash == t.hash {
            return (
                Verdict::AlreadyInjected,
                format!("already injected (hash {})", t.hash),
            );
        }
        d.warn(format!(
            "{name} was injected from an older version; recreate the pod to update it"
        ));
        let why = format!(
            "injected earlier with hash {}, now {}; not re-injected",
            prev.hash, t.hash
        );
        return (Verdict::Skipped { reason: "outdated" }, why);
    }
    let (placement, note) = match place(t, caps, pod.restart_policy()) {
        Ok(p) => p,
        Err(Unplaceable::NativeUnsupported) => {
            d.warn(format!(
                "{name} needs native sidecars (Kubernetes 1.29+); skipped"
            ));
            let why = format!(
                "lifecycle native, but native sidecars are unavailable ({})",
                caps.source
            );
            return (
                Verdict::Skipped {
                    reason: "native-unsupported",
                },
                why,
            );
        }
        Err(Unplaceable::JobNeedsNative) => {
            let policy = pod.restart_policy();
            d.warn(format!(
                "{name} skipped: a classic sidecar would keep this {policy} pod running"
            ));
            let why = format!(
                "pod restartPolicy {policy} and no native sidecars: a classic sidecar never exits"
            );
            return (
                Verdict::Skipped {
                    reason: "job-needs-native",
                },
                why,
            );
        }
    };
    let (targets, target_note) = targets(t, index);
    if let Some(n) = &target_note {
        d.warn(n);
    }
    let native = placement == Placement::Native;
    let dry_run = t.spec.mode == Mode::DryRun;
    let additions = match index.check(t, native, &targets) {
        Ok(a) => a,
        Err(conflicts) => {
            let list = join(&conflicts);
            if dry_run {
                d.warn(format!(
                    "dry run: {name} would conflict: {}",
                    conflicts[0].short()
                ));
                return (
                    Verdict::DryRun { placement },
                    format!("dry run; would conflict: {list}"),
                );
            }
            if t.spec.on_conflict == OnConflict::Fail {
                denials.push(format!("template {name} (onConflict: fail): {list}"));
                return (
                    Verdict::Denied,
                    format!("conflict, onConflict fail: {list}"),
                );
            }
            d.warn(format!("{name} skipped: {}", conflicts[0].short()));
            return (
                Verdict::Skipped { reason: "conflict" },
                format!("conflict: {list}"),
            );
        }
    };
    let mut why = match placement {
        Placement::Native => format!("native sidecar, {}", position_text(t.spec.position)),
        Placement::Classic => "classic sidecar appended to containers".to_string(),
        Placement::InitOnly => format!("init containers, {}", position_text(t.spec.position)),
    };
    let target_names: Vec<&str> = targets.iter().map(|&i| index.apps[i].name).collect();
    if !t.spec.app.is_empty() {
        why.push_str(&format!("; app additions to {}", target_names.join(",")));
    }
    if dry_run {
        d.warn(format!(
            "dry run: {name} would be injected ({})",
            placement.as_str()
        ));
        return (
            Verdict::DryRun { placement },
            format!("dry run; would inject: {why}"),
        );
    }
    if let Some(note) = note {
        d.warn(&note);
        why.push_str(&format!("; {note}"));
    }
    index.commit(t, native, &additions);
    let mut init: Vec<Value> = t.rendered.init_containers.clone();
    if native {
        init.extend(t.rendered.containers.iter().map(|c| {
            let mut c = c.clone();
            if let Value::Object(m) = &mut c {
                m.insert("restartPolicy".into(), Value::String("Always".into()));
            }
            c
        }));
    } else {
        plan.containers
            .extend(t.rendered.containers.iter().cloned());
    }
    match t.spec.position {
        Position::BeforeUserInit => plan.init_front.extend(init),
        Position::AfterUserInit => plan.init_back.extend(init),
    }
    plan.volumes.extend(additions.volumes.into_iter().cloned());
    for (i, extra) in additions.app {
        let entry = plan.app.entry(i).or_default();
        entry
            .volume_mounts
            .extend(extra.volume_mounts.into_iter().cloned());
        entry.env.extend(extra.env.into_iter().cloned());
        entry.env_from.extend(extra.env_from.into_iter().cloned());
    }
    (Verdict::Injected { placement }, why)
}

fn position_text(p: Position) -> &'static str {
    match p {
        Position::BeforeUserInit => "before the user's init containers",
        Position::AfterUserInit => "after the user's init containers",
    }
}

fn join(conflicts: &[Conflict]) -> String {
    conflicts
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// The app containers a template changes: `app.containers` names or globs, all
/// app containers when unset.
fn targets(t: &Template, index: &PodIndex) -> (Vec<usize>, Option<String>) {
    let patterns = &t.spec.app.containers;
    if t.spec.app.is_empty() {
        return (Vec::new(), None);
    }
    let chosen: Vec<usize> = index
        .apps
        .iter()
        .enumerate()
        .filter(|(_, a)| patterns.is_empty() || patterns.iter().any(|p| glob(p, a.name)))
        .map(|(i, _)| i)
        .collect();
    let note = (chosen.is_empty() && !patterns.is_empty()).then(|| {
        format!(
            "{}: app.containers {} matches no container",
            t.name,
            patterns.join(",")
        )
    });
    (chosen, note)
}

fn record(status: &mut Status, t: &Template) {
    status.templates.push(Injected {
        name: t.name.clone(),
        hash: t.hash.clone(),
    });
    status
        .init_containers
        .extend(t.spec.init_containers.iter().map(|c| c.name.clone()));
    status
        .containers
        .extend(t.spec.containers.iter().map(|c| c.name.clone()));
    status
        .volumes
        .extend(t.spec.volumes.iter().map(|v| v.name.clone()));
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
        .map(name_of)
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

/// How `--native-sidecars` overrides detection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum NativeSidecars {
    #[default]
    Auto,
    Always,
    Never,
}

impl FromStr for NativeSidecars {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(NativeSidecars::Auto),
            "always" => Ok(NativeSidecars::Always),
            "never" => Ok(NativeSidecars::Never),
            _ => Err(format!("{s:?} is not auto, always or never")),
        }
    }
}

/// Major and minor of a Kubernetes version string: `v1.30.4-eks-abc`,
/// `v1.29.0+k3s1`, `1.36`, `1.28+` (GKE's minor) all parse.
pub fn parse_version(s: &str) -> Option<(u32, u32)> {
    let s = s.trim().trim_start_matches(['v', 'V']);
    let mut parts = s.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor_raw = parts.next()?;
    let digits: String = minor_raw.chars().take_while(char::is_ascii_digit).collect();
    Some((major, digits.parse().ok()?))
}

impl Capabilities {
    /// Native sidecars are on by default from Kubernetes 1.29.
    pub fn detect(version: Option<&str>, mode: NativeSidecars) -> Capabilities {
        match (mode, version) {
            (NativeSidecars::Always, _) => Capabilities {
                native_sidecars: true,
                source: "--native-sidecars=always".into(),
            },
            (NativeSidecars::Never, _) => Capabilities {
                native_sidecars: false,
                source: "--native-sidecars=never".into(),
            },
            (NativeSidecars::Auto, Some(v)) => match parse_version(v) {
                Some(mm) => Capabilities {
                    native_sidecars: mm >= (1, 29),
                    source: format!("Kubernetes {v}"),
                },
                None => Capabilities {
                    native_sidecars: false,
                    source: format!(
                        "unrecognised Kubernetes version {v:?}; assuming no native sidecars"
                    ),
                },
            },
            (NativeSidecars::Auto, None) => Capabilities::default(),
        }
    }
}
