//! Native versus classic, and Job safety: a classic sidecar in a pod whose
//! `restartPolicy` is not `Always` would keep a Job running forever.

use crate::facts::Capabilities;
use crate::template::{Lifecycle, Template};

/// Where a template's long-running containers go.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Placement {
    /// `initContainers` with `restartPolicy: Always`.
    Native,
    /// Appended to `containers`.
    Classic,
    /// The template has only run-to-completion init containers.
    InitOnly,
}

impl Placement {
    pub fn as_str(self) -> &'static str {
        match self {
            Placement::Native => "native",
            Placement::Classic => "classic",
            Placement::InitOnly => "init",
        }
    }
}

/// Why a template cannot be placed in this pod.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Unplaceable {
    NativeUnsupported,
    JobNeedsNative,
}

/// Decides the placement; the `String` is a note worth a warning (a fallback).
pub(super) fn place(
    t: &Template,
    caps: &Capabilities,
    restart_policy: &str,
) -> Result<(Placement, Option<String>), Unplaceable> {
    if t.spec.containers.is_empty() {
        return Ok((Placement::InitOnly, None));
    }
    let wanted = match (t.spec.lifecycle, caps.native_sidecars) {
        (Lifecycle::Native, true) | (Lifecycle::Auto, true) => Placement::Native,
        (Lifecycle::Native, false) => return Err(Unplaceable::NativeUnsupported),
        _ => Placement::Classic,
    };
    if wanted == Placement::Classic && restart_policy != "Always" {
        if caps.native_sidecars {
            let note = format!(
                "{}: classic sidecar would keep this restartPolicy {restart_policy} pod running; injected as native",
                t.name
            );
            return Ok((Placement::Native, Some(note)));
        }
        return Err(Unplaceable::JobNeedsNative);
    }
    Ok((wanted, None))
}
