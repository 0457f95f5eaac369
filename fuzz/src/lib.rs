//! Shared pieces of the fuzz targets: the example templates (loaded once) and
//! the invariants every target checks on a decision's patch. A violated
//! invariant panics, so libFuzzer records it as a crash.

use std::sync::LazyLock;

use json_patch::PatchOperation;
use serde_json::Value;
use tandem::engine::{self, Decision, Input, Outcome};
use tandem::facts::{self, Capabilities, Doc, Namespace, OnMissing, Policy};
use tandem::template::TemplateSet;

/// The annotations Tandem may legitimately rewrite: the status record (it
/// grows with each injection and replaces one it cannot read) and the
/// autoscaler's list of local volumes (it grows with the injected emptyDirs).
/// Every other `add` must land on a path the pod does not have yet.
pub const REWRITABLE: &[&str] = &[
    "/metadata/annotations/tandem.dev~1status",
    "/metadata/annotations/cluster-autoscaler.kubernetes.io~1safe-to-evict-local-volumes",
];

/// The templates in `examples/templates` (built into Tandem), as
/// `tandem serve --config examples/templates` loads them.
pub fn example_templates() -> &'static TemplateSet {
    static SET: LazyLock<TemplateSet> = LazyLock::new(|| {
        let all = tandem::template::examples()
            .unwrap_or_else(|e| panic!("the example templates do not load: {e:?}"));
        TemplateSet::new(all).expect("example template names are unique")
    });
    &SET
}

/// One set of namespace facts, capabilities and policy a pod is decided under.
pub struct Setting {
    pub namespace: Namespace,
    pub capabilities: Capabilities,
    pub policy: Policy,
}

/// The settings the engine targets decide every pod under: the defaults
/// (native sidecars, warn on missing) in the pod's own namespace, and an old
/// cluster (no native sidecars, deny on missing) whose namespace asks for
/// templates by default and labels the pod's namespace.
pub fn settings(pod: &Value) -> Vec<Setting> {
    let ns = pod
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or("default")
        .to_string();
    let mut old = Namespace {
        name: ns.clone(),
        ..Namespace::default()
    };
    old.labels
        .insert("kubernetes.io/metadata.name".into(), ns.clone());
    old.annotations.insert(
        facts::INJECT_ANNOTATION.into(),
        "log-shipper,log-adapter".into(),
    );
    vec![
        Setting {
            namespace: Namespace {
                name: ns,
                ..Namespace::default()
            },
            capabilities: Capabilities::default(),
            policy: Policy::default(),
        },
        Setting {
            namespace: old,
            capabilities: Capabilities {
                native_sidecars: false,
                source: "fuzz: Kubernetes 1.28".into(),
            },
            policy: Policy {
                on_missing: OnMissing::Deny,
                ..Policy::default()
            },
        },
    ]
}

pub fn decide(pod: &Value, templates: &TemplateSet, s: &Setting) -> Result<Decision, String> {
    engine::decide(&Input {
        pod: &Doc::from(pod),
        namespace: &s.namespace,
        templates,
        capabilities: &s.capabilities,
        policy: &s.policy,
    })
    .map_err(|e| e.to_string())
}

/// Checks a decision made on `pod` and returns the patched pod:
/// - the outcome and the patch agree (a patch only with `Patched`, never empty then);
/// - every warning passes the API server intact (at most 119 characters);
/// - the patch only adds, never onto a value the pod already has (except
///   [`REWRITABLE`]), and applies with `json_patch`.
pub fn check_decision(pod: &Value, d: &Decision) -> Value {
    match d.outcome {
        Outcome::Patched => assert!(!d.patch.is_empty(), "Patched with an empty patch"),
        _ => assert!(
            d.patch.is_empty(),
            "{:?} carries a patch: {:?}",
            d.outcome,
            d.patch
        ),
    }
    for w in &d.warnings {
        assert!(
            w.chars().count() <= engine::MAX_WARNING_CHARS,
            "warning longer than {} characters: {w:?}",
            engine::MAX_WARNING_CHARS
        );
    }
    apply_checked(pod, &d.patch.operations())
}

/// Applies `patch` to a copy of `pod` one operation at a time, asserting that
/// each is an `add` that does not overwrite anything but [`REWRITABLE`].
pub fn apply_checked(pod: &Value, patch: &[PatchOperation]) -> Value {
    let mut out = pod.clone();
    for op in patch {
        let PatchOperation::Add(add) = op else {
            panic!("not an add operation: {op:?}");
        };
        let path = add.path.to_string();
        if !REWRITABLE.contains(&path.as_str()) {
            let existing = out.pointer(&path);
            let is_array_slot = add
                .path
                .parent()
                .and_then(|p| out.pointer(p.as_str()))
                .is_some_and(Value::is_array);
            assert!(
                is_array_slot || existing.is_none_or(Value::is_null),
                "patch overwrites {path}: {:?} -> {:?}",
                existing,
                add.value
            );
        }
        json_patch::patch(&mut out, std::slice::from_ref(op))
            .unwrap_or_else(|e| panic!("patch operation {op:?} does not apply: {e}\nfull patch: {patch:?}"));
    }
    out
}

/// Decides `pod` under `s`, checks the decision, and when it patched, checks
/// that deciding the patched pod again changes nothing.
pub fn decide_twice(pod: &Value, templates: &TemplateSet, s: &Setting) {
    let Ok(first) = decide(pod, templates, s) else {
        return;
    };
    let patched = check_decision(pod, &first);
    if first.patch.is_empty() {
        return;
    }
    let second = decide(&patched, templates, s).unwrap_or_else(|e| {
        panic!("the patched pod is malformed: {e}\npatch: {:?}", first.patch)
    });
    check_decision(&patched, &second);
    assert!(
        second.patch.is_empty(),
        "second admission changes the pod again\nfirst: {}\nfirst patch: {:?}\nsecond: {}\nsecond patch: {:?}",
        first.summary(),
        first.patch,
        second.summary(),
        second.patch
    );
}
