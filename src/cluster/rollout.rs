//! Restarting a workload the way `kubectl rollout restart` does (a new
//! `kubectl.kubernetes.io/restartedAt` on its pod template), and reading
//! whether its rollout finished the way `kubectl rollout status` does.

use kube::api::{ApiResource, DynamicObject, Patch, PatchParams};
use kube::{Api, Client};
use serde_json::{Value, json};

use super::Workload;

/// The pod template annotation `kubectl rollout restart` sets.
pub const RESTARTED_AT_ANNOTATION: &str = "kubectl.kubernetes.io/restartedAt";

/// The kinds a restart rolls forward, as (kind, plural); everything else is
/// listed with the reason it is not restarted.
const RESTARTABLE: [(&str, &str); 3] = [
    ("Deployment", "deployments"),
    ("StatefulSet", "statefulsets"),
    ("DaemonSet", "daemonsets"),
];

/// Why a workload is not restarted at all: the plan lists it with this.
pub fn not_restartable(w: &Workload) -> Option<&'static str> {
    if RESTARTABLE.iter().any(|(k, _)| *k == w.kind) {
        return None;
    }
    Some(match w.kind.as_str() {
        "Pod" => {
            "a bare pod: nothing recreates it, so it is never deleted; delete it yourself when it may go"
        }
        "CronJob" => "a CronJob: its next Job's pods get the current templates",
        "Job" => "a Job runs to completion: its next run gets the current templates",
        "ReplicaSet" => {
            "a ReplicaSet without a Deployment: scale it down and up, or delete its pods"
        }
        _ => "kubectl rollout restart does not restart this kind",
    })
}

#[derive(Debug, thiserror::Error)]
pub enum RolloutError {
    /// The user may not do this: the message names the RBAC it would need.
    #[error(
        "forbidden to {verb} {resource}.apps in namespace {namespace}; needs get and patch on {resource}.apps there"
    )]
    Forbidden {
        verb: &'static str,
        resource: &'static str,
        namespace: String,
    },
    #[error("{0} no longer exists")]
    NotFound(String),
    #[error("{what}: {source}")]
    Api {
        what: String,
        #[source]
        source: kube::Error,
    },
}

/// Where a workload's rollout stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Progress {
    /// Every replica runs the current pod template.
    Done,
    /// Still rolling out: what it waits for.
    Waiting(String),
    /// The rollout cannot finish as it is (a deadline exceeded).
    Failed(String),
    /// Never rolls by itself: a paused Deployment, an `OnDelete` strategy.
    Held(String),
}

fn resource(w: &Workload) -> (&'static str, ApiResource) {
    let (kind, plural) = RESTARTABLE
        .iter()
        .find(|(k, _)| *k == w.kind)
        .copied()
        .unwrap_or(("Deployment", "deployments"));
    (
        plural,
        ApiResource {
            group: "apps".into(),
            version: "v1".into(),
            api_version: "apps/v1".into(),
            kind: kind.into(),
            plural: plural.into(),
        },
    )
}

fn error(w: &Workload, verb: &'static str, plural: &'static str, e: kube::Error) -> RolloutError {
    match &e {
        kube::Error::Api(s) if s.code == 403 => RolloutError::Forbidden {
            verb,
            resource: plural,
            namespace: w.namespace.clone(),
        },
        kube::Error::Api(s) if s.code == 404 => RolloutError::NotFound(w.to_string()),
        _ => RolloutError::Api {
            what: format!("{verb} {w}"),
            source: e,
        },
    }
}

/// Reads the workload and where its rollout stands.
pub async fn progress(client: &Client, w: &Workload) -> Result<Progress, RolloutError> {
    let (plural, ar) = resource(w);
    let api = Api::<DynamicObject>::namespaced_with(client.clone(), &w.namespace, &ar);
    let obj = api
        .get(&w.name)
        .await
        .map_err(|e| error(w, "get", plural, e))?;
    let doc = serde_json::to_value(&obj).unwrap_or_default();
    Ok(progress_of(&w.kind, &doc))
}

