//! Pod Security: what a template adds is held to the namespace's enforced
//! level, so a compliant pod is never rejected over a container its author
//! never wrote. Every patch is applied and the result checked again.

mod common;

use common::*;
use serde_json::{Value, json};
use tandem::engine::{Outcome, SkipReason, Verdict, pod_violations};
use tandem::facts::{Doc, INJECT_ANNOTATION, Level, Standard, Version};

const ENFORCE: &str = "pod-security.kubernetes.io/enforce";

/// A pod restricted accepts, asking for `agent`.
fn compliant_pod() -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "shop", "annotations": {INJECT_ANNOTATION: "agent"}},
        "spec": {
            "securityContext": {"runAsNonRoot": true, "runAsUser": 1000,
                                "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{"name": "app", "image": "example.com/shop:1",
                "securityContext": {"allowPrivilegeEscalation": false,
                                    "capabilities": {"drop": ["ALL"]}}}]
        }
    })
}

/// A template `agent` whose container is changed by `change` from one
/// restricted accepts on its own.
fn agent(change: impl Fn(&mut Value)) -> Ctx {
    let mut spec = json!({
        "pattern": "sidecar",
        "containers": [{"name": "agent", "image": "example.com/agent:1",
            "securityContext": {"allowPrivilegeEscalation": false, "runAsNonRoot": true,
                "seccompProfile": {"type": "RuntimeDefault"},
                "capabilities": {"drop": ["ALL"]}}}],
        "volumes": [{"name": "agent-scratch", "emptyDir": {}}]
    });
    change(&mut spec);
    Ctx::new(template_set(&[template_doc("agent", spec)]))
}

fn verdict(ctx: &Ctx, pod: &Value) -> (Verdict, Injection) {
    let r = ctx.inject(pod);
    let v = r.decision.templates[0].verdict.clone();
    (v, r)
}

fn injected(v: &Verdict) -> bool {
    matches!(v, Verdict::Injected { .. })
}

fn at(level: Level) -> Standard {
    Standard {
        level,
        version: Version::Latest,
    }
}

#[test]
fn a_compliant_template_is_injected_and_the_pod_still_complies() {
    for level in ["baseline", "restricted"] {
        let ctx = agent(|_| {}).ns_label(ENFORCE, level);
        let (v, r) = verdict(&ctx, &compliant_pod());
        assert!(injected(&v), "{level}: {v:?}");
        assert_eq!(
            pod_violations(&Doc::from(&r.pod), at(Level::Restricted)),
            vec![],
            "{level}"
        );
    }
}

/// Each field a template's container or volume can get wrong, the levels
/// that forbid it, and the field the warning must name.
#[test]
fn every_rule_a_template_can_break_skips_it_at_the_levels_that_forbid_it() {
    type Change = fn(&mut Value);
    let cases: Vec<(&str, bool, Change)> = vec![
        // (field named, baseline forbids it too, change)
        ("securityContext.privileged", true, |s| {
            s["containers"][0]["securityContext"]["privileged"] = json!(true)
        }),
        ("capabilities.add", true, |s| {
            s["containers"][0]["securityContext"]["capabilities"]["add"] = json!(["SYS_ADMIN"])
        }),
        ("ports.hostPort", true, |s| {
            s["containers"][0]["ports"] = json!([{"containerPort": 9000, "hostPort": 9000}])
        }),
        (
            "hostPath",
            true,
            |s| s["volumes"] = json!([{"name": "agent-scratch", "hostPath": {"path": "/var/log"}}]),
        ),
        ("seccompProfile.type", true, |s| {
            s["containers"][0]["securityContext"]["seccompProfile"] = json!({"type": "Unconfined"})
        }),
        ("appArmorProfile.type", true, |s| {
            s["containers"][0]["securityContext"]["appArmorProfile"] = json!({"type": "Unconfined"})
        }),
        ("seLinuxOptions.type", true, |s| {
            s["containers"][0]["securityContext"]["seLinuxOptions"] = json!({"type": "spc_t"})
        }),
        ("procMount", true, |s| {
            s["containers"][0]["securityContext"]["procMount"] = json!("Unmasked")
        }),
        ("windowsOptions.hostProcess", true, |s| {
            s["containers"][0]["securityContext"]["windowsOptions"] = json!({"hostProcess": true})
        }),
        ("allowPrivilegeEscalation", false, |s| {
            s["containers"][0]["securityContext"]["allowPrivilegeEscalation"] = json!(true)
        }),
        ("runAsNonRoot", false, |s| {
            s["containers"][0]["securityContext"]["runAsNonRoot"] = json!(false)
        }),
        ("runAsUser", false, |s| {
            s["containers"][0]["securityContext"]["runAsUser"] = json!(0)
        }),
        ("capabilities.drop", false, |s| {
            s["containers"][0]["securityContext"]["capabilities"] = json!({"drop": ["NET_RAW"]})
        }),
        ("capabilities.add", false, |s| {
            s["containers"][0]["securityContext"]["capabilities"]["add"] = json!(["CHOWN"])
        }),
        (
            "volume agent-scratch: gitRepo",
            false,
            |s| s["volumes"] = json!([{"name": "agent-scratch", "gitRepo": {"repository": "r"}}]),
        ),
    ];
    for (field, baseline_forbids, change) in cases {
        for level in ["baseline", "restricted"] {
            let ctx = agent(change).ns_label(ENFORCE, level);
            let (v, r) = verdict(&ctx, &compliant_pod());
            let forbidden = level == "restricted" || baseline_forbids;
            if !forbidden {
                assert!(injected(&v), "{field} at {level}: {v:?}");
                continue;
            }
            assert_eq!(
                v,
                Verdict::Skipped {
                    reason: SkipReason::PodSecurity
                },
                "{field} at {level}"
            );
            let w = r.warnings();
            assert!(
                w.contains("agent skipped") && w.contains(field) && w.contains(level),
                "{field} at {level}: the warning names the template, the field and the level: {w}"
            );
            // Nothing of the template reached the pod, which still complies.
            assert_eq!(names(&r.pod, "/spec/initContainers"), Vec::<String>::new());
            assert_eq!(
                pod_violations(&Doc::from(&r.pod), at(Level::Restricted)),
                vec![],
                "{field} at {level}"
            );
        }
    }
}

