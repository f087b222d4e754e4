//! Shadow traffic (`shadows[]`), against the real Envoy at `--concurrency 2`, envoy/demo.yaml.
//! After a request is routed upstream, each shadow whose conditions hold mirrors it with its
//! `percent` chance: a copy (method, path, content type, body with the top-level `model` set to
//! `rewrite_model`) is queued for the root context, which sends it to the shadow target on its
//! tick and only counts the answer (`inference_router.shadow.<model>.<class>`, histogram
//! `...latency_ms`). The user's request is never delayed or failed by it. Bounded request
//! counts, loose statistical bounds, no wall-clock assertions.

mod common;

use std::time::Duration;

use common::learning::wait_for;
use common::*;
use integration::{Behaviour, Envoy, Harness, Request};
use serde_json::{json, Value};

fn shadow_config() -> Value {
    json!({
        "models": [
            { "name": "chat",
              "targets": [ { "name": "small", "cluster": "llm-small", "weight": 1 },
                           { "name": "large", "cluster": "llm-large", "weight": 0 } ] },
            { "name": "iris",
              "targets": [ { "name": "v1", "cluster": "iris-v1", "weight": 1 },
                           { "name": "v2", "cluster": "iris-v2", "weight": 0 } ] }
        ],
        "shadows": [
            { "model": "chat", "target": "large", "percent": 30,
              "rewrite_model": "chat-large-shadow", "timeout_ms": 2000 },
            { "model": "iris", "target": "v2", "percent": 100, "rewrite_model": "iris-next",
              "when": { "headers": { "x-mirror": { "exact": "yes" } } }, "timeout_ms": 300 }
        ]
    })
}

/// Waits until `cluster` stops receiving (no new hit for a second) and returns its hits.
fn settled_hits(h: &Harness, cluster: &str) -> u64 {
    let mut last = h.upstreams.hits(cluster);
    let mut quiet = 0;
    for _ in 0..200 {
        std::thread::sleep(Duration::from_millis(100));
        let now = h.upstreams.hits(cluster);
        if now == last {
            quiet += 1;
            if quiet >= 10 {
                return now;
            }
        } else {
            quiet = 0;
            last = now;
        }
    }
    panic!("{cluster} kept receiving requests for 20 s");
}

fn shadow_total(envoy: &Envoy, model: &str) -> u64 {
    ["2xx", "3xx", "4xx", "5xx", "failed"]
        .iter()
        .map(|c| envoy.wasm_counter(&format!("inference_router.shadow.{model}.{c}")))
        .sum()
}

