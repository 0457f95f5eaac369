//! The bad-input battery: whatever a client sends, or fails to send, it gets
//! a clear answer or is cut off, and a well-formed request right after works.

mod common;
mod harness;

use std::time::{Duration, Instant};

use common::fixture_text;
use common::run::wait_for;
use harness::{Conn, Options, Server, apply_response};
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

async fn good_request_succeeds(server: &Server) {
    let body = fixture_text("admission-v1.36/create.json");
    let mut conn = server
        .client()
        .connect()
        .await
        .expect("server still accepts connections");
    let reply = conn.review(&body).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["response"]["allowed"], true);
}

/// Reads until the peer closes; true when it did within `limit`.
async fn closed_within<S: AsyncRead + Unpin>(stream: &mut S, limit: Duration) -> bool {
    let mut buf = [0u8; 1024];
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

/// Writes a byte to each stream every half second, as a slow-loris client
/// sends its headers; true when the server has cut every one within `limit`.
async fn all_cut_while_dripping<S: AsyncWrite + Unpin>(
    mut streams: Vec<S>,
    limit: Duration,
) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        let mut open = Vec::new();
        for mut s in streams {
            // A write can still succeed once after the server closed; the
            // next one meets the reset.
            if s.write_all(b"X").await.is_ok() && s.flush().await.is_ok() {
                open.push(s);
            }
        }
        streams = open;
        if streams.is_empty() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    false
}

/// Starts a request's headers and leaves them unfinished.
async fn begin_headers<S: AsyncWrite + Unpin>(mut stream: S) -> S {
    stream
        .write_all(b"POST /mutate HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    stream
}

/// Reviews the captured pod, waits `pause` on the same connection, then sends
/// the patched pod back: it is answered, with nothing more to patch.
async fn patch_then_reinvoke_after(conn: &mut Conn, pause: Duration) {
    let request: Value =
        serde_json::from_str(&fixture_text("admission-v1.36/create.json")).unwrap();
    let first = conn.review(&request.to_string()).await;
    assert_eq!(first.status, 200, "{}", first.text());
    let pod = apply_response(&request, &first.json());
    assert!(
        pod["spec"]["initContainers"]
            .as_array()
            .is_some_and(|c| !c.is_empty()),
        "nothing injected: {pod}"
    );
    tokio::time::sleep(pause).await;
    let mut again = request.clone();
    again["request"]["object"] = pod;
    let second = conn.review(&again.to_string()).await;
    assert_eq!(second.status, 200, "{}", second.text());
    let second = second.json();
    assert_eq!(second["response"]["allowed"], true);
    assert!(
        second["response"]["patch"].is_null(),
        "second pass patched: {second}"
    );
}

/// Reads one HTTP/1.1 response with a `content-length`.
async fn read_response<S: AsyncRead + Unpin>(stream: &mut S) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = stream.read(&mut buf).await.expect("response");
        assert!(
            n > 0,
            "closed before a full response: {}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let length: usize = text[..end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap())
                })
                .expect("content-length");
            if got.len() >= end + 4 + length {
                return text;
            }
        }
    }
}

