//! Configuration reloads: a new root context configured on the same host (the same shared data,
//! as Envoy gives a reloaded plugin of the same name) keeps what was learned — for surviving
//! targets; new ones start at the prior, removed ones are dropped — and the spent decision ids.
//! A configuration the filter refuses leaves the previous one serving.

use crate::driver::*;
use inference_router_core::host::Action;
use serde_json::{json, Value};

fn config(targets: &[&str], epsilon: f64, token: &str, signing_key: &str) -> Value {
    let targets: Vec<Value> = targets
        .iter()
        .map(|n| json!({ "name": n, "cluster": format!("sentiment-{n}") }))
        .collect();
    json!({
        "models": [ bandit_model("sentiment", Value::Array(targets),
                                 json!({ "type": "epsilon_greedy", "epsilon": epsilon }),
                                 Some(json!({ "status": true }))) ],
        "feedback": { "path": FEEDBACK_PATH, "signing_key": signing_key, "ttl_seconds": 3600 },
        "state_endpoint": { "path": STATE_PATH, "token": token },
    })
}

/// `n` requests; v1 always succeeds, every other target always fails.
fn traffic(vm: &mut Vm, n: usize) {
    for _ in 0..n {
        let mut sent = vm.send(&get("/v2/models/sentiment/ready"), b"");
        assert_eq!(sent.action, Action::Continue);
        let ok = vm.routed_cluster().as_deref() == Some("sentiment-v1");
        let response: &[(&str, &str)] = if ok { OK } else { &[(":status", "500")] };
        vm.respond(&mut sent, response, b"");
    }
}

fn sentiment(vm: &mut Vm, token: &str) -> Value {
    let r = vm.state_with(token);
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["models"]["sentiment"].clone().into()
}

fn names(m: &Value) -> Vec<String> {
    m["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect()
}

fn arm<'a>(m: &'a Value, name: &str) -> &'a Value {
    m["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == name)
        .unwrap()
}

fn prior(name: &str) -> Value {
    json!({ "name": name, "pulls": 0.0, "mean_reward": null, "alpha": 1.0, "beta": 1.0 })
}