#[test]
fn a_share_is_mirrored_with_the_model_rewritten() {
    let h = Harness::demo(&shadow_config());
    let u = &h.upstreams;

    // 400 users; 30 % mirrored: expect 120, sd ≈ 9.2; the bounds are ±5 sd.
    const N: u64 = 400;
    for i in 0..N {
        let mut doc = chat_body("chat");
        doc["user"] = json!(format!("user-{i}"));
        let body = serde_json::to_vec(&doc).unwrap();
        let r = h.send(
            &Request::post("/v1/chat/completions")
                .header("content-type", "application/json")
                .body(body.clone()),
        );
        let echo = assert_upstream(&r, "llm-small");
        assert_body_intact(&echo, &body);
        assert_decision(&r, "chat", "small", "weighted");
    }
    let mirrored = settled_hits(&h, "llm-large");
    assert!(
        (74..=166).contains(&mirrored),
        "{mirrored} of {N} mirrored at 30 %"
    );
    assert_eq!(u.hits("llm-small"), N);
    // Every copy was answered and counted; none was dropped.
    wait_for(Duration::from_secs(10), "shadow answers counted", || {
        (shadow_total(&h.envoy, "chat") == mirrored).then_some(())
    });
    assert_eq!(
        h.envoy.wasm_counter("inference_router.shadow.chat.2xx"),
        mirrored
    );
    assert_eq!(h.envoy.wasm_counter("inference_router.shadow.dropped"), 0);
    // The shadow routing is not a routing decision: only the user's requests are counted.
    assert_eq!(
        h.envoy.wasm_counter("inference_router.requests.chat.large"),
        0
    );

    // What the shadow upstream received: the user's request, model rewritten, marked.
    let got = u.received("llm-large");
    assert_eq!(got.len() as u64, mirrored);
    let mut users = std::collections::BTreeSet::new();
    for req in &got {
        assert_eq!(
            (req.method.as_str(), req.path.as_str()),
            ("POST", "/v1/chat/completions")
        );
        assert_eq!(
            req.headers.get("content-type").map(String::as_str),
            Some("application/json")
        );
        assert_eq!(
            req.headers.get("x-inference-shadow").map(String::as_str),
            Some("chat")
        );
        let doc: Value = serde_json::from_slice(&req.body).unwrap();
        assert_eq!(doc["model"], "chat-large-shadow");
        let mut want = chat_body("chat-large-shadow");
        want["user"] = doc["user"].clone();
        assert_eq!(doc, want);
        users.insert(doc["user"].as_str().unwrap().to_string());
    }
    assert_eq!(users.len() as u64, mirrored, "each mirrored request once");

    // MessagePack bodies are rewritten too; conditions choose what is mirrored.
    let doc = json!({"model": "iris", "inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1.5]}]});
    let r = h.send(
        &Request::post("/v2/models/iris/infer")
            .header("x-mirror", "yes")
            .msgpack(&doc),
    );
    assert_upstream(&r, "iris-v1");
    let r = h.send(
        &Request::post("/v2/models/iris/infer")
            .header("x-mirror", "no")
            .msgpack(&doc),
    );
    assert_upstream(&r, "iris-v1");
    assert_eq!(settled_hits(&h, "iris-v2"), 1);
    let got = u.received("iris-v2");
    let copy: Value = rmp_serde::from_slice(&got[0].body).unwrap();
    let mut want = doc.clone();
    want["model"] = json!("iris-next");
    assert_eq!(copy, want);
    assert_eq!(
        h.envoy.counter("wasm.inference-router.vm_reload_success"),
        0,
        "a VM crashed"
    );
}

#[test]
fn a_stalled_shadow_upstream_harms_no_user() {
    let h = Harness::demo(&shadow_config());
    let u = &h.upstreams;
    u.set_behaviour("iris-v2", Behaviour::stall(Duration::from_secs(5)));

    const K: u64 = 12;
    for i in 0..K {
        let body = serde_json::to_vec(
            &json!({"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [i]}]}),
        )
        .unwrap();
        let r = h.send(
            &Request::post("/v2/models/iris/infer")
                .header("content-type", "application/json")
                .header("x-mirror", "yes")
                .body(body.clone()),
        );
        let echo = assert_upstream(&r, "iris-v1");
        assert_body_intact(&echo, &body);
        assert_decision(&r, "iris", "v1", "weighted");
    }
    // Every copy reached the stalled upstream and timed out (300 ms), counted as failed.
    wait_for(
        Duration::from_secs(15),
        "every shadow copy timed out",
        || (h.envoy.wasm_counter("inference_router.shadow.iris.failed") == K).then_some(()),
    );
    assert_eq!(u.hits("iris-v2"), K);
    assert_eq!(h.envoy.wasm_counter("inference_router.shadow.iris.2xx"), 0);
    // The latency histogram is published (Envoy flushes histograms to the admin periodically).
    wait_for(Duration::from_secs(15), "shadow latency histogram", || {
        let text = h.envoy.prometheus();
        text.lines()
            .find(|l| l.starts_with("inference_router_shadow_iris_latency_ms_count"))
            .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .filter(|&n| n == K)
    });
    assert_eq!(
        h.envoy.counter("wasm.inference-router.vm_reload_success"),
        0,
        "a VM crashed"
    );
}
