//! A fake API server on loopback (plain HTTP, a kubeconfig pointing at it):
//! each test routes requests to canned or stateful answers and reads back
//! what Tandem asked. Watches are held open with nothing to say.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

/// A request the fake API server received: method, path with query, body.
pub type Seen = (String, String, String);

/// What the fake answers: status and JSON body, or `None` to hold the request
/// open (a watch with nothing to say).
pub type Route = dyn Fn(&str, &str, &str) -> Option<(u16, String)> + Send + Sync;

/// A route that also reads the query: method, path, query, body.
pub type QueryRoute = dyn Fn(&str, &str, &str, &str) -> Option<(u16, String)> + Send + Sync;

pub struct FakeApi {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    dir: tempfile::TempDir,
}

impl FakeApi {
    pub async fn start(route: Arc<Route>) -> FakeApi {
        Self::start_with_query(Arc::new(move |m: &str, p: &str, _: &str, b: &str| {
            route(m, p, b)
        }))
        .await
    }

    /// As `start`, with the query string handed to the route as well
    /// (`limit`, `continue`, `labelSelector`).
    pub async fn start_with_query(route: Arc<QueryRoute>) -> FakeApi {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let log = seen.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (route, log) = (route.clone(), log.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let (route, log) = (route.clone(), log.clone());
                        async move {
                            let method = req.method().to_string();
                            let uri = req.uri().to_string();
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            let body = String::from_utf8_lossy(&body).into_owned();
                            log.lock()
                                .unwrap()
                                .push((method.clone(), uri.clone(), body.clone()));
                            let (path, query) = uri.split_once('?').unwrap_or((&uri, ""));
                            let answer = if query.contains("watch=") {
                                None
                            } else {
                                route(&method, path, query, &body)
                            };
                            let (status, text) = match answer {
                                Some(a) => a,
                                None => {
                                    tokio::time::sleep(Duration::from_secs(120)).await;
                                    (200, String::new())
                                }
                            };
                            Ok::<_, Infallible>(
                                Response::builder()
                                    .status(status)
                                    .header("content-type", "application/json")
                                    .body(Full::new(Bytes::from(text)))
                                    .unwrap(),
                            )
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = format!(
            "apiVersion: v1\nkind: Config\nclusters: [{{name: fake, cluster: {{server: 'http://{addr}'}}}}]\n\
             users: [{{name: tandem, user: {{}}}}]\n\
             contexts: [{{name: fake, context: {{cluster: fake, user: tandem}}}}]\ncurrent-context: fake\n"
        );
        std::fs::write(dir.path().join("kubeconfig"), kubeconfig).unwrap();
        FakeApi { addr, seen, dir }
    }

    pub fn kubeconfig_arg(&self) -> String {
        format!(
            "--kubeconfig={}",
            self.dir.path().join("kubeconfig").display()
        )
    }

    pub fn seen(&self, method: &str, path: &str) -> Vec<Seen> {
        let _ = self.addr;
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|(m, u, _)| m == method && u.starts_with(path))
            .cloned()
            .collect()
    }
}
