//! `tandem policy`: the template set compiled to one MutatingAdmissionPolicy.
//!
//! The compiled CEL is evaluated here with the `cel` crate, the way the API
//! server runs a policy (match conditions, variables lazily, the JSONPatch
//! mutation), and the patch it gives is applied to the pod. The engine's
//! patch is applied to the same pod. Wherever the policy changes a pod, the
//! two pods must be equal; wherever it leaves a pod the engine changes, it
//! must say why (`variables.blocked`), and in policy mode the companion
//! must reject the pod with that reason.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use common::run::{Run, tandem};
use common::*;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingAdmissionPolicy, MutatingAdmissionPolicyBinding, ValidatingAdmissionPolicy,
    ValidatingAdmissionPolicyBinding,
};
use serde_json::{Value, json};
use tandem::engine::Input;
use tandem::facts::{Doc, INJECT_ANNOTATION, Namespace, Policy, STATUS_ANNOTATION};
use tandem::install::policy::{self, Reach};
use tandem::install::webhook::NamespaceScope;
use tandem::template::TemplateSet;

// ------------------------------------------------------------ the CEL runtime

/// The compiled set, its expressions parsed once, ready to run on pods
/// under the API server's rules (`common::cel`).
struct Compiled {
    env: Arc<::cel::Env>,
    policy: cel::Mutating,
    require: cel::Validating,
    warnings: cel::Validating,
}

fn reach() -> Reach {
    Reach {
        namespace: "tandem-system".into(),
        scope: NamespaceScope::ClusterWide,
        excluded_namespaces: Vec::new(),
        extra_labels: BTreeMap::new(),
    }
}

fn compile_set(set: &TemplateSet) -> Compiled {
    let env = cel::env();
    let c = policy::compile(set, &reach()).unwrap();
    let spec = c.policy.spec.clone().unwrap();
    assert_eq!(spec.mutations.as_ref().unwrap().len(), 1);
    let validating = |p: &ValidatingAdmissionPolicy| {
        cel::Validating::new(&env, p.spec.as_ref().unwrap()).unwrap_or_else(|e| panic!("{e}"))
    };
    Compiled {
        policy: cel::Mutating::new(&env, &spec).unwrap_or_else(|e| panic!("{e}")),
        require: validating(&c.require.0),
        warnings: validating(&c.warnings.0),
        env,
    }
}

/// What the policy did to one pod.
#[derive(Debug)]
enum Effect {
    /// A match condition was false: named.
    NotMatched(String),
    /// The mutation gave no operations; `blocked` is why the policy left
    /// the pod to the webhook (empty when the engine changes nothing either).
    Unchanged {
        blocked: String,
    },
    Patched(Value),
}

/// Runs the policy on `pod` in `namespace` as the API server would. An
/// expression that fails is a bug here: under `failurePolicy: Ignore` it
/// would leave a pod uninjected that the engine injects.
fn run(c: &Compiled, pod: &Value, namespace: &Value) -> Effect {
    let request = cel::Request::create(pod, namespace);
    match c.policy.run(&c.env, &request) {
        cel::Run::NotMatched(name) => Effect::NotMatched(name),
        cel::Run::Failed(f) => panic!("{:?} fails: {}\npod: {pod}", f.site, f.message()),
        cel::Run::Mutated {
            object, variables, ..
        } => {
            if object == request.object {
                let blocked = match variables.get("blocked") {
                    Some(::cel::Value::String(s)) => s.to_string(),
                    _ => String::new(),
                };
                Effect::Unchanged { blocked }
            } else {
                Effect::Patched(object)
            }
        }
        cel::Run::Validated(_) => unreachable!(),
    }
}

/// Expressions the policy evaluates for one pod.
fn evaluated(policy: &cel::Mutating, env: &Arc<::cel::Env>, pod: &Value, ns: &Value) -> usize {
    policy.evaluated(env, &cel::Request::create(pod, ns))
}

// ------------------------------------------------------------ pods to try

/// Templates beside the examples that reach every branch of the compiler:
/// classic placement, `afterUserInit`, app globs, env and envFrom, host
/// ports, label-selector operators and a namespace selector, and the kinds
/// that need the webhook.
const TRICKY: &str = r#"
apiVersion: tandem.dev/v1alpha1
kind: SidecarTemplate
metadata: { name: classic-proxy }
spec:
  pattern: ambassador
  lifecycle: classic
  selector:
    matchExpressions:
      - { key: proxy, operator: In, values: ["on", "yes"] }
      - { key: tier, operator: NotIn, values: [db] }
  containers:
    - name: proxy
      image: example.com/proxy:1
      ports: [{ containerPort: 15001, hostPort: 15001 }]
      resources: { requests: { cpu: 10m, memory: 16Mi }, limits: { memory: 32Mi } }
  app:
    containers: ["web*", "a?p"]
    env:
      - { name: HTTP_PROXY, value: "http://localhost:15001" }
      - name: POD_IP
        valueFrom: { fieldRef: { fieldPath: status.podIP } }
    envFrom:
      - configMapRef: { name: proxy-env }
---
apiVersion: tandem.dev/v1alpha1
kind: SidecarTemplate
metadata: { name: late-init }
spec:
  pattern: init
  position: afterUserInit
  namespaceSelector:
    matchExpressions:
      - { key: team, operator: Exists }
      - { key: legacy, operator: DoesNotExist }
  selector: {}
  initContainers:
    - name: migrate
      image: example.com/migrate:1
      args: ["--steps", "3"]
    - name: warm
      image: example.com/warm:1
  volumes:
    - name: warm-cache
      emptyDir: { sizeLimit: 64Mi }
  app:
    volumeMounts:
      - { name: warm-cache, mountPath: /cache/ }
---
apiVersion: tandem.dev/v1alpha1
kind: SidecarTemplate
metadata: { name: audited }
spec:
  pattern: sidecar
  mode: dryRun
  containers: [{ name: auditor, image: example.com/audit:1 }]
---
apiVersion: tandem.dev/v1alpha1
kind: SidecarTemplate
metadata: { name: strict }
spec:
  pattern: sidecar
  onConflict: fail
  containers: [{ name: strict, image: example.com/strict:1 }]
