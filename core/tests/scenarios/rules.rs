//! Rules: header, body, path, method and time conditions (first match wins), pins of a model
//! and/or target, rejects with the rule's status and message, and local replies (the echo of the
//! request body, byte for byte; a fixed JSON body). The host's clock starts at 08:00 UTC.

use crate::driver::*;
use inference_router_core::host::Action;
use serde_json::{json, Value};

/// Routes; the (cluster, reason) the request got.
#[track_caller]
fn route(vm: &mut Vm, headers: &[(&str, &str)], body: &[u8]) -> (String, String) {
    let mut sent = vm.send(headers, body);
    assert_eq!(sent.action, Action::Continue, "{:?}", vm.host.reply());
    let cluster = vm.routed_cluster().unwrap();
    vm.respond(&mut sent, OK, b"{}");
    (cluster, vm.response_header("x-inference-reason").unwrap())
}

fn r(cluster: &str, reason: &str) -> (String, String) {
    (cluster.to_string(), reason.to_string())
}

fn json_body(v: Value) -> Vec<u8> {
    serde_json::to_vec(&v).unwrap()
}

#[test]
fn header_body_and_path_conditions_pin_models_and_targets() {
    let mut vm = Vm::start(&json!({
        "models": deterministic_models(),
        "rules": [
            { "name": "acme-canary",
              "when": { "headers": { "x-tenant": { "exact": "acme" } }, "body": { "/temperature": { "gt": 1.0 } } },
              "then": { "model": "sentiment", "target": "v2" } },
            { "name": "long-answers",
              "when": { "path_prefix": "/v1/chat/", "body": { "/max_tokens": { "gt": 1024 } } },
              "then": { "model": "chat", "target": "large" } },
            { "name": "system-prompt",
              "when": { "body": { "/messages/0/role": { "one_of": ["system", "developer"] } } },
              "then": { "target": "v2" } }
        ]
    }));
    let acme = with(post_json("/v1/completions"), &[("x-tenant", "acme")]);
    // Both conditions: the rule pins sentiment/v2 (weight 0), whatever the body's model.
    let body = json_body(json!({"model": "iris", "temperature": 1.5, "inputs": []}));
    assert_eq!(
        route(&mut vm, &acme, &body),
        r("sentiment-v2", "rule:acme-canary")
    );
    let mp = rmp_serde::to_vec_named(&json!({"model": "iris", "temperature": 2})).unwrap();
    let acme_mp = [
        (":method", "POST"),
        (":path", "/v1/completions"),
        ("x-tenant", "acme"),
        ("content-type", "application/msgpack"),
    ];
    assert_eq!(
        route(&mut vm, &acme_mp, &mp),
        r("sentiment-v2", "rule:acme-canary")
    );
    // One condition fails each time.
    for (tenant, temp) in [("acme", 1.0), ("acme", 0.2), ("other", 1.5)] {
        let headers = with(post_json("/v1/completions"), &[("x-tenant", tenant)]);
        assert_eq!(
            route(
                &mut vm,
                &headers,
                &json_body(json!({"model": "iris", "temperature": temp}))
            ),
            r("iris-v1", "weighted")
        );
    }
    // No body: a body condition cannot hold.
    assert_eq!(
        route(
            &mut vm,
            &with(get("/v2/models/iris/ready"), &[("x-tenant", "acme")]),
            b""
        ),
        r("iris-v1", "weighted")
    );
    // path_prefix + body.
    let long = json_body(json!({"model": "chat", "max_tokens": 4096}));
    assert_eq!(
        route(&mut vm, &post_json("/v1/chat/completions"), &long),
        r("llm-large", "rule:long-answers")
    );
    assert_eq!(
        route(&mut vm, &post_json("/v1/completions"), &long),
        r("llm-small", "weighted")
    );
    // A target-only rule applies to the model the request addresses (here: the path's).
    let system = json_body(json!({"messages": [{"role": "system", "content": "x"}]}));
    assert_eq!(
        route(&mut vm, &post_json("/v2/models/iris/infer"), &system),
        r("iris-v2", "rule:system-prompt")
    );
    assert_eq!(vm.counter("decisions.rule.acme-canary"), 2);
    assert_eq!(vm.counter("decisions.rule.long-answers"), 1);
    assert_eq!(vm.counter("requests.sentiment.v2"), 2);
}

