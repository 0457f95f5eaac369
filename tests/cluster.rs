//! Cluster mode without a cluster: watch events are fed into the same
//! reflector stores the server uses, and the CRD schema is checked against
//! the example templates.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Namespace as NamespaceObject;
use kube::api::{ApiResource, DynamicObject};
use kube::core::{ObjectMeta, PartialObjectMeta};
use kube::runtime::reflector::store::Writer;
use kube::runtime::watcher::Event;
use serde_json::{Value, json};
use tandem::cluster::NamespaceCache;
use tandem::cluster::merge;
use tandem::engine::{self, Input, Verdict};
use tandem::facts::NamespaceFacts;
use tandem::facts::{Capabilities, Doc, NativeSidecars, Policy, parse_version};
use tandem::template::{Scope, SidecarTemplate, TemplateSet, parse_documents};

const OWN: &str = "tandem-system";

fn resource() -> ApiResource {
    ApiResource::erase::<SidecarTemplate>(&())
}

fn object(namespace: &str, name: &str, container: &str) -> DynamicObject {
    let doc = json!({
        "apiVersion": "tandem.dev/v1alpha1",
        "kind": "SidecarTemplate",
        "metadata": {"name": name, "namespace": namespace, "generation": 1},
        "spec": {
            "pattern": "sidecar",
            "containers": [{"name": container, "image": "registry.k8s.io/pause:3.10"}]
        }
    });
    serde_json::from_value(doc).unwrap()
}

fn pod_requesting(name: &str) -> Value {
    json!({
        "metadata": {"name": "p", "annotations": {"tandem.dev/inject": name}},
        "spec": {"containers": [{"name": "app", "image": "app:1"}]}
    })
}

fn decide_in(set: &TemplateSet, namespace: &str, pod: &Value) -> engine::Decision {
    let ns = tandem::facts::Namespace {
        name: namespace.into(),
        ..Default::default()
    };
    engine::decide(&Input {
        pod: &Doc::from(pod),
        namespace: &ns,
        templates: set,
        capabilities: &Capabilities::default(),
        policy: &Policy::default(),
    })
    .unwrap()
}

#[test]
fn template_events_add_update_and_delete_templates() {
    let mut writer = Writer::<DynamicObject>::new(resource());
    let store = writer.as_reader();
    writer.apply_watcher_event(&Event::Init);
    writer.apply_watcher_event(&Event::InitApply(object(OWN, "mesh", "mesh-proxy")));
    writer.apply_watcher_event(&Event::InitDone);
    let (set, updates) = merge(&[], &store.state(), OWN);
    assert!(
        set.lookup("any-namespace", "mesh").is_some(),
        "own namespace is cluster-wide"
    );
    assert_eq!(updates.len(), 1);
    assert!(updates[0].status.valid);
    assert_eq!(
        updates[0].status.hash.as_deref(),
        Some(set.lookup("x", "mesh").unwrap().hash.as_str())
    );

    // An update changes the template in force.
    writer.apply_watcher_event(&Event::Apply(object(OWN, "mesh", "mesh-proxy-v2")));
    let (set, _) = merge(&[], &store.state(), OWN);
    let t = set.lookup("x", "mesh").unwrap();
    assert_eq!(t.spec.containers[0].name, "mesh-proxy-v2");

    // A delete removes it; a pod asking for it is told it is missing.
    writer.apply_watcher_event(&Event::Delete(object(OWN, "mesh", "mesh-proxy-v2")));
    let (set, _) = merge(&[], &store.state(), OWN);
    assert!(set.is_empty());
    let d = decide_in(&set, "x", &pod_requesting("mesh"));
    assert_eq!(d.templates[0].verdict, Verdict::Missing);
}