"#;

fn tricky_templates() -> TemplateSet {
    templates(TRICKY)
}

/// Namespaces: plain, with a default list, opting out, with team labels.
fn namespaces(set: &TemplateSet) -> Vec<(String, Value, Namespace)> {
    let first = set.all().next().unwrap().name.clone();
    let mut variants: Vec<(Labels, Annotations)> = vec![
        (vec![], vec![]),
        (vec![("team", "shop")], vec![]),
        (vec![("team", "shop"), ("legacy", "1")], vec![]),
        (vec![], vec![(INJECT_ANNOTATION, first)]),
        (
            vec![("team", "shop")],
            vec![(INJECT_ANNOTATION, "none".into())],
        ),
        // Pod Security: the webhook holds templates to the level; a policy
        // steps aside where a template's additions could break it.
        (
            vec![("pod-security.kubernetes.io/enforce", "restricted")],
            vec![],
        ),
        (
            vec![
                ("pod-security.kubernetes.io/enforce", "baseline"),
                ("pod-security.kubernetes.io/warn", "restricted"),
            ],
            vec![],
        ),
    ];
    // Parameters set by the namespace, alone and under its default list.
    for mut annotations in common::parameter_variants(set) {
        variants.push((vec![], annotations.clone()));
        if let Some(t) = set.all().find(|t| !t.spec.parameters.is_empty()) {
            annotations.push((INJECT_ANNOTATION, t.name.clone()));
            variants.push((vec![], annotations));
        }
    }
    variants
        .into_iter()
        .map(|(labels, annotations)| {
            let mut l: BTreeMap<String, String> = labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            l.insert("kubernetes.io/metadata.name".into(), "shop".into());
            let a: BTreeMap<String, String> = annotations
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect();
            let object = json!({
                "apiVersion": "v1", "kind": "Namespace",
                "metadata": { "name": "shop", "labels": l, "annotations": a },
            });
            let name = format!("namespace labels {labels:?} annotations {annotations:?}");
            (name, object, Namespace::new("shop", l, a))
        })
        .collect()
}

// ------------------------------------------------------------ equivalence

/// Templates that overlap each other: two log tailers sharing a volume,
/// a mount, an env var and an envFrom source (the engine reuses them), an
/// init template sharing the volume, and a rival that sets the same env
/// var differently (the engine skips whichever comes second). All meet the
/// restricted Pod Security level, as a platform team's templates do; the
/// tricky set holds one that does not.
const OVERLAPPING: &str = r#"
apiVersion: tandem.dev/v1alpha1
kind: SidecarTemplate
metadata: { name: tail-a }
spec:
  pattern: sidecar
  selector: { matchLabels: { logs: "on" } }
  containers:
    - name: tailer-a
      image: example.com/tail:1
      volumeMounts: [{ name: app-logs, mountPath: /var/log/app }]
      resources: { requests: { cpu: 10m, memory: 16Mi } }
      securityContext:
        allowPrivilegeEscalation: false
        capabilities: { drop: [ALL] }
        runAsNonRoot: true
        seccompProfile: { type: RuntimeDefault }
  volumes: [{ name: app-logs, emptyDir: {} }]
  app:
    volumeMounts: [{ name: app-logs, mountPath: /var/log/app }]
    env: [{ name: LOG_DIR, value: /var/log/app }]
---
apiVersion: tandem.dev/v1alpha1
kind: SidecarTemplate
metadata: { name: tail-b }
spec:
  pattern: sidecar
  lifecycle: classic
  containers:
    - name: tailer-b
      image: example.com/tail:2
      volumeMounts: [{ name: app-logs, mountPath: /var/log/app }]
      securityContext:
        allowPrivilegeEscalation: false
        capabilities: { drop: [ALL] }
        runAsNonRoot: true
        seccompProfile: { type: RuntimeDefault }
  volumes: [{ name: app-logs, emptyDir: {} }]
  app:
    containers: ["web*"]
    volumeMounts: [{ name: app-logs, mountPath: /var/log/app }]
    env: [{ name: LOG_DIR, value: /var/log/app }]
    envFrom: [{ configMapRef: { name: logging } }]
---
apiVersion: tandem.dev/v1alpha1
kind: SidecarTemplate
metadata: { name: prep }
spec:
  pattern: init
  position: afterUserInit
  onConflict: fail
  initContainers:
    - name: prep
      image: example.com/prep:1
      volumeMounts: [{ name: app-logs, mountPath: /logs }]
      securityContext:
        allowPrivilegeEscalation: false
        capabilities: { drop: [ALL] }
        runAsNonRoot: true
        seccompProfile: { type: RuntimeDefault }
  volumes: [{ name: app-logs, emptyDir: {} }]
---
apiVersion: tandem.dev/v1alpha1
kind: SidecarTemplate
metadata: { name: rival }
spec:
  pattern: sidecar
  containers:
    - name: rival
      image: example.com/rival:1
      ports: [{ containerPort: 8080 }]
      securityContext:
        allowPrivilegeEscalation: false
        capabilities: { drop: [ALL] }
        runAsNonRoot: true
        seccompProfile: { type: RuntimeDefault }
  app:
    env: [{ name: LOG_DIR, value: /elsewhere }]
"#;

fn overlapping_templates() -> TemplateSet {
    templates(OVERLAPPING)
}

/// How often each outcome was seen, so a change that makes the policy
/// leave every pod alone cannot pass unnoticed.
#[derive(Default, Debug)]
struct Tally {
    /// The engine injects at least one template, and the policy makes
    /// exactly its pod.
    injected_by_policy: usize,
    /// The engine injects, and the policy leaves the pod to the webhook.
    injected_by_webhook: usize,
    /// Of those, pods where a template was skipped for a conflict.
    skipped_by_policy: usize,
    /// The engine writes only the status (nothing injected), as the policy.
    status_only: usize,
    untouched_by_both: usize,
    /// The engine leaves the pod as it is; the policy cannot tell, and the
    /// companion rejects it, naming the reason.
    rejected_unchanged: usize,
    already_injected: usize,
    /// Why the policy left pods the engine changes, by reason.
    reasons: BTreeMap<String, usize>,
}

