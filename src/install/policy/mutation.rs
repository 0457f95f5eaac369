//! The JSONPatch a compiled policy applies: the same add operations the
//! engine's `patch::build` makes for a pod that gets this one template,
//! written as CEL lists that branch on the pod's shape where the engine
//! reads it (a parent present or absent, an annotation already set). The
//! template's objects are variables, each written once.

use std::sync::Arc;

use k8s_openapi::api::admissionregistration::v1::Variable;
use serde_json::Value;

use super::gates::has_annotation;
use super::{cel, variable};
use crate::facts::{
    DEFAULT_CONTAINER_ANNOTATION, Doc, INJECTED_LABEL, SAFE_TO_EVICT_ANNOTATION, STATUS_ANNOTATION,
};
use crate::template::{Object, Position, Template};

/// One `add` operation; `path` and `value` are CEL expressions.
fn add(path: &str, value: &str) -> String {
    format!("JSONPatch{{op: 'add', path: {path}, value: {value}}}")
}

/// A JSON pointer as a CEL string literal. Annotation keys hold `/`,
/// escaped here rather than with `jsonpatch.escapeKey` at admission.
fn pointer(tokens: &[&str]) -> String {
    let escaped: Vec<String> = tokens
        .iter()
        .map(|t| t.replace('~', "~0").replace('/', "~1"))
        .collect();
    cel::string(&format!("/{}", escaped.join("/")))
}

fn list(ops: &[String]) -> String {
    format!("[{}]", ops.join(", "))
}

/// The template's objects as variables: its init containers, its
/// containers as native sidecars and, for a classic template, as written;
/// its volumes and what the app containers get.
pub(super) fn objects(t: &Template, classic: bool) -> Vec<Variable> {
    let r = &t.rendered;
    let mut vars = Vec::new();
    let mut push = |name: &str, items: &[Arc<Object>]| {
        if !items.is_empty() {
            let items = items.iter().map(|o| o.value().clone()).collect();
            vars.push(variable(name, cel::literal(&Value::Array(items))));
        }
    };
    push("templateInitContainers", &r.init_containers);
    push("templateNativeSidecars", &r.native_containers);
    if classic {
        push("templateContainers", &r.containers);
    }
    push("templateVolumes", &r.volumes);
    push("templateVolumeMounts", &r.app_volume_mounts);
    push("templateEnv", &r.app_env);
    push("templateEnvFrom", &r.app_env_from);
    vars
}

/// Adds the items of variable `var` (`len` of them) to the optional array at
/// `/spec/<field>`: one operation creating it when absent, else one per item,
/// at the front in order or appended.
fn into_array(field: &str, items: &[(&str, usize)], front: bool) -> Option<String> {
    let total: usize = items.iter().map(|(_, n)| n).sum();
    if total == 0 {
        return None;
    }
    let whole: Vec<String> = items
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(var, _)| format!("variables.{var}"))
        .collect();
    let whole = add(&pointer(&["spec", field]), &whole.join(" + "));
    let mut each = Vec::new();
    for (var, n) in items {
        for i in 0..*n {
            let at = if front {
                each.len().to_string()
            } else {
                "-".into()
            };
            each.push(add(
                &pointer(&["spec", field, &at]),
                &format!("variables.{var}[{i}]"),
            ));
        }
    }
    Some(format!(
        "(has(object.spec.{field}) ? {} : [{whole}])",
        list(&each)
    ))
}

/// Where the template's containers go: natively, with its init containers
/// at `position`, or classically, appended to `containers`.
fn placement(t: &Template, native: bool) -> String {
    let r = &t.rendered;
    let front = t.spec.position == Position::BeforeUserInit;
    let sidecars = if native { r.containers.len() } else { 0 };
    let init = [
        ("templateInitContainers", r.init_containers.len()),
        ("templateNativeSidecars", sidecars),
    ];
    let mut parts: Vec<String> = into_array("initContainers", &init, front)
        .into_iter()
        .collect();
    if !native && !r.containers.is_empty() {
        let append = add(&pointer(&["spec", "containers", "-"]), "c");
        parts.push(format!("variables.templateContainers.map(c, {append})"));
    }
    format!("({})", parts.join(" + "))
}

/// The template's volumes; the gates made sure the pod has none of them.
fn volumes(t: &Template) -> Option<String> {
    into_array(
        "volumes",
        &[("templateVolumes", t.rendered.volumes.len())],
        false,
    )
}

