//! The SDK's context traits, each callback handed to the core with the wasm host.

use inference_router_core::host::Action as CoreAction;
use inference_router_core::plugin::{Build, VmState};
use inference_router_core::root::Root;
use inference_router_core::stream::Stream;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType};

use super::abi;
use super::wasm_host::WasmHost;

const VERSION: &str = env!("CARGO_PKG_VERSION");
const GIT_SHA: &str = env!("INFERENCE_ROUTER_GIT_SHA");

fn action(a: CoreAction) -> Action {
    match a {
        CoreAction::Continue => Action::Continue,
        CoreAction::Pause => Action::Pause,
    }
}

/// Distinct per VM start (decision ids and draws must not repeat across restarts).
fn entropy_u64() -> u64 {
    let mut buf = [0u8; 8];
    match getrandom::fill(&mut buf) {
        Ok(()) => u64::from_le_bytes(buf),
        Err(e) => {
            log::warn!("inference-router: getrandom failed ({e}); seeding from the clock");
            abi::now_nanos().unwrap_or(0x5eed)
        }
    }
}

pub(crate) struct RootShell(Root);

impl RootShell {
    pub fn new() -> Self {
        let build = Build {
            version: VERSION,
            commit: GIT_SHA,
        };
        RootShell(Root::new(
            VmState::new(entropy_u64(), entropy_u64()).with_build(build),
        ))
    }
}

impl Context for RootShell {
    fn on_http_call_response(
        &mut self,
        token: u32,
        _headers: usize,
        body_size: usize,
        _trailers: usize,
    ) {
        self.0.on_callout_answer(&WasmHost, token, body_size);
    }
}

impl RootContext for RootShell {
    fn on_vm_start(&mut self, _vm_configuration_size: usize) -> bool {
        log::info!("inference-router {VERSION} ({GIT_SHA}) starting");
        true
    }

    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        self.0.configure(&WasmHost)
    }

    fn on_tick(&mut self) {
        self.0.on_tick(&WasmHost);
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        // The SDK panics on None; without a configuration (Envoy refuses the listener first,
        // so this is defensive) the stream passes through untouched.
        Some(match self.0.stream(context_id) {
            Some(stream) => Box::new(StreamShell(stream)),
            None => Box::new(PassThrough),
        })
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct StreamShell(Stream);

impl Context for StreamShell {
    fn on_http_call_response(
        &mut self,
        token: u32,
        _headers: usize,
        body_size: usize,
        _trailers: usize,
    ) {
        self.0.on_callout_answer(&WasmHost, token, body_size);
    }
}

impl HttpContext for StreamShell {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        // The only panic of the shell, compiled only into the test-trap build that the fault
        // suite uses (target/test-trap); the shipped module has none.
        #[cfg(feature = "test-trap")]
        #[allow(clippy::panic)]
        if matches!(
            abi::get_header(abi::MAP_REQUEST_HEADERS, "x-inference-test-trap"),
            Ok(Some(_))
        ) {
            panic!("test-trap build: trap requested by x-inference-test-trap");
        }
        action(self.0.on_request_headers(&WasmHost, end_of_stream))
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        action(self.0.on_request_body(&WasmHost, body_size, end_of_stream))
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        action(self.0.on_request_trailers(&WasmHost))
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        action(self.0.on_response_headers(&WasmHost, end_of_stream))
    }

    fn on_http_response_body(&mut self, body_size: usize, _end_of_stream: bool) -> Action {
        action(self.0.on_response_body(&WasmHost, body_size))
    }

    fn on_http_response_trailers(&mut self, _num_trailers: usize) -> Action {
        action(self.0.on_response_trailers(&WasmHost))
    }

    fn on_log(&mut self) {
        self.0.on_done(&WasmHost);
    }
}

/// The context of a plugin that has no configuration: every stream passes untouched.
struct PassThrough;

impl Context for PassThrough {}

impl HttpContext for PassThrough {}
