#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
//! Feedback and rewards through the core's public API, against the in-memory shared store.

use inference_router_core::bandit::{decode, MemoryStore, StoreError};
use inference_router_core::callout::{ALL_CHILDREN, NO_CHILD};
use inference_router_core::config::{parse, Config};
use inference_router_core::feedback::DecisionToken;
use inference_router_core::learning::{
    apply_reward, process_feedback, spent, spent_prefix, state_document, state_key, Accepted,
    FeedbackInput, FeedbackReply, Refusal, RouterForward,
};
use inference_router_core::plugin::Build;
use serde_json::json;

const PLUGIN: &str = "test-plugin";

fn cfg() -> Config {
    parse(
        json!({
            "models": [
                { "name": "chat",
                  "targets": [ { "name": "small", "cluster": "a" }, { "name": "large", "cluster": "b" } ],
                  "strategy": { "type": "thompson" } },
                { "name": "fixed",
                  "targets": [ { "name": "v1", "cluster": "c", "weight": 1 } ] }
            ],
            "feedback": { "signing_key": "0123456789abcdef0123", "ttl_seconds": 600 }
        })
        .to_string()
        .as_bytes(),
    )
    .unwrap()
}

fn token(c: &Config, model: &str, target: &str, expires: u64, nonce: u64) -> String {
    c.feedback.as_ref().unwrap().keys.sign(
        PLUGIN,
        &DecisionToken {
            model: model.into(),
            target: target.into(),
            expires,
            nonce,
            bound: None,
            key: String::new(),
            context: None,
        },
        None,
    )
}

/// The host seeds spent-id buckets ahead of time; tests do the same.
fn seeded_store(c: &Config, now: u64) -> MemoryStore {
    let store = MemoryStore::new();
    let ttl = c.feedback.as_ref().unwrap().ttl_seconds;
    for b in spent::bucket_of(now)..=spent::bucket_of(now + ttl) + 1 {
        spent::seed_bucket(&store, &spent_prefix(PLUGIN), b).unwrap();
    }
    store
}

fn post(
    store: &MemoryStore,
    c: &Config,
    now: u64,
    body: serde_json::Value,
) -> (u16, serde_json::Value) {
    let body = body.to_string();
    let input = FeedbackInput {
        body: body.as_bytes(),
        header_decision: None,
        header_reward: None,
        principal: None,
    };
    let r = process_feedback(store, PLUGIN, c, now, &input);
    (r.status, r.body.into())
}

fn observations(store: &MemoryStore, model: &str) -> u64 {
    store
        .raw(&state_key(PLUGIN, model))
        .map(|(bytes, _)| decode(&bytes).unwrap().updates)
        .unwrap_or(0)
}

#[test]
fn accepted_once_then_replayed() {
    let c = cfg();
    let now = 1_000_000;
    let store = seeded_store(&c, now);
    let t = token(&c, "chat", "large", now + 600, 7);
    let (status, body) = post(&store, &c, now, json!({"decision": t, "reward": 0.25}));
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["updated"],
        json!({"model": "chat", "target": "large", "reward": 0.25, "observations": 1})
    );
    let (status, body) = post(&store, &c, now, json!({"decision": t, "reward": 0.25}));
    assert_eq!((status, body["error"].as_str()), (409, Some("replayed")));
    assert_eq!(observations(&store, "chat"), 1);

    // Thompson: alpha = 1 + 0.25, beta = 1 + 0.75 for "large".
    let state = decode(&store.raw(&state_key(PLUGIN, "chat")).unwrap().0).unwrap();
    let large = state.arms.iter().find(|a| a.name == "large").unwrap();
    assert!(
        (large.alpha - 1.25).abs() < 1e-12 && (large.beta - 1.75).abs() < 1e-12,
        "{large:?}"
    );
}

