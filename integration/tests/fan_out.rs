//! Fan-out (`models[].fan_out`: Seldon's "all children", a KServe ensemble), against the real
//! Envoy at `--concurrency 2`, envoy/demo.yaml. A non-streamed request goes to every target of
//! the model by callout (method, path, content type, body, the client's authority) and the
//! client gets one JSON reply: `{"model", "responses": [{"target", "status", "body"}], "partial"}`,
//! where a target that failed or timed out appears with `"status": null` and `"error"`.

mod common;

use std::time::Duration;

use common::*;
use integration::{
    fnv64_hex, Behaviour, Echo, Envoy, EnvoyConfig, Harness, RefusedPort, Request, Response,
    Upstreams,
};
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

fn infer(i: u64) -> (Request, Vec<u8>) {
    let body = serde_json::to_vec(&json!({
        "inputs": [ { "name": "x", "shape": [1, 2], "datatype": "FP32", "data": [i, 7] } ]
    }))
    .unwrap();
    let req = Request::post("/v2/models/iris/infer?trace=1")
        .header("content-type", "application/json")
        .header("host", "models.example")
        .body(body.clone());
    (req, body)
}

/// The fan-out reply's entry for `target`, checked to be an echo of `body` from `cluster`.
#[track_caller]
fn assert_answered(reply: &Value, index: usize, target: &str, cluster: &str, body: &[u8]) {
    let entry = &reply["responses"][index];
    assert_eq!(entry["target"], target, "{reply}");
    assert_eq!(entry["status"], 200, "{reply}");
    let echo: Echo = serde_json::from_value(entry["body"].clone())
        .unwrap_or_else(|e| panic!("entry {index} is not an echo ({e}): {reply}"));
    assert_eq!(echo.cluster, cluster);
    assert_eq!(echo.method, "POST");
    assert_eq!(echo.path, "/v2/models/iris/infer?trace=1");
    assert_eq!(echo.body_fnv64, fnv64_hex(body));
    assert_eq!(
        echo.headers.get("host").map(String::as_str),
        Some("models.example")
    );
    assert_eq!(
        echo.headers.get("content-type").map(String::as_str),
        Some("application/json")
    );
}

#[test]
fn every_target_answers_in_one_reply_and_failures_are_flagged() {
    let h = Harness::demo(&fan_out_config(500));
    let u = &h.upstreams;
    let clusters = [("v1", "iris-v1"), ("v2", "iris-v2"), ("v3", "sentiment-v2")];

    const N: u64 = 6;
    for i in 0..N {
        let (req, body) = infer(i);
        let r = h.send(&req);
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_meta(&r, "model", Some("iris"));
        assert_meta(&r, "reason", Some("fan-out"));
        assert_meta(&r, "target", None);
        let v = r.json();
        assert_eq!(v["model"], "iris");
        assert_eq!(v["partial"], false, "{v}");
        assert_eq!(v["responses"].as_array().map(Vec::len), Some(3), "{v}");
        for (k, (t, c)) in clusters.iter().enumerate() {
            assert_answered(&v, k, t, c, &body);
        }
    }
    for (_, c) in clusters {
        assert_eq!(u.hits(c), N, "{c}");
    }
    assert_eq!(
        h.envoy.wasm_counter("inference_router.decisions.fan_out"),
        N
    );
    for t in ["v1", "v2", "v3"] {
        assert_eq!(
            h.envoy
                .wasm_counter(&format!("inference_router.requests.iris.{t}")),
            N
        );
    }

    // One target fails: its answer is in the reply, and the reply is partial.
    u.set_behaviour("iris-v2", Behaviour::default().with_failures(1.0, 500));
    let (req, body) = infer(100);
    let r = h.send(&req);
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["partial"], true, "{v}");
    assert_answered(&v, 0, "v1", "iris-v1", &body);
    assert_eq!(
        v["responses"][1],
        json!({"target": "v2", "status": 500,
               "body": {"error": "injected failure", "cluster": "iris-v2"}})
    );
    assert_answered(&v, 2, "v3", "sentiment-v2", &body);

    // One target is slower than timeout_ms: no status, an error, partial; the others answered.
    u.set_behaviour("iris-v2", Behaviour::stall(Duration::from_secs(3)));
    for i in 0..2 {
        let (req, body) = infer(200 + i);
        let r = h.send(&req);
        assert_eq!(r.status, 200, "{}", r.text());
        let v = r.json();
        assert_eq!(v["partial"], true, "{v}");
        assert_eq!(
            v["responses"][1],
            json!({"target": "v2", "status": null, "error": "timeout"})
        );
        assert_answered(&v, 0, "v1", "iris-v1", &body);
        assert_answered(&v, 2, "v3", "sentiment-v2", &body);
    }
    assert_eq!(h.envoy.wasm_counter("inference_router.fan_out.partial"), 3);

    // Every target failing: 502, still one JSON reply.
    for c in ["iris-v1", "sentiment-v2"] {
        u.set_behaviour(c, Behaviour::default().with_failures(1.0, 503));
    }
    let (req, _) = infer(300);
    let r = h.send(&req);
    assert_eq!(r.status, 502, "{}", r.text());
    assert_eq!(r.json()["partial"], true);
    assert_eq!(
        h.envoy.counter("wasm.inference-router.vm_reload_success"),
        0,
        "a VM crashed"
    );
}

