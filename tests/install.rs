//! The install paths, checked the way a cluster would see them:
//!
//! - every kustomize variant (`deploy/base`, `deploy/overlays/*`), resolved the
//!   way kustomize resolves the features those kustomizations use (and compared
//!   with `kubectl kustomize` when kubectl is installed), and the compiled
//!   MutatingAdmissionPolicies of `deploy/policies` that the hybrid and policy
//!   overlays install;
//! - the Helm chart, rendered by Helm's own template engine when one is
//!   installed (a `helm` binary, or the `helm-python-sdk` wheel from PyPI,
//!   which bundles the Helm 4 SDK), else skipped with a message; plus the chart
//!   checks that need no renderer;
//! - the Dockerfile and `.dockerignore`;
//! - `tandem certs`, end to end, including the commands the docs give.
//!
//! Every variant passes the same checks: each object is its k8s-openapi type
//! with no unknown fields, the MutatingWebhookConfiguration passes
//! `check_mutating`, the namespaces in scope are what the mode says, the
//! ValidatingAdmissionPolicy binding covers exactly the webhook's namespaces,
//! and every name one object uses to find another (Service, ServiceAccount,
//! Secret, Certificate, Issuer, ClusterRole) resolves. Where MutatingAdmissionPolicies
//! are installed, each has one binding covering the webhook's namespaces too.

mod common;

use common::run::{
    Run, assert_grants_exactly_what_tandem_calls, read_repo, repo_path, tandem_at, yaml_docs,
};
use common::{cel, strict};
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Write as _;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use base64::Engine as _;
use k8s_openapi::api::admissionregistration::v1 as adm;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::{
    apps::v1 as apps, core::v1 as core, policy::v1 as policy, rbac::v1 as rbac,
};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::{Value, json};
use tandem::engine::selector_matches;
use tandem::facts::INJECTION_LABEL;
use tandem::facts::SYSTEM_NAMESPACES;
use tandem::install::webhook::check_mutating;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
/// Tandem's namespace in every shipped variant.
const NS: &str = "tandem-system";
/// Kinds Kubernetes serves cluster-scoped (among those the install uses).
const CLUSTER_SCOPED: [&str; 10] = [
    "Namespace",
    "CustomResourceDefinition",
    "ClusterRole",
    "ClusterRoleBinding",
    "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
    "MutatingAdmissionPolicy",
    "MutatingAdmissionPolicyBinding",
];
/// `tandem policy --config examples/templates`, as a kustomization.
const POLICIES: &str = "deploy/policies";
const POLICIES_FILE: &str = "deploy/policies/policies.yaml";
/// The webhook-free overlay: no server, so it is not a `Variant`.
const POLICY_OVERLAY: &str = "deploy/overlays/policy";

// ---------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------

fn text<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

/// `apiVersion/kind namespace/name`, unique per object in a cluster.
fn id(o: &Value) -> String {
    format!(
        "{}/{} {}/{}",
        text(o, "/apiVersion"),
        text(o, "/kind"),
        text(o, "/metadata/namespace"),
        text(o, "/metadata/name")
    )
}

/// Prints past the test harness' output capture: a skipped check must be seen
/// even when the test passes.
fn notice(message: &str) {
    let _ = writeln!(std::io::stderr(), "\n{message}\n");
}

// ---------------------------------------------------------------------------
// kustomize, as far as deploy/ uses it
// ---------------------------------------------------------------------------

/// The kustomization fields the resolver models. Anything else fails the test
/// instead of being resolved wrongly: extend the resolver (and check it
/// against `kubectl kustomize`) before using a new feature.
const KUSTOMIZATION_FIELDS: [&str; 4] = ["apiVersion", "kind", "resources", "patches"];

/// The objects `kubectl apply -k DIR` would send: `resources` (files and
/// kustomization directories, recursively), then `patches` in order: JSON 6902
/// operation lists on a `target`, and strategic-merge `$patch: delete`.
fn kustomize(dir: &Path) -> Vec<Value> {
    let file = dir.join("kustomization.yaml");
    let here = file.display().to_string();
    let k: Value = serde_saphyr::from_str(
        &fs::read_to_string(&file).unwrap_or_else(|e| panic!("{here}: {e}")),
    )
    .unwrap_or_else(|e| panic!("{here}: {e}"));
    assert_eq!(k["apiVersion"], "kustomize.config.k8s.io/v1beta1", "{here}");
    assert_eq!(k["kind"], "Kustomization", "{here}");
    for key in k.as_object().unwrap().keys() {
        assert!(
            key != "namespace",
            "{here}: `namespace:` would put metadata.namespace on the cluster-scoped \
             ValidatingAdmissionPolicy[Binding] (kubernetes-sigs/kustomize#6051) and leaves the \
             webhooks' service namespace and exclusions behind; every object names its namespace"
        );
        assert!(
            KUSTOMIZATION_FIELDS.contains(&key.as_str()),
            "{here}: `{key}` is not modelled by tests/install.rs"
        );
    }

    let mut objects: Vec<Value> = Vec::new();
    for r in k["resources"].as_array().into_iter().flatten() {
        let r = r
            .as_str()
            .unwrap_or_else(|| panic!("{here}: resources entry {r}"));
        let p = dir.join(r);
        let loaded = if p.is_dir() {
            kustomize(&p)
        } else {
            let what = p.display().to_string();
            yaml_docs(
                &fs::read_to_string(&p).unwrap_or_else(|e| panic!("{what}: {e}")),
                &what,
            )
        };
        for o in loaded {
            assert!(
                !objects.iter().any(|x| id(x) == id(&o)),
                "{here}: {} is defined twice",
                id(&o)
            );
            objects.push(o);
        }
    }

    for (i, entry) in k["patches"].as_array().into_iter().flatten().enumerate() {
        let what = format!("{here}: patches[{i}]");
        for key in entry.as_object().unwrap().keys() {
            assert!(
                ["patch", "path", "target"].contains(&key.as_str()),
                "{what}: `{key}` is not modelled"
            );
        }
        let body = match (entry.get("patch"), entry.get("path")) {
            (Some(p), None) => p.as_str().unwrap().to_string(),
            (None, Some(p)) => fs::read_to_string(dir.join(p.as_str().unwrap())).unwrap(),
            _ => panic!("{what}: needs exactly one of patch and path"),
        };
        let patch: Value = serde_saphyr::from_str(&body).unwrap_or_else(|e| panic!("{what}: {e}"));
        let matched = match &patch {
            Value::Array(_) => {
                let target = entry
                    .get("target")
                    .unwrap_or_else(|| panic!("{what}: a JSON 6902 patch needs a target"));
                let ops: json_patch::Patch =
                    serde_json::from_value(patch.clone()).unwrap_or_else(|e| panic!("{what}: {e}"));
                let mut n = 0;
                for o in objects.iter_mut().filter(|o| on_target(o, target, &what)) {
                    json_patch::patch(o, &ops)
                        .unwrap_or_else(|e| panic!("{what} on {}: {e}", id(o)));
                    prune_empty_metadata(o);
                    n += 1;
                }
                n
            }
            Value::Object(map) => {
                assert_eq!(
                    map.get("$patch").and_then(Value::as_str),
                    Some("delete"),
                    "{what}: strategic-merge patches other than `$patch: delete` are not modelled"
                );
                let target = entry.get("target").cloned().unwrap_or_else(|| {
                    let (group, version) = split_api_version(text(&patch, "/apiVersion"));
                    let mut t = json!({
                        "group": group, "version": version,
                        "kind": text(&patch, "/kind"), "name": text(&patch, "/metadata/name"),
                    });
                    if let Some(ns) = patch.pointer("/metadata/namespace") {
                        t["namespace"] = ns.clone();
                    }
                    t
                });
                let before = objects.len();
                objects.retain(|o| !on_target(o, &target, &what));
                before - objects.len()
            }
            other => panic!("{what}: not a patch: {other}"),
        };
        assert!(matched > 0, "{what} matches no object");
    }
    objects
}

fn split_api_version(api_version: &str) -> (&str, &str) {
    api_version.rsplit_once('/').unwrap_or(("", api_version))
}

/// A patch `target`: every given field must equal the object's (kustomize
/// reads name and namespace as regular expressions; deploy/ uses plain names).
fn on_target(o: &Value, target: &Value, what: &str) -> bool {
    let (group, version) = split_api_version(text(o, "/apiVersion"));
    target.as_object().unwrap().iter().all(|(k, want)| {
        let want = want.as_str().unwrap_or("");
        let have = match k.as_str() {
            "group" => group,
            "version" => version,
            "kind" => text(o, "/kind"),
            "name" => text(o, "/metadata/name"),
            "namespace" => text(o, "/metadata/namespace"),
            other => panic!("{what}: target.{other} is not modelled"),
        };
        have == want
    })
}

/// kustomize drops `annotations: {}` / `labels: {}` left by a removal.
fn prune_empty_metadata(o: &mut Value) {
    if let Some(meta) = o.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.retain(|k, v| {
            !(["annotations", "labels"].contains(&k.as_str())
                && v.as_object().is_some_and(|m| m.is_empty()))
        });
    }
}

// ---------------------------------------------------------------------------
// The checks every install variant passes
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug)]
struct Variant {
    /// Every namespace but the excluded ones (else only those labelled enabled).
    cluster_wide: bool,
    /// Certificates from cert-manager (else self-signed, no cert-manager at all).
    cert_manager: bool,
    /// The ValidatingAdmissionPolicy and binding are installed.
    policy: bool,
    /// Namespaces excluded on top of the system ones and Tandem's own.
    more_excluded: &'static [&'static str],
    /// The webhook port requires a client certificate (`--client-ca-file`),
    /// and cert-manager issues the API server's.
    client_auth: bool,
    /// A NetworkPolicy guards Tandem's pods.
    network_policy: bool,
}

const OPT_IN: Variant = Variant {
    cluster_wide: false,
    cert_manager: true,
    policy: true,
    more_excluded: &[],
    client_auth: false,
    network_policy: false,
};

/// The kustomize variants, each with what it must be.
const KUSTOMIZE_VARIANTS: [(&str, Variant); 6] = [
    ("deploy/base", OPT_IN),
    // The webhook as in the base; the policies are checked by check_install too.
    ("deploy/overlays/hybrid", OPT_IN),
    (
        "deploy/overlays/cluster-wide",
        Variant {
            cluster_wide: true,
            ..OPT_IN
        },
    ),
    (
        "deploy/overlays/self-signed",
        Variant {
            cert_manager: false,
            ..OPT_IN
        },
    ),
    (
        "deploy/overlays/client-auth",
        Variant {
            client_auth: true,
            ..OPT_IN
        },
    ),
    (
        "deploy/overlays/network-policy",
        Variant {
            network_policy: true,
            ..OPT_IN
        },
    ),
];

fn of_kind<'a>(objects: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objects.iter().filter(|o| o["kind"] == kind).collect()
}

fn one<'a>(objects: &'a [Value], kind: &str, source: &str) -> &'a Value {
    let found = of_kind(objects, kind);
    assert_eq!(found.len(), 1, "{source}: want exactly one {kind}");
    found[0]
}

fn named<'a>(objects: &'a [Value], kind: &str, name: &str) -> Option<&'a Value> {
    objects
        .iter()
        .find(|o| o["kind"] == kind && text(o, "/metadata/name") == name)
}

/// Objects by `id`, for comparing installs whatever their order.
fn objects_by_id(objects: &[Value]) -> BTreeMap<String, Value> {
    objects.iter().map(|o| (id(o), o.clone())).collect()
}

/// What `tandem policy` emits: the MutatingAdmissionPolicy and its binding,
/// and policy mode's companion and warnings policies.
fn is_compiled(o: &Value) -> bool {
    matches!(
        text(o, "/kind"),
        "MutatingAdmissionPolicy" | "MutatingAdmissionPolicyBinding"
    ) || is_policy_mode_only(o)
}

/// Policy mode's companion and warnings policies (`tandem-policy-*`), which
/// hybrid mode leaves out: there the webhook injects and warns.
fn is_policy_mode_only(o: &Value) -> bool {
    text(o, "/kind").starts_with("ValidatingAdmissionPolicy")
        && text(o, "/metadata/name").starts_with("tandem-policy-")
}

/// Anything the API server would call: a webhook's clientConfig, a conversion
/// webhook, a Service reference (`service: {name, ...}`).
fn calls_a_service(v: &Value) -> bool {
    match v {
        Value::Object(m) => m.iter().any(|(k, x)| {
            k == "clientConfig" || (k == "service" && x.get("name").is_some()) || calls_a_service(x)
        }),
        Value::Array(a) => a.iter().any(calls_a_service),
        _ => false,
    }
}

/// The namespaceSelector of deploy/base's MutatingWebhookConfiguration: the
/// opt-in scope every webhook-free install must cover too.
fn base_webhook_scope() -> Option<LabelSelector> {
    let base = kustomize(&repo_path("deploy/base"));
    let mwc: adm::MutatingWebhookConfiguration = strict(
        one(&base, "MutatingWebhookConfiguration", "deploy/base"),
        "deploy/base",
    );
    mwc.webhooks.unwrap_or_default()[0]
        .namespace_selector
        .clone()
}

