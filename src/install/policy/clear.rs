//! `variables.<t>Clear`: whether the engine's conflict check lets a template
//! into the pod as the user wrote it (what other templates add is settled
//! when compiling, `members::between`). The rules are the engine's
//! (`engine/conflicts.rs`), exactly: an identical volume, mount or env var
//! already in the pod is reused, a different one under the same name or
//! path is a conflict, and ports collide only between containers that run
//! at the same time.

use super::cel;
use super::members::{Member, name_of, targets_c, template_ports};
use crate::facts::Doc;
use crate::template::Object;

/// `!<list>.exists(x, <pred>)` for a list field of the pod, optional or not.
fn none_of(list: &str, optional: bool, var: &str, pred: &str) -> String {
    if optional {
        format!("(!has({list}) || !{list}.exists({var}, {pred}))")
    } else {
        format!("!{list}.exists({var}, {pred})")
    }
}

/// Whether a pod mount `m` is at `o`'s path: the same path with any number
/// of trailing slashes, as the engine compares them. A prefix and a string
/// without slashes, not a regex: linear, and cheap in the API server's
/// cost budget.
pub(super) fn at_path(o: &Object) -> String {
    let path = o
        .doc()
        .get("mountPath")
        .and_then(Doc::as_str)
        .unwrap_or_default()
        .trim_end_matches('/');
    format!(
        "(m.mountPath.startsWith({}) && m.mountPath.replace('/', '') == {})",
        cel::string(path),
        cel::string(&path.replace('/', ""))
    )
}

/// Pod-side predicates on a port `p`, by which pod containers they apply
/// to: (any container, app containers and native sidecars, native
/// sidecars only).
struct Clashes {
    any: Vec<String>,
    running: Vec<String>,
    sidecars: Vec<String>,
}

/// Where each port of `m` collides, its long-running containers counted as
/// app containers (`classic_here`) or as native sidecars.
fn clashes(m: &Member, classic_here: bool) -> Clashes {
    let mut out = Clashes {
        any: Vec::new(),
        running: Vec::new(),
        sidecars: Vec::new(),
    };
    for p in template_ports(m) {
        let same_proto = format!(
            "(has(p.protocol) ? p.protocol : 'TCP') == {}",
            cel::string(p.proto)
        );
        if let Some(port) = p.port {
            let clash = format!("(p.containerPort == {port} && {same_proto})");
            // An init container meets only native sidecars; a classic
            // sidecar the app containers and native sidecars; a native
            // sidecar everything.
            if p.init {
                out.sidecars.push(clash);
            } else if classic_here {
                out.running.push(clash);
            } else {
                out.any.push(clash);
            }
        }
        if let Some(host) = p.host {
            out.any.push(format!(
                "(has(p.hostPort) && p.hostPort == {host} && {same_proto})"
            ));
        }
    }
    out
}

/// No pod container uses a port of `m` at a time `m`'s container runs.
fn ports_free(m: &Member, classic_here: bool) -> Option<String> {
    let c = clashes(m, classic_here);
    let join = |sets: &[&Vec<String>]| {
        let all: Vec<&String> = sets.iter().flat_map(|s| s.iter()).collect();
        (!all.is_empty()).then(|| {
            all.iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(" || ")
        })
    };
    let uses = |pred: String| format!("has(c.ports) && c.ports.exists(p, {pred})");
    let native = "has(c.restartPolicy) && c.restartPolicy == 'Always'";
    let mut terms = Vec::new();
    if let Some(pred) = join(&[&c.any, &c.running]) {
        terms.push(none_of("object.spec.containers", false, "c", &uses(pred)));
    }
    let init_pred = match (join(&[&c.any]), join(&[&c.running, &c.sidecars])) {
        (None, None) => None,
        (Some(any), None) => Some(uses(any)),
        (None, Some(native_only)) => Some(format!("{native} && {}", uses(native_only))),
        (Some(any), Some(native_only)) => Some(format!(
            "({}) || ({native} && {})",
            uses(any),
            uses(native_only)
        )),
    };
    if let Some(pred) = init_pred {
        terms.push(none_of("object.spec.initContainers", true, "c", &pred));
    }
    (!terms.is_empty()).then(|| terms.join(" && "))
}

/// `variables.<t>Clear` for an injecting member.
pub(super) fn clear(m: &Member) -> String {
    let r = &m.t.rendered;
    let mut terms = Vec::new();
    let names = cel::strings(m.t.container_names());
    let named = format!("c.name in {names}");
    terms.push(none_of("object.spec.containers", false, "c", &named));
    terms.push(none_of("object.spec.initContainers", true, "c", &named));

    // The same name, another definition (compared as the API server stores
    // the pod's, after defaulting): a conflict. The same definition: reused.
    if !r.volumes.is_empty() {
        let differs: Vec<String> = r
            .volumes
            .iter()
            .enumerate()
            .map(|(i, v)| {
                format!(
                    "(v.name == {} && dyn(v) != {}[{i}])",
                    cel::string(name_of(v)),
                    m.v("Volumes")
                )
            })
            .collect();
        terms.push(none_of(
            "object.spec.volumes",
            true,
            "v",
            &differs.join(" || "),
        ));
    }

    if m.classic() {
        // Both or neither: the same ports, counted by where they run.
        match (ports_free(m, true), ports_free(m, false)) {
            (Some(app), Some(native)) => {
                terms.push(format!("(variables.restartsAlways ? {app} : {native})"));
            }
            (None, None) => {}
            (app, native) => {
                let free = |f: Option<String>| f.unwrap_or_else(|| "true".into());
                terms.push(format!(
                    "(variables.restartsAlways ? {} : {})",
                    free(app),
                    free(native)
                ));
            }
        }
    } else if let Some(free) = ports_free(m, false) {
        terms.push(free);
    }

    // In each target container the engine compares with the first entry at
    // the same path or of the same name (filtered once, bound to `f`).
    let mut app = Vec::new();
    for (i, mount) in r.app_volume_mounts.iter().enumerate() {
        let at = at_path(mount);
        app.push(format!(
            "(has(c.volumeMounts) && [c.volumeMounts.filter(m, {at})].exists(f, size(f) > 0 && dyn(f[0]) != {}[{i}]))",
            m.v("Mounts")
        ));
    }
    for (i, e) in r.app_env.iter().enumerate() {
        let named = format!("e.name == {}", cel::string(name_of(e)));
        app.push(format!(
            "(has(c.env) && [c.env.filter(e, {named})].exists(f, size(f) > 0 && dyn(f[0]) != {}[{i}]))",
            m.v("Env")
        ));
    }
    if !app.is_empty() {
        terms.push(format!(
            "!object.spec.containers.exists(c, {} && ({}))",
            targets_c(m),
            app.join(" || ")
        ));
    }
    terms.join("\n  && ")
}
