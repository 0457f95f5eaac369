//! `tandem status` and `tandem rollout`, the real binary against a fake API
//! server holding a small shop: Deployments (through their ReplicaSets), a
//! StatefulSet, a CronJob (through its Job) and bare pods, each pod current,
//! outdated, missing its injection or carrying a status that is not Tandem's.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use common::fake_api::FakeApi;
use common::run::{Run, tandem};
use serde_json::{Value, json};
use tandem::template::{self, TemplateSet};

const TEMPLATES: &str = "examples/templates";

fn current_hash(name: &str) -> String {
    let set =
        TemplateSet::new(template::load_path(&common::run::repo_path(TEMPLATES)).unwrap()).unwrap();
    set.lookup("shop", name).unwrap().hash.clone()
}

fn status(templates: &[(&str, &str)]) -> String {
    let list: Vec<Value> = templates
        .iter()
        .map(|(n, h)| json!({ "name": n, "hash": h }))
        .collect();
    json!({ "templates": list }).to_string()
}

fn owner(kind: &str, name: &str) -> Value {
    json!([{ "apiVersion": "apps/v1", "kind": kind, "name": name, "uid": format!("uid-{name}"), "controller": true }])
}

/// How a Deployment answers a restart.
#[derive(Clone, Copy, PartialEq)]
enum Behaviour {
    /// Rolls out at once.
    Completes,
    /// Never gets past one updated replica.
    Sticks,
    Paused,
    /// Was already rolling out before Tandem came.
    Rolling,
}

struct Shop {
    pods: Vec<Value>,
    deployments: BTreeMap<String, (Behaviour, Value)>,
    forbidden: Vec<String>,
    templates: Vec<Value>,
}

fn deployment(name: &str, behaviour: Behaviour) -> Value {
    let updated = if behaviour == Behaviour::Rolling {
        1
    } else {
        2
    };
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": { "name": name, "namespace": "shop", "generation": 3, "resourceVersion": "1" },
        "spec": { "replicas": 2, "paused": behaviour == Behaviour::Paused, "template": { "metadata": {} } },
        "status": { "observedGeneration": 3, "replicas": 2, "updatedReplicas": updated, "availableReplicas": updated },
    })
}

fn pod(name: &str, owner_ref: Option<Value>, annotations: Value) -> Value {
    let mut meta = json!({ "name": name, "namespace": "shop", "annotations": annotations, "uid": format!("uid-{name}") });
    if let Some(o) = owner_ref {
        meta["ownerReferences"] = o;
    }
    if annotations.get("tandem.dev/status").is_some() {
        meta["labels"] = json!({ "tandem.dev/injected": "true" });
    }
    json!({ "kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": meta })
}

/// The shop: what each pod carries, and who owns it.
fn shop() -> Shop {
    let now = current_hash("log-shipper");
    let old = "0123456789abcdef";
    let carries = |hash: &str| json!({ "tandem.dev/inject": "log-shipper", "tandem.dev/status": status(&[("log-shipper", hash)]) });
    let rs = |name: &str| Some(owner("ReplicaSet", name));
    let pods = vec![
        pod("web-1", rs("web-5d9f"), carries(&now)),
        pod("web-2", rs("web-5d9f"), carries(old)),
        pod(
            "web-3",
            rs("web-5d9f"),
            json!({ "tandem.dev/inject": "log-shipper" }),
        ),
        pod("api-1", rs("api-77aa"), carries(old)),
        pod("api-2", rs("api-77aa"), carries(old)),
        pod("db-0", Some(owner("StatefulSet", "db")), carries(&now)),
        pod(
            "nightly-29-x",
            Some(owner("Job", "nightly-29")),
            carries(old),
        ),
        pod("debug", None, carries(old)),
        pod("odd", None, json!({ "tandem.dev/status": "not json" })),
        pod("plain", rs("web-5d9f"), json!({})),
    ];
    let deployments = [("api", Behaviour::Completes), ("web", Behaviour::Completes)]
        .into_iter()
        .map(|(n, b)| (n.to_string(), (b, deployment(n, b))))
        .collect();
    Shop {
        pods,
        deployments,
        forbidden: Vec::new(),
        templates: Vec::new(),
    }
}