#[tokio::test]
async fn odd_bodies_get_clear_answers() {
    let server = Server::start(Options::default());
    server.ready().await;
    let request: Value =
        serde_json::from_str(&fixture_text("admission-v1.36/create.json")).unwrap();
    let uid = request["request"]["uid"].clone();
    let mut truncated = fixture_text("admission-v1.36/create.json");
    truncated.truncate(truncated.len() / 2);
    let mut no_uid = request.clone();
    no_uid["request"].as_object_mut().unwrap().remove("uid");
    let mut huge_name = request.clone();
    huge_name["request"]["object"]["spec"]["containers"][0]["name"] = json!("n".repeat(1 << 20));
    let mut bad_status = request.clone();
    bad_status["request"]["object"]["metadata"]["annotations"] =
        json!({"tandem.dev/status": "{not json", "tandem.dev/inject": "log-shipper"});
    let mut wrong_kind = request.clone();
    wrong_kind["kind"] = json!("ConfigMap");

    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("truncated JSON", truncated.into_bytes(), 400),
        ("non-UTF-8 bytes", b"{\"kind\": \"\xff\xfe\"}".to_vec(), 400),
        ("missing uid", no_uid.to_string().into_bytes(), 400),
        ("10 MiB body", vec![b' '; 10 << 20], 413),
        ("wrong kind", wrong_kind.to_string().into_bytes(), 200),
        (
            "1 MiB container name",
            huge_name.to_string().into_bytes(),
            200,
        ),
        (
            "status annotation not JSON",
            bad_status.to_string().into_bytes(),
            200,
        ),
    ];
    for (what, body, status) in cases {
        let mut conn = server.client().connect().await.unwrap();
        match conn.post("application/json", body).await {
            Ok(reply) => {
                assert_eq!(
                    reply.status,
                    status,
                    "{what}: {}",
                    &reply.text()[..reply.text().len().min(300)]
                );
                if status == 200 {
                    assert_eq!(reply.json()["response"]["uid"], uid, "{what}");
                }
            }
            // A 10 MiB body may be cut off mid-upload once the answer is sent.
            Err(e) => assert_eq!(status, 413, "{what}: {e}"),
        }
        good_request_succeeds(&server).await;
    }

    // Wrong paths and methods are answered on the same connection, which
    // goes on serving reviews.
    let mut conn = server.client().connect().await.unwrap();
    let review = fixture_text("admission-v1.36/create.json");
    for (method, path, status) in [
        (hyper::Method::GET, "/mutate", 405),
        (hyper::Method::PUT, "/validate", 405),
        (hyper::Method::POST, "/mutate/", 404),
        (hyper::Method::POST, "/metrics", 404),
    ] {
        let reply = conn
            .send(method.clone(), path, "application/json", review.clone())
            .await
            .unwrap();
        assert_eq!(reply.status, status, "{method} {path}: {}", reply.text());
    }
    let r = conn.review(&review).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["response"]["uid"], uid);

    // The invalid status is reported and the pod still gets its template.
    let mut conn = server.client().connect().await.unwrap();
    let r = conn.review(&bad_status.to_string()).await.json();
    let warnings = r["response"]["warnings"].to_string();
    assert!(
        warnings.contains("tandem.dev/status is not valid"),
        "{warnings}"
    );
    assert!(
        r["response"]["auditAnnotations"]["decision"]
            .as_str()
            .unwrap()
            .contains("injected=log-shipper")
    );
}

#[tokio::test]
async fn slow_and_silent_clients_are_cut_off_without_blocking_others() {
    let server = Server::start(Options::default());
    server.ready().await;
    // Clients that connect and never start TLS.
    let mut silent = Vec::new();
    for _ in 0..20 {
        silent.push(TcpStream::connect(server.addr).await.unwrap());
    }
    // Clients that finish TLS, then send headers one byte at a time (slow loris).
    let mut loris = Vec::new();
    for _ in 0..5 {
        loris.push(begin_headers(server.client().tls().await.unwrap()).await);
    }
    // Clients that negotiate h2, then drip HTTP/1.1 as well.
    let mut posing = Vec::new();
    for _ in 0..3 {
        posing.push(begin_headers(server.client().tls_h2().await.unwrap()).await);
    }
    // Clients that finish TLS and say nothing, over HTTP/1.1 or h2.
    let mut mute = Vec::new();
    for _ in 0..3 {
        mute.push(server.client().tls().await.unwrap());
        mute.push(server.client().tls_h2().await.unwrap());
    }
    // The header deadline is 10 s, checked every 2 s.
    let limit = Duration::from_secs(16);
    let loris = tokio::spawn(all_cut_while_dripping(loris, limit));
    let posing = tokio::spawn(all_cut_while_dripping(posing, limit));
    let mute = tokio::spawn(async move {
        for s in mute.iter_mut() {
            if !closed_within(s, limit).await {
                return false;
            }
        }
        true
    });
    // Others are served meanwhile.
    good_request_succeeds(&server).await;

    // The handshake timeout closes the silent ones...
    for s in silent.iter_mut() {
        assert!(
            closed_within(s, Duration::from_secs(8)).await,
            "silent client not cut off"
        );
    }
    // ...and the header deadline the slow and the mute ones.
    assert!(loris.await.unwrap(), "slow-loris clients were not cut off");
    assert!(
        posing.await.unwrap(),
        "h2 clients speaking HTTP/1.1 were not cut off"
    );
    assert!(
        mute.await.unwrap(),
        "clients silent after TLS were not cut off"
    );
    good_request_succeeds(&server).await;
}

