//! Tandem: a Kubernetes mutating admission webhook that injects sidecar,
//! ambassador, adapter and init containers.
//!
//! Data flows one way: decode → decide ([`engine`]) → patch ([`patch`]) → encode.
#![forbid(unsafe_code)]

pub mod admission;
pub mod cli;
pub mod cluster;
pub mod engine;
pub mod patch;
pub mod quantity;
pub mod server;
pub mod template;
