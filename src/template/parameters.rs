//! Parameters: the few fields of a template that its author lets a pod (or
//! its namespace) set, each typed, bounded, and aimed at named fields.
//!
//! A target names one field of one object the template adds:
//! `containers[NAME].FIELD`, `initContainers[NAME].FIELD`,
//! `volumes[NAME].emptyDir.sizeLimit` or `app.env[NAME].value`, where a
//! container's FIELD is `image`, `resources.(requests|limits).RESOURCE`,
//! `env[NAME].value` or `ports[NAME].containerPort`. Nothing is substituted
//! inside strings, so nothing can be mistaken for Kubernetes' `$(VAR)` or a
//! chart's `{{ }}`.

use std::fmt;

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::facts::Quantity;

/// A parameter as the template declares it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Parameter {
    /// What the annotation `<template>.tandem.dev/<name>` sets (a DNS label).
    pub name: String,
    #[serde(rename = "type")]
    pub kind: ParameterType,
    /// The value when neither the pod nor its namespace sets one.
    pub default: IntOrString,
    /// Lowest value, for quantities and integers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<IntOrString>,
    /// Highest value, for quantities and integers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<IntOrString>,
    /// A regular expression (RE2 syntax, as CEL's `matches()`) a string must match whole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// The only values a string may take.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
    /// The fields the value is written to, e.g. `containers[log-shipper].resources.requests.cpu`.
    pub targets: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// `pattern`, compiled on first use: admission checks values against
    /// it, and compiling costs far more than matching.
    #[serde(skip)]
    #[schemars(skip)]
    pub compiled: Compiled,
}

/// A lazily compiled pattern; it takes no part in equality or output.
#[derive(Clone, Debug, Default)]
pub struct Compiled(std::sync::OnceLock<Result<regex::Regex, String>>);

impl PartialEq for Compiled {
    fn eq(&self, _: &Compiled) -> bool {
        true
    }
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum ParameterType {
    String,
    Quantity,
    Integer,
    Boolean,
}

impl ParameterType {
    pub fn as_str(self) -> &'static str {
        match self {
            ParameterType::String => "string",
            ParameterType::Quantity => "quantity",
            ParameterType::Integer => "integer",
            ParameterType::Boolean => "boolean",
        }
    }
}

/// The text of an int-or-string value, as an annotation would carry it.
pub fn text(v: &IntOrString) -> String {
    match v {
        IntOrString::Int(i) => i.to_string(),
        IntOrString::String(s) => s.clone(),
    }
}

/// What kind of value a target field holds in core/v1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldKind {
    /// `image`, an env var's `value`: any parameter type, written as text
    /// (see [`Target::write`]).
    Text,
    /// `resources.*.*`, `emptyDir.sizeLimit`.
    Quantity,
    /// `containerPort`.
    Port,
}

/// Which list of the template a target's object is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum List {
    Containers,
    InitContainers,
    Volumes,
    AppEnv,
}

impl List {
    pub fn as_str(self) -> &'static str {
        match self {
            List::Containers => "containers",
            List::InitContainers => "initContainers",
            List::Volumes => "volumes",
            List::AppEnv => "app.env",
        }
    }
}

/// A parsed target: the object (list and name) and the field path inside
/// it, as JSON keys; a `[NAME]` step inside the field selects a list item
/// by name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub list: List,
    pub object: String,
    pub steps: Vec<Step>,
    pub kind: FieldKind,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    Key(String),
    /// The item of a list (`env`, `ports`) with this `name`.
    Named(String, String),
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}[{}]", self.list.as_str(), self.object)?;
        for s in &self.steps {
            match s {
                Step::Key(k) => write!(f, ".{k}")?,
                Step::Named(list, name) => write!(f, ".{list}[{name}]")?,
            }
        }
        Ok(())
    }
}

const RESOURCES: [&str; 3] = ["cpu", "memory", "ephemeral-storage"];

/// `word[NAME]` → (`word`, `NAME`).
fn indexed(piece: &str) -> Option<(&str, &str)> {
    let (word, rest) = piece.split_once('[')?;
    let name = rest.strip_suffix(']')?;
    (!word.is_empty() && !name.is_empty() && !name.contains(['[', ']'])).then_some((word, name))
}

