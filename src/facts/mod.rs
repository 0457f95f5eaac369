//! The bottom layer: the facts and names every other layer shares. What Tandem
//! knows of a namespace and of the cluster, the operator's policy, the
//! annotation and label keys of the product contract, exact quantities, and
//! the JSON pods and templates are read as (`json/`: the document and its
//! strict reader).
//! It imports nothing from the crate.

mod capabilities;
pub mod json;
mod keys;
mod namespace;
mod pod_security;
mod policy;
mod qos;
mod quantity;

pub use capabilities::{Capabilities, NativeSidecars, parse_version};
pub use json::{Doc, Fields, write_json_string};
pub use keys::*;
pub use namespace::{Namespace, NamespaceFacts, NoNamespaces};
pub use pod_security::{Level, POD_SECURITY_PREFIX, PodSecurity, Standard, Version};
pub use policy::{OnMissing, Policy};
pub use qos::QosShare;
pub use quantity::{Cpu, InvalidQuantity, Memory, Quantity};

/// How an object is named in messages and logs: `name`, or `generateName*`
/// for objects a controller creates (the API server names them after
/// admission). `None` when it has neither.
pub fn display_name(name: Option<&str>, generate_name: Option<&str>) -> Option<String> {
    match (name, generate_name) {
        (Some(n), _) => Some(n.to_string()),
        (None, Some(g)) => Some(format!("{g}*")),
        (None, None) => None,
    }
}
