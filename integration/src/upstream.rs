//! Fake upstream model servers: one HTTP/1.1 listener per Envoy cluster, on 127.0.0.1:0.
//!
//! By default every request is answered `200`, `content-type: application/json`, with an
//! [`Echo`] document that says which cluster served it and what arrived: method, path, request
//! headers and a length + FNV-1a 64 digest of the body, so a test can prove the body reached the
//! model server byte for byte. Each server counts its hits, so a test can also prove that a local
//! reply never reached any upstream.
//!
//! Each cluster can be given a [`Behaviour`] at any time ([`Upstreams::set_behaviour`]): inject
//! failures with a probability (drawn from a seeded generator, so a run is reproducible per
//! server), wait a fixed delay before answering, add response headers (e.g. a reward header),
//! and answer with a fixed JSON document, an OpenAI chat completion carrying `usage`, or an
//! OpenAI-style server-sent-event stream whose last chunk carries `usage`. Servers also keep the
//! last requests they received ([`Upstreams::received`]), so a fake evaluator can show what the
//! filter sent it.

use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};

/// The clusters of `envoy/demo.yaml`, `envoy/metadata-mode.yaml` and `envoy/lds.yaml`: one fake
/// server each. `evaluator` and `evaluator-stall` are where `reward.evaluator` callouts go; give
/// them a [`Behaviour`] (e.g. [`Behaviour::evaluator`], [`Behaviour::stall`]) before use.
/// `router` is where `models[].router` callouts go (demo.yaml only; a test may point it at a
/// real Seldon router instead).
pub const CLUSTERS: [&str; 9] = [
    "sentiment-v1",
    "sentiment-v2",
    "llm-small",
    "llm-large",
    "iris-v1",
    "iris-v2",
    "evaluator",
    "evaluator-stall",
    "router",
];

/// What a fake model server answers by default: a description of the request it received.
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

/// The body of a non-failed answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// An [`Echo`] of the request (the default).
    Echo,
    /// This JSON document (`content-type: application/json`).
    Json(serde_json::Value),
    /// An OpenAI `chat.completion` with `usage` (`content-type: application/json`).
    OpenAi {
        prompt_tokens: u64,
        completion_tokens: u64,
    },
    /// An OpenAI-style stream (`content-type: text/event-stream`, chunked): `chunks` content
    /// deltas `gap` apart, then a chunk with `usage` and no choices, then `data: [DONE]`.
    Sse {
        chunks: usize,
        gap: Duration,
        prompt_tokens: u64,
        completion_tokens: u64,
    },
}

/// How one fake server answers. [`Behaviour::default`] is the plain echo server.
#[derive(Debug, Clone, PartialEq)]
pub struct Behaviour {
    /// Probability in `[0, 1]` of answering `fail_status` (body `{"error": "injected failure"}`)
    /// instead of [`Behaviour::answer`].
    pub fail_probability: f64,
    pub fail_status: u16,
    /// Seed of the failure draws; `None`: derived from the cluster name. Setting a behaviour
    /// restarts the sequence.
    pub seed: Option<u64>,
    /// Waited after the request body arrived, before answering (failures included).
    pub delay: Duration,
    /// Extra response headers (e.g. a reward header), on every answer.
    pub headers: Vec<(String, String)>,
    pub answer: Answer,
}

impl Default for Behaviour {
    fn default() -> Self {
        Behaviour {
            fail_probability: 0.0,
            fail_status: 500,
            seed: None,
            delay: Duration::ZERO,
            headers: Vec::new(),
            answer: Answer::Echo,
        }
    }
}

impl Behaviour {
    /// Echo, failing with 500 with probability `1 − success`.
    pub fn success_rate(success: f64) -> Behaviour {
        Behaviour {
            fail_probability: (1.0 - success).clamp(0.0, 1.0),
            ..Behaviour::default()
        }
    }

    /// A fake evaluator: answers `{"reward": reward}`.
    pub fn evaluator(reward: f64) -> Behaviour {
        Behaviour::json(serde_json::json!({ "reward": reward }))
    }

