//! Fake "loaded" model servers, for end-to-end tests of routing by live deployment state.
//!
//! A real model server (vLLM) gets slower as it takes on more concurrent requests, and reports
//! its load in ORCA form on each response when asked (`endpoint-load-metrics-format: TEXT` or
//! `JSON` on the request → an `endpoint-load-metrics` response header carrying
//! `named_metrics.kv_cache_usage_perc` and `named_metrics.num_requests_waiting`). These servers
//! imitate exactly that, deterministically, so a test can prove that a router which reads the
//! reports and counts in-flight requests sends traffic away from a busy endpoint:
//!
//! - each server counts its requests in flight (current, and the maximum ever seen, resettable)
//!   and answers after `base + per_in_flight × (requests already in flight when it arrived)`;
//! - its `200` JSON answer names the server and its endpoint (`127.0.0.1:port`, the form the
//!   `override_host` LB policy takes in `x-gateway-destination-endpoint`), so a test sees which
//!   pod of a cluster served it;
//! - a server can be switched to [`LoadMode::Reset`] (close the connection without answering:
//!   an upstream reset) or [`LoadMode::Hang`] (never answer: a stuck pod); a request whose
//!   client goes away stops counting as in flight, as on a real server.
//!
//! ```no_run
//! use integration::{LoadBehaviour, LoadedServers};
//! let s = LoadedServers::start(&["pool-0", "pool-1"]);
//! s.set_behaviour("pool-1", LoadBehaviour::latency(5, 100));
//! let ports = s.ports(); // for Envoy::start_with_ports
//! # let _ = ports;
//! ```

use std::collections::BTreeMap;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::upstream::{accept_loop, serve_http1};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use tokio::sync::watch;

/// The request header asking a model server for an ORCA load report (vLLM's name).
pub const ORCA_FORMAT_HEADER: &str = "endpoint-load-metrics-format";
/// The response header carrying the ORCA load report.
pub const ORCA_HEADER: &str = "endpoint-load-metrics";

/// What a loaded server does with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadMode {
    /// Reads the body, waits its load-dependent delay, answers `200` (the default).
    Answer,
    /// Reads the body, then closes the connection without any response: an upstream reset as
    /// Envoy sees it ("upstream connect error or disconnect/reset before headers").
    Reset,
    /// Reads the body and never answers; the request stays in flight until the client (Envoy)
    /// goes away.
    Hang,
}

/// How one loaded server behaves. Read when a request arrives, so a change applies to the
/// next request on.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadBehaviour {
    /// Delay of a request that arrives at an idle server.
    pub base: Duration,
    /// Extra delay per request already in flight when this one arrived: how a busy server
    /// slows down.
    pub per_in_flight: Duration,
    /// Requests served at once; those beyond are reported as `num_requests_waiting`.
    pub slots: u64,
    /// Requests that fill the KV cache: `kv_cache_usage_perc` = min(1, in flight / kv_slots).
    pub kv_slots: u64,
    pub mode: LoadMode,
}

impl Default for LoadBehaviour {
    fn default() -> Self {
        LoadBehaviour {
            base: Duration::ZERO,
            per_in_flight: Duration::ZERO,
            slots: 1,
            kv_slots: 4,
            mode: LoadMode::Answer,
        }
    }
}

impl LoadBehaviour {
    /// Answers after `base_ms + per_in_flight_ms × (requests already in flight)` ms.
    pub fn latency(base_ms: u64, per_in_flight_ms: u64) -> LoadBehaviour {
        LoadBehaviour {
            base: Duration::from_millis(base_ms),
            per_in_flight: Duration::from_millis(per_in_flight_ms),
            ..LoadBehaviour::default()
        }
    }

    pub fn with_slots(mut self, slots: u64) -> LoadBehaviour {
        self.slots = slots;
        self
    }

    pub fn with_kv_slots(mut self, kv_slots: u64) -> LoadBehaviour {
        self.kv_slots = kv_slots;
        self
    }

    pub fn with_mode(mut self, mode: LoadMode) -> LoadBehaviour {
        self.mode = mode;
        self
    }

    /// The delay of a request that found `already` requests in flight.
    fn delay(&self, already: u64) -> Duration {
        let n = u32::try_from(already).unwrap_or(u32::MAX);
        self.base + self.per_in_flight.saturating_mul(n)
    }
}

/// One server's counters and behaviour, shared with its connection tasks.
struct Shared {
    name: String,
    endpoint: String,
    hits: AtomicU64,
    in_flight: AtomicU64,
    max_in_flight: AtomicU64,
    behaviour: Mutex<LoadBehaviour>,
}

