//! Shadow traffic (`shadows[]`): once a request goes upstream, each shadow whose conditions hold
//! mirrors it with its `percent` chance. The copy (method, path, authority, content type,
//! `x-inference-shadow`, the body with `model` rewritten) is queued for the root context and
//! sent on its tick; its answer is only counted by status class and latency. The user's request
//! is never paused for it.

use crate::driver::*;
use inference_router_core::host::Action;
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

fn owned(headers: &[(String, String)]) -> Vec<(&str, &str)> {
    headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect()
}

#[test]
fn a_share_is_mirrored_from_the_tick_with_the_model_rewritten() {
    let mut vm = Vm::start(&shadow_config());
    const N: usize = 400;
    let mut bodies = Vec::new();
    let mut copies = Vec::new();
    for i in 0..N {
        // Key order, spacing and number spelling are kept; only `model` changes.
        let body = format!(
            r#"{{"user": "user-{i}", "model":"chat", "temperature": 1.50, "messages": []}}"#
        );
        let mut sent = vm.send(&post_json("/v1/chat/completions"), body.as_bytes());
        assert_eq!(sent.action, Action::Continue);
        assert_eq!(vm.routed_cluster().as_deref(), Some("llm-small"));
        vm.respond(&mut sent, OK, b"{}");
        assert_eq!(
            vm.response_header("x-inference-reason").as_deref(),
            Some("weighted")
        );
        // Nothing is sent from the stream: a callout of a stream dies with it.
        assert!(vm.dispatched().is_empty());
        vm.tick(1);
        for c in vm.dispatched() {
            copies.push(c);
        }
        bodies.push(body);
    }
    // 30 % of 400: 120, sigma 9.2; ±5 sigma. (Fixed seeds: the same count every run.)
    assert!(
        (74..=166).contains(&copies.len()),
        "{} of {N} mirrored at 30 %",
        copies.len()
    );
    let mut users = std::collections::BTreeSet::new();
    for c in &copies {
        assert_eq!(c.cluster, "llm-large");
        assert_eq!(
            owned(&c.headers),
            [
                (":method", "POST"),
                (":path", "/v1/chat/completions"),
                (":authority", "models"),
                ("content-type", "application/json"),
                ("x-inference-shadow", "chat")
            ]
        );
        assert_eq!(c.timeout_ms, 2000);
        let text = String::from_utf8(c.body.clone()).unwrap();
        let user = serde_json::from_str::<Value>(&text).unwrap()["user"]
            .as_str()
            .unwrap()
            .to_string();
        let i: usize = user.trim_start_matches("user-").parse().unwrap();
        assert_eq!(
            text,
            bodies[i].replace(r#""model":"chat""#, r#""model":"chat-large-shadow""#)
        );
        assert!(users.insert(user), "mirrored twice");
    }
    // The answers are counted by class, with their latency; the shadow is not a decision.
    for (k, c) in copies.iter().enumerate() {
        vm.host.advance_ms(40);
        let code = if k % 2 == 0 { "200" } else { "503" };
        vm.answer_root(c.token, &status(code), b"{}");
    }
    let n = copies.len() as u64;
    assert_eq!(vm.counter("shadow.chat.2xx"), n.div_ceil(2));
    assert_eq!(vm.counter("shadow.chat.5xx"), n / 2);
    assert_eq!(
        vm.host.histogram("inference_router.shadow.chat.latency_ms"),
        (1..=n).map(|k| 40 * k).collect::<Vec<_>>()
    );
    assert_eq!(vm.counter("shadow.dropped"), 0);
    assert_eq!(vm.counter("requests.chat.large"), 0);
    assert_eq!(vm.counter("requests.chat.small"), N as u64);
}

#[test]
fn conditions_choose_what_is_mirrored_and_messagepack_is_rewritten_too() {
    let mut vm = Vm::start(&shadow_config());
    let doc = json!({"model": "iris", "inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1.5]}]});
    let mp = rmp_serde::to_vec_named(&doc).unwrap();
    let headers = |mirror: &'static str| {
        vec![
            (":method", "POST"),
            (":path", "/v2/models/iris/infer"),
            (":authority", "models"),
            ("content-type", "application/msgpack"),
            ("authorization", "Bearer u"),
            ("x-mirror", mirror),
        ]
    };
    vm.send(&headers("no"), &mp);
    assert_eq!(vm.routed_cluster().as_deref(), Some("iris-v1"));
    vm.tick(1);
    assert!(vm.dispatched().is_empty());
    vm.send(&headers("yes"), &mp);
    assert_eq!(vm.routed_cluster().as_deref(), Some("iris-v1"));
    vm.tick(1);
    let copy = vm.one_dispatched();
    assert_eq!((copy.cluster.as_str(), copy.timeout_ms), ("iris-v2", 300));
    assert_eq!(copy.header("authorization"), Some("Bearer u"));
    assert_eq!(copy.header("x-inference-shadow"), Some("iris"));
    let mut want = doc.clone();
    want["model"] = json!("iris-next");
    assert_eq!(rmp_serde::from_slice::<Value>(&copy.body).unwrap(), want);
    // The shadow timed out: Envoy's own 504, counted as failed; its latency recorded.
    vm.host.advance_ms(300);
    vm.answer_root(
        copy.token,
        &[(":status", "504")],
        b"upstream request timeout",
    );
    assert_eq!(vm.counter("shadow.iris.failed"), 1);
    assert_eq!(vm.counter("shadow.iris.5xx"), 0);
    assert_eq!(
        vm.host.histogram("inference_router.shadow.iris.latency_ms"),
        [300]
    );
}

#[test]
fn copies_that_cannot_be_held_or_queued_are_dropped_and_counted() {
    let mut cfg = shadow_config();
    cfg["body"] = json!({ "max_bytes": 64 });
    cfg["shadows"][1]["when"] = json!({});
    let mut vm = Vm::start(&cfg);
    // A body over max_bytes is not held: the copy is dropped, the user is routed.
    let big = format!(r#"{{"inputs":[],"pad":"{}"}}"#, "x".repeat(100));
    let len = big.len().to_string();
    vm.send(
        &with(
            post_json("/v2/models/iris/infer"),
            &[("content-length", &len)],
        ),
        big.as_bytes(),
    );
    assert_eq!(vm.routed_cluster().as_deref(), Some("iris-v1"));
    assert_eq!(vm.counter("shadow.dropped"), 1);
    // 1,024 copies wait at most: the 1,025th drops the oldest; a tick sends 256.
    for _ in 0..1025 {
        vm.send(&get("/v2/models/iris/ready"), b"");
    }
    assert_eq!(vm.counter("shadow.dropped"), 2);
    vm.tick(1);
    let sent = vm.dispatched();
    assert_eq!(sent.len(), 256);
    assert!(sent
        .iter()
        .all(|c| c.header(":method") == Some("GET") && c.body.is_empty()));
    vm.tick(3);
    assert_eq!(vm.dispatched().len(), 1024);
    vm.tick(1);
    assert_eq!(vm.dispatched().len(), 1024);
}
