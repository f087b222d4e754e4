//! Rules: header + body conditions, path/method/time conditions, rejects, and local replies
//! (echo and fixed JSON). Real Envoy, `--concurrency 2`, envoy/demo.yaml.

mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use common::*;
use integration::{Harness, Request};
use serde_json::json;

#[test]
fn rule_with_header_and_body_conditions() {
    let h = Harness::demo(&json!({
        "models": deterministic_models(),
        "rules": [
            { "name": "acme-canary",
              "when": { "headers": { "x-tenant": { "exact": "acme" } },
                        "body": { "/temperature": { "gt": 1.0 } } },
              "then": { "model": "sentiment", "target": "v2" } },
            { "name": "long-answers",
              "when": { "path_prefix": "/v1/chat/", "body": { "/max_tokens": { "gt": 1024 } } },
              "then": { "model": "chat", "target": "large" } },
            { "name": "system-prompt",
              "when": { "body": { "/messages/0/role": { "one_of": ["system", "developer"] } } },
              "then": { "target": "v2" } }
        ]
    }));

    // Both conditions hold: the rule pins sentiment/v2 (weight 0), whatever the body's model.
    let body =
        serde_json::to_vec(&json!({"model": "iris", "temperature": 1.5, "inputs": []})).unwrap();
    let r = h.send(
        &Request::post("/v1/completions")
            .header("x-tenant", "acme")
            .header("content-type", "application/json")
            .body(body.clone()),
    );
    let echo = assert_upstream(&r, "sentiment-v2");
    assert_decision(&r, "sentiment", "v2", "rule:acme-canary");
    assert_body_intact(&echo, &body);

    // The same in MessagePack.
    let mp = rmp_serde::to_vec_named(&json!({"model": "iris", "temperature": 2})).unwrap();
    let r = h.send(
        &Request::post("/v1/completions")
            .header("x-tenant", "acme")
            .header("content-type", "application/msgpack")
            .body(mp.clone()),
    );
    assert_body_intact(&assert_upstream(&r, "sentiment-v2"), &mp);
    assert_decision(&r, "sentiment", "v2", "rule:acme-canary");

    // One condition fails each time: no rule, the body's model and its weighted target.
    for (tenant, temp) in [("acme", 1.0), ("acme", 0.2), ("other", 1.5)] {
        let r = h.send(
            &Request::post("/v1/completions")
                .header("x-tenant", tenant)
                .json(&json!({"model": "iris", "temperature": temp})),
        );
        assert_upstream(&r, "iris-v1");
        assert_decision(&r, "iris", "v1", "weighted");
    }
    // Header present but no body: a body condition cannot hold.
    let r = h.send(&Request::get("/v2/models/iris/ready").header("x-tenant", "acme"));
    assert_upstream(&r, "iris-v1");

    // path_prefix + body.
    let r = h.send(
        &Request::post("/v1/chat/completions").json(&json!({"model": "chat", "max_tokens": 4096})),
    );
    assert_upstream(&r, "llm-large");
    assert_decision(&r, "chat", "large", "rule:long-answers");
    let r = h.send(
        &Request::post("/v1/completions").json(&json!({"model": "chat", "max_tokens": 4096})),
    );
    assert_upstream(&r, "llm-small");

    // A target-only rule applies to the model the request addresses (here: the path's).
    let r = h.send(
        &Request::post("/v2/models/iris/infer")
            .json(&json!({"messages": [{"role": "system", "content": "x"}]})),
    );
    assert_upstream(&r, "iris-v2");
    assert_decision(&r, "iris", "v2", "rule:system-prompt");

    assert_eq!(
        h.envoy
            .wasm_counter_eventually("inference_router.decisions.rule.acme-canary", 2),
        2
    );
    assert_eq!(
        h.envoy
            .wasm_counter_eventually("inference_router.decisions.rule.long-answers", 1),
        1
    );
    assert_eq!(
        h.envoy
            .wasm_counter_eventually("inference_router.requests.sentiment.v2", 2),
        2
    );
}

