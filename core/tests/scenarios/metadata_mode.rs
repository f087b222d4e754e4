//! Body mode `metadata`: the body fields come from the dynamic metadata Envoy's
//! `json_to_metadata` wrote (one property read in the header phase, never the body), so the
//! filter decides at the headers and never pauses. Numbers arrive as 8-byte doubles, strings as
//! bytes; feedback is taken from headers only.

use crate::driver::*;
use inference_router_core::host::Action;
use serde_json::{json, Value};

fn config() -> Value {
    json!({
        "body": { "source": "metadata" },
        "models": deterministic_models(),
        "rules": [
            { "name": "hot", "when": { "body": { "/temperature": { "gt": 1.0 } } },
              "then": { "model": "chat", "target": "large" } }
        ]
    })
}

const NAMESPACE: [&str; 3] = ["metadata", "filter_metadata", "inference-router"];

/// Sets the namespace json_to_metadata would have written.
fn lift(vm: &Vm, pairs: &[(&str, &[u8])]) {
    vm.host.set_property(&NAMESPACE, &encode_pairs(pairs));
}

#[track_caller]
fn post(vm: &mut Vm, body: &[u8]) -> Sent {
    let mut sent = vm.send(&post_json("/v1/chat/completions"), body);
    // Decided at the headers: the body streams on.
    assert_eq!(sent.action, Action::Continue);
    assert_eq!(
        sent.stream.on_request_body(&vm.host, body.len(), true),
        Action::Continue
    );
    sent
}

#[test]
fn the_body_model_and_numeric_fields_come_from_dynamic_metadata() {
    let mut vm = Vm::start(&config());
    // What the body says does not matter: the metadata does.
    lift(&vm, &[("model", b"iris")]);
    let mut sent = post(&mut vm, &chat_body("chat"));
    assert_eq!(vm.routed_cluster().as_deref(), Some("iris-v1"));
    vm.respond(&mut sent, OK, b"");
    assert_eq!(
        vm.response_header("x-inference-reason").as_deref(),
        Some("weighted")
    );

    // A number compared by a rule: the 8-byte little-endian double.
    lift(
        &vm,
        &[("model", b"chat"), ("temperature", &1.5f64.to_le_bytes())],
    );
    let mut sent = post(&mut vm, b"{}");
    assert_eq!(vm.routed_cluster().as_deref(), Some("llm-large"));
    vm.respond(&mut sent, OK, b"");
    assert_eq!(
        vm.response_header("x-inference-reason").as_deref(),
        Some("rule:hot")
    );
    lift(
        &vm,
        &[("model", b"chat"), ("temperature", &0.7f64.to_le_bytes())],
    );
    post(&mut vm, b"{}");
    assert_eq!(vm.routed_cluster().as_deref(), Some("llm-small"));

    // Headers and paths work as in buffer mode, and win over the metadata.
    let sent = vm.send(&get("/v2/models/sentiment/versions/v2/ready"), b"");
    assert_eq!(sent.action, Action::Continue);
    assert_eq!(vm.routed_cluster().as_deref(), Some("sentiment-v2"));
    lift(&vm, &[("model", b"iris")]);
    vm.send(
        &with(
            post_json("/v1/chat/completions"),
            &[("x-model", "sentiment")],
        ),
        b"{}",
    );
    assert_eq!(vm.routed_cluster().as_deref(), Some("sentiment-v1"));

    // An unknown model named only in the metadata is a 404 naming it.
    lift(&vm, &[("model", b"gpt-unknown")]);
    let sent = vm.send(&post_json("/v1/chat/completions"), b"{}");
    assert_eq!(sent.action, Action::Pause);
    let v = assert_error(&vm.reply(), 404, "unknown_model");
    assert!(v["detail"].as_str().unwrap().contains("gpt-unknown"), "{v}");
    assert_eq!(vm.counter("requests.iris.v1"), 1);
    assert_eq!(vm.counter("decisions.rule.hot"), 1);
    assert_eq!(vm.counter("body.parse_failures"), 0);
}