/// Mounts, env and envFrom for every target container, by index: a list
/// created when the container has none, else appended to.
fn app(t: &Template) -> Vec<String> {
    let r = &t.rendered;
    let mut parts = Vec::new();
    for (field, var, n) in [
        (
            "volumeMounts",
            "templateVolumeMounts",
            r.app_volume_mounts.len(),
        ),
        ("env", "templateEnv", r.app_env.len()),
        ("envFrom", "templateEnvFrom", r.app_env_from.len()),
    ] {
        if n == 0 {
            continue;
        }
        let path = |tail: &str| {
            format!(
                "'/spec/containers/' + string(variables.apps.indexOf(c.name)) + '/{field}{tail}'"
            )
        };
        let create = add(&path(""), &format!("variables.{var}"));
        parts.push(format!(
            "variables.targets.filter(c, !has(c.{field})).map(c, {create})"
        ));
        for i in 0..n {
            let append = add(&path("/-"), &format!("variables.{var}[{i}]"));
            parts.push(format!(
                "variables.targets.filter(c, has(c.{field})).map(c, {append})"
            ));
        }
    }
    parts
}

fn scratch_volumes(t: &Template) -> Vec<&str> {
    t.rendered
        .volumes
        .iter()
        .filter(|v| v.get("emptyDir").is_some())
        .filter_map(|v| v.get("name").and_then(Doc::as_str))
        .collect()
}

/// The status, the default container when unset, and the emptyDirs the
/// autoscaler may evict, merged into the user's list as the engine does;
/// and the label of injected pods.
fn metadata(t: &Template, status: &str) -> Vec<String> {
    let meta = "object.metadata";
    let key = |k: &str| pointer(&["metadata", "annotations", k]);
    let mut parts = vec![
        format!(
            "(has({meta}.annotations) ? [] : [{}])",
            add(&pointer(&["metadata", "annotations"]), "{}")
        ),
        list(&[add(&key(STATUS_ANNOTATION), &cel::string(status))]),
        format!(
            "({} ? [] : [{}])",
            has_annotation(meta, DEFAULT_CONTAINER_ANNOTATION),
            add(
                &key(DEFAULT_CONTAINER_ANNOTATION),
                "object.spec.containers[0].name"
            )
        ),
    ];
    if !scratch_volumes(t).is_empty() {
        parts.push(format!(
            "(size(variables.evictableAdded) == 0 ? [] : [{}])",
            add(
                &key(SAFE_TO_EVICT_ANNOTATION),
                "(variables.evictable + variables.evictableAdded).join(',')"
            )
        ));
    }
    // Only where absent, as the engine: patches add, never overwrite.
    parts.push(format!(
        "(has({meta}.labels) ? [] : [{}])",
        add(&pointer(&["metadata", "labels"]), "{}")
    ));
    parts.push(format!(
        "(has({meta}.labels) && {} in {meta}.labels ? [] : [{}])",
        cel::string(INJECTED_LABEL),
        add(&pointer(&["metadata", "labels", INJECTED_LABEL]), "'true'")
    ));
    parts
}

/// The variables `metadata` reads for the safe-to-evict list, when the
/// template adds an emptyDir: the user's names, and those to add.
pub(super) fn evictable(t: &Template) -> Vec<Variable> {
    let scratch = scratch_volumes(t);
    if scratch.is_empty() {
        return Vec::new();
    }
    let meta = "object.metadata";
    vec![
        variable(
            "evictable",
            format!(
                "{} ? {meta}.annotations[{}].split(',').map(s, s.trim()).filter(s, s != '') : []",
                has_annotation(meta, SAFE_TO_EVICT_ANNOTATION),
                cel::string(SAFE_TO_EVICT_ANNOTATION)
            ),
        ),
        variable(
            "evictableAdded",
            format!(
                "{}.filter(n, !(n in variables.evictable))",
                cel::strings(scratch)
            ),
        ),
    ]
}

/// The whole JSONPatch expression: the operations when the pod is selected
/// and clear, none otherwise. A classic template in a pod whose
/// `restartPolicy` is not `Always` goes native, as the engine places it.
pub(super) fn expression(t: &Template, status: &str, classic: bool) -> String {
    let placed = if classic {
        format!(
            "(variables.restartsAlways ? {} : {})",
            placement(t, false),
            placement(t, true)
        )
    } else {
        placement(t, true)
    };
    let mut parts = vec![placed];
    parts.extend(volumes(t));
    parts.extend(app(t));
    parts.extend(metadata(t, status));
    format!("!variables.inject ? [] :\n  {}", parts.join("\n  + "))
}
