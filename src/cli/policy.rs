//! `tandem policy`: the templates compiled to MutatingAdmissionPolicies
//! (Kubernetes 1.36), each with its binding; what does not compile is
//! reported with the reason, in the output and on stderr, never dropped.

use clap::Args;

use super::{CliError, ScopeArgs, TemplateArgs, manifest, parse_pairs};
use crate::install::policy::{
    self, Compiled, FAILURE_POLICY, PolicyError, REINVOCATION_POLICY, Reach, STEPS_ASIDE,
    WHY_JSON_PATCH, WHY_SELECTORS_IN_CEL,
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
        PolicyError::Engine(_) | PolicyError::Site { .. } => CliError::Failed(e.to_string()),
    })?;
    let mut header: Vec<String> = [
        "MutatingAdmissionPolicies compiled by `tandem policy` (admissionregistration.k8s.io/v1, Kubernetes 1.36+).",
        "Each changes a pod only where Tandem's engine would inject exactly its template, and",
        "makes the engine's change. It leaves unchanged, for the webhook in hybrid mode:",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    header.extend(STEPS_ASIDE.iter().map(|s| format!("- {s}")));
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
    let mut out = comment(&header);
    let (mut compiled_names, mut refused) = (Vec::new(), Vec::new());
    for c in &compiled {
        match c {
            Compiled::Policy(p) => {
                compiled_names.push(p.template.as_str());
                let docs = [
                    serde_json::to_value(&p.policy),
                    serde_json::to_value(&p.binding),
                ]
                .into_iter()
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| CliError::Failed(format!("cannot render the output: {e}")))?;
                out.push_str("---\n");
                out.push_str(&comment(&[format!("template {}", p.template)]));
                out.push_str(&manifest::render(manifest::Format::Yaml, &docs)?);
            }
            Compiled::NeedsWebhook { template, reasons } => {
                for r in reasons {
                    refused.push(format!("{template} needs the webhook: {r}"));
                }
            }
        }
    }
    if !refused.is_empty() {
        out.push_str("---\n");
        out.push_str(&comment(&refused));
    }
    print!("{out}");
    eprintln!(
        "tandem: {} template(s) compiled{}{}",
        compiled_names.len(),
        if compiled_names.is_empty() { "" } else { ": " },
        compiled_names.join(", ")
    );
    for r in &refused {
        eprintln!("tandem: {r}");
    }
    if compiled_names.is_empty() {
        return Err(CliError::Failed(
            "no template compiles to a policy; use the webhook".into(),
        ));
    }
    Ok(())
}
