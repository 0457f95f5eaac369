//! What every request handler shares, and the one place the templates in
//! force are rebuilt from their sources (files and cluster objects).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use kube::api::DynamicObject;
use tokio::sync::mpsc;

use super::Config;
use super::metrics::Metrics;
use super::tls::CertStore;
use crate::admission::Notice;
use crate::cluster::{self, StatusUpdate, WatchProblem};
use crate::facts::{Capabilities, Namespace, NamespaceFacts, Policy};
use crate::template::{Template, TemplateSet};

/// Where the templates in force come from.
#[derive(Default)]
struct Sources {
    files: Vec<Arc<Template>>,
    objects: Vec<Arc<DynamicObject>>,
}

/// What every request handler shares.
pub struct AppState {
    pub templates: ArcSwap<TemplateSet>,
    sources: Mutex<Sources>,
    own_namespace: String,
    pub templates_ready: AtomicBool,
    /// False until the cluster caches have synced (true without a cluster).
    pub cluster_synced: AtomicBool,
    /// Why each failing watch fails, for `/readyz` while unsynced.
    watch_problems: Mutex<BTreeMap<&'static str, String>>,
    pub events: Option<mpsc::Sender<Notice>>,
    pub certs: Arc<CertStore>,
    pub namespaces: Arc<dyn NamespaceFacts>,
    pub capabilities: ArcSwap<Capabilities>,
    pub policy: Policy,
    pub metrics: Metrics,
    pub max_body_bytes: usize,
    pub shutting_down: AtomicBool,
}

impl AppState {
    pub fn new(
        config: &Config,
        namespaces: Arc<dyn NamespaceFacts>,
        events: Option<mpsc::Sender<Notice>>,
        cluster: bool,
    ) -> AppState {
        let mut policy = Policy {
            on_missing: config.on_missing,
            ..Policy::default()
        };
        policy.excluded_namespaces.push(config.namespace.clone());
        let capabilities =
            Capabilities::detect(config.kubernetes_version.as_deref(), config.native_sidecars);
        let metrics = Metrics::new();
        metrics
            .native_sidecars
            .set(i64::from(capabilities.native_sidecars));
        AppState {
            templates: ArcSwap::from_pointee(TemplateSet::default()),
            sources: Mutex::new(Sources::default()),
            own_namespace: config.namespace.clone(),
            // Without --config there is nothing to wait for.
            templates_ready: AtomicBool::new(config.config.is_none()),
            cluster_synced: AtomicBool::new(!cluster),
            watch_problems: Mutex::new(BTreeMap::new()),
            events,
            certs: Arc::new(CertStore::default()),
            namespaces,
            capabilities: ArcSwap::from_pointee(capabilities),
            policy,
            metrics,
            max_body_bytes: config.max_body_bytes,
            shutting_down: AtomicBool::new(false),
        }
    }

    /// Replaces the templates from `--config`.
    pub fn set_file_templates(&self, files: Vec<Arc<Template>>) {
        let mut sources = self.sources.lock().unwrap_or_else(|p| p.into_inner());
        sources.files = files;
        self.rebuild(&sources);
    }

    /// What keeps the cluster caches from syncing, one `resource: why` each.
    pub fn watch_problems(&self) -> Vec<String> {
        let problems = self
            .watch_problems
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        problems
            .iter()
            .map(|(r, why)| format!("{r}: {why}"))
            .collect()
    }

    fn rebuild(&self, sources: &Sources) -> Vec<StatusUpdate> {
        let (set, updates) = cluster::merge(&sources.files, &sources.objects, &self.own_namespace);
        self.metrics.templates.set(set.len() as i64);
        self.templates.store(Arc::new(set));
        updates
    }
}

impl cluster::Sink for AppState {
    fn templates(&self, objects: Vec<Arc<DynamicObject>>) -> Vec<StatusUpdate> {
        let mut sources = self.sources.lock().unwrap_or_else(|p| p.into_inner());
        sources.objects = objects;
        self.rebuild(&sources)
    }

    fn capabilities(&self, caps: Capabilities) {
        if self.capabilities.load().native_sidecars != caps.native_sidecars {
            tracing::info!(native_sidecars = caps.native_sidecars, source = %caps.source, "cluster capabilities");
        }
        self.metrics
            .native_sidecars
            .set(i64::from(caps.native_sidecars));
        self.capabilities.store(Arc::new(caps));
    }

    fn watch_failed(&self, resource: &'static str, problem: &WatchProblem) {
        self.metrics.watch_error(resource, problem.reason);
        let mut problems = self
            .watch_problems
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        problems.insert(resource, problem.message.clone());
    }

    fn watch_recovered(&self, resource: &'static str) {
        let mut problems = self
            .watch_problems
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        problems.remove(resource);
    }

    fn synced(&self) {
        self.cluster_synced.store(true, Ordering::Release);
    }

    fn templates_in_force(&self) -> Option<Arc<TemplateSet>> {
        let known = self.templates_ready.load(Ordering::Acquire)
            && self.cluster_synced.load(Ordering::Acquire);
        known.then(|| self.templates.load_full())
    }

    fn namespace(&self, name: &str) -> Namespace {
        self.namespaces
            .get(name)
            .unwrap_or_else(|| Namespace::new(name, BTreeMap::new(), BTreeMap::new()))
    }

    fn injected_pods(&self, counts: Option<&cluster::PodCounts>) {
        self.metrics.injected_pods(counts);
    }
}
