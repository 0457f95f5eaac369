//! What the webhook says and a MutatingAdmissionPolicy cannot: two
//! ValidatingAdmissionPolicies over the same pods, run after every mutation.
//!
//! - `tandem-policy-require-injection` (Deny) is policy mode's companion: a
//!   pod that asked for injection and carries no status from Tandem is
//!   rejected, and the message names why the policy left it (the same
//!   `blocked` the mutation reads) and that the webhook, in hybrid mode,
//!   handles it.
//! - `tandem-policy-warnings` (Warn, with audit annotations) carries the
//!   engine's warnings that matter to users: a template skipped for a
//!   conflict, a template that does not exist, a dry-run template selected,
//!   and how much the injected templates may add to the pod's request.
//!
//! Both read the pod as the mutation left it: the status says what was
//! injected; the request and the labels are the user's.

use std::collections::BTreeMap;

use k8s_openapi::api::admissionregistration::v1::{
    AuditAnnotation, MatchCondition, MatchResources, ValidatingAdmissionPolicy,
    ValidatingAdmissionPolicyBinding, ValidatingAdmissionPolicyBindingSpec,
    ValidatingAdmissionPolicySpec, Validation, Variable,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

use super::members::{Member, Role, injecting};
use super::select::{self, has_annotation};
use super::{PolicyError, cel, mutation, pod_creates, variable};
use crate::facts::{INJECT_ANNOTATION, STATUS_ANNOTATION};
use crate::install::webhook::mirror_condition;
use crate::template::TemplateSet;

pub const REQUIRE: &str = "tandem-policy-require-injection";
pub const WARNINGS: &str = "tandem-policy-warnings";

fn meta(name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        labels: Some(BTreeMap::from([
            ("app.kubernetes.io/name".to_string(), "tandem".to_string()),
            (
                "app.kubernetes.io/component".to_string(),
                "policy".to_string(),
            ),
        ])),
        ..ObjectMeta::default()
    }
}

fn mirror() -> MatchCondition {
    MatchCondition {
        name: "exclude-mirror-pods".into(),
        expression: mirror_condition(),
    }
}

/// The pod's status, `''` without one, and whether it is a record Tandem
/// wrote: a JSON object with a `"templates"` list (the shipped companion's
/// test, which cannot parse JSON either).
fn status_variables() -> Vec<Variable> {
    let meta = "object.metadata";
    vec![
        variable(
            "status",
            format!(
                "{} ? {meta}.annotations[{}] : ''",
                has_annotation(meta, STATUS_ANNOTATION),
                cel::string(STATUS_ANNOTATION)
            ),
        ),
        variable(
            "processed",
            r#"variables.status.matches('^\\s*\\{(?s:.*)"templates"\\s*:\\s*\\[\\s*[\\]{](?s:.*)\\}\\s*$')"#,
        ),
    ]
}

fn policy(
    name: &str,
    failure: &str,
    conditions: Vec<MatchCondition>,
    variables: Vec<Variable>,
    validations: Vec<Validation>,
    audit: Vec<AuditAnnotation>,
) -> Result<ValidatingAdmissionPolicy, PolicyError> {
    let spec = ValidatingAdmissionPolicySpec {
        audit_annotations: (!audit.is_empty()).then_some(audit),
        failure_policy: Some(failure.into()),
        match_conditions: Some(conditions),
        match_constraints: Some(pod_creates()),
        param_kind: None,
        validations: Some(validations),
        variables: Some(variables),
    };
    let problems = crate::install::sites::check_validating_policy(&spec);
    if !problems.is_empty() {
        return Err(PolicyError::Site {
            policy: name.into(),
            problems: problems.join("; "),
        });
    }
    Ok(ValidatingAdmissionPolicy {
        metadata: meta(name),
        spec: Some(spec),
        status: None,
    })
}

fn binding(name: &str, action: &str, selector: &LabelSelector) -> ValidatingAdmissionPolicyBinding {
    ValidatingAdmissionPolicyBinding {
        metadata: meta(name),
        spec: ValidatingAdmissionPolicyBindingSpec {
            match_resources: Some(MatchResources {
                namespace_selector: Some(selector.clone()),
                ..MatchResources::default()
            }),
            param_ref: None,
            policy_name: name.into(),
            validation_actions: vec![action.into()],
        },
    }
}

