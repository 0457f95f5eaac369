//! `tandem serve` end to end: the real binary, real TLS on loopback, the
//! AdmissionReview bodies a real kube-apiserver v1.36 sent.

mod common;
mod harness;

use std::time::Duration;

use common::fixture_text;
use common::run::wait_for;
use harness::{Options, Server, apply_response, write_secret_volume};
use serde_json::{Value, json};

const FIXTURES: &[&str] = &[
    "create",
    "dryrun",
    "generate-name",
    "native-sidecar",
    "deployment",
];

fn names(pod: &Value, list: &str) -> Vec<String> {
    pod["spec"][list]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|c| c["name"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// Checks a patched pod: the helper is there, the user's containers and
/// volumes are untouched, and every mount has its volume.
fn check_injected(original: &Value, pod: &Value) {
    let init = names(pod, "initContainers");
    assert_eq!(
        init.first().map(String::as_str),
        Some("probe-helper"),
        "native sidecar goes first: {init:?}"
    );
    assert_eq!(pod["spec"]["initContainers"][0]["restartPolicy"], "Always");
    let volumes = names(pod, "volumes");
    for (i, c) in original["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
    {
        let after = &pod["spec"]["containers"][i];
        assert_eq!(after["name"], c["name"]);
        assert_eq!(after["image"], c["image"]);
        let mounts = after["volumeMounts"].as_array().unwrap();
        assert!(mounts.iter().any(|m| m["mountPath"] == "/scratch"));
        for m in mounts {
            assert!(
                volumes.contains(&m["name"].as_str().unwrap().to_string()),
                "mount {m} has no volume"
            );
        }
        // Everything the user had is still there, in order.
        for (j, m) in c["volumeMounts"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
        {
            assert_eq!(&mounts[j], m);
        }
    }
    for v in names(original, "volumes") {
        assert!(volumes.contains(&v));
    }
    for (k, v) in original["metadata"]["labels"]
        .as_object()
        .into_iter()
        .flatten()
    {
        assert_eq!(&pod["metadata"]["labels"][k], v);
    }
    let status: Value = serde_json::from_str(
        pod["metadata"]["annotations"]["tandem.dev/status"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(status["templates"][0]["name"], "probe-helper");
}

#[tokio::test]
async fn every_fixture_is_answered_and_its_patch_applies_once() {
    let server = Server::start(Options::default());
    server.ready().await;
    let mut conn = server.client().connect().await.unwrap();
    let mut patches = Vec::new();
    for name in FIXTURES {
        let body = fixture_text(&format!("admission-v1.36/{name}.json"));
        let request: Value = serde_json::from_str(&body).unwrap();
        let reply = conn.review(&body).await;
        assert_eq!(reply.status, 200, "{name}: {}", reply.text());
        let response = reply.json();
        assert_eq!(response["apiVersion"], "admission.k8s.io/v1");
        assert_eq!(response["kind"], "AdmissionReview");
        assert_eq!(
            response["response"]["uid"], request["request"]["uid"],
            "{name}: uid echoed"
        );
        assert_eq!(response["response"]["allowed"], true);
        let decision = response["response"]["auditAnnotations"]["decision"]
            .as_str()
            .unwrap();
        assert!(
            decision.contains("injected=probe-helper(native)"),
            "{name}: {decision}"
        );
        for w in response["response"]["warnings"]
            .as_array()
            .into_iter()
            .flatten()
        {
            assert!(w.as_str().unwrap().chars().count() < 120, "{w}");
        }
        let pod = apply_response(&request, &response);
        check_injected(&request["request"]["object"], &pod);
        if *name == "native-sidecar" {
            // The user's own native sidecar keeps its place after ours.
            assert_eq!(
                names(&pod, "initContainers"),
                ["probe-helper", "native-sidecar"]
            );
        }

        // Reinvocation: the patched pod comes back and nothing changes.
        let mut again = request.clone();
        again["request"]["object"] = pod;
        let second = conn.review(&again.to_string()).await.json();
        assert_eq!(second["response"]["allowed"], true);
        assert!(
            second["response"]["patch"].is_null(),
            "{name}: second pass patched: {second}"
        );
        patches.push(response["response"]["patch"].clone());
    }
    // create.json and dryrun.json hold the same pod: same answer, no side effects.
    assert_eq!(
        patches[0], patches[1],
        "a dry-run request gets the same patch"
    );
}

#[tokio::test]
async fn many_keep_alive_connections_get_their_own_answers() {
    let server = Server::start(Options::default());
    server.ready().await;
    let body: Value = serde_json::from_str(&fixture_text("bench/medium.json")).unwrap();
    let client = server.client();
    let mut tasks = Vec::new();
    for c in 0..16 {
        let client = client.clone();
        let body = body.clone();
        tasks.push(tokio::spawn(async move {
            let mut conn = client.connect().await.unwrap();
            for r in 0..25 {
                let mut req = body.clone();
                let uid = format!("uid-{c}-{r}");
                req["request"]["uid"] = json!(uid);
                let reply = conn.review(&req.to_string()).await;
                assert_eq!(reply.status, 200);
                let resp = reply.json();
                assert_eq!(resp["response"]["uid"], uid);
                let pod = apply_response(&req, &resp);
                assert!(names(&pod, "initContainers").contains(&"tandem-log-shipper".to_string()));
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let metrics = server.metrics().await;
    assert!(
        metrics.contains("tandem_admission_requests_total{outcome=\"patched\"} 400"),
        "{metrics}"
    );
}

#[tokio::test]
async fn bad_input_gets_a_clear_answer_and_the_server_keeps_serving() {
    let server = Server::start(Options {
        args: &["--max-body-bytes=65536"],
        ..Options::default()
    });
    server.ready().await;
    let good = fixture_text("admission-v1.36/create.json");
    let request: Value = serde_json::from_str(&good).unwrap();
    let uid = request["request"]["uid"].as_str().unwrap().to_string();
    let with = |f: &dyn Fn(&mut Value)| {
        let mut v = request.clone();
        f(&mut v);
        v.to_string()
    };
    let cases: Vec<(&str, &str, String, u16, Option<&str>)> = vec![
        (
            "malformed JSON",
            "application/json",
            "{\"kind\": ".into(),
            400,
            Some("not valid JSON"),
        ),
        (
            "not JSON at all",
            "application/json",
            "\u{0}\u{ff}garbage".into(),
            400,
            Some("not valid JSON"),
        ),
        (
            "wrong content type",
            "text/plain",
            good.clone(),
            415,
            Some("application/json"),
        ),
        (
            "too large",
            "application/json",
            format!("{{\"pad\":\"{}\"}}", "x".repeat(70_000)),
            413,
            Some("--max-body-bytes"),
        ),
        (
            "no request",
            "application/json",
            json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}).to_string(),
            400,
            Some("request"),
        ),
        (
            "deeply nested",
            "application/json",
            "[".repeat(10_000),
            400,
            Some("not valid JSON"),
        ),
        (
            "missing object",
            "application/json",
            with(&|v| v["request"]["object"] = Value::Null),
            200,
            Some("request.object is missing"),
        ),
        (
            "containers not an array",
            "application/json",
            with(&|v| v["request"]["object"]["spec"]["containers"] = json!("app")),
            200,
            Some("spec.containers is not an array"),
        ),
        (
            "wrong apiVersion",
            "application/json",
            with(&|v| v["apiVersion"] = json!("admission.k8s.io/v2")),
            200,
            Some("expected apiVersion"),
        ),
        (
            "annotation not a string",
            "application/json",
            with(&|v| {
                v["request"]["object"]["metadata"]["annotations"] = json!({"tandem.dev/inject": 3})
            }),
            200,
            Some("is not a string"),
        ),
    ];
    let mut conn = server.client().connect().await.unwrap();
    for (what, ct, body, status, needle) in cases {
        let reply = match conn.post(ct, body).await {
            Ok(r) => r,
            Err(_) => {
                // The server may close a connection after an error; a new one must work.
                conn = server.client().connect().await.unwrap();
                continue;
            }
        };
        assert_eq!(reply.status, status, "{what}: {}", reply.text());
        if status == 200 {
            let r = reply.json();
            assert_eq!(r["response"]["uid"], uid, "{what}: uid echoed");
            assert_eq!(r["response"]["allowed"], false, "{what}");
            assert_eq!(r["response"]["status"]["code"], 400, "{what}");
        }
        if let Some(n) = needle {
            assert!(
                reply.text().contains(n),
                "{what}: {n:?} not in {}",
                reply.text()
            );
        }
        // A well-formed request right after still succeeds.
        let mut fresh = server.client().connect().await.unwrap();
        let ok = fresh.review(&good).await.json();
        assert_eq!(
            ok["response"]["allowed"], true,
            "{what}: server broken afterwards"
        );
        assert_eq!(ok["response"]["uid"], uid);
    }
    let metrics = server.metrics().await;
    assert!(
        metrics.contains("tandem_admission_requests_total{outcome=\"invalid\"}"),
        "{metrics}"
    );
}

#[tokio::test]
async fn what_is_not_a_pod_create_passes_untouched() {
    let server = Server::start(Options::default());
    server.ready().await;
    let request: Value =
        serde_json::from_str(&fixture_text("admission-v1.36/create.json")).unwrap();
    type Change = fn(&mut Value);
    let variants: Vec<(&str, Change)> = vec![
        ("DELETE", |v| v["request"]["operation"] = json!("DELETE")),
        ("UPDATE", |v| v["request"]["operation"] = json!("UPDATE")),
        ("CONNECT", |v| v["request"]["operation"] = json!("CONNECT")),
        ("sub-resource", |v| {
            v["request"]["subResource"] = json!("ephemeralcontainers")
        }),
        ("a Service", |v| {
            v["request"]["kind"] = json!({"group": "", "version": "v1", "kind": "Service"})
        }),
        (
            "a Deployment",
            |v| {
                v["request"]["kind"] =
                    json!({"group": "apps", "version": "v1", "kind": "Deployment"})
            },
        ),
    ];
    let mut conn = server.client().connect().await.unwrap();
    for (what, change) in variants {
        let mut v = request.clone();
        change(&mut v);
        let r = conn.review(&v.to_string()).await.json();
        assert_eq!(r["response"]["allowed"], true, "{what}");
        assert!(
            r["response"]["patch"].is_null(),
            "{what} must not be patched"
        );
        assert_eq!(r["response"]["uid"], request["request"]["uid"]);
    }
    let mut beta = request.clone();
    beta["apiVersion"] = json!("admission.k8s.io/v1beta1");
    let r = conn.review(&beta.to_string()).await.json();
    assert_eq!(
        r["apiVersion"], "admission.k8s.io/v1beta1",
        "answered in the request's version"
    );
    assert!(r["response"]["patch"].is_string());
}

#[tokio::test]
async fn certificate_rotation_serves_the_new_pair_without_failures() {
    let server = Server::start(Options::default());
    server.ready().await;
    let client = server.client();
    let body = fixture_text("admission-v1.36/create.json");
    let mut kept = client.connect().await.unwrap();
    assert_eq!(kept.peer_cert, server.leaf_der);

    // Requests keep flowing on new and old connections during the swap.
    let load = {
        let client = client.clone();
        let body = body.clone();
        tokio::spawn(async move {
            let mut failures = 0;
            for _ in 0..60 {
                match client.connect().await {
                    Ok(mut c) => {
                        if c.review(&body).await.status != 200 {
                            failures += 1;
                        }
                    }
                    Err(_) => failures += 1,
                }
                tokio::time::sleep(Duration::from_millis(40)).await;
            }
            failures
        })
    };
    let (cert, key, der) = server.pki.leaf();
    tokio::time::sleep(Duration::from_millis(300)).await;
    write_secret_volume(&server.tls_dir(), 2, &cert, &key);
    let served = wait_for(Duration::from_secs(10), async || {
        (client.connect().await.unwrap().peer_cert == der).then_some(())
    })
    .await;
    assert!(
        served.is_some(),
        "new certificate never served:\n{}",
        server.log()
    );
    assert_eq!(
        load.await.unwrap(),
        0,
        "no request may fail during the swap"
    );
    // The connection opened before the swap still works.
    assert_eq!(kept.review(&body).await.status, 200);

    // A broken pair (key of another certificate) is rejected; the good one stays.
    let (other_cert, _, _) = server.pki.leaf();
    write_secret_volume(&server.tls_dir(), 3, &other_cert, &key);
    let rejected = "tandem_certificate_reloads_total{result=\"failure\"} 1";
    let seen = wait_for(Duration::from_secs(10), async || {
        server.metrics().await.contains(rejected).then_some(())
    })
    .await;
    assert!(
        seen.is_some(),
        "the broken pair was never rejected:\n{}",
        server.log()
    );
    let c = client.connect().await.unwrap();
    assert_eq!(c.peer_cert, der, "the last good certificate is kept");
    let metrics = server.metrics().await;
    assert!(
        metrics.contains("tandem_certificate_reloads_total{result=\"failure\"} 1"),
        "{metrics}"
    );
    assert!(server.log().contains("certificate rejected"));
}

#[tokio::test]
async fn templates_reload_and_a_broken_file_keeps_the_last_good_ones() {
    let server = Server::start(Options::default());
    server.ready().await;
    let request: Value =
        serde_json::from_str(&fixture_text("admission-v1.36/create.json")).unwrap();
    let mut conn = server.client().connect().await.unwrap();
    let first = conn.review(&request.to_string()).await.json();
    assert!(
        apply_response(&request, &first)["spec"]["initContainers"][0]["name"] == "probe-helper"
    );

    // A new version: the automatic template is renamed.
    let renamed = harness::TEMPLATES.replace("name: probe-helper\n", "name: probe-helper-v2\n");
    assert_ne!(renamed, harness::TEMPLATES);
    std::fs::write(server.templates_dir().join("templates.yaml"), &renamed).unwrap();
    let took_effect = wait_for(Duration::from_secs(10), async || {
        let r = conn.review(&request.to_string()).await.json();
        let pod = apply_response(&request, &r);
        (pod["spec"]["initContainers"][0]["name"] == "probe-helper-v2").then_some(())
    })
    .await;
    assert!(took_effect.is_some(), "new templates never took effect");

    // Garbage: rejected, reported, and the last good templates stay in force.
    std::fs::write(
        server.templates_dir().join("templates.yaml"),
        "spec: [unclosed",
    )
    .unwrap();
    let rejected = "tandem_template_reloads_total{result=\"failure\"} 1";
    let seen = wait_for(Duration::from_secs(10), async || {
        server.metrics().await.contains(rejected).then_some(())
    })
    .await;
    assert!(
        seen.is_some(),
        "the broken file was never rejected:\n{}",
        server.log()
    );
    let r = conn.review(&request.to_string()).await.json();
    assert_eq!(
        apply_response(&request, &r)["spec"]["initContainers"][0]["name"],
        "probe-helper-v2"
    );
    let metrics = server.metrics().await;
    assert!(
        metrics.contains("tandem_template_reloads_total{result=\"failure\"} 1"),
        "{metrics}"
    );
    assert!(server.log().contains("templates rejected"));
}

#[tokio::test]
async fn readiness_waits_for_the_certificate_and_metrics_report() {
    let server = Server::start(Options {
        no_certificate: true,
        ..Options::default()
    });
    let (code, body) = wait_for(Duration::from_secs(10), async || {
        harness::admin_get(server.admin, "/readyz").await.ok()
    })
    .await
    .expect("admin port never opened");
    assert_eq!(code, 503);
    assert!(body.contains("certificate"), "{body}");
    assert_eq!(
        harness::admin_get(server.admin, "/livez").await.unwrap().0,
        200
    );
    let (cert, key, _) = server.pki.leaf();
    write_secret_volume(&server.tls_dir(), 1, &cert, &key);
    server.ready().await;

    let mut conn = server.client().connect().await.unwrap();
    conn.review(&fixture_text("admission-v1.36/create.json"))
        .await;
    let metrics = server.metrics().await;
    for needle in [
        "tandem_admission_requests_total{outcome=\"patched\"} 1",
        "tandem_injections_total{template=\"probe-helper\"} 1",
        "tandem_admission_duration_seconds_bucket{le=\"0.0001\"}",
        "tandem_template_reloads_total{result=\"success\"} 1",
        "tandem_certificate_expiry_timestamp_seconds",
        "tandem_native_sidecars 1",
    ] {
        assert!(metrics.contains(needle), "{needle} missing from\n{metrics}");
    }
}

#[tokio::test]
async fn sigterm_drains_an_in_flight_request_then_exits_zero() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut server = Server::start(Options::default());
    server.ready().await;
    let body = fixture_text("admission-v1.36/create.json");
    let mut tls = server.client().tls().await.unwrap();
    let head = format!(
        "POST /mutate?timeout=10s HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    tls.write_all(head.as_bytes()).await.unwrap();
    tls.write_all(&body.as_bytes()[..100]).await.unwrap();
    tls.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    server.sigterm();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // New connections are refused once shutdown began...
    assert!(
        server.client().connect().await.is_err(),
        "listener still accepting after SIGTERM"
    );
    // ...but the request already in flight completes.
    tls.write_all(&body.as_bytes()[100..]).await.unwrap();
    tls.flush().await.unwrap();
    let mut response = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut response)).await;
    let text = String::from_utf8_lossy(&response);
    assert!(
        text.starts_with("HTTP/1.1 200"),
        "in-flight request not answered: {text}"
    );
    assert!(text.contains("\"allowed\":true"));
    let status = tokio::task::spawn_blocking(move || server.child.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success(), "exit status {status:?}");
}

#[tokio::test]
async fn validate_rejects_a_broken_sidecar_template_with_the_check_message() {
    let server = Server::start(Options::default());
    server.ready().await;
    let template = json!({
        "apiVersion": "tandem.dev/v1alpha1",
        "kind": "SidecarTemplate",
        "metadata": {"name": "log-shipper", "namespace": "team-a"},
        "spec": {"pattern": "sidecar", "containers": [{"name": "log-shipper", "image": "fluent/fluent-bit:3.2.4"}]}
    });
    let review = |object: Value| {
        json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": "v-1",
                "kind": {"group": "tandem.dev", "version": "v1alpha1", "kind": "SidecarTemplate"},
                "namespace": "team-a",
                "operation": "CREATE",
                "object": object
            }
        })
        .to_string()
    };
    let mut conn = server.client().connect().await.unwrap();
    let ok = conn
        .post_to("/validate", "application/json", review(template.clone()))
        .await
        .unwrap();
    assert_eq!(ok.json()["response"]["allowed"], true, "{}", ok.text());
    let mut broken = template.clone();
    broken["spec"]["containers"][0]["imagePullPolicyy"] = json!("Always");
    let reply = conn
        .post_to("/validate", "application/json", review(broken))
        .await
        .unwrap();
    let r: Value = reply.json();
    assert_eq!(r["response"]["uid"], "v-1");
    assert_eq!(r["response"]["allowed"], false);
    assert_eq!(r["response"]["status"]["code"], 422);
    assert_eq!(r["response"]["status"]["reason"], "Invalid");
    let message = r["response"]["status"]["message"].as_str().unwrap();
    assert!(
        message.contains("spec.containers[0].imagePullPolicyy: unknown field"),
        "{message}"
    );
}

/// The webhook injects a pod's own parameter values, and answers a value
/// out of bounds with the template skipped and a warning naming the
/// annotation, the value and the rule.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webhook_injects_a_pods_parameters_and_refuses_bad_ones() {
    let templates = std::fs::read_to_string(common::run::repo_path(
        "examples/templates/log-shipper.yaml",
    ))
    .unwrap();
    let server = Server::start(Options {
        templates: Some(&templates),
        ..Options::default()
    });
    server.ready().await;
    let mut conn = server.client().connect().await.unwrap();
    let mut request: Value =
        serde_json::from_str(&fixture_text("admission-v1.36/create.json")).unwrap();
    let annotations = &mut request["request"]["object"]["metadata"]["annotations"];
    *annotations = serde_json::json!({
        "tandem.dev/inject": "log-shipper",
        "log-shipper.tandem.dev/memory-limit": "512Mi",
    });
    let response = conn.review(&request.to_string()).await.json();
    let pod = apply_response(&request, &response);
    let shipper = pod["spec"]["initContainers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "log-shipper")
        .cloned()
        .unwrap();
    assert_eq!(shipper["resources"]["limits"]["memory"], "512Mi");
    assert_eq!(pod["metadata"]["labels"]["tandem.dev/injected"], "true");
    common::assert_well_formed(&pod);
    common::assert_preserved(&request["request"]["object"], &pod);
    // Reinvocation: the pod with its own values comes back unchanged.
    let mut again = request.clone();
    again["request"]["object"] = pod;
    let second = conn.review(&again.to_string()).await.json();
    assert!(second["response"]["patch"].is_null(), "{second}");

    request["request"]["uid"] = serde_json::json!("bad-value");
    request["request"]["object"]["metadata"]["annotations"]["log-shipper.tandem.dev/memory-limit"] =
        serde_json::json!("64Gi");
    let response = conn.review(&request.to_string()).await.json();
    assert_eq!(response["response"]["allowed"], true);
    let warnings = response["response"]["warnings"].to_string();
    assert!(
        warnings.contains(r#"log-shipper skipped: log-shipper.tandem.dev/memory-limit=\"64Gi\" (pod annotation) must be at most 2Gi"#),
        "{warnings}"
    );
    let pod = apply_response(&request, &response);
    assert!(pod["spec"].get("initContainers").is_none(), "{pod:#}");
}
