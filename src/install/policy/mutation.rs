//! The JSONPatch: the same pod the engine's `patch::build` makes, for
//! every template it injects, in its order.
//!
//! The order is the pod's request, known only at admission, so the
//! operations are laid out by slot: slot k holds the k-th injected
//! template's operations. Parents the pod lacks are created empty first;
//! init containers that go before the user's are inserted at index 0, the
//! last slot first, so they end up in the engine's order; everything else
//! is appended slot by slot. Each template's operations are a variable,
//! evaluated only for a template the pod gets.

use std::sync::Arc;

use k8s_openapi::api::admissionregistration::v1::Variable;
use serde_json::Value;

use super::clear::{at_path, clear};
use super::members::{Member, Shared, injecting, name_of, path_of, sharers, targets_c};
use super::select::{by_name, has_annotation};
use super::{cel, variable};
use crate::facts::{
    DEFAULT_CONTAINER_ANNOTATION, INJECTED_LABEL, SAFE_TO_EVICT_ANNOTATION, STATUS_ANNOTATION,
};
use crate::template::{Object, Position};

/// One `add` operation; `path` and `value` are CEL expressions. A plain
/// map: the API server declares the `JSONPatch` type only in the mutation's
/// own expression, which turns these into patches (`mutation`). Both values
/// are `dyn`, since a map literal's values must share one type.
fn add(path: &str, value: &str) -> String {
    format!("{{'path': dyn({path}), 'value': dyn({value})}}")
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

/// The pointer to field `field` of app container `c`.
fn in_container(field: &str) -> String {
    format!("'/spec/containers/' + string(variables.apps.indexOf(c.name)) + '/{field}'")
}

/// A template's objects as literal variables, each written once.
fn objects(m: &Member) -> Vec<Variable> {
    let r = &m.t.rendered;
    let mut vars = Vec::new();
    let mut push = |suffix: &str, items: &[Arc<Object>]| {
        if !items.is_empty() {
            let items = items.iter().map(|o| o.value().clone()).collect();
            vars.push(variable(
                &format!("{}{suffix}", m.var),
                cel::literal(&Value::Array(items)),
            ));
        }
    };
    push("Init", &r.init_containers);
    push("Native", &r.native_containers);
    if m.classic() {
        push("Classic", &r.containers);
    }
    push("Volumes", &r.volumes);
    push("Mounts", &r.app_volume_mounts);
    push("Env", &r.app_env);
    push("EnvFrom", &r.app_env_from);
    vars
}

/// `m` comes after `other` among the injected templates.
fn after(m: &Member, other: &Member) -> String {
    let at = |x: &Member| format!("variables.injected.indexOf({})", cel::string(&x.t.name));
    format!("({} >= 0 && {} < {})", at(other), at(other), at(m))
}

/// Whether a template injected before `m` already adds `item` (for app
/// items, to container `c`): then `m` reuses it, as the engine does.
fn added_before(all: &[Member], m: &Member, item: &Shared, per_container: bool) -> String {
    sharers(all, m, item)
        .iter()
        .map(|o| {
            if per_container {
                format!(" && !({} && {})", after(m, o), targets_c(o))
            } else {
                format!(" && !{}", after(m, o))
            }
        })
        .collect()
}

/// The init containers a template puts with the user's, in its order:
/// natively its init containers then its sidecars.
fn init_items(m: &Member, native: bool) -> Vec<String> {
    let r = &m.t.rendered;
    let mut items: Vec<String> = (0..r.init_containers.len())
        .map(|i| format!("{}[{i}]", m.v("Init")))
        .collect();
    if native {
        items.extend((0..r.native_containers.len()).map(|i| format!("{}[{i}]", m.v("Native"))));
    }
    items
}

/// The operations placing those init containers: inserted at the front
/// (in reverse, each at index 0) or appended.
fn init_ops(m: &Member, native: bool) -> String {
    let items = init_items(m, native);
    let ops: Vec<String> = if m.t.spec.position == Position::BeforeUserInit {
        items
            .iter()
            .rev()
            .map(|v| add(&pointer(&["spec", "initContainers", "0"]), v))
            .collect()
    } else {
        items
            .iter()
            .map(|v| add(&pointer(&["spec", "initContainers", "-"]), v))
            .collect()
    };
    format!("[{}]", ops.join(", "))
}

/// The init-container operations of `m`, native or classic by the pod.
fn placed(m: &Member) -> Option<String> {
    let (native, classic) = (init_ops(m, true), init_ops(m, false));
    if m.classic() {
        return Some(format!("(variables.restartsAlways ? {classic} : {native})"));
    }
    (native != "[]").then_some(native)
}

/// What one injecting template's conflict check reads: its objects, and
/// `<t>Clear`. Declared before `injected`, which reads them.
pub(super) fn checks(m: &Member) -> Vec<Variable> {
    let mut vars = objects(m);
    vars.push(variable(&format!("{}Clear", m.var), clear(m)));
    vars
}

/// One injecting template's operations (`Front`: init containers inserted
/// before the user's; `Rest`: everything appended), after `injected`,
/// which they read to reuse what a template before them added.
pub(super) fn operations(all: &[Member], m: &Member) -> Vec<Variable> {
    let r = &m.t.rendered;
    let mut vars = Vec::new();
    let mut rest = Vec::new();
    if let Some(ops) = placed(m) {
        if has_front(m) {
            vars.push(variable(&format!("{}Front", m.var), ops));
        } else {
            rest.push(ops);
        }
    }
    if m.classic() {
        let append = add(&pointer(&["spec", "containers", "-"]), "c");
        rest.push(format!(
            "(variables.restartsAlways ? {}.map(c, {append}) : [])",
            m.v("Classic")
        ));
    }
    if has_volumes(m) {
        let new: Vec<String> = r
            .volumes
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let name = cel::string(name_of(v));
                format!(
                    "(!(has(object.spec.volumes) && object.spec.volumes.exists(v, v.name == {name})){} ? [{}[{i}]] : [])",
                    added_before(all, m, &Shared::Volume(name_of(v).to_string()), false),
                    m.v("Volumes")
                )
            })
            .collect();
        vars.push(variable(&format!("{}NewVolumes", m.var), new.join(" + ")));
        let append = add(&pointer(&["spec", "volumes", "-"]), "v");
        rest.push(format!("{}.map(v, {append})", m.v("NewVolumes")));
    }
    rest.extend(app_ops(all, m));
    vars.push(variable(
        &format!("{}Rest", m.var),
        if rest.is_empty() {
            "[]".to_string()
        } else {
            rest.join("\n  + ")
        },
    ));
    vars
}