/// `HH:MM` of now + `minutes` (UTC, wrapping around midnight).
fn utc_hhmm(minutes: i64) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let m = ((now / 60 + minutes) % 1440 + 1440) % 1440;
    format!("{:02}:{:02}", m / 60, m % 60)
}

#[test]
fn rule_reject_and_conditions_on_method_and_time() {
    let h = Harness::demo(&json!({
        "models": deterministic_models(),
        "rules": [
            { "name": "blocked-tenant",
              "when": { "headers": { "x-tenant": { "prefix": "banned-" } }, "method": ["POST", "PUT"] },
              "then": { "reject": { "status": 429, "message": "tenant is blocked" } } },
            // A window around now (may wrap midnight): active.
            { "name": "maintenance-now",
              "when": { "time_utc": { "from": utc_hhmm(-90), "to": utc_hhmm(90) },
                        "headers": { "x-maintenance-probe": { "present": true } } },
              "then": { "reject": { "status": 503, "message": "scheduled maintenance" } } },
            // A window that is not now: never matches during this test.
            { "name": "maintenance-later",
              "when": { "time_utc": { "from": utc_hhmm(180), "to": utc_hhmm(240) } },
              "then": { "reject": { "status": 503, "message": "later" } } }
        ]
    }));
    let before = h.upstreams.total_hits();

    let r = h.send(
        &Request::post("/v2/models/iris/infer")
            .header("x-tenant", "banned-42")
            .json(&json!({"inputs": []})),
    );
    assert_eq!(r.status, 429, "{}", r.text());
    assert!(
        r.header("content-type")
            .is_some_and(|c| c.starts_with("application/json")),
        "{:?}",
        r.headers
    );
    let v = r.json();
    assert_eq!(
        v,
        json!({"error": "rejected", "detail": "tenant is blocked", "rule": "blocked-tenant"})
    );
    assert_meta(&r, "reason", Some("rule:blocked-tenant"));
    assert!(r.header("x-inference-decision").is_some());

    let r = h.send(
        &Request::new("PUT", "/v2/models/iris/infer")
            .header("x-tenant", "banned-x")
            .json(&json!({})),
    );
    assert_eq!(r.status, 429);
    assert_no_upstream(&h, before);

    // Method not listed, or header not matching: not rejected.
    let r = h.send(&Request::get("/v2/models/iris/ready").header("x-tenant", "banned-42"));
    assert_upstream(&r, "iris-v1");
    let r = h.send(
        &Request::post("/v2/models/iris/infer")
            .header("x-tenant", "fine-banned-")
            .json(&json!({})),
    );
    assert_upstream(&r, "iris-v1");

    // Time window: the active one rejects, the inactive one does not.
    let r = h.send(&Request::get("/v2/models/iris/ready").header("x-maintenance-probe", "1"));
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(
        r.json(),
        json!({"error": "rejected", "detail": "scheduled maintenance", "rule": "maintenance-now"})
    );
    assert_meta(&r, "reason", Some("rule:maintenance-now"));

    assert_eq!(
        h.envoy
            .wasm_counter_eventually("inference_router.local_replies.reject", 3),
        3
    );
    assert_eq!(
        h.envoy
            .wasm_counter_eventually("inference_router.decisions.rule.blocked-tenant", 2),
        2
    );
    assert_eq!(
        h.envoy
            .wasm_counter("inference_router.decisions.rule.maintenance-later"),
        0
    );
}

