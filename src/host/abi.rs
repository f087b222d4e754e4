//! Host calls with every status returned as a value.
//!
//! A panic kills the wasm VM (the Rust SDK's `hostcalls` panic on any status they do not
//! expect, which is why the shell does not use them). These wrappers declare the proxy-wasm ABI
//! imports with a plain `u32` status, so an unexpected answer from the host is an `Err` the
//! caller handles. Memory the host returns was allocated by our `proxy_on_memory_allocate`
//! (`exports.rs` says how), and is taken back with `Vec::from_raw_parts(ptr, len, len)`.

use std::ptr::{null, null_mut};

/// Raw proxy-wasm status (`0` is OK).
pub type Status = u32;
pub const OK: Status = 0;
pub const NOT_FOUND: Status = 1;

pub const MAP_REQUEST_HEADERS: u32 = 0;
pub const MAP_RESPONSE_HEADERS: u32 = 2;
pub const MAP_RESPONSE_TRAILERS: u32 = 3;
pub const MAP_HTTP_CALL_RESPONSE_HEADERS: u32 = 6;
pub const BUFFER_REQUEST_BODY: u32 = 0;
pub const BUFFER_RESPONSE_BODY: u32 = 1;
pub const BUFFER_HTTP_CALL_RESPONSE_BODY: u32 = 4;
pub const BUFFER_PLUGIN_CONFIGURATION: u32 = 7;
pub const METRIC_COUNTER: u32 = 0;
pub const METRIC_GAUGE: u32 = 1;
pub const METRIC_HISTOGRAM: u32 = 2;
/// `proxy_continue_stream` stream types.
pub const STREAM_REQUEST: u32 = 0;
pub const STREAM_RESPONSE: u32 = 1;

pub const LOG_INFO: u32 = 2;
pub const LOG_WARN: u32 = 3;
pub const LOG_ERROR: u32 = 4;
pub const LOG_CRITICAL: u32 = 5;

#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_log(level: u32, message_data: *const u8, message_size: usize) -> Status;
    fn proxy_get_current_time_nanoseconds(return_time: *mut u64) -> Status;
    fn proxy_set_tick_period_milliseconds(period: u32) -> Status;
    fn proxy_get_buffer_bytes(
        buffer_type: u32,
        start: usize,
        max_size: usize,
        return_buffer_data: *mut *mut u8,
        return_buffer_size: *mut usize,
    ) -> Status;
    fn proxy_get_header_map_value(
        map_type: u32,
        key_data: *const u8,
        key_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
    ) -> Status;
    fn proxy_get_header_map_pairs(
        map_type: u32,
        return_map_data: *mut *mut u8,
        return_map_size: *mut usize,
    ) -> Status;
    fn proxy_replace_header_map_value(
        map_type: u32,
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> Status;
    fn proxy_get_property(
        path_data: *const u8,
        path_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
    ) -> Status;
    fn proxy_send_local_response(
        status_code: u32,
        status_code_details_data: *const u8,
        status_code_details_size: usize,
        body_data: *const u8,
        body_size: usize,
        headers_data: *const u8,
        headers_size: usize,
        grpc_status: i32,
    ) -> Status;
    fn proxy_get_shared_data(
        key_data: *const u8,
        key_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
        return_cas: *mut u32,
    ) -> Status;
    fn proxy_set_shared_data(
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
        cas: u32,
    ) -> Status;
    fn proxy_call_foreign_function(
        function_name_data: *const u8,
        function_name_size: usize,
        arguments_data: *const u8,
        arguments_size: usize,
        results_data: *mut *mut u8,
        results_size: *mut usize,
    ) -> Status;
    fn proxy_define_metric(
        metric_type: u32,
        name_data: *const u8,
        name_size: usize,
        return_id: *mut u32,
    ) -> Status;
    fn proxy_increment_metric(metric_id: u32, offset: i64) -> Status;
    fn proxy_record_metric(metric_id: u32, value: u64) -> Status;
    fn proxy_continue_stream(stream_type: u32) -> Status;
    fn proxy_remove_header_map_value(map_type: u32, key_data: *const u8, key_size: usize)
        -> Status;
    fn proxy_http_call(
        upstream_data: *const u8,
        upstream_size: usize,
        headers_data: *const u8,
        headers_size: usize,
        body_data: *const u8,
        body_size: usize,
        trailers_data: *const u8,
        trailers_size: usize,
        timeout_milliseconds: u32,
        return_token: *mut u32,
    ) -> Status;
    fn proxy_set_effective_context(context_id: u32) -> Status;
}