impl Tally {
    /// Of the pods the engine injects (without a status from before), the
    /// share the policy injects itself.
    fn coverage(&self) -> f64 {
        let all = self.injected_by_policy + self.injected_by_webhook;
        self.injected_by_policy as f64 / all.max(1) as f64
    }
}

/// The engine's own words for the warnings the warnings policy carries:
/// templates skipped for a conflict, templates that do not exist.
fn engine_warned(d: &tandem::engine::Decision) -> (Vec<String>, Vec<String>) {
    let (mut skipped, mut missing) = (Vec::new(), Vec::new());
    for w in &d.warnings {
        let w = w.strip_prefix("tandem: ").unwrap_or(w);
        if let Some(rest) = w.strip_prefix("requested template ") {
            missing.push(rest.trim_end_matches(" does not exist").to_string());
        } else if let Some((name, _)) = w.split_once(" skipped: ") {
            skipped.push(name.to_string());
        }
    }
    (skipped, missing)
}

fn equivalence(set: &TemplateSet, label: &str) -> Tally {
    let c = compile_set(set);
    let caps = native_caps();
    let engine_policy = Policy::default();
    let mut tally = Tally::default();
    let decide = |pod: &Value, ns: &Namespace| {
        tandem::engine::decide(&Input {
            pod: &Doc::from(pod),
            namespace: ns,
            templates: set,
            capabilities: &caps,
            policy: &engine_policy,
        })
    };
    for (ns_case, ns_object, ns) in namespaces(set) {
        for (pod_case, shape) in pods() {
            for (variant, annotations, labels) in pod_variants(set) {
                let pod = with_metadata(&shape, &annotations, &labels);
                let case = format!("{label}: {pod_case}, {variant}, {ns_case}");
                let d = decide(&pod, &ns).unwrap_or_else(|e| panic!("{case}: {e}"));
                let by_engine = cel::stored(&apply(&pod, &d.patch));
                let stored = cel::stored(&pod);
                let injects = d.injected().next().is_some();
                let denies = matches!(d.outcome, tandem::engine::Outcome::Denied { .. });
                let effect = run(&c, &pod, &ns_object);
                // Policy mode: the companion after the mutation.
                let after = match &effect {
                    Effect::Patched(p) => p.clone(),
                    _ => stored.clone(),
                };
                let verdict = c
                    .require
                    .verdict(&c.env, &cel::Request::create(&after, &ns_object));
                match effect {
                    Effect::Patched(by_policy) => {
                        assert!(
                            !denies && by_policy == by_engine,
                            "{case}: the policy and the engine disagree ({})\npolicy: {}\nengine: {}",
                            d.summary(),
                            serde_json::to_string_pretty(&by_policy).unwrap(),
                            serde_json::to_string_pretty(&by_engine).unwrap()
                        );
                        assert_well_formed(&by_policy);
                        assert_preserved(&pod, &by_policy);
                        assert!(
                            verdict.is_none(),
                            "{case}: the companion rejects {verdict:?}"
                        );
                        // Hybrid mode: the webhook after the policy finds
                        // nothing left to do; the policy again neither.
                        let webhook = decide(&by_policy, &ns).unwrap();
                        assert!(
                            webhook.patch.is_empty(),
                            "{case}: the webhook changes what the policy injected: {}",
                            webhook.summary()
                        );
                        assert!(
                            matches!(run(&c, &by_policy, &ns_object), Effect::NotMatched(_)),
                            "{case}: the policy changes the pod a second time"
                        );
                        // The warnings the engine gives, in policy mode.
                        let (warnings, _) = c
                            .warnings
                            .warnings(&c.env, &cel::Request::create(&by_policy, &ns_object))
                            .unwrap_or_else(|f| panic!("{case}: warnings fail: {}", f.message()));
                        let (skipped, missing) = engine_warned(&d);
                        for name in skipped.iter().chain(&missing) {
                            assert!(
                                warnings.iter().any(|w| w.contains(name.as_str())),
                                "{case}: the engine warns about {name}, policy mode does not: {warnings:?} / {:?}",
                                d.warnings
                            );
                        }
                        if d.warnings
                            .iter()
                            .any(|w| w.starts_with("pod request grows"))
                        {
                            assert!(
                                warnings.iter().any(|w| w.contains("pod request grows")),
                                "{case}: no word of the growth: {warnings:?}"
                            );
                        }
                        if injects {
                            tally.injected_by_policy += 1;
                            if !skipped.is_empty() {
                                tally.skipped_by_policy += 1;
                            }
                        } else {
                            tally.status_only += 1;
                        }
                    }
                    Effect::NotMatched(name) => {
                        if by_engine == stored && !denies {
                            tally.untouched_by_both += 1;
                        } else {
                            assert_eq!(name, "not-injected-yet", "{case}: {}", d.summary());
                            tally.already_injected += 1;
                        }
                    }
                    Effect::Unchanged { blocked } => {
                        if by_engine == stored && !denies && blocked.is_empty() {
                            assert!(verdict.is_none(), "{case}: rejected: {verdict:?}");
                            tally.untouched_by_both += 1;
                            continue;
                        }
                        assert!(
                            !blocked.is_empty(),
                            "{case}: the engine changes the pod, the policy does not and says nothing ({})",
                            d.summary()
                        );
                        // Policy mode never admits it uninjected: the
                        // companion rejects it, naming the reason.
                        let denial = verdict.unwrap_or_else(|| {
                            panic!(
                                "{case}: policy mode admits a pod the engine changes ({blocked})"
                            )
                        });
                        assert!(
                            denial.message.contains(&blocked)
                                && denial.message.contains("hybrid mode"),
                            "{case}: {}",
                            denial.message
                        );
                        let reason = blocked
                            .split(':')
                            .next()
                            .unwrap_or_default()
                            .split_whitespace()
                            .filter(|w| !w.contains('-') && !set.all().any(|t| t.name == *w))
                            .collect::<Vec<_>>()
                            .join(" ");
                        *tally.reasons.entry(reason).or_default() += 1;
                        if injects {
                            tally.injected_by_webhook += 1;
                        } else if by_engine == stored && !denies {
                            // The engine would leave it (a template it
                            // skips); policy mode cannot tell, and rejects.
                            tally.rejected_unchanged += 1;
                        }
                    }
                }
            }
        }
    }
    tally
}

