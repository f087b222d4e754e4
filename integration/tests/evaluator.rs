//! Rewards from an evaluator service (docs/configuration.md, `reward.evaluator`), against the
//! real Envoy at `--concurrency 2`, envoy/demo.yaml, with its `evaluator` and `evaluator-stall`
//! clusters served by fake evaluators: one answers `{"reward": r}`, one stalls past
//! `timeout_ms`. The callout must never touch the user's response; failures (timeout, error
//! status, malformed answer) are counted and learn nothing. No wall-clock assertions.

mod common;

use std::time::Duration;

use common::learning::*;
use common::*;
use integration::{Behaviour, Harness, Request};
use serde_json::json;

#[test]
fn evaluator_rewards_replace_implicit_ones_and_a_stalled_evaluator_harms_nobody() {
    let h = Harness::demo(&json!({
        "models": [
            // Judged by the answering evaluator.
            bandit_model("sentiment", sentiment_targets(), json!({ "type": "thompson" }),
                         Some(json!({ "status": true,
                                      "evaluator": { "cluster": "evaluator", "path": "/evaluate",
                                                     "timeout_ms": 2000 } }))),
            // Judged by the one that stalls (5 s) far past its 200 ms timeout.
            bandit_model("chat",
                         json!([ { "name": "small", "cluster": "llm-small" },
                                 { "name": "large", "cluster": "llm-large" } ]),
                         json!({ "type": "thompson" }),
                         Some(json!({ "status": true,
                                      "evaluator": { "cluster": "evaluator-stall",
                                                     "timeout_ms": 200 } }))),
        ],
        "feedback": feedback_section(3600),
        "state_endpoint": state_section(),
    }));
    let u = &h.upstreams;
    u.set_behaviour("evaluator", Behaviour::evaluator(0.25));
    u.set_behaviour("evaluator-stall", Behaviour::stall(Duration::from_secs(5)));

    // Users of the stalled evaluator's model: normal answers, bodies intact — before the
    // callouts time out, and again after.
    const K: u64 = 12;
    let chat_users = |round: u64| {
        for i in 0..K / 2 {
            let body = serde_json::to_vec(&chat_body("chat")).unwrap();
            let r = h.send(
                &Request::post("/v1/chat/completions")
                    .header("content-type", "application/json")
                    .body(body.clone()),
            );
            assert_eq!(r.status, 200, "chat {round}/{i}: {} {}", r.status, r.text());
            let echo = r.echo();
            assert!(echo.cluster.starts_with("llm-"), "{echo:?}");
            assert_body_intact(&echo, &body);
            assert_meta(&r, "model", Some("chat"));
        }
    };
    for round in 0..2 {
        chat_users(round);
        // Every summary reached the stalled evaluator, and every callout failed (timeout).
        let want = (round + 1) * K / 2;
        wait_for(
            Duration::from_secs(10),
            "summaries reach evaluator-stall",
            || (u.hits("evaluator-stall") >= want).then_some(()),
        );
        wait_for(
            Duration::from_secs(10),
            &format!("{want} evaluator failures counted"),
            || {
                let n = h.envoy.wasm_counter("inference_router.evaluator.failures");
                assert_eq!(
                    h.envoy.counter("wasm.inference-router.vm_reload_success"),
                    0,
                    "a Wasm VM died and was reloaded while evaluator callouts were answered \
                     (evaluator.failures = {n}); see the Envoy log for the panic"
                );
                (n >= want).then_some(n)
            },
        );
    }
    let failures = h.envoy.wasm_counter("inference_router.evaluator.failures");
    assert_eq!(failures, K, "one failure per summary");
    assert_eq!(
        observations(&h.envoy, "chat"),
        0,
        "a timed-out evaluation taught something"
    );
    assert_eq!(
        h.envoy.wasm_counter("inference_router.rewards.evaluator"),
        0
    );

    // Users of the answering evaluator's model.
    let mut decisions = Vec::new();
    for i in 0..K {
        let r = h.send(&Request::get("/v2/models/sentiment/ready"));
        assert_eq!(r.status, 200, "sentiment {i}: {}", r.text());
        decisions.push(decision_of(&r));
    }
    let applied = wait_counter_at_least(&h.envoy, "inference_router.rewards.evaluator", K);
    assert_eq!(applied, K);
    assert_eq!(wait_observations(&h.envoy, "sentiment", K), K);
    // The evaluator's 0.25 replaced the implicit reward (1 for these 200s).
    let m = model_state(&h.envoy, "sentiment");
    let a = arms(&m);
    let sum_alpha: f64 = a.values().map(|t| f(&t["alpha"]) - 1.0).sum();
    let sum_beta: f64 = a.values().map(|t| f(&t["beta"]) - 1.0).sum();
    assert!((sum_alpha - 0.25 * K as f64).abs() < 1e-9, "{m}");
    assert!((sum_beta - 0.75 * K as f64).abs() < 1e-9, "{m}");
    assert_eq!(h.envoy.wasm_counter("inference_router.rewards.implicit"), 0);

    // What the evaluator received: the documented summary, one per response, POSTed to the
    // configured path, naming the decision the client saw.
    let got = u.received("evaluator");
    assert_eq!(got.len() as u64, K);
    for req in &got {
        assert_eq!(
            (req.method.as_str(), req.path.as_str()),
            ("POST", "/evaluate")
        );
        let s: serde_json::Value = serde_json::from_slice(&req.body).expect("summary is JSON");
        for field in [
            "model",
            "target",
            "decision",
            "status",
            "latency_ms",
            "ttfb_ms",
            "usage",
            "implicit_reward",
        ] {
            assert!(s.get(field).is_some(), "summary lacks {field}: {s}");
        }
        assert_eq!(s["model"], "sentiment");
        assert_eq!(s["status"], 200);
        assert_eq!(s["implicit_reward"], 1.0);
        let d = s["decision"].as_str().expect("decision is a string");
        let (_, target) = decisions
            .iter()
            .find(|(id, _)| id == d)
            .unwrap_or_else(|| panic!("summary names a decision no client saw: {s}"));
        assert_eq!(s["target"].as_str(), Some(target.as_str()), "{s}");
    }

    // The evaluator answers an error status, then a malformed answer, then an out-of-range
    // reward: each counts as a failure and learns nothing.
    let mut failures = failures;
    for behaviour in [
        Behaviour::evaluator(0.5).with_failures(1.0, 503),
        Behaviour::json(json!({ "score": 1 })),
        Behaviour::evaluator(1.5),
    ] {
        u.set_behaviour("evaluator", behaviour.clone());
        let hits = u.hits("evaluator");
        for _ in 0..3 {
            let r = h.send(&Request::get("/v2/models/sentiment/ready"));
            assert_eq!(r.status, 200, "{}", r.text());
        }
        wait_for(Duration::from_secs(10), "3 more summaries", || {
            (u.hits("evaluator") >= hits + 3).then_some(())
        });
        failures = wait_counter_at_least(
            &h.envoy,
            "inference_router.evaluator.failures",
            failures + 3,
        );
        assert_eq!(
            observations(&h.envoy, "sentiment"),
            K,
            "{behaviour:?} taught something"
        );
    }
    assert_eq!(
        h.envoy.wasm_counter("inference_router.rewards.evaluator"),
        K
    );
}
