//! The offline CLI, run as the real binary from the crate's root.

mod common;

use std::path::Path;

use common::run::{Run, read_repo, repo_yaml, tandem_with, yaml_docs};
use common::*;
use json_patch::PatchOperation;
use rstest::rstest;
use serde_json::{Value, json};

fn ok(args: &[&str], stdin: Option<&str>) -> Run {
    let run = tandem_with(args, stdin, &manifest_dir());
    assert_eq!(run.code, 0, "{run}");
    run
}

fn fails(args: &[&str], stdin: Option<&str>) -> Run {
    let run = tandem_with(args, stdin, &manifest_dir());
    assert_eq!(run.code, 1, "{run}");
    assert!(
        run.stderr.starts_with("tandem: ") || run.stderr.contains("\ntandem: "),
        "{run}"
    );
    run
}

/// The pod-shaped object of a workload document.
fn pod_of(doc: &Value) -> &Value {
    match doc["kind"].as_str().unwrap() {
        "Pod" => doc,
        "CronJob" => &doc["spec"]["jobTemplate"]["spec"]["template"],
        _ => &doc["spec"]["template"],
    }
}

/// A stream of JSON values (what `--patch` prints, one per document).
fn json_stream(text: &str) -> Vec<Value> {
    serde_json::Deserializer::from_str(text)
        .into_iter::<Value>()
        .collect::<Result<_, _>>()
        .expect("JSON output")
}

fn patch_of(v: &Value) -> Vec<PatchOperation> {
    serde_json::from_value(v.clone()).expect("a JSON patch")
}

const ALL: &str = "examples/workloads/all.yaml";

#[test]
fn inject_all_workloads_as_yaml() {
    let run = ok(&["inject", "-c", "examples/templates", "-f", ALL], None);
    let input = repo_yaml(ALL);
    let out = yaml_docs(&run.stdout, "output");
    assert_eq!(out.len(), input.len());
    for (before, after) in input.iter().zip(&out) {
        assert_eq!(before["kind"], after["kind"]);
        if before["kind"] != "Pod" {
            assert_eq!(
                before["metadata"], after["metadata"],
                "workload metadata untouched"
            );
        }
        assert_well_formed(pod_of(after));
        assert_preserved(before, after);
    }
    let by_kind = |k: &str| out.iter().find(|d| d["kind"] == k).unwrap();
    let deploy = pod_of(by_kind("Deployment"));
    assert_eq!(
        names(deploy, "/spec/initContainers"),
        [
            "db-ambassador",
            "metrics-exporter",
            "migrate",
            "log-shipper"
        ]
    );
    assert_eq!(names(deploy, "/spec/containers"), ["app"]);
    let job = pod_of(by_kind("Job"));
    assert_eq!(
        names(job, "/spec/containers"),
        ["report"],
        "no classic sidecar in a Job"
    );
    assert_eq!(names(job, "/spec/initContainers"), ["log-shipper"]);
    assert_eq!(job["spec"]["initContainers"][0]["restartPolicy"], "Always");
    let pod = by_kind("Pod");
    assert_eq!(names(pod, "/spec/initContainers"), ["config-fetcher"]);
    assert_eq!(names(pod, "/spec/containers"), ["shell", "log-adapter"]);
    for doc in &out {
        let status = status_of(pod_of(doc)).expect("status on every pod");
        assert!(!status.templates.is_empty());
    }
    assert!(
        run.stderr.contains("Warning: Deployment/checkout: tandem: pod request grows from cpu 250m, memory 256Mi to cpu 425m, memory 416Mi"),
        "{run}"
    );
}

#[test]
fn inject_output_is_stable_when_run_again() {
    let first = ok(&["inject", "-c", "examples/templates", "-f", ALL], None);
    let second = ok(
        &["inject", "-c", "examples/templates", "-f", "-"],
        Some(&first.stdout),
    );
    assert_eq!(
        yaml_docs(&first.stdout, "output"),
        yaml_docs(&second.stdout, "output")
    );
    let patch = ok(
        &["inject", "-c", "examples/templates", "-f", "-", "--patch"],
        Some(&first.stdout),
    );
    for p in json_stream(&patch.stdout) {
        assert_eq!(p, json!([]), "second pass patches: {}", patch.stdout);
    }
}

