//! The proxy-wasm ABI 0.2.1 entry points Envoy calls, each handed to the context it names.
//!
//! Only the callbacks the filter acts on are exported; Envoy treats a missing one (queues,
//! gRPC callouts, foreign functions, network filters) as a no-op, which is what the SDK's
//! defaults did. A callback for an id the shell does not keep (a pass-through stream) answers
//! as a pass-through stream does: Continue, and `on_done` true.

use inference_router_core::host::Action;

use super::abi;
use super::contexts::{self, callout_answered, with};
use super::wasm_host::WasmHost;

/// `proxy_on_request_headers` etc. answer the host with these.
const CONTINUE: u32 = 0;
const PAUSE: u32 = 1;

fn action(a: Action) -> u32 {
    match a {
        Action::Continue => CONTINUE,
        Action::Pause => PAUSE,
    }
}

#[no_mangle]
pub extern "C" fn proxy_abi_version_0_2_1() {}

/// Memory the host fills for a host call's answer: a boxed `[u8]` of exactly `size` bytes, so
/// `abi` takes it back as `Vec::from_raw_parts(ptr, size, size)` (same layout, capacity = size).
#[no_mangle]
pub extern "C" fn proxy_on_memory_allocate(size: usize) -> *mut u8 {
    Box::into_raw(Box::<[u8]>::new_uninit_slice(size)).cast::<u8>()
}

#[no_mangle]
pub extern "C" fn proxy_on_context_create(context_id: u32, root_context_id: u32) {
    if root_context_id == 0 {
        let root = contexts::new_root();
        with((), |c| c.add_root(context_id, root));
    } else {
        with((), |c| c.add_stream(context_id, root_context_id));
    }
}

#[no_mangle]
pub extern "C" fn proxy_on_vm_start(context_id: u32, _vm_configuration_size: usize) -> bool {
    with(false, |c| {
        let started = c.root(context_id).is_some();
        if started {
            contexts::log_start();
        }
        started
    })
}

#[no_mangle]
pub extern "C" fn proxy_on_configure(context_id: u32, _plugin_configuration_size: usize) -> bool {
    with(false, |c| {
        c.root(context_id)
            .is_some_and(|r| r.configure(&WasmHost::of(context_id)))
    })
}

#[no_mangle]
pub extern "C" fn proxy_on_tick(context_id: u32) {
    with((), |c| {
        if let Some(r) = c.root(context_id) {
            r.on_tick(&WasmHost::of(context_id));
        }
    });
}

#[no_mangle]
pub extern "C" fn proxy_on_request_headers(
    context_id: u32,
    _num_headers: usize,
    end_of_stream: bool,
) -> u32 {
    with(CONTINUE, |c| {
        let Some(s) = c.stream(context_id) else {
            return CONTINUE;
        };
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
        action(s.on_request_headers(&WasmHost::of(context_id), end_of_stream))
    })
}

#[no_mangle]
pub extern "C" fn proxy_on_request_body(
    context_id: u32,
    body_size: usize,
    end_of_stream: bool,
) -> u32 {
    with(CONTINUE, |c| match c.stream(context_id) {
        Some(s) => action(s.on_request_body(&WasmHost::of(context_id), body_size, end_of_stream)),
        None => CONTINUE,
    })
}

#[no_mangle]
pub extern "C" fn proxy_on_request_trailers(context_id: u32, _num_trailers: usize) -> u32 {
    with(CONTINUE, |c| match c.stream(context_id) {
        Some(s) => action(s.on_request_trailers(&WasmHost::of(context_id))),
        None => CONTINUE,
    })
}

#[no_mangle]
pub extern "C" fn proxy_on_response_headers(
    context_id: u32,
    _num_headers: usize,
    end_of_stream: bool,
) -> u32 {
    with(CONTINUE, |c| match c.stream(context_id) {
        Some(s) => action(s.on_response_headers(&WasmHost::of(context_id), end_of_stream)),
        None => CONTINUE,
    })
}

#[no_mangle]
pub extern "C" fn proxy_on_response_body(
    context_id: u32,
    body_size: usize,
    _end_of_stream: bool,
) -> u32 {
    with(CONTINUE, |c| match c.stream(context_id) {
        Some(s) => action(s.on_response_body(&WasmHost::of(context_id), body_size)),
        None => CONTINUE,
    })
}

#[no_mangle]
pub extern "C" fn proxy_on_response_trailers(context_id: u32, _num_trailers: usize) -> u32 {
    with(CONTINUE, |c| match c.stream(context_id) {
        Some(s) => action(s.on_response_trailers(&WasmHost::of(context_id))),
        None => CONTINUE,
    })
}

/// The stream is done (Envoy's log phase); a root context has nothing to log.
#[no_mangle]
pub extern "C" fn proxy_on_log(context_id: u32) {
    with((), |c| {
        if let Some(s) = c.stream(context_id) {
            s.on_done(&WasmHost::of(context_id));
        }
    });
}

/// Every context is done when Envoy asks (a root context never delays its shutdown).
#[no_mangle]
pub extern "C" fn proxy_on_done(_context_id: u32) -> bool {
    true
}

#[no_mangle]
pub extern "C" fn proxy_on_delete(context_id: u32) {
    with((), |c| c.remove(context_id));
    contexts::forget_callouts(context_id);
}

/// An HTTP callout answered (or failed): handed to the context that sent it, whatever context
/// Envoy delivers it to.
#[no_mangle]
pub extern "C" fn proxy_on_http_call_response(
    _context_id: u32,
    token: u32,
    _num_headers: usize,
    body_size: usize,
    _num_trailers: usize,
) {
    let Some(sender) = callout_answered(token) else {
        return;
    };
    with((), |c| {
        let host = WasmHost::of(sender);
        if let Some(s) = c.stream(sender) {
            if abi::set_effective_context(sender).is_ok() {
                s.on_callout_answer(&host, token, body_size);
            }
        } else if let Some(r) = c.root(sender) {
            if abi::set_effective_context(sender).is_ok() {
                r.on_callout_answer(&host, token, body_size);
            }
        }
    });
}