fn report(label: &str, tally: &Tally) {
    println!(
        "{label}: the policy injects {} of the {} pods the engine injects ({:.1}%); {tally:?}",
        tally.injected_by_policy,
        tally.injected_by_policy + tally.injected_by_webhook,
        100.0 * tally.coverage()
    );
}

#[test]
fn the_example_policy_makes_the_engines_change() {
    let tally = equivalence(&example_templates(), "examples");
    report("examples", &tally);
    assert!(tally.coverage() >= 0.95, "{tally:?}");
    assert!(
        tally.injected_by_policy >= 2000 && tally.status_only > 0 && tally.already_injected > 0,
        "{tally:?}"
    );
}

#[test]
fn the_tricky_policy_makes_the_engines_change() {
    let tally = equivalence(&tricky_templates(), "tricky");
    report("tricky", &tally);
    assert!(tally.injected_by_policy >= 900, "{tally:?}");
    assert!(tally.injected_by_webhook > 0, "{tally:?}");
}

#[test]
fn the_overlapping_policy_makes_the_engines_change() {
    let tally = equivalence(&overlapping_templates(), "overlapping");
    report("overlapping", &tally);
    assert!(tally.coverage() >= 0.95, "{tally:?}");
    assert!(
        tally.skipped_by_policy > 0,
        "the policy skips a rival as the engine does: {tally:?}"
    );
}

/// A pod the webhook injected before carries the status: the policy
/// leaves it alone.
#[test]
fn a_pod_the_webhook_injected_is_left_alone() {
    let set = example_templates();
    let c = compile_set(&set);
    let (_, ns_object, ns) = namespaces(&set).remove(0);
    let mut pod = pods().into_iter().find(|(n, _)| n == "bare").unwrap().1;
    annotate(&mut pod, INJECT_ANNOTATION, "log-shipper");
    let d = tandem::engine::decide(&Input {
        pod: &Doc::from(&pod),
        namespace: &ns,
        templates: &set,
        capabilities: &native_caps(),
        policy: &Policy::default(),
    })
    .unwrap();
    let injected = apply(&pod, &d.patch);
    assert!(annotation(&injected, STATUS_ANNOTATION).is_some());
    let effect = run(&c, &injected, &ns_object);
    assert!(
        matches!(&effect, Effect::NotMatched(n) if n == "not-injected-yet"),
        "{effect:?}"
    );
}

/// Several templates in one request, in the request's order, then a
/// selector's, with what they share added once (the equivalence tests try
/// both orders of every pair).
#[test]
fn several_templates_in_the_requests_order() {
    let set = overlapping_templates();
    let c = compile_set(&set);
    let (_, ns_object, _) = namespaces(&set).remove(0);
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": { "name": "p", "namespace": "shop", "labels": { "logs": "on" },
                      "annotations": { INJECT_ANNOTATION: "tail-b,prep" } },
        "spec": { "initContainers": [{ "name": "setup", "image": "x" }],
                  "containers": [{ "name": "web", "image": "x" }, { "name": "api", "image": "x" }] },
    });
    let Effect::Patched(out) = run(&c, &pod, &ns_object) else {
        panic!("not injected")
    };
    // tail-b and prep asked for, tail-a by its selector, in that order.
    let status = annotation(&out, STATUS_ANNOTATION).unwrap();
    let order: Vec<&str> = ["tail-b", "prep", "tail-a"]
        .into_iter()
        .filter(|n| status.contains(&format!("\"name\":\"{n}\"")))
        .collect();
    assert_eq!(order.len(), 3, "{status}");
    assert!(
        status.find("tail-b") < status.find("prep") && status.find("prep") < status.find("tail-a"),
        "{status}"
    );
    assert_eq!(
        names(&out, "/spec/volumes"),
        ["app-logs"],
        "shared, added once"
    );
    assert_eq!(
        names(&out, "/spec/initContainers"),
        ["tailer-a", "setup", "prep"],
        "tail-a natively before the user's, prep after"
    );
    assert_eq!(names(&out, "/spec/containers"), ["web", "api", "tailer-b"]);
    let web = &out["spec"]["containers"][0];
    assert_eq!(
        web["env"].as_array().unwrap().len(),
        1,
        "LOG_DIR once: {web}"
    );
    assert_eq!(web["volumeMounts"].as_array().unwrap().len(), 1, "{web}");
    assert_eq!(out["spec"]["containers"][1]["env"][0]["name"], "LOG_DIR");
}

/// Asking for nothing costs the fewest expressions, and one policy for the
/// set evaluates fewer than one policy per template did (the output of
/// this project before, kept in tests/fixtures), whatever the pod asks.
#[test]
fn one_policy_evaluates_fewer_expressions_than_one_per_template() {
    let env = cel::env();
    let set = example_templates();
    let c = compile_set(&set);
    let before: Vec<cel::Mutating> = per_template_policies(&env);
    let ns = opted_in_namespace(&[]);
    let mut seen = Vec::new();
    for (case, ask) in [
        ("asks for nothing", None),
        ("one template", Some("log-shipper")),
        (
            "three templates",
            Some("log-shipper,log-adapter,config-init"),
        ),
    ] {
        let annotations: Vec<(&str, &str)> =
            ask.map(|a| (INJECT_ANNOTATION, a)).into_iter().collect();
        let pod = bare_pod(&annotations, &[]);
        let now = evaluated(&c.policy, &env, &pod, &ns);
        let then: usize = before.iter().map(|p| evaluated(p, &env, &pod, &ns)).sum();
        println!("{case}: {now} expressions evaluated, {then} with one policy per template");
        assert!(now < then, "{case}: {now} >= {then}");
        seen.push(now);
    }
    assert!(seen[0] < seen[1] && seen[1] < seen[2], "{seen:?}");
}

