//! `loadgen`: drives an HTTPS admission webhook with HTTP/1.1 keep-alive.
//!
//! N connections, each sending requests back to back (a closed loop, like the
//! API server's webhook client under load). Every request carries a fresh
//! `request.uid`, so the server cannot answer from a cache and both servers of
//! a comparison do the same work; every answer must be HTTP 200 and echo that
//! uid (plus any `--expect` strings). After the warm-up, latencies go into an
//! HDR histogram. Prints one JSON line on stdout.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use bytes::Bytes;
use clap::Parser;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper::header::{CONTENT_TYPE, HOST};
use hyper::{Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// A request that takes longer than this counts as an error and its
/// connection is replaced.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Parser, Debug)]
#[command(about = "HTTPS keep-alive load generator for admission webhooks")]
struct Args {
    /// Target, e.g. https://127.0.0.1:8443/mutate
    #[arg(long)]
    url: String,
    /// AdmissionReview JSON body; its request.uid is replaced on every request.
    #[arg(long)]
    body: PathBuf,
    /// Connections, each sending requests back to back.
    #[arg(long, default_value_t = 1)]
    concurrency: usize,
    /// Measured time, after the warm-up.
    #[arg(long, default_value_t = 10.0)]
    duration_secs: f64,
    /// Time before measuring starts (connections made, caches warm).
    #[arg(long, default_value_t = 2.0)]
    warmup_secs: f64,
    /// Accept any server certificate (loopback benchmarking only).
    #[arg(long, conflicts_with = "ca")]
    insecure: bool,
    /// PEM CA bundle to verify the server certificate with.
    #[arg(long)]
    ca: Option<PathBuf>,
    /// Server name for SNI and verification (default: the URL's host).
    #[arg(long)]
    server_name: Option<String>,
    /// A string every response body must contain (repeatable), e.g.
    /// '"patchType":"JSONPatch"' to insist that every request was patched.
    #[arg(long)]
    expect: Vec<String>,
    /// Label copied into the JSON output.
    #[arg(long, default_value = "")]
    label: String,
}

/// What every connection shares.
struct Shared {
    connector: TlsConnector,
    addr: String,
    server_name: ServerName<'static>,
    authority: String,
    path: String,
    /// The body split around the value of `request.uid`.
    prefix: Vec<u8>,
    suffix: Vec<u8>,
    expect: Vec<Vec<u8>>,
    warm_end: Instant,
    end: Instant,
}

#[derive(Default)]
struct Outcome {
    requests: u64,
    /// Successful requests including the warm-up (for CPU per request over
    /// the whole run).
    all_requests: u64,
    errors: u64,
    first_error: Option<String>,
    hist: Option<Histogram<u64>>,
}

impl Outcome {
    fn error(&mut self, counted: bool, message: impl FnOnce() -> String) {
        if counted {
            self.errors += 1;
            if self.first_error.is_none() {
                self.first_error = Some(message());
            }
        }
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    if args.concurrency == 0 {
        bail!("--concurrency must be at least 1");
    }
    let valid = |s: f64| s.is_finite() && s >= 0.0;
    if !valid(args.duration_secs) || args.duration_secs == 0.0 || !valid(args.warmup_secs) {
        bail!("--duration-secs must be positive and --warmup-secs not negative");
    }
    let uri: Uri = args.url.parse().context("--url")?;
    if uri.scheme_str() != Some("https") {
        bail!("--url must be https://");
    }
    let host = uri.host().ok_or_else(|| anyhow!("--url has no host"))?;
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = uri.port_u16().unwrap_or(443);
    let path = uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    let name = args.server_name.clone().unwrap_or_else(|| host.clone());
    let server_name =
        ServerName::try_from(name.clone()).with_context(|| format!("server name {name:?}"))?;

    let raw = std::fs::read(&args.body).with_context(|| format!("{}", args.body.display()))?;
    let (prefix, suffix) = split_at_uid(&raw)?;

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let mut config = if args.insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCert(
                provider.signature_verification_algorithms,
            )))
            .with_no_client_auth()
    } else {
        let Some(ca) = &args.ca else {
            bail!("give --ca FILE or --insecure");
        };
        let pem = std::fs::read(ca).with_context(|| format!("{}", ca.display()))?;
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&pem) {
            roots.add(cert.context("--ca")?).context("--ca")?;
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];

    let start = Instant::now();
    let warm_end = start + Duration::from_secs_f64(args.warmup_secs);
    let end = warm_end + Duration::from_secs_f64(args.duration_secs);
    let shared = Arc::new(Shared {
        connector: TlsConnector::from(Arc::new(config)),
        addr: format!("{host}:{port}"),
        server_name,
        authority: uri
            .authority()
            .map(|a| a.as_str().to_string())
            .unwrap_or_default(),
        path,
        prefix,
        suffix,
        expect: args.expect.iter().map(|e| e.as_bytes().to_vec()).collect(),
        warm_end,
        end,
    });

    let workers: Vec<_> = (0..args.concurrency)
        .map(|id| tokio::spawn(worker(id as u32, shared.clone())))
        .collect();
    let mut total = Outcome::default();
    let mut hist = Histogram::<u64>::new_with_bounds(1, 120_000_000, 3)?;
    // Every worker stops issuing at `end`; the last request may run up to
    // REQUEST_TIMEOUT past it, and nothing waits longer than that.
    let deadline = end + REQUEST_TIMEOUT + Duration::from_secs(5);
    for w in workers {
        let o = match tokio::time::timeout_at(deadline.into(), w).await {
            Ok(Ok(o)) => o,
            Ok(Err(e)) => bail!("worker failed: {e}"),
            Err(_) => bail!("a worker did not finish in time"),
        };
        total.requests += o.requests;
        total.all_requests += o.all_requests;
        total.errors += o.errors;
        if total.first_error.is_none() {
            total.first_error = o.first_error;
        }
        if let Some(h) = o.hist {
            hist.add(&h)?;
        }
    }
    if let Some(e) = &total.first_error {
        eprintln!("loadgen: first error: {e}");
    }
    let seconds = args.duration_secs;
    let q = |p: f64| {
        if hist.is_empty() {
            0
        } else {
            hist.value_at_quantile(p)
        }
    };
    let out = serde_json::json!({
        "label": args.label,
        "url": args.url,
        "body": args.body.display().to_string(),
        "body_bytes": raw.len(),
        "concurrency": args.concurrency,
        "duration_secs": seconds,
        "requests": total.requests,
        "all_requests": total.all_requests,
        "warmup_secs": args.warmup_secs,
        "errors": total.errors,
        "rps": (total.requests as f64 / seconds * 10.0).round() / 10.0,
        "p50_us": q(0.50),
        "p90_us": q(0.90),
        "p99_us": q(0.99),
        "max_us": hist.max(),
        "mean_us": hist.mean().round(),
    });
    println!("{out}");
    Ok(())
}