fn list(kind: &str, items: Vec<Value>, cont: Option<String>) -> String {
    let mut meta = json!({ "resourceVersion": "100" });
    if let Some(c) = cont {
        meta["continue"] = json!(c);
    }
    json!({ "kind": kind, "apiVersion": "meta.k8s.io/v1", "metadata": meta, "items": items })
        .to_string()
}

fn query_param<'a>(query: &'a str, key: &str) -> Option<&'a str> {
    query
        .split('&')
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
}

/// Lists in pages of 3 whatever `limit` asks: the API server may return
/// fewer, and a client must follow `continue`.
fn paged(items: Vec<Value>, query: &str) -> String {
    let start: usize = query_param(query, "continue")
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let end = (start + 3).min(items.len());
    let cont = (end < items.len()).then(|| end.to_string());
    list(
        "PartialObjectMetadataList",
        items[start..end].to_vec(),
        cont,
    )
}

fn meta_item(meta: Value) -> Value {
    json!({ "kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": meta })
}

fn answer(shop: &Mutex<Shop>, method: &str, path: &str, query: &str, body: &str) -> (u16, String) {
    let mut shop = shop.lock().unwrap();
    let forbidden = || {
        (
            403,
            json!({ "kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Forbidden", "code": 403, "message": "forbidden" })
                .to_string(),
        )
    };
    let enabled = json!({ "name": "shop", "labels": { "tandem.dev/injection": "enabled" } });
    match (method, path) {
        ("GET", "/api/v1/namespaces") => (
            200,
            list(
                "PartialObjectMetadataList",
                vec![
                    meta_item(enabled),
                    meta_item(json!({ "name": "elsewhere" })),
                ],
                None,
            ),
        ),
        ("GET", "/api/v1/namespaces/shop") => (200, meta_item(enabled).to_string()),
        ("GET", "/api/v1/pods" | "/api/v1/namespaces/shop/pods") => {
            let selector = query_param(query, "labelSelector").map(|s| s.replace("%3D", "="));
            let items = shop
                .pods
                .iter()
                .filter(
                    |p| match selector.as_deref().and_then(|s| s.split_once('=')) {
                        Some((k, v)) => p["metadata"]["labels"][k.replace("%2F", "/")] == v,
                        None => true,
                    },
                )
                .cloned()
                .collect();
            (200, paged(items, query))
        }
        ("GET", "/apis/apps/v1/replicasets" | "/apis/apps/v1/namespaces/shop/replicasets") => {
            let rs = |name: &str, deployment: &str| {
                meta_item(
                    json!({ "name": name, "namespace": "shop", "ownerReferences": owner("Deployment", deployment) }),
                )
            };
            (
                200,
                paged(vec![rs("web-5d9f", "web"), rs("api-77aa", "api")], query),
            )
        }
        ("GET", "/apis/batch/v1/jobs" | "/apis/batch/v1/namespaces/shop/jobs") => {
            let job = meta_item(json!({ "name": "nightly-29", "namespace": "shop",
                "ownerReferences": [{ "apiVersion": "batch/v1", "kind": "CronJob", "name": "nightly", "uid": "u", "controller": true }] }));
            (200, paged(vec![job], query))
        }
        ("GET", "/apis/tandem.dev/v1alpha1/sidecartemplates") => (
            200,
            json!({ "kind": "SidecarTemplateList", "apiVersion": "tandem.dev/v1alpha1",
                    "metadata": { "resourceVersion": "5" }, "items": shop.templates })
            .to_string(),
        ),
        (_, p) if p.starts_with("/apis/apps/v1/namespaces/shop/deployments/") => {
            let name = p.rsplit('/').next().unwrap().to_string();
            if method == "PATCH" && shop.forbidden.contains(&name) {
                return forbidden();
            }
            let Some((behaviour, d)) = shop.deployments.get_mut(&name) else {
                return (404, json!({ "kind": "Status", "code": 404 }).to_string());
            };
            if method == "PATCH" {
                let patch: Value = serde_json::from_str(body).unwrap();
                d["spec"]["template"]["metadata"]["annotations"] =
                    patch["spec"]["template"]["metadata"]["annotations"].clone();
                let generation = d["metadata"]["generation"].as_i64().unwrap() + 1;
                d["metadata"]["generation"] = json!(generation);
                d["status"]["observedGeneration"] = json!(generation);
                let updated = if *behaviour == Behaviour::Sticks {
                    1
                } else {
                    2
                };
                d["status"]["updatedReplicas"] = json!(updated);
                d["status"]["availableReplicas"] = json!(updated);
            }
            (200, d.to_string())
        }
        _ => (
            404,
            json!({ "kind": "Status", "code": 404, "message": format!("no {path}") }).to_string(),
        ),
    }
}

