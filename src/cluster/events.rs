//! Publishing the Events the admission layer asks for, from a background task
//! so the admission path never waits on the API server. A pod's Event goes
//! where users look: the admission layer points it at the pod's controller,
//! and here a ReplicaSet is followed up to its Deployment and a Job up to its
//! CronJob (one metadata GET each, cached), falling back to the controller
//! itself when the owner cannot be read.

use std::collections::HashMap;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Api, Client};
use tokio::sync::mpsc;
use tracing::Instrument;

use crate::admission::Notice;

/// Events waiting to be published; beyond this, new ones are dropped.
const QUEUE: usize = 256;
/// Owners remembered; the cache starts over when it is full.
const OWNERS_CACHED: usize = 4096;

/// Starts the publisher; events beyond the queue are dropped, not waited for.
pub(super) fn start(client: Client, instance: Option<String>) -> mpsc::Sender<Notice> {
    let (tx, mut rx) = mpsc::channel::<Notice>(QUEUE);
    let reporter = Reporter {
        controller: "tandem".into(),
        instance,
    };
    let recorder = Recorder::new(client.clone(), reporter);
    let mut owners = OwnerCache::new(ApiOwners(client));
    tokio::spawn(
        async move {
            while let Some(n) = rx.recv().await {
                let regarding = owners.top(n.regarding).await;
                let event = Event {
                    type_: EventType::Warning,
                    reason: n.reason.into(),
                    note: Some(n.note.chars().take(1000).collect()),
                    action: "Inject".into(),
                    secondary: None,
                };
                if let Err(e) = recorder.publish(&event, &regarding).await {
                    tracing::warn!(error = %e, "could not publish an event");
                }
            }
        }
        .instrument(tracing::info_span!("events")),
    );
    tx
}

/// The kinds whose controller is worth following, with the kind expected above.
fn owned_kind(r: &ObjectReference) -> Option<(&'static str, &'static str)> {
    match (r.api_version.as_deref(), r.kind.as_deref()) {
        (Some("apps/v1"), Some("ReplicaSet")) => Some(("ReplicaSet", "Deployment")),
        (Some("batch/v1"), Some("Job")) => Some(("Job", "CronJob")),
        _ => None,
    }
}

/// Reads an object's controller. Errors are strings: they are only logged.
pub(super) trait Owners {
    async fn controller(
        &self,
        kind: &str,
        namespace: &str,
        name: &str,
    ) -> Result<Option<ObjectReference>, String>;
}

/// Owners read from the API server, metadata only.
struct ApiOwners(Client);

impl Owners for ApiOwners {
    async fn controller(
        &self,
        kind: &str,
        namespace: &str,
        name: &str,
    ) -> Result<Option<ObjectReference>, String> {
        let meta = match kind {
            "ReplicaSet" => Api::<ReplicaSet>::namespaced(self.0.clone(), namespace)
                .get_metadata(name)
                .await
                .map(|m| m.metadata),
            "Job" => Api::<Job>::namespaced(self.0.clone(), namespace)
                .get_metadata(name)
                .await
                .map(|m| m.metadata),
            _ => return Ok(None),
        }
        .map_err(|e| e.to_string())?;
        let controller = meta
            .owner_references
            .into_iter()
            .flatten()
            .find(|o| o.controller == Some(true));
        Ok(controller.map(|o| ObjectReference {
            api_version: Some(o.api_version),
            kind: Some(o.kind),
            name: Some(o.name),
            namespace: Some(namespace.to_string()),
            uid: Some(o.uid),
            ..ObjectReference::default()
        }))
    }
}

/// Top-level owners already looked up, by the reference they were found for.
pub(super) struct OwnerCache<O> {
    owners: O,
    known: HashMap<(String, String, String), ObjectReference>,
}

impl<O: Owners> OwnerCache<O> {
    pub(super) fn new(owners: O) -> OwnerCache<O> {
        OwnerCache {
            owners,
            known: HashMap::new(),
        }
    }