    /// Answers this JSON document.
    pub fn json(doc: serde_json::Value) -> Behaviour {
        Behaviour {
            answer: Answer::Json(doc),
            ..Behaviour::default()
        }
    }

    /// Answers (an echo) only after `delay`: longer than a caller's timeout, it stalls.
    pub fn stall(delay: Duration) -> Behaviour {
        Behaviour {
            delay,
            ..Behaviour::default()
        }
    }

    pub fn with_seed(mut self, seed: u64) -> Behaviour {
        self.seed = Some(seed);
        self
    }

    pub fn with_delay(mut self, delay: Duration) -> Behaviour {
        self.delay = delay;
        self
    }

    pub fn with_header(mut self, name: &str, value: &str) -> Behaviour {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    pub fn with_answer(mut self, answer: Answer) -> Behaviour {
        self.answer = answer;
        self
    }

    pub fn with_failures(mut self, probability: f64, status: u16) -> Behaviour {
        self.fail_probability = probability;
        self.fail_status = status;
        self
    }
}

/// One request as a fake server received it.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
}

/// Requests each server keeps (the oldest are dropped).
const RECEIVED_KEPT: usize = 1024;

/// A 127.0.0.1 port with nothing listening on it (bound, then released), for "upstream down"
/// scenarios.
pub fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind(("127.0.0.1", 0)).expect("bind 127.0.0.1:0");
    l.local_addr().expect("local address").port()
}

/// A 127.0.0.1 port that refuses connections for as long as this value lives: a socket bound to
/// it that never listens, so the kernel answers every connection attempt with a reset
/// (`ECONNREFUSED`) and no other process can take the port meanwhile (unlike [`closed_port`]).
/// Put its port in an Envoy cluster for "upstream down" scenarios.
pub struct RefusedPort {
    port: u16,
    _socket: tokio::net::TcpSocket,
}

