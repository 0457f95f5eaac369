//! What Tandem ships to a cluster besides itself: the SidecarTemplate CRD,
//! the webhook configurations and, for webhook-free injection, the templates
//! compiled to MutatingAdmissionPolicies, all generated from the same types and constants
//! the engine decides by, with the safety checks every shipped configuration
//! (the `deploy/` manifests and the chart included) must pass. Pure: it
//! prints, it never calls a cluster.

pub mod crd;
pub mod policy;
pub mod sites;
pub mod webhook;
