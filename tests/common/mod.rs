//! Helpers shared by the integration tests: fixtures, templates from YAML,
//! applying a patch, and the checks every injected pod must pass.
#![allow(dead_code)]

pub mod cel;
pub mod cost;
pub mod fake_api;
pub mod run;

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;

use json_patch::PatchOperation;
use serde_json::{Value, json};
use tandem::engine::Status;
use tandem::engine::{self, Decision, EngineError, Input, Outcome, Patch};
use tandem::facts::{
    self, Capabilities, Doc, INJECT_ANNOTATION, Namespace, NativeSidecars, Policy,
    STATUS_ANNOTATION,
};
use tandem::template::{self, Template, TemplateSet};

pub const SAFE_TO_EVICT: &str = facts::SAFE_TO_EVICT_ANNOTATION;

/// The crate's root directory.
pub fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `tests/fixtures` (see its README for where each file comes from).
pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures"))
}

/// The text of a file under `tests/fixtures` (e.g. `admission-v1.36/create.json`).
pub fn fixture_text(relative: &str) -> String {
    let path = fixtures_dir().join(relative);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read fixture {}: {e}", path.display()))
}

/// A JSON file under `tests/fixtures`, parsed.
pub fn fixture(relative: &str) -> Value {
    serde_json::from_str(&fixture_text(relative)).unwrap_or_else(|e| panic!("{relative}: {e}"))
}

/// The pod (`request.object`) and namespace (`request.namespace`) of an
/// AdmissionReview fixture.
pub fn review_pod(relative: &str) -> (Value, String) {
    let review = fixture(relative);
    let pod = review
        .pointer("/request/object")
        .cloned()
        .unwrap_or_else(|| panic!("{relative} has no request.object"));
    let ns = review
        .pointer("/request/namespace")
        .and_then(Value::as_str)
        .unwrap_or("default")
        .to_string();
    (pod, ns)
}

/// The `*.json` AdmissionReview fixtures of a fixtures sub-directory, by file stem.
pub fn review_fixtures(dir: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(fixtures_dir().join(dir))
        .unwrap_or_else(|e| panic!("cannot list fixtures/{dir}: {e}"))
        .filter_map(Result::ok)
        .filter_map(|e| {
            e.file_name()
                .to_string_lossy()
                .strip_suffix(".json")
                .map(str::to_string)
        })
        .collect();
    names.sort();
    assert!(!names.is_empty(), "no fixtures in {dir}");
    names
}

/// Parses YAML (one or more SidecarTemplate documents), panicking with the
/// loader's messages when it fails.
pub fn parse_templates(yaml: &str) -> Vec<Template> {
    template::parse_documents("test.yaml", yaml).unwrap_or_else(|errs| {
        let msgs: Vec<String> = errs.iter().map(ToString::to_string).collect();
        panic!("templates do not load:\n{}", msgs.join("\n"))
    })
}

/// A template set from YAML text.
pub fn templates(yaml: &str) -> TemplateSet {
    TemplateSet::new(parse_templates(yaml)).expect("template set")
}

/// The templates of `examples/templates`.
pub fn example_templates() -> TemplateSet {
    let loaded = template::load_path(&manifest_dir().join("examples/templates"))
        .unwrap_or_else(|errs| panic!("examples do not load: {errs:?}"));
    TemplateSet::new(loaded).expect("example template set")
}

/// A namespace with the given name and no labels or annotations.
pub fn namespace(name: &str) -> Namespace {
    let mut labels = BTreeMap::new();
    labels.insert("kubernetes.io/metadata.name".to_string(), name.to_string());
    Namespace {
        name: name.to_string(),
        labels,
        annotations: BTreeMap::new(),
    }
}

/// A cluster with native sidecars (1.36).
pub fn native_caps() -> Capabilities {
    Capabilities::detect(Some("v1.36.0"), NativeSidecars::Auto)
}

/// A cluster without native sidecars (1.28).
pub fn classic_caps() -> Capabilities {
    Capabilities::detect(Some("v1.28.0"), NativeSidecars::Auto)
}