fn status(s: Status) -> Result<(), Status> {
    if s == OK {
        Ok(())
    } else {
        Err(s)
    }
}

/// Takes ownership of a host-returned buffer.
///
/// # Safety
/// `data` must be null or a buffer of `size` bytes allocated by `proxy_on_memory_allocate`
/// (`exports.rs`).
unsafe fn take(data: *mut u8, size: usize) -> Option<Vec<u8>> {
    if data.is_null() {
        None
    } else {
        // SAFETY: the caller guarantees `data` is a host-returned allocation of `size` bytes.
        Some(unsafe { Vec::from_raw_parts(data, size, size) })
    }
}

pub fn log(level: u32, message: &str) -> Result<(), Status> {
    // SAFETY: pointers and lengths are of live borrowed slices; out-params are locals.
    status(unsafe { proxy_log(level, message.as_ptr(), message.len()) })
}

pub fn now_nanos() -> Result<u64, Status> {
    let mut t = 0u64;
    // SAFETY: the out-param is a live local.
    status(unsafe { proxy_get_current_time_nanoseconds(&mut t) }).map(|()| t)
}

pub fn set_tick_period_ms(ms: u32) -> Result<(), Status> {
    // SAFETY: an ABI import that takes scalars only.
    status(unsafe { proxy_set_tick_period_milliseconds(ms) })
}

pub fn get_buffer(
    buffer_type: u32,
    start: usize,
    max_size: usize,
) -> Result<Option<Vec<u8>>, Status> {
    let mut data = null_mut();
    let mut size = 0usize;
    // SAFETY: pointers and lengths are of live borrowed slices; out-params are locals.
    match unsafe { proxy_get_buffer_bytes(buffer_type, start, max_size, &mut data, &mut size) } {
        // SAFETY: the host filled `data` / `size` with its allocation (or null).
        OK => Ok(unsafe { take(data, size) }),
        NOT_FOUND => Ok(None),
        s => Err(s),
    }
}

pub fn get_header(map_type: u32, name: &str) -> Result<Option<String>, Status> {
    let mut data = null_mut();
    let mut size = 0usize;
    // SAFETY: pointers and lengths are of live borrowed slices; out-params are locals.
    match unsafe {
        proxy_get_header_map_value(map_type, name.as_ptr(), name.len(), &mut data, &mut size)
    } {
        // An empty value comes back as OK with a null pointer: present, and empty. Header
        // values are bytes on the wire; a non-UTF-8 value is treated as absent.
        // SAFETY: the host filled `data` / `size` with its allocation (or null).
        OK => Ok(String::from_utf8(unsafe { take(data, size) }.unwrap_or_default()).ok()),
        NOT_FOUND => Ok(None),
        s => Err(s),
    }
}

/// Every header of a map, serialized as proxy-wasm pairs (the core decodes them).
pub fn get_header_map(map_type: u32) -> Result<Option<Vec<u8>>, Status> {
    let mut data = null_mut();
    let mut size = 0usize;
    // SAFETY: out-params are locals.
    match unsafe { proxy_get_header_map_pairs(map_type, &mut data, &mut size) } {
        // SAFETY: the host filled `data` / `size` with its allocation (or null).
        OK => Ok(unsafe { take(data, size) }),
        NOT_FOUND => Ok(None),
        s => Err(s),
    }
}

