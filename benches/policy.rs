//! Policy mode's cost inside the API server, by proxy: the `cel` crate
//! evaluating what the API server evaluates for one pod CREATE, under its
//! rules (match conditions, variables only when read, the mutation, the
//! patch applied). The compiled policy of `examples/templates` against the
//! reference measured in the same run: one policy per template, as
//! `tandem policy` compiled them before (tests/fixtures/policies-per-template.yaml).
//! Pods that ask for nothing, for one template and for three.
//! Run with `cargo bench --bench policy`; compare the ratio, not the times.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Arc;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use serde_json::{Value, json};
use tandem::install::policy::{self, Reach};
use tandem::install::webhook::NamespaceScope;
use tandem::template::{TemplateSet, load_path};

#[allow(dead_code, unreachable_pub)]
#[path = "../tests/common/cel.rs"]
mod api_cel;

fn set_policy(env: &::cel::Env) -> Vec<api_cel::Mutating> {
    let dir = format!("{}/examples/templates", env!("CARGO_MANIFEST_DIR"));
    let set = TemplateSet::new(load_path(dir.as_ref()).unwrap()).unwrap();
    let reach = Reach {
        namespace: "tandem-system".into(),
        scope: NamespaceScope::OptIn,
        excluded_namespaces: Vec::new(),
        extra_labels: BTreeMap::new(),
    };
    let compiled = policy::compile(&set, &reach).unwrap();
    vec![api_cel::Mutating::new(env, compiled.policy.spec.as_ref().unwrap()).unwrap()]
}

fn per_template(env: &::cel::Env) -> Vec<api_cel::Mutating> {
    let path = format!(
        "{}/tests/fixtures/policies-per-template.yaml",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(path).unwrap();
    serde_saphyr::from_multiple::<Value>(&text)
        .unwrap()
        .into_iter()
        .filter(|d| d["kind"] == "MutatingAdmissionPolicy")
        .map(|d| api_cel::Mutating::new(env, &serde_json::from_value(d["spec"].clone()).unwrap()))
        .collect::<Result<_, _>>()
        .unwrap()
}

fn pod(ask: Option<&str>) -> Value {
    let mut pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": { "name": "p", "namespace": "shop", "labels": { "app": "shop" } },
        "spec": { "containers": [{ "name": "app", "image": "example.com/app:1",
                                   "env": [{ "name": "MODE", "value": "prod" }] }] },
    });
    if let Some(ask) = ask {
        pod["metadata"]["annotations"] = json!({ "tandem.dev/inject": ask });
    }
    pod
}

/// The policies in order on one pod, each on the object the one before it
/// left, with the variables each one reads (`needed`, found beforehand).
fn admit(
    env: &Arc<::cel::Env>,
    policies: &[api_cel::Mutating],
    needed: &[Vec<usize>],
    pod: &Value,
    ns: &Value,
) -> Value {
    let mut request = api_cel::Request::create(pod, ns);
    let mut object = request.object.clone();
    for (i, (p, needed)) in policies.iter().zip(needed).enumerate() {
        object = p.evaluate(env, &request, needed);
        if object != request.object && i + 1 < policies.len() {
            request = api_cel::Request::create(&object, ns);
        }
    }
    object
}

/// What each policy reads for `pod`, as the API server evaluates lazily,
/// and how many expressions it evaluates.
fn plan(
    env: &Arc<::cel::Env>,
    policies: &[api_cel::Mutating],
    pod: &Value,
    ns: &Value,
) -> (Vec<Vec<usize>>, usize) {
    let mut object = api_cel::stored(pod);
    let (mut needed, mut evaluated) = (Vec::new(), 0);
    for p in policies {
        let request = api_cel::Request::create(&object, ns);
        needed.push(p.needed(env, &request));
        evaluated += p.evaluated(env, &request);
        object = p.admit(env, &request).unwrap();
    }
    (needed, evaluated)
}

fn bench(c: &mut Criterion) {
    let env = api_cel::env();
    let labels = BTreeMap::from([("tandem.dev/injection".to_string(), "enabled".to_string())]);
    let ns = api_cel::stored_namespace("shop", &labels, &BTreeMap::new());
    let ways = [
        ("per-template", per_template(&env)),
        ("set", set_policy(&env)),
    ];
    let mut group = c.benchmark_group("policy-cel");
    for (case, ask) in [
        ("asks-nothing", None),
        ("one", Some("log-shipper")),
        ("three", Some("log-shipper,log-adapter,config-init")),
    ] {
        let pod = pod(ask);
        for (way, policies) in &ways {
            let (needed, evaluated) = plan(&env, policies, &pod, &ns);
            eprintln!("{way}/{case}: {evaluated} expressions evaluated");
            group.bench_with_input(BenchmarkId::new(*way, case), &pod, |b, pod| {
                b.iter(|| admit(&env, policies, &needed, black_box(pod), &ns))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