#[test]
fn inject_on_a_cluster_without_native_sidecars() {
    let run = ok(
        &[
            "inject",
            "-c",
            "examples/templates",
            "--kubernetes-version",
            "v1.28.3",
            "-f",
            ALL,
        ],
        None,
    );
    let out = yaml_docs(&run.stdout, "output");
    let by_kind = |k: &str| out.iter().find(|d| d["kind"] == k).unwrap();
    let job = pod_of(by_kind("Job"));
    assert_eq!(names(job, "/spec/containers"), ["report"]);
    assert!(job["spec"].get("initContainers").is_none(), "{job}");
    assert!(
        run.stderr
            .contains("Job/nightly-report: tandem: log-shipper skipped"),
        "{run}"
    );
    let deploy = pod_of(by_kind("Deployment"));
    assert_eq!(
        names(deploy, "/spec/containers"),
        ["app", "log-shipper", "metrics-exporter"]
    );
    assert_eq!(names(deploy, "/spec/initContainers"), ["migrate"]);
    assert!(
        run.stderr.contains("db-ambassador needs native sidecars"),
        "{run}"
    );
}

#[test]
fn inject_patch_applies_to_the_input() {
    let args = ["inject", "-c", "examples/templates", "-f", ALL];
    let full = ok(&args, None);
    let patched = ok(&[&args[..], &["--patch"]].concat(), None);
    let patches = json_stream(&patched.stdout);
    let input = repo_yaml(ALL);
    let expected = yaml_docs(&full.stdout, "output");
    assert_eq!(patches.len(), input.len());
    for ((doc, patch), want) in input.iter().zip(&patches).zip(&expected) {
        let ops = patch_of(patch);
        assert!(!ops.is_empty());
        assert_eq!(&apply_ops(doc, &ops), want);
    }
}

#[test]
fn json_in_json_out() {
    let (mut pod, _) = review_pod("admission-v1.36/create.json");
    annotate(&mut pod, "tandem.dev/inject", "log-shipper");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pod.json");
    std::fs::write(&file, serde_json::to_string(&pod).unwrap()).unwrap();
    let run = ok(
        &[
            "inject",
            "-c",
            "examples/templates",
            "-f",
            file.to_str().unwrap(),
        ],
        None,
    );
    assert!(run.stdout.trim_start().starts_with('{'), "{run}");
    let out: Value = serde_json::from_str(&run.stdout).expect("JSON out");
    assert_eq!(names(&out, "/spec/initContainers"), ["log-shipper"]);
    assert_preserved(&pod, &out);
    assert_well_formed(&out);
    // The pod's own namespace is used.
    let explain = ok(
        &[
            "explain",
            "-c",
            "examples/templates",
            "-f",
            file.to_str().unwrap(),
        ],
        None,
    );
    assert!(
        explain
            .stdout
            .contains("Pod/plain-pod in namespace probe-inject"),
        "{explain:?}"
    );
}

#[test]
fn stdin_input() {
    let yaml = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  annotations:\n    tandem.dev/inject: config-init\nspec:\n  containers:\n    - name: app\n      image: x\n";
    let run = ok(
        &["inject", "-c", "examples/templates", "-f", "-"],
        Some(yaml),
    );
    let out = yaml_docs(&run.stdout, "output");
    assert_eq!(out.len(), 1);
    assert_eq!(names(&out[0], "/spec/initContainers"), ["config-fetcher"]);
    assert_eq!(names(&out[0], "/spec/volumes"), ["app-config"]);
}

#[test]
fn built_in_templates_without_config() {
    let run = ok(&["inject", "-f", "examples/workloads/job.yaml"], None);
    assert!(run.stderr.contains("built-in example templates"), "{run}");
    let out = yaml_docs(&run.stdout, "output");
    assert_eq!(
        names(pod_of(&out[0]), "/spec/initContainers"),
        ["log-shipper"]
    );
}

#[test]
fn namespace_flags() {
    let yaml = "kind: Pod\nmetadata:\n  name: p\nspec:\n  containers:\n    - name: app\n";
    let run = ok(
        &[
            "inject",
            "-c",
            "examples/templates",
            "-f",
            "-",
            "--namespace-annotations",
            "tandem.dev/inject=log-shipper,config-init",
        ],
        Some(yaml),
    );
    let out = yaml_docs(&run.stdout, "output");
    assert_eq!(
        names(&out[0], "/spec/initContainers"),
        ["config-fetcher", "log-shipper"]
    );
    let run = ok(
        &[
            "inject",
            "-c",
            "examples/templates",
            "-f",
            "-",
            "--namespace-annotations",
            "tandem.dev/inject=log-shipper",
            "--namespace-labels",
            "tandem.dev/injection=disabled",
        ],
        Some(yaml),
    );
    let out = yaml_docs(&run.stdout, "output");
    assert!(out[0]["spec"].get("initContainers").is_none(), "{run}");
}

