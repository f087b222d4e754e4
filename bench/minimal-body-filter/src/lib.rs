//! The body floor of the benchmark: the cheapest honest wasm filter that routes on a field of
//! the request body, which every body-routing configuration is compared to ("× body floor").
//!
//! Per request: the headers callback pauses the request (unless it has no body); each body
//! callback pauses until the last chunk; then the filter reads the whole body in one host call,
//! deserialises `{"model": …}` with serde_json (a struct with one field: the other fields are
//! checked for well-formedness and skipped, as a minimal Rust filter would do it), sets
//! `x-inference-cluster` to the model (or `chat` when the body has none or is not JSON), asks
//! Envoy to select the route again (`clear_route_cache`, as inference-router does after setting
//! its routing headers) and continues. No configuration, no metrics, no response headers.
//!
//! Needs `allow_on_headers_stop_iteration: true` in the wasm filter's `config`, like
//! inference-router's body routing (docs/envoy-notes.md).
//!
//! Benchmark code: the SDK's convenience calls (which panic on an unexpected host status) are
//! acceptable here; the real filter goes through its own non-panicking ABI layer.

use std::borrow::Cow;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};
use serde::Deserialize;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root) });
}}

struct Root;

impl Context for Root {}

impl RootContext for Root {
    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(BodyFloor))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// The one field the floor reads.
#[derive(Deserialize)]
struct Model<'a> {
    #[serde(borrow)]
    model: Cow<'a, str>,
}

struct BodyFloor;

impl BodyFloor {
    fn route(&self, cluster: &str) {
        self.set_http_request_header("x-inference-cluster", Some(cluster));
        let _ = hostcalls::call_foreign_function("clear_route_cache", None);
    }
}

impl Context for BodyFloor {}

impl HttpContext for BodyFloor {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        if end_of_stream {
            // No body to read.
            self.route("chat");
            return Action::Continue;
        }
        Action::Pause
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if !end_of_stream {
            return Action::Pause;
        }
        let body = self.get_http_request_body(0, body_size).unwrap_or_default();
        match serde_json::from_slice::<Model>(&body) {
            Ok(m) => self.route(&m.model),
            Err(_) => self.route("chat"),
        }
        Action::Continue
    }
}
