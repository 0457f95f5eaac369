//! `tandem policy`: SidecarTemplates compiled to MutatingAdmissionPolicies.
//!
//! The compiled CEL is evaluated here with the `cel` crate, the way the API
//! server runs a policy (match conditions, variables in order, the JSONPatch
//! mutation), and the patch it gives is applied to the pod. The engine's
//! patch is applied to the same pod. Wherever a policy changes a pod, the
//! two pods must be equal; wherever it steps aside while the engine would
//! inject, the reason must be one `tandem policy` declares.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use common::run::{Run, tandem};
use common::*;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingAdmissionPolicy, MutatingAdmissionPolicyBinding, MutatingAdmissionPolicySpec,
};
use serde_json::{Value, json};
use tandem::engine::Input;
use tandem::facts::{Doc, INJECT_ANNOTATION, Namespace, Policy, STATUS_ANNOTATION};
use tandem::install::policy::{self, Compiled, Reach};
use tandem::install::webhook::NamespaceScope;
use tandem::template::TemplateSet;

// ------------------------------------------------------------ the CEL runtime

/// A compiled policy, its expressions parsed once, ready to run on pods
/// under the API server's rules (`common::cel`).
struct Runnable {
    template: String,
    policy: cel::Mutating,
}

/// What a policy did to one pod.
#[derive(Debug)]
enum Effect {
    /// A match condition was false: named.
    NotMatched(String),
    /// The mutation gave no operations; `selected` says whether the engine
    /// selects this template alone, so a step-aside is a conflict check.
    StepsAside {
        selected: bool,
    },
    Patched(Value),
}

fn compile_policies(set: &TemplateSet, env: &Arc<::cel::Env>) -> Vec<Runnable> {
    let reach = Reach {
        namespace: "tandem-system".into(),
        scope: NamespaceScope::ClusterWide,
        excluded_namespaces: Vec::new(),
        extra_labels: BTreeMap::new(),
    };
    policy::compile(set, &reach)
        .unwrap()
        .into_iter()
        .filter_map(|c| match c {
            Compiled::Policy(p) => Some(p),
            Compiled::NeedsWebhook { .. } => None,
        })
        .map(|p| {
            let spec: MutatingAdmissionPolicySpec = p.policy.spec.clone().unwrap();
            assert_eq!(spec.mutations.as_ref().unwrap().len(), 1, "{}", p.template);
            Runnable {
                template: p.template.clone(),
                policy: cel::Mutating::new(env, &spec)
                    .unwrap_or_else(|e| panic!("policy {}: {e}", p.template)),
            }
        })
        .collect()
}

