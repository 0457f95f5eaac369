//! Which pods a compiled policy changes: the engine's selection narrowed to
//! "this template and no other", and the conflict checks approximated from
//! the strict side, so the policy steps aside wherever the engine might
//! decide differently and never changes a pod the engine would not.

use k8s_openapi::api::admissionregistration::v1::{MatchCondition, Variable};

use super::{cel, variable};
use crate::facts::{
    Doc, INJECT_ANNOTATION, INJECT_DEFAULTS, INJECT_OPT_OUT, Level, POD_SECURITY_PREFIX,
    STATUS_ANNOTATION, Standard, Version,
};
use crate::install::webhook::mirror_condition;
use crate::template::{Scope, Template, TemplateSet, parameter_text};

/// `has(<meta>.annotations) && "<key>" in <meta>.annotations`.
pub(super) fn has_annotation(meta: &str, key: &str) -> String {
    format!(
        "has({meta}.annotations) && {} in {meta}.annotations",
        cel::string(key)
    )
}

fn annotation(meta: &str, key: &str) -> String {
    format!("{meta}.annotations[{}]", cel::string(key))
}

/// The pod-only gates, in the order `tandem explain` shows them. They read
/// nothing but the pod: match conditions see neither variables nor the
/// namespace.
pub(super) fn match_conditions() -> Vec<MatchCondition> {
    let pod = "object.metadata";
    let inject = annotation(pod, INJECT_ANNOTATION);
    vec![
        MatchCondition {
            name: "exclude-mirror-pods".into(),
            expression: mirror_condition(),
        },
        MatchCondition {
            name: "pod-does-not-opt-out".into(),
            expression: format!(
                "!({} && {inject}.trim().lowerAscii() in {})",
                has_annotation(pod, INJECT_ANNOTATION),
                cel::strings(INJECT_OPT_OUT)
            ),
        },
        // A pod that carries a status was injected before, by this policy or
        // the webhook; adding to it would mean merging the status, which only
        // the webhook does.
        MatchCondition {
            name: "not-injected-yet".into(),
            expression: format!("!({})", has_annotation(pod, STATUS_ANNOTATION)),
        },
    ]
}

/// Whether every parameter of `t` is at its default for this pod: the
/// pod's annotation `<template>.tandem.dev/<parameter>` wins over the
/// namespace's, as in the engine. Another value changes the status hash
/// (a SHA-256 of the objects, which CEL cannot compute), so such a pod is
/// the webhook's. `None` for a template without parameters.
pub(super) fn parameters(t: &Template) -> Option<Variable> {
    if t.spec.parameters.is_empty() {
        return None;
    }
    let (pod, ns) = ("object.metadata", "namespaceObject.metadata");
    let terms: Vec<String> = t
        .spec
        .parameters
        .iter()
        .map(|p| {
            let key = p.annotation(&t.name);
            let default = cel::string(&parameter_text(&p.default));
            let on_pod = has_annotation(pod, &key);
            format!(
                "(({on_pod}) ? {} == {default} : !({}) || {} == {default})",
                annotation(pod, &key),
                has_annotation(ns, &key),
                annotation(ns, &key),
            )
        })
        .collect();
    Some(variable(
        "parametersAtDefault",
        terms.join(
            "
  && ",
        ),
    ))
}

/// The `tandem.dev/inject` request of the pod (`prefix` "pod") or of its
/// namespace ("namespace"): its value, whether it names templates, and which.
fn request(prefix: &str, meta: &str) -> Vec<Variable> {
    let asks = has_annotation(meta, INJECT_ANNOTATION);
    let value = format!("variables.{prefix}Value");
    vec![
        variable(
            &format!("{prefix}Value"),
            format!(
                "{asks} ? {}.trim() : ''",
                annotation(meta, INJECT_ANNOTATION)
            ),
        ),
        variable(
            &format!("{prefix}HasNames"),
            format!(
                "{asks} && !({value}.lowerAscii() in {})",
                cel::strings(INJECT_OPT_OUT.iter().chain(&INJECT_DEFAULTS).copied())
            ),
        ),
        variable(
            &format!("{prefix}Names"),
            format!(
                "variables.{prefix}HasNames ? {value}.split(',').map(n, n.trim()).filter(n, n != '') : []"
            ),
        ),
    ]
}

