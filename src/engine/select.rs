//! Who gets what: opt-out, explicit request, namespace default, selectors.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use super::pod::PodView;
use crate::facts::{Doc, INJECT_DEFAULTS, INJECT_OPT_OUT, Namespace};
use crate::template::{Template, TemplateSet};

/// Where a template request came from, strongest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Source {
    PodAnnotation,
    NamespaceAnnotation,
    Selector,
}

/// What a `tandem.dev/inject` value asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum InjectRequest {
    OptOut,
    /// `"true"`: whatever the namespace and selectors give.
    Defaults,
    Names(Vec<String>),
}

impl InjectRequest {
    /// Whether the pod asks for injection itself (names, or `"true"`).
    pub fn is_explicit(&self) -> bool {
        matches!(self, InjectRequest::Names(_) | InjectRequest::Defaults)
    }
}

pub fn parse_request(value: &str) -> InjectRequest {
    let v = value.trim();
    let keyword = v.to_ascii_lowercase();
    match keyword.as_str() {
        k if INJECT_OPT_OUT.contains(&k) => InjectRequest::OptOut,
        k if INJECT_DEFAULTS.contains(&k) => InjectRequest::Defaults,
        _ => {
            let mut names: Vec<String> = Vec::new();
            for n in v.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                if !names.iter().any(|m| m == n) {
                    names.push(n.to_string());
                }
            }
            InjectRequest::Names(names)
        }
    }
}

/// The templates a pod is given, in order, each with its source. The pod's own
/// list replaces the namespace default; selector matches are added to either,
/// so a platform team's automatic template survives an app team's request.
pub(super) fn select(
    pod: &PodView<'_>,
    pod_request: Option<&InjectRequest>,
    ns_request: Option<&InjectRequest>,
    namespace: &Namespace,
    templates: &TemplateSet,
) -> (Vec<(String, Source)>, String) {
    let mut chosen: Vec<(String, Source)> = Vec::new();
    let mut why = Vec::new();
    match (pod_request, ns_request) {
        (Some(InjectRequest::Names(names)), _) => {
            chosen.extend(names.iter().map(|n| (n.clone(), Source::PodAnnotation)));
            why.push(format!("pod requests {}", names.join(",")));
        }
        (_, Some(InjectRequest::Names(names))) => {
            chosen.extend(
                names
                    .iter()
                    .map(|n| (n.clone(), Source::NamespaceAnnotation)),
            );
            why.push(format!("namespace default {}", names.join(",")));
        }
        _ => {}
    }
    let explicit_pod = pod_request.is_some_and(InjectRequest::is_explicit);
    if ns_request == Some(&InjectRequest::OptOut) && !explicit_pod {
        why.push("namespace annotation turns automatic injection off".into());
    } else {
        let pod_labels = pod.labels;
        for t in templates.visible(&namespace.name) {
            if chosen.iter().any(|(n, _)| n == &t.name) {
                continue;
            }
            if auto_matches(t, pod_labels, &namespace.labels) {
                why.push(format!("selector of {} matches", t.name));
                chosen.push((t.name.clone(), Source::Selector));
            }
        }
    }
    if chosen.is_empty() {
        why.push("no template requested and no selector matches".into());
    }
    (chosen, why.join("; "))
}

/// A template injects automatically when it has a selector of either kind and
/// every selector it has matches.
fn auto_matches(
    t: &Template,
    pod_labels: Option<&Doc<'_>>,
    ns_labels: &BTreeMap<String, String>,
) -> bool {
    let spec = &t.spec;
    if spec.selector.is_none() && spec.namespace_selector.is_none() {
        return false;
    }
    let pod_label = |k: &str| pod_labels.and_then(|l| l.get(k)).and_then(Doc::as_str);
    spec.selector
        .as_ref()
        .is_none_or(|s| selector_matches(s, pod_label))
        && spec
            .namespace_selector
            .as_ref()
            .is_none_or(|s| selector_matches(s, |k| ns_labels.get(k).map(String::as_str)))
}

/// Kubernetes label-selector semantics; an empty selector matches everything.
pub fn selector_matches<'a>(sel: &LabelSelector, label: impl Fn(&str) -> Option<&'a str>) -> bool {
    let labels_ok = sel
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| label(k) == Some(v.as_str()));
    labels_ok
        && sel.match_expressions.iter().flatten().all(|e| {
            let value = label(&e.key);
            let in_values = |v: &str| e.values.iter().flatten().any(|x| x == v);
            match e.operator.as_str() {
                "In" => value.is_some_and(in_values),
                "NotIn" => !value.is_some_and(in_values),
                "Exists" => value.is_some(),
                "DoesNotExist" => value.is_none(),
                _ => false,
            }
        })
}

/// Shell-style glob with `*` and `?`, for `app.containers`.
pub(super) fn glob(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    let (mut pi, mut ni) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ni;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob("*", "app"));
        assert!(glob("app-*", "app-web"));
        assert!(glob("a?p", "app"));
        assert!(!glob("app-*", "sidecar"));
        assert!(glob("*-web", "shop-web"));
        assert!(!glob("", "x"));
    }

    #[test]
    fn request_values() {
        assert_eq!(parse_request("none"), InjectRequest::OptOut);
        assert_eq!(parse_request(" False "), InjectRequest::OptOut);
        assert_eq!(parse_request("true"), InjectRequest::Defaults);
        assert_eq!(
            parse_request("a, b,,a"),
            InjectRequest::Names(vec!["a".into(), "b".into()])
        );
    }
}
