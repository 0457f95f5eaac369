//! `tandem serve`: the HTTPS admission webhook and its admin port.

mod listener;
pub mod metrics;
mod reload;
mod routes;
pub mod tls;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use arc_swap::ArcSwap;
use clap::Args;
use kube::api::DynamicObject;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

use crate::admission::{NamespaceFacts, NoNamespaces};
use crate::cluster::events::Notice;
use crate::cluster::templates::{self, StatusUpdate};
use crate::cluster::watch as cluster_watch;
use crate::engine::{Capabilities, NativeSidecars, OnMissing, Policy};
use crate::template::{Template, TemplateSet};
use metrics::Metrics;
use tls::CertStore;

pub use routes::{admin, webhook};

#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    /// Address of the HTTPS webhook.
    #[arg(long, default_value = "0.0.0.0:8443")]
    pub listen: SocketAddr,
    /// Address of the plain-HTTP admin port (/livez, /readyz, /metrics).
    #[arg(long, default_value = "0.0.0.0:9090")]
    pub admin_listen: SocketAddr,
    /// PEM certificate chain; re-read when it changes.
    #[arg(long, default_value = "/etc/tandem/tls/tls.crt")]
    pub tls_cert: PathBuf,
    /// PEM private key; re-read when it changes.
    #[arg(long, default_value = "/etc/tandem/tls/tls.key")]
    pub tls_key: PathBuf,
    /// SidecarTemplate file or directory; re-read when it changes.
    #[arg(long, short = 'c', value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Largest AdmissionReview body accepted (an UPDATE carries two objects).
    #[arg(long, default_value_t = 4 * 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Connections served at once; more are closed on arrival.
    #[arg(long, default_value_t = 1024)]
    pub max_connections: usize,
    /// Seconds to keep serving after SIGTERM with /readyz failing, so the
    /// Service stops sending new connections before the listener closes.
    #[arg(long, default_value_t = 5)]
    pub shutdown_delay_seconds: u64,
    /// Seconds to let in-flight requests finish once the listener is closed.
    #[arg(long, default_value_t = 20)]
    pub shutdown_grace_seconds: u64,
    /// Log format: plain or json.
    #[arg(long, default_value = "plain", value_parser = ["plain", "json"])]
    pub log_format: String,
    /// Tandem's own namespace: never injected.
    #[arg(long, env = "POD_NAMESPACE", default_value = "tandem-system")]
    pub namespace: String,
    /// A requested template that does not exist: warn, or deny the pod.
    #[arg(long, default_value = "warn", value_name = "warn|deny")]
    pub on_missing: OnMissing,
    /// Native-sidecar support: auto (from the version), always or never.
    #[arg(long, default_value = "auto", value_name = "auto|always|never")]
    pub native_sidecars: NativeSidecars,
    /// Kubernetes version assumed for native-sidecar detection (without it, the API server is asked).
    #[arg(long, value_name = "VERSION")]
    pub kubernetes_version: Option<String>,
    /// Kubeconfig for cluster mode outside a pod (in a pod, the service account is used).
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// Do not read SidecarTemplates and Namespaces from the cluster, even in a pod.
    #[arg(long)]
    pub no_cluster: bool,
}

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
        args: &ServeArgs,
        namespaces: Arc<dyn NamespaceFacts>,
        events: Option<mpsc::Sender<Notice>>,
        cluster: bool,
    ) -> AppState {
        let mut policy = Policy {
            on_missing: args.on_missing,
            ..Policy::default()
        };
        policy.excluded_namespaces.push(args.namespace.clone());
        let capabilities =
            Capabilities::detect(args.kubernetes_version.as_deref(), args.native_sidecars);
        let metrics = Metrics::new();
        metrics
            .native_sidecars
            .set(i64::from(capabilities.native_sidecars));
        AppState {
            templates: ArcSwap::from_pointee(TemplateSet::default()),
            sources: Mutex::new(Sources::default()),
            own_namespace: args.namespace.clone(),
            // Without --config there is nothing to wait for.
            templates_ready: AtomicBool::new(args.config.is_none()),
            cluster_synced: AtomicBool::new(!cluster),
            events,
            certs: Arc::new(CertStore::default()),
            namespaces,
            capabilities: ArcSwap::from_pointee(capabilities),
            policy,
            metrics,
            max_body_bytes: args.max_body_bytes,
            shutting_down: AtomicBool::new(false),
        }
    }

    /// Replaces the templates from `--config`.
    pub fn set_file_templates(&self, files: Vec<Arc<Template>>) {
        let mut sources = self.sources.lock().unwrap_or_else(|p| p.into_inner());
        sources.files = files;
        self.rebuild(&sources);
    }

    /// Replaces the SidecarTemplate objects; returns the statuses to write.
    pub fn set_cluster_templates(&self, objects: Vec<Arc<DynamicObject>>) -> Vec<StatusUpdate> {
        let mut sources = self.sources.lock().unwrap_or_else(|p| p.into_inner());
        sources.objects = objects;
        self.rebuild(&sources)
    }

    fn rebuild(&self, sources: &Sources) -> Vec<StatusUpdate> {
        let (set, updates) =
            templates::merge(&sources.files, &sources.objects, &self.own_namespace);
        self.metrics.templates.set(set.len() as i64);
        self.templates.store(Arc::new(set));
        updates
    }

    pub fn set_capabilities(&self, caps: Capabilities) {
        if self.capabilities.load().native_sidecars != caps.native_sidecars {
            tracing::info!(native_sidecars = caps.native_sidecars, source = %caps.source, "cluster capabilities");
        }
        self.metrics
            .native_sidecars
            .set(i64::from(caps.native_sidecars));
        self.capabilities.store(Arc::new(caps));
    }
}

