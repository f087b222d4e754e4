//! An in-memory `Host` for native scenario tests: it holds one VM's shared data and metrics and
//! the current stream's headers and bodies, and records every effect (headers set and removed,
//! local replies, callouts dispatched, streams resumed) for tests to assert on.
//!
//! Shared data is the core's `MemoryStore`, which follows proxy-wasm's rules as Envoy implements
//! them: a CAS token per write, a stale token is `CAS_MISMATCH`, and a write to a missing key
//! ignores the token.
//!
//! Test-only (feature `testing`): its assertions panic, as a failing test should.
#![allow(clippy::panic)]

use std::cell::{Cell, RefCell};
use std::collections::HashMap;

use crate::bandit::{MemoryStore, SharedStore, StoreError};
use crate::host::{Buffer, Call, Host, Map, MetricKind, Status, Stream, CAS_MISMATCH, NOT_FOUND};

/// A local reply the filter sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalReply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// A gRPC reply's status (its message is `body`).
    pub grpc_status: Option<u32>,
}

impl LocalReply {
    pub fn header(&self, name: &str) -> Option<&str> {
        find(&self.headers, name)
    }

    pub fn json(&self) -> crate::json::Value {
        crate::json::read::from_slice(&self.body)
            .ok()
            .unwrap_or(crate::json::Value::Null)
    }
}

/// A callout the filter dispatched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dispatched {
    pub token: u32,
    pub cluster: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub timeout_ms: u32,
}

impl Dispatched {
    pub fn header(&self, name: &str) -> Option<&str> {
        find(&self.headers, name)
    }
}

/// One metric as defined and as it stands.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Metric {
    name: String,
    kind: MetricKind,
    value: u64,
    /// Histogram samples.
    samples: Vec<u64>,
}

fn find<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn set(headers: &mut Vec<(String, String)>, name: &str, value: &str) {
    headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
    headers.push((name.to_string(), value.to_string()));
}

/// The host status a `MemoryStore` error stands for.
fn status_of(e: StoreError) -> Status {
    match e {
        StoreError::CasMismatch => CAS_MISMATCH,
        // proxy-wasm's InternalFailure.
        _ => 10,
    }
}

#[derive(Default)]
pub struct TestHost {
    request_headers: RefCell<Vec<(String, String)>>,
    response_headers: RefCell<Vec<(String, String)>>,
    response_trailers: RefCell<Vec<(String, String)>>,
    request_body: RefCell<Vec<u8>>,
    response_body: RefCell<Vec<u8>>,
    callout_headers: RefCell<Vec<(String, String)>>,
    callout_body: RefCell<Vec<u8>>,
    configuration: RefCell<Vec<u8>>,
    properties: RefCell<HashMap<Vec<String>, Vec<u8>>>,
    shared: MemoryStore,
    metrics: RefCell<Vec<Metric>>,
    now_ns: Cell<u64>,
    tick_ms: Cell<Option<u32>>,
    next_token: Cell<u32>,
    /// Effects of the current stream.
    replies: RefCell<Vec<LocalReply>>,
    dispatched: RefCell<Vec<Dispatched>>,
    resumed: RefCell<Vec<Stream>>,
    route_cache_cleared: Cell<u32>,
    /// Calls that fail with this status (by name: "dispatch", "set_shared_data", …).
    failing: RefCell<HashMap<&'static str, Status>>,
    /// Host calls of the current stream, by the same names.
    calls: RefCell<HashMap<&'static str, u32>>,
    critical: RefCell<Vec<String>>,
}

impl TestHost {
    pub fn new() -> Self {
        let host = TestHost::default();
        host.now_ns.set(1_800_000_000 * 1_000_000_000);
        host
    }

    pub fn configure(&self, config: &str) {
        *self.configuration.borrow_mut() = config.as_bytes().to_vec();
    }

    pub fn set_property(&self, path: &[&str], value: &[u8]) {
        let key = path.iter().map(|s| s.to_string()).collect();
        self.properties.borrow_mut().insert(key, value.to_vec());
    }

    /// Starts a new stream: the request's headers and body, and no effects yet. Shared data,
    /// metrics and the clock carry over (they are the VM's).
    pub fn request(&self, headers: &[(&str, &str)], body: &[u8]) {
        *self.request_headers.borrow_mut() = headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        *self.request_body.borrow_mut() = body.to_vec();
        self.response_headers.borrow_mut().clear();
        self.response_trailers.borrow_mut().clear();
        self.response_body.borrow_mut().clear();
        self.replies.borrow_mut().clear();
        self.dispatched.borrow_mut().clear();
        self.resumed.borrow_mut().clear();
        self.route_cache_cleared.set(0);
        self.calls.borrow_mut().clear();
    }

    /// How often the current stream made host call `name` ("header", "now_nanos", …).
    pub fn host_calls(&self, name: &str) -> u32 {
        self.calls.borrow().get(name).copied().unwrap_or(0)
    }

