//! `reference-server`: the floor Tandem is measured against.
//!
//! It does only what any admission webhook must: TLS (rustls with ring, TLS 1.2
//! and 1.3, ALPN http/1.1), HTTP/1.1 with keep-alive (hyper), reading the body
//! and parsing it as JSON (`serde_json::Value`), then it answers a fixed
//! "allowed" AdmissionReview echoing `request.uid`. No routing framework, no
//! decision, no patch, no metrics, no logs. Same runtime as `tandem serve`
//! (multi-threaded tokio, one task per connection, TCP_NODELAY). The system
//! allocator, unless built with the `mimalloc` feature (Tandem's allocator).

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

#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The same body limit as tandem's default.
const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

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

#[tokio::main]
async fn main() -> anyhow::Result<()> {
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
    eprintln!("reference-server listening on {}", listener.local_addr()?);
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
                .serve_connection(TokioIo::new(tls), service_fn(handle))
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

async fn handle(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
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
    let doc: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            let m = format!("body is not valid JSON: {e}\n").into_bytes();
            return Ok(reply(StatusCode::BAD_REQUEST, "text/plain", m));
        }
    };
    let uid = doc
        .pointer("/request/uid")
        .and_then(serde_json::Value::as_str)
        .unwrap_or_default();
    let answer = serde_json::json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "response": {"uid": uid, "allowed": true},
    });
    let out = serde_json::to_vec(&answer).unwrap_or_default();
    Ok(reply(StatusCode::OK, "application/json", out))
}