    /// The Deployment above a ReplicaSet, the CronJob above a Job; `r`
    /// itself when it is neither, has no such owner, or cannot be read.
    pub(super) async fn top(&mut self, r: ObjectReference) -> ObjectReference {
        let Some((kind, parent)) = owned_kind(&r) else {
            return r;
        };
        let (Some(namespace), Some(name)) = (r.namespace.clone(), r.name.clone()) else {
            return r;
        };
        let key = (kind.to_string(), namespace, name);
        if let Some(top) = self.known.get(&key) {
            return top.clone();
        }
        let top = match self.owners.controller(kind, &key.1, &key.2).await {
            Ok(Some(owner)) if owner.kind.as_deref() == Some(parent) => owner,
            Ok(_) => r,
            Err(e) => {
                tracing::warn!(kind, namespace = %key.1, name = %key.2, error = %e, "cannot read the owner; the Event goes on the {kind}");
                return r;
            }
        };
        if self.known.len() >= OWNERS_CACHED {
            self.known.clear();
        }
        self.known.insert(key, top.clone());
        top
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    /// A ReplicaSet `web-1` owned by Deployment `web`, a Job `report-29` owned
    /// by CronJob `report`, a ReplicaSet nobody owns, and one unreadable.
    struct Fake {
        calls: Cell<usize>,
    }

    impl Owners for Fake {
        async fn controller(
            &self,
            kind: &str,
            namespace: &str,
            name: &str,
        ) -> Result<Option<ObjectReference>, String> {
            self.calls.set(self.calls.get() + 1);
            let owner = |api: &str, kind: &str, name: &str| ObjectReference {
                api_version: Some(api.into()),
                kind: Some(kind.into()),
                name: Some(name.into()),
                namespace: Some(namespace.into()),
                uid: Some("u".into()),
                ..ObjectReference::default()
            };
            match (kind, name) {
                ("ReplicaSet", "web-1") => Ok(Some(owner("apps/v1", "Deployment", "web"))),
                ("Job", "report-29") => Ok(Some(owner("batch/v1", "CronJob", "report"))),
                ("ReplicaSet", "forbidden") => Err("403 Forbidden".into()),
                _ => Ok(None),
            }
        }
    }

    fn reference(api: &str, kind: &str, name: &str) -> ObjectReference {
        ObjectReference {
            api_version: Some(api.into()),
            kind: Some(kind.into()),
            name: Some(name.into()),
            namespace: Some("shop".into()),
            ..ObjectReference::default()
        }
    }

    fn run<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn events_go_to_the_top_level_owner_or_stay_on_the_controller() {
        let mut cache = OwnerCache::new(Fake {
            calls: Cell::new(0),
        });
        run(async {
            let top = cache.top(reference("apps/v1", "ReplicaSet", "web-1")).await;
            assert_eq!(
                (top.kind.as_deref(), top.name.as_deref()),
                (Some("Deployment"), Some("web"))
            );
            let top = cache.top(reference("batch/v1", "Job", "report-29")).await;
            assert_eq!(
                (top.kind.as_deref(), top.name.as_deref()),
                (Some("CronJob"), Some("report"))
            );
            // No owner, an unreadable owner, a kind not followed: unchanged.
            for r in [
                reference("apps/v1", "ReplicaSet", "orphan"),
                reference("apps/v1", "ReplicaSet", "forbidden"),
                reference("apps/v1", "StatefulSet", "db"),
                reference("v1", "Pod", "debug"),
            ] {
                assert_eq!(cache.top(r.clone()).await, r);
            }
            let calls = cache.owners.calls.get();
            cache.top(reference("apps/v1", "ReplicaSet", "web-1")).await;
            assert_eq!(
                cache.owners.calls.get(),
                calls,
                "a known owner is not asked again"
            );
            cache
                .top(reference("apps/v1", "ReplicaSet", "forbidden"))
                .await;
            assert_eq!(
                cache.owners.calls.get(),
                calls + 1,
                "a failed read is retried next time"
            );
        });
    }
}
