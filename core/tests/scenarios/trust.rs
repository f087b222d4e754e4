//! Who may reward what: decisions bound to the principal that asked (`feedback.bind`),
//! evaluators, a reward budget per principal per minute, key rotation, the spent-id store's
//! bound, and the headers a client may not set.

use crate::driver::*;
use inference_router_core::host::Action;
use serde_json::{json, Value};

const USER: &str = "x-user";

fn bound_config(extra: Value) -> Value {
    let mut feedback = feedback_section(3600);
    feedback["bind"] = json!({ "header": USER });
    feedback["evaluators"] = json!(["grader"]);
    if let (Some(f), Some(e)) = (feedback.as_object_mut(), extra.as_object()) {
        f.extend(e.clone());
    }
    json!({
        "models": [ bandit_model("sentiment", sentiment_targets(), json!({ "type": "thompson" }), None) ],
        "feedback": feedback,
        "state_endpoint": state_section(),
    })
}

/// A routed request of `user` (no header when `None`): its decision id and target.
fn decide_as(vm: &mut Vm, model: &str, user: Option<&str>) -> (String, String) {
    let path = format!("/v2/models/{model}/ready");
    let mut headers = get(&path);
    if let Some(u) = user {
        headers.push((USER, u));
    }
    let mut sent = vm.send(&headers, b"");
    assert_eq!(sent.action, Action::Continue);
    vm.respond(&mut sent, OK, b"");
    (
        vm.response_header("x-inference-decision").unwrap(),
        vm.response_header("x-inference-target").unwrap(),
    )
}

/// Header-only feedback sent by `user`.
fn reward_as(vm: &mut Vm, user: Option<&str>, decision: &str, reward: f64) -> LocalReply {
    let reward = reward.to_string();
    let mut headers = vec![
        (":method", "POST"),
        (":path", FEEDBACK_PATH),
        (":authority", "models"),
        ("x-inference-decision", decision),
        ("x-inference-reward", reward.as_str()),
    ];
    if let Some(u) = user {
        headers.push((USER, u));
    }
    let sent = vm.send(&headers, b"");
    assert_eq!(sent.action, Action::Pause);
    vm.reply()
}

#[test]
fn a_bound_decision_is_rewarded_by_its_principal_or_an_evaluator_only() {
    let mut vm = Vm::start(&bound_config(json!({})));
    let (alice, _) = decide_as(&mut vm, "sentiment", Some("alice"));
    // The token tags the principal without showing it.
    assert!(!alice.contains("alice"), "{alice}");
    assert_ne!(alice.split('~').nth(4), Some("-"));
    for (user, why) in [(Some("bob"), "another principal"), (None, "none")] {
        let r = reward_as(&mut vm, user, &alice, 0.0);
        assert_refused(&r, 403, "unauthorized");
        assert!(
            r.json()["detail"].as_str().unwrap().contains("principal"),
            "{why}"
        );
    }
    assert_eq!(vm.observations("sentiment"), 0);
    assert_eq!(vm.counter("feedback.rejected.unauthorized"), 2);
    assert_eq!(reward_as(&mut vm, Some("alice"), &alice, 1.0).status, 200);

    // A request without a principal: only an evaluator may reward its decision.
    let (anonymous, _) = decide_as(&mut vm, "sentiment", None);
    assert_eq!(anonymous.split('~').nth(4), Some("-"));
    assert_refused(
        &reward_as(&mut vm, Some("alice"), &anonymous, 1.0),
        403,
        "unauthorized",
    );
    assert_eq!(
        reward_as(&mut vm, Some("grader"), &anonymous, 1.0).status,
        200
    );
    // An evaluator may reward anyone's decision.
    let (carol, _) = decide_as(&mut vm, "sentiment", Some("carol"));
    assert_eq!(reward_as(&mut vm, Some("grader"), &carol, 0.5).status, 200);
    assert_eq!(vm.observations("sentiment"), 3);
}

