#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
//! Feedback and rewards through the core's public API, against the in-memory shared store.

use inference_router_core::bandit::{decode, MemoryStore, StoreError};
use inference_router_core::config::{parse, Config};
use inference_router_core::feedback::DecisionToken;
use inference_router_core::learning::{
    apply_reward, process_feedback, spent, spent_prefix, state_document, state_key, FeedbackInput,
    Refusal,
};
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
    c.feedback.as_ref().unwrap().signer.sign(&DecisionToken {
        model: model.into(),
        target: target.into(),
        expires,
        nonce,
    })
}

/// The host seeds spent-id buckets ahead of time; tests do the same.
fn seeded_store(c: &Config, now: u64) -> MemoryStore {
    let store = MemoryStore::new();
    let ttl = c.feedback.as_ref().unwrap().ttl_seconds;
    for b in spent::live_buckets(now, ttl) {
        spent::seed_bucket(&store, &spent::bucket_key(&spent_prefix(PLUGIN), b)).unwrap();
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
    };
    let mut reset = false;
    let r = process_feedback(store, PLUGIN, c, now, &input, &mut reset);
    assert!(!reset);
    (r.status, r.body)
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
    let other_key = inference_router_core::feedback::TokenSigner::new(b"another-key-of-16+").sign(
        &DecisionToken {
            model: "chat".into(),
            target: "small".into(),
            expires: now + 600,
            nonce: 2,
        },
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
    };
    let mut reset = false;
    assert_eq!(
        process_feedback(&store, PLUGIN, &c, now, &input, &mut reset).status,
        200
    );
    assert_eq!(observations(&store, "chat"), 2);
}

#[test]
fn contention_is_a_503_and_retry_is_safe() {
    let c = cfg();
    let now = 1_000_000;
    let store = seeded_store(&c, now);
    apply_reward(&store, PLUGIN, &c, 0, "small", 1.0).unwrap();
    let t = token(&c, "chat", "small", now + 600, 21);
    let body = json!({"decision": t, "reward": 1}).to_string();
    let input = FeedbackInput {
        body: body.as_bytes(),
        header_decision: None,
        header_reward: None,
    };
    // Every CAS write loses: the id cannot be recorded, nothing is applied.
    for _ in 0..inference_router_core::learning::MAX_CAS_ATTEMPTS {
        store.fail_next_set(StoreError::CasMismatch);
    }
    let mut reset = false;
    let r = process_feedback(&store, PLUGIN, &c, now, &input, &mut reset);
    assert_eq!(
        (r.status, r.body["error"].as_str()),
        (503, Some("unavailable"))
    );
    assert_eq!(observations(&store, "chat"), 1);
    // Retrying later works: the id was not burnt.
    let r = process_feedback(&store, PLUGIN, &c, now, &input, &mut reset);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(observations(&store, "chat"), 2);
}

#[test]
fn state_contention_is_reported_and_loses_nothing_else() {
    let c = cfg();
    let store = MemoryStore::new();
    apply_reward(&store, PLUGIN, &c, 0, "small", 1.0).unwrap();
    for _ in 0..inference_router_core::learning::MAX_CAS_ATTEMPTS {
        store.fail_next_set(StoreError::CasMismatch);
    }
    let e = apply_reward(&store, PLUGIN, &c, 0, "small", 1.0).unwrap_err();
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
    apply_reward(&store, PLUGIN, &c, 0, "large", 1.0).unwrap();
    let doc = state_document(&store, PLUGIN, &c);
    assert_eq!(doc["models"]["chat"]["observations"], 1);
    assert_eq!(doc["models"]["chat"]["targets"][1]["name"], "large");
    assert_eq!(doc["models"]["chat"]["targets"][1]["mean_reward"], 1.0);
    assert!(doc["models"].get("fixed").is_none());
}

#[test]
fn apply_reward_refuses_unknown_and_weighted() {
    let c = cfg();
    let store = MemoryStore::new();
    assert!(apply_reward(&store, PLUGIN, &c, 0, "nope", 1.0).is_err());
    assert!(apply_reward(&store, PLUGIN, &c, 1, "v1", 1.0).is_err());
    assert!(apply_reward(&store, PLUGIN, &c, 0, "small", 2.0).is_err());
    assert_eq!(observations(&store, "chat"), 0);
}
