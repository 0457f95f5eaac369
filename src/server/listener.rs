//! The TLS accept loop: TCP_NODELAY, a connection limit, a handshake timeout
//! and the HTTP/1.1 deadlines (`deadline.rs`) so slow clients cannot hold
//! connections, and a graceful drain on shutdown.

use std::sync::Arc;
use std::time::Duration;

use hyper::body::{Body, Incoming};
use hyper::service::Service;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio_rustls::TlsAcceptor;
use tracing::Instrument;

use super::deadline::{Clock, Timed, Watched};
use super::tls;

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

pub(super) struct Limits {
    pub max_connections: usize,
    pub grace: Duration,
}

/// What refused connections are counted in.
pub(super) struct Refusals {
    /// Closed on arrival because `max_connections` were open.
    pub over_limit: prometheus_client::metrics::counter::Counter,
    /// Handshakes failed over the client certificate, by reason.
    pub client_auth: prometheus_client::metrics::family::Family<
        [(&'static str, &'static str); 1],
        prometheus_client::metrics::counter::Counter,
    >,
}

/// Serves `service` over TLS until `shutdown` turns true, then waits up to
/// `limits.grace` for in-flight requests to finish.
pub(super) async fn serve_tls<S, B>(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    service: S,
    limits: Limits,
    refused: Refusals,
    mut shutdown: watch::Receiver<bool>,
) where
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.wait_for(|stop| *stop) => break,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            // Counted, not logged at warn: a flood would flood the log too.
            refused.over_limit.inc();
            tracing::debug!(%peer, max = limits.max_connections, "connection limit reached; closing new connection");
            drop(stream);
            continue;
        };
        // Without it, Nagle plus delayed ACKs stall responses by ~40 ms.
        let _ = stream.set_nodelay(true);
        let acceptor = acceptor.clone();
        let service = service.clone();
        let watcher = graceful.watcher();
        let client_auth = refused.client_auth.clone();
        // Debug level: at the default info, a connection costs no span.
        let span = tracing::debug_span!("connection", %peer);
        tokio::spawn(
            async move {
            let _permit = permit;
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    if let Some(reason) = tls::client_auth_failure(&e) {
                        client_auth.get_or_create(&[("reason", reason)]).inc();
                        tracing::warn!(%peer, reason, error = %e, "client certificate refused");
                    } else {
                        tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    }
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            let clock = Clock::new();
            let mut builder = auto::Builder::new(TokioExecutor::new());
            if tls.get_ref().1.alpn_protocol() == Some(b"h2") {
                // Held to it: a client that negotiated h2 and then speaks
                // HTTP/1.1 would otherwise be served without any deadline.
                // Its first request exempts it (`Timed`); until then it is
                // held to the header deadline like any other.
                builder = builder.http2_only();
            }
            // No timer on HTTP/1: with one, hyper arms its own header
            // timeout (30 s by default) per request; `clock` replaces it.
            builder.http1().keep_alive(true);
            builder.http2().timer(TokioTimer::new());
            let io = TokioIo::new(Watched::new(tls, clock.clone()));
            let conn = builder
                .serve_connection(io, Timed::new(service, clock.clone()))
                .into_owned();
            tokio::select! {
                served = watcher.watch(conn) => {
                    if let Err(e) = served {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                }
                why = clock.expired() => tracing::debug!(%peer, ?why, "deadline passed; connection closed"),
            }
        }
            .instrument(span),
        );
    }
    drop(listener);
    // Every connection task holds a permit until it ends, including those
    // still in their TLS handshake (not yet known to `graceful`): holding
    // them all means nothing is in flight.
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    let drained = async {
        graceful.shutdown().await;
        let _ = permits.acquire_many(all).await;
    };
    tokio::select! {
        _ = drained => tracing::info!("all connections drained"),
        _ = tokio::time::sleep(limits.grace) => tracing::warn!("grace period over; closing remaining connections"),
    }
}
