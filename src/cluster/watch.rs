//! Connecting to the cluster and keeping the watch caches: SidecarTemplates,
//! Namespaces (metadata only) and the API server's version.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context as _;
use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Namespace as NamespaceObject;
use kube::api::{ApiResource, DynamicObject, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{self, Store};

use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Config};

use super::namespaces::NamespaceCache;
use super::templates::StatusUpdate;
use crate::engine::{Capabilities, NativeSidecars};
use crate::server::{AppState, ServeArgs};
use crate::template::SidecarTemplate;

/// How often the API server's version is asked again, to notice an upgrade.
const VERSION_INTERVAL: Duration = Duration::from_secs(600);

/// A client from `--kubeconfig`, or the pod's service account.
pub async fn connect(kubeconfig: Option<&Path>) -> anyhow::Result<Client> {
    let config = match kubeconfig {
        Some(path) => {
            let kc = Kubeconfig::read_from(path)
                .with_context(|| format!("reading {}", path.display()))?;
            Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?
        }
        None => Config::incluster().context("in-cluster configuration")?,
    };
    Client::try_from(config).context("building the Kubernetes client")
}

/// Whether to use the cluster: `--kubeconfig` given, or running in a pod.
pub fn in_cluster() -> bool {
    std::env::var_os("KUBERNETES_SERVICE_HOST").is_some()
}

/// Builds the server's state on the cluster's caches and starts them;
/// `/readyz` stays unready until both have synced.
pub fn start(client: Client, args: &ServeArgs) -> Arc<AppState> {
    let (ns_store, ns_writer) = reflector::store();
    let events = super::events::start(client.clone(), std::env::var("POD_NAME").ok());
    let facts = Arc::new(NamespaceCache(ns_store.clone()));
    let state = Arc::new(AppState::new(args, facts, Some(events), true));
    namespaces(client.clone(), ns_writer, state.clone());
    let template_store = templates(client.clone(), state.clone());
    if args.kubernetes_version.is_none() {
        capabilities(client, state.clone(), args.native_sidecars);
    }
    let s = state.clone();
    tokio::spawn(async move {
        let synced = ns_store.wait_until_ready().await.is_ok()
            && template_store.wait_until_ready().await.is_ok();
        if synced {
            tracing::info!("cluster caches synced");
            s.cluster_synced.store(true, Ordering::Release);
        }
    });
    state
}

/// Fills the Namespace cache whose store answers namespace facts.
pub fn namespaces(
    client: Client,
    writer: reflector::store::Writer<PartialObjectMeta<NamespaceObject>>,
    state: Arc<AppState>,
) {
    // Metadata only: labels and annotations are all Tandem reads.
    let api = Api::<PartialObjectMeta<NamespaceObject>>::all(client);
    let stream = reflector::reflector(
        writer,
        watcher(api, watcher::Config::default()).default_backoff(),
    );
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            if let Err(e) = event {
                state.metrics.watch_error("namespaces");
                tracing::warn!(error = %e, "namespace watch failed; retrying, last known namespaces stay in use");
            }
        }
    });
}

/// Starts the SidecarTemplate cache: every change rebuilds the templates in
/// force and writes each object's status when it changed.
pub fn templates(client: Client, state: Arc<AppState>) -> Store<DynamicObject> {
    let resource = ApiResource::erase::<SidecarTemplate>(&());
    let writer = reflector::store::Writer::new(resource.clone());
    let store = writer.as_reader();
    let api = Api::<DynamicObject>::all_with(client.clone(), &resource);
    let stream = reflector::reflector(
        writer,
        watcher(api, watcher::Config::default()).default_backoff(),
    );
    let reader = store.clone();
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            match event {
                Ok(_) => {
                    let updates = state.set_cluster_templates(reader.state());
                    for u in updates {
                        tokio::spawn(write_status(client.clone(), resource.clone(), u));
                    }
                }
                Err(e) => {
                    state.metrics.watch_error("sidecartemplates");
                    tracing::warn!(error = %e, "SidecarTemplate watch failed; retrying, last known templates stay in use");
                }
            }
        }
    });
    store
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
pub fn capabilities(client: Client, state: Arc<AppState>, mode: NativeSidecars) {
    tokio::spawn(async move {
        loop {
            match client.apiserver_version().await {
                Ok(info) => {
                    let caps = Capabilities::detect(Some(&info.git_version), mode);
                    state.set_capabilities(caps);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the API server version; keeping the last capabilities")
                }
            }
            tokio::time::sleep(VERSION_INTERVAL).await;
        }
    });
}
