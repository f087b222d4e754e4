//! Retry on a fallback target (`models[].retry` with `fallback`), against the real Envoy at
//! `--concurrency 2`, envoy/demo.yaml. A 5xx / 429 from the chosen target (or Envoy's own 503
//! when it cannot connect) is held back while the same request (method, path, headers that
//! matter, body) goes to the first other fallback target by callout; the client sees only the
//! retry's answer, with `x-inference-attempts: <failed>,<retry>`. When the retry fails too, the
//! client sees the retry's failure, or the original one when the retry got no answer at all.
//! `cooldown_seconds: 0` keeps every request on the failing target, so each one is retried.

mod common;

use common::*;
use integration::{Behaviour, Envoy, EnvoyConfig, Harness, RefusedPort, Request, Upstreams};
use serde_json::{json, Value};

fn retry_config() -> Value {
    json!({
        "models": [
            { "name": "iris",
              "targets": [ { "name": "v1", "cluster": "iris-v1", "weight": 1 },
                           { "name": "v2", "cluster": "iris-v2", "weight": 0 } ],
              "fallback": ["v2"], "retry": true, "cooldown_seconds": 0 }
        ]
    })
}

fn infer(i: usize) -> (Request, Vec<u8>) {
    let body = serde_json::to_vec(&json!({
        "inputs": [ { "name": "x", "shape": [1, 4], "datatype": "FP32",
                      "data": [i as f64, 1.5, 2.5, 3.5] } ]
    }))
    .unwrap();
    let req = Request::post("/v2/models/iris/infer")
        .header("content-type", "application/json")
        .header("authorization", "Bearer user-token")
        .body(body.clone());
    (req, body)
}

#[track_caller]
fn assert_retried(r: &integration::Response, body: &[u8]) {
    let echo = assert_upstream(r, "iris-v2");
    assert_body_intact(&echo, body);
    assert_eq!(echo.method, "POST");
    assert_eq!(echo.path, "/v2/models/iris/infer");
    assert_eq!(
        echo.headers.get("authorization").map(String::as_str),
        Some("Bearer user-token")
    );
    assert_decision(r, "iris", "v2", "fallback");
    assert_meta(r, "attempts", Some("v1,v2"));
}

#[test]
fn a_failed_answer_is_replaced_by_the_fallback_targets() {
    let h = Harness::demo(&retry_config());
    let u = &h.upstreams;
    u.set_behaviour("iris-v1", Behaviour::default().with_failures(1.0, 503));

    const N: usize = 8;
    for i in 0..N {
        let (req, body) = infer(i);
        let r = h.send(&req);
        assert_retried(&r, &body);
    }
    // A request without a body is retried as well.
    let r = h.send(&Request::get("/v2/models/iris/ready"));
    let echo = assert_upstream(&r, "iris-v2");
    assert_eq!((echo.method.as_str(), echo.body_len), ("GET", 0));
    assert_meta(&r, "attempts", Some("v1,v2"));

    assert_eq!(u.hits("iris-v1"), N as u64 + 1);
    assert_eq!(u.hits("iris-v2"), N as u64 + 1);
    assert_eq!(
        h.envoy.wasm_counter("inference_router.retry.attempts"),
        N as u64 + 1
    );
    assert_eq!(
        h.envoy.wasm_counter("inference_router.retry.recovered"),
        N as u64 + 1
    );
    assert_eq!(h.envoy.wasm_counter("inference_router.retry.failed"), 0);
    assert_eq!(
        h.envoy.wasm_counter("inference_router.decisions.fallback"),
        N as u64 + 1
    );

    // 429 counts as a failure too; a 404 is an answer and passes untouched.
    u.set_behaviour("iris-v1", Behaviour::default().with_failures(1.0, 429));
    let (req, body) = infer(100);
    assert_retried(&h.send(&req), &body);
    // (An upstream cannot claim attempts the filter did not make.)
    u.set_behaviour(
        "iris-v1",
        Behaviour::default()
            .with_failures(1.0, 404)
            .with_header("x-inference-attempts", "forged"),
    );
    let (req, _) = infer(101);
    let r = h.send(&req);
    assert_eq!(r.status, 404, "{}", r.text());
    assert_eq!(r.json()["cluster"], "iris-v1");
    assert_meta(&r, "attempts", None);

    // A streamed request is not retried: its answer cannot be collected into one reply.
    u.set_behaviour("iris-v1", Behaviour::default().with_failures(1.0, 503));
    let before = u.hits("iris-v2");
    let r = h.send(
        &Request::post("/v2/models/iris/infer")
            .header("content-type", "application/json")
            .body(br#"{"stream":true,"inputs":[]}"#.to_vec()),
    );
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.json()["cluster"], "iris-v1");
    assert_eq!(u.hits("iris-v2"), before);
    assert_eq!(
        h.envoy.counter("wasm.inference-router.vm_reload_success"),
        0,
        "a VM crashed"
    );
}

#[test]
fn both_failing_the_client_sees_the_failure() {
    let h = Harness::demo(&retry_config());
    let u = &h.upstreams;
    u.set_behaviour("iris-v1", Behaviour::default().with_failures(1.0, 503));
    u.set_behaviour("iris-v2", Behaviour::default().with_failures(1.0, 500));
    for i in 0..4 {
        let (req, _) = infer(i);
        let r = h.send(&req);
        // The retry's failure, named as such.
        assert_eq!(r.status, 500, "{}", r.text());
        assert_eq!(r.json()["cluster"], "iris-v2");
        assert_decision(&r, "iris", "v2", "fallback");
        assert_meta(&r, "attempts", Some("v1,v2"));
    }
    assert_eq!(h.envoy.wasm_counter("inference_router.retry.failed"), 4);
    assert_eq!(h.envoy.wasm_counter("inference_router.retry.recovered"), 0);
}

#[test]
fn envoys_own_503_is_retried_and_an_unreachable_retry_passes_the_original() {
    // iris-v1 refuses connections: Envoy answers 503 itself, and the retry goes to iris-v2.
    let down = RefusedPort::new();
    let upstreams = Upstreams::start_default();
    let mut ports = upstreams.ports();
    ports.insert("iris-v1".into(), down.port());
    let envoy = Envoy::start_with_ports(&EnvoyConfig::demo(&retry_config()), &ports);
    for i in 0..4 {
        let (req, body) = infer(i);
        assert_retried(&integration::client::must_send(envoy.port(), &req), &body);
    }
    assert_eq!(envoy.wasm_counter("inference_router.retry.recovered"), 4);
    drop(envoy);

    // iris-v1 fails, and iris-v2 cannot be reached: the client gets iris-v1's own answer.
    upstreams.set_behaviour("iris-v1", Behaviour::default().with_failures(1.0, 503));
    let mut ports = upstreams.ports();
    ports.insert("iris-v2".into(), down.port());
    let envoy = Envoy::start_with_ports(&EnvoyConfig::demo(&retry_config()), &ports);
    for i in 0..4 {
        let (req, _) = infer(i);
        let r = integration::client::must_send(envoy.port(), &req);
        assert_eq!(r.status, 503, "{}", r.text());
        assert_eq!(r.json()["error"], "injected failure");
        assert_eq!(r.json()["cluster"], "iris-v1");
        assert_decision(&r, "iris", "v1", "weighted");
        assert_meta(&r, "attempts", Some("v1,v2"));
    }
    assert_eq!(envoy.wasm_counter("inference_router.retry.failed"), 4);
}
