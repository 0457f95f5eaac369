//! Integration tests of the decision engine: every patch is applied to its pod
//! and the result checked (well-formed, nothing lost, idempotent) through
//! `Ctx::inject`.

mod common;

use common::*;
use serde_json::{Value, json};
use tandem::engine::Placement;
use tandem::engine::Source;
use tandem::engine::{Decision, EngineError, Outcome, SkipReason, Verdict};
use tandem::facts::Quantity;
use tandem::facts::{
    DEFAULT_CONTAINER_ANNOTATION, INJECT_ANNOTATION, INJECTED_LABEL, OnMissing, STATUS_ANNOTATION,
};
use tandem::template::{self, LoadError, Scope, TemplateSet};

// ---------------------------------------------------------------- helpers

fn verdict<'a>(d: &'a Decision, name: &str) -> &'a Verdict {
    &d.templates
        .iter()
        .find(|t| t.name == name)
        .unwrap_or_else(|| panic!("no verdict for {name}: {:?}", d.templates))
        .verdict
}

fn injected(d: &Decision) -> Vec<&str> {
    d.injected().collect()
}

/// A pod with one app container `app` and the given annotations.
fn pod_with(annotations: Value, spec: Value) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": { "name": "web", "annotations": annotations },
        "spec": spec,
    })
}

fn simple_pod(inject: &str) -> Value {
    pod_with(
        json!({ INJECT_ANNOTATION: inject }),
        json!({ "containers": [ { "name": "app", "image": "example.com/app:1" } ] }),
    )
}

/// A native (auto) sidecar with a shared emptyDir, mounted and announced in the app.
fn shipper_spec() -> Value {
    json!({
        "pattern": "sidecar",
        "position": "afterUserInit",
        "containers": [{
            "name": "shipper",
            "image": "example.com/shipper:1.0",
            "ports": [{ "containerPort": 2020 }],
            "volumeMounts": [{ "name": "logs", "mountPath": "/logs", "readOnly": true }],
            "resources": { "requests": { "cpu": "50m", "memory": "64Mi" } },
        }],
        "volumes": [{ "name": "logs", "emptyDir": { "sizeLimit": "64Mi" } }],
        "app": {
            "volumeMounts": [{ "name": "logs", "mountPath": "/var/log/app" }],
            "env": [{ "name": "LOG_DIR", "value": "/var/log/app" }],
        },
    })
}

fn shipper() -> String {
    template_doc("shipper", shipper_spec())
}

/// A classic adapter with its own scratch volume.
fn adapter() -> String {
    template_doc(
        "adapter",
        json!({
            "pattern": "adapter",
            "lifecycle": "classic",
            "containers": [{
                "name": "adapter",
                "image": "example.com/adapter:1.0",
                "resources": { "requests": { "cpu": "10m", "memory": "16Mi" } },
            }],
        }),
    )
}

/// A native ambassador with an init step, a port, app env and envFrom.
fn proxy(on_conflict: &str) -> String {
    template_doc(
        "proxy",
        json!({
            "pattern": "ambassador",
            "lifecycle": "native",
            "onConflict": on_conflict,
            "initContainers": [{ "name": "proxy-setup", "image": "example.com/setup:1.0" }],
            "containers": [{
                "name": "proxy",
                "image": "example.com/proxy:1.0",
                "ports": [{ "containerPort": 5432 }],
            }],
            "app": {
                "env": [{ "name": "DATABASE_URL", "value": "localhost:5432" }],
                "envFrom": [{ "configMapRef": { "name": "proxy-config" } }],
            },
        }),
    )
}

fn warned(d: &Decision, needle: &str) -> bool {
    d.warnings.iter().any(|w| w.contains(needle))
}

// ---------------------------------------------------------------- fixtures

#[test]
fn every_fixture_gets_log_shipper_native_by_pod_annotation() {
    for name in review_fixtures("admission-v1.36") {
        let (mut pod, ns) = review_pod(&format!("admission-v1.36/{name}.json"));
        annotate(&mut pod, INJECT_ANNOTATION, "log-shipper");
        let ctx = Ctx::examples().in_namespace(&ns);
        let r = ctx.inject(&pod);
        let d = &r.decision;
        assert_eq!(d.outcome, Outcome::Patched, "{name}: {d:?}");
        assert_eq!(
            verdict(d, "log-shipper"),
            &Verdict::Injected {
                placement: Placement::Native
            },
            "{name}"
        );
        let init = names(&r.pod, "/spec/initContainers");
        assert_eq!(
            init.last().map(String::as_str),
            Some("log-shipper"),
            "{name}"
        );
        let shipper = named(&r.pod, "/spec/initContainers", "log-shipper").unwrap();
        assert_eq!(shipper["restartPolicy"], "Always", "{name}");
        assert!(
            named(&r.pod, "/spec/containers", "log-shipper").is_none(),
            "{name}: native sidecar also in containers"
        );
        let app = named(&r.pod, "/spec/containers", "app").unwrap();
        assert!(
            named(app, "/volumeMounts", "app-logs").is_some(),
            "{name}: app does not mount app-logs"
        );
        let status = status_of(&r.pod).expect("status written");
        assert_eq!(status.templates.len(), 1);
        assert_eq!(status.templates[0].name, "log-shipper");
        assert_eq!(
            status.templates[0].hash,
            ctx.templates.lookup(&ns, "log-shipper").unwrap().hash
        );
        assert_eq!(
            annotation(&r.pod, DEFAULT_CONTAINER_ANNOTATION),
            Some("app")
        );
        assert_eq!(annotation(&r.pod, SAFE_TO_EVICT), Some("app-logs"));
    }
}

#[test]
fn every_fixture_gets_log_shipper_classic_by_namespace_default() {
    for name in review_fixtures("admission-v1.36") {
        let (pod, ns) = review_pod(&format!("admission-v1.36/{name}.json"));
        assert!(
            pod.pointer("/metadata/annotations").is_none(),
            "{name}: fixture assumed without annotations"
        );
        let ctx = Ctx::examples()
            .in_namespace(&ns)
            .ns_annotation(INJECT_ANNOTATION, "log-shipper")
            .classic();
        let r = ctx.inject(&pod);
        let d = &r.decision;
        assert_eq!(
            verdict(d, "log-shipper"),
            &Verdict::Injected {
                placement: Placement::Classic
            },
            "{name}"
        );
        assert_eq!(d.templates[0].source, Source::NamespaceAnnotation);
        let containers = names(&r.pod, "/spec/containers");
        assert_eq!(containers.last().map(String::as_str), Some("log-shipper"));
        let c = named(&r.pod, "/spec/containers", "log-shipper").unwrap();
        assert!(
            c.get("restartPolicy").is_none(),
            "{name}: classic with restartPolicy"
        );
        // The fixture pods have no annotations: one op creates the object.
        let op = op_at(&d.patch, "/metadata/annotations").expect("annotations created");
        assert!(op["value"].get(STATUS_ANNOTATION).is_some());
        // Status is written for selected templates even when the pod did not ask.
        assert!(status_of(&r.pod).is_some(), "{name}");
        // native-sidecar.json: its user sidecar stays, first and unchanged.
        if name == "native-sidecar" {
            assert_eq!(names(&r.pod, "/spec/initContainers"), ["native-sidecar"]);
        }
    }
}

#[test]
fn every_fixture_by_pod_or_namespace_request_on_native_or_classic_clusters() {
    for name in review_fixtures("admission-v1.36") {
        for by_pod in [true, false] {
            for native in [true, false] {
                let (mut pod, ns) = review_pod(&format!("admission-v1.36/{name}.json"));
                let mut ctx = Ctx::examples().in_namespace(&ns);
                if by_pod {
                    annotate(&mut pod, INJECT_ANNOTATION, "log-shipper,config-init");
                } else {
                    ctx = ctx.ns_annotation(INJECT_ANNOTATION, "log-shipper,config-init");
                }
                if !native {
                    ctx = ctx.classic();
                }
                let case = format!("{name} by_pod={by_pod} native={native}");
                let r = ctx.inject(&pod);
                let d = &r.decision;
                assert_eq!(injected(d), ["log-shipper", "config-init"], "{case}");
                let source = if by_pod {
                    Source::PodAnnotation
                } else {
                    Source::NamespaceAnnotation
                };
                assert!(d.templates.iter().all(|t| t.source == source), "{case}");
                let init = names(&r.pod, "/spec/initContainers");
                let containers = names(&r.pod, "/spec/containers");
                assert_eq!(init[0], "config-fetcher", "{case}: {init:?}");
                if native {
                    assert_eq!(init.last().unwrap(), "log-shipper", "{case}");
                    assert_eq!(containers, ["app"], "{case}");
                } else {
                    assert!(!init.contains(&"log-shipper".to_string()), "{case}");
                    assert_eq!(containers, ["app", "log-shipper"], "{case}");
                }
                let app = &r.pod["spec"]["containers"][0];
                let mounts = names(app, "/volumeMounts");
                assert!(
                    mounts.contains(&"app-logs".to_string())
                        && mounts.contains(&"app-config".to_string()),
                    "{case}: {mounts:?}"
                );
                assert_eq!(
                    names(&r.pod, "/spec/volumes").len(),
                    names(&pod, "/spec/volumes").len() + 2
                );
            }
        }
    }
}

#[test]
fn every_fixture_takes_all_example_templates_together() {
    for name in review_fixtures("admission-v1.36") {
        let (mut pod, ns) = review_pod(&format!("admission-v1.36/{name}.json"));
        annotate(
            &mut pod,
            INJECT_ANNOTATION,
            "log-shipper,db-ambassador,config-init,log-adapter",
        );
        pod["metadata"]["labels"]["tandem.dev/metrics"] = json!("true");
        let r = Ctx::examples().in_namespace(&ns).inject(&pod);
        let d = &r.decision;
        let mut got = injected(d);
        got.sort();
        assert_eq!(
            got,
            [
                "config-init",
                "db-ambassador",
                "log-adapter",
                "log-shipper",
                "metrics-exporter"
            ],
            "{name}: {:?}",
            d.warnings
        );
        let app = named(&r.pod, "/spec/containers", "app").unwrap();
        assert_eq!(
            app["env"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|e| e["name"] == "DATABASE_URL")
                .count(),
            1
        );
        let safe: Vec<&str> = annotation(&r.pod, SAFE_TO_EVICT)
            .unwrap()
            .split(',')
            .collect();
        for v in ["app-logs", "app-config", "raw-logs"] {
            assert!(safe.contains(&v), "{name}: {safe:?} lacks {v}");
        }
    }
}