#[test]
fn the_budget_is_per_principal_per_minute_and_answers_429_with_retry_after() {
    let mut vm = Vm::start(&bound_config(json!({ "budget_per_minute": 2 })));
    // The test host's clock starts on a minute boundary; 20 s into it.
    vm.host.advance_secs(20);
    let ids: Vec<String> = (0..4)
        .map(|_| decide_as(&mut vm, "sentiment", Some("mallory")).0)
        .collect();
    assert_eq!(
        reward_as(&mut vm, Some("mallory"), &ids[0], 0.0).status,
        200
    );
    assert_eq!(
        reward_as(&mut vm, Some("mallory"), &ids[1], 0.0).status,
        200
    );
    let r = reward_as(&mut vm, Some("mallory"), &ids[2], 0.0);
    assert_refused(&r, 429, "over_budget");
    assert_eq!(r.header("retry-after"), Some("40"));
    assert_eq!(vm.counter("feedback.rejected.over_budget"), 1);
    // Others are not held to mallory's budget, nor is the evaluator.
    let (alice, _) = decide_as(&mut vm, "sentiment", Some("alice"));
    assert_eq!(reward_as(&mut vm, Some("alice"), &alice, 1.0).status, 200);
    assert_eq!(reward_as(&mut vm, Some("grader"), &ids[2], 1.0).status, 200);
    // The next minute, mallory's refused decision can still be rewarded: it was not spent.
    vm.host.advance_secs(40);
    assert_eq!(
        reward_as(&mut vm, Some("mallory"), &ids[3], 0.0).status,
        200
    );
    assert_eq!(vm.observations("sentiment"), 5);
}

#[test]
fn keys_rotate_without_refusing_valid_tokens() {
    let keys = |list: &[(&str, &str)]| {
        let keys: Vec<Value> = list
            .iter()
            .map(|(id, key)| json!({"id": id, "key": key}))
            .collect();
        json!({
            "models": [ bandit_model("sentiment", sentiment_targets(), json!({ "type": "thompson" }), None) ],
            "feedback": { "path": FEEDBACK_PATH, "signing_keys": keys },
            "state_endpoint": state_section(),
        })
    };
    let (old, new) = (
        ("2026-11", "old-key-0123456789abcdef"),
        ("2026-12", "new-key-0123456789abcdef"),
    );
    let mut vm = Vm::start(&keys(&[old]));
    let (a, _) = vm.decision("sentiment");
    let (b, _) = vm.decision("sentiment");
    assert_eq!(a.split('~').nth(5), Some("2026-11"));
    // The new key first: it signs, and the old one still verifies.
    assert!(vm.reload(&keys(&[new, old])));
    let (c, _) = vm.decision("sentiment");
    assert_eq!(c.split('~').nth(5), Some("2026-12"));
    assert_eq!(vm.feedback_headers(&a, "1").status, 200);
    assert_eq!(vm.feedback_headers(&c, "1").status, 200);
    // The old key gone (its tokens expired in practice): its tokens are refused as forged.
    assert!(vm.reload(&keys(&[new])));
    let r = vm.feedback_headers(&b, "1");
    assert_refused(&r, 403, "forged");
    assert!(
        r.json()["detail"].as_str().unwrap().contains("key"),
        "{}",
        r.text()
    );
    // A token relabelled with the other key's id does not verify either. (Every reload of the
    // test host starts a VM with the same entropy: skip the nonce `c` took.)
    vm.decision("sentiment");
    let (d, _) = vm.decision("sentiment");
    let relabelled = d.replacen("~2026-12~", "~2026-11~", 1);
    assert!(vm.reload(&keys(&[new, old])));
    assert_refused(&vm.feedback_headers(&relabelled, "1"), 403, "forged");
    assert_eq!(vm.feedback_headers(&d, "1").status, 200);
    assert_eq!(vm.observations("sentiment"), 3);
}

#[test]
fn a_full_spent_id_store_refuses_rather_than_accepts() {
    // 1,024 an hour: 16 ids per shard.
    let mut cfg = json!({
        "models": [ bandit_model("sentiment", sentiment_targets(), json!({ "type": "thompson" }), None) ],
        "feedback": feedback_section(3600),
    });
    cfg["feedback"]["max_accepted_per_hour"] = json!(1024);
    let mut vm = Vm::start(&cfg);
    let shard_of = |id: &str| u64::from_str_radix(id.split('~').nth(3).unwrap(), 16).unwrap() % 64;
    // Decisions until one shard has 17.
    let mut by_shard: Vec<Vec<String>> = vec![Vec::new(); 64];
    let full = loop {
        let (id, _) = vm.decision("sentiment");
        let s = shard_of(&id) as usize;
        by_shard[s].push(id);
        if by_shard[s].len() == 17 {
            break s;
        }
    };
    for id in &by_shard[full][..16] {
        assert_eq!(vm.feedback_headers(id, "1").status, 200);
    }
    let r = vm.feedback_headers(&by_shard[full][16], "1");
    assert_refused(&r, 503, "full");
    assert_eq!(
        r.header("retry-after"),
        None,
        "retrying this id cannot succeed"
    );
    assert_eq!(vm.counter("feedback.rejected.full"), 1);
    // The spent ids stay spent; other shards take ids.
    assert_refused(
        &vm.feedback_headers(&by_shard[full][0], "1"),
        409,
        "replayed",
    );
    let other = by_shard
        .iter()
        .position(|ids| !ids.is_empty() && ids.len() < 16)
        .unwrap();
    assert_eq!(vm.feedback_headers(&by_shard[other][0], "1").status, 200);
}