/// Every object is its Kubernetes type with no unknown field.
fn check_types(objects: &[Value], source: &str) {
    let mut seen = BTreeSet::new();
    for o in objects {
        let what = format!("{source}: {}", id(o));
        assert!(seen.insert(id(o)), "{what} appears twice");
        let kind = text(o, "/kind");
        let ns = o.pointer("/metadata/namespace");
        if CLUSTER_SCOPED.contains(&kind) {
            assert!(
                ns.is_none(),
                "{what}: cluster-scoped, but carries metadata.namespace"
            );
        } else {
            assert_eq!(ns.and_then(Value::as_str), Some(NS), "{what}: not in {NS}");
        }
        match kind {
            "Namespace" => drop(strict::<core::Namespace>(o, &what)),
            "ServiceAccount" => drop(strict::<core::ServiceAccount>(o, &what)),
            "Service" => drop(strict::<core::Service>(o, &what)),
            "Secret" => drop(strict::<core::Secret>(o, &what)),
            "ClusterRole" => drop(strict::<rbac::ClusterRole>(o, &what)),
            "ClusterRoleBinding" => drop(strict::<rbac::ClusterRoleBinding>(o, &what)),
            "Deployment" => drop(strict::<apps::Deployment>(o, &what)),
            "PodDisruptionBudget" => drop(strict::<policy::PodDisruptionBudget>(o, &what)),
            "MutatingWebhookConfiguration" => {
                drop(strict::<adm::MutatingWebhookConfiguration>(o, &what))
            }
            "ValidatingWebhookConfiguration" => {
                drop(strict::<adm::ValidatingWebhookConfiguration>(o, &what))
            }
            "ValidatingAdmissionPolicy" => drop(strict::<adm::ValidatingAdmissionPolicy>(o, &what)),
            "ValidatingAdmissionPolicyBinding" => {
                drop(strict::<adm::ValidatingAdmissionPolicyBinding>(o, &what))
            }
            "MutatingAdmissionPolicy" => drop(strict::<adm::MutatingAdmissionPolicy>(o, &what)),
            "MutatingAdmissionPolicyBinding" => {
                drop(strict::<adm::MutatingAdmissionPolicyBinding>(o, &what))
            }
            "CustomResourceDefinition" => drop(strict::<CustomResourceDefinition>(o, &what)),
            "SidecarTemplate" => {
                // Tandem's own loader: unknown fields are errors there too.
                let yaml = serde_json::to_string(o).unwrap();
                if let Err(errors) = tandem::template::parse_documents(&what, &yaml) {
                    let errors: Vec<String> = errors.iter().map(ToString::to_string).collect();
                    panic!("{what}: {errors:?}");
                }
            }
            "Issuer" | "Certificate" => assert_eq!(o["apiVersion"], "cert-manager.io/v1", "{what}"),
            "ServiceMonitor" => assert_eq!(o["apiVersion"], "monitoring.coreos.com/v1", "{what}"),
            "NetworkPolicy" => drop(strict::<NetworkPolicy>(o, &what)),
            other => panic!("{what}: unexpected kind {other}"),
        }
    }
}

/// Does `selector` select a namespace with this name and injection label?
fn selects(selector: Option<&LabelSelector>, name: &str, label: Option<&str>) -> bool {
    let selector = selector.cloned().unwrap_or_default();
    selector_matches(&selector, |k| match k {
        "kubernetes.io/metadata.name" => Some(name),
        k if k == INJECTION_LABEL => label,
        _ => None,
    })
}