/// Whether `t` injects automatically into this pod, as the engine's
/// `auto_matches` decides for a pod in the template's scope.
fn auto_match(t: &Template) -> Option<String> {
    let spec = &t.spec;
    if spec.selector.is_none() && spec.namespace_selector.is_none() {
        return None;
    }
    let mut terms = Vec::new();
    if let Scope::Namespace(ns) = &t.scope {
        terms.push(format!(
            "namespaceObject.metadata.name == {}",
            cel::string(ns)
        ));
    }
    if let Some(s) = &spec.selector {
        terms.push(cel::selector(s, "object.metadata.labels"));
    }
    if let Some(s) = &spec.namespace_selector {
        terms.push(cel::selector(s, "namespaceObject.metadata.labels"));
    }
    Some(terms.join(" && "))
}

/// The variables that decide whether the engine selects `t`, and only `t`,
/// for the pod: `variables.selected`.
pub(super) fn selection(t: &Template, set: &TemplateSet) -> Vec<Variable> {
    let mut vars = request("pod", "object.metadata");
    vars.extend(request("namespace", "namespaceObject.metadata"));
    vars.push(variable(
        "namespaceOptsOut",
        format!(
            "{} && {}.trim().lowerAscii() in {}",
            has_annotation("namespaceObject.metadata", INJECT_ANNOTATION),
            annotation("namespaceObject.metadata", INJECT_ANNOTATION),
            cel::strings(INJECT_OPT_OUT)
        ),
    ));
    // The pod's list replaces the namespace default; selectors add to either.
    vars.push(variable(
        "names",
        "variables.podHasNames ? variables.podNames : variables.namespaceNames",
    ));
    // A namespace that opts out turns selectors off, unless the pod asks.
    vars.push(variable(
        "selectorsOff",
        format!(
            "!variables.podHasNames && !variables.namespaceHasNames && variables.namespaceOptsOut && !({} && variables.podValue.lowerAscii() in {})",
            has_annotation("object.metadata", INJECT_ANNOTATION),
            cel::strings(INJECT_DEFAULTS)
        ),
    ));
    let others: Vec<String> = set
        .all()
        .filter(|u| u.name != t.name)
        .filter_map(|u| auto_match(u).map(|m| format!("({m})")))
        .collect();
    let others = if others.is_empty() {
        "false".to_string()
    } else {
        others.join(" || ")
    };
    vars.push(variable("othersSelected", others));
    let named_or_own = match auto_match(t) {
        Some(own) => format!("(size(variables.names) > 0 || ({own}))"),
        None => "size(variables.names) > 0".into(),
    };
    // Where a namespace's own template of the same name shadows this one,
    // the pods there get that one.
    let shadowed: String = set
        .all()
        .filter(|u| u.name == t.name)
        .filter_map(|u| match &u.scope {
            Scope::Namespace(ns) => Some(format!(
                " && namespaceObject.metadata.name != {}",
                cel::string(ns)
            )),
            Scope::Cluster => None,
        })
        .collect();
    vars.push(variable(
        "selected",
        format!(
            "!variables.selectorsOff && variables.names.all(n, n == {name}) && {named_or_own} && !variables.othersSelected{shadowed}",
            name = cel::string(&t.name)
        ),
    ));
    vars
}

/// `variables.podSecurityClear`, for a template whose containers or volumes
/// break a Pod Security level on their own: false in a namespace enforcing
/// that level (or a label value the API server reads as restricted), where
/// the policy steps aside for the webhook. `None` when `t` meets restricted.
pub(super) fn pod_security(t: &Template) -> Option<Variable> {
    let at = |level| {
        !crate::engine::template_violations(
            t,
            Standard {
                level,
                version: Version::Latest,
            },
        )
        .is_empty()
    };
    let allowed: &[&str] = if at(Level::Baseline) {
        &["privileged"]
    } else if at(Level::Restricted) {
        &["privileged", "baseline"]
    } else {
        return None;
    };
    let labels = "namespaceObject.metadata.labels";
    let key = cel::string(&format!("{POD_SECURITY_PREFIX}enforce"));
    Some(variable(
        "podSecurityClear",
        format!(
            "!(has({labels}) && {key} in {labels}) || {labels}[{key}] in {}",
            cel::strings(allowed.iter().copied())
        ),
    ))
}

/// The app containers `t` changes, all when `app.containers` is empty.
pub(super) fn targets(t: &Template) -> String {
    let patterns = &t.spec.app.containers;
    if patterns.is_empty() {
        return "object.spec.containers".into();
    }
    let any: Vec<String> = patterns
        .iter()
        .map(|p| format!("c.name.matches({})", cel::string(&cel::glob(p))))
        .collect();
    format!("object.spec.containers.filter(c, {})", any.join(" || "))
}

fn name_of<'a>(v: &'a Doc<'_>) -> &'a str {
    v.get("name").and_then(Doc::as_str).unwrap_or_default()
}