#[test]
fn on_missing_deny_fails_the_run() {
    let yaml = "kind: Pod\nmetadata:\n  name: p\n  annotations:\n    tandem.dev/inject: nope\nspec:\n  containers:\n    - name: app\n";
    let warn = ok(
        &["inject", "-c", "examples/templates", "-f", "-"],
        Some(yaml),
    );
    assert!(
        warn.stderr
            .contains("requested template nope does not exist"),
        "{warn:?}"
    );
    let deny = fails(
        &[
            "inject",
            "-c",
            "examples/templates",
            "-f",
            "-",
            "--on-missing",
            "deny",
        ],
        Some(yaml),
    );
    assert!(deny.stderr.contains("Pod/p would be denied"), "{deny:?}");
    assert!(deny.stdout.is_empty());
}

#[test]
fn explain_text_names_every_gate() {
    let run = ok(
        &[
            "explain",
            "-c",
            "examples/templates",
            "-f",
            "examples/workloads/deployment.yaml",
        ],
        None,
    );
    let text = &run.stdout;
    assert!(
        text.starts_with("Deployment/checkout in namespace default"),
        "{text}"
    );
    let gates = [
        "capabilities",
        "mirror pod",
        "namespace",
        "pod opt-out",
        "status",
        "selection",
        "template log-shipper",
        "template db-ambassador",
        "template metrics-exporter",
        "resources",
    ];
    let mut last = 0;
    for g in gates {
        let at = text[last..]
            .find(&format!(" {g} "))
            .unwrap_or_else(|| panic!("gate {g} missing or out of order:\n{text}"));
        last += at;
    }
    assert!(text.contains("result: patched"), "{text}");
    assert!(
        text.contains("selector of metrics-exporter matches"),
        "{text}"
    );
    // A stopped decision shows where it stopped.
    let pod = "kind: Pod\nmetadata:\n  name: p\n  annotations:\n    tandem.dev/inject: none\nspec:\n  containers:\n    - name: app\n";
    let run = ok(
        &["explain", "-c", "examples/templates", "-f", "-"],
        Some(pod),
    );
    assert!(run.stdout.contains("pod opt-out"), "{run}");
    assert!(run.stdout.contains("stop"), "{run}");
    assert!(run.stdout.contains("result: unchanged: opted-out"), "{run}");
}

#[test]
fn explain_json_parses() {
    let run = ok(
        &[
            "explain",
            "-c",
            "examples/templates",
            "-f",
            ALL,
            "-o",
            "json",
        ],
        None,
    );
    let v: Value = serde_json::from_str(&run.stdout).expect("JSON");
    let list = v.as_array().unwrap();
    assert_eq!(list.len(), 3);
    assert_eq!(list[0]["object"], "Deployment/checkout");
    for item in list {
        let d = &item["decision"];
        assert_eq!(d["outcome"]["result"], "patched", "{d}");
        assert!(d["gates"].as_array().unwrap().len() >= 7);
        assert!(d["resources"]["after"]["cpu"].is_string());
        assert!(
            d["templates"]
                .as_array()
                .unwrap()
                .iter()
                .all(|t| t["verdict"].is_string())
        );
    }
}

#[test]
fn check_accepts_the_examples() {
    let run = ok(&["check", "-c", "examples/templates"], None);
    assert!(run.stdout.contains("5 template(s) valid"), "{run}");
    let run = ok(&["check", "-c", "examples/golden/templates"], None);
    assert!(
        run.stdout.contains("3 template(s) valid, 0 warning(s)"),
        "{run}"
    );
}

#[test]
fn check_reports_a_broken_template_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        manifest_dir().join("examples/templates/log-shipper.yaml"),
        dir.path().join("log-shipper.yaml"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("broken.yaml"),
        template_doc(
            "broken-helper",
            json!({
                "pattern": "sidecar",
                "containers": [{ "name": "broken-helper", "image": "x:1", "imagePullPolicyy": "Always" }],
            }),
        ),
    )
    .unwrap();
    let run = fails(&["check", "-c", dir.path().to_str().unwrap()], None);
    let line = run
        .stdout
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_else(|| panic!("{run}"));
    assert!(line.contains("broken.yaml"), "{line}");
    assert!(line.contains("template \"broken-helper\""), "{line}");
    assert!(
        line.contains("spec.containers[0].imagePullPolicyy"),
        "{line}"
    );
    assert!(run.stderr.contains("1 error(s)"), "{run}");
}

#[test]
fn check_lints_without_failing() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("lazy.yaml"),
        template_doc(
            "lazy",
            json!({
                "pattern": "sidecar",
                "containers": [{ "name": "sidecar", "image": "busybox" }],
                "volumes": [{ "name": "tmp", "emptyDir": { "medium": "Memory" } }],
            }),
        ),
    )
    .unwrap();
    let run = ok(&["check", "-c", dir.path().to_str().unwrap()], None);
    for needle in [
        "resources.requests",
        "sizeLimit",
        "pinned tag",
        "spec.containers[0].name",
    ] {
        assert!(run.stdout.contains(needle), "{needle}: {run}");
    }
}