impl Shared {
    fn behaviour(&self) -> LoadBehaviour {
        self.behaviour
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// Counts one request as in flight for as long as it lives. Dropped when the handler ends —
/// including when hyper drops the handler's future because the client went away — so a
/// cancelled request never stays counted.
struct InFlight(Arc<Shared>);

impl InFlight {
    /// Enters; returns the guard and how many requests were already in flight.
    fn enter(shared: &Arc<Shared>) -> (InFlight, u64) {
        let already = shared.in_flight.fetch_add(1, Ordering::SeqCst);
        shared
            .max_in_flight
            .fetch_max(already + 1, Ordering::SeqCst);
        (InFlight(shared.clone()), already)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A set of running loaded servers, each on its own 127.0.0.1 port. Dropping it stops them
/// (open connections are closed).
pub struct LoadedServers {
    servers: BTreeMap<String, (u16, Arc<Shared>)>,
    shutdown: watch::Sender<bool>,
    // Dropped last: shuts the runtime's threads down.
    _runtime: tokio::runtime::Runtime,
}

impl LoadedServers {
    /// One server per name, each with [`LoadBehaviour::default`] (answers at once).
    pub fn start(names: &[&str]) -> LoadedServers {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("loaded-server")
            .enable_all()
            .build()
            .expect("build tokio runtime for loaded servers");
        let (shutdown, shutdown_rx) = watch::channel(false);
        let mut servers = BTreeMap::new();
        for name in names {
            let listener = runtime
                .block_on(tokio::net::TcpListener::bind(("127.0.0.1", 0)))
                .expect("bind loaded server on 127.0.0.1:0");
            let port = listener.local_addr().expect("loaded server address").port();
            let shared = Arc::new(Shared {
                name: (*name).to_string(),
                endpoint: format!("127.0.0.1:{port}"),
                hits: AtomicU64::new(0),
                in_flight: AtomicU64::new(0),
                max_in_flight: AtomicU64::new(0),
                behaviour: Mutex::new(LoadBehaviour::default()),
            });
            runtime.spawn(serve(listener, shared.clone(), shutdown_rx.clone()));
            servers.insert((*name).to_string(), (port, shared));
        }
        LoadedServers {
            servers,
            shutdown,
            _runtime: runtime,
        }
    }

    /// Server name → port: what `{{PORT:<name>}}` of a bootstrap template needs
    /// (`Envoy::start_with_ports`).
    pub fn ports(&self) -> BTreeMap<String, u16> {
        self.servers
            .iter()
            .map(|(k, (port, _))| (k.clone(), *port))
            .collect()
    }

    pub fn port(&self, name: &str) -> u16 {
        self.server(name).0
    }

    /// `127.0.0.1:<port>`: the form Envoy names the endpoint in, and the value that makes the
    /// `override_host` policy pick it.
    pub fn address(&self, name: &str) -> String {
        self.shared(name).endpoint.clone()
    }

    /// The server whose [`LoadedServers::address`] this is, if any.
    pub fn name_of(&self, address: &str) -> Option<String> {
        self.servers
            .iter()
            .find(|(_, (_, s))| s.endpoint == address)
            .map(|(k, _)| k.clone())
    }

    /// Requests that reached this server (counted on arrival, whatever the mode).
    pub fn hits(&self, name: &str) -> u64 {
        self.shared(name).hits.load(Ordering::SeqCst)
    }

    pub fn total_hits(&self) -> u64 {
        self.servers
            .values()
            .map(|(_, s)| s.hits.load(Ordering::SeqCst))
            .sum()
    }

    /// Requests in flight on this server now.
    pub fn in_flight(&self, name: &str) -> u64 {
        self.shared(name).in_flight.load(Ordering::SeqCst)
    }

    /// The most requests this server had in flight at once since it started or since
    /// [`LoadedServers::reset_max`].
    pub fn max_in_flight(&self, name: &str) -> u64 {
        self.shared(name).max_in_flight.load(Ordering::SeqCst)
    }

    /// Restarts every server's maximum from its current in-flight count (e.g. after a warm-up).
    pub fn reset_max(&self) {
        for (_, s) in self.servers.values() {
            let now = s.in_flight.load(Ordering::SeqCst);
            s.max_in_flight.store(now, Ordering::SeqCst);
        }
    }

    /// Polls until this server has `expected` requests in flight, at most `timeout`. Returns
    /// the last count read (compare it with `expected`): lets a test wait for a request to
    /// arrive, or for a cancelled one to leave, without guessing a sleep.
    pub fn wait_in_flight(&self, name: &str, expected: u64, timeout: Duration) -> u64 {
        let deadline = Instant::now() + timeout;
        loop {
            let n = self.in_flight(name);
            if n == expected || Instant::now() >= deadline {
                return n;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    pub fn behaviour(&self, name: &str) -> LoadBehaviour {
        self.shared(name).behaviour()
    }

    /// Changes how this server treats the next requests (those in flight keep theirs).
    pub fn set_behaviour(&self, name: &str, behaviour: LoadBehaviour) {
        *self
            .shared(name)
            .behaviour
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = behaviour;
    }

    /// Changes only the mode (answer, reset, hang), keeping the latency and load settings.
    pub fn set_mode(&self, name: &str, mode: LoadMode) {
        self.set_behaviour(name, self.behaviour(name).with_mode(mode));
    }

    fn server(&self, name: &str) -> &(u16, Arc<Shared>) {
        self.servers.get(name).unwrap_or_else(|| {
            let known: Vec<&String> = self.servers.keys().collect();
            panic!("no loaded server named {name:?} (started: {known:?})")
        })
    }

    fn shared(&self, name: &str) -> &Arc<Shared> {
        &self.server(name).1
    }
}

impl Drop for LoadedServers {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

async fn serve(
    listener: tokio::net::TcpListener,
    shared: Arc<Shared>,
    shutdown: watch::Receiver<bool>,
) {
    // Dropping a connection drops any pending handler (and its [`InFlight`] guard).
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

/// One request: count it, read the body, then answer, reset or hang as the behaviour says.
/// An `Err` makes hyper close the connection without writing a response (the reset).
async fn handle(req: Request<Incoming>, shared: Arc<Shared>) -> io::Result<Response<Full<Bytes>>> {
    shared.hits.fetch_add(1, Ordering::SeqCst);
    let (_guard, already) = InFlight::enter(&shared);
    let behaviour = shared.behaviour();
    let format = req
        .headers()
        .get(ORCA_FORMAT_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    req.into_body()
        .collect()
        .await
        .map_err(|e| io::Error::other(format!("read request body: {e}")))?;
    match behaviour.mode {
        LoadMode::Reset => return Err(io::Error::other("injected reset")),
        LoadMode::Hang => std::future::pending::<()>().await,
        LoadMode::Answer => {}
    }
    tokio::time::sleep(behaviour.delay(already)).await;
    Ok(answer(&shared, &behaviour, already + 1, format.as_deref()))
}

/// The `200` answer; `in_flight` counts this request too.
fn answer(
    shared: &Shared,
    behaviour: &LoadBehaviour,
    in_flight: u64,
    orca_format: Option<&str>,
) -> Response<Full<Bytes>> {
    let doc = serde_json::json!({
        "server": shared.name,
        "endpoint": shared.endpoint,
        "in_flight": in_flight,
    });
    let mut builder = Response::builder()
        .status(200)
        .header("content-type", "application/json");
    // The report reflects the load now, as vLLM's does when it answers.
    let now = shared.in_flight.load(Ordering::SeqCst);
    if let Some(value) = orca_format.and_then(|f| orca_report(f, behaviour, now)) {
        builder = builder.header(ORCA_HEADER, value);
    }
    builder
        .body(Full::new(Bytes::from(doc.to_string())))
        .expect("a response with valid static headers")
}

/// The `endpoint-load-metrics` value vLLM would send for this load, in the requested format
/// (`TEXT` or `JSON`, any case); `None` for another format, as vLLM does.
pub fn orca_report(format: &str, behaviour: &LoadBehaviour, in_flight: u64) -> Option<String> {
    let waiting = in_flight.saturating_sub(behaviour.slots) as f64;
    let kv = (in_flight as f64 / behaviour.kv_slots.max(1) as f64).min(1.0);
    // `{:?}` prints 3.0 as `3.0`, like Python's float formatting in vLLM.
    match format.trim().to_ascii_uppercase().as_str() {
        "TEXT" => Some(format!(
            "TEXT named_metrics.kv_cache_usage_perc={kv:?}, named_metrics.num_requests_waiting={waiting:?}"
        )),
        "JSON" => Some(format!(
            "JSON {{\"named_metrics\": {{\"kv_cache_usage_perc\": {kv:?}, \"num_requests_waiting\": {waiting:?}}}}}"
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::{Connection, Request};

    const WAIT: Duration = Duration::from_secs(5);

    fn post(format: Option<&str>) -> Request {
        let r = Request::post("/v1/chat/completions").json_text(r#"{"model":"m"}"#);
        match format {
            Some(f) => r.header(ORCA_FORMAT_HEADER, f),
            None => r,
        }
    }

    /// Sends a request that will not be answered (the server hangs it) and waits until the
    /// server counts it; the returned connection keeps it in flight.
    fn park(s: &LoadedServers, name: &str) -> Connection {
        let expected = s.in_flight(name) + 1;
        s.set_mode(name, LoadMode::Hang);
        let mut c = Connection::open(s.port(name)).expect("connect");
        c.send_raw(&post(None).to_bytes()).expect("send");
        assert_eq!(s.wait_in_flight(name, expected, WAIT), expected);
        s.set_mode(name, LoadMode::Answer);
        c
    }

    #[test]
    fn delay_grows_with_in_flight_and_drops_on_disconnect() {
        let s = LoadedServers::start(&["a"]);
        s.set_behaviour("a", LoadBehaviour::latency(0, 300));
        let t = Instant::now();
        let alone = crate::client::must_send(s.port("a"), &post(None));
        let alone_took = t.elapsed();
        assert_eq!(alone.status, 200);
        let doc = alone.json();
        assert_eq!(doc["server"], "a");
        assert_eq!(doc["endpoint"], s.address("a"));
        assert_eq!(doc["in_flight"], 1);

        let parked = park(&s, "a");
        let t = Instant::now();
        let busy = crate::client::must_send(s.port("a"), &post(None));
        let busy_took = t.elapsed();
        assert_eq!(busy.json()["in_flight"], 2);
        assert!(busy_took >= Duration::from_millis(300), "{busy_took:?}");
        assert!(busy_took > alone_took, "{busy_took:?} vs {alone_took:?}");
        assert_eq!(s.max_in_flight("a"), 2);

        parked.close();
        assert_eq!(
            s.wait_in_flight("a", 0, WAIT),
            0,
            "client gone: no longer in flight"
        );
        s.reset_max();
        assert_eq!(s.max_in_flight("a"), 0);
        assert_eq!(s.hits("a"), 3);
    }

    #[test]
    fn reports_orca_load_when_asked() {
        let s = LoadedServers::start(&["a"]);
        s.set_behaviour("a", LoadBehaviour::default().with_slots(1).with_kv_slots(4));
        let plain = crate::client::must_send(s.port("a"), &post(None));
        assert_eq!(plain.header(ORCA_HEADER), None);

        let _parked = park(&s, "a");
        let text = crate::client::must_send(s.port("a"), &post(Some("TEXT")));
        assert_eq!(
            text.header(ORCA_HEADER),
            Some("TEXT named_metrics.kv_cache_usage_perc=0.5, named_metrics.num_requests_waiting=1.0")
        );
        let json = crate::client::must_send(s.port("a"), &post(Some("json")));
        let value = json.header(ORCA_HEADER).expect("JSON report");
        let body = value.strip_prefix("JSON ").expect("JSON prefix");
        let report: serde_json::Value = serde_json::from_str(body).expect("JSON report parses");
        assert_eq!(report["named_metrics"]["kv_cache_usage_perc"], 0.5);
        assert_eq!(report["named_metrics"]["num_requests_waiting"], 1.0);
        let other = crate::client::must_send(s.port("a"), &post(Some("BIN")));
        assert_eq!(other.header(ORCA_HEADER), None);
    }

    #[test]
    fn reset_closes_without_answer() {
        let s = LoadedServers::start(&["a"]);
        s.set_mode("a", LoadMode::Reset);
        let r = crate::client::send(s.port("a"), &post(None));
        assert!(r.is_err(), "expected no response, got {r:?}");
        assert_eq!(s.hits("a"), 1);
        assert_eq!(s.wait_in_flight("a", 0, WAIT), 0);
    }

    #[test]
    fn hang_never_answers_until_the_client_leaves() {
        let s = LoadedServers::start(&["a", "b"]);
        s.set_mode("a", LoadMode::Hang);
        let mut c = Connection::open(s.port("a")).expect("connect");
        c.set_read_timeout(Duration::from_millis(300))
            .expect("set timeout");
        let r = c.send(&post(None));
        assert!(r.is_err(), "a hanging server answered: {r:?}");
        assert_eq!(s.in_flight("a"), 1);
        assert_eq!(s.in_flight("b"), 0);
        c.close();
        assert_eq!(s.wait_in_flight("a", 0, WAIT), 0);
        assert_eq!(s.name_of(&s.address("b")).as_deref(), Some("b"));
    }
}