/// Runs `p` on `pod` in `namespace` as the API server would. An expression
/// that fails is a bug here: under `failurePolicy: Ignore` it would leave a
/// pod uninjected that the engine injects.
fn run(p: &Runnable, env: &Arc<::cel::Env>, pod: &Value, namespace: &Value) -> Effect {
    let request = cel::Request::create(pod, namespace);
    match p.policy.run(env, &request) {
        cel::Run::NotMatched(name) => Effect::NotMatched(name),
        cel::Run::Failed(f) => panic!(
            "policy {}: {:?} fails: {}\npod: {pod}",
            p.template,
            f.site,
            f.message()
        ),
        cel::Run::Mutated { object, variables } => {
            if object == request.object {
                let selected = variables.get("selected") == Some(&::cel::Value::Bool(true));
                Effect::StepsAside { selected }
            } else {
                Effect::Patched(object)
            }
        }
        cel::Run::Validated(_) => unreachable!(),
    }
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

/// How often each outcome was seen, so a change that makes every policy
/// step aside cannot pass unnoticed.
#[derive(Default, Debug)]
struct Tally {
    same_pod: usize,
    untouched_by_both: usize,
    already_injected: usize,
    several_or_none: usize,
    needs_webhook: usize,
    conflict: usize,
}

fn equivalence(set: &TemplateSet, label: &str) -> Tally {
    let env = cel::env();
    let policies = compile_policies(set, &env);
    let needs_webhook: Vec<String> = set
        .all()
        .filter(|t| !policy::needs_webhook(t).is_empty())
        .map(|t| t.name.clone())
        .collect();
    let caps = native_caps();
    let engine_policy = Policy::default();
    let mut tally = Tally::default();
    for (ns_case, ns_object, ns) in namespaces(set) {
        for (pod_case, shape) in pods() {
            for (variant, annotations, labels) in pod_variants(set) {
                let pod = with_metadata(&shape, &annotations, &labels);
                let case = format!("{label}: {pod_case}, {variant}, {ns_case}");
                let d = tandem::engine::decide(&Input {
                    pod: &Doc::from(&pod),
                    namespace: &ns,
                    templates: set,
                    capabilities: &caps,
                    policy: &engine_policy,
                })
                .unwrap_or_else(|e| panic!("{case}: {e}"));
                let by_engine = apply(&pod, &d.patch);
                let effects: Vec<(&str, Effect)> = policies
                    .iter()
                    .map(|p| (p.template.as_str(), run(p, &env, &pod, &ns_object)))
                    .collect();
                let patched: Vec<&(&str, Effect)> = effects
                    .iter()
                    .filter(|(_, e)| matches!(e, Effect::Patched(_)))
                    .collect();
                assert!(
                    patched.len() <= 1,
                    "{case}: several policies change the pod"
                );
                let injected: Vec<&str> = d.injected().collect();
                if let Some((template, Effect::Patched(by_policy))) = patched.first() {
                    assert_eq!(
                        injected,
                        [*template],
                        "{case}: policy {template} changes a pod the engine gives {injected:?} ({})",
                        d.summary()
                    );
                    assert!(
                        *by_policy == cel::stored(&by_engine),
                        "{case}: policy {template} and the engine disagree\npolicy: {}\nengine: {}",
                        serde_json::to_string_pretty(by_policy).unwrap(),
                        serde_json::to_string_pretty(&by_engine).unwrap()
                    );
                    assert_well_formed(by_policy);
                    assert_preserved(&pod, by_policy);
                    // Hybrid mode: the webhook runs after the policy and
                    // finds nothing left to do.
                    let webhook = tandem::engine::decide(&Input {
                        pod: &Doc::from(by_policy),
                        namespace: &ns,
                        templates: set,
                        capabilities: &caps,
                        policy: &engine_policy,
                    })
                    .unwrap();
                    assert!(
                        webhook.patch.is_empty(),
                        "{case}: the webhook changes what policy {template} injected: {}",
                        webhook.summary()
                    );
                    for p in &policies {
                        let again = run(p, &env, by_policy, &ns_object);
                        assert!(
                            !matches!(again, Effect::Patched(_)),
                            "{case}: policy {} changes the pod a second time",
                            p.template
                        );
                    }
                    tally.same_pod += 1;
                    continue;
                }
                if by_engine == pod {
                    tally.untouched_by_both += 1;
                    continue;
                }
                // The engine changes the pod and no policy does: a declared step-aside.
                let has_status = annotation(&pod, STATUS_ANNOTATION).is_some();
                if has_status {
                    tally.already_injected += 1;
                } else if d.templates.len() != 1 || injected.len() != 1 {
                    tally.several_or_none += 1;
                } else if needs_webhook.iter().any(|n| n == injected[0]) {
                    tally.needs_webhook += 1;
                } else {
                    let (_, effect) = effects
                        .iter()
                        .find(|(t, _)| *t == injected[0])
                        .unwrap_or_else(|| panic!("{case}: no policy for {}", injected[0]));
                    assert!(
                        matches!(effect, Effect::StepsAside { selected: true }),
                        "{case}: the engine injects {} alone, the policy does not ({effect:?}; {})",
                        injected[0],
                        d.summary()
                    );
                    tally.conflict += 1;
                }
            }
        }
    }
    tally
}

#[test]
fn the_example_policies_make_the_engines_change() {
    let tally = equivalence(&example_templates(), "examples");
    println!("{tally:?}");
    assert!(tally.same_pod >= 2000, "{tally:?}");
    assert!(
        tally.several_or_none > 0 && tally.conflict > 0 && tally.already_injected > 0,
        "{tally:?}"
    );
}

#[test]
fn the_tricky_policies_make_the_engines_change() {
    let tally = equivalence(&tricky_templates(), "tricky");
    println!("{tally:?}");
    assert!(tally.same_pod >= 900, "{tally:?}");
    assert!(
        tally.needs_webhook > 0 && tally.conflict > 0 && tally.several_or_none > 0,
        "{tally:?}"
    );
}

/// A pod the webhook injected before carries the status: no policy touches it.
#[test]
fn a_pod_the_webhook_injected_is_left_alone() {
    let set = example_templates();
    let env = cel::env();
    let policies = compile_policies(&set, &env);
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
    for p in &policies {
        let effect = run(p, &env, &injected, &ns_object);
        assert!(
            matches!(&effect, Effect::NotMatched(n) if n == "not-injected-yet"),
            "{}: {effect:?}",
            p.template
        );
    }
}

// ------------------------------------------------------------ the output

/// The documents of `tandem policy` output, checked to be exactly the
/// `k8s-openapi` v1 types: a field the types do not know would be lost in
/// the round trip.
fn typed_documents(
    yaml: &str,
) -> (
    Vec<MutatingAdmissionPolicy>,
    Vec<MutatingAdmissionPolicyBinding>,
) {
    let docs: Vec<Value> = serde_saphyr::from_multiple(yaml).unwrap();
    let (mut policies, mut bindings) = (Vec::new(), Vec::new());
    for doc in docs.into_iter().filter(|d| !d.is_null()) {
        assert_eq!(
            doc["apiVersion"], "admissionregistration.k8s.io/v1",
            "{doc}"
        );
        match doc["kind"].as_str() {
            Some("MutatingAdmissionPolicy") => {
                let typed: MutatingAdmissionPolicy = serde_json::from_value(doc.clone()).unwrap();
                assert_eq!(serde_json::to_value(&typed).unwrap(), doc, "unknown fields");
                policies.push(typed);
            }
            Some("MutatingAdmissionPolicyBinding") => {
                let typed: MutatingAdmissionPolicyBinding =
                    serde_json::from_value(doc.clone()).unwrap();
                assert_eq!(serde_json::to_value(&typed).unwrap(), doc, "unknown fields");
                bindings.push(typed);
            }
            other => panic!("unexpected kind {other:?}"),
        }
    }
    (policies, bindings)
}

#[test]
fn the_example_output_is_typed_and_parses() {
    let Run {
        stdout, stderr, ok, ..
    } = tandem(&["policy", "--config", "examples/templates"]);
    assert!(ok, "{stderr}");
    // The golden file is deploy/policies/policies.yaml, which the kustomize
    // overlays install; tests/install.rs holds it to this output.
    let (policies, bindings) = typed_documents(&stdout);
    assert_eq!(policies.len(), 4, "{stderr}");
    assert_eq!(bindings.len(), 4);
    assert!(stderr.contains("4 template(s) compiled"), "{stderr}");
    let refused = "db-ambassador needs the webhook: onConflict fail";
    assert!(
        stderr.contains(refused) && stdout.contains(refused),
        "{stderr}"
    );
    for (p, b) in policies.iter().zip(&bindings) {
        let spec = p.spec.as_ref().unwrap();
        let bspec = b.spec.as_ref().unwrap();
        assert_eq!(bspec.policy_name, p.metadata.name);
        assert_eq!(spec.failure_policy.as_deref(), Some("Ignore"));
        assert_eq!(spec.reinvocation_policy.as_deref(), Some("IfNeeded"));
        let selector = bspec
            .match_resources
            .as_ref()
            .and_then(|m| m.namespace_selector.clone())
            .unwrap();
        assert_eq!(
            selector.match_labels.unwrap()["tandem.dev/injection"],
            "enabled"
        );
    }
    // Why each policy is what it is, in the output itself.
    for needle in [
        "# failurePolicy Ignore:",
        "# reinvocationPolicy IfNeeded:",
        "# template log-shipper",
    ] {
        assert!(stdout.contains(needle), "{needle}");
    }
    // Every expression compiles, including those the equivalence tests
    // reach only on some pods.
    let env = cel::env();
    for p in &policies {
        let spec = p.spec.as_ref().unwrap();
        let expressions = spec
            .match_conditions
            .iter()
            .flatten()
            .map(|c| &c.expression)
            .chain(spec.variables.iter().flatten().map(|v| &v.expression))
            .chain(
                spec.mutations
                    .iter()
                    .flatten()
                    .filter_map(|m| m.json_patch.as_ref()?.expression.as_ref()),
            );
        for e in expressions {
            env.compile(e).unwrap_or_else(|err| panic!("{err}\n{e}"));
        }
    }
}

#[test]
fn what_does_not_compile_is_reported_never_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.yaml");
    std::fs::write(&path, TRICKY).unwrap();
    let Run {
        stdout, stderr, ok, ..
    } = tandem(&["policy", "--config", path.to_str().unwrap()]);
    assert!(ok, "{stderr}");
    let (policies, _) = typed_documents(&stdout);
    let names: Vec<_> = policies
        .iter()
        .filter_map(|p| p.metadata.name.clone())
        .collect();
    assert_eq!(names, ["tandem-classic-proxy", "tandem-late-init"]);
    for (template, why) in [("audited", "mode dryRun"), ("strict", "onConflict fail")] {
        let line = format!("{template} needs the webhook: {why}");
        assert!(stderr.contains(&line), "{stderr}");
        assert!(stdout.contains(&format!("# {line}")), "{stdout}");
    }
    // Nothing compiles: an error, not an empty manifest.
    let only = dir.path().join("only.yaml");
    let strict = TRICKY.split("---").last().unwrap();
    std::fs::write(&only, strict).unwrap();
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
    let (_, bindings) = typed_documents(&stdout);
    for b in &bindings {
        let selector = b.spec.as_ref().unwrap().match_resources.as_ref().unwrap();
        let selector = selector.namespace_selector.as_ref().unwrap();
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
fn check_says_which_templates_compile() {
    let Run {
        stdout, stderr, ok, ..
    } = tandem(&["check", "-c", "examples/templates"]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("template \"log-shipper\": policy: compiles to a MutatingAdmissionPolicy"),
        "{stdout}"
    );
    assert!(
        stdout.contains("template \"db-ambassador\": policy: needs the webhook: onConflict fail"),
        "{stdout}"
    );
    assert!(stdout.contains("0 warning(s)"), "{stdout}");
}

// ------------------------------------------------------------ policy mode, end to end

/// What `deploy/overlays/policy` installs, as the API server runs it: the
/// compiled MutatingAdmissionPolicies, then the companion
/// ValidatingAdmissionPolicy.
struct PolicyMode {
    env: Arc<::cel::Env>,
    mutating: Vec<cel::Mutating>,
    companion: Vec<cel::Validating>,
}

impl PolicyMode {
    fn installed() -> PolicyMode {
        let env = cel::env();
        let read = |rel: &str| -> Vec<Value> {
            let text = std::fs::read_to_string(manifest_dir().join(rel)).unwrap();
            serde_saphyr::from_multiple::<Value>(&text)
                .unwrap()
                .into_iter()
                .filter(|d| !d.is_null())
                .collect()
        };
        let spec_of = |d: &Value| d["spec"].clone();
        let mutating = read("deploy/policies/policies.yaml")
            .iter()
            .filter(|d| d["kind"] == "MutatingAdmissionPolicy")
            .map(|d| cel::Mutating::new(&env, &serde_json::from_value(spec_of(d)).unwrap()))
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let companion = read("deploy/base/validatingadmissionpolicy.yaml")
            .iter()
            .filter(|d| d["kind"] == "ValidatingAdmissionPolicy")
            .map(|d| cel::Validating::new(&env, &serde_json::from_value(spec_of(d)).unwrap()))
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        assert_eq!((mutating.len(), companion.len()), (4, 1));
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

/// A namespace default list is the pod's request: the policies inject it,
/// and the companion admits what they injected.
#[test]
fn policy_mode_injects_a_namespace_default_and_admits_it() {
    let mode = PolicyMode::installed();
    let namespace = opted_in_namespace(&[(INJECT_ANNOTATION, "log-shipper")]);
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
        assert!(
            names(&admitted, "/spec/initContainers").contains(&"log-shipper".to_string()),
            "{admitted}"
        );
    }
}

/// What the policies leave to the webhook is denied in policy mode, and the
/// denial says why; so is a status Tandem did not write.
#[test]
fn policy_mode_denies_what_it_cannot_inject_and_says_why() {
    let mode = PolicyMode::installed();
    let plain = opted_in_namespace(&[]);
    let cases = [
        (
            bare_pod(&[(INJECT_ANNOTATION, "log-shipper,log-adapter")], &[]),
            &plain,
            "(tandem.dev/inject=log-shipper,log-adapter) but Tandem did not process it (no tandem.dev/status annotation)",
        ),
        (
            bare_pod(
                &[
                    (INJECT_ANNOTATION, "log-shipper"),
                    (STATUS_ANNOTATION, "done"),
                ],
                &[],
            ),
            &plain,
            "its tandem.dev/status is not a record Tandem wrote",
        ),
    ];
    for (pod, namespace, why) in cases {
        let denial = mode.admit(&pod, namespace).unwrap_err();
        assert_eq!(denial.reason, "Forbidden");
        assert!(denial.message.contains(why), "{}", denial.message);
    }
    let listing = opted_in_namespace(&[(INJECT_ANNOTATION, "log-shipper,log-adapter")]);
    let denial = mode.admit(&bare_pod(&[], &[]), &listing).unwrap_err();
    assert!(
        denial
            .message
            .contains("(namespace shop default tandem.dev/inject=log-shipper,log-adapter)"),
        "{}",
        denial.message
    );
}

/// The compiled policies fail open (`Ignore`): an expression that fails
/// leaves the pod as if Tandem did nothing, and the companion then rejects
/// it with its explanation, never the raw CEL error.
#[test]
fn a_failing_mutating_policy_leaves_the_explanation_to_the_companion() {
    let env = cel::env();
    let set = example_templates();
    let reach = Reach {
        namespace: "tandem-system".into(),
        scope: NamespaceScope::OptIn,
        excluded_namespaces: Vec::new(),
        extra_labels: BTreeMap::new(),
    };
    let mut broken = Vec::new();
    for c in policy::compile(&set, &reach).unwrap() {
        let Compiled::Policy(p) = c else { continue };
        let mut spec = p.policy.spec.clone().unwrap();
        assert_eq!(spec.failure_policy.as_deref(), Some("Ignore"));
        // A pod shape nobody foresaw, standing in for any evaluation error.
        spec.variables.as_mut().unwrap().insert(
            0,
            k8s_openapi::api::admissionregistration::v1::Variable {
                name: "unforeseen".into(),
                expression: "object.spec.unforeseen.field".into(),
            },
        );
        let selected = spec
            .variables
            .as_mut()
            .unwrap()
            .iter_mut()
            .find(|v| v.name == "selected")
            .unwrap();
        selected.expression = format!("variables.unforeseen && ({})", selected.expression);
        broken.push(cel::Mutating::new(&env, &spec).unwrap());
    }
    let mode = PolicyMode {
        mutating: broken,
        ..PolicyMode::installed()
    };
    let pod = bare_pod(&[(INJECT_ANNOTATION, "log-shipper")], &[]);
    let denial = mode.admit(&pod, &opted_in_namespace(&[])).unwrap_err();
    assert!(
        denial
            .message
            .starts_with("pod requests Tandem injection (tandem.dev/inject=log-shipper)"),
        "{}",
        denial.message
    );
    // Asking for nothing is still admitted.
    assert!(
        mode.admit(&bare_pod(&[], &[]), &opted_in_namespace(&[]))
            .is_ok()
    );
}
