//! The webhook configurations Tandem needs, and the checks every shipped
//! configuration must pass (the deploy/ manifests and chart are tested
//! against the same checks).

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::{
    MatchCondition, MutatingWebhook, MutatingWebhookConfiguration, RuleWithOperations,
    ServiceReference, ValidatingWebhook, ValidatingWebhookConfiguration, WebhookClientConfig,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, LabelSelectorRequirement, ObjectMeta,
};

use crate::engine::selector_matches;
use crate::facts::{INJECTION_LABEL, MIRROR_ANNOTATION, NAMESPACE_NAME_LABEL, SYSTEM_NAMESPACES};

/// The CEL of the matchCondition that keeps mirror pods away from Tandem.
pub(super) fn mirror_condition() -> String {
    format!(
        "!has(object.metadata.annotations) || !('{MIRROR_ANNOTATION}' in object.metadata.annotations)"
    )
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NamespaceScope {
    /// Namespaces labelled `tandem.dev/injection=enabled`.
    OptIn,
    /// Every namespace but the system ones, Tandem's own and those labelled disabled.
    ClusterWide,
}

pub enum Endpoint {
    Service {
        name: String,
        namespace: String,
        port: i32,
    },
    /// The base URL: `/mutate` and `/validate` are appended to it.
    Url(String),
}

/// The endpoints Tandem serves; a URL ending in one of them names it.
const PATHS: [&str; 2] = ["/mutate", "/validate"];

impl Endpoint {
    /// The endpoint for `--url`: Tandem's base URL, or the URL of one of its
    /// endpoints (`https://host:8443/mutate`), from which the base is taken.
    /// Any other path is a prefix (a proxy's `https://proxy/tandem`). The API
    /// server calls only `https` URLs without user, query or fragment, so
    /// anything else is refused here rather than at `kubectl apply`.
    pub fn url(raw: &str) -> Result<Endpoint, String> {
        let refuse = |why: &str| Err(format!("--url {raw:?}: {why}"));
        let Some(rest) = raw.strip_prefix("https://") else {
            return refuse("must start with https:// (the API server calls webhooks over TLS)");
        };
        if raw.contains(['?', '#']) {
            return refuse("must not have a query or fragment");
        }
        let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
        if host.is_empty() || host.contains('@') {
            return refuse("needs a host, without user information");
        }
        let mut base = format!("https://{host}/{}", path.trim_end_matches('/'));
        base.truncate(base.trim_end_matches('/').len());
        if let Some(stripped) = PATHS.iter().find_map(|p| base.strip_suffix(p)) {
            base = stripped.to_string();
        }
        Ok(Endpoint::Url(base))
    }
}

pub struct Params {
    pub endpoint: Endpoint,
    pub ca_bundle: Option<Vec<u8>>,
    /// Tandem's own namespace: never sent through Tandem.
    pub namespace: String,
    pub scope: NamespaceScope,
    pub failure_policy: String,
    pub timeout_seconds: i32,
    pub excluded_namespaces: Vec<String>,
}

fn client(p: &Params, path: &str) -> WebhookClientConfig {
    let ca_bundle = p.ca_bundle.clone().map(ByteString);
    match &p.endpoint {
        Endpoint::Service {
            name,
            namespace,
            port,
        } => WebhookClientConfig {
            ca_bundle,
            service: Some(ServiceReference {
                name: name.clone(),
                namespace: namespace.clone(),
                path: Some(path.to_string()),
                port: Some(*port),
            }),
            url: None,
        },
        Endpoint::Url(url) => WebhookClientConfig {
            ca_bundle,
            service: None,
            url: Some(format!("{url}{path}")),
        },
    }
}

fn excluded(own: &str, more: &[String]) -> Vec<String> {
    let mut names: Vec<String> = SYSTEM_NAMESPACES.iter().map(|s| s.to_string()).collect();
    names.push(own.to_string());
    for n in more {
        if !names.contains(n) {
            names.push(n.clone());
        }
    }
    names
}

/// The namespaces Tandem reaches in `scope`, never the system ones, its own
/// (`own`) or the `more` excluded; the policies' bindings reach the same.
pub(super) fn namespace_selector(
    scope: NamespaceScope,
    own: &str,
    more: &[String],
) -> LabelSelector {
    let not_in = |key: &str, values: Vec<String>| LabelSelectorRequirement {
        key: key.to_string(),
        operator: "NotIn".into(),
        values: Some(values),
    };
    // The name exclusion is kept in opt-in mode too: labelling Tandem's own
    // namespace by mistake must not make its pods wait for themselves.
    let mut expressions = vec![not_in(NAMESPACE_NAME_LABEL, excluded(own, more))];
    let match_labels = match scope {
        NamespaceScope::OptIn => Some(BTreeMap::from([(
            INJECTION_LABEL.to_string(),
            "enabled".to_string(),
        )])),
        NamespaceScope::ClusterWide => {
            expressions.push(not_in(INJECTION_LABEL, vec!["disabled".into()]));
            None
        }
    };
    LabelSelector {
        match_labels,
        match_expressions: Some(expressions),
    }
}

fn meta() -> ObjectMeta {
    ObjectMeta {
        name: Some("tandem".into()),
        labels: Some(BTreeMap::from([(
            "app.kubernetes.io/name".to_string(),
            "tandem".to_string(),
        )])),
        ..ObjectMeta::default()
    }
}

fn rule(operations: &[&str], group: &str, version: &str, resource: &str) -> RuleWithOperations {
    RuleWithOperations {
        operations: Some(operations.iter().map(|s| s.to_string()).collect()),
        api_groups: Some(vec![group.into()]),
        api_versions: Some(vec![version.into()]),
        resources: Some(vec![resource.into()]),
        scope: Some("Namespaced".into()),
    }
}

pub fn mutating(p: &Params) -> MutatingWebhookConfiguration {
    MutatingWebhookConfiguration {
        metadata: meta(),
        webhooks: Some(vec![MutatingWebhook {
            name: "inject.tandem.dev".into(),
            admission_review_versions: vec!["v1".into()],
            client_config: client(p, "/mutate"),
            failure_policy: Some(p.failure_policy.clone()),
            match_conditions: Some(vec![MatchCondition {
                name: "exclude-mirror-pods".into(),
                expression: mirror_condition(),
            }]),
            match_policy: Some("Equivalent".into()),
            namespace_selector: Some(namespace_selector(
                p.scope,
                &p.namespace,
                &p.excluded_namespaces,
            )),
            object_selector: None,
            reinvocation_policy: Some("IfNeeded".into()),
            rules: Some(vec![rule(&["CREATE"], "", "v1", "pods")]),
            side_effects: "None".into(),
            timeout_seconds: Some(p.timeout_seconds),
        }]),
    }
}

pub fn validating(p: &Params) -> ValidatingWebhookConfiguration {
    ValidatingWebhookConfiguration {
        metadata: meta(),
        webhooks: Some(vec![ValidatingWebhook {
            name: "validate.tandem.dev".into(),
            admission_review_versions: vec!["v1".into()],
            client_config: client(p, "/validate"),
            failure_policy: Some("Fail".into()),
            match_conditions: None,
            match_policy: Some("Equivalent".into()),
            namespace_selector: None,
            object_selector: None,
            rules: Some(vec![rule(
                &["CREATE", "UPDATE"],
                "tandem.dev",
                "v1alpha1",
                "sidecartemplates",
            )]),
            side_effects: "None".into(),
            timeout_seconds: Some(p.timeout_seconds),
        }]),
    }
}

/// Problems with a MutatingWebhookConfiguration that would hurt a cluster;
/// empty when it is safe to apply.
pub fn check_mutating(config: &MutatingWebhookConfiguration, own_namespace: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let webhooks = config.webhooks.as_deref().unwrap_or_default();
    if webhooks.is_empty() {
        problems.push("no webhooks".to_string());
    }
    for w in webhooks {
        let mut problem = |m: String| problems.push(format!("webhook {}: {m}", w.name));
        if w.admission_review_versions != ["v1"] {
            problem(format!(
                "admissionReviewVersions {:?}, want [v1]",
                w.admission_review_versions
            ));
        }
        if w.side_effects != "None" {
            problem(format!(
                "sideEffects {}, want None (dry-run requests must be served)",
                w.side_effects
            ));
        }
        match w.timeout_seconds {
            Some(t) if (1..=10).contains(&t) => {}
            other => problem(format!("timeoutSeconds {other:?}, want 1 to 10")),
        }
        if w.reinvocation_policy.as_deref() != Some("IfNeeded") {
            problem(
                "reinvocationPolicy must be IfNeeded: later webhooks may add containers".into(),
            );
        }
        let mirror = w
            .match_conditions
            .iter()
            .flatten()
            .any(|c| c.expression.contains(MIRROR_ANNOTATION));
        if !mirror {
            problem("no matchCondition excludes mirror pods".into());
        }
        for r in w.rules.iter().flatten() {
            let ops = r.operations.as_deref().unwrap_or_default();
            let resources = r.resources.as_deref().unwrap_or_default();
            if ops.iter().any(|o| o != "CREATE") || resources.iter().any(|r| r != "pods") {
                problem(format!(
                    "rule {ops:?} on {resources:?}: Tandem only handles CREATE of pods"
                ));
            }
        }
        // Worst case: the namespace carries the opt-in label anyway.
        let never = SYSTEM_NAMESPACES.iter().copied().chain([own_namespace]);
        for ns in never {
            let labels = BTreeMap::from([
                (NAMESPACE_NAME_LABEL.to_string(), ns.to_string()),
                (INJECTION_LABEL.to_string(), "enabled".to_string()),
            ]);
            let selector = w.namespace_selector.clone().unwrap_or_default();
            if selector_matches(&selector, |k| labels.get(k).map(String::as_str)) {
                problem(format!(
                    "namespaceSelector can match namespace {ns}; its pods would wait on Tandem"
                ));
            }
        }
    }
    problems.extend(super::sites::check_mutating_webhooks(config));
    problems
}