/// Sets a pod annotation, creating `metadata.annotations` when needed.
pub fn annotate(pod: &mut Value, key: &str, value: &str) {
    let meta = pod
        .as_object_mut()
        .expect("pod is an object")
        .entry("metadata")
        .or_insert_with(|| Value::Object(Default::default()));
    let annotations = meta
        .as_object_mut()
        .expect("metadata is an object")
        .entry("annotations")
        .or_insert_with(|| Value::Object(Default::default()));
    if annotations.is_null() {
        *annotations = Value::Object(Default::default());
    }
    annotations
        .as_object_mut()
        .expect("annotations is an object")
        .insert(key.to_string(), Value::String(value.to_string()));
}

/// The patch as the webhook sends it, read back as `json_patch`
/// operations. Its encoding (template objects written as encoded at load)
/// must be byte for byte what `json_patch` writes for the same operations.
pub fn decoded(patch: &Patch) -> Vec<PatchOperation> {
    let sent = String::from_utf8(patch.to_json()).expect("UTF-8");
    let plain = serde_json::to_string(&patch.operations()).expect("operations serialise");
    assert_eq!(sent, plain, "the encoded patch differs from its operations");
    serde_json::from_str(&sent).expect("the encoded patch reads back")
}

/// Applies `patch`, as sent, to a copy of `pod`.
pub fn apply(pod: &Value, patch: &Patch) -> Value {
    apply_ops(pod, &decoded(patch))
}

/// Applies operations (a patch `tandem inject --patch` printed) to a copy of `pod`.
pub fn apply_ops(pod: &Value, ops: &[PatchOperation]) -> Value {
    let mut out = pod.clone();
    json_patch::patch(&mut out, ops).unwrap_or_else(|e| {
        panic!(
            "patch does not apply: {e}\npatch: {}",
            serde_json::to_string_pretty(ops).unwrap_or_default()
        )
    });
    out
}

/// The patch as JSON, for looking at its operations.
pub fn ops(patch: &Patch) -> Vec<Value> {
    decoded(patch)
        .iter()
        .map(|op| serde_json::to_value(op).expect("patch op serialises"))
        .collect()
}

/// The paths of the patch's operations.
pub fn paths(patch: &Patch) -> Vec<String> {
    ops(patch)
        .iter()
        .map(|op| op["path"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// The operation at `path`, if any.
pub fn op_at(patch: &Patch, path: &str) -> Option<Value> {
    ops(patch).into_iter().find(|op| op["path"] == path)
}

/// The `name`s of the items of the array at `pointer`.
pub fn names(pod: &Value, pointer: &str) -> Vec<String> {
    pod.pointer(pointer)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|i| i["name"].as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// The item named `name` of the array at `pointer`.
pub fn named<'a>(pod: &'a Value, pointer: &str, name: &str) -> Option<&'a Value> {
    pod.pointer(pointer)?
        .as_array()?
        .iter()
        .find(|i| i["name"] == name)
}

/// A pod annotation.
pub fn annotation<'a>(pod: &'a Value, key: &str) -> Option<&'a str> {
    pod.pointer("/metadata/annotations")?.get(key)?.as_str()
}

/// The pod's `tandem.dev/status`, parsed.
pub fn status_of(pod: &Value) -> Option<Status> {
    annotation(pod, STATUS_ANNOTATION).map(|s| Status::parse(s).expect("valid status"))
}

