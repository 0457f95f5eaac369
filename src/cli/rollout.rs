//! `tandem rollout`: restarts the workloads whose pods carry an outdated
//! template, as `kubectl rollout restart` does, a few at a time, waiting for
//! each rollout to finish and stopping at the first that does not.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Args;
use tokio::task::JoinSet;

use super::CliError;
use super::day2::{Day2Args, Report, runtime};
use crate::cluster::{self, Progress, RolloutError, Workload};

#[derive(Args, Debug)]
pub struct RolloutArgs {
    #[command(flatten)]
    pub pods: Day2Args,
    /// Workloads rolling out at once.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    pub max_in_flight: u16,
    /// How long one rollout may take (e.g. 90s, 5m, 1h); the first that
    /// takes longer stops the run.
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Print what would be restarted, and restart nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// `90`, `90s`, `5m` or `1h`.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let (number, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 90s, 5m or 1h"))?;
    let seconds = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => return Err(format!("{s:?} is not a duration like 90s, 5m or 1h")),
    };
    Ok(Duration::from_secs(seconds))
}

/// What the run does with the workloads of outdated pods.
struct Plan {
    /// Restarted in this order, with the outdated pods of each template.
    restart: Vec<(Workload, Vec<(String, usize)>)>,
    /// Listed with the reason they are not restarted.
    aside: Vec<(Workload, &'static str)>,
}

fn plan(report: &Report) -> Plan {
    let mut outdated: BTreeMap<Workload, Vec<(String, usize)>> = BTreeMap::new();
    for t in &report.templates {
        for w in t.workloads.iter().filter(|w| w.counts.outdated > 0) {
            outdated
                .entry(w.workload.clone())
                .or_default()
                .push((t.name.clone(), w.counts.outdated));
        }
    }
    let mut plan = Plan {
        restart: Vec::new(),
        aside: Vec::new(),
    };
    for (w, templates) in outdated {
        match cluster::not_restartable(&w) {
            Some(why) => plan.aside.push((w, why)),
            None => plan.restart.push((w, templates)),
        }
    }
    plan
}

fn describe(templates: &[(String, usize)]) -> String {
    templates
        .iter()
        .map(|(t, n)| format!("{t}: {n} outdated"))
        .collect::<Vec<_>>()
        .join(", ")
}

enum Outcome {
    RolledOut(Duration),
    /// Not restarted: why (paused, mid-rollout, OnDelete).
    Skipped(String),
    /// Not restarted for lack of rights; the message names them.
    Forbidden(String),
    /// Restarted and did not finish, or could not be restarted.
    Failed(String),
}

/// Restarts `w` when its last rollout finished, and waits for the new one.
async fn roll(
    client: kube::Client,
    w: Workload,
    timeout: Duration,
    restarted: Arc<Mutex<Vec<Workload>>>,
) -> Outcome {
    let failed = |e: RolloutError| match e {
        e @ RolloutError::Forbidden { .. } => Outcome::Forbidden(e.to_string()),
        e => Outcome::Failed(e.to_string()),
    };
    match cluster::progress(&client, &w).await {
        Ok(Progress::Done) => {}
        // Restarting on top of a rollout in progress would stack restarts.
        Ok(Progress::Waiting(what)) => {
            return Outcome::Skipped(format!(
                "already rolling out ({what}); not restarted on top of it"
            ));
        }
        Ok(Progress::Held(why) | Progress::Failed(why)) => return Outcome::Skipped(why),
        Err(e) => return failed(e),
    }
    let at = k8s_openapi::jiff::Timestamp::now().to_string();
    if let Err(e) = cluster::restart(&client, &w, &at).await {
        return failed(e);
    }
    restarted
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(w.clone());
    let started = Instant::now();
    let mut pause = Duration::from_millis(250);
    loop {
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(2));
        match cluster::progress(&client, &w).await {
            Ok(Progress::Done) => return Outcome::RolledOut(started.elapsed()),
            Ok(Progress::Failed(why)) => return Outcome::Failed(why),
            // Paused (or made OnDelete) after the restart counts as not
            // finishing: the timeout holds for every state but done.
            Ok(Progress::Waiting(what) | Progress::Held(what)) if started.elapsed() >= timeout => {
                return Outcome::Failed(format!(
                    "did not finish within {}s ({what})",
                    timeout.as_secs()
                ));
            }
            Ok(_) => {}
            Err(e) => return failed(e),
        }
    }
}

pub(super) fn run(args: &RolloutArgs) -> Result<(), CliError> {
    runtime()?.block_on(execute(args))
}

async fn execute(args: &RolloutArgs) -> Result<(), CliError> {
    let (client, report) = args.pods.report().await?;
    for note in &report.notes {
        eprintln!("tandem: note: {note}");
    }
    let plan = plan(&report);
    println!(
        "{} workload(s) to restart, at most {} at a time, each within {}s:",
        plan.restart.len(),
        args.max_in_flight,
        args.timeout.as_secs()
    );
    for (w, templates) in &plan.restart {
        println!("  {w} ({})", describe(templates));
    }
    if !plan.aside.is_empty() {
        println!("not restarted:");
        for (w, why) in &plan.aside {
            println!("  {w}: {why}");
        }
    }
    if args.dry_run || plan.restart.is_empty() {
        return Ok(());
    }

    let restarted: Arc<Mutex<Vec<Workload>>> = Arc::default();
    let mut queue = plan.restart.into_iter().map(|(w, _)| w);
    let mut running = JoinSet::new();
    let (mut stopping, mut interrupted) = (None::<String>, false);
    let mut forbidden = 0;
    let mut interrupt = std::pin::pin!(tokio::signal::ctrl_c());
    loop {
        while stopping.is_none() && running.len() < usize::from(args.max_in_flight) {
            let Some(w) = queue.next() else { break };
            let task = roll(client.clone(), w.clone(), args.timeout, restarted.clone());
            running.spawn(async move { (w, task.await) });
        }
        tokio::select! {
            joined = running.join_next() => {
                let Some(joined) = joined else { break };
                let Ok((w, outcome)) = joined else { continue };
                match outcome {
                    Outcome::RolledOut(took) => {
                        println!("restarted {w}: rolled out in {:.1}s", took.as_secs_f64());
                    }
                    Outcome::Skipped(why) => println!("skipped {w}: {why}"),
                    Outcome::Forbidden(why) => {
                        forbidden += 1;
                        println!("skipped {w}: {why}");
                    }
                    Outcome::Failed(why) => {
                        println!("FAILED {w}: {why}");
                        stopping.get_or_insert(format!("{w} did not roll out: {why}"));
                    }
                }
            }
            _ = &mut interrupt, if !interrupted => {
                interrupted = true;
                stopping = Some("interrupted".into());
                // A restart is one PATCH: stopping the waits leaves nothing half done.
                running.abort_all();
            }
        }
    }
    let restarted = restarted.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let left: Vec<Workload> = queue.collect();
    if let Some(why) = stopping {
        println!("stopped: {why}");
        println!(
            "restarted before stopping: {}",
            if restarted.is_empty() {
                "none".to_string()
            } else {
                restarted
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        );
        if !left.is_empty() {
            println!(
                "not restarted: {}",
                left.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        return Err(CliError::Failed(format!("rollout stopped: {why}")));
    }
    if forbidden > 0 {
        return Err(CliError::Failed(format!(
            "{forbidden} workload(s) could not be restarted for lack of rights"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        for bad in ["", "m", "5d", "-1s", "1.5m"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
