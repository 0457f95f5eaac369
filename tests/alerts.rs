//! Tandem's alerts and Grafana dashboard, as `deploy/monitoring` and the chart
//! ship them:
//!
//! - every series an alert or a dashboard panel reads is one Tandem exports
//!   (the registrations of `src/server/metrics.rs`, read as text) or one of the
//!   few it takes from elsewhere (`up`, the API server's fail-open count), with
//!   only that metric's labels, and every label value it matches is one Tandem
//!   writes (outcomes from `admission::Outcome`, skip reasons from the table of
//!   docs/operations.md, which tests/metrics_docs.rs holds to the engine);
//! - the rules pass `promtool check rules`, and their unit tests in
//!   `deploy/monitoring/tests` pass `promtool test rules` and see every alert
//!   both fire and stay quiet. Without promtool that test says SKIPPED;
//!   TANDEM_REQUIRE_PROMTOOL=1 makes it a failure instead;
//! - every alert has a severity, a summary, a description and a runbook
//!   section in docs/operations.md;
//! - the chart renders the same PrometheusRule, dashboard and ServiceMonitor
//!   as `deploy/monitoring` (skipped without a Helm renderer, as in
//!   tests/install.rs, and failed with TANDEM_REQUIRE_HELM=1).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Write as _;
use std::path::Path;
use std::process::Command;

use common::run::{read_repo, repo_path, repo_yaml, yaml_docs};
use serde_json::{Value, json};
use tandem::admission::Outcome;

const NS: &str = "tandem-system";
const RULES: &str = "deploy/monitoring/prometheusrule.yaml";
const RULE_TESTS: &str = "deploy/monitoring/tests";
/// What the unit tests' `rule_files` name: the `spec` of RULES, which
/// promtool reads as plain rule groups.
const RULES_FOR_PROMTOOL: &str = "tandem.rules.yaml";
const DASHBOARD: &str = "deploy/monitoring/dashboard.yaml";
/// The chart's copy of the dashboard, which its ConfigMap template reads.
const CHART_DASHBOARD: &str = "charts/tandem/dashboards/tandem.json";
const SERVICE_MONITOR: &str = "deploy/monitoring/servicemonitor.yaml";
const KUSTOMIZATION: &str = "deploy/monitoring/kustomization.yaml";
const OPERATIONS: &str = "docs/operations.md";
const RUNBOOKS: &str = "https://github.com/tandem-dev/tandem/blob/main/docs/operations.md#";
const CHART: &str = "charts/tandem";
const RELEASE: &str = "tandem";

// ---------------------------------------------------------------------------
// What Tandem exports
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// Labels that Prometheus adds to every series of a scraped target
/// (ServiceMonitor: namespace, pod, service, container, endpoint, job, instance).
const TARGET_LABELS: &str = "namespace pod service container endpoint job instance";

/// The series from outside Tandem that the alerts and the dashboard may read,
/// with their labels.
const EXTERNAL: [(&str, &[&str]); 2] = [
    ("up", &[]),
    // kube-apiserver: calls to a webhook that failed and were ignored.
    (
        "apiserver_admission_webhook_fail_open_count",
        &["name", "type"],
    ),
];

/// The metrics src/server/metrics.rs registers, read from its text: each
/// `registry.register("NAME", "help", metric)` and the kind of `metric`,
/// from its declaration (`let metric = …;` or the struct field).
fn registered() -> BTreeMap<String, Kind> {
    let source = read_repo("src/server/metrics.rs");
    assert!(
        !source.contains("register_with_unit"),
        "src/server/metrics.rs registers with a unit: teach tests/alerts.rs its suffix"
    );
    let aliases: BTreeMap<String, String> = source
        .lines()
        .filter_map(|l| l.trim().strip_prefix("type "))
        .filter_map(|l| l.split_once('='))
        .map(|(name, def)| (name.trim().to_string(), def.to_string()))
        .collect();
    let mut out = BTreeMap::new();
    for (at, _) in source.match_indices("registry.register(") {
        let args = call_args(&source[at + "registry.register(".len()..]);
        assert!(args.len() >= 3, "src/server/metrics.rs: {args:?}");
        let name = args[0]
            .strip_prefix('"')
            .and_then(|n| n.strip_suffix('"'))
            .unwrap_or_else(|| panic!("a metric name that is not a literal: {}", args[0]));
        let metric = words(args.last().unwrap())
            .find(|w| !["Box", "new", "clone"].contains(w))
            .unwrap_or_else(|| panic!("{name}: which metric is {}?", args.last().unwrap()))
            .to_string();
        let mut kinds = BTreeSet::new();
        for declaration in declarations(&source, &metric) {
            let mut text = declaration.to_string();
            for (alias, def) in &aliases {
                if words(declaration).any(|w| w == alias) {
                    text.push_str(def);
                }
            }
            kinds.extend(words(&text).filter_map(|w| match w {
                "Counter" => Some(Kind::Counter),
                "Gauge" => Some(Kind::Gauge),
                "Histogram" => Some(Kind::Histogram),
                _ => None,
            }));
        }
        assert!(
            kinds.len() == 1,
            "src/server/metrics.rs: cannot tell the kind of {metric} ({name}): {kinds:?}"
        );
        let kind = kinds.pop_first().unwrap();
        assert!(
            out.insert(name.to_string(), kind).is_none(),
            "{name} registered twice"
        );
    }
    assert!(out.len() >= 10, "only {out:?} registered?");
    out
}

/// The arguments of a call, `text` starting after its `(`: split on the
/// commas outside strings and brackets.
fn call_args(text: &str) -> Vec<String> {
    let mut args = vec![String::new()];
    let (mut depth, mut in_string, mut escaped) = (0, false, false);
    for c in text.chars() {
        if in_string {
            args.last_mut().unwrap().push(c);
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_string = true,
            '(' | '[' | '{' | '<' => depth += 1,
            ')' | ']' | '}' | '>' if depth > 0 => depth -= 1,
            ')' => break,
            ',' if depth == 0 => {
                args.push(String::new());
                continue;
            }
            _ => {}
        }
        args.last_mut().unwrap().push(c);
    }
    args.into_iter()
        .map(|a| a.trim().to_string())
        .filter(|a| !a.is_empty())
        .collect()
}

fn words(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| !w.is_empty())
}

/// The texts that declare `name`: `let name … ;` statements and `name: Type`
/// struct fields.
fn declarations<'a>(source: &'a str, name: &str) -> Vec<&'a str> {
    let mut out = Vec::new();
    for (at, _) in source.match_indices(&format!("let {name}")) {
        let rest = &source[at + 4 + name.len()..];
        if rest.starts_with([' ', ':', '=']) {
            out.push(&rest[..rest.find(';').unwrap_or(rest.len())]);
        }
    }
    for line in source.lines() {
        let field = line
            .trim()
            .trim_start_matches("pub(crate) ")
            .trim_start_matches("pub ");
        if let Some(ty) = field.strip_prefix(&format!("{name}:")) {
            out.push(ty);
        }
    }
    out
}