fn per_template_policies(env: &Arc<::cel::Env>) -> Vec<cel::Mutating> {
    let text =
        std::fs::read_to_string(manifest_dir().join("tests/fixtures/policies-per-template.yaml"))
            .unwrap();
    serde_saphyr::from_multiple::<Value>(&text)
        .unwrap()
        .into_iter()
        .filter(|d| d["kind"] == "MutatingAdmissionPolicy")
        .map(|d| {
            cel::Mutating::new(env, &serde_json::from_value(d["spec"].clone()).unwrap()).unwrap()
        })
        .collect()
}

// ------------------------------------------------------------ the output

/// The documents of `tandem policy` output, checked to be exactly the
/// `k8s-openapi` v1 types: a field the types do not know would be lost in
/// the round trip.
struct Output {
    policies: Vec<MutatingAdmissionPolicy>,
    bindings: Vec<MutatingAdmissionPolicyBinding>,
    validating: Vec<ValidatingAdmissionPolicy>,
    validating_bindings: Vec<ValidatingAdmissionPolicyBinding>,
}

fn strict<T: serde::de::DeserializeOwned + serde::Serialize>(doc: &Value) -> T {
    let typed: T = serde_json::from_value(doc.clone()).unwrap();
    assert_eq!(
        &serde_json::to_value(&typed).unwrap(),
        doc,
        "unknown fields"
    );
    typed
}

fn typed_documents(yaml: &str) -> Output {
    let docs: Vec<Value> = serde_saphyr::from_multiple(yaml).unwrap();
    let mut out = Output {
        policies: Vec::new(),
        bindings: Vec::new(),
        validating: Vec::new(),
        validating_bindings: Vec::new(),
    };
    for doc in docs.into_iter().filter(|d| !d.is_null()) {
        assert_eq!(
            doc["apiVersion"], "admissionregistration.k8s.io/v1",
            "{doc}"
        );
        match doc["kind"].as_str() {
            Some("MutatingAdmissionPolicy") => out.policies.push(strict(&doc)),
            Some("MutatingAdmissionPolicyBinding") => out.bindings.push(strict(&doc)),
            Some("ValidatingAdmissionPolicy") => out.validating.push(strict(&doc)),
            Some("ValidatingAdmissionPolicyBinding") => out.validating_bindings.push(strict(&doc)),
            other => panic!("unexpected kind {other:?}"),
        }
    }
    out
}

#[test]
fn the_example_output_is_typed_and_parses() {
    let Run {
        stdout, stderr, ok, ..
    } = tandem(&["policy", "--config", "examples/templates"]);
    assert!(ok, "{stderr}");
    // The golden file is deploy/policies/policies.yaml, which the kustomize
    // overlays install; tests/install.rs holds it to this output.
    let out = typed_documents(&stdout);
    assert_eq!((out.policies.len(), out.bindings.len()), (1, 1), "{stderr}");
    assert_eq!(
        (out.validating.len(), out.validating_bindings.len()),
        (2, 2)
    );
    let spec = out.policies[0].spec.as_ref().unwrap();
    let bspec = out.bindings[0].spec.as_ref().unwrap();
    assert_eq!(bspec.policy_name, out.policies[0].metadata.name);
    assert_eq!(spec.failure_policy.as_deref(), Some("Ignore"));
    assert_eq!(spec.reinvocation_policy.as_deref(), Some("IfNeeded"));
    let selector = bspec
        .match_resources
        .as_ref()
        .and_then(|m| m.namespace_selector.clone())
        .unwrap();
    assert_eq!(
        selector.match_labels.as_ref().unwrap()["tandem.dev/injection"],
        "enabled"
    );
    for (p, b) in out.validating.iter().zip(&out.validating_bindings) {
        assert_eq!(b.spec.policy_name, p.metadata.name.clone().unwrap());
        let covered = b.spec.match_resources.as_ref().unwrap();
        assert_eq!(covered.namespace_selector.as_ref(), Some(&selector));
    }
    let actions: Vec<&Vec<String>> = out
        .validating_bindings
        .iter()
        .map(|b| &b.spec.validation_actions)
        .collect();
    assert_eq!(
        actions,
        [&vec!["Deny".to_string()], &vec!["Warn".to_string()]]
    );
    // Why the policy is what it is, and what it covers, in the output itself.
    for needle in [
        "# failurePolicy Ignore:",
        "# reinvocationPolicy IfNeeded:",
        "# coverage: 15 of 15 request combinations",
        "#   db-ambassador + log-shipper: policy",
    ] {
        assert!(stdout.contains(needle), "{needle}\n{stdout}");
    }
    assert!(stderr.contains("coverage: 15 of 15"), "{stderr}");
    // Every expression compiles, including those the equivalence tests
    // reach only on some pods.
    let env = cel::env();
    cel::Mutating::new(&env, spec).unwrap();
    for p in &out.validating {
        cel::Validating::new(&env, p.spec.as_ref().unwrap()).unwrap();
    }
}

#[test]
fn what_needs_the_webhook_is_reported_never_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.yaml");
    std::fs::write(&path, format!("{TRICKY}\n---\n{OVERLAPPING}")).unwrap();
    let Run {
        stdout, stderr, ok, ..
    } = tandem(&["policy", "--config", path.to_str().unwrap()]);
    assert!(ok, "{stderr}");
    for line in [
        "audited: policy (mode dryRun",
        "prep + rival: policy",
        "rival + tail-a: policy (they both set env LOG_DIR, differently: the second in the request's order is skipped where they meet, as the engine does)",
        "tail-a + tail-b: policy (share volume app-logs, mountPath /var/log/app, env LOG_DIR, added once)",
    ] {
        assert!(stderr.contains(line), "{line}\n{stderr}");
        assert!(stdout.contains(&format!("#   {line}")), "{line}");
    }
    // Nothing to inject: an error, not an empty manifest.
    let only = dir.path().join("only.yaml");
    let audited = TRICKY.split("---").nth(2).unwrap();
    std::fs::write(&only, audited).unwrap();
    let Run { stderr, ok, .. } = tandem(&["policy", "--config", only.to_str().unwrap()]);
    assert!(!ok && stderr.contains("no template compiles"), "{stderr}");
}