fn check_install(objects: &[Value], source: &str, v: Variant) {
    check_types(objects, source);

    // --- Deployment: availability and a restricted pod.
    let deployment: apps::Deployment = strict(one(objects, "Deployment", source), source);
    let spec = deployment.spec.as_ref().unwrap();
    assert!(spec.replicas.unwrap_or(1) >= 2, "{source}: 2+ replicas");
    let rolling = spec
        .strategy
        .as_ref()
        .and_then(|s| s.rolling_update.as_ref());
    assert_eq!(
        rolling.and_then(|r| r.max_unavailable.clone()),
        Some(IntOrString::Int(0)),
        "{source}: rollouts never go below the ready replicas"
    );
    let pod_labels = spec
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    let pod = spec.template.spec.as_ref().unwrap();
    assert_eq!(
        pod.priority_class_name.as_deref(),
        Some("system-cluster-critical"),
        "{source}"
    );
    assert!(
        pod.affinity
            .as_ref()
            .and_then(|a| a.pod_anti_affinity.as_ref())
            .is_some(),
        "{source}: pod anti-affinity"
    );
    let psc = pod.security_context.as_ref().expect("pod securityContext");
    assert_eq!(psc.run_as_non_root, Some(true), "{source}");
    assert_eq!(
        psc.seccomp_profile.as_ref().map(|s| s.type_.as_str()),
        Some("RuntimeDefault"),
        "{source}"
    );
    assert_eq!(pod.containers.len(), 1, "{source}");
    let c = &pod.containers[0];
    let image = c.image.as_deref().unwrap_or("");
    assert!(
        image.ends_with(&format!(":{}", env!("CARGO_PKG_VERSION"))),
        "{source}: image {image} is not the tag of this version"
    );
    let sc = c
        .security_context
        .as_ref()
        .expect("container securityContext");
    assert_eq!(sc.run_as_non_root, Some(true), "{source}");
    assert_eq!(sc.read_only_root_filesystem, Some(true), "{source}");
    assert_eq!(sc.allow_privilege_escalation, Some(false), "{source}");
    assert_eq!(
        sc.capabilities.as_ref().and_then(|c| c.drop.clone()),
        Some(vec!["ALL".to_string()]),
        "{source}"
    );
    let resources = c.resources.as_ref().expect("resources");
    for (what, set) in [
        ("requests", &resources.requests),
        ("limits", &resources.limits),
    ] {
        let set = set.clone().unwrap_or_default();
        assert!(
            set.contains_key("cpu") && set.contains_key("memory"),
            "{source}: {what}"
        );
    }
    let port_names: Vec<&str> = c
        .ports
        .iter()
        .flatten()
        .filter_map(|p| p.name.as_deref())
        .collect();
    for probe in [&c.liveness_probe, &c.readiness_probe] {
        let port = probe
            .as_ref()
            .and_then(|p| p.http_get.as_ref())
            .map(|h| h.port.clone())
            .unwrap_or_else(|| panic!("{source}: liveness and readiness probes over HTTP"));
        assert_eq!(
            port,
            IntOrString::String("admin".into()),
            "{source}: probes on the admin port"
        );
    }
    assert!(
        port_names.contains(&"admin") && port_names.contains(&"https"),
        "{source}"
    );
    let tls_mount = c
        .volume_mounts
        .iter()
        .flatten()
        .find(|m| m.mount_path == "/etc/tandem/tls")
        .unwrap_or_else(|| panic!("{source}: certificate volume at /etc/tandem/tls"));
    let tls_secret = pod
        .volumes
        .iter()
        .flatten()
        .find(|vol| vol.name == tls_mount.name)
        .and_then(|vol| vol.secret.as_ref())
        .and_then(|s| s.secret_name.clone())
        .unwrap_or_else(|| panic!("{source}: the certificate volume is a Secret"));
    check_client_auth(objects, source, v, c, pod);
    check_network_policy(objects, source, v, &pod_labels);
    let sa = pod.service_account_name.clone().unwrap_or_default();
    assert!(
        named(objects, "ServiceAccount", &sa).is_some(),
        "{source}: ServiceAccount {sa}"
    );
    if let Some(pdb) = of_kind(objects, "PodDisruptionBudget").first() {
        let pdb: policy::PodDisruptionBudget = strict(pdb, source);
        let selector = pdb
            .spec
            .and_then(|s| s.selector)
            .and_then(|s| s.match_labels)
            .unwrap_or_default();
        assert!(
            selector
                .iter()
                .all(|(k, val)| pod_labels.get(k) == Some(val)),
            "{source}: the PodDisruptionBudget selects Tandem's pods"
        );
    } else {
        panic!("{source}: no PodDisruptionBudget");
    }

    // --- RBAC: exactly the calls Tandem makes, bound to the pods' account.
    let role: rbac::ClusterRole = strict(one(objects, "ClusterRole", source), source);
    assert_grants_exactly_what_tandem_calls(&role, source);
    let binding: rbac::ClusterRoleBinding =
        strict(one(objects, "ClusterRoleBinding", source), source);
    assert_eq!(binding.role_ref.kind, "ClusterRole");
    assert_eq!(
        Some(binding.role_ref.name.as_str()),
        role.metadata.name.as_deref(),
        "{source}"
    );
    assert!(
        binding
            .subjects
            .iter()
            .flatten()
            .any(|s| s.kind == "ServiceAccount"
                && s.name == sa
                && s.namespace.as_deref() == Some(NS)),
        "{source}: the ClusterRoleBinding binds ServiceAccount {NS}/{sa}"
    );

    // --- Both webhook configurations reach the Service in front of the pods.
    let service_of = |client: &adm::WebhookClientConfig, what: &str| -> String {
        let s = client
            .service
            .as_ref()
            .unwrap_or_else(|| panic!("{source}: {what} calls a Service"));
        assert_eq!(s.namespace, NS, "{source}: {what}");
        let svc = named(objects, "Service", &s.name).unwrap_or_else(|| {
            panic!(
                "{source}: {what} calls Service {}, which is not installed",
                s.name
            )
        });
        let svc: core::Service = strict(svc, source);
        let svc_spec = svc.spec.unwrap();
        let port = svc_spec
            .ports
            .iter()
            .flatten()
            .find(|p| Some(p.port) == s.port.or(Some(443)))
            .unwrap_or_else(|| panic!("{source}: Service {} has no port {:?}", s.name, s.port));
        let target = match &port.target_port {
            Some(IntOrString::String(n)) => n.clone(),
            other => panic!("{source}: Service port targets {other:?}, want the named port https"),
        };
        assert_eq!(target, "https", "{source}");
        let selector = svc_spec.selector.unwrap_or_default();
        assert!(
            !selector.is_empty()
                && selector
                    .iter()
                    .all(|(k, val)| pod_labels.get(k) == Some(val)),
            "{source}: Service {} selects Tandem's pods",
            s.name
        );
        s.name.clone()
    };

    let mutating: adm::MutatingWebhookConfiguration =
        strict(one(objects, "MutatingWebhookConfiguration", source), source);
    let problems = check_mutating(&mutating, NS);
    assert!(problems.is_empty(), "{source}: {problems:?}");
    let webhooks = mutating.webhooks.clone().unwrap_or_default();
    assert_eq!(webhooks.len(), 1, "{source}");
    let hook = &webhooks[0];
    let service = service_of(&hook.client_config, "the mutating webhook");
    let validating: adm::ValidatingWebhookConfiguration = strict(
        one(objects, "ValidatingWebhookConfiguration", source),
        source,
    );
    let vhooks = validating.webhooks.clone().unwrap_or_default();
    assert_eq!(vhooks.len(), 1, "{source}");
    assert_eq!(
        service_of(&vhooks[0].client_config, "the validating webhook"),
        service
    );
    assert_eq!(
        vhooks[0].failure_policy.as_deref(),
        Some("Fail"),
        "{source}"
    );

    // --- The namespaces in scope.
    let selector = hook.namespace_selector.as_ref();
    let exclusions: Vec<String> = selector
        .into_iter()
        .flat_map(|s| s.match_expressions.iter().flatten())
        .filter(|e| e.key == "kubernetes.io/metadata.name" && e.operator == "NotIn")
        .flat_map(|e| e.values.clone().unwrap_or_default())
        .collect();
    for ns in SYSTEM_NAMESPACES.iter().chain([&NS]).chain(v.more_excluded) {
        assert!(
            exclusions.iter().any(|e| e == ns),
            "{source}: {ns} is not excluded by name"
        );
        assert!(
            !selects(selector, ns, None) && !selects(selector, ns, Some("enabled")),
            "{source}: {ns}"
        );
    }
    let match_labels = selector
        .and_then(|s| s.match_labels.clone())
        .unwrap_or_default();
    if v.cluster_wide {
        assert!(
            match_labels.is_empty(),
            "{source}: cluster-wide mode has no matchLabels opt-in: {match_labels:?}"
        );
        assert!(
            selects(selector, "shop", None),
            "{source}: an unlabelled namespace is in scope"
        );
        assert!(selects(selector, "shop", Some("enabled")), "{source}");
        assert!(
            !selects(selector, "shop", Some("disabled")),
            "{source}: injection=disabled opts out"
        );
    } else {
        assert_eq!(
            match_labels,
            BTreeMap::from([(INJECTION_LABEL.to_string(), "enabled".to_string())]),
            "{source}: opt-in mode"
        );
        assert!(selects(selector, "shop", Some("enabled")), "{source}");
        assert!(
            !selects(selector, "shop", None),
            "{source}: unlabelled namespaces are not in scope"
        );
    }

    // --- The admission policy: same scope, the annotations the engine writes.
    let policies = of_kind(objects, "ValidatingAdmissionPolicy");
    let bindings = of_kind(objects, "ValidatingAdmissionPolicyBinding");
    if v.policy {
        assert_eq!(
            (policies.len(), bindings.len()),
            (1, 1),
            "{source}: one policy, one binding"
        );
        check_policy(policies[0], bindings[0], selector, source);
    } else {
        assert!(
            policies.is_empty() && bindings.is_empty(),
            "{source}: policy disabled"
        );
    }
    check_mutating_policies(objects, selector, source);

    // --- Certificates.
    let annotation = |o: &Value, key: &str| {
        o.pointer("/metadata/annotations")
            .and_then(|a| a.get(key))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let mwc = one(objects, "MutatingWebhookConfiguration", source);
    let vwc = one(objects, "ValidatingWebhookConfiguration", source);
    let bundles = [
        &hook.client_config.ca_bundle,
        &vhooks[0].client_config.ca_bundle,
    ];
    if v.cert_manager {
        let serving = of_kind(objects, "Certificate")
            .into_iter()
            .find(|c| text(c, "/spec/secretName") == tls_secret)
            .unwrap_or_else(|| panic!("{source}: no Certificate writes Secret {tls_secret}"));
        let dns: Vec<&str> = serving["spec"]["dnsNames"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let host = format!("{service}.{NS}.svc");
        assert!(
            dns.contains(&host.as_str()),
            "{source}: the serving certificate lacks {host}: {dns:?}"
        );
        let issuer = &serving["spec"]["issuerRef"];
        if text(issuer, "/kind") == "Issuer" {
            let name = text(issuer, "/name");
            let issuer = named(objects, "Issuer", name)
                .unwrap_or_else(|| panic!("{source}: Issuer {name} is not installed"));
            if let Some(ca_secret) = issuer
                .pointer("/spec/ca/secretName")
                .and_then(Value::as_str)
            {
                let ca = of_kind(objects, "Certificate")
                    .into_iter()
                    .find(|c| text(c, "/spec/secretName") == ca_secret)
                    .unwrap_or_else(|| {
                        panic!("{source}: no Certificate writes the CA Secret {ca_secret}")
                    });
                assert_eq!(ca["spec"]["isCA"], true, "{source}");
            }
        }
        let inject = format!("{NS}/{}", text(serving, "/metadata/name"));
        for (o, bundle) in [mwc, vwc].into_iter().zip(bundles) {
            assert_eq!(
                annotation(o, "cert-manager.io/inject-ca-from"),
                Some(inject.clone()),
                "{source}: {}",
                id(o)
            );
            assert!(
                bundle.is_none(),
                "{source}: {}: cainjector owns caBundle",
                id(o)
            );
        }
    } else {
        for o in objects {
            assert!(
                !text(o, "/apiVersion").starts_with("cert-manager.io/"),
                "{source}: {} without cert-manager",
                id(o)
            );
            let keys: Vec<&String> = o
                .pointer("/metadata/annotations")
                .and_then(Value::as_object)
                .into_iter()
                .flat_map(|m| m.keys())
                .collect();
            assert!(
                !keys.iter().any(|k| k.starts_with("cert-manager.io/")),
                "{source}: {} has cert-manager annotations {keys:?}",
                id(o)
            );
        }
        match named(objects, "Secret", &tls_secret) {
            // kustomize: the Secret and caBundle are the user's (tandem certs).
            None => assert!(
                bundles.iter().all(|b| b.is_none()),
                "{source}: caBundle without its Secret"
            ),
            // Helm: generated; the caBundle must be the CA that signed the Secret.
            Some(secret) => {
                let secret: core::Secret = strict(secret, source);
                let data = secret.data.unwrap_or_default();
                let get = |k: &str| {
                    data.get(k)
                        .map(|b| b.0.clone())
                        .unwrap_or_else(|| panic!("{source}: Secret {tls_secret} lacks {k}"))
                };
                for bundle in bundles {
                    assert_eq!(
                        bundle.as_ref().map(|b| b.0.clone()),
                        Some(get("ca.crt")),
                        "{source}: caBundle is the Secret's CA"
                    );
                }
                handshake(
                    &get("ca.crt"),
                    &get("tls.crt"),
                    &get("tls.key"),
                    &format!("{service}.{NS}.svc"),
                )
                .unwrap_or_else(|e| {
                    panic!("{source}: the generated certificate does not verify: {e}")
                });
            }
        }
    }
}

/// With client auth, the webhook requires a client certificate from a CA
/// the pod mounts, and cert-manager issues the API server's certificate
/// from that same CA, for client auth; without it, neither is there.
fn check_client_auth(
    objects: &[Value],
    source: &str,
    v: Variant,
    c: &core::Container,
    pod: &core::PodSpec,
) {
    let flag = c
        .args
        .iter()
        .flatten()
        .find_map(|a| a.strip_prefix("--client-ca-file="));
    if !v.client_auth {
        assert!(
            flag.is_none(),
            "{source}: --client-ca-file without client auth"
        );
        return;
    }
    let path = flag.unwrap_or_else(|| panic!("{source}: no --client-ca-file"));
    let (dir, file) = path.rsplit_once('/').unwrap();
    let mount = c
        .volume_mounts
        .iter()
        .flatten()
        .find(|m| m.mount_path == dir)
        .unwrap_or_else(|| panic!("{source}: nothing mounted at {dir}"));
    assert_eq!(mount.read_only, Some(true), "{source}");
    let secret = pod
        .volumes
        .iter()
        .flatten()
        .find(|vol| vol.name == mount.name)
        .and_then(|vol| vol.secret.as_ref())
        .unwrap_or_else(|| panic!("{source}: the client CA volume is a Secret"));
    let ca_secret = secret.secret_name.clone().unwrap_or_default();
    let key = secret
        .items
        .iter()
        .flatten()
        .find(|i| i.path == file)
        .map_or(file, |i| i.key.as_str());
    assert_eq!(key, "ca.crt", "{source}: the CA, never the CA's key");
    // The CA Secret is a CA Certificate's, and an Issuer signs from it...
    let ca = of_kind(objects, "Certificate")
        .into_iter()
        .find(|o| text(o, "/spec/secretName") == ca_secret)
        .unwrap_or_else(|| panic!("{source}: no Certificate writes {ca_secret}"));
    assert_eq!(ca["spec"]["isCA"], true, "{source}");
    let issuer = of_kind(objects, "Issuer")
        .into_iter()
        .find(|o| text(o, "/spec/ca/secretName") == ca_secret)
        .unwrap_or_else(|| panic!("{source}: no Issuer signs with {ca_secret}"));
    // ...the API server's client certificate, and only that.
    let issued: Vec<&Value> = of_kind(objects, "Certificate")
        .into_iter()
        .filter(|o| text(o, "/spec/issuerRef/name") == text(issuer, "/metadata/name"))
        .collect();
    assert_eq!(
        issued.len(),
        1,
        "{source}: the client CA signs one certificate"
    );
    let usages: Vec<&str> = issued[0]["spec"]["usages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    assert!(usages.contains(&"client auth"), "{source}: {usages:?}");
    assert!(!usages.contains(&"server auth"), "{source}: {usages:?}");
    // The serving certificate comes from another CA.
    assert_ne!(ca_secret, "tandem-ca", "{source}");
}

/// With a NetworkPolicy: it selects Tandem's pods, lets anyone reach the
/// webhook port (the API server's address cannot be selected), the admin
/// port only from selected namespaces, and lets the pods reach only the API
/// server's ports. Without one, none is installed.
fn check_network_policy(
    objects: &[Value],
    source: &str,
    v: Variant,
    pod_labels: &BTreeMap<String, String>,
) {
    let policies = of_kind(objects, "NetworkPolicy");
    if !v.network_policy {
        assert!(
            policies.is_empty(),
            "{source}: a NetworkPolicy nobody asked for"
        );
        return;
    }
    let np: NetworkPolicy = strict(one(objects, "NetworkPolicy", source), source);
    assert_eq!(np.metadata.namespace.as_deref(), Some(NS), "{source}");
    let spec = np.spec.unwrap();
    let selected = spec
        .pod_selector
        .as_ref()
        .and_then(|s| s.match_labels.clone())
        .unwrap_or_default();
    assert!(
        !selected.is_empty()
            && selected
                .iter()
                .all(|(k, val)| pod_labels.get(k) == Some(val)),
        "{source}: the NetworkPolicy selects Tandem's pods"
    );
    assert_eq!(
        spec.policy_types.as_deref(),
        Some(&["Ingress".to_string(), "Egress".to_string()][..]),
        "{source}"
    );
    let port_of = |p: &k8s_openapi::api::networking::v1::NetworkPolicyPort| match &p.port {
        Some(IntOrString::Int(n)) => *n,
        other => panic!("{source}: port {other:?}"),
    };
    let mut webhook_open = false;
    let mut admin_from = Vec::new();
    for rule in spec.ingress.iter().flatten() {
        let ports: Vec<i32> = rule.ports.iter().flatten().map(port_of).collect();
        assert!(
            !ports.is_empty(),
            "{source}: an ingress rule for every port"
        );
        for port in ports {
            match port {
                8443 => {
                    assert!(
                        rule.from.is_none(),
                        "{source}: the webhook port from anywhere"
                    );
                    webhook_open = true;
                }
                9090 => {
                    let from = rule.from.clone().unwrap_or_default();
                    assert!(
                        !from.is_empty()
                            && from
                                .iter()
                                .all(|p| p.namespace_selector.is_some() && p.ip_block.is_none()),
                        "{source}: the admin port only from selected namespaces"
                    );
                    admin_from.extend(from);
                }
                other => panic!("{source}: ingress on port {other}"),
            }
        }
    }
    assert!(webhook_open && !admin_from.is_empty(), "{source}");
    let egress = spec.egress.unwrap_or_default();
    assert!(!egress.is_empty(), "{source}: egress is restricted");
    for rule in &egress {
        let ports: Vec<i32> = rule.ports.iter().flatten().map(port_of).collect();
        assert!(
            !ports.is_empty() && ports.iter().all(|p| [443, 6443].contains(p)),
            "{source}: egress only to the API server's ports: {ports:?}"
        );
    }
}

/// Every MutatingAdmissionPolicy has exactly one binding, which covers exactly
/// `selector`, the webhook's namespaces: the companion ValidatingAdmissionPolicy
/// covers those, so a binding covering fewer leaves pods it rejects, and one
/// covering more injects where the webhook (in hybrid mode) never would.
/// Returns how many policies there are.
fn check_mutating_policies(
    objects: &[Value],
    selector: Option<&LabelSelector>,
    source: &str,
) -> usize {
    let names: BTreeSet<String> = of_kind(objects, "MutatingAdmissionPolicy")
        .into_iter()
        .map(|o| {
            let p: adm::MutatingAdmissionPolicy = strict(o, source);
            assert!(p.spec.is_some(), "{source}: {}: no spec", id(o));
            p.metadata.name.unwrap_or_default()
        })
        .collect();
    let mut bound = BTreeSet::new();
    for o in of_kind(objects, "MutatingAdmissionPolicyBinding") {
        let b: adm::MutatingAdmissionPolicyBinding = strict(o, source);
        let what = format!("{source}: {}", id(o));
        let spec = b.spec.unwrap_or_else(|| panic!("{what}: no spec"));
        let policy = spec.policy_name.unwrap_or_default();
        assert!(
            names.contains(&policy),
            "{what}: binds {policy}, which is not installed"
        );
        assert!(
            bound.insert(policy.clone()),
            "{what}: {policy} is bound twice"
        );
        assert!(spec.param_ref.is_none(), "{what}: no parameters to find");
        let covered = spec.match_resources.and_then(|m| m.namespace_selector);
        assert_eq!(
            covered.as_ref(),
            selector,
            "{what}: the binding covers exactly the webhook's namespaces"
        );
    }
    assert_eq!(
        bound, names,
        "{source}: every MutatingAdmissionPolicy is bound"
    );
    names.len()
}

fn check_policy(
    policy_doc: &Value,
    binding_doc: &Value,
    selector: Option<&LabelSelector>,
    source: &str,
) {
    let policy: adm::ValidatingAdmissionPolicy = strict(policy_doc, source);
    let binding: adm::ValidatingAdmissionPolicyBinding = strict(binding_doc, source);
    let spec = policy.spec.clone().unwrap();
    let rules = spec
        .match_constraints
        .as_ref()
        .and_then(|m| m.resource_rules.clone())
        .unwrap_or_default();
    assert!(
        rules
            .iter()
            .any(|r| r.resources.iter().flatten().any(|x| x == "pods")
                && r.operations.iter().flatten().any(|x| x == "CREATE")),
        "{source}: the policy checks pod creation"
    );
    let mut cel = String::new();
    for c in spec.match_conditions.iter().flatten() {
        cel += &c.expression;
    }
    for v in spec.variables.iter().flatten() {
        cel += &v.expression;
    }
    for val in spec.validations.iter().flatten() {
        cel += &val.expression;
        cel += val.message_expression.as_deref().unwrap_or("");
    }
    for annotation in ["'tandem.dev/inject'", "'tandem.dev/status'"] {
        assert!(
            cel.contains(annotation),
            "{source}: the policy's CEL never reads {annotation}"
        );
    }
    let problems = tandem::install::sites::check_validating_policy(&spec);
    assert!(problems.is_empty(), "{source}: {problems:?}");
    policy_agrees_with_the_engine(&spec, source);
    let bspec = binding.spec.clone();
    assert_eq!(
        Some(&bspec.policy_name),
        policy.metadata.name.as_ref(),
        "{source}: the binding names the policy"
    );
    assert!(
        bspec.validation_actions.iter().any(|a| a == "Deny"),
        "{source}: the binding denies"
    );
    let covered = bspec.match_resources.and_then(|m| m.namespace_selector);
    assert_eq!(
        covered.as_ref(),
        selector,
        "{source}: the binding covers exactly the webhook's namespaces"
    );
}

/// A TLS handshake, in memory, between a server holding `cert_pem` + `key_pem`
/// and a client trusting only `ca_pem`, connecting to `name` (rustls' webpki
/// verifier: chain, validity, name, key usage).
fn handshake(ca_pem: &[u8], cert_pem: &[u8], key_pem: &[u8], name: &str) -> Result<(), String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    let err = |e: &dyn std::fmt::Display| e.to_string();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(ca_pem) {
        roots.add(ca.map_err(|e| err(&e))?).map_err(|e| err(&e))?;
    }
    let client = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| err(&e))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(&e))?;
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| err(&e))?;
    let server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| err(&e))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| err(&e))?;
    let server_name = ServerName::try_from(name.to_string()).map_err(|e| err(&e))?;
    let mut client: rustls::Connection =
        rustls::ClientConnection::new(Arc::new(client), server_name)
            .map_err(|e| err(&e))?
            .into();
    let mut server: rustls::Connection = rustls::ServerConnection::new(Arc::new(server))
        .map_err(|e| err(&e))?
        .into();
    fn pump(from: &mut rustls::Connection, to: &mut rustls::Connection) -> Result<(), String> {
        let mut wire = Vec::new();
        while from.wants_write() {
            from.write_tls(&mut wire).map_err(|e| e.to_string())?;
        }
        let mut rest = &wire[..];
        while !rest.is_empty() {
            to.read_tls(&mut rest).map_err(|e| e.to_string())?;
            to.process_new_packets().map_err(|e| e.to_string())?;
        }
        Ok(())
    }
    for _ in 0..10 {
        if !client.is_handshaking() && !server.is_handshaking() {
            return Ok(());
        }
        pump(&mut client, &mut server)?;
        pump(&mut server, &mut client)?;
    }
    Err("the handshake did not finish".into())
}

