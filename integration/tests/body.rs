//! Request bodies the filter cannot use: malformed (reject / default) and oversized
//! (content-length and chunked). Real Envoy, `--concurrency 2`, envoy/demo.yaml.

mod common;

use common::*;
use integration::{Harness, Request};
use serde_json::json;

#[test]
fn malformed_json_is_rejected_then_next_request_routes() {
    let h = Harness::demo(&deterministic_config());
    let before = h.upstreams.total_hits();

    let mut conn = h.envoy.connect();
    let r = conn
        .send(
            &Request::post("/v1/chat/completions").json_text(r#"{"model": "chat", "messages": [ "#),
        )
        .expect("malformed request");
    let v = assert_error_reply(&r, 400, "invalid_body");
    assert!(
        r.header("x-inference-decision").is_some(),
        "{:?}",
        r.headers
    );
    assert_no_upstream(&h, before);

    // The next request (same connection unless Envoy closed it, and a new one) routes normally.
    let good = serde_json::to_vec(&chat_body("chat")).unwrap();
    let next = Request::post("/v1/chat/completions")
        .header("content-type", "application/json")
        .body(good.clone());
    if r.header("connection") != Some("close") {
        let r2 = conn
            .send(&next)
            .expect("request after a 400 on the same connection");
        assert_body_intact(&assert_upstream(&r2, "llm-small"), &good);
    }
    conn.close();
    let r2 = h.send(&next);
    assert_body_intact(&assert_upstream(&r2, "llm-small"), &good);
    assert_decision(&r2, "chat", "small", "weighted");
    assert!(v["detail"].as_str().is_some_and(|d| !d.is_empty()));

    // Other malformed bodies: trailing garbage, a trailing comma, truncation, bad MessagePack.
    for bad in [
        Request::post("/v1/chat/completions").json_text(r#"{"model": "chat"} trailing"#),
        Request::post("/v1/chat/completions").json_text(r#"{"model": "chat",}"#),
        Request::post("/v1/chat/completions").json_text(r#"{"model": "ch"#),
        Request::post("/v1/chat/completions")
            .header("content-type", "application/msgpack")
            .body(vec![0x82, 0xa5, b'm', b'o']),
    ] {
        let r = h.send(&bad);
        assert_error_reply(&r, 400, "invalid_body");
    }

    // A key that routing reads, twice in one object: invalid (parsers could disagree).
    let r = h.send(
        &Request::post("/v1/chat/completions").json_text(r#"{"model": "chat", "model": "iris"}"#),
    );
    assert_error_reply(&r, 400, "invalid_body");

    // A malformed body the decision does not need (the header names the model) is not read.
    let r = h.send(
        &Request::post("/anything")
            .header("x-model", "iris")
            .json_text("{not json"),
    );
    let echo = assert_upstream(&r, "iris-v1");
    assert_body_intact(&echo, b"{not json");
    assert_meta(&r, "body", None);

    assert_eq!(
        h.envoy
            .wasm_counter_eventually("inference_router.body.parse_failures", 6),
        6
    );
    assert_eq!(
        h.envoy
            .wasm_counter_eventually("inference_router.local_replies.error", 6),
        6
    );
}

#[test]
fn on_invalid_default_routes_by_headers_and_path() {
    let h = Harness::demo(&json!({
        "body": { "on_invalid": "default" },
        "default_model": "iris",
        "rules": [
            { "name": "hot", "when": { "body": { "/temperature": { "gt": 1.0 } } },
              "then": { "model": "sentiment", "target": "v2" } }
        ],
        "models": deterministic_models()
    }));

    // The path names the model; the rule needs the body, which is malformed: routed by the path.
    let bad = br#"{"temperature": 1.5, "inputs": [1, 2"#.to_vec();
    let r = h.send(
        &Request::post("/v2/models/chat/infer")
            .header("content-type", "application/json")
            .body(bad.clone()),
    );
    let echo = assert_upstream(&r, "llm-small");
    assert_decision(&r, "chat", "small", "weighted");
    assert_meta(&r, "body", Some("invalid"));
    assert_body_intact(&echo, &bad);

    // Only the body could name the model: the default model takes it.
    let r = h.send(&Request::post("/v1/chat/completions").json_text(r#"{"model": "chat", "#));
    assert_upstream(&r, "iris-v1");
    assert_meta(&r, "model", Some("iris"));
    assert_meta(&r, "body", Some("invalid"));

    // A well-formed body still counts.
    let r = h.send(&Request::post("/v2/models/chat/infer").json(&json!({"temperature": 1.5})));
    assert_upstream(&r, "sentiment-v2");
    assert_decision(&r, "sentiment", "v2", "rule:hot");
    assert_meta(&r, "body", None);

    assert_eq!(
        h.envoy
            .wasm_counter_eventually("inference_router.body.parse_failures", 2),
        2
    );
    assert_eq!(
        h.envoy.wasm_counter("inference_router.local_replies.error"),
        0
    );
}

#[test]
fn oversized_body_is_routed_without_it() {
    let h = Harness::demo(&json!({
        "body": { "max_bytes": 1024 },
        "default_model": "iris",
        "rules": [
            { "name": "priority", "when": { "body": { "/priority": { "exact": "high" } } },
              "then": { "target": "v2" } }
        ],
        "models": deterministic_models()
    }));

    // A body over max_bytes that would match the rule (its field comes first) and names a model.
    let mut doc = json!({ "priority": "high", "model": "chat", "inputs": [] });
    doc["padding"] = json!("x".repeat(4000));
    let big = serde_json::to_vec(&doc).unwrap();
    assert!(big.len() > 4000);

    // With content-length: known too large up front. The path names the model.
    let r = h.send(
        &Request::post("/v2/models/sentiment/infer")
            .header("content-type", "application/json")
            .body(big.clone()),
    );
    let echo = assert_upstream(&r, "sentiment-v1");
    assert_decision(&r, "sentiment", "v1", "weighted");
    assert_meta(&r, "body", Some("too-large"));
    assert_body_intact(&echo, &big);

    // Chunked: discovered while streaming. Same outcome, body still intact upstream.
    let r = h.send(
        &Request::post("/v2/models/sentiment/infer")
            .header("content-type", "application/json")
            .body(big.clone())
            .chunked(),
    );
    let echo = assert_upstream(&r, "sentiment-v1");
    assert_decision(&r, "sentiment", "v1", "weighted");
    assert_meta(&r, "body", Some("too-large"));
    assert_body_intact(&echo, &big);

    // Nothing but the (too large) body names the model: the default model takes it, both ways.
    for chunked in [false, true] {
        let mut req = Request::post("/v1/chat/completions")
            .header("content-type", "application/json")
            .body(big.clone());
        if chunked {
            req = req.chunked();
        }
        let r = h.send(&req);
        let echo = assert_upstream(&r, "iris-v1");
        assert_meta(&r, "model", Some("iris"));
        assert_meta(&r, "body", Some("too-large"));
        assert_body_intact(&echo, &big);
    }

    // A body under the limit is used (rule matches).
    let small = serde_json::to_vec(&json!({"priority": "high", "inputs": []})).unwrap();
    let r = h.send(
        &Request::post("/v2/models/sentiment/infer")
            .header("content-type", "application/json")
            .body(small.clone()),
    );
    assert_upstream(&r, "sentiment-v2");
    assert_decision(&r, "sentiment", "v2", "rule:priority");
    assert_meta(&r, "body", None);

    assert_eq!(
        h.envoy
            .wasm_counter_eventually("inference_router.body.too_large", 4),
        4
    );
    assert_eq!(
        h.envoy.wasm_counter("inference_router.body.parse_failures"),
        0
    );
}

#[test]
fn max_bytes_boundary_is_inclusive() {
    let h = Harness::demo(&json!({
        "body": { "max_bytes": 1024 }, "default_model": "iris", "models": deterministic_models()
    }));
    // A JSON body of exactly `len` bytes naming `model`.
    let body_of = |len: usize| {
        let base = serde_json::to_vec(&json!({"model": "chat", "pad": ""})).unwrap();
        let doc = json!({"model": "chat", "pad": "p".repeat(len - base.len())});
        let b = serde_json::to_vec(&doc).unwrap();
        assert_eq!(b.len(), len);
        b
    };
    for chunked in [false, true] {
        let at = body_of(1024);
        let mut req = Request::post("/v1/chat/completions")
            .header("content-type", "application/json")
            .body(at.clone());
        if chunked {
            req = req.chunked();
        }
        let r = h.send(&req);
        assert_body_intact(&assert_upstream(&r, "llm-small"), &at);
        assert_meta(&r, "body", None);

        // One byte over: not inspected, so the body's model is not used; the default model is.
        let over = body_of(1025);
        let mut req = Request::post("/v1/chat/completions")
            .header("content-type", "application/json")
            .body(over.clone());
        if chunked {
            req = req.chunked();
        }
        let r = h.send(&req);
        assert_body_intact(&assert_upstream(&r, "iris-v1"), &over);
        assert_meta(&r, "body", Some("too-large"));
    }
    assert_eq!(
        h.envoy
            .wasm_counter_eventually("inference_router.body.too_large", 2),
        2
    );
}

#[test]
fn body_is_read_only_for_listed_methods_and_content_types() {
    let h = Harness::demo(&json!({ "default_model": "iris", "models": deterministic_models() }));
    let chat = serde_json::to_vec(&chat_body("chat")).unwrap();
    let read = |method: &str, ct: Option<&str>| {
        let mut req = Request::new(method, "/v1/chat/completions").body(chat.clone());
        if let Some(ct) = ct {
            req = req.header("content-type", ct);
        }
        let r = h.send(&req);
        assert_eq!(r.status, 200, "{method} {ct:?}: {}", r.text());
        let echo = r.echo();
        assert_body_intact(&echo, &chat);
        echo.cluster
    };
    // Read: POST, PUT, PATCH with JSON / +json / MessagePack content types.
    assert_eq!(read("POST", Some("application/json")), "llm-small");
    assert_eq!(read("PUT", Some("application/json")), "llm-small");
    assert_eq!(read("PATCH", Some("application/json")), "llm-small");
    assert_eq!(read("POST", Some("application/problem+json")), "llm-small");
    assert_eq!(
        read("POST", Some("Application/JSON")),
        "llm-small",
        "media types are case-insensitive"
    );
    // Not read: other methods, other or missing content types → default model.
    assert_eq!(read("GET", Some("application/json")), "iris-v1");
    assert_eq!(read("DELETE", Some("application/json")), "iris-v1");
    assert_eq!(read("POST", Some("text/plain")), "iris-v1");
    assert_eq!(read("POST", Some("application/jsonl")), "iris-v1");
    assert_eq!(read("POST", None), "iris-v1");
    assert_eq!(
        h.envoy.wasm_counter("inference_router.body.parse_failures"),
        0
    );
}

/// An OpenAI chat request with `model` first and a prompt of `n` bytes.
fn long_prompt(model: &str, n: usize) -> Vec<u8> {
    format!(
        r#"{{"model":"{model}","messages":[{{"role":"user","content":"{}"}}],"max_tokens":16}}"#,
        "p".repeat(n)
    )
    .into_bytes()
}

#[test]
fn a_large_prompt_goes_upstream_once_its_model_is_read_and_the_rest_streams() {
    let h = Harness::demo(&deterministic_config());
    let body = long_prompt("chat", 512 * 1024);
    let bytes = Request::post("/v1/chat/completions")
        .header("content-type", "application/json")
        .body(body.clone())
        .to_bytes();
    let head = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("end of the request head")
        + 4;
    let (first, rest) = bytes.split_at(head + 4096);

    let started = "cluster.llm-small.upstream_rq_total";
    let before = h.envoy.counter(started);
    let mut conn = h.envoy.connect();
    conn.send_raw(first).expect("the head and the first 4 KiB");
    // The upstream request starts while most of the body is still with the client.
    assert_eq!(
        h.envoy.counter_eventually(started, before + 1),
        before + 1,
        "no upstream request before the whole body was sent"
    );
    conn.send_raw(rest).expect("the rest of the body");
    let r = conn.read_response().expect("the upstream's answer");
    assert_body_intact(&assert_upstream(&r, "llm-small"), &body);
    assert_decision(&r, "chat", "small", "weighted");
    assert_eq!(
        h.envoy
            .wasm_counter_eventually("inference_router.body.decided_early", 1),
        1
    );

    // `model` after the prompt: routed on the chunk that holds it, or at the end.
    let late = format!(
        r#"{{"messages":[{{"role":"user","content":"{}"}}],"model":"sentiment"}}  "#,
        "q".repeat(300 * 1024)
    )
    .into_bytes();
    let r = h.send(
        &Request::post("/v1/chat/completions")
            .header("content-type", "application/json")
            .body(late.clone()),
    );
    assert_body_intact(&assert_upstream(&r, "sentiment-v1"), &late);
}
