//! The shipped manifests: the CRD equals `tandem crd`, every object is a valid
//! Kubernetes object with no unknown fields, and the webhook configuration
//! passes the same self-checks as `tandem webhook-config`.

mod common;

use common::run::{Run, assert_grants_exactly_what_tandem_calls, tandem};
use common::strict;
use std::path::Path;

use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use serde_json::Value;
use tandem::install::webhook::check_mutating;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

#[test]
fn committed_crds_equal_tandem_crd() {
    let Run {
        ok,
        stdout: generated,
        ..
    } = tandem(&["crd"]);
    assert!(ok);
    for path in ["deploy/base/crd.yaml", "charts/tandem/crds/crd.yaml"] {
        let committed = std::fs::read_to_string(Path::new(ROOT).join(path)).unwrap();
        assert!(
            committed == generated,
            "{path} is stale: run `tandem crd > {path}`"
        );
    }
}

#[test]
fn base_objects_are_valid_kubernetes_objects() {
    use k8s_openapi::api::admissionregistration::v1 as adm;
    use k8s_openapi::api::{
        apps::v1 as apps, core::v1 as core, policy::v1 as policy, rbac::v1 as rbac,
    };
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;

    let base = Path::new(ROOT).join("deploy/base");
    let kustomization: Value =
        serde_saphyr::from_str(&std::fs::read_to_string(base.join("kustomization.yaml")).unwrap())
            .unwrap();
    let mut kinds = Vec::new();
    for file in kustomization["resources"].as_array().unwrap() {
        let file = file.as_str().unwrap();
        let text = std::fs::read_to_string(base.join(file)).unwrap();
        let docs: Vec<Value> = serde_saphyr::from_multiple(&text).unwrap();
        for doc in docs.into_iter().filter(|d| !d.is_null()) {
            let kind = doc["kind"].as_str().unwrap().to_string();
            match kind.as_str() {
                "Namespace" => drop(strict::<core::Namespace>(&doc, file)),
                "ServiceAccount" => drop(strict::<core::ServiceAccount>(&doc, file)),
                "Service" => drop(strict::<core::Service>(&doc, file)),
                "ClusterRole" => {
                    let role: rbac::ClusterRole = strict(&doc, file);
                    assert_grants_exactly_what_tandem_calls(&role, file);
                }
                "ClusterRoleBinding" => drop(strict::<rbac::ClusterRoleBinding>(&doc, file)),
                "Role" => drop(strict::<rbac::Role>(&doc, file)),
                "RoleBinding" => drop(strict::<rbac::RoleBinding>(&doc, file)),
                "Deployment" => {
                    let d: apps::Deployment = strict(&doc, file);
                    let spec = d.spec.unwrap();
                    assert!(spec.replicas.unwrap_or(1) >= 2, "2+ replicas");
                    let pod = spec.template.spec.unwrap();
                    let c = &pod.containers[0];
                    let sc = c.security_context.clone().unwrap();
                    assert_eq!(sc.read_only_root_filesystem, Some(true));
                    assert_eq!(sc.allow_privilege_escalation, Some(false));
                    assert!(c.readiness_probe.is_some() && c.liveness_probe.is_some());
                }
                "PodDisruptionBudget" => drop(strict::<policy::PodDisruptionBudget>(&doc, file)),
                "MutatingWebhookConfiguration" => {
                    let m: MutatingWebhookConfiguration = strict(&doc, file);
                    let problems = check_mutating(&m, "tandem-system");
                    assert!(problems.is_empty(), "{file}: {problems:?}");
                }
                "ValidatingWebhookConfiguration" => {
                    drop(strict::<adm::ValidatingWebhookConfiguration>(&doc, file))
                }
                "ValidatingAdmissionPolicy" => {
                    drop(strict::<adm::ValidatingAdmissionPolicy>(&doc, file))
                }
                "ValidatingAdmissionPolicyBinding" => {
                    drop(strict::<adm::ValidatingAdmissionPolicyBinding>(&doc, file))
                }
                "CustomResourceDefinition" => drop(strict::<CustomResourceDefinition>(&doc, file)),
                "Issuer" | "Certificate" => assert_eq!(doc["apiVersion"], "cert-manager.io/v1"),
                other => panic!("{file}: unexpected kind {other}"),
            }
            kinds.push(kind);
        }
    }
    for needed in [
        "CustomResourceDefinition",
        "Deployment",
        "MutatingWebhookConfiguration",
        "ValidatingAdmissionPolicy",
    ] {
        assert!(
            kinds.iter().any(|k| k == needed),
            "deploy/base lacks a {needed}"
        );
    }
}

