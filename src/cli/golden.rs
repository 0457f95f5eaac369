//! `tandem test`: golden tests for users' own templates. Each case is
//! `DIR/NAME.input.yaml` with `DIR/NAME.expected.yaml`, and optionally
//! `DIR/NAME.namespace.yaml` (a Namespace object giving labels and annotations).

use std::path::{Path, PathBuf};

use clap::Args;
use serde_json::Value;

use super::inject::inject_all;
use super::manifest::{self, Format};
use super::{CliError, ContextArgs, TemplateArgs};
use crate::engine::Outcome;
use crate::template::TemplateSet;

#[derive(Args, Debug)]
pub struct TestArgs {
    /// Directory of cases.
    pub dir: PathBuf,
    /// Templates (default: DIR/templates).
    #[arg(long, short = 'c', value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Write the actual output as the expected files instead of comparing.
    #[arg(long)]
    pub update: bool,
    #[command(flatten)]
    pub context: ContextArgs,
}

pub(super) fn run(args: &TestArgs) -> Result<(), CliError> {
    let config = args.config.clone().or_else(|| {
        let dir = args.dir.join("templates");
        dir.is_dir().then_some(dir)
    });
    let Some(config) = config else {
        return Err(CliError::Usage(format!(
            "no templates: pass --config or add {}/templates",
            args.dir.display()
        )));
    };
    let templates = TemplateArgs {
        config: Some(config),
    }
    .load()?;
    let cases = cases(&args.dir)?;
    if cases.is_empty() {
        return Err(CliError::Usage(format!(
            "no *.input.yaml cases in {}",
            args.dir.display()
        )));
    }
    let (mut passed, mut failed) = (0, 0);
    for (name, input) in cases {
        match run_case(
            &args.dir,
            &name,
            &input,
            &templates,
            &args.context,
            args.update,
        ) {
            Ok(()) => {
                passed += 1;
                println!("ok   {name}");
            }
            Err(why) => {
                failed += 1;
                println!("FAIL {name}: {why}");
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    if failed > 0 {
        return Err(CliError::Failed(format!("{failed} golden case(s) failed")));
    }
    Ok(())
}

fn cases(dir: &Path) -> Result<Vec<(String, PathBuf)>, CliError> {
    let entries = std::fs::read_dir(dir).map_err(|e| CliError::Input {
        path: dir.display().to_string(),
        message: format!("cannot read: {e}"),
    })?;
    let mut out: Vec<(String, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let file = e.file_name().to_string_lossy().into_owned();
            let name = file.strip_suffix(".input.yaml")?.to_string();
            Some((name, e.path()))
        })
        .collect();
    out.sort();
    Ok(out)
}

fn run_case(
    dir: &Path,
    name: &str,
    input: &Path,
    templates: &TemplateSet,
    shared: &ContextArgs,
    update: bool,
) -> Result<(), String> {
    let m = manifest::read(&input.display().to_string()).map_err(|e| e.to_string())?;
    let ctx = case_context(dir, name, shared)?;
    let first = inject_all(&m, templates, &ctx).map_err(|e| e.to_string())?;
    if let Some((r, Outcome::Denied { message })) = first
        .decisions
        .iter()
        .map(|(r, d)| (r, &d.outcome))
        .find(|(_, o)| matches!(o, Outcome::Denied { .. }))
    {
        return Err(format!("{} denied: {message}", r.label));
    }
    let expected_path = dir.join(format!("{name}.expected.yaml"));
    if update {
        // Written in the input's field order, so it reads like the input.
        let actual = manifest::render_in_order(Format::Yaml, &first.docs, &m.order, templates)
            .map_err(|e| e.to_string())?;
        return std::fs::write(&expected_path, &actual).map_err(|e| format!("cannot write: {e}"));
    }
    let expected =
        manifest::read(&expected_path.display().to_string()).map_err(|e| e.to_string())?;
    if expected.docs != first.docs {
        // Compared as data: both rendered the same way, so the first
        // difference shown is one of content, not of field order.
        let render = |docs| manifest::render(Format::Yaml, docs).map_err(|e| e.to_string());
        return Err(first_difference(
            &render(&expected.docs)?,
            &render(&first.docs)?,
        ));
    }
    let again = manifest::Manifests {
        path: format!("{} (second pass)", input.display()),
        format: Format::Yaml,
        docs: first.docs,
        order: Vec::new(),
    };
    let second = inject_all(&again, templates, &ctx).map_err(|e| e.to_string())?;
    if let Some(p) = second.patches.iter().find(|p| !p.is_empty()) {
        let ops = serde_json::to_string(p).map_err(|e| e.to_string())?;
        return Err(format!("a second injection changes the output: {ops}"));
    }
    Ok(())
}

/// Namespace facts from `NAME.namespace.yaml` when present, else the flags.
fn case_context(dir: &Path, name: &str, shared: &ContextArgs) -> Result<ContextArgs, String> {
    let path = dir.join(format!("{name}.namespace.yaml"));
    let mut ctx = shared.clone();
    if !path.exists() {
        return Ok(ctx);
    }
    let ns = manifest::read(&path.display().to_string()).map_err(|e| e.to_string())?;
    let doc = ns.docs.first().cloned().unwrap_or(Value::Null);
    let pairs = |field: &str| -> String {
        doc.pointer(&format!("/metadata/{field}"))
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default()
    };
    ctx.namespace = doc
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .map(str::to_string);
    ctx.namespace_labels = pairs("labels");
    ctx.namespace_annotations = pairs("annotations");
    Ok(ctx)
}

fn first_difference(expected: &str, actual: &str) -> String {
    let (e, a): (Vec<&str>, Vec<&str>) = (expected.lines().collect(), actual.lines().collect());
    let line = e
        .iter()
        .zip(&a)
        .position(|(x, y)| x != y)
        .unwrap_or(e.len().min(a.len()));
    let from = line.saturating_sub(2);
    let mut out = format!("output differs from expected at line {}:\n", line + 1);
    for l in &e[from..(line + 3).min(e.len())] {
        out.push_str(&format!("      - {l}\n"));
    }
    for l in &a[from..(line + 3).min(a.len())] {
        out.push_str(&format!("      + {l}\n"));
    }
    out
}
