//! Configuration reloads without a restart (docs/configuration.md, "State"): the listener comes
//! from LDS (envoy/lds.yaml, `path_config_source` with a watched directory) and is replaced by an
//! atomic rename; Envoy applies it in place (`listener_manager.lds.update_success`). The wasm
//! plugin `name` stays the same, so the learned state (shared data) must survive: kept for
//! surviving targets, new targets at the prior, removed ones dropped. Real Envoy,
//! `--concurrency 2`.

mod common;

use std::time::Duration;

use common::learning::*;
use integration::{Behaviour, Envoy, EnvoyConfig, Request, Upstreams};
use serde_json::{json, Value};

/// A learning configuration for `sentiment` with these targets, epsilon and state token.
fn config(targets: Value, epsilon: f64, token: &str, signing_key: &str) -> Value {
    json!({
        "models": [ bandit_model("sentiment", targets,
                                 json!({ "type": "epsilon_greedy", "epsilon": epsilon }),
                                 Some(json!({ "status": true }))) ],
        "feedback": { "path": FEEDBACK_PATH, "signing_key": signing_key, "ttl_seconds": 3600 },
        "state_endpoint": { "path": STATE_PATH, "token": token },
    })
}

fn targets(names: &[&str]) -> Value {
    let cluster = |n: &str| match n {
        "v1" => "sentiment-v1",
        "v2" => "sentiment-v2",
        _ => "iris-v1",
    };
    Value::Array(
        names
            .iter()
            .map(|n| json!({ "name": n, "cluster": cluster(n) }))
            .collect(),
    )
}

fn state_with(envoy: &Envoy, token: &str) -> (u16, Value) {
    let r =
        envoy.send(&Request::get(STATE_PATH).header("authorization", &format!("Bearer {token}")));
    let v = if r.status == 200 {
        r.json()
    } else {
        Value::Null
    };
    (r.status, v)
}

/// Reloads the listener with `cfg` and waits until the new configuration answers (its state
/// token works on 5 new connections in a row, so on both workers); returns its state document.
#[track_caller]
fn reload(envoy: &mut Envoy, cfg: &Value, token: &str) -> Value {
    let pid = envoy.pid();
    let before = envoy.lds_counters();
    let after = envoy
        .reload_listener(&cfg.to_string())
        .unwrap_or_else(|c| panic!("Envoy refused the listener: {c:?}\n{}", envoy.log()));
    assert!(after.update_success > before.update_success);
    assert_eq!(envoy.pid(), pid, "the same Envoy process");
    let mut streak = 0;
    wait_for(
        Duration::from_secs(10),
        "the reloaded configuration answers",
        || {
            let (status, doc) = state_with(envoy, token);
            streak = if status == 200 { streak + 1 } else { 0 };
            (streak >= 5).then_some(doc)
        },
    )
}

/// `sentiment`'s entry of a state document.
fn sentiment(doc: &Value) -> Value {
    let m = doc["models"]["sentiment"].clone();
    assert!(m.is_object(), "{doc}");
    m
}

fn names(m: &Value) -> Vec<String> {
    arms(m).into_keys().collect()
}

fn traffic(envoy: &Envoy, n: usize) {
    let mut conn = envoy.connect();
    for i in 0..n {
        let r = conn
            .send(&Request::get("/v2/models/sentiment/ready"))
            .unwrap_or_else(|e| panic!("request {i}: {e}"));
        assert!(matches!(r.status, 200 | 500), "{} {}", r.status, r.text());
    }
    conn.close();
}

fn start(cfg: &Value) -> (Upstreams, Envoy) {
    let upstreams = Upstreams::start_default();
    upstreams.set_behaviour("sentiment-v1", Behaviour::success_rate(0.9).with_seed(1));
    upstreams.set_behaviour("sentiment-v2", Behaviour::success_rate(0.5).with_seed(2));
    let envoy = Envoy::start(&EnvoyConfig::lds(cfg), &upstreams);
    (upstreams, envoy)
}

