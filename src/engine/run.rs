//! One selected template's run through a decision: does it exist, is it
//! already there, where does it go, which app containers it changes, what it
//! collides with, and, when all is clear, what it adds to the plan.

use super::Input;
use super::conflicts::{Additions, Conflict, PodIndex};
use super::decision::{Decision, Verdict};
use super::patch::Plan;
use super::placement::{Placement, Unplaceable, place};
use super::pod::PodView;
use super::pod_security::{Inherited, addition_violations};
use super::qos::{QosClass, Tally};
use super::select::glob;
use super::skip::SkipReason;
use super::status::Status;
use crate::facts::{Capabilities, Doc, OnMissing, QosShare, Standard};
use crate::template::{Mode, OnConflict, Position, Template};

/// A template's verdict and the reason `explain` shows, reached before the
/// template could be injected.
type Settled = (Verdict, String);

/// The Pod Security levels the templates are held to: `enforce` skips (or,
/// with `onConflict: fail`, denies) a template that would break it; `noted`
/// (the `warn` and `audit` levels) only warns.
#[derive(Default)]
pub(super) struct Security {
    pub enforce: Option<Standard>,
    pub noted: Vec<Standard>,
}

/// The state the runs of one decision share: the pod as it grows with each
/// accepted template, the plan, the status record, and the denials.
pub(super) struct Run<'a> {
    pod: &'a PodView<'a>,
    input: &'a Input<'a>,
    index: PodIndex<'a>,
    security: Security,
    /// Whether the pod is Guaranteed, once a `qos: preserve` template asks.
    guaranteed: Option<bool>,
    pub plan: Plan,
    pub status: Status,
    pub denials: Vec<String>,
}

