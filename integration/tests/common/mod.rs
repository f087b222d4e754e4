//! Shared helpers for the end-to-end tests: plugin configurations and response assertions.
#![allow(dead_code)]

pub mod jwt;
pub mod learning;
pub mod vm;

use integration::{fnv64_hex, Echo, Harness, Response};
use serde_json::{json, Value};

/// Three deterministic models: every model has exactly one target with weight > 0, so an
/// unpinned request always lands on the same cluster; the weight-0 targets are reachable only by
/// pinning (path version or rule).
pub fn deterministic_models() -> Value {
    json!([
        { "name": "sentiment",
          "targets": [ { "name": "v1", "cluster": "sentiment-v1", "weight": 1 },
                       { "name": "v2", "cluster": "sentiment-v2", "weight": 0 } ] },
        { "name": "chat",
          "targets": [ { "name": "small", "cluster": "llm-small", "weight": 1 },
                       { "name": "large", "cluster": "llm-large", "weight": 0 } ] },
        { "name": "iris",
          "targets": [ { "name": "v1", "cluster": "iris-v1", "weight": 1 },
                       { "name": "v2", "cluster": "iris-v2", "weight": 0 } ] }
    ])
}

/// `{"models": deterministic_models()}`.
pub fn deterministic_config() -> Value {
    json!({ "models": deterministic_models() })
}

/// Asserts the response came from `cluster`'s fake upstream with status 200, and returns what
/// the upstream saw.
#[track_caller]
pub fn assert_upstream(resp: &Response, cluster: &str) -> Echo {
    assert_eq!(
        resp.status,
        200,
        "expected an upstream answer from {cluster}, got {} headers {:?} body {}",
        resp.status,
        resp.headers,
        resp.text()
    );
    let echo = resp.echo();
    assert_eq!(
        echo.cluster, cluster,
        "routed to the wrong cluster; response headers {:?}",
        resp.headers
    );
    echo
}

/// Asserts the upstream received exactly `body`.
#[track_caller]
pub fn assert_body_intact(echo: &Echo, body: &[u8]) {
    assert_eq!(
        echo.body_len,
        body.len() as u64,
        "body length changed on the way upstream"
    );
    assert_eq!(
        echo.body_fnv64,
        fnv64_hex(body),
        "body bytes changed on the way upstream"
    );
}

/// Asserts an `x-inference-*` response header.
#[track_caller]
pub fn assert_meta(resp: &Response, name: &str, expected: Option<&str>) {
    assert_eq!(
        resp.header(&format!("x-inference-{name}")),
        expected,
        "x-inference-{name}; all headers {:?}",
        resp.headers
    );
}

/// Asserts a routed request's metadata: model, target, reason.
#[track_caller]
pub fn assert_decision(resp: &Response, model: &str, target: &str, reason: &str) {
    assert_meta(resp, "model", Some(model));
    assert_meta(resp, "target", Some(target));
    assert_meta(resp, "reason", Some(reason));
    assert!(
        resp.header("x-inference-decision")
            .is_some_and(|d| !d.is_empty()),
        "x-inference-decision missing: {:?}",
        resp.headers
    );
}

/// Asserts one of the filter's JSON error replies: status, `content-type: application/json`,
/// `{"error": code, "detail": <non-empty string>}`, reason `error`. Returns the JSON.
#[track_caller]
pub fn assert_error_reply(resp: &Response, status: u16, code: &str) -> Value {
    assert_eq!(
        resp.status,
        status,
        "headers {:?} body {}",
        resp.headers,
        resp.text()
    );
    assert!(
        resp.header("content-type")
            .is_some_and(|c| c.starts_with("application/json")),
        "content-type of an error reply: {:?}",
        resp.headers
    );
    let v = resp.json();
    assert_eq!(v["error"], code, "error body {v}");
    assert!(
        v["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "detail in {v}"
    );
    assert_meta(resp, "reason", Some("error"));
    v
}

/// Asserts no upstream was contacted since `before` (a value of `total_hits()`).
#[track_caller]
pub fn assert_no_upstream(h: &Harness, before: u64) {
    assert_eq!(
        h.upstreams.total_hits(),
        before,
        "a local reply must not contact any upstream"
    );
}

/// A JSON chat-completions request body naming `model`.
pub fn chat_body(model: &str) -> Value {
    json!({
        "model": model,
        "messages": [ { "role": "user", "content": "Is this review positive? \"Great value\"" } ],
        "max_tokens": 16
    })
}

/// Asserts neither the body nor a header of a refusal repeats `secret`.
#[track_caller]
pub fn assert_not_leaked(r: &Response, secret: &str) {
    assert!(
        !r.text().contains(secret),
        "response body leaks {secret:?}: {}",
        r.text()
    );
    for (n, v) in &r.headers {
        assert!(!v.contains(secret), "header {n} leaks {secret:?}: {v}");
    }
}

/// Unix seconds of the wall clock.
pub fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}
