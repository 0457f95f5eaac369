//! The CEL test environment (`tests/common/cel.rs`) against what a real
//! kube-apiserver v1.36.2 did (`tests/fixtures/apiserver-v1.36/`): which
//! variables each expression site sees, and the verdicts of the companion
//! policy as it was at d926dc7, wrong ones included. A passing test of a
//! shipped policy means something only because these pass.

mod common;

use std::collections::BTreeMap;

use common::cel::{self, Failure, Mutating, Request, Run, Site, Validating};
use common::fixture;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingAdmissionPolicySpec, ValidatingAdmissionPolicySpec,
};
use serde_json::{Value, json};

fn string_map(v: &Value) -> BTreeMap<String, String> {
    v.as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
        .collect()
}

/// What the API server answered, as the fixtures record it.
fn recorded(outcome: &Value) -> (bool, Option<&str>) {
    (
        outcome["allowed"].as_bool().unwrap(),
        outcome["message"].as_str(),
    )
}

#[test]
fn each_site_binds_what_the_api_server_binds() {
    let records = fixture("apiserver-v1.36/variable-binding.json");
    let records = records["records"].as_array().unwrap();
    let env = cel::env();
    let mut seen = BTreeMap::<(String, String), usize>::new();
    for (i, r) in records.iter().enumerate() {
        let kind = r["kind"].as_str().unwrap();
        let site = r["site"].as_str().unwrap();
        let case = format!("record {i}: {kind} {site} {}", r["probe"]);
        // The recorder named its probe policies and bindings by index.
        let name = format!("conformance-{i}");
        let namespace = cel::stored_namespace(
            "celconf",
            &string_map(&r["namespace_labels"]),
            &BTreeMap::new(),
        );
        let request = Request::create(&r["pod"], &namespace);
        let (allowed, message) = recorded(&r["outcome"]);
        match kind {
            "ValidatingAdmissionPolicy" => {
                let spec: ValidatingAdmissionPolicySpec =
                    serde_json::from_value(r["policy"].clone()).unwrap();
                let policy = Validating::new(&env, &spec).unwrap();
                let verdict = policy.verdict(&env, &request);
                assert_eq!(verdict.is_none(), allowed, "{case}: {verdict:?}");
                if let Some(d) = &verdict {
                    assert_eq!(
                        Some(cel::api_message("probe", &name, &name, d).as_str()),
                        message,
                        "{case}"
                    );
                } else {
                    assert_eq!(r["outcome"]["annotations"], json!({}), "{case}");
                }
            }
            "MutatingAdmissionPolicy" => {
                let spec: MutatingAdmissionPolicySpec =
                    serde_json::from_value(r["policy"].clone()).unwrap();
                let policy = Mutating::new(&env, &spec).unwrap();
                let after = policy.admit(&env, &request).unwrap();
                assert!(allowed, "{case}");
                assert_eq!(
                    after["metadata"]["annotations"], r["outcome"]["annotations"],
                    "{case}"
                );
            }
            other => panic!("{case}: unknown kind {other}"),
        }
        *seen.entry((kind.into(), site.into())).or_default() += 1;
    }
    // Both kinds, every site the fixtures probe.
    assert_eq!(seen.len(), 6, "{seen:?}");
}

#[test]
fn the_old_companion_policy_gets_the_api_servers_verdicts_wrong_ones_included() {
    let data = fixture("apiserver-v1.36/companion-verdicts.json");
    let spec: ValidatingAdmissionPolicySpec =
        serde_json::from_value(data["policy"].clone()).unwrap();
    let env = cel::env();
    let policy = Validating::new(&env, &spec).unwrap();
    let records = data["records"].as_array().unwrap();
    let (mut denied_by_error, mut admitted) = (0, 0);
    for r in records {
        let case = r["case"].as_str().unwrap();
        let namespace_name = case.rsplit("namespace ").next().unwrap();
        let namespace = cel::stored_namespace(
            namespace_name,
            &string_map(&r["namespace"]["labels"]),
            &string_map(&r["namespace"]["annotations"]),
        );
        let mut pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": { "name": "probe", "annotations": r["pod_annotations"] },
            "spec": { "containers": [{ "name": "app", "image": "example.com/app:1" }] },
        });
        pod = cel::stored(&pod);
        let verdict = policy.verdict(&env, &Request::create(&pod, &namespace));
        let (allowed, message) = recorded(&r["outcome"]);
        assert_eq!(verdict.is_none(), allowed, "{case}: {verdict:?}");
        match &verdict {
            Some(d) => {
                let ours =
                    cel::api_message("probe", "conformance-companion", "conformance-companion", d);
                assert_eq!(Some(ours.as_str()), message, "{case}");
                denied_by_error += usize::from(d.message.contains("resulted in error"));
            }
            None => admitted += 1,
        }
    }
    assert_eq!(records.len(), 21);
    // The bug, reproduced: every pod without tandem.dev/inject is denied by
    // the evaluation error (3 shapes × 3 namespaces).
    assert_eq!(denied_by_error, 9);
    assert_eq!(admitted, 6);
}

