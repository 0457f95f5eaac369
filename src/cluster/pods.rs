//! The injected pods of the cluster, for day 2: a metadata-only watch
//! selected by `tandem.dev/injected=true` (finished pods left out), kept as
//! little more than each pod's status text and parameter annotations, and
//! counted against the templates in force when they or the pods change, and
//! every [`RECOUNT`] (a namespace's parameter defaults may change). The
//! counts go to the sink (metrics) and into each SidecarTemplate's status
//! (`injectedPods`, `upToDatePods`), written only when they change. A failing watch makes the counts unknown; admission
//! never waits on it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ApiResource, DynamicObject, Patch, PatchParams};
use kube::core::PartialObjectMeta;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use tracing::Instrument;

use super::Sink;
use super::problem::{CappedBackoff, WatchProblem, Watched};
use crate::engine::{Drift, State, carried};
use crate::facts::{INJECTED_LABEL, Namespace, STATUS_ANNOTATION, UNFINISHED_PODS};
use crate::template::{Scope, SidecarTemplate, Template, TemplateSet};

/// How often SidecarTemplate statuses may be written with new counts.
pub const RECOUNT: Duration = Duration::from_secs(10);
/// How often changes are looked for and the metric recounted.
const TICK: Duration = Duration::from_secs(1);
/// How long a written count is trusted to still be in the object.
const REWRITE: Duration = Duration::from_secs(300);

/// Injected pods by template and state, as the metric exports them.
pub type PodCounts = BTreeMap<(String, State), u64>;

/// What one injected pod carries: its namespace, `tandem.dev/status` text
/// and parameter annotations (see [`parameter_text`]; usually empty), all
/// interned (a Deployment's pods share them).
struct Carried {
    namespace: Arc<str>,
    status: Arc<str>,
    parameters: Arc<str>,
}

/// The pod's `<template>.tandem.dev/<parameter>` annotations as a JSON
/// object (empty text when it has none): one interned text per distinct
/// set, whatever the values hold.
fn parameter_text(annotations: Option<&BTreeMap<String, String>>) -> String {
    let set: BTreeMap<&String, &String> = annotations
        .into_iter()
        .flatten()
        .filter(|(k, _)| k.contains(".tandem.dev/"))
        .collect();
    if set.is_empty() {
        return String::new();
    }
    serde_json::to_string(&set).unwrap_or_default()
}

/// The SidecarTemplate object `t` came from, `None` for a `--config`
/// file's: a template in `own_namespace` is cluster-wide.
fn object_key(t: &Template, own_namespace: &str) -> Option<ObjectKey> {
    if !t.source.starts_with("cluster:") {
        return None;
    }
    let namespace = match &t.scope {
        Scope::Cluster => own_namespace.to_string(),
        Scope::Namespace(ns) => ns.clone(),
    };
    Some((namespace, t.name.clone()))
}

/// The injected pods, by uid.
#[derive(Default)]
struct Index {
    pods: HashMap<String, Carried>,
    strings: HashSet<Arc<str>>,
    /// Changed since the last count.
    dirty: bool,
    /// False while the watch fails: the counts are unknown.
    healthy: bool,
    /// A first full list arrived: before it, no count means anything.
    listed: bool,
    /// Deletions since the interned texts were last compacted.
    deleted: usize,
}

impl Index {
    fn intern(&mut self, s: &str) -> Arc<str> {
        if let Some(found) = self.strings.get(s) {
            return found.clone();
        }
        let s: Arc<str> = Arc::from(s);
        self.strings.insert(s.clone());
        s
    }

    fn apply(&mut self, pod: &PartialObjectMeta<Pod>) {
        let meta = &pod.metadata;
        let (Some(uid), Some(namespace)) = (&meta.uid, &meta.namespace) else {
            return;
        };
        let status = meta
            .annotations
            .as_ref()
            .and_then(|a| a.get(STATUS_ANNOTATION))
            .map(String::as_str)
            .unwrap_or_default();
        let parameters = parameter_text(meta.annotations.as_ref());
        let carried = Carried {
            namespace: self.intern(namespace),
            status: self.intern(status),
            parameters: self.intern(&parameters),
        };
        if self.pods.insert(uid.clone(), carried).is_some() {
            // What the replaced entry held may now be unused.
            self.deleted += 1;
        }
        self.dirty = true;
    }