#[test]
fn learned_state_survives_reloads_and_follows_the_targets() {
    let mut vm = Vm::start(&config(
        &["v1", "v2"],
        0.1,
        "state-token-0123456789-1",
        SIGNING_KEY,
    ));
    traffic(&mut vm, 40);
    let s1 = sentiment(&mut vm, "state-token-0123456789-1");
    assert_eq!(s1["observations"], 40);
    let bytes = vm.host.shared_value(&state_key("sentiment"));

    // Same targets, another epsilon and token: everything learned is still there, untouched.
    assert!(vm.reload(&config(
        &["v1", "v2"],
        0.3,
        "state-token-0123456789-2",
        SIGNING_KEY
    )));
    assert_eq!(
        vm.host.shared_value(&state_key("sentiment")),
        bytes,
        "rewritten by a reload that changed nothing"
    );
    assert_eq!(sentiment(&mut vm, "state-token-0123456789-2"), s1);
    assert_refused(
        &vm.state_with("state-token-0123456789-1"),
        401,
        "unauthorized",
    );
    traffic(&mut vm, 20);
    let s2 = sentiment(&mut vm, "state-token-0123456789-2");
    assert_eq!(s2["observations"], 60);

    // A target added: the old ones keep their statistics, the new one starts at the prior.
    assert!(vm.reload(&config(
        &["v1", "v2", "v3"],
        0.3,
        "state-token-0123456789-3",
        SIGNING_KEY
    )));
    let s3 = sentiment(&mut vm, "state-token-0123456789-3");
    assert_eq!(names(&s3), ["v1", "v2", "v3"]);
    assert_eq!(s3["observations"], s2["observations"]);
    assert_eq!(arm(&s3, "v1"), arm(&s2, "v1"));
    assert_eq!(arm(&s3, "v2"), arm(&s2, "v2"));
    assert_eq!(arm(&s3, "v3"), &prior("v3"));
    // The migration was written back once, at start.
    let stored = inference_router_core::bandit::decode(
        &vm.host.shared_value(&state_key("sentiment")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        stored
            .arms
            .iter()
            .map(|a| a.name.as_str())
            .collect::<Vec<_>>(),
        ["v1", "v2", "v3"]
    );

    // A target removed: dropped; the survivors keep theirs. Added back: at the prior again.
    assert!(vm.reload(&config(
        &["v1", "v3"],
        0.3,
        "state-token-0123456789-4",
        SIGNING_KEY
    )));
    let s4 = sentiment(&mut vm, "state-token-0123456789-4");
    assert_eq!(names(&s4), ["v1", "v3"]);
    assert_eq!(arm(&s4, "v1"), arm(&s2, "v1"));
    assert!(vm.reload(&config(
        &["v1", "v2", "v3"],
        0.3,
        "state-token-0123456789-5",
        SIGNING_KEY
    )));
    let s5 = sentiment(&mut vm, "state-token-0123456789-5");
    assert_eq!(arm(&s5, "v2"), &prior("v2"));
    assert_eq!(arm(&s5, "v1"), arm(&s2, "v1"));
}

#[test]
fn a_refused_reload_leaves_the_previous_configuration_serving() {
    let mut vm = Vm::start(&config(
        &["v1", "v2"],
        0.1,
        "state-token-0123456789-1",
        SIGNING_KEY,
    ));
    traffic(&mut vm, 10);
    let before = sentiment(&mut vm, "state-token-0123456789-1");
    let mut bad = config(
        &["v1", "v2", "v3"],
        0.3,
        "state-token-0123456789-2",
        SIGNING_KEY,
    );
    bad["models"][0]["strategy"]["epsilon"] = json!(7.5);
    assert!(!vm.reload(&bad));
    let critical = vm.host.critical_logs();
    assert_eq!(critical.len(), 1, "{critical:?}");
    assert!(critical[0].contains("epsilon"), "{critical:?}");
    // The state was not touched by the refused configuration (no v3), and the old one serves.
    assert_eq!(sentiment(&mut vm, "state-token-0123456789-1"), before);
    traffic(&mut vm, 5);
    assert_eq!(
        sentiment(&mut vm, "state-token-0123456789-1")["observations"],
        15
    );
}

#[test]
fn decision_ids_outlive_a_reload_and_stay_spent_until_the_key_changes() {
    let mut vm = Vm::start(&config(
        &["v1", "v2"],
        0.1,
        "state-token-0123456789-1",
        SIGNING_KEY,
    ));
    let ds: Vec<(String, String)> = (0..3).map(|_| vm.decision("sentiment")).collect();
    assert_eq!(
        vm.feedback(&json!({ "decision": ds[0].0, "reward": 1.0 }))
            .status,
        200
    );

    assert!(vm.reload(&config(
        &["v1", "v2"],
        0.2,
        "state-token-0123456789-2",
        SIGNING_KEY
    )));
    // Spent before the reload: still spent. Issued before it, unused: accepted.
    assert_refused(
        &vm.feedback(&json!({ "decision": ds[0].0, "reward": 1.0 })),
        409,
        "replayed",
    );
    let r = vm.feedback(&json!({ "decision": ds[1].0, "reward": 0.0 }));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["updated"]["observations"], 5);

    // A new signing key: ids signed with the old one no longer verify.
    assert!(vm.reload(&config(
        &["v1", "v2"],
        0.2,
        "state-token-0123456789-3",
        "another-signing-key-0123456789"
    )));
    assert_refused(
        &vm.feedback(&json!({ "decision": ds[2].0, "reward": 1.0 })),
        403,
        "forged",
    );
    assert_eq!(
        sentiment(&mut vm, "state-token-0123456789-3")["observations"],
        5
    );
    // The counters carry over reloads (Envoy keeps a metric defined again under its id).
    assert_eq!(vm.counter("feedback.accepted"), 2);
    assert_eq!(vm.counter("feedback.rejected.replayed"), 1);
    assert_eq!(vm.counter("rewards.implicit"), 3);
}

#[test]
fn a_new_prior_resets_the_statistics_and_a_new_algorithm_keeps_them() {
    let cfg = |strategy: Value| {
        json!({
            "models": [ bandit_model("sentiment", json!([ { "name": "v1", "cluster": "sentiment-v1" } ]), strategy, Some(json!({}))) ],
            "state_endpoint": state_section(),
        })
    };
    let mut vm = Vm::start(&cfg(json!({ "type": "thompson" })));
    vm.decision("sentiment");
    vm.decision("sentiment");
    let learned = vm.model_state("sentiment");
    assert_eq!(vm.arm("sentiment", "v1"), [3.0, 1.0, 2.0]);
    // The algorithm, epsilon, decay and shares only change how the statistics are used.
    assert!(vm.reload(&cfg(json!({ "type": "ucb1" }))));
    assert_eq!(vm.model_state("sentiment"), learned);
    assert!(vm.reload(&cfg(
        json!({ "type": "epsilon_greedy", "epsilon": 0.2, "decay": { "half_life": 100 } })
    )));
    assert_eq!(vm.model_state("sentiment"), learned);
    // The prior is folded into alpha and beta: another prior starts over from it. (The count
    // of accepted rewards carries over every reconciliation.)
    assert!(vm.reload(&cfg(
        json!({ "type": "thompson", "prior": { "alpha": 2, "beta": 3 } })
    )));
    assert_eq!(vm.arm("sentiment", "v1"), [2.0, 3.0, 0.0]);
    assert_eq!(vm.observations("sentiment"), 2);
    assert_eq!(
        vm.counter("bandit.state_resets"),
        0,
        "a reset by configuration is not undecodable state"
    );
}