#[test]
fn every_fixture_classic_cluster_skips_the_native_only_ambassador() {
    for name in review_fixtures("admission-v1.36") {
        let (mut pod, ns) = review_pod(&format!("admission-v1.36/{name}.json"));
        annotate(&mut pod, INJECT_ANNOTATION, "db-ambassador,log-shipper");
        let r = Ctx::examples().in_namespace(&ns).classic().inject(&pod);
        let d = &r.decision;
        assert_eq!(
            verdict(d, "db-ambassador"),
            &Verdict::Skipped {
                reason: SkipReason::NativeUnsupported
            }
        );
        assert!(warned(d, "db-ambassador needs native sidecars"));
        assert_eq!(
            verdict(d, "log-shipper"),
            &Verdict::Injected {
                placement: Placement::Classic
            }
        );
        assert!(named(&r.pod, "/spec/initContainers", "db-ambassador").is_none());
    }
}

/// The benchmark template: `log-shipper`, native, with a shared emptyDir
/// mounted into every app container (the bench pods already run an app
/// container called `log-shipper`, so the sidecar needs another name).
fn bench_log_shipper() -> String {
    template_doc(
        "log-shipper",
        json!({
            "pattern": "sidecar",
            "lifecycle": "native",
            "containers": [{
                "name": "tandem-log-shipper",
                "image": "example.com/shipper:1.0",
                "volumeMounts": [{ "name": "tandem-logs", "mountPath": "/logs" }],
                "resources": { "requests": { "cpu": "50m", "memory": "64Mi" } },
            }],
            "volumes": [{ "name": "tandem-logs", "emptyDir": {} }],
            "app": { "volumeMounts": [{ "name": "tandem-logs", "mountPath": "/var/log/tandem" }] },
        }),
    )
}

#[test]
fn bench_pods_get_the_shared_volume_in_every_app_container() {
    for name in review_fixtures("bench") {
        let (pod, ns) = review_pod(&format!("bench/{name}.json"));
        let r = Ctx::new(template_set(&[bench_log_shipper()]))
            .in_namespace(&ns)
            .inject(&pod);
        let d = &r.decision;
        assert_eq!(injected(d), ["log-shipper"], "{name}: {:?}", d.warnings);
        let containers = r.pod["spec"]["containers"].as_array().unwrap();
        let before = pod["spec"]["containers"].as_array().unwrap();
        assert_eq!(
            containers.len(),
            before.len(),
            "{name}: native adds no container"
        );
        for c in containers {
            assert!(
                named(c, "/volumeMounts", "tandem-logs").is_some(),
                "{name}: {} lacks the tandem-logs mount",
                c["name"]
            );
        }
        let sidecar = named(&r.pod, "/spec/initContainers", "tandem-log-shipper").unwrap();
        assert_eq!(sidecar["restartPolicy"], "Always");
        assert_eq!(
            r.pod["spec"]["initContainers"].as_array().unwrap().len(),
            names(&pod, "/spec/initContainers").len() + 1
        );
    }
}

#[test]
fn bench_pods_with_an_app_container_named_log_shipper_skip_the_example() {
    for name in review_fixtures("bench") {
        let (pod, ns) = review_pod(&format!("bench/{name}.json"));
        let clash = names(&pod, "/spec/containers").contains(&"log-shipper".to_string());
        let d = Ctx::examples().in_namespace(&ns).inject(&pod).decision;
        if clash {
            assert_eq!(
                verdict(&d, "log-shipper"),
                &Verdict::Skipped {
                    reason: SkipReason::Conflict
                },
                "{name}"
            );
            assert!(warned(
                &d,
                "container name \"log-shipper\" is already used by container \"log-shipper\""
            ));
        } else {
            assert_eq!(injected(&d), ["log-shipper"], "{name}");
        }
    }
}

// ------------------------------------------------------ native placement

#[test]
fn native_before_user_init_goes_first_before_the_users_native_sidecar() {
    let (mut pod, ns) = review_pod("admission-v1.36/native-sidecar.json");
    annotate(&mut pod, INJECT_ANNOTATION, "db-ambassador");
    let r = Ctx::examples().in_namespace(&ns).inject(&pod);
    assert_eq!(
        names(&r.pod, "/spec/initContainers"),
        ["db-ambassador", "native-sidecar"]
    );
    let p = paths(&r.decision.patch);
    assert!(p.contains(&"/spec/initContainers/0".to_string()), "{p:?}");
    assert_eq!(
        r.pod["spec"]["initContainers"][0]["restartPolicy"],
        "Always"
    );
}

#[test]
fn native_after_user_init_goes_last() {
    let (mut pod, ns) = review_pod("admission-v1.36/native-sidecar.json");
    annotate(&mut pod, INJECT_ANNOTATION, "log-shipper");
    let r = Ctx::examples().in_namespace(&ns).inject(&pod);
    assert_eq!(
        names(&r.pod, "/spec/initContainers"),
        ["native-sidecar", "log-shipper"]
    );
    assert!(paths(&r.decision.patch).contains(&"/spec/initContainers/-".to_string()));
}

#[test]
fn several_native_sidecars_keep_their_order_around_user_init_containers() {
    let (mut pod, ns) = review_pod("admission-v1.36/native-sidecar.json");
    annotate(&mut pod, INJECT_ANNOTATION, "log-shipper,db-ambassador");
    pod["metadata"]["labels"]["tandem.dev/metrics"] = json!("true");
    let r = Ctx::examples().in_namespace(&ns).inject(&pod);
    assert_eq!(
        names(&r.pod, "/spec/initContainers"),
        [
            "db-ambassador",
            "metrics-exporter",
            "native-sidecar",
            "log-shipper"
        ]
    );
}

#[test]
fn restart_policy_always_only_on_injected_native_sidecars() {
    let ctx = Ctx::new(template_set(&[proxy("skip")]));
    let pod = pod_with(
        json!({ INJECT_ANNOTATION: "proxy" }),
        json!({
            "initContainers": [{ "name": "migrate", "image": "example.com/migrate:1" }],
            "containers": [{ "name": "app", "image": "example.com/app:1" }],
        }),
    );
    let r = ctx.inject(&pod);
    assert_eq!(
        names(&r.pod, "/spec/initContainers"),
        ["proxy-setup", "proxy", "migrate"]
    );
    let init = r.pod["spec"]["initContainers"].as_array().unwrap();
    assert!(
        init[0].get("restartPolicy").is_none(),
        "template init container"
    );
    assert_eq!(init[1]["restartPolicy"], "Always");
    assert!(
        init[2].get("restartPolicy").is_none(),
        "user init container"
    );
    assert!(
        r.pod["spec"]["containers"][0]
            .get("restartPolicy")
            .is_none()
    );
}

// ------------------------------------------------------- missing parents

#[test]
fn bare_pod_gets_whole_arrays_and_objects() {
    let ctx = Ctx::new(template_set(&[shipper(), proxy("skip")]))
        .ns_annotation(INJECT_ANNOTATION, "proxy,shipper");
    let pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": { "name": "bare" },
        "spec": { "containers": [{ "name": "app", "image": "example.com/app:1" }] },
    });
    let r = ctx.inject(&pod);
    let d = &r.decision;
    assert_eq!(injected(d), ["proxy", "shipper"]);
    let p = paths(&d.patch);
    for whole in [
        "/spec/initContainers",
        "/spec/volumes",
        "/spec/containers/0/volumeMounts",
        "/spec/containers/0/env",
        "/spec/containers/0/envFrom",
        "/metadata/annotations",
    ] {
        let op = op_at(&d.patch, whole).unwrap_or_else(|| panic!("no op at {whole}: {p:?}"));
        assert_eq!(op["op"], "add");
        assert!(op["value"].is_array() || op["value"].is_object(), "{whole}");
        assert_eq!(
            p.iter()
                .filter(|x| *x == whole || x.starts_with(&format!("{whole}/")))
                .count(),
            1,
            "{whole} is created once, not item by item: {p:?}"
        );
    }
    assert_eq!(
        names(&r.pod, "/spec/initContainers"),
        ["proxy-setup", "proxy", "shipper"]
    );
    let annotations = r.pod["metadata"]["annotations"].as_object().unwrap();
    assert!(annotations.contains_key(STATUS_ANNOTATION));
    assert_eq!(annotations[DEFAULT_CONTAINER_ANNOTATION], "app");
    assert_eq!(annotations[SAFE_TO_EVICT], "logs");
}

#[test]
fn pod_without_metadata_gets_it() {
    let ctx = Ctx::new(template_set(&[shipper()])).ns_annotation(INJECT_ANNOTATION, "shipper");
    let pod = json!({ "spec": { "containers": [{ "name": "app" }] } });
    let r = ctx.inject(&pod);
    let op = op_at(&r.decision.patch, "/metadata").expect("metadata created");
    assert!(op["value"]["annotations"][STATUS_ANNOTATION].is_string());
    assert_eq!(op["value"]["labels"], json!({ INJECTED_LABEL: "true" }));
    assert_eq!(r.decision.pod, "(unnamed pod)");
}