/// Every series name Tandem exports, with the metric (registered name) it
/// belongs to and that metric's kind.
fn exported() -> BTreeMap<String, (String, Kind)> {
    let metrics = registered();
    let mut out = BTreeMap::new();
    for (name, kind) in metrics {
        let suffixes: &[&str] = match kind {
            Kind::Counter => &["_total"],
            Kind::Gauge => &[""],
            Kind::Histogram => &["_bucket", "_sum", "_count"],
        };
        for s in suffixes {
            out.insert(format!("tandem_{name}{s}"), (name.clone(), kind));
        }
    }
    out
}

/// Every `admission::Outcome`, as the metric writes it.
fn outcomes() -> Vec<String> {
    let all = [
        Outcome::Patched,
        Outcome::Allowed,
        Outcome::Denied,
        Outcome::Invalid,
        Outcome::Error,
    ];
    // A new outcome fails to compile here: add it to `all` too.
    match all[0] {
        Outcome::Patched
        | Outcome::Allowed
        | Outcome::Denied
        | Outcome::Invalid
        | Outcome::Error => {}
    }
    all.iter().map(|o| o.as_str().to_string()).collect()
}

/// The values of `tandem_skips_total{reason}`: the table of docs/operations.md
/// (tests/metrics_docs.rs holds it to the engine's `SkipReason`).
fn skip_reasons() -> Vec<String> {
    let doc = read_repo(OPERATIONS);
    let start = doc
        .find("`tandem_skips_total{reason}` takes exactly these values")
        .expect("the skip reason table");
    let reasons: Vec<String> = doc[start..]
        .lines()
        .skip_while(|l| !l.starts_with("| reason |"))
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .map(|l| l.split('`').nth(1).unwrap_or_default().to_string())
        .collect();
    assert!(reasons.len() > 5, "{reasons:?}");
    reasons
}

/// A label of a metric, and the values Tandem writes when they are a fixed
/// set (`None`: names from the cluster, such as templates).
type Label = (&'static str, Option<Vec<String>>);

fn fixed(values: &[&str]) -> Option<Vec<String>> {
    Some(values.iter().map(|v| v.to_string()).collect())
}

/// The labels of each metric Tandem exports, by registered name.
fn labels_of(metric: &str) -> Vec<Label> {
    match metric {
        "admission_requests" => vec![("outcome", Some(outcomes()))],
        "injections" => vec![("template", None)],
        "skips" => vec![("reason", Some(skip_reasons()))],
        "template_reloads" | "certificate_reloads" | "client_ca_reloads" => {
            vec![("result", fixed(&["success", "failure"]))]
        }
        "client_auth_failures" => vec![(
            "reason",
            fixed(&[
                "no-certificate",
                "unknown-issuer",
                "expired",
                "invalid-certificate",
            ]),
        )],
        "watch_errors" => vec![
            (
                "resource",
                fixed(&["sidecartemplates", "namespaces", "pods"]),
            ),
            ("reason", fixed(&["not-found", "forbidden", "other"])),
        ],
        "injected_pods" => vec![
            ("template", None),
            ("state", fixed(&["current", "outdated"])),
        ],
        _ => vec![],
    }
}

// ---------------------------------------------------------------------------
// PromQL, as far as reading which series an expression selects
// ---------------------------------------------------------------------------

#[derive(Debug)]
struct Matcher {
    label: String,
    op: String,
    value: String,
}

#[derive(Debug)]
struct Selector {
    name: String,
    matchers: Vec<Matcher>,
}

#[derive(Debug, Default)]
struct Promql {
    selectors: Vec<Selector>,
    /// The labels of `by`, `without`, `on`, `ignoring`, `group_left` and
    /// `group_right` lists.
    grouping: BTreeSet<String>,
}

const GROUPING: &str = "by without on ignoring group_left group_right";
/// Words that are neither series nor functions: operators, aggregations
/// (which may take `by (…)` before their parenthesis) and literals.
const KEYWORDS: &str = "and or unless offset bool atan2 sum min max avg group stddev stdvar count \
    count_values bottomk topk quantile limitk inf nan";

fn words_of(list: &str) -> impl Iterator<Item = &str> {
    list.split_whitespace()
}

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':'
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

/// A string literal starting at `b[at]`: its value and the index after it.
fn string_at(b: &[char], at: usize, expr: &str) -> (String, usize) {
    let quote = b[at];
    let mut value = String::new();
    let mut i = at + 1;
    while i < b.len() && b[i] != quote {
        if b[i] == '\\' && quote != '`' {
            i += 1;
        }
        value.extend(b.get(i));
        i += 1;
    }
    assert!(i < b.len(), "unterminated string in {expr}");
    (value, i + 1)
}

fn skip_spaces(b: &[char], mut i: usize) -> usize {
    while i < b.len() && b[i].is_whitespace() {
        i += 1;
    }
    i
}

/// The matchers of `{…}` starting at `b[open]`, and the index after `}`.
fn matchers_at(b: &[char], open: usize, expr: &str) -> (Vec<Matcher>, usize) {
    let mut out = Vec::new();
    let mut i = open + 1;
    loop {
        while i < b.len() && (b[i].is_whitespace() || b[i] == ',') {
            i += 1;
        }
        assert!(i < b.len(), "unclosed {{ in {expr}");
        if b[i] == '}' {
            return (out, i + 1);
        }
        let start = i;
        while i < b.len() && is_ident(b[i]) {
            i += 1;
        }
        let label: String = b[start..i].iter().collect();
        assert!(!label.is_empty(), "a matcher without a label in {expr}");
        i = skip_spaces(b, i);
        let op = match (b.get(i), b.get(i + 1)) {
            (Some('=' | '!'), Some('~')) | (Some('!'), Some('=')) => 2,
            (Some('='), _) => 1,
            _ => panic!("no matcher operator after {label} in {expr}"),
        };
        let op: String = b[i..i + op].iter().collect();
        i = skip_spaces(b, i + op.len());
        assert!(
            matches!(b.get(i), Some('"' | '\'' | '`')),
            "{label}{op} is not followed by a string in {expr}"
        );
        let (value, next) = string_at(b, i, expr);
        i = next;
        out.push(Matcher { label, op, value });
    }
}

/// The series selectors and grouping labels of a PromQL expression.
fn promql(expr: &str) -> Promql {
    let b: Vec<char> = expr.chars().collect();
    let mut out = Promql::default();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == '#' {
            while i < b.len() && b[i] != '\n' {
                i += 1;
            }
        } else if matches!(c, '"' | '\'' | '`') {
            i = string_at(&b, i, expr).1;
        } else if c == '[' {
            // A range or a subquery: durations and Grafana's $__rate_interval.
            while i < b.len() && b[i] != ']' {
                i += 1;
            }
            i += 1;
        } else if c == '{' {
            let (matchers, next) = matchers_at(&b, i, expr);
            let name = matchers
                .iter()
                .find(|m| m.label == "__name__" && m.op == "=")
                .map(|m| m.value.clone())
                .unwrap_or_default();
            out.selectors.push(Selector { name, matchers });
            i = next;
        } else if c.is_ascii_digit() || (c == '.' && b.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            // A number or a duration: 0.99, 7, 86400, 1e-9, 15m, 1h30m.
            i += 1;
            while i < b.len()
                && (b[i].is_ascii_alphanumeric()
                    || b[i] == '.'
                    || b[i] == '_'
                    || (matches!(b[i], '+' | '-') && matches!(b[i - 1], 'e' | 'E')))
            {
                i += 1;
            }
        } else if is_ident_start(c) {
            let start = i;
            while i < b.len() && is_ident(b[i]) {
                i += 1;
            }
            let word: String = b[start..i].iter().collect();
            let next = skip_spaces(&b, i);
            if words_of(GROUPING).any(|g| g == word) {
                if b.get(next) == Some(&'(') {
                    let close = next
                        + b[next..]
                            .iter()
                            .position(|&c| c == ')')
                            .unwrap_or_else(|| panic!("unclosed {word} ( in {expr}"));
                    let list: String = b[next + 1..close].iter().collect();
                    out.grouping.extend(
                        list.split(',')
                            .map(str::trim)
                            .filter(|l| !l.is_empty())
                            .map(str::to_string),
                    );
                    i = close + 1;
                }
            } else if words_of(KEYWORDS).any(|k| k == word.to_lowercase())
                || b.get(next) == Some(&'(')
            {
                // An operator, an aggregation or a function call.
            } else if b.get(next) == Some(&'{') {
                let (matchers, after) = matchers_at(&b, next, expr);
                out.selectors.push(Selector {
                    name: word,
                    matchers,
                });
                i = after;
            } else {
                out.selectors.push(Selector {
                    name: word,
                    matchers: Vec::new(),
                });
            }
        } else {
            i += 1;
        }
    }
    out
}

