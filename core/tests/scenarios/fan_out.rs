//! Fan-out (`models[].fan_out`): a non-streamed POST goes to every target by callout (method,
//! path with its query, authority, content type, body) and the client gets one JSON reply in
//! target order, whatever order the answers arrive in. A failed or timed-out target appears with
//! `"status": null` and an `"error"`, the reply is partial; none 2xx is a 502. Pinned, GET and
//! streamed requests go to one target.

use crate::driver::*;
use inference_router_core::host::Action;
use serde_json::{json, Value};

fn fan_out_config(timeout_ms: u64) -> Value {
    json!({
        "models": [
            { "name": "iris",
              "targets": [ { "name": "v1", "cluster": "iris-v1", "weight": 1 },
                           { "name": "v2", "cluster": "iris-v2", "weight": 1 },
                           { "name": "v3", "cluster": "sentiment-v2", "weight": 1 } ],
              "fan_out": { "timeout_ms": timeout_ms } }
        ]
    })
}

fn infer(i: u64) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "inputs": [ { "name": "x", "shape": [1, 2], "datatype": "FP32", "data": [i, 7] } ]
    }))
    .unwrap()
}

fn infer_headers() -> Vec<(&'static str, &'static str)> {
    vec![
        (":method", "POST"),
        (":path", "/v2/models/iris/infer?trace=1"),
        (":authority", "models.example"),
        ("content-type", "application/json"),
        ("authorization", "Bearer user"),
        ("x-other", "not resent"),
    ]
}

/// Sends an inference request; asserts it paused on three callouts, one per target.
fn fan(vm: &mut Vm, body: &[u8]) -> (Sent, Vec<u32>) {
    let sent = vm.send(&infer_headers(), body);
    assert_eq!(sent.action, Action::Pause);
    assert_eq!(vm.routed_cluster(), None);
    let calls = vm.dispatched();
    let clusters: Vec<&str> = calls.iter().map(|c| c.cluster.as_str()).collect();
    assert_eq!(clusters, ["iris-v1", "iris-v2", "sentiment-v2"]);
    for c in &calls {
        let headers: Vec<(&str, &str)> = c
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            headers,
            [
                (":method", "POST"),
                (":path", "/v2/models/iris/infer?trace=1"),
                (":authority", "models.example"),
                ("content-type", "application/json"),
                ("authorization", "Bearer user"),
            ]
        );
        assert_eq!(c.body, body);
        assert_eq!(c.timeout_ms, 500);
    }
    let tokens = calls.iter().map(|c| c.token).collect();
    (sent, tokens)
}