/// Checks the pod is one the API server would accept as far as injection can
/// break it: a containers array, unique container names across containers and
/// initContainers, unique volume names, every volumeMount referencing an
/// existing volume, unique mountPaths per container, string annotations, and
/// `restartPolicy` only on init containers, only `Always`.
pub fn assert_well_formed(pod: &Value) {
    let spec = pod.get("spec").expect("pod has a spec");
    let containers = spec
        .get("containers")
        .and_then(Value::as_array)
        .expect("spec.containers is an array");
    assert!(!containers.is_empty(), "spec.containers is empty");
    let init = match spec.get("initContainers") {
        None => &[][..],
        Some(v) => v
            .as_array()
            .expect("spec.initContainers is an array")
            .as_slice(),
    };
    let volumes = match spec.get("volumes") {
        None => &[][..],
        Some(v) => v.as_array().expect("spec.volumes is an array").as_slice(),
    };
    let mut volume_names = HashSet::new();
    for v in volumes {
        let name = v["name"].as_str().expect("volume name is a string");
        assert!(volume_names.insert(name), "volume {name:?} defined twice");
    }
    let mut container_names = HashSet::new();
    for (list, items) in [
        ("containers", containers.as_slice()),
        ("initContainers", init),
    ] {
        for c in items {
            let name = c["name"].as_str().expect("container name is a string");
            assert!(
                container_names.insert(name),
                "container name {name:?} used twice (found again in {list})"
            );
            match (list, c.get("restartPolicy")) {
                (_, None) => {}
                ("initContainers", Some(p)) => {
                    assert_eq!(p, "Always", "init container {name} restartPolicy")
                }
                (_, Some(p)) => panic!("app container {name} has restartPolicy {p}"),
            }
            let mut paths = HashSet::new();
            for m in c
                .get("volumeMounts")
                .map(|m| m.as_array().expect("volumeMounts is an array"))
                .into_iter()
                .flatten()
            {
                let vol = m["name"].as_str().expect("volumeMount name is a string");
                assert!(
                    volume_names.contains(vol),
                    "container {name} mounts volume {vol:?}, which the pod does not define"
                );
                let path = m["mountPath"].as_str().expect("mountPath is a string");
                assert!(
                    paths.insert(path.trim_end_matches('/')),
                    "container {name} mounts {path} twice"
                );
            }
            for field in ["env", "envFrom", "ports"] {
                if let Some(v) = c.get(field) {
                    assert!(v.is_array(), "container {name} {field} is not an array");
                }
            }
        }
    }
    if let Some(a) = pod.pointer("/metadata/annotations") {
        for (k, v) in a.as_object().expect("annotations is an object") {
            assert!(v.is_string(), "annotation {k} is not a string");
        }
    }
}

/// Checks nothing of `before` was lost in `after`: every key is still there
/// with its value unchanged, except that arrays may have items appended (and
/// `spec.initContainers` items inserted before the user's, also in a workload's
/// pod template), an absent or null
/// parent may have been created, and Tandem's own annotations may grow.
pub fn assert_preserved(before: &Value, after: &Value) {
    preserved(before, after, "");
}

fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

fn preserved(before: &Value, after: &Value, path: &str) {
    match (before, after) {
        (Value::Null, _) => {}
        (Value::Object(b), Value::Object(a)) => {
            for (k, bv) in b {
                let p = format!("{path}/{}", escape(k));
                let Some(av) = a.get(k) else {
                    panic!("{p} was removed (it was {bv})");
                };
                if p == format!("/metadata/annotations/{}", escape(STATUS_ANNOTATION)) {
                    status_preserved(bv, av);
                } else if p == format!("/metadata/annotations/{}", escape(SAFE_TO_EVICT)) {
                    let list = |v: &Value| -> Vec<String> {
                        v.as_str()
                            .unwrap_or_default()
                            .split(',')
                            .map(|s| s.trim().to_string())
                            .filter(|s| !s.is_empty())
                            .collect()
                    };
                    let (bl, al) = (list(bv), list(av));
                    for n in &bl {
                        assert!(al.contains(n), "{p} lost {n}: {bv} -> {av}");
                    }
                } else {
                    preserved(bv, av, &p);
                }
            }
        }
        (Value::Array(b), Value::Array(a)) => {
            if b.is_empty() {
                return;
            }
            // Injected init containers go before and after the user's, which
            // stay together and in order; everything else only grows at the end.
            let offset = if path.ends_with("/spec/initContainers") {
                a.iter()
                    .position(|x| x.get("name") == b[0].get("name"))
                    .unwrap_or_else(|| panic!("{path}: user init container {} lost", b[0]))
            } else {
                0
            };
            assert!(
                a.len() >= offset + b.len(),
                "{path} lost items: {} before, {} after",
                b.len(),
                a.len()
            );
            for (i, bv) in b.iter().enumerate() {
                preserved(bv, &a[offset + i], &format!("{path}/{}", offset + i));
            }
        }
        _ => assert_eq!(before, after, "{path} changed"),
    }
}