#[test]
fn injected_pods_carry_the_label_and_only_they() {
    let ctx = Ctx::new(template_set(&[shipper()]));
    let mut pod = simple_pod("shipper");
    pod["metadata"]["labels"] = json!({ "app": "web" });
    let r = ctx.inject(&pod);
    assert_eq!(
        r.pod["metadata"]["labels"],
        json!({ "app": "web", INJECTED_LABEL: "true" })
    );
    assert!(
        paths(&r.decision.patch).contains(&"/metadata/labels/tandem.dev~1injected".to_string())
    );
    // Reinvoked: the label is there, nothing to do.
    assert!(ctx.decide(&r.pod).unwrap().patch.is_empty());

    // Injected by a Tandem before the label: it gets the label and nothing else.
    let mut older = r.pod.clone();
    older["metadata"]["labels"] = json!({ "app": "web" });
    let d = ctx.decide(&older).unwrap();
    assert_eq!(paths(&d.patch), ["/metadata/labels/tandem.dev~1injected"]);
    assert_eq!(injected(&d), Vec::<&str>::new());

    // Someone else's value is left (patches only add), and said.
    older["metadata"]["labels"] = json!({ "app": "web", INJECTED_LABEL: "no" });
    let d = ctx.decide(&older).unwrap();
    assert!(d.patch.is_empty());
    assert!(
        warned(&d, "label tandem.dev/injected=\"no\" is left as it is"),
        "{:?}",
        d.warnings
    );

    // Asked, nothing injected: a status, no label.
    let r = ctx.inject(&simple_pod("no-such-template"));
    assert!(r.pod["metadata"]["annotations"][STATUS_ANNOTATION].is_string());
    assert!(
        r.pod["metadata"].get("labels").is_none(),
        "{}",
        r.pod["metadata"]
    );
}

#[test]
fn null_parents_are_replaced() {
    let ctx = Ctx::new(template_set(&[shipper(), proxy("skip")]))
        .ns_annotation(INJECT_ANNOTATION, "shipper,proxy");
    let pod = json!({
        "metadata": { "name": "nulls", "annotations": null },
        "spec": {
            "initContainers": null,
            "volumes": null,
            "containers": [{ "name": "app", "env": null, "volumeMounts": null, "envFrom": null }],
        },
    });
    let r = ctx.inject(&pod);
    assert_eq!(injected(&r.decision), ["shipper", "proxy"]);
    assert_eq!(names(&r.pod, "/spec/volumes"), ["logs"]);
    assert_eq!(
        names(&r.pod, "/spec/containers/0/env"),
        ["LOG_DIR", "DATABASE_URL"]
    );
}

#[test]
fn annotation_keys_with_slash_are_escaped() {
    let ctx = Ctx::new(template_set(&[shipper()]));
    let pod = simple_pod("shipper");
    let r = ctx.inject(&pod);
    let p = paths(&r.decision.patch);
    for key in [
        "/metadata/annotations/tandem.dev~1status",
        "/metadata/annotations/kubectl.kubernetes.io~1default-container",
        "/metadata/annotations/cluster-autoscaler.kubernetes.io~1safe-to-evict-local-volumes",
    ] {
        assert!(p.contains(&key.to_string()), "{key} not in {p:?}");
    }
    // Existing arrays get items appended, not replaced.
    assert!(p.contains(&"/spec/containers/0/env".to_string()));
}

// ------------------------------------------------------------------- jobs

fn job_pod(restart: &str, inject: &str) -> Value {
    pod_with(
        json!({ INJECT_ANNOTATION: inject }),
        json!({
            "restartPolicy": restart,
            "containers": [{ "name": "report", "image": "example.com/report:1" }],
        }),
    )
}

#[test]
fn job_pod_gets_classic_template_as_native_with_a_warning() {
    let ctx = Ctx::new(template_set(&[adapter()]));
    for restart in ["Never", "OnFailure"] {
        let r = ctx.inject(&job_pod(restart, "adapter"));
        let d = &r.decision;
        assert_eq!(
            verdict(d, "adapter"),
            &Verdict::Injected {
                placement: Placement::Native
            },
            "{restart}"
        );
        assert!(
            warned(d, "injected as native"),
            "{restart}: {:?}",
            d.warnings
        );
        assert!(warned(d, restart), "{restart}: {:?}", d.warnings);
        assert_eq!(names(&r.pod, "/spec/containers"), ["report"]);
        assert_eq!(
            r.pod["spec"]["initContainers"][0]["restartPolicy"],
            "Always"
        );
    }
}

#[test]
fn job_pod_without_native_sidecars_is_skipped_with_a_warning() {
    let ctx = Ctx::new(template_set(&[adapter(), shipper()])).classic();
    for restart in ["Never", "OnFailure"] {
        let r = ctx.inject(&job_pod(restart, "adapter,shipper"));
        let d = &r.decision;
        for t in ["adapter", "shipper"] {
            assert_eq!(
                verdict(d, t),
                &Verdict::Skipped {
                    reason: SkipReason::JobNeedsNative
                },
                "{restart} {t}"
            );
            assert!(warned(d, &format!("{t} skipped")), "{:?}", d.warnings);
        }
        assert!(!matches!(d.outcome, Outcome::Denied { .. }));
        // Only the status annotation (the pod asked, Tandem saw it).
        assert!(paths(&d.patch).iter().all(|p| p.starts_with("/metadata")));
        assert_eq!(names(&r.pod, "/spec/containers"), ["report"]);
        assert!(r.pod["spec"].get("initContainers").is_none());
        assert!(status_of(&r.pod).unwrap().templates.is_empty());
    }
}

#[test]
fn job_pod_gets_init_only_template_on_any_cluster() {
    let setup = template_doc(
        "setup",
        json!({
            "pattern": "init",
            "initContainers": [{ "name": "setup", "image": "example.com/setup:1" }],
        }),
    );
    let r = Ctx::new(template_set(&[setup]))
        .classic()
        .inject(&job_pod("Never", "setup"));
    assert_eq!(
        verdict(&r.decision, "setup"),
        &Verdict::Injected {
            placement: Placement::InitOnly
        }
    );
    assert!(
        r.pod["spec"]["initContainers"][0]
            .get("restartPolicy")
            .is_none()
    );
}

// -------------------------------------------------------------- conflicts

/// Injects `tpl` (requested by the pod) into `spec` and expects a skip whose
/// warning contains `needles`.
fn expect_conflict(tpl: String, name: &str, spec: Value, needles: &[&str]) -> Decision {
    let ctx = Ctx::new(template_set(&[tpl]));
    let pod = pod_with(json!({ INJECT_ANNOTATION: name }), spec);
    let r = ctx.inject(&pod);
    let d = r.decision;
    assert_eq!(
        verdict(&d, name),
        &Verdict::Skipped {
            reason: SkipReason::Conflict
        },
        "{:?}",
        d.templates
    );
    let w = d.warnings.join("\n");
    for n in needles {
        assert!(w.contains(n), "warning lacks {n:?}: {w}");
    }
    assert!(!matches!(d.outcome, Outcome::Denied { .. }));
    // Nothing but the status annotation.
    assert!(
        paths(&d.patch).iter().all(|p| p.starts_with("/metadata")),
        "{:?}",
        paths(&d.patch)
    );
    d
}

#[test]
fn conflict_container_name_with_user_init_container() {
    let spec = json!({
        "initContainers": [{ "name": "shipper", "image": "x" }],
        "containers": [{ "name": "app" }],
    });
    let d = expect_conflict(
        shipper(),
        "shipper",
        spec,
        &["shipper skipped", "init container \"shipper\""],
    );
    assert!(matches!(&d.templates[0].why, w if w.contains("template shipper")));
}

#[test]
fn conflict_container_name_with_app_container() {
    let spec = json!({ "containers": [{ "name": "app" }, { "name": "adapter" }] });
    expect_conflict(adapter(), "adapter", spec, &["container \"adapter\""]);
}

#[test]
fn conflict_volume_with_a_different_definition() {
    let spec = json!({
        "containers": [{ "name": "app" }],
        "volumes": [{ "name": "logs", "hostPath": { "path": "/var/log" } }],
    });
    expect_conflict(
        shipper(),
        "shipper",
        spec,
        &["volume \"logs\"", "the pod's volume \"logs\""],
    );
}

#[test]
fn identical_volume_is_shared_not_a_conflict() {
    let ctx = Ctx::new(template_set(&[shipper()]));
    let pod = pod_with(
        json!({ INJECT_ANNOTATION: "shipper" }),
        json!({
            "containers": [{ "name": "app" }],
            "volumes": [{ "name": "logs", "emptyDir": { "sizeLimit": "64Mi" } }],
        }),
    );
    let r = ctx.inject(&pod);
    assert_eq!(injected(&r.decision), ["shipper"]);
    assert_eq!(names(&r.pod, "/spec/volumes"), ["logs"]);
    assert!(
        !paths(&r.decision.patch)
            .iter()
            .any(|p| p.starts_with("/spec/volumes"))
    );
    // The user's volume is not Tandem's scratch space to declare evictable.
    assert!(annotation(&r.pod, SAFE_TO_EVICT).is_none());
}

#[test]
fn two_templates_sharing_a_volume_add_it_once() {
    let mut other = shipper_spec();
    other["containers"][0]["name"] = json!("reader");
    other["containers"][0]["ports"] = json!([]);
    let ctx = Ctx::new(template_set(&[shipper(), template_doc("reader", other)]));
    let r = ctx.inject(&simple_pod("shipper,reader"));
    assert_eq!(injected(&r.decision), ["shipper", "reader"]);
    assert_eq!(names(&r.pod, "/spec/volumes"), ["logs"]);
    assert_eq!(names(&r.pod, "/spec/containers/0/env"), ["LOG_DIR"]);
}

#[test]
fn conflict_container_port_with_app_container() {
    let spec = json!({
        "containers": [{ "name": "app", "ports": [{ "containerPort": 2020, "protocol": "TCP" }] }],
    });
    expect_conflict(
        shipper(),
        "shipper",
        spec,
        &["port 2020/TCP", "container \"app\""],
    );
}

#[test]
fn same_port_number_other_protocol_is_not_a_conflict() {
    let ctx = Ctx::new(template_set(&[shipper()]));
    let pod = pod_with(
        json!({ INJECT_ANNOTATION: "shipper" }),
        json!({ "containers": [{ "name": "app", "ports": [{ "containerPort": 2020, "protocol": "UDP" }] }] }),
    );
    assert_eq!(injected(&ctx.inject(&pod).decision), ["shipper"]);
}

