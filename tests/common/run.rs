//! Running the `tandem` binary, waiting for a condition, reading YAML and
//! checking a ClusterRole: the helpers every integration test used to copy.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::rbac::v1::ClusterRole;
use serde_json::Value;

/// One finished `tandem` process.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    /// Exit code 0.
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// `tandem ARGS` in the crate's root, no stdin.
pub fn tandem(args: &[&str]) -> Run {
    tandem_with(args, None, &super::manifest_dir())
}

/// `tandem ARGS` in `cwd`.
pub fn tandem_at(args: &[&str], cwd: &Path) -> Run {
    tandem_with(args, None, cwd)
}

/// `tandem ARGS` in `cwd`, with `stdin` piped in when given. Never a panic
/// inside tandem, and never a subcommand the CLI does not know.
pub fn tandem_with(args: &[&str], stdin: Option<&str>, cwd: &Path) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tandem"))
        .args(args)
        .current_dir(cwd)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run tandem");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    let out = child.wait_with_output().expect("tandem finishes");
    let code = out.status.code().expect("exited, not killed");
    let run = Run {
        code,
        ok: code == 0,
        stdout: String::from_utf8(out.stdout).expect("utf-8 stdout"),
        stderr: String::from_utf8(out.stderr).expect("utf-8 stderr"),
    };
    assert!(!run.stderr.contains("panicked"), "{run}");
    assert!(
        !run.stderr.contains("unrecognized subcommand"),
        "`tandem {}` is not wired into src/cli/mod.rs: {}",
        args.join(" "),
        run.stderr
    );
    run
}

/// How often [`wait_for`] polls.
const POLL: Duration = Duration::from_millis(50);

/// Polls `check` until it gives a value, or `within` has passed (`None`).
/// A generous `within` costs nothing when things go right, so a slow,
/// shared 2-core machine is no risk; a fixed sleep is.
pub async fn wait_for<T>(within: Duration, mut check: impl AsyncFnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = check().await {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Waits up to 20 s for `done`; the panic names `what` was awaited.
pub async fn wait_until(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let waited = wait_for(Duration::from_secs(20), async || done().await.then_some(())).await;
    assert!(waited.is_some(), "timed out waiting for {what}");
}

/// The documents of a multi-document YAML text, empty ones dropped.
pub fn yaml_docs(text: &str, what: &str) -> Vec<Value> {
    let docs: Vec<Value> =
        serde_saphyr::from_multiple(text).unwrap_or_else(|e| panic!("{what}: {e}"));
    docs.into_iter().filter(|d| !d.is_null()).collect()
}

/// A file of the repository, by its path from the crate's root.
pub fn repo_path(relative: &str) -> PathBuf {
    super::manifest_dir().join(relative)
}

/// The text of a file of the repository.
pub fn read_repo(relative: &str) -> String {
    let path = repo_path(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The YAML documents of a file of the repository.
pub fn repo_yaml(relative: &str) -> Vec<Value> {
    yaml_docs(&read_repo(relative), relative)
}

/// A ClusterRole grants exactly the calls Tandem makes (`cluster::RBAC`),
/// in its order: no more, no fewer.
pub fn assert_grants_exactly_what_tandem_calls(role: &ClusterRole, source: &str) {
    let mut granted: Vec<(String, String, Vec<String>)> = Vec::new();
    for rule in role.rules.clone().unwrap_or_default() {
        for group in rule.api_groups.clone().unwrap_or_default() {
            for resource in rule.resources.clone().unwrap_or_default() {
                granted.push((group.clone(), resource, rule.verbs.clone()));
            }
        }
    }
    let wanted: Vec<(String, String, Vec<String>)> = tandem::cluster::RBAC
        .iter()
        .map(|(g, r, verbs)| {
            (
                g.to_string(),
                r.to_string(),
                verbs.iter().map(|s| s.to_string()).collect(),
            )
        })
        .collect();
    assert_eq!(granted, wanted, "{source}: exactly the calls Tandem makes");
}
