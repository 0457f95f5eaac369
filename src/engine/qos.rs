//! The pod's QoS class as the kubelet computes it, from the containers and
//! init containers (native sidecars included) after the API server's
//! defaulting (an unset request defaults to its limit): BestEffort when no
//! container asks for CPU or memory, Guaranteed when every container has CPU
//! and memory limits and requests equal to them, Burstable otherwise.

use serde::Serialize;

use super::resources::quantity;
use crate::facts::{Doc, Quantity};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum QosClass {
    BestEffort,
    Burstable,
    Guaranteed,
}

impl QosClass {
    pub fn as_str(self) -> &'static str {
        match self {
            QosClass::BestEffort => "BestEffort",
            QosClass::Burstable => "Burstable",
            QosClass::Guaranteed => "Guaranteed",
        }
    }
}

impl std::fmt::Display for QosClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A container's non-zero CPU and memory amounts of `kind` (`requests`,
/// `limits`).
fn amounts(c: &Doc<'_>, kind: &str) -> [Option<Quantity>; 2] {
    ["cpu", "memory"].map(|r| {
        c.get("resources")
            .and_then(|res| res.get(kind))
            .and_then(|m| m.get(r))
            .and_then(quantity)
            .filter(|q| !q.is_zero())
    })
}

/// Whether a container on its own would let the pod be Guaranteed: CPU and
/// memory limits, and requests (defaulted to them) equal.
pub(super) fn guaranteed_container(c: &Doc<'_>) -> bool {
    let limits = amounts(c, "limits");
    let requests = amounts(c, "requests");
    limits.iter().all(Option::is_some)
        && requests
            .iter()
            .zip(&limits)
            .all(|(r, l)| r.is_none() || r == l)
}

pub(super) fn class<'a>(containers: impl IntoIterator<Item = &'a Doc<'a>>) -> QosClass {
    let mut any = false;
    let mut guaranteed = true;
    for c in containers {
        let asks = amounts(c, "requests")
            .iter()
            .chain(&amounts(c, "limits"))
            .any(Option::is_some);
        any |= asks;
        guaranteed &= guaranteed_container(c);
    }
    match (any, guaranteed) {
        (false, _) => QosClass::BestEffort,
        (true, true) => QosClass::Guaranteed,
        (true, false) => QosClass::Burstable,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn c(resources: Value) -> Value {
        json!({"name": "c", "resources": resources})
    }

    fn of(cs: &[Value]) -> QosClass {
        let docs: Vec<Doc> = cs.iter().map(Doc::from).collect();
        class(docs.iter())
    }

    #[test]
    fn classes_as_the_kubelet_computes_them() {
        let full = c(json!({"limits": {"cpu": "100m", "memory": "64Mi"}}));
        let equal = c(json!({"requests": {"cpu": "0.1", "memory": "64Mi"},
                             "limits": {"cpu": "100m", "memory": "67108864"}}));
        let less =
            c(json!({"requests": {"cpu": "50m"}, "limits": {"cpu": "100m", "memory": "64Mi"}}));
        let cpu_only = c(json!({"limits": {"cpu": "100m"}}));
        let none = json!({"name": "n"});
        let zero = c(json!({"requests": {"cpu": "0"}}));
        assert_eq!(of(&[full.clone(), equal.clone()]), QosClass::Guaranteed);
        assert_eq!(of(&[full.clone(), less]), QosClass::Burstable);
        assert_eq!(of(&[full.clone(), cpu_only]), QosClass::Burstable);
        assert_eq!(of(&[full.clone(), none.clone()]), QosClass::Burstable);
        assert_eq!(of(&[none.clone(), zero]), QosClass::BestEffort);
        assert_eq!(of(&[]), QosClass::BestEffort);
    }
}
