//! The pod's effective CPU and memory request as the scheduler computes it:
//! max(largest init-phase request, sum of app containers + native sidecars),
//! where each init container also carries the native sidecars started before it.

use super::pod::is_native_sidecar;
use crate::facts::{Cpu, Doc, Memory, Quantity};

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

/// The `cpu` and `memory` of a map of quantities (the pod's `overhead`);
/// zero when unset or not a quantity.
fn amounts(map: Option<&Doc<'_>>) -> Requests {
    let amount = |resource: &str| {
        map.and_then(|m| m.get(resource))
            .and_then(quantity)
            .unwrap_or_default()
    };
    Requests {
        cpu: amount("cpu"),
        memory: amount("memory"),
    }
}

fn quantity(v: &Doc<'_>) -> Option<Quantity> {
    Quantity::from_doc(v)
}

/// What a `resources` object requests; an unset request defaults to the
/// limit, as the API server does.
fn requested(resources: Option<&Doc<'_>>) -> Requests {
    let one = |resource: &str| {
        let pick = |kind: &str| {
            resources
                .and_then(|r| r.get(kind))
                .and_then(|m| m.get(resource))
        };
        pick("requests")
            .or_else(|| pick("limits"))
            .and_then(quantity)
            .unwrap_or_default()
    };
    Requests {
        cpu: one("cpu"),
        memory: one("memory"),
    }
}

fn requests_of(c: &Doc<'_>) -> Requests {
    requested(c.get("resources"))
}

/// What a template's own containers request once placed natively (its init
/// containers, then its sidecars): the most it can add to a pod's effective
/// request, as policy mode's warnings state it.
pub fn template_requests(t: &crate::template::Template) -> Requests {
    let r = &t.rendered;
    effective(
        [],
        r.init_containers
            .iter()
            .chain(&r.native_containers)
            .map(|c| c.doc()),
        None,
    )
}

/// The effective request of a pod with these containers, init containers (in
/// order) and `spec` (for `overhead` and pod-level `resources`).
pub(super) fn effective<'a>(
    containers: impl IntoIterator<Item = &'a Doc<'a>>,
    init_containers: impl IntoIterator<Item = &'a Doc<'a>>,
    spec: Option<&Doc<'_>>,
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
            let p = requested(Some(pod_level));
            if !p.cpu.is_zero() {
                total.cpu = p.cpu;
            }
            if !p.memory.is_zero() {
                total.memory = p.memory;
            }
        }
        total = total.add(amounts(spec.get("overhead")));
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn c(cpu: &str, mem: &str) -> Value {
        json!({"name": "c", "resources": {"requests": {"cpu": cpu, "memory": mem}}})
    }

    fn sidecar(cpu: &str, mem: &str) -> Value {
        let mut v = c(cpu, mem);
        v["restartPolicy"] = json!("Always");
        v
    }

    fn effective_of(containers: &[Value], init: &[Value], spec: Option<&Value>) -> Requests {
        let containers: Vec<Doc<'_>> = containers.iter().map(Doc::from).collect();
        let init: Vec<Doc<'_>> = init.iter().map(Doc::from).collect();
        effective(&containers, &init, spec.map(Doc::from).as_ref())
    }

    #[test]
    fn three_native_sidecars_add_to_the_app() {
        // The production guide's example: 3 x 100m sidecars + a 500m app = 800m.
        let init = [
            sidecar("100m", "0"),
            sidecar("100m", "0"),
            sidecar("100m", "0"),
        ];
        let r = effective_of(&[c("500m", "0")], &init, None);
        assert_eq!(Cpu(r.cpu).to_string(), "800m");
    }

    #[test]
    fn init_phase_peak_includes_earlier_sidecars() {
        let init = [sidecar("200m", "64Mi"), c("1", "128Mi")];
        let r = effective_of(&[c("100m", "32Mi")], &init, None);
        assert_eq!(r.to_string(), "cpu 1200m, memory 192Mi");
    }

    #[test]
    fn classic_init_takes_the_max_and_limits_default_requests() {
        let app = json!({"name": "a", "resources": {"limits": {"cpu": "2", "memory": "1Gi"}}});
        let r = effective_of(&[app], &[c("3", "10Mi")], None);
        assert_eq!(r.to_string(), "cpu 3, memory 1Gi");
    }

    #[test]
    fn an_explicit_zero_request_is_not_replaced_by_the_limit() {
        let app = json!({"name": "a", "resources": {
            "requests": {"cpu": "0"}, "limits": {"cpu": "2", "memory": "1Gi"}}});
        let r = effective_of(&[app], &[], None);
        assert_eq!(r.to_string(), "cpu 0, memory 1Gi");
    }

    #[test]
    fn overhead_is_added_and_pod_level_resources_replace_the_sum() {
        let spec = json!({"overhead": {"cpu": "250m", "memory": "120Mi"}});
        let r = effective_of(&[c("1", "1Gi")], &[], Some(&spec));
        assert_eq!(r.to_string(), "cpu 1250m, memory 1144Mi");
        let spec = json!({"resources": {"limits": {"cpu": "4"}}, "overhead": {"cpu": "1"}});
        let r = effective_of(&[c("1", "1Gi")], &[], Some(&spec));
        assert_eq!(r.to_string(), "cpu 5, memory 1Gi");
    }
}