#[test]
fn on_conflict_fail_denies_and_a_dry_run_reports() {
    let ctx = agent(|s| {
        s["onConflict"] = json!("fail");
        s["containers"][0]["securityContext"]["privileged"] = json!(true);
    })
    .ns_label(ENFORCE, "baseline");
    let d = ctx.decide(&compliant_pod()).unwrap();
    match &d.outcome {
        Outcome::Denied { message } => assert!(
            message.contains("breaks PodSecurity baseline:latest")
                && message.contains("privileged"),
            "{message}"
        ),
        other => panic!("{other:?}"),
    }
    let ctx = agent(|s| {
        s["mode"] = json!("dryRun");
        s["containers"][0]["securityContext"]["privileged"] = json!(true);
    })
    .ns_label(ENFORCE, "baseline");
    let (v, r) = verdict(&ctx, &compliant_pod());
    assert!(matches!(v, Verdict::DryRun { .. }), "{v:?}");
    assert!(
        r.warnings().contains("breaks PodSecurity"),
        "{}",
        r.warnings()
    );
}

#[test]
fn a_pod_that_already_breaks_the_level_is_left_to_the_api_server() {
    let ctx =
        agent(|s| s["containers"][0]["securityContext"]["allowPrivilegeEscalation"] = json!(true))
            .ns_label(ENFORCE, "restricted");
    let mut pod = compliant_pod();
    pod["spec"]["hostNetwork"] = json!(true);
    let (v, r) = verdict(&ctx, &pod);
    assert!(injected(&v), "{v:?}");
    let gate = r
        .decision
        .gates
        .iter()
        .find(|g| g.gate == "pod security")
        .unwrap();
    assert!(gate.why.contains("the API server decides"), "{}", gate.why);
}

#[test]
fn warn_and_audit_levels_only_warn() {
    for mode in ["warn", "audit"] {
        let ctx = agent(|s| {
            s["containers"][0]["securityContext"]["allowPrivilegeEscalation"] = json!(true)
        })
        .ns_label(&format!("pod-security.kubernetes.io/{mode}"), "restricted")
        .ns_label(ENFORCE, "baseline");
        let (v, r) = verdict(&ctx, &compliant_pod());
        assert!(injected(&v), "{mode}: {v:?}");
        assert!(
            r.warnings().contains("allowPrivilegeEscalation")
                && r.warnings().contains("restricted:latest"),
            "{mode}: {}",
            r.warnings()
        );
    }
}

#[test]
fn the_version_label_picks_the_rules() {
    let root = |s: &mut Value| s["containers"][0]["securityContext"]["runAsUser"] = json!(0);
    for (version, skipped) in [("v1.22", false), ("v1.23", true), ("latest", true)] {
        let ctx = agent(root)
            .ns_label(ENFORCE, "restricted")
            .ns_label("pod-security.kubernetes.io/enforce-version", version);
        let (v, _) = verdict(&ctx, &compliant_pod());
        assert_eq!(!injected(&v), skipped, "{version}: {v:?}");
    }
}

