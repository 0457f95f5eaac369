//! `tandem policy`: the template set compiled to one MutatingAdmissionPolicy
//! (Kubernetes 1.36) and its binding, with policy mode's companion and
//! warnings policies; which requests it injects and which need the webhook
//! is said in the output and on stderr, never left out.

use clap::Args;

use super::{CliError, ScopeArgs, TemplateArgs, manifest, parse_pairs};
use crate::install::policy::{
    self, Coverage, FAILURE_POLICY, PolicyError, REINVOCATION_POLICY, REQUIRE, Reach, STEPS_ASIDE,
    WARNINGS, WHY_JSON_PATCH, WHY_SELECTORS_IN_CEL,
};

#[derive(Args, Debug)]
pub struct PolicyArgs {
    #[command(flatten)]
    pub templates: TemplateArgs,
    #[command(flatten)]
    pub scope: ScopeArgs,
    /// Labels a namespace must also carry, as k=v,k=v.
    #[arg(long, value_name = "K=V,...", default_value = "")]
    pub namespace_selector: String,
}

/// Comment lines, `# ` before each.
fn comment(lines: &[String]) -> String {
    lines.iter().map(|l| format!("# {l}\n")).collect()
}

pub(super) fn run(args: &PolicyArgs) -> Result<(), CliError> {
    let set = args.templates.load()?;
    let reach = Reach {
        namespace: args.scope.namespace.clone(),
        scope: args.scope.scope(),
        excluded_namespaces: args.scope.exclude_namespaces.clone(),
        extra_labels: parse_pairs(&args.namespace_selector).map_err(CliError::Usage)?,
    };
    let compiled = policy::compile(&set, &reach).map_err(|e| match e {
        PolicyError::Contradiction { .. } => CliError::Usage(e.to_string()),
        PolicyError::NothingCompiles | PolicyError::Site { .. } => CliError::Failed(e.to_string()),
    })?;
    let mut header: Vec<String> = [
        "Compiled by `tandem policy` (admissionregistration.k8s.io/v1, Kubernetes 1.36+).",
        "The MutatingAdmissionPolicy tandem makes Tandem's engine's whole decision for a pod: which",
        "templates, in the engine's order, which it skips for a conflict, what it reuses, the status.",
        "It leaves unchanged, for the webhook in hybrid mode:",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    header.extend(STEPS_ASIDE.iter().map(|s| format!("- {s}")));
    header.push(format!(
        "In policy mode {REQUIRE} rejects those pods when they asked for injection, naming the reason;"
    ));
    header.push(format!(
        "{WARNINGS} carries the engine's warnings (Warn binding, audit annotations). Hybrid mode drops both."
    ));
    header.push(WHY_JSON_PATCH.to_string());
    header.push(WHY_SELECTORS_IN_CEL.to_string());
    header.push(format!(
        "failurePolicy {}: {}",
        FAILURE_POLICY.0, FAILURE_POLICY.1
    ));
    header.push(format!(
        "reinvocationPolicy {}: {}",
        REINVOCATION_POLICY.0, REINVOCATION_POLICY.1
    ));
    let coverage = coverage_lines(&compiled.coverage);
    header.extend(coverage.iter().cloned());
    let docs = [
        serde_json::to_value(&compiled.policy),
        serde_json::to_value(&compiled.binding),
        serde_json::to_value(&compiled.require.0),
        serde_json::to_value(&compiled.require.1),
        serde_json::to_value(&compiled.warnings.0),
        serde_json::to_value(&compiled.warnings.1),
    ]
    .into_iter()
    .collect::<Result<Vec<_>, _>>()
    .map_err(|e| CliError::Failed(format!("cannot render the output: {e}")))?;
    print!(
        "{}{}",
        comment(&header),
        manifest::render(manifest::Format::Yaml, &docs)?
    );
    for line in &coverage {
        eprintln!("tandem: {line}");
    }
    Ok(())
}

/// The coverage, a summary line first, then each combination.
pub(super) fn coverage_lines(coverage: &Coverage) -> Vec<String> {
    let (compiled, total) = coverage.counts();
    let mut lines = vec![format!(
        "coverage: {compiled} of {total} request combinations (each template, each pair) compile; a request for more compiles when each pair in it does"
    )];
    lines.extend(coverage.combinations.iter().map(|c| format!("  {c}")));
    lines
}
