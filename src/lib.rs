//! Tandem: a Kubernetes mutating admission webhook that injects sidecar,
//! ambassador, adapter and init containers.
//!
//! # Layers
//!
//! Each layer is a folder and imports only from the layers listed before it
//! (`tests/layers.rs` holds the code to this order):
//!
//! 1. [`facts`]: names and facts every layer shares: annotation keys,
//!    namespace facts, cluster capabilities, the operator's policy, quantities,
//!    and the JSON document pods are read as ([`facts::Doc`]).
//! 2. [`template`]: the SidecarTemplate type (shared with the CRD), loading,
//!    validation, the set of templates in force.
//! 3. [`engine`]: the pure decision: pod + templates + facts → decision,
//!    JSON patch, warnings. No I/O. Start reading at [`engine::decide`].
//! 4. [`admission`]: AdmissionReview bytes in, answer bytes out, and the Event
//!    an answer calls for. [`install`]: the CRD and webhook configurations
//!    Tandem ships. Neither imports the other.
//! 5. [`cluster`]: watch caches, injected pod counts and Event publishing,
//!    feeding a narrow sink; and what `tandem status` and `tandem rollout`
//!    read and restart with the user's credentials.
//! 6. [`server`]: `tandem serve`, the one place that wires the layers.
//! 7. [`cli`]: every command and flag.
//!
//! A request flows one way: the server reads a body, `admission` decodes it,
//! `engine` decides and builds the patch, `admission` encodes the answer.
#![forbid(unsafe_code)]
#![warn(unreachable_pub)]

pub mod admission;
pub mod cli;
pub mod cluster;
pub mod engine;
pub mod facts;
pub mod install;
pub mod server;
pub mod template;
