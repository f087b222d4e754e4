//! The core's `Host` over the proxy-wasm ABI: each method is one host call, translated.

use inference_router_core::host::{Buffer, Call, Host, Map, MetricKind, Status, Stream};

use super::{abi, contexts};

/// The host as seen by one context: the callouts it sends are answered to it.
pub(crate) struct WasmHost {
    context_id: u32,
}

impl WasmHost {
    pub fn of(context_id: u32) -> Self {
        WasmHost { context_id }
    }
}

fn map(m: Map) -> u32 {
    match m {
        Map::RequestHeaders => abi::MAP_REQUEST_HEADERS,
        Map::ResponseHeaders => abi::MAP_RESPONSE_HEADERS,
        Map::ResponseTrailers => abi::MAP_RESPONSE_TRAILERS,
        Map::CalloutHeaders => abi::MAP_HTTP_CALL_RESPONSE_HEADERS,
    }
}

impl Host for WasmHost {
    fn header(&self, m: Map, name: &str) -> Result<Option<String>, Status> {
        abi::get_header(map(m), name)
    }

    fn header_map(&self, m: Map) -> Result<Option<Vec<u8>>, Status> {
        abi::get_header_map(map(m))
    }

    fn set_header(&self, m: Map, name: &str, value: &str) -> Result<(), Status> {
        abi::set_header(map(m), name, value)
    }

    fn remove_header(&self, m: Map, name: &str) -> Result<(), Status> {
        abi::remove_header(map(m), name)
    }

    fn buffer(&self, buffer: Buffer, start: usize, max: usize) -> Result<Option<Vec<u8>>, Status> {
        let kind = match buffer {
            Buffer::RequestBody => abi::BUFFER_REQUEST_BODY,
            Buffer::ResponseBody => abi::BUFFER_RESPONSE_BODY,
            Buffer::CalloutBody => abi::BUFFER_HTTP_CALL_RESPONSE_BODY,
            Buffer::PluginConfiguration => abi::BUFFER_PLUGIN_CONFIGURATION,
        };
        abi::get_buffer(kind, start, max)
    }

    fn property(&self, path: &[&str]) -> Result<Option<Vec<u8>>, Status> {
        abi::get_property(path)
    }

    fn send_local_response(
        &self,
        status: u16,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
        grpc_status: Option<u32>,
    ) -> Result<(), Status> {
        abi::send_local_response(u32::from(status), headers, body, grpc_status)
    }

    fn clear_route_cache(&self) -> Result<(), Status> {
        abi::call_foreign_function("clear_route_cache")
    }

    fn continue_stream(&self, stream: Stream) -> Result<(), Status> {
        abi::continue_stream(match stream {
            Stream::Request => abi::STREAM_REQUEST,
            Stream::Response => abi::STREAM_RESPONSE,
        })
    }

    fn shared_data(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), Status> {
        abi::get_shared_data(key)
    }

    fn set_shared_data(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), Status> {
        abi::set_shared_data(key, value, cas)
    }

    fn dispatch(&self, call: &Call<'_>) -> Result<u32, Status> {
        let token = abi::http_call(call.cluster, call.headers, Some(call.body), call.timeout_ms)?;
        contexts::callout_sent(token, self.context_id);
        Ok(token)
    }

    fn define_metric(&self, kind: MetricKind, name: &str) -> Result<u32, Status> {
        let kind = match kind {
            MetricKind::Counter => abi::METRIC_COUNTER,
            MetricKind::Gauge => abi::METRIC_GAUGE,
            MetricKind::Histogram => abi::METRIC_HISTOGRAM,
        };
        abi::define_metric(kind, name)
    }

    fn increment_metric(&self, id: u32, offset: i64) -> Result<(), Status> {
        abi::increment_metric(id, offset)
    }

    fn record_metric(&self, id: u32, value: u64) -> Result<(), Status> {
        abi::record_metric(id, value)
    }

    fn now_nanos(&self) -> Result<u64, Status> {
        abi::now_nanos()
    }

    fn set_tick_period_ms(&self, ms: u32) -> Result<(), Status> {
        abi::set_tick_period_ms(ms)
    }

    fn log_critical(&self, message: &str) {
        let _ = abi::log(abi::LOG_CRITICAL, message);
    }
}
