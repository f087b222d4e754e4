//! Which model and which target: header, KServe v2 / TF-Serving paths, path versions, OpenAI
//! body `model` (JSON and MessagePack), spoofed routing headers, unknown models and the
//! default model. Real Envoy, `--concurrency 2`, envoy/demo.yaml.

mod common;

use common::*;
use integration::{Harness, Request};
use serde_json::json;

#[test]
fn header_routing_by_x_model() {
    let h = Harness::demo(&deterministic_config());

    let r = h.send(
        &Request::post("/predict")
            .header("x-model", "iris")
            .json(&json!({"inputs": [1]})),
    );
    let echo = assert_upstream(&r, "iris-v1");
    assert_decision(&r, "iris", "v1", "weighted");
    // The routing headers the filter set reached the upstream, with the filter's values.
    assert_eq!(
        echo.headers.get("x-inference-cluster").map(String::as_str),
        Some("iris-v1")
    );
    assert_eq!(
        echo.headers.get("x-inference-target").map(String::as_str),
        Some("v1")
    );

    let r = h.send(&Request::get("/anything").header("x-model", "chat"));
    assert_upstream(&r, "llm-small");
    assert_decision(&r, "chat", "small", "weighted");

    // The header wins over the path and over the body.
    let r = h.send(
        &Request::post("/v2/models/iris/infer")
            .header("x-model", "sentiment")
            .json(&chat_body("chat")),
    );
    assert_upstream(&r, "sentiment-v1");
    assert_decision(&r, "sentiment", "v1", "weighted");

    assert_eq!(
        h.envoy
            .wasm_counter_eventually("inference_router.requests.iris.v1", 1),
        1
    );
    assert_eq!(
        h.envoy
            .wasm_counter_eventually("inference_router.requests.chat.small", 1),
        1
    );
    assert_eq!(
        h.envoy
            .wasm_counter_eventually("inference_router.requests.sentiment.v1", 1),
        1
    );
}

#[test]
fn kserve_v2_and_tf_serving_paths() {
    let h = Harness::demo(&deterministic_config());
    let body = serde_json::to_vec(&json!({
        "inputs": [{ "name": "x", "shape": [1, 4], "datatype": "FP32", "data": [5.1, 3.5, 1.4, 0.2] }]
    }))
    .unwrap();

    // KServe v2 / Open Inference Protocol.
    let r = h.send(
        &Request::post("/v2/models/iris/infer")
            .header("content-type", "application/json")
            .body(body.clone()),
    );
    let echo = assert_upstream(&r, "iris-v1");
    assert_decision(&r, "iris", "v1", "weighted");
    assert_body_intact(&echo, &body);
    assert_eq!(
        echo.path, "/v2/models/iris/infer",
        "the path is not rewritten"
    );

    let r = h.send(&Request::get("/v2/models/chat/ready"));
    assert_upstream(&r, "llm-small");
    assert_decision(&r, "chat", "small", "weighted");

    let r = h.send(&Request::get("/v2/models/sentiment"));
    assert_upstream(&r, "sentiment-v1");

    // TF-Serving REST.
    let tf = serde_json::to_vec(&json!({"instances": [[5.1, 3.5, 1.4, 0.2]]})).unwrap();
    for path in [
        "/v1/models/iris:predict",
        "/v1/models/iris:classify",
        "/v1/models/iris:regress",
    ] {
        let r = h.send(
            &Request::post(path)
                .header("content-type", "application/json")
                .body(tf.clone()),
        );
        let echo = assert_upstream(&r, "iris-v1");
        assert_decision(&r, "iris", "v1", "weighted");
        assert_body_intact(&echo, &tf);
        assert_eq!(echo.path, path);
    }
    let r = h.send(&Request::get("/v1/models/iris/metadata"));
    assert_upstream(&r, "iris-v1");
    let r = h.send(&Request::get("/v1/models/chat"));
    assert_upstream(&r, "llm-small");

    // A query string does not hide the model.
    let r = h.send(&Request::get("/v2/models/iris/ready?verbose=1"));
    let echo = assert_upstream(&r, "iris-v1");
    assert_eq!(echo.path, "/v2/models/iris/ready?verbose=1");
}

