//! What each template is to the compiled set, and what any two of them do
//! to each other in one pod: decided once, when compiling, because every
//! template's objects are known then.

use std::fmt;

use serde_json::Value;

use super::needs_webhook;
use crate::facts::Doc;
use crate::template::{Lifecycle, Mode, Object, Template, TemplateSet};

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
            let reasons = needs_webhook(t);
            let role = if !reasons.is_empty() {
                Role::Webhook(reasons)
            } else if t.spec.mode == Mode::DryRun {
                Role::DryRun
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
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Between {
    /// Nothing in common, or only identical objects the later one reuses.
    Fine(Vec<Shared>),
    /// The engine skips whichever comes second, and which comes second
    /// depends on the pod's request: the pair is the webhook's. The reason
    /// names the first collision.
    Conflict(String),
}

fn name_of<'a>(o: &'a Object) -> &'a str {
    o.doc().get("name").and_then(Doc::as_str).unwrap_or_default()
}

fn path_of(o: &Object) -> String {
    let p = o.doc().get("mountPath").and_then(Doc::as_str);
    p.unwrap_or_default().trim_end_matches('/').to_string()
}

/// When a container of a template may run, for ports: init containers one
/// at a time; sidecars natively for the whole pod, or classically beside the
/// app (a classic template goes native in a pod that does not restart
/// always, so both count).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Init,
    Sidecar,
    App,
}

fn meet(a: Phase, b: Phase) -> bool {
    a == Phase::Sidecar || b == Phase::Sidecar || (a == Phase::App && b == Phase::App)
}

/// (containerPort, hostPort, protocol, phase) of every port of `m`'s containers.
fn ports(m: &Member) -> Vec<(Option<i64>, Option<i64>, String, Phase)> {
    let r = &m.t.rendered;
    let long: &[Phase] = if m.classic() {
        &[Phase::App, Phase::Sidecar]
    } else {
        &[Phase::Sidecar]
    };
    let mut out = Vec::new();
    let groups = [
        (&r.init_containers, &[Phase::Init][..]),
        (&r.containers, long),
    ];
    for (containers, phases) in groups {
        for c in containers.iter() {
            for p in c.doc().get("ports").and_then(Doc::as_array).unwrap_or_default() {
                let port = p.get("containerPort").and_then(Doc::as_i64);
                let host = p.get("hostPort").and_then(Doc::as_i64).filter(|&h| h != 0);
                let proto = p.get("protocol").and_then(Doc::as_str).unwrap_or("TCP");
                for &phase in phases {
                    out.push((port, host, proto.to_string(), phase));
                }
            }
        }
    }
    out
}

/// What `a` and `b` do to each other, whichever comes first: the engine's
/// conflict rules (`engine/conflicts.rs`) applied to the two templates.
/// App-container changes count as colliding whenever both make them, even
/// where their `app.containers` could never pick the same container.
pub(super) fn between(a: &Member, b: &Member) -> Between {
    let (ra, rb) = (&a.t.rendered, &b.t.rendered);
    let conflict = |what: String| Between::Conflict(format!("both {what}"));
    for name in a.t.container_names() {
        if b.t.container_names().any(|n| n == name) {
            return conflict(format!("name a container {name:?}"));
        }
    }
    let mut shared = Vec::new();
    for va in &ra.volumes {
        if let Some(vb) = rb.volumes.iter().find(|v| name_of(v) == name_of(va)) {
            if va.value() != vb.value() {
                return conflict(format!("define volume {:?}, differently", name_of(va)));
            }
            shared.push(Shared::Volume(name_of(va).to_string()));
        }
    }
    for (pa, ha, proto_a, phase_a) in ports(a) {
        for (pb, hb, proto_b, phase_b) in ports(b) {
            if proto_a != proto_b {
                continue;
            }
            if pa.is_some() && pa == pb && meet(phase_a, phase_b) {
                return conflict(format!("use port {}/{proto_a}", pa.unwrap_or_default()));
            }
            if ha.is_some() && ha == hb {
                return conflict(format!("use hostPort {}/{proto_a}", ha.unwrap_or_default()));
            }
        }
    }
    for ma in &ra.app_volume_mounts {
        if let Some(mb) = rb.app_volume_mounts.iter().find(|m| path_of(m) == path_of(ma)) {
            if ma.value() != mb.value() {
                return conflict(format!("mount at {}, differently", path_of(ma)));
            }
            shared.push(Shared::Mount(path_of(ma)));
        }
    }
    for ea in &ra.app_env {
        if let Some(eb) = rb.app_env.iter().find(|e| name_of(e) == name_of(ea)) {
            if ea.value() != eb.value() {
                return conflict(format!("set env {}, differently", name_of(ea)));
            }
            shared.push(Shared::Env(name_of(ea).to_string()));
        }
    }
    for ea in &ra.app_env_from {
        if rb.app_env_from.iter().any(|e| e.value() == ea.value()) {
            shared.push(Shared::EnvFrom(ea.value().clone()));
        }
    }
    Between::Fine(shared)
}

/// The injecting templates other than `m` that add `item` identically.
pub(super) fn sharers<'m, 'a>(
    all: &'m [Member<'a>],
    m: &Member,
    item: &Shared,
) -> Vec<&'m Member<'a>> {
    all.iter()
        .filter(|o| o.injects() && o.var != m.var)
        .filter(|o| matches!(between(m, o), Between::Fine(s) if s.contains(item)))
        .collect()
}
