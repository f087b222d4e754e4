//! Explicit feedback (`feedback`: signed decision ids) and the state endpoint: a routed
//! response's `x-inference-decision` POSTed back with a reward is applied once (200), across
//! workers; replayed (409), forged (403), expired (410), invalid (400) and not-learning (422)
//! feedback changes nothing but its `feedback.rejected.<why>` counter. The state endpoint
//! needs its bearer token; both paths are ordinary routes when not configured.

use crate::driver::*;
use inference_router_core::host::Action;
use serde_json::{json, Value};

/// `sentiment` learns from feedback only (no `reward`), `iris` does not learn.
fn config(ttl_seconds: u64, signing_key: &str) -> Value {
    json!({
        "models": [
            bandit_model("sentiment", sentiment_targets(), json!({ "type": "thompson" }), None),
            { "name": "iris", "targets": [ { "name": "v1", "cluster": "iris-v1", "weight": 1 } ] }
        ],
        "feedback": { "path": FEEDBACK_PATH, "signing_key": signing_key, "ttl_seconds": ttl_seconds },
        "state_endpoint": state_section(),
    })
}

fn start() -> Vm {
    Vm::start(&config(3600, SIGNING_KEY))
}

const NOW: u64 = 1_800_000_000;

/// Every `feedback.*` counter, in a fixed order.
fn feedback_counters(vm: &Vm) -> Vec<u64> {
    let mut out = vec![vm.counter("feedback.accepted")];
    for why in [
        "invalid",
        "forged",
        "expired",
        "replayed",
        "not_learning",
        "unavailable",
    ] {
        out.push(vm.counter(&format!("feedback.rejected.{why}")));
    }
    out
}

#[test]
fn a_signed_decision_is_learned_once_then_replays_are_refused_on_every_worker() {
    let mut vm = start();
    let (id, target) = vm.decision("sentiment");
    // <model>~<target>~<expires>~<nonce>~<bound>~<key id>~<tag>
    let parts: Vec<&str> = id.split('~').collect();
    assert_eq!(parts.len(), 7, "{id}");
    assert_eq!(
        parts[..3],
        ["sentiment", target.as_str(), &(NOW + 3600).to_string()]
    );
    assert_eq!(
        parts[4..6],
        ["-", "k0"],
        "unbound, signed with signing_key's id"
    );
    assert_eq!((parts[3].len(), parts[6].len()), (16, 32), "{id}");
    let nonce = u64::from_str_radix(parts[3], 16).unwrap();

    let r = vm.feedback(&json!({ "decision": id, "reward": 0.5 }));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(
        r.header("x-inference-reason"),
        None,
        "the filter's own endpoint: no routing metadata"
    );
    assert_eq!(
        r.json(),
        json!({"updated": {"model": "sentiment", "target": target, "reward": 0.5, "observations": 1}})
    );
    assert_eq!(vm.routed_cluster(), None);
    assert_eq!(vm.counter("feedback.accepted"), 1);
    assert_eq!(vm.arm("sentiment", &target), [1.5, 1.5, 1.0]);
    // The id is spent in the shard of its nonce, in the bucket of its expiry's hour.
    let shard = format!(
        "inference-router/v1/inference-router/spent/{}/{}",
        (NOW + 3600) / 3600,
        nonce % 64
    );
    assert_eq!(vm.host.shared_value(&shard).unwrap(), nonce.to_be_bytes());

    // Replayed with another reward, as header-only feedback, and on another worker's VM (same
    // shared data): refused each time, nothing changes.
    let state = vm.model_state("sentiment");
    assert_refused(
        &vm.feedback(&json!({ "decision": id, "reward": 1.0 })),
        409,
        "replayed",
    );
    assert_refused(&vm.feedback_headers(&id, "1"), 409, "replayed");
    assert!(vm.reload(&config(3600, SIGNING_KEY)));
    assert_refused(
        &vm.feedback(&json!({ "decision": id, "reward": 0.5 })),
        409,
        "replayed",
    );
    // A reload with another ttl finds the id where it was put (buckets do not depend on it).
    for ttl in [60, 7 * 24 * 3600] {
        assert!(vm.reload(&config(ttl, SIGNING_KEY)));
        assert_refused(
            &vm.feedback(&json!({ "decision": id, "reward": 0.5 })),
            409,
            "replayed",
        );
    }
    assert!(vm.reload(&config(3600, SIGNING_KEY)));
    assert_eq!(vm.model_state("sentiment"), state);
    assert_eq!(feedback_counters(&vm), [1, 0, 0, 0, 5, 0, 0]);

    // A decision the other worker issued is accepted here.
    let (id2, target2) = vm.decision("sentiment");
    assert_ne!(id2, id);
    let r = vm.feedback(&json!({ "decision": id2, "reward": 0.0 }));
    assert_eq!(r.json()["updated"]["observations"], 2);
    assert_eq!(r.json()["updated"]["target"], target2);
}