#[test]
fn golden_examples_pass() {
    let run = ok(&["test", "examples/golden"], None);
    assert!(run.stdout.contains(" passed, 0 failed"), "{run}");
    assert!(!run.stdout.contains("FAIL"), "{run}");
    let cases = std::fs::read_dir(manifest_dir().join("examples/golden"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".input.yaml")
        })
        .count();
    assert!(cases >= 5);
    assert!(run.stdout.contains(&format!("{cases} passed")), "{run}");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

#[test]
fn golden_fails_on_a_tampered_expected_file() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&manifest_dir().join("examples/golden"), dir.path());
    let expected = dir.path().join("namespace-default.expected.yaml");
    let text = std::fs::read_to_string(&expected).unwrap();
    let tampered = text.replace("mountPath: /var/log/app", "mountPath: /var/log/other");
    assert_ne!(text, tampered);
    std::fs::write(&expected, tampered).unwrap();
    let run = fails(&["test", dir.path().to_str().unwrap()], None);
    assert!(run.stdout.contains("FAIL namespace-default"), "{run}");
    assert!(
        run.stdout.contains("/var/log/other"),
        "the difference is shown: {run}"
    );
    assert!(run.stdout.contains("ok   pod-annotation"), "{run}");
    // --update repairs it.
    ok(&["test", dir.path().to_str().unwrap(), "--update"], None);
    ok(&["test", dir.path().to_str().unwrap()], None);
}

#[test]
fn golden_fails_when_the_templates_change() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&manifest_dir().join("examples/golden"), dir.path());
    let tpl = dir.path().join("templates/log-shipper.yaml");
    let text = std::fs::read_to_string(&tpl).unwrap();
    std::fs::write(&tpl, text.replace("cpu: 50m", "cpu: 60m")).unwrap();
    let run = fails(&["test", dir.path().to_str().unwrap()], None);
    assert!(run.stdout.contains("FAIL cronjob"), "{run}");
    assert!(!run.stdout.contains("FAIL opt-out"), "{run}");
}

#[test]
fn unreadable_file_is_a_readable_error() {
    let run = fails(
        &[
            "inject",
            "-c",
            "examples/templates",
            "-f",
            "does/not/exist.yaml",
        ],
        None,
    );
    assert!(
        run.stderr.contains("does/not/exist.yaml: cannot read"),
        "{run}"
    );
    let run = fails(
        &["inject", "-c", "examples/templates", "-f", "examples"],
        None,
    );
    assert!(run.stderr.contains("examples: cannot read"), "{run}");
    let run = fails(&["check", "-c", "does/not/exist"], None);
    assert!(run.stdout.contains("does/not/exist: cannot read"), "{run}");
}

/// What `tandem inject -f -` says about input it cannot use: always exit 1,
/// a `tandem: ` line, and the words below.
#[rstest]
#[case::unclosed_yaml("kind: Pod\nspec: [unclosed\n", &["-: not valid YAML", "line"])]
#[case::truncated_json("{\"kind\": \"Pod\", ", &["not valid JSON"])]
#[case::no_kind(
    "apiVersion: v1\nmetadata:\n  name: x\nspec:\n  containers: []\n",
    &["document 1: document has no kind"]
)]
#[case::not_a_workload("kind: ConfigMap\nmetadata:\n  name: x\n", &["no pod found"])]
#[case::no_pod_template(
    "kind: Deployment\nmetadata:\n  name: d\nspec: {}\n",
    &["Deployment/d has no pod template"]
)]
#[case::malformed_pod(
    "kind: Pod\nmetadata:\n  name: p\nspec:\n  containers: {}\n",
    &["Pod/p: malformed pod"]
)]
fn unusable_input_is_a_readable_error(#[case] input: &str, #[case] says: &[&str]) {
    let run = fails(
        &["inject", "-c", "examples/templates", "-f", "-"],
        Some(input),
    );
    for words in says {
        assert!(run.stderr.contains(words), "{words:?}: {run}");
    }
}

const CRONJOB: &str = "apiVersion: batch/v1
kind: CronJob
metadata:
  name: nightly
spec:
  schedule: '0 3 * * *'
  jobTemplate:
    spec:
      template:
        metadata:
          annotations:
            tandem.dev/inject: log-shipper,log-adapter
        spec:
          restartPolicy: OnFailure
          containers:
            - name: job
              image: x:1
";