#[test]
fn cluster_wide_and_extra_namespace_labels_reach_the_bindings() {
    let Run {
        stdout, stderr, ok, ..
    } = tandem(&[
        "policy",
        "--mode",
        "cluster-wide",
        "--namespace-selector",
        "team=shop",
        "--namespace",
        "platform",
    ]);
    assert!(ok, "{stderr}");
    let out = typed_documents(&stdout);
    let selectors = out
        .bindings
        .iter()
        .map(|b| b.spec.as_ref().unwrap().match_resources.clone())
        .chain(
            out.validating_bindings
                .iter()
                .map(|b| b.spec.match_resources.clone()),
        );
    for m in selectors {
        let selector = m.unwrap().namespace_selector.unwrap();
        assert_eq!(
            selector.match_labels.as_ref().unwrap(),
            &BTreeMap::from([("team".to_string(), "shop".to_string())])
        );
        let text = serde_json::to_string(&selector.match_expressions).unwrap();
        assert!(
            text.contains("platform") && text.contains("kube-system"),
            "{text}"
        );
        assert!(text.contains("disabled"), "{text}");
    }
    let Run { stderr, ok, .. } = tandem(&[
        "policy",
        "--namespace-selector",
        "tandem.dev/injection=disabled",
    ]);
    assert!(!ok && stderr.contains("contradicts"), "{stderr}");
}

#[test]
fn check_reports_the_coverage() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("t.yaml"), OVERLAPPING).unwrap();
    let Run {
        stdout, stderr, ok, ..
    } = tandem(&["check", "-c", dir.path().to_str().unwrap()]);
    assert!(ok, "{stderr}");
    for needle in [
        "template \"tail-a\": policy: tail-a: policy",
        "note: policy coverage: 10 of 10 request combinations",
        "note: policy rival + tail-b: policy (they both set env LOG_DIR, differently: the second",
    ] {
        assert!(stdout.contains(needle), "{needle}\n{stdout}");
    }
}

// ------------------------------------------------------------ policy mode, end to end

/// What `deploy/overlays/policy` installs, as the API server runs it: the
/// compiled MutatingAdmissionPolicy, then the companion.
struct PolicyMode {
    env: Arc<::cel::Env>,
    mutating: Vec<cel::Mutating>,
    companion: Vec<cel::Validating>,
}

impl PolicyMode {
    fn installed() -> PolicyMode {
        let env = cel::env();
        let text =
            std::fs::read_to_string(manifest_dir().join("deploy/policies/policies.yaml")).unwrap();
        let docs: Vec<Value> = serde_saphyr::from_multiple::<Value>(&text)
            .unwrap()
            .into_iter()
            .filter(|d| !d.is_null())
            .collect();
        let spec_of = |d: &Value| d["spec"].clone();
        let mutating: Vec<cel::Mutating> = docs
            .iter()
            .filter(|d| d["kind"] == "MutatingAdmissionPolicy")
            .map(|d| cel::Mutating::new(&env, &serde_json::from_value(spec_of(d)).unwrap()))
            .collect::<Result<_, _>>()
            .unwrap();
        let companion: Vec<cel::Validating> = docs
            .iter()
            .filter(|d| {
                d["kind"] == "ValidatingAdmissionPolicy" && d["metadata"]["name"] == policy::REQUIRE
            })
            .map(|d| cel::Validating::new(&env, &serde_json::from_value(spec_of(d)).unwrap()))
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!((mutating.len(), companion.len()), (1, 1));
        PolicyMode {
            env,
            mutating,
            companion,
        }
    }

    fn admit(&self, pod: &Value, namespace: &Value) -> Result<Value, cel::Denial> {
        cel::admit(&self.env, &self.mutating, &self.companion, pod, namespace)
    }
}

fn bare_pod(annotations: &[(&str, &str)], labels: &[(&str, &str)]) -> Value {
    let map = |kv: &[(&str, &str)]| -> serde_json::Map<String, Value> {
        kv.iter().map(|(k, v)| (k.to_string(), json!(v))).collect()
    };
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": { "name": "p", "namespace": "shop", "annotations": map(annotations), "labels": map(labels) },
        "spec": { "containers": [{ "name": "app", "image": "example.com/app:1" }] },
    })
}

fn opted_in_namespace(annotations: &[(&str, &str)]) -> Value {
    let labels = BTreeMap::from([("tandem.dev/injection".to_string(), "enabled".to_string())]);
    let annotations = annotations
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    cel::stored_namespace("shop", &labels, &annotations)
}

/// The bug the API server found: a pod that asks for nothing, in an
/// opted-in namespace with or without annotations, is admitted as it is,
/// and one a selector matches is admitted injected.
#[test]
fn policy_mode_admits_a_pod_that_asks_for_nothing() {
    let mode = PolicyMode::installed();
    let namespaces = [
        opted_in_namespace(&[]),
        opted_in_namespace(&[("example.com/team", "a")]),
        opted_in_namespace(&[(INJECT_ANNOTATION, "none")]),
        opted_in_namespace(&[(INJECT_ANNOTATION, "true")]),
    ];
    for namespace in &namespaces {
        for pod in [
            bare_pod(&[], &[]),
            bare_pod(&[("example.com/owner", "team-a")], &[("app", "shop")]),
            bare_pod(&[(INJECT_ANNOTATION, "none")], &[]),
        ] {
            let admitted = mode
                .admit(&pod, namespace)
                .unwrap_or_else(|d| panic!("{pod} in {namespace}: denied: {}", d.message));
            assert_eq!(admitted, cel::stored(&pod), "{pod} in {namespace}");
        }
        let labelled = bare_pod(&[], &[("tandem.dev/metrics", "true")]);
        if namespace["metadata"]["annotations"][INJECT_ANNOTATION] != "none" {
            let admitted = mode.admit(&labelled, namespace).unwrap();
            assert_eq!(
                names(&admitted, "/spec/initContainers"),
                ["metrics-exporter"],
                "{namespace}"
            );
        }
    }
}