#[test]
fn forged_and_invalid_feedback_is_refused_and_changes_nothing() {
    let mut vm = start();
    let (id, target) = vm.decision("sentiment");
    let parts: Vec<&str> = id.split('~').collect();
    let other = if target == "v1" { "v2" } else { "v1" };
    let mut bad_sig = id.clone();
    let last = bad_sig.pop().unwrap();
    bad_sig.push(if last == '0' { '1' } else { '0' });
    // A real token of another router (another signing key).
    let foreign = Vm::start(&config(3600, "a-different-key-fedcba9876543210"))
        .decision("sentiment")
        .0;
    let forged = [
        id.replacen(&format!("~{target}~"), &format!("~{other}~"), 1),
        format!(
            "{}~{}~{}~{}~{}",
            parts[0],
            parts[1],
            NOW + 90_000,
            parts[3],
            parts[4]
        ),
        bad_sig,
        "not-a-token".to_string(),
        "sentiment~v1~1~2~3".to_string(),
        "a~b~c~d~e~f".to_string(),
        foreign,
    ];
    let before = vm.model_state("sentiment");
    for (i, f) in forged.iter().enumerate() {
        let r = vm.feedback(&json!({ "decision": f, "reward": 1.0 }));
        assert_refused(&r, 403, "forged");
        assert_eq!(
            feedback_counters(&vm),
            [0, 0, i as u64 + 1, 0, 0, 0, 0],
            "{f}"
        );
    }

    // Out of range, wrong type, missing, malformed: 400, never clamped.
    let mut invalid: Vec<LocalReply> = Vec::new();
    for bad in [json!(1.5), json!(-0.1), json!("0.5"), json!(null)] {
        invalid.push(vm.feedback(&json!({ "decision": id, "reward": bad })));
    }
    invalid.push(vm.feedback(&json!({ "decision": id })));
    vm.send(&post_json(FEEDBACK_PATH), b"{not json");
    invalid.push(vm.reply());
    invalid.push(vm.feedback_headers(&id, "1.5"));
    invalid.push(vm.feedback_headers(&id, "high"));
    // No decision anywhere.
    invalid.push(vm.feedback(&json!({ "reward": 1 })));
    // Seldon's message whose routing disagrees with the signed decision.
    let wrong_child = if target == "v1" { 1 } else { 0 };
    invalid.push(vm.feedback(&json!({
        "request": { "data": { "ndarray": [[1.0]] } },
        "response": { "meta": { "routing": { "sentiment": wrong_child }, "tags": { "x-inference-decision": id } } },
        "reward": 1 })));
    for r in &invalid {
        assert_refused(r, 400, "invalid");
    }
    assert_eq!(feedback_counters(&vm), [0, 10, 7, 0, 0, 0, 0]);
    assert_eq!(vm.model_state("sentiment"), before);

    // After all that the id is still fresh.
    let r = vm.feedback(&json!({ "decision": id, "reward": 0.5 }));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["updated"]["observations"], 1);
}