#[test]
fn classic_sidecar_port_does_not_meet_run_to_completion_init_containers() {
    let mut spec = shipper_spec();
    spec["lifecycle"] = json!("classic");
    let ctx = Ctx::new(template_set(&[template_doc("shipper", spec)]));
    let pod = pod_with(
        json!({ INJECT_ANNOTATION: "shipper" }),
        json!({
            "initContainers": [{ "name": "warmup", "ports": [{ "containerPort": 2020 }] }],
            "containers": [{ "name": "app" }],
        }),
    );
    assert_eq!(injected(&ctx.inject(&pod).decision), ["shipper"]);
    // As a native sidecar it runs beside the init container: a conflict.
    let mut spec = shipper_spec();
    spec["lifecycle"] = json!("native");
    let ctx = Ctx::new(template_set(&[template_doc("shipper", spec)]));
    let d = ctx.inject(&pod).decision;
    assert_eq!(
        verdict(&d, "shipper"),
        &Verdict::Skipped {
            reason: SkipReason::Conflict
        }
    );
}

#[test]
fn conflict_host_port() {
    let tpl = template_doc(
        "node-agent",
        json!({
            "pattern": "sidecar",
            "containers": [{
                "name": "node-agent",
                "image": "example.com/agent:1",
                "ports": [{ "containerPort": 9000, "hostPort": 9100 }],
            }],
        }),
    );
    let spec = json!({
        "containers": [{ "name": "app", "ports": [{ "containerPort": 8080, "hostPort": 9100 }] }],
    });
    let d = expect_conflict(tpl, "node-agent", spec, &["hostPort 9100/TCP"]);
    // The warning is cut at 119 characters; the decision's reason has both sides.
    let why = &d.templates[0].why;
    assert!(
        why.contains("hostPort 9100/TCP of template node-agent container \"node-agent\"")
            && why.contains("already used by container \"app\""),
        "{why}"
    );
}

#[test]
fn conflict_warning_names_the_users_side_for_the_shipped_log_shipper() {
    // `kubectl apply` shows only the warning: it must say what collided.
    let pod = pod_with(
        json!({ INJECT_ANNOTATION: "log-shipper" }),
        json!({ "containers": [{ "name": "checkout", "ports": [{ "containerPort": 2020 }] }] }),
    );
    let d = Ctx::examples().inject(&pod).decision;
    assert_eq!(
        verdict(&d, "log-shipper"),
        &Verdict::Skipped {
            reason: SkipReason::Conflict
        }
    );
    assert!(
        warned(&d, "\"checkout\""),
        "the warning does not name the pod's container: {:?}",
        d.warnings
    );
}

#[test]
fn conflict_mount_path_in_app_container() {
    let spec = json!({
        "containers": [{ "name": "app", "volumeMounts": [{ "name": "data", "mountPath": "/var/log/app/" }] }],
        "volumes": [{ "name": "data", "emptyDir": {} }],
    });
    expect_conflict(
        shipper(),
        "shipper",
        spec,
        &["mountPath /var/log/app", "\"data\"", "container \"app\""],
    );
}

#[test]
fn conflict_env_with_a_different_value() {
    let spec = json!({
        "containers": [{ "name": "app", "env": [{ "name": "LOG_DIR", "value": "/logs" }] }],
    });
    expect_conflict(
        shipper(),
        "shipper",
        spec,
        &["env LOG_DIR", "container \"app\""],
    );
}

#[test]
fn same_env_value_is_kept_once() {
    let ctx = Ctx::new(template_set(&[shipper()]));
    let pod = pod_with(
        json!({ INJECT_ANNOTATION: "shipper" }),
        json!({ "containers": [{ "name": "app", "env": [{ "name": "LOG_DIR", "value": "/var/log/app" }] }] }),
    );
    let r = ctx.inject(&pod);
    assert_eq!(injected(&r.decision), ["shipper"]);
    assert_eq!(names(&r.pod, "/spec/containers/0/env"), ["LOG_DIR"]);
}

#[test]
fn on_conflict_fail_denies_naming_both_sides() {
    let ctx = Ctx::new(template_set(&[proxy("fail")]));
    let cases = [
        (
            json!({ "containers": [{ "name": "api", "env": [{ "name": "DATABASE_URL", "value": "db:5432" }] }] }),
            ["env DATABASE_URL", "container \"api\""],
        ),
        (
            json!({ "containers": [{ "name": "api", "ports": [{ "containerPort": 5432 }] }] }),
            ["port 5432/TCP", "container \"api\""],
        ),
        (
            json!({ "containers": [{ "name": "proxy" }] }),
            [
                "container name \"proxy\" of template proxy",
                "is already used by container \"proxy\"",
            ],
        ),
    ];
    for (spec, needles) in cases {
        let pod = pod_with(json!({ INJECT_ANNOTATION: "proxy" }), spec);
        let r = ctx.inject(&pod);
        let Outcome::Denied { message } = &r.decision.outcome else {
            panic!("not denied: {:?}", r.decision.outcome);
        };
        assert!(message.contains("template proxy"), "{message}");
        for n in needles {
            assert!(message.contains(n), "{message} lacks {n}");
        }
        assert_eq!(verdict(&r.decision, "proxy"), &Verdict::Denied);
        assert!(r.decision.patch.is_empty());
    }
}

#[test]
fn example_db_ambassador_denies_a_pod_with_its_own_database_url() {
    let (mut pod, ns) = review_pod("admission-v1.36/create.json");
    annotate(&mut pod, INJECT_ANNOTATION, "log-shipper,db-ambassador");
    pod["spec"]["containers"][0]["env"] = json!([{ "name": "DATABASE_URL", "value": "x" }]);
    let d = Ctx::examples().in_namespace(&ns).inject(&pod).decision;
    let Outcome::Denied { message } = &d.outcome else {
        panic!("{:?}", d.outcome)
    };
    assert!(
        message.contains("db-ambassador") && message.contains("\"app\""),
        "{message}"
    );
}

// -------------------------------------------------------------- selection

fn auto_template(name: &str, selector: Option<Value>, ns_selector: Option<Value>) -> String {
    let mut spec = json!({
        "pattern": "sidecar",
        "containers": [{ "name": name, "image": "example.com/x:1" }],
    });
    if let Some(s) = selector {
        spec["selector"] = s;
    }
    if let Some(s) = ns_selector {
        spec["namespaceSelector"] = s;
    }
    template_doc(name, spec)
}

#[test]
fn pod_opt_out_beats_everything() {
    let ctx = Ctx::new(template_set(&[
        shipper(),
        auto_template("everywhere", Some(json!({})), None),
    ]))
    .ns_annotation(INJECT_ANNOTATION, "shipper");
    for value in ["none", "false", "False"] {
        let r = ctx.inject(&simple_pod(value));
        assert_eq!(
            r.decision.outcome,
            Outcome::Unchanged {
                reason: SkipReason::OptedOut
            },
            "{value}"
        );
        assert!(r.decision.patch.is_empty());
    }
}

#[test]
fn pod_list_beats_namespace_default() {
    let ctx =
        Ctx::new(template_set(&[shipper(), adapter()])).ns_annotation(INJECT_ANNOTATION, "shipper");
    let d = ctx.inject(&simple_pod("adapter")).decision;
    assert_eq!(injected(&d), ["adapter"]);
    assert_eq!(d.templates.len(), 1);
    assert_eq!(d.templates[0].source, Source::PodAnnotation);
}

#[test]
fn namespace_default_applies_without_pod_annotation() {
    let ctx = Ctx::new(template_set(&[shipper(), adapter()]))
        .ns_annotation(INJECT_ANNOTATION, "shipper, adapter");
    let pod = json!({ "metadata": { "name": "p" }, "spec": { "containers": [{ "name": "app" }] } });
    let d = ctx.inject(&pod).decision;
    assert_eq!(injected(&d), ["shipper", "adapter"]);
    assert!(
        d.templates
            .iter()
            .all(|t| t.source == Source::NamespaceAnnotation)
    );
    // "true" on the pod asks for the defaults.
    let d = ctx.inject(&simple_pod("true")).decision;
    assert_eq!(injected(&d), ["shipper", "adapter"]);
}

#[test]
fn selector_and_namespace_selector_must_both_match() {
    let tpl = auto_template(
        "metrics",
        Some(json!({ "matchLabels": { "metrics": "on" } })),
        Some(
            json!({ "matchExpressions": [{ "key": "team", "operator": "In", "values": ["a", "b"] }] }),
        ),
    );
    let pod = |labels: Value| json!({ "metadata": { "name": "p", "labels": labels }, "spec": { "containers": [{ "name": "app" }] } });
    let set = || template_set(std::slice::from_ref(&tpl));
    let team_a = Ctx::new(set()).ns_label("team", "a");
    let team_c = Ctx::new(set()).ns_label("team", "c");
    let d = team_a.inject(&pod(json!({ "metrics": "on" }))).decision;
    assert_eq!(injected(&d), ["metrics"]);
    assert_eq!(d.templates[0].source, Source::Selector);
    let d = team_a.inject(&pod(json!({ "metrics": "off" }))).decision;
    assert_eq!(
        d.outcome,
        Outcome::Unchanged {
            reason: SkipReason::NothingSelected
        }
    );
    let d = team_c.inject(&pod(json!({ "metrics": "on" }))).decision;
    assert_eq!(
        d.outcome,
        Outcome::Unchanged {
            reason: SkipReason::NothingSelected
        }
    );
    // Selector-only injection: no status when nothing was injected and the pod did not ask.
    assert!(d.patch.is_empty());
}

#[test]
fn namespace_selector_alone_injects_every_pod_of_the_namespace() {
    let tpl = auto_template(
        "mesh",
        None,
        Some(json!({ "matchLabels": { "mesh": "enabled" } })),
    );
    let ctx = Ctx::new(template_set(&[tpl])).ns_label("mesh", "enabled");
    let pod = json!({ "metadata": { "name": "p" }, "spec": { "containers": [{ "name": "app" }] } });
    assert_eq!(injected(&ctx.inject(&pod).decision), ["mesh"]);
}

