//! Per-pod parameters: declared in the template, set by the pod's or the
//! namespace's `<template>.tandem.dev/<parameter>` annotation, checked
//! against their type and bounds, and covered by the status hash. Every
//! patch is applied and the pod checked (through `Ctx::inject`).

mod common;

use common::*;
use serde_json::{Value, json};
use tandem::engine::{self, Drift, Outcome, SkipReason, State, Verdict};
use tandem::facts::{INJECT_ANNOTATION, Namespace, Policy, STATUS_ANNOTATION};
use tandem::template::{self, LoadError};

/// A proxy with one parameter of each type.
fn proxy_spec(on_conflict: &str) -> Value {
    json!({
        "pattern": "ambassador",
        "onConflict": on_conflict,
        "containers": [{
            "name": "proxy",
            "image": "example.com/proxy:1",
            "env": [
                { "name": "UPSTREAM", "value": "db:5432" },
                { "name": "LEVEL", "value": "info" },
                { "name": "TLS", "value": "true" },
            ],
            "ports": [{ "name": "admin", "containerPort": 9901 }],
            "resources": { "requests": { "cpu": "50m", "memory": "32Mi" } },
        }],
        "parameters": [
            { "name": "cpu", "type": "quantity", "default": "50m", "min": "10m", "max": 1,
              "targets": ["containers[proxy].resources.requests.cpu", "containers[proxy].resources.limits.cpu"] },
            { "name": "admin-port", "type": "integer", "default": 9901, "min": 1024, "max": 65535,
              "targets": ["containers[proxy].ports[admin].containerPort"] },
            { "name": "upstream", "type": "string", "default": "db:5432",
              "pattern": "[a-z0-9.-]+:[0-9]{1,5}",
              "targets": ["containers[proxy].env[UPSTREAM].value"] },
            { "name": "level", "type": "string", "default": "info", "values": ["debug", "info", "warn"],
              "targets": ["containers[proxy].env[LEVEL].value"] },
            { "name": "tls", "type": "boolean", "default": "true",
              "targets": ["containers[proxy].env[TLS].value"] },
        ],
    })
}

fn ctx(on_conflict: &str) -> Ctx {
    Ctx::new(template_set(&[template_doc(
        "proxy",
        proxy_spec(on_conflict),
    )]))
}

fn pod(params: &[(&str, &str)]) -> Value {
    let mut annotations = json!({ INJECT_ANNOTATION: "proxy" });
    for (k, v) in params {
        annotations[format!("proxy.tandem.dev/{k}")] = json!(v);
    }
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": { "name": "web", "annotations": annotations },
        "spec": { "containers": [{ "name": "app", "image": "example.com/app:1" }] },
    })
}

/// The injected proxy container.
fn proxy(pod: &Value) -> Value {
    let all = pod["spec"]["initContainers"]
        .as_array()
        .into_iter()
        .chain(pod["spec"]["containers"].as_array())
        .flatten();
    all.into_iter()
        .find(|c| c["name"] == "proxy")
        .cloned()
        .unwrap_or_else(|| panic!("no proxy in {pod:#}"))
}

