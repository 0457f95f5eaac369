//! The real `tandem serve` in cluster mode against a fake API server on
//! loopback (plain HTTP, a kubeconfig pointing at it): what an operator
//! meets when the CRD is missing, and where skipped injections are reported.

mod common;
mod harness;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::fake_api::FakeApi;
use common::fixture_text;
use common::run::wait_until;
use harness::{Options, Server, admin_get};
use serde_json::{Value, json};

/// Namespaces (metadata only) as the API server lists them.
fn namespaces() -> String {
    json!({
        "kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1",
        "metadata": { "resourceVersion": "10" },
        "items": [{ "kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                    "metadata": { "name": "probe-inject", "resourceVersion": "9" } }],
    })
    .to_string()
}

fn no_templates() -> String {
    json!({
        "kind": "SidecarTemplateList", "apiVersion": "tandem.dev/v1alpha1",
        "metadata": { "resourceVersion": "11" }, "items": [],
    })
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_crd_is_explained_with_backoff_and_keeps_admission_serving() {
    let api = FakeApi::start(Arc::new(|method: &str, path: &str, _: &str| {
        match (method, path) {
            ("GET", "/api/v1/namespaces") => Some((200, namespaces())),
            // What a real API server answers for a resource it does not serve.
            ("GET", "/apis/tandem.dev/v1alpha1/sidecartemplates") => {
                Some((404, "404 page not found".to_string()))
            }
            _ => Some((404, "{}".to_string())),
        }
    }))
    .await;
    let kubeconfig = api.kubeconfig_arg();
    let server = Server::start(Options {
        args: &[&kubeconfig, "--kubernetes-version=v1.36.2"],
        ..Options::default()
    });
    let started = Instant::now();
    wait_until("/readyz to name the CRD", async || {
        matches!(admin_get(server.admin, "/readyz").await,
            Ok((503, body)) if body.contains("sidecartemplates.tandem.dev"))
    })
    .await;
    let (_, body) = admin_get(server.admin, "/readyz").await.unwrap();
    assert!(
        body.contains("tandem crd | kubectl apply -f -"),
        "/readyz says how to fix it: {body}"
    );

    // Admission keeps working on the file templates while the CRD is missing.
    let mut conn = server.client().connect().await.unwrap();
    let review = fixture_text("admission-v1.36/create.json").replace(
        "\"labels\": {",
        "\"annotations\": {\"tandem.dev/inject\": \"log-shipper\"}, \"labels\": {",
    );
    let reply = conn.review(&review).await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.json()["response"]["patchType"],
        "JSONPatch",
        "{}",
        reply.text()
    );

    // Retries back off (1 s, 2 s, 4 s, ...): far fewer than one a second.
    tokio::time::sleep(Duration::from_secs(8).saturating_sub(started.elapsed())).await;
    let lists = api
        .seen("GET", "/apis/tandem.dev/v1alpha1/sidecartemplates")
        .len();
    let elapsed = started.elapsed().as_secs();
    let log = server.log();
    let lines = log
        .matches("sidecartemplates.tandem.dev) is not installed")
        .count();
    assert!(
        (2..=5).contains(&lines) && lines <= lists,
        "{lines} log lines and {lists} list calls in {elapsed} s:\n{log}"
    );
    let metrics = server.metrics().await;
    assert!(
        metrics.contains(
            r#"tandem_watch_errors_total{resource="sidecartemplates",reason="not-found"}"#
        ),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skipped_injections_are_reported_on_the_deployment() {
    let api = FakeApi::start(Arc::new(|method: &str, path: &str, body: &str| {
        let rs = "/apis/apps/v1/namespaces/probe-inject/replicasets/";
        match (method, path) {
            ("GET", "/api/v1/namespaces") => Some((200, namespaces())),
            ("GET", "/apis/tandem.dev/v1alpha1/sidecartemplates") => Some((200, no_templates())),
            ("GET", p) if p == format!("{rs}probe-deploy-668ff9dbf5") => Some((
                200,
                json!({
                    "kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                    "metadata": { "name": "probe-deploy-668ff9dbf5", "namespace": "probe-inject",
                        "uid": "5d5ffc95-5cd9-49a3-9057-7ac76a518ec9",
                        "ownerReferences": [{ "apiVersion": "apps/v1", "kind": "Deployment",
                            "name": "probe-deploy", "uid": "d-1", "controller": true }] },
                })
                .to_string(),
            )),
            ("GET", p) if p.starts_with(rs) => Some((
                403,
                json!({ "kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 403,
                        "reason": "Forbidden", "message": "replicasets.apps is forbidden" })
                .to_string(),
            )),
            ("POST", "/apis/events.k8s.io/v1/namespaces/probe-inject/events") => {
                Some((201, body.to_string()))
            }
            ("PATCH", p)
                if p.starts_with("/apis/events.k8s.io/v1/namespaces/probe-inject/events/") =>
            {
                Some((200, body.to_string()))
            }
            _ => Some((404, "{}".to_string())),
        }
    }))
    .await;
    let kubeconfig = api.kubeconfig_arg();
    let server = Server::start(Options {
        args: &[&kubeconfig, "--kubernetes-version=v1.36.2"],
        ..Options::default()
    });
    server.ready().await;

    let mut review: Value =
        serde_json::from_str(&fixture_text("admission-v1.36/deployment.json")).unwrap();
    review["request"]["object"]["metadata"]["annotations"] =
        json!({ "tandem.dev/inject": "does-not-exist" });
    let mut conn = server.client().connect().await.unwrap();
    let reply = conn.review(&review.to_string()).await;
    assert_eq!(
        reply.json()["response"]["allowed"],
        true,
        "{}",
        reply.text()
    );

    let events = "/apis/events.k8s.io/v1/namespaces/probe-inject/events";
    wait_until("the Event", async || !api.seen("POST", events).is_empty()).await;
    let event: Value = serde_json::from_str(&api.seen("POST", events)[0].2).unwrap();
    assert_eq!(event["regarding"]["kind"], "Deployment", "{event}");
    assert_eq!(event["regarding"]["name"], "probe-deploy", "{event}");
    assert_eq!(event["reason"], "InjectionSkipped");
    assert!(
        event["note"].as_str().unwrap().contains("does-not-exist"),
        "{event}"
    );

    // A controller Tandem may not read cannot be shown to exist: no Event,
    // and the log says which permission is missing.
    review["request"]["uid"] = json!("second");
    review["request"]["object"]["metadata"]["ownerReferences"][0]["name"] = json!("other-rs");
    conn.review(&review.to_string()).await;
    wait_until("the lookup of other-rs", async || {
        !api.seen(
            "GET",
            "/apis/apps/v1/namespaces/probe-inject/replicasets/other-rs",
        )
        .is_empty()
    })
    .await;
    wait_until("the log line", async || {
        server.log().contains("cannot read the pod's controller")
    })
    .await;
    // The real controller, with the uid the review names: the Deployment
    // again (from the cache), so a second Event.
    review["request"]["uid"] = json!("again");
    review["request"]["object"]["metadata"]["ownerReferences"][0]["name"] =
        json!("probe-deploy-668ff9dbf5");
    conn.review(&review.to_string()).await;
    // A repeat on the same Deployment is patched into the first Event.
    wait_until("the repeat", async || !api.seen("PATCH", events).is_empty()).await;
    let patched = &api.seen("PATCH", events)[0].1;
    assert!(patched.contains("/events/probe-deploy."), "{patched}");
    assert_eq!(api.seen("POST", events).len(), 1);

    // Dry runs have no side effects: no lookup, no Event.
    let gets = api.seen("GET", "/apis/apps/v1/").len();
    review["request"]["uid"] = json!("third");
    review["request"]["dryRun"] = json!(true);
    review["request"]["object"]["metadata"]["ownerReferences"][0]["name"] = json!("dry-rs");
    conn.review(&review.to_string()).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(api.seen("POST", events).len(), 1);
    assert_eq!(api.seen("PATCH", events).len(), 1);
    assert_eq!(api.seen("GET", "/apis/apps/v1/").len(), gets);
}

/// Forged reviews, as any pod that reaches the webhook port could send:
/// Events only on a controller that exists with the uid the review names,
/// and a bounded number of API calls per namespace however many arrive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_forged_reviews_costs_a_bounded_number_of_api_calls() {
    let api = FakeApi::start(Arc::new(|method: &str, path: &str, body: &str| {
        match (method, path) {
            ("GET", "/api/v1/namespaces") => Some((200, namespaces())),
            ("GET", "/apis/tandem.dev/v1alpha1/sidecartemplates") => Some((200, no_templates())),
            ("GET", "/apis/apps/v1/namespaces/probe-inject/statefulsets/db") => Some((
                200,
                json!({
                    "kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                    "metadata": { "name": "db", "namespace": "probe-inject", "uid": "db-uid" },
                })
                .to_string(),
            )),
            ("POST", p) if p.ends_with("/events") => Some((201, body.to_string())),
            _ => Some((
                404,
                json!({ "kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 404,
                        "reason": "NotFound", "message": "not found" })
                .to_string(),
            )),
        }
    }))
    .await;
    let kubeconfig = api.kubeconfig_arg();
    let server = Server::start(Options {
        args: &[&kubeconfig, "--kubernetes-version=v1.36.2"],
        ..Options::default()
    });
    server.ready().await;
    let mut review: Value =
        serde_json::from_str(&fixture_text("admission-v1.36/deployment.json")).unwrap();
    review["request"]["object"]["metadata"]["annotations"] =
        json!({ "tandem.dev/inject": "does-not-exist" });
    let forge = |review: &mut Value, i: usize, owner: Value| {
        review["request"]["uid"] = json!(format!("forged-{i}"));
        review["request"]["object"]["metadata"]["ownerReferences"] = json!([owner]);
    };
    let mut conn = server.client().connect().await.unwrap();

    // A StatefulSet that exists, named with another uid: no Event.
    forge(
        &mut review,
        0,
        json!({ "apiVersion": "apps/v1", "kind": "StatefulSet", "name": "db", "uid": "forged", "controller": true }),
    );
    conn.review(&review.to_string()).await;
    // The same StatefulSet with its own uid: the Event goes on it.
    forge(
        &mut review,
        1,
        json!({ "apiVersion": "apps/v1", "kind": "StatefulSet", "name": "db", "uid": "db-uid", "controller": true }),
    );
    conn.review(&review.to_string()).await;
    let events = "/apis/events.k8s.io/v1/namespaces/probe-inject/events";
    wait_until("the StatefulSet's Event", async || {
        !api.seen("POST", events).is_empty()
    })
    .await;
    let event: Value = serde_json::from_str(&api.seen("POST", events)[0].2).unwrap();
    assert_eq!(event["regarding"]["kind"], "StatefulSet", "{event}");
    assert_eq!(event["regarding"]["uid"], "db-uid", "{event}");

    // The flood: 200 reviews naming ReplicaSets that do not exist.
    let flood = 200;
    for i in 0..flood {
        forge(
            &mut review,
            i + 2,
            json!({ "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": format!("made-up-{i}"),
                    "uid": format!("u{i}"), "controller": true }),
        );
        assert_eq!(conn.review(&review.to_string()).await.status, 200);
    }
    // Every review is answered; the Events queue works through what it may.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let lookups = api
        .seen("GET", "/apis/apps/v1/namespaces/probe-inject/replicasets/")
        .len();
    let posts = api.seen("POST", events).len();
    assert!(
        lookups <= 10,
        "{lookups} lookups for {flood} forged reviews: the namespace's budget is 10"
    );
    assert!(lookups > 0, "the budget was not spent on lookups at all");
    assert_eq!(posts, 1, "no Event on a controller that does not exist");
    // Another namespace is not starved by the flood in this one.
    let other = "/apis/events.k8s.io/v1/namespaces/other-team/events";
    review["request"]["namespace"] = json!("other-team");
    forge(
        &mut review,
        9999,
        json!({ "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "x", "uid": "x", "controller": true }),
    );
    conn.review(&review.to_string()).await;
    wait_until("the other namespace's lookup", async || {
        !api.seen("GET", "/apis/apps/v1/namespaces/other-team/replicasets/x")
            .is_empty()
    })
    .await;
    assert!(api.seen("POST", other).is_empty());
}

/// log-shipper as a SidecarTemplate object in Tandem's namespace, and the
/// hash Tandem gives it.
fn log_shipper_object() -> (Value, String) {
    let mut object = common::run::repo_yaml("examples/templates/log-shipper.yaml").remove(0);
    object["metadata"]["namespace"] = json!("tandem-system");
    object["metadata"]["resourceVersion"] = json!("3");
    let dynamic: kube::api::DynamicObject = serde_json::from_value(object.clone()).unwrap();
    let (set, _) = tandem::cluster::merge(&[], &[Arc::new(dynamic)], "tandem-system");
    let hash = set.lookup("shop", "log-shipper").unwrap().hash.clone();
    (object, hash)
}

/// The SidecarTemplate list holding `object`.
fn template_list(object: &Value) -> String {
    json!({ "kind": "SidecarTemplateList", "apiVersion": "tandem.dev/v1alpha1",
            "metadata": { "resourceVersion": "11" }, "items": [object] })
    .to_string()
}

/// `tandem serve` on `api`, the templates in force being the cluster's.
async fn serve_cluster_templates(api: &FakeApi) -> Server {
    let kubeconfig = api.kubeconfig_arg();
    let server = Server::start(Options {
        args: &[&kubeconfig, "--kubernetes-version=v1.36.2"],
        templates: None,
        ..Options::default()
    });
    server.ready().await;
    server
}

fn injected_pod(name: &str, hash: &str) -> Value {
    let status = json!({ "templates": [{ "name": "log-shipper", "hash": hash }] }).to_string();
    json!({ "kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
            "metadata": { "name": name, "namespace": "shop", "uid": format!("uid-{name}"),
                          "resourceVersion": "7",
                          "labels": { "tandem.dev/injected": "true" },
                          "annotations": { "tandem.dev/status": status } } })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_pods_are_counted_into_the_template_status_and_the_metric() {
    let (object, hash) = log_shipper_object();
    let pods = vec![
        injected_pod("web-1", &hash),
        injected_pod("web-2", &hash),
        injected_pod("api-1", "0123456789abcdef"),
    ];
    let api = FakeApi::start_with_query(Arc::new(move |method: &str, path: &str, query: &str, body: &str| {
        match (method, path) {
            ("GET", "/api/v1/namespaces") => Some((200, namespaces())),
            ("GET", "/apis/tandem.dev/v1alpha1/sidecartemplates") => Some((200, template_list(&object))),
            ("GET", "/api/v1/pods") => {
                // Only the injected pods are asked for, by label.
                assert!(query.contains("labelSelector=tandem.dev%2Finjected%3Dtrue"), "{query}");
                Some((
                    200,
                    json!({ "kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1",
                            "metadata": { "resourceVersion": "12" }, "items": pods })
                    .to_string(),
                ))
            }
            ("PATCH", p) if p.starts_with("/apis/tandem.dev/v1alpha1/namespaces/tandem-system/sidecartemplates/log-shipper/status") => {
                Some((200, json!({ "apiVersion": "tandem.dev/v1alpha1", "kind": "SidecarTemplate",
                    "metadata": { "name": "log-shipper", "namespace": "tandem-system" }, "spec": {}, "status": serde_json::from_str::<Value>(body).unwrap()["status"] }).to_string()))
            }
            _ => Some((404, "{}".to_string())),
        }
    }))
    .await;
    let server = serve_cluster_templates(&api).await;

    let status =
        "/apis/tandem.dev/v1alpha1/namespaces/tandem-system/sidecartemplates/log-shipper/status";
    wait_until("the counts in the status", async || {
        api.seen("PATCH", status)
            .iter()
            .any(|(_, _, body)| body.contains("injectedPods"))
    })
    .await;
    let counts: Vec<Value> = api
        .seen("PATCH", status)
        .iter()
        .map(|(_, _, body)| serde_json::from_str::<Value>(body).unwrap()["status"].clone())
        .filter(|s| s.get("injectedPods").is_some())
        .collect();
    assert_eq!(counts, [json!({ "injectedPods": 3, "upToDatePods": 2 })]);
    let metrics = admin_get(server.admin, "/metrics").await.unwrap().1;
    for line in [
        "tandem_injected_pods{template=\"log-shipper\",state=\"current\"} 2",
        "tandem_injected_pods{template=\"log-shipper\",state=\"outdated\"} 1",
    ] {
        assert!(metrics.contains(line), "{line} missing:\n{metrics}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_watch_tandem_may_not_run_leaves_counts_unknown_and_admission_serving() {
    let (object, _) = log_shipper_object();
    let api = FakeApi::start(Arc::new(move |method: &str, path: &str, _: &str| {
        match (method, path) {
            ("GET", "/api/v1/namespaces") => Some((200, namespaces())),
            ("GET", "/apis/tandem.dev/v1alpha1/sidecartemplates") => {
                Some((200, template_list(&object)))
            }
            ("GET", "/api/v1/pods") => Some((
                403,
                json!({ "kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 403,
                        "reason": "Forbidden", "message": "pods is forbidden" })
                .to_string(),
            )),
            _ => Some((404, "{}".to_string())),
        }
    }))
    .await;
    let server = serve_cluster_templates(&api).await;
    wait_until("the pod watch's error", async || {
        admin_get(server.admin, "/metrics")
            .await
            .is_ok_and(|(_, m)| {
                m.contains("tandem_watch_errors_total{resource=\"pods\",reason=\"forbidden\"}")
            })
    })
    .await;
    let metrics = admin_get(server.admin, "/metrics").await.unwrap().1;
    assert!(!metrics.contains("tandem_injected_pods{"), "{metrics}");
    assert!(
        server.log().contains("may not list pods"),
        "{}",
        server.log()
    );
    let review = fixture_text("admission-v1.36/create.json");
    let reply = server
        .client()
        .connect()
        .await
        .unwrap()
        .review(&review)
        .await;
    assert_eq!(
        reply.json()["response"]["allowed"],
        true,
        "{}",
        reply.text()
    );
    assert_eq!(admin_get(server.admin, "/readyz").await.unwrap().0, 200);
}