#[test]
fn cronjob_is_handled() {
    let run = ok(
        &["inject", "-c", "examples/templates", "-f", "-"],
        Some(CRONJOB),
    );
    let out = yaml_docs(&run.stdout, "output");
    let pod = pod_of(&out[0]);
    assert_eq!(names(pod, "/spec/containers"), ["job"]);
    // The classic adapter becomes native in a Job pod, at the default
    // position (before the user's init containers); log-shipper goes after.
    assert_eq!(
        names(pod, "/spec/initContainers"),
        ["log-adapter", "log-shipper"]
    );
    assert_eq!(pod["spec"]["initContainers"][0]["restartPolicy"], "Always");
    assert!(run.stderr.contains("injected as native"), "{run}");
    // On an old cluster both are skipped rather than block the Job.
    let run = ok(
        &[
            "inject",
            "-c",
            "examples/templates",
            "--kubernetes-version",
            "1.28",
            "-f",
            "-",
        ],
        Some(CRONJOB),
    );
    let out = yaml_docs(&run.stdout, "output");
    assert_eq!(names(pod_of(&out[0]), "/spec/containers"), ["job"]);
    assert!(pod_of(&out[0])["spec"].get("initContainers").is_none());
}

#[test]
fn list_is_handled() {
    let pod = repo_yaml("examples/workloads/pod.yaml").remove(0);
    let cron: Value = yaml_docs(CRONJOB, "output").remove(0);
    let list = json!({ "apiVersion": "v1", "kind": "List", "items": [pod, cron] });
    let text = serde_json::to_string(&list).unwrap();
    let run = ok(
        &["inject", "-c", "examples/templates", "-f", "-"],
        Some(&text),
    );
    let out: Value = serde_json::from_str(&run.stdout).expect("JSON in, JSON out");
    assert_eq!(out["kind"], "List");
    let items = out["items"].as_array().unwrap();
    assert_eq!(
        names(&items[0], "/spec/containers"),
        ["shell", "log-adapter"]
    );
    assert_eq!(
        names(pod_of(&items[1]), "/spec/initContainers"),
        ["log-adapter", "log-shipper"]
    );
    assert_preserved(&list, &out);
    // One patch for the document, paths into its items.
    let run = ok(
        &["inject", "-c", "examples/templates", "-f", "-", "--patch"],
        Some(&text),
    );
    let patches = json_stream(&run.stdout);
    assert_eq!(patches.len(), 1);
    let ops = patch_of(&patches[0]);
    let p: Vec<String> = ops.iter().map(|op| op.path().to_string()).collect();
    assert!(p.iter().any(|p| p.starts_with("/items/0/spec/")), "{p:?}");
    assert!(
        p.iter()
            .any(|p| p.starts_with("/items/1/spec/jobTemplate/spec/template/spec/")),
        "{p:?}"
    );
    assert_eq!(apply_ops(&list, &ops), out);
}

#[test]
fn documents_without_pods_pass_through() {
    let input = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cfg\ndata:\n  a: b\n---\n{}",
        std::fs::read_to_string(manifest_dir().join("examples/workloads/pod.yaml")).unwrap()
    );
    let run = ok(
        &["inject", "-c", "examples/templates", "-f", "-"],
        Some(&input),
    );
    let out = yaml_docs(&run.stdout, "output");
    assert_eq!(out.len(), 2);
    assert_eq!(out[0], yaml_docs(&input, "output")[0]);
    assert!(
        run.stderr.contains("document 1 (ConfigMap) holds no pod"),
        "{run}"
    );
}

#[test]
fn yaml_output_keeps_ambiguous_strings_strings() {
    // Strings a YAML 1.1 reader (kubectl) would take for booleans, numbers or
    // null must come out quoted, and everything must read back the same.
    let values = [
        "yes",
        "on",
        "off",
        "N",
        "1e3",
        "0o17",
        "0x1F",
        "012",
        "1_000",
        "3.0",
        ".inf",
        "null",
        "~",
        "",
        "2026-01-01",
        "a: b",
        "# x",
        "*",
        "&a",
        "!t",
        "@a",
        "- d",
        "[x]",
        "{y}",
    ];
    let labels: serde_json::Map<String, Value> = values
        .iter()
        .enumerate()
        .map(|(i, v)| (format!("k{i}"), json!(v)))
        .collect();
    let pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "p",
            "labels": labels,
            "annotations": { "tandem.dev/inject": "config-init", "multi": "line1\nline2\n" },
        },
        "spec": { "containers": [{ "name": "app", "args": values }] },
    });
    let input = serde_saphyr::to_string(&pod).unwrap();
    let run = ok(
        &["inject", "-c", "examples/templates", "-f", "-"],
        Some(&input),
    );
    for (i, v) in values.iter().enumerate() {
        if [
            "yes", "on", "off", "N", "1e3", "null", "~", "", "3.0", ".inf", "012",
        ]
        .contains(v)
        {
            assert!(
                run.stdout.contains(&format!("k{i}: \"{v}\"")),
                "{v} unquoted:\n{}",
                run.stdout
            );
        }
    }
    let out = yaml_docs(&run.stdout, "output").remove(0);
    let mut labels = pod["metadata"]["labels"].clone();
    labels["tandem.dev/injected"] = json!("true");
    assert_eq!(out["metadata"]["labels"], labels);
    assert_eq!(out["spec"]["containers"][0]["args"], json!(values));
    assert_eq!(out["metadata"]["annotations"]["multi"], "line1\nline2\n");
    assert_preserved(&pod, &out);
}