#[test]
fn local_replies_echo_and_fixed_body() {
    let h = Harness::demo(&json!({
        "models": deterministic_models(),
        "rules": [
            { "name": "no-child",
              "when": { "headers": { "x-seldon-route": { "exact": "none" } } },
              "then": { "reply": { "status": 200, "echo": true } } },
            { "name": "canned",
              "when": { "path_prefix": "/v2/health/" },
              "then": { "reply": { "status": 202, "body": { "ok": true, "models": ["iris"] } } } }
        ]
    }));
    let before = h.upstreams.total_hits();

    // Echo: the request body itself, byte for byte (JSON, MessagePack, chunked, ~100 KB).
    let json_body =
        serde_json::to_vec(&json!({"data": {"ndarray": [[1.0, 2.0, 5.5]]}, "meta": {}})).unwrap();
    let r = h.send(
        &Request::post("/api/v1.0/predictions")
            .header("x-seldon-route", "none")
            .header("content-type", "application/json")
            .body(json_body.clone()),
    );
    assert_eq!(r.status, 200, "{:?} {}", r.headers, r.text());
    assert_eq!(r.body, json_body, "echo reply must be the request body");
    assert_meta(&r, "reason", Some("rule:no-child"));
    assert!(r.header("x-inference-decision").is_some());

    let mp = rmp_serde::to_vec_named(&json!({"data": {"ndarray": [[1, 2]]}})).unwrap();
    let r = h.send(
        &Request::post("/predict")
            .header("x-seldon-route", "none")
            .header("content-type", "application/msgpack")
            .body(mp.clone()),
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.body, mp);

    let big: Vec<u8> =
        serde_json::to_vec(&json!({"data": {"ndarray": vec![vec![0.25f64; 64]; 200]}})).unwrap();
    let r = h.send(
        &Request::post("/predict")
            .header("x-seldon-route", "none")
            .header("content-type", "application/json")
            .body(big.clone())
            .chunked(),
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), big.len());
    assert!(r.body == big, "chunked echo differs");

    // Fixed JSON reply.
    let r = h.send(&Request::get("/v2/health/live"));
    assert_eq!(r.status, 202, "{}", r.text());
    assert!(
        r.header("content-type")
            .is_some_and(|c| c.starts_with("application/json")),
        "{:?}",
        r.headers
    );
    assert_eq!(r.json(), json!({"ok": true, "models": ["iris"]}));
    assert_meta(&r, "reason", Some("rule:canned"));

    assert_no_upstream(&h, before);
    // Without the header: routed as usual.
    let r = h.send(&Request::post("/v2/models/iris/infer").json(&json!({"inputs": []})));
    assert_upstream(&r, "iris-v1");

    assert_eq!(
        h.envoy
            .wasm_counter_eventually("inference_router.local_replies.echo", 3),
        3
    );
    assert_eq!(
        h.envoy
            .wasm_counter_eventually("inference_router.local_replies.reply", 1),
        1
    );
}

