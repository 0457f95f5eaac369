//! Which templates the engine gives a pod, in its order, which of them it
//! injects, and whether the policy can make the engine's whole decision
//! for that pod or must leave the pod to the webhook (`variables.blocked`,
//! the reason).
//!
//! The selection (`selection`) reads only the annotations and labels of
//! the pod and of its namespace, so a pod that asks for nothing costs a
//! handful of map lookups: the API server evaluates a variable only when
//! an expression reads it, and the conflict checks (`injected`, `blocked`)
//! are read only for a pod that gets a template or asked for one.

use k8s_openapi::api::admissionregistration::v1::{MatchCondition, Variable};

use super::members::{Member, Role, between, injecting};
use super::{cel, variable};
use crate::facts::{
    INJECT_ANNOTATION, INJECT_DEFAULTS, INJECT_OPT_OUT, Level, POD_SECURITY_PREFIX,
    STATUS_ANNOTATION, Standard, Version,
};
use crate::install::webhook::mirror_condition;
use crate::template::{OnConflict, Scope, Template, parameter_text};

const POD: &str = "object.metadata";
const NAMESPACE: &str = "namespaceObject.metadata";

/// The most entries a request may hold for the policy to read it.
const MAX_NAMES: usize = 32;

/// The Kubernetes minor versions Pod Security levels are checked at, besides
/// `latest`: every release up to well past the one Tandem targets.
const MAX_MINOR: u32 = 40;

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
    vec![
        MatchCondition {
            name: "exclude-mirror-pods".into(),
            expression: mirror_condition(),
        },
        pod_does_not_opt_out(),
        // A pod that carries a status was injected before, by the policy or
        // the webhook; adding to it would mean merging the status, which only
        // the webhook does.
        MatchCondition {
            name: "not-injected-yet".into(),
            expression: format!("!({})", has_annotation(POD, STATUS_ANNOTATION)),
        },
    ]
}

pub(super) fn pod_does_not_opt_out() -> MatchCondition {
    MatchCondition {
        name: "pod-does-not-opt-out".into(),
        expression: format!(
            "!({} && {}.trim().lowerAscii() in {})",
            has_annotation(POD, INJECT_ANNOTATION),
            annotation(POD, INJECT_ANNOTATION),
            cel::strings(INJECT_OPT_OUT)
        ),
    }
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
    ]
}

fn names_of(prefix: &str) -> String {
    format!("variables.{prefix}Value.split(',').map(n, n.trim()).filter(n, n != '')")
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
        terms.push(format!("{NAMESPACE}.name == {}", cel::string(ns)));
    }
    if let Some(s) = &spec.selector {
        terms.push(cel::selector(s, "object.metadata.labels"));
    }
    if let Some(s) = &spec.namespace_selector {
        terms.push(cel::selector(s, "namespaceObject.metadata.labels"));
    }
    Some(terms.join(" && "))
}

/// A chain of `n == '<name>' ? <value> : …` over `members`, `otherwise`
/// at the end: what a template name stands for, evaluated for that one only.
pub(super) fn by_name<'m, 'a: 'm>(
    n: &str,
    members: impl IntoIterator<Item = &'m Member<'a>>,
    value: impl Fn(&Member) -> Option<String>,
    otherwise: &str,
) -> String {
    let mut out = String::new();
    let mut close = 0;
    for m in members {
        if let Some(v) = value(m) {
            out.push_str(&format!("{n} == {} ? {v} : ", cel::string(&m.t.name)));
            close += 1;
        }
    }
    if close == 0 {
        return otherwise.to_string();
    }
    format!("({out}{otherwise})")
}

/// The cluster-wide templates: the ones a name in a request stands for
/// (a namespace's own template of the same name makes that namespace's
/// pods the webhook's, see `blocked`).
pub(super) fn cluster<'m, 'a>(members: &'m [Member<'a>]) -> impl Iterator<Item = &'m Member<'a>> {
    members
        .iter()
        .filter(|m| matches!(m.t.scope, Scope::Cluster))
}

