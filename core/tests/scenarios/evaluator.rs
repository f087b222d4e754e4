//! Rewards from an evaluator service (`reward.evaluator`): the summary of each response is
//! queued when the stream ends and POSTed from the root context on its tick; the evaluator's
//! `{"reward": r}` replaces the implicit reward. A timeout, an error status or a malformed
//! answer counts in `evaluator.failures` and teaches nothing. The outbox is bounded.

use crate::driver::*;
use inference_router_core::host::Action;
use serde_json::{json, Value};

fn config() -> Value {
    json!({
        "models": [
            bandit_model("sentiment", sentiment_targets(), json!({ "type": "thompson" }),
                         Some(json!({ "status": true,
                                      "evaluator": { "cluster": "evaluator", "path": "/evaluate",
                                                     "timeout_ms": 2000 } }))),
            bandit_model("chat",
                         json!([ { "name": "small", "cluster": "llm-small" },
                                 { "name": "large", "cluster": "llm-large" } ]),
                         json!({ "type": "thompson" }),
                         Some(json!({ "status": true,
                                      "evaluator": { "cluster": "evaluator-stall", "timeout_ms": 200 } }))),
        ],
        "feedback": feedback_section(3600),
        "state_endpoint": state_section(),
    })
}

fn owned(headers: &[(String, String)]) -> Vec<(&str, &str)> {
    headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect()
}

#[test]
fn the_summary_goes_out_on_the_tick_and_the_evaluators_reward_replaces_the_implicit_one() {
    let mut vm = Vm::start(&config());
    let mut sent = vm.send(&get("/v2/models/sentiment/ready"), b"");
    assert_eq!(sent.action, Action::Continue);
    vm.host.advance_ms(30);
    vm.response_headers(&mut sent, OK, br#"{"ready":true}"#);
    vm.host.advance_ms(5);
    vm.response_body(&mut sent, 14);
    vm.done(&mut sent);
    let decision = vm.response_header("x-inference-decision").unwrap();
    let target = vm.response_header("x-inference-target").unwrap();
    // Nothing is sent from the stream, and nothing is learned yet.
    assert!(vm.dispatched().is_empty());
    assert_eq!(vm.counter("rewards.implicit"), 0);
    assert_eq!(vm.observations("sentiment"), 0);

    vm.tick(1);
    let call = vm.one_dispatched();
    assert_eq!(call.cluster, "evaluator");
    assert_eq!(
        owned(&call.headers),
        [
            (":method", "POST"),
            (":path", "/evaluate"),
            (":authority", "evaluator"),
            ("content-type", "application/json")
        ]
    );
    assert_eq!(call.timeout_ms, 2000);
    let summary: Value = serde_json::from_slice(&call.body).unwrap();
    assert_eq!(
        summary,
        json!({ "model": "sentiment", "target": target, "decision": decision, "status": 200,
                "latency_ms": 30, "ttfb_ms": 35, "usage": null, "implicit_reward": 1.0 })
    );

    vm.answer_root(call.token, &status("200"), br#"{"reward": 0.25}"#);
    assert_eq!(vm.counter("rewards.evaluator"), 1);
    assert_eq!(vm.counter("rewards.implicit"), 0);
    assert_eq!(vm.counter("evaluator.failures"), 0);
    // Thompson: alpha += r, beta += 1 − r, for the target that served.
    assert_eq!(vm.arm("sentiment", &target), [1.25, 1.75, 1.0]);
    assert_eq!(vm.observations("sentiment"), 1);
    // Answered once: the same token again changes nothing, and no summary is left to send.
    vm.answer_root(call.token, &status("200"), br#"{"reward": 1}"#);
    assert_eq!(vm.counter("rewards.evaluator"), 1);
    // (The state requests above started new streams: the host's record of callouts is empty.)
    assert!(vm.dispatched().is_empty());
    vm.tick(3);
    assert!(vm.dispatched().is_empty());
}

#[test]
fn evaluator_failures_are_counted_and_teach_nothing() {
    let mut vm = Vm::start(&config());
    for _ in 0..5 {
        vm.decision("chat");
    }
    vm.tick(1);
    let calls = vm.dispatched();
    assert_eq!(calls.len(), 5);
    for c in &calls {
        // The defaults: path /evaluate, authority = cluster.
        assert_eq!(
            (
                c.cluster.as_str(),
                c.header(":path"),
                c.header(":authority")
            ),
            (
                "evaluator-stall",
                Some("/evaluate"),
                Some("evaluator-stall")
            )
        );
        assert_eq!(c.timeout_ms, 200);
    }
    let answers: [Reply; 5] = [
        // Envoy's own answer when the callout's timeout passes.
        (&[(":status", "504")], b"upstream request timeout"),
        // A reset: no status at all.
        (&[], b""),
        (&[(":status", "503")], br#"{"error":"overloaded"}"#),
        (&[(":status", "200")], br#"{"score": 1}"#),
        // Out of range: refused, never clamped.
        (&[(":status", "200")], br#"{"reward": 1.5}"#),
    ];
    for (i, (c, (headers, body))) in calls.iter().zip(answers).enumerate() {
        vm.answer_root(c.token, headers, body);
        assert_eq!(vm.counter("evaluator.failures"), i as u64 + 1);
    }
    assert_eq!(vm.counter("rewards.evaluator"), 0);
    assert_eq!(vm.counter("rewards.implicit"), 0);
    assert_eq!(vm.counter("rewards.failed"), 0);
    assert_eq!(vm.observations("chat"), 0);
    for t in ["small", "large"] {
        assert_eq!(vm.arm("chat", t), [1.0, 1.0, 0.0]);
    }
}

#[test]
fn the_outbox_holds_1024_summaries_drops_the_oldest_and_drains_64_per_tick() {
    let mut vm = Vm::start(&config());
    let mut decisions = Vec::new();
    for _ in 0..1025 {
        decisions.push(vm.decision("sentiment").0);
    }
    // The 1025th summary pushed the first out.
    assert_eq!(vm.counter("evaluator.failures"), 1);
    vm.tick(1);
    let first = vm.dispatched();
    assert_eq!(first.len(), 64);
    let decision_of = |body: &[u8]| {
        serde_json::from_slice::<Value>(body).unwrap()["decision"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(decision_of(&first[0].body), decisions[1]);
    vm.tick(15);
    let all = vm.dispatched();
    assert_eq!(all.len(), 1024);
    let sent: Vec<String> = all.iter().map(|c| decision_of(&c.body)).collect();
    assert_eq!(sent, decisions[1..]);
    vm.tick(1);
    assert_eq!(vm.dispatched().len(), 1024);
}