    fn delete(&mut self, pod: &PartialObjectMeta<Pod>) {
        if let Some(uid) = &pod.metadata.uid {
            self.forget(uid);
        }
    }

    /// Drops interned texts no pod holds any more.
    fn compact(&mut self) {
        self.strings.retain(|s| Arc::strong_count(s) > 1);
    }

    /// Forgets a deleted pod; its texts go at the next compaction.
    fn forget(&mut self, uid: &str) {
        if self.pods.remove(uid).is_some() {
            self.dirty = true;
            self.deleted += 1;
            // Compacting costs a pass over the texts: once per many deletions.
            if self.deleted > 1000 {
                self.compact();
                self.deleted = 0;
            }
        }
    }
}

/// A SidecarTemplate object: (namespace, name).
type ObjectKey = (String, String);
/// Its pods: (injected, up to date).
type ObjectCount = (u64, u64);

/// The counts: per template name and state for the metric, and per
/// SidecarTemplate object.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Counts {
    pub by_template: PodCounts,
    pub by_object: BTreeMap<ObjectKey, ObjectCount>,
}

/// One pod as counted: namespace, status text, parameter annotations.
type Counted<'a> = (&'a str, &'a str, &'a str);

/// Counts `pods` against `templates`, with the namespaces' facts from
/// `namespace` (their parameter defaults); a template object in
/// `own_namespace` serves every namespace.
fn count<'a>(
    pods: impl Iterator<Item = Counted<'a>>,
    templates: &TemplateSet,
    own_namespace: &str,
    namespace_facts: &dyn Fn(&str) -> Namespace,
) -> Counts {
    let mut counts = Counts::default();
    // Each distinct (namespace, status, parameters) is judged once.
    let mut seen: HashMap<Counted<'a>, u64> = HashMap::new();
    for key in pods {
        *seen.entry(key).or_default() += 1;
    }
    for ((namespace, status, parameters), n) in seen {
        let facts = namespace_facts(namespace);
        let parameters: BTreeMap<String, String> = if parameters.is_empty() {
            BTreeMap::new()
        } else {
            serde_json::from_str(parameters).unwrap_or_default()
        };
        let annotation = |key: &str| parameters.get(key).map(String::as_str);
        let Drift::Templates(list) = carried(status, annotation, &facts, templates) else {
            continue;
        };
        for (name, state) in list {
            // The metric's states are the contract's two: a refused pod does
            // not run the template as it is now ("outdated"; `tandem status`
            // tells it apart, and rollout never restarts it).
            let shown = match state {
                State::Refused => State::Outdated,
                s => s,
            };
            *counts.by_template.entry((name.clone(), shown)).or_default() += n;
            let Some(key) = templates
                .lookup(namespace, &name)
                .and_then(|t| object_key(t, own_namespace))
            else {
                continue;
            };
            let entry = counts.by_object.entry(key).or_default();
            entry.0 += n;
            if state == State::Current {
                entry.1 += n;
            }
        }
    }
    // Every template object in force gets a count, zero included.
    for key in templates.all().filter_map(|t| object_key(t, own_namespace)) {
        counts.by_object.entry(key).or_default();
    }
    counts
}