/// What is wrong with the series `expr` reads (`what` names it in messages):
/// a series Tandem does not export, a label its metric does not have, a value
/// Tandem never writes, a grouping label none of its series carries.
fn check_expr(expr: &str, what: &str, exported: &BTreeMap<String, (String, Kind)>) -> Vec<String> {
    let parsed = promql(expr);
    let mut problems = Vec::new();
    let mut carried: BTreeSet<String> = words_of(TARGET_LABELS).map(str::to_string).collect();
    if parsed.selectors.is_empty() {
        problems.push(format!("{what}: reads no series: {expr}"));
    }
    for s in &parsed.selectors {
        let labels: Vec<Label> = if let Some((metric, kind)) = exported.get(&s.name) {
            let mut labels = labels_of(metric);
            if *kind == Kind::Histogram && s.name.ends_with("_bucket") {
                labels.push(("le", None));
            }
            labels
        } else if let Some((_, labels)) = EXTERNAL.iter().find(|(n, _)| *n == s.name) {
            labels.iter().map(|l| (*l, None)).collect()
        } else if s.name.starts_with("tandem_") {
            problems.push(format!(
                "{what}: {} is not a series Tandem exports (src/server/metrics.rs registers {:?})",
                s.name,
                exported.keys().collect::<Vec<_>>()
            ));
            continue;
        } else {
            problems.push(format!(
                "{what}: {:?} is neither Tandem's nor one of the external series {:?}",
                s.name,
                EXTERNAL.map(|(n, _)| n)
            ));
            continue;
        };
        carried.extend(labels.iter().map(|(l, _)| l.to_string()));
        for m in &s.matchers {
            if words_of(TARGET_LABELS).any(|l| l == m.label) {
                continue;
            }
            let Some((_, values)) = labels.iter().find(|(l, _)| *l == m.label) else {
                problems.push(format!("{what}: {} has no label {}", s.name, m.label));
                continue;
            };
            let Some(values) = values else { continue };
            let listed: Vec<&str> =
                if m.op.ends_with('~') {
                    if !m.value.chars().all(|c| {
                        c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '|'
                    }) {
                        problems.push(format!(
                            "{what}: {}{}{:?}: list the values as a|b|c, nothing more",
                            m.label, m.op, m.value
                        ));
                    }
                    m.value.split('|').collect()
                } else {
                    vec![m.value.as_str()]
                };
            for v in listed {
                if !values.iter().any(|x| x == v) {
                    problems.push(format!(
                        "{what}: {}{{{}{}{:?}}}: Tandem never writes {v:?}; it writes {values:?}",
                        s.name, m.label, m.op, m.value
                    ));
                }
            }
        }
    }
    for l in &parsed.grouping {
        if !carried.contains(l) {
            problems.push(format!(
                "{what}: groups by {l}, which none of its series carries"
            ));
        }
    }
    problems
}

#[test]
fn the_promql_reader_finds_series_labels_and_groupings() {
    let p = promql(
        r#"sum by (namespace) (increase(tandem_x_total{result="failure", a=~'b|c'}[15m])) > 1e-9
           or histogram_quantile(0.99, sum without (pod, le) (rate(y_bucket[$__rate_interval])))
           unless z offset 15m # a comment naming not_a_series
           / on (job) group_left (t) {__name__="w", le!="+Inf"}"#,
    );
    let names: Vec<&str> = p.selectors.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["tandem_x_total", "y_bucket", "z", "w"]);
    let m = &p.selectors[0].matchers;
    assert_eq!(
        m.iter()
            .map(|m| format!("{}{}{}", m.label, m.op, m.value))
            .collect::<Vec<_>>(),
        ["result=failure", "a=~b|c"]
    );
    assert_eq!(
        p.grouping.iter().map(String::as_str).collect::<Vec<_>>(),
        ["job", "le", "namespace", "pod", "t"]
    );
    // And the checks catch what they are for.
    let exported = exported();
    for (expr, problem) in [
        ("tandem_admission_requests", "not a series Tandem exports"),
        (
            r#"tandem_admission_requests_total{outcome="ok"}"#,
            "never writes \"ok\"",
        ),
        (
            r#"tandem_template_reloads_total{result!~"ok|success"}"#,
            "never writes \"ok\"",
        ),
        (r#"tandem_skips_total{reason=~"missing.*"}"#, "nothing more"),
        (
            r#"tandem_skips_total{outcome="denied"}"#,
            "has no label outcome",
        ),
        (
            "sum by (template) (tandem_skips_total)",
            "groups by template",
        ),
        ("kube_pod_info", "neither Tandem's"),
    ] {
        let problems = check_expr(expr, "example", &exported);
        assert!(
            problems.iter().any(|p| p.contains(problem)),
            "{expr}: {problems:?}"
        );
    }
    assert_eq!(
        check_expr(
            r#"sum by (le, namespace) (rate(tandem_admission_duration_seconds_bucket{pod!=""}[5m]))"#,
            "example",
            &exported
        ),
        Vec::<String>::new()
    );
}

