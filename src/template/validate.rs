//! Validation on load: every template that reaches the engine is one the
//! engine can inject without producing a pod the API server rejects.

use std::collections::HashSet;

use k8s_openapi::api::core::v1::{Container, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::Value;

use super::parameters::{self, FieldKind, ParameterType, Target};
use super::{Pattern, QosPolicy, SidecarTemplateSpec};
use crate::facts::{Quantity, is_dns_label};

/// One problem in a template, with the path of the field it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

struct Errors(Vec<FieldError>);

impl Errors {
    fn push(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError {
            field: field.into(),
            message: message.into(),
        });
    }
}

/// Validates a template; `raw` is the spec as written, compared with the typed
/// model to report fields the model does not know (typos would otherwise vanish).
/// Errors come in the order of the spec: name, unknown fields, pattern,
/// volumes, containers, app, selectors.
pub(super) fn validate(
    name: &str,
    spec: &SidecarTemplateSpec,
    raw: Option<&Value>,
) -> Result<(), Vec<FieldError>> {
    let mut errs = Errors(Vec::new());
    if let Err(m) = dns_label(name) {
        errs.push("metadata.name", m);
    }
    if let Some(raw) = raw {
        match serde_json::to_value(spec) {
            Ok(typed) => {
                for field in unknown_fields(raw, &typed, "spec") {
                    errs.push(field, "unknown field");
                }
            }
            Err(e) => errs.push("spec", format!("cannot be encoded as JSON: {e}")),
        }
    }
    pattern(spec, &mut errs);
    let volumes = volumes(spec, &mut errs);
    let mut names = HashSet::new();
    let mut ports = HashSet::new();
    let lists = [
        ("spec.initContainers", &spec.init_containers),
        ("spec.containers", &spec.containers),
    ];
    for (list, containers) in lists {
        for (i, c) in containers.iter().enumerate() {
            let field = format!("{list}[{i}]");
            container(&field, c, &volumes, &mut names, &mut ports, &mut errs);
        }
    }
    app(spec, &volumes, &mut errs);
    if spec.qos == QosPolicy::Preserve {
        for (list, containers) in lists {
            for (i, c) in containers.iter().enumerate() {
                let limits = c.resources.as_ref().and_then(|r| r.limits.as_ref());
                for r in ["cpu", "memory"] {
                    if !limits.is_some_and(|l| l.contains_key(r)) {
                        errs.push(
                            format!("{list}[{i}].resources.limits.{r}"),
                            "is required by qos: preserve (requests are set to the limits in Guaranteed pods)",
                        );
                    }
                }
            }
        }
    }
    parameters(spec, &mut errs);
    for (field, sel) in [
        ("spec.selector", &spec.selector),
        ("spec.namespaceSelector", &spec.namespace_selector),
    ] {
        if let Some(sel) = sel {
            selector(field, sel, &mut errs);
        }
    }
    if errs.0.is_empty() {
        Ok(())
    } else {
        Err(errs.0)
    }
}