/// Starts the watch and the counting.
pub(super) fn watch_pods(client: Client, sink: Arc<dyn Sink>, own_namespace: String) {
    let index = Arc::new(Mutex::new(Index {
        healthy: true,
        ..Index::default()
    }));
    // Metadata only: the status annotation is all that is kept.
    let api = Api::<PartialObjectMeta<Pod>>::all(client.clone());
    let config = watcher::Config::default()
        .labels(&format!("{INJECTED_LABEL}=true"))
        .fields(UNFINISHED_PODS)
        .page_size(500);
    let stream = watcher(api, config).backoff(CappedBackoff::new());
    let writer = index.clone();
    let health_sink = sink.clone();
    tokio::spawn(
        async move {
            let mut stream = std::pin::pin!(stream);
            // A relist is gathered apart (as compact as the index) and
            // replaces what was known once it is whole.
            let mut relist: Option<Index> = None;
            while let Some(event) = stream.next().await {
                let mut index = writer.lock().unwrap_or_else(|p| p.into_inner());
                match event {
                    Ok(watcher::Event::Init) => relist = Some(Index::default()),
                    Ok(watcher::Event::InitApply(pod)) => {
                        if let Some(fresh) = relist.as_mut() {
                            fresh.apply(&pod);
                        }
                    }
                    Ok(watcher::Event::InitDone) => {
                        let fresh = relist.take().unwrap_or_default();
                        index.pods = fresh.pods;
                        index.strings = fresh.strings;
                        index.dirty = true;
                        index.listed = true;
                        if !index.healthy {
                            index.healthy = true;
                            tracing::info!(resource = "pods", "watch works again");
                            health_sink.watch_recovered("pods");
                        }
                    }
                    Ok(watcher::Event::Apply(pod)) => index.apply(&pod),
                    Ok(watcher::Event::Delete(pod)) => index.delete(&pod),
                    Err(e) => {
                        let problem = WatchProblem::of(Watched::Pods, &e);
                        tracing::error!(
                            resource = "pods",
                            reason = problem.reason,
                            "{}; injected pod counts are unknown until it works again (admission is unaffected)",
                            problem.message
                        );
                        health_sink.watch_failed("pods", &problem);
                        index.healthy = false;
                        index.dirty = true;
                    }
                }
            }
        }
        .instrument(tracing::info_span!("watch", resource = "pods")),
    );
    tokio::spawn(
        recount(client, sink, index, own_namespace).instrument(tracing::info_span!("pod-counts")),
    );
}