// ---------------------------------------------------------------------------
// kustomize tests
// ---------------------------------------------------------------------------

#[test]
fn every_overlay_is_checked() {
    let mut overlays: Vec<String> = fs::read_dir(repo_path("deploy/overlays"))
        .unwrap()
        .map(|e| {
            format!(
                "deploy/overlays/{}",
                e.unwrap().file_name().to_string_lossy()
            )
        })
        .collect();
    overlays.sort();
    let mut known: Vec<&str> = KUSTOMIZE_VARIANTS
        .iter()
        .map(|(d, _)| *d)
        .chain([POLICY_OVERLAY])
        .filter(|d| d.starts_with("deploy/overlays/"))
        .collect();
    known.sort();
    assert_eq!(
        overlays, known,
        "add new overlays to KUSTOMIZE_VARIANTS in tests/install.rs (or a test of their own, \
         like POLICY_OVERLAY's)"
    );
}

#[test]
fn kustomize_variants_pass_the_install_checks() {
    let crd = yaml_docs(&read_repo("deploy/base/crd.yaml"), "crd.yaml").remove(0);
    for (dir, variant) in KUSTOMIZE_VARIANTS {
        let objects = kustomize(&repo_path(dir));
        check_install(&objects, dir, variant);
        // kustomize installs the namespace and the CRD too.
        let ns: core::Namespace = strict(one(&objects, "Namespace", dir), dir);
        assert_eq!(ns.metadata.name.as_deref(), Some(NS));
        let labels = ns.metadata.labels.unwrap_or_default();
        assert_eq!(
            labels.get(INJECTION_LABEL).map(String::as_str),
            Some("disabled"),
            "{dir}"
        );
        assert_eq!(
            labels
                .get("pod-security.kubernetes.io/enforce")
                .map(String::as_str),
            Some("restricted"),
            "{dir}"
        );
        assert_eq!(
            one(&objects, "CustomResourceDefinition", dir),
            &crd,
            "{dir}"
        );
    }
}

#[test]
fn overlays_change_only_what_they_say() {
    let base = kustomize(&repo_path("deploy/base"));
    let by_id = |objects: &[Value]| -> BTreeMap<String, Value> {
        objects.iter().map(|o| (id(o), o.clone())).collect()
    };
    let base = by_id(&base);

    let wide = by_id(&kustomize(&repo_path("deploy/overlays/cluster-wide")));
    assert_eq!(
        wide.keys().collect::<Vec<_>>(),
        base.keys().collect::<Vec<_>>()
    );
    let changed: Vec<&String> = wide
        .iter()
        .filter(|(k, o)| base[*k] != **o)
        .map(|(k, _)| k)
        .collect();
    assert_eq!(
        changed,
        [
            "admissionregistration.k8s.io/v1/MutatingWebhookConfiguration /tandem",
            "admissionregistration.k8s.io/v1/ValidatingAdmissionPolicyBinding /tandem-require-injection",
        ]
    );

    let signed = by_id(&kustomize(&repo_path("deploy/overlays/self-signed")));
    let removed: Vec<&String> = base.keys().filter(|k| !signed.contains_key(*k)).collect();
    let cert_manager: Vec<&String> = base
        .keys()
        .filter(|k| k.starts_with("cert-manager.io/"))
        .collect();
    assert!(!cert_manager.is_empty());
    assert_eq!(
        removed, cert_manager,
        "the self-signed overlay removes exactly the cert-manager objects"
    );
    for (k, o) in &signed {
        let mut o = o.clone();
        let mut b = base[k].clone();
        for x in [&mut o, &mut b] {
            if let Some(meta) = x.get_mut("metadata").and_then(Value::as_object_mut) {
                meta.remove("annotations");
            }
        }
        assert_eq!(
            o, b,
            "{k}: the self-signed overlay changes only cert-manager annotations"
        );
    }

    // Each add-on overlay adds its objects and changes nothing else, but for
    // client-auth's flag and volume on the Deployment.
    for (dir, added, changed) in [
        (
            "deploy/overlays/client-auth",
            &[
                "cert-manager.io/v1/Certificate tandem-system/tandem-apiserver-client",
                "cert-manager.io/v1/Certificate tandem-system/tandem-client-ca",
                "cert-manager.io/v1/Issuer tandem-system/tandem-client-ca",
            ][..],
            &["apps/v1/Deployment tandem-system/tandem"][..],
        ),
        (
            "deploy/overlays/network-policy",
            &["networking.k8s.io/v1/NetworkPolicy tandem-system/tandem"][..],
            &[][..],
        ),
    ] {
        let overlay = by_id(&kustomize(&repo_path(dir)));
        let new: Vec<&str> = overlay
            .keys()
            .filter(|k| !base.contains_key(*k))
            .map(String::as_str)
            .collect();
        assert_eq!(new, added, "{dir}: adds");
        let differs: Vec<&str> = base
            .iter()
            .filter(|(k, o)| overlay.get(*k) != Some(*o))
            .map(|(k, _)| k.as_str())
            .collect();
        assert_eq!(differs, changed, "{dir}: changes");
    }

    let hybrid = by_id(&kustomize(&repo_path("deploy/overlays/hybrid")));
    let mutating: Vec<Value> = yaml_docs(&read_repo(POLICIES_FILE), POLICIES_FILE)
        .into_iter()
        .filter(|o| !is_policy_mode_only(o))
        .collect();
    let compiled = by_id(&mutating);
    let mut expected = base.clone();
    expected.extend(compiled.clone());
    assert_eq!(
        hybrid, expected,
        "the hybrid overlay is the base plus the MutatingAdmissionPolicy of {POLICIES}, unchanged"
    );
    assert_eq!(base.len() + compiled.len(), hybrid.len());
}

/// The resolver above against the real thing, where kubectl is installed.
#[test]
fn resolver_agrees_with_kubectl_kustomize() {
    let available = Command::new("kubectl")
        .args(["version", "--client"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !available {
        notice(
            "SKIPPED resolver_agrees_with_kubectl_kustomize: kubectl is not installed; the kustomize resolver in tests/install.rs was not compared with `kubectl kustomize`.",
        );
        return;
    }
    let dirs = KUSTOMIZE_VARIANTS.map(|(d, _)| d);
    for dir in dirs.iter().chain(&[POLICIES, POLICY_OVERLAY]) {
        let out = Command::new("kubectl")
            .args(["kustomize", &repo_path(dir).display().to_string()])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "kubectl kustomize {dir}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut real = yaml_docs(&String::from_utf8_lossy(&out.stdout), dir);
        let mut ours = kustomize(&repo_path(dir));
        real.sort_by_key(id);
        ours.sort_by_key(id);
        assert_eq!(
            real.iter().map(id).collect::<Vec<_>>(),
            ours.iter().map(id).collect::<Vec<_>>(),
            "{dir}"
        );
        for (r, o) in real.iter().zip(&ours) {
            assert_eq!(r, o, "{dir}: {}", id(r));
        }
    }
}

/// deploy/policies is what the compiler prints, so it cannot drift from it.
#[test]
fn policies_are_the_output_of_tandem_policy() {
    let Run {
        ok, stdout, stderr, ..
    } = tandem_at(
        &["policy", "--config", "examples/templates"],
        Path::new(ROOT),
    );
    assert!(ok, "tandem policy --config examples/templates: {stderr}");
    let file = read_repo(POLICIES_FILE);
    if file != stdout {
        let line = common::first_difference(&file, &stdout);
        panic!(
            "{POLICIES_FILE} is not the output of `tandem policy --config examples/templates` \
             (first difference on line {}); regenerate it:\n  \
             cargo run -- policy --config examples/templates > {POLICIES_FILE}",
            line + 1
        );
    }
    let header = read_repo(&format!("{POLICIES}/kustomization.yaml"));
    for hint in [
        "tandem policy --config <your templates> > deploy/policies/policies.yaml",
        "--mode cluster-wide",
    ] {
        assert!(
            header.contains(hint),
            "{POLICIES}/kustomization.yaml does not say how to regenerate the policies: {hint}"
        );
    }
    let objects = kustomize(&repo_path(POLICIES));
    check_types(&objects, POLICIES);
    assert!(
        objects.iter().all(is_compiled),
        "{POLICIES}: only the compiled policies"
    );
    let n = check_mutating_policies(&objects, base_webhook_scope().as_ref(), POLICIES);
    assert!(n > 0, "{POLICIES}: no template compiled");
}

/// deploy/overlays/policy: nothing on the pod-creation path but the API
/// server, so no server object at all, and the policies cover the scope the
/// companion ValidatingAdmissionPolicy guards.
#[test]
fn policy_overlay_installs_only_what_the_api_server_runs() {
    let source = POLICY_OVERLAY;
    let objects = kustomize(&repo_path(source));
    check_types(&objects, source);
    let base = kustomize(&repo_path("deploy/base"));
    let compiled = yaml_docs(&read_repo(POLICIES_FILE), POLICIES_FILE);
    let kept = ["Namespace", "CustomResourceDefinition"];
    let expected: Vec<Value> = base
        .iter()
        .filter(|o| kept.contains(&text(o, "/kind")))
        .chain(&compiled)
        .cloned()
        .collect();
    assert_eq!(expected.len(), kept.len() + compiled.len());
    let (have, want) = (objects_by_id(&objects), objects_by_id(&expected));
    assert_eq!(
        have.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "{source}: the Namespace, the CRD and the policies of {POLICIES} (policy mode's own \
         companion in place of the base's), nothing else"
    );
    assert_eq!(have, want, "{source}: what it keeps, it keeps unchanged");

    let selector = base_webhook_scope();
    assert!(
        check_mutating_policies(&objects, selector.as_ref(), source) > 0,
        "{source}: no MutatingAdmissionPolicy"
    );
    // The companion and the warnings cover the policy's namespaces.
    for b in of_kind(&objects, "ValidatingAdmissionPolicyBinding") {
        let b: adm::ValidatingAdmissionPolicyBinding = strict(b, source);
        assert_eq!(
            b.spec
                .match_resources
                .and_then(|m| m.namespace_selector)
                .as_ref(),
            selector.as_ref(),
            "{source}: {:?} covers the policy's namespaces",
            b.metadata.name
        );
    }
    for o in &objects {
        assert!(
            !calls_a_service(o),
            "{source}: {} calls a Service, and no server is installed",
            id(o)
        );
    }
}

// ---------------------------------------------------------------------------
// The Helm chart
// ---------------------------------------------------------------------------

const CHART: &str = "charts/tandem";
const RELEASE: &str = "tandem";

/// Renders a chart with `helm_python` (PyPI: helm-python-sdk, the Helm 4 SDK
/// in a wheel): argv = chart dir, values JSON, release, namespace; prints
/// {template path: manifest} as JSON.
const PY_RENDER: &str = r#"
import json, sys
import helm_python as helm
chart, values, release, namespace = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3], sys.argv[4]
with helm.Chart.load(chart) as c:
    c.validate_schema(values)
    out = c.render(values, name=release, namespace=namespace, is_install=True)
json.dump(out, sys.stdout)
"#;

enum Renderer {
    /// A `helm` binary: `helm template`.
    Helm(String),
    /// A Python interpreter that can `import helm_python`.
    Python(String),
}

const INSTALL_HINT: &str = "Install a renderer: `python3 -m venv target/helm-venv && \
target/helm-venv/bin/pip install helm-python-sdk==0.2.2` and set \
TANDEM_HELM_PYTHON=target/helm-venv/bin/python (or any python3 that can `import helm_python`), \
or put a `helm` binary on PATH (or TANDEM_HELM=/path/to/helm). \
TANDEM_REQUIRE_HELM=1 turns this skip into a failure.";

fn runs(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success())
}

fn renderer() -> Option<Renderer> {
    if let Ok(helm) = std::env::var("TANDEM_HELM") {
        assert!(runs(&helm, &["version"]), "TANDEM_HELM={helm} does not run");
        return Some(Renderer::Helm(helm));
    }
    if let Ok(py) = std::env::var("TANDEM_HELM_PYTHON") {
        let py = if Path::new(&py).is_relative() && py.contains('/') {
            repo_path(&py).display().to_string()
        } else {
            py
        };
        assert!(
            runs(&py, &["-c", "import helm_python"]),
            "TANDEM_HELM_PYTHON={py} cannot import helm_python"
        );
        return Some(Renderer::Python(py));
    }
    if runs("helm", &["version"]) {
        return Some(Renderer::Helm("helm".into()));
    }
    if runs("python3", &["-c", "import helm_python"]) {
        return Some(Renderer::Python("python3".into()));
    }
    None
}

/// `None` (after printing why) when no renderer is installed.
fn renderer_or_skip(test: &str) -> Option<Renderer> {
    let found = renderer();
    if found.is_none() {
        assert!(
            std::env::var_os("TANDEM_REQUIRE_HELM").is_none(),
            "TANDEM_REQUIRE_HELM is set but no Helm renderer was found. {INSTALL_HINT}"
        );
        notice(&format!(
            "SKIPPED {test}: no Helm renderer found, the chart was not rendered. {INSTALL_HINT}"
        ));
    }
    found
}

