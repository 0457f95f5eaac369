//! The servers Tandem is measured against (`reference-server`, `floor-server`).
//!
//! They do only what any admission webhook must: TLS (rustls with ring, TLS 1.2
//! and 1.3, ALPN http/1.1), HTTP/1.1 with keep-alive (hyper), reading the body
//! and reading it as JSON, then they answer a fixed "allowed" AdmissionReview
//! echoing `request.uid`. No routing framework, no decision, no patch, no
//! metrics, no logs. Same runtime as `tandem serve` (multi-threaded tokio, one
//! task per connection, TCP_NODELAY).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::CONTENT_TYPE;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ServerConfig, version};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// The same body limit as tandem's default.
const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// How a body is read. Each binary builds one of them, hence the allow.
#[allow(dead_code)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parse {
    /// Into a `serde_json::Value`, as a webhook that looks at the pod must.
    Full,
    /// Validated as JSON while building nothing but the uid (serde's
    /// `IgnoredAny` for everything else): the floor under any JSON webhook.
    Validate,
}

#[derive(Parser, Debug)]
#[command(about = "Minimal TLS + HTTP/1.1 + JSON admission server (benchmark reference)")]
struct Args {
    #[arg(long, default_value = "127.0.0.1:8444")]
    listen: SocketAddr,
    #[arg(long)]
    tls_cert: PathBuf,
    #[arg(long)]
    tls_key: PathBuf,
}

/// Parses the command line and serves until killed.
pub fn main(parse: Parse) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(serve(parse))
}

async fn serve(parse: Parse) -> anyhow::Result<()> {
    let args = Args::parse();
    let cert_pem =
        std::fs::read(&args.tls_cert).with_context(|| format!("{}", args.tls_cert.display()))?;
    let key_pem =
        std::fs::read(&args.tls_key).with_context(|| format!("{}", args.tls_key.display()))?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .context("--tls-cert")?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).context("--tls-key")?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&version::TLS13, &version::TLS12])?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(config));

    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    eprintln!("{parse:?} server listening on {}", listener.local_addr()?);
    loop {
        let (stream, _peer) = match listener.accept().await {
            Ok(a) => a,
            Err(e) => {
                eprintln!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let Ok(Ok(tls)) =
                tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await
            else {
                return;
            };
            let _ = http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(tls), service_fn(move |r| handle(r, parse)))
                .await;
        });
    }
}

fn reply(status: StatusCode, content_type: &'static str, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, content_type.parse().expect("static header"));
    resp
}

async fn handle(req: Request<Incoming>, parse: Parse) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.method() != Method::POST || req.uri().path() != "/mutate" {
        return Ok(reply(
            StatusCode::NOT_FOUND,
            "text/plain",
            b"not found\n".to_vec(),
        ));
    }
    let body = match Limited::new(req.into_body(), MAX_BODY_BYTES)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            let m = format!("cannot read body: {e}\n").into_bytes();
            return Ok(reply(StatusCode::BAD_REQUEST, "text/plain", m));
        }
    };
    let uid = match parse {
        Parse::Full => serde_json::from_slice::<serde_json::Value>(&body).map(|doc| {
            doc.pointer("/request/uid")
                .and_then(serde_json::Value::as_str)
                .unwrap_or_default()
                .to_string()
        }),
        Parse::Validate => serde_json::from_slice::<UidOnly>(&body)
            .map(|r| r.request.and_then(|r| r.uid).unwrap_or_default()),
    };
    let uid = match uid {
        Ok(uid) => uid,
        Err(e) => {
            let m = format!("body is not valid JSON: {e}\n").into_bytes();
            return Ok(reply(StatusCode::BAD_REQUEST, "text/plain", m));
        }
    };
    let answer = serde_json::json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "response": {"uid": uid, "allowed": true},
    });
    let out = serde_json::to_vec(&answer).unwrap_or_default();
    Ok(reply(StatusCode::OK, "application/json", out))
}

/// An AdmissionReview read for its uid alone; serde skips every other field
/// with `IgnoredAny`, checking it is JSON without building it.
#[derive(serde::Deserialize)]
struct UidOnly {
    request: Option<RequestUid>,
}

#[derive(serde::Deserialize)]
struct RequestUid {
    uid: Option<String>,
}