#[test]
fn learned_state_survives_listener_reloads_and_follows_the_targets() {
    let (_upstreams, mut envoy) = start(&config(
        targets(&["v1", "v2"]),
        0.1,
        "state-token-0123456789-1",
        SIGNING_KEY,
    ));
    traffic(&envoy, 40);
    let (status, doc) = state_with(&envoy, "state-token-0123456789-1");
    assert_eq!(status, 200);
    assert_eq!(
        wait_observations_with(&envoy, "state-token-0123456789-1", 40),
        40,
        "implicit rewards before the reload"
    );
    let s1 = sentiment(&state_with(&envoy, "state-token-0123456789-1").1);
    assert_eq!(names(&s1), ["v1", "v2"], "{doc}");

    // 1. Same targets, another epsilon and state token: everything learned is still there.
    let doc = reload(
        &mut envoy,
        &config(
            targets(&["v1", "v2"]),
            0.3,
            "state-token-0123456789-2",
            SIGNING_KEY,
        ),
        "state-token-0123456789-2",
    );
    assert_eq!(
        sentiment(&doc),
        s1,
        "state changed across a reload that kept the targets"
    );
    assert_eq!(
        state_with(&envoy, "state-token-0123456789-1").0,
        401,
        "the old configuration still answers"
    );
    // And learning goes on from there.
    traffic(&envoy, 20);
    assert_eq!(
        wait_observations_with(&envoy, "state-token-0123456789-2", 60),
        60
    );
    let s2 = sentiment(&state_with(&envoy, "state-token-0123456789-2").1);

    // 2. A target added: the old ones keep their statistics, the new one starts at the prior.
    let doc = reload(
        &mut envoy,
        &config(
            targets(&["v1", "v2", "v3"]),
            0.3,
            "state-token-0123456789-3",
            SIGNING_KEY,
        ),
        "state-token-0123456789-3",
    );
    let s3 = sentiment(&doc);
    assert_eq!(s3["observations"], s2["observations"], "{s3}");
    let (old, new) = (arms(&s2), arms(&s3));
    assert_eq!(names(&s3), ["v1", "v2", "v3"], "{s3}");
    assert_eq!(new["v1"], old["v1"], "v1 not migrated: {s3}");
    assert_eq!(new["v2"], old["v2"], "v2 not migrated: {s3}");
    let v3 = &new["v3"];
    assert_eq!(
        (f(&v3["pulls"]), f(&v3["alpha"]), f(&v3["beta"])),
        (0.0, 1.0, 1.0),
        "{v3}"
    );

    // 3. A target removed: dropped; the survivors keep their statistics.
    let doc = reload(
        &mut envoy,
        &config(
            targets(&["v1", "v3"]),
            0.3,
            "state-token-0123456789-4",
            SIGNING_KEY,
        ),
        "state-token-0123456789-4",
    );
    let s4 = sentiment(&doc);
    assert_eq!(names(&s4), ["v1", "v3"], "{s4}");
    assert_eq!(arms(&s4)["v1"], old["v1"], "{s4}");

    // 4. Added back: it was dropped, so it starts again at the prior.
    let doc = reload(
        &mut envoy,
        &config(
            targets(&["v1", "v2", "v3"]),
            0.3,
            "state-token-0123456789-5",
            SIGNING_KEY,
        ),
        "state-token-0123456789-5",
    );
    let s5 = sentiment(&doc);
    let v2 = &arms(&s5)["v2"];
    assert_eq!(
        (f(&v2["pulls"]), f(&v2["alpha"]), f(&v2["beta"])),
        (0.0, 1.0, 1.0),
        "{s5}"
    );
    assert_eq!(arms(&s5)["v1"], old["v1"], "{s5}");

    // 5. A configuration the filter refuses: Envoy rejects the listener, the previous one keeps
    //    serving with its state.
    let mut bad = config(
        targets(&["v1", "v2", "v3"]),
        0.3,
        "state-token-0123456789-6",
        SIGNING_KEY,
    );
    bad["models"][0]["strategy"]["epsilon"] = json!(7.5);
    let refused = envoy.reload_listener(&bad.to_string());
    assert!(
        refused.is_err(),
        "an epsilon of 7.5 was accepted: {refused:?}"
    );
    let (status, doc) = state_with(&envoy, "state-token-0123456789-5");
    assert_eq!(status, 200);
    assert_eq!(sentiment(&doc), s5);
    assert_eq!(state_with(&envoy, "state-token-0123456789-6").0, 401);
    traffic(&envoy, 10);
    assert_eq!(
        wait_observations_with(&envoy, "state-token-0123456789-5", 70),
        70
    );
    assert_eq!(envoy.counter("listener_manager.lds.update_rejected"), 1);
    assert_eq!(envoy.counter("wasm.inference-router.vm_reload_success"), 0);
}