#[test]
fn a_template_in_one_namespace_never_reaches_another() {
    let mut writer = Writer::<DynamicObject>::new(resource());
    let store = writer.as_reader();
    writer.apply_watcher_event(&Event::Apply(object("a", "team-proxy", "team-proxy")));
    let file = parse_documents(
        "cluster.yaml",
        "apiVersion: tandem.dev/v1alpha1\nkind: SidecarTemplate\nmetadata: {name: shared}\nspec:\n  pattern: sidecar\n  containers: [{name: shared-helper, image: 'x:1'}]\n",
    )
    .unwrap();
    writer.apply_watcher_event(&Event::Apply(object("a", "shared", "team-a-shared")));
    let files: Vec<_> = file.into_iter().map(Arc::new).collect();
    let (set, _) = merge(&files, &store.state(), OWN);

    let in_a = decide_in(&set, "a", &pod_requesting("team-proxy"));
    assert!(matches!(
        in_a.templates[0].verdict,
        Verdict::Injected { .. }
    ));
    let in_b = decide_in(&set, "b", &pod_requesting("team-proxy"));
    assert_eq!(
        in_b.templates[0].verdict,
        Verdict::Missing,
        "namespace b must not see a's template"
    );
    assert!(
        in_b.patch
            .operations()
            .iter()
            .all(|op| !serde_json::to_string(op).unwrap().contains("team-proxy"))
    );

    // In `a` the local template shadows the cluster-wide one of the same name; elsewhere the file's.
    assert_eq!(
        set.lookup("a", "shared").unwrap().scope,
        Scope::Namespace("a".into())
    );
    assert_eq!(
        set.lookup("b", "shared").unwrap().spec.containers[0].name,
        "shared-helper"
    );
}

#[test]
fn invalid_objects_are_skipped_with_their_reason_and_valid_ones_keep_working() {
    let mut writer = Writer::<DynamicObject>::new(resource());
    let store = writer.as_reader();
    writer.apply_watcher_event(&Event::Apply(object(OWN, "good", "good-helper")));
    let mut bad = object(OWN, "bad", "bad-helper");
    bad.data["spec"]["containers"][0]["imagePullPolicyy"] = json!("Always");
    writer.apply_watcher_event(&Event::Apply(bad));
    // A cluster object may not take the name of a --config template.
    let files: Vec<_> = parse_documents(
        "f.yaml",
        "apiVersion: tandem.dev/v1alpha1\nkind: SidecarTemplate\nmetadata: {name: dup}\nspec:\n  pattern: sidecar\n  containers: [{name: dup-helper, image: 'x:1'}]\n",
    )
    .unwrap()
    .into_iter()
    .map(Arc::new)
    .collect();
    writer.apply_watcher_event(&Event::Apply(object(OWN, "dup", "other")));
    let (set, updates) = merge(&files, &store.state(), OWN);
    assert!(set.lookup("x", "good").is_some());
    assert!(set.lookup("x", "bad").is_none());
    assert_eq!(
        set.lookup("x", "dup").unwrap().spec.containers[0].name,
        "dup-helper"
    );
    let by_name: BTreeMap<&str, _> = updates
        .iter()
        .map(|u| (u.name.as_str(), &u.status))
        .collect();
    assert!(by_name["good"].valid);
    assert!(!by_name["bad"].valid);
    let message = by_name["bad"].message.as_deref().unwrap();
    assert!(
        message.contains("spec.containers[0].imagePullPolicyy: unknown field"),
        "{message}"
    );
    assert!(
        by_name["dup"]
            .message
            .as_deref()
            .unwrap()
            .contains("--config")
    );

    // Once the status is written, the next event asks for no write.
    let mut good = object(OWN, "good", "good-helper");
    good.data["status"] = serde_json::to_value(by_name["good"]).unwrap();
    writer.apply_watcher_event(&Event::Apply(good));
    let (_, again) = merge(&files, &store.state(), OWN);
    assert!(again.iter().all(|u| u.name != "good"), "{again:?}");
}

fn namespace(
    name: &str,
    labels: &[(&str, &str)],
    annotations: &[(&str, &str)],
) -> PartialObjectMeta<NamespaceObject> {
    let map = |pairs: &[(&str, &str)]| {
        Some(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    };
    PartialObjectMeta {
        types: None,
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: map(labels),
            annotations: map(annotations),
            ..ObjectMeta::default()
        },
        _phantom: Default::default(),
    }
}