    /// Every host call of the current stream.
    pub fn host_calls_total(&self) -> u32 {
        self.calls.borrow().values().sum()
    }

    /// The upstream's response headers and body, for the response events.
    pub fn respond(&self, headers: &[(&str, &str)], body: &[u8]) {
        *self.response_headers.borrow_mut() = headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        *self.response_body.borrow_mut() = body.to_vec();
    }

    /// The upstream's trailers.
    pub fn respond_trailers(&self, trailers: &[(&str, &str)]) {
        *self.response_trailers.borrow_mut() = trailers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
    }

    /// The answer the next callout event delivers.
    pub fn callout_answer(&self, headers: &[(&str, &str)], body: &[u8]) {
        *self.callout_headers.borrow_mut() = headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        *self.callout_body.borrow_mut() = body.to_vec();
    }

    pub fn advance_secs(&self, secs: u64) {
        self.now_ns.set(
            self.now_ns
                .get()
                .saturating_add(secs.saturating_mul(1_000_000_000)),
        );
    }

    pub fn advance_ms(&self, ms: u64) {
        self.now_ns.set(
            self.now_ns
                .get()
                .saturating_add(ms.saturating_mul(1_000_000)),
        );
    }

    /// Makes every later call `call` fail with `status` (until `heal`).
    pub fn fail(&self, call: &'static str, status: Status) {
        self.failing.borrow_mut().insert(call, status);
    }

    pub fn heal(&self, call: &'static str) {
        self.failing.borrow_mut().remove(call);
    }

    /// Counts a host call, and fails it if the test asked for that.
    fn check(&self, call: &'static str) -> Result<(), Status> {
        *self.calls.borrow_mut().entry(call).or_insert(0) += 1;
        match self.failing.borrow().get(call) {
            Some(&s) => Err(s),
            None => Ok(()),
        }
    }

    pub fn request_header_value(&self, name: &str) -> Option<String> {
        find(&self.request_headers.borrow(), name).map(str::to_string)
    }

    pub fn response_header_value(&self, name: &str) -> Option<String> {
        find(&self.response_headers.borrow(), name).map(str::to_string)
    }

    /// The one local reply of this stream, if any (a second one is a test failure).
    pub fn reply(&self) -> Option<LocalReply> {
        let replies = self.replies.borrow();
        assert!(replies.len() <= 1, "more than one local reply: {replies:?}");
        replies.first().cloned()
    }

    pub fn dispatched(&self) -> Vec<Dispatched> {
        self.dispatched.borrow().clone()
    }

    /// The callouts dispatched since the last call (or the current stream's start), taken: a
    /// test that answers root-context callouts drains them as it goes.
    pub fn take_dispatched(&self) -> Vec<Dispatched> {
        std::mem::take(&mut *self.dispatched.borrow_mut())
    }

    pub fn resumed(&self) -> Vec<Stream> {
        self.resumed.borrow().clone()
    }

    pub fn route_cache_cleared(&self) -> u32 {
        self.route_cache_cleared.get()
    }

    pub fn tick_period_ms(&self) -> Option<u32> {
        self.tick_ms.get()
    }

    pub fn critical_logs(&self) -> Vec<String> {
        self.critical.borrow().clone()
    }

    /// A counter's or gauge's value by its full name; `None` when it was never defined.
    pub fn metric(&self, name: &str) -> Option<u64> {
        self.metrics
            .borrow()
            .iter()
            .find(|m| m.name == name)
            .map(|m| m.value)
    }

    /// A counter that must exist: its value.
    pub fn counter(&self, name: &str) -> u64 {
        self.metric(name)
            .unwrap_or_else(|| panic!("metric {name:?} was never defined"))
    }

    pub fn histogram(&self, name: &str) -> Vec<u64> {
        self.metrics
            .borrow()
            .iter()
            .find(|m| m.name == name)
            .map(|m| m.samples.clone())
            .unwrap_or_default()
    }

    pub fn shared_value(&self, key: &str) -> Option<Vec<u8>> {
        self.shared.raw(key).map(|(v, _)| v)
    }

    /// Every shared-data key, sorted.
    pub fn shared_keys(&self) -> Vec<String> {
        self.shared.keys()
    }

    fn map(&self, map: Map) -> &RefCell<Vec<(String, String)>> {
        match map {
            Map::RequestHeaders => &self.request_headers,
            Map::ResponseHeaders => &self.response_headers,
            Map::ResponseTrailers => &self.response_trailers,
            Map::CalloutHeaders => &self.callout_headers,
        }
    }
}

impl Host for TestHost {
    fn header(&self, map: Map, name: &str) -> Result<Option<String>, Status> {
        self.check("header")?;
        Ok(find(&self.map(map).borrow(), name).map(str::to_string))
    }

