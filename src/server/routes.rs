//! HTTP routes: `/mutate` and `/validate` on the TLS port; `/livez`,
//! `/readyz`, `/metrics` on the admin port.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::Poll;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, StatusCode};

use super::AppState;
use crate::admission::{self, Context};
use crate::engine::{self, Verdict};

/// A client that sends its body slower than this is cut off.
const BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// Every answer of both ports: a body in one piece.
type Response = hyper::Response<Full<Bytes>>;

/// The webhook port: `POST /mutate` and `POST /validate`, nothing else.
/// Plain hyper rather than a router: two paths do not need one, and a
/// router's per-request work (a boxed body, an extensions map, the matched
/// path) cost a small admission 3 K instructions and 230 instruction-cache
/// misses (bench/README.md, "Third round").
pub(super) async fn webhook(
    state: Arc<AppState>,
    req: Request<Incoming>,
) -> Result<Response, Infallible> {
    let mutating = match req.uri().path() {
        "/mutate" => true,
        "/validate" => false,
        _ => return Ok(plain(StatusCode::NOT_FOUND, "not found".into())),
    };
    if req.method() != Method::POST {
        let mut r = plain(StatusCode::METHOD_NOT_ALLOWED, "use POST".into());
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
        return Ok(r);
    }
    Ok(if mutating {
        mutate(&state, req).await
    } else {
        validate(&state, req).await
    })
}

pub(super) fn admin(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/livez", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

fn respond(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Response {
    let mut r = hyper::Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

fn plain(status: StatusCode, message: String) -> Response {
    respond(status, "text/plain; charset=utf-8", message + "\n")
}

/// Reads a JSON body within the size and time limits, or says why not.
async fn read_body(state: &AppState, req: Request<Incoming>) -> Result<Bytes, Response> {
    let json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
        });
    if !json {
        return Err(plain(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "content type must be application/json".into(),
        ));
    }
    let limited = Limited::new(req.into_body(), state.max_body_bytes);
    let mut collect = std::pin::pin!(limited.collect());
    // A review usually arrives with its headers: read what is there before
    // arming a timer, which would cost every admission a timer-wheel entry.
    let first = std::future::poll_fn(|cx| Poll::Ready(collect.as_mut().poll(cx))).await;
    let collected = match first {
        Poll::Ready(done) => Ok(done),
        Poll::Pending => tokio::time::timeout(BODY_TIMEOUT, collect).await,
    };
    match collected {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => {
            let m = format!(
                "body larger than {} bytes (--max-body-bytes)",
                state.max_body_bytes
            );
            Err(plain(StatusCode::PAYLOAD_TOO_LARGE, m))
        }
        Ok(Err(e)) => Err(plain(
            StatusCode::BAD_REQUEST,
            format!("cannot read body: {e}"),
        )),
        Err(_) => Err(plain(
            StatusCode::REQUEST_TIMEOUT,
            "body not received in time".into(),
        )),
    }
}

async fn mutate(state: &AppState, req: Request<Incoming>) -> Response {
    let start = Instant::now();
    let body = match read_body(state, req).await {
        Ok(b) => b,
        Err(response) => {
            state.metrics.request(
                admission::Outcome::Invalid.as_str(),
                start.elapsed().as_secs_f64(),
            );
            return response;
        }
    };
    let templates = state.templates.load();
    let capabilities = state.capabilities.load();
    let ctx = Context {
        templates: &templates,
        namespaces: state.namespaces.as_ref(),
        capabilities: &capabilities,
        policy: &state.policy,
    };
    finish(state, start, admission::review(&body, &ctx))
}

async fn validate(state: &AppState, req: Request<Incoming>) -> Response {
    let start = Instant::now();
    match read_body(state, req).await {
        Ok(body) => finish(state, start, admission::validate_template(&body)),
        Err(response) => response,
    }
}

fn finish(
    state: &AppState,
    start: Instant,
    result: Result<admission::Answer, admission::ReviewError>,
) -> Response {
    match result {
        Ok(answer) => {
            let seconds = start.elapsed().as_secs_f64();
            state.metrics.request(answer.outcome.as_str(), seconds);
            record(state, answer.decision.as_ref());
            log(&answer, seconds);
            if let (Some(events), Some(notice)) = (&state.events, answer.notice) {
                // A full queue drops the event rather than slowing admission.
                let _ = events.try_send(notice);
            }
            respond(StatusCode::OK, "application/json", answer.body)
        }
        Err(e) => {
            state.metrics.request(
                admission::Outcome::Invalid.as_str(),
                start.elapsed().as_secs_f64(),
            );
            tracing::warn!(error = %e, "rejected a request that is not an AdmissionReview");
            plain(StatusCode::BAD_REQUEST, e.to_string())
        }
    }
}

/// Injections and skips, by template and by reason.
fn record(state: &AppState, decision: Option<&crate::engine::Decision>) {
    let Some(d) = decision else {
        return;
    };
    for t in &d.templates {
        if let Verdict::Injected { .. } = t.verdict {
            state.metrics.injected(&t.name);
        } else if let Some(reason) = t.verdict.skip_reason() {
            state.metrics.skipped(reason);
        }
    }
    // A pod stopped at a gate has no template verdicts: its reason is the skip.
    if let engine::Outcome::Unchanged { reason } = d.outcome
        && d.templates.is_empty()
    {
        state.metrics.skipped(reason);
    }
}

/// The one log line per admission.
fn log(answer: &admission::Answer, seconds: f64) {
    tracing::info!(
        uid = %answer.uid,
        namespace = %answer.namespace,
        name = %answer.name,
        operation = %answer.operation,
        dry_run = answer.dry_run,
        outcome = answer.outcome.as_str(),
        decision = %answer.note,
        duration_us = (seconds * 1e6) as u64,
        "admission"
    );
}

async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    let mut missing: Vec<String> = Vec::new();
    if !state.templates_ready.load(Ordering::Acquire) {
        missing.push("templates".into());
    }
    if !state.cluster_synced.load(Ordering::Acquire) {
        let problems = state.watch_problems();
        missing.push(if problems.is_empty() {
            "cluster caches".into()
        } else {
            format!("cluster caches ({})", problems.join("; "))
        });
    }
    if !state.certs.is_loaded() {
        missing.push("certificate".into());
    }
    if state.shutting_down.load(Ordering::Acquire) {
        missing.push("shutting down".into());
    }
    if missing.is_empty() {
        plain(StatusCode::OK, "ready".into())
    } else {
        plain(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {}", missing.join(", ")),
        )
    }
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    respond(
        StatusCode::OK,
        "application/openmetrics-text; version=1.0.0; charset=utf-8",
        state.metrics.render(),
    )
}