#[test]
fn selector_matches_are_added_to_an_explicit_list() {
    let ctx = Ctx::new(template_set(&[
        shipper(),
        auto_template(
            "metrics",
            Some(json!({ "matchLabels": { "metrics": "on" } })),
            None,
        ),
    ]));
    let mut pod = simple_pod("shipper");
    pod["metadata"]["labels"] = json!({ "metrics": "on" });
    let d = ctx.inject(&pod).decision;
    assert_eq!(injected(&d), ["shipper", "metrics"]);
    assert_eq!(d.templates[1].source, Source::Selector);
    // Named explicitly and matched: listed once, as the pod's request.
    let mut pod = simple_pod("metrics");
    pod["metadata"]["labels"] = json!({ "metrics": "on" });
    let d = ctx.inject(&pod).decision;
    assert_eq!(d.templates.len(), 1);
    assert_eq!(d.templates[0].source, Source::PodAnnotation);
}

#[test]
fn namespace_opt_out_stops_selectors_but_not_an_explicit_pod_request() {
    let ctx = Ctx::new(template_set(&[
        shipper(),
        auto_template("everywhere", Some(json!({})), None),
    ]))
    .ns_annotation(INJECT_ANNOTATION, "none");
    let pod = json!({ "metadata": { "name": "p" }, "spec": { "containers": [{ "name": "app" }] } });
    let d = ctx.inject(&pod).decision;
    assert!(d.patch.is_empty());
    assert_eq!(
        d.outcome,
        Outcome::Unchanged {
            reason: SkipReason::NothingSelected
        }
    );
    // A pod that asks explicitly gets what it asks for, and (README, "Who gets
    // what" 4) selector matches are added to its list.
    let d = ctx.inject(&simple_pod("shipper")).decision;
    assert_eq!(injected(&d), ["shipper", "everywhere"]);
    let d = ctx.inject(&simple_pod("true")).decision;
    assert_eq!(injected(&d), ["everywhere"]);
}

#[test]
fn mirror_pods_are_skipped() {
    let ctx = Ctx::new(template_set(&[shipper()]));
    let mut pod = simple_pod("shipper");
    annotate(&mut pod, "kubernetes.io/config.mirror", "abc123");
    let d = ctx.inject(&pod).decision;
    assert_eq!(
        d.outcome,
        Outcome::Unchanged {
            reason: SkipReason::MirrorPod
        }
    );
    assert!(d.patch.is_empty());
    assert!(
        d.gates
            .iter()
            .any(|g| g.gate == "mirror pod" && g.why.contains("abc123"))
    );
}

#[test]
fn excluded_namespaces_are_skipped() {
    for ns in ["kube-system", "kube-public", "kube-node-lease"] {
        let ctx = Ctx::new(template_set(&[shipper()])).in_namespace(ns);
        let d = ctx.inject(&simple_pod("shipper")).decision;
        assert_eq!(
            d.outcome,
            Outcome::Unchanged {
                reason: SkipReason::ExcludedNamespace
            },
            "{ns}"
        );
        assert!(d.patch.is_empty());
    }
}

#[test]
fn namespace_labelled_disabled_is_skipped() {
    let ctx = Ctx::new(template_set(&[shipper()])).ns_label("tandem.dev/injection", "disabled");
    let d = ctx.inject(&simple_pod("shipper")).decision;
    assert_eq!(
        d.outcome,
        Outcome::Unchanged {
            reason: SkipReason::NamespaceDisabled
        }
    );
    assert!(d.patch.is_empty());
}

#[test]
fn missing_template_warns_by_default() {
    let ctx = Ctx::new(template_set(&[shipper()]));
    let r = ctx.inject(&simple_pod("nope,shipper"));
    let d = &r.decision;
    assert_eq!(verdict(d, "nope"), &Verdict::Missing);
    assert!(warned(d, "requested template nope does not exist"));
    assert_eq!(injected(d), ["shipper"]);
    // Only the missing one: the status still records that Tandem saw the pod.
    let r = ctx.inject(&simple_pod("nope"));
    assert_eq!(r.decision.outcome, Outcome::Patched);
    assert!(status_of(&r.pod).unwrap().templates.is_empty());
    assert_eq!(
        paths(&r.decision.patch),
        ["/metadata/annotations/tandem.dev~1status"]
    );
}

#[test]
fn missing_template_denies_with_on_missing_deny() {
    let mut ctx = Ctx::new(template_set(&[shipper()]));
    ctx.policy.on_missing = OnMissing::Deny;
    let d = ctx.inject(&simple_pod("shipper,nope")).decision;
    let Outcome::Denied { message } = &d.outcome else {
        panic!("{:?}", d.outcome)
    };
    assert!(message.contains("nope"), "{message}");
    assert!(d.patch.is_empty());
}

// ------------------------------------------------------- tenant isolation

fn namespaced(ns: &str, name: &str, image: &str) -> template::Template {
    let doc: Value = serde_json::from_str(&template_doc(
        name,
        json!({
            "pattern": "sidecar",
            "containers": [{ "name": name, "image": image }],
            "selector": {},
        }),
    ))
    .unwrap();
    template::template_from_object(&doc, ns, Scope::Namespace(ns.into())).unwrap()
}

#[test]
fn namespaced_template_is_invisible_to_other_namespaces() {
    let set = || TemplateSet::new([namespaced("a", "team-helper", "example.com/a:1")]).unwrap();
    // Requested by name from namespace b: missing.
    let ctx_b = Ctx::new(set()).in_namespace("b");
    let d = ctx_b.inject(&simple_pod("team-helper")).decision;
    assert_eq!(verdict(&d, "team-helper"), &Verdict::Missing);
    assert!(d.injected().next().is_none());
    // Its match-everything selector does not reach b either.
    let pod = json!({ "metadata": { "name": "p" }, "spec": { "containers": [{ "name": "app" }] } });
    assert!(ctx_b.inject(&pod).decision.patch.is_empty());
    // In a it works both ways.
    let ctx_a = Ctx::new(set()).in_namespace("a");
    assert_eq!(injected(&ctx_a.inject(&pod).decision), ["team-helper"]);
    assert_eq!(
        injected(&ctx_a.inject(&simple_pod("team-helper")).decision),
        ["team-helper"]
    );
}

#[test]
fn namespaced_template_shadows_the_cluster_one_in_its_namespace_only() {
    let set = || {
        let mut v = parse_templates(&template_doc(
            "helper",
            json!({
                "pattern": "sidecar",
                "containers": [{ "name": "helper", "image": "example.com/cluster:1" }],
            }),
        ));
        v.push(namespaced("a", "helper", "example.com/team-a:1"));
        TemplateSet::new(v).expect("same name in two scopes is allowed")
    };
    assert_eq!(set().len(), 2);
    for (ns, image) in [
        ("a", "example.com/team-a:1"),
        ("b", "example.com/cluster:1"),
    ] {
        let ctx = Ctx::new(set()).in_namespace(ns).classic();
        let r = ctx.inject(&simple_pod("helper"));
        let c = named(&r.pod, "/spec/containers", "helper").expect("injected");
        assert_eq!(c["image"], image, "namespace {ns}");
        // One helper, although a's own also matches by selector there.
        assert_eq!(r.decision.templates.len(), 1, "{ns}");
        assert_eq!(ctx.templates.visible(ns).count(), 1, "{ns}");
    }
    // Unrequested pods: a's selector injects a's helper in a only.
    let pod = json!({ "metadata": { "name": "p" }, "spec": { "containers": [{ "name": "app" }] } });
    let r = Ctx::new(set()).in_namespace("a").classic().inject(&pod);
    assert_eq!(
        named(&r.pod, "/spec/containers", "helper").unwrap()["image"],
        "example.com/team-a:1"
    );
    assert!(
        Ctx::new(set())
            .in_namespace("b")
            .inject(&pod)
            .decision
            .patch
            .is_empty()
    );
}

// ----------------------------------------------------------------- dryRun

#[test]
fn dry_run_mode_reports_but_does_not_mutate() {
    let mut spec = shipper_spec();
    spec["mode"] = json!("dryRun");
    let ctx = Ctx::new(template_set(&[template_doc("shipper", spec)]));
    let r = ctx.inject(&simple_pod("shipper"));
    let d = &r.decision;
    assert_eq!(
        verdict(d, "shipper"),
        &Verdict::DryRun {
            placement: Placement::Native
        }
    );
    assert!(
        warned(d, "dry run: shipper would be injected"),
        "{:?}",
        d.warnings
    );
    assert_eq!(
        paths(&d.patch),
        ["/metadata/annotations/tandem.dev~1status"]
    );
    assert!(status_of(&r.pod).unwrap().templates.is_empty());
    assert_eq!(r.pod["spec"], simple_pod("shipper")["spec"]);
}

#[test]
fn dry_run_mode_reports_a_would_be_conflict() {
    let mut spec = shipper_spec();
    spec["mode"] = json!("dryRun");
    spec["onConflict"] = json!("fail");
    let ctx = Ctx::new(template_set(&[template_doc("shipper", spec)]));
    let pod = pod_with(
        json!({ INJECT_ANNOTATION: "shipper" }),
        json!({ "containers": [{ "name": "shipper" }] }),
    );
    let d = ctx.inject(&pod).decision;
    assert!(
        !matches!(d.outcome, Outcome::Denied { .. }),
        "dry run never denies"
    );
    assert!(warned(&d, "would conflict"), "{:?}", d.warnings);
}

#[test]
fn dry_run_selector_template_leaves_unrequested_pods_untouched() {
    let mut spec = shipper_spec();
    spec["mode"] = json!("dryRun");
    spec["selector"] = json!({});
    let ctx = Ctx::new(template_set(&[template_doc("shipper", spec)]));
    let pod = json!({ "metadata": { "name": "p" }, "spec": { "containers": [{ "name": "app" }] } });
    let d = ctx.inject(&pod).decision;
    assert!(d.patch.is_empty());
    assert_eq!(
        d.outcome,
        Outcome::Unchanged {
            reason: SkipReason::DryRun
        }
    );
    assert!(warned(&d, "dry run"));
}

// ----------------------------------------------------------------- status