/// Splits at dots outside brackets (a name may not hold a dot anyway, but
/// an env var's may).
fn pieces(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0usize, 0);
    for (i, c) in s.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth = depth.saturating_sub(1),
            '.' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

const SYNTAX: &str = "a target is containers[NAME].FIELD, initContainers[NAME].FIELD, volumes[NAME].emptyDir.sizeLimit or app.env[NAME].value, \
where FIELD is image, resources.requests.RESOURCE, resources.limits.RESOURCE, env[NAME].value or ports[NAME].containerPort";

impl Target {
    pub fn parse(s: &str) -> Result<Target, String> {
        let bad = || format!("{s:?} is not a target: {SYNTAX}");
        let parts = pieces(s);
        let (head, rest) = parts.split_first().ok_or_else(bad)?;
        if *head == "app" {
            return match rest {
                [env, "value"] => {
                    let (word, name) = indexed(env).filter(|(w, _)| *w == "env").ok_or_else(bad)?;
                    debug_assert_eq!(word, "env");
                    Ok(Target {
                        list: List::AppEnv,
                        object: name.to_string(),
                        steps: vec![Step::Key("value".into())],
                        kind: FieldKind::Text,
                    })
                }
                _ => Err(bad()),
            };
        }
        let (word, object) = indexed(head).ok_or_else(bad)?;
        let list = match word {
            "containers" => List::Containers,
            "initContainers" => List::InitContainers,
            "volumes" => List::Volumes,
            _ => return Err(bad()),
        };
        let key = |k: &str| Step::Key(k.to_string());
        let (steps, kind) = match (list, rest) {
            (List::Volumes, ["emptyDir", "sizeLimit"]) => {
                (vec![key("emptyDir"), key("sizeLimit")], FieldKind::Quantity)
            }
            (List::Volumes, _) => return Err(bad()),
            (_, ["image"]) => (vec![key("image")], FieldKind::Text),
            (_, ["resources", side @ ("requests" | "limits"), resource])
                if RESOURCES.contains(resource) =>
            {
                (
                    vec![key("resources"), key(side), key(resource)],
                    FieldKind::Quantity,
                )
            }
            (_, [item, field]) => match (indexed(item), *field) {
                (Some(("env", name)), "value") => (
                    vec![Step::Named("env".into(), name.into()), key("value")],
                    FieldKind::Text,
                ),
                (Some(("ports", name)), "containerPort") => (
                    vec![
                        Step::Named("ports".into(), name.into()),
                        key("containerPort"),
                    ],
                    FieldKind::Port,
                ),
                _ => return Err(bad()),
            },
            _ => return Err(bad()),
        };
        Ok(Target {
            list,
            object: object.to_string(),
            steps,
            kind,
        })
    }

    /// Whether a parameter of type `t` may set this field.
    pub fn accepts(&self, t: ParameterType) -> bool {
        match self.kind {
            FieldKind::Text => true,
            FieldKind::Quantity => t == ParameterType::Quantity,
            FieldKind::Port => t == ParameterType::Integer,
        }
    }