/// The trap itself: in a match condition `namespaceObject` is null, so
/// reading its metadata is an error; in a validation it is the Namespace.
#[test]
fn namespace_object_metadata_in_a_match_condition_is_an_error() {
    let env = cel::env();
    let namespace = cel::stored_namespace(
        "shop",
        &BTreeMap::new(),
        &BTreeMap::from([("tandem.dev/inject".into(), "log-shipper".into())]),
    );
    let pod = json!({ "metadata": { "name": "p" }, "spec": { "containers": [] } });
    let request = Request::create(&pod, &namespace);
    let reads = "namespaceObject.metadata.name == 'shop'";
    let at_match = cel::compile(&env, Site::MatchCondition, reads).unwrap();
    assert_eq!(
        cel::eval(&env, &at_match, &request, &Default::default()),
        Err(Failure {
            site: Site::MatchCondition,
            expression: reads.into(),
            error: "no such key: metadata".into(),
        })
    );
    for site in [
        Site::Variable,
        Site::Validation,
        Site::MessageExpression,
        Site::Mutation,
    ] {
        let e = cel::compile(&env, site, reads).unwrap();
        assert_eq!(
            cel::eval(&env, &e, &request, &Default::default()),
            Ok(::cel::Value::Bool(true)),
            "{site:?}"
        );
    }
    // Variables are not declared in match conditions at all.
    let e = cel::compile(&env, Site::MatchCondition, "variables.x").unwrap();
    assert!(cel::eval(&env, &e, &request, &Default::default()).is_err());
}

/// A validation reading a variable that failed fails with that variable's
/// error; one that never reads it is unaffected (the API server evaluates
/// variables lazily).
#[test]
fn a_failed_variable_fails_only_where_it_is_read() {
    let env = cel::env();
    let spec = |validation: &str| -> ValidatingAdmissionPolicySpec {
        serde_json::from_value(json!({
            "failurePolicy": "Fail",
            "variables": [{ "name": "broken", "expression": "object.metadata.annotations['x'] == 'y'" }],
            "validations": [{ "expression": validation, "message": "no" }],
        }))
        .unwrap()
    };
    let namespace = cel::stored_namespace("shop", &BTreeMap::new(), &BTreeMap::new());
    let pod = json!({ "metadata": { "name": "p" } });
    let request = Request::create(&pod, &namespace);
    let unread = Validating::new(&env, &spec("true")).unwrap();
    assert!(matches!(unread.run(&env, &request), Run::Validated(None)));
    let read = Validating::new(&env, &spec("variables.broken")).unwrap();
    let Run::Failed(f) = read.run(&env, &request) else {
        panic!("reading a failed variable must fail")
    };
    assert_eq!(f.site, Site::Variable);
    assert_eq!(f.error, "no such key: annotations");
    let short = Validating::new(&env, &spec("true || variables.broken")).unwrap();
    assert!(matches!(short.run(&env, &request), Run::Validated(None)));
}

/// A messageExpression that fails, or gives an empty or multi-line string,
/// falls back to `message`: it never changes the verdict.
#[test]
fn a_failed_message_expression_falls_back_to_the_message() {
    let env = cel::env();
    let namespace = cel::stored_namespace("shop", &BTreeMap::new(), &BTreeMap::new());
    let pod = json!({ "metadata": { "name": "p" } });
    let request = Request::create(&pod, &namespace);
    for (message_expression, expected) in [
        ("object.metadata.annotations['x']", "static"),
        ("''", "static"),
        ("'two\\nlines'", "static"),
        ("'from ' + namespaceObject.metadata.name", "from shop"),
    ] {
        let spec: ValidatingAdmissionPolicySpec = serde_json::from_value(json!({
            "validations": [{
                "expression": "false", "message": "static",
                "messageExpression": message_expression,
            }],
        }))
        .unwrap();
        let policy = Validating::new(&env, &spec).unwrap();
        let d = policy.verdict(&env, &request).unwrap();
        assert_eq!(d.message, expected, "{message_expression}");
        assert_eq!(d.reason, "Invalid");
    }
}

/// Every `x-kubernetes-validations` rule in a schema, with the path of the
/// node it sits on (`self`).
fn crd_rules(schema: &Value, path: &str, out: &mut Vec<(String, String, String)>) {
    for r in schema["x-kubernetes-validations"]
        .as_array()
        .into_iter()
        .flatten()
    {
        out.push((
            path.to_string(),
            r["rule"].as_str().unwrap().to_string(),
            r["message"].as_str().unwrap_or_default().to_string(),
        ));
    }
    for (k, s) in schema["properties"].as_object().into_iter().flatten() {
        crd_rules(s, &format!("{path}.{k}"), out);
    }
    if schema.get("items").is_some() {
        crd_rules(&schema["items"], &format!("{path}[]"), out);
    }
}

