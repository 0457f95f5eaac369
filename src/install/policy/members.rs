//! What each template is to the compiled set, and what any two of them do
//! to each other in one pod: decided once, when compiling, because every
//! template's objects are known then.

use std::fmt;

use serde_json::Value;

use super::{cel, needs_webhook};
use crate::facts::Doc;
use crate::template::{Lifecycle, Mode, Object, Scope, Template, TemplateSet};

/// A template's part in the compiled policy.
pub(super) enum Role {
    /// The policy injects it, exactly as the engine does.
    Injects,
    /// `mode: dryRun`: the engine never changes a pod for it, nor lets it
    /// change what the others do; the policy does the same.
    DryRun,
    /// Selected, it leaves the whole pod to the webhook; each reason a sentence.
    Webhook(Vec<String>),
}

/// One template of the set, with the short name its variables carry
/// (`t0`, `t1`, …: a template's name is no CEL identifier).
pub(super) struct Member<'a> {
    pub(super) t: &'a Template,
    pub(super) var: String,
    pub(super) role: Role,
}

impl Member<'_> {
    pub(super) fn injects(&self) -> bool {
        matches!(self.role, Role::Injects)
    }

    /// Whether its long-running containers go to `containers` while the pod
    /// restarts always (else natively, as the engine places them).
    pub(super) fn classic(&self) -> bool {
        self.t.spec.lifecycle == Lifecycle::Classic && !self.t.spec.containers.is_empty()
    }

    /// `variables.<var><suffix>`.
    pub(super) fn v(&self, suffix: &str) -> String {
        format!("variables.{}{suffix}", self.var)
    }
}

/// Every template of `set` in the engine's selector order (cluster-wide by
/// name, then each namespace's own).
pub(super) fn members(set: &TemplateSet) -> Vec<Member<'_>> {
    set.all()
        .enumerate()
        .map(|(i, t)| {
            // A dry run first: whatever else it holds, it changes no pod.
            let reasons = needs_webhook(t);
            let role = if t.spec.mode == Mode::DryRun && matches!(t.scope, Scope::Cluster) {
                Role::DryRun
            } else if !reasons.is_empty() {
                Role::Webhook(reasons)
            } else {
                Role::Injects
            };
            Member {
                t,
                var: format!("t{i}"),
                role,
            }
        })
        .collect()
}

/// The app containers `m` changes, all when `app.containers` is empty: a
/// predicate on container `c`.
pub(super) fn targets_c(m: &Member) -> String {
    let patterns = &m.t.spec.app.containers;
    if patterns.is_empty() {
        return "true".into();
    }
    let any: Vec<String> = patterns
        .iter()
        .map(|p| format!("c.name.matches({})", cel::string(&cel::glob(p))))
        .collect();
    format!("({})", any.join(" || "))
}

/// The templates the policy injects, in the set's order (namespace-scoped
/// ones always need the webhook, so these are all cluster-wide).
pub(super) fn injecting<'m, 'a>(members: &'m [Member<'a>]) -> impl Iterator<Item = &'m Member<'a>> {
    members.iter().filter(|m| m.injects())
}

/// Something two templates both add, identically: added once, by whichever
/// the engine injects first, and reused by the other.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Shared {
    Volume(String),
    /// A mount path, without trailing slashes.
    Mount(String),
    Env(String),
    EnvFrom(Value),
}

impl fmt::Display for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Shared::Volume(n) => write!(f, "volume {n}"),
            Shared::Mount(p) => write!(f, "mountPath {p}"),
            Shared::Env(n) => write!(f, "env {n}"),
            Shared::EnvFrom(_) => write!(f, "an envFrom source"),
        }
    }
}

/// What two templates do to each other in one pod.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Between {
    /// Identical objects both add: the later one reuses them.
    pub(super) shared: Vec<Shared>,
    /// Their first collision, if they have one: why, and when (a CEL
    /// condition on the pod; `None`: in every pod). The engine skips
    /// whichever of the two it reaches second.
    pub(super) conflict: Option<(String, Option<String>)>,
}

/// An object's `name`.
pub(super) fn name_of(o: &Object) -> &str {
    o.doc()
        .get("name")
        .and_then(Doc::as_str)
        .unwrap_or_default()
}

/// A mount's path without trailing slashes, as the engine compares them.
pub(super) fn path_of(o: &Object) -> String {
    let p = o.doc().get("mountPath").and_then(Doc::as_str);
    p.unwrap_or_default().trim_end_matches('/').to_string()
}

/// When a container of a template runs, for ports: init containers one at
/// a time; sidecars natively for the whole pod, or classically beside the
/// app.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Init,
    Sidecar,
    App,
}

fn meet(a: Phase, b: Phase) -> bool {
    a == Phase::Sidecar || b == Phase::Sidecar || (a == Phase::App && b == Phase::App)
}

/// One port of a template's containers, as the engine reads it.
pub(super) struct TemplatePort<'a> {
    /// Of an init container (else of a long-running one).
    pub(super) init: bool,
    pub(super) port: Option<i64>,
    /// `None` when unset or 0.
    pub(super) host: Option<i64>,
    pub(super) proto: &'a str,
}

