//! What the filter reports: the `x-inference-*` headers on upstream answers (whatever their
//! status) and on local replies, a unique decision id per decision, metadata that can be turned
//! off (the signed decision id stays when feedback needs it), and the counters.

use std::collections::BTreeSet;

use crate::driver::*;
use inference_router_core::host::Action;
use serde_json::{json, Value};

fn config() -> Value {
    json!({
        "models": deterministic_models(),
        "rules": [
            { "name": "no-child", "when": { "headers": { "x-seldon-route": { "exact": "none" } } },
              "then": { "reply": { "status": 200, "echo": true } } },
            { "name": "deny", "when": { "headers": { "x-deny": { "present": true } } },
              "then": { "reject": { "status": 403, "message": "denied" } } }
        ]
    })
}

const META: [&str; 7] = [
    "model", "target", "reason", "decision", "body", "detector", "attempts",
];

/// The `x-inference-*` response headers the upstream's answer carries after the filter.
fn response_meta(vm: &Vm) -> Vec<(String, String)> {
    META.iter()
        .filter_map(|m| {
            let name = format!("x-inference-{m}");
            vm.response_header(&name).map(|v| (name, v))
        })
        .collect()
}

fn reply_meta(r: &LocalReply) -> Vec<(String, String)> {
    r.headers
        .iter()
        .filter(|(n, _)| n.starts_with("x-inference-"))
        .cloned()
        .collect()
}

#[test]
fn every_answer_carries_its_metadata_and_a_unique_decision_id() {
    let mut vm = Vm::start(&config());
    let mut ids = BTreeSet::new();
    for i in 0..30 {
        // Upstream answer: model, target, reason, decision; the upstream's own headers kept.
        let mut sent = vm.send(&get("/v2/models/iris/ready"), b"");
        vm.respond(
            &mut sent,
            &[(":status", "200"), ("x-upstream-cluster", "iris-v1")],
            b"",
        );
        let meta = response_meta(&vm);
        let names: Vec<&str> = meta.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "x-inference-model",
                "x-inference-target",
                "x-inference-reason",
                "x-inference-decision"
            ]
        );
        assert_eq!(
            meta[..3]
                .iter()
                .map(|(_, v)| v.as_str())
                .collect::<Vec<_>>(),
            ["iris", "v1", "weighted"]
        );
        assert_eq!(
            vm.response_header("x-upstream-cluster").as_deref(),
            Some("iris-v1")
        );
        assert!(ids.insert(meta[3].1.clone()), "decision id repeated");

        // The filter's error: reason error, no model resolved, no target.
        vm.send(&get(&format!("/v2/models/missing-{i}/ready")), b"");
        let r = vm.reply();
        assert_error(&r, 404, "unknown_model");
        let meta = reply_meta(&r);
        assert_eq!(
            meta.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
            ["x-inference-reason", "x-inference-decision"]
        );
        assert!(ids.insert(meta[1].1.clone()));

        // A rule's reject and a rule's echo: the rule named, the model when one was resolved.
        vm.send(&with(get("/v2/models/iris/ready"), &[("x-deny", "1")]), b"");
        let r = vm.reply();
        assert_eq!(r.status, 403);
        assert_eq!(
            r.json(),
            json!({"error": "rejected", "detail": "denied", "rule": "deny"})
        );
        assert_eq!(r.header("x-inference-reason"), Some("rule:deny"));
        assert_eq!(r.header("x-inference-target"), None);
        assert!(ids.insert(r.header("x-inference-decision").unwrap().to_string()));
        let body = format!(r#"{{"i":{i}}}"#);
        vm.send(
            &with(post_json("/x"), &[("x-seldon-route", "none")]),
            body.as_bytes(),
        );
        let r = vm.reply();
        assert_eq!((r.status, r.body.as_slice()), (200, body.as_bytes()));
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(r.header("x-inference-reason"), Some("rule:no-child"));
        assert!(ids.insert(r.header("x-inference-decision").unwrap().to_string()));
    }
    assert_eq!(ids.len(), 120);
}