fn status_preserved(before: &Value, after: &Value) {
    let Ok(b) = Status::parse(before.as_str().unwrap_or_default()) else {
        // Not a status Tandem wrote: it may be replaced.
        return;
    };
    let a = Status::parse(after.as_str().unwrap_or_default()).expect("status stays valid");
    for t in &b.templates {
        assert!(
            a.templates.contains(t),
            "status lost template {}: {before} -> {after}",
            t.name
        );
    }
}

/// Engine inputs for a test, with defaults: namespace `default`, native
/// sidecars available, the default policy.
pub struct Ctx {
    pub templates: TemplateSet,
    pub namespace: Namespace,
    pub caps: Capabilities,
    pub policy: Policy,
}

/// A decision and the pod with its patch applied.
pub struct Injection {
    pub decision: Decision,
    pub pod: Value,
}

impl Injection {
    pub fn warnings(&self) -> String {
        self.decision.warnings.join("\n")
    }
}

impl Ctx {
    pub fn new(templates: TemplateSet) -> Ctx {
        Ctx {
            templates,
            namespace: namespace("default"),
            caps: native_caps(),
            policy: Policy::default(),
        }
    }

    pub fn yaml(yaml: &str) -> Ctx {
        Ctx::new(templates(yaml))
    }

    pub fn examples() -> Ctx {
        Ctx::new(example_templates())
    }

    pub fn in_namespace(mut self, name: &str) -> Ctx {
        let labels = std::mem::take(&mut self.namespace.labels);
        let annotations = std::mem::take(&mut self.namespace.annotations);
        self.namespace = namespace(name);
        for (k, v) in labels {
            if k != "kubernetes.io/metadata.name" {
                self.namespace.labels.insert(k, v);
            }
        }
        self.namespace.annotations = annotations;
        self
    }

    pub fn ns_label(mut self, k: &str, v: &str) -> Ctx {
        self.namespace.labels.insert(k.into(), v.into());
        self
    }

    pub fn ns_annotation(mut self, k: &str, v: &str) -> Ctx {
        self.namespace.annotations.insert(k.into(), v.into());
        self
    }

    pub fn classic(mut self) -> Ctx {
        self.caps = classic_caps();
        self
    }

    /// The explained decision, after checking that the webhook's (which
    /// records no gates) is the same decision.
    pub fn decide(&self, pod: &Value) -> Result<Decision, EngineError> {
        let input = Input {
            pod: &Doc::from(pod),
            namespace: &self.namespace,
            templates: &self.templates,
            capabilities: &self.caps,
            policy: &self.policy,
        };
        let explained = engine::explain(&input);
        let decided = engine::decide(&input);
        match (&explained, &decided) {
            (Ok(e), Ok(d)) => {
                assert!(!e.gates.is_empty(), "an explanation without gates");
                assert!(d.gates.is_empty(), "the webhook's decision records gates");
                let mut e = serde_json::to_value(e).unwrap();
                e["gates"] = serde_json::json!([]);
                assert_eq!(
                    e,
                    serde_json::to_value(d).unwrap(),
                    "explaining changed the decision"
                );
                assert_eq!(ops(&explained.as_ref().unwrap().patch), ops(&d.patch));
            }
            (Err(e), Err(d)) => assert_eq!(e, d),
            _ => panic!("explain {explained:?} but decide {decided:?}"),
        }
        explained
    }