/// Mounts, env and envFrom for every target container, each unless the
/// container (or a template injected before) already has it identically.
fn app_ops(all: &[Member], m: &Member) -> Vec<String> {
    let r = &m.t.rendered;
    let mut ops = Vec::new();
    let fields = [
        ("volumeMounts", "Mounts", &r.app_volume_mounts),
        ("env", "Env", &r.app_env),
        ("envFrom", "EnvFrom", &r.app_env_from),
    ];
    for (field, suffix, items) in fields {
        for (i, o) in items.iter().enumerate() {
            let item = format!("{}[{i}]", m.v(suffix));
            let (present, shared) = match field {
                "volumeMounts" => (
                    format!("c.volumeMounts.exists(m, {})", at_path(o)),
                    Shared::Mount(path_of(o)),
                ),
                "env" => (
                    format!("c.env.exists(e, e.name == {})", cel::string(name_of(o))),
                    Shared::Env(name_of(o).to_string()),
                ),
                _ => (
                    format!("c.envFrom.exists(e, dyn(e) == {item})"),
                    Shared::EnvFrom(o.value().clone()),
                ),
            };
            let append = add(&format!("{} + '/-'", in_container(field)), &item);
            ops.push(format!(
                "object.spec.containers.filter(c, {} && !(has(c.{field}) && {present}){}).map(c, {append})",
                targets_c(m),
                added_before(all, m, &shared, true)
            ));
        }
    }
    ops
}