#[test]
fn answers_written_by_envoy_after_a_decision_carry_it_too() {
    let mut vm = Vm::start(&config());
    let mut sent = vm.send(&get("/v2/models/iris/versions/v2/ready"), b"");
    // Envoy's own 503: the upstream could not be reached.
    vm.respond(
        &mut sent,
        &[(":status", "503"), ("content-type", "text/plain")],
        b"upstream connect error or disconnect/reset before headers",
    );
    assert_eq!(
        response_meta(&vm)[..3],
        [
            ("x-inference-model".to_string(), "iris".to_string()),
            ("x-inference-target".to_string(), "v2".to_string()),
            ("x-inference-reason".to_string(), "path-version".to_string())
        ]
    );
}

#[test]
fn metadata_can_be_turned_off_and_the_signed_decision_stays_for_feedback() {
    let mut vm =
        Vm::start(&json!({ "response_metadata": false, "models": deterministic_models() }));
    let mut sent = vm.send(&get("/v2/models/iris/ready"), b"");
    assert_eq!(vm.routed_cluster().as_deref(), Some("iris-v1"));
    // Even an upstream's own x-inference-* header passes untouched: the filter says nothing.
    vm.respond(
        &mut sent,
        &[(":status", "200"), ("x-inference-body", "upstream")],
        b"",
    );
    assert_eq!(
        response_meta(&vm),
        [("x-inference-body".to_string(), "upstream".to_string())]
    );
    vm.send(&get("/v2/models/nope/ready"), b"");
    let r = vm.reply();
    assert_eq!(r.status, 404);
    assert!(reply_meta(&r).is_empty(), "{r:?}");

    let mut vm = Vm::start(&json!({
        "response_metadata": false,
        "models": [ bandit_model("sentiment", sentiment_targets(), json!({ "type": "thompson" }), None) ],
        "feedback": feedback_section(3600),
    }));
    let mut sent = vm.send(&get("/v2/models/sentiment/ready"), b"");
    vm.respond(&mut sent, OK, b"");
    let meta = response_meta(&vm);
    assert_eq!(meta.len(), 1, "{meta:?}");
    assert_eq!(meta[0].0, "x-inference-decision");
    assert!(meta[0].1.starts_with("sentiment~"), "{meta:?}");
    let r = vm.feedback(&json!({ "decision": meta[0].1, "reward": 1 }));
    assert_eq!(r.status, 200, "{}", r.text());
}

#[test]
fn counters_count_each_decision_reply_and_failure_once() {
    let mut vm = Vm::start(&config());
    for _ in 0..3 {
        vm.send(&get("/v2/models/iris/ready"), b"");
    }
    vm.send(&get("/v2/models/iris/versions/v2/ready"), b"");
    vm.send(&post_json("/v1/chat/completions"), &chat_body("chat"));
    vm.send(&get("/v2/models/unknown/ready"), b"");
    vm.send(&post_json("/v1/chat/completions"), b"{");
    vm.send(&with(get("/v2/models/iris/ready"), &[("x-deny", "y")]), b"");
    let sent = vm.send(&with(post_json("/x"), &[("x-seldon-route", "none")]), b"{}");
    assert_eq!(sent.action, Action::Pause);
    let want = [
        ("requests.iris.v1", 3),
        ("requests.iris.v2", 1),
        ("requests.chat.small", 1),
        ("requests.chat.large", 0),
        ("requests.sentiment.v1", 0),
        ("decisions.weighted", 4),
        ("decisions.path_version", 1),
        ("decisions.rule.deny", 1),
        ("decisions.rule.no-child", 1),
        ("decisions.default", 0),
        ("body.parse_failures", 1),
        ("body.too_large", 0),
        ("local_replies.error", 2),
        ("local_replies.reject", 1),
        ("local_replies.echo", 1),
        ("local_replies.reply", 0),
    ];
    for (name, n) in want {
        assert_eq!(vm.counter(name), n, "{name}");
    }
}
