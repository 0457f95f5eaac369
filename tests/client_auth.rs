//! `tandem serve --client-ca-file`: only a client with a certificate from
//! that CA (the API server, given one in its AdmissionConfiguration) gets an
//! answer. The real binary, real TLS on loopback, the captured review.

mod common;
mod harness;

use std::path::PathBuf;
use std::time::Duration;

use common::fixture_text;
use common::run::wait_for;
use harness::{Client, Options, Pki, Server};

/// A server requiring client certificates from `ca`, whose CA file is
/// `ca_file` (written before the start, rewritten by reload tests).
fn start(ca: &Pki, dir: &tempfile::TempDir) -> (Server, PathBuf) {
    let ca_file = dir.path().join("client-ca.crt");
    std::fs::write(&ca_file, ca.ca_pem()).unwrap();
    let arg = format!("--client-ca-file={}", ca_file.display());
    let server = Server::start(Options {
        args: &[arg.as_str()],
        ..Options::default()
    });
    (server, ca_file)
}

fn client(server: &Server, identity: Option<&(String, String)>) -> Client {
    Client::with_identity(
        server.addr,
        &[server.pki.ca_der()],
        identity.map(|(c, k)| (c.as_str(), k.as_str())),
    )
}

/// Whether `client` gets an answer to the captured review. With TLS 1.3 the
/// server's verdict on the client certificate arrives after the client's
/// handshake is done, so a refusal shows on the first request.
async fn answered(client: &Client) -> bool {
    let Ok(mut conn) = client.connect().await else {
        return false;
    };
    let body = fixture_text("admission-v1.36/create.json");
    conn.post("application/json", body)
        .await
        .is_ok_and(|r| r.status == 200)
}

async fn metric_reaches(server: &Server, line: &str) -> bool {
    wait_for(Duration::from_secs(10), async || {
        server.metrics().await.contains(line).then_some(())
    })
    .await
    .is_some()
}

#[tokio::test]
async fn only_clients_with_a_certificate_from_the_ca_are_served() {
    let api_server_ca = Pki::new("api-server");
    let dir = tempfile::tempdir().unwrap();
    let (server, _) = start(&api_server_ca, &dir);
    server.ready().await;

    let good = api_server_ca.client("kube-apiserver", false);
    assert!(
        answered(&client(&server, Some(&good))).await,
        "{}",
        server.log()
    );

    let stranger = Pki::new("stranger").client("kube-apiserver", false);
    let expired = api_server_ca.client("kube-apiserver", true);
    for (who, identity, reason) in [
        ("no certificate", None, "no-certificate"),
        ("another CA's", Some(&stranger), "unknown-issuer"),
        ("an expired one", Some(&expired), "expired"),
    ] {
        assert!(
            !answered(&client(&server, identity)).await,
            "{who}: answered"
        );
        let line = format!("tandem_client_auth_failures_total{{reason=\"{reason}\"}} 1");
        assert!(
            metric_reaches(&server, &line).await,
            "{who}: not counted as {reason}:\n{}",
            server.metrics().await
        );
        // The refusal is logged with its reason, and everyone else is
        // still served.
        assert!(server.log().contains(reason), "{who}: not logged");
        assert!(
            answered(&client(&server, Some(&good))).await,
            "{who}: the API server is no longer served"
        );
    }
    // The admin port asks for no certificate.
    let (code, _) = harness::admin_get(server.admin, "/readyz").await.unwrap();
    assert_eq!(code, 200);
}

#[tokio::test]
async fn the_client_ca_reloads_and_a_broken_one_keeps_the_last_good() {
    let first = Pki::new("first-api-server");
    let dir = tempfile::tempdir().unwrap();
    let (server, ca_file) = start(&first, &dir);
    server.ready().await;
    let old = first.client("kube-apiserver", false);
    assert!(answered(&client(&server, Some(&old))).await);

    std::fs::write(&ca_file, "-----BEGIN CERTIFICATE-----\nnot base64\n").unwrap();
    assert!(
        metric_reaches(
            &server,
            "tandem_client_ca_reloads_total{result=\"failure\"} 1"
        )
        .await,
        "{}",
        server.log()
    );
    assert!(server.log().contains("client CA rejected"));
    assert!(
        answered(&client(&server, Some(&old))).await,
        "the last good CA is kept"
    );

    let second = Pki::new("second-api-server");
    std::fs::write(&ca_file, second.ca_pem()).unwrap();
    let new = second.client("kube-apiserver", false);
    let switched = wait_for(Duration::from_secs(10), async || {
        answered(&client(&server, Some(&new))).await.then_some(())
    })
    .await;
    assert!(switched.is_some(), "the new CA never took effect");
    assert!(
        !answered(&client(&server, Some(&old))).await,
        "the replaced CA is no longer trusted"
    );
}

#[test]
fn a_client_ca_that_does_not_parse_at_start_is_an_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    for (name, content) in [("garbage.crt", "not a certificate"), ("empty.crt", "")] {
        let path = dir.path().join(name);
        std::fs::write(&path, content).unwrap();
        let arg = format!("--client-ca-file={}", path.display());
        let mut server = Server::start(Options {
            args: &[arg.as_str()],
            ..Options::default()
        });
        let status = server.child.wait().unwrap();
        assert!(!status.success(), "{name}: started anyway");
        let log = server.log();
        assert!(
            log.contains(&path.display().to_string()) && log.contains("client-ca-file"),
            "{name}: {log}"
        );
    }
    let missing = dir.path().join("missing.crt");
    let arg = format!("--client-ca-file={}", missing.display());
    let mut server = Server::start(Options {
        args: &[arg.as_str()],
        ..Options::default()
    });
    assert!(!server.child.wait().unwrap().success());
    assert!(server.log().contains("missing.crt"), "{}", server.log());
}
