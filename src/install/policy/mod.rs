//! Webhook-free injection: each SidecarTemplate compiled to a
//! MutatingAdmissionPolicy and its binding (`admissionregistration.k8s.io/v1`,
//! Kubernetes 1.36), run by the API server itself.
//!
//! The engine stays the one source of truth. A policy changes a pod only
//! when the engine would inject exactly its template into that pod, and
//! then makes the engine's change; everywhere else it steps aside (an empty
//! patch), leaving the pod to the webhook in hybrid mode, or to the
//! companion ValidatingAdmissionPolicy, which rejects a pod that asked for
//! injection and did not get it. What a policy cannot do at all (deny, warn,
//! report a dry run) makes its template one that needs the webhook.

mod cel;
mod gates;
mod mutation;

use std::collections::BTreeMap;

use k8s_openapi::api::admissionregistration::v1::{
    JSONPatch, MatchResources, MutatingAdmissionPolicy, MutatingAdmissionPolicyBinding,
    MutatingAdmissionPolicyBindingSpec, MutatingAdmissionPolicySpec, Mutation,
    NamedRuleWithOperations, Variable,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

use crate::engine::{EngineError, Status};
use crate::install::webhook::{NamespaceScope, namespace_selector};
use crate::template::{
    Lifecycle, Mode, OnConflict, QosPolicy, Scope as TemplateScope, Template, TemplateSet,
};

/// Which namespaces the bindings reach: the webhook's scope, narrowed by
/// any `extra_labels` the namespace must also carry.
pub struct Reach {
    /// Tandem's own namespace: never injected.
    pub namespace: String,
    pub scope: NamespaceScope,
    pub excluded_namespaces: Vec<String>,
    pub extra_labels: BTreeMap<String, String>,
}

/// What became of one template.
pub enum Compiled {
    Policy(Box<CompiledPolicy>),
    /// The reasons, each a sentence: what the webhook does that no policy can.
    NeedsWebhook {
        template: String,
        reasons: Vec<String>,
    },
}

pub struct CompiledPolicy {
    pub template: String,
    pub policy: MutatingAdmissionPolicy,
    pub binding: MutatingAdmissionPolicyBinding,
}

/// The pods every compiled policy leaves unchanged, though the engine might
/// inject them: the webhook's work in hybrid mode. Printed with the output.
pub const STEPS_ASIDE: [&str; 6] = [
    "pods that already carry tandem.dev/status: adding to an injection merges the status, which only the webhook does",
    "pods that get more than one template, or ask for one that does not exist: the status names them all",
    "pods where a name, volume, port, mount path, env var or envFrom source of the template is already taken: the engine's full conflict analysis (reuse of identical volumes and env, ports by phase) needs the webhook",
    "pods that asked for injection and got none: the webhook records the empty status",
    "pods in a namespace enforcing a Pod Security level the template's containers or volumes break on their own: the webhook checks the whole pod (what it inherits, whether it already breaks the level)",
    "pods whose annotation (or namespace's) sets one of the template's parameters to anything but its default, of any type: the status hash covers the values, and CEL cannot compute it; the webhook checks and injects them",
];

/// `failurePolicy`, and why, for the output's comments.
pub const FAILURE_POLICY: (&str, &str) = (
    "Ignore",
    "an expression that fails on a pod shape nobody foresaw must not block every pod; as with the webhook, the companion ValidatingAdmissionPolicy rejects a pod that asked for injection and was not injected",
);

/// `reinvocationPolicy`, and why.
pub const REINVOCATION_POLICY: (&str, &str) = (
    "IfNeeded",
    "a later mutator may add the label or annotation that selects a template; a second run after the status is written steps aside, so it is harmless",
);

/// Why the mutations are JSONPatch, for the output's comments.
pub const WHY_JSON_PATCH: &str = "JSONPatch throughout: every change is an add at the place the engine chooses (init containers at their position, appended list items, annotations key by key); an ApplyConfiguration would merge a template container into a user container of the same name, which the engine refuses as a conflict";

/// Why the selectors are CEL rather than the binding's objectSelector.
pub const WHY_SELECTORS_IN_CEL: &str = "Selectors are CEL variables, not the binding's objectSelector: a pod that names the template gets it without the label, and a pod that another template's selector also matches is the webhook's";

/// Why `t` cannot be compiled at all; empty when it can.
pub fn needs_webhook(t: &Template) -> Vec<String> {
    let mut reasons = Vec::new();
    if t.spec.mode == Mode::DryRun {
        reasons.push(
            "mode dryRun reports through warnings and audit annotations; a policy can only mutate"
                .to_string(),
        );
    }
    if t.spec.on_conflict == OnConflict::Fail {
        reasons.push(
            "onConflict fail denies the pod naming both sides; a mutating policy cannot deny"
                .to_string(),
        );
    }
    if t.spec.qos == QosPolicy::Preserve {
        reasons.push(
            "qos preserve rewrites requests for Guaranteed pods only, which takes the whole pod's QoS class"
                .to_string(),
        );
    }
    if let TemplateScope::Namespace(ns) = &t.scope {
        reasons.push(format!(
            "it serves only namespace {ns}: compile cluster-wide templates from files"
        ));
    }
    reasons
}

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// An extra namespace label that no namespace in the mode's scope has.
    #[error(
        "--namespace-selector {key}={wanted} contradicts the {key}={required} the mode requires"
    )]
    Contradiction {
        key: String,
        wanted: String,
        required: String,
    },
    /// The status annotation could not be encoded; a bug, never the input's fault.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// A generated expression reads a variable the API server does not bind
    /// where it runs; a bug, caught before it reaches a cluster.
    #[error("policy for template {template}: {problems}")]
    Site { template: String, problems: String },
}