/// The variables that decide what the engine selects, in its order:
/// `variables.order` (names asked for, then selector matches) and `asked`
/// (whether the pod's status must be written even if nothing is injected).
pub(super) fn selection(members: &[Member]) -> Vec<Variable> {
    let mut vars = request("pod", POD);
    vars.extend(request("namespace", NAMESPACE));
    vars.push(variable(
        "namespaceOptsOut",
        format!(
            "{} && {}.trim().lowerAscii() in {}",
            has_annotation(NAMESPACE, INJECT_ANNOTATION),
            annotation(NAMESPACE, INJECT_ANNOTATION),
            cel::strings(INJECT_OPT_OUT)
        ),
    ));
    // The pod's list replaces the namespace default; selectors add to either.
    vars.push(variable(
        "asks",
        format!(
            "variables.podHasNames ? {} : variables.namespaceHasNames ? {} : []",
            names_of("pod"),
            names_of("namespace")
        ),
    ));
    // A name given twice counts once, where it first appears, as the
    // engine reads the list. CEL's list macros do not see an element's
    // index, so the indexes are a literal; a longer list is the webhook's.
    let indexes: Vec<String> = (0..MAX_NAMES).map(|i| i.to_string()).collect();
    vars.push(variable(
        "names",
        format!(
            "size(variables.asks) < 2 ? variables.asks : [{}].filter(i, i < size(variables.asks) && variables.asks.indexOf(variables.asks[i]) == i).map(i, variables.asks[i])",
            indexes.join(", ")
        ),
    ));
    // A namespace that opts out turns selectors off, unless the pod asks.
    let pod_asks = has_annotation(POD, INJECT_ANNOTATION);
    let automatic: Vec<String> = members
        .iter()
        .filter_map(|m| {
            auto_match(m.t).map(|when| format!("({when} ? [{}] : [])", cel::string(&m.t.name)))
        })
        .collect();
    let auto = if automatic.is_empty() {
        "[]".to_string()
    } else {
        format!(
            "variables.namespaceOptsOut && !({pod_asks}) ? [] : {}",
            automatic.join(" + ")
        )
    };
    vars.push(variable("auto", auto));
    vars.push(variable(
        "order",
        "variables.names + variables.auto.filter(n, !(n in variables.names))",
    ));
    vars.push(variable(
        "asked",
        format!("{pod_asks} || variables.namespaceHasNames"),
    ));
    vars
}

/// `variables.injected`: the templates the engine injects, in its order.
/// `candidates` are those selected whose conflict check with the pod
/// (`<t>Clear`) passes; of two that collide with each other, the engine
/// keeps the first it reaches, and a template skipped that way collides
/// with nothing, so each slot is kept when no kept slot before it
/// collides with it (`keep<k>`).
pub(super) fn injected(members: &[Member]) -> Vec<Variable> {
    let injecting: Vec<&Member> = injecting(members).collect();
    let candidates = format!(
        "variables.order.filter(n, {})",
        by_name(
            "n",
            injecting.iter().copied(),
            |m| Some(m.v("Clear")),
            "false"
        )
    );
    let mut colliding = Vec::new();
    for (i, a) in injecting.iter().enumerate() {
        for b in &injecting[i + 1..] {
            if let Some((_, when)) = between(a, b).conflict {
                let keys = cel::strings([
                    format!("{}/{}", a.t.name, b.t.name).as_str(),
                    format!("{}/{}", b.t.name, a.t.name).as_str(),
                ]);
                colliding.push(match when {
                    None => keys,
                    Some(when) => format!("({when} ? {keys} : [])"),
                });
            }
        }
    }
    if colliding.is_empty() {
        return vec![variable("injected", candidates)];
    }
    let mut vars = vec![
        variable("candidates", candidates),
        variable("collide", colliding.join(" + ")),
    ];
    let c = |k: usize| format!("variables.candidates[{k}]");
    let mut slots = vec![format!(
        "(size(variables.candidates) > 0 ? [{}] : [])",
        c(0)
    )];
    for k in 1..injecting.len() {
        let before: Vec<String> = (0..k)
            .map(|j| {
                let kept = if j == 0 {
                    String::new()
                } else {
                    format!(" && variables.keep{j}")
                };
                format!("({} + '/' + {} in variables.collide{kept})", c(j), c(k))
            })
            .collect();
        vars.push(variable(
            &format!("keep{k}"),
            format!("!({})", before.join(" || ")),
        ));
        slots.push(format!(
            "(size(variables.candidates) > {k} && variables.keep{k} ? [{}] : [])",
            c(k)
        ));
    }
    vars.push(variable("injected", slots.join(" + ")));
    vars
}

