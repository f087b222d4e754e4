//! Fake upstream model servers: one HTTP/1.1 listener per Envoy cluster, on 127.0.0.1:0.
//!
//! Every request is answered `200`, `content-type: application/json`, with an [`Echo`]
//! document that says which cluster served it and what arrived: method, path, request headers
//! and a length + FNV-1a 64 digest of the body, so a test can prove the body reached the model
//! server byte for byte. Each server counts its hits, so a test can also prove that a local
//! reply never reached any upstream.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

/// The clusters of `envoy/demo.yaml` and `envoy/metadata-mode.yaml`: one fake server each.
pub const CLUSTERS: [&str; 6] = [
    "sentiment-v1",
    "sentiment-v2",
    "llm-small",
    "llm-large",
    "iris-v1",
    "iris-v2",
];

/// What a fake model server answers: a description of the request it received.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Echo {
    /// The cluster (server) that answered.
    pub cluster: String,
    pub method: String,
    /// Path and query, as received.
    pub path: String,
    /// Request headers, lowercase names; repeated headers joined with `,`.
    pub headers: BTreeMap<String, String>,
    pub body_len: u64,
    /// FNV-1a 64 of the body, 16 lowercase hex digits (see [`fnv64_hex`]).
    pub body_fnv64: String,
}

/// A 127.0.0.1 port with nothing listening on it (bound, then released), for "upstream down"
/// scenarios.
pub fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind(("127.0.0.1", 0)).expect("bind 127.0.0.1:0");
    l.local_addr().expect("local address").port()
}

/// FNV-1a 64-bit digest as 16 lowercase hex digits: how [`Echo::body_fnv64`] is computed.
pub fn fnv64_hex(data: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in data {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

struct Server {
    port: u16,
    hits: Arc<AtomicU64>,
}

/// A set of running fake model servers. Dropping it stops them.
pub struct Upstreams {
    servers: BTreeMap<String, Server>,
    shutdown: watch::Sender<bool>,
    // Dropped last: shuts the runtime's threads down.
    _runtime: tokio::runtime::Runtime,
}

impl Upstreams {
    /// One server for each cluster of [`CLUSTERS`].
    pub fn start_default() -> Upstreams {
        Upstreams::start(&CLUSTERS)
    }

    /// One server per cluster name, each on its own 127.0.0.1 port.
    pub fn start(clusters: &[&str]) -> Upstreams {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("fake-upstream")
            .enable_all()
            .build()
            .expect("build tokio runtime for fake upstreams");
        let (shutdown, shutdown_rx) = watch::channel(false);
        let mut servers = BTreeMap::new();
        for name in clusters {
            let listener = runtime
                .block_on(tokio::net::TcpListener::bind(("127.0.0.1", 0)))
                .expect("bind fake upstream on 127.0.0.1:0");
            let port = listener.local_addr().expect("fake upstream address").port();
            let hits = Arc::new(AtomicU64::new(0));
            runtime.spawn(serve(
                listener,
                (*name).to_string(),
                hits.clone(),
                shutdown_rx.clone(),
            ));
            servers.insert((*name).to_string(), Server { port, hits });
        }
        Upstreams {
            servers,
            shutdown,
            _runtime: runtime,
        }
    }

    /// Cluster name → port, for rendering a bootstrap template.
    pub fn ports(&self) -> BTreeMap<String, u16> {
        self.servers
            .iter()
            .map(|(k, s)| (k.clone(), s.port))
            .collect()
    }

    pub fn port(&self, cluster: &str) -> u16 {
        self.server(cluster).port
    }

    /// Requests this cluster's server has answered so far.
    pub fn hits(&self, cluster: &str) -> u64 {
        self.server(cluster).hits.load(Ordering::SeqCst)
    }

    /// Requests answered by all servers together.
    pub fn total_hits(&self) -> u64 {
        self.servers
            .values()
            .map(|s| s.hits.load(Ordering::SeqCst))
            .sum()
    }

    fn server(&self, cluster: &str) -> &Server {
        self.servers
            .get(cluster)
            .unwrap_or_else(|| panic!("no fake upstream for cluster {cluster:?}"))
    }
}

impl Drop for Upstreams {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

async fn serve(
    listener: tokio::net::TcpListener,
    cluster: String,
    hits: Arc<AtomicU64>,
    mut shutdown: watch::Receiver<bool>,
) {
    let cluster = Arc::new(cluster);
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => return,
        };
        let (stream, peer): (tokio::net::TcpStream, SocketAddr) = match accepted {
            Ok(a) => a,
            Err(_) => continue,
        };
        let _ = peer;
        let _ = stream.set_nodelay(true);
        let cluster = cluster.clone();
        let hits = hits.clone();
        let mut conn_shutdown = shutdown.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| handle(req, cluster.clone(), hits.clone()));
            let conn = http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = conn_shutdown.changed() => {}
            }
        });
    }
}

async fn handle(
    req: Request<Incoming>,
    cluster: Arc<String>,
    hits: Arc<AtomicU64>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return Ok(Response::builder()
                .status(500)
                .body(Full::new(Bytes::from(format!("body read error: {e}"))))
                .expect("response"));
        }
    };
    hits.fetch_add(1, Ordering::SeqCst);
    let mut headers: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in parts.headers.iter() {
        let v = String::from_utf8_lossy(value.as_bytes()).into_owned();
        headers
            .entry(name.as_str().to_ascii_lowercase())
            .and_modify(|e| {
                e.push(',');
                e.push_str(&v);
            })
            .or_insert(v);
    }
    let echo = Echo {
        cluster: cluster.to_string(),
        method: parts.method.to_string(),
        path: parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| "/".to_string()),
        headers,
        body_len: body.len() as u64,
        body_fnv64: fnv64_hex(&body),
    };
    let json = serde_json::to_vec(&echo).expect("serialize echo");
    Ok(Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .header("x-upstream-cluster", cluster.as_str())
        .body(Full::new(Bytes::from(json)))
        .expect("response"))
}