/// Each parameter: a unique DNS-label name, bounds that fit its type, a
/// default that passes them, and targets that name a field of the right
/// core/v1 type in an object the template has.
fn parameters(spec: &SidecarTemplateSpec, errs: &mut Errors) {
    let json = serde_json::to_value(spec).unwrap_or_default();
    let mut seen = HashSet::new();
    // Each field is set by one parameter: two would make the order decide.
    let mut set_by: std::collections::HashMap<String, &str> = std::collections::HashMap::new();
    for (i, p) in spec.parameters.iter().enumerate() {
        let field = format!("spec.parameters[{i}]");
        unique_name(&field, "parameter", &p.name, &mut seen, errs);
        let numeric = matches!(p.kind, ParameterType::Quantity | ParameterType::Integer);
        if !numeric && (p.min.is_some() || p.max.is_some()) {
            errs.push(
                &field,
                "min and max are for quantity and integer parameters",
            );
        }
        if p.kind != ParameterType::String && (p.pattern.is_some() || !p.values.is_empty()) {
            errs.push(&field, "pattern and values are for string parameters");
        }
        if let Some(pattern) = &p.pattern
            && let Err(e) = parameters::whole(pattern)
        {
            errs.push(
                format!("{field}.pattern"),
                format!("is not a valid regular expression: {e}"),
            );
        }
        for (bound, value) in [("min", &p.min), ("max", &p.max)] {
            let Some(value) = value else { continue };
            let text = parameters::text(value);
            let ok = match p.kind {
                ParameterType::Quantity => Quantity::parse(&text).is_ok(),
                _ => text.parse::<i64>().is_ok(),
            };
            if numeric && !ok {
                errs.push(
                    format!("{field}.{bound}"),
                    format!("{text:?} is not a valid {}", p.kind.as_str()),
                );
            }
        }
        if let Err(rule) = p.check(&parameters::text(&p.default)) {
            errs.push(
                format!("{field}.default"),
                format!("{:?} {rule}", parameters::text(&p.default)),
            );
        }
        if p.targets.is_empty() {
            errs.push(
                format!("{field}.targets"),
                "needs at least one field to set",
            );
        }
        for (j, t) in p.targets.iter().enumerate() {
            let at = format!("{field}.targets[{j}]");
            match Target::parse(t) {
                Err(m) => errs.push(at, m),
                Ok(target) if !target.accepts(p.kind) => errs.push(
                    at,
                    format!(
                        "{t} holds a {}, not a {} parameter",
                        match target.kind {
                            FieldKind::Quantity => "quantity",
                            FieldKind::Port => "port number (integer)",
                            FieldKind::Text => "string",
                        },
                        p.kind.as_str()
                    ),
                ),
                Ok(target) => {
                    if let Err(m) = target.exists_in(&json) {
                        errs.push(at.clone(), format!("{t}: {m}"));
                    }
                    match set_by.get(&target.to_string()) {
                        Some(other) => errs.push(
                            at.clone(),
                            format!("{target} is set by parameter {other} too"),
                        ),
                        None => {
                            set_by.insert(target.to_string(), &p.name);
                        }
                    }
                    let bound = |b: &Option<IntOrString>| {
                        b.as_ref()
                            .and_then(|b| parameters::text(b).parse::<i64>().ok())
                    };
                    let in_range = |b: Option<i64>| b.is_some_and(|b| (1..=65535).contains(&b));
                    if target.kind == FieldKind::Port
                        && !(in_range(bound(&p.min)) && in_range(bound(&p.max)))
                    {
                        errs.push(
                            at,
                            format!(
                                "{t} is a port: the parameter needs min and max within 1..65535"
                            ),
                        );
                    }
                }
            }
        }
    }
}

/// `init` has only init containers; the other patterns need a container.
fn pattern(spec: &SidecarTemplateSpec, errs: &mut Errors) {
    match spec.pattern {
        Pattern::Init => {
            if !spec.containers.is_empty() {
                errs.push(
                    "spec.containers",
                    "pattern init runs to completion: use initContainers only",
                );
            }
            if spec.init_containers.is_empty() {
                errs.push("spec.initContainers", "pattern init needs at least one");
            }
        }
        p => {
            if spec.containers.is_empty() {
                errs.push(
                    "spec.containers",
                    format!("pattern {} needs at least one container", p.as_str()),
                );
            }
        }
    }
}

/// `<field>.name` is a DNS label, and no other `kind` in `seen` has it.
fn unique_name<'s>(
    field: &str,
    kind: &str,
    name: &'s str,
    seen: &mut HashSet<&'s str>,
    errs: &mut Errors,
) {
    if let Err(m) = dns_label(name) {
        errs.push(format!("{field}.name"), m);
    }
    if !seen.insert(name) {
        errs.push(
            format!("{field}.name"),
            format!("duplicate {kind} {name:?}"),
        );
    }
}

/// Checks the volumes; returns their names, for the mounts to be checked against.
fn volumes<'s>(spec: &'s SidecarTemplateSpec, errs: &mut Errors) -> HashSet<&'s str> {
    let volumes: HashSet<&str> = spec.volumes.iter().map(|v| v.name.as_str()).collect();
    let mut seen = HashSet::new();
    for (i, v) in spec.volumes.iter().enumerate() {
        let field = format!("spec.volumes[{i}]");
        unique_name(&field, "volume", &v.name, &mut seen, errs);
        if let Some(limit) = v.empty_dir.as_ref().and_then(|e| e.size_limit.as_ref())
            && let Err(m) = Quantity::parse(&limit.0)
        {
            errs.push(format!("{field}.emptyDir.sizeLimit"), m.to_string());
        }
    }
    volumes
}

/// What the template adds to the app containers.
fn app(spec: &SidecarTemplateSpec, volumes: &HashSet<&str>, errs: &mut Errors) {
    let app = &spec.app;
    for (i, pattern) in app.containers.iter().enumerate() {
        if pattern.is_empty() {
            errs.push(format!("spec.app.containers[{i}]"), "must not be empty");
        }
    }
    mounts("spec.app.volumeMounts", &app.volume_mounts, volumes, errs);
    let mut env = HashSet::new();
    for (i, e) in app.env.iter().enumerate() {
        if e.name.is_empty() {
            errs.push(format!("spec.app.env[{i}].name"), "must not be empty");
        } else if !env.insert(e.name.as_str()) {
            errs.push(
                format!("spec.app.env[{i}].name"),
                format!("duplicate env {:?}", e.name),
            );
        }
    }
}

