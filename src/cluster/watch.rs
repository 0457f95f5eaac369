//! Connecting to the cluster and keeping the watch caches: SidecarTemplates,
//! Namespaces (metadata only) and the API server's version.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tracing::Instrument;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Namespace as NamespaceObject;
use kube::api::{ApiResource, DynamicObject, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{self, Store, store::Writer};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Config};
use tokio::sync::mpsc;

use super::namespaces::NamespaceCache;
use super::problem::{CappedBackoff, WatchProblem, Watched};
use super::sink::Sink;
use super::templates::StatusUpdate;
use crate::admission::Notice;
use crate::facts::{Capabilities, NamespaceFacts, NativeSidecars};
use crate::template::SidecarTemplate;

/// How often the API server's version is asked again, to notice an upgrade.
const VERSION_INTERVAL: Duration = Duration::from_secs(600);

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("reading {path}: {source}")]
    Kubeconfig {
        path: String,
        source: kube::config::KubeconfigError,
    },
    #[error("no cluster to talk to (--kubeconfig, $KUBECONFIG, ~/.kube/config or in-cluster): {0}")]
    Infer(String),
    #[error("in-cluster configuration: {0}")]
    InCluster(#[from] kube::config::InClusterError),
    #[error("building the Kubernetes client: {0}")]
    Client(#[from] kube::Error),
}

/// The client configuration of a kubeconfig file, its current context.
pub(super) async fn kubeconfig(path: &Path) -> Result<Config, ClusterError> {
    let error = |source| ClusterError::Kubeconfig {
        path: path.display().to_string(),
        source,
    };
    let kc = Kubeconfig::read_from(path).map_err(error)?;
    Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .map_err(error)
}

/// Whether to use the cluster without `--kubeconfig`: running in a pod.
pub fn in_cluster() -> bool {
    std::env::var_os("KUBERNETES_SERVICE_HOST").is_some()
}

/// A connection to the cluster and the Namespace cache, before the watches start.
pub struct Cluster {
    client: Client,
    namespaces: Store<PartialObjectMeta<NamespaceObject>>,
    namespace_writer: Writer<PartialObjectMeta<NamespaceObject>>,
}

impl Cluster {
    /// A client from `kubeconfig`, or the pod's service account.
    pub async fn connect(kubeconfig: Option<&Path>) -> Result<Cluster, ClusterError> {
        let config = match kubeconfig {
            Some(path) => self::kubeconfig(path).await?,
            None => Config::incluster()?,
        };
        let (namespaces, namespace_writer) = reflector::store();
        Ok(Cluster {
            client: Client::try_from(config)?,
            namespaces,
            namespace_writer,
        })
    }

    /// Namespace facts from the cache, empty until `watch` fills it.
    pub fn namespace_facts(&self) -> Arc<dyn NamespaceFacts> {
        Arc::new(NamespaceCache(self.namespaces.clone()))
    }

    /// Starts the Event publisher; `instance` names this replica in Events.
    pub fn events(&self, instance: Option<String>) -> mpsc::Sender<Notice> {
        super::events::start(self.client.clone(), instance)
    }

    /// Starts the watches feeding `sink`. With `ask_version`, the API server's
    /// version decides native sidecars (with that override) now and every
    /// `VERSION_INTERVAL`. Injected pods are watched for their counts;
    /// `own_namespace` holds the cluster-wide templates.
    pub fn watch(
        self,
        sink: Arc<dyn Sink>,
        ask_version: Option<NativeSidecars>,
        own_namespace: &str,
    ) {
        watch_namespaces(self.client.clone(), self.namespace_writer, sink.clone());
        super::pods::watch_pods(self.client.clone(), sink.clone(), own_namespace.to_string());
        let templates = watch_templates(self.client.clone(), sink.clone());
        if let Some(mode) = ask_version {
            watch_version(self.client, sink.clone(), mode);
        }
        let namespaces = self.namespaces;
        tokio::spawn(
            async move {
                let synced = namespaces.wait_until_ready().await.is_ok()
                    && templates.wait_until_ready().await.is_ok();
                if synced {
                    tracing::info!("cluster caches synced");
                    sink.synced();
                }
            }
            .instrument(tracing::info_span!("cluster-sync")),
        );
    }
}

/// Reports a watch's failures (one line per retry, spaced by the backoff)
/// and its recovery.
struct Health {
    watched: Watched,
    sink: Arc<dyn Sink>,
    failing: bool,
}

impl Health {
    fn new(watched: Watched, sink: Arc<dyn Sink>) -> Health {
        Health {
            watched,
            sink,
            failing: false,
        }
    }

    fn failed(&mut self, error: &watcher::Error) {
        let problem = WatchProblem::of(self.watched, error);
        let resource = self.watched.resource();
        tracing::error!(
            resource,
            reason = problem.reason,
            "{}; retrying with backoff, the last known state stays in use",
            problem.message
        );
        self.sink.watch_failed(resource, &problem);
        self.failing = true;
    }

    fn ok(&mut self) {
        if self.failing {
            let resource = self.watched.resource();
            tracing::info!(resource, "watch works again");
            self.sink.watch_recovered(resource);
            self.failing = false;
        }
    }
}

/// Fills the Namespace cache whose store answers namespace facts.
fn watch_namespaces(
    client: Client,
    writer: Writer<PartialObjectMeta<NamespaceObject>>,
    sink: Arc<dyn Sink>,
) {
    // Metadata only: labels and annotations are all Tandem reads.
    let api = Api::<PartialObjectMeta<NamespaceObject>>::all(client);
    let stream = reflector::reflector(
        writer,
        watcher(api, watcher::Config::default()).backoff(CappedBackoff::new()),
    );
    let mut health = Health::new(Watched::Namespaces, sink);
    tokio::spawn(
        async move {
            let mut stream = std::pin::pin!(stream);
            while let Some(event) = stream.next().await {
                match event {
                    // Yielded before every list, failing or not.
                    Ok(watcher::Event::Init) => {}
                    Ok(_) => health.ok(),
                    Err(e) => health.failed(&e),
                }
            }
        }
        .instrument(tracing::info_span!("watch", resource = "namespaces")),
    );
}

/// Starts the SidecarTemplate cache: every change hands the objects to the
/// sink and writes each object's status when it changed.
fn watch_templates(client: Client, sink: Arc<dyn Sink>) -> Store<DynamicObject> {
    let resource = ApiResource::erase::<SidecarTemplate>(&());
    let writer = Writer::new(resource.clone());
    let store = writer.as_reader();
    let api = Api::<DynamicObject>::all_with(client.clone(), &resource);
    let stream = reflector::reflector(
        writer,
        watcher(api, watcher::Config::default()).backoff(CappedBackoff::new()),
    );
    let reader = store.clone();
    let mut health = Health::new(Watched::SidecarTemplates, sink.clone());
    tokio::spawn(
        async move {
            let mut stream = std::pin::pin!(stream);
            let mut last: Option<Vec<String>> = None;
            while let Some(event) = stream.next().await {
                match event {
                    // Yielded before every list, failing or not.
                    Ok(watcher::Event::Init) => {}
                    Ok(_) => {
                        health.ok();
                        // The pod counts Tandem writes into the statuses come
                        // back as events: those alone rebuild nothing.
                        let objects = reader.state();
                        let now = fingerprint(&objects);
                        if last.as_ref() == Some(&now) {
                            continue;
                        }
                        last = Some(now);
                        for u in sink.templates(objects) {
                            tokio::spawn(
                                write_status(client.clone(), resource.clone(), u).in_current_span(),
                            );
                        }
                    }
                    Err(e) => health.failed(&e),
                }
            }
        }
        .instrument(tracing::info_span!("watch", resource = "sidecartemplates")),
    );
    store
}

/// What of the objects decides the templates in force and their verdicts:
/// everything but the pod counts in their statuses.
fn fingerprint(objects: &[Arc<DynamicObject>]) -> Vec<String> {
    let mut out: Vec<String> = objects
        .iter()
        .map(|o| {
            let mut status = o.data.get("status").cloned().unwrap_or_default();
            if let Some(s) = status.as_object_mut() {
                s.remove("injectedPods");
                s.remove("upToDatePods");
            }
            format!(
                "{:?}/{:?}/{:?}/{:?} {} {status}",
                o.metadata.namespace,
                o.metadata.name,
                o.metadata.uid,
                o.metadata.generation,
                o.data.get("spec").cloned().unwrap_or_default(),
            )
        })
        .collect();
    out.sort();
    out
}

async fn write_status(client: Client, resource: ApiResource, u: StatusUpdate) {
    let api = Api::<DynamicObject>::namespaced_with(client, &u.namespace, &resource);
    let patch = serde_json::json!({ "status": u.status });
    if let Err(e) = api
        .patch_status(&u.name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        tracing::warn!(namespace = %u.namespace, name = %u.name, error = %e, "could not write SidecarTemplate status");
    }
}

/// Asks the API server's version now and every `VERSION_INTERVAL`.
fn watch_version(client: Client, sink: Arc<dyn Sink>, mode: NativeSidecars) {
    tokio::spawn(
        async move {
        loop {
            match client.apiserver_version().await {
                Ok(info) => sink.capabilities(Capabilities::detect(Some(&info.git_version), mode)),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the API server version; keeping the last capabilities")
                }
            }
            tokio::time::sleep(VERSION_INTERVAL).await;
        }
        }
        .instrument(tracing::info_span!("watch", resource = "version")),
    );
}
