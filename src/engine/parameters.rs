//! A template's parameters for one pod: each value from the pod's
//! annotation `<template>.tandem.dev/<parameter>`, else the namespace's,
//! else the declared default; checked against the type and bounds before
//! anything is injected.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde_json::Value;

use super::pod::PodView;
use crate::facts::Namespace;
use crate::template::{Template, parameter_of, parameter_text};

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
pub(super) struct Values<'t> {
    pub values: Vec<Value>,
    /// Per parameter, the text set by the pod or the namespace; `None` for
    /// the default. Kept for `explain`, formatted only when it asks.
    set: Vec<Option<(&'t str, From)>>,
    /// Some value is not the default: the pod needs its own rendering.
    pub overridden: bool,
}

impl Values<'_> {
    /// `name=value (source)` for each, for `explain`.
    pub(super) fn shown(&self, t: &Template) -> String {
        let mut out = String::new();
        for (p, set) in t.spec.parameters.iter().zip(&self.set) {
            if !out.is_empty() {
                out.push_str(", ");
            }
            let (text, from) = match set {
                Some((text, from)) => (text.to_string(), *from),
                None => (parameter_text(&p.default), From::Default),
            };
            let _ = write!(out, "{}={text} ({})", p.name, from.as_str());
        }
        out
    }
}

/// A value that breaks its parameter's rule: the warning (or denial) text
/// names the annotation, the value and the rule.
pub(super) struct Invalid(pub String);

/// The effective values of `t`'s parameters for a pod whose annotations
/// `pod` reads, in `namespace`. Defaults were checked at load; only what
/// the pod or the namespace sets is checked here.
pub(super) fn values<'t>(
    t: &Template,
    pod: impl Fn(&str) -> Option<&'t str>,
    namespace: &'t Namespace,
) -> Result<Values<'t>, Invalid> {
    let mut out = Values {
        values: Vec::with_capacity(t.declared.len()),
        set: Vec::with_capacity(t.declared.len()),
        overridden: false,
    };
    for (p, declared) in t.spec.parameters.iter().zip(&t.declared) {
        let key = declared.annotation.as_str();
        let found = match (pod(key), namespace.annotations.get(key)) {
            (Some(v), _) => Some((v, From::Pod)),
            (None, Some(v)) => Some((v.as_str(), From::Namespace)),
            (None, None) => None,
        };
        let Some((text, from)) = found else {
            out.values.push(declared.default.clone());
            out.set.push(None);
            continue;
        };
        let value = p.check(text).map_err(|rule| {
            let whose = match from {
                From::Namespace => format!("namespace {} annotation", namespace.name),
                _ => "pod annotation".to_string(),
            };
            Invalid(format!("{key}={text:?} ({whose}) {rule}"))
        })?;
        // Compared as injected: "50m " and "50m" are the same request.
        out.overridden |= value != declared.default;
        out.values.push(value);
        out.set.push(Some((text, from)));
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
