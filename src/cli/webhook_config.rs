//! `tandem webhook-config`: the MutatingWebhookConfiguration and
//! ValidatingWebhookConfiguration for a service or URL, self-checked.

use std::path::PathBuf;

use clap::Args;

use super::{CliError, ScopeArgs, manifest};
use crate::install::webhook::{self, Endpoint, Params};

#[derive(Args, Debug)]
pub struct WebhookConfigArgs {
    /// Service in front of Tandem.
    #[arg(long, default_value = "tandem")]
    pub service: String,
    /// Service port.
    #[arg(long, default_value_t = 443)]
    pub port: i32,
    /// Call this URL instead of a Service: Tandem's base URL (https://tandem.example:8443;
    /// /mutate and /validate are appended) or its /mutate URL.
    #[arg(long, conflicts_with = "service")]
    pub url: Option<String>,
    /// PEM file of the CA that signed Tandem's serving certificate.
    #[arg(long, value_name = "FILE")]
    pub ca_bundle_file: Option<PathBuf>,
    #[command(flatten)]
    pub scope: ScopeArgs,
    /// Ignore (fail open; pair with the shipped ValidatingAdmissionPolicy) or Fail.
    #[arg(long, default_value = "Ignore", value_parser = ["Ignore", "Fail"])]
    pub failure_policy: String,
    #[arg(long, default_value_t = 5)]
    pub timeout_seconds: i32,
}

pub(super) fn run(args: &WebhookConfigArgs) -> Result<(), CliError> {
    let ca_bundle = match &args.ca_bundle_file {
        Some(path) => Some(std::fs::read(path).map_err(|e| CliError::Input {
            path: path.display().to_string(),
            message: format!("cannot read: {e}"),
        })?),
        None => None,
    };
    let endpoint = match &args.url {
        Some(url) => Endpoint::url(url).map_err(CliError::Usage)?,
        None => Endpoint::Service {
            name: args.service.clone(),
            namespace: args.scope.namespace.clone(),
            port: args.port,
        },
    };
    let params = Params {
        endpoint,
        ca_bundle,
        namespace: args.scope.namespace.clone(),
        scope: args.scope.scope(),
        failure_policy: args.failure_policy.clone(),
        timeout_seconds: args.timeout_seconds,
        excluded_namespaces: args.scope.exclude_namespaces.clone(),
    };
    let mutating = webhook::mutating(&params);
    let problems = webhook::check_mutating(&mutating, &args.scope.namespace);
    if !problems.is_empty() {
        return Err(CliError::Failed(format!(
            "refusing an unsafe configuration:\n  {}",
            problems.join("\n  ")
        )));
    }
    let validating = webhook::validating(&params);
    let docs = [
        serde_json::to_value(&mutating),
        serde_json::to_value(&validating),
    ]
    .into_iter()
    .collect::<Result<Vec<_>, _>>()
    .map_err(|e| CliError::Failed(format!("cannot render the output: {e}")))?;
    print!("{}", manifest::render(manifest::Format::Yaml, &docs)?);
    Ok(())
}
