//! The pod's effective CPU and memory request as the scheduler computes it:
//! max(largest init-phase request, sum of app containers + native sidecars),
//! where each init container also carries the native sidecars started before it.

use serde_json::Value;

use super::pod::is_native_sidecar;
use crate::facts::{Cpu, Memory, Quantity};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Requests {
    #[serde(serialize_with = "cpu")]
    pub cpu: Quantity,
    #[serde(serialize_with = "memory")]
    pub memory: Quantity,
}

fn cpu<S: serde::Serializer>(q: &Quantity, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&Cpu(*q))
}

fn memory<S: serde::Serializer>(q: &Quantity, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&Memory(*q))
}

impl Requests {
    fn add(self, o: Requests) -> Requests {
        Requests {
            cpu: self.cpu + o.cpu,
            memory: self.memory + o.memory,
        }
    }

    fn max(self, o: Requests) -> Requests {
        Requests {
            cpu: self.cpu.max(o.cpu),
            memory: self.memory.max(o.memory),
        }
    }
}

impl std::fmt::Display for Requests {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cpu {}, memory {}", Cpu(self.cpu), Memory(self.memory))
    }
}

/// A container's request for one resource; an unset request defaults to the
/// limit, as the API server does.
fn request_of(c: &Value, resource: &str) -> Quantity {
    let r = c.get("resources");
    let pick = |kind: &str| r.and_then(|r| r.get(kind)).and_then(|m| m.get(resource));
    pick("requests")
        .or_else(|| pick("limits"))
        .and_then(quantity)
        .unwrap_or_default()
}

fn quantity(v: &Value) -> Option<Quantity> {
    match v {
        Value::String(s) => Quantity::parse(s).ok(),
        Value::Number(n) => Quantity::parse(&n.to_string()).ok(),
        _ => None,
    }
}

fn requests_of(c: &Value) -> Requests {
    Requests {
        cpu: request_of(c, "cpu"),
        memory: request_of(c, "memory"),
    }
}

/// The effective request of a pod with these containers, init containers (in
/// order) and `spec` (for `overhead` and pod-level `resources`).
pub(super) fn effective<'a>(
    containers: impl IntoIterator<Item = &'a Value>,
    init_containers: impl IntoIterator<Item = &'a Value>,
    spec: Option<&Value>,
) -> Requests {
    let mut running = containers
        .into_iter()
        .fold(Requests::default(), |sum, c| sum.add(requests_of(c)));
    let mut sidecars = Requests::default();
    let mut init_peak = Requests::default();
    for c in init_containers {
        let r = requests_of(c);
        if is_native_sidecar(c) {
            sidecars = sidecars.add(r);
            running = running.add(r);
            init_peak = init_peak.max(sidecars);
        } else {
            init_peak = init_peak.max(r.add(sidecars));
        }
    }
    let mut total = running.max(init_peak);
    if let Some(spec) = spec {
        // Pod-level resources (1.32+) replace the per-container sum when set.
        if let Some(pod_level) = spec.get("resources") {
            let wrapped = serde_json::json!({ "resources": pod_level });
            let p = requests_of(&wrapped);
            if !p.cpu.is_zero() {
                total.cpu = p.cpu;
            }
            if !p.memory.is_zero() {
                total.memory = p.memory;
            }
        }
        if let Some(overhead) = spec.get("overhead") {
            let wrapped = serde_json::json!({ "resources": { "requests": overhead } });
            total = total.add(requests_of(&wrapped));
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn c(cpu: &str, mem: &str) -> Value {
        json!({"name": "c", "resources": {"requests": {"cpu": cpu, "memory": mem}}})
    }

    fn sidecar(cpu: &str, mem: &str) -> Value {
        let mut v = c(cpu, mem);
        v["restartPolicy"] = json!("Always");
        v
    }

    #[test]
    fn three_native_sidecars_add_to_the_app() {
        // The production guide's example: 3 x 100m sidecars + a 500m app = 800m.
        let init = [
            sidecar("100m", "0"),
            sidecar("100m", "0"),
            sidecar("100m", "0"),
        ];
        let r = effective(&[c("500m", "0")], &init, None);
        assert_eq!(Cpu(r.cpu).to_string(), "800m");
    }

    #[test]
    fn init_phase_peak_includes_earlier_sidecars() {
        let init = [sidecar("200m", "64Mi"), c("1", "128Mi")];
        let r = effective(&[c("100m", "32Mi")], &init, None);
        assert_eq!(r.to_string(), "cpu 1200m, memory 192Mi");
    }

    #[test]
    fn classic_init_takes_the_max_and_limits_default_requests() {
        let app = json!({"name": "a", "resources": {"limits": {"cpu": "2", "memory": "1Gi"}}});
        let r = effective(&[app], &[c("3", "10Mi")], None);
        assert_eq!(r.to_string(), "cpu 3, memory 1Gi");
    }

    #[test]
    fn overhead_is_added() {
        let spec = json!({"overhead": {"cpu": "250m", "memory": "120Mi"}});
        let r = effective(&[c("1", "1Gi")], &[], Some(&spec));
        assert_eq!(r.to_string(), "cpu 1250m, memory 1144Mi");
    }
}
