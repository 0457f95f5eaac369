//! Which variables the API server binds where a shipped CEL expression runs.
//!
//! A policy's match conditions are *compiled* with `namespaceObject` (and a
//! policy is accepted with one that reads it) but *evaluated* with it null,
//! and they cannot see `variables` at all; a webhook's match conditions see
//! neither, nor `params`. An expression that reads one of them there fails
//! on every request, and `failurePolicy: Fail` turns that into a denial of
//! every pod. This check keeps such an expression out of everything Tandem
//! generates and ships; the tests evaluate the rest under the same rules.

use k8s_openapi::api::admissionregistration::v1::{
    MatchCondition, MutatingAdmissionPolicySpec, MutatingWebhookConfiguration,
    ValidatingAdmissionPolicySpec,
};

/// Where an expression runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Site {
    /// `matchConditions` of a Mutating/ValidatingWebhookConfiguration.
    WebhookMatchCondition,
    /// `matchConditions` of a Mutating/ValidatingAdmissionPolicy.
    PolicyMatchCondition,
}

impl Site {
    /// The variables an expression here may not read, each with why.
    fn unbound(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Site::PolicyMatchCondition => &[
                (
                    "namespaceObject",
                    "is null when match conditions are evaluated; read it in variables or validations",
                ),
                ("variables", "are not declared in match conditions"),
            ],
            Site::WebhookMatchCondition => &[
                ("namespaceObject", "is not declared for webhooks"),
                ("variables", "are not declared for webhooks"),
                ("params", "is not declared for webhooks"),
            ],
        }
    }
}

/// The names an expression reads at the top level: words outside string
/// literals that are not a field selection (`x.name`); keywords and
/// function names come too, and never collide with a variable's name.
fn roots(expression: &str) -> Vec<&str> {
    let bytes = expression.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let mut previous = b' ';
    while i < bytes.len() {
        let c = bytes[i];
        if c == b'\'' || c == b'"' {
            // Skip the literal, escapes included.
            i += 1;
            while i < bytes.len() && bytes[i] != c {
                i += if bytes[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
            previous = c;
            continue;
        }
        if c.is_ascii_alphabetic() || c == b'_' {
            let start = i;
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                i += 1;
            }
            if previous != b'.' {
                out.push(&expression[start..i]);
            }
            previous = b'a';
            continue;
        }
        if !c.is_ascii_whitespace() {
            previous = c;
        }
        i += 1;
    }
    out
}

/// What is wrong with `expression` at `site`: one sentence per variable it
/// reads that the API server does not bind there.
pub fn problems(site: Site, name: &str, expression: &str) -> Vec<String> {
    let read = roots(expression);
    site.unbound()
        .iter()
        .filter(|(var, _)| read.contains(var))
        .map(|(var, why)| format!("matchCondition {name} reads {var}, which {why}"))
        .collect()
}

fn conditions<'a>(
    site: Site,
    conditions: impl IntoIterator<Item = &'a MatchCondition>,
) -> Vec<String> {
    conditions
        .into_iter()
        .flat_map(|c| problems(site, &c.name, &c.expression))
        .collect()
}

pub fn check_validating_policy(spec: &ValidatingAdmissionPolicySpec) -> Vec<String> {
    conditions(
        Site::PolicyMatchCondition,
        spec.match_conditions.iter().flatten(),
    )
}

/// Besides the match conditions: the API server declares the `JSONPatch`
/// type only in a mutation's expression, so a variable that builds one does
/// not compile there.
pub fn check_mutating_policy(spec: &MutatingAdmissionPolicySpec) -> Vec<String> {
    let mut problems = conditions(
        Site::PolicyMatchCondition,
        spec.match_conditions.iter().flatten(),
    );
    for v in spec.variables.iter().flatten() {
        if roots(&v.expression).contains(&"JSONPatch") {
            problems.push(format!(
                "variable {} builds a JSONPatch, a type declared only in mutations",
                v.name
            ));
        }
    }
    problems
}

pub fn check_mutating_webhooks(config: &MutatingWebhookConfiguration) -> Vec<String> {
    conditions(
        Site::WebhookMatchCondition,
        config
            .webhooks
            .iter()
            .flatten()
            .flat_map(|w| w.match_conditions.iter().flatten()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roots_skip_fields_and_literals() {
        assert_eq!(
            roots("has(object.metadata.namespaceObject) && 'namespaceObject' in x.y"),
            ["has", "object", "in", "x"]
        );
        assert_eq!(
            roots(r#"namespaceObject != null && "variables\"" == variables.a"#),
            ["namespaceObject", "null", "variables"]
        );
    }

    #[test]
    fn a_match_condition_reading_the_namespace_is_a_problem() {
        let old =
            "(has(object.metadata.annotations)) ? true : has(namespaceObject.metadata.annotations)";
        let found = problems(Site::PolicyMatchCondition, "requests-injection", old);
        assert_eq!(found.len(), 1);
        assert!(
            found[0].contains("namespaceObject, which is null"),
            "{found:?}"
        );
        assert!(
            problems(
                Site::PolicyMatchCondition,
                "m",
                "!has(object.metadata.labels)"
            )
            .is_empty()
        );
        assert_eq!(
            problems(Site::WebhookMatchCondition, "m", "params.x && variables.y").len(),
            2
        );
    }
}