#[test]
fn refusals_change_nothing() {
    let c = cfg();
    let now = 1_000_000;
    let store = seeded_store(&c, now);
    let good = token(&c, "chat", "small", now + 600, 1);
    let forged_target = good.replacen("~small~", "~large~", 1);
    let other_key = inference_router_core::feedback::TokenKeys::single(b"another-key-of-16+").sign(
        PLUGIN,
        &DecisionToken {
            model: "chat".into(),
            target: "small".into(),
            expires: now + 600,
            nonce: 2,
            bound: None,
            key: String::new(),
            context: None,
        },
        None,
    );
    let expired = token(&c, "chat", "small", now - 1, 3);
    let weighted = token(&c, "fixed", "v1", now + 600, 4);
    let cases = [
        (
            json!({"decision": forged_target, "reward": 1}),
            403,
            Refusal::Forged,
        ),
        (
            json!({"decision": other_key, "reward": 1}),
            403,
            Refusal::Forged,
        ),
        (
            json!({"decision": "garbage", "reward": 1}),
            403,
            Refusal::Forged,
        ),
        (
            json!({"decision": expired, "reward": 1}),
            410,
            Refusal::Expired,
        ),
        (
            json!({"decision": good, "reward": 1.5}),
            400,
            Refusal::Invalid,
        ),
        (
            json!({"decision": good, "reward": -0.5}),
            400,
            Refusal::Invalid,
        ),
        (json!({"decision": good}), 400, Refusal::Invalid),
        (
            json!({"decision": weighted, "reward": 1}),
            422,
            Refusal::NotLearning,
        ),
    ];
    for (body, status, refusal) in cases {
        let (got, reply) = post(&store, &c, now, body.clone());
        assert_eq!(got, status, "{body} → {reply}");
        assert_eq!(reply["error"], refusal.as_str(), "{body}");
    }
    assert_eq!(observations(&store, "chat"), 0);
    // The good id was never spent by the refused attempts.
    assert_eq!(
        post(&store, &c, now, json!({"decision": good, "reward": 1})).0,
        200
    );
}

#[test]
fn seldon_feedback_and_headers() {
    let c = cfg();
    let now = 1_000_000;
    let store = seeded_store(&c, now);
    let t = token(&c, "chat", "large", now + 600, 11);
    let seldon = json!({
        "request": {"data": {"ndarray": [[1, 2]]}},
        "response": {"meta": {"routing": {"chat": 1}, "tags": {"x-inference-decision": t}}},
        "reward": 1
    });
    assert_eq!(post(&store, &c, now, seldon).0, 200);
    // routing disagreeing with the signed target is refused
    let t2 = token(&c, "chat", "large", now + 600, 12);
    let wrong = json!({"response": {"meta": {"routing": {"chat": 0}, "tags": {"x-inference-decision": t2}}}, "reward": 1});
    assert_eq!(post(&store, &c, now, wrong).0, 400);
    // header-only
    let t3 = token(&c, "chat", "small", now + 600, 13);
    let input = FeedbackInput {
        body: b"",
        header_decision: Some(&t3),
        header_reward: Some("0.5"),
        principal: None,
    };
    assert_eq!(
        process_feedback(&store, PLUGIN, &c, now, &input).status,
        200
    );
    assert_eq!(observations(&store, "chat"), 2);
}

#[test]
fn contention_is_a_503_and_retry_is_safe() {
    let c = cfg();
    let now = 1_000_000;
    let store = seeded_store(&c, now);
    apply_reward(&store, PLUGIN, &c, 0, "small", 1.0, 0).unwrap();
    let t = token(&c, "chat", "small", now + 600, 21);
    let body = json!({"decision": t, "reward": 1}).to_string();
    let input = FeedbackInput {
        body: body.as_bytes(),
        header_decision: None,
        header_reward: None,
        principal: None,
    };
    // Every CAS write loses: the id cannot be recorded, nothing is applied.
    for _ in 0..inference_router_core::learning::MAX_CAS_ATTEMPTS {
        store.fail_next_set(StoreError::CasMismatch);
    }
    let r = process_feedback(&store, PLUGIN, &c, now, &input);
    assert_eq!(
        (r.status, r.body["error"].as_str()),
        (503, Some("unavailable"))
    );
    assert_eq!(observations(&store, "chat"), 1);
    // Retrying later works: the id was not burnt.
    let r = process_feedback(&store, PLUGIN, &c, now, &input);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(observations(&store, "chat"), 2);
}