/// The header deadline applies to every request on a kept-alive connection,
/// not only the first: after an answer, the next request's headers must come
/// in time too.
#[tokio::test]
async fn a_kept_alive_connection_stalling_its_next_request_is_cut_off() {
    let server = Server::start(Options::default());
    server.ready().await;
    let mut tls = server.client().tls().await.unwrap();
    tls.write_all(b"GET /no-such-path HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let answer = read_response(&mut tls).await;
    assert!(answer.starts_with("HTTP/1.1 4"), "{answer}");
    let tls = begin_headers(tls).await;
    assert!(
        all_cut_while_dripping(vec![tls], Duration::from_secs(16)).await,
        "the second request's stalled headers were not cut off"
    );
}

/// The API server keeps idle webhook connections for 90 s: one it reuses
/// after a pause longer than the header timeout must still be open, or it
/// may send its next review into a connection being closed.
#[tokio::test]
async fn a_kept_alive_connection_idle_past_the_header_timeout_still_answers() {
    let server = Server::start(Options::default());
    server.ready().await;
    let mut conn = server.client().connect().await.unwrap();
    patch_then_reinvoke_after(&mut conn, Duration::from_secs(14)).await;
}

/// HTTP/2 has its own flow control and pings: the HTTP/1.1 deadlines must
/// never cut it. Pings every second would look like a request's headers
/// stalling past the 10 s header deadline if they applied.
#[tokio::test]
async fn an_http2_connection_pinging_while_idle_is_not_cut() {
    let server = Server::start(Options::default());
    server.ready().await;
    let mut conn = server
        .client()
        .connect_h2(Duration::from_secs(1))
        .await
        .unwrap();
    patch_then_reinvoke_after(&mut conn, Duration::from_secs(14)).await;
}

/// A body that stops halfway is answered 408 once the body timeout (10 s)
/// passes: the timer armed only when the body did not come with its headers.
#[tokio::test]
async fn a_body_that_stops_halfway_is_answered_request_timeout() {
    let server = Server::start(Options::default());
    server.ready().await;
    let mut tls = server.client().tls().await.unwrap();
    tls.write_all(
        b"POST /mutate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"kind\":",
    )
    .await
    .unwrap();
    let started = Instant::now();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), async {
        let mut buf = [0u8; 1024];
        while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
            match tls.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "no answer to a stalled body");
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(started.elapsed() >= Duration::from_secs(9), "cut off early");
    good_request_succeeds(&server).await;
}

#[tokio::test]
async fn a_connection_flood_beyond_the_limit_is_refused_and_existing_connections_keep_working() {
    let server = Server::start(Options {
        args: &["--max-connections=16"],
        ..Options::default()
    });
    server.ready().await;
    let body = fixture_text("admission-v1.36/create.json");
    let mut established = server.client().connect().await.unwrap();

    let mut flood = Vec::new();
    for _ in 0..48 {
        flood.push(TcpStream::connect(server.addr).await.unwrap());
    }
    // Connections past the limit are closed at once.
    let mut refused = 0;
    for s in flood.iter_mut() {
        if closed_within(s, Duration::from_millis(300)).await {
            refused += 1;
        }
    }
    assert!(
        refused >= 48 - 16,
        "only {refused} of the excess connections were refused"
    );
    let metrics = server.metrics().await;
    let counted: usize = metrics
        .lines()
        .find_map(|l| l.strip_prefix("tandem_connections_refused_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    assert!(
        counted >= refused,
        "{counted} counted, {refused} seen refused"
    );
    // The API server's existing keep-alive connection is not affected.
    assert_eq!(established.review(&body).await.status, 200);
    drop(flood);
    // Once the flood is gone, new connections are served again.
    let recovered = wait_for(Duration::from_secs(10), async || {
        let mut c = server.client().connect().await.ok()?;
        let r = c.post("application/json", body.clone()).await.ok()?;
        (r.status == 200).then_some(())
    })
    .await;
    assert!(recovered.is_some(), "server never recovered from the flood");
}

#[tokio::test]
async fn sigterm_under_load_keeps_serving_while_unready_then_drains() {
    let mut server = Server::start(Options {
        args: &["--shutdown-delay-seconds=2"],
        ..Options::default()
    });
    server.ready().await;
    let body = fixture_text("bench/medium.json");
    let client = server.client();
    let mut workers = Vec::new();
    for _ in 0..8 {
        let client = client.clone();
        let body = body.clone();
        workers.push(tokio::spawn(async move {
            let mut ok = 0;
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                let Ok(mut conn) = client.connect().await else {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                };
                // Every answer that comes is complete and right. A request
                // written just as the listener closes may meet a closed
                // connection: the server never started it.
                if let Ok(r) = conn.post("application/json", body.clone()).await {
                    assert_eq!(r.status, 200);
                    assert_eq!(r.json()["response"]["allowed"], true);
                    ok += 1;
                }
            }
            ok
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let signalled = Instant::now();
    server.sigterm();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // During the delay: unready, but requests are still served.
    let (code, body_text) = harness::admin_get(server.admin, "/readyz").await.unwrap();
    assert_eq!(code, 503, "{body_text}");
    assert!(body_text.contains("shutting down"));
    good_request_succeeds(&server).await;
    let mut total = 0;
    for w in workers {
        total += w.await.unwrap();
    }
    assert!(total > 0);
    let status = tokio::task::spawn_blocking(move || server.child.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success(), "exit status {status:?}");
    assert!(
        signalled.elapsed() >= Duration::from_secs(2),
        "the listener closed before the delay"
    );
}