/// Policy mode's companion: `failurePolicy: Fail`, since it is the safety
/// net; every read is guarded, so no pod Kubernetes accepts makes it fail.
pub(super) fn require(
    members: &[Member],
    selector: &LabelSelector,
) -> Result<(ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding), PolicyError> {
    // `blocked` reads what an onConflict-fail template's checks decide.
    let mut variables = select::selection(members);
    variables.extend(mutation::shape(members));
    for m in injecting(members) {
        variables.extend(mutation::checks(m));
    }
    variables.extend(select::injected(members));
    variables.push(select::blocked(members));
    variables.extend(status_variables());
    let message = format!(
        "(variables.asked ? 'pod requests Tandem injection (' + \
        ({} ? 'tandem.dev/inject=' + variables.podValue \
        : 'namespace ' + namespaceObject.metadata.name + ' default tandem.dev/inject=' + variables.namespaceValue) + ')' \
        : 'SidecarTemplate selectors pick ' + variables.order.join(',') + ' for this pod') + \
        ' but ' + (variables.status != '' ? 'its tandem.dev/status is not a record Tandem wrote' : \
        variables.blocked != '' ? 'policy mode leaves it to the webhook: ' + variables.blocked + \
        '; the webhook (hybrid mode, deploy/overlays/hybrid) injects such pods' : \
        'Tandem did not inject it: the MutatingAdmissionPolicy tandem is missing or failed on it (see `tandem explain` for what it should get)')",
        has_annotation("object.metadata", INJECT_ANNOTATION)
    );
    let validation = Validation {
        // Asked for, or selected and left to the webhook: either way the
        // engine would have changed the pod (or denied it).
        expression: "variables.processed || !(variables.asked || size(variables.order) > 0 && variables.blocked != '')".into(),
        message: Some(
            "this pod requests Tandem injection but carries no tandem.dev/status: policy mode could not inject it (see `tandem explain`)"
                .into(),
        ),
        message_expression: Some(message),
        reason: Some("Forbidden".into()),
    };
    Ok((
        policy(
            REQUIRE,
            "Fail",
            vec![mirror(), select::pod_does_not_opt_out()],
            variables,
            vec![validation],
            Vec::new(),
        )?,
        binding(REQUIRE, "Deny", selector),
    ))
}

/// `'<name>' in the status`: the status names each injected template as
/// `{"name":"<name>",…}`, and a template name is a DNS label.
fn in_status(n: &str) -> String {
    format!("variables.status.contains('{{\"name\":\"' + {n} + '\"')")
}

/// The warnings: `failurePolicy: Ignore`, since a warning must never
/// cost a pod its admission.
pub(super) fn warnings(
    members: &[Member],
    set: &TemplateSet,
    selector: &LabelSelector,
) -> Result<(ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding), PolicyError> {
    let mut variables = select::selection(members);
    variables.extend(status_variables());
    let known = cel::strings(set.all().map(|t| t.name.as_str()));
    let injects = cel::strings(injecting(members).map(|m| m.t.name.as_str()));
    let dry = cel::strings(
        members
            .iter()
            .filter(|m| matches!(m.role, Role::DryRun))
            .map(|m| m.t.name.as_str()),
    );
    variables.push(variable(
        "missing",
        format!("variables.names.filter(n, !(n in {known}))"),
    ));
    variables.push(variable(
        "skipped",
        format!(
            "variables.processed ? variables.order.filter(n, n in {injects} && !{}) : []",
            in_status("n")
        ),
    ));
    variables.push(variable(
        "dryRun",
        format!("variables.order.filter(n, n in {dry})"),
    ));
    let grows: Vec<String> = injecting(members)
        .filter_map(|m| {
            let r = crate::engine::template_requests(m.t);
            (!(r.cpu.is_zero() && r.memory.is_zero())).then(|| {
                format!(
                    "({} ? [{}] : [])",
                    in_status(&cel::string(&m.t.name)),
                    cel::string(&format!("{} adds up to {r}", m.t.name))
                )
            })
        })
        .collect();
    variables.push(variable(
        "grows",
        if grows.is_empty() {
            "[]".to_string()
        } else {
            format!("variables.processed ? {} : []", grows.join(" + "))
        },
    ));
    let warn = |expression: &str, message: String| Validation {
        expression: expression.into(),
        message: None,
        message_expression: Some(message),
        reason: None,
    };
    let validations = vec![
        warn(
            "size(variables.missing) == 0",
            "'tandem: requested template ' + variables.missing.join(', ') + ' does not exist'".into(),
        ),
        warn(
            "size(variables.skipped) == 0",
            "'tandem: ' + variables.skipped.join(', ') + ' skipped: it conflicts with what the pod has (a name, volume, port, mount or env var); tandem explain names it'".into(),
        ),
        warn(
            "size(variables.dryRun) == 0",
            "'tandem: dry run: ' + variables.dryRun.join(', ') + ' selected and not injected (mode dryRun); tandem explain shows what it would do'".into(),
        ),
        warn(
            "size(variables.grows) == 0",
            "'tandem: pod request grows: ' + variables.grows.join('; ')".into(),
        ),
    ];
    let audit = |key: &str, list: &str| AuditAnnotation {
        key: key.into(),
        value_expression: format!(
            "size(variables.{list}) == 0 ? null : variables.{list}.join(',')"
        ),
    };
    let audits = vec![
        audit("missing", "missing"),
        audit("skipped", "skipped"),
        audit("dry-run", "dryRun"),
    ];
    let conditions = vec![mirror(), select::pod_does_not_opt_out()];
    Ok((
        policy(
            WARNINGS,
            "Ignore",
            conditions,
            variables,
            validations,
            audits,
        )?,
        binding(WARNINGS, "Warn", selector),
    ))
}