#[test]
fn a_missing_or_malformed_namespace_is_no_body_fields() {
    let mut cfg = config();
    cfg["default_model"] = json!("iris");
    let mut vm = Vm::start(&cfg);
    // Nothing lifted: the default model.
    post(&mut vm, &chat_body("chat"));
    assert_eq!(vm.routed_cluster().as_deref(), Some("iris-v1"));
    // Bytes that are not the pairs encoding: ignored, not a parse failure.
    vm.host.set_property(&NAMESPACE, &[9, 0, 0, 0, 1]);
    post(&mut vm, &chat_body("chat"));
    assert_eq!(vm.routed_cluster().as_deref(), Some("iris-v1"));
    assert_eq!(vm.counter("body.parse_failures"), 0);
    assert!(vm.host.reply().is_none());
}

#[test]
fn feedback_is_read_from_headers_and_the_body_is_never_waited_for() {
    let mut vm = Vm::start(&json!({
        "body": { "source": "metadata" },
        "models": [ bandit_model("sentiment", sentiment_targets(), json!({ "type": "thompson" }), None) ],
        "feedback": feedback_section(3600),
        "state_endpoint": state_section(),
    }));
    let (id, target) = vm.decision("sentiment");
    // The body is ignored (this host cannot read it); the headers carry the feedback.
    let body = serde_json::to_vec(&json!({ "decision": "ignored", "reward": 0 })).unwrap();
    let mut sent = vm.start_request(
        &with(
            post_json(FEEDBACK_PATH),
            &[("x-inference-decision", &id), ("x-inference-reward", "1")],
        ),
        &body,
    );
    assert_eq!(sent.action, Action::Pause);
    let r = vm.reply();
    assert_eq!(
        r.json(),
        json!({"updated": {"model": "sentiment", "target": target, "reward": 1.0, "observations": 1}})
    );
    assert_eq!(
        sent.stream.on_request_body(&vm.host, body.len(), true),
        Action::Continue
    );
    // A JSON body alone is not enough here.
    let sent = vm.start_request(&post_json(FEEDBACK_PATH), &body);
    assert_eq!(sent.action, Action::Pause);
    assert_refused(&vm.reply(), 400, "invalid");
}

#[test]
fn what_needs_the_raw_body_is_refused_at_start() {
    let iris = |extra: Value| {
        let mut m = json!({ "name": "iris",
                            "targets": [ { "name": "v1", "cluster": "iris-v1", "weight": 1 },
                                         { "name": "v2", "cluster": "iris-v2", "weight": 0 } ] });
        for (k, v) in extra.as_object().unwrap() {
            m[k] = v.clone();
        }
        m
    };
    let metadata = |models: Value, extra: Value| {
        let mut cfg = json!({ "body": { "source": "metadata" }, "models": models });
        for (k, v) in extra.as_object().unwrap() {
            cfg[k] = v.clone();
        }
        cfg
    };
    let caps = json!([{ "name": "chat", "targets": [ { "name": "a", "cluster": "c", "weight": 1, "capabilities": ["vision"] } ] }]);
    let none = || json!({});
    for (cfg, field, what) in [
        (
            metadata(
                json!([iris(json!({ "router": { "cluster": "router" } }))]),
                none(),
            ),
            "models[0]",
            "router",
        ),
        (
            metadata(json!([iris(json!({ "fan_out": {} }))]), none()),
            "models[0]",
            "fan_out",
        ),
        (
            metadata(
                json!([iris(json!({ "fallback": ["v2"], "retry": true }))]),
                none(),
            ),
            "models[0]",
            "retry",
        ),
        (
            metadata(
                json!([iris(
                    json!({ "input_spec": [ { "name": "x", "datatype": "FP32", "shape": [1] } ] })
                )]),
                none(),
            ),
            "models[0]",
            "input_spec",
        ),
        (metadata(caps, none()), "models[0]", "capabilities"),
        (
            metadata(
                json!([iris(json!({}))]),
                json!({ "shadows": [ { "model": "iris", "target": "v2", "percent": 10 } ] }),
            ),
            "shadows[0]",
            "mirrors",
        ),
        (
            metadata(
                json!([iris(json!({}))]),
                json!({ "detectors": [ { "name": "e", "builtin": "email" } ] }),
            ),
            "detectors",
            "prompt",
        ),
    ] {
        let critical = Vm::try_start(&cfg)
            .err()
            .unwrap_or_else(|| panic!("accepted: {cfg}"));
        assert_eq!(critical.len(), 1, "{critical:?}");
        let line = &critical[0];
        assert!(
            line.starts_with(&format!(
                "inference-router: invalid configuration: {field}: "
            )),
            "{line}"
        );
        assert!(
            line.contains(what) && line.contains("body.source \"metadata\""),
            "{line}"
        );
    }
}
