//! The cluster side: the CRD and webhook configurations Tandem ships.

pub mod crd;
pub mod webhook;