struct Rendered {
    objects: Vec<Value>,
    /// NOTES.txt, when the renderer gives it.
    notes: Option<String>,
}

fn render(r: &Renderer, values: &Value) -> Result<Rendered, String> {
    let chart = repo_path(CHART).display().to_string();
    match r {
        Renderer::Helm(helm) => {
            let dir = tempfile::tempdir().unwrap();
            let file = dir.path().join("values.json");
            fs::write(&file, values.to_string()).unwrap();
            let out = Command::new(helm)
                .args([
                    "template",
                    RELEASE,
                    &chart,
                    "--namespace",
                    NS,
                    "--kube-version",
                    "1.30.0",
                    "--values",
                ])
                .arg(&file)
                .env("HELM_CACHE_HOME", dir.path())
                .env("HELM_CONFIG_HOME", dir.path())
                .env("HELM_DATA_HOME", dir.path())
                .output()
                .map_err(|e| e.to_string())?;
            if !out.status.success() {
                return Err(String::from_utf8_lossy(&out.stderr).into_owned());
            }
            Ok(Rendered {
                objects: yaml_docs(&String::from_utf8_lossy(&out.stdout), "helm template"),
                notes: None,
            })
        }
        Renderer::Python(py) => {
            let out = Command::new(py)
                .args(["-c", PY_RENDER, &chart, &values.to_string(), RELEASE, NS])
                .output()
                .map_err(|e| e.to_string())?;
            if !out.status.success() {
                return Err(String::from_utf8_lossy(&out.stderr).into_owned());
            }
            let files: BTreeMap<String, String> =
                serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
            let mut objects = Vec::new();
            let mut notes = None;
            for (file, manifest) in files {
                if file.ends_with("NOTES.txt") {
                    notes = Some(manifest);
                } else {
                    objects.extend(yaml_docs(&manifest, &file));
                }
            }
            Ok(Rendered { objects, notes })
        }
    }
}

struct ChartCase {
    name: &'static str,
    values: Value,
    variant: Variant,
    /// The kustomize variant that must install the same objects.
    same_as: Option<&'static str>,
}

fn chart_cases() -> Vec<ChartCase> {
    vec![
        ChartCase {
            name: "default values",
            values: json!({}),
            variant: OPT_IN,
            same_as: Some("deploy/base"),
        },
        ChartCase {
            name: "mode=cluster-wide",
            values: json!({"mode": "cluster-wide"}),
            variant: Variant {
                cluster_wide: true,
                ..OPT_IN
            },
            same_as: Some("deploy/overlays/cluster-wide"),
        },
        ChartCase {
            name: "certificates.mode=self-signed",
            values: json!({"certificates": {"mode": "self-signed"}}),
            variant: Variant {
                cert_manager: false,
                ..OPT_IN
            },
            same_as: Some("deploy/overlays/self-signed"),
        },
        ChartCase {
            name: "mode=cluster-wide, certificates.mode=self-signed",
            values: json!({"mode": "cluster-wide", "certificates": {"mode": "self-signed"}}),
            variant: Variant {
                cluster_wide: true,
                cert_manager: false,
                ..OPT_IN
            },
            same_as: None,
        },
        ChartCase {
            name: "injector.mode=hybrid",
            values: json!({"injector": {"mode": "hybrid", "policies": read_repo(POLICIES_FILE)}}),
            variant: OPT_IN,
            same_as: Some("deploy/overlays/hybrid"),
        },
        ChartCase {
            name: "clientAuth.enabled",
            values: json!({"clientAuth": {"enabled": true}}),
            variant: Variant {
                client_auth: true,
                ..OPT_IN
            },
            same_as: Some("deploy/overlays/client-auth"),
        },
        ChartCase {
            name: "networkPolicy.enabled",
            values: json!({"networkPolicy": {"enabled": true}}),
            variant: Variant {
                network_policy: true,
                ..OPT_IN
            },
            same_as: Some("deploy/overlays/network-policy"),
        },
        ChartCase {
            name: "templates, ServiceMonitor, external issuer, no policy",
            values: json!({
                "replicas": 3,
                "excludedNamespaces": ["kube-system", "kube-public", "kube-node-lease", "monitoring"],
                "validatingPolicy": {"enabled": false},
                "serviceMonitor": {"enabled": true, "labels": {"release": "prometheus"}},
                "certificates": {"certManager": {"issuerRef": {"name": "corp-ca", "kind": "ClusterIssuer"}}},
                "templates": {"log-shipper": {
                    "pattern": "sidecar",
                    "containers": [{"name": "log-shipper", "image": "fluent/fluent-bit:3.2.4",
                                    "volumeMounts": [{"name": "app-logs", "mountPath": "/var/log/app"}]}],
                    "volumes": [{"name": "app-logs", "emptyDir": {"sizeLimit": "256Mi"}}],
                    "app": {"volumeMounts": [{"name": "app-logs", "mountPath": "/var/log/app"}]}
                }}
            }),
            variant: Variant {
                policy: false,
                more_excluded: &["monitoring"],
                ..OPT_IN
            },
            same_as: None,
        },
    ]
}

#[test]
fn chart_renders_and_passes_the_install_checks() {
    let Some(renderer) = renderer_or_skip("chart_renders_and_passes_the_install_checks") else {
        return;
    };
    for case in chart_cases() {
        let source = format!("{CHART} ({})", case.name);
        let rendered = render(&renderer, &case.values).unwrap_or_else(|e| panic!("{source}: {e}"));
        let objects = &rendered.objects;
        check_install(objects, &source, case.variant);
        let hybrid = case.values.pointer("/injector/mode") == Some(&json!("hybrid"));
        assert!(
            of_kind(objects, "Namespace").is_empty()
                && of_kind(objects, "CustomResourceDefinition").is_empty(),
            "{source}: crds/ and --create-namespace own those"
        );
        if let Some(notes) = &rendered.notes {
            let label = if case.variant.cluster_wide {
                "tandem.dev/injection=disabled"
            } else {
                "tandem.dev/injection=enabled"
            };
            assert!(
                notes.contains(&format!("kubectl label namespace <ns> {label}")),
                "{source}: NOTES.txt: {notes}"
            );
            let unhook = notes
                .find("kubectl delete mutatingwebhookconfiguration")
                .expect("NOTES: uninstall order");
            assert!(
                unhook < notes.find("helm uninstall").unwrap(),
                "{source}: NOTES: the webhook goes first"
            );
            if hybrid {
                assert!(
                    notes.contains(
                        "kubectl get mutatingadmissionpolicies,mutatingadmissionpolicybindings \
                         -l app.kubernetes.io/name=tandem"
                    ),
                    "{source}: NOTES: how to see the policies: {notes}"
                );
                let unbind = notes
                    .find("kubectl delete mutatingadmissionpolicybindings")
                    .expect("NOTES: the policies' bindings in the uninstall order");
                assert!(
                    unbind < notes.find("helm uninstall").unwrap(),
                    "{source}: NOTES: the bindings go before the release"
                );
            } else {
                assert!(
                    !notes.contains("admissionpolicies"),
                    "{source}: NOTES: no policies in webhook mode: {notes}"
                );
            }
        }
        let compiled = objects_by_id(
            &objects
                .iter()
                .filter(|o| is_compiled(o))
                .cloned()
                .collect::<Vec<_>>(),
        );
        if hybrid {
            let mutating: Vec<Value> = yaml_docs(&read_repo(POLICIES_FILE), POLICIES_FILE)
                .into_iter()
                .filter(|o| !is_policy_mode_only(o))
                .collect();
            assert_eq!(
                compiled,
                objects_by_id(&mutating),
                "{source}: injector.policies verbatim, but policy mode's own policies"
            );
        } else {
            assert!(compiled.is_empty(), "{source}: policies in webhook mode");
        }
        if case.name.starts_with("templates") {
            assert_eq!(of_kind(objects, "SidecarTemplate").len(), 1, "{source}");
            let monitor = one(objects, "ServiceMonitor", &source);
            assert_eq!(text(monitor, "/spec/endpoints/0/port"), "admin", "{source}");
            assert_eq!(
                text(monitor, "/metadata/labels/release"),
                "prometheus",
                "{source}"
            );
            assert!(
                of_kind(objects, "Issuer").is_empty(),
                "{source}: an external issuer needs no bootstrap CA"
            );
            let d: apps::Deployment = strict(one(objects, "Deployment", &source), &source);
            assert_eq!(d.spec.unwrap().replicas, Some(3));
        }
        if let Some(dir) = case.same_as {
            same_objects(
                &kustomize(&repo_path(dir)),
                objects,
                &format!("{source} vs {dir}"),
            );
        }
    }
}

/// The chart and kustomize install the same things (chart-only: helm labels,
/// the self-signed Secrets, the validating webhook's exemption of the release's
/// own templates, the flags for values; kustomize-only: Namespace and CRD).
fn same_objects(kustomized: &[Value], rendered: &[Value], source: &str) {
    let kinds = |objects: &[Value], skip: &[&str]| -> Vec<String> {
        let mut k: Vec<String> = objects
            .iter()
            .map(|o| text(o, "/kind").to_string())
            .filter(|k| !skip.contains(&k.as_str()))
            .collect();
        k.sort();
        k
    };
    assert_eq!(
        kinds(kustomized, &["Namespace", "CustomResourceDefinition"]),
        kinds(rendered, &["Secret"]),
        "{source}: kinds"
    );
    for (kind, pointers) in [
        ("MutatingWebhookConfiguration", &["/webhooks"][..]),
        ("ValidatingAdmissionPolicy", &["/spec"][..]),
        ("ValidatingAdmissionPolicyBinding", &["/spec"][..]),
        ("ClusterRole", &["/rules"][..]),
        (
            "NetworkPolicy",
            &["/spec/policyTypes", "/spec/ingress", "/spec/egress"][..],
        ),
        ("Service", &["/spec/ports", "/spec/type"][..]),
        (
            "PodDisruptionBudget",
            &["/spec/minAvailable", "/spec/unhealthyPodEvictionPolicy"][..],
        ),
        (
            "Deployment",
            &[
                "/spec/replicas",
                "/spec/strategy",
                "/spec/template/spec/securityContext",
                "/spec/template/spec/priorityClassName",
                "/spec/template/spec/containers/0/securityContext",
                "/spec/template/spec/containers/0/livenessProbe",
                "/spec/template/spec/containers/0/readinessProbe",
                "/spec/template/spec/containers/0/resources",
                "/spec/template/spec/containers/0/ports",
                "/spec/template/spec/containers/0/volumeMounts",
                "/spec/template/spec/containers/0/image",
            ][..],
        ),
    ] {
        let k = of_kind(kustomized, kind);
        let r = of_kind(rendered, kind);
        if k.is_empty() && r.is_empty() {
            continue;
        }
        for pointer in pointers {
            let mut a = k[0].pointer(pointer).cloned();
            let mut b = r[0].pointer(pointer).cloned();
            for x in [&mut a, &mut b].into_iter().flatten() {
                strip_ca_bundle(x);
            }
            assert_eq!(a, b, "{source}: {kind} {pointer}");
        }
    }
    // Every flag kustomize passes, the chart passes too.
    let args = |objects: &[Value]| -> Vec<String> {
        one(objects, "Deployment", source)["spec"]["template"]["spec"]["containers"][0]["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_string())
            .collect()
    };
    let chart_args = args(rendered);
    for a in args(kustomized) {
        assert!(chart_args.contains(&a), "{source}: the chart lacks `{a}`");
    }
}

/// injector.mode=policy: the policies and the ValidatingAdmissionPolicy, and
/// none of the server's objects whatever the server's values say.
#[test]
fn chart_policy_mode_installs_only_the_policies() {
    let Some(renderer) = renderer_or_skip("chart_policy_mode_installs_only_the_policies") else {
        return;
    };
    let policies = read_repo(POLICIES_FILE);
    let compiled = objects_by_id(&yaml_docs(&policies, POLICIES_FILE));
    let overlay = kustomize(&repo_path(POLICY_OVERLAY));
    let selector = base_webhook_scope();
    let injector = json!({"mode": "policy", "policies": policies});
    for (name, values) in [
        ("injector.mode=policy", json!({"injector": injector})),
        (
            "injector.mode=policy, every server value set",
            json!({
                "injector": injector,
                "replicas": 3,
                "certificates": {"mode": "self-signed"},
                "serviceMonitor": {"enabled": true},
                "podDisruptionBudget": {"enabled": true},
            }),
        ),
        (
            "injector.mode=policy, no validating policy",
            json!({"injector": injector, "validatingPolicy": {"enabled": false}}),
        ),
    ] {
        let source = format!("{CHART} ({name})");
        let rendered = render(&renderer, &values).unwrap_or_else(|e| panic!("{source}: {e}"));
        let objects = &rendered.objects;
        check_types(objects, &source);
        let (mutating, rest): (Vec<Value>, Vec<Value>) =
            objects.iter().cloned().partition(is_compiled);
        assert_eq!(
            objects_by_id(&mutating),
            compiled,
            "{source}: injector.policies, verbatim"
        );
        // The compiled companion takes the chart's place, as in the overlay;
        // `validatingPolicy.enabled` has nothing left to turn off.
        let kinds: Vec<&str> = rest.iter().map(|o| text(o, "/kind")).collect();
        assert!(
            kinds.is_empty(),
            "{source}: no server object, no second companion: {kinds:?}"
        );
        check_mutating_policies(objects, selector.as_ref(), &source);
        for o in objects.iter().filter(|o| is_policy_mode_only(o)) {
            let kind = text(o, "/kind");
            let name = text(o, "/metadata/name");
            assert_eq!(
                o["spec"],
                named(&overlay, kind, name).unwrap()["spec"],
                "{source}: {kind} {name} as in {POLICY_OVERLAY}"
            );
        }
        for o in objects {
            assert!(
                !calls_a_service(o),
                "{source}: {} calls a Service, and no server is installed",
                id(o)
            );
        }
        if let Some(notes) = &rendered.notes {
            for wanted in [
                "kubectl get mutatingadmissionpolicies,mutatingadmissionpolicybindings -l app.kubernetes.io/name=tandem",
                "kubectl label namespace <ns> tandem.dev/injection=enabled",
                "tandem policy --config <templates dir> > policies.yaml",
                "--set-file injector.policies=policies.yaml",
            ] {
                assert!(
                    notes.contains(wanted),
                    "{source}: NOTES lacks `{wanted}`: {notes}"
                );
            }
            for unwanted in [
                "rollout status",
                "webhookconfiguration",
                "sidecartemplates -A",
            ] {
                assert!(
                    !notes.contains(unwanted),
                    "{source}: NOTES: `{unwanted}`, but there is no server: {notes}"
                );
            }
            let unbind = notes
                .find("kubectl delete mutatingadmissionpolicybindings -l app.kubernetes.io/name=tandem")
                .unwrap_or_else(|| panic!("{source}: NOTES: the bindings in the uninstall order"));
            assert!(
                unbind < notes.find("helm uninstall").unwrap(),
                "{source}: NOTES: the bindings go first"
            );
        }
    }
    // NOTES finds the policies by this label, whatever the release is called.
    for (id, o) in &compiled {
        assert_eq!(
            text(o, "/metadata/labels/app.kubernetes.io~1name"),
            "tandem",
            "{id}"
        );
    }
}

/// policy and hybrid mode without their policies, with the wrong file, or
/// (policy mode) with templates no server would read, fail to render.
#[test]
fn chart_refuses_policy_modes_without_their_policies() {
    let Some(renderer) = renderer_or_skip("chart_refuses_policy_modes_without_their_policies")
    else {
        return;
    };
    let policies = read_repo(POLICIES_FILE);
    let templates = json!({"log-shipper": {
        "pattern": "sidecar",
        "containers": [{"name": "log-shipper", "image": "fluent/fluent-bit:3.2.4"}],
    }});
    for (what, values, message) in [
        (
            "policy mode, no policies",
            json!({"injector": {"mode": "policy"}}),
            "injector.mode=policy needs injector.policies",
        ),
        (
            "hybrid mode, empty policies",
            json!({"injector": {"mode": "hybrid", "policies": ""}}),
            "injector.mode=hybrid needs injector.policies",
        ),
        (
            "policy mode, the webhook manifest as policies",
            json!({"injector": {"mode": "policy", "policies": read_repo("deploy/base/mutatingwebhook.yaml")}}),
            "injector.policies holds no MutatingAdmissionPolicy",
        ),
        (
            "hybrid mode, bindings only",
            json!({"injector": {"mode": "hybrid", "policies": policies
                .split("\n---\n")
                .filter(|d| !d.contains("\nkind: MutatingAdmissionPolicy\n"))
                .collect::<Vec<_>>()
                .join("\n---\n")}}),
            "injector.policies holds no MutatingAdmissionPolicy",
        ),
        (
            "client auth, self-signed certificates, no CA Secret",
            json!({"clientAuth": {"enabled": true}, "certificates": {"mode": "self-signed"}}),
            "clientAuth.enabled without certificates.mode=cert-manager needs clientAuth.caSecret",
        ),
        (
            "policy mode with templates",
            json!({"injector": {"mode": "policy", "policies": policies}, "templates": templates}),
            "in policy mode templates are compiled by tandem policy; pass its output as injector.policies",
        ),
    ] {
        match render(&renderer, &values) {
            Ok(_) => panic!("{CHART}: rendered {what}"),
            Err(e) => assert!(
                e.contains(message),
                "{what}: the error is not `{message}`: {e}"
            ),
        }
    }
    // Hybrid mode still has the server that reads templates.
    let hybrid =
        json!({"injector": {"mode": "hybrid", "policies": policies}, "templates": templates});
    let rendered =
        render(&renderer, &hybrid).unwrap_or_else(|e| panic!("hybrid with templates: {e}"));
    assert_eq!(of_kind(&rendered.objects, "SidecarTemplate").len(), 1);
}

fn strip_ca_bundle(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.remove("caBundle");
            m.values_mut().for_each(strip_ca_bundle);
        }
        Value::Array(a) => a.iter_mut().for_each(strip_ca_bundle),
        _ => {}
    }
}

