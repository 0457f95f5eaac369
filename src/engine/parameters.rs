//! A template's parameters for one pod: each value from the pod's
//! annotation `<template>.tandem.dev/<parameter>`, else the namespace's,
//! else the declared default; checked against the type and bounds before
//! anything is injected.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde_json::Value;

use super::pod::PodView;
use crate::facts::Namespace;
use crate::template::{Template, parameter_annotation, parameter_of, parameter_text};

/// Where a value came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum From {
    Pod,
    Namespace,
    Default,
}

impl From {
    fn as_str(self) -> &'static str {
        match self {
            From::Pod => "pod",
            From::Namespace => "namespace",
            From::Default => "default",
        }
    }
}

/// The values a pod gets, one per declared parameter, in order.
pub(super) struct Values {
    pub values: Vec<Value>,
    /// `name=value (source)` for each, for `explain`.
    pub shown: String,
    /// Some value is not the default: the pod needs its own rendering.
    pub overridden: bool,
}

/// A value that breaks its parameter's rule: the warning (or denial) text
/// names the annotation, the value and the rule.
pub(super) struct Invalid(pub String);

/// The effective values of `t`'s parameters for a pod whose annotations
/// `pod` reads, in `namespace`.
pub(super) fn values<'p>(
    t: &Template,
    pod: impl Fn(&str) -> Option<&'p str>,
    namespace: &Namespace,
) -> Result<Values, Invalid> {
    let mut out = Values {
        values: Vec::with_capacity(t.spec.parameters.len()),
        shown: String::new(),
        overridden: false,
    };
    for p in &t.spec.parameters {
        let key = parameter_annotation(&t.name, &p.name);
        let default = parameter_text(&p.default);
        let (text, from) = match (pod(&key), namespace.annotations.get(&key)) {
            (Some(v), _) => (v.to_string(), From::Pod),
            (None, Some(v)) => (v.clone(), From::Namespace),
            (None, None) => (default.clone(), From::Default),
        };
        let value = p.check(&text).map_err(|rule| {
            let whose = match from {
                From::Namespace => format!("namespace {} annotation", namespace.name),
                _ => "pod annotation".to_string(),
            };
            Invalid(format!("{key}={text:?} ({whose}) {rule}"))
        })?;
        // Compared as injected: "50m " and "50m" are the same request.
        if from != From::Default && p.check(&default).ok().as_ref() != Some(&value) {
            out.overridden = true;
        }
        if !out.shown.is_empty() {
            out.shown.push_str(", ");
        }
        let _ = write!(out.shown, "{}={text} ({})", p.name, from.as_str());
        out.values.push(value);
    }
    Ok(out)
}

/// Annotations `<template>.tandem.dev/<name>` on the pod or its namespace
/// that name no parameter `t` declares: a warning each, never ignored in
/// silence (a typo would otherwise leave the default in force).
pub(super) fn undeclared(t: &Template, pod: &PodView<'_>, namespace: &Namespace) -> Vec<String> {
    let declared = |name: &str| t.spec.parameters.iter().any(|p| p.name == name);
    let mut found: BTreeMap<String, &str> = BTreeMap::new();
    let pod_keys = pod
        .annotations
        .and_then(|a| a.as_object())
        .unwrap_or_default()
        .iter()
        .map(|(k, _)| (k.as_ref(), "pod"));
    let ns_keys = namespace
        .annotations
        .keys()
        .map(|k| (k.as_str(), "namespace"));
    for (key, whose) in pod_keys.chain(ns_keys) {
        if let Some(name) = parameter_of(key, &t.name)
            && !declared(name)
        {
            found.entry(key.to_string()).or_insert(whose);
        }
    }
    found
        .into_iter()
        .map(|(key, whose)| {
            let known: Vec<&str> = t.spec.parameters.iter().map(|p| p.name.as_str()).collect();
            let known = if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            };
            format!(
                "{whose} annotation {key}: {} has no such parameter (it has {known})",
                t.name
            )
        })
        .collect()
}
