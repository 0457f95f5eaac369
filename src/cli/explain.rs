//! `tandem explain`: every gate of the decision, in order, with its verdict.

use std::fmt::Write;

use clap::Args;

use super::inject::inject_all;
use super::{CliError, ContextArgs, TemplateArgs, manifest};
use crate::engine::{Decision, GateVerdict, Outcome};

#[derive(Args, Debug)]
pub struct ExplainArgs {
    /// Manifest file (YAML, multi-document, or JSON); `-` for standard input.
    #[arg(long, short = 'f', value_name = "FILE")]
    pub file: String,
    /// Output format: text or json.
    #[arg(long, short = 'o', default_value = "text", value_parser = ["text", "json"])]
    pub output: String,
    #[command(flatten)]
    pub templates: TemplateArgs,
    #[command(flatten)]
    pub context: ContextArgs,
}

pub(super) fn run(args: &ExplainArgs) -> Result<(), CliError> {
    let m = manifest::read(&args.file)?;
    let templates = args.templates.load()?;
    let result = inject_all(&m, &templates, &args.context)?;
    if args.output == "json" {
        let list: Vec<_> = result
            .decisions
            .iter()
            .map(|(r, d)| serde_json::json!({ "object": r.label, "decision": d }))
            .collect();
        print!("{}", manifest::render(manifest::Format::Json, &[list])?);
        return Ok(());
    }
    for (r, d) in &result.decisions {
        let namespace = args.context.namespace(r.namespace.as_deref())?;
        print!("{}", render(&r.label, &namespace.name, d));
    }
    Ok(())
}

/// The text form of a decision.
pub(super) fn render(label: &str, namespace: &str, d: &Decision) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "{label} in namespace {namespace}");
    let width = d.gates.iter().map(|g| g.gate.len()).max().unwrap_or(0);
    for (i, g) in d.gates.iter().enumerate() {
        let verdict = match g.verdict {
            GateVerdict::Pass => "pass",
            GateVerdict::Stop => "stop",
            GateVerdict::Deny => "DENY",
            GateVerdict::Info => "info",
        };
        let _ = writeln!(
            s,
            "  {:>2}. {:<width$}  {verdict}  {}",
            i + 1,
            g.gate,
            g.why
        );
    }
    let result = match &d.outcome {
        Outcome::Patched => format!("patched ({} operations)", d.patch.len()),
        Outcome::Unchanged { reason } => format!("unchanged: {reason}"),
        Outcome::Denied { message } => format!("denied: {message}"),
    };
    let _ = writeln!(s, "  result: {result}");
    for w in &d.warnings {
        let _ = writeln!(s, "  warning: {w}");
    }
    s.push('\n');
    s
}
