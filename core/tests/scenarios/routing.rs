//! Which model and target: `x-model`, KServe v2 paths with versions, the OpenAI body `model`,
//! client-sent routing headers, the default model.

use crate::driver::*;
use inference_router_core::host::Action;

#[test]
fn header_routing_sets_the_cluster_and_tags_the_response() {
    let mut vm = Vm::start(&deterministic());
    let mut sent = vm.send(
        &[
            (":method", "GET"),
            (":path", "/anything"),
            ("x-model", "chat"),
            // A client cannot pick its own cluster: the filter replaces what it sent.
            ("x-inference-cluster", "llm-large"),
        ],
        b"",
    );
    assert_eq!(sent.action, Action::Continue);
    assert_eq!(vm.routed_cluster().as_deref(), Some("llm-small"));
    assert_eq!(
        vm.host
            .request_header_value("x-inference-target")
            .as_deref(),
        Some("small")
    );
    assert_eq!(vm.host.route_cache_cleared(), 1);
    // An upstream cannot forge the decision or the optional headers.
    vm.respond(
        &mut sent,
        &[
            (":status", "200"),
            ("x-inference-model", "forged"),
            ("x-inference-detector", "forged"),
        ],
        b"",
    );
    assert_eq!(
        vm.response_header("x-inference-model").as_deref(),
        Some("chat")
    );
    assert_eq!(
        vm.response_header("x-inference-target").as_deref(),
        Some("small")
    );
    assert_eq!(
        vm.response_header("x-inference-reason").as_deref(),
        Some("weighted")
    );
    assert!(vm
        .response_header("x-inference-decision")
        .is_some_and(|d| !d.is_empty()));
    assert_eq!(vm.response_header("x-inference-detector"), None);
    assert_eq!(vm.counter("requests.chat.small"), 1);
    assert_eq!(vm.counter("decisions.weighted"), 1);
    assert!(vm.host.reply().is_none());
}

#[test]
fn kserve_path_version_pins_the_target() {
    let mut vm = Vm::start(&deterministic());
    let body = br#"{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[1]}]}"#;
    let mut sent = vm.send(&post_json("/v2/models/sentiment/versions/v2/infer"), body);
    assert_eq!(sent.action, Action::Continue);
    assert_eq!(vm.routed_cluster().as_deref(), Some("sentiment-v2"));
    vm.respond(&mut sent, OK, b"{}");
    assert_eq!(
        vm.response_header("x-inference-reason").as_deref(),
        Some("path-version")
    );
    assert_eq!(vm.counter("requests.sentiment.v2"), 1);
}

#[test]
fn openai_body_model_routes_and_unknown_models_take_the_default() {
    let mut cfg = deterministic();
    cfg["default_model"] = serde_json::json!("sentiment");
    let mut vm = Vm::start(&cfg);
    vm.send(
        &post_json("/v1/chat/completions"),
        br#"{"model":"chat","messages":[]}"#,
    );
    assert_eq!(vm.routed_cluster().as_deref(), Some("llm-small"));

    let mut sent = vm.send(
        &[(":method", "GET"), (":path", "/v2/models/resnet/ready")],
        b"",
    );
    assert_eq!(vm.routed_cluster().as_deref(), Some("sentiment-v1"));
    vm.respond(&mut sent, OK, b"");
    assert_eq!(
        vm.response_header("x-inference-model").as_deref(),
        Some("sentiment")
    );
    assert_eq!(
        vm.response_header("x-inference-reason").as_deref(),
        Some("default")
    );

    // Without a default model, an unknown one is answered 404 by the filter.
    let mut vm = Vm::start(&deterministic());
    vm.send(
        &[(":method", "GET"), (":path", "/v2/models/resnet/ready")],
        b"",
    );
    let reply = vm.reply();
    assert_eq!(reply.status, 404);
    assert_eq!(reply.json()["error"], "unknown_model");
    assert_eq!(vm.routed_cluster(), None);
}