#[test]
fn state_contention_is_reported_and_loses_nothing_else() {
    let c = cfg();
    let store = MemoryStore::new();
    apply_reward(&store, PLUGIN, &c, 0, "small", 1.0, 0).unwrap();
    for _ in 0..inference_router_core::learning::MAX_CAS_ATTEMPTS {
        store.fail_next_set(StoreError::CasMismatch);
    }
    let e = apply_reward(&store, PLUGIN, &c, 0, "small", 1.0, 0).unwrap_err();
    assert!(
        matches!(
            e,
            inference_router_core::learning::ApplyError::Contention { attempts: 32 }
        ),
        "{e:?}"
    );
    assert_eq!(observations(&store, "chat"), 1);
}

#[test]
fn state_document_lists_bandit_models() {
    let c = cfg();
    let store = MemoryStore::new();
    apply_reward(&store, PLUGIN, &c, 0, "large", 1.0, 0).unwrap();
    let doc = state_document(&store, PLUGIN, &c, Build::UNKNOWN);
    assert_eq!(doc["models"]["chat"]["observations"], 1);
    assert_eq!(doc["models"]["chat"]["targets"][1]["name"], "large");
    assert_eq!(doc["models"]["chat"]["targets"][1]["mean_reward"], 1.0);
    assert!(doc["models"].get("fixed").is_none());
}

#[test]
fn apply_reward_refuses_unknown_and_weighted() {
    let c = cfg();
    let store = MemoryStore::new();
    assert!(apply_reward(&store, PLUGIN, &c, 0, "nope", 1.0, 0).is_err());
    assert!(apply_reward(&store, PLUGIN, &c, 1, "v1", 1.0, 0).is_err());
    assert!(apply_reward(&store, PLUGIN, &c, 0, "small", 2.0, 0).is_err());
    assert_eq!(observations(&store, "chat"), 0);
}

// --- Models that learn through an external router (`router.feedback_path`) -----------------

/// `iris` and `plain` do not learn themselves; `iris` and `routed` have a router that does.
fn router_cfg() -> Config {
    parse(
        json!({
            "models": [
                { "name": "iris",
                  "targets": [ { "name": "a", "cluster": "c1", "weight": 1 },
                               { "name": "b", "cluster": "c2", "weight": 1 } ],
                  "router": { "cluster": "router", "feedback_path": "/send-feedback" } },
                { "name": "plain",
                  "targets": [ { "name": "a", "cluster": "c1", "weight": 1 } ] },
                { "name": "routed",
                  "targets": [ { "name": "x", "cluster": "c1" }, { "name": "y", "cluster": "c2" } ],
                  "strategy": { "type": "thompson" },
                  "router": { "cluster": "router", "feedback_path": "/send-feedback" } },
                { "name": "routed-quiet",
                  "targets": [ { "name": "x", "cluster": "c1", "weight": 1 } ],
                  "router": { "cluster": "router" } }
            ],
            "feedback": { "signing_key": "0123456789abcdef0123456789abcdef" }
        })
        .to_string()
        .as_bytes(),
    )
    .unwrap()
}

fn send(
    store: &MemoryStore,
    c: &Config,
    body: &[u8],
    hd: Option<&str>,
    hr: Option<&str>,
) -> FeedbackReply {
    let input = FeedbackInput {
        body,
        header_decision: hd,
        header_reward: hr,
        principal: None,
    };
    process_feedback(store, PLUGIN, c, 100, &input)
}

fn forwarded(r: &FeedbackReply) -> RouterForward {
    match &r.result {
        Ok(Accepted {
            applied: None,
            forward: Some(f),
        }) => f.clone(),
        other => panic!("not forwarded: {other:?} {}", r.body),
    }
}