fn env(c: &Value, name: &str) -> Value {
    c["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == name)
        .map(|e| e["value"].clone())
        .unwrap()
}

fn hash(pod: &Value) -> String {
    let status: Value = serde_json::from_str(
        pod["metadata"]["annotations"][STATUS_ANNOTATION]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    status["templates"][0]["hash"].as_str().unwrap().to_string()
}

#[test]
fn defaults_are_what_the_template_says_and_keep_its_hash() {
    let c = ctx("skip");
    let r = c.inject(&pod(&[]));
    let p = proxy(&r.pod);
    assert_eq!(p["resources"]["requests"]["cpu"], "50m");
    assert_eq!(p["resources"]["limits"]["cpu"], "50m", "a second target");
    assert_eq!(p["ports"][0]["containerPort"], 9901);
    assert_eq!(env(&p, "UPSTREAM"), "db:5432");
    let t = c.templates.lookup("default", "proxy").unwrap();
    assert_eq!(hash(&r.pod), t.hash);
    // A value written as the default is the default.
    let same = c.inject(&pod(&[("cpu", "50m"), ("level", "info")]));
    assert_eq!(hash(&same.pod), t.hash);
}

#[test]
fn each_type_within_its_bounds_is_injected_where_its_targets_say() {
    let c = ctx("skip");
    let r = c.inject(&pod(&[
        ("cpu", "250m"),
        ("admin-port", "15000"),
        ("upstream", "orders.db.internal:6432"),
        ("level", "debug"),
        ("tls", "false"),
    ]));
    assert_eq!(r.decision.outcome, Outcome::Patched);
    let p = proxy(&r.pod);
    assert_eq!(p["resources"]["requests"]["cpu"], "250m");
    assert_eq!(p["resources"]["limits"]["cpu"], "250m");
    assert_eq!(
        p["ports"][0]["containerPort"], 15000,
        "an integer, not text"
    );
    assert_eq!(env(&p, "UPSTREAM"), "orders.db.internal:6432");
    assert_eq!(env(&p, "LEVEL"), "debug");
    assert_eq!(env(&p, "TLS"), "false");
    // The bounds themselves are inside.
    for (k, v) in [
        ("cpu", "10m"),
        ("cpu", "1"),
        ("admin-port", "1024"),
        ("admin-port", "65535"),
    ] {
        let r = c.inject(&pod(&[(k, v)]));
        assert_eq!(
            r.decision.injected().collect::<Vec<_>>(),
            ["proxy"],
            "{k}={v}"
        );
    }
}

#[test]
fn a_value_outside_its_type_or_bounds_is_never_injected() {
    let c = ctx("skip");
    for (k, v, rule) in [
        ("cpu", "9m", "must be at least 10m"),
        ("cpu", "1001m", "must be at most 1"),
        ("cpu", "lots", "must be a Kubernetes quantity"),
        ("cpu", "-1", "must not be negative"),
        ("admin-port", "80", "must be at least 1024"),
        ("admin-port", "70000", "must be at most 65535"),
        ("admin-port", "9901.5", "must be an integer"),
        (
            "upstream",
            "db:5432; drop",
            "must match [a-z0-9.-]+:[0-9]{1,5}",
        ),
        ("level", "trace", "must be one of debug, info, warn"),
        ("tls", "yes", "must be true or false"),
    ] {
        let r = c.inject(&pod(&[(k, v)]));
        let d = &r.decision;
        assert_eq!(
            d.templates[0].verdict,
            Verdict::Skipped {
                reason: SkipReason::InvalidParameter
            },
            "{k}={v}"
        );
        let warning = format!("proxy skipped: proxy.tandem.dev/{k}={v:?} (pod annotation) {rule}");
        assert!(
            d.warnings.iter().any(|w| w.contains(&warning)),
            "{k}={v}: {:?}",
            d.warnings
        );
        assert!(
            r.pod["spec"].get("initContainers").is_none(),
            "{k}={v}: nothing injected"
        );
    }
}

#[test]
fn on_conflict_fail_denies_with_the_same_message() {
    let d = ctx("fail").decide(&pod(&[("cpu", "2")])).unwrap();
    let Outcome::Denied { message } = &d.outcome else {
        panic!("not denied: {:?}", d.outcome);
    };
    assert!(
        message.contains("proxy.tandem.dev/cpu=\"2\" (pod annotation) must be at most 1"),
        "{message}"
    );
    assert!(d.patch.is_empty());
}

#[test]
fn the_pod_wins_over_the_namespace_and_the_namespace_over_the_default() {
    let c = ctx("skip").ns_annotation("proxy.tandem.dev/cpu", "300m");
    let from_ns = c.inject(&pod(&[]));
    assert_eq!(proxy(&from_ns.pod)["resources"]["requests"]["cpu"], "300m");
    let from_pod = c.inject(&pod(&[("cpu", "400m")]));
    assert_eq!(proxy(&from_pod.pod)["resources"]["requests"]["cpu"], "400m");
    // explain says where each value came from.
    let asked = pod(&[("level", "warn")]);
    let caps = tandem::facts::Capabilities::detect(Some("v1.36.2"), Default::default());
    let explained = engine::explain(&engine::Input {
        pod: &tandem::facts::Doc::from(&asked),
        namespace: &c.namespace,
        templates: &c.templates,
        capabilities: &caps,
        policy: &c.policy,
    })
    .unwrap();
    let gate = explained
        .gates
        .iter()
        .find(|g| g.gate == "parameters of proxy")
        .expect("a gate for the parameters");
    assert_eq!(
        gate.why,
        "cpu=300m (namespace), admin-port=9901 (default), upstream=db:5432 (default), level=warn (pod), tls=true (default)"
    );
    // A bad namespace value names the namespace.
    let bad = ctx("skip").ns_annotation("proxy.tandem.dev/cpu", "5");
    let d = bad.decide(&pod(&[])).unwrap();
    assert!(
        d.warnings.iter().any(|w| w.contains(
            "proxy.tandem.dev/cpu=\"5\" (namespace default annotation) must be at most 1"
        )),
        "{:?}",
        d.warnings
    );
}

#[test]
fn an_annotation_naming_no_declared_parameter_is_a_warning() {
    let c = ctx("skip");
    let r = c.inject(&pod(&[("cpus", "200m")]));
    assert_eq!(r.decision.injected().collect::<Vec<_>>(), ["proxy"]);
    assert!(
        r.decision.warnings.iter().any(|w| w.contains(
            "pod annotation proxy.tandem.dev/cpus: proxy has no such parameter (it has cpu, admin-port"
        )),
        "{:?}",
        r.decision.warnings
    );
}

#[test]
fn the_hash_covers_the_values_and_drift_reads_them_back() {
    let c = ctx("skip");
    let small = c.inject(&pod(&[("cpu", "100m")]));
    let large = c.inject(&pod(&[("cpu", "900m")]));
    let default = c.inject(&pod(&[]));
    let hashes = [hash(&small.pod), hash(&large.pod), hash(&default.pod)];
    assert_ne!(hashes[0], hashes[1]);
    assert_ne!(hashes[0], hashes[2]);
    // The same values, the same hash: a second pod of the Deployment.
    assert_eq!(hash(&c.inject(&pod(&[("cpu", "100m")])).pod), hashes[0]);

    let ns = Namespace::new("default", Default::default(), Default::default());
    let state = |injected: &Value, templates: &tandem::template::TemplateSet| match engine::drift(
        &injected["metadata"],
        &ns,
        templates,
        &Policy::default(),
    ) {
        Drift::Templates(t) => t[0].1,
        Drift::Unknown => panic!("unknown"),
    };
    // Each pod is current with its own values.
    for r in [&small, &large, &default] {
        assert_eq!(state(&r.pod, &c.templates), State::Current);
    }
    // A changed parameter bound does not change what these pods get; a
    // changed target does.
    let mut spec = proxy_spec("skip");
    spec["parameters"][0]["max"] = json!(2);
    let looser = template_set(&[template_doc("proxy", spec)]);
    assert_eq!(state(&small.pod, &looser), State::Current);
    let mut spec = proxy_spec("skip");
    spec["containers"][0]["image"] = json!("example.com/proxy:2");
    let newer = template_set(&[template_doc("proxy", spec)]);
    assert_eq!(state(&small.pod, &newer), State::Outdated);
    assert_eq!(state(&default.pod, &newer), State::Outdated);
}

fn load_error(spec: Value) -> String {
    match template::parse_documents("dir/tpl.yaml", &template_doc("proxy", spec)) {
        Ok(_) => panic!("loaded"),
        Err(errs) => errs
            .iter()
            .map(LoadError::to_string)
            .collect::<Vec<_>>()
            .join("\n"),
    }
}

#[test]
fn declarations_are_checked_at_load() {
    let with = |f: &dyn Fn(&mut Value)| {
        let mut spec = proxy_spec("skip");
        f(&mut spec);
        load_error(spec)
    };
    for (change, expected) in [
        (
            Box::new(|s: &mut Value| {
                s["parameters"][0]["targets"][0] = json!("containers[nope].resources.requests.cpu")
            }) as Box<dyn Fn(&mut Value)>,
            "dir/tpl.yaml: template \"proxy\": spec.parameters[0].targets[0]: containers[nope].resources.requests.cpu: the template has no containers named nope",
        ),
        (
            Box::new(|s: &mut Value| {
                s["parameters"][2]["targets"][0] = json!("containers[proxy].env[NOPE].value")
            }),
            "spec.parameters[2].targets[0]: containers[proxy].env[NOPE].value: containers[proxy] has no env entry named NOPE",
        ),
        (
            Box::new(|s: &mut Value| {
                s["parameters"][0]["targets"][0] = json!("containers[proxy].command")
            }),
            "spec.parameters[0].targets[0]: \"containers[proxy].command\" is not a target",
        ),
        (
            Box::new(|s: &mut Value| {
                s["parameters"][2]["targets"][0] = json!("containers[proxy].resources.requests.cpu")
            }),
            "holds a quantity, not a string parameter",
        ),
        (
            Box::new(|s: &mut Value| s["parameters"][0]["default"] = json!("5")),
            "spec.parameters[0].default: \"5\" must be at most 1",
        ),
        (
            Box::new(|s: &mut Value| s["parameters"][1]["name"] = json!("cpu")),
            "spec.parameters[1].name: duplicate parameter \"cpu\"",
        ),
        (
            Box::new(|s: &mut Value| s["parameters"][2]["pattern"] = json!("(")),
            "spec.parameters[2].pattern: is not a valid regular expression",
        ),
        (
            Box::new(|s: &mut Value| s["parameters"][3]["min"] = json!(1)),
            "min and max are for quantity and integer parameters",
        ),
        (
            Box::new(|s: &mut Value| s["parameters"][0]["max"] = json!("a lot")),
            "spec.parameters[0].max: \"a lot\" is not a valid quantity",
        ),
        (
            Box::new(|s: &mut Value| s["parameters"][4]["targets"] = json!([])),
            "spec.parameters[4].targets: needs at least one field to set",
        ),
    ] {
        let errors = with(&*change);
        assert!(
            errors.contains(expected),
            "expected {expected:?} in:\n{errors}"
        );
    }
}

#[test]
fn the_example_templates_take_the_parameters_users_ask_for() {
    let set = tandem::template::TemplateSet::new(template::examples().unwrap()).unwrap();
    let c = Ctx::new(set).ns_annotation(
        "db-ambassador.tandem.dev/instance",
        "shop-prod:europe-west1:orders",
    );
    let mut p = pod(&[]);
    p["metadata"]["annotations"] = json!({
        INJECT_ANNOTATION: "log-shipper,db-ambassador",
        "log-shipper.tandem.dev/cpu-limit": "500m",
        "log-shipper.tandem.dev/memory-limit": "256Mi",
    });
    let r = c.inject(&p);
    assert_eq!(
        r.decision.injected().collect::<Vec<_>>(),
        ["log-shipper", "db-ambassador"]
    );
    let init = r.pod["spec"]["initContainers"].as_array().unwrap();
    let shipper = init.iter().find(|c| c["name"] == "log-shipper").unwrap();
    assert_eq!(
        shipper["resources"]["limits"],
        json!({ "cpu": "500m", "memory": "256Mi" })
    );
    let ambassador = init.iter().find(|c| c["name"] == "db-ambassador").unwrap();
    assert_eq!(
        env(ambassador, "DB_INSTANCE_CONNECTION_NAME"),
        "shop-prod:europe-west1:orders"
    );
    // An upstream outside the pattern never reaches the proxy's arguments.
    let bad = Ctx::new(tandem::template::TemplateSet::new(template::examples().unwrap()).unwrap())
        .ns_annotation("db-ambassador.tandem.dev/instance", "x; --dangerous");
    p["metadata"]["annotations"] = json!({ INJECT_ANNOTATION: "db-ambassador" });
    let d = bad.decide(&p).unwrap();
    assert!(
        matches!(d.outcome, Outcome::Denied { .. }),
        "onConflict: fail denies: {:?}",
        d.outcome
    );
}

#[test]
fn a_value_the_template_now_refuses_is_refused_never_outdated() {
    let c = ctx("skip");
    let large = c.inject(&pod(&[("cpu", "900m")]));
    let mut spec = proxy_spec("skip");
    spec["parameters"][0]["max"] = json!("500m");
    let tighter = template_set(&[template_doc("proxy", spec)]);
    let ns = Namespace::new("default", Default::default(), Default::default());
    // A restart would skip the template: the pod would lose its sidecar.
    assert_eq!(
        engine::drift(&large.pod["metadata"], &ns, &tighter, &Policy::default()),
        Drift::Templates(vec![("proxy".into(), State::Refused)])
    );
}

#[test]
fn an_integer_written_into_a_text_field_is_text() {
    let mut spec = proxy_spec("skip");
    spec["containers"][0]["env"]
        .as_array_mut()
        .unwrap()
        .push(json!({ "name": "ADMIN_PORT", "value": "9901" }));
    spec["parameters"][1]["targets"] = json!([
        "containers[proxy].ports[admin].containerPort",
        "containers[proxy].env[ADMIN_PORT].value"
    ]);
    let c = Ctx::new(template_set(&[template_doc("proxy", spec.clone())]));
    let r = c.inject(&pod(&[("admin-port", "15000")]));
    let p = proxy(&r.pod);
    assert_eq!(p["ports"][0]["containerPort"], 15000);
    assert_eq!(env(&p, "ADMIN_PORT"), "15000");
    // Two parameters may not set one field.
    spec["parameters"][3]["targets"] = json!(["containers[proxy].env[ADMIN_PORT].value"]);
    let errors = load_error(spec);
    assert!(
        errors.contains("spec.parameters[3].targets[0]: containers[proxy].env[ADMIN_PORT].value is set by parameter admin-port too"),
        "{errors}"
    );
}

#[test]
fn a_dry_run_template_with_a_bad_value_denies_nothing() {
    let mut spec = proxy_spec("fail");
    spec["mode"] = json!("dryRun");
    let c = Ctx::new(template_set(&[template_doc("proxy", spec)]));
    let d = c.decide(&pod(&[("cpu", "5")])).unwrap();
    assert!(
        !matches!(d.outcome, Outcome::Denied { .. }),
        "{:?}",
        d.outcome
    );
    assert!(
        d.warnings
            .iter()
            .any(|w| w.starts_with("tandem: dry run: proxy would be skipped")
                || w.starts_with("dry run: proxy would be skipped")),
        "{:?}",
        d.warnings
    );
}

#[test]
fn a_port_parameter_needs_bounds_a_port_can_take() {
    let mut spec = proxy_spec("skip");
    spec["parameters"][1]["max"] = json!(70000);
    let errors = load_error(spec);
    assert!(
        errors.contains("containers[proxy].ports[admin].containerPort is a port: the parameter needs min and max within 1..65535"),
        "{errors}"
    );
}

#[test]
fn a_rendering_with_a_pods_values_is_made_once_and_reused() {
    let c = ctx("skip");
    let t = c.templates.lookup("default", "proxy").unwrap();
    let values = vec![
        json!("250m"),
        json!(9901),
        json!("db:5432"),
        json!("info"),
        json!("true"),
    ];
    let first = t.with_values(&values).unwrap();
    let again = t.with_values(&values).unwrap();
    assert!(std::sync::Arc::ptr_eq(&first, &again));
    let mut other = values.clone();
    other[0] = json!("300m");
    let different = t.with_values(&other).unwrap();
    assert!(!std::sync::Arc::ptr_eq(&first, &different));
    assert_ne!(first.hash, different.hash);
}
