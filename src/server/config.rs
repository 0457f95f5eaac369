//! What `tandem serve` is told: plain values, filled by the CLI from its flags.

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::facts::{NativeSidecars, OnMissing};

#[derive(Debug, Clone)]
pub struct Config {
    /// Address of the HTTPS webhook.
    pub listen: SocketAddr,
    /// Address of the plain-HTTP admin port (/livez, /readyz, /metrics).
    pub admin_listen: SocketAddr,
    /// PEM certificate chain and private key; re-read when they change.
    pub tls_cert: PathBuf,
    pub tls_key: PathBuf,
    /// SidecarTemplate file or directory; re-read when it changes.
    pub config: Option<PathBuf>,
    /// Largest AdmissionReview body accepted.
    pub max_body_bytes: usize,
    /// Connections served at once; more are closed on arrival.
    pub max_connections: usize,
    /// Seconds to keep serving after SIGTERM with /readyz failing.
    pub shutdown_delay_seconds: u64,
    /// Seconds to let in-flight requests finish once the listener is closed.
    pub shutdown_grace_seconds: u64,
    /// Tandem's own namespace: never injected, and where cluster-wide
    /// SidecarTemplates live.
    pub namespace: String,
    pub on_missing: OnMissing,
    pub native_sidecars: NativeSidecars,
    /// Replaces asking the API server for its version.
    pub kubernetes_version: Option<String>,
    /// Cluster mode outside a pod.
    pub kubeconfig: Option<PathBuf>,
    /// Never use the cluster, even in a pod.
    pub no_cluster: bool,
    /// This replica's name, for the Events it publishes.
    pub pod_name: Option<String>,
    /// PEM CA bundle a webhook client's certificate must chain to; none:
    /// no client certificate asked for. Re-read when it changes.
    pub client_ca_file: Option<PathBuf>,
}
