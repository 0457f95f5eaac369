//! QoS: injection never silently turns a Guaranteed pod Burstable. The class
//! is computed as the kubelet does (init containers and native sidecars
//! count); `qos: preserve` keeps a Guaranteed pod Guaranteed. Every patch is
//! applied and the result checked again.

mod common;

use common::*;
use serde_json::{Value, json};
use tandem::engine::{QosClass, Verdict};
use tandem::facts::INJECT_ANNOTATION;

fn pod(resources: Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "db", "annotations": {INJECT_ANNOTATION: "agent"}},
        "spec": {"containers": [{"name": "app", "image": "example.com/db:1", "resources": resources}]}
    })
}

fn guaranteed() -> Value {
    pod(json!({"limits": {"cpu": "1", "memory": "1Gi"}}))
}

fn burstable() -> Value {
    pod(json!({"requests": {"cpu": "500m"}, "limits": {"cpu": "1", "memory": "1Gi"}}))
}

fn best_effort() -> Value {
    pod(json!({}))
}

/// A template `agent` of `pattern` and `lifecycle` whose container has
/// `resources`, with `qos` when given.
fn agent(pattern: &str, lifecycle: &str, resources: Value, qos: Option<&str>) -> Ctx {
    let container =
        json!({"name": "agent", "image": "example.com/agent:1", "resources": resources});
    let mut spec = if pattern == "init" {
        json!({"pattern": "init", "initContainers": [container]})
    } else {
        json!({"pattern": pattern, "lifecycle": lifecycle, "containers": [container]})
    };
    if let Some(q) = qos {
        spec["qos"] = json!(q);
    }
    Ctx::new(template_set(&[template_doc("agent", spec)]))
}

fn classes(r: &Injection) -> (QosClass, QosClass) {
    let rc = r.decision.resources.expect("resources accounted");
    (rc.qos_before, rc.qos_after)
}

const LESS: &str = r#"{"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"cpu": "100m", "memory": "64Mi"}}"#;

#[test]
fn a_guaranteed_pod_turned_burstable_is_warned_about_wherever_the_container_goes() {
    let less: Value = serde_json::from_str(LESS).unwrap();
    for (pattern, lifecycle) in [
        ("sidecar", "classic"),
        ("sidecar", "native"),
        ("init", "auto"),
    ] {
        let r = agent(pattern, lifecycle, less.clone(), None).inject(&guaranteed());
        assert!(matches!(
            r.decision.templates[0].verdict,
            Verdict::Injected { .. }
        ));
        assert_eq!(
            classes(&r),
            (QosClass::Guaranteed, QosClass::Burstable),
            "{pattern} {lifecycle}: an init container or native sidecar counts too"
        );
        assert!(
            r.warnings()
                .contains("pod QoS class changes from Guaranteed to Burstable"),
            "{pattern} {lifecycle}: {}",
            r.warnings()
        );
        let gate = r.decision.gates.iter().find(|g| g.gate == "qos").unwrap();
        assert_eq!(gate.why, "QoS class Guaranteed -> Burstable");
    }
}

#[test]
fn preserve_keeps_a_guaranteed_pod_guaranteed_and_leaves_others_as_written() {
    let less: Value = serde_json::from_str(LESS).unwrap();
    for (pattern, lifecycle) in [
        ("sidecar", "classic"),
        ("sidecar", "native"),
        ("init", "auto"),
    ] {
        let ctx = agent(pattern, lifecycle, less.clone(), Some("preserve"));
        let r = ctx.inject(&guaranteed());
        assert_eq!(
            classes(&r),
            (QosClass::Guaranteed, QosClass::Guaranteed),
            "{pattern} {lifecycle}"
        );
        assert!(!r.warnings().contains("QoS"), "{}", r.warnings());
        let list = if pattern == "sidecar" && lifecycle == "classic" {
            "/spec/containers"
        } else {
            "/spec/initContainers"
        };
        let added = named(&r.pod, list, "agent").unwrap();
        assert_eq!(
            added["resources"]["requests"], added["resources"]["limits"],
            "{pattern} {lifecycle}"
        );
        // Not Guaranteed to begin with: injected as written.
        for (name, pod) in [("burstable", burstable()), ("best effort", best_effort())] {
            let r = ctx.inject(&pod);
            let added = named(&r.pod, list, "agent").unwrap();
            assert_eq!(
                added["resources"], less,
                "{pattern} {lifecycle} in a {name} pod"
            );
            assert!(!r.warnings().contains("QoS"), "{}", r.warnings());
        }
    }
}

#[test]
fn classes_before_and_after_for_every_starting_class() {
    let less: Value = serde_json::from_str(LESS).unwrap();
    let equal = json!({"limits": {"cpu": "100m", "memory": "64Mi"}});
    for (name, pod, container, expected) in [
        (
            "guaranteed + equal",
            guaranteed(),
            equal.clone(),
            (QosClass::Guaranteed, QosClass::Guaranteed),
        ),
        (
            "burstable + equal",
            burstable(),
            equal.clone(),
            (QosClass::Burstable, QosClass::Burstable),
        ),
        (
            "best effort + nothing",
            best_effort(),
            json!({}),
            (QosClass::BestEffort, QosClass::BestEffort),
        ),
        (
            "best effort + requests",
            best_effort(),
            less.clone(),
            (QosClass::BestEffort, QosClass::Burstable),
        ),
        (
            "guaranteed + nothing",
            guaranteed(),
            json!({}),
            (QosClass::Guaranteed, QosClass::Burstable),
        ),
    ] {
        let r = agent("sidecar", "native", container, None).inject(&pod);
        assert_eq!(classes(&r), expected, "{name}");
        assert_eq!(
            r.warnings().contains("QoS class changes"),
            expected == (QosClass::Guaranteed, QosClass::Burstable),
            "{name}: {}",
            r.warnings()
        );
    }
}

#[test]
fn preserve_without_limits_is_an_error_where_templates_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.yaml");
    std::fs::write(
        &path,
        template_doc(
            "agent",
            json!({"pattern": "sidecar", "qos": "preserve",
                   "containers": [{"name": "agent", "image": "example.com/agent:1",
                                   "resources": {"limits": {"cpu": "100m"}}}]}),
        ),
    )
    .unwrap();
    let r = common::run::tandem(&["check", "-c", path.to_str().unwrap()]);
    assert!(!r.ok, "{r}");
    assert!(
        r.stdout
            .contains("spec.containers[0].resources.limits.memory: is required by qos: preserve"),
        "{r}"
    );
}
