//! The cluster side: the CRD and webhook configurations Tandem ships.

pub mod crd;
pub mod events;
pub mod namespaces;
pub mod templates;
pub mod watch;
pub mod webhook;