/// Every port of `m`'s init containers, then of its long-running ones.
pub(super) fn template_ports<'m>(m: &'m Member) -> Vec<TemplatePort<'m>> {
    let r = &m.t.rendered;
    let groups = [(&r.init_containers, true), (&r.containers, false)];
    let mut out = Vec::new();
    for (containers, init) in groups {
        for c in containers.iter() {
            for p in c
                .doc()
                .get("ports")
                .and_then(Doc::as_array)
                .unwrap_or_default()
            {
                out.push(TemplatePort {
                    init,
                    port: p.get("containerPort").and_then(Doc::as_i64),
                    host: p.get("hostPort").and_then(Doc::as_i64).filter(|&h| h != 0),
                    proto: p.get("protocol").and_then(Doc::as_str).unwrap_or("TCP"),
                });
            }
        }
    }
    out
}

/// (containerPort, hostPort, protocol, phase) of every port of `m`'s
/// containers, in a pod that restarts always or not.
fn ports<'m>(
    m: &'m Member,
    restarts_always: bool,
) -> Vec<(Option<i64>, Option<i64>, &'m str, Phase)> {
    let long = if m.classic() && restarts_always {
        Phase::App
    } else {
        Phase::Sidecar
    };
    template_ports(m)
        .into_iter()
        .map(|p| {
            let phase = if p.init { Phase::Init } else { long };
            (p.port, p.host, p.proto, phase)
        })
        .collect()
}

/// What `a` and `b` do to each other, whichever comes first: the engine's
/// conflict rules (`engine/conflicts.rs`) applied to the two templates.
/// Names, volumes and ports collide in every pod (ports of a classic
/// template only as it is placed there); mounts and env vars only where
/// both change the same app container.
pub(super) fn between(a: &Member, b: &Member) -> Between {
    let (ra, rb) = (&a.t.rendered, &b.t.rendered);
    let mut out = Between::default();
    let mut conflicts: Vec<(String, Option<String>)> = Vec::new();
    for name in a.t.container_names() {
        if b.t.container_names().any(|n| n == name) {
            conflicts.push((format!("name a container {name:?}"), None));
        }
    }
    for va in &ra.volumes {
        if let Some(vb) = rb.volumes.iter().find(|v| name_of(v) == name_of(va)) {
            if va.value() != vb.value() {
                conflicts.push((
                    format!("define volume {:?}, differently", name_of(va)),
                    None,
                ));
            } else {
                out.shared.push(Shared::Volume(name_of(va).to_string()));
            }
        }
    }
    conflicts.extend(port_collision(a, b));
    let same_container = || {
        Some(format!(
            "object.spec.containers.exists(c, {} && {})",
            targets_c(a),
            targets_c(b)
        ))
    };
    for ma in &ra.app_volume_mounts {
        if let Some(mb) = rb
            .app_volume_mounts
            .iter()
            .find(|m| path_of(m) == path_of(ma))
        {
            if ma.value() != mb.value() {
                conflicts.push((
                    format!("mount at {}, differently", path_of(ma)),
                    same_container(),
                ));
            } else {
                out.shared.push(Shared::Mount(path_of(ma)));
            }
        }
    }
    for ea in &ra.app_env {
        if let Some(eb) = rb.app_env.iter().find(|e| name_of(e) == name_of(ea)) {
            if ea.value() != eb.value() {
                conflicts.push((
                    format!("set env {}, differently", name_of(ea)),
                    same_container(),
                ));
            } else {
                out.shared.push(Shared::Env(name_of(ea).to_string()));
            }
        }
    }
    for ea in &ra.app_env_from {
        if rb.app_env_from.iter().any(|e| e.value() == ea.value()) {
            out.shared.push(Shared::EnvFrom(ea.value().clone()));
        }
    }
    // Colliding in every pod, or wherever any of the conditions holds.
    out.conflict = match conflicts.iter().find(|(_, when)| when.is_none()) {
        Some((why, _)) => Some((format!("both {why}"), None)),
        None => conflicts.first().map(|(why, _)| {
            let when: Vec<&str> = conflicts.iter().filter_map(|(_, w)| w.as_deref()).collect();
            (format!("both {why}"), Some(when.join(" || ")))
        }),
    };
    out
}

/// The first port `a` and `b` both use while both run, and when: a classic
/// template's sidecars run beside the app where the pod restarts always,
/// natively elsewhere.
fn port_collision(a: &Member, b: &Member) -> Option<(String, Option<String>)> {
    let at = |restarts_always: bool| -> Option<String> {
        for (pa, ha, proto_a, phase_a) in ports(a, restarts_always) {
            for (pb, hb, proto_b, phase_b) in ports(b, restarts_always) {
                if proto_a != proto_b {
                    continue;
                }
                if let Some(p) = pa.filter(|_| pa == pb && meet(phase_a, phase_b)) {
                    return Some(format!("use port {p}/{proto_a}"));
                }
                if let Some(h) = ha.filter(|_| ha == hb) {
                    return Some(format!("use hostPort {h}/{proto_a}"));
                }
            }
        }
        None
    };
    match (at(true), at(false)) {
        (Some(why), Some(_)) => Some((why, None)),
        (Some(why), None) => Some((why, Some("variables.restartsAlways".into()))),
        (None, Some(why)) => Some((why, Some("!variables.restartsAlways".into()))),
        (None, None) => None,
    }
}

/// The injecting templates other than `m` that add `item` identically.
pub(super) fn sharers<'m, 'a>(
    all: &'m [Member<'a>],
    m: &Member,
    item: &Shared,
) -> Vec<&'m Member<'a>> {
    all.iter()
        .filter(|o| o.injects() && o.var != m.var)
        .filter(|o| between(m, o).shared.contains(item))
        .collect()
}