#[test]
fn chart_schema_refuses_bad_values() {
    let Some(renderer) = renderer_or_skip("chart_schema_refuses_bad_values") else {
        return;
    };
    for (values, key) in [
        (json!({"timeoutSeconds": 30}), "timeoutSeconds"),
        (json!({"mode": "everywhere"}), "mode"),
        (json!({"injector": {"mode": "everywhere"}}), "mode"),
        (
            json!({"injector": {"policies": ["tandem-log-shipper"]}}),
            "policies",
        ),
        (
            json!({"injector": {"mode": "policy", "policy": "x"}}),
            "policy",
        ),
        (json!({"image": {"tag": "latest"}}), "tag"),
        (json!({"failurePolicy": "Retry"}), "failurePolicy"),
        (json!({"replica": 2}), "replica"),
    ] {
        match render(&renderer, &values) {
            Ok(_) => panic!("the chart accepted {values}"),
            Err(e) => assert!(
                e.contains(key),
                "{values}: the error does not name {key}: {e}"
            ),
        }
    }
}

/// What can be checked without a renderer.
#[test]
fn chart_files_are_consistent() {
    let chart: Value = serde_saphyr::from_str(&read_repo("charts/tandem/Chart.yaml")).unwrap();
    assert_eq!(chart["apiVersion"], "v2");
    assert_eq!(chart["name"], "tandem");
    assert_eq!(
        chart["appVersion"],
        env!("CARGO_PKG_VERSION"),
        "Chart.yaml appVersion is the crate version"
    );
    let version = text(&chart, "/version");
    assert!(
        version.split('.').count() == 3 && version.split('.').all(|p| p.parse::<u64>().is_ok()),
        "Chart.yaml version {version}"
    );
    assert!(
        text(&chart, "/kubeVersion").starts_with(">=1.29"),
        "native sidecars need 1.29"
    );

    assert_eq!(
        read_repo("charts/tandem/crds/crd.yaml"),
        read_repo("deploy/base/crd.yaml"),
        "the chart's CRD is the same file"
    );

    // values.yaml against values.schema.json (the draft-07 subset it uses),
    // and the schema against a few bad values.
    let schema: Value =
        serde_json::from_str(&read_repo("charts/tandem/values.schema.json")).unwrap();
    let values: Value = serde_saphyr::from_str(&read_repo("charts/tandem/values.yaml")).unwrap();
    let errors = validate(&schema, &values, "values");
    assert!(
        errors.is_empty(),
        "values.yaml does not match values.schema.json: {errors:?}"
    );
    assert_eq!(
        values["injector"],
        json!({"mode": "webhook", "policies": ""}),
        "the webhook injects unless told otherwise"
    );
    for (pointer, bad) in [
        ("/timeoutSeconds", json!(30)),
        ("/mode", json!("everywhere")),
        ("/injector/mode", json!("everywhere")),
        ("/injector/policies", json!(["tandem-log-shipper"])),
        ("/injector/policy", json!("x")),
        ("/image/tag", json!("latest")),
        ("/certificates/mode", json!("vault")),
        ("/replicas", json!("2")),
        ("/unknownKey", json!(1)),
    ] {
        let mut v = values.clone();
        let (parent, key) = pointer.rsplit_once('/').unwrap();
        v.pointer_mut(if parent.is_empty() { "" } else { parent })
            .unwrap()[key] = bad.clone();
        assert!(
            !validate(&schema, &v, "values").is_empty(),
            "the schema accepts {pointer} = {bad}"
        );
    }

    // Templates: balanced actions and blocks.
    let mut all_templates = String::new();
    for entry in fs::read_dir(repo_path("charts/tandem/templates")).unwrap() {
        let p = entry.unwrap().path();
        let t = fs::read_to_string(&p).unwrap();
        let name = p.display().to_string();
        assert_eq!(
            t.matches("{{").count(),
            t.matches("}}").count(),
            "{name}: unbalanced {{{{ }}}}"
        );
        let actions: Vec<&str> = t
            .split("{{")
            .skip(1)
            .map(|a| a.split("}}").next().unwrap().trim_start_matches('-').trim())
            .collect();
        let opens = actions
            .iter()
            .filter(|a| {
                ["if ", "range ", "with ", "define "]
                    .iter()
                    .any(|k| a.starts_with(k))
            })
            .count();
        let ends = actions
            .iter()
            .filter(|a| a.trim_end_matches('-').trim() == "end")
            .count();
        assert_eq!(opens, ends, "{name}: {opens} blocks opened, {ends} ended");
        all_templates += &t;
    }
    // Every kind the kustomize base installs has a template (Namespace: helm
    // --create-namespace; CRD: crds/).
    for o in kustomize(&repo_path("deploy/base")) {
        let kind = text(&o, "/kind");
        if kind != "Namespace" && kind != "CustomResourceDefinition" {
            assert!(
                all_templates.contains(&format!("kind: {kind}\n")),
                "the chart has no {kind}"
            );
        }
    }
}

/// The draft-07 keywords values.schema.json uses, except `pattern` and
/// `propertyNames` (no regex engine here; Helm checks those).
fn validate(schema: &Value, v: &Value, at: &str) -> Vec<String> {
    let mut errors = Vec::new();
    let Some(s) = schema.as_object() else {
        return errors;
    };
    if let Some(t) = s.get("type").and_then(Value::as_str) {
        let ok = match t {
            "object" => v.is_object(),
            "array" => v.is_array(),
            "string" => v.is_string(),
            "boolean" => v.is_boolean(),
            "integer" => v.is_i64() || v.is_u64(),
            "number" => v.is_number(),
            other => panic!("{at}: schema type {other}"),
        };
        if !ok {
            return vec![format!("{at}: not a {t}: {v}")];
        }
    }
    if let Some(e) = s.get("enum").and_then(Value::as_array)
        && !e.contains(v)
    {
        errors.push(format!("{at}: {v} not in {e:?}"));
    }
    if let Some(c) = s.get("const")
        && c != v
    {
        errors.push(format!("{at}: {v} is not {c}"));
    }
    if let Some(n) = s.get("not")
        && validate(n, v, at).is_empty()
    {
        errors.push(format!("{at}: {v} matches a forbidden schema"));
    }
    if let Some(alts) = s.get("oneOf").and_then(Value::as_array) {
        let passing = alts
            .iter()
            .filter(|a| validate(a, v, at).is_empty())
            .count();
        if passing != 1 {
            errors.push(format!("{at}: {v} matches {passing} of oneOf"));
        }
    }
    if let Some(n) = v.as_f64()
        && (s
            .get("minimum")
            .and_then(Value::as_f64)
            .is_some_and(|m| n < m)
            || s.get("maximum")
                .and_then(Value::as_f64)
                .is_some_and(|m| n > m))
    {
        errors.push(format!("{at}: {n} out of range"));
    }
    if let Some(text) = v.as_str() {
        let len = text.chars().count() as u64;
        if s.get("minLength")
            .and_then(Value::as_u64)
            .is_some_and(|m| len < m)
            || s.get("maxLength")
                .and_then(Value::as_u64)
                .is_some_and(|m| len > m)
        {
            errors.push(format!("{at}: length {len} out of range"));
        }
    }
    if let Some(items) = v.as_array() {
        if let Some(item_schema) = s.get("items") {
            for (i, item) in items.iter().enumerate() {
                errors.extend(validate(item_schema, item, &format!("{at}[{i}]")));
            }
        }
        if s.get("uniqueItems") == Some(&Value::Bool(true)) {
            let unique: BTreeSet<String> = items.iter().map(Value::to_string).collect();
            if unique.len() != items.len() {
                errors.push(format!("{at}: items are not unique"));
            }
        }
    }
    if let Some(map) = v.as_object() {
        let props = s.get("properties").and_then(Value::as_object);
        for key in s
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if !map.contains_key(key.as_str().unwrap()) {
                errors.push(format!("{at}: {key} is required"));
            }
        }
        for (k, val) in map {
            let here = format!("{at}.{k}");
            match (props.and_then(|p| p.get(k)), s.get("additionalProperties")) {
                (Some(p), _) => errors.extend(validate(p, val, &here)),
                (None, Some(Value::Bool(false))) => errors.push(format!("{here}: not allowed")),
                (None, Some(extra)) => errors.extend(validate(extra, val, &here)),
                (None, None) => {}
            }
        }
        if let Some(deps) = s.get("dependencies").and_then(Value::as_object) {
            for (k, needs) in deps {
                if map.contains_key(k) {
                    for n in needs.as_array().into_iter().flatten() {
                        if !map.contains_key(n.as_str().unwrap()) {
                            errors.push(format!("{at}: {k} needs {n}"));
                        }
                    }
                }
            }
        }
    }
    errors
}

// ---------------------------------------------------------------------------
// The Dockerfile
// ---------------------------------------------------------------------------

/// Instructions (keyword upper-cased, arguments), continuation lines joined,
/// comments dropped.
fn dockerfile_instructions(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if current.is_empty() && (trimmed.is_empty() || trimmed.starts_with('#')) {
            continue;
        }
        if trimmed.starts_with('#') {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(part) => {
                current += part;
                current.push(' ');
            }
            None => {
                current += trimmed;
                let (keyword, args) = current
                    .split_once(char::is_whitespace)
                    .unwrap_or((&current, ""));
                out.push((keyword.to_ascii_uppercase(), args.trim().to_string()));
                current.clear();
            }
        }
    }
    out
}