#[test]
fn rejects_by_method_and_time_window() {
    let mut vm = Vm::start(&json!({
        "models": deterministic_models(),
        "rules": [
            { "name": "blocked-tenant",
              "when": { "headers": { "x-tenant": { "prefix": "banned-" } }, "method": ["POST", "PUT"] },
              "then": { "reject": { "status": 429, "message": "tenant is blocked" } } },
            { "name": "maintenance-now",
              "when": { "time_utc": { "from": "07:30", "to": "08:30" }, "headers": { "x-maintenance-probe": { "present": true } } },
              "then": { "reject": { "status": 503, "message": "scheduled maintenance" } } },
            { "name": "night",
              "when": { "time_utc": { "from": "22:00", "to": "06:00" } },
              "then": { "reject": { "status": 503, "message": "closed at night" } } }
        ]
    }));
    let blocked = with(
        post_json("/v2/models/iris/infer"),
        &[("x-tenant", "banned-42")],
    );
    let sent = vm.send(&blocked, b"{}");
    assert_eq!(sent.action, Action::Pause);
    let reply = vm.reply();
    assert_eq!(reply.status, 429);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    assert_eq!(
        reply.json(),
        json!({"error": "rejected", "detail": "tenant is blocked", "rule": "blocked-tenant"})
    );
    assert_eq!(
        reply.header("x-inference-reason"),
        Some("rule:blocked-tenant")
    );
    assert!(reply.header("x-inference-decision").is_some());
    assert_eq!(vm.routed_cluster(), None);
    let put = [
        (":method", "PUT"),
        (":path", "/v2/models/iris/infer"),
        ("x-tenant", "banned-x"),
    ];
    vm.send(&put, b"");
    assert_eq!(vm.reply().status, 429);
    // Method not listed, or header not matching.
    assert_eq!(
        route(
            &mut vm,
            &with(get("/v2/models/iris/ready"), &[("x-tenant", "banned-42")]),
            b""
        ),
        r("iris-v1", "weighted")
    );
    assert_eq!(
        route(
            &mut vm,
            &with(
                post_json("/v2/models/iris/infer"),
                &[("x-tenant", "fine-banned-")]
            ),
            b"{}"
        ),
        r("iris-v1", "weighted")
    );
    // 08:00: inside [07:30, 08:30).
    let probe = with(
        get("/v2/models/iris/ready"),
        &[("x-maintenance-probe", "1")],
    );
    vm.send(&probe, b"");
    assert_eq!(
        vm.reply().json(),
        json!({"error": "rejected", "detail": "scheduled maintenance", "rule": "maintenance-now"})
    );
    // 08:30 is outside.
    vm.host.advance_secs(30 * 60);
    assert_eq!(route(&mut vm, &probe, b""), r("iris-v1", "weighted"));
    // A window across midnight: 23:59 and 05:59 are in it, 06:00 is not.
    vm.host.advance_secs((15 * 60 + 29) * 60);
    vm.send(&get("/v2/models/iris/ready"), b"");
    assert_eq!(vm.reply().json()["rule"], "night");
    vm.host.advance_secs(6 * 3600);
    vm.send(&get("/v2/models/iris/ready"), b"");
    assert_eq!(vm.reply().json()["rule"], "night");
    vm.host.advance_secs(60);
    assert_eq!(
        route(&mut vm, &get("/v2/models/iris/ready"), b""),
        r("iris-v1", "weighted")
    );
    assert_eq!(vm.counter("local_replies.reject"), 5);
    assert_eq!(vm.counter("decisions.rule.blocked-tenant"), 2);
    assert_eq!(vm.counter("decisions.rule.night"), 2);
}

