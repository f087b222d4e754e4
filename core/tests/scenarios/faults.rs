//! Faults around a learning router: upstream failures (Envoy's own 503 and 504, a 500, a 429)
//! are answered with the decision and learned from once; shared data that cannot be read or
//! written, or that is contended on every write, or that holds garbage, degrades as documented
//! (default target, `rewards.failed`, `bandit.cas_exhausted`, 503 `unavailable` with the id
//! released, `bandit.state_resets`); callouts the root context cannot start are counted.

use crate::driver::*;
use inference_router_core::host::{Action, Host, CAS_MISMATCH};
use serde_json::{json, Value};

/// A thompson model with one target on `cluster`, learning from the status.
fn single(name: &str, cluster: &str) -> Value {
    bandit_model(
        name,
        json!([{ "name": "a", "cluster": cluster }]),
        json!({ "type": "thompson" }),
        Some(json!({ "status": true })),
    )
}

fn learning(models: Value) -> Value {
    json!({ "models": models, "feedback": feedback_section(3600), "state_endpoint": state_section() })
}

#[test]
fn upstream_failures_carry_the_decision_and_each_teaches_its_model_once() {
    let mut vm = Vm::start(&learning(json!([
        single("down", "iris-v2"),
        single("healthy", "sentiment-v2")
    ])));
    let faults: [Reply; 4] = [
        // Envoy could not connect.
        (&[(":status", "503"), ("content-type", "text/plain")], b"upstream connect error or disconnect/reset before headers. reset reason: connection failure"),
        (&[(":status", "500")], br#"{"error":"boom"}"#),
        (&[(":status", "429")], b""),
        // The route timeout.
        (&[(":status", "504"), ("content-type", "text/plain")], b"upstream request timeout"),
    ];
    let mut ids = Vec::new();
    for (i, (response, body)) in faults.iter().enumerate() {
        let mut sent = vm.send(&get("/v2/models/down/ready"), b"");
        assert_eq!(sent.action, Action::Continue);
        vm.respond(&mut sent, response, body);
        // The decision is on the answer whoever wrote it, so feedback can still be sent.
        assert_eq!(
            vm.response_header("x-inference-model").as_deref(),
            Some("down")
        );
        assert_eq!(
            vm.response_header("x-inference-target").as_deref(),
            Some("a")
        );
        assert_eq!(
            vm.response_header("x-inference-reason").as_deref(),
            Some("bandit")
        );
        ids.push(vm.response_header("x-inference-decision").unwrap());
        // Quality 0: beta grows by one per failure.
        assert_eq!(vm.arm("down", "a"), [1.0, 2.0 + i as f64, 1.0 + i as f64]);
        // The next request is served normally.
        let (_, t) = vm.decision("healthy");
        assert_eq!(t, "a");
    }
    for id in &ids {
        assert_eq!(
            vm.feedback(&json!({ "decision": id, "reward": 1.0 }))
                .status,
            200
        );
    }
    // Each response taught once (4 implicit zeros), and each feedback once (4 ones).
    assert_eq!(vm.arm("down", "a"), [5.0, 5.0, 8.0]);
    assert_eq!(vm.arm("healthy", "a"), [5.0, 1.0, 4.0]);
    assert_eq!(vm.counter("rewards.implicit"), 8);
    assert_eq!(vm.counter("rewards.failed"), 0);
    assert_eq!(vm.counter("feedback.accepted"), 4);
}

#[test]
fn unreadable_bandit_state_sends_requests_to_the_default_target() {
    let mut model = bandit_model(
        "sentiment",
        sentiment_targets(),
        json!({ "type": "epsilon_greedy", "epsilon": 0.0 }),
        Some(json!({})),
    );
    model["default_target"] = json!("v2");
    let mut vm = Vm::start(&learning(json!([model])));
    vm.host.fail("shared_data", 2);
    let mut sent = vm.send(&get("/v2/models/sentiment/ready"), b"");
    assert_eq!(sent.action, Action::Continue);
    assert_eq!(vm.routed_cluster().as_deref(), Some("sentiment-v2"));
    vm.respond(&mut sent, OK, b"");
    assert_eq!(
        vm.response_header("x-inference-reason").as_deref(),
        Some("default")
    );
    assert_eq!(vm.counter("decisions.default"), 1);
    assert_eq!(vm.counter("decisions.bandit"), 0);
    // Its reward could not be applied either.
    assert_eq!(vm.counter("rewards.failed"), 1);
    assert_eq!(vm.counter("rewards.implicit"), 0);
    // The state endpoint says so instead of inventing a state.
    let doc = vm.state();
    assert!(
        doc["models"]["sentiment"]["error"]
            .as_str()
            .unwrap()
            .starts_with("shared data failed: "),
        "{doc}"
    );
    vm.host.heal("shared_data");
    let (_, _) = vm.decision("sentiment");
    assert_eq!(vm.counter("decisions.bandit"), 1);
    assert_eq!(vm.observations("sentiment"), 1);
}

#[test]
fn failed_and_contended_writes_drop_the_reward_and_release_the_feedback_id() {
    let mut vm = Vm::start(&learning(json!([single("chat", "llm-small")])));
    let (id, _) = vm.decision("chat");
    assert_eq!(vm.observations("chat"), 1);

    // The host refuses writes: the implicit reward is lost (counted), feedback is 503.
    vm.host.fail("set_shared_data", 2);
    let (id2, _) = vm.decision("chat");
    assert_eq!(vm.counter("rewards.failed"), 1);
    assert_eq!(vm.counter("bandit.cas_exhausted"), 0);
    assert_refused(
        &vm.feedback(&json!({ "decision": id, "reward": 1 })),
        503,
        "unavailable",
    );
    assert_eq!(vm.counter("feedback.rejected.unavailable"), 1);

    // Every write loses its compare-and-swap: 32 attempts, then dropped.
    vm.host.fail("set_shared_data", CAS_MISMATCH);
    vm.decision("chat");
    assert_eq!(vm.counter("rewards.failed"), 2);
    assert_eq!(vm.counter("bandit.cas_exhausted"), 1);
    assert_refused(
        &vm.feedback(&json!({ "decision": id2, "reward": 1 })),
        503,
        "unavailable",
    );
    assert_eq!(vm.counter("feedback.rejected.unavailable"), 2);
    assert_eq!(vm.observations("chat"), 1);

    // Healed: the ids were never recorded as used, so retrying is safe.
    vm.host.heal("set_shared_data");
    for d in [&id, &id2] {
        let r = vm.feedback(&json!({ "decision": d, "reward": 1 }));
        assert_eq!(r.status, 200, "{}", r.text());
    }
    assert_eq!(vm.observations("chat"), 3);
    assert_eq!(vm.counter("feedback.accepted"), 2);
    assert_eq!(vm.counter("rewards.implicit"), 1);
}

#[test]
fn undecodable_state_is_replaced_by_a_fresh_one_and_counted() {
    let cfg = learning(json!([single("chat", "llm-small")]));
    let mut vm = Vm::start(&cfg);
    vm.decision("chat");
    vm.decision("chat");
    assert_eq!(vm.arm("chat", "a"), [3.0, 1.0, 2.0]);
    vm.host
        .set_shared_data(&state_key("chat"), b"\xc1 not messagepack", None)
        .unwrap();
    let doc = vm.state();
    assert!(
        doc["models"]["chat"]["error"]
            .as_str()
            .unwrap()
            .starts_with("undecodable state: "),
        "{doc}"
    );
    // Requests are still served by the bandit; the next reward replaces the garbage.
    let (_, t) = vm.decision("chat");
    assert_eq!(t, "a");
    assert_eq!(vm.counter("bandit.state_resets"), 1);
    assert_eq!(vm.arm("chat", "a"), [2.0, 1.0, 1.0]);
    assert_eq!(vm.observations("chat"), 1);

    // Garbage found at start (a reload) is replaced at once by the prior.
    vm.host
        .set_shared_data(&state_key("chat"), b"garbage", None)
        .unwrap();
    assert!(vm.reload(&cfg));
    assert_eq!(vm.counter("bandit.state_resets"), 2);
    assert_eq!(vm.arm("chat", "a"), [1.0, 1.0, 0.0]);
}

#[test]
fn root_callouts_that_cannot_start_are_counted_as_lost() {
    let mut vm = Vm::start(&json!({
        "models": [
            bandit_model("judged", json!([{ "name": "a", "cluster": "sentiment-v1" }]), json!({ "type": "thompson" }),
                         Some(json!({ "evaluator": { "cluster": "evaluator" } }))),
            { "name": "iris",
              "targets": [ { "name": "v1", "cluster": "iris-v1", "weight": 1 },
                           { "name": "v2", "cluster": "iris-v2", "weight": 0 } ],
              "router": { "cluster": "router", "feedback_path": "/send-feedback" } }
        ],
        "shadows": [ { "model": "iris", "target": "v2", "percent": 100 } ],
        "feedback": feedback_section(3600),
    }));
    vm.decision("judged");
    // Routed by the router (child 0), shadowed.
    let body = br#"{"data":{"ndarray":[[0]]}}"#;
    let mut sent = vm.send(
        &with(post_json("/api/v1.0/predictions"), &[("x-model", "iris")]),
        body,
    );
    let token = vm.one_dispatched().token;
    vm.answer(
        &mut sent,
        token,
        &status("200"),
        br#"{"data":{"ndarray":[[0]]}}"#,
    );
    vm.respond(&mut sent, OK, b"{}");
    let decision = vm.response_header("x-inference-decision").unwrap();
    assert_eq!(
        vm.feedback(&json!({ "decision": decision, "reward": 1 }))
            .status,
        200
    );

    // An evaluation, a shadow copy and a router reward wait for the tick; none can start.
    vm.host.fail("dispatch", 1);
    vm.tick(1);
    assert!(vm.dispatched().is_empty());
    assert_eq!(vm.counter("evaluator.failures"), 1);
    assert_eq!(vm.counter("shadow.dropped"), 1);
    assert_eq!(vm.counter("router.feedback_failures"), 1);
    // They are not retried.
    vm.host.heal("dispatch");
    vm.tick(1);
    assert!(vm.dispatched().is_empty());
    assert_eq!(vm.counter("rewards.evaluator"), 0);
    assert_eq!(
        vm.counter("shadow.iris.2xx") + vm.counter("shadow.iris.failed"),
        0
    );
}