impl RefusedPort {
    pub fn new() -> RefusedPort {
        let socket = tokio::net::TcpSocket::new_v4().expect("create a TCP socket");
        socket
            .bind(([127, 0, 0, 1], 0).into())
            .expect("bind 127.0.0.1:0");
        let port = socket.local_addr().expect("local address").port();
        RefusedPort {
            port,
            _socket: socket,
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Default for RefusedPort {
    fn default() -> Self {
        RefusedPort::new()
    }
}

/// FNV-1a 64-bit digest as 16 lowercase hex digits: how [`Echo::body_fnv64`] is computed.
pub fn fnv64_hex(data: &[u8]) -> String {
    format!("{:016x}", fnv64(data))
}

fn fnv64(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in data {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// SplitMix64: small, seedable, good enough to draw injected failures.
#[derive(Debug)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_f64(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A server's mutable part: its behaviour, its failure generator and what it received.
struct Shared {
    cluster: String,
    hits: AtomicU64,
    failures: AtomicU64,
    behaviour: Mutex<(Behaviour, SplitMix64)>,
    received: Mutex<VecDeque<Received>>,
}

impl Shared {
    fn lock_behaviour(&self) -> std::sync::MutexGuard<'_, (Behaviour, SplitMix64)> {
        self.behaviour.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_received(&self) -> std::sync::MutexGuard<'_, VecDeque<Received>> {
        self.received.lock().unwrap_or_else(|e| e.into_inner())
    }
}

struct Server {
    port: u16,
    shared: Arc<Shared>,
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
            let shared = Arc::new(Shared {
                cluster: (*name).to_string(),
                hits: AtomicU64::new(0),
                failures: AtomicU64::new(0),
                behaviour: Mutex::new((Behaviour::default(), SplitMix64(fnv64(name.as_bytes())))),
                received: Mutex::new(VecDeque::new()),
            });
            runtime.spawn(serve(listener, shared.clone(), shutdown_rx.clone()));
            servers.insert((*name).to_string(), Server { port, shared });
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

    /// Requests this cluster's server has received so far (answered, or being answered).
    pub fn hits(&self, cluster: &str) -> u64 {
        self.server(cluster).shared.hits.load(Ordering::SeqCst)
    }

    /// Requests this cluster's server answered with an injected failure.
    pub fn failures(&self, cluster: &str) -> u64 {
        self.server(cluster).shared.failures.load(Ordering::SeqCst)
    }

    /// Requests received by all servers together.
    pub fn total_hits(&self) -> u64 {
        self.servers
            .values()
            .map(|s| s.shared.hits.load(Ordering::SeqCst))
            .sum()
    }

    /// Changes how this cluster's server answers from the next request on (and restarts its
    /// failure sequence from the behaviour's seed).
    pub fn set_behaviour(&self, cluster: &str, behaviour: Behaviour) {
        let shared = &self.server(cluster).shared;
        let seed = behaviour.seed.unwrap_or_else(|| fnv64(cluster.as_bytes()));
        *shared.lock_behaviour() = (behaviour, SplitMix64(seed));
    }

    /// The last requests (at most 1,024) this cluster's server received, oldest first.
    pub fn received(&self, cluster: &str) -> Vec<Received> {
        self.server(cluster)
            .shared
            .lock_received()
            .iter()
            .cloned()
            .collect()
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
    shared: Arc<Shared>,
    shutdown: watch::Receiver<bool>,
) {
    accept_loop(listener, shutdown, move |stream, shutdown| {
        let shared = shared.clone();
        serve_http1(
            stream,
            service_fn(move |req| handle(req, shared.clone())),
            shutdown,
        )
    })
    .await;
}

/// Accepts connections until `shutdown` changes; each is served by `serve` in a task of its own.
pub(crate) async fn accept_loop<F, Fut>(
    listener: tokio::net::TcpListener,
    mut shutdown: watch::Receiver<bool>,
    serve: F,
) where
    F: Fn(tokio::net::TcpStream, watch::Receiver<bool>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => return,
        };
        let Ok((stream, _peer)) = accepted else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(serve(stream, shutdown.clone()));
    }
}

/// Serves one HTTP/1.1 connection (keep-alive) until it ends or `shutdown` changes. Dropping
/// the connection drops any handler still pending.
pub(crate) async fn serve_http1<S>(
    stream: tokio::net::TcpStream,
    service: S,
    mut shutdown: watch::Receiver<bool>,
) where
    S: hyper::service::HttpService<Incoming> + Send,
    S::Future: Send + 'static,
    S::ResBody: Send + 'static,
    <S::ResBody as hyper::body::Body>::Data: Send,
    <S::ResBody as hyper::body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let conn = http1::Builder::new()
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = shutdown.changed() => {}
    }
}

type Body = BoxBody<Bytes, Infallible>;

fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed()
}

/// A response body fed by a channel: each message is sent as its own chunk.
struct ChannelBody {
    rx: mpsc::Receiver<Bytes>,
}

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.get_mut()
            .rx
            .poll_recv(cx)
            .map(|o| o.map(|b| Ok(Frame::data(b))))
    }
}