#[test]
fn already_injected_pod_is_left_alone() {
    let ctx = Ctx::new(template_set(&[shipper(), adapter()]));
    let first = ctx.inject(&simple_pod("shipper,adapter"));
    let d = ctx.decide(&first.pod).unwrap();
    assert!(d.patch.is_empty());
    assert_eq!(
        d.outcome,
        Outcome::Unchanged {
            reason: SkipReason::AlreadyInjected
        }
    );
    assert!(
        d.templates
            .iter()
            .all(|t| t.verdict == Verdict::AlreadyInjected)
    );
    assert!(d.warnings.is_empty(), "{:?}", d.warnings);
}

#[test]
fn adding_a_template_to_an_injected_pod_adds_only_it() {
    let ctx = Ctx::new(template_set(&[shipper(), adapter()]));
    let mut pod = ctx.inject(&simple_pod("shipper")).pod;
    annotate(&mut pod, INJECT_ANNOTATION, "shipper,adapter");
    let r = ctx.inject(&pod);
    assert_eq!(injected(&r.decision), ["adapter"]);
    assert_eq!(verdict(&r.decision, "shipper"), &Verdict::AlreadyInjected);
    let status = status_of(&r.pod).unwrap();
    let names: Vec<&str> = status.templates.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["shipper", "adapter"]);
}

#[test]
fn invalid_status_is_a_warning_not_a_panic() {
    let ctx = Ctx::new(template_set(&[shipper()]));
    for bad in [
        "{not json",
        "\"x\"",
        "{\"templates\": 3}",
        "null",
        "",
        "{}",
        "{\"containers\": [\"a\"]}",
    ] {
        let mut pod = simple_pod("shipper");
        annotate(&mut pod, STATUS_ANNOTATION, bad);
        let r = ctx.inject(&pod);
        let d = &r.decision;
        assert!(
            warned(d, "tandem.dev/status is not valid"),
            "{bad}: {:?}",
            d.warnings
        );
        assert_eq!(injected(d), ["shipper"], "{bad}");
        assert_eq!(status_of(&r.pod).unwrap().templates[0].name, "shipper");
    }
}

#[test]
fn invalid_status_on_an_injected_pod_does_not_inject_twice() {
    let ctx = Ctx::new(template_set(&[shipper()]));
    let mut pod = ctx.inject(&simple_pod("shipper")).pod;
    annotate(&mut pod, STATUS_ANNOTATION, "garbage");
    let r = ctx.inject(&pod);
    assert_eq!(
        verdict(&r.decision, "shipper"),
        &Verdict::Skipped {
            reason: SkipReason::Conflict
        }
    );
    assert_eq!(names(&r.pod, "/spec/initContainers"), ["shipper"]);
}

#[test]
fn changed_template_is_skipped_as_outdated() {
    let v1 = Ctx::new(template_set(&[shipper()]));
    let pod = v1.inject(&simple_pod("shipper")).pod;
    let mut spec = shipper_spec();
    spec["containers"][0]["image"] = json!("example.com/shipper:2.0");
    let v2 = Ctx::new(template_set(&[template_doc("shipper", spec)]));
    let r = v2.inject(&pod);
    let d = &r.decision;
    assert_eq!(
        verdict(d, "shipper"),
        &Verdict::Skipped {
            reason: SkipReason::Outdated
        }
    );
    assert!(warned(d, "older version"), "{:?}", d.warnings);
    assert!(d.patch.is_empty());
    assert_eq!(
        d.outcome,
        Outcome::Unchanged {
            reason: SkipReason::Outdated
        }
    );
}

// ------------------------------------------------------------ annotations

#[test]
fn default_container_is_set_only_when_unset() {
    let ctx = Ctx::new(template_set(&[adapter()])).classic();
    let pod = pod_with(
        json!({ INJECT_ANNOTATION: "adapter" }),
        json!({ "containers": [{ "name": "main" }, { "name": "second" }] }),
    );
    let r = ctx.inject(&pod);
    assert_eq!(
        annotation(&r.pod, DEFAULT_CONTAINER_ANNOTATION),
        Some("main")
    );
    assert_eq!(
        names(&r.pod, "/spec/containers"),
        ["main", "second", "adapter"]
    );
    let mut pod = pod.clone();
    annotate(&mut pod, DEFAULT_CONTAINER_ANNOTATION, "second");
    let r = ctx.inject(&pod);
    assert_eq!(
        annotation(&r.pod, DEFAULT_CONTAINER_ANNOTATION),
        Some("second")
    );
    assert!(
        !paths(&r.decision.patch)
            .iter()
            .any(|p| p.contains("default-container"))
    );
}

#[test]
fn safe_to_evict_is_a_union_with_the_existing_value() {
    let ctx = Ctx::new(template_set(&[shipper()]));
    let mut pod = simple_pod("shipper");
    annotate(&mut pod, SAFE_TO_EVICT, "scratch");
    let r = ctx.inject(&pod);
    assert_eq!(annotation(&r.pod, SAFE_TO_EVICT), Some("scratch,logs"));
    let mut pod = simple_pod("shipper");
    annotate(&mut pod, SAFE_TO_EVICT, "logs, scratch");
    let r = ctx.inject(&pod);
    assert_eq!(annotation(&r.pod, SAFE_TO_EVICT), Some("logs, scratch"));
    assert!(
        !paths(&r.decision.patch)
            .iter()
            .any(|p| p.contains("safe-to-evict"))
    );
}

#[test]
fn safe_to_evict_names_only_empty_dirs() {
    let tpl = template_doc(
        "certs",
        json!({
            "pattern": "sidecar",
            "containers": [{ "name": "certs", "image": "example.com/c:1" }],
            "volumes": [{ "name": "certs", "secret": { "secretName": "certs" } }],
        }),
    );
    let r = Ctx::new(template_set(&[tpl])).inject(&simple_pod("certs"));
    assert_eq!(injected(&r.decision), ["certs"]);
    assert!(annotation(&r.pod, SAFE_TO_EVICT).is_none());
}

// -------------------------------------------------------------- resources

fn q(s: &str) -> Quantity {
    Quantity::parse(s).unwrap()
}

#[test]
fn effective_request_before_and_after_by_hand() {
    // Before: max(migrate 1 / 128Mi, app 500m / 256Mi) = 1 CPU, 256Mi.
    // After, init order prep, proxy (native), migrate:
    //   init phase: prep 300m/512Mi; migrate + proxy = 1100m/192Mi
    //   running: app + proxy = 600m/320Mi
    //   effective = max per resource = 1100m, 512Mi.
    let tpl = template_doc(
        "proxy",
        json!({
            "pattern": "ambassador",
            "lifecycle": "native",
            "initContainers": [{
                "name": "prep", "image": "x:1",
                "resources": { "requests": { "cpu": "300m", "memory": "512Mi" } },
            }],
            "containers": [{
                "name": "proxy", "image": "x:1",
                "resources": { "requests": { "cpu": "100m", "memory": "64Mi" } },
            }],
        }),
    );
    let ctx = Ctx::new(template_set(&[tpl]));
    let pod = pod_with(
        json!({ INJECT_ANNOTATION: "proxy" }),
        json!({
            "initContainers": [{
                "name": "migrate",
                "resources": { "requests": { "cpu": "1", "memory": "128Mi" } },
            }],
            "containers": [{
                "name": "app",
                // Only limits: the request defaults to them.
                "resources": { "limits": { "cpu": "500m", "memory": "256Mi" } },
            }],
        }),
    );
    let d = ctx.inject(&pod).decision;
    let res = d.resources.expect("resources reported");
    assert_eq!((res.before.cpu, res.before.memory), (q("1"), q("256Mi")));
    assert_eq!((res.after.cpu, res.after.memory), (q("1100m"), q("512Mi")));
    assert!(
        warned(
            &d,
            "pod request grows from cpu 1, memory 256Mi to cpu 1100m, memory 512Mi"
        ),
        "{:?}",
        d.warnings
    );
    let json = serde_json::to_value(&d).unwrap();
    assert_eq!(json["resources"]["after"]["cpu"], "1100m");
    assert_eq!(json["resources"]["after"]["memory"], "512Mi");
}

#[test]
fn classic_sidecar_adds_to_the_app_sum() {
    let ctx = Ctx::new(template_set(&[adapter()]));
    let pod = pod_with(
        json!({ INJECT_ANNOTATION: "adapter" }),
        json!({ "containers": [{
            "name": "app",
            "resources": { "requests": { "cpu": "250m", "memory": "100Mi" } },
        }] }),
    );
    let res = ctx.inject(&pod).decision.resources.unwrap();
    assert_eq!((res.before.cpu, res.before.memory), (q("250m"), q("100Mi")));
    assert_eq!((res.after.cpu, res.after.memory), (q("260m"), q("116Mi")));
}

#[test]
fn no_growth_no_resource_warning() {
    let tpl = template_doc(
        "tiny",
        json!({ "pattern": "sidecar", "containers": [{ "name": "tiny", "image": "x:1" }] }),
    );
    let d = Ctx::new(template_set(&[tpl]))
        .inject(&simple_pod("tiny"))
        .decision;
    let res = d.resources.unwrap();
    assert_eq!(res.before, res.after);
    assert!(!warned(&d, "grows"), "{:?}", d.warnings);
}

#[test]
fn example_deployment_numbers_match_the_readme() {
    // examples/README.md: 250m/256Mi before, 425m/416Mi after.
    let ctx = Ctx::examples();
    let text =
        std::fs::read_to_string(manifest_dir().join("examples/workloads/deployment.yaml")).unwrap();
    let doc: Value = serde_saphyr::from_str(&text).unwrap();
    let pod = doc["spec"]["template"].clone();
    let res = ctx.inject(&pod).decision.resources.unwrap();
    assert_eq!((res.before.cpu, res.before.memory), (q("250m"), q("256Mi")));
    assert_eq!((res.after.cpu, res.after.memory), (q("425m"), q("416Mi")));
}

// --------------------------------------------------------------- warnings

