//! A whole request through the filter's lifecycle (`Root` → `Stream`: request headers,
//! response headers, done) against a host that does nothing: what the module itself spends per
//! request, without the host calls' cost, which only the Envoy benchmark shows.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;

use inference_router_core::host::{Buffer, Call, Host, Map, MetricKind, Status, Stream};
use inference_router_core::payload;
use inference_router_core::plugin::VmState;
use inference_router_core::root::Root;

/// Answers every host call at once: request headers from a list, shared data in a map.
pub struct NopHost {
    config: Vec<u8>,
    request: RefCell<Vec<(String, String)>>,
    /// The request body `buffer(RequestBody)` answers with.
    body: RefCell<Vec<u8>>,
    /// The last `x-inference-decision` the filter set on a response.
    decision: RefCell<Option<String>>,
    shared: RefCell<HashMap<String, (Vec<u8>, u32)>>,
    now_ns: Cell<u64>,
    metrics: Cell<u32>,
    /// The status of the last local reply the filter sent.
    local_status: Cell<u16>,
}

impl NopHost {
    pub fn new(config: &str, request: &[(&str, &str)]) -> NopHost {
        let host = NopHost {
            config: config.as_bytes().to_vec(),
            request: RefCell::new(Vec::new()),
            body: RefCell::new(Vec::new()),
            decision: RefCell::new(None),
            shared: RefCell::new(HashMap::new()),
            now_ns: Cell::new(1_700_000_000_000_000_000),
            metrics: Cell::new(0),
            local_status: Cell::new(0),
        };
        host.set_request(request, b"");
        host
    }

    /// The request headers and body the next requests see.
    pub fn set_request(&self, request: &[(&str, &str)], body: &[u8]) {
        *self.request.borrow_mut() = request
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        *self.body.borrow_mut() = body.to_vec();
    }

    /// The status of the last local reply the filter sent (0: none yet).
    pub fn local_status(&self) -> u16 {
        self.local_status.get()
    }

    /// The decision id the filter last set on a response.
    pub fn decision(&self) -> Option<String> {
        self.decision.borrow().clone()
    }
}

impl Host for NopHost {
    fn header(&self, map: Map, name: &str) -> Result<Option<String>, Status> {
        if !matches!(map, Map::RequestHeaders) {
            return Ok(None);
        }
        Ok(self
            .request
            .borrow()
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone()))
    }
    /// The request headers in proxy-wasm's map encoding, as Envoy answers
    /// `proxy_get_header_map_pairs`.
    fn header_map(&self, map: Map) -> Result<Option<Vec<u8>>, Status> {
        if !matches!(map, Map::RequestHeaders) {
            return Ok(None);
        }
        Ok(Some(payload::encode_pairs(&self.request.borrow())))
    }
    fn set_header(&self, map: Map, name: &str, value: &str) -> Result<(), Status> {
        if matches!(map, Map::ResponseHeaders) && name == "x-inference-decision" {
            // The buffer is reused: an allocation here would count against the filter.
            let mut d = self.decision.borrow_mut();
            let d = d.get_or_insert_with(String::new);
            d.clear();
            d.push_str(value);
        }
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
            // One copy, as the host's buffer read is (not a byte-by-byte collect, which would
            // count against the filter under callgrind).
            Buffer::RequestBody => {
                let body = self.body.borrow();
                let from = start.min(body.len());
                let to = from.saturating_add(max).min(body.len());
                body.get(from..to).map(<[u8]>::to_vec)
            }
            _ => None,
        })
    }
    fn property(&self, _: &[&str]) -> Result<Option<Vec<u8>>, Status> {
        Ok(None)
    }
    fn send_local_response(
        &self,
        status: u16,
        _: &[(&str, &str)],
        _: Option<&[u8]>,
        _: Option<u32>,
    ) -> Result<(), Status> {
        self.local_status.set(status);
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

/// [`root`] for a case named `what`; a refused configuration ends the bench (exit 2).
pub fn root_or_exit(host: &NopHost, what: &str) -> Root {
    root(host).unwrap_or_else(|| {
        eprintln!("core-bench: whole request ({what}): configuration refused");
        std::process::exit(2)
    })
}

/// The next stream's context id (0 and 1 are the VM's and the root's).
pub fn next_context(context: &mut u32) -> u32 {
    *context = context.wrapping_add(1).max(2);
    *context
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

/// One request whose body arrives in `chunk`-byte pieces (`usize::MAX`: in one), as Envoy hands
/// a body on (each call sees everything buffered so far), answered: the action that ended the
/// request phase, after which the remaining pieces pass as they do in Envoy (`None`: no stream).
pub fn request_with_body(
    root: &Root,
    host: &NopHost,
    context: u32,
    chunk: usize,
) -> Option<inference_router_core::host::Action> {
    use inference_router_core::host::Action;
    let mut stream = root.stream(context)?;
    let len = host.body.borrow().len();
    let mut action = stream.on_request_headers(host, false);
    let mut seen = 0;
    while seen < len {
        seen = seen.saturating_add(chunk.max(1)).min(len);
        let now = stream.on_request_body(host, seen, seen == len);
        if action == Action::Pause {
            action = now;
        }
    }
    stream.on_response_headers(host, false);
    stream.on_done(host);
    Some(action)
}
