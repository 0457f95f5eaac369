//! Slow-client deadlines for HTTP/1.1 connections, kept off the per-request
//! path.
//!
//! hyper's own `header_read_timeout` closes a connection idle for 10 s
//! between requests, under the API server, whose webhook client keeps idle
//! connections for 90 s and can send a review into one just as it is closed.
//! It also arms a new boxed timer every time a kept-alive connection waits
//! for its next request (bench/README.md, "Sixth round").
//!
//! Here each connection keeps one atomic word saying whether it is idle,
//! receiving a request's headers or serving a request, and since when; one
//! sleep per connection looks at it every few seconds and cuts the
//! connection once a deadline has passed.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::Incoming;
use hyper::service::Service;
use hyper::{Request, Response, Version};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

/// From the first byte of a request (or from the handshake, for a
/// connection's first request) to the end of its headers.
const HEADERS: Duration = Duration::from_secs(10);
/// Between requests: longer than the API server's 90 s idle pool, so that it
/// is the client that closes an idle connection, never a race. A connection
/// that has never sent a request gets `HEADERS` only.
const IDLE: Duration = Duration::from_secs(120);
/// How often the deadlines are looked at: a stalled header is cut between
/// `HEADERS` and `HEADERS + CHECK` after its first byte.
const CHECK: Duration = Duration::from_secs(2);

/// What an HTTP/1.1 connection is doing, and since when (milliseconds since
/// the connection began), packed into one word: the top two bits say what.
pub(super) struct Clock {
    start: Instant,
    state: AtomicU64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Idle,
    Receiving,
    Serving,
    /// Not HTTP/1.1 after all: HTTP/2 has its own flow control and pings,
    /// and streams that are idle or slow are its business.
    Exempt,
}

const SHIFT: u32 = 62;
const SINCE: u64 = (1 << SHIFT) - 1;

impl Phase {
    fn bits(self) -> u64 {
        (match self {
            Phase::Idle => 0,
            Phase::Receiving => 1,
            Phase::Serving => 2,
            Phase::Exempt => 3,
        }) << SHIFT
    }

    fn of(word: u64) -> Phase {
        match word >> SHIFT {
            0 => Phase::Idle,
            1 => Phase::Receiving,
            2 => Phase::Serving,
            _ => Phase::Exempt,
        }
    }
}

/// Which deadline cut a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Expired {
    Headers,
    Idle,
}

impl Clock {
    pub(super) fn new() -> Arc<Clock> {
        Arc::new(Clock {
            start: Instant::now(),
            state: AtomicU64::new(Phase::Receiving.bits()),
        })
    }

    fn now(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(SINCE) & SINCE
    }

    fn set(&self, phase: Phase) {
        // Serving has no deadline here (the route's body timeout has its
        // own): no need to read the clock for it on every admission.
        let since = if phase == Phase::Serving {
            0
        } else {
            self.now()
        };
        let word = phase.bits() | since;
        // Exempt is for good: an HTTP/2 stream ending must not re-arm it.
        let _ = self
            .state
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |w| {
                (Phase::of(w) != Phase::Exempt).then_some(word)
            });
    }

    /// HTTP/2 connections are never cut by these deadlines once they have
    /// sent a request.
    fn exempt(&self) {
        self.state.store(Phase::Exempt.bits(), Ordering::Relaxed);
    }

    fn bytes_arrived(&self) {
        // Only the first bytes after a response start the header deadline;
        // body bytes (Serving) belong to the route's own body timeout.
        if Phase::of(self.state.load(Ordering::Relaxed)) == Phase::Idle {
            self.set(Phase::Receiving);
        }
    }

    /// Resolves once the connection has outstayed a deadline; never for an
    /// exempt one.
    pub(super) async fn expired(&self) -> Expired {
        let sleep = tokio::time::sleep(CHECK);
        tokio::pin!(sleep);
        loop {
            sleep.as_mut().await;
            let word = self.state.load(Ordering::Relaxed);
            let since = self.start + Duration::from_millis(word & SINCE);
            let limit = match Phase::of(word) {
                Phase::Idle => Some((IDLE, Expired::Idle)),
                Phase::Receiving => Some((HEADERS, Expired::Headers)),
                Phase::Serving => None,
                Phase::Exempt => return std::future::pending().await,
            };
            if let Some((limit, why)) = limit
                && Instant::now() >= since + limit
            {
                return why;
            }
            sleep.as_mut().reset(Instant::now() + CHECK);
        }
    }
}

/// The connection's byte stream, noting when a request's first bytes arrive.
pub(super) struct Watched<T> {
    inner: T,
    clock: Arc<Clock>,
}