#[test]
fn warnings_stay_under_120_characters() {
    let long = "a".repeat(63);
    let mut spec = shipper_spec();
    spec["containers"][0]["name"] = json!(long.clone());
    spec["lifecycle"] = json!("classic");
    let ctx = Ctx::new(template_set(&[template_doc(&long, spec)])).classic();
    let mut pod = job_pod("OnFailure", &format!("{long},{}", "b".repeat(200)));
    pod["spec"]["containers"][0]["name"] = json!(long.clone());
    annotate(&mut pod, STATUS_ANNOTATION, &"{".repeat(300));
    // Ctx::inject checks every warning's length.
    let d = ctx.inject(&pod).decision;
    assert!(d.warnings.len() >= 3, "{:?}", d.warnings);
    assert!(
        d.warnings.iter().any(|w| w.ends_with("...")),
        "{:?}",
        d.warnings
    );
    // A conflict naming long names on both sides.
    let ctx = Ctx::new(template_set(&[template_doc(&long, {
        let mut s = shipper_spec();
        s["containers"][0]["name"] = json!(long.clone());
        s
    })]));
    let mut pod = simple_pod(&long);
    pod["spec"]["containers"][0]["name"] = json!(long.clone());
    let d = ctx.inject(&pod).decision;
    assert_eq!(
        verdict(&d, &long),
        &Verdict::Skipped {
            reason: SkipReason::Conflict
        }
    );
    for w in &d.warnings {
        assert!(w.chars().count() < 120, "{w}");
    }
}

// ------------------------------------------------------------ malformed pods

#[test]
fn malformed_pods_are_errors_not_panics() {
    let ctx = Ctx::new(template_set(&[shipper()]));
    let cases = [
        json!(null),
        json!([]),
        json!("pod"),
        json!({ "metadata": { "name": "x" } }),
        json!({ "spec": null }),
        json!({ "spec": [] }),
        json!({ "spec": { "containers": {} } }),
        json!({ "spec": { "containers": "app" } }),
        json!({ "spec": { "containers": [{ "image": "no-name" }] } }),
        json!({ "spec": { "containers": [{ "name": 3 }] } }),
        json!({ "spec": { "containers": [{ "name": "a" }], "initContainers": {} } }),
        json!({ "spec": { "containers": [{ "name": "a" }], "volumes": "x" } }),
        json!({ "spec": { "containers": [{ "name": "a" }], "volumes": [{}] } }),
        json!({ "spec": { "containers": [{ "name": "a", "env": {} }] } }),
        json!({ "spec": { "containers": [{ "name": "a", "volumeMounts": "x" }] } }),
        json!({ "spec": { "containers": [{ "name": "a", "ports": 80 }] } }),
        json!({ "metadata": [], "spec": { "containers": [] } }),
        json!({ "metadata": { "annotations": [] }, "spec": { "containers": [] } }),
        json!({ "metadata": { "annotations": { INJECT_ANNOTATION: 1 } }, "spec": { "containers": [] } }),
        json!({ "metadata": { "annotations": { "other": true } }, "spec": { "containers": [] } }),
        json!({ "metadata": { "labels": { "a": 1 } }, "spec": { "containers": [] } }),
    ];
    for pod in cases {
        match ctx.decide(&pod) {
            Err(EngineError::MalformedPod(msg)) => assert!(!msg.is_empty()),
            other => panic!("{pod}: expected MalformedPod, got {other:?}"),
        }
    }
}

// ------------------------------------------------------- template loading

fn load_errors(yaml: &str) -> Vec<LoadError> {
    match template::parse_documents("dir/tpl.yaml", yaml) {
        Ok(t) => panic!("loaded {} template(s) from a broken file", t.len()),
        Err(e) => e,
    }
}

/// Expects an error naming the file, the template and a field starting with `field`.
fn expect_field_error(spec: Value, field: &str, message: &str) {
    let errs = load_errors(&template_doc("broken", spec));
    let found = errs.iter().any(|e| match e {
        LoadError::Field {
            path,
            template,
            error,
        } => {
            path == "dir/tpl.yaml"
                && template == "broken"
                && error.field.starts_with(field)
                && error.message.contains(message)
        }
        _ => false,
    });
    assert!(found, "no error on {field} ({message}): {errs:#?}");
    for e in &errs {
        let text = e.to_string();
        assert!(
            text.starts_with("dir/tpl.yaml: template \"broken\": spec"),
            "{text}"
        );
    }
}

fn base_spec() -> Value {
    json!({
        "pattern": "sidecar",
        "containers": [{ "name": "helper-one", "image": "x:1" }],
    })
}

#[test]
fn unknown_field_in_spec() {
    let mut spec = base_spec();
    spec["sidecars"] = json!([]);
    expect_field_error(spec, "spec", "sidecars");
}

#[test]
fn unknown_field_in_a_container() {
    let mut spec = base_spec();
    spec["containers"][0]["imagePullPolicyy"] = json!("Always");
    expect_field_error(spec, "spec.containers[0].imagePullPolicyy", "unknown field");
}

#[test]
fn unknown_field_deep_in_a_container() {
    let mut spec = base_spec();
    spec["containers"][0]["securityContext"] = json!({ "runAsNonroot": true });
    expect_field_error(
        spec,
        "spec.containers[0].securityContext.runAsNonroot",
        "unknown field",
    );
}

#[test]
fn unknown_field_in_app() {
    let mut spec = base_spec();
    spec["app"] = json!({ "volumeMount": [] });
    expect_field_error(spec, "spec.app", "volumeMount");
}

#[test]
fn bad_quantity() {
    let mut spec = base_spec();
    spec["containers"][0]["resources"] = json!({ "requests": { "cpu": "lots" } });
    expect_field_error(spec, "spec.containers[0].resources.requests.cpu", "lots");
    let mut spec = base_spec();
    spec["volumes"] = json!([{ "name": "v", "emptyDir": { "sizeLimit": "1Zi" } }]);
    expect_field_error(spec, "spec.volumes[0].emptyDir.sizeLimit", "1Zi");
}

#[test]
fn volume_mount_of_a_missing_volume() {
    let mut spec = base_spec();
    spec["containers"][0]["volumeMounts"] = json!([{ "name": "nowhere", "mountPath": "/x" }]);
    expect_field_error(spec, "spec.containers[0].volumeMounts[0].name", "nowhere");
    let mut spec = base_spec();
    spec["app"] = json!({ "volumeMounts": [{ "name": "nowhere", "mountPath": "/x" }] });
    expect_field_error(spec, "spec.app.volumeMounts[0].name", "nowhere");
}

#[test]
fn duplicate_container_names() {
    let mut spec = base_spec();
    spec["initContainers"] = json!([{ "name": "helper-one", "image": "x:1" }]);
    expect_field_error(spec, "spec.containers[0].name", "duplicate container");
}

#[test]
fn pattern_init_with_containers() {
    let mut spec = base_spec();
    spec["pattern"] = json!("init");
    spec["initContainers"] = json!([{ "name": "setup", "image": "x:1" }]);
    expect_field_error(spec, "spec.containers", "initContainers only");
}

#[test]
fn restart_policy_on_a_template_container() {
    let mut spec = base_spec();
    spec["containers"][0]["restartPolicy"] = json!("Always");
    expect_field_error(spec, "spec.containers[0].restartPolicy", "lifecycle");
}

#[test]
fn other_validation_errors() {
    let mut spec = base_spec();
    spec["containers"][0]["image"] = json!("");
    expect_field_error(spec, "spec.containers[0].image", "must be set");
    let mut spec = base_spec();
    spec["containers"][0]["name"] = json!("Bad_Name");
    expect_field_error(spec, "spec.containers[0].name", "DNS-1123");
    let mut spec = base_spec();
    spec["lifecycle"] = json!("sometimes");
    expect_field_error(spec, "spec.lifecycle", "sometimes");
    let mut spec = base_spec();
    spec["selector"] = json!({ "matchExpressions": [{ "key": "a", "operator": "Near" }] });
    expect_field_error(spec, "spec.selector.matchExpressions[0].operator", "Near");
}

#[test]
fn missing_spec_and_wrong_kind() {
    let errs = load_errors(
        "apiVersion: tandem.dev/v1alpha1\nkind: SidecarTemplate\nmetadata:\n  name: x\n",
    );
    assert!(
        errs[0]
            .to_string()
            .contains("template \"x\": spec: is missing"),
        "{errs:?}"
    );
    let errs = load_errors("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n");
    let text = errs[0].to_string();
    assert!(text.starts_with("dir/tpl.yaml: document 1:"), "{text}");
    assert!(text.contains("ConfigMap"), "{text}");
    let errs = load_errors("a: [unclosed");
    assert!(matches!(errs[0], LoadError::Syntax { .. }), "{errs:?}");
}

#[test]
fn every_error_of_a_file_is_reported() {
    let mut a = base_spec();
    a["containers"][0]["imagePullPolicyy"] = json!("Always");
    let mut b = base_spec();
    b["containers"][0]["restartPolicy"] = json!("Always");
    let yaml = [template_doc("first", a), template_doc("second", b)].join("\n---\n");
    let errs = load_errors(&yaml);
    let text: Vec<String> = errs.iter().map(ToString::to_string).collect();
    assert!(
        text.iter()
            .any(|t| t.contains("\"first\"") && t.contains("imagePullPolicyy"))
    );
    assert!(
        text.iter()
            .any(|t| t.contains("\"second\"") && t.contains("restartPolicy"))
    );
}

#[test]
fn multi_document_files_and_lists() {
    let yaml = format!("# comment\n---\n{}\n---\n{}\n---\n", shipper(), adapter());
    let t = parse_templates(&yaml);
    assert_eq!(
        t.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(),
        ["shipper", "adapter"]
    );
    let list = format!(
        "apiVersion: v1\nkind: List\nitems:\n  - {}\n  - {}\n",
        shipper(),
        proxy("skip")
    );
    let t = parse_templates(&list);
    assert_eq!(
        t.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(),
        ["shipper", "proxy"]
    );
    // Defined twice: the set names both sources.
    let twice = parse_templates(&format!("{}\n---\n{}", shipper(), shipper()));
    let err = TemplateSet::new(twice).unwrap_err().to_string();
    assert!(err.contains("\"shipper\" is defined twice"), "{err}");
}