impl<'a> Run<'a> {
    pub(super) fn new(
        pod: &'a PodView<'a>,
        input: &'a Input<'a>,
        status: Status,
        security: Security,
    ) -> Run<'a> {
        Run {
            pod,
            input,
            index: PodIndex::new(pod),
            security,
            guaranteed: None,
            plan: Plan::default(),
            status,
            denials: Vec::new(),
        }
    }

    /// Decides the template named `name` (as `own`, rendered with the pod's
    /// parameter values, when it has some) and, when it is injected, adds
    /// it to the plan and the status record.
    pub(super) fn template(
        &mut self,
        name: &str,
        own: Option<&'a Template>,
        d: &mut Decision,
    ) -> (Verdict, String) {
        let namespace = &self.input.namespace.name;
        let Some(t) = own.or_else(|| self.input.templates.lookup(namespace, name).map(|t| &**t))
        else {
            return self.missing(name, d);
        };
        match self.inject(t, d) {
            Ok(injected) => {
                self.status.record(t);
                injected
            }
            Err(settled) => settled,
        }
    }

    /// A template whose parameter value breaks its rule: never injected;
    /// skipped with a warning, or the pod denied with `onConflict: fail`.
    pub(super) fn invalid(
        &mut self,
        t: &Template,
        why: String,
        d: &mut Decision,
    ) -> (Verdict, String) {
        if t.spec.mode == Mode::DryRun {
            d.warn(format!("dry run: {} would be skipped: {why}", t.name));
            return (
                Verdict::Skipped {
                    reason: SkipReason::InvalidParameter,
                },
                format!("dry run; {why}"),
            );
        }
        if t.spec.on_conflict == OnConflict::Fail {
            self.denials
                .push(format!("template {} (onConflict: fail): {why}", t.name));
            return (
                Verdict::Denied,
                format!("invalid parameter, onConflict fail: {why}"),
            );
        }
        d.warn(format!("{} skipped: {why}", t.name));
        (
            Verdict::Skipped {
                reason: SkipReason::InvalidParameter,
            },
            why,
        )
    }

    fn missing(&mut self, name: &str, d: &mut Decision) -> (Verdict, String) {
        let why = format!(
            "template {name} does not exist for namespace {}",
            self.input.namespace.name
        );
        d.warn(format!("requested template {name} does not exist"));
        if self.input.policy.on_missing == OnMissing::Deny {
            self.denials.push(why.clone());
            return (Verdict::Denied, why);
        }
        (Verdict::Missing, why)
    }

    fn inject(&mut self, t: &'a Template, d: &mut Decision) -> Result<(Verdict, String), Settled> {
        not_injected_before(t, &self.status, d)?;
        let (placement, note) = self.placement(t, d)?;
        let targets = targets(t, &self.index, d);
        let native = placement == Placement::Native;
        let additions = self.conflict_free(t, placement, &targets, d)?;
        self.pod_security(t, placement, d)?;
        let mut why = describe(t, placement, &targets, &self.index);
        if t.spec.mode == Mode::DryRun {
            d.warn(format!(
                "dry run: {} would be injected ({})",
                t.name,
                placement.as_str()
            ));
            return Err((
                Verdict::DryRun { placement },
                format!("dry run; would inject: {why}"),
            ));
        }
        if let Some(note) = note {
            d.warn(&note);
            why.push_str(&format!("; {note}"));
        }
        self.index.commit(t, native, &additions);
        let preserve = t.rendered.preserved.is_some() && self.guaranteed();
        if preserve {
            why.push_str("; requests set to limits (qos: preserve)");
        }
        self.plan.add(t, native, additions, preserve);
        Ok((Verdict::Injected { placement }, why))
    }

    /// Whether the user's pod is Guaranteed: `qos: preserve` keeps it so.
    fn guaranteed(&mut self) -> bool {
        let pod = self.pod;
        *self.guaranteed.get_or_insert_with(|| {
            Tally::of(pod.all_containers().map(QosShare::of)).class() == QosClass::Guaranteed
        })
    }

    fn placement(
        &self,
        t: &Template,
        d: &mut Decision,
    ) -> Result<(Placement, Option<String>), Settled> {
        let caps: &Capabilities = self.input.capabilities;
        let policy = self.pod.restart_policy;
        let name = &t.name;
        match place(t, caps, policy) {
            Ok(p) => Ok(p),
            Err(Unplaceable::NativeUnsupported) => {
                d.warn(format!(
                    "{name} needs native sidecars (Kubernetes 1.29+); skipped"
                ));
                let why = format!(
                    "lifecycle native, but native sidecars are unavailable ({})",
                    caps.source
                );
                let reason = SkipReason::NativeUnsupported;
                Err((Verdict::Skipped { reason }, why))
            }
            Err(Unplaceable::JobNeedsNative) => {
                d.warn(format!(
                    "{name} skipped: a classic sidecar would keep this {policy} pod running"
                ));
                let why = format!(
                    "pod restartPolicy {policy} and no native sidecars: a classic sidecar never exits"
                );
                let reason = SkipReason::JobNeedsNative;
                Err((Verdict::Skipped { reason }, why))
            }
        }
    }

    /// Holds what the template adds to the namespace's Pod Security levels:
    /// one that breaks the enforced level is skipped (a dry run reports it,
    /// `onConflict: fail` denies), instead of the API server rejecting the
    /// whole pod; a `warn` or `audit` level only gets a warning.
    fn pod_security(
        &mut self,
        t: &'a Template,
        placement: Placement,
        d: &mut Decision,
    ) -> Result<(), Settled> {
        if self.security.enforce.is_none() && self.security.noted.is_empty() {
            return Ok(());
        }
        let r = &t.rendered;
        let long_running = match placement {
            Placement::Classic => &r.containers,
            Placement::Native | Placement::InitOnly => &r.native_containers,
        };
        let containers: Vec<&Doc<'_>> = r
            .init_containers
            .iter()
            .chain(long_running)
            .map(|c| c.doc())
            .collect();
        let inherited = Inherited::of(self.pod.spec);
        let check = |standard| {
            addition_violations(
                inherited,
                containers.iter().copied(),
                r.volumes.iter().map(|v| v.doc()),
                standard,
            )
        };
        let name = &t.name;
        let found = self.security.enforce.map(|e| (e, check(e)));
        let Some((enforce, found)) = found.filter(|(_, f)| !f.is_empty()) else {
            // Injected: the levels only warned about or audited say their piece.
            for &standard in &self.security.noted {
                if let Some(v) = check(standard).first() {
                    d.warn(format!("{name}: PodSecurity {standard} warns: {v}"));
                }
            }
            return Ok(());
        };
        let first = &found[0];
        let list = found
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        if t.spec.mode == Mode::DryRun {
            d.warn(format!(
                "dry run: {name} breaks PodSecurity {enforce}: {first}"
            ));
            let why = format!("dry run; would break PodSecurity {enforce}: {list}");
            return Err((Verdict::DryRun { placement }, why));
        }
        if t.spec.on_conflict == OnConflict::Fail {
            self.denials.push(format!(
                "template {name} (onConflict: fail) breaks PodSecurity {enforce}: {list}"
            ));
            let why = format!("breaks PodSecurity {enforce}, onConflict fail: {list}");
            return Err((Verdict::Denied, why));
        }
        d.warn(format!("{name} skipped (PodSecurity {enforce}): {first}"));
        Err((
            Verdict::Skipped {
                reason: SkipReason::PodSecurity,
            },
            format!("breaks PodSecurity {enforce}: {list}"),
        ))
    }

    /// What the template adds beyond its own containers, when nothing collides.
    /// A collision skips the template, reports it in a dry run, or denies
    /// the pod (`onConflict: fail`).
    fn conflict_free(
        &mut self,
        t: &'a Template,
        placement: Placement,
        targets: &[usize],
        d: &mut Decision,
    ) -> Result<Additions<'a>, Settled> {
        let native = placement == Placement::Native;
        let conflicts = match self.index.check(t, native, targets) {
            Ok(additions) => return Ok(additions),
            Err(conflicts) => conflicts,
        };
        let name = &t.name;
        let list = join(&conflicts);
        let first = conflicts[0].short();
        if t.spec.mode == Mode::DryRun {
            d.warn(format!("dry run: {name} would conflict: {first}"));
            let why = format!("dry run; would conflict: {list}");
            return Err((Verdict::DryRun { placement }, why));
        }
        if t.spec.on_conflict == OnConflict::Fail {
            self.denials
                .push(format!("template {name} (onConflict: fail): {list}"));
            return Err((
                Verdict::Denied,
                format!("conflict, onConflict fail: {list}"),
            ));
        }
        d.warn(format!("{name} skipped: {first}"));
        Err((
            Verdict::Skipped {
                reason: SkipReason::Conflict,
            },
            format!("conflict: {list}"),
        ))
    }
}