/// Sets (replacing any existing values) a header.
pub fn set_header(map_type: u32, name: &str, value: &str) -> Result<(), Status> {
    // SAFETY: pointers and lengths are of live borrowed slices; out-params are locals.
    status(unsafe {
        proxy_replace_header_map_value(
            map_type,
            name.as_ptr(),
            name.len(),
            value.as_ptr(),
            value.len(),
        )
    })
}

pub fn get_property(path: &[&str]) -> Result<Option<Vec<u8>>, Status> {
    let serialized = inference_router_core::quote::join(path, "\0");
    let mut data = null_mut();
    let mut size = 0usize;
    // SAFETY: pointers and lengths are of live borrowed slices; out-params are locals.
    match unsafe { proxy_get_property(serialized.as_ptr(), serialized.len(), &mut data, &mut size) }
    {
        // SAFETY: the host filled `data` / `size` with its allocation (or null).
        OK => Ok(unsafe { take(data, size) }),
        NOT_FOUND => Ok(None),
        s => Err(s),
    }
}

/// The proxy-wasm header-map encoding: count, then (name length, value length) pairs, then the
/// NUL-terminated names and values.
pub fn serialize_headers(headers: &[(&str, &str)]) -> Vec<u8> {
    let size = 4 + headers
        .iter()
        .map(|(n, v)| n.len() + v.len() + 10)
        .sum::<usize>();
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(&(headers.len() as u32).to_le_bytes());
    for (n, v) in headers {
        out.extend_from_slice(&(n.len() as u32).to_le_bytes());
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
    }
    for (n, v) in headers {
        out.extend_from_slice(n.as_bytes());
        out.push(0);
        out.extend_from_slice(v.as_bytes());
        out.push(0);
    }
    out
}

/// `grpc_status`: Envoy answers a gRPC request trailers-only with it (`-1`: none).
pub fn send_local_response(
    status_code: u32,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
    grpc_status: Option<u32>,
) -> Result<(), Status> {
    let headers = serialize_headers(headers);
    let details = "inference_router";
    let (body_ptr, body_len) = body.map_or((null(), 0), |b| (b.as_ptr(), b.len()));
    // SAFETY: pointers and lengths are of live borrowed slices; out-params are locals.
    status(unsafe {
        proxy_send_local_response(
            status_code,
            details.as_ptr(),
            details.len(),
            body_ptr,
            body_len,
            headers.as_ptr(),
            headers.len(),
            grpc_status
                .and_then(|g| i32::try_from(g).ok())
                .unwrap_or(-1),
        )
    })
}

/// Value and CAS token of a shared-data key; `(None, None)` when the key is missing.
pub fn get_shared_data(key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), Status> {
    let mut data = null_mut();
    let mut size = 0usize;
    let mut cas = 0u32;
    // SAFETY: pointers and lengths are of live borrowed slices; out-params are locals.
    match unsafe { proxy_get_shared_data(key.as_ptr(), key.len(), &mut data, &mut size, &mut cas) }
    {
        // An existing empty value comes back as OK with a null pointer: it exists, empty.
        OK => Ok((
            // SAFETY: the host filled `data` / `size` with its allocation (or null).
            Some(unsafe { take(data, size) }.unwrap_or_default()),
            (cas != 0).then_some(cas),
        )),
        NOT_FOUND => Ok((None, None)),
        s => Err(s),
    }
}

/// Sets a shared-data key; `cas` 0/None writes unconditionally. `Err(CAS_MISMATCH)` on a race.
pub fn set_shared_data(key: &str, value: &[u8], cas: Option<u32>) -> Result<(), Status> {
    // SAFETY: pointers and lengths are of live borrowed slices; out-params are locals.
    status(unsafe {
        proxy_set_shared_data(
            key.as_ptr(),
            key.len(),
            value.as_ptr(),
            value.len(),
            cas.unwrap_or(0),
        )
    })
}