#[test]
fn directory_with_a_broken_file_reports_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("good.yaml"), shipper()).unwrap();
    let mut bad = base_spec();
    bad["containers"][0]["imagePullPolicyy"] = json!("Always");
    std::fs::write(dir.path().join("bad.yml"), template_doc("broken", bad)).unwrap();
    std::fs::write(dir.path().join("notes.txt"), "not a template").unwrap();
    std::fs::create_dir(dir.path().join("..data")).unwrap();
    let errs = template::load_path(dir.path()).unwrap_err();
    assert_eq!(errs.len(), 1, "{errs:?}");
    let text = errs[0].to_string();
    assert!(text.contains("bad.yml"), "{text}");
    assert!(text.contains("template \"broken\""), "{text}");
    assert!(
        text.contains("spec.containers[0].imagePullPolicyy"),
        "{text}"
    );
    std::fs::remove_file(dir.path().join("bad.yml")).unwrap();
    let ok = template::load_path(dir.path()).unwrap();
    assert_eq!(ok.len(), 1);
    let missing = template::load_path(&dir.path().join("nope")).unwrap_err();
    assert!(matches!(missing[0], LoadError::Read { .. }));
}

#[test]
fn example_templates_all_load() {
    let set = example_templates();
    assert_eq!(set.len(), 5);
}

// ------------------------------------------------------------ property test

mod property {
    use super::*;
    use proptest::prelude::*;

    /// Mostly fresh names, sometimes one an example template also sets.
    fn env_var() -> impl Strategy<Value = Value> {
        let name = prop_oneof![
            4 => "[A-Z][A-Z_]{0,6}",
            1 => prop::sample::select(vec!["DATABASE_URL".to_string(), "STATSD_HOST".into()]),
        ];
        let value = prop_oneof![
            3 => "[a-z0-9/]{0,8}",
            1 => Just("localhost:5432".to_string()),
        ];
        (name, value).prop_map(|(n, v)| json!({ "name": n, "value": v }))
    }

    fn container(i: usize) -> impl Strategy<Value = Value> {
        (
            prop::collection::vec(env_var(), 0..4),
            prop::option::of((0u16..3, prop::sample::select(vec!["/data", "/var/log/app"]))),
            any::<bool>(),
            prop::option::of(prop::sample::select(vec![2020u16, 8080, 5432, 9102])),
            prop::sample::select(vec!["", "", "", "", "log-adapter", "config-fetcher"]),
        )
            .prop_map(move |(env, mount, unknown, port, name)| {
                // Only the first may take a template container's name.
                let name = if name.is_empty() || i > 0 {
                    format!("c{i}")
                } else {
                    name.to_string()
                };
                let mut c = json!({ "name": name, "image": "x:1" });
                if !env.is_empty() {
                    c["env"] = Value::Array(env);
                }
                if let Some((m, dir)) = mount {
                    let path = if dir == "/data" {
                        format!("/data/{m}")
                    } else {
                        dir.to_string()
                    };
                    c["volumeMounts"] = json!([{ "name": format!("v{m}"), "mountPath": path }]);
                }
                if unknown {
                    c["x-unknown"] = json!({ "kept": [1, 2, 3] });
                }
                if let Some(p) = port {
                    c["ports"] = json!([{ "containerPort": p }]);
                }
                c
            })
    }

    fn pod() -> impl Strategy<Value = Value> {
        (
            (1usize..4).prop_flat_map(|n| (0..n).map(container).collect::<Vec<_>>()),
            prop::option::of(prop::collection::vec(any::<bool>(), 0..3)),
            any::<bool>(),
            prop::sample::select(vec!["Always", "OnFailure", "Never"]),
            prop::sample::subsequence(
                vec![
                    "log-shipper",
                    "db-ambassador",
                    "config-init",
                    "log-adapter",
                    "nope",
                ],
                0..5,
            ),
            any::<bool>(),
            // A volume named like log-shipper's: none, the same definition, another one.
            prop::sample::select(vec![
                Value::Null,
                json!({ "name": "app-logs", "emptyDir": { "sizeLimit": "256Mi" } }),
                json!({ "name": "app-logs", "emptyDir": {} }),
            ]),
        )
            .prop_map(
                |(containers, init, annotated, restart, wanted, metrics, extra)| {
                    let mut volumes: Vec<Value> = (0..3)
                        .map(|i| json!({ "name": format!("v{i}"), "emptyDir": {} }))
                        .collect();
                    if !extra.is_null() {
                        volumes.push(extra);
                    }
                    let mut spec = json!({
                        "containers": containers,
                        "volumes": volumes,
                        "restartPolicy": restart,
                        "x-future-field": { "a": 1 },
                    });
                    if let Some(init) = init {
                        spec["initContainers"] = init
                            .iter()
                            .enumerate()
                            .map(|(i, native)| {
                                let mut c = json!({ "name": format!("init{i}"), "image": "x:1" });
                                if *native {
                                    c["restartPolicy"] = json!("Always");
                                }
                                c
                            })
                            .collect();
                    }
                    let mut pod = json!({ "metadata": { "name": "p" }, "spec": spec });
                    if annotated {
                        pod["metadata"]["annotations"] = json!({ "keep/me": "yes" });
                    }
                    if metrics {
                        pod["metadata"]["labels"] = json!({ "tandem.dev/metrics": "true" });
                    }
                    if !wanted.is_empty() {
                        annotate(&mut pod, INJECT_ANNOTATION, &wanted.join(","));
                    }
                    pod
                },
            )
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: 128,
            failure_persistence: None,
            ..ProptestConfig::default()
        })]
        #[test]
        fn injection_preserves_and_is_idempotent(pod in pod(), native in any::<bool>()) {
            let mut ctx = Ctx::examples();
            if !native {
                ctx.caps = classic_caps();
            }
            // Ctx::inject applies the patch and checks well-formed, preserved
            // and idempotent.
            let r = ctx.inject(&pod);
            if matches!(r.decision.outcome, Outcome::Denied { .. }) {
                return Ok(());
            }
            for t in r.decision.injected() {
                let status = status_of(&r.pod).expect("status");
                prop_assert!(status.template(t).is_some());
            }
        }
    }
}

#[test]
fn a_pod_that_asks_is_marked_processed_even_when_nothing_is_selected() {
    // The companion policy demands tandem.dev/status of every pod that asks by
    // name, itself or through its namespace; Tandem must write it even when
    // the request selects nothing, or the policy would reject a pod Tandem saw.
    let ctx = Ctx::new(template_set(&[shipper()]));
    let pod = |inject: &str| {
        json!({ "metadata": { "name": "p", "annotations": { INJECT_ANNOTATION: inject } },
                "spec": { "containers": [{ "name": "app" }] } })
    };
    for asks in ["true", "", ","] {
        let r = ctx.inject(&pod(asks));
        assert_eq!(r.decision.outcome, Outcome::Patched, "{asks:?}");
        assert!(r.decision.injected().next().is_none(), "{asks:?}");
        let status = status_of(&r.pod).expect("marked processed");
        assert!(status.templates.is_empty(), "{asks:?}: {status:?}");
    }
    // Through the namespace's default list, with no annotation on the pod.
    let ns = Ctx::new(template_set(&[shipper()])).ns_annotation(INJECT_ANNOTATION, "nope");
    let bare =
        json!({ "metadata": { "name": "p" }, "spec": { "containers": [{ "name": "app" }] } });
    let r = ns.inject(&bare);
    assert!(status_of(&r.pod).is_some(), "{:?}", r.decision);
    // A namespace default of "true" names nothing: no request, no status.
    let defaults = Ctx::new(template_set(&[shipper()])).ns_annotation(INJECT_ANNOTATION, "true");
    let r = defaults.inject(&bare);
    assert!(r.decision.patch.is_empty(), "{:?}", r.decision);
}

// ------------------------------------------------- the webhook's lean parse

/// The webhook builds only the fields of a pod the engine reads
/// (`engine::POD_READS`); the CLI hands the engine the whole pod. Every pod
/// shape, request and label variant must get the same decision both ways,
/// so a change that reads a field without declaring it fails here.
#[test]
fn the_webhook_decides_on_the_fields_it_parses_as_the_cli_does_on_the_whole_pod() {
    let set = example_templates();
    let envelope = fixture("admission-v1.36/create.json");
    let mut seen = std::collections::BTreeMap::<&str, usize>::new();
    for caps in [native_caps(), classic_caps()] {
        let ctx = tandem::admission::Context {
            templates: &set,
            namespaces: &tandem::facts::NoNamespaces,
            capabilities: &caps,
            policy: &tandem::facts::Policy::default(),
        };
        for (pod_case, shape) in pods() {
            for (variant, annotations, labels) in pod_variants(&set) {
                let mut pod = with_metadata(&shape, &annotations, &labels);
                pod["status"] = json!({ "phase": "Pending" });
                let case = format!("{pod_case}, {variant}");
                let mut review = envelope.clone();
                review["request"]["object"] = pod.clone();
                let ns = review["request"]["namespace"].as_str().unwrap();
                // The CLI explains; the explanation is all the webhook leaves out.
                let mut whole = tandem::engine::explain(&tandem::engine::Input {
                    pod: &tandem::facts::Doc::from(&pod),
                    namespace: &tandem::facts::Namespace {
                        name: ns.to_string(),
                        ..Default::default()
                    },
                    templates: &set,
                    capabilities: &caps,
                    policy: &tandem::facts::Policy::default(),
                })
                .unwrap_or_else(|e| panic!("{case}: {e}"));
                assert!(!whole.gates.is_empty(), "{case}: nothing explained");
                whole.gates.clear();
                let body = serde_json::to_vec(&review).unwrap();
                let answer = tandem::admission::review(&body, &ctx).unwrap();
                let parsed = answer
                    .decision
                    .unwrap_or_else(|| panic!("{case}: no decision: {}", answer.note));
                assert_eq!(
                    serde_json::to_value(&parsed).unwrap(),
                    serde_json::to_value(&whole).unwrap(),
                    "{case}: the decisions differ"
                );
                assert_eq!(
                    ops(&parsed.patch),
                    ops(&whole.patch),
                    "{case}: the patches differ"
                );
                *seen.entry(answer.outcome.as_str()).or_default() += 1;
            }
        }
    }
    for kind in ["patched", "allowed", "denied"] {
        assert!(
            seen.get(kind).copied().unwrap_or(0) > 10,
            "{kind}: {seen:?}"
        );
    }
}