#[test]
fn path_version_pins_target() {
    let h = Harness::demo(&deterministic_config());

    // v2 has weight 0: only a pin can reach it.
    let body = br#"{"inputs":[]}"#.to_vec();
    let r = h.send(
        &Request::post("/v2/models/iris/versions/v2/infer")
            .header("content-type", "application/json")
            .body(body.clone()),
    );
    let echo = assert_upstream(&r, "iris-v2");
    assert_decision(&r, "iris", "v2", "path-version");
    assert_body_intact(&echo, &body);

    let r = h.send(&Request::get("/v2/models/sentiment/versions/v2/ready"));
    assert_upstream(&r, "sentiment-v2");
    assert_decision(&r, "sentiment", "v2", "path-version");

    let r = h.send(
        &Request::post("/v1/models/iris/versions/v2:predict").json(&json!({"instances": []})),
    );
    assert_upstream(&r, "iris-v2");
    assert_decision(&r, "iris", "v2", "path-version");

    // An explicit version that is the weighted one is still a pin.
    let r = h.send(&Request::get("/v2/models/iris/versions/v1/ready"));
    assert_upstream(&r, "iris-v1");
    assert_decision(&r, "iris", "v1", "path-version");

    // A version the model does not have: 404 unknown_version, no upstream.
    let before = h.upstreams.total_hits();
    let r =
        h.send(&Request::post("/v2/models/iris/versions/v9/infer").json(&json!({"inputs": []})));
    let v = assert_error_reply(&r, 404, "unknown_version");
    assert!(
        v["detail"].as_str().unwrap_or("").contains("v9"),
        "detail should name the version: {v}"
    );
    assert_no_upstream(&h, before);

    assert_eq!(
        h.envoy
            .wasm_counter_eventually("inference_router.decisions.path_version", 4),
        4
    );
    assert_eq!(
        h.envoy
            .wasm_counter_eventually("inference_router.requests.iris.v2", 2),
        2
    );
    assert_eq!(
        h.envoy
            .wasm_counter_eventually("inference_router.local_replies.error", 1),
        1
    );
}

#[test]
fn openai_body_model_json_and_msgpack() {
    let h = Harness::demo(&deterministic_config());

    // JSON.
    let body = serde_json::to_vec(&chat_body("chat")).unwrap();
    let r = h.send(
        &Request::post("/v1/chat/completions")
            .header("content-type", "application/json")
            .body(body.clone()),
    );
    let echo = assert_upstream(&r, "llm-small");
    assert_decision(&r, "chat", "small", "weighted");
    assert_body_intact(&echo, &body);
    assert_meta(&r, "body", None);

    // `application/*+json` and a charset parameter.
    let r = h.send(
        &Request::post("/v1/completions")
            .header("content-type", "application/vnd.openai+json")
            .body(body.clone()),
    );
    assert_body_intact(&assert_upstream(&r, "llm-small"), &body);
    let r = h.send(
        &Request::post("/v1/embeddings")
            .header("content-type", "application/json; charset=utf-8")
            .body(body.clone()),
    );
    assert_body_intact(&assert_upstream(&r, "llm-small"), &body);

    // MessagePack, both content types.
    let mp = rmp_serde::to_vec_named(&chat_body("iris")).unwrap();
    for ct in ["application/msgpack", "application/x-msgpack"] {
        let r = h.send(
            &Request::post("/v1/chat/completions")
                .header("content-type", ct)
                .body(mp.clone()),
        );
        let echo = assert_upstream(&r, "iris-v1");
        assert_decision(&r, "iris", "v1", "weighted");
        assert_body_intact(&echo, &mp);
        assert_eq!(
            echo.headers.get("content-type").map(String::as_str),
            Some(ct)
        );
    }

    // A large body (≈300 KB, several Envoy data frames) whose `model` comes last, with content-length
    // and chunked: the filter must see the whole body and forward it unchanged.
    let big_messages: Vec<_> = (0..3000)
        .map(|i| json!({"role": "user", "content": format!("message {i}: {}", "lorem ipsum ".repeat(6))}))
        .collect();
    let big = serde_json::to_vec(
        &json!({"messages": big_messages, "stream": false, "model": "sentiment"}),
    )
    .unwrap();
    assert!(
        big.len() > 250_000 && big.len() < 1_000_000,
        "{}",
        big.len()
    );
    let r = h.send(
        &Request::post("/v1/chat/completions")
            .header("content-type", "application/json")
            .body(big.clone()),
    );
    assert_body_intact(&assert_upstream(&r, "sentiment-v1"), &big);
    let r = h.send(
        &Request::post("/v1/chat/completions")
            .header("content-type", "application/json")
            .body(big.clone())
            .chunked(),
    );
    assert_body_intact(&assert_upstream(&r, "sentiment-v1"), &big);

    // Keep-alive: several body-routed requests on one connection, alternating models.
    let mut conn = h.envoy.connect();
    for i in 0..6 {
        let (model, cluster) = if i % 2 == 0 {
            ("chat", "llm-small")
        } else {
            ("iris", "iris-v1")
        };
        let b = serde_json::to_vec(&chat_body(model)).unwrap();
        let r = conn
            .send(
                &Request::post("/v1/chat/completions")
                    .header("content-type", "application/json")
                    .body(b.clone()),
            )
            .expect("keep-alive request");
        assert_body_intact(&assert_upstream(&r, cluster), &b);
    }
    conn.close();

    assert_eq!(
        h.envoy
            .wasm_counter_eventually("inference_router.requests.iris.v1", 5),
        5
    );
    assert_eq!(
        h.envoy.wasm_counter("inference_router.body.parse_failures"),
        0
    );
}