#[test]
fn check_fails_on_a_template_defined_twice() {
    let dir = tempfile::tempdir().unwrap();
    for f in ["a.yaml", "b.yaml"] {
        std::fs::copy(
            manifest_dir().join("examples/templates/log-shipper.yaml"),
            dir.path().join(f),
        )
        .unwrap();
    }
    let run = fails(&["check", "-c", dir.path().to_str().unwrap()], None);
    let line = run
        .stdout
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap();
    assert!(line.contains("\"log-shipper\" is defined twice"), "{line}");
    assert!(line.contains("a.yaml") && line.contains("b.yaml"), "{line}");
}

#[test]
fn golden_needs_templates_and_cases() {
    let dir = tempfile::tempdir().unwrap();
    let run = fails(&["test", dir.path().to_str().unwrap()], None);
    assert!(run.stderr.contains("no templates"), "{run}");
    copy_dir(
        &manifest_dir().join("examples/golden/templates"),
        &dir.path().join("templates"),
    );
    let run = fails(&["test", dir.path().to_str().unwrap()], None);
    assert!(run.stderr.contains("no *.input.yaml cases"), "{run}");
    // An input without its expected file is a failing case, not a crash.
    std::fs::copy(
        manifest_dir().join("examples/golden/cronjob.input.yaml"),
        dir.path().join("new.input.yaml"),
    )
    .unwrap();
    let run = fails(&["test", dir.path().to_str().unwrap()], None);
    assert!(run.stdout.contains("FAIL new"), "{run}");
}

// ------------------------------------------------------- what inject says

#[test]
fn inject_says_what_it_did_to_each_resource() {
    let run = ok(&["inject", "-c", "examples/templates", "-f", ALL], None);
    snapshot("inject-all.stdout.yaml", &run.stdout);
    snapshot("inject-all.stderr.txt", &run.stderr);
    assert!(
        run.stderr.contains(
            "Deployment/checkout: injected log-shipper, db-ambassador, metrics-exporter\n"
        ),
        "{run}"
    );

    // A mirror pod passes through, and says so; a conflict names the template.
    let input = r#"
apiVersion: v1
kind: Pod
metadata:
  name: etcd-node-1
  annotations: {kubernetes.io/config.mirror: abc, tandem.dev/inject: log-shipper}
spec:
  containers: [{name: etcd, image: "etcd:3.5"}]
---
apiVersion: batch/v1
kind: Job
metadata: {name: x}
spec:
  template:
    metadata:
      annotations: {tandem.dev/inject: log-shipper}
    spec:
      restartPolicy: Never
      containers: [{name: log-shipper, image: "x:1"}]
"#;
    let run = ok(
        &["inject", "-c", "examples/templates", "-f", "-"],
        Some(input),
    );
    let lines: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| !l.starts_with("Warning: "))
        .collect();
    assert_eq!(lines[0], "Pod/etcd-node-1: skipped (mirror pod)", "{run}");
    assert!(
        lines[1]
            .starts_with("Job/x: log-shipper skipped (conflict: container name \"log-shipper\""),
        "{run}"
    );
    let quiet = ok(
        &["inject", "-q", "-c", "examples/templates", "-f", "-"],
        Some(input),
    );
    assert!(
        quiet.stderr.lines().all(|l| l.starts_with("Warning: ")),
        "--quiet leaves only the warnings: {quiet:?}"
    );
    assert_eq!(quiet.stdout, run.stdout);
}

/// A document as written: map keys in order (the crate's `Value`s sort
/// them), read independently of the CLI's own reader.
#[derive(Debug)]
enum Node {
    Map(Vec<(String, Node)>),
    List(Vec<Node>),
    Text(String),
    Other,
}