#[test]
fn expiry_not_learning_models_and_every_accepted_form() {
    let mut vm = Vm::start(&config(60, SIGNING_KEY));
    let ds: Vec<(String, String)> = (0..6).map(|_| vm.decision("sentiment")).collect();
    // Within the ttl (expiry is exclusive, in whole seconds of the proxy's clock).
    vm.host.advance_secs(59);
    assert_eq!(
        vm.feedback(&json!({ "decision": ds[0].0, "reward": 1 }))
            .status,
        200
    );
    vm.host.advance_secs(1);
    assert_refused(
        &vm.feedback(&json!({ "decision": ds[1].0, "reward": 1 })),
        410,
        "expired",
    );
    assert_refused(&vm.feedback_headers(&ds[1].0, "1"), 410, "expired");
    assert_eq!(vm.counter("feedback.rejected.expired"), 2);
    // Spent ids are kept until every token of their bucket (an hour of expiry, whatever the
    // ttl) has expired: the root's tick then empties it, and the expired id stays refused as
    // expired.
    let nonce = u64::from_str_radix(ds[0].0.split('~').nth(3).unwrap(), 16).unwrap();
    let bucket = (NOW + 60) / 3600;
    let shard = format!(
        "inference-router/v1/inference-router/spent/{bucket}/{}",
        nonce % 64
    );
    assert_eq!(vm.host.shared_value(&shard).unwrap(), nonce.to_be_bytes());
    vm.host.advance_secs((bucket + 1) * 3600 - (NOW + 60) - 1);
    vm.tick(1);
    assert_eq!(vm.host.shared_value(&shard).unwrap(), nonce.to_be_bytes());
    vm.host.advance_secs(1);
    vm.tick(1);
    assert_eq!(vm.host.shared_value(&shard).as_deref(), Some(&[][..]));
    assert_refused(
        &vm.feedback(&json!({ "decision": ds[0].0, "reward": 1 })),
        410,
        "expired",
    );

    let mut vm = start();
    let ds: Vec<(String, String)> = (0..4).map(|_| vm.decision("sentiment")).collect();
    // A decision of a model that does not learn.
    let (iris, _) = vm.decision("iris");
    assert!(iris.starts_with("iris~v1~"), "{iris}");
    assert_refused(
        &vm.feedback(&json!({ "decision": iris, "reward": 1 })),
        422,
        "not_learning",
    );
    // Feedback is POSTed.
    let sent = vm.send(&get(FEEDBACK_PATH), b"");
    assert_eq!(sent.action, Action::Pause);
    assert_refused(&vm.reply(), 405, "method_not_allowed");

    // Header-only.
    let r = vm.feedback_headers(&ds[0].0, "0.75");
    assert_eq!(
        r.json()["updated"],
        json!({"model": "sentiment", "target": ds[0].1, "reward": 0.75, "observations": 1})
    );
    // Seldon's Feedback: the id in meta.tags, routing agreeing; without routing; the id in the
    // header of a body without tags.
    let child = if ds[1].1 == "v1" { 0 } else { 1 };
    let r = vm.feedback(&json!({
        "request": { "data": { "ndarray": [[1.0, 2.0]] } },
        "response": { "meta": { "routing": { "sentiment": child }, "tags": { "x-inference-decision": ds[1].0 } } },
        "reward": 1, "truth": { "data": { "ndarray": [[1.0]] } } }));
    assert_eq!(r.json()["updated"]["target"], ds[1].1);
    let r = vm.feedback(&json!({ "response": { "meta": { "tags": { "x-inference-decision": ds[2].0 } } }, "reward": 0.25 }));
    assert_eq!(r.json()["updated"]["reward"], 0.25);
    let body = serde_json::to_vec(&json!({ "response": { "meta": {} }, "reward": 1 })).unwrap();
    vm.send(
        &with(
            post_json(FEEDBACK_PATH),
            &[("x-inference-decision", &ds[3].0)],
        ),
        &body,
    );
    assert_eq!(vm.reply().json()["updated"]["observations"], 4);
    assert_eq!(feedback_counters(&vm), [4, 0, 0, 0, 0, 1, 0]);
    assert_eq!(vm.observations("sentiment"), 4);
    // Feedback never goes upstream.
    assert_eq!(
        vm.counter("requests.sentiment.v1") + vm.counter("requests.sentiment.v2"),
        4
    );
}