#[test]
fn client_supplied_routing_headers_are_ignored() {
    let h = Harness::demo(&deterministic_config());

    // Names a model: the filter's own values replace the client's, upstream sees one value each.
    let r = h.send(
        &Request::get("/v2/models/iris/ready")
            .header("x-inference-cluster", "llm-large")
            .header("x-inference-target", "large"),
    );
    let echo = assert_upstream(&r, "iris-v1");
    assert_decision(&r, "iris", "v1", "weighted");
    assert_eq!(
        echo.headers.get("x-inference-cluster").map(String::as_str),
        Some("iris-v1")
    );
    assert_eq!(
        echo.headers.get("x-inference-target").map(String::as_str),
        Some("v1")
    );

    // Repeated spoofed headers, body-routed request.
    let body = serde_json::to_vec(&chat_body("chat")).unwrap();
    let r = h.send(
        &Request::post("/v1/chat/completions")
            .header("x-inference-cluster", "llm-large")
            .header("x-inference-cluster", "iris-v2")
            .header("x-inference-target", "large")
            .header("content-type", "application/json")
            .body(body.clone()),
    );
    let echo = assert_upstream(&r, "llm-small");
    assert_body_intact(&echo, &body);
    assert_eq!(
        echo.headers.get("x-inference-cluster").map(String::as_str),
        Some("llm-small")
    );
    assert_eq!(
        echo.headers.get("x-inference-target").map(String::as_str),
        Some("small")
    );

    // Unknown model, and no model at all: whatever the answer, the spoofed cluster is never used.
    let r =
        h.send(&Request::get("/v2/models/nosuch/ready").header("x-inference-cluster", "llm-large"));
    assert_error_reply(&r, 404, "unknown_model");
    let r = h.send(&Request::get("/no/model/here").header("x-inference-cluster", "llm-large"));
    assert_ne!(
        r.upstream_cluster().as_deref(),
        Some("llm-large"),
        "client forced a cluster: {:?}",
        r.headers
    );
    assert_eq!(
        h.upstreams.hits("llm-large"),
        0,
        "the client reached llm-large by naming it"
    );
    assert_eq!(h.upstreams.hits("iris-v2"), 0);
}

#[test]
fn unknown_model_is_404_naming_it() {
    let h = Harness::demo(&deterministic_config());
    let before = h.upstreams.total_hits();

    for req in [
        Request::get("/v2/models/resnet-50/ready"),
        Request::get("/predict").header("x-model", "resnet-50"),
        Request::post("/v1/chat/completions").json(&chat_body("resnet-50")),
        Request::post("/v1/models/resnet-50:predict").json(&json!({"instances": []})),
    ] {
        let r = h.send(&req);
        let v = assert_error_reply(&r, 404, "unknown_model");
        assert!(
            v["detail"].as_str().unwrap_or("").contains("resnet-50"),
            "{} {}: detail should name the model: {v}",
            req.method,
            req.path
        );
        assert_meta(&r, "model", None);
        assert_meta(&r, "target", None);
        assert!(
            r.header("x-inference-decision").is_some(),
            "{:?}",
            r.headers
        );
    }
    assert_no_upstream(&h, before);
    assert_eq!(
        h.envoy
            .wasm_counter_eventually("inference_router.local_replies.error", 4),
        4
    );
}

#[test]
fn unknown_model_with_default_model_goes_to_default_target() {
    let mut models = deterministic_models();
    // default_target v2 (weight 0) makes the default route distinguishable from a weighted draw.
    models[0]["default_target"] = json!("v2");
    let h = Harness::demo(&json!({ "default_model": "sentiment", "models": models }));

    for req in [
        Request::get("/v2/models/resnet-50/ready"),
        Request::get("/predict").header("x-model", "resnet-50"),
        Request::post("/v1/chat/completions").json(&chat_body("resnet-50")),
    ] {
        let r = h.send(&req);
        assert_upstream(&r, "sentiment-v2");
        assert_decision(&r, "sentiment", "v2", "default");
    }
    // Known models are unaffected.
    let r = h.send(&Request::get("/v2/models/iris/ready"));
    assert_upstream(&r, "iris-v1");
    assert_decision(&r, "iris", "v1", "weighted");

    assert_eq!(
        h.envoy
            .wasm_counter_eventually("inference_router.decisions.default", 3),
        3
    );
    assert_eq!(
        h.envoy
            .wasm_counter_eventually("inference_router.requests.sentiment.v2", 3),
        3
    );
    assert_eq!(
        h.envoy.wasm_counter("inference_router.local_replies.error"),
        0
    );
}
