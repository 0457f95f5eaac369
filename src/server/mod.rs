//! `tandem serve`: the HTTPS admission webhook and its admin port. The one
//! place that wires the layers together: it connects the cluster (when there
//! is one), builds the shared state, starts the file watchers, the TLS
//! listener and the admin port, and drains on SIGTERM.

mod config;
mod deadline;
mod listener;
mod metrics;
mod reload;
mod routes;
mod state;
mod tls;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::Instrument;

use crate::cluster::{Cluster, ClusterError};
use crate::facts::NoNamespaces;

pub use config::Config;
pub use state::AppState;
pub use tls::install_provider;

/// Why `tandem serve` could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error("building the TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    #[error("--client-ca-file {0}")]
    ClientCa(String),
    #[error("binding the {what} port {addr}: {source}")]
    Bind {
        what: &'static str,
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
}

/// Runs the server until SIGTERM or Ctrl-C, then drains and returns.
pub async fn run(config: Config) -> Result<(), ServeError> {
    // A CA that does not load at start is an error, not an open door.
    let client_ca = match &config.client_ca_file {
        Some(path) => Some(Arc::new(tls::ClientCaStore::new(
            reload::read_client_ca(path).map_err(ServeError::ClientCa)?,
        ))),
        None => None,
    };
    let state = start_state(&config).await?;
    let tls_config = tls::server_config(state.certs.clone(), client_ca.clone())?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls_config));
    let listener = bind("webhook", config.listen).await?;
    let admin_listener = bind("admin", config.admin_listen).await?;
    tracing::info!(
        listen = %listener.local_addr().unwrap_or(config.listen),
        admin = %admin_listener.local_addr().unwrap_or(config.admin_listen),
        "tandem serving"
    );
    start_reloads(&config, &state, client_ca);

    let (stop_tx, stop_rx) = watch::channel(false);
    let admin_router = routes::admin(state.clone());
    let mut admin_stop = stop_rx.clone();
    let admin_task = tokio::spawn(
        async move {
            let stop = async move {
                let _ = admin_stop.wait_for(|s| *s).await;
            };
            axum::serve(admin_listener, admin_router)
                .with_graceful_shutdown(stop)
                .await
        }
        .instrument(tracing::info_span!("admin", addr = %config.admin_listen)),
    );
    let limits = listener::Limits {
        max_connections: config.max_connections,
        grace: Duration::from_secs(config.shutdown_grace_seconds),
    };
    let refused = listener::Refusals {
        over_limit: state.metrics.connections_refused.clone(),
        client_auth: state.metrics.client_auth_failures.clone(),
    };
    let webhook = {
        let state = state.clone();
        hyper::service::service_fn(move |req| routes::webhook(state.clone(), req))
    };
    let serving = tokio::spawn(
        listener::serve_tls(listener, acceptor, webhook, limits, refused, stop_rx)
            .instrument(tracing::info_span!("listener", addr = %config.listen)),
    );

    shutdown_signal().await;
    state.shutting_down.store(true, Ordering::Release);
    tracing::info!(
        delay_seconds = config.shutdown_delay_seconds,
        "shutting down: unready, still serving"
    );
    tokio::time::sleep(Duration::from_secs(config.shutdown_delay_seconds)).await;
    tracing::info!("closing the listener, draining in-flight requests");
    let _ = stop_tx.send(true);
    let _ = serving.await;
    let _ = admin_task.await;
    tracing::info!("stopped");
    Ok(())
}

/// The shared state, on the cluster's caches when there is a cluster: with
/// `--kubeconfig`, or in a pod, unless `--no-cluster`.
async fn start_state(config: &Config) -> Result<Arc<AppState>, ServeError> {
    let use_cluster =
        !config.no_cluster && (config.kubeconfig.is_some() || crate::cluster::in_cluster());
    if !use_cluster {
        return Ok(Arc::new(AppState::new(
            config,
            Arc::new(NoNamespaces),
            None,
            false,
        )));
    }
    let cluster = Cluster::connect(config.kubeconfig.as_deref()).await?;
    let events = cluster.events(config.pod_name.clone());
    let state = Arc::new(AppState::new(
        config,
        cluster.namespace_facts(),
        Some(events),
        true,
    ));
    // A given --kubernetes-version replaces asking the API server.
    let ask_version = config
        .kubernetes_version
        .is_none()
        .then_some(config.native_sidecars);
    cluster.watch(state.clone(), ask_version, &config.namespace);
    Ok(state)
}

async fn bind(what: &'static str, addr: std::net::SocketAddr) -> Result<TcpListener, ServeError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { what, addr, source })
}

/// Re-reads the certificate, the client CA and the `--config` templates
/// when they change.
fn start_reloads(
    config: &Config,
    state: &Arc<AppState>,
    client_ca: Option<Arc<tls::ClientCaStore>>,
) {
    let (cert, key) = (config.tls_cert.clone(), config.tls_key.clone());
    let s = state.clone();
    tokio::spawn(
        reload::watch(vec![cert.clone(), key.clone()], move || {
            reload::load_certificate(&s, &cert, &key)
        })
        .instrument(tracing::info_span!("reload", what = "certificate")),
    );
    if let (Some(store), Some(path)) = (client_ca, config.client_ca_file.clone()) {
        let s = state.clone();
        tokio::spawn(
            reload::watch(vec![path.clone()], move || {
                reload::load_client_ca(&s, &store, &path)
            })
            .instrument(tracing::info_span!("reload", what = "client-ca")),
        );
    }
    if let Some(path) = config.config.clone() {
        let s = state.clone();
        tokio::spawn(
            reload::watch(vec![path.clone()], move || {
                reload::load_templates(&s, &path)
            })
            .instrument(tracing::info_span!("reload", what = "templates")),
        );
    }
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

/// Sets up logging for `serve`: plain or JSON lines on stderr.
pub fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().flatten_event(true).init();
    } else {
        builder.init();
    }
}