#[test]
fn webhook_config_output_is_valid_and_unsafe_configurations_are_refused() {
    for mode in ["opt-in", "cluster-wide"] {
        let Run {
            ok,
            stdout: out,
            stderr: err,
            ..
        } = tandem(&[
            "webhook-config",
            "--mode",
            mode,
            "--namespace",
            "tandem-system",
        ]);
        assert!(ok, "{err}");
        let docs: Vec<Value> = serde_saphyr::from_multiple(&out).unwrap();
        let m: MutatingWebhookConfiguration = strict(&docs[0], "webhook-config");
        assert!(check_mutating(&m, "tandem-system").is_empty());
        let _: k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration =
            strict(&docs[1], "webhook-config");
    }
    let Run {
        ok, stderr: err, ..
    } = tandem(&["webhook-config", "--timeout-seconds", "30"]);
    assert!(!ok && err.contains("timeoutSeconds"), "{err}");

    // A configuration that would send Tandem's own namespace through Tandem.
    let Run { stdout: out, .. } = tandem(&["webhook-config", "--namespace", "tandem-system"]);
    let docs: Vec<Value> = serde_saphyr::from_multiple(&out).unwrap();
    let mut m: MutatingWebhookConfiguration = serde_json::from_value(docs[0].clone()).unwrap();
    let webhooks = m.webhooks.as_mut().unwrap();
    webhooks[0].namespace_selector = None;
    let problems = check_mutating(&m, "tandem-system");
    assert!(
        problems.iter().any(|p| p.contains("tandem-system")),
        "{problems:?}"
    );
    assert!(
        problems.iter().any(|p| p.contains("kube-system")),
        "{problems:?}"
    );
}

#[test]
fn webhook_config_url_is_a_base_or_the_mutate_url_never_doubled() {
    let urls = |args: &[&str]| -> (String, String) {
        let mut all = vec!["webhook-config"];
        all.extend_from_slice(args);
        let Run {
            ok,
            stdout: out,
            stderr: err,
            ..
        } = tandem(&all);
        assert!(ok, "{args:?}: {err}");
        let docs: Vec<Value> = serde_saphyr::from_multiple(&out).unwrap();
        let m: MutatingWebhookConfiguration = strict(&docs[0], "webhook-config");
        assert!(check_mutating(&m, "tandem-system").is_empty());
        let url = |d: &Value| {
            d["webhooks"][0]["clientConfig"]["url"]
                .as_str()
                .unwrap()
                .to_string()
        };
        (url(&docs[0]), url(&docs[1]))
    };
    let want = (
        "https://tandem.example:8443/mutate".to_string(),
        "https://tandem.example:8443/validate".to_string(),
    );
    for given in [
        "https://tandem.example:8443",
        "https://tandem.example:8443/",
        "https://tandem.example:8443/mutate",
        "https://tandem.example:8443/mutate/",
        "https://tandem.example:8443/validate",
    ] {
        assert_eq!(urls(&["--url", given]), want, "--url {given}");
    }
    // Any other path is a prefix, as behind a proxy.
    assert_eq!(
        urls(&["--url", "https://proxy.example/tandem"]).0,
        "https://proxy.example/tandem/mutate"
    );
    for bad in [
        "http://tandem.example:8443",
        "https://tandem.example/mutate?timeout=5s",
        "https://user@tandem.example",
        "https:///mutate",
        "tandem.example:8443",
    ] {
        let Run {
            ok,
            stdout: out,
            stderr: err,
            ..
        } = tandem(&["webhook-config", "--url", bad]);
        assert!(!ok && out.is_empty(), "{bad} was accepted: {out}");
        assert!(err.contains("--url"), "{bad}: {err}");
    }
}
