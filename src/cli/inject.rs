//! `tandem inject`: the webhook's decision applied to manifests on disk.

use clap::Args;
use json_patch::PatchOperation;
use json_patch::jsonptr::PointerBuf;
use serde_json::Value;

use super::manifest::{self, Format, Manifests, PodRef, WORKLOAD_KINDS};
use super::{CliError, ContextArgs, TemplateArgs};
use crate::engine::{self, Decision, Input, Outcome, Verdict};
use crate::facts::Doc;
use crate::template::TemplateSet;

#[derive(Args, Debug)]
pub struct InjectArgs {
    /// Manifest file (YAML, multi-document, or JSON); `-` for standard input.
    #[arg(long, short = 'f', value_name = "FILE")]
    pub file: String,
    /// Print the JSON patch (one per document, paths relative to the document) instead of manifests.
    #[arg(long)]
    pub patch: bool,
    /// Do not say on stderr what was done to each resource (warnings are still shown).
    #[arg(long, short = 'q')]
    pub quiet: bool,
    #[command(flatten)]
    pub templates: TemplateArgs,
    #[command(flatten)]
    pub context: ContextArgs,
}

/// The result of running the engine over every pod of a set of manifests.
pub(super) struct Injected {
    pub docs: Vec<Value>,
    /// One patch per document, paths relative to the document.
    pub patches: Vec<Vec<PatchOperation>>,
    pub decisions: Vec<(PodRef, Decision)>,
    /// Messages for documents that hold no pod.
    pub notes: Vec<String>,
}

/// Decides and applies injection for every pod in `m`.
pub(super) fn inject_all(
    m: &Manifests,
    templates: &TemplateSet,
    ctx: &ContextArgs,
) -> Result<Injected, CliError> {
    let caps = ctx.capabilities();
    let policy = ctx.policy();
    let mut out = Injected {
        docs: Vec::new(),
        patches: Vec::new(),
        decisions: Vec::new(),
        notes: Vec::new(),
    };
    let input_err = |message: String| CliError::Input {
        path: m.path.clone(),
        message,
    };
    for (i, doc) in m.docs.iter().enumerate() {
        let mut doc = doc.clone();
        let refs =
            manifest::pods_in(&doc).map_err(|e| input_err(format!("document {}: {e}", i + 1)))?;
        if refs.is_empty() {
            let kind = doc.get("kind").and_then(Value::as_str).unwrap_or("?");
            out.notes.push(format!(
                "document {} ({kind}) holds no pod; left unchanged",
                i + 1
            ));
        }
        let mut doc_patch = Vec::new();
        for r in refs {
            let namespace = ctx.namespace(r.namespace.as_deref())?;
            let pod = doc.pointer(&r.pointer).map_or(Doc::Null, Doc::from);
            let decision = engine::explain(&Input {
                pod: &pod,
                namespace: &namespace,
                templates,
                capabilities: &caps,
                policy: &policy,
            })
            .map_err(|e| input_err(format!("{}: {e}", r.label)))?;
            if decision.outcome == Outcome::Patched {
                let target = doc
                    .pointer_mut(&r.pointer)
                    .expect("pods_in returned a valid pointer");
                let ops = decision.patch.operations();
                json_patch::patch(target, &ops)
                    .map_err(|e| input_err(format!("{}: patch does not apply: {e}", r.label)))?;
                doc_patch.extend(ops.into_iter().map(|op| prefixed(&r.pointer, op)));
            }
            out.decisions.push((r, decision));
        }
        out.docs.push(doc);
        out.patches.push(doc_patch);
    }
    if out.decisions.is_empty() {
        return Err(input_err(format!(
            "no pod found (supported kinds: {WORKLOAD_KINDS})"
        )));
    }
    Ok(out)
}

/// Moves an operation from the pod to where the pod sits in its document.
fn prefixed(prefix: &str, mut op: PatchOperation) -> PatchOperation {
    if let PatchOperation::Add(a) = &mut op {
        let full = format!("{prefix}{}", a.path);
        a.path = PointerBuf::parse(full).unwrap_or_else(|_| a.path.clone());
    }
    op
}

pub(super) fn run(args: &InjectArgs) -> Result<(), CliError> {
    let m = manifest::read(&args.file)?;
    let templates = args.templates.load()?;
    let result = inject_all(&m, &templates, &args.context)?;
    for note in &result.notes {
        eprintln!("tandem: {note}");
    }
    let mut denied = Vec::new();
    for (r, d) in &result.decisions {
        if !args.quiet {
            eprintln!("{}: {}", r.label, what_was_done(d));
        }
        for w in &d.warnings {
            eprintln!("Warning: {}: {w}", r.label);
        }
        if let Outcome::Denied { message } = &d.outcome {
            denied.push(format!("{} would be denied: {message}", r.label));
        }
    }
    if !denied.is_empty() {
        return Err(CliError::Failed(denied.join("\n")));
    }
    if args.patch {
        print!("{}", manifest::render(Format::Json, &result.patches)?);
    } else {
        print!(
            "{}",
            manifest::render_in_order(m.format, &result.docs, &m.order, &templates)?
        );
    }
    Ok(())
}

/// What a decision did to one resource, in a line: `injected a, b`,
/// `skipped (mirror pod)`, `a skipped (conflict: ...)`, `denied: ...`.
fn what_was_done(d: &Decision) -> String {
    if let Outcome::Denied { message } = &d.outcome {
        return format!("denied: {message}");
    }
    if d.templates.is_empty() {
        let reason = match &d.outcome {
            Outcome::Unchanged { reason } => reason.prose(),
            _ => "nothing to do",
        };
        return format!("skipped ({reason})");
    }
    let injected: Vec<&str> = d.injected().collect();
    let mut parts = Vec::new();
    if !injected.is_empty() {
        parts.push(format!("injected {}", injected.join(", ")));
    }
    for t in &d.templates {
        let part = match &t.verdict {
            Verdict::Injected { .. } => continue,
            Verdict::AlreadyInjected => format!("{} already injected", t.name),
            Verdict::DryRun { .. } => format!("{} dry run ({})", t.name, t.why),
            Verdict::Missing => format!("{} missing (no such template)", t.name),
            Verdict::Skipped { .. } | Verdict::Denied => {
                format!("{} skipped ({})", t.name, t.why)
            }
        };
        parts.push(part);
    }
    parts.join("; ")
}