/// Runs the server until SIGTERM or Ctrl-C, then drains and returns.
pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let client = if !args.no_cluster && (args.kubeconfig.is_some() || cluster_watch::in_cluster()) {
        Some(cluster_watch::connect(args.kubeconfig.as_deref()).await?)
    } else {
        None
    };
    let state = match &client {
        None => Arc::new(AppState::new(&args, Arc::new(NoNamespaces), None, false)),
        Some(client) => cluster_watch::start(client.clone(), &args),
    };
    let tls_config =
        tls::server_config(state.certs.clone()).context("building the TLS configuration")?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls_config));
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding the webhook port {}", args.listen))?;
    let admin_listener = TcpListener::bind(args.admin_listen)
        .await
        .with_context(|| format!("binding the admin port {}", args.admin_listen))?;
    tracing::info!(
        listen = %listener.local_addr()?,
        admin = %admin_listener.local_addr()?,
        "tandem serving"
    );

    let (cert, key) = (args.tls_cert.clone(), args.tls_key.clone());
    let s = state.clone();
    tokio::spawn(reload::watch(vec![cert.clone(), key.clone()], move || {
        reload::load_certificate(&s, &cert, &key)
    }));
    if let Some(config) = args.config.clone() {
        let s = state.clone();
        tokio::spawn(reload::watch(vec![config.clone()], move || {
            reload::load_templates(&s, &config)
        }));
    }

    let (stop_tx, stop_rx) = watch::channel(false);
    let admin_router = admin(state.clone());
    let mut admin_stop = stop_rx.clone();
    let admin_task = tokio::spawn(async move {
        let stop = async move {
            let _ = admin_stop.wait_for(|s| *s).await;
        };
        axum::serve(admin_listener, admin_router)
            .with_graceful_shutdown(stop)
            .await
    });
    let limits = listener::Limits {
        max_connections: args.max_connections,
        grace: Duration::from_secs(args.shutdown_grace_seconds),
    };
    let refused = state.metrics.connections_refused.clone();
    let serving = tokio::spawn(listener::serve_tls(
        listener,
        acceptor,
        webhook(state.clone()),
        limits,
        refused,
        stop_rx,
    ));

    shutdown_signal().await;
    state.shutting_down.store(true, Ordering::Release);
    tracing::info!(
        delay_seconds = args.shutdown_delay_seconds,
        "shutting down: unready, still serving"
    );
    tokio::time::sleep(Duration::from_secs(args.shutdown_delay_seconds)).await;
    tracing::info!("closing the listener, draining in-flight requests");
    let _ = stop_tx.send(true);
    let _ = serving.await;
    let _ = admin_task.await;
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

/// Sets up logging for `serve`.
pub fn init_logging(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().flatten_event(true).init();
    } else {
        builder.init();
    }
}
