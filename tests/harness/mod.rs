//! Starts the real `tandem` binary on loopback with real TLS, and talks to it
//! the way the API server does: HTTPS, HTTP/1.1, keep-alive (and HTTP/2,
//! which the server also offers). A test crate using it declares `mod common;`
//! too: fixtures and polling come from there.
#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::common::run::wait_for;

/// A certificate authority for one test.
pub struct Pki {
    ca: CertifiedIssuer<'static, KeyPair>,
}

impl Pki {
    pub fn new(name: &str) -> Pki {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, format!("{name} test CA"));
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        Pki { ca }
    }

    pub fn ca_der(&self) -> CertificateDer<'static> {
        self.ca.der().clone()
    }

    pub fn ca_pem(&self) -> String {
        self.ca.pem()
    }

    /// A client certificate, as the API server presents to a webhook:
    /// (cert PEM, key PEM). `expired` dates it in 2020.
    pub fn client(&self, name: &str, expired: bool) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        if expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2020, 12, 31);
        }
        let cert = params.signed_by(&key, &self.ca).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    /// A serving certificate for `localhost`: (cert PEM, key PEM, cert DER).
    pub fn leaf(&self) -> (String, String, Vec<u8>) {
        let key = KeyPair::generate().unwrap();
        let params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        let cert = params.signed_by(&key, &self.ca).unwrap();
        (cert.pem(), key.serialize_pem(), cert.der().to_vec())
    }
}

pub fn free_port() -> SocketAddr {
    let l = StdListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// Writes the certificate pair the way a Kubernetes Secret volume holds it:
/// real files in a timestamped directory, `..data` linking to it, and the
/// visible names linking through `..data`. Swapping is one atomic rename.
pub fn write_secret_volume(dir: &Path, generation: u32, cert: &str, key: &str) {
    std::fs::create_dir_all(dir).unwrap();
    let real = dir.join(format!("..2026_11_21_{generation}"));
    std::fs::create_dir_all(&real).unwrap();
    std::fs::write(real.join("tls.crt"), cert).unwrap();
    std::fs::write(real.join("tls.key"), key).unwrap();
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(real.file_name().unwrap(), &tmp).unwrap();
    std::fs::rename(&tmp, dir.join("..data")).unwrap();
    for name in ["tls.crt", "tls.key"] {
        let link = dir.join(name);
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(format!("..data/{name}"), &link).unwrap();
        }
    }
}

pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub dir: tempfile::TempDir,
    pub pki: Pki,
    pub leaf_der: Vec<u8>,
    pub log: PathBuf,
}

pub struct Options<'a> {
    pub templates: Option<&'a str>,
    pub args: &'a [&'a str],
    /// Start without certificate files (to test readiness).
    pub no_certificate: bool,
}

impl Default for Options<'_> {
    fn default() -> Self {
        Options {
            templates: Some(TEMPLATES),
            args: &[],
            no_certificate: false,
        }
    }
}

/// Templates used by most server tests: one injected into every pod by an
/// empty selector, one requested by name.
pub const TEMPLATES: &str = r#"
apiVersion: tandem.dev/v1alpha1
kind: SidecarTemplate
metadata: {name: probe-helper}
spec:
  pattern: sidecar
  selector: {}
  containers:
  - name: probe-helper
    image: registry.k8s.io/pause:3.10
    resources: {requests: {cpu: 10m, memory: 16Mi}, limits: {cpu: 50m, memory: 32Mi}}
    volumeMounts: [{name: probe-scratch, mountPath: /scratch}]
  volumes: [{name: probe-scratch, emptyDir: {sizeLimit: 64Mi}}]
  app:
    volumeMounts: [{name: probe-scratch, mountPath: /scratch}]
---
apiVersion: tandem.dev/v1alpha1
kind: SidecarTemplate
metadata: {name: log-shipper}
spec:
  pattern: sidecar
  containers:
  - name: tandem-log-shipper
    image: fluent/fluent-bit:3.2.4
    resources: {requests: {cpu: 20m, memory: 32Mi}, limits: {cpu: 100m, memory: 64Mi}}
    volumeMounts: [{name: tandem-logs, mountPath: /var/log/app}]
  volumes: [{name: tandem-logs, emptyDir: {}}]
  app:
    volumeMounts: [{name: tandem-logs, mountPath: /var/log/app}]
