//! The pod's QoS class as the kubelet computes it, from the containers and
//! init containers (native sidecars included): BestEffort when no container
//! asks for CPU or memory, Guaranteed when every container has CPU and
//! memory limits and requests equal to them, Burstable otherwise. What each
//! container contributes is a [`QosShare`].

use serde::Serialize;

use crate::facts::QosShare;

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

/// The shares of some of a pod's containers, folded; more can be added.
#[derive(Clone, Copy)]
pub(super) struct Tally {
    asks: bool,
    guaranteed: bool,
}

impl Tally {
    pub(super) fn of(shares: impl IntoIterator<Item = QosShare>) -> Tally {
        Tally {
            asks: false,
            guaranteed: true,
        }
        .with(shares)
    }

    pub(super) fn with(mut self, shares: impl IntoIterator<Item = QosShare>) -> Tally {
        for s in shares {
            self.asks |= s.asks;
            self.guaranteed &= s.guaranteed;
        }
        self
    }

    pub(super) fn class(self) -> QosClass {
        match (self.asks, self.guaranteed) {
            (false, _) => QosClass::BestEffort,
            (true, true) => QosClass::Guaranteed,
            (true, false) => QosClass::Burstable,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::facts::Doc;

    fn c(resources: Value) -> Value {
        json!({"name": "c", "resources": resources})
    }

    fn of(cs: &[Value]) -> QosClass {
        Tally::of(cs.iter().map(|c| QosShare::of(&Doc::from(c)))).class()
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
