//! Day 2: whether a running pod carries each template as it is now. A pod is
//! outdated for a template when the hash its `tandem.dev/status` recorded
//! differs from the hash the template gives it now, its parameter values
//! included (or the template is gone); refused when the template now
//! refuses one of its values; missing when it has no status at all and the
//! engine would inject the template.
//! `tandem status`, `tandem rollout` and the server's pod counts all read
//! pods through [`drift`], so they agree on every pod.

use serde::Serialize;

use super::parameters;
use super::status::Status;
use super::{Input, Verdict};
use crate::facts::{Doc, Namespace, Policy};
use crate::template::{Template, TemplateSet};

/// Where a pod stands for one template.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum State {
    /// Injected with the template's current hash.
    Current,
    /// Injected with another hash, or with a template no longer in force.
    Outdated,
    /// Asked for the template and carries no `tandem.dev/status` at all: it
    /// was admitted while Tandem was not answering, and would get it now.
    Missing,
    /// Carries the template with a parameter value the template now
    /// refuses: a restart would drop the sidecar, so it is never restarted.
    Refused,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Current => "current",
            State::Outdated => "outdated",
            State::Missing => "missing",
            State::Refused => "refused",
        }
    }
}

/// A pod's templates and where it stands for each.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Drift {
    /// Each template the pod carries (or asked for and lacks), in the
    /// status's order.
    Templates(Vec<(String, State)>),
    /// A `tandem.dev/status` that is not Tandem's record: nothing can be
    /// said of the pod's templates.
    Unknown,
}

/// Where the pod whose `tandem.dev/status` is `status` stands for each
/// template it carries, against `templates` as seen from its namespace. A
/// template with parameters is compared as this pod gets it: its
/// annotations (`annotation` reads them) and the namespace's give the
/// values, and the hash covers them.
pub fn carried<'p>(
    status: &str,
    annotation: impl Fn(&str) -> Option<&'p str> + Copy,
    namespace: &'p Namespace,
    templates: &TemplateSet,
) -> Drift {
    let Ok(status) = Status::parse(status) else {
        return Drift::Unknown;
    };
    Drift::Templates(
        status
            .templates
            .into_iter()
            .map(|injected| {
                let state = match templates.lookup(&namespace.name, &injected.name) {
                    // Gone: a restart leaves it out.
                    None => State::Outdated,
                    Some(t) => match expected_hash(t, annotation, namespace) {
                        None => State::Refused,
                        Some(hash) if hash == injected.hash => State::Current,
                        Some(_) => State::Outdated,
                    },
                };
                (injected.name, state)
            })
            .collect(),
    )
}

/// The hash a pod injected now would record for `t`; `None` when one of
/// its parameter values is refused (it would not be injected at all).
fn expected_hash<'p>(
    t: &Template,
    annotation: impl Fn(&str) -> Option<&'p str>,
    namespace: &'p Namespace,
) -> Option<String> {
    if t.spec.parameters.is_empty() {
        return Some(t.hash.clone());
    }
    let values = parameters::values(t, annotation, namespace).ok()?;
    if !values.overridden {
        return Some(t.hash.clone());
    }
    t.with_values(&values.values)
        .ok()
        .map(|own| own.hash.clone())
}

/// Where a pod stands for each template: what its status records, or,
/// without one, the templates the engine would select for its metadata
/// (its own request, the namespace's default list, the selectors) as
/// [`State::Missing`]. `metadata` is the pod's `metadata` object; only its
/// labels and annotations are read.
pub fn drift(
    metadata: &serde_json::Value,
    namespace: &Namespace,
    templates: &TemplateSet,
    policy: &Policy,
) -> Drift {
    let annotations = metadata.get("annotations");
    if let Some(status) = annotations
        .and_then(|a| a.get(crate::facts::STATUS_ANNOTATION))
        .and_then(serde_json::Value::as_str)
    {
        let annotation = |k: &str| annotations?.get(k)?.as_str();
        return carried(status, annotation, namespace, templates);
    }
    // Which templates the gates select depends on the metadata alone; a pod
    // without containers is enough to run them.
    let pod = serde_json::json!({
        "metadata": {
            "name": metadata.get("name").cloned().unwrap_or_default(),
            "labels": metadata.get("labels").cloned().unwrap_or_default(),
            "annotations": annotations.cloned().unwrap_or_default(),
        },
        "spec": { "containers": [] },
    });
    let capabilities = crate::facts::Capabilities::default();
    let input = Input {
        pod: &Doc::from(&pod),
        namespace,
        templates,
        capabilities: &capabilities,
        policy,
    };
    let Ok(decision) = super::decide(&input) else {
        return Drift::Unknown;
    };
    Drift::Templates(
        decision
            .templates
            .into_iter()
            // Only what the engine would inject now is missing: not a
            // dryRun template, nor one it would skip.
            .filter(|t| matches!(t.verdict, Verdict::Injected { .. }))
            .map(|t| (t.name, State::Missing))
            .collect(),
    )
}