/// Whether every parameter of `t` is at its default for this pod: the
/// pod's annotation `<template>.tandem.dev/<parameter>` wins over the
/// namespace's, as in the engine. Another value changes the status hash
/// (a SHA-256 of the objects, which CEL cannot compute). `None` for a
/// template without parameters.
fn parameters_at_default(t: &Template) -> Option<String> {
    if t.spec.parameters.is_empty() {
        return None;
    }
    let terms: Vec<String> = t
        .spec
        .parameters
        .iter()
        .map(|p| {
            let key = p.annotation(&t.name);
            let default = cel::string(&parameter_text(&p.default));
            format!(
                "(({}) ? {} == {default} : !({}) || {} == {default})",
                has_annotation(POD, &key),
                annotation(POD, &key),
                has_annotation(NAMESPACE, &key),
                annotation(NAMESPACE, &key),
            )
        })
        .collect();
    Some(terms.join(" && "))
}

/// Whether the namespace enforces a Pod Security level `t`'s containers or
/// volumes break on their own (or a label value the API server reads as
/// restricted). `None` when `t` meets restricted at every version.
fn breaks_pod_security(t: &Template) -> Option<String> {
    // At any version the namespace may pin (`enforce-version`): the checks
    // differ between versions, and one the template breaks at any of them
    // leaves the decision to the webhook, which reads the pin.
    let at = |level| {
        std::iter::once(Version::Latest)
            .chain((0..=MAX_MINOR).map(Version::Minor))
            .any(|version| {
                !crate::engine::template_violations(t, Standard { level, version }).is_empty()
            })
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
    Some(format!(
        "has({labels}) && {key} in {labels} && !({labels}[{key}] in {})",
        cel::strings(allowed.iter().copied())
    ))
}

/// Why the policy leaves this pod to the webhook, `''` when it does not:
/// the first of the reasons `STEPS_ASIDE` lists that holds. Read only for a
/// pod that gets a template or asked for one.
pub(super) fn blocked(members: &[Member]) -> Variable {
    let mut chain: Vec<(String, String)> = vec![(
        format!("size(variables.asks) > {MAX_NAMES}"),
        format!("'its tandem.dev/inject has more than {MAX_NAMES} entries'"),
    )];
    let mut local: Vec<&str> = members
        .iter()
        .filter_map(|m| match &m.t.scope {
            Scope::Namespace(ns) => Some(ns.as_str()),
            Scope::Cluster => None,
        })
        .collect();
    local.sort_unstable();
    local.dedup();
    if !local.is_empty() {
        chain.push((
            format!("{NAMESPACE}.name in {}", cel::strings(local.iter().copied())),
            format!(
                "'namespace ' + {NAMESPACE}.name + ' has SidecarTemplates of its own, which only the webhook reads'"
            ),
        ));
    }
    let asks_for = |m: &Member| format!("{} in variables.order", cel::string(&m.t.name));
    for m in cluster(members) {
        if let Role::Webhook(reasons) = &m.role {
            chain.push((
                asks_for(m),
                cel::string(&format!(
                    "template {} needs the webhook: {}",
                    m.t.name,
                    reasons.join("; ")
                )),
            ));
        }
    }
    let injecting: Vec<&Member> = injecting(members).collect();
    for m in &injecting {
        if m.t.spec.on_conflict == OnConflict::Fail {
            chain.push((
                format!("{} && !({} in variables.injected)", asks_for(m), cel::string(&m.t.name)),
                cel::string(&format!(
                    "template {} (onConflict: fail) conflicts with the pod or another template, which the engine denies naming the conflict",
                    m.t.name
                )),
            ));
        }
        if let Some(at_default) = parameters_at_default(m.t) {
            chain.push((
                format!("{} && !({at_default})", asks_for(m)),
                cel::string(&format!(
                    "a parameter of template {} is set to a value other than its default, which changes the status hash",
                    m.t.name
                )),
            ));
        }
        if let Some(breaks) = breaks_pod_security(m.t) {
            // The engine checks conflicts first: a template it skips for
            // one never reaches Pod Security.
            chain.push((
                format!(
                    "{} in variables.injected && {breaks}",
                    cel::string(&m.t.name)
                ),
                cel::string(&format!(
                    "template {} breaks the Pod Security level the namespace enforces, which the webhook checks against the whole pod",
                    m.t.name
                )),
            ));
        }
    }
    let mut text = String::new();
    for (when, why) in &chain {
        text.push_str(&format!("{when} ? {why} :\n  "));
    }
    text.push_str("''");
    variable("blocked", text)
}