#[test]
fn a_label_the_api_server_cannot_read_counts_as_restricted_with_a_warning() {
    let ctx =
        agent(|s| s["containers"][0]["securityContext"]["allowPrivilegeEscalation"] = json!(true))
            .ns_label(ENFORCE, "Restricted")
            .ns_label("pod-security.kubernetes.io/enforce-version", "1.30");
    let (v, r) = verdict(&ctx, &compliant_pod());
    assert_eq!(
        v,
        Verdict::Skipped {
            reason: SkipReason::PodSecurity
        }
    );
    let w = r.warnings();
    assert!(
        w.contains("applies restricted") && w.contains("applies latest"),
        "{w}"
    );
}

/// A template that sets nothing the pod sets for it: the pod's
/// runAsNonRoot and seccomp profile are what the API server checks.
#[test]
fn containers_inherit_the_pods_security_context() {
    let bare = |s: &mut Value| {
        s["containers"][0]["securityContext"] =
            json!({"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}})
    };
    let ctx = agent(bare).ns_label(ENFORCE, "restricted");
    let (v, _) = verdict(&ctx, &compliant_pod());
    assert!(injected(&v), "{v:?}");
    let mut pod = compliant_pod();
    pod["spec"]["securityContext"] = json!({"runAsUser": 1000});
    pod["spec"]["containers"][0]["securityContext"]["runAsNonRoot"] = json!(true);
    pod["spec"]["containers"][0]["securityContext"]["seccompProfile"] =
        json!({"type": "RuntimeDefault"});
    let (v, r) = verdict(&ctx, &pod);
    assert_eq!(
        v,
        Verdict::Skipped {
            reason: SkipReason::PodSecurity
        },
        "{}",
        r.warnings()
    );
}

/// The webhook reads only the pod fields the engine declares
/// (`engine::POD_READS`); Pod Security reads more of them than any other
/// step. Every shape here must get the same decision from the webhook's
/// lean parse as from the whole pod.
#[test]
fn the_webhook_decides_pod_security_on_the_fields_it_parses() {
    struct Labelled(tandem::facts::Namespace);
    impl tandem::facts::NamespaceFacts for Labelled {
        fn get(&self, _name: &str) -> Option<tandem::facts::Namespace> {
            Some(self.0.clone())
        }
    }
    type Change = fn(&mut Value);
    let shapes: [(&str, Change); 8] = [
        ("compliant", |_| {}),
        ("hostNetwork", |p| p["spec"]["hostNetwork"] = json!(true)),
        ("hostPID", |p| p["spec"]["hostPID"] = json!(true)),
        ("privileged app", |p| {
            p["spec"]["containers"][0]["securityContext"]["privileged"] = json!(true)
        }),
        ("root pod", |p| {
            p["spec"]["securityContext"]["runAsUser"] = json!(0)
        }),
        ("unsafe sysctl", |p| {
            p["spec"]["securityContext"]["sysctls"] =
                json!([{"name": "kernel.msgmax", "value": "1"}])
        }),
        ("apparmor annotation", |p| {
            p["metadata"]["annotations"]["container.apparmor.security.beta.kubernetes.io/app"] =
                json!("unconfined")
        }),
        ("hostPath volume", |p| {
            p["spec"]["volumes"] = json!([{"name": "h", "hostPath": {"path": "/"}}])
        }),
    ];
    let envelope = fixture("admission-v1.36/create.json");
    let ns = envelope["request"]["namespace"]
        .as_str()
        .unwrap()
        .to_string();
    let mut skipped = 0;
    for level in ["baseline", "restricted"] {
        let ctx = agent(|s| {
            s["containers"][0]["securityContext"] = json!({"allowPrivilegeEscalation": true})
        })
        .in_namespace(&ns)
        .ns_label(ENFORCE, level);
        let facts = Labelled(ctx.namespace.clone());
        let admission = tandem::admission::Context {
            templates: &ctx.templates,
            namespaces: &facts,
            capabilities: &ctx.caps,
            policy: &ctx.policy,
        };
        for (shape, change) in shapes {
            let mut pod = compliant_pod();
            change(&mut pod);
            let mut whole = ctx.decide(&pod).unwrap();
            whole.gates.clear();
            let mut review = envelope.clone();
            review["request"]["object"] = pod;
            let answer =
                tandem::admission::review(&serde_json::to_vec(&review).unwrap(), &admission)
                    .unwrap();
            let parsed = answer.decision.expect("a decision");
            assert_eq!(
                serde_json::to_value(&parsed).unwrap(),
                serde_json::to_value(&whole).unwrap(),
                "{level}, {shape}: the decisions differ"
            );
            skipped += usize::from(
                parsed.templates[0].verdict
                    == Verdict::Skipped {
                        reason: SkipReason::PodSecurity,
                    },
            );
        }
    }
    // The compliant pod at restricted; every other shape breaks the level
    // itself and is left to the API server.
    assert_eq!(skipped, 1);
}