    /// Decides, applies the patch and checks the result: well-formed, nothing
    /// of the user's lost, and a second decision on the result changes nothing.
    pub fn inject(&self, pod: &Value) -> Injection {
        let decision = self.decide(pod).expect("the engine accepts the pod");
        let patched = apply(pod, &decision.patch);
        assert_eq!(
            decision.outcome == Outcome::Patched,
            !decision.patch.is_empty(),
            "outcome {:?} does not match a patch of {} operations",
            decision.outcome,
            decision.patch.len()
        );
        if matches!(decision.outcome, Outcome::Denied { .. }) {
            assert!(decision.patch.is_empty(), "a denial carries a patch");
        }
        assert_well_formed(&patched);
        assert_preserved(pod, &patched);
        for w in &decision.warnings {
            assert!(
                w.chars().count() <= engine::MAX_WARNING_CHARS,
                "warning of {} characters: {w}",
                w.chars().count()
            );
        }
        let again = self
            .decide(&patched)
            .expect("the engine accepts its own output");
        assert!(
            again.patch.is_empty(),
            "second decision is not empty: {}\nfirst: {}",
            String::from_utf8_lossy(&again.patch.to_json()),
            String::from_utf8_lossy(&decision.patch.to_json())
        );
        assert_ne!(again.outcome, Outcome::Patched);
        assert_eq!(
            matches!(again.outcome, Outcome::Denied { .. }),
            matches!(decision.outcome, Outcome::Denied { .. }),
            "second decision changes denial: {:?} then {:?}",
            decision.outcome,
            again.outcome
        );
        Injection {
            decision,
            pod: patched,
        }
    }
}

/// One SidecarTemplate document (JSON, which the YAML loader reads) with this
/// name and spec.
pub fn template_doc(name: &str, spec: Value) -> String {
    json!({
        "apiVersion": "tandem.dev/v1alpha1",
        "kind": "SidecarTemplate",
        "metadata": { "name": name },
        "spec": spec,
    })
    .to_string()
}

/// A template set from several documents.
pub fn template_set(docs: &[String]) -> TemplateSet {
    templates(&docs.join("\n---\n"))
}

/// Deserialises a manifest as its Kubernetes type and fails on any field the
/// type does not know (what `kubectl apply --validate=strict` would reject).
pub fn strict<T: serde::de::DeserializeOwned + serde::Serialize>(doc: &Value, what: &str) -> T {
    let typed: T = serde_json::from_value(doc.clone()).unwrap_or_else(|e| panic!("{what}: {e}"));
    let typed_json = serde_json::to_value(&typed).unwrap();
    let lost = tandem::template::unknown_fields(doc, &typed_json, "");
    assert!(lost.is_empty(), "{what}: unknown fields {lost:?}");
    typed
}

/// The 0-based line where two texts first differ.
pub fn first_difference(expected: &str, actual: &str) -> usize {
    expected
        .lines()
        .zip(actual.lines())
        .position(|(e, a)| e != a)
        .unwrap_or(expected.lines().count().min(actual.lines().count()))
}

/// Compares `actual` with the committed snapshot `tests/snapshots/NAME`;
/// `TANDEM_UPDATE_SNAPSHOTS=1` rewrites it instead.
pub fn snapshot(name: &str, actual: &str) {
    let path = manifest_dir().join("tests/snapshots").join(name);
    if std::env::var_os("TANDEM_UPDATE_SNAPSHOTS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run with TANDEM_UPDATE_SNAPSHOTS=1 to create it",
            path.display()
        )
    });
    if expected != actual {
        let line = first_difference(&expected, actual);
        panic!(
            "{name} differs from its snapshot at line {}:\n  want: {:?}\n  got:  {:?}\n\
             (TANDEM_UPDATE_SNAPSHOTS=1 rewrites it after a deliberate change)",
            line + 1,
            expected.lines().nth(line),
            actual.lines().nth(line)
        );
    }
}