#[test]
fn a_client_cannot_mark_its_request_a_shadow_copy() {
    let mut vm = Vm::start(&deterministic());
    let mut sent = vm.send(
        &[
            (":method", "GET"),
            (":path", "/health"),
            ("x-model", "chat"),
            ("x-inference-shadow", "chat"),
        ],
        b"",
    );
    assert_eq!(sent.action, Action::Continue);
    assert_eq!(vm.host.request_header_value("x-inference-shadow"), None);
    vm.respond(&mut sent, OK, b"{}");
}

/// The poisoning experiment: targets `good` (reward 1 with probability 0.8) and `bad` (0.5);
/// 20 users ask 2,000 times in all, one request a second, and grade each answer truthfully.
/// Mallory asks ten times as often and sends reward 0 for every answer of `good`; protected,
/// decisions are bound to the `x-user` header and each principal may reward 5 a minute (a user
/// rewards 3). Returns the share of `good` among the users' last 500 requests, and how many of
/// mallory's rewards were accepted.
fn good_share(seed: u64, attack: bool, protected: bool) -> (f64, u32) {
    let mut feedback = feedback_section(3600);
    if protected {
        feedback["bind"] = json!({ "header": USER });
        feedback["budget_per_minute"] = json!(5);
    }
    let targets =
        json!([ { "name": "good", "cluster": "good" }, { "name": "bad", "cluster": "bad" } ]);
    let cfg = json!({
        "models": [ bandit_model("chat", targets, json!({ "type": "thompson" }), None) ],
        "feedback": feedback,
    });
    let mut vm = Vm::start_seeded(&cfg, (seed, seed ^ 0x9e37_79b9));
    let mut rng = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
    let mut uniform = || {
        rng = rng
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (rng >> 11) as f64 / (1u64 << 53) as f64
    };
    let mut good_late = 0;
    let mut accepted = 0;
    for i in 0..2_000 {
        let user = format!("user-{}", i % 20);
        let (id, target) = decide_as(&mut vm, "chat", Some(&user));
        let p = if target == "good" { 0.8 } else { 0.5 };
        let reward = if uniform() < p { 1.0 } else { 0.0 };
        reward_as(&mut vm, Some(&user), &id, reward);
        if i >= 1_500 && target == "good" {
            good_late += 1;
        }
        if attack {
            for _ in 0..10 {
                let (id, target) = decide_as(&mut vm, "chat", Some("mallory"));
                if target == "good" {
                    let r = reward_as(&mut vm, Some("mallory"), &id, 0.0);
                    if r.status == 200 {
                        accepted += 1;
                    }
                }
            }
        }
        vm.host.advance_secs(1);
    }
    (f64::from(good_late) / 500.0, accepted)
}

#[test]
fn poisoning_at_ten_times_the_rate_is_held_to_its_budget() {
    let runs = 4;
    let mean = |attack, protected| -> (f64, u32) {
        let results: Vec<(f64, u32)> = (0..runs)
            .map(|s| good_share(s + 1, attack, protected))
            .collect();
        let share = results.iter().map(|r| r.0).sum::<f64>() / f64::from(runs as u32);
        (share, results.iter().map(|r| r.1).min().unwrap_or(0))
    };
    let (clean, _) = mean(false, true);
    let (defended, accepted) = mean(true, true);
    let (undefended, _) = mean(true, false);
    eprintln!("share of good, last 500 of 2,000: no attacker {clean:.3}, attacker bound and budgeted {defended:.3} ({accepted} of its rewards accepted), attacker unchecked {undefended:.3}");
    assert!(clean > 0.8, "the bandit finds the better target: {clean}");
    assert!(
        accepted >= 150,
        "the attacker's rewards reached the bandit up to its budget (5 a minute for 33 minutes): {accepted}"
    );
    assert!(
        (clean - defended).abs() <= 0.05,
        "with binding and budget the attack moves the share by at most 5 points: {clean} vs {defended}"
    );
    assert!(
        undefended < clean - 0.2,
        "unchecked, the same attack wins (else this experiment shows nothing): {undefended}"
    );
}