/// `image:tag` or `image@sha256:...`, never `latest`.
fn pinned(image: &str) -> bool {
    if image.contains("@sha256:") {
        return true;
    }
    let last = image.rsplit('/').next().unwrap();
    matches!(last.split_once(':'), Some((_, tag)) if !tag.is_empty() && tag != "latest")
}

#[test]
fn dockerfile_builds_locked_and_runs_non_root() {
    let text = read_repo("Dockerfile");
    if let Some(syntax) = text
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("# syntax="))
    {
        assert!(
            pinned(syntax.trim()),
            "the syntax directive {syntax} is not pinned"
        );
    }
    assert!(!text.contains(":latest"), "no latest tags");
    let instructions = dockerfile_instructions(&text);
    let froms: Vec<usize> = instructions
        .iter()
        .enumerate()
        .filter(|(_, (k, _))| k == "FROM")
        .map(|(i, _)| i)
        .collect();
    assert!(froms.len() >= 2, "multi-stage: {} FROM", froms.len());

    let mut stages: Vec<String> = Vec::new();
    for &i in &froms {
        let words: Vec<&str> = instructions[i]
            .1
            .split_whitespace()
            .filter(|w| !w.starts_with("--"))
            .collect();
        let image = words[0];
        assert!(!image.contains('$'), "FROM {image}: pin it literally");
        assert!(
            stages.iter().any(|s| s == image) || pinned(image),
            "FROM {image} is not pinned to a tag or digest"
        );
        if let [_, r#as, name] = words[..] {
            assert!(r#as.eq_ignore_ascii_case("as"));
            stages.push(name.to_string());
        }
    }

    // The builder uses the toolchain the repository pins, and Cargo.lock.
    let channel = toml_channel(&read_repo("rust-toolchain.toml"));
    let channel = channel.as_str();
    let builder = &instructions[froms[0]].1;
    assert!(
        builder.contains(&format!("rust:{channel}")),
        "the builder image {builder} is not Rust {channel}"
    );
    for (k, args) in &instructions {
        if k == "ENV" && args.contains("RUSTUP_TOOLCHAIN=") {
            assert!(
                args.contains(&format!("RUSTUP_TOOLCHAIN={channel}")),
                "ENV {args}: rust-toolchain.toml says {channel}"
            );
        }
    }
    // The image's binary is the profile-guided build, whose last cargo
    // build is the one whose flags count.
    let build = instructions
        .iter()
        .find(|(k, a)| k == "RUN" && a.contains("bench/pgo.sh"))
        .expect("a RUN with bench/pgo.sh");
    assert!(
        build.1.contains("cp target/pgo/tandem "),
        "the image takes bench/pgo.sh's binary: {}",
        build.1
    );
    let pgo = read_repo("bench/pgo.sh");
    let cargo_build = pgo
        .lines()
        .rev()
        .find(|l| l.contains("cargo build") && l.contains("--bin tandem"))
        .expect("bench/pgo.sh builds tandem");
    for flag in ["--locked", "--release"] {
        assert!(
            cargo_build.contains(flag),
            "bench/pgo.sh: cargo build without {flag}: {cargo_build}"
        );
    }

    // The final stage: no shell needed, a numeric non-root user, the binary as entrypoint.
    let last = &instructions[*froms.last().unwrap()..];
    assert!(
        !last.iter().any(|(k, _)| k == "RUN"),
        "the runtime stage runs nothing (no shell)"
    );
    let user = last
        .iter()
        .rev()
        .find(|(k, _)| k == "USER")
        .map(|(_, a)| a.clone())
        .expect("the runtime stage sets USER");
    for id in user.split(':') {
        let n: u32 = id
            .parse()
            .unwrap_or_else(|_| panic!("USER {user}: numeric, so runAsNonRoot can check it"));
        assert_ne!(n, 0, "USER {user} is root");
    }
    let entrypoint = last
        .iter()
        .rev()
        .find(|(k, _)| k == "ENTRYPOINT")
        .map(|(_, a)| a.clone())
        .expect("ENTRYPOINT");
    let entrypoint: Vec<String> = serde_json::from_str(&entrypoint)
        .unwrap_or_else(|_| panic!("ENTRYPOINT {entrypoint}: exec form"));
    let copies_binary = last.iter().any(|(k, a)| {
        k == "COPY"
            && a.contains("--from=")
            && a.split_whitespace().last() == Some(entrypoint[0].as_str())
            && a.contains("tandem")
    });
    assert!(
        copies_binary,
        "ENTRYPOINT {entrypoint:?} is not the binary copied from the builder"
    );
    assert!(last.iter().any(|(k, _)| k == "LABEL"), "OCI labels");
    // The SBOM: written by release/sbom.sh in the builder, copied where the
    // label says.
    assert!(
        instructions
            .iter()
            .any(|(k, a)| k == "RUN" && a.contains("bash release/sbom.sh --out /out/sbom.cdx.json")),
        "the builder writes the SBOM with release/sbom.sh"
    );
    let sbom_label = last
        .iter()
        .filter(|(k, _)| k == "LABEL")
        .find_map(|(_, a)| {
            let at = a.find("dev.tandem.sbom=\"")? + "dev.tandem.sbom=\"".len();
            a[at..].split('"').next().map(str::to_string)
        })
        .expect("a dev.tandem.sbom label");
    assert!(
        last.iter().any(|(k, a)| k == "COPY"
            && a.contains("/out/sbom.cdx.json")
            && a.split_whitespace().last() == Some(sbom_label.as_str())),
        "the SBOM is copied to {sbom_label}, where the label points"
    );
    assert!(repo_path("release/sbom.sh").is_file());
    for (k, args) in last {
        if k == "ARG" && args.starts_with("VERSION=") {
            assert_eq!(
                &args["VERSION=".len()..],
                env!("CARGO_PKG_VERSION"),
                "ARG VERSION default"
            );
        }
    }
    let container = &kustomize(&repo_path("deploy/base"))
        .into_iter()
        .find(|o| o["kind"] == "Deployment")
        .unwrap()["spec"]["template"]["spec"]["containers"][0];
    assert!(
        container.get("command").is_none(),
        "the Deployment relies on the image's ENTRYPOINT"
    );
}

/// `channel` from rust-toolchain.toml (one line; no TOML parser needed).
fn toml_channel(text: &str) -> String {
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("channel"))
        .expect("channel");
    let value = line.split_once('=').expect("channel = ...").1;
    value.trim().trim_matches('"').to_string()
}

/// `.dockerignore` semantics: patterns are matched against the path and each
/// of its parent directories; `*` and `?` stay within one segment, `**` spans
/// any number; the last matching line wins, `!` re-includes.
fn docker_ignored(patterns: &str, file: &str) -> bool {
    fn glob(p: &[u8], s: &[u8]) -> bool {
        match p {
            [] => s.is_empty(),
            [b'*', b'*', b'/', rest @ ..] => {
                glob(rest, s)
                    || s.iter()
                        .enumerate()
                        .any(|(i, &c)| c == b'/' && glob(p, &s[i + 1..]))
            }
            [b'*', b'*'] => true,
            [b'*', rest @ ..] => (0..=s.len())
                .take_while(|&i| i == 0 || s[i - 1] != b'/')
                .any(|i| glob(rest, &s[i..])),
            [b'?', rest @ ..] => !s.is_empty() && s[0] != b'/' && glob(rest, &s[1..]),
            [c, rest @ ..] => s.first() == Some(c) && glob(rest, &s[1..]),
        }
    }
    let mut prefixes = vec![file.to_string()];
    let mut p = file;
    while let Some((parent, _)) = p.rsplit_once('/') {
        prefixes.push(parent.to_string());
        p = parent;
    }
    let mut ignored = false;
    for line in patterns
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let (negate, pattern) = match line.strip_prefix('!') {
            Some(p) => (true, p),
            None => (false, line),
        };
        let pattern = pattern.trim_start_matches('/').trim_end_matches('/');
        if prefixes
            .iter()
            .any(|f| glob(pattern.as_bytes(), f.as_bytes()))
        {
            ignored = !negate;
        }
    }
    ignored
}

#[test]
fn dockerignore_keeps_build_outputs_and_keys_out() {
    let patterns = read_repo(".dockerignore");
    for out in [
        "target/debug/tandem",
        "target/release/tandem",
        "fuzz/target/x",
        ".git/HEAD",
        "certs/tls.key",
        "certs/ca.crt",
    ] {
        assert!(
            docker_ignored(&patterns, out),
            ".dockerignore lets {out} into the build context"
        );
    }
    // What the build needs (include_str! reads examples/; Cargo.toml names benches/).
    for needed in [
        "Cargo.toml",
        "Cargo.lock",
        "rust-toolchain.toml",
        "src/main.rs",
        "src/cli/mod.rs",
        "examples/templates/log-shipper.yaml",
        "benches/engine.rs",
    ] {
        assert!(
            !docker_ignored(&patterns, needed),
            ".dockerignore drops {needed}, which the build needs"
        );
    }
    assert!(
        docker_ignored("**/target/\n", "a/b/target/x")
            && !docker_ignored("target\n", "src/target.rs")
    );
}

// ---------------------------------------------------------------------------
// tandem certs
// ---------------------------------------------------------------------------

fn pem_cert(bytes: &[u8]) -> Vec<u8> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(bytes).expect("PEM");
    pem.contents
}