/// A template the pod already carries is left alone: unchanged when its hash
/// is the same, skipped with a warning when the template changed since.
fn not_injected_before(t: &Template, status: &Status, d: &mut Decision) -> Result<(), Settled> {
    let Some(prev) = status.template(&t.name) else {
        return Ok(());
    };
    if prev.hash == t.hash {
        let why = format!("already injected (hash {})", t.hash);
        return Err((Verdict::AlreadyInjected, why));
    }
    d.warn(format!(
        "{} was injected from an older version; recreate the pod to update it",
        t.name
    ));
    let why = format!(
        "injected earlier with hash {}, now {}; not re-injected",
        prev.hash, t.hash
    );
    Err((
        Verdict::Skipped {
            reason: SkipReason::Outdated,
        },
        why,
    ))
}

/// The app containers a template changes: `app.containers` names or globs, all
/// app containers when unset. A pattern that matches none is warned about.
fn targets(t: &Template, index: &PodIndex, d: &mut Decision) -> Vec<usize> {
    let patterns = &t.spec.app.containers;
    if t.spec.app.is_empty() {
        return Vec::new();
    }
    let chosen: Vec<usize> = index
        .apps
        .iter()
        .enumerate()
        .filter(|(_, a)| patterns.is_empty() || patterns.iter().any(|p| glob(p, a.name)))
        .map(|(i, _)| i)
        .collect();
    if chosen.is_empty() && !patterns.is_empty() {
        d.warn(format!(
            "{}: app.containers {} matches no container",
            t.name,
            patterns.join(",")
        ));
    }
    chosen
}

/// Where the template goes and which app containers it changes, for `explain`.
fn describe(t: &Template, placement: Placement, targets: &[usize], index: &PodIndex) -> String {
    let mut why = match placement {
        Placement::Native => format!("native sidecar, {}", position_text(t.spec.position)),
        Placement::Classic => "classic sidecar appended to containers".to_string(),
        Placement::InitOnly => format!("init containers, {}", position_text(t.spec.position)),
    };
    if !t.spec.app.is_empty() {
        let names: Vec<&str> = targets.iter().map(|&i| index.apps[i].name).collect();
        why.push_str(&format!("; app additions to {}", names.join(",")));
    }
    why
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
