//! Body mode `metadata`: Envoy's native json_to_metadata lifts `model` and `temperature` into
//! dynamic metadata before the filter, which runs WITHOUT `allow_on_headers_stop_iteration`
//! (envoy/metadata-mode.yaml). Real Envoy, `--concurrency 2`.

mod common;

use common::*;
use integration::{EnvoyConfig, Harness, Request};
use serde_json::json;

#[test]
fn metadata_mode_routes_by_body_model_via_json_to_metadata() {
    let h = Harness::start(&EnvoyConfig::metadata_mode(&json!({
        "body": { "source": "metadata" },
        "models": deterministic_models(),
        "rules": [
            { "name": "hot", "when": { "body": { "/temperature": { "gt": 1.0 } } },
              "then": { "model": "chat", "target": "large" } }
        ]
    })));

    // The body's model, lifted by json_to_metadata; the body still reaches the upstream intact.
    let body = serde_json::to_vec(&chat_body("iris")).unwrap();
    let r = h.send(
        &Request::post("/v1/chat/completions")
            .header("content-type", "application/json")
            .body(body.clone()),
    );
    assert_body_intact(&assert_upstream(&r, "iris-v1"), &body);
    assert_decision(&r, "iris", "v1", "weighted");

    // Chunked too.
    let r = h.send(
        &Request::post("/v1/chat/completions")
            .header("content-type", "application/json")
            .body(body.clone())
            .chunked(),
    );
    assert_body_intact(&assert_upstream(&r, "iris-v1"), &body);

    // A numeric body field (temperature) in a rule.
    let hot =
        serde_json::to_vec(&json!({"model": "chat", "temperature": 1.5, "messages": []})).unwrap();
    let r = h.send(
        &Request::post("/v1/chat/completions")
            .header("content-type", "application/json")
            .body(hot.clone()),
    );
    assert_body_intact(&assert_upstream(&r, "llm-large"), &hot);
    assert_decision(&r, "chat", "large", "rule:hot");
    let r = h.send(
        &Request::post("/v1/chat/completions").json(&json!({"model": "chat", "temperature": 0.7})),
    );
    assert_upstream(&r, "llm-small");
    assert_decision(&r, "chat", "small", "weighted");

    // Headers and paths work as in buffer mode.
    let r = h.send(&Request::get("/v2/models/sentiment/versions/v2/ready"));
    assert_upstream(&r, "sentiment-v2");
    assert_decision(&r, "sentiment", "v2", "path-version");
    let r = h.send(
        &Request::post("/v1/chat/completions")
            .header("x-model", "sentiment")
            .json(&chat_body("iris")),
    );
    assert_upstream(&r, "sentiment-v1");

    // An unknown model named only in the body is still a 404 naming it.
    let r = h.send(&Request::post("/v1/chat/completions").json(&chat_body("gpt-unknown")));
    let v = assert_error_reply(&r, 404, "unknown_model");
    assert!(
        v["detail"].as_str().unwrap_or("").contains("gpt-unknown"),
        "{v}"
    );

    assert_eq!(
        h.envoy
            .wasm_counter_eventually("inference_router.requests.iris.v1", 2),
        2
    );
    assert_eq!(
        h.envoy
            .wasm_counter_eventually("inference_router.decisions.rule.hot", 1),
        1
    );
}
