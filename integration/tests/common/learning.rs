//! Helpers for the learning tests (docs/configuration.md, "Learning from rewards"): bandit
//! configurations, decision ids, feedback requests, the state endpoint, bounded waits.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::thread;
use std::time::{Duration, Instant};

use integration::{Envoy, Request, Response};
use serde_json::{json, Value};

pub const SIGNING_KEY: &str = "e2e-signing-key-0123456789abcdef";
pub const STATE_PATH: &str = "/inference-router/state";
pub const STATE_TOKEN: &str = "ops-secret-0123456789";
pub const FEEDBACK_PATH: &str = "/feedback";

/// `feedback` with the test key and this ttl.
pub fn feedback_section(ttl_seconds: u64) -> Value {
    json!({ "path": FEEDBACK_PATH, "signing_key": SIGNING_KEY, "ttl_seconds": ttl_seconds })
}

/// `state_endpoint` with the test token.
pub fn state_section() -> Value {
    json!({ "path": STATE_PATH, "token": STATE_TOKEN })
}

/// The two `sentiment` targets on `sentiment-v1` / `sentiment-v2`.
pub fn sentiment_targets() -> Value {
    json!([ { "name": "v1", "cluster": "sentiment-v1" },
            { "name": "v2", "cluster": "sentiment-v2" } ])
}

/// A model `name` with these targets and strategy, and `reward` when given.
pub fn bandit_model(name: &str, targets: Value, strategy: Value, reward: Option<Value>) -> Value {
    let mut m = json!({ "name": name, "targets": targets, "strategy": strategy });
    if let Some(r) = reward {
        m["reward"] = r;
    }
    m
}

/// `{"models": models, "feedback": …, "state_endpoint": …}`.
pub fn learning_config(models: Value) -> Value {
    json!({
        "models": models,
        "feedback": feedback_section(3600),
        "state_endpoint": state_section(),
    })
}

/// GET the state endpoint with the test token; asserts 200 and returns the document.
#[track_caller]
pub fn state(envoy: &Envoy) -> Value {
    let r = envoy
        .send(&Request::get(STATE_PATH).header("authorization", &format!("Bearer {STATE_TOKEN}")));
    assert_eq!(r.status, 200, "state endpoint: {} {}", r.status, r.text());
    r.json()
}

/// One model's entry of the state document.
#[track_caller]
pub fn model_state(envoy: &Envoy, model: &str) -> Value {
    let doc = state(envoy);
    let m = doc["models"][model].clone();
    assert!(m.is_object(), "no state for {model:?} in {doc}");
    m
}

/// `observations` of one model.
#[track_caller]
pub fn observations(envoy: &Envoy, model: &str) -> u64 {
    let m = model_state(envoy, model);
    m["observations"]
        .as_u64()
        .unwrap_or_else(|| panic!("no numeric observations in {m}"))
}

/// Target name → its entry (`pulls`, `mean_reward`, `alpha`, `beta`).
#[track_caller]
pub fn arms(model_state: &Value) -> BTreeMap<String, Value> {
    model_state["targets"]
        .as_array()
        .unwrap_or_else(|| panic!("no targets in {model_state}"))
        .iter()
        .map(|t| {
            (
                t["name"].as_str().unwrap_or_default().to_string(),
                t.clone(),
            )
        })
        .collect()
}

pub fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

/// A routed request: its decision id and target. Panics unless it was answered 200 by an
/// upstream with a decision id.
#[track_caller]
pub fn decision_of(r: &Response) -> (String, String) {
    assert_eq!(r.status, 200, "{} {:?} {}", r.status, r.headers, r.text());
    let id = r
        .header("x-inference-decision")
        .unwrap_or_else(|| panic!("no x-inference-decision: {:?}", r.headers))
        .to_string();
    let target = r
        .header("x-inference-target")
        .unwrap_or_else(|| panic!("no x-inference-target: {:?}", r.headers))
        .to_string();
    (id, target)
}

/// `n` decisions for `model` (GET `/v2/models/<model>/ready`), over 4 keep-alive connections.
pub fn decisions(envoy: &Envoy, model: &str, n: usize) -> Vec<(String, String)> {
    let req = Request::get(&format!("/v2/models/{model}/ready"));
    let mut conns: Vec<_> = (0..4).map(|_| envoy.connect()).collect();
    let out = (0..n)
        .map(|i| {
            let c = &mut conns[i % 4];
            decision_of(&c.send(&req).unwrap_or_else(|e| panic!("request {i}: {e}")))
        })
        .collect();
    for c in conns {
        c.close();
    }
    out
}

/// `{"decision": id, "reward": reward}` as JSON.
pub fn feedback_body(decision: &str, reward: Value) -> Request {
    Request::post(FEEDBACK_PATH).json(&json!({ "decision": decision, "reward": reward }))
}

/// POSTs feedback on a new connection.
pub fn send_feedback(envoy: &Envoy, decision: &str, reward: f64) -> Response {
    envoy.send(&feedback_body(decision, json!(reward)))
}

/// The filter's refusal: status, `{"error": code, "detail": …}`.
#[track_caller]
pub fn assert_refused(r: &Response, status: u16, code: &str) {
    assert_eq!(r.status, status, "{:?} {}", r.headers, r.text());
    let v = r.json();
    assert_eq!(v["error"], code, "{v}");
    assert!(
        v["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "detail in {v}"
    );
}

/// Polls `f` every 25 ms until it returns `Some`, at most `timeout`; panics with `what`.
#[track_caller]
pub fn wait_for<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?}: {what}"
        );
        thread::sleep(Duration::from_millis(25));
    }
}

/// Waits (at most 10 s) until a `wasmcustom.<name>` counter is at least `at_least`; returns it.
#[track_caller]
pub fn wait_counter_at_least(envoy: &Envoy, name: &str, at_least: u64) -> u64 {
    let mut last = 0;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        last = envoy.wasm_counter(name).max(last);
        if last >= at_least {
            return last;
        }
        assert!(
            Instant::now() < deadline,
            "{name} stayed at {last}, expected at least {at_least}"
        );
        thread::sleep(Duration::from_millis(25));
    }
}

/// Waits (at most 10 s) until the model's observations reach `n`; returns them. Rewards from
/// responses are applied when the stream ends, after the client has its answer.
#[track_caller]
pub fn wait_observations(envoy: &Envoy, model: &str, n: u64) -> u64 {
    wait_for(
        Duration::from_secs(10),
        &format!("{model} observations reach {n}"),
        || {
            let o = observations(envoy, model);
            (o >= n).then_some(o)
        },
    )
}