fn openai_completion(
    cluster: &str,
    prompt_tokens: u64,
    completion_tokens: u64,
) -> serde_json::Value {
    serde_json::json!({
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "model": cluster,
        "choices": [{ "index": 0, "finish_reason": "stop",
                      "message": { "role": "assistant", "content": "positive" } }],
        "usage": { "prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                   "total_tokens": prompt_tokens + completion_tokens }
    })
}

/// The events of an OpenAI-style stream, one string per chunk sent.
fn sse_events(
    cluster: &str,
    chunks: usize,
    prompt_tokens: u64,
    completion_tokens: u64,
) -> Vec<String> {
    let mut out = Vec::with_capacity(chunks + 2);
    for i in 0..chunks {
        let delta = serde_json::json!({
            "id": "chatcmpl-fake", "object": "chat.completion.chunk", "model": cluster,
            "choices": [{ "index": 0, "delta": { "content": format!("tok{i} ") }, "finish_reason": null }]
        });
        out.push(format!("data: {delta}\n\n"));
    }
    let usage = serde_json::json!({
        "id": "chatcmpl-fake", "object": "chat.completion.chunk", "model": cluster, "choices": [],
        "usage": { "prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                   "total_tokens": prompt_tokens + completion_tokens }
    });
    out.push(format!("data: {usage}\n\n"));
    out.push("data: [DONE]\n\n".to_string());
    out
}

async fn handle(req: Request<Incoming>, shared: Arc<Shared>) -> Result<Response<Body>, Infallible> {
    let (parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return Ok(Response::builder()
                .status(500)
                .body(full(format!("body read error: {e}")))
                .expect("response"));
        }
    };
    shared.hits.fetch_add(1, Ordering::SeqCst);
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
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".to_string());
    {
        let mut received = shared.lock_received();
        if received.len() >= RECEIVED_KEPT {
            received.pop_front();
        }
        received.push_back(Received {
            method: parts.method.to_string(),
            path: path.clone(),
            headers: headers.clone(),
            body: body.to_vec(),
        });
    }
    let (behaviour, failed) = {
        let mut guard = shared.lock_behaviour();
        let (behaviour, rng) = &mut *guard;
        let failed =
            behaviour.fail_probability > 0.0 && rng.next_f64() < behaviour.fail_probability;
        (behaviour.clone(), failed)
    };
    if !behaviour.delay.is_zero() {
        tokio::time::sleep(behaviour.delay).await;
    }
    let cluster = shared.cluster.as_str();
    let mut builder = Response::builder().header("x-upstream-cluster", cluster);
    for (n, v) in &behaviour.headers {
        // As bytes: a value beyond ASCII goes out as it is (obs-text), as real servers send it.
        builder = builder.header(n.as_str(), v.as_bytes());
    }
    if failed {
        shared.failures.fetch_add(1, Ordering::SeqCst);
        let doc = serde_json::json!({ "error": "injected failure", "cluster": cluster });
        return Ok(builder
            .status(behaviour.fail_status)
            .header("content-type", "application/json")
            .body(full(serde_json::to_vec(&doc).expect("serialize failure")))
            .expect("response"));
    }
    let builder = builder.status(200);
    let response = match &behaviour.answer {
        Answer::Echo => {
            let echo = Echo {
                cluster: cluster.to_string(),
                method: parts.method.to_string(),
                path,
                headers,
                body_len: body.len() as u64,
                body_fnv64: fnv64_hex(&body),
            };
            builder
                .header("content-type", "application/json")
                .body(full(serde_json::to_vec(&echo).expect("serialize echo")))
        }
        Answer::Json(doc) => builder
            .header("content-type", "application/json")
            .body(full(
                serde_json::to_vec(doc).expect("serialize JSON answer"),
            )),
        Answer::OpenAi {
            prompt_tokens,
            completion_tokens,
        } => builder
            .header("content-type", "application/json")
            .body(full(
                serde_json::to_vec(&openai_completion(
                    cluster,
                    *prompt_tokens,
                    *completion_tokens,
                ))
                .expect("serialize completion"),
            )),
        Answer::Sse {
            chunks,
            gap,
            prompt_tokens,
            completion_tokens,
        } => {
            let events = sse_events(cluster, *chunks, *prompt_tokens, *completion_tokens);
            let (tx, rx) = mpsc::channel(events.len().max(1));
            let gap = *gap;
            tokio::spawn(async move {
                for (i, e) in events.into_iter().enumerate() {
                    if i > 0 && !gap.is_zero() {
                        tokio::time::sleep(gap).await;
                    }
                    if tx.send(Bytes::from(e)).await.is_err() {
                        return;
                    }
                }
            });
            builder
                .header("content-type", "text/event-stream")
                .header("cache-control", "no-cache")
                .body(ChannelBody { rx }.boxed())
        }
    };
    Ok(response.expect("response"))
}