/// Counts again, at most every [`TICK`], when the pods or the templates
/// changed (the metric follows at once); writes the statuses whose counts
/// changed, at most every [`RECOUNT`]. Nothing is counted before the
/// templates are known: every pod would look outdated.
async fn recount(
    client: Client,
    sink: Arc<dyn Sink>,
    index: Arc<Mutex<Index>>,
    own_namespace: String,
) {
    let resource = ApiResource::erase::<SidecarTemplate>(&());
    let mut written: BTreeMap<ObjectKey, Option<ObjectCount>> = BTreeMap::new();
    let mut last_templates: Option<Arc<TemplateSet>> = None;
    let mut last_write: Option<Instant> = None;
    let mut unwritten: Option<Option<Counts>> = None;
    let mut last_count = Instant::now();
    let mut last_reset = Instant::now();
    loop {
        tokio::time::sleep(TICK).await;
        // What was written is forgotten now and then, so a status someone
        // else changed (or an object deleted and made again) is put right.
        if last_reset.elapsed() >= REWRITE {
            written.clear();
            last_reset = Instant::now();
        }
        let Some(templates) = sink.templates_in_force() else {
            continue;
        };
        {
            let mut index = index.lock().unwrap_or_else(|p| p.into_inner());
            let same_templates = last_templates
                .as_ref()
                .is_some_and(|t| Arc::ptr_eq(t, &templates));
            let meaningful = index.listed || !index.healthy;
            // Also every RECOUNT: a namespace's parameter defaults may have
            // changed, which no pod event says.
            let due = last_count.elapsed() >= RECOUNT;
            if meaningful && (index.dirty || !same_templates || due) {
                index.dirty = false;
                last_count = Instant::now();
                let counts = index.healthy.then(|| {
                    let pods = index.pods.values().map(|c| {
                        (
                            c.namespace.as_ref(),
                            c.status.as_ref(),
                            c.parameters.as_ref(),
                        )
                    });
                    count(pods, &templates, &own_namespace, &|ns| sink.namespace(ns))
                });
                sink.injected_pods(counts.as_ref().map(|c| &c.by_template));
                unwritten = Some(counts);
            }
        }
        last_templates = Some(templates);
        if last_write.is_some_and(|t| t.elapsed() < RECOUNT) {
            continue;
        }
        let Some(counts) = unwritten.take() else {
            continue;
        };
        last_write = Some(Instant::now());
        // Unknown counts are written as absent: an empty printer column,
        // not a stale number.
        let wanted: Vec<(ObjectKey, Option<ObjectCount>)> = match counts {
            Some(c) => c.by_object.into_iter().map(|(k, v)| (k, Some(v))).collect(),
            None => written.keys().map(|k| (k.clone(), None)).collect(),
        };
        // Objects no longer in force are not written to again.
        written.retain(|k, _| wanted.iter().any(|(w, _)| w == k));
        for (key, value) in wanted {
            if written.get(&key) == Some(&value) {
                continue;
            }
            let (namespace, name) = &key;
            let api = Api::<DynamicObject>::namespaced_with(client.clone(), namespace, &resource);
            let status = match value {
                Some((injected, current)) => {
                    serde_json::json!({ "injectedPods": injected, "upToDatePods": current })
                }
                None => serde_json::json!({ "injectedPods": null, "upToDatePods": null }),
            };
            let patch = serde_json::json!({ "status": status });
            match api
                .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => {
                    written.insert(key, value);
                }
                Err(e) => {
                    tracing::warn!(%namespace, %name, error = %e, "could not write the pod counts into the SidecarTemplate status");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::{self, Template};

    fn set(templates: &[(&str, Scope)]) -> TemplateSet {
        let mut set = TemplateSet::default();
        for (name, scope) in templates {
            let mut t: Template = template::examples()
                .unwrap()
                .into_iter()
                .find(|t| t.name == "log-shipper")
                .unwrap();
            t.name = name.to_string();
            t.scope = scope.clone();
            t.source = format!("cluster:{name}");
            t.hash = format!("hash-{name}");
            set.insert(Arc::new(t)).unwrap();
        }
        set
    }

    fn status(pairs: &[(&str, &str)]) -> String {
        let list: Vec<_> = pairs
            .iter()
            .map(|(n, h)| serde_json::json!({ "name": n, "hash": h }))
            .collect();
        serde_json::json!({ "templates": list }).to_string()
    }

    #[test]
    fn pods_are_counted_per_template_and_per_object() {
        let templates = set(&[
            ("shipper", Scope::Cluster),
            ("proxy", Scope::Namespace("shop".into())),
        ]);
        let current = status(&[("shipper", "hash-shipper"), ("proxy", "hash-proxy")]);
        let old = status(&[("shipper", "old")]);
        let gone = status(&[("removed", "x")]);
        let shipper = status(&[("shipper", "hash-shipper")]);
        // A value the template now refuses (cpu-limit, at most 2): outdated,
        // as the metric has it. The key is the one the template reads.
        let shipper_template = templates.lookup("web", "shipper").unwrap();
        let key = &shipper_template.declared[1].annotation;
        assert!(key.ends_with(".tandem.dev/cpu-limit"), "{key}");
        let refused = serde_json::json!({ key.as_str(): "5" }).to_string();
        let pods = [
            ("web", shipper.as_str(), refused.as_str()),
            ("shop", current.as_str(), ""),
            ("shop", current.as_str(), ""),
            ("shop", old.as_str(), ""),
            ("web", old.as_str(), ""),
            ("web", gone.as_str(), ""),
            ("web", "not json", ""),
        ];
        let namespace = |ns: &str| Namespace::new(ns, Default::default(), Default::default());
        let c = count(pods.into_iter(), &templates, "tandem-system", &namespace);
        let by = |t: &str, s: State| c.by_template.get(&(t.to_string(), s)).copied();
        assert_eq!(by("shipper", State::Current), Some(2));
        assert_eq!(by("shipper", State::Outdated), Some(3));
        assert_eq!(by("shipper", State::Refused), None);
        assert_eq!(by("proxy", State::Current), Some(2));
        assert_eq!(by("removed", State::Outdated), Some(1));
        let object = |ns: &str, n: &str| c.by_object.get(&(ns.to_string(), n.to_string())).copied();
        assert_eq!(object("tandem-system", "shipper"), Some((5, 2)));
        assert_eq!(object("shop", "proxy"), Some((2, 2)));
        assert_eq!(c.by_object.len(), 2, "{:?}", c.by_object);
    }

    #[test]
    fn interned_texts_are_shared_and_dropped_with_their_pods() {
        let mut index = Index::default();
        let pod = |uid: &str, status: &str| {
            let mut p = PartialObjectMeta::<Pod>::default();
            p.metadata.uid = Some(uid.into());
            p.metadata.namespace = Some("shop".into());
            p.metadata.annotations =
                Some([(STATUS_ANNOTATION.to_string(), status.to_string())].into());
            p
        };
        index.apply(&pod("a", "s1"));
        index.apply(&pod("b", "s1"));
        assert_eq!(
            index.strings.len(),
            3,
            "namespace, one status, no parameters"
        );
        index.delete(&pod("a", "s1"));
        index.delete(&pod("b", "s1"));
        index.compact();
        assert!(index.strings.is_empty());
    }
}
