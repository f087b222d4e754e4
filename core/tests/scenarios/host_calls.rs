//! The host calls one request costs, by kind, for the configurations `make bench` measures:
//! every call crosses the wasm boundary, so a change that adds one shows here (the bench traces
//! the same counts from Envoy's log).

use crate::driver::*;

/// A header-routed request answered by its upstream, end to end.
fn header_routed(vm: &mut Vm) {
    let mut sent = vm.send(
        &[
            (":method", "GET"),
            (":path", "/health"),
            ("x-model", "chat"),
        ],
        b"",
    );
    vm.respond(&mut sent, OK, b"{}");
}

#[test]
fn header_routing_costs_thirteen_host_calls_and_no_clock_read() {
    let mut vm = Vm::start(&deterministic());
    header_routed(&mut vm);
    let h = &vm.host;
    // x-model; two routing headers and four response headers set; a client's
    // `x-inference-shadow` and the two optional response headers removed; requests and
    // decisions counted; the route re-selected.
    assert_eq!(
        [
            h.host_calls("header"),
            h.host_calls("set_header"),
            h.host_calls("remove_header"),
            h.host_calls("increment_metric"),
            h.host_calls("clear_route_cache"),
        ],
        [1, 6, 3, 2, 1]
    );
    assert_eq!(h.host_calls("now_nanos"), 0);
    assert_eq!(h.host_calls_total(), 13);
}

#[test]
fn a_feedback_endpoint_costs_routed_requests_nothing_but_the_path() {
    let mut cfg = deterministic();
    cfg["feedback"] =
        serde_json::json!({ "signing_key": "0123456789abcdef0123", "path": "/feedback" });
    let mut vm = Vm::start(&cfg);
    header_routed(&mut vm);
    let h = &vm.host;
    // `:path` to tell the feedback endpoint apart, and the clock for the token's expiry; the
    // method is read only on the filter's own paths.
    assert_eq!(h.host_calls("header"), 2);
    assert_eq!(h.host_calls("now_nanos"), 1);
    assert_eq!(h.host_calls_total(), 15);
}

#[test]
fn body_routing_reads_the_request_headers_in_two_calls() {
    let mut vm = Vm::start(&deterministic());
    let mut sent = vm.send(&post_json("/v1/chat/completions"), br#"{"model":"chat"}"#);
    vm.respond(&mut sent, OK, b"{}");
    let h = &vm.host;
    assert_eq!(vm.routed_cluster().as_deref(), Some("llm-small"));
    // The first header alone; then the whole map once, for the method, content type, length
    // and encoding, and the model header: one call where there were seven.
    assert_eq!([h.host_calls("header"), h.host_calls("header_map")], [1, 1]);
}
