//! Engine cost: decision + patch for the bench bodies and for pathological
//! pods, and the whole admission path (parse, decide, encode) for comparison.
//! Run with `cargo bench --bench engine`.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use serde_json::{Value, json};
use tandem::admission::{self, Context};
use tandem::engine::{self, Input};
use tandem::facts::{Capabilities, Doc, Namespace, NoNamespaces, Policy};
use tandem::template::{TemplateSet, parse_documents};

// The allocator `tandem` ships with (src/main.rs), so the numbers are its.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const TEMPLATE: &str = r#"
apiVersion: tandem.dev/v1alpha1
kind: SidecarTemplate
metadata: {name: log-shipper}
spec:
  pattern: sidecar
  containers:
  - name: tandem-log-shipper
    image: fluent/fluent-bit:3.2.4
    resources: {requests: {cpu: 20m, memory: 32Mi}, limits: {cpu: 100m, memory: 64Mi}}
    volumeMounts: [{name: tandem-logs, mountPath: /var/log/tandem}]
  volumes: [{name: tandem-logs, emptyDir: {sizeLimit: 128Mi}}]
  app:
    volumeMounts: [{name: tandem-logs, mountPath: /var/log/tandem}]
    env: [{name: LOG_DIR, value: /var/log/tandem}]
"#;