#[test]
fn every_target_answers_in_one_reply_in_target_order() {
    let mut vm = Vm::start(&fan_out_config(500));
    let body = infer(1);
    let (mut sent, tokens) = fan(&mut vm, &body);
    // Answers arrive out of order; a text answer is kept as text.
    vm.answer(
        &mut sent,
        tokens[2],
        &[(":status", "200"), ("content-type", "text/plain")],
        b"three",
    );
    assert!(
        vm.host.reply().is_none(),
        "replied before every target answered"
    );
    vm.answer(&mut sent, tokens[0], &status("200"), br#"{"p":[0.9]}"#);
    vm.answer(&mut sent, tokens[1], &status("200"), br#"{"p":[0.1]}"#);
    let reply = vm.reply();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    assert_eq!(reply.header("x-inference-model"), Some("iris"));
    assert_eq!(reply.header("x-inference-reason"), Some("fan-out"));
    assert_eq!(reply.header("x-inference-target"), None);
    assert!(reply
        .header("x-inference-decision")
        .is_some_and(|d| !d.is_empty()));
    assert_eq!(
        reply.json(),
        json!({"model": "iris", "partial": false, "responses": [
            {"target": "v1", "status": 200, "body": {"p": [0.9]}},
            {"target": "v2", "status": 200, "body": {"p": [0.1]}},
            {"target": "v3", "status": 200, "body": "three"}]})
    );
    assert!(vm.host.resumed().is_empty());
    // A late duplicate answer changes nothing.
    vm.answer(&mut sent, tokens[0], &status("500"), b"");
    assert_eq!(vm.host.reply().map(|r| r.status), Some(200));
    assert_eq!(vm.counter("decisions.fan_out"), 1);
    assert_eq!(vm.counter("decisions.weighted"), 0);
    for t in ["v1", "v2", "v3"] {
        assert_eq!(vm.counter(&format!("requests.iris.{t}")), 1, "{t}");
    }
    assert_eq!(vm.counter("fan_out.partial"), 0);
}

#[test]
fn failed_and_timed_out_targets_make_the_reply_partial_and_none_ok_is_a_502() {
    let mut vm = Vm::start(&fan_out_config(500));
    let (mut sent, tokens) = fan(&mut vm, &infer(2));
    vm.answer(&mut sent, tokens[0], &status("200"), br#"{"ok":1}"#);
    vm.answer(
        &mut sent,
        tokens[1],
        &status("500"),
        br#"{"error":"injected failure"}"#,
    );
    vm.answer(
        &mut sent,
        tokens[2],
        &[(":status", "504")],
        b"upstream request timeout",
    );
    let reply = vm.reply();
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.json(),
        json!({"model": "iris", "partial": true, "responses": [
            {"target": "v1", "status": 200, "body": {"ok": 1}},
            {"target": "v2", "status": 500, "body": {"error": "injected failure"}},
            {"target": "v3", "status": null, "error": "timeout"}]})
    );
    assert_eq!(vm.counter("fan_out.partial"), 1);

    // Unreachable, reset, and a 503 of the target itself: nothing 2xx.
    let (mut sent, tokens) = fan(&mut vm, &infer(3));
    vm.answer(
        &mut sent,
        tokens[0],
        &[(":status", "503")],
        b"upstream connect error or disconnect/reset before headers. reset reason: connection failure",
    );
    vm.answer(&mut sent, tokens[1], &[], b"");
    vm.answer(&mut sent, tokens[2], &status("503"), br#"{"busy":true}"#);
    let reply = vm.reply();
    assert_eq!(reply.status, 502);
    assert_eq!(
        reply.json(),
        json!({"model": "iris", "partial": true, "responses": [
            {"target": "v1", "status": null, "error": "unreachable"},
            {"target": "v2", "status": null, "error": "no answer (connection reset or failure)"},
            {"target": "v3", "status": 503, "body": {"busy": true}}]})
    );
    assert_eq!(reply.header("x-inference-reason"), Some("fan-out"));
    assert_eq!(vm.counter("fan_out.partial"), 2);

    // A 4xx from every target is not partial (they answered), but nothing was 2xx.
    let (mut sent, tokens) = fan(&mut vm, &infer(4));
    for t in tokens {
        vm.answer(&mut sent, t, &status("404"), b"{}");
    }
    let reply = vm.reply();
    assert_eq!(reply.status, 502);
    assert_eq!(reply.json()["partial"], false);
    assert_eq!(vm.counter("fan_out.partial"), 2);
}

#[test]
fn pinned_get_and_streamed_requests_go_to_one_target() {
    let mut vm = Vm::start(&fan_out_config(2000));
    let body = infer(5);
    // A version in the path.
    let sent = vm.send(&post_json("/v2/models/iris/versions/v2/infer"), &body);
    assert_eq!(sent.action, Action::Continue);
    assert_eq!(vm.routed_cluster().as_deref(), Some("iris-v2"));
    assert!(vm.dispatched().is_empty());
    // A GET.
    let mut sent = vm.send(&get("/v2/models/iris/ready"), b"");
    assert_eq!(sent.action, Action::Continue);
    assert!(vm.dispatched().is_empty());
    let cluster = vm.routed_cluster().unwrap();
    vm.respond(&mut sent, OK, b"");
    let target = vm.response_header("x-inference-target").unwrap();
    assert_eq!(
        vm.response_header("x-inference-reason").as_deref(),
        Some("weighted")
    );
    let expected = match target.as_str() {
        "v1" => "iris-v1",
        "v2" => "iris-v2",
        _ => "sentiment-v2",
    };
    assert_eq!(cluster, expected);
    // Streamed: `"stream": true` in the body, or `Accept: text/event-stream`.
    let streamed = br#"{"stream": true, "inputs": []}"#;
    let sent = vm.send(&post_json("/v2/models/iris/infer"), streamed);
    assert_eq!(sent.action, Action::Continue);
    assert!(vm.routed_cluster().is_some());
    assert!(vm.dispatched().is_empty());
    let sent = vm.send(
        &with(
            post_json("/v2/models/iris/infer"),
            &[("accept", "text/event-stream")],
        ),
        &body,
    );
    assert_eq!(sent.action, Action::Continue);
    assert!(vm.dispatched().is_empty());
    assert_eq!(vm.counter("decisions.fan_out"), 0);
    assert_eq!(vm.counter("decisions.path_version"), 1);
    assert_eq!(vm.counter("decisions.weighted"), 3);
}

#[test]
fn targets_whose_callout_cannot_start_are_reported_without_an_answer() {
    let mut vm = Vm::start(&fan_out_config(500));
    vm.host.fail("dispatch", 1);
    let sent = vm.send(&infer_headers(), &infer(6));
    // Nothing can be waited for: the reply goes out at once.
    assert_eq!(sent.action, Action::Pause);
    let reply = vm.reply();
    assert_eq!(reply.status, 502);
    let no = |t: &str| json!({"target": t, "status": null, "error": "no answer (connection reset or failure)"});
    assert_eq!(
        reply.json(),
        json!({"model": "iris", "partial": true, "responses": [no("v1"), no("v2"), no("v3")]})
    );
    assert_eq!(vm.counter("fan_out.partial"), 1);
    // Requests count only the callouts that went out.
    assert_eq!(vm.counter("requests.iris.v1"), 0);
}
