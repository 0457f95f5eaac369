//! `tandem serve`: the flags, turned into the server's plain configuration.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, ValueEnum};

use super::CliError;
use crate::facts::{NativeSidecars, OnMissing};
use crate::server::{self, Config};

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Plain,
    /// One JSON object per line, for log collectors.
    Json,
}

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
    /// PEM CA bundle: the webhook port then requires a client certificate
    /// signed by it (the API server's, from its AdmissionConfiguration); the
    /// admin port is unaffected. Re-read when it changes.
    #[arg(long, value_name = "PATH")]
    pub client_ca_file: Option<PathBuf>,
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
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Plain)]
    pub log_format: LogFormat,
    /// Tandem's own namespace: never injected.
    #[arg(long, env = "POD_NAMESPACE", default_value = "tandem-system")]
    pub namespace: String,
    /// This pod's name, from the downward API: the Events Tandem publishes
    /// name it as their reporting instance.
    #[arg(long, env = "POD_NAME", value_name = "NAME")]
    pub pod_name: Option<String>,
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

impl ServeArgs {
    fn config(self) -> Config {
        Config {
            listen: self.listen,
            admin_listen: self.admin_listen,
            tls_cert: self.tls_cert,
            tls_key: self.tls_key,
            config: self.config,
            max_body_bytes: self.max_body_bytes,
            max_connections: self.max_connections,
            shutdown_delay_seconds: self.shutdown_delay_seconds,
            shutdown_grace_seconds: self.shutdown_grace_seconds,
            namespace: self.namespace,
            on_missing: self.on_missing,
            native_sidecars: self.native_sidecars,
            kubernetes_version: self.kubernetes_version,
            kubeconfig: self.kubeconfig,
            no_cluster: self.no_cluster,
            pod_name: self.pod_name,
            client_ca_file: self.client_ca_file,
        }
    }
}

pub(super) fn run(args: ServeArgs) -> Result<(), CliError> {
    server::install_provider();
    server::init_logging(args.log_format == LogFormat::Json);
    let runtime = tokio::runtime::Runtime::new()
        .map_err(|e| CliError::Failed(format!("cannot start the runtime: {e}")))?;
    runtime
        .block_on(server::run(args.config()))
        .map_err(|e| CliError::Failed(e.to_string()))
}