/// Starts an HTTP callout to `cluster`; returns its token. Envoy's `httpCall` answers OK,
/// BadArgument (an unknown cluster, a missing pseudo-header) or InternalFailure (the call could
/// not start). The caller records which context sent it (`contexts::callout_sent`).
pub fn http_call(
    cluster: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
    timeout_ms: u32,
) -> Result<u32, Status> {
    let headers = serialize_headers(headers);
    // No trailers: an empty map (its count, 0).
    let trailers = serialize_headers(&[]);
    let (body_ptr, body_len) = body.map_or((null(), 0), |b| (b.as_ptr(), b.len()));
    let mut token = 0u32;
    // SAFETY: pointers and lengths are of live borrowed slices; out-params are locals.
    status(unsafe {
        proxy_http_call(
            cluster.as_ptr(),
            cluster.len(),
            headers.as_ptr(),
            headers.len(),
            body_ptr,
            body_len,
            trailers.as_ptr(),
            trailers.len(),
            timeout_ms,
            &mut token,
        )
    })
    .map(|()| token)
}

/// Makes `context_id` the context later host calls of this callback act on (a callout's answer
/// arrives on the root context; the stream that sent it handles it).
pub fn set_effective_context(context_id: u32) -> Result<(), Status> {
    // SAFETY: an ABI import that takes scalars only.
    status(unsafe { proxy_set_effective_context(context_id) })
}

pub fn call_foreign_function(name: &str) -> Result<(), Status> {
    let mut data = null_mut();
    let mut size = 0usize;
    // SAFETY: pointers and lengths are of live borrowed slices; out-params are locals.
    let s = unsafe {
        proxy_call_foreign_function(name.as_ptr(), name.len(), null(), 0, &mut data, &mut size)
    };
    // SAFETY: the host filled `data` / `size` with its allocation (or null).
    drop(unsafe { take(data, size) });
    status(s)
}

pub fn define_metric(metric_type: u32, name: &str) -> Result<u32, Status> {
    let mut id = 0u32;
    // SAFETY: pointers and lengths are of live borrowed slices; out-params are locals.
    status(unsafe { proxy_define_metric(metric_type, name.as_ptr(), name.len(), &mut id) })
        .map(|()| id)
}

pub fn increment_metric(id: u32, offset: i64) -> Result<(), Status> {
    // SAFETY: an ABI import that takes scalars only.
    status(unsafe { proxy_increment_metric(id, offset) })
}

pub fn record_metric(id: u32, value: u64) -> Result<(), Status> {
    // SAFETY: an ABI import that takes scalars only.
    status(unsafe { proxy_record_metric(id, value) })
}

/// Removes a header (every value of it); a missing header is not an error.
pub fn remove_header(map_type: u32, name: &str) -> Result<(), Status> {
    // SAFETY: pointers and lengths are of live borrowed slices; out-params are locals.
    match unsafe { proxy_remove_header_map_value(map_type, name.as_ptr(), name.len()) } {
        OK | NOT_FOUND => Ok(()),
        s => Err(s),
    }
}

/// Resumes a stream the filter paused (`STREAM_REQUEST` / `STREAM_RESPONSE`), e.g. after a
/// callout answered. ABI 0.2.1 `proxy_continue_stream`.
pub fn continue_stream(stream_type: u32) -> Result<(), Status> {
    // SAFETY: an ABI import that takes scalars only.
    status(unsafe { proxy_continue_stream(stream_type) })
}

/// The `log` facade over `proxy_log`, never failing: a lost log line must not trap the VM.
pub struct HostLogger;

impl log::Log for HostLogger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record) {
        let level = match record.level() {
            log::Level::Error => LOG_ERROR,
            log::Level::Warn => LOG_WARN,
            log::Level::Info => LOG_INFO,
            log::Level::Debug => 1,
            log::Level::Trace => 0,
        };
        let _ = log(level, &record.args().to_string());
    }

    fn flush(&self) {}
}