/// The pod shapes decisions are tried on (the policy equivalence, the
/// webhook's lean parse): the captured API-server pods,
/// the example workloads' pods, and generated ones with parents present or
/// absent, user init containers, Job restart policies and names, volumes,
/// ports, mounts and env that the templates' own collide with.
pub fn pods() -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for name in review_fixtures("admission-v1.36") {
        let (pod, _) = review_pod(&format!("admission-v1.36/{name}.json"));
        if pod.get("kind").and_then(Value::as_str) == Some("Pod") {
            out.push((format!("fixture {name}"), pod));
        }
    }
    let base = || {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": { "name": "p", "namespace": "shop" },
            "spec": { "containers": [{ "name": "app", "image": "example.com/app:1" }] },
        })
    };
    out.push(("bare".into(), base()));
    let mut shapes: Vec<(&str, Value)> = vec![
        (
            "init, volumes, two apps",
            json!({
                "initContainers": [{ "name": "setup", "image": "example.com/setup:1" }],
                "volumes": [{ "name": "data", "emptyDir": {} }],
                "containers": [
                    { "name": "web-1", "image": "example.com/web:1",
                      "env": [{ "name": "A", "value": "1" }],
                      "volumeMounts": [{ "name": "data", "mountPath": "/data" }],
                      "envFrom": [{ "secretRef": { "name": "s" } }] },
                    { "name": "app", "image": "example.com/app:1" },
                ],
            }),
        ),
        (
            "job",
            json!({ "restartPolicy": "OnFailure",
                    "containers": [{ "name": "web", "image": "example.com/job:1" }] }),
        ),
        (
            "native sidecar of the user's",
            json!({
                "initContainers": [{ "name": "mesh", "image": "example.com/mesh:1", "restartPolicy": "Always" }],
                "containers": [{ "name": "app", "image": "example.com/app:1" }],
            }),
        ),
        (
            "name taken",
            json!({ "containers": [{ "name": "proxy", "image": "x" }, { "name": "log-shipper", "image": "x" },
                                   { "name": "migrate", "image": "x" }, { "name": "app", "image": "x" }] }),
        ),
        (
            "volume taken",
            json!({ "volumes": [{ "name": "warm-cache", "emptyDir": {} }, { "name": "app-config", "emptyDir": {} },
                                { "name": "app-logs", "emptyDir": {} }],
                    "containers": [{ "name": "app", "image": "x" }] }),
        ),
        (
            "ports taken",
            json!({ "containers": [{ "name": "web", "image": "x", "ports": [
                { "containerPort": 15001 }, { "containerPort": 9125, "protocol": "UDP" },
                { "containerPort": 5432 }, { "containerPort": 2020 }] }] }),
        ),
        (
            "other protocol",
            json!({ "containers": [{ "name": "web", "image": "x", "ports": [
                { "containerPort": 15001, "protocol": "UDP" }, { "containerPort": 9125 }] }] }),
        ),
        (
            "mount, env and envFrom taken",
            json!({ "volumes": [{ "name": "m", "emptyDir": {} }, { "name": "n", "emptyDir": {} }, { "name": "o", "emptyDir": {} }],
                    "containers": [{ "name": "web", "image": "x",
                "volumeMounts": [{ "name": "m", "mountPath": "/cache" }, { "name": "n", "mountPath": "/var/log/app/" },
                                 { "name": "o", "mountPath": "/etc/app/config" }],
                "env": [{ "name": "HTTP_PROXY", "value": "other" }, { "name": "STATSD_HOST", "value": "elsewhere" },
                        { "name": "DATABASE_URL", "value": "x" }],
                "envFrom": [{ "configMapRef": { "name": "proxy-env" } }] }] }),
        ),
        // What the engine finds already there and reuses; the policies step
        // aside.
        (
            "identical env already set",
            json!({ "containers": [{ "name": "web", "image": "x", "env": [
                { "name": "HTTP_PROXY", "value": "http://localhost:15001" },
                { "name": "STATSD_HOST", "value": "localhost" }] }] }),
        ),
        (
            "no app matches the globs",
            json!({ "containers": [{ "name": "main", "image": "x" }] }),
        ),
    ];
    for (name, spec) in shapes.drain(..) {
        let mut pod = base();
        pod["spec"] = spec;
        out.push((name.to_string(), pod));
    }
    for (name, pod) in example_workload_pods() {
        out.push((name, pod));
    }
    out
}

/// The pods of `examples/workloads/pod.yaml`, as the API server sees them.
pub fn example_workload_pods() -> Vec<(String, Value)> {
    let text = std::fs::read_to_string(manifest_dir().join("examples/workloads/pod.yaml")).unwrap();
    let docs: Vec<Value> = serde_saphyr::from_multiple(&text).unwrap();
    docs.into_iter()
        .filter(|d| d.get("kind").and_then(Value::as_str) == Some("Pod"))
        .enumerate()
        .map(|(i, mut d)| {
            d["metadata"]["namespace"] = json!("shop");
            (format!("examples/workloads/pod.yaml #{i}"), d)
        })
        .collect()
}