    fn header_map(&self, map: Map) -> Result<Option<Vec<u8>>, Status> {
        self.check("header_map")?;
        let headers = self.map(map).borrow();
        if headers.is_empty() {
            return Ok(None);
        }
        Ok(Some(crate::payload::encode_pairs(&headers)))
    }

    fn set_header(&self, map: Map, name: &str, value: &str) -> Result<(), Status> {
        self.check("set_header")?;
        set(&mut self.map(map).borrow_mut(), name, value);
        Ok(())
    }

    fn remove_header(&self, map: Map, name: &str) -> Result<(), Status> {
        self.check("remove_header")?;
        self.map(map)
            .borrow_mut()
            .retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        Ok(())
    }

    fn buffer(&self, buffer: Buffer, start: usize, max: usize) -> Result<Option<Vec<u8>>, Status> {
        self.check("buffer")?;
        let bytes = match buffer {
            Buffer::RequestBody => self.request_body.borrow().clone(),
            Buffer::ResponseBody => self.response_body.borrow().clone(),
            Buffer::CalloutBody => self.callout_body.borrow().clone(),
            Buffer::PluginConfiguration => self.configuration.borrow().clone(),
        };
        if bytes.is_empty() {
            return Ok(None);
        }
        let end = start.saturating_add(max).min(bytes.len());
        Ok(bytes.get(start.min(end)..end).map(<[u8]>::to_vec))
    }

    fn property(&self, path: &[&str]) -> Result<Option<Vec<u8>>, Status> {
        self.check("property")?;
        let key: Vec<String> = path.iter().map(|s| s.to_string()).collect();
        Ok(self.properties.borrow().get(&key).cloned())
    }

    fn send_local_response(
        &self,
        status: u16,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
        grpc_status: Option<u32>,
    ) -> Result<(), Status> {
        self.check("send_local_response")?;
        self.replies.borrow_mut().push(LocalReply {
            status,
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            body: body.unwrap_or_default().to_vec(),
            grpc_status,
        });
        Ok(())
    }

    fn clear_route_cache(&self) -> Result<(), Status> {
        self.check("clear_route_cache")?;
        self.route_cache_cleared
            .set(self.route_cache_cleared.get().saturating_add(1));
        Ok(())
    }

    fn continue_stream(&self, stream: Stream) -> Result<(), Status> {
        self.check("continue_stream")?;
        self.resumed.borrow_mut().push(stream);
        Ok(())
    }

    fn shared_data(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), Status> {
        self.check("shared_data")?;
        self.shared.get(key).map_err(status_of)
    }

    fn set_shared_data(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), Status> {
        self.check("set_shared_data")?;
        self.shared.set(key, value, cas).map_err(status_of)
    }

    fn dispatch(&self, call: &Call<'_>) -> Result<u32, Status> {
        self.check("dispatch")?;
        let token = self.next_token.get().wrapping_add(1);
        self.next_token.set(token);
        self.dispatched.borrow_mut().push(Dispatched {
            token,
            cluster: call.cluster.to_string(),
            headers: call
                .headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            body: call.body.to_vec(),
            timeout_ms: call.timeout_ms,
        });
        Ok(token)
    }

    fn define_metric(&self, kind: MetricKind, name: &str) -> Result<u32, Status> {
        self.check("define_metric")?;
        let mut metrics = self.metrics.borrow_mut();
        // Envoy returns the same id for a name defined again (a reload).
        if let Some(i) = metrics.iter().position(|m| m.name == name) {
            return Ok(u32::try_from(i).unwrap_or(u32::MAX));
        }
        metrics.push(Metric {
            name: name.to_string(),
            kind,
            value: 0,
            samples: Vec::new(),
        });
        Ok(u32::try_from(metrics.len() - 1).unwrap_or(u32::MAX))
    }

    fn increment_metric(&self, id: u32, offset: i64) -> Result<(), Status> {
        self.check("increment_metric")?;
        let mut metrics = self.metrics.borrow_mut();
        let m = metrics.get_mut(id as usize).ok_or(NOT_FOUND)?;
        m.value = m.value.saturating_add_signed(offset);
        Ok(())
    }

    fn record_metric(&self, id: u32, value: u64) -> Result<(), Status> {
        self.check("record_metric")?;
        let mut metrics = self.metrics.borrow_mut();
        let m = metrics.get_mut(id as usize).ok_or(NOT_FOUND)?;
        if m.kind == MetricKind::Histogram {
            m.samples.push(value);
        } else {
            m.value = value;
        }
        Ok(())
    }

    fn now_nanos(&self) -> Result<u64, Status> {
        self.check("now_nanos")?;
        Ok(self.now_ns.get())
    }

    fn set_tick_period_ms(&self, ms: u32) -> Result<(), Status> {
        self.tick_ms.set(Some(ms));
        Ok(())
    }

    fn log_critical(&self, message: &str) {
        self.critical.borrow_mut().push(message.to_string());
    }
}