#[test]
fn router_feedback_is_verified_spent_and_forwarded_once() {
    let c = router_cfg();
    let store = MemoryStore::new();
    let t = token(&c, "iris", "b", 1000, 7);
    let body = json!({"decision": t, "reward": 0.5}).to_string();
    let r = send(&store, &c, body.as_bytes(), None, None);
    assert_eq!(r.status, 200);
    assert_eq!(
        r.body,
        json!({"forwarded": {"model": "iris", "target": "b", "reward": 0.5}})
    );
    assert_eq!(
        forwarded(&r),
        RouterForward {
            model: 0,
            target: "b".into(),
            child: 1,
            reward: 0.5
        }
    );
    let again = send(&store, &c, body.as_bytes(), None, None);
    assert_eq!(
        (again.status, serde_json::Value::from(again.body)),
        (
            409,
            json!({"error": "replayed", "detail": "this decision's feedback was already accepted"})
        )
    );

    // Seldon's form, routing agreeing; header-only form; the router's own -1 (routing -1 too).
    let t2 = token(&c, "iris", "a", 1000, 8);
    let seldon = json!({"request": {"data": {"ndarray": [[1]]}},
                        "response": {"meta": {"routing": {"iris": 0}, "tags": {"x-inference-decision": t2}}},
                        "reward": 1});
    let r = send(&store, &c, seldon.to_string().as_bytes(), None, None);
    assert_eq!(forwarded(&r).child, 0);
    let t3 = token(&c, "iris", ALL_CHILDREN, 1000, 9);
    let fwd = forwarded(&send(&store, &c, b"", Some(&t3), Some("0.25")));
    assert_eq!((fwd.child, fwd.reward), (-1, 0.25));
    let t4 = token(&c, "iris", NO_CHILD, 1000, 10);
    let seldon = json!({"response": {"meta": {"routing": {"iris": -2}, "tags": {"x-inference-decision": t4}}}, "reward": 0});
    let fwd = forwarded(&send(&store, &c, seldon.to_string().as_bytes(), None, None));
    assert_eq!((fwd.child, fwd.target.as_str()), (-2, NO_CHILD));
    // Nothing learnt in the core's own state.
    assert_eq!(observations(&store, "iris"), 0);
}

#[test]
fn router_feedback_refusals() {
    let c = router_cfg();
    let store = MemoryStore::new();
    let err = |r: FeedbackReply| {
        let body = serde_json::Value::from(r.body);
        (r.status, body["error"].clone(), body["detail"].clone())
    };
    // Disagreeing routing.
    let t = token(&c, "iris", "a", 1000, 1);
    let body = json!({"response": {"meta": {"routing": {"iris": 1}, "tags": {"x-inference-decision": t}}}, "reward": 1});
    assert_eq!(
        err(send(&store, &c, body.to_string().as_bytes(), None, None)),
        (
            400,
            json!("invalid"),
            json!("response.meta.routing disagrees with the decision's target")
        )
    );
    // Expired, forged.
    let old = token(&c, "iris", "a", 50, 2);
    assert_eq!(
        err(send(&store, &c, b"", Some(&old), Some("1"))),
        (410, json!("expired"), json!("the decision id has expired"))
    );
    let forged = format!("{}0", token(&c, "iris", "a", 1000, 3));
    assert_eq!(send(&store, &c, b"", Some(&forged), Some("1")).status, 403);
    // Unknown target.
    let gone = token(&c, "iris", "zz", 1000, 4);
    assert_eq!(
        err(send(&store, &c, b"", Some(&gone), Some("1"))),
        (
            422,
            json!("not_learning"),
            json!("the decision's target is no longer configured")
        )
    );
    // Neither a bandit nor a router with a feedback path.
    for model in ["plain", "routed-quiet"] {
        let t = token(&c, model, if model == "plain" { "a" } else { "x" }, 1000, 5);
        assert_eq!(
            err(send(&store, &c, b"", Some(&t), Some("1"))),
            (
                422,
                json!("not_learning"),
                json!("the decision's model does not learn from rewards")
            ),
            "{model}"
        );
    }
    let unknown = token(&c, "nope", "a", 1000, 6);
    assert_eq!(
        err(send(&store, &c, b"", Some(&unknown), Some("1"))),
        (
            422,
            json!("not_learning"),
            json!("the decision's model is no longer configured")
        )
    );
    // Malformed input.
    assert_eq!(
        err(send(&store, &c, b"", Some(&t), Some("x"))),
        (
            400,
            json!("invalid"),
            json!("x-inference-reward is not a number")
        )
    );
    assert_eq!(send(&store, &c, b"", Some(&t), Some("1.5")).status, 400);
    assert_eq!(send(&store, &c, b"", None, Some("1")).status, 400);
    assert_eq!(
        err(send(&store, &c, b"[]", None, None)),
        (
            400,
            json!("invalid"),
            json!("the feedback body is not a JSON object")
        )
    );
    // None of the refusals spent the id.
    assert_eq!(send(&store, &c, b"", Some(&t), Some("1")).status, 200);
}