#[test]
fn rule_order_model_only_pointer_escapes_and_numeric_equality() {
    let h = Harness::demo(&json!({
        "models": deterministic_models(),
        "rules": [
            { "name": "first", "when": { "headers": { "x-order": { "present": true } } },
              "then": { "reject": { "status": 418, "message": "first rule wins" } } },
            { "name": "second", "when": { "headers": { "x-order": { "present": true } } },
              "then": { "reject": { "status": 409, "message": "second rule" } } },
            // RFC 6901 escapes: `~1` is `/`, `~0` is `~`.
            { "name": "escaped", "when": { "body": { "/meta~1tag": { "exact": "a~b" }, "/x~0y": { "present": true } } },
              "then": { "model": "chat", "target": "large" } },
            // Numbers compare by value: 1 matches 1.0.
            { "name": "numeric", "when": { "body": { "/n": { "exact": 1 } } },
              "then": { "model": "iris", "target": "v2" } },
            // Range: gt and lt together.
            { "name": "range", "when": { "body": { "/score": { "gt": 0.25, "lt": 0.75 } } },
              "then": { "model": "sentiment" } },
            { "name": "absent", "when": { "path_prefix": "/absent/", "body": { "/model": { "present": false } } },
              "then": { "model": "chat" } }
        ]
    }));

    let r = h.send(&Request::get("/v2/models/iris/ready").header("x-order", "1"));
    assert_eq!(r.status, 418, "{}", r.text());
    assert_eq!(r.json()["rule"], "first");

    let r = h.send(
        &Request::post("/v1/completions")
            .json(&json!({"model": "iris", "meta/tag": "a~b", "x~y": 0})),
    );
    assert_upstream(&r, "llm-large");
    assert_decision(&r, "chat", "large", "rule:escaped");
    let r = h.send(
        &Request::post("/v1/completions")
            .json(&json!({"model": "iris", "meta": {"tag": "a~b"}, "x~y": 0})),
    );
    assert_upstream(&r, "iris-v1");

    for n in [json!(1), json!(1.0)] {
        let r = h.send(&Request::post("/v1/completions").json(&json!({"model": "chat", "n": n})));
        assert_upstream(&r, "iris-v2");
        assert_decision(&r, "iris", "v2", "rule:numeric");
    }
    let r = h.send(&Request::post("/v1/completions").json(&json!({"model": "chat", "n": "1"})));
    assert_upstream(&r, "llm-small");

    // A model-only rule: the model's own strategy picks the target.
    let r = h.send(&Request::post("/v1/completions").json(&json!({"model": "iris", "score": 0.5})));
    assert_upstream(&r, "sentiment-v1");
    assert_decision(&r, "sentiment", "v1", "rule:range");
    for score in [0.25, 0.75, 0.9] {
        let r = h.send(
            &Request::post("/v1/completions").json(&json!({"model": "iris", "score": score})),
        );
        assert_upstream(&r, "iris-v1");
    }

    // `present: false` holds for a body without the field, and for a request without a body.
    let r = h.send(&Request::post("/absent/x").json(&json!({"inputs": []})));
    assert_upstream(&r, "llm-small");
    assert_decision(&r, "chat", "small", "rule:absent");
    let r = h.send(&Request::get("/absent/y"));
    assert_upstream(&r, "llm-small");
    let r = h.send(&Request::post("/absent/z").json(&json!({"model": "iris"})));
    assert_upstream(&r, "iris-v1");

    assert_eq!(
        h.envoy
            .wasm_counter("inference_router.decisions.rule.second"),
        0
    );
}

#[test]
fn echo_of_a_body_over_max_bytes_is_refused_with_413() {
    // The echo reply "answers with the request body itself". A body over max_bytes is not held
    // (by content-length at the headers, or at the chunk that crosses the limit), so there is
    // nothing to echo: the filter refuses with its JSON 413 `too_large` rather than answer an
    // empty 200 that would silently lose the payload. The answer still names the rule that
    // asked for the echo (`x-inference-reason: rule:no-child`).
    let h = Harness::demo(&json!({
        "body": { "max_bytes": 64 },
        "models": deterministic_models(),
        "rules": [ { "name": "no-child", "when": { "headers": { "x-seldon-route": { "exact": "none" } } },
                     "then": { "reply": { "status": 200, "echo": true } } } ]
    }));
    let body = serde_json::to_vec(&json!({"data": {"ndarray": [vec![1.0f64; 20]]}})).unwrap();
    assert!(body.len() > 64);
    for chunked in [false, true] {
        let mut req = Request::post("/predict")
            .header("x-seldon-route", "none")
            .header("content-type", "application/json")
            .body(body.clone());
        if chunked {
            req = req.chunked();
        }
        let r = h.send(&req);
        assert_eq!(
            r.status,
            413,
            "chunked={chunked}: headers {:?} body {}",
            r.headers,
            r.text()
        );
        assert!(
            r.header("content-type")
                .is_some_and(|c| c.starts_with("application/json")),
            "chunked={chunked}: {:?}",
            r.headers
        );
        let v = r.json();
        assert_eq!(v["error"], "too_large", "chunked={chunked}: {v}");
        assert!(
            v["detail"]
                .as_str()
                .is_some_and(|d| d.contains("body.max_bytes (64)")),
            "chunked={chunked}: {v}"
        );
        assert_meta(&r, "reason", Some("rule:no-child"));
        assert_meta(&r, "body", Some("too-large"));
    }
    assert_eq!(h.upstreams.total_hits(), 0);
    assert_eq!(
        h.envoy
            .wasm_counter_eventually("inference_router.body.too_large", 2),
        2
    );
    assert_eq!(
        h.envoy
            .wasm_counter_eventually("inference_router.local_replies.error", 2),
        2
    );
}
