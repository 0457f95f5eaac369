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
mod policy;
mod quantity;

pub use capabilities::{Capabilities, NativeSidecars, parse_version};
pub use json::{Doc, Fields, write_json_string};
pub use keys::*;
pub use namespace::{Namespace, NamespaceFacts, NoNamespaces};
pub use policy::{OnMissing, Policy};
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

/// A DNS-1123 label: lower-case letters, digits and '-', starting and
/// ending alphanumeric, at most 63. What Kubernetes requires of container,
/// volume, Service and Namespace names.
pub fn is_dns_label(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

#[cfg(test)]
mod tests {
    #[test]
    fn dns_labels() {
        for ok in ["a", "log-shipper", "a1", &"x".repeat(63)] {
            assert!(super::is_dns_label(ok), "{ok}");
        }
        for bad in ["", "-a", "a-", "A", "a_b", "a.b", &"x".repeat(64)] {
            assert!(!super::is_dns_label(bad), "{bad}");
        }
    }
}