fn fixture(name: &str) -> String {
    let path = format!(
        "{}/tests/fixtures/bench/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn templates(extra: usize) -> TemplateSet {
    let mut all = parse_documents("bench", TEMPLATE).expect("bench template loads");
    // Templates that exist but do not match the pod: selection has to look at them.
    for i in 0..extra {
        let doc = TEMPLATE
            .replace("name: log-shipper}", &format!("name: other-{i}}}"))
            .replace("tandem-log-shipper", &format!("other-{i}"))
            .replace(
                "pattern: sidecar",
                "pattern: sidecar\n  selector: {matchLabels: {never: match}}",
            );
        all.extend(parse_documents("bench", &doc).expect("extra template loads"));
    }
    TemplateSet::new(all).expect("unique names")
}

/// The pod is read as the webhook reads it, outside the measurement.
fn decide(pod: &Doc<'_>, set: &TemplateSet) -> usize {
    let ns = Namespace {
        name: "shop".into(),
        ..Namespace::default()
    };
    let d = engine::decide(&Input {
        pod,
        namespace: &ns,
        templates: set,
        capabilities: &Capabilities::default(),
        policy: &Policy::default(),
    })
    .expect("decides");
    d.patch.len()
}

/// The medium pod grown in one dimension.
fn pathological() -> Vec<(&'static str, Value)> {
    let review: Value = serde_json::from_str(&fixture("medium")).unwrap();
    let base = review["request"]["object"].clone();
    let mut out = Vec::new();

    let mut env = base.clone();
    env["spec"]["containers"][0]["env"] = (0..2000)
        .map(|i| json!({"name": format!("VAR_{i}"), "value": format!("value-{i}")}))
        .collect();
    out.push(("2000-env-vars", env));

    let mut containers = base.clone();
    let first = containers["spec"]["containers"][0].clone();
    containers["spec"]["containers"] = (0..100)
        .map(|i| {
            let mut c = first.clone();
            c["name"] = json!(format!("app-{i}"));
            c["ports"] = json!([{"containerPort": 10000 + i, "protocol": "TCP"}]);
            c
        })
        .collect();
    out.push(("100-containers", containers));

    let mut managed = base.clone();
    let entry = json!({"manager": "kubectl", "operation": "Update", "fieldsV1": {"f:metadata": {"f:labels": {"f:x": {}}}}});
    let per = entry.to_string().len();
    managed["metadata"]["managedFields"] = (0..(1 << 20) / per).map(|_| entry.clone()).collect();
    out.push(("1MiB-managedFields", managed));

    let mut volumes = base.clone();
    volumes["spec"]["volumes"] = (0..200)
        .map(|i| json!({"name": format!("vol-{i}"), "emptyDir": {}}))
        .collect();
    out.push(("200-volumes", volumes));
    out
}

/// The example log shipper (five parameters) on the small pod: at its
/// defaults, and with two values of the pod's own, which renders the
/// template anew for that pod.
fn engine_parameters(c: &mut Criterion) {
    let set = TemplateSet::new(tandem::template::examples().expect("examples load"))
        .expect("unique names");
    let review: Value = serde_json::from_str(&fixture("small")).unwrap();
    let mut g = c.benchmark_group("parameters");
    for (name, values) in [
        ("defaults", json!({})),
        (
            "two-set",
            json!({ "log-shipper.tandem.dev/cpu-limit": "500m", "log-shipper.tandem.dev/memory-limit": "256Mi" }),
        ),
    ] {
        let mut pod = review["request"]["object"].clone();
        let annotations = pod["metadata"]["annotations"].as_object_mut().unwrap();
        annotations.insert("tandem.dev/inject".into(), json!("log-shipper"));
        annotations.extend(values.as_object().unwrap().clone());
        let doc = Doc::from(&pod);
        assert!(decide(&doc, &set) > 0, "{name} must produce a real patch");
        g.bench_function(name, |b| b.iter(|| decide(black_box(&doc), &set)));
    }
    g.finish();
}

fn engine_bodies(c: &mut Criterion) {
    let set = templates(0);
    let mut g = c.benchmark_group("decide");
    for name in ["small", "medium", "large"] {
        let body = fixture(name);
        let review: Value = serde_json::from_str(&body).unwrap();
        let pod = Doc::from(&review["request"]["object"]);
        assert!(decide(&pod, &set) > 0, "{name} must produce a real patch");
        g.throughput(Throughput::Bytes(body.len() as u64));
        g.bench_with_input(BenchmarkId::from_parameter(name), &pod, |b, pod| {
            b.iter(|| decide(black_box(pod), &set))
        });
    }
    g.finish();

    let mut g = c.benchmark_group("admission-review");
    for name in ["small", "medium", "large"] {
        let body = fixture(name);
        g.throughput(Throughput::Bytes(body.len() as u64));
        g.bench_with_input(BenchmarkId::from_parameter(name), &body, |b, body| {
            let ctx = Context {
                templates: &set,
                namespaces: &NoNamespaces,
                capabilities: &Capabilities::default(),
                policy: &Policy::default(),
            };
            b.iter(|| {
                admission::review(black_box(body.as_bytes()), &ctx)
                    .unwrap()
                    .body
                    .len()
            })
        });
        // The floor any webhook pays: parsing the body.
        g.bench_with_input(BenchmarkId::new("parse-only", name), &body, |b, body| {
            b.iter(|| serde_json::from_slice::<Value>(black_box(body.as_bytes())).unwrap())
        });
    }
    g.finish();
}

fn engine_pathological(c: &mut Criterion) {
    let mut g = c.benchmark_group("pathological");
    let set = templates(0);
    for (name, pod) in pathological() {
        let pod = Doc::from(&pod);
        assert!(decide(&pod, &set) > 0, "{name} must produce a real patch");
        g.bench_with_input(BenchmarkId::from_parameter(name), &pod, |b, pod| {
            b.iter(|| decide(black_box(pod), &set))
        });
    }
    let many = templates(49);
    let review: Value = serde_json::from_str(&fixture("medium")).unwrap();
    let pod = Doc::from(&review["request"]["object"]);
    g.bench_function("50-templates", |b| {
        b.iter(|| decide(black_box(&pod), &many))
    });
    g.finish();

    // The same pods as whole AdmissionReview bodies: parsing included, which
    // is where a megabyte of managedFields costs.
    let mut g = c.benchmark_group("pathological-review");
    let ctx = Context {
        templates: &set,
        namespaces: &NoNamespaces,
        capabilities: &Capabilities::default(),
        policy: &Policy::default(),
    };
    for (name, pod) in pathological() {
        let mut body = review.clone();
        body["request"]["object"] = pod;
        let body = serde_json::to_vec(&body).unwrap();
        g.throughput(Throughput::Bytes(body.len() as u64));
        g.bench_with_input(BenchmarkId::from_parameter(name), &body, |b, body| {
            b.iter(|| admission::review(black_box(body), &ctx).unwrap().body.len())
        });
    }
    g.finish();
}

criterion_group!(
    benches,
    engine_bodies,
    engine_pathological,
    engine_parameters
);
criterion_main!(benches);