/// A namespace default list is the pod's request, several templates
/// included: the policy injects it, and the companion admits it.
#[test]
fn policy_mode_injects_a_namespace_default_and_admits_it() {
    let mode = PolicyMode::installed();
    let namespace = opted_in_namespace(&[(INJECT_ANNOTATION, "log-shipper,db-ambassador")]);
    for pod in [
        bare_pod(&[], &[]),
        bare_pod(&[(INJECT_ANNOTATION, "true")], &[]),
    ] {
        let admitted = mode
            .admit(&pod, &namespace)
            .unwrap_or_else(|d| panic!("{}", d.message));
        assert!(
            annotation(&admitted, STATUS_ANNOTATION).is_some(),
            "{admitted}"
        );
        assert_eq!(
            names(&admitted, "/spec/initContainers"),
            ["db-ambassador", "log-shipper"],
            "db-ambassador before the user's init containers, log-shipper after: {admitted}"
        );
    }
}

/// What the policy leaves to the webhook is rejected in policy mode, and
/// the rejection names the reason; so is a status Tandem did not write.
#[test]
fn policy_mode_rejects_what_it_cannot_inject_and_says_why() {
    let mode = PolicyMode::installed();
    let plain = opted_in_namespace(&[]);
    let taken = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": { "name": "p", "namespace": "shop", "annotations": { INJECT_ANNOTATION: "db-ambassador" } },
        "spec": { "containers": [{ "name": "app", "image": "x", "env": [{ "name": "DATABASE_URL", "value": "mine" }] }] },
    });
    let cases = [
        (
            taken,
            "template db-ambassador (onConflict: fail) conflicts with the pod",
        ),
        (
            bare_pod(
                &[
                    (INJECT_ANNOTATION, "log-shipper"),
                    ("log-shipper.tandem.dev/cpu-request", "100m"),
                ],
                &[],
            ),
            "(tandem.dev/inject=log-shipper) but policy mode leaves it to the webhook: a parameter of template log-shipper is set to a value other than its default, which changes the status hash; the webhook (hybrid mode",
        ),
        (
            bare_pod(
                &[
                    (INJECT_ANNOTATION, "log-shipper"),
                    (STATUS_ANNOTATION, "done"),
                ],
                &[],
            ),
            "its tandem.dev/status is not a record Tandem wrote",
        ),
    ];
    for (pod, why) in cases {
        let denial = mode.admit(&pod, &plain).unwrap_err();
        assert_eq!(denial.reason, "Forbidden");
        assert!(denial.message.contains(why), "{}", denial.message);
    }
}

/// The policy fails open (`Ignore`): an expression that fails leaves the
/// pod as if Tandem did nothing, and the companion then rejects it with
/// its explanation, never the raw CEL error.
#[test]
fn a_failing_mutating_policy_leaves_the_explanation_to_the_companion() {
    let env = cel::env();
    let compiled = policy::compile(&example_templates(), &reach()).unwrap();
    let mut spec = compiled.policy.spec.clone().unwrap();
    assert_eq!(spec.failure_policy.as_deref(), Some("Ignore"));
    // A pod shape nobody foresaw, standing in for any evaluation error.
    let variables = spec.variables.as_mut().unwrap();
    variables.insert(
        0,
        k8s_openapi::api::admissionregistration::v1::Variable {
            name: "unforeseen".into(),
            expression: "object.spec.unforeseen.field".into(),
        },
    );
    let injected = variables.iter_mut().find(|v| v.name == "injected").unwrap();
    injected.expression = format!("variables.unforeseen ? [] : ({})", injected.expression);
    let mode = PolicyMode {
        mutating: vec![cel::Mutating::new(&env, &spec).unwrap()],
        ..PolicyMode::installed()
    };
    let pod = bare_pod(&[(INJECT_ANNOTATION, "log-shipper")], &[]);
    let denial = mode.admit(&pod, &opted_in_namespace(&[])).unwrap_err();
    assert!(
        denial.message.starts_with(
            "pod requests Tandem injection (tandem.dev/inject=log-shipper) but Tandem did not inject it: the MutatingAdmissionPolicy tandem is missing or failed on it"
        ),
        "{}",
        denial.message
    );
    // Asking for nothing is still admitted.
    assert!(
        mode.admit(&bare_pod(&[], &[]), &opted_in_namespace(&[]))
            .is_ok()
    );
}

/// Policy mode's warnings: a missing template, a skipped one, a dry run,
/// the growth, each as an admission warning and the lists as audit
/// annotations.
#[test]
fn policy_mode_warns_as_the_webhook_does() {
    let set = templates(&format!("{TRICKY}\n---\n{OVERLAPPING}"));
    let c = compile_set(&set);
    let ns = opted_in_namespace(&[]);
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": { "name": "p", "namespace": "shop",
                      "annotations": { INJECT_ANNOTATION: "tail-a,nope,audited,classic-proxy" } },
        "spec": { "containers": [{ "name": "web", "image": "x", "ports": [{ "containerPort": 15001 }] }] },
    });
    let Effect::Patched(out) = run(&c, &pod, &ns) else {
        panic!("tail-a is injected")
    };
    let (warnings, audit) = c
        .warnings
        .warnings(&c.env, &cel::Request::create(&out, &ns))
        .unwrap();
    let expect = [
        "tandem: requested template nope does not exist",
        "tandem: classic-proxy skipped: it conflicts with what the pod has",
        "tandem: dry run: audited selected and not injected",
        "tandem: pod request grows: tail-a adds up to cpu 10m, memory 16Mi",
    ];
    for (w, e) in warnings.iter().zip(expect) {
        assert!(w.starts_with(e), "{w}\nwanted {e}");
    }
    assert_eq!(warnings.len(), expect.len(), "{warnings:?}");
    assert_eq!(audit["missing"], "nope");
    assert_eq!(audit["skipped"], "classic-proxy");
    assert_eq!(audit["dry-run"], "audited");
}

// ------------------------------------------------------------ the API server's CEL budgets

/// Kubernetes' limits (k8s.io/apiserver/pkg/apis/cel): per expression, per
/// policy evaluation (all its expressions for one request), and for the
/// match conditions together.
const PER_CALL_LIMIT: u64 = 1_000_000;
const RUNTIME_BUDGET: u64 = 10_000_000;
const MATCH_CONDITIONS_BUDGET: u64 = 2_500_000;

