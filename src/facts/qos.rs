//! What one container contributes to its pod's QoS class, as the kubelet
//! reads it after the API server's defaulting (an unset request defaults to
//! its limit; zero counts as unset). Computed once per template container at
//! load, and once per pod container per admission.

use super::{Doc, Quantity};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QosShare {
    /// It requests or limits CPU or memory.
    pub asks: bool,
    /// CPU and memory limits, and requests equal to them.
    pub guaranteed: bool,
}

impl QosShare {
    pub fn of(container: &Doc<'_>) -> QosShare {
        let resources = container.get("resources");
        let amounts = |kind: &str| {
            ["cpu", "memory"].map(|r| {
                resources
                    .and_then(|res| res.get(kind))
                    .and_then(|m| m.get(r))
                    .and_then(Quantity::from_doc)
                    .filter(|q| !q.is_zero())
            })
        };
        let requests = amounts("requests");
        let limits = amounts("limits");
        QosShare {
            asks: requests.iter().chain(&limits).any(Option::is_some),
            guaranteed: limits.iter().all(Option::is_some)
                && requests
                    .iter()
                    .zip(&limits)
                    .all(|(r, l)| r.is_none() || r == l),
        }
    }
}