pub type Annotations = Vec<(&'static str, String)>;
pub type Labels = Vec<(&'static str, &'static str)>;

/// The annotation and label variants each pod shape is tried with.
pub fn pod_variants(set: &TemplateSet) -> Vec<(String, Annotations, Labels)> {
    let names: Vec<String> = set.all().map(|t| t.name.clone()).collect();
    let mut requests: Vec<Option<String>> = vec![None, Some("true".into()), Some(" , ".into())];
    for n in &names {
        requests.push(Some(n.clone()));
    }
    requests.push(Some(format!(" {0}, {0} ", names[0])));
    requests.push(Some(format!("{},{}", names[0], names[1])));
    // Several templates, in both orders: the order is the request's.
    requests.push(Some(format!("{},{}", names[1], names[0])));
    requests.push(Some(names[names.len().saturating_sub(3)..].join(",")));
    requests.push(Some(format!("{},does-not-exist", names[0])));
    let labels: Vec<Labels> = vec![
        vec![],
        vec![("tandem.dev/metrics", "true")],
        vec![("proxy", "on")],
        vec![("proxy", "yes"), ("tier", "db")],
        vec![("app", "shop"), ("tandem.dev/logs", "true")],
    ];
    let extras: Vec<Annotations> = vec![
        vec![],
        vec![
            ("kubectl.kubernetes.io/default-container", "app".into()),
            (SAFE_TO_EVICT, " data , app-config".into()),
        ],
        // Injected before by the webhook, with another template.
        vec![(
            STATUS_ANNOTATION,
            r#"{"templates":[{"name":"other","hash":"0123456789abcdef"}]}"#.into(),
        )],
    ];
    let mut extras = extras;
    extras.extend(parameter_variants(set));
    let mut out = Vec::new();
    for request in &requests {
        for (l, labels) in labels.iter().enumerate() {
            // Labels matter for selector matches; the extras are tried with
            // every request, on unlabelled pods.
            let extra_sets = if l == 0 { &extras[..] } else { &extras[..1] };
            for (e, extra) in extra_sets.iter().enumerate() {
                let mut annotations = extra.clone();
                if let Some(v) = request {
                    annotations.push((INJECT_ANNOTATION, v.clone()));
                }
                let name = format!("request {request:?} labels #{l} extras #{e}");
                out.push((name, annotations, labels.clone()));
            }
        }
    }
    out
}

/// Pod annotations setting the first parameter of the first template that
/// has parameters: at its default, at another value within its bounds (its
/// `max`, when it has one), at a value nothing accepts, and a parameter the
/// template does not declare.
pub fn parameter_variants(set: &TemplateSet) -> Vec<Annotations> {
    let Some(t) = set.all().find(|t| !t.spec.parameters.is_empty()) else {
        return Vec::new();
    };
    let p = &t.spec.parameters[0];
    let key: &'static str = Box::leak(p.annotation(&t.name).into_boxed_str());
    let undeclared: &'static str =
        Box::leak(template::parameter_annotation(&t.name, "no-such-parameter").into_boxed_str());
    let mut out = vec![
        vec![(key, template::parameter_text(&p.default))],
        vec![(key, "\"><".to_string())],
        vec![(undeclared, "1".to_string())],
    ];
    if let Some(max) = &p.max {
        out.push(vec![(key, template::parameter_text(max))]);
    }
    out
}

pub fn with_metadata(
    pod: &Value,
    annotations: &[(&str, String)],
    labels: &[(&str, &str)],
) -> Value {
    let mut pod = pod.clone();
    for (k, v) in annotations {
        annotate(&mut pod, k, v);
    }
    if !labels.is_empty() {
        let meta = pod["metadata"].as_object_mut().unwrap();
        let existing = meta.entry("labels").or_insert_with(|| json!({}));
        for (k, v) in labels {
            existing[*k] = json!(v);
        }
    }
    pod
}
