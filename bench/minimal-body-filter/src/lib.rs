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
//! With the plugin configuration `first_chunk` it is the streaming body floor: it routes on the
//! first body callback whose first 4 KiB hold `"model": "…"` (found by a plain byte search, no
//! JSON parsing) and lets the rest of the body pass, as inference-router does with a large body
//! whose `model` comes first; otherwise it waits for the end like the body floor. What pausing a
//! request until its body's head arrives costs in Envoy, for the large-prompt latency rows.
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
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> {
        Box::new(Root { first_chunk: false })
    });
}}

struct Root {
    first_chunk: bool,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let config = self.get_plugin_configuration().unwrap_or_default();
        match String::from_utf8_lossy(&config).trim() {
            "" => {}
            "first_chunk" => self.first_chunk = true,
            _ => return false,
        }
        true
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(BodyFloor {
            first_chunk: self.first_chunk,
        }))
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

struct BodyFloor {
    /// Route on the body's head when it holds the model (`first_chunk`), once.
    first_chunk: bool,
}

/// How much of the body's head the streaming floor reads.
const HEAD: usize = 4 * 1024;

/// The string value of the first `"model"` key in `head`, found without parsing: the key, then
/// optional whitespace, a colon, optional whitespace and a string without escapes.
fn model_in(head: &[u8]) -> Option<&str> {
    let key = b"\"model\"";
    let at = head.windows(key.len()).position(|w| w == key)? + key.len();
    let rest = head.get(at..)?;
    let rest = rest.get(rest.iter().position(|b| !b.is_ascii_whitespace())?..)?;
    let rest = rest.strip_prefix(b":")?;
    let rest = rest.get(rest.iter().position(|b| !b.is_ascii_whitespace())?..)?;
    let rest = rest.strip_prefix(b"\"")?;
    let end = rest.iter().position(|&b| b == b'"' || b == b'\\')?;
    (rest.get(end) == Some(&b'"')).then_some(())?;
    std::str::from_utf8(rest.get(..end)?).ok()
}

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
        if self.first_chunk && !end_of_stream {
            self.first_chunk = false;
            let head = self
                .get_http_request_body(0, body_size.min(HEAD))
                .unwrap_or_default();
            if let Some(model) = model_in(&head) {
                self.route(model);
                return Action::Continue;
            }
        }
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
