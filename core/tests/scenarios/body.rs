//! Request bodies: malformed JSON answered 400 (the next request served normally), bodies over
//! `body.max_bytes` routed without inspection and marked.

use crate::driver::*;
use inference_router_core::host::Action;
use serde_json::json;

#[test]
fn malformed_json_is_refused_and_the_next_request_is_served() {
    let mut vm = Vm::start(&deterministic());
    let sent = vm.send(&post_json("/v1/chat/completions"), br#"{"model": "#);
    assert_eq!(sent.action, Action::Pause);
    let reply = vm.reply();
    assert_eq!(reply.status, 400);
    assert_eq!(reply.json()["error"], "invalid_body");
    assert_eq!(reply.header("x-inference-reason"), Some("error"));
    // The client's routing headers are dropped from a request the filter answers.
    assert_eq!(vm.routed_cluster(), None);
    assert_eq!(vm.counter("body.parse_failures"), 1);

    vm.send(&post_json("/v1/chat/completions"), br#"{"model":"chat"}"#);
    assert_eq!(vm.routed_cluster().as_deref(), Some("llm-small"));
}

#[test]
fn a_body_over_the_limit_is_routed_uninspected_and_marked() {
    let mut cfg = deterministic();
    cfg["body"] = json!({ "max_bytes": 16 });
    cfg["default_model"] = json!("sentiment");
    let mut vm = Vm::start(&cfg);
    let body = br#"{"model":"chat","messages":["a long enough body"]}"#;
    let mut sent = vm.send(&post_json("/v1/chat/completions"), body);
    assert_eq!(sent.action, Action::Continue);
    // Not inspected: the body's model is not seen, the default model serves.
    assert_eq!(vm.routed_cluster().as_deref(), Some("sentiment-v1"));
    vm.respond(&mut sent, OK, b"");
    assert_eq!(
        vm.response_header("x-inference-body").as_deref(),
        Some("too-large")
    );
    assert_eq!(vm.counter("body.too_large"), 1);
}