/// The namespaces every binding selects: the webhook's scope, and the extra
/// labels on top.
fn binding_selector(reach: &Reach) -> Result<LabelSelector, PolicyError> {
    let mut selector =
        namespace_selector(reach.scope, &reach.namespace, &reach.excluded_namespaces);
    let labels = selector.match_labels.get_or_insert_with(BTreeMap::new);
    for (key, wanted) in &reach.extra_labels {
        if let Some(required) = labels.get(key).filter(|have| *have != wanted) {
            return Err(PolicyError::Contradiction {
                key: key.clone(),
                wanted: wanted.clone(),
                required: required.clone(),
            });
        }
        labels.insert(key.clone(), wanted.clone());
    }
    if labels.is_empty() {
        selector.match_labels = None;
    }
    Ok(selector)
}

/// Compiles every template of `set`, in the set's order.
pub fn compile(set: &TemplateSet, reach: &Reach) -> Result<Vec<Compiled>, PolicyError> {
    let selector = binding_selector(reach)?;
    set.all()
        .map(|t| {
            let reasons = needs_webhook(t);
            if !reasons.is_empty() {
                return Ok(Compiled::NeedsWebhook {
                    template: t.name.clone(),
                    reasons,
                });
            }
            compile_one(t, set, &selector).map(|p| Compiled::Policy(Box::new(p)))
        })
        .collect()
}

fn name_of(t: &Template) -> String {
    format!("tandem-{}", t.name)
}

fn meta(t: &Template) -> ObjectMeta {
    ObjectMeta {
        name: Some(name_of(t)),
        labels: Some(BTreeMap::from([
            ("app.kubernetes.io/name".to_string(), "tandem".to_string()),
            ("tandem.dev/template".to_string(), t.name.clone()),
        ])),
        annotations: Some(BTreeMap::from([(
            "tandem.dev/template-hash".to_string(),
            t.hash.clone(),
        )])),
        ..ObjectMeta::default()
    }
}

/// A named CEL expression, available to later ones as `variables.<name>`.
fn variable(name: &str, expression: impl Into<String>) -> Variable {
    Variable {
        name: name.into(),
        expression: expression.into(),
    }
}

fn compile_one(
    t: &Template,
    set: &TemplateSet,
    selector: &LabelSelector,
) -> Result<CompiledPolicy, PolicyError> {
    let mut status = Status::default();
    status.record(t);
    let status = status.to_annotation()?;
    let classic = t.spec.lifecycle == Lifecycle::Classic && !t.spec.containers.is_empty();

    let mut variables = gates::selection(t, set);
    variables.extend(mutation::objects(t, classic));
    let app = !t.spec.app.is_empty();
    if app {
        variables.push(variable("targets", gates::targets(t)));
        variables.push(variable("apps", "object.spec.containers.map(c, c.name)"));
    }
    variables.push(gates::clear(t));
    let mut inject = vec!["variables.selected", "variables.clear"];
    if let Some(v) = gates::pod_security(t) {
        variables.push(v);
        inject.push("variables.podSecurityClear");
    }
    if let Some(v) = gates::parameters(t) {
        variables.push(v);
        inject.push("variables.parametersAtDefault");
    }
    variables.push(variable("inject", inject.join(" && ")));
    if classic {
        variables.push(variable(
            "restartsAlways",
            "!has(object.spec.restartPolicy) || object.spec.restartPolicy == 'Always'",
        ));
    }
    variables.extend(mutation::evictable(t));

    let policy = MutatingAdmissionPolicy {
        metadata: meta(t),
        spec: Some(MutatingAdmissionPolicySpec {
            failure_policy: Some(FAILURE_POLICY.0.into()),
            match_conditions: Some(gates::match_conditions()),
            match_constraints: Some(MatchResources {
                match_policy: Some("Equivalent".into()),
                resource_rules: Some(vec![NamedRuleWithOperations {
                    api_groups: Some(vec!["".into()]),
                    api_versions: Some(vec!["v1".into()]),
                    operations: Some(vec!["CREATE".into()]),
                    resources: Some(vec!["pods".into()]),
                    ..NamedRuleWithOperations::default()
                }]),
                ..MatchResources::default()
            }),
            mutations: Some(vec![Mutation {
                patch_type: "JSONPatch".into(),
                json_patch: Some(JSONPatch {
                    expression: Some(mutation::expression(t, &status, classic)),
                }),
                apply_configuration: None,
            }]),
            param_kind: None,
            reinvocation_policy: Some(REINVOCATION_POLICY.0.into()),
            variables: Some(variables),
        }),
    };
    if let Some(spec) = &policy.spec {
        let problems = crate::install::sites::check_mutating_policy(spec);
        if !problems.is_empty() {
            return Err(PolicyError::Site {
                template: t.name.clone(),
                problems: problems.join("; "),
            });
        }
    }
    let binding = MutatingAdmissionPolicyBinding {
        metadata: meta(t),
        spec: Some(MutatingAdmissionPolicyBindingSpec {
            policy_name: Some(name_of(t)),
            match_resources: Some(MatchResources {
                namespace_selector: Some(selector.clone()),
                ..MatchResources::default()
            }),
            param_ref: None,
        }),
    };
    Ok(CompiledPolicy {
        template: t.name.clone(),
        policy,
        binding,
    })
}