impl<T> Watched<T> {
    pub(super) fn new(inner: T, clock: Arc<Clock>) -> Self {
        Watched { inner, clock }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.clock.bytes_arrived();
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The service, noting when a request's headers are complete (hyper calls
/// it) and when its answer is ready (its future resolves).
#[derive(Clone)]
pub(super) struct Timed<S> {
    inner: S,
    clock: Arc<Clock>,
}

impl<S> Timed<S> {
    pub(super) fn new(inner: S, clock: Arc<Clock>) -> Self {
        Timed { inner, clock }
    }
}

impl<S, B> Service<Request<Incoming>> for Timed<S>
where
    S: Service<Request<Incoming>, Response = Response<B>>,
{
    type Response = Response<B>;
    type Error = S::Error;
    type Future = Answering<S::Future>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        if req.version() == Version::HTTP_2 {
            self.clock.exempt();
        } else {
            self.clock.set(Phase::Serving);
        }
        Answering {
            inner: self.inner.call(req),
            clock: self.clock.clone(),
        }
    }
}

pin_project_lite::pin_project! {
    /// A request being served; the connection turns idle when it resolves.
    pub(super) struct Answering<F> {
        #[pin]
        inner: F,
        clock: Arc<Clock>,
    }
}

impl<F: Future> Future for Answering<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let out = std::task::ready!(this.inner.poll(cx));
        this.clock.set(Phase::Idle);
        Poll::Ready(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(clock: &Clock) -> Phase {
        Phase::of(clock.state.load(Ordering::Relaxed))
    }

    #[test]
    fn phases_round_trip_through_the_word() {
        for p in [Phase::Idle, Phase::Receiving, Phase::Serving, Phase::Exempt] {
            assert_eq!(Phase::of(p.bits() | SINCE), p);
        }
    }

    #[test]
    fn only_the_first_bytes_after_an_answer_start_the_header_deadline() {
        let clock = Clock::new();
        assert_eq!(at(&clock), Phase::Receiving, "the first request is due");
        clock.bytes_arrived();
        assert_eq!(at(&clock), Phase::Receiving);
        clock.set(Phase::Serving);
        clock.bytes_arrived();
        assert_eq!(at(&clock), Phase::Serving, "body bytes are not headers");
        clock.set(Phase::Idle);
        assert_eq!(at(&clock), Phase::Idle);
        clock.exempt();
        clock.set(Phase::Serving);
        clock.bytes_arrived();
        assert_eq!(at(&clock), Phase::Exempt, "HTTP/2 stays exempt");
    }

    #[tokio::test(start_paused = true)]
    async fn stalled_headers_are_cut_after_the_header_deadline() {
        let clock = Clock::new();
        clock.bytes_arrived();
        let started = Instant::now();
        assert_eq!(clock.expired().await, Expired::Headers);
        let waited = started.elapsed();
        assert!(waited >= HEADERS && waited <= HEADERS + CHECK, "{waited:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_that_never_sends_a_request_is_cut_at_the_header_deadline() {
        let clock = Clock::new();
        let started = Instant::now();
        assert_eq!(clock.expired().await, Expired::Headers);
        assert!(started.elapsed() <= HEADERS + CHECK);
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_connection_outlives_the_header_deadline() {
        let clock = Clock::new();
        clock.set(Phase::Serving);
        clock.set(Phase::Idle);
        let started = Instant::now();
        assert_eq!(clock.expired().await, Expired::Idle);
        let waited = started.elapsed();
        assert!(waited >= IDLE && waited <= IDLE + CHECK, "{waited:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_being_served_and_an_http2_connection_are_never_cut() {
        let serving = Clock::new();
        serving.bytes_arrived();
        serving.set(Phase::Serving);
        let h2 = Clock::new();
        h2.exempt();
        let hour = tokio::time::sleep(Duration::from_secs(3600));
        tokio::select! {
            why = serving.expired() => panic!("cut while serving: {why:?}"),
            why = h2.expired() => panic!("HTTP/2 cut: {why:?}"),
            () = hour => {}
        }
    }

    #[tokio::test(start_paused = true)]
    async fn each_answer_restarts_the_idle_deadline() {
        let clock = Clock::new();
        clock.set(Phase::Idle);
        let busy = async {
            for _ in 0..5 {
                tokio::time::sleep(IDLE / 2).await;
                clock.bytes_arrived();
                clock.set(Phase::Serving);
                clock.set(Phase::Idle);
            }
            Instant::now()
        };
        tokio::pin!(busy);
        let last = tokio::select! {
            why = clock.expired() => panic!("cut while in use: {why:?}"),
            last = &mut busy => last,
        };
        assert_eq!(clock.expired().await, Expired::Idle);
        assert!(last.elapsed() >= IDLE);
    }
}
