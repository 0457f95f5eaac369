//! AdmissionReview in, AdmissionReview out. Owns the uid (always echoed), the
//! mapping of decisions to allow/deny, warnings, audit annotations, dry run,
//! and the Event an answer calls for. Knows nothing of HTTP, TLS or the
//! cluster client: the server hands it bytes and context, and publishes the
//! notice it returns.
//!
//! - `codec.rs`: parsing a review (lean: only the fields Tandem reads are
//!   built) and encoding the answer, for both endpoints;
//! - `mutate.rs`: `/mutate`, a pod through the engine;
//! - `validate.rs`: `/validate`, a SidecarTemplate through the loader;
//! - `notice.rs`: the Warning Event for a skipped or denied injection.

mod codec;
mod mutate;
mod notice;
mod validate;

pub use codec::{Answer, Outcome, ReviewError};
pub use mutate::{Context, review};
pub use notice::Notice;
pub use validate::validate_template;