#[test]
fn the_metrics_read_from_source_are_the_registered_ones() {
    let registered = registered();
    for (name, kind) in [
        ("admission_requests", Kind::Counter),
        ("admission_duration_seconds", Kind::Histogram),
        ("certificate_expiry_timestamp_seconds", Kind::Gauge),
        ("watch_errors", Kind::Counter),
        ("templates", Kind::Gauge),
    ] {
        assert_eq!(registered.get(name), Some(&kind), "{name}: {registered:?}");
    }
    // Every metric with labels in `labels_of` is registered,
    // and every label it lists is one the source sets.
    let server: String = fs::read_dir(repo_path("src/server"))
        .unwrap()
        .map(|e| fs::read_to_string(e.unwrap().path()).unwrap_or_default())
        .collect();
    let all_src = source_tree("src");
    for metric in registered.keys() {
        for (label, values) in labels_of(metric) {
            assert!(
                server.contains(&format!("(\"{label}\",")),
                "{metric}: src/server sets no label {label}"
            );
            // Each fixed value is written somewhere in the source.
            for v in values.unwrap_or_default() {
                assert!(
                    all_src.contains(&format!("\"{v}\"")),
                    "{metric}{{{label}}}: \"{v}\" appears nowhere in src/"
                );
            }
        }
    }
}

/// The text of every `.rs` file under `dir`.
fn source_tree(dir: &str) -> String {
    fn walk(path: &Path, out: &mut String) {
        for entry in fs::read_dir(path).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|e| e == "rs") {
                out.push_str(&fs::read_to_string(&p).unwrap());
            }
        }
    }
    let mut out = String::new();
    walk(&repo_path(dir), &mut out);
    out
}

// ---------------------------------------------------------------------------
// The rules
// ---------------------------------------------------------------------------

fn prometheus_rule() -> Value {
    let docs = repo_yaml(RULES);
    assert_eq!(docs.len(), 1, "{RULES}: one document");
    docs.into_iter().next().unwrap()
}

/// `(group, rule)` for every rule of the PrometheusRule `rule`.
fn rules_of(rule: &Value) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for g in rule["spec"]["groups"].as_array().expect("spec.groups") {
        let group = g["name"].as_str().expect("group name").to_string();
        for r in g["rules"].as_array().expect("rules") {
            out.push((group.clone(), r.clone()));
        }
    }
    out
}

fn alert_names() -> Vec<String> {
    rules_of(&prometheus_rule())
        .iter()
        .map(|(_, r)| {
            r["alert"]
                .as_str()
                .expect("every rule is an alert")
                .to_string()
        })
        .collect()
}