#[test]
fn pinned_and_streamed_requests_are_not_fanned_out_and_a_down_target_is_reported() {
    let down = RefusedPort::new();
    let upstreams = Upstreams::start_default();
    let mut ports = upstreams.ports();
    ports.insert("sentiment-v2".into(), down.port());
    let envoy = Envoy::start_with_ports(&EnvoyConfig::demo(&fan_out_config(2000)), &ports);
    let send = |req: &Request| integration::client::must_send(envoy.port(), req);

    // A target Envoy cannot connect to.
    let (req, body) = infer(1);
    let r = send(&req);
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["partial"], true, "{v}");
    assert_answered(&v, 0, "v1", "iris-v1", &body);
    assert_answered(&v, 1, "v2", "iris-v2", &body);
    assert_eq!(
        v["responses"][2],
        json!({"target": "v3", "status": null, "error": "unreachable"})
    );

    // Requests that are not fanned out go to the one target the weighted strategy draws (an
    // unseeded draw over v1, v2 and the unreachable v3). The filter reports its choice in
    // `x-inference-target`, so each outcome is checked exactly: a reachable target answered
    // with exactly one upstream hit, at its cluster; v3 is Envoy's 503 with no hit at all.
    let routed_to_one = |r: &Response, before: u64| {
        assert_meta(r, "model", Some("iris"));
        assert_meta(r, "reason", Some("weighted"));
        match r.header("x-inference-target") {
            Some("v3") => {
                assert_eq!(r.status, 503, "v3 is unreachable: {}", r.text());
                assert_eq!(upstreams.total_hits(), before, "v3 is not an upstream here");
            }
            Some(t @ ("v1" | "v2")) => {
                assert_upstream(r, &format!("iris-{t}"));
                assert_eq!(upstreams.total_hits(), before + 1, "exactly one target");
            }
            other => panic!("not routed to one of the model's targets: {other:?} {r:?}"),
        }
    };

    // A GET (readiness, metadata) is not an inference call: routed to one target. Several
    // draws, so both outcomes are usually seen; each is asserted exactly.
    for _ in 0..6 {
        let before = upstreams.total_hits();
        let r = send(&Request::get("/v2/models/iris/ready"));
        routed_to_one(&r, before);
    }

    // A version in the path pins one target: routed there only.
    let before = upstreams.total_hits();
    let r = send(
        &Request::post("/v2/models/iris/versions/v2/infer")
            .header("content-type", "application/json")
            .body(body.clone()),
    );
    let echo = assert_upstream(&r, "iris-v2");
    assert_body_intact(&echo, &body);
    assert_decision(&r, "iris", "v2", "path-version");
    assert_eq!(upstreams.total_hits(), before + 1);

    // A streamed request goes to one target chosen by the strategy, body intact.
    let streamed = br#"{"stream": true, "inputs": []}"#.to_vec();
    for _ in 0..6 {
        let before = upstreams.total_hits();
        let r = send(
            &Request::post("/v2/models/iris/infer")
                .header("content-type", "application/json")
                .body(streamed.clone()),
        );
        routed_to_one(&r, before);
        if r.header("x-inference-target") != Some("v3") {
            assert_body_intact(&r.echo(), &streamed);
        }
    }
}