/// Restarts the workload: its pods are replaced under its own strategy.
pub async fn restart(client: &Client, w: &Workload, at: &str) -> Result<(), RolloutError> {
    let (plural, ar) = resource(w);
    let api = Api::<DynamicObject>::namespaced_with(client.clone(), &w.namespace, &ar);
    let patch = json!({
        "spec": { "template": { "metadata": { "annotations": { RESTARTED_AT_ANNOTATION: at } } } }
    });
    api.patch(&w.name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map(|_| ())
        .map_err(|e| error(w, "patch", plural, e))
}

fn int(v: &Value, pointer: &str) -> i64 {
    v.pointer(pointer).and_then(Value::as_i64).unwrap_or(0)
}

/// `kubectl rollout status`'s reading of a Deployment, StatefulSet or
/// DaemonSet.
pub(super) fn progress_of(kind: &str, o: &Value) -> Progress {
    let generation = int(o, "/metadata/generation");
    let observed = int(o, "/status/observedGeneration");
    let strategy = o
        .pointer("/spec/updateStrategy/type")
        .and_then(Value::as_str);
    if kind == "Deployment" && o.pointer("/spec/paused") == Some(&Value::Bool(true)) {
        return Progress::Held("paused; `kubectl rollout resume` it first".into());
    }
    if kind != "Deployment" && strategy == Some("OnDelete") {
        return Progress::Held(
            "updateStrategy OnDelete: its pods are replaced only when deleted".into(),
        );
    }
    if observed < generation {
        return Progress::Waiting("the controller has not yet seen the change".into());
    }
    let replicas = o
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    match kind {
        "Deployment" => {
            let deadline = o
                .pointer("/status/conditions")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "Progressing" && c["reason"] == "ProgressDeadlineExceeded");
            if deadline {
                return Progress::Failed("progress deadline exceeded".into());
            }
            let updated = int(o, "/status/updatedReplicas");
            let total = int(o, "/status/replicas");
            let available = int(o, "/status/availableReplicas");
            if updated < replicas {
                Progress::Waiting(format!("{updated} of {replicas} replicas updated"))
            } else if total > updated {
                Progress::Waiting(format!(
                    "{} old replicas pending termination",
                    total - updated
                ))
            } else if available < updated {
                Progress::Waiting(format!(
                    "{available} of {updated} updated replicas available"
                ))
            } else {
                Progress::Done
            }
        }
        "DaemonSet" => {
            let desired = int(o, "/status/desiredNumberScheduled");
            let updated = int(o, "/status/updatedNumberScheduled");
            let available = int(o, "/status/numberAvailable");
            if updated < desired {
                Progress::Waiting(format!("{updated} of {desired} pods updated"))
            } else if available < desired {
                Progress::Waiting(format!("{available} of {desired} updated pods available"))
            } else {
                Progress::Done
            }
        }
        _ => {
            let ready = int(o, "/status/readyReplicas");
            if ready < replicas {
                return Progress::Waiting(format!("{ready} of {replicas} pods ready"));
            }
            if let Some(partition) = o
                .pointer("/spec/updateStrategy/rollingUpdate/partition")
                .and_then(Value::as_i64)
            {
                let updated = int(o, "/status/updatedReplicas");
                let want = replicas - partition;
                return if updated < want {
                    Progress::Waiting(format!("{updated} of {want} pods updated"))
                } else {
                    Progress::Done
                };
            }
            let revision = |k: &str| o.pointer(&format!("/status/{k}")).and_then(Value::as_str);
            if revision("updateRevision") != revision("currentRevision") {
                Progress::Waiting(format!(
                    "{} of {replicas} pods updated",
                    int(o, "/status/updatedReplicas")
                ))
            } else {
                Progress::Done
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deployments_are_read_as_kubectl_reads_them() {
        let d = |spec: Value, status: Value| {
            progress_of(
                "Deployment",
                &json!({ "metadata": { "generation": 2 }, "spec": spec, "status": status }),
            )
        };
        let done = json!({ "observedGeneration": 2, "replicas": 3, "updatedReplicas": 3, "availableReplicas": 3 });
        assert_eq!(d(json!({ "replicas": 3 }), done.clone()), Progress::Done);
        let mut stale = done.clone();
        stale["observedGeneration"] = json!(1);
        assert!(matches!(
            d(json!({ "replicas": 3 }), stale),
            Progress::Waiting(_)
        ));
        let mut old = done.clone();
        old["replicas"] = json!(4);
        assert_eq!(
            d(json!({ "replicas": 3 }), old),
            Progress::Waiting("1 old replicas pending termination".into())
        );
        assert!(matches!(
            d(json!({ "replicas": 3, "paused": true }), done.clone()),
            Progress::Held(_)
        ));
        let mut deadline = done;
        deadline["conditions"] =
            json!([{ "type": "Progressing", "reason": "ProgressDeadlineExceeded" }]);
        assert!(matches!(
            d(json!({ "replicas": 3 }), deadline),
            Progress::Failed(_)
        ));
    }

    #[test]
    fn statefulsets_and_daemonsets() {
        let sts = |status: Value, strategy: Value| {
            progress_of(
                "StatefulSet",
                &json!({ "metadata": { "generation": 1 }, "spec": { "replicas": 2, "updateStrategy": strategy }, "status": status }),
            )
        };
        let rolling = json!({ "type": "RollingUpdate" });
        let base = json!({ "observedGeneration": 1, "readyReplicas": 2, "updatedReplicas": 2, "currentRevision": "a", "updateRevision": "a" });
        assert_eq!(sts(base.clone(), rolling.clone()), Progress::Done);
        let mut moving = base.clone();
        moving["updateRevision"] = json!("b");
        assert!(matches!(sts(moving, rolling), Progress::Waiting(_)));
        assert!(matches!(
            sts(base, json!({ "type": "OnDelete" })),
            Progress::Held(_)
        ));
        let ds = progress_of(
            "DaemonSet",
            &json!({ "metadata": { "generation": 1 }, "status": { "observedGeneration": 1, "desiredNumberScheduled": 3, "updatedNumberScheduled": 2, "numberAvailable": 3 } }),
        );
        assert_eq!(ds, Progress::Waiting("2 of 3 pods updated".into()));
    }
}
