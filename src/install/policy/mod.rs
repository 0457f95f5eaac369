//! Webhook-free injection: the whole template set compiled to one
//! MutatingAdmissionPolicy and its binding (`admissionregistration.k8s.io/v1`,
//! Kubernetes 1.36), run by the API server itself, and two
//! ValidatingAdmissionPolicies that say what the webhook would have said.
//!
//! The engine stays the one source of truth. The policy makes the engine's
//! whole decision for a pod: which templates, in which order, which it
//! skips for a conflict, what it reuses, the status. Where CEL cannot be
//! exact (`STEPS_ASIDE`) it leaves the pod unchanged for the webhook in
//! hybrid mode; in policy mode the companion policy then rejects the pod,
//! naming the reason. One policy for the set means one evaluation of the
//! request per pod, however many templates there are.

mod cel;
mod clear;
mod companion;
mod coverage;
mod members;
mod mutation;
mod select;

use std::collections::BTreeMap;

use k8s_openapi::api::admissionregistration::v1::{
    JSONPatch, MatchResources, MutatingAdmissionPolicy, MutatingAdmissionPolicyBinding,
    MutatingAdmissionPolicyBindingSpec, MutatingAdmissionPolicySpec, Mutation,
    NamedRuleWithOperations, ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding, Variable,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

pub use companion::{REQUIRE, WARNINGS};
pub use coverage::{Combination, Coverage};
use members::{Member, injecting};

use crate::install::webhook::{NamespaceScope, namespace_selector};
use crate::template::{QosPolicy, Scope as TemplateScope, Template, TemplateSet};

/// Which namespaces the bindings reach: the webhook's scope, narrowed by
/// any `extra_labels` the namespace must also carry.
pub struct Reach {
    /// Tandem's own namespace: never injected.
    pub namespace: String,
    pub scope: NamespaceScope,
    pub excluded_namespaces: Vec<String>,
    pub extra_labels: BTreeMap<String, String>,
}

/// What `tandem policy` prints: the policies and their bindings, and what
/// became of each template.
pub struct CompiledSet {
    pub policy: MutatingAdmissionPolicy,
    pub binding: MutatingAdmissionPolicyBinding,
    /// Rejects, naming the reason, a pod that asked for injection and
    /// was not injected (policy mode's companion).
    pub require: (ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding),
    /// The engine's warnings that matter to users, as admission warnings
    /// and audit annotations.
    pub warnings: (ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding),
    pub coverage: Coverage,
}

/// The pods the policy leaves unchanged, though the engine might inject
/// them: the webhook's work in hybrid mode, rejected with the reason in
/// policy mode. Printed with the output.
pub const STEPS_ASIDE: [&str; 6] = [
    "pods that already carry tandem.dev/status: adding to an injection merges the status, which only the webhook does",
    "pods that get a template that needs the webhook (qos preserve), or an onConflict fail template that conflicts with the pod or another template (the engine denies it, naming the conflict)",
    "pods whose tandem.dev/inject has more than 32 entries",
    "pods in a namespace that has SidecarTemplates of its own",
    "pods in a namespace enforcing a Pod Security level a selected template's containers or volumes break on their own: the webhook checks the whole pod (what it inherits, whether it already breaks the level)",
    "pods whose annotation (or namespace's) sets a selected template's parameter to anything but its default: the status hash covers the values, and CEL cannot compute it",
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
pub const WHY_SELECTORS_IN_CEL: &str = "Selectors are CEL variables, not the binding's objectSelector: a pod that names a template gets it without the label, and the templates a pod gets are decided together, in the engine's order";

/// Why a pod that gets `t` is the webhook's; empty when the policy injects
/// it. A `mode: dryRun` template is not one: the engine never changes a pod
/// for it, and neither does the policy. Nor is `onConflict: fail`: where it
/// conflicts, the policy leaves the pod and the companion rejects it, as
/// the engine denies it.
pub fn needs_webhook(t: &Template) -> Vec<String> {
    let mut reasons = Vec::new();
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
    #[error("no template compiles to a policy; use the webhook")]
    NothingCompiles,
    /// An extra namespace label that no namespace in the mode's scope has.
    #[error(
        "--namespace-selector {key}={wanted} contradicts the {key}={required} the mode requires"
    )]
    Contradiction {
        key: String,
        wanted: String,
        required: String,
    },
    /// A generated expression reads a variable the API server does not bind
    /// where it runs; a bug, caught before it reaches a cluster.
    #[error("policy {policy}: {problems}")]
    Site { policy: String, problems: String },
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

/// Compiles the whole set.
pub fn compile(set: &TemplateSet, reach: &Reach) -> Result<CompiledSet, PolicyError> {
    let selector = binding_selector(reach)?;
    let members = members::members(set);
    if !members.iter().any(Member::injects) {
        return Err(PolicyError::NothingCompiles);
    }
    let spec = mutating_spec(&members);
    let problems = crate::install::sites::check_mutating_policy(&spec);
    if !problems.is_empty() {
        return Err(PolicyError::Site {
            policy: NAME.into(),
            problems: problems.join("; "),
        });
    }
    let policy = MutatingAdmissionPolicy {
        metadata: meta(NAME, set),
        spec: Some(spec),
    };
    let binding = MutatingAdmissionPolicyBinding {
        metadata: meta(NAME, set),
        spec: Some(MutatingAdmissionPolicyBindingSpec {
            policy_name: Some(NAME.into()),
            match_resources: Some(MatchResources {
                namespace_selector: Some(selector.clone()),
                ..MatchResources::default()
            }),
            param_ref: None,
        }),
    };
    Ok(CompiledSet {
        policy,
        binding,
        require: companion::require(&members, &selector)?,
        warnings: companion::warnings(&members, set, &selector)?,
        coverage: coverage::coverage(&members),
    })
}

/// Which request combinations the policy injects, for `tandem check`.
pub fn coverage(set: &TemplateSet) -> Coverage {
    coverage::coverage(&members::members(set))
}

/// The policy's and its binding's name.
pub const NAME: &str = "tandem";

/// Labels naming Tandem, and the templates' hashes, so `kubectl get` shows
/// which versions a policy was compiled from.
fn meta(name: &str, set: &TemplateSet) -> ObjectMeta {
    let hashes: Vec<String> = set
        .all()
        .map(|t| format!("{}={}", t.name, t.hash))
        .collect();
    ObjectMeta {
        name: Some(name.into()),
        labels: Some(BTreeMap::from([(
            "app.kubernetes.io/name".to_string(),
            "tandem".to_string(),
        )])),
        annotations: Some(BTreeMap::from([(
            "tandem.dev/template-hashes".to_string(),
            hashes.join(","),
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

/// Pod CREATEs, the only requests Tandem's policies take.
fn pod_creates() -> MatchResources {
    MatchResources {
        match_policy: Some("Equivalent".into()),
        resource_rules: Some(vec![NamedRuleWithOperations {
            api_groups: Some(vec!["".into()]),
            api_versions: Some(vec!["v1".into()]),
            operations: Some(vec!["CREATE".into()]),
            resources: Some(vec!["pods".into()]),
            ..NamedRuleWithOperations::default()
        }]),
        ..MatchResources::default()
    }
}

/// The variables in the order they may read each other (a variable reads
/// only earlier ones): the request, the pod's shape, each template's
/// objects and conflict check, what is injected, whether the pod is the
/// webhook's, each template's operations, the status.
fn mutating_spec(members: &[Member]) -> MutatingAdmissionPolicySpec {
    let injecting: Vec<&Member> = injecting(members).collect();
    let mut variables = select::selection(members);
    variables.extend(mutation::shape(members));
    for m in &injecting {
        variables.extend(mutation::checks(m));
    }
    variables.extend(select::injected(members));
    variables.push(select::blocked(members));
    for m in &injecting {
        variables.extend(mutation::operations(members, m));
    }
    let (status, expression) = mutation::mutation(members);
    variables.extend(status);
    MutatingAdmissionPolicySpec {
        failure_policy: Some(FAILURE_POLICY.0.into()),
        match_conditions: Some(select::match_conditions()),
        match_constraints: Some(pod_creates()),
        mutations: Some(vec![Mutation {
            patch_type: "JSONPatch".into(),
            json_patch: Some(JSONPatch {
                expression: Some(expression),
            }),
            apply_configuration: None,
        }]),
        param_kind: None,
        reinvocation_policy: Some(REINVOCATION_POLICY.0.into()),
        variables: Some(variables),
    }
}