/// `!<list>.exists(x, <pred>)` for an optional list field of the pod.
fn none_of(list: &str, optional: bool, var: &str, pred: &str) -> String {
    if optional {
        format!("(!has({list}) || !{list}.exists({var}, {pred}))")
    } else {
        format!("!{list}.exists({var}, {pred})")
    }
}

/// `variables.clear`: nothing of the template's is in the pod yet. Stricter
/// than the engine, which reuses an identical volume, skips an identical
/// env var or mount, and lets ports of containers that never run together
/// be: here any of those steps aside for the webhook.
pub(super) fn clear(t: &Template) -> Variable {
    let mut terms = Vec::new();
    let names: Vec<&str> = t.container_names().collect();
    let named = format!("c.name in {}", cel::strings(names.iter().copied()));
    terms.push(none_of("object.spec.containers", false, "c", &named));
    terms.push(none_of("object.spec.initContainers", true, "c", &named));

    if !t.rendered.volumes.is_empty() {
        let names = cel::strings(t.rendered.volumes.iter().map(|v| name_of(v)));
        let pred = format!("v.name in {names}");
        terms.push(none_of("object.spec.volumes", true, "v", &pred));
    }

    let ports = port_clash(t);
    if let Some(pred) = ports {
        let uses = format!("has(c.ports) && c.ports.exists(p, {pred})");
        terms.push(none_of("object.spec.containers", false, "c", &uses));
        terms.push(none_of("object.spec.initContainers", true, "c", &uses));
    }

    let app = app_clash(t);
    if let Some(pred) = app {
        terms.push(format!("!variables.targets.exists(c, {pred})"));
    }
    variable("clear", terms.join(" && "))
}

/// A port `p` of the pod that one of the template's containers also uses,
/// as containerPort or hostPort, with the same protocol.
fn port_clash(t: &Template) -> Option<String> {
    let mut alternatives = Vec::new();
    let containers = t
        .rendered
        .init_containers
        .iter()
        .chain(&t.rendered.containers);
    for c in containers {
        for p in c.get("ports").and_then(Doc::as_array).into_iter().flatten() {
            let proto = p.get("protocol").and_then(Doc::as_str).unwrap_or("TCP");
            let same_proto = format!(
                "(has(p.protocol) ? p.protocol : 'TCP') == {}",
                cel::string(proto)
            );
            if let Some(port) = p.get("containerPort").and_then(Doc::as_i64) {
                alternatives.push(format!("(p.containerPort == {port} && {same_proto})"));
            }
            if let Some(host) = p.get("hostPort").and_then(Doc::as_i64).filter(|&h| h != 0) {
                alternatives.push(format!(
                    "(has(p.hostPort) && p.hostPort == {host} && {same_proto})"
                ));
            }
        }
    }
    (!alternatives.is_empty()).then(|| alternatives.join(" || "))
}

/// A target container `c` that already mounts at one of the template's
/// paths, sets one of its env vars, or reads one of its envFrom sources.
fn app_clash(t: &Template) -> Option<String> {
    let r = &t.rendered;
    let mut alternatives = Vec::new();
    if !r.app_volume_mounts.is_empty() {
        let paths: Vec<String> = r
            .app_volume_mounts
            .iter()
            .map(|m| {
                let path = m.get("mountPath").and_then(Doc::as_str).unwrap_or_default();
                format!(
                    "m.mountPath.matches({})",
                    cel::string(&cel::mount_path(path))
                )
            })
            .collect();
        alternatives.push(format!(
            "(has(c.volumeMounts) && c.volumeMounts.exists(m, {}))",
            paths.join(" || ")
        ));
    }
    if !r.app_env.is_empty() {
        let names = cel::strings(r.app_env.iter().map(|e| name_of(e)));
        alternatives.push(format!(
            "(has(c.env) && c.env.exists(e, e.name in {names}))"
        ));
    }
    if !r.app_env_from.is_empty() {
        let sources: Vec<String> = r.app_env_from.iter().map(|e| env_source(e)).collect();
        alternatives.push(format!(
            "(has(c.envFrom) && c.envFrom.exists(e, {}))",
            sources.join(" || ")
        ));
    }
    (!alternatives.is_empty()).then(|| alternatives.join(" || "))
}

/// An envFrom entry `e` reading the same ConfigMap or Secret as `source`; any
/// envFrom at all when `source` names neither.
fn env_source(source: &Doc<'_>) -> String {
    for field in ["configMapRef", "secretRef"] {
        if let Some(name) = source
            .get(field)
            .and_then(|r| r.get("name"))
            .and_then(Doc::as_str)
        {
            return format!(
                "(has(e.{field}) && has(e.{field}.name) && e.{field}.name == {})",
                cel::string(name)
            );
        }
    }
    "true".into()
}