/// Parents every injected template adds to, created empty where the pod
/// has none (the engine creates them whole; the pod is the same).
fn parents(members: &[Member]) -> String {
    let injecting: Vec<&Member> = injecting(members).collect();
    let any_of = |pick: &dyn Fn(&Member) -> bool| -> Option<String> {
        let names: Vec<&str> = injecting
            .iter()
            .filter(|m| pick(m))
            .map(|m| m.t.name.as_str())
            .collect();
        (!names.is_empty())
            .then(|| format!("variables.injected.exists(n, n in {})", cel::strings(names)))
    };
    let mut parts = Vec::new();
    let always = any_of(&|m| !init_items(m, !m.classic()).is_empty());
    let when_native = any_of(&|m| m.classic() && init_items(m, false).is_empty());
    let init_needed = match (always, when_native) {
        (None, None) => None,
        (Some(a), None) => Some(a),
        (None, Some(n)) => Some(format!("!variables.restartsAlways && {n}")),
        (Some(a), Some(n)) => Some(format!("{a} || (!variables.restartsAlways && {n})")),
    };
    if let Some(needed) = init_needed {
        parts.push(format!(
            "(!has(object.spec.initContainers) && ({needed}) ? [{}] : [])",
            add(&pointer(&["spec", "initContainers"]), "[]")
        ));
    }
    if let Some(needed) = any_of(&|m| !m.t.rendered.volumes.is_empty()) {
        parts.push(format!(
            "(!has(object.spec.volumes) && {needed} ? [{}] : [])",
            add(&pointer(&["spec", "volumes"]), "[]")
        ));
    }
    for (field, pick) in [
        (
            "volumeMounts",
            (|m: &Member| !m.t.rendered.app_volume_mounts.is_empty()) as fn(&Member) -> bool,
        ),
        ("env", |m: &Member| !m.t.rendered.app_env.is_empty()),
        ("envFrom", |m: &Member| {
            !m.t.rendered.app_env_from.is_empty()
        }),
    ] {
        let targeting: Vec<String> = injecting
            .iter()
            .filter(|m| pick(m))
            .map(|m| {
                format!(
                    "({} in variables.injected && {})",
                    cel::string(&m.t.name),
                    targets_c(m)
                )
            })
            .collect();
        if targeting.is_empty() {
            continue;
        }
        parts.push(format!(
            "object.spec.containers.filter(c, !has(c.{field}) && ({})).map(c, {})",
            targeting.join(" || "),
            add(&in_container(field), "[]")
        ));
    }
    if parts.is_empty() {
        "[]".into()
    } else {
        parts.join("\n  + ")
    }
}

/// Whether `m` declares `<t>Front`: init containers before the user's.
fn has_front(m: &Member) -> bool {
    m.t.spec.position == Position::BeforeUserInit
        && (m.classic() || !init_items(m, true).is_empty())
}

/// Whether `m` declares `<t>NewVolumes` and `<t>Scratch`.
fn has_volumes(m: &Member) -> bool {
    !m.t.rendered.volumes.is_empty()
}

/// `<slot k>` for k in `slots`: the k-th injected template's `suffix`
/// variable, for the templates that declare it (`declares`).
fn slots(
    members: &[Member],
    suffix: &str,
    declares: fn(&Member) -> bool,
    slots: impl Iterator<Item = usize>,
) -> Vec<String> {
    let with: Vec<&Member> = injecting(members).filter(|m| declares(m)).collect();
    if with.is_empty() {
        return Vec::new();
    }
    slots
        .map(|k| {
            let at = format!("variables.injected[{k}]");
            format!(
                "(size(variables.injected) > {k} ? {} : [])",
                by_name(&at, with.iter().copied(), |m| Some(m.v(suffix)), "[]")
            )
        })
        .collect()
}

/// The status record, built as the engine's serializer writes it: the
/// injected templates' names and hashes, then the names of what they add.
fn status(members: &[Member]) -> Variable {
    let injecting: Vec<&Member> = injecting(members).collect();
    let json = |s: &str| serde_json::to_string(s).unwrap_or_default();
    let templates = by_name(
        "n",
        injecting.iter().copied(),
        |m| {
            Some(cel::string(&format!(
                "{{\"name\":{},\"hash\":{}}}",
                json(&m.t.name),
                json(&m.t.hash)
            )))
        },
        "''",
    );
    let mut text =
        format!("'{{\"templates\":[' + variables.injected.map(n, {templates}).join(',') + ']'");
    let spec = |m: &Member, key: &str| -> Vec<String> {
        match key {
            "containers" => m.t.spec.containers.iter().map(|c| c.name.clone()).collect(),
            "initContainers" => {
                m.t.spec
                    .init_containers
                    .iter()
                    .map(|c| c.name.clone())
                    .collect()
            }
            _ => m.t.spec.volumes.iter().map(|v| v.name.clone()).collect(),
        }
    };
    for key in ["containers", "initContainers", "volumes"] {
        let fragment = |m: &Member| {
            let names: Vec<String> = spec(m, key).iter().map(|n| json(n)).collect();
            (!names.is_empty()).then(|| cel::string(&names.join(",")))
        };
        let with: Vec<&str> = injecting
            .iter()
            .filter(|m| fragment(m).is_some())
            .map(|m| m.t.name.as_str())
            .collect();
        if with.is_empty() {
            continue;
        }
        let list = cel::strings(with);
        text.push_str(&format!(
            "\n  + (variables.injected.exists(n, n in {list}) ? ',\"{key}\":[' + variables.injected.filter(n, n in {list}).map(n, {}).join(',') + ']' : '')",
            by_name("n", injecting.iter().copied(), fragment, "''")
        ));
    }
    text.push_str(" + '}'");
    variable("statusValue", text)
}