    /// The object in the spec's JSON (`containers`, …, as the spec
    /// serializes), `None` when the template has no such object.
    fn object_mut<'v>(&self, spec: &'v mut Value) -> Option<&'v mut Value> {
        let items = match self.list {
            List::AppEnv => spec.get_mut("app")?.get_mut("env")?,
            l => spec.get_mut(l.as_str())?,
        };
        items
            .as_array_mut()?
            .iter_mut()
            .find(|o| o.get("name").and_then(Value::as_str) == Some(self.object.as_str()))
    }

    /// Whether the named objects on the way exist in `spec` (its JSON): the
    /// template's object, and an env var or port named in the field.
    pub fn exists_in(&self, spec: &Value) -> Result<(), String> {
        let mut spec = spec.clone();
        let object = self.object_mut(&mut spec).ok_or_else(|| {
            format!(
                "the template has no {} named {}",
                self.list.as_str(),
                self.object
            )
        })?;
        let mut at = object;
        for step in &self.steps {
            match step {
                Step::Key(k) => {
                    if !at.is_object() {
                        break;
                    }
                    let Some(next) = at.get_mut(k) else { break };
                    at = next;
                }
                Step::Named(list, name) => {
                    at = at
                        .get_mut(list)
                        .and_then(Value::as_array_mut)
                        .and_then(|items| {
                            items
                                .iter_mut()
                                .find(|o| o.get("name").and_then(Value::as_str) == Some(name))
                        })
                        .ok_or_else(|| {
                            format!(
                                "{}[{}] has no {list} entry named {name}",
                                self.list.as_str(),
                                self.object
                            )
                        })?;
                }
            }
        }
        Ok(())
    }

    /// Writes `value` into the field in `spec` (its JSON), creating the
    /// objects on the way (`resources`, `requests`). `exists_in` held. A
    /// text field (an env var's value, an image) gets an integer as text.
    pub fn write(&self, spec: &mut Value, value: Value) {
        let value = match (self.kind, value) {
            (FieldKind::Text, Value::Number(n)) => Value::String(n.to_string()),
            (_, v) => v,
        };
        let Some(mut at) = self.object_mut(spec) else {
            return;
        };
        for step in &self.steps {
            let next = match step {
                Step::Key(k) => {
                    if !at.is_object() {
                        *at = Value::Object(Default::default());
                    }
                    at.as_object_mut()
                        .map(|m| m.entry(k.clone()).or_insert(Value::Null))
                }
                Step::Named(list, name) => {
                    at.get_mut(list)
                        .and_then(Value::as_array_mut)
                        .and_then(|items| {
                            items
                                .iter_mut()
                                .find(|o| o.get("name").and_then(Value::as_str) == Some(name))
                        })
                }
            };
            let Some(next) = next else { return };
            at = next;
        }
        *at = value;
    }
}

/// Why a value is refused: the rule it breaks, for the warning.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

impl Parameter {
    /// Checks `value` (as an annotation carries it) against the type and
    /// bounds; returns it as the JSON the targets get.
    pub fn check(&self, value: &str) -> Result<Value, Refused> {
        let refuse = |rule: String| Err(Refused(rule));
        match self.kind {
            ParameterType::String => {
                if !self.values.is_empty() && !self.values.iter().any(|v| v == value) {
                    return refuse(format!("must be one of {}", self.values.join(", ")));
                }
                if let Some(p) = &self.pattern {
                    let re = self
                        .compiled
                        .0
                        .get_or_init(|| whole(p).map_err(|e| e.to_string()));
                    match re {
                        Ok(re) if re.is_match(value) => {}
                        Ok(_) => return refuse(format!("must match {p}")),
                        Err(e) => return refuse(format!("pattern {p} is not valid: {e}")),
                    }
                }
                Ok(Value::String(value.to_string()))
            }
            ParameterType::Boolean => match value {
                "true" | "false" => Ok(Value::String(value.to_string())),
                _ => refuse("must be true or false".into()),
            },
            ParameterType::Integer => {
                let Ok(n) = value.trim().parse::<i64>() else {
                    return refuse("must be an integer".into());
                };
                let bound =
                    |b: &Option<IntOrString>| b.as_ref().and_then(|b| text(b).parse::<i64>().ok());
                if let Some(min) = bound(&self.min).filter(|min| n < *min) {
                    return refuse(format!("must be at least {min}"));
                }
                if let Some(max) = bound(&self.max).filter(|max| n > *max) {
                    return refuse(format!("must be at most {max}"));
                }
                Ok(Value::from(n))
            }
            ParameterType::Quantity => {
                let Ok(q) = Quantity::parse(value) else {
                    return refuse("must be a Kubernetes quantity (e.g. 250m, 64Mi)".into());
                };
                if q.0 < 0 {
                    return refuse("must not be negative".into());
                }
                let bound = |b: &Option<IntOrString>| {
                    let b = text(b.as_ref()?);
                    Quantity::parse(&b).ok().map(|q| (b, q))
                };
                if let Some((min, m)) = bound(&self.min)
                    && q < m
                {
                    return refuse(format!("must be at least {min}"));
                }
                if let Some((max, m)) = bound(&self.max)
                    && q > m
                {
                    return refuse(format!("must be at most {max}"));
                }
                Ok(Value::String(value.trim().to_string()))
            }
        }
    }