#[test]
fn router_feedback_spend_failure_is_a_503_and_spends_nothing() {
    let c = router_cfg();
    let store = MemoryStore::new();
    let t = token(&c, "iris", "a", 1000, 1);
    seeded_bucket_for(&store, &c, 1000);
    for _ in 0..inference_router_core::learning::MAX_CAS_ATTEMPTS {
        store.fail_next_set(StoreError::CasMismatch);
    }
    let r = send(&store, &c, b"", Some(&t), Some("1"));
    assert_eq!(
        (r.status, r.body["detail"].as_str()),
        (
            503,
            Some("could not record the decision as used; try again")
        )
    );
    assert_eq!(r.result, Err(Refusal::Unavailable));
    assert_eq!(send(&store, &c, b"", Some(&t), Some("1")).status, 200);
}

fn seeded_bucket_for(store: &MemoryStore, c: &Config, expires: u64) {
    let _ = c;
    spent::seed_bucket(store, &spent_prefix(PLUGIN), spent::bucket_of(expires)).unwrap();
}

#[test]
fn bandit_with_a_router_learns_and_forwards() {
    let c = router_cfg();
    let store = MemoryStore::new();
    let t = token(&c, "routed", "y", 1000, 1);
    let r = send(&store, &c, b"", Some(&t), Some("0.75"));
    assert_eq!(
        r.body,
        json!({"updated": {"model": "routed", "target": "y", "reward": 0.75, "observations": 1}})
    );
    let Ok(Accepted {
        applied: Some(applied),
        forward: Some(forward),
    }) = &r.result
    else {
        panic!("{:?}", r.result);
    };
    assert_eq!((applied.model.as_str(), applied.updates), ("routed", 1));
    assert_eq!(
        forward,
        &RouterForward {
            model: 2,
            target: "y".into(),
            child: 1,
            reward: 0.75
        }
    );
    // A fan-out the router chose (`-1`) is not one of the bandit's targets: forwarded only.
    let all = token(&c, "routed", ALL_CHILDREN, 1000, 2);
    let r = send(&store, &c, b"", Some(&all), Some("1"));
    assert_eq!(
        r.body,
        json!({"forwarded": {"model": "routed", "target": "-1", "reward": 1.0}})
    );
    assert_eq!(forwarded(&r).child, -1);
    assert_eq!(observations(&store, "routed"), 1);
    // The bandit path compares meta.routing as a target index.
    let t3 = token(&c, "routed", "x", 1000, 3);
    let body = json!({"response": {"meta": {"routing": {"routed": -1}, "tags": {"x-inference-decision": t3}}}, "reward": 1});
    assert_eq!(
        send(&store, &c, body.to_string().as_bytes(), None, None).status,
        400
    );
    // A bandit without a router: applied, nothing to forward.
    let c = cfg();
    let store = seeded_store(&c, 100);
    let t = token(&c, "chat", "small", 700, 4);
    let r = send(&store, &c, b"", Some(&t), Some("1"));
    assert!(
        matches!(
            &r.result,
            Ok(Accepted {
                applied: Some(_),
                forward: None
            })
        ),
        "{:?}",
        r.result
    );
}
