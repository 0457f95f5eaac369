//! The decision engine: pod + templates + namespace facts + cluster
//! capabilities → decision, patch, warnings. Pure: no I/O, no clock, no
//! environment, no logging, no client (tests/layers.rs fails on any), so the
//! webhook, the CLI and the tests get byte-identical answers.
//!
//! Start at [`decide`] (`decide.rs`; [`explain`] also keeps why each gate
//! passed or stopped): the gates before any template, then one
//! run per selected template (`run.rs`), then the patch. The rules each step
//! applies live in files named for them: who gets what (`select.rs`), what
//! collides (`conflicts.rs`), native or classic (`placement.rs`), the
//! effective request (`resources.rs`), the status record (`status.rs`), the
//! JSON patch (`patch.rs`); and, for day 2, whether a running pod's
//! templates are current (`drift.rs`).

mod conflicts;
mod decide;
mod decision;
mod drift;
mod lint;
mod parameters;
mod patch;
mod placement;
mod pod;
mod pod_security;
mod qos;
mod resources;
mod run;
mod select;
mod skip;
mod status;

use crate::facts::{Capabilities, Doc, Namespace, Policy};
use crate::template::TemplateSet;

pub use decide::{decide, explain};
pub use decision::{
    Decision, Gate, GateVerdict, MAX_WARNING_CHARS, Outcome, ResourceChange, TemplateVerdict,
    Verdict,
};
pub use drift::{Drift, State, carried, drift};
pub use lint::collisions;
pub use patch::Patch;
pub use placement::Placement;
pub use pod::POD_READS;
pub use pod_security::{Violation, pod_violations, template_violations};
pub use qos::QosClass;
pub use resources::{Requests, template_requests};
pub use select::{InjectRequest, Source, parse_request, selector_matches};
pub use skip::SkipReason;
pub use status::{Injected, InvalidStatus, Status};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    #[error("malformed pod: {0}")]
    MalformedPod(String),
    /// Something Tandem built could not be encoded; a bug, never the input's fault.
    #[error("cannot encode {what}: {message}")]
    Encode { what: &'static str, message: String },
}

/// Everything a decision depends on.
pub struct Input<'a> {
    /// The pod as raw JSON (a Pod, or a pod template's `{metadata, spec}`).
    pub pod: &'a Doc<'a>,
    pub namespace: &'a Namespace,
    pub templates: &'a TemplateSet,
    pub capabilities: &'a Capabilities,
    pub policy: &'a Policy,
}