#[test]
fn namespace_facts_follow_the_watch() {
    let mut writer = Writer::<PartialObjectMeta<NamespaceObject>>::default();
    let cache = NamespaceCache(writer.as_reader());
    assert!(
        cache.get("shop").is_none(),
        "unknown namespaces give no facts"
    );
    writer.apply_watcher_event(&Event::Apply(namespace(
        "shop",
        &[("team", "a")],
        &[("tandem.dev/inject", "log-shipper")],
    )));
    let facts = cache.get("shop").unwrap();
    assert_eq!(facts.labels["team"], "a");
    assert_eq!(facts.labels["kubernetes.io/metadata.name"], "shop");
    assert_eq!(facts.annotations["tandem.dev/inject"], "log-shipper");

    // A label change reaches namespaceSelector matching.
    let templates = TemplateSet::new(
        parse_documents(
            "t.yaml",
            "apiVersion: tandem.dev/v1alpha1\nkind: SidecarTemplate\nmetadata: {name: mesh}\nspec:\n  pattern: sidecar\n  namespaceSelector: {matchLabels: {mesh: 'on'}}\n  containers: [{name: mesh-proxy, image: 'x:1'}]\n",
        )
        .unwrap(),
    )
    .unwrap();
    let pod = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "app"}]}});
    let decide = |ns: &tandem::facts::Namespace| {
        engine::decide(&Input {
            pod: &Doc::from(&pod),
            namespace: ns,
            templates: &templates,
            capabilities: &Capabilities::default(),
            policy: &Policy::default(),
        })
        .unwrap()
    };
    let injected = |d: engine::Decision| d.injected().map(str::to_string).collect::<Vec<_>>();
    // The namespace's default (log-shipper, which does not exist here) is
    // recorded in the status, but nothing is injected until the label comes.
    assert!(injected(decide(&cache.get("shop").unwrap())).is_empty());
    writer.apply_watcher_event(&Event::Apply(namespace("shop", &[("mesh", "on")], &[])));
    assert_eq!(injected(decide(&cache.get("shop").unwrap())), ["mesh"]);
    writer.apply_watcher_event(&Event::Delete(namespace("shop", &[], &[])));
    assert!(cache.get("shop").is_none());
}

#[test]
fn native_sidecars_are_detected_from_vendor_versions() {
    let cases = [
        ("v1.30.4-eks-abc", true),
        ("v1.29.0+k3s1", true),
        ("v1.28.15-gke.1020000", false),
        ("v1.36.2", true),
        ("1.33", true),
        ("v1.27.3+rke2r1", false),
        ("v2.0.0", true),
    ];
    for (version, native) in cases {
        let caps = Capabilities::detect(Some(version), NativeSidecars::Auto);
        assert_eq!(caps.native_sidecars, native, "{version}");
        assert!(caps.source.contains(version));
    }
    assert_eq!(parse_version("v1.30.4-eks-abc"), Some((1, 30)));
    assert_eq!(parse_version("v1.28+"), Some((1, 28)));
    let unknown = Capabilities::detect(Some("banana"), NativeSidecars::Auto);
    assert!(
        !unknown.native_sidecars,
        "unknown versions are treated as old"
    );
    assert!(Capabilities::detect(Some("v1.25.0"), NativeSidecars::Always).native_sidecars);
    assert!(!Capabilities::detect(Some("v1.36.0"), NativeSidecars::Never).native_sidecars);
}

/// The subset of OpenAPI v3 structural schemas the CRD uses, enough to check
/// documents against it: types, properties (unknown ones rejected, as
/// `kubectl apply` with strict field validation does), required, enums, items,
/// maps and int-or-string.
fn conforms(schema: &Value, doc: &Value, path: &str, errors: &mut Vec<String>) {
    if schema.get("x-kubernetes-int-or-string") == Some(&json!(true)) {
        if !(doc.is_string() || doc.is_i64() || doc.is_u64()) {
            errors.push(format!("{path}: want int or string"));
        }
        return;
    }
    if doc.is_null() && schema.get("nullable") == Some(&json!(true)) {
        return;
    }
    if let Some(values) = schema.get("enum").and_then(Value::as_array)
        && !values.contains(doc)
    {
        errors.push(format!("{path}: {doc} not in {values:?}"));
    }
    match schema.get("type").and_then(Value::as_str) {
        Some("object") => {
            let Some(obj) = doc.as_object() else {
                return errors.push(format!("{path}: want object"));
            };
            for r in schema
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if !obj.contains_key(r.as_str().unwrap()) {
                    errors.push(format!("{path}.{}: required", r.as_str().unwrap()));
                }
            }
            let props = schema.get("properties").and_then(Value::as_object);
            let extra = schema.get("additionalProperties");
            for (k, v) in obj {
                match (props.and_then(|p| p.get(k)), extra) {
                    (Some(s), _) => conforms(s, v, &format!("{path}.{k}"), errors),
                    (None, Some(s)) if s.is_object() => {
                        conforms(s, v, &format!("{path}.{k}"), errors)
                    }
                    (None, _)
                        if schema.get("x-kubernetes-preserve-unknown-fields")
                            == Some(&json!(true)) => {}
                    (None, _) if props.is_none() && extra.is_none() => {}
                    (None, _) => errors.push(format!("{path}.{k}: unknown field")),
                }
            }
        }
        Some("array") => match doc.as_array() {
            Some(items) => {
                for (i, item) in items.iter().enumerate() {
                    conforms(&schema["items"], item, &format!("{path}[{i}]"), errors);
                }
            }
            None => errors.push(format!("{path}: want array")),
        },
        Some("string") if !doc.is_string() => errors.push(format!("{path}: want string")),
        Some("integer") if !(doc.is_i64() || doc.is_u64()) => {
            errors.push(format!("{path}: want integer"))
        }
        Some("boolean") if !doc.is_boolean() => errors.push(format!("{path}: want boolean")),
        Some("number") if !doc.is_number() => errors.push(format!("{path}: want number")),
        _ => {}
    }
}

