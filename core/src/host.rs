//! What the core needs from the proxy, as one small interface. The wasm shell implements it over
//! the proxy-wasm ABI; `testing::TestHost` implements it in memory for native scenario tests.
//!
//! Every call returns the host's status as a value: the core decides what a failed host call
//! means (usually: log, count, carry on), never the host adapter.

use crate::bandit::{SharedStore, StoreError};

/// A proxy-wasm status code other than OK.
pub type Status = u32;

/// The host's "not found".
pub const NOT_FOUND: Status = 1;
/// The host's answer to a shared-data write whose CAS token is stale.
pub const CAS_MISMATCH: Status = 8;

/// The header maps the filter reads and writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Map {
    RequestHeaders,
    ResponseHeaders,
    /// The upstream's trailers (gRPC's status comes in them).
    ResponseTrailers,
    /// The headers of the callout answer being delivered.
    CalloutHeaders,
}

/// The buffers the filter reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Buffer {
    RequestBody,
    ResponseBody,
    /// The body of the callout answer being delivered.
    CalloutBody,
    PluginConfiguration,
}

/// Which half of a stream to resume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Request,
    Response,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    Counter,
    Gauge,
    Histogram,
}

/// What a stream callback tells the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Continue,
    Pause,
}

/// A callout to send: `headers` include `:method`, `:path` and `:authority`.
pub struct Call<'a> {
    pub cluster: &'a str,
    pub headers: &'a [(&'a str, &'a str)],
    pub body: &'a [u8],
    pub timeout_ms: u32,
}

/// The proxy, as the core sees it. `&self` throughout: host calls act on the current context,
/// and the test host keeps its effects behind interior mutability.
pub trait Host {
    /// One header's value; `None` when absent (or not UTF-8).
    fn header(&self, map: Map, name: &str) -> Result<Option<String>, Status>;
    /// Every header of a map in one call, serialized as proxy-wasm header pairs
    /// (`payload::decode_pairs` reads them); `None` when the map is empty or missing.
    fn header_map(&self, map: Map) -> Result<Option<Vec<u8>>, Status>;
    /// Sets a header, replacing every value it had.
    fn set_header(&self, map: Map, name: &str, value: &str) -> Result<(), Status>;
    /// Removes a header; a missing one is not an error.
    fn remove_header(&self, map: Map, name: &str) -> Result<(), Status>;
    fn buffer(&self, buffer: Buffer, start: usize, max: usize) -> Result<Option<Vec<u8>>, Status>;
    fn property(&self, path: &[&str]) -> Result<Option<Vec<u8>>, Status>;
    /// A local reply. `grpc_status`: the request is gRPC; the host answers trailers-only
    /// (HTTP 200, `grpc-status`, and `body` as `grpc-message`).
    fn send_local_response(
        &self,
        status: u16,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
        grpc_status: Option<u32>,
    ) -> Result<(), Status>;
    /// Re-selects the route after the routing headers changed.
    fn clear_route_cache(&self) -> Result<(), Status>;
    fn continue_stream(&self, stream: Stream) -> Result<(), Status>;
    /// Value and CAS token of a shared-data key; `(None, None)` when it is missing.
    fn shared_data(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), Status>;
    /// `cas` None writes unconditionally; `Err(CAS_MISMATCH)` on a race.
    fn set_shared_data(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), Status>;
    /// Starts a callout; its answer arrives as the context's callout event with this token.
    fn dispatch(&self, call: &Call<'_>) -> Result<u32, Status>;
    fn define_metric(&self, kind: MetricKind, name: &str) -> Result<u32, Status>;
    fn increment_metric(&self, id: u32, offset: i64) -> Result<(), Status>;
    fn record_metric(&self, id: u32, value: u64) -> Result<(), Status>;
    fn now_nanos(&self) -> Result<u64, Status>;
    fn set_tick_period_ms(&self, ms: u32) -> Result<(), Status>;
    /// A message the plugin must not lose in the noise (configuration refused).
    fn log_critical(&self, message: &str);

    fn now_secs(&self) -> u64 {
        self.now_nanos().map_or(0, |n| n / 1_000_000_000)
    }

    /// Counts once; a failed increment loses a count and never fails the request.
    fn bump(&self, id: u32) {
        self.add(id, 1);
    }

    fn add(&self, id: u32, n: u64) {
        if n > 0 {
            let _ = self.increment_metric(id, i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    fn request_header(&self, name: &str) -> Option<String> {
        self.header(Map::RequestHeaders, name).ok().flatten()
    }

    fn response_header(&self, name: &str) -> Option<String> {
        self.header(Map::ResponseHeaders, name).ok().flatten()
    }
}

/// Shared data as the core's `SharedStore`.
pub struct HostStore<'a>(pub &'a dyn Host);

impl SharedStore for HostStore<'_> {
    fn get(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), StoreError> {
        self.0
            .shared_data(key)
            .map_err(|s| StoreError::Host(format!("get_shared_data status {s}")))
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError> {
        self.0.set_shared_data(key, value, cas).map_err(|s| {
            if s == CAS_MISMATCH {
                StoreError::CasMismatch
            } else {
                StoreError::Host(format!("set_shared_data status {s}"))
            }
        })
    }
}