#[test]
fn certs_writes_a_ca_and_a_serving_certificate_that_verify() {
    use x509_parser::prelude::*;

    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("certs");
    let out = out_dir.display().to_string();
    let Run {
        ok, stdout, stderr, ..
    } = tandem_at(&["certs", "--out-dir", &out, "--days", "30"], dir.path());
    assert!(ok, "{stderr}");
    for f in ["ca.crt", "tls.crt", "tls.key"] {
        assert!(out_dir.join(f).is_file(), "{f} missing");
    }
    use std::os::unix::fs::PermissionsExt;
    let mode = fs::metadata(out_dir.join("tls.key"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600, "tls.key mode {mode:o}");
    let ca_pem = fs::read(out_dir.join("ca.crt")).unwrap();
    let tls_pem = fs::read(out_dir.join("tls.crt")).unwrap();
    let key_pem = fs::read(out_dir.join("tls.key")).unwrap();

    // stdout is exactly the caBundle; stderr says what to do with it.
    let bundle = base64::engine::general_purpose::STANDARD
        .decode(stdout.trim())
        .expect("stdout is base64");
    assert_eq!(bundle, ca_pem, "the printed caBundle is ca.crt");
    assert_eq!(
        stdout.trim().lines().count(),
        1,
        "one line, ready for a JSON patch"
    );
    for hint in [
        "create secret tls tandem-tls",
        "caBundle",
        "kubectl apply -k deploy/overlays/self-signed",
    ] {
        assert!(
            stderr.contains(hint),
            "stderr does not mention {hint}: {stderr}"
        );
    }

    // The serving certificate verifies against the CA for every Service name.
    for name in [
        "tandem.tandem-system.svc",
        "tandem.tandem-system.svc.cluster.local",
        "tandem.tandem-system",
        "tandem",
    ] {
        handshake(&ca_pem, &tls_pem, &key_pem, name).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    let wrong = handshake(&ca_pem, &tls_pem, &key_pem, "tandem.other.svc");
    assert!(
        wrong.is_err(),
        "the certificate must not be valid for another namespace"
    );
    let other = tempfile::tempdir().unwrap();
    let Run { ok, .. } = tandem_at(&["certs", "--out-dir", "x"], other.path());
    assert!(ok);
    let other_ca = fs::read(other.path().join("x/ca.crt")).unwrap();
    assert!(
        handshake(&other_ca, &tls_pem, &key_pem, "tandem.tandem-system.svc").is_err(),
        "another CA must not verify it"
    );

    // What is in them.
    let ca_der = pem_cert(&ca_pem);
    let (_, ca) = X509Certificate::from_der(&ca_der).unwrap();
    let leaf_der = pem_cert(&tls_pem);
    let (_, leaf) = X509Certificate::from_der(&leaf_der).unwrap();
    let bc = ca
        .basic_constraints()
        .unwrap()
        .expect("basicConstraints")
        .value;
    assert!(
        bc.ca && bc.path_len_constraint == Some(0),
        "a CA that signs leaves only: {bc:?}"
    );
    assert!(!leaf.is_ca());
    assert_eq!(leaf.issuer(), ca.subject());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    for cert in [&ca, &leaf] {
        assert!(
            matches!(cert.public_key().parsed(), Ok(x509_parser::public_key::PublicKey::EC(ref ec)) if ec.key_size() == 256),
            "ECDSA P-256"
        );
        let days = (cert.validity().not_after.timestamp() - now) as f64 / 86_400.0;
        assert!(
            (29.9..=30.1).contains(&days),
            "valid {days} days, asked for 30"
        );
        assert!(cert.validity().not_before.timestamp() <= now);
    }
    let sans: Vec<String> = leaf
        .subject_alternative_name()
        .unwrap()
        .expect("subjectAltName")
        .value
        .general_names
        .iter()
        .map(|n| match n {
            GeneralName::DNSName(d) => d.to_string(),
            other => panic!("unexpected SAN {other:?}"),
        })
        .collect();
    assert_eq!(
        sans,
        [
            "tandem",
            "tandem.tandem-system",
            "tandem.tandem-system.svc",
            "tandem.tandem-system.svc.cluster.local"
        ]
    );
    assert!(
        leaf.extended_key_usage()
            .unwrap()
            .expect("extendedKeyUsage")
            .value
            .server_auth
    );

    // A second run refuses to overwrite; --force replaces everything.
    let Run {
        ok,
        stdout: stdout2,
        stderr: stderr2,
        ..
    } = tandem_at(&["certs", "--out-dir", &out], dir.path());
    assert!(!ok && stdout2.is_empty(), "a second run must refuse");
    assert!(
        stderr2.contains("--force") && stderr2.contains("ca.crt"),
        "{stderr2}"
    );
    assert_eq!(
        fs::read(out_dir.join("ca.crt")).unwrap(),
        ca_pem,
        "refused, yet ca.crt changed"
    );
    fs::remove_file(out_dir.join("ca.crt")).unwrap();
    let Run {
        ok,
        stderr: stderr3,
        ..
    } = tandem_at(&["certs", "--out-dir", &out], dir.path());
    assert!(
        !ok && stderr3.contains("tls.key"),
        "any one existing file blocks: {stderr3}"
    );
    let Run {
        ok,
        stdout: stdout4,
        stderr: stderr4,
        ..
    } = tandem_at(
        &[
            "certs",
            "--out-dir",
            &out,
            "--force",
            "--service",
            "hook",
            "--namespace",
            "ops",
        ],
        dir.path(),
    );
    assert!(ok, "{stderr4}");
    let ca2 = fs::read(out_dir.join("ca.crt")).unwrap();
    assert_ne!(ca2, ca_pem);
    assert_eq!(
        base64::engine::general_purpose::STANDARD
            .decode(stdout4.trim())
            .unwrap(),
        ca2
    );
    let mode = fs::metadata(out_dir.join("tls.key"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    handshake(
        &ca2,
        &fs::read(out_dir.join("tls.crt")).unwrap(),
        &fs::read(out_dir.join("tls.key")).unwrap(),
        "hook.ops.svc",
    )
    .unwrap();

    // Bad input.
    for args in [
        &["certs", "--out-dir", "y", "--days", "0"][..],
        &["certs", "--out-dir", "y", "--service", "Bad_Name"][..],
        &["certs"][..],
    ] {
        let Run { ok, .. } = tandem_at(args, dir.path());
        assert!(!ok, "{args:?} must fail");
    }
}

/// The self-signed install steps in the docs, run against `tandem certs`: the
/// command line works as written, and the files the next steps read exist.
#[test]
fn documented_self_signed_steps_match_tandem_certs() {
    let deployment = kustomize(&repo_path("deploy/overlays/self-signed"))
        .into_iter()
        .find(|o| o["kind"] == "Deployment")
        .unwrap();
    let secret = deployment["spec"]["template"]["spec"]["volumes"][0]["secret"]["secretName"]
        .as_str()
        .unwrap()
        .to_string();
    for doc in ["docs/install.md", "deploy/overlays/self-signed/README.md"] {
        let text = read_repo(doc);
        let command = text
            .lines()
            .find(|l| l.starts_with("tandem certs "))
            .unwrap_or_else(|| panic!("{doc}: no `tandem certs` line"));
        let dir = tempfile::tempdir().unwrap();
        let args: Vec<&str> = command.split_whitespace().skip(1).collect();
        let Run {
            ok, stdout, stderr, ..
        } = tandem_at(&args, dir.path());
        assert!(ok, "{doc}: `{command}` fails: {stderr}");
        let secret_line = text
            .lines()
            .find(|l| l.contains("create secret tls"))
            .unwrap_or_else(|| panic!("{doc}: no `create secret tls`"));
        assert!(
            secret_line.contains(&format!("-n {NS} create secret tls {secret} ")),
            "{doc}: the Deployment mounts Secret {secret}: {secret_line}"
        );
        for flag in ["--cert=", "--key="] {
            let file = secret_line
                .split(flag)
                .nth(1)
                .unwrap()
                .split_whitespace()
                .next()
                .unwrap();
            assert!(
                dir.path().join(file).is_file(),
                "{doc}: {flag}{file} is not what `{command}` wrote"
            );
        }
        let bundle_line = text
            .lines()
            .find(|l| l.contains("base64 < "))
            .unwrap_or_else(|| panic!("{doc}: no caBundle line"));
        let ca = bundle_line
            .split("base64 < ")
            .nth(1)
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap();
        let ca = fs::read(dir.path().join(ca)).unwrap_or_else(|e| panic!("{doc}: {ca}: {e}"));
        assert_eq!(
            base64::engine::general_purpose::STANDARD.encode(ca),
            stdout.trim(),
            "{doc}: the caBundle the docs compute is the one printed"
        );
        for patch in [
            "patch mutatingwebhookconfiguration tandem",
            "patch validatingwebhookconfiguration tandem",
        ] {
            assert!(text.contains(patch), "{doc}: no `{patch}`");
        }
        assert!(text.contains("/webhooks/0/clientConfig/caBundle"), "{doc}");
    }
}

// ---------------------------------------------------------------------------
// The companion policy, evaluated

/// The policy denies exactly the pods Tandem would have marked processed
/// (`tandem.dev/status`) had it seen them, and admits every pod Tandem did
/// process: pod requests, namespace defaults, opt-outs of either, and the
/// mirror-pod exclusion, checked against the engine on the same pods. Every
/// expression runs where the API server runs it (`common::cel`), on pods and
/// Namespaces as the API server stores them and, for robustness, with
/// literal empty maps too: no shape Kubernetes accepts may make it fail.
fn policy_agrees_with_the_engine(spec: &adm::ValidatingAdmissionPolicySpec, source: &str) {
    use tandem::engine::{Input, Outcome};
    use tandem::facts::{Capabilities, INJECT_ANNOTATION, Namespace, Policy, STATUS_ANNOTATION};
    let env = cel::env();
    let policy = cel::Validating::new(&env, spec).unwrap_or_else(|e| panic!("{source}: {e}"));
    assert_eq!(
        policy.failure_policy,
        cel::FailurePolicy::Fail,
        "{source}: the safety net fails closed"
    );
    let templates =
        tandem::template::TemplateSet::new(tandem::template::examples().unwrap()).unwrap();
    let pod_values = [
        None,
        Some(""),
        Some(" "),
        Some("none"),
        Some(" False "),
        Some("disabled"),
        Some("true"),
        Some("enabled"),
        Some("log-shipper"),
        Some("does-not-exist"),
        Some(","),
    ];
    let ns_values = [
        None,
        Some("none"),
        Some("true"),
        Some(""),
        Some("log-shipper"),
        Some("DISABLED"),
    ];
    // Labels and annotations beside Tandem's: none at all, someone else's,
    // and (not what the API server sends, but harmless) literal empty maps.
    #[derive(Clone, Copy, Debug)]
    enum Others {
        Absent,
        Some,
        EmptyMaps,
    }
    let mut checked = 0;
    for others in [Others::Absent, Others::Some, Others::EmptyMaps] {
        for mirror in [false, true] {
            for pod_value in pod_values {
                for ns_value in ns_values {
                    let mut annotations = serde_json::Map::new();
                    let mut labels = serde_json::Map::new();
                    if let Some(v) = pod_value {
                        annotations.insert(INJECT_ANNOTATION.into(), json!(v));
                    }
                    if mirror {
                        annotations.insert("kubernetes.io/config.mirror".into(), json!("abc"));
                    }
                    if let Others::Some = others {
                        annotations.insert("example.com/owner".into(), json!("team-a"));
                        labels.insert("app".into(), json!("shop"));
                    }
                    let mut pod = json!({
                        "apiVersion": "v1", "kind": "Pod",
                        "metadata": { "name": "p", "namespace": "shop" },
                        "spec": { "containers": [{ "name": "app", "image": "example.com/app:1" }] },
                    });
                    if !annotations.is_empty() || matches!(others, Others::EmptyMaps) {
                        pod["metadata"]["annotations"] = Value::Object(annotations);
                    }
                    if !labels.is_empty() || matches!(others, Others::EmptyMaps) {
                        pod["metadata"]["labels"] = Value::Object(labels);
                    }
                    let mut ns_annotations: BTreeMap<String, String> = ns_value
                        .map(|v| (INJECT_ANNOTATION.to_string(), v.to_string()))
                        .into_iter()
                        .collect();
                    let mut ns_labels = BTreeMap::new();
                    if let Others::Some = others {
                        ns_annotations.insert("example.com/team".into(), "a".into());
                        ns_labels.insert(INJECTION_LABEL.to_string(), "enabled".to_string());
                    }
                    let mut namespace = cel::stored_namespace("shop", &ns_labels, &ns_annotations);
                    if let Others::EmptyMaps = others
                        && namespace["metadata"].get("annotations").is_none()
                    {
                        namespace["metadata"]["annotations"] = json!({});
                    }
                    let verdict = |pod: &Value| {
                        let request = match others {
                            Others::EmptyMaps => cel::Request::create_as_is(pod, &namespace),
                            _ => cel::Request::create(pod, &namespace),
                        };
                        match policy.run(&env, &request) {
                            cel::Run::NotMatched(_) | cel::Run::Validated(None) => Ok(None),
                            cel::Run::Validated(Some(d)) => Ok(Some(d.message)),
                            cel::Run::Failed(f) => Err(format!("{:?}: {}", f.site, f.message())),
                            cel::Run::Mutated { .. } => unreachable!(),
                        }
                    };
                    let facts = Namespace::new("shop", ns_labels, ns_annotations);
                    let d = tandem::engine::decide(&Input {
                        pod: &tandem::facts::Doc::from(&pod),
                        namespace: &facts,
                        templates: &templates,
                        capabilities: &Capabilities::default(),
                        policy: &Policy::default(),
                    })
                    .unwrap();
                    let case = format!(
                        "{source}: pod {pod_value:?} namespace {ns_value:?} mirror {mirror} {others:?}"
                    );
                    assert!(!matches!(d.outcome, Outcome::Denied { .. }), "{case}");
                    let mut processed = pod.clone();
                    json_patch::patch(&mut processed, &d.patch.operations()).unwrap();
                    let marked = processed["metadata"]["annotations"]
                        .get(STATUS_ANNOTATION)
                        .is_some();
                    let untouched = verdict(&pod).unwrap_or_else(|e| panic!("{case}: {e}"));
                    assert_eq!(
                        untouched.is_some(),
                        marked,
                        "{case}: the policy {} a pod Tandem never saw, which Tandem {} (decision: {})",
                        if untouched.is_some() {
                            "denies"
                        } else {
                            "admits"
                        },
                        if marked {
                            "marks processed"
                        } else {
                            "leaves unmarked"
                        },
                        d.summary()
                    );
                    if d.injected().next().is_some() {
                        assert!(marked, "{case}: injected but not marked");
                    }
                    if let Some(message) = &untouched {
                        assert!(message.contains("tandem.dev/inject"), "{case}: {message}");
                        assert!(
                            message.contains("no tandem.dev/status"),
                            "{case}: {message}"
                        );
                    }
                    let after = verdict(&processed).unwrap_or_else(|e| panic!("{case}: {e}"));
                    assert!(
                        after.is_none(),
                        "{case}: a pod Tandem processed is denied: {after:?}"
                    );
                    checked += 1;
                }
            }
        }
    }
    assert_eq!(checked, 3 * 2 * pod_values.len() * ns_values.len());
    status_is_checked_as_the_engine_reads_it(&policy, &env, source);
}

/// A `tandem.dev/status` Tandem did not write is no proof that Tandem saw
/// the pod: the engine warns and injects afresh, the compiled policies step
/// aside, and the companion policy denies such a pod when it asked, saying
/// so. Every status the engine accepts, the policy accepts too, so a pod
/// Tandem processed is never denied.
fn status_is_checked_as_the_engine_reads_it(
    policy: &cel::Validating,
    env: &Arc<::cel::Env>,
    source: &str,
) {
    use tandem::engine::Status;
    use tandem::facts::{INJECT_ANNOTATION, STATUS_ANNOTATION};
    let written = {
        let set =
            tandem::template::TemplateSet::new(tandem::template::examples().unwrap()).unwrap();
        let mut s = Status::default();
        for t in set.all() {
            s.record(t);
        }
        s.to_annotation().unwrap()
    };
    let values: Vec<String> = [
        written.as_str(),
        r#"{"templates":[]}"#,
        "{ \"templates\" : [ ] }",
        "{\n  \"containers\": [\"a\"],\n  \"templates\": [{\"name\": \"x\", \"hash\": \"y\"}]\n}",
        "",
        " ",
        "true",
        "injected",
        "log-shipper",
        "{}",
        "[]",
        r#"{"templates":"log-shipper"}"#,
        r#"{"templates":[1]}"#,
        r#"{"templates":["#,
        r#"{"containers":["a"]}"#,
        r#"{templates: []}"#,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let namespace = cel::stored_namespace("shop", &BTreeMap::new(), &BTreeMap::new());
    for value in &values {
        let pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": { "name": "p", "namespace": "shop", "annotations": {
                INJECT_ANNOTATION: "log-shipper", STATUS_ANNOTATION: value,
            } },
            "spec": { "containers": [{ "name": "app", "image": "example.com/app:1" }] },
        });
        let case = format!("{source}: status {value:?}");
        let verdict = match policy.run(env, &cel::Request::create(&pod, &namespace)) {
            cel::Run::Validated(v) => v,
            other => panic!("{case}: {other:?}"),
        };
        let engine_accepts = Status::parse(value).is_ok();
        assert_eq!(
            verdict.is_none(),
            engine_accepts,
            "{case}: the policy {} it, the engine {} it",
            if verdict.is_none() {
                "accepts"
            } else {
                "denies"
            },
            if engine_accepts { "accepts" } else { "rejects" }
        );
        if let Some(d) = verdict {
            assert!(
                d.message
                    .contains("its tandem.dev/status is not a record Tandem wrote"),
                "{case}: {}",
                d.message
            );
        }
    }
}
