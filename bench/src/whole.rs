//! A whole request through the filter's lifecycle (`Root` → `Stream`: request headers,
//! response headers, done) against a host that does nothing: what the module itself spends per
//! request, without the host calls' cost, which only the Envoy benchmark shows.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;

use inference_router_core::host::{Buffer, Call, Host, Map, MetricKind, Status, Stream};
use inference_router_core::plugin::VmState;
use inference_router_core::root::Root;

/// Answers every host call at once: request headers from a list, shared data in a map.
pub struct NopHost {
    config: Vec<u8>,
    request: Vec<(String, String)>,
    shared: RefCell<HashMap<String, (Vec<u8>, u32)>>,
    now_ns: Cell<u64>,
    metrics: Cell<u32>,
}

impl NopHost {
    pub fn new(config: &str, request: &[(&str, &str)]) -> NopHost {
        NopHost {
            config: config.as_bytes().to_vec(),
            request: request
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            shared: RefCell::new(HashMap::new()),
            now_ns: Cell::new(1_700_000_000_000_000_000),
            metrics: Cell::new(0),
        }
    }
}

impl Host for NopHost {
    fn header(&self, map: Map, name: &str) -> Result<Option<String>, Status> {
        if !matches!(map, Map::RequestHeaders) {
            return Ok(None);
        }
        Ok(self
            .request
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone()))
    }
    fn header_map(&self, _: Map) -> Result<Option<Vec<u8>>, Status> {
        Ok(None)
    }
    fn set_header(&self, _: Map, _: &str, _: &str) -> Result<(), Status> {
        Ok(())
    }
    fn remove_header(&self, _: Map, _: &str) -> Result<(), Status> {
        Ok(())
    }
    fn buffer(&self, buffer: Buffer, start: usize, max: usize) -> Result<Option<Vec<u8>>, Status> {
        Ok(match buffer {
            Buffer::PluginConfiguration => {
                Some(self.config.iter().skip(start).take(max).copied().collect())
            }
            _ => None,
        })
    }
    fn property(&self, _: &[&str]) -> Result<Option<Vec<u8>>, Status> {
        Ok(None)
    }
    fn send_local_response(
        &self,
        _: u16,
        _: &[(&str, &str)],
        _: Option<&[u8]>,
        _: Option<u32>,
    ) -> Result<(), Status> {
        Ok(())
    }
    fn clear_route_cache(&self) -> Result<(), Status> {
        Ok(())
    }
    fn continue_stream(&self, _: Stream) -> Result<(), Status> {
        Ok(())
    }
    fn shared_data(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), Status> {
        Ok(match self.shared.borrow().get(key) {
            Some((v, cas)) => (Some(v.clone()), Some(*cas)),
            None => (None, None),
        })
    }
    fn set_shared_data(&self, key: &str, value: &[u8], _: Option<u32>) -> Result<(), Status> {
        let mut shared = self.shared.borrow_mut();
        let cas = shared.get(key).map_or(1, |(_, c)| c + 1);
        shared.insert(key.to_string(), (value.to_vec(), cas));
        Ok(())
    }
    fn dispatch(&self, _: &Call<'_>) -> Result<u32, Status> {
        Ok(1)
    }
    fn define_metric(&self, _: MetricKind, _: &str) -> Result<u32, Status> {
        self.metrics.set(self.metrics.get() + 1);
        Ok(self.metrics.get())
    }
    fn increment_metric(&self, _: u32, _: i64) -> Result<(), Status> {
        Ok(())
    }
    fn record_metric(&self, _: u32, _: u64) -> Result<(), Status> {
        Ok(())
    }
    fn now_nanos(&self) -> Result<u64, Status> {
        self.now_ns.set(self.now_ns.get() + 1_000);
        Ok(self.now_ns.get())
    }
    fn set_tick_period_ms(&self, _: u32) -> Result<(), Status> {
        Ok(())
    }
    fn log_critical(&self, message: &str) {
        eprintln!("core-bench: {message}");
    }
}

/// A configured root on `host`; `None` when the configuration is refused.
pub fn root(host: &NopHost) -> Option<Root> {
    let mut root = Root::new(VmState::new(1, 2));
    root.configure(host).then_some(root)
}

/// One GET request, routed and answered; `false` if it was not routed.
pub fn request(root: &Root, host: &NopHost, context: u32) -> bool {
    let Some(mut stream) = root.stream(context) else {
        return false;
    };
    let routed =
        stream.on_request_headers(host, true) == inference_router_core::host::Action::Continue;
    stream.on_response_headers(host, false);
    stream.on_done(host);
    routed
}