fn container<'a>(
    field: &str,
    c: &'a Container,
    volumes: &HashSet<&str>,
    names: &mut HashSet<&'a str>,
    ports: &mut HashSet<(i32, &'a str)>,
    errs: &mut Errors,
) {
    if let Err(m) = dns_label(&c.name) {
        errs.push(format!("{field}.name"), m);
    } else if !names.insert(c.name.as_str()) {
        errs.push(
            format!("{field}.name"),
            format!("duplicate container {:?}", c.name),
        );
    }
    if c.image.as_deref().is_none_or(str::is_empty) {
        errs.push(format!("{field}.image"), "must be set");
    }
    if c.restart_policy.is_some() {
        errs.push(
            format!("{field}.restartPolicy"),
            "is set by Tandem: choose spec.lifecycle instead",
        );
    }
    for (i, p) in c.ports.iter().flatten().enumerate() {
        let pf = format!("{field}.ports[{i}]");
        if !(1..=65535).contains(&p.container_port) {
            errs.push(format!("{pf}.containerPort"), "must be between 1 and 65535");
        }
        let protocol = p.protocol.as_deref().unwrap_or("TCP");
        if !ports.insert((p.container_port, protocol)) {
            errs.push(
                format!("{pf}.containerPort"),
                format!(
                    "{}/{protocol} is used twice in this template",
                    p.container_port
                ),
            );
        }
    }
    mounts(
        &format!("{field}.volumeMounts"),
        c.volume_mounts.as_deref().unwrap_or_default(),
        volumes,
        errs,
    );
    if let Some(r) = &c.resources {
        resources(&format!("{field}.resources"), r, errs);
    }
}

fn mounts(
    field: &str,
    mounts: &[k8s_openapi::api::core::v1::VolumeMount],
    volumes: &HashSet<&str>,
    errs: &mut Errors,
) {
    let mut paths = HashSet::new();
    for (i, m) in mounts.iter().enumerate() {
        let f = format!("{field}[{i}]");
        if !volumes.contains(m.name.as_str()) {
            errs.push(
                format!("{f}.name"),
                format!("volume {:?} is not in spec.volumes", m.name),
            );
        }
        if !m.mount_path.starts_with('/') {
            errs.push(format!("{f}.mountPath"), "must be an absolute path");
        } else if !paths.insert(m.mount_path.trim_end_matches('/')) {
            errs.push(
                format!("{f}.mountPath"),
                format!("{:?} is mounted twice", m.mount_path),
            );
        }
    }
}

fn resources(field: &str, r: &ResourceRequirements, errs: &mut Errors) {
    for (kind, list) in [("requests", &r.requests), ("limits", &r.limits)] {
        for (name, q) in list.iter().flatten() {
            if let Err(m) = Quantity::parse(&q.0) {
                errs.push(format!("{field}.{kind}.{name}"), m.to_string());
            }
        }
    }
}

fn selector(field: &str, sel: &LabelSelector, errs: &mut Errors) {
    for (i, e) in sel.match_expressions.iter().flatten().enumerate() {
        let f = format!("{field}.matchExpressions[{i}]");
        let has_values = e.values.as_ref().is_some_and(|v| !v.is_empty());
        match e.operator.as_str() {
            "In" | "NotIn" if !has_values => {
                errs.push(format!("{f}.values"), "In and NotIn need values")
            }
            "Exists" | "DoesNotExist" if has_values => errs.push(
                format!("{f}.values"),
                "Exists and DoesNotExist take no values",
            ),
            "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
            other => errs.push(
                format!("{f}.operator"),
                format!("{other:?} is not In, NotIn, Exists or DoesNotExist"),
            ),
        }
    }
}

/// Paths of keys present in `raw` that `typed` (its typed round trip) lost:
/// fields the model does not know, which a typed reader drops silently.
pub fn unknown_fields(raw: &Value, typed: &Value, path: &str) -> Vec<String> {
    let mut out = Vec::new();
    collect_unknown(raw, typed, path, &mut out);
    out
}

fn collect_unknown(raw: &Value, typed: &Value, path: &str, out: &mut Vec<String>) {
    match (raw, typed) {
        (Value::Object(r), Value::Object(t)) => {
            for (k, v) in r {
                let p = format!("{path}.{k}");
                match t.get(k) {
                    Some(tv) => collect_unknown(v, tv, &p, out),
                    None if v.is_null() => {}
                    None => out.push(p),
                }
            }
        }
        (Value::Array(r), Value::Array(t)) => {
            for (i, (rv, tv)) in r.iter().zip(t).enumerate() {
                collect_unknown(rv, tv, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// A DNS-1123 label: what Kubernetes requires of container and volume names.
pub(super) fn dns_label(name: &str) -> Result<(), String> {
    if !is_dns_label(name) {
        Err(format!(
            "{name:?} is not a DNS-1123 label (lower-case letters, digits and '-', at most 63)"
        ))
    } else {
        Ok(())
    }
}