/// Splits the raw body around the string value of `request.uid`, so each
/// request gets a fresh uid while every other byte stays as captured.
fn split_at_uid(raw: &[u8]) -> anyhow::Result<(Vec<u8>, Vec<u8>)> {
    let doc: serde_json::Value = serde_json::from_slice(raw).context("body is not JSON")?;
    let uid = doc
        .pointer("/request/uid")
        .and_then(|u| u.as_str())
        .filter(|u| !u.is_empty())
        .ok_or_else(|| anyhow!("body has no request.uid"))?;
    let needle = serde_json::to_vec(uid)?;
    // The first occurrence after the "request" key; in a captured review the
    // request's uid comes before the object (whose own uid is empty on CREATE).
    let from = find(raw, b"\"request\"").ok_or_else(|| anyhow!("no \"request\" key"))?;
    let at = find(&raw[from..], &needle)
        .map(|i| i + from)
        .ok_or_else(|| anyhow!("request.uid not found in the raw body"))?;
    let prefix = raw[..at].to_vec();
    let suffix = raw[at + needle.len()..].to_vec();
    // Check the split: substituting a new uid must give request.uid == it.
    let probe = [&prefix[..], b"\"probe\"", &suffix[..]].concat();
    let doc: serde_json::Value = serde_json::from_slice(&probe)?;
    if doc.pointer("/request/uid").and_then(|u| u.as_str()) != Some("probe") {
        bail!("could not locate request.uid in the raw body");
    }
    Ok((prefix, suffix))
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

type Sender = http1::SendRequest<Full<Bytes>>;

async fn connect(s: &Shared) -> anyhow::Result<Sender> {
    let tcp = TcpStream::connect(&s.addr).await?;
    tcp.set_nodelay(true)?;
    let tls = s.connector.connect(s.server_name.clone(), tcp).await?;
    let (sender, conn) = http1::handshake(TokioIo::new(tls)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

async fn worker(id: u32, s: Arc<Shared>) -> Outcome {
    let mut out = Outcome {
        hist: Histogram::new_with_bounds(1, 120_000_000, 3).ok(),
        ..Outcome::default()
    };
    let mut seq: u64 = 0;
    'connections: while Instant::now() < s.end {
        let mut sender = match tokio::time::timeout(CONNECT_TIMEOUT, connect(&s)).await {
            Ok(Ok(sender)) => sender,
            Ok(Err(e)) => {
                out.error(Instant::now() >= s.warm_end, || format!("connect: {e:#}"));
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
            Err(_) => {
                out.error(Instant::now() >= s.warm_end, || "connect timed out".into());
                continue;
            }
        };
        loop {
            let t0 = Instant::now();
            if t0 >= s.end {
                break 'connections;
            }
            seq += 1;
            // Same length and shape as a Kubernetes uid.
            let uid = format!("{id:08x}-0000-4000-8000-{seq:012x}");
            let mut body = Vec::with_capacity(s.prefix.len() + uid.len() + 2 + s.suffix.len());
            body.extend_from_slice(&s.prefix);
            body.push(b'"');
            body.extend_from_slice(uid.as_bytes());
            body.push(b'"');
            body.extend_from_slice(&s.suffix);
            let req = Request::post(s.path.as_str())
                .header(HOST, s.authority.as_str())
                .header(CONTENT_TYPE, "application/json")
                .body(Full::new(Bytes::from(body)))
                .expect("valid request");
            let result = tokio::time::timeout(REQUEST_TIMEOUT, async {
                sender.ready().await?;
                let resp = sender.send_request(req).await?;
                let status = resp.status();
                let bytes = resp.into_body().collect().await?.to_bytes();
                Ok::<_, hyper::Error>((status, bytes))
            })
            .await;
            let elapsed = t0.elapsed();
            let counted = t0 >= s.warm_end;
            match result {
                Ok(Ok((status, bytes))) => {
                    let ok = status == StatusCode::OK
                        && find(&bytes, uid.as_bytes()).is_some()
                        && s.expect.iter().all(|e| find(&bytes, e).is_some());
                    if !ok {
                        out.error(counted, || {
                            format!(
                                "HTTP {status}: {}",
                                String::from_utf8_lossy(&bytes[..bytes.len().min(300)])
                            )
                        });
                    } else {
                        out.all_requests += 1;
                        if counted {
                            out.requests += 1;
                            if let Some(h) = out.hist.as_mut() {
                                let _ = h.record((elapsed.as_micros() as u64).max(1));
                            }
                        }
                    }
                }
                Ok(Err(e)) => {
                    out.error(counted, || format!("request: {e}"));
                    continue 'connections;
                }
                Err(_) => {
                    out.error(counted, || "request timed out".into());
                    continue 'connections;
                }
            }
        }
    }
    out
}

/// Trusts any certificate; signatures are still checked so the handshake
/// does the same work as a verifying client's.
#[derive(Debug)]
struct AnyCert(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}