fn crd_schema() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/base/crd.yaml");
    let crd: Value = serde_saphyr::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"].clone()
}

#[test]
fn the_crd_schema_accepts_every_example_and_rejects_broken_templates() {
    let schema = crd_schema();
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/templates");
    let mut seen = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let doc: Value = serde_saphyr::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let mut errors = Vec::new();
        conforms(&schema, &doc["spec"], "spec", &mut errors);
        assert!(errors.is_empty(), "{}: {errors:?}", path.display());
        seen += 1;
    }
    assert_eq!(seen, 5);

    let good = json!({"pattern": "sidecar", "containers": [{"name": "c", "image": "i:1"}]});
    type Break = fn(&mut Value);
    let broken: [(&str, Break); 5] = [
        ("unknown spec field", |s| s["lifecycel"] = json!("native")),
        ("bad enum", |s| s["pattern"] = json!("sidekick")),
        ("missing pattern", |s| {
            drop(s.as_object_mut().unwrap().remove("pattern"))
        }),
        ("wrong type", |s| {
            s["containers"][0]["ports"] = json!([{"containerPort": "eighty"}])
        }),
        ("unknown container field", |s| {
            s["containers"][0]["imagePullPolicyy"] = json!("Always")
        }),
    ];
    let mut errors = Vec::new();
    conforms(&schema, &good, "spec", &mut errors);
    assert!(errors.is_empty(), "{errors:?}");
    for (what, change) in broken {
        let mut doc = good.clone();
        change(&mut doc);
        let mut errors = Vec::new();
        conforms(&schema, &doc, "spec", &mut errors);
        assert!(!errors.is_empty(), "{what} was accepted");
    }
    // The structural rules CEL enforces are there, with messages.
    let rules = schema["x-kubernetes-validations"].as_array().unwrap();
    assert!(
        rules
            .iter()
            .any(|r| r["message"].as_str().unwrap().contains("pattern init"))
    );
    assert!(
        rules
            .iter()
            .any(|r| r["rule"].as_str().unwrap().contains("restartPolicy"))
    );
}

#[test]
fn skipped_injections_make_an_event_but_never_for_dry_runs() {
    use tandem::admission::{Context, review};
    use tandem::facts::NoNamespaces;
    let mut request = common::fixture("admission-v1.36/deployment.json");
    request["request"]["object"]["metadata"]["annotations"] =
        json!({"tandem.dev/inject": "does-not-exist"});
    let templates = TemplateSet::default();
    let ctx = Context {
        templates: &templates,
        namespaces: &NoNamespaces,
        capabilities: &Capabilities::default(),
        policy: &Policy::default(),
    };
    let answer = review(request.to_string().as_bytes(), &ctx).unwrap();
    let n = answer.notice.expect("a missing template is worth an event");
    assert_eq!(n.reason, "InjectionSkipped");
    assert_eq!(n.regarding.kind.as_deref(), Some("ReplicaSet"));
    assert!(n.note.contains("does-not-exist"), "{}", n.note);

    request["request"]["dryRun"] = json!(true);
    let answer = review(request.to_string().as_bytes(), &ctx).unwrap();
    assert!(
        answer.notice.is_none(),
        "dry-run requests have no side effects"
    );
}