/// The status, the default container when unset, the emptyDirs the
/// autoscaler may evict merged into the user's list, and the label of
/// injected pods: as the engine writes them.
fn metadata(members: &[Member]) -> (Vec<Variable>, String) {
    let meta = "object.metadata";
    let key = |k: &str| pointer(&["metadata", "annotations", k]);
    let mut vars = vec![status(members)];
    let mut injected_any = vec![
        format!(
            "({} ? [] : [{}])",
            has_annotation(meta, DEFAULT_CONTAINER_ANNOTATION),
            add(
                &key(DEFAULT_CONTAINER_ANNOTATION),
                "object.spec.containers[0].name"
            )
        ),
        format!(
            "(has({meta}.labels) ? [] : [{}])",
            add(&pointer(&["metadata", "labels"]), "{}")
        ),
        // Only where absent, as the engine: patches add, never overwrite.
        format!(
            "(has({meta}.labels) && {} in {meta}.labels ? [] : [{}])",
            cel::string(INJECTED_LABEL),
            add(&pointer(&["metadata", "labels", INJECTED_LABEL]), "'true'")
        ),
    ];
    let scratch = slots(
        members,
        "Scratch",
        has_volumes,
        0..injecting(members).count(),
    );
    if !scratch.is_empty() {
        for m in injecting(members).filter(|m| has_volumes(m)) {
            vars.push(variable(
                &format!("{}Scratch", m.var),
                format!(
                    "{}.filter(v, has(v.emptyDir)).map(v, v.name)",
                    m.v("NewVolumes")
                ),
            ));
        }
        vars.push(variable(
            "evictable",
            format!(
                "{} ? {meta}.annotations[{}].split(',').map(s, s.trim()).filter(s, s != '') : []",
                has_annotation(meta, SAFE_TO_EVICT_ANNOTATION),
                cel::string(SAFE_TO_EVICT_ANNOTATION)
            ),
        ));
        vars.push(variable(
            "evictableAdded",
            format!(
                "({}).filter(n, !(n in variables.evictable))",
                scratch.join(" + ")
            ),
        ));
        injected_any.push(format!(
            "(size(variables.evictableAdded) == 0 ? [] : [{}])",
            add(
                &key(SAFE_TO_EVICT_ANNOTATION),
                "(variables.evictable + variables.evictableAdded).join(',')"
            )
        ));
    }
    let ops = format!(
        "(size(variables.injected) == 0 && !variables.asked ? [] :\n    (has({meta}.annotations) ? [] : [{}])\n    + [{}])\n  + (size(variables.injected) == 0 ? [] :\n    {})",
        add(&pointer(&["metadata", "annotations"]), "{}"),
        add(&key(STATUS_ANNOTATION), "variables.statusValue"),
        injected_any.join("\n    + ")
    );
    (vars, ops)
}

/// The status variables and the mutation: nothing for a pod that gets nothing and asked for nothing, or
/// that the policy leaves to the webhook; else the engine's change.
pub(super) fn mutation(members: &[Member]) -> (Vec<Variable>, String) {
    let n = injecting(members).count();
    let mut parts = vec![parents(members)];
    parts.extend(slots(members, "Front", has_front, (0..n).rev()));
    parts.extend(slots(members, "Rest", |_| true, 0..n));
    let (vars, meta_ops) = metadata(members);
    parts.push(meta_ops);
    // The one place `JSONPatch` is declared; the result must be exactly a
    // list of them.
    let expression = format!(
        "size(variables.order) == 0 && !variables.asked || variables.blocked != '' ? [] : (\n  {}\n).map(p, JSONPatch{{op: 'add', path: p.path, value: p.value}})",
        parts.join("\n  + ")
    );
    (vars, expression)
}

/// What the checks and operations read of the pod's shape: whether it
/// restarts always (where a classic template goes), and its app
/// containers' names (their indexes in patch paths).
pub(super) fn shape(members: &[Member]) -> Vec<Variable> {
    let mut vars = Vec::new();
    if members.iter().any(|m| m.injects() && m.classic()) {
        vars.push(variable(
            "restartsAlways",
            "!has(object.spec.restartPolicy) || object.spec.restartPolicy == 'Always'",
        ));
    }
    if members
        .iter()
        .any(|m| m.injects() && !m.t.spec.app.is_empty())
    {
        vars.push(variable("apps", "object.spec.containers.map(c, c.name)"));
    }
    vars
}