/// A large pod: what the budgets are held to.
const LARGE: common::cost::Bounds = common::cost::Bounds {
    containers: 20,
    init_containers: 10,
    volumes: 30,
    env: 50,
    mounts: 20,
    env_from: 5,
    ports: 10,
    map_entries: 64,
    names: 32,
    string: 1024,
};

/// The estimate for each policy `tandem policy` compiles from `set`.
fn estimates(set: &TemplateSet, b: common::cost::Bounds) -> Vec<(String, common::cost::Estimate)> {
    let c = policy::compile(set, &reach()).unwrap();
    let named = |v: &Option<Vec<k8s_openapi::api::admissionregistration::v1::Variable>>| -> Vec<(String, String)> {
        v.iter().flatten().map(|v| (v.name.clone(), v.expression.clone())).collect()
    };
    let conditions = |m: &Option<
        Vec<k8s_openapi::api::admissionregistration::v1::MatchCondition>,
    >|
     -> Vec<(String, String)> {
        m.iter()
            .flatten()
            .map(|m| (m.name.clone(), m.expression.clone()))
            .collect()
    };
    let spec = c.policy.spec.as_ref().unwrap();
    let mutation: Vec<(String, String)> = spec
        .mutations
        .iter()
        .flatten()
        .filter_map(|m| {
            Some((
                "mutation".to_string(),
                m.json_patch.as_ref()?.expression.clone()?,
            ))
        })
        .collect();
    let mut out = vec![(
        policy::NAME.to_string(),
        common::cost::estimate(
            b,
            &conditions(&spec.match_conditions),
            &named(&spec.variables),
            &mutation,
        ),
    )];
    for p in [&c.require.0, &c.warnings.0] {
        let spec = p.spec.as_ref().unwrap();
        let mut others = Vec::new();
        for v in spec.validations.iter().flatten() {
            others.push(("validation".to_string(), v.expression.clone()));
            others.extend(
                v.message_expression
                    .clone()
                    .map(|m| ("messageExpression".to_string(), m)),
            );
        }
        for a in spec.audit_annotations.iter().flatten() {
            others.push((
                format!("auditAnnotation {}", a.key),
                a.value_expression.clone(),
            ));
        }
        out.push((
            p.metadata.name.clone().unwrap(),
            common::cost::estimate(
                b,
                &conditions(&spec.match_conditions),
                &named(&spec.variables),
                &others,
            ),
        ));
    }
    out
}

/// Every policy stays a wide margin (five times) inside the API server's
/// budgets for the largest set the project has (every example and test
/// template together) on a large pod, and the estimate grows with the
/// templates, the containers and the env vars, so the test would see a
/// change that makes it explode.
#[test]
fn the_policies_stay_well_inside_the_cel_budgets() {
    let all = templates(&format!(
        "{TRICKY}\n---\n{OVERLAPPING}\n---\n{}",
        std::fs::read_dir(manifest_dir().join("examples/templates"))
            .unwrap()
            .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
            .collect::<Vec<_>>()
            .join("\n---\n")
    ));
    let total = |set: &TemplateSet, b| -> u64 {
        estimates(set, b)
            .iter()
            .map(|(_, e)| e.total())
            .max()
            .unwrap()
    };
    for (name, e) in estimates(&all, LARGE) {
        let (largest, cost) = e.largest();
        let conditions: u64 = e
            .expressions
            .iter()
            .filter(|(n, _)| n.starts_with("matchCondition"))
            .map(|(_, c)| c)
            .sum();
        println!(
            "{name}: {} templates, at most {} per admission ({:.1}% of {RUNTIME_BUDGET}); dearest expression {largest}: {cost} ({:.1}% of {PER_CALL_LIMIT}); match conditions {conditions}",
            all.len(),
            e.total(),
            100.0 * e.total() as f64 / RUNTIME_BUDGET as f64,
            100.0 * cost as f64 / PER_CALL_LIMIT as f64
        );
        assert!(
            cost * 5 <= PER_CALL_LIMIT,
            "{name}: {largest} may cost {cost}"
        );
        assert!(
            e.total() * 5 <= RUNTIME_BUDGET,
            "{name}: {} in all",
            e.total()
        );
        assert!(
            conditions * 5 <= MATCH_CONDITIONS_BUDGET,
            "{name}: {conditions}"
        );
    }
    let examples = example_templates();
    assert!(
        total(&all, LARGE) > total(&examples, LARGE),
        "more templates"
    );
    let more = |f: fn(&mut common::cost::Bounds)| {
        let mut b = LARGE;
        f(&mut b);
        total(&examples, b)
    };
    assert!(
        more(|b| b.containers *= 2) > total(&examples, LARGE),
        "more containers"
    );
    assert!(
        more(|b| b.env *= 2) > total(&examples, LARGE),
        "more env vars"
    );
}

/// The warnings policy on pods and namespaces without annotations or
/// labels, as the API server stores them and with empty maps: it evaluates
/// without an error (under `Ignore` an error would only lose warnings,
/// silently) and has nothing to say.
#[test]
fn the_warnings_policy_is_quiet_on_pods_that_ask_for_nothing() {
    let c = compile_set(&example_templates());
    let bare = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": { "name": "p", "namespace": "shop" },
        "spec": { "containers": [{ "name": "app", "image": "x" }] },
    });
    let empty = bare_pod(&[], &[]);
    let plain = json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": "shop" } });
    let empty_ns = json!({ "apiVersion": "v1", "kind": "Namespace",
                           "metadata": { "name": "shop", "labels": {}, "annotations": {} } });
    for pod in [&bare, &empty] {
        for ns in [&plain, &empty_ns, &opted_in_namespace(&[])] {
            for request in [
                cel::Request::create(pod, ns),
                cel::Request::create_as_is(pod, ns),
            ] {
                let (warnings, audit) = c
                    .warnings
                    .warnings(&c.env, &request)
                    .unwrap_or_else(|f| panic!("{pod} in {ns}: {}", f.message()));
                assert!(
                    warnings.is_empty() && audit.is_empty(),
                    "{warnings:?} {audit:?}"
                );
            }
        }
    }
}