impl<'de> serde::Deserialize<'de> for Node {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Node, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Node;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a value")
            }
            fn visit_str<E>(self, v: &str) -> Result<Node, E> {
                Ok(Node::Text(v.into()))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Node, E> {
                Ok(Node::Other)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Node, E> {
                Ok(Node::Other)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Node, E> {
                Ok(Node::Other)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Node, E> {
                Ok(Node::Other)
            }
            fn visit_unit<E>(self) -> Result<Node, E> {
                Ok(Node::Other)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> Result<Node, A::Error> {
                let mut v = Vec::new();
                while let Some(x) = a.next_element()? {
                    v.push(x);
                }
                Ok(Node::List(v))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut a: A) -> Result<Node, A::Error> {
                let mut v = Vec::new();
                while let Some(e) = a.next_entry::<String, Node>()? {
                    v.push(e);
                }
                Ok(Node::Map(v))
            }
        }
        d.deserialize_any(V)
    }
}

impl Node {
    fn get(&self, key: &str) -> Option<&Node> {
        match self {
            Node::Map(m) => m.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }
}

/// Every map of `before` keeps its keys in its order in `after`; keys
/// Tandem added come after them.
fn same_order(before: &Node, after: &Node, path: &str) {
    match (before, after) {
        (Node::Map(b), Node::Map(a)) => {
            let known = |k: &str| b.iter().any(|(x, _)| x == k);
            let kept: Vec<&str> = a
                .iter()
                .map(|(k, _)| k.as_str())
                .filter(|k| known(k))
                .collect();
            let original: Vec<&str> = b.iter().map(|(k, _)| k.as_str()).collect();
            assert_eq!(kept, original, "{path}: keys reordered");
            if let Some(i) = a.iter().position(|(k, _)| !known(k)) {
                assert!(
                    a[i..].iter().all(|(k, _)| !known(k)),
                    "{path}: Tandem's keys are not after the user's"
                );
            }
            for (k, v) in b {
                same_order(v, after.get(k).expect("kept"), &format!("{path}.{k}"));
            }
        }
        (Node::List(b), Node::List(a)) => {
            // Native sidecars are inserted before the user's init containers:
            // match items by name where they have one.
            for (i, item) in b.iter().enumerate() {
                let twin = match item.get("name") {
                    Some(Node::Text(n)) => a
                        .iter()
                        .find(|x| matches!(x.get("name"), Some(Node::Text(m)) if m == n)),
                    _ => a.get(i),
                };
                same_order(item, twin.expect("kept"), &format!("{path}[{i}]"));
            }
        }
        _ => {}
    }
}

#[test]
fn inject_keeps_the_users_field_order() {
    let yaml = std::fs::read_to_string(manifest_dir().join(ALL)).unwrap();
    let run = ok(&["inject", "-c", "examples/templates", "-f", ALL], None);
    let before: Vec<Node> = serde_saphyr::from_multiple(&yaml).unwrap();
    let after: Vec<Node> = serde_saphyr::from_multiple(&run.stdout).unwrap();
    assert_eq!(before.len(), after.len());
    for (i, (b, a)) in before.iter().zip(&after).enumerate() {
        same_order(b, a, &format!("yaml document {i}"));
    }

    // JSON in a deliberately unsorted order: kind before apiVersion.
    let json = r#"{"kind": "Pod", "apiVersion": "v1",
        "metadata": {"name": "p", "annotations": {"tandem.dev/inject": "log-shipper"}},
        "spec": {"containers": [{"name": "app", "image": "x:1", "env": [{"value": "1", "name": "A"}]}]}}"#;
    let run = ok(
        &["inject", "-c", "examples/templates", "-f", "-"],
        Some(json),
    );
    let before: Node = serde_json::from_str(json).unwrap();
    let after: Node = serde_json::from_str(&run.stdout).unwrap();
    same_order(&before, &after, "json");
    assert!(run.stdout.starts_with("{\n  \"kind\": \"Pod\""), "{run}");
}

/// The keys of the YAML map that starts at the list item `- name: NAME`, in
/// the order the text has them.
fn keys_of_item(yaml: &str, name: &str) -> Vec<String> {
    let lines: Vec<&str> = yaml.lines().collect();
    let start = lines
        .iter()
        .position(|l| l.trim_start() == format!("- name: {name}"))
        .unwrap_or_else(|| panic!("no item {name}"));
    let dash = lines[start].len() - lines[start].trim_start().len();
    let indent = dash + 2;
    let mut keys = vec!["name".to_string()];
    for line in &lines[start + 1..] {
        let at = line.len() - line.trim_start().len();
        if line.trim().is_empty() || at > indent {
            continue;
        }
        if at < indent {
            break;
        }
        // A list item at the key's own indent (`args:` then `- a`) belongs
        // to the value above.
        if line.trim_start().starts_with("- ") {
            continue;
        }
        keys.push(line.trim_start().split(':').next().unwrap().to_string());
    }
    keys
}

/// What Tandem injects reads like its template: `name` first, then the
/// template's fields in the template's order (a native sidecar's
/// `restartPolicy` last), not the alphabetical order of a typed round trip.
#[test]
fn injected_containers_keep_the_templates_field_order() {
    let run = ok(
        &[
            "inject",
            "-c",
            "examples/templates",
            "-f",
            "examples/workloads/pod.yaml",
        ],
        None,
    );
    let template = read_repo("examples/templates/log-adapter.yaml");
    let written = keys_of_item(&template, "log-adapter");
    assert_ne!(
        written[1], "args",
        "the example is not alphabetical: {written:?}"
    );
    assert_eq!(keys_of_item(&run.stdout, "log-adapter"), written, "{run}");
    let template = read_repo("examples/templates/config-init.yaml");
    let written = keys_of_item(&template, "config-fetcher");
    assert_eq!(
        keys_of_item(&run.stdout, "config-fetcher"),
        written,
        "{run}"
    );
    // The user's own objects keep theirs; what Tandem adds to them comes after.
    let input = read_repo("examples/workloads/pod.yaml");
    let theirs = keys_of_item(&input, "shell");
    let now = keys_of_item(&run.stdout, "shell");
    assert_eq!(now[..theirs.len()], theirs[..], "{now:?}");
    assert_eq!(now[theirs.len()..], ["volumeMounts"], "{now:?}");
}

/// `tandem check --pod-security LEVEL`: every field of a template's
/// containers and volumes that breaks the level is an error, judged as if
/// the pod set nothing for them to inherit.
#[test]
fn check_holds_templates_to_a_pod_security_level() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.yaml");
    let bare = template_doc(
        "bare",
        json!({"pattern": "sidecar", "containers": [{"name": "bare", "image": "example.com/bare:1"}]}),
    );
    std::fs::write(&path, &bare).unwrap();
    let file = path.to_str().unwrap();
    ok(&["check", "-c", file, "--pod-security", "baseline"], None);
    let run = fails(&["check", "-c", file, "--pod-security", "restricted"], None);
    for field in [
        "bare: securityContext.allowPrivilegeEscalation must be false",
        "bare: securityContext.runAsNonRoot must be true",
        "bare: securityContext.seccompProfile.type",
        "bare: securityContext.capabilities.drop must include ALL",
    ] {
        assert!(
            run.stdout
                .contains(&format!("PodSecurity restricted:latest: {field}")),
            "{field}: {run}"
        );
    }
    let host = template_doc(
        "host",
        json!({"pattern": "sidecar", "containers": [{"name": "host", "image": "example.com/host:1",
               "ports": [{"containerPort": 53, "hostPort": 53}]}]}),
    );
    std::fs::write(&path, host).unwrap();
    let run = fails(&["check", "-c", file, "--pod-security", "baseline"], None);
    assert!(
        run.stdout
            .contains("host: ports.hostPort must be unset or 0"),
        "{run}"
    );
    // The examples meet restricted.
    ok(
        &[
            "check",
            "-c",
            "examples/templates",
            "--pod-security",
            "restricted",
        ],
        None,
    );
}

/// Offline, the namespace's Pod Security labels come from
/// `--namespace-labels`: a template that would break the enforced level is
/// left out of a compliant pod, and explain shows the gate.
#[test]
fn inject_holds_templates_to_the_namespace_pod_security_level() {
    let dir = tempfile::tempdir().unwrap();
    let templates = dir.path().join("t.yaml");
    std::fs::write(
        &templates,
        template_doc(
            "bare",
            json!({"pattern": "sidecar", "containers": [{"name": "bare", "image": "example.com/bare:1"}]}),
        ),
    )
    .unwrap();
    let pod = "apiVersion: v1
kind: Pod
metadata:
  name: shop
  annotations: {tandem.dev/inject: bare}
spec:
  securityContext: {runAsNonRoot: true, seccompProfile: {type: RuntimeDefault}}
  containers:
    - name: app
      image: example.com/shop:1
      securityContext: {allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}
";
    let t = templates.to_str().unwrap();
    let labels = "pod-security.kubernetes.io/enforce=restricted";
    let run = ok(
        &["inject", "-c", t, "--namespace-labels", labels, "-f", "-"],
        Some(pod),
    );
    assert!(
        run.stderr
            .contains("Pod/shop: bare skipped (breaks PodSecurity restricted:latest"),
        "{run}"
    );
    let out = yaml_docs(&run.stdout, "output");
    assert_eq!(names(&out[0], "/spec/containers"), ["app"]);
    let run = ok(
        &["explain", "-c", t, "--namespace-labels", labels, "-f", "-"],
        Some(pod),
    );
    assert!(
        run.stdout
            .contains("the pod meets PodSecurity restricted:latest"),
        "{run}"
    );
    // Without the label: injected (a native sidecar on a current cluster).
    let run = ok(&["inject", "-c", t, "-f", "-"], Some(pod));
    let out = yaml_docs(&run.stdout, "output");
    assert_eq!(names(&out[0], "/spec/initContainers"), ["bare"], "{run}");
}