/// Waits (at most 10 s) until `sentiment` has `n` observations, reading with `token`.
#[track_caller]
fn wait_observations_with(envoy: &Envoy, token: &str, n: u64) -> u64 {
    wait_for(
        Duration::from_secs(10),
        &format!("{n} observations"),
        || {
            let (status, doc) = state_with(envoy, token);
            assert_eq!(status, 200, "{doc}");
            let o = doc["models"]["sentiment"]["observations"]
                .as_u64()
                .unwrap_or(0);
            (o >= n).then_some(o)
        },
    )
}

#[test]
fn decision_ids_outlive_a_reload_and_stay_spent() {
    let (_upstreams, mut envoy) = start(&config(
        targets(&["v1", "v2"]),
        0.1,
        "state-token-0123456789-1",
        SIGNING_KEY,
    ));
    // Decisions and their implicit rewards: 4 observations.
    let ds = decisions(&envoy, "sentiment", 4);
    assert_eq!(
        wait_observations_with(&envoy, "state-token-0123456789-1", 4),
        4
    );
    let r = send_feedback(&envoy, &ds[0].0, 1.0);
    assert_eq!(r.status, 200, "{}", r.text());

    let _ = reload(
        &mut envoy,
        &config(
            targets(&["v1", "v2"]),
            0.2,
            "state-token-0123456789-2",
            SIGNING_KEY,
        ),
        "state-token-0123456789-2",
    );
    // Spent before the reload: still spent. Issued before it, unused: accepted.
    let r = send_feedback(&envoy, &ds[0].0, 1.0);
    assert_refused(&r, 409, "replayed");
    let r = send_feedback(&envoy, &ds[1].0, 0.0);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["updated"]["observations"], 6);

    // A new signing key: ids signed with the old one no longer verify.
    let _ = reload(
        &mut envoy,
        &config(
            targets(&["v1", "v2"]),
            0.2,
            "state-token-0123456789-3",
            "another-signing-key-0123456789",
        ),
        "state-token-0123456789-3",
    );
    let r = send_feedback(&envoy, &ds[2].0, 1.0);
    assert_refused(&r, 403, "forged");
    assert_eq!(
        wait_observations_with(&envoy, "state-token-0123456789-3", 6),
        6
    );
}

/// envoy/lds/listener.yaml is envoy/demo.yaml's listener as an LDS resource: the same lines,
/// re-indented. (The tests of reloads must test the listener the other tests test.)
#[test]
fn lds_listener_is_the_demo_listener() {
    let read = |p: &str| std::fs::read_to_string(integration::envoy_dir().join(p)).unwrap();
    let demo = read("demo.yaml");
    let lds = read(integration::LDS_LISTENER_TEMPLATE);
    let start = demo
        .find("  - name: inference\n")
        .expect("demo.yaml listener");
    let end = demo
        .find("  # One STATIC cluster")
        .expect("demo.yaml clusters");
    let from_demo: Vec<String> = demo[start..end]
        .lines()
        .skip(1)
        .map(|l| l.strip_prefix("  ").unwrap_or(l).trim_end().to_string())
        .filter(|l| !l.is_empty())
        .collect();
    let body = lds
        .split_once("  name: inference\n")
        .expect("lds listener named inference")
        .1;
    let from_lds: Vec<String> = body
        .lines()
        .map(|l| l.trim_end().to_string())
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(
        from_lds, from_demo,
        "envoy/lds/listener.yaml drifted from envoy/demo.yaml"
    );
}