/// The `spec` of RULES as promtool reads it (plain rule groups): the lines
/// after `spec:`, two spaces less indented.
fn rules_for_promtool() -> String {
    let text = read_repo(RULES);
    let (_, spec) = text.split_once("\nspec:\n").expect("a top-level spec:");
    let mut out = String::new();
    for line in spec.lines() {
        let line = if line.trim().is_empty() {
            ""
        } else {
            line.strip_prefix("  ")
                .unwrap_or_else(|| panic!("{RULES}: `{line}` is not inside spec"))
        };
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[test]
fn the_rule_file_is_a_prometheus_rule_of_tandem_system() {
    let rule = prometheus_rule();
    assert_eq!(rule["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(rule["kind"], "PrometheusRule");
    assert_eq!(rule["metadata"]["name"], "tandem");
    assert_eq!(rule["metadata"]["namespace"], NS);
    let spec: Value = serde_saphyr::from_str(&rules_for_promtool()).unwrap();
    assert_eq!(spec, rule["spec"], "what promtool reads is the spec");
    let groups: Vec<&str> = rule["spec"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap())
        .collect();
    let unique: BTreeSet<&str> = groups.iter().copied().collect();
    assert_eq!(unique.len(), groups.len(), "group names: {groups:?}");
}

#[test]
fn alerts_read_only_what_tandem_exports() {
    let exported = exported();
    let webhook = repo_yaml("deploy/base/mutatingwebhook.yaml")
        .into_iter()
        .find(|d| d["kind"] == "MutatingWebhookConfiguration")
        .expect("the MutatingWebhookConfiguration");
    let webhook_name = webhook["webhooks"][0]["name"].as_str().unwrap().to_string();
    let mut problems = Vec::new();
    for (group, rule) in rules_of(&prometheus_rule()) {
        let what = format!("{group}/{}", rule["alert"].as_str().unwrap_or("?"));
        let expr = rule["expr"].as_str().expect("expr");
        problems.extend(check_expr(expr, &what, &exported));
        for s in promql(expr).selectors {
            if s.name == "apiserver_admission_webhook_fail_open_count" {
                let names: Vec<&str> = s
                    .matchers
                    .iter()
                    .filter(|m| m.label == "name")
                    .map(|m| m.value.as_str())
                    .collect();
                assert_eq!(names, [webhook_name.as_str()], "{what}: Tandem's webhook");
            }
            if s.name == "up" {
                let job: Vec<String> = s
                    .matchers
                    .iter()
                    .map(|m| format!("{}{}{}", m.label, m.op, m.value))
                    .collect();
                assert_eq!(
                    job,
                    ["job=tandem", "namespace=tandem-system"],
                    "{what}: the ServiceMonitor's job (the Service's name) in Tandem's namespace"
                );
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// GitHub's anchor of a Markdown heading.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

#[test]
fn every_alert_says_what_to_do_and_has_a_runbook() {
    let docs = read_repo(OPERATIONS);
    let anchors: BTreeSet<String> = docs
        .lines()
        .filter(|l| l.starts_with('#'))
        .map(|l| anchor(l.trim_start_matches('#')))
        .collect();
    let mut seen = BTreeSet::new();
    for (group, rule) in rules_of(&prometheus_rule()) {
        let alert = rule["alert"].as_str().expect("every rule is an alert");
        let what = format!("{group}/{alert}");
        assert!(seen.insert(alert.to_string()), "{alert} twice");
        assert!(
            alert.starts_with("Tandem") && alert.chars().all(|c| c.is_ascii_alphanumeric()),
            "{what}: alerts are named TandemSomething"
        );
        assert!(
            ["critical", "warning", "info"]
                .contains(&rule["labels"]["severity"].as_str().unwrap_or("")),
            "{what}: severity"
        );
        let annotations = rule["annotations"].as_object().expect("annotations");
        let keys: BTreeSet<&str> = annotations.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            BTreeSet::from(["summary", "description", "runbook_url"]),
            "{what}"
        );
        let description = annotations["description"].as_str().unwrap();
        assert!(
            description.len() > 80,
            "{what}: a description that says what to do"
        );
        assert!(!rule["annotations"]["summary"].as_str().unwrap().is_empty());
        let runbook = annotations["runbook_url"].as_str().unwrap();
        assert_eq!(
            runbook,
            format!("{RUNBOOKS}{}", alert.to_lowercase()),
            "{what}: its runbook is its section of {OPERATIONS}"
        );
        assert!(
            docs.contains(&format!("\n#### {alert}\n")) && anchors.contains(&alert.to_lowercase()),
            "{OPERATIONS} has no section `#### {alert}`"
        );
        if let Some(duration) = rule.get("for") {
            let d = duration.as_str().expect("`for` is a duration");
            assert!(
                d.chars().next().is_some_and(|c| c.is_ascii_digit())
                    && d.chars()
                        .all(|c| c.is_ascii_digit() || "smhdwy".contains(c)),
                "{what}: for {d}"
            );
        }
    }
    // Every alert section of the runbook belongs to a shipped alert.
    for line in docs.lines() {
        if let Some(alert) = line.strip_prefix("#### Tandem") {
            assert!(
                seen.contains(&format!("Tandem{alert}")),
                "{OPERATIONS}: a runbook for Tandem{alert}, which no rule defines"
            );
        }
    }
}

#[test]
fn operations_md_points_at_the_shipped_rules() {
    let docs = read_repo(OPERATIONS);
    assert!(docs.contains("deploy/monitoring/prometheusrule.yaml"));
    for stale in ["adjust label values", "ok|success", "kind: PrometheusRule"] {
        assert!(!docs.contains(stale), "{OPERATIONS} still says {stale:?}");
    }
}

/// The unit test files, by file name.
fn rule_test_files() -> Vec<String> {
    let mut files: Vec<String> = fs::read_dir(repo_path(RULE_TESTS))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    for f in &files {
        assert!(
            f.ends_with(".yaml"),
            "{RULE_TESTS}/{f}: only promtool tests (*.yaml) here"
        );
        assert_ne!(
            f, RULES_FOR_PROMTOOL,
            "{RULE_TESTS}/{f} is written by the test"
        );
    }
    assert!(!files.is_empty());
    files
}

#[test]
fn every_alert_is_unit_tested_firing_and_quiet() {
    let alerts = alert_names();
    let (mut firing, mut quiet) = (BTreeSet::new(), BTreeSet::new());
    for file in rule_test_files() {
        let path = format!("{RULE_TESTS}/{file}");
        let doc: Value =
            serde_saphyr::from_str(&read_repo(&path)).unwrap_or_else(|e| panic!("{path}: {e}"));
        assert_eq!(doc["rule_files"], json!([RULES_FOR_PROMTOOL]), "{path}");
        for test in doc["tests"].as_array().expect("tests") {
            for case in test["alert_rule_test"].as_array().into_iter().flatten() {
                let name = case["alertname"].as_str().expect("alertname").to_string();
                assert!(
                    alerts.contains(&name),
                    "{path}: tests {name}, which no rule defines"
                );
                match case["exp_alerts"].as_array() {
                    Some(expected) if !expected.is_empty() => {
                        for e in expected {
                            assert!(
                                e["exp_annotations"]["description"].is_string(),
                                "{path}: {name} fires without its annotations checked"
                            );
                        }
                        firing.insert(name)
                    }
                    _ => quiet.insert(name),
                };
            }
        }
    }
    for alert in &alerts {
        assert!(firing.contains(alert), "no unit test sees {alert} fire");
        assert!(
            quiet.contains(alert),
            "no unit test sees {alert} stay quiet"
        );
    }
}

// ---------------------------------------------------------------------------
// promtool
// ---------------------------------------------------------------------------

const PROMTOOL_HINT: &str = "Install promtool: `apt-get install -y --no-install-recommends \
prometheus` (Debian), or set TANDEM_PROMTOOL=/path/to/promtool. \
TANDEM_REQUIRE_PROMTOOL=1 turns this skip into a failure.";

/// Prints past the test harness' output capture: a skipped check must be seen
/// even when the test passes.
fn notice(message: &str) {
    let _ = writeln!(std::io::stderr(), "\n{message}\n");
}

fn runs(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success())
}

/// `None` (after printing why) when promtool is not installed.
fn promtool_or_skip(test: &str) -> Option<String> {
    let promtool = std::env::var("TANDEM_PROMTOOL").unwrap_or_else(|_| "promtool".into());
    if runs(&promtool, &["--version"]) {
        return Some(promtool);
    }
    assert!(
        std::env::var_os("TANDEM_REQUIRE_PROMTOOL").is_none(),
        "TANDEM_REQUIRE_PROMTOOL is set but `{promtool} --version` does not run. {PROMTOOL_HINT}"
    );
    notice(&format!(
        "SKIPPED {test}: promtool not found, the alert rules were not checked or unit-tested. \
         {PROMTOOL_HINT}"
    ));
    None
}

fn promtool(promtool: &str, args: &[&str], dir: &Path) {
    let out = Command::new(promtool)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("{promtool}: {e}"));
    assert!(
        out.status.success(),
        "promtool {} failed:\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn promtool_checks_the_rules_and_passes_their_unit_tests() {
    let Some(bin) = promtool_or_skip("promtool_checks_the_rules_and_passes_their_unit_tests")
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join(RULES_FOR_PROMTOOL), rules_for_promtool()).unwrap();
    let files = rule_test_files();
    for f in &files {
        fs::copy(repo_path(RULE_TESTS).join(f), dir.path().join(f)).unwrap();
    }
    promtool(&bin, &["check", "rules", RULES_FOR_PROMTOOL], dir.path());
    let mut args = vec!["test", "rules"];
    args.extend(files.iter().map(String::as_str));
    promtool(&bin, &args, dir.path());
}

// ---------------------------------------------------------------------------
// The dashboard
// ---------------------------------------------------------------------------

fn dashboard_config_map() -> Value {
    let docs = repo_yaml(DASHBOARD);
    assert_eq!(docs.len(), 1, "{DASHBOARD}: one document");
    docs.into_iter().next().unwrap()
}

/// The panels of a dashboard, rows' nested panels included.
fn panels(dashboard: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in dashboard["panels"].as_array().expect("panels") {
        out.push(p);
        out.extend(p["panels"].as_array().into_iter().flatten());
    }
    out
}

#[test]
fn dashboard_config_map_is_what_grafana_loads() {
    let cm = dashboard_config_map();
    assert_eq!(cm["apiVersion"], "v1");
    assert_eq!(cm["kind"], "ConfigMap");
    assert_eq!(cm["metadata"]["namespace"], NS);
    assert_eq!(
        cm["metadata"]["labels"]["grafana_dashboard"], "1",
        "the label kube-prometheus' Grafana sidecar looks for"
    );
    let data = cm["data"].as_object().expect("data");
    assert_eq!(data.keys().collect::<Vec<_>>(), ["tandem.json"]);
    let text = data["tandem.json"].as_str().unwrap();
    assert_eq!(
        text,
        read_repo(CHART_DASHBOARD),
        "{DASHBOARD} carries {CHART_DASHBOARD} as it is"
    );
    let dashboard: Value = serde_json::from_str(text).expect("the dashboard is JSON");
    assert_eq!(dashboard["uid"], "tandem");
    assert!(dashboard["title"].is_string());

    let variables = dashboard["templating"]["list"]
        .as_array()
        .expect("variables");
    let datasource = variables
        .iter()
        .find(|v| v["name"] == "datasource")
        .expect("a datasource variable");
    assert_eq!(datasource["type"], "datasource");
    assert_eq!(datasource["query"], "prometheus");
    let templated = json!({"type": "prometheus", "uid": "${datasource}"});
    for v in variables.iter().filter(|v| v["type"] == "query") {
        assert_eq!(v["datasource"], templated, "variable {}", v["name"]);
    }

    let exported = exported();
    let mut problems = Vec::new();
    let mut ids = BTreeSet::new();
    let mut cells: BTreeMap<(i64, i64), String> = BTreeMap::new();
    let mut exprs = Vec::new();
    for p in panels(&dashboard) {
        let title = p["title"].as_str().expect("panel title").to_string();
        assert!(
            ids.insert(p["id"].as_i64().expect("panel id")),
            "{title}: id taken"
        );
        let g = &p["gridPos"];
        let (x, y, w, h) = (
            g["x"].as_i64().unwrap(),
            g["y"].as_i64().unwrap(),
            g["w"].as_i64().unwrap(),
            g["h"].as_i64().unwrap(),
        );
        assert!(
            x >= 0 && w > 0 && h > 0 && x + w <= 24,
            "{title}: gridPos {g}"
        );
        for cx in x..x + w {
            for cy in y..y + h {
                if let Some(other) = cells.insert((cx, cy), title.clone()) {
                    panic!("{title} overlaps {other}");
                }
            }
        }
        if p["type"] == "row" {
            continue;
        }
        assert_eq!(p["datasource"], templated, "{title}: datasource");
        let targets = p["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title}: no query");
        for t in targets {
            assert_eq!(t["datasource"], templated, "{title}: datasource of a query");
            let expr = t["expr"].as_str().expect("expr");
            problems.extend(check_expr(expr, &title, &exported));
            // The legend names only labels the query keeps.
            let kept = promql(expr).grouping;
            let legend = t["legendFormat"].as_str().unwrap_or("");
            for part in legend.split("{{").skip(1) {
                let label = part.split("}}").next().unwrap().trim();
                if !kept.contains(label) {
                    problems.push(format!(
                        "{title}: the legend shows {label}, which {expr} drops"
                    ));
                }
            }
            exprs.push(expr.to_string());
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));

    // What the dashboard is for.
    let shows = |needle: &[&str]| exprs.iter().any(|e| needle.iter().all(|n| e.contains(n)));
    for (what, needle) in [
        (
            "admissions by outcome",
            &["by (outcome)", "rate(tandem_admission_requests_total"][..],
        ),
        (
            "p50 latency",
            &[
                "histogram_quantile(0.5,",
                "tandem_admission_duration_seconds_bucket",
            ][..],
        ),
        (
            "p90 latency",
            &[
                "histogram_quantile(0.9,",
                "tandem_admission_duration_seconds_bucket",
            ][..],
        ),
        (
            "p99 latency",
            &[
                "histogram_quantile(0.99,",
                "tandem_admission_duration_seconds_bucket",
            ][..],
        ),
        (
            "injections by template",
            &["by (template)", "tandem_injections_total"][..],
        ),
        (
            "skips by reason",
            &["by (reason)", "tandem_skips_total"][..],
        ),
        (
            "outdated pods per template",
            &[
                "by (template)",
                "tandem_injected_pods",
                "state=\"outdated\"",
            ][..],
        ),
        (
            "certificate expiry in days",
            &[
                "tandem_certificate_expiry_timestamp_seconds",
                "time()",
                "86400",
            ][..],
        ),
    ] {
        assert!(shows(needle), "the dashboard shows no {what}");
    }
}

// ---------------------------------------------------------------------------
// The kustomization
// ---------------------------------------------------------------------------

#[test]
fn deploy_monitoring_is_a_kustomization_apart_from_the_base() {
    let k: Value = serde_saphyr::from_str(&read_repo(KUSTOMIZATION)).unwrap();
    assert_eq!(k["apiVersion"], "kustomize.config.k8s.io/v1beta1");
    assert_eq!(k["kind"], "Kustomization");
    let keys: Vec<&String> = k.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["apiVersion", "kind", "resources"], "{KUSTOMIZATION}");
    let listed: BTreeSet<String> = k["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap().to_string())
        .collect();
    let files: BTreeSet<String> = fs::read_dir(repo_path("deploy/monitoring"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|f| f.ends_with(".yaml") && f != "kustomization.yaml")
        .collect();
    assert_eq!(
        listed, files,
        "{KUSTOMIZATION} installs every manifest beside it"
    );
    for f in &files {
        for doc in repo_yaml(&format!("deploy/monitoring/{f}")) {
            assert_eq!(doc["metadata"]["namespace"], NS, "{f}");
            assert_eq!(
                doc["metadata"]["labels"]["app.kubernetes.io/part-of"], "tandem",
                "{f}"
            );
        }
    }

    // The base installs without the Prometheus Operator's CRDs.
    for entry in fs::read_dir(repo_path("deploy/base")).unwrap() {
        let p = entry.unwrap().path();
        let text = fs::read_to_string(&p).unwrap();
        assert!(
            !text.contains("monitoring.coreos.com"),
            "{}: deploy/base must install without the Prometheus Operator",
            p.display()
        );
    }

    // The ServiceMonitor selects the base's Service, on its admin port, and
    // its job is the Service's name, which TandemDown looks for.
    let sm = repo_yaml(SERVICE_MONITOR).remove(0);
    let service = repo_yaml("deploy/base/service.yaml").remove(0);
    assert_eq!(service["metadata"]["name"], "tandem");
    assert_eq!(sm["spec"]["namespaceSelector"]["matchNames"], json!([NS]));
    for (k, v) in sm["spec"]["selector"]["matchLabels"].as_object().unwrap() {
        assert_eq!(
            &service["metadata"]["labels"][k], v,
            "the Service's label {k}"
        );
    }
    assert!(
        sm["spec"].get("jobLabel").is_none(),
        "job = the Service's name"
    );
    let ports: Vec<&Value> = service["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| &p["name"])
        .collect();
    for e in sm["spec"]["endpoints"].as_array().unwrap() {
        assert!(ports.contains(&&e["port"]), "endpoint port {}", e["port"]);
        assert_eq!(e["path"], "/metrics");
    }
}

// ---------------------------------------------------------------------------
// The chart
// ---------------------------------------------------------------------------

/// Renders a chart with `helm_python` (PyPI: helm-python-sdk): argv = chart
/// dir, values JSON, release, namespace; prints {template path: manifest}.
const PY_RENDER: &str = r#"
import json, sys
import helm_python as helm
chart, values, release, namespace = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3], sys.argv[4]
with helm.Chart.load(chart) as c:
    c.validate_schema(values)
    out = c.render(values, name=release, namespace=namespace, is_install=True)
json.dump(out, sys.stdout)
"#;

const HELM_HINT: &str = "Install a renderer: `python3 -m venv target/helm-venv && \
target/helm-venv/bin/pip install helm-python-sdk==0.2.2` and set \
TANDEM_HELM_PYTHON=target/helm-venv/bin/python (or any python3 that can `import helm_python`), \
or put a `helm` binary on PATH (or TANDEM_HELM=/path/to/helm). \
TANDEM_REQUIRE_HELM=1 turns this skip into a failure.";

/// How the chart is rendered, found as tests/install.rs finds it.
enum Renderer {
    Helm(String),
    Python(String),
}

fn renderer_or_skip(test: &str) -> Option<Renderer> {
    let found = if let Ok(helm) = std::env::var("TANDEM_HELM") {
        assert!(runs(&helm, &["version"]), "TANDEM_HELM={helm} does not run");
        Some(Renderer::Helm(helm))
    } else if let Ok(py) = std::env::var("TANDEM_HELM_PYTHON") {
        let py = if Path::new(&py).is_relative() && py.contains('/') {
            repo_path(&py).display().to_string()
        } else {
            py
        };
        assert!(
            runs(&py, &["-c", "import helm_python"]),
            "TANDEM_HELM_PYTHON={py} cannot import helm_python"
        );
        Some(Renderer::Python(py))
    } else if runs("helm", &["version"]) {
        Some(Renderer::Helm("helm".into()))
    } else if runs("python3", &["-c", "import helm_python"]) {
        Some(Renderer::Python("python3".into()))
    } else {
        None
    };
    if found.is_none() {
        assert!(
            std::env::var_os("TANDEM_REQUIRE_HELM").is_none(),
            "TANDEM_REQUIRE_HELM is set but no Helm renderer was found. {HELM_HINT}"
        );
        notice(&format!(
            "SKIPPED {test}: no Helm renderer found, the chart was not rendered. {HELM_HINT}"
        ));
    }
    found
}

fn render(
    r: &Renderer,
    values: &Value,
    release: &str,
    namespace: &str,
) -> Result<Vec<Value>, String> {
    let chart = repo_path(CHART).display().to_string();
    let out = match r {
        Renderer::Helm(helm) => {
            let dir = tempfile::tempdir().unwrap();
            let file = dir.path().join("values.json");
            fs::write(&file, values.to_string()).unwrap();
            Command::new(helm)
                .args([
                    "template",
                    release,
                    &chart,
                    "--namespace",
                    namespace,
                    "--values",
                ])
                .arg(&file)
                .env("HELM_CACHE_HOME", dir.path())
                .env("HELM_CONFIG_HOME", dir.path())
                .env("HELM_DATA_HOME", dir.path())
                .output()
        }
        Renderer::Python(py) => Command::new(py)
            .args([
                "-c",
                PY_RENDER,
                &chart,
                &values.to_string(),
                release,
                namespace,
            ])
            .output(),
    }
    .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    Ok(match r {
        Renderer::Helm(_) => yaml_docs(&stdout, "helm template"),
        Renderer::Python(_) => {
            let files: BTreeMap<String, String> =
                serde_json::from_str(&stdout).map_err(|e| e.to_string())?;
            files
                .iter()
                .filter(|(file, _)| !file.ends_with("NOTES.txt"))
                .flat_map(|(file, manifest)| yaml_docs(manifest, file))
                .collect()
        }
    })
}

fn of_kind<'a>(objects: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objects.iter().filter(|o| o["kind"] == kind).collect()
}

fn dashboards(objects: &[Value]) -> Vec<&Value> {
    of_kind(objects, "ConfigMap")
        .into_iter()
        .filter(|o| o["metadata"]["labels"]["grafana_dashboard"] == "1")
        .collect()
}

/// `shipped`'s labels are all on `rendered`, which has the chart's own too.
fn assert_labels_kept(shipped: &Value, rendered: &Value, what: &str) {
    for (k, v) in shipped["metadata"]["labels"].as_object().unwrap() {
        assert_eq!(&rendered["metadata"]["labels"][k], v, "{what}: label {k}");
    }
}

#[test]
fn chart_renders_the_shipped_rules_dashboard_and_service_monitor() {
    let Some(r) = renderer_or_skip("chart_renders_the_shipped_rules_dashboard_and_service_monitor")
    else {
        return;
    };
    // Off by default.
    let objects = render(&r, &json!({}), RELEASE, NS).unwrap();
    assert!(of_kind(&objects, "PrometheusRule").is_empty());
    assert!(dashboards(&objects).is_empty());

    let values = json!({
        "serviceMonitor": {"enabled": true},
        "prometheusRule": {"enabled": true},
        "grafanaDashboard": {"enabled": true},
    });
    let objects = render(&r, &values, RELEASE, NS).unwrap();

    let shipped = prometheus_rule();
    let rendered = of_kind(&objects, "PrometheusRule");
    assert_eq!(rendered.len(), 1);
    let rendered = rendered[0];
    assert_eq!(rendered["metadata"]["name"], shipped["metadata"]["name"]);
    assert_eq!(rendered["metadata"]["namespace"], NS);
    assert_labels_kept(&shipped, rendered, "PrometheusRule");
    for ((group, want), (_, got)) in rules_of(&shipped).iter().zip(rules_of(rendered)) {
        assert_eq!(
            &got, want,
            "{CHART}: the rule {group}/{} differs from {RULES}",
            want["alert"]
        );
    }
    assert_eq!(
        rendered["spec"], shipped["spec"],
        "{CHART}: the rules of {RULES}"
    );

    let shipped = dashboard_config_map();
    let rendered = dashboards(&objects);
    assert_eq!(rendered.len(), 1);
    assert_eq!(rendered[0]["metadata"]["name"], shipped["metadata"]["name"]);
    assert_eq!(rendered[0]["metadata"]["namespace"], NS);
    assert_labels_kept(&shipped, rendered[0], "dashboard ConfigMap");
    assert_eq!(
        rendered[0]["data"], shipped["data"],
        "{CHART}: the dashboard of {DASHBOARD}"
    );

    let shipped = repo_yaml(SERVICE_MONITOR).remove(0);
    let rendered = of_kind(&objects, "ServiceMonitor");
    assert_eq!(rendered.len(), 1);
    for pointer in [
        "/metadata/name",
        "/spec/endpoints",
        "/spec/namespaceSelector",
    ] {
        assert_eq!(
            rendered[0].pointer(pointer),
            shipped.pointer(pointer),
            "ServiceMonitor {pointer}"
        );
    }
    for (k, v) in shipped["spec"]["selector"]["matchLabels"]
        .as_object()
        .unwrap()
    {
        assert_eq!(
            &rendered[0]["spec"]["selector"]["matchLabels"][k], v,
            "ServiceMonitor selector {k}"
        );
    }
}

#[test]
fn chart_monitoring_values_take_effect() {
    let Some(r) = renderer_or_skip("chart_monitoring_values_take_effect") else {
        return;
    };
    let values = json!({
        "prometheusRule": {"enabled": true, "outdatedFor": "6h", "labels": {"release": "prometheus"}},
        "grafanaDashboard": {"enabled": true, "labels": {"team": "platform"}},
    });
    // Another release and namespace: the job and namespace TandemDown looks for follow.
    let objects = render(&r, &values, "injector", "platform").unwrap();
    let rendered = of_kind(&objects, "PrometheusRule")[0];
    assert_eq!(rendered["metadata"]["name"], "injector-tandem");
    assert_eq!(rendered["metadata"]["namespace"], "platform");
    assert_eq!(rendered["metadata"]["labels"]["release"], "prometheus");
    let shipped = rules_of(&prometheus_rule());
    for ((_, want), (_, got)) in shipped.iter().zip(rules_of(rendered)) {
        let alert = want["alert"].as_str().unwrap();
        match alert {
            "TandemPodsOutdated" => {
                assert_eq!(got["for"], "6h");
                let text = got["annotations"].to_string();
                assert!(
                    text.contains("more than 6h") && !text.contains("24h"),
                    "{text}"
                );
            }
            "TandemDown" => {
                let expr = got["expr"].as_str().unwrap();
                assert_eq!(
                    expr.matches(r#"up{job="injector-tandem", namespace="platform"}"#)
                        .count(),
                    2,
                    "{expr}"
                );
            }
            "TandemCertificateReloadFailing" => {
                let text = got["annotations"]["description"].as_str().unwrap();
                assert!(text.contains("Secret injector-tandem-tls "), "{text}");
            }
            _ => assert_eq!(&got, want, "{alert}"),
        }
    }
    let dashboard = dashboards(&objects)[0];
    assert_eq!(dashboard["metadata"]["name"], "injector-tandem-dashboard");
    assert_eq!(dashboard["metadata"]["labels"]["team"], "platform");

    // Policy mode runs no server: nothing to scrape, alert on or chart.
    let values = json!({
        "injector": {"mode": "policy", "policies": read_repo("deploy/policies/policies.yaml")},
        "prometheusRule": {"enabled": true},
        "grafanaDashboard": {"enabled": true},
    });
    let objects = render(&r, &values, RELEASE, NS).unwrap();
    assert!(of_kind(&objects, "PrometheusRule").is_empty());
    assert!(dashboards(&objects).is_empty());

    for (values, key) in [
        (
            json!({"prometheusRule": {"enabled": true, "outdatedFor": "1 day"}}),
            "outdatedFor",
        ),
        (
            json!({"prometheusRule": {"enabled": true, "for": "1h"}}),
            "for",
        ),
        (json!({"prometheusRule": {"enabled": "yes"}}), "enabled"),
        (
            json!({"grafanaDashboard": {"enabled": true, "folder": "x"}}),
            "folder",
        ),
    ] {
        match render(&r, &values, RELEASE, NS) {
            Ok(_) => panic!("the chart accepted {values}"),
            Err(e) => assert!(
                e.contains(key),
                "{values}: the error does not name {key}: {e}"
            ),
        }
    }
}

#[test]
fn chart_values_document_the_monitoring_switches() {
    let values: Value = serde_saphyr::from_str(&read_repo("charts/tandem/values.yaml")).unwrap();
    assert_eq!(
        values["prometheusRule"],
        json!({"enabled": false, "outdatedFor": "24h", "labels": {}})
    );
    assert_eq!(
        values["grafanaDashboard"],
        json!({"enabled": false, "labels": {}})
    );
    let outdated = rules_of(&prometheus_rule())
        .into_iter()
        .find(|(_, r)| r["alert"] == "TandemPodsOutdated")
        .expect("TandemPodsOutdated")
        .1;
    assert_eq!(outdated["for"], values["prometheusRule"]["outdatedFor"]);
    let schema: Value =
        serde_json::from_str(&read_repo("charts/tandem/values.schema.json")).unwrap();
    for key in ["prometheusRule", "grafanaDashboard"] {
        let s = &schema["properties"][key];
        assert_eq!(s["additionalProperties"], false, "{key}");
        let listed: BTreeSet<&String> = s["properties"].as_object().unwrap().keys().collect();
        let given: BTreeSet<&String> = values[key].as_object().unwrap().keys().collect();
        assert_eq!(
            listed, given,
            "values.schema.json lists the values of {key}"
        );
    }
    let readme = read_repo("charts/tandem/README.md");
    for v in [
        "prometheusRule.enabled",
        "prometheusRule.outdatedFor",
        "prometheusRule.labels",
        "grafanaDashboard.enabled",
        "grafanaDashboard.labels",
    ] {
        assert!(
            readme.contains(&format!("`{v}`")),
            "charts/tandem/README.md: {v}"
        );
    }
}