#[test]
fn local_replies_echo_the_body_or_answer_fixed_json() {
    let mut vm = Vm::start(&json!({
        "models": deterministic_models(),
        "rules": [
            { "name": "no-child", "when": { "headers": { "x-seldon-route": { "exact": "none" } } },
              "then": { "reply": { "status": 200, "echo": true } } },
            { "name": "canned", "when": { "path_prefix": "/v2/health/" },
              "then": { "reply": { "status": 202, "body": { "ok": true, "models": ["iris"] } } } }
        ]
    }));
    let seldon = |ct: &'static str| {
        vec![
            (":method", "POST"),
            (":path", "/api/v1.0/predictions"),
            ("x-seldon-route", "none"),
            ("content-type", ct),
        ]
    };
    // Byte for byte, whatever the type (any spacing, MessagePack, ~100 KB).
    let json_text = br#"{ "data" : {"ndarray":[[1.0, 2.0, 5.5]]}, "meta":{} }"#;
    let mp = rmp_serde::to_vec_named(&json!({"data": {"ndarray": [[1, 2]]}})).unwrap();
    let big = json_body(json!({"data": {"ndarray": vec![vec![0.25f64; 64]; 200]}}));
    for (ct, body) in [
        ("application/json", json_text.to_vec()),
        ("application/msgpack", mp),
        ("application/json", big),
        ("text/plain", b"plain words".to_vec()),
    ] {
        let sent = vm.send(&seldon(ct), &body);
        assert_eq!(sent.action, Action::Pause);
        let reply = vm.reply();
        assert_eq!(reply.status, 200);
        assert!(reply.body == body, "echo differs for {ct}");
        assert_eq!(reply.header("content-type"), Some(ct));
        assert_eq!(reply.header("x-inference-reason"), Some("rule:no-child"));
        assert!(reply.header("x-inference-decision").is_some());
    }
    vm.send(&get("/v2/health/live"), b"");
    let reply = vm.reply();
    assert_eq!(reply.status, 202);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    assert_eq!(reply.json(), json!({"ok": true, "models": ["iris"]}));
    assert_eq!(reply.header("x-inference-reason"), Some("rule:canned"));
    // Without the header: routed as usual.
    assert_eq!(
        route(&mut vm, &post_json("/v2/models/iris/infer"), b"{}"),
        r("iris-v1", "weighted")
    );
    assert_eq!(vm.counter("local_replies.echo"), 4);
    assert_eq!(vm.counter("local_replies.reply"), 1);
    assert_eq!(vm.counter("requests.iris.v1"), 1);
}