    /// The annotation that sets this parameter for `template`.
    pub fn annotation(&self, template: &str) -> String {
        annotation(template, &self.name)
    }
}

/// `<template>.tandem.dev/<parameter>`.
pub fn annotation(template: &str, parameter: &str) -> String {
    format!("{template}.tandem.dev/{parameter}")
}

/// The parameter an annotation key names for `template`, if it is one of
/// that template's parameter annotations.
pub fn parameter_of<'k>(key: &'k str, template: &str) -> Option<&'k str> {
    key.strip_prefix(template)?.strip_prefix(".tandem.dev/")
}

/// `pattern` anchored to match a whole value, as CEL's `matches()` is not
/// (the compiled policies anchor it the same way).
pub(super) fn whole(pattern: &str) -> Result<regex::Regex, regex::Error> {
    regex::RegexBuilder::new(&format!("^(?:{pattern})$"))
        .size_limit(1 << 20)
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn param(kind: ParameterType) -> Parameter {
        Parameter {
            name: "p".into(),
            kind,
            default: IntOrString::String("x".into()),
            min: None,
            max: None,
            pattern: None,
            values: Vec::new(),
            targets: Vec::new(),
            description: None,
            compiled: Compiled::default(),
        }
    }

    #[test]
    fn targets_parse_and_print_back() {
        for t in [
            "containers[log-shipper].resources.requests.cpu",
            "initContainers[fetch].resources.limits.ephemeral-storage",
            "containers[proxy].env[UPSTREAM].value",
            "containers[proxy].ports[http].containerPort",
            "containers[proxy].image",
            "volumes[app-logs].emptyDir.sizeLimit",
            "app.env[LOG.LEVEL].value",
        ] {
            assert_eq!(Target::parse(t).unwrap().to_string(), t);
        }
        for bad in [
            "",
            "containers",
            "containers[]",
            "containers[x]",
            "containers[x].resources.requests.gpu",
            "containers[x].command",
            "volumes[v].hostPath.path",
            "app.env[X]",
            "spec.containers[x].image",
            "containers[x].env[A].valueFrom",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn values_are_checked_against_type_and_bounds() {
        let mut q = param(ParameterType::Quantity);
        q.min = Some(IntOrString::String("10m".into()));
        q.max = Some(IntOrString::Int(1));
        assert_eq!(q.check("200m"), Ok(Value::String("200m".into())));
        assert_eq!(q.check("1"), Ok(Value::String("1".into())));
        assert!(q.check("5m").unwrap_err().0.contains("at least 10m"));
        assert!(q.check("1001m").unwrap_err().0.contains("at most 1"));
        assert!(q.check("lots").is_err());
        assert!(q.check("-1").is_err());
        let mut i = param(ParameterType::Integer);
        i.min = Some(IntOrString::Int(1024));
        i.max = Some(IntOrString::Int(65535));
        assert_eq!(i.check("8080"), Ok(Value::from(8080)));
        assert!(i.check("80").is_err());
        assert!(i.check("8080.5").is_err());
        let mut s = param(ParameterType::String);
        s.pattern = Some("[a-z0-9.-]+:[0-9]{1,5}".into());
        assert!(s.check("db.internal:5432").is_ok());
        assert!(
            s.check("db.internal:5432; rm -rf").is_err(),
            "matched whole"
        );
        s.pattern = None;
        s.values = vec!["debug".into(), "info".into()];
        assert!(s.check("info").is_ok());
        assert!(
            s.check("trace")
                .unwrap_err()
                .0
                .contains("one of debug, info")
        );
        let b = param(ParameterType::Boolean);
        assert!(b.check("true").is_ok());
        assert!(b.check("yes").is_err());
    }

    #[test]
    fn annotation_keys() {
        assert_eq!(
            annotation("log-shipper", "cpu"),
            "log-shipper.tandem.dev/cpu"
        );
        assert_eq!(
            parameter_of("log-shipper.tandem.dev/cpu", "log-shipper"),
            Some("cpu")
        );
        assert_eq!(
            parameter_of("log-shipper-x.tandem.dev/cpu", "log-shipper"),
            None
        );
        assert_eq!(parameter_of("tandem.dev/inject", "log-shipper"), None);
    }
}
