//! Publishing the Events the admission layer asks for, from a background task
//! so the admission path never waits on the API server.
//!
//! Anyone who reaches the webhook port can send a review (unless
//! `--client-ca-file` is set), so nothing in one is taken on trust: an Event
//! goes only on the pod's controller as it exists in the request's namespace
//! (read back, metadata only, and its uid compared with the reference), and
//! each namespace gets a bounded number of them, lookups included, so a
//! flood of forged reviews costs a bounded number of API calls. A
//! ReplicaSet is followed up to its Deployment and a Job up to its CronJob,
//! where users look.

use std::collections::HashMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{DaemonSet, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ObjectReference, ReplicationController};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Api, Client};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::Instrument;

use crate::admission::Notice;

/// Events waiting to be published; beyond this, new ones are dropped.
const QUEUE: usize = 256;
/// Owners remembered; the cache starts over when it is full.
const OWNERS_CACHED: usize = 4096;
/// Events (and the lookups they need) a namespace may cost at once...
const BURST: u32 = 10;
/// ...and how soon it earns one more: ten a minute once the burst is spent.
const REFILL: Duration = Duration::from_secs(6);
/// Namespaces whose budget is remembered; the table starts over when full.
const NAMESPACES_TRACKED: usize = 4096;

/// Starts the publisher; events beyond the queue are dropped, not waited for.
pub(super) fn start(client: Client, instance: Option<String>) -> mpsc::Sender<Notice> {
    let (tx, mut rx) = mpsc::channel::<Notice>(QUEUE);
    let reporter = Reporter {
        controller: "tandem".into(),
        instance,
    };
    let recorder = Recorder::new(client.clone(), reporter);
    let mut owners = OwnerCache::new(ApiOwners(client));
    let mut budget = Budget::default();
    tokio::spawn(
        async move {
            while let Some(n) = rx.recv().await {
                let namespace = n.regarding.namespace.clone().unwrap_or_default();
                if !budget.take(&namespace, Instant::now()) {
                    tracing::debug!(%namespace, "event budget spent; event dropped");
                    continue;
                }
                let Some(regarding) = owners.verified(n.regarding).await else {
                    continue;
                };
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

/// A token bucket per namespace: `BURST` at once, one more every `REFILL`.
#[derive(Default)]
pub(super) struct Budget {
    namespaces: HashMap<String, (u32, Instant)>,
}

impl Budget {
    /// Spends one of `namespace`'s tokens; false when it has none left.
    pub(super) fn take(&mut self, namespace: &str, now: Instant) -> bool {
        if self.namespaces.len() >= NAMESPACES_TRACKED && !self.namespaces.contains_key(namespace) {
            self.namespaces.clear();
        }
        let (tokens, since) = self
            .namespaces
            .entry(namespace.to_string())
            .or_insert((BURST, now));
        let earned = (now.duration_since(*since).as_secs_f64() / REFILL.as_secs_f64()) as u32;
        if earned > 0 {
            *tokens = (*tokens + earned).min(BURST);
            *since += REFILL * earned;
        }
        if *tokens == 0 {
            return false;
        }
        if *tokens == BURST {
            // A full bucket earns nothing while it waits.
            *since = now;
        }
        *tokens -= 1;
        true
    }
}

/// The kinds that control pods, which Tandem may read (metadata only), with
/// the kind worth following above them.
fn controller_kind(r: &ObjectReference) -> Option<(&'static str, Option<&'static str>)> {
    match (r.api_version.as_deref(), r.kind.as_deref()) {
        (Some("apps/v1"), Some("ReplicaSet")) => Some(("ReplicaSet", Some("Deployment"))),
        (Some("batch/v1"), Some("Job")) => Some(("Job", Some("CronJob"))),
        (Some("apps/v1"), Some("StatefulSet")) => Some(("StatefulSet", None)),
        (Some("apps/v1"), Some("DaemonSet")) => Some(("DaemonSet", None)),
        (Some("v1"), Some("ReplicationController")) => Some(("ReplicationController", None)),
        _ => None,
    }
}

/// Reads an object's metadata: `None` when it does not exist. Errors are
/// strings: they are only logged.
pub(super) trait Owners {
    async fn metadata(
        &self,
        kind: &str,
        namespace: &str,
        name: &str,
    ) -> Result<Option<ObjectMeta>, String>;
}

/// Owners read from the API server, metadata only.
struct ApiOwners(Client);

impl ApiOwners {
    async fn get<K>(&self, namespace: &str, name: &str) -> Result<Option<ObjectMeta>, String>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + std::fmt::Debug
            + serde::de::DeserializeOwned,
        K::DynamicType: Default,
    {
        match Api::<K>::namespaced(self.0.clone(), namespace)
            .get_metadata_opt(name)
            .await
        {
            Ok(found) => Ok(found.map(|m| m.metadata)),
            Err(e) => Err(e.to_string()),
        }
    }
}

impl Owners for ApiOwners {
    async fn metadata(
        &self,
        kind: &str,
        namespace: &str,
        name: &str,
    ) -> Result<Option<ObjectMeta>, String> {
        match kind {
            "ReplicaSet" => self.get::<ReplicaSet>(namespace, name).await,
            "Job" => self.get::<Job>(namespace, name).await,
            "StatefulSet" => self.get::<StatefulSet>(namespace, name).await,
            "DaemonSet" => self.get::<DaemonSet>(namespace, name).await,
            "ReplicationController" => self.get::<ReplicationController>(namespace, name).await,
            _ => Ok(None),
        }
    }
}

/// Verified controllers, and the top-level owners found for them, by the
/// reference they were found for.
pub(super) struct OwnerCache<O> {
    owners: O,
    known: HashMap<(String, String, String, String), ObjectReference>,
}

impl<O: Owners> OwnerCache<O> {
    pub(super) fn new(owners: O) -> OwnerCache<O> {
        OwnerCache {
            owners,
            known: HashMap::new(),
        }
    }

    /// Where the Event for a pod controlled by `r` goes: the Deployment
    /// above a ReplicaSet, the CronJob above a Job, else `r` itself. `None`
    /// when `r` is not a pod controller Tandem can read, does not exist in
    /// its namespace, has another uid, or cannot be read: no Event then.
    pub(super) async fn verified(&mut self, r: ObjectReference) -> Option<ObjectReference> {
        let (Some((kind, parent)), Some(namespace), Some(name)) =
            (controller_kind(&r), r.namespace.clone(), r.name.clone())
        else {
            tracing::debug!(kind = ?r.kind, name = ?r.name, "not a pod controller Tandem reads; no event");
            return None;
        };
        let uid = r.uid.clone().unwrap_or_default();
        let key = (kind.to_string(), namespace, name, uid);
        if let Some(top) = self.known.get(&key) {
            return Some(top.clone());
        }
        let (_, namespace, name, uid) = &key;
        let meta = match self.owners.metadata(kind, namespace, name).await {
            Ok(Some(meta)) => meta,
            Ok(None) => {
                tracing::debug!(kind, %namespace, %name, "the pod's controller does not exist; no event");
                return None;
            }
            Err(e) => {
                tracing::warn!(kind, %namespace, %name, error = %e, "cannot read the pod's controller (Tandem needs get on it); no event");
                return None;
            }
        };
        if !uid.is_empty() && meta.uid.as_deref() != Some(uid.as_str()) {
            tracing::debug!(kind, %namespace, %name, "the pod's controller has another uid; no event");
            return None;
        }
        let above = parent.and_then(|parent| {
            meta.owner_references
                .iter()
                .flatten()
                .find(|o| o.controller == Some(true) && o.kind == parent)
        });
        let top = match above {
            Some(o) => ObjectReference {
                api_version: Some(o.api_version.clone()),
                kind: Some(o.kind.clone()),
                name: Some(o.name.clone()),
                namespace: Some(namespace.clone()),
                uid: Some(o.uid.clone()),
                ..ObjectReference::default()
            },
            None => ObjectReference {
                uid: meta.uid.clone(),
                ..r
            },
        };
        if self.known.len() >= OWNERS_CACHED {
            self.known.clear();
        }
        self.known.insert(key, top.clone());
        Some(top)
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

    use super::*;

    /// A ReplicaSet `web-1` owned by Deployment `web`, a Job `report-29`
    /// owned by CronJob `report`, a ReplicaSet nobody owns, a StatefulSet,
    /// and a ReplicaSet Tandem may not read. Every object's uid is its name.
    struct Fake {
        calls: Cell<usize>,
    }

    impl Owners for Fake {
        async fn metadata(
            &self,
            kind: &str,
            _namespace: &str,
            name: &str,
        ) -> Result<Option<ObjectMeta>, String> {
            self.calls.set(self.calls.get() + 1);
            let meta = |owner: Option<(&str, &str, &str)>| ObjectMeta {
                name: Some(name.into()),
                uid: Some(name.into()),
                owner_references: owner.map(|(api, kind, name)| {
                    vec![OwnerReference {
                        api_version: api.into(),
                        kind: kind.into(),
                        name: name.into(),
                        uid: format!("{name}-uid"),
                        controller: Some(true),
                        ..OwnerReference::default()
                    }]
                }),
                ..ObjectMeta::default()
            };
            match (kind, name) {
                ("ReplicaSet", "web-1") => Ok(Some(meta(Some(("apps/v1", "Deployment", "web"))))),
                ("Job", "report-29") => Ok(Some(meta(Some(("batch/v1", "CronJob", "report"))))),
                ("ReplicaSet", "orphan") | ("StatefulSet", "db") => Ok(Some(meta(None))),
                ("ReplicaSet", "forbidden") => Err("403 Forbidden".into()),
                _ => Ok(None),
            }
        }
    }

    fn reference(api: &str, kind: &str, name: &str, uid: Option<&str>) -> ObjectReference {
        ObjectReference {
            api_version: Some(api.into()),
            kind: Some(kind.into()),
            name: Some(name.into()),
            namespace: Some("shop".into()),
            uid: uid.map(str::to_string),
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
    fn events_go_to_the_top_level_owner_of_a_controller_that_exists() {
        let mut cache = OwnerCache::new(Fake {
            calls: Cell::new(0),
        });
        run(async {
            let name_of = |r: Option<ObjectReference>| {
                r.map(|r| (r.kind.unwrap_or_default(), r.name.unwrap_or_default()))
            };
            let top = cache
                .verified(reference("apps/v1", "ReplicaSet", "web-1", Some("web-1")))
                .await;
            assert_eq!(name_of(top), Some(("Deployment".into(), "web".into())));
            let top = cache
                .verified(reference("batch/v1", "Job", "report-29", None))
                .await;
            assert_eq!(name_of(top), Some(("CronJob".into(), "report".into())));
            // Controllers with nothing worth following above: themselves.
            for (api, kind, name) in [
                ("apps/v1", "ReplicaSet", "orphan"),
                ("apps/v1", "StatefulSet", "db"),
            ] {
                let top = cache.verified(reference(api, kind, name, None)).await;
                assert_eq!(name_of(top), Some((kind.into(), name.into())));
            }
            // No Event: a controller that does not exist, one with another
            // uid (a forged reference), one Tandem cannot read, and what is
            // not a pod controller at all.
            for r in [
                reference("apps/v1", "ReplicaSet", "forged", None),
                reference("apps/v1", "ReplicaSet", "web-1", Some("not-web-1")),
                reference("apps/v1", "ReplicaSet", "forbidden", None),
                reference("v1", "Pod", "debug", None),
                reference("v1", "ConfigMap", "web-1", None),
            ] {
                assert_eq!(cache.verified(r.clone()).await, None, "{r:?}");
            }
            let calls = cache.owners.calls.get();
            cache
                .verified(reference("apps/v1", "ReplicaSet", "web-1", Some("web-1")))
                .await;
            assert_eq!(
                cache.owners.calls.get(),
                calls,
                "a verified owner is not asked again"
            );
            cache
                .verified(reference("apps/v1", "ReplicaSet", "forbidden", None))
                .await;
            assert_eq!(
                cache.owners.calls.get(),
                calls + 1,
                "a failed read is retried next time"
            );
        });
    }

    #[test]
    fn each_namespace_gets_a_burst_then_one_event_per_refill() {
        let mut budget = Budget::default();
        let start = Instant::now();
        for _ in 0..BURST {
            assert!(budget.take("flooded", start));
        }
        assert!(!budget.take("flooded", start), "the burst is spent");
        assert!(
            budget.take("quiet", start),
            "other namespaces are unaffected"
        );
        assert!(!budget.take("flooded", start + REFILL / 2));
        assert!(budget.take("flooded", start + REFILL));
        assert!(!budget.take("flooded", start + REFILL));
        // A long pause refills the bucket, never beyond the burst.
        let later = start + REFILL * 100;
        for _ in 0..BURST {
            assert!(budget.take("flooded", later));
        }
        assert!(!budget.take("flooded", later));
    }
}