#[test]
fn rule_order_pointer_escapes_numeric_equality_ranges_and_absence() {
    let mut vm = Vm::start(&json!({
        "models": deterministic_models(),
        "rules": [
            { "name": "first", "when": { "headers": { "x-order": { "present": true } } },
              "then": { "reject": { "status": 418, "message": "first rule wins" } } },
            { "name": "second", "when": { "headers": { "x-order": { "present": true } } },
              "then": { "reject": { "status": 409, "message": "second rule" } } },
            { "name": "escaped", "when": { "body": { "/meta~1tag": { "exact": "a~b" }, "/x~0y": { "present": true } } },
              "then": { "model": "chat", "target": "large" } },
            { "name": "numeric", "when": { "body": { "/n": { "exact": 1 } } },
              "then": { "model": "iris", "target": "v2" } },
            { "name": "range", "when": { "body": { "/score": { "gt": 0.25, "lt": 0.75 } } },
              "then": { "model": "sentiment" } },
            { "name": "absent", "when": { "path_prefix": "/absent/", "body": { "/model": { "present": false } } },
              "then": { "model": "chat" } }
        ]
    }));
    vm.send(
        &with(get("/v2/models/iris/ready"), &[("x-order", "1")]),
        b"",
    );
    assert_eq!(
        (
            vm.reply().status,
            serde_json::Value::from(vm.reply().json()["rule"].clone())
        ),
        (418, json!("first"))
    );
    let completions = post_json("/v1/completions");
    let send = |vm: &mut Vm, v: Value| route(vm, &completions, &json_body(v));
    assert_eq!(
        send(
            &mut vm,
            json!({"model": "iris", "meta/tag": "a~b", "x~y": 0})
        ),
        r("llm-large", "rule:escaped")
    );
    assert_eq!(
        send(
            &mut vm,
            json!({"model": "iris", "meta": {"tag": "a~b"}, "x~y": 0})
        ),
        r("iris-v1", "weighted")
    );
    for n in [json!(1), json!(1.0)] {
        assert_eq!(
            send(&mut vm, json!({"model": "chat", "n": n})),
            r("iris-v2", "rule:numeric")
        );
    }
    assert_eq!(
        send(&mut vm, json!({"model": "chat", "n": "1"})),
        r("llm-small", "weighted")
    );
    // A model-only rule: the model's own strategy picks the target.
    assert_eq!(
        send(&mut vm, json!({"model": "iris", "score": 0.5})),
        r("sentiment-v1", "rule:range")
    );
    for score in [0.25, 0.75, 0.9] {
        assert_eq!(
            send(&mut vm, json!({"model": "iris", "score": score})),
            r("iris-v1", "weighted")
        );
    }
    // `present: false`: a body without the field, and a request without a body.
    assert_eq!(
        route(&mut vm, &post_json("/absent/x"), br#"{"inputs":[]}"#),
        r("llm-small", "rule:absent")
    );
    assert_eq!(
        route(&mut vm, &get("/absent/y"), b""),
        r("llm-small", "rule:absent")
    );
    assert_eq!(
        route(&mut vm, &post_json("/absent/z"), br#"{"model":"iris"}"#),
        r("iris-v1", "weighted")
    );
    assert_eq!(vm.counter("decisions.rule.second"), 0);
    assert_eq!(vm.counter("decisions.rule.first"), 1);
}

#[test]
fn the_echo_of_a_body_over_max_bytes_is_refused_with_413() {
    let mut vm = Vm::start(&json!({
        "body": { "max_bytes": 64 },
        "models": deterministic_models(),
        "rules": [ { "name": "no-child", "when": { "headers": { "x-seldon-route": { "exact": "none" } } },
                     "then": { "reply": { "status": 200, "echo": true } } } ]
    }));
    let body = json_body(json!({"data": {"ndarray": [vec![1.0f64; 20]]}}));
    assert!(body.len() > 64);
    let headers = vec![
        (":method", "POST"),
        (":path", "/predict"),
        ("x-seldon-route", "none"),
        ("content-type", "application/json"),
    ];
    // By content-length at the headers, and at the chunk that crosses the limit.
    let len = body.len().to_string();
    let sent = vm.start_request(&with(headers.clone(), &[("content-length", &len)]), &body);
    assert_eq!(sent.action, Action::Pause);
    let first = vm.reply();
    let mut sent = vm.start_request(&headers, &body);
    assert_eq!(sent.action, Action::Pause);
    assert_eq!(
        sent.stream.on_request_body(&vm.host, body.len(), false),
        Action::Pause
    );
    let second = vm.reply();
    for reply in [first, second] {
        let v = assert_refused(&reply, 413, "too_large");
        assert_eq!(
            v["detail"],
            "the echo reply returns the request body, which is over body.max_bytes (64)"
        );
        assert_eq!(reply.header("x-inference-reason"), Some("rule:no-child"));
        assert_eq!(reply.header("x-inference-body"), Some("too-large"));
    }
    assert_eq!(vm.counter("body.too_large"), 2);
    assert_eq!(vm.counter("local_replies.error"), 2);
    assert_eq!(vm.counter("local_replies.echo"), 0);
}

#[test]
fn a_target_only_rule_matches_only_models_with_that_target() {
    let mut vm = Vm::start(&json!({
        "models": deterministic_models(),
        "rules": [ { "name": "canary", "when": { "headers": { "x-canary": { "present": true } } },
                     "then": { "target": "v2" } } ]
    }));
    let canary = |path: &'static str| with(get(path), &[("x-canary", "1")]);
    assert_eq!(
        route(&mut vm, &canary("/v2/models/iris/ready"), b""),
        r("iris-v2", "rule:canary")
    );
    assert_eq!(
        route(&mut vm, &canary("/v2/models/sentiment/ready"), b""),
        r("sentiment-v2", "rule:canary")
    );
    // chat has no v2: the rule does not match; chat's own strategy decides.
    assert_eq!(
        route(&mut vm, &canary("/v2/models/chat/ready"), b""),
        r("llm-small", "weighted")
    );
    assert_eq!(vm.counter("decisions.rule.canary"), 2);
}
