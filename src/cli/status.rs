//! `tandem status`: which running pods carry each template as it is now,
//! per template and per owning workload. It reads pods' metadata with the
//! user's kubeconfig, so it works whatever injects them: the webhook, the
//! compiled policies, or both.

use std::fmt::Write;

use clap::{Args, ValueEnum};

use super::CliError;
use super::day2::{Day2Args, Report, runtime};

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    Table,
    Json,
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    #[command(flatten)]
    pub pods: Day2Args,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t = Output::Table)]
    pub output: Output,
    /// Exit 1 when any pod carries an outdated template (for CI).
    #[arg(long)]
    pub fail_on_outdated: bool,
}

pub(super) fn run(args: &StatusArgs) -> Result<(), CliError> {
    let (_, report) = runtime()?.block_on(args.pods.report())?;
    for note in &report.notes {
        eprintln!("tandem: note: {note}");
    }
    match args.output {
        Output::Table => print!("{}", table(&report)),
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(&report).map_err(|e| CliError::Failed(e.to_string()))?
        ),
    }
    let outdated = report.outdated();
    if args.fail_on_outdated && outdated > 0 {
        return Err(CliError::Failed(format!(
            "{outdated} pod(s) carry an outdated template; `tandem rollout` restarts their workloads"
        )));
    }
    Ok(())
}

/// One line per template and workload, then the template's total.
pub(super) fn table(report: &Report) -> String {
    let mut rows = vec![[
        "TEMPLATE".to_string(),
        "WORKLOAD".into(),
        "CURRENT".into(),
        "OUTDATED".into(),
        "MISSING".into(),
        "REFUSED".into(),
    ]];
    for t in &report.templates {
        for w in &t.workloads {
            rows.push([
                t.name.clone(),
                w.workload.to_string(),
                w.counts.current.to_string(),
                w.counts.outdated.to_string(),
                w.counts.missing.to_string(),
                w.counts.refused.to_string(),
            ]);
        }
        let total = match &t.hash {
            Some(hash) => format!("(all, hash {hash})"),
            None => "(all; no longer in force)".into(),
        };
        rows.push([
            t.name.clone(),
            total,
            t.total.current.to_string(),
            t.total.outdated.to_string(),
            t.total.missing.to_string(),
            t.total.refused.to_string(),
        ]);
    }
    let widths: Vec<usize> = (0..6)
        .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in &rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
    }
    if !report.unknown.is_empty() {
        let _ = writeln!(
            out,
            "\nPods whose tandem.dev/status is not Tandem's record (their templates are unknown):"
        );
        for w in &report.unknown {
            let _ = writeln!(out, "  {}: {} pod(s)", w.workload, w.pods);
        }
    }
    out
}