async fn serve(shop: Shop) -> (FakeApi, Arc<Mutex<Shop>>) {
    let shop = Arc::new(Mutex::new(shop));
    let state = shop.clone();
    let api = FakeApi::start_with_query(Arc::new(move |m: &str, p: &str, q: &str, b: &str| {
        Some(answer(&state, m, p, q, b))
    }))
    .await;
    (api, shop)
}

/// Runs the binary off the runtime's threads, which serve the fake.
async fn run(api: &FakeApi, args: &[&str]) -> Run {
    let mut all: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    all.push(api.kubeconfig_arg());
    tokio::task::spawn_blocking(move || {
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        tandem(&refs)
    })
    .await
    .unwrap()
}

fn counts(report: &Value, template: &str, workload: &str) -> (u64, u64, u64) {
    let t = report["templates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == template)
        .unwrap_or_else(|| panic!("no {template} in {report:#}"));
    let at = |v: &Value| {
        (
            v["current"].as_u64().unwrap(),
            v["outdated"].as_u64().unwrap(),
            v["missing"].as_u64().unwrap(),
        )
    };
    if workload == "all" {
        return at(t);
    }
    let w = t["workloads"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| {
            format!(
                "{}/{}",
                w["kind"].as_str().unwrap(),
                w["name"].as_str().unwrap()
            ) == workload
        })
        .unwrap_or_else(|| panic!("no {workload} under {template} in {t:#}"));
    at(w)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_counts_pods_per_template_and_owning_workload() {
    let (api, _) = serve(shop()).await;
    let r = run(
        &api,
        &["status", "-n", "shop", "-c", TEMPLATES, "-o", "json"],
    )
    .await;
    assert!(r.ok, "{}", r.stderr);
    let report: Value = serde_json::from_str(&r.stdout).unwrap();
    // ReplicaSets lead to their Deployment, the Job to its CronJob.
    assert_eq!(counts(&report, "log-shipper", "Deployment/web"), (1, 1, 1));
    assert_eq!(counts(&report, "log-shipper", "Deployment/api"), (0, 2, 0));
    assert_eq!(counts(&report, "log-shipper", "StatefulSet/db"), (1, 0, 0));
    assert_eq!(counts(&report, "log-shipper", "CronJob/nightly"), (0, 1, 0));
    assert_eq!(counts(&report, "log-shipper", "Pod/debug"), (0, 1, 0));
    assert_eq!(counts(&report, "log-shipper", "all"), (2, 5, 1));
    assert_eq!(
        report["templates"][1]["hash"].as_str().map(str::len),
        Some(16),
        "{report:#}"
    );
    // A template nothing carries still has its line.
    assert_eq!(counts(&report, "db-ambassador", "all"), (0, 0, 0));
    assert_eq!(
        report["unknown"],
        json!([{ "namespace": "shop", "kind": "Pod", "name": "odd", "pods": 1 }])
    );
    // Paged lists, one each, and no request per pod.
    let pod_lists = api.seen("GET", "/api/v1/namespaces/shop/pods");
    assert_eq!(pod_lists.len(), 4, "10 pods in pages of 3: {pod_lists:?}");
    assert!(
        pod_lists
            .iter()
            .all(|(_, uri, _)| uri.contains("limit=500"))
    );
    assert!(api.seen("GET", "/api/v1/namespaces/shop/pods/").is_empty());

    let table = run(&api, &["status", "-n", "shop", "-c", TEMPLATES]).await;
    assert!(table.ok, "{}", table.stderr);
    let line = |needle: &str| {
        table
            .stdout
            .lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no line with {needle}:\n{}", table.stdout))
            .split_whitespace()
            .collect::<Vec<_>>()
    };
    assert_eq!(
        line("shop/Deployment/api"),
        ["log-shipper", "shop/Deployment/api", "0", "2", "0", "0"]
    );
    assert!(table.stdout.starts_with("TEMPLATE"), "{}", table.stdout);
    assert!(
        table.stdout.contains("shop/Pod/odd: 1 pod(s)"),
        "{}",
        table.stdout
    );

    let only = run(
        &api,
        &[
            "status",
            "-n",
            "shop",
            "-c",
            TEMPLATES,
            "-o",
            "json",
            "--template",
            "log-shipper",
        ],
    )
    .await;
    let only: Value = serde_json::from_str(&only.stdout).unwrap();
    assert_eq!(only["templates"].as_array().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_on_outdated_fails_only_when_a_pod_is_outdated() {
    let (api, shop) = serve(shop()).await;
    let r = run(
        &api,
        &["status", "-A", "-c", TEMPLATES, "--fail-on-outdated"],
    )
    .await;
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("5 pod(s) carry an outdated template"),
        "{}",
        r.stderr
    );
    assert!(
        !api.seen("GET", "/api/v1/pods").is_empty(),
        "-A lists every namespace"
    );

    let now = current_hash("log-shipper");
    shop.lock().unwrap().pods.retain(|p| {
        !p["metadata"]["annotations"]["tandem.dev/status"]
            .as_str()
            .is_some_and(|s| s.contains("\"hash\"") && !s.contains(&now))
    });
    let r = run(
        &api,
        &["status", "-A", "-c", TEMPLATES, "--fail-on-outdated"],
    )
    .await;
    assert!(r.ok, "{}{}", r.stdout, r.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_reads_the_templates_in_force_from_the_cluster() {
    let mut s = shop();
    let mut object = common::run::repo_yaml("examples/templates/log-shipper.yaml").remove(0);
    object["metadata"]["namespace"] = json!("tandem-system");
    object["metadata"]["resourceVersion"] = json!("3");
    s.templates = vec![object];
    let (api, _) = serve(s).await;
    let r = run(&api, &["status", "-n", "shop", "-o", "json"]).await;
    assert!(r.ok, "{}", r.stderr);
    let report: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(
        report["templates"].as_array().unwrap().len(),
        1,
        "{report:#}"
    );
    assert_eq!(counts(&report, "log-shipper", "all"), (2, 5, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollout_dry_run_lists_the_plan_and_changes_nothing() {
    let (api, _) = serve(shop()).await;
    let r = run(
        &api,
        &["rollout", "-n", "shop", "-c", TEMPLATES, "--dry-run"],
    )
    .await;
    assert!(r.ok, "{}", r.stderr);
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(
        lines[0],
        "2 workload(s) to restart, at most 1 at a time, each within 300s:"
    );
    assert_eq!(lines[1], "  shop/Deployment/api (log-shipper: 2 outdated)");
    assert_eq!(lines[2], "  shop/Deployment/web (log-shipper: 1 outdated)");
    assert_eq!(lines[3], "not restarted:");
    assert!(
        lines[4].starts_with("  shop/CronJob/nightly: a CronJob"),
        "{}",
        r.stdout
    );
    assert!(
        lines[5].starts_with("  shop/Pod/debug: a bare pod"),
        "{}",
        r.stdout
    );
    assert!(api.seen("PATCH", "/").is_empty());
    assert!(api.seen("DELETE", "/").is_empty());
}

fn patched(api: &FakeApi) -> Vec<String> {
    api.seen("PATCH", "/apis/apps/v1/namespaces/shop/deployments/")
        .into_iter()
        .map(|(_, uri, body)| {
            let body: Value = serde_json::from_str(&body).unwrap();
            assert!(
                body["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"]
                    .as_str()
                    .is_some_and(|t| t.ends_with('Z')),
                "{body}"
            );
            uri.split('?').next().unwrap().rsplit('/').next().unwrap().to_string()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollout_restarts_in_order_and_waits_for_each() {
    let (api, shop) = serve(shop()).await;
    let r = run(&api, &["rollout", "-n", "shop", "-c", TEMPLATES]).await;
    assert!(r.ok, "{}{}", r.stdout, r.stderr);
    assert_eq!(patched(&api), ["api", "web"]);
    assert!(
        r.stdout
            .contains("restarted shop/Deployment/api: rolled out"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .contains("restarted shop/Deployment/web: rolled out"),
        "{}",
        r.stdout
    );
    let shop = shop.lock().unwrap();
    assert!(shop.deployments["web"].1["spec"]["template"]["metadata"]["annotations"]
        ["kubectl.kubernetes.io/restartedAt"]
        .is_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollout_stops_at_the_first_that_does_not_finish() {
    let mut s = shop();
    s.deployments.insert(
        "api".into(),
        (Behaviour::Sticks, deployment("api", Behaviour::Sticks)),
    );
    let (api, _) = serve(s).await;
    let r = run(
        &api,
        &["rollout", "-n", "shop", "-c", TEMPLATES, "--timeout", "1s"],
    )
    .await;
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert_eq!(patched(&api), ["api"], "web is never restarted");
    assert!(
        r.stdout.contains(
            "FAILED shop/Deployment/api: did not finish within 1s (1 of 2 replicas updated)"
        ),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .contains("restarted before stopping: shop/Deployment/api"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("not restarted: shop/Deployment/web"),
        "{}",
        r.stdout
    );
    assert!(r.stderr.contains("rollout stopped"), "{}", r.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollout_never_stacks_restarts_and_names_missing_rights() {
    let mut s = shop();
    s.deployments.insert(
        "api".into(),
        (Behaviour::Paused, deployment("api", Behaviour::Paused)),
    );
    s.deployments.insert(
        "web".into(),
        (Behaviour::Rolling, deployment("web", Behaviour::Rolling)),
    );
    let (api, _) = serve(s).await;
    let r = run(&api, &["rollout", "-n", "shop", "-c", TEMPLATES]).await;
    assert!(r.ok, "{}{}", r.stdout, r.stderr);
    assert!(patched(&api).is_empty());
    assert!(
        r.stdout.contains("skipped shop/Deployment/api: paused"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .contains("skipped shop/Deployment/web: already rolling out (1 of 2 replicas updated)"),
        "{}",
        r.stdout
    );

    let mut s = shop();
    s.forbidden = vec!["api".into()];
    let (api, shop) = serve(s).await;
    let r = run(
        &api,
        &[
            "rollout",
            "-n",
            "shop",
            "-c",
            TEMPLATES,
            "--max-in-flight",
            "2",
        ],
    )
    .await;
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains("skipped shop/Deployment/api: forbidden to patch deployments.apps in namespace shop; needs get and patch on deployments.apps there"),
        "{}",
        r.stdout
    );
    let restarted = |name: &str| {
        shop.lock().unwrap().deployments[name].1["spec"]["template"]["metadata"]["annotations"]
            ["kubectl.kubernetes.io/restartedAt"]
            .is_string()
    };
    assert!(!restarted("api"));
    assert!(restarted("web"), "the others go on");
    assert!(
        r.stderr
            .contains("1 workload(s) could not be restarted for lack of rights"),
        "{}",
        r.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_rollout_reports_what_it_restarted() {
    let mut s = shop();
    s.deployments.insert(
        "api".into(),
        (Behaviour::Sticks, deployment("api", Behaviour::Sticks)),
    );
    let (api, _) = serve(s).await;
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_tandem"))
        .args(["rollout", "-n", "shop", "-c", TEMPLATES, "--timeout", "5m"])
        .arg(api.kubeconfig_arg())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    common::run::wait_until("the restart of api", async || !patched(&api).is_empty()).await;
    let killed = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("stopped: interrupted"), "{stdout}");
    assert!(
        stdout.contains("restarted before stopping: shop/Deployment/api"),
        "{stdout}"
    );
    assert!(
        stdout.contains("not restarted: shop/Deployment/web"),
        "{stdout}"
    );
    assert_eq!(patched(&api), ["api"]);
}