/// The CRD's rules see `self` (the node they sit on) and nothing else. Each
/// holds on every example template, on the shapes Kubernetes stores (lists
/// absent rather than empty), and each one fails on the mistake it names.
#[test]
fn crd_rules_see_only_self_and_hold_on_every_accepted_shape() {
    let crd: Value = serde_saphyr::from_str(
        &std::fs::read_to_string(common::manifest_dir().join("deploy/base/crd.yaml")).unwrap(),
    )
    .unwrap();
    let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
    let mut rules = Vec::new();
    crd_rules(schema, "", &mut rules);
    assert!(rules.len() >= 5, "{rules:?}");
    assert!(
        rules.iter().all(|(path, _, _)| path == ".spec"),
        "rules elsewhere than spec need their own cases: {rules:?}"
    );
    let env = cel::env();
    let holds = |spec: &Value| -> Vec<String> {
        rules
            .iter()
            .filter_map(|(_, rule, message)| match cel::crd_rule(&env, rule, spec) {
                Ok(true) => None,
                Ok(false) => Some(message.clone()),
                Err(e) => panic!("{rule} fails on {spec}: {e}"),
            })
            .collect()
    };
    // Only `self`: a rule reading anything else fails to evaluate.
    for other in ["object.spec", "namespaceObject", "oldSelf.pattern"] {
        assert!(cel::crd_rule(&env, &format!("{other} == null"), &json!({})).is_err());
    }
    let mut examples = 0;
    for entry in std::fs::read_dir(common::manifest_dir().join("examples/templates")).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        let doc: Value = serde_saphyr::from_str(&text).unwrap();
        assert_eq!(holds(&doc["spec"]), Vec::<String>::new(), "{doc}");
        examples += 1;
    }
    assert_eq!(examples, 5);
    let container = json!({ "name": "c", "image": "example.com/c:1" });
    for ok in [
        json!({ "pattern": "sidecar", "containers": [container] }),
        json!({ "pattern": "init", "initContainers": [container] }),
        json!({ "pattern": "adapter", "containers": [container], "initContainers": [container] }),
        json!({ "pattern": "sidecar", "containers": [container], "parameters": [
            { "name": "q", "type": "quantity", "default": "1", "min": "10m", "max": 2, "targets": ["containers[c].resources.limits.cpu"] },
            { "name": "s", "type": "string", "default": "a", "values": ["a", "b"], "pattern": "[ab]", "targets": ["containers[c].image"] },
            { "name": "b", "type": "boolean", "default": "true", "targets": ["containers[c].image"] }] }),
    ] {
        assert_eq!(holds(&ok), Vec::<String>::new(), "{ok}");
    }
    let always = json!({ "name": "c", "image": "i:1", "restartPolicy": "Always" });
    for (broken, names) in [
        (
            json!({ "pattern": "sidecar" }),
            "need at least one container",
        ),
        (
            json!({ "pattern": "sidecar", "containers": [] }),
            "need at least one container",
        ),
        (json!({ "pattern": "init" }), "at least one initContainer"),
        (
            json!({ "pattern": "init", "initContainers": [container], "containers": [container] }),
            "use initContainers only",
        ),
        (
            json!({ "pattern": "sidecar", "containers": [always] }),
            "containers[].restartPolicy",
        ),
        (
            json!({ "pattern": "sidecar", "containers": [container], "initContainers": [always] }),
            "initContainers[].restartPolicy",
        ),
        (
            json!({ "pattern": "sidecar", "containers": [container], "parameters": [
                { "name": "p", "type": "quantity", "default": "1", "pattern": "x", "targets": ["containers[c].image"] }] }),
            "pattern and values are for string parameters",
        ),
        (
            json!({ "pattern": "sidecar", "containers": [container], "parameters": [
                { "name": "p", "type": "string", "default": "a", "max": 3, "targets": ["containers[c].image"] }] }),
            "min and max are for quantity and integer parameters",
        ),
        (
            json!({ "pattern": "sidecar", "containers": [container], "parameters": [
                { "name": "p", "type": "string", "default": "a", "targets": [] }] }),
            "at least one target field",
        ),
    ] {
        let failed = holds(&broken);
        assert_eq!(failed.len(), 1, "{broken}: {failed:?}");
        assert!(failed[0].contains(names), "{broken}: {failed:?}");
    }
}

/// The check `tandem policy` and `tandem webhook-config` run on what they
/// print, and the install tests run on every shipped variant, flags the
/// match condition the API server found.
#[test]
fn the_site_check_flags_the_old_companion_policy() {
    let data = fixture("apiserver-v1.36/companion-verdicts.json");
    let spec: ValidatingAdmissionPolicySpec =
        serde_json::from_value(data["policy"].clone()).unwrap();
    let problems = tandem::install::sites::check_validating_policy(&spec);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].starts_with("matchCondition requests-injection reads namespaceObject"),
        "{problems:?}"
    );
}
