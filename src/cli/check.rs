//! `tandem check`: the loader's validation plus lints.

use std::path::PathBuf;

use clap::Args;

use super::CliError;
use crate::engine;
use crate::facts::{Level, Standard, Version};
use crate::install::policy;
use crate::template::{self, TemplateSet};

#[derive(Args, Debug)]
pub struct CheckArgs {
    /// SidecarTemplate file or directory.
    #[arg(long, short = 'c', value_name = "PATH")]
    pub config: PathBuf,
    /// Also hold every template's containers and volumes to this Pod
    /// Security level (at the latest version), as if the pod set nothing
    /// for them to inherit: each field that breaks it is an error.
    #[arg(long, value_enum, value_name = "LEVEL")]
    pub pod_security: Option<PodSecurityLevel>,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum PodSecurityLevel {
    Baseline,
    Restricted,
}

pub(super) fn run(args: &CheckArgs) -> Result<(), CliError> {
    let templates = template::load_path(&args.config).map_err(|errs| {
        for e in &errs {
            println!("error: {e}");
        }
        CliError::Failed(format!(
            "{} error(s) in {}",
            errs.len(),
            args.config.display()
        ))
    })?;
    let mut lints = template::lint(&templates);
    lints.extend(engine::collisions(&templates));
    let count = templates.len();
    let security: Vec<String> = match args.pod_security {
        None => Vec::new(),
        Some(level) => {
            let standard = Standard {
                level: match level {
                    PodSecurityLevel::Baseline => Level::Baseline,
                    PodSecurityLevel::Restricted => Level::Restricted,
                },
                version: Version::Latest,
            };
            templates
                .iter()
                .flat_map(|t| {
                    engine::template_violations(t, standard)
                        .into_iter()
                        .map(move |v| {
                            format!(
                                "{}: template \"{}\": PodSecurity {standard}: {v}",
                                t.source, t.name
                            )
                        })
                })
                .collect()
        }
    };
    let set = TemplateSet::new(templates).map_err(|e| {
        println!("error: {e}");
        CliError::Failed(format!("1 error in {}", args.config.display()))
    })?;
    // Which requests `tandem policy` injects: a fact for choosing a mode,
    // not a fault, so notes rather than warnings.
    let coverage = policy::coverage(&set);
    let mut notes: Vec<String> = set
        .all()
        .filter_map(|t| {
            let c = coverage.single(&t.name)?;
            Some(format!(
                "{}: template \"{}\": policy: {c}",
                t.source, t.name
            ))
        })
        .collect();
    notes.extend(
        super::policy::coverage_lines(&coverage)
            .into_iter()
            .map(|l| format!("policy {}", l.trim_start())),
    );
    for l in &lints {
        println!("warning: {l}");
    }
    for n in &notes {
        println!("note: {n}");
    }
    for e in &security {
        println!("error: {e}");
    }
    if !security.is_empty() {
        return Err(CliError::Failed(format!(
            "{} Pod Security error(s) in {}",
            security.len(),
            args.config.display()
        )));
    }
    println!(
        "{}: {count} template(s) valid, {} warning(s)",
        args.config.display(),
        lints.len()
    );
    Ok(())
}