#[test]
fn the_state_endpoint_needs_its_token() {
    let mut vm = start();
    for auth in [
        None,
        Some("Bearer wrong".to_string()),
        Some(format!("Bearer {STATE_TOKEN}x")),
        Some(format!("Bearer {}", &STATE_TOKEN[..STATE_TOKEN.len() - 1])),
        Some(STATE_TOKEN.to_string()),
        Some(format!("Basic {STATE_TOKEN}")),
        Some(format!("Bearer{STATE_TOKEN}")),
    ] {
        let mut headers = get(STATE_PATH);
        if let Some(a) = &auth {
            headers.push(("authorization", a));
        }
        let sent = vm.send(&headers, b"");
        assert_eq!(sent.action, Action::Pause);
        let r = vm.reply();
        assert_refused(&r, 401, "unauthorized");
        assert!(!r.text().contains(STATE_TOKEN), "{auth:?}: {}", r.text());
    }
    // Another method, even with the token.
    let auth = format!("Bearer {STATE_TOKEN}");
    for method in ["POST", "PUT", "DELETE"] {
        vm.send(
            &[
                (":method", method),
                (":path", STATE_PATH),
                ("authorization", &auth),
            ],
            b"",
        );
        assert_refused(&vm.reply(), 405, "method_not_allowed");
    }
    let target = |name: &str| json!({"name": name, "pulls": 0.0, "mean_reward": null, "alpha": 1.0, "beta": 1.0});
    // Only bandit models are listed.
    let want = json!({"build": {"version": "0.0.0", "commit": "unknown"},
                      "models": {"sentiment": {"observations": 0, "targets": [target("v1"), target("v2")]}}});
    assert_eq!(vm.state(), want);
    // The scheme is case-insensitive (RFC 9110).
    for scheme in ["bearer", "BEARER"] {
        let auth = format!("{scheme} {STATE_TOKEN}");
        vm.send(&with(get(STATE_PATH), &[("authorization", &auth)]), b"");
        assert_eq!(vm.reply().json(), want, "{scheme}");
    }
    // The query string does not change the path.
    vm.send(
        &[
            (":method", "GET"),
            (":path", "/inference-router/state?x=1"),
            ("authorization", &auth),
        ],
        b"",
    );
    assert_eq!(vm.reply().json(), want);
    // None of it went upstream.
    assert_eq!(
        vm.counter("requests.sentiment.v1") + vm.counter("requests.sentiment.v2"),
        0
    );
}

#[test]
fn state_and_feedback_paths_are_ordinary_routes_when_not_configured() {
    let mut vm = Vm::start(&json!({
        "default_model": "sentiment",
        "models": [ bandit_model("sentiment", sentiment_targets(), json!({ "type": "thompson" }), None) ],
    }));
    let auth = format!("Bearer {STATE_TOKEN}");
    let requests: [Vec<(&str, &str)>; 3] = [
        with(get(STATE_PATH), &[("authorization", &auth)]),
        get(STATE_PATH),
        vec![
            (":method", "POST"),
            (":path", FEEDBACK_PATH),
            ("x-inference-decision", "x"),
            ("x-inference-reward", "1"),
        ],
    ];
    for headers in &requests {
        let mut sent = vm.send(headers, b"");
        assert_eq!(sent.action, Action::Continue);
        assert!(vm.host.reply().is_none());
        assert!(vm
            .routed_cluster()
            .is_some_and(|c| c.starts_with("sentiment-v")));
        vm.respond(&mut sent, OK, b"");
        assert_eq!(
            vm.response_header("x-inference-model").as_deref(),
            Some("sentiment")
        );
    }
}