"#;

impl Server {
    pub fn start(opts: Options<'_>) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::new("first");
        let (cert, key, leaf_der) = pki.leaf();
        let tls = dir.path().join("tls");
        if opts.no_certificate {
            std::fs::create_dir_all(&tls).unwrap();
        } else {
            write_secret_volume(&tls, 1, &cert, &key);
        }
        let addr = free_port();
        let admin = free_port();
        let log = dir.path().join("serve.log");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tandem"));
        cmd.arg("serve")
            .arg(format!("--listen={addr}"))
            .arg(format!("--admin-listen={admin}"))
            .arg(format!("--tls-cert={}", tls.join("tls.crt").display()))
            .arg(format!("--tls-key={}", tls.join("tls.key").display()))
            .args(opts.args)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        // Tests stop servers at once unless they test the delay.
        if !opts
            .args
            .iter()
            .any(|a| a.starts_with("--shutdown-delay-seconds"))
        {
            cmd.arg("--shutdown-delay-seconds=0");
        }
        if let Some(t) = opts.templates {
            let tdir = dir.path().join("templates");
            std::fs::create_dir_all(&tdir).unwrap();
            std::fs::write(tdir.join("templates.yaml"), t).unwrap();
            cmd.arg(format!("--config={}", tdir.display()));
        }
        let child = cmd.spawn().expect("start tandem serve");
        Server {
            child,
            addr,
            admin,
            dir,
            pki,
            leaf_der,
            log,
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn tls_dir(&self) -> PathBuf {
        self.dir.path().join("tls")
    }

    pub fn templates_dir(&self) -> PathBuf {
        self.dir.path().join("templates")
    }

    /// Waits until /readyz answers 200.
    pub async fn ready(&self) {
        let ready = wait_for(Duration::from_secs(20), async || {
            matches!(admin_get(self.admin, "/readyz").await, Ok((200, _))).then_some(())
        })
        .await;
        assert!(
            ready.is_some(),
            "server never became ready:\n{}",
            self.log()
        );
    }

    pub fn client(&self) -> Client {
        Client::new(self.addr, &[self.pki.ca_der()])
    }

    pub fn sigterm(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    pub async fn metrics(&self) -> String {
        admin_get(self.admin, "/metrics").await.unwrap().1
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// GET on the plain-HTTP admin port.
pub async fn admin_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(addr).await?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await?;
    let mut out = String::new();
    s.read_to_string(&mut out).await?;
    let code = out
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((code, body))
}

#[derive(Clone)]
pub struct Client {
    pub addr: SocketAddr,
    connector: TlsConnector,
    h2_connector: TlsConnector,
}

impl Client {
    pub fn new(addr: SocketAddr, roots: &[CertificateDer<'static>]) -> Client {
        Client::with_identity(addr, roots, None)
    }

    /// A client presenting `identity` (cert PEM, key PEM) when the server
    /// asks for a certificate.
    pub fn with_identity(
        addr: SocketAddr,
        roots: &[CertificateDer<'static>],
        identity: Option<(&str, &str)>,
    ) -> Client {
        use rustls::pki_types::PrivateKeyDer;
        use rustls::pki_types::pem::PemObject;
        let _ = rustls::crypto::CryptoProvider::install_default(
            rustls::crypto::ring::default_provider(),
        );
        let mut store = rustls::RootCertStore::empty();
        for r in roots {
            store.add(r.clone()).unwrap();
        }
        let builder = rustls::ClientConfig::builder().with_root_certificates(store);
        let mut config = match identity {
            Some((cert, key)) => {
                let chain: Vec<CertificateDer<'static>> =
                    CertificateDer::pem_slice_iter(cert.as_bytes())
                        .collect::<Result<_, _>>()
                        .unwrap();
                let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
                builder.with_client_auth_cert(chain, key).unwrap()
            }
            None => builder.with_no_client_auth(),
        };
        // What the API server's webhook client offers.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        // Resumed sessions report the certificate of the original handshake;
        // rotation tests need to see what the server presents now.
        config.resumption = rustls::client::Resumption::disabled();
        let mut h2 = config.clone();
        h2.alpn_protocols = vec![b"h2".to_vec()];
        Client {
            addr,
            connector: TlsConnector::from(Arc::new(config)),
            h2_connector: TlsConnector::from(Arc::new(h2)),
        }
    }

    pub async fn tls(&self) -> std::io::Result<TlsStream<TcpStream>> {
        self.handshake(&self.connector).await
    }

    /// A TLS connection that negotiated `h2`.
    pub async fn tls_h2(&self) -> std::io::Result<TlsStream<TcpStream>> {
        let tls = self.handshake(&self.h2_connector).await?;
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        Ok(tls)
    }

    async fn handshake(&self, connector: &TlsConnector) -> std::io::Result<TlsStream<TcpStream>> {
        let tcp = TcpStream::connect(self.addr).await?;
        connector
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
    }

    /// A keep-alive HTTP/1.1 connection.
    pub async fn connect(&self) -> std::io::Result<Conn> {
        let tls = self.tls().await?;
        let peer = tls.get_ref().1.peer_certificates().map(|c| c[0].to_vec());
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(std::io::Error::other)?;
        tokio::spawn(conn);
        Ok(Conn {
            sender: Sender::Http1(sender),
            peer_cert: peer.unwrap_or_default(),
        })
    }

    /// An HTTP/2 connection (ALPN `h2`) that pings the server every `ping`
    /// while open, idle or not.
    pub async fn connect_h2(&self, ping: Duration) -> std::io::Result<Conn> {
        let tls = self.tls_h2().await?;
        let peer = tls.get_ref().1.peer_certificates().map(|c| c[0].to_vec());
        let (sender, conn) = http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .keep_alive_interval(ping)
            .keep_alive_while_idle(true)
            .handshake(TokioIo::new(tls))
            .await
            .map_err(std::io::Error::other)?;
        tokio::spawn(conn);
        Ok(Conn {
            sender: Sender::Http2(sender),
            peer_cert: peer.unwrap_or_default(),
        })
    }
}

enum Sender {
    Http1(http1::SendRequest<Full<Bytes>>),
    Http2(http2::SendRequest<Full<Bytes>>),
}

pub struct Conn {
    sender: Sender,
    pub peer_cert: Vec<u8>,
}

pub struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl Conn {
    pub async fn post(
        &mut self,
        content_type: &str,
        body: impl Into<Bytes>,
    ) -> Result<Reply, hyper::Error> {
        self.post_to("/mutate?timeout=10s", content_type, body)
            .await
    }

    pub async fn post_to(
        &mut self,
        path: &str,
        content_type: &str,
        body: impl Into<Bytes>,
    ) -> Result<Reply, hyper::Error> {
        self.send(hyper::Method::POST, path, content_type, body)
            .await
    }

    pub async fn send(
        &mut self,
        method: hyper::Method,
        path: &str,
        content_type: &str,
        body: impl Into<Bytes>,
    ) -> Result<Reply, hyper::Error> {
        // HTTP/2 carries the authority in the URI, HTTP/1.1 in `host`.
        let req = match self.sender {
            Sender::Http1(_) => hyper::Request::builder()
                .uri(path)
                .header("host", "localhost"),
            Sender::Http2(_) => hyper::Request::builder().uri(format!("https://localhost{path}")),
        }
        .method(method)
        .header("content-type", content_type)
        .body(Full::new(body.into()))
        .unwrap();
        let resp = match &mut self.sender {
            Sender::Http1(s) => {
                s.ready().await?;
                s.send_request(req).await?
            }
            Sender::Http2(s) => {
                s.ready().await?;
                s.send_request(req).await?
            }
        };
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await?.to_bytes().to_vec();
        Ok(Reply { status, body })
    }

    pub async fn review(&mut self, body: &str) -> Reply {
        self.post("application/json", body.to_string())
            .await
            .expect("request failed")
    }
}

/// The pod a response's patch produces from the request's object.
pub fn apply_response(request: &Value, response: &Value) -> Value {
    let mut pod = request["request"]["object"].clone();
    if let Some(p) = response["response"]["patch"].as_str() {
        use base64::Engine as _;
        assert_eq!(response["response"]["patchType"], "JSONPatch");
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(p)
            .expect("patch is base64");
        let patch: json_patch::Patch =
            serde_json::from_slice(&bytes).expect("patch is a JSON patch");
        json_patch::patch(&mut pod, &patch).expect("patch applies to the request's object");
    }
    pod
}
