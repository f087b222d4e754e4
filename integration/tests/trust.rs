//! Who may reward what (docs/policy.md "Who may reward what", "Headers a client controls";
//! docs/configuration.md `feedback`, `state_endpoint`), against the real Envoy at
//! `--concurrency 2`: the behaviour of core/tests/scenarios/trust.rs, end to end.
//! - decisions bound to a claim of a JWT that Envoy's own `jwt_authn` verified (envoy/jwt.yaml):
//!   only that principal or an evaluator may reward them; a decision of a request without a
//!   token is for evaluators only;
//! - a reward budget per principal per minute: 429 `over_budget` with `Retry-After`, and the
//!   refused id stays unspent; a replay counts against the budget;
//! - decisions bound to a header (envoy/demo.yaml);
//! - signing keys rotated by LDS reloads; a TTL reload does not re-open spent ids;
//! - a full spent-id store refuses (503 `full`, no `Retry-After`) rather than accepts;
//! - a client's `x-inference-shadow` never reaches an upstream, and a retry carries the client's
//!   trace headers;
//! - the state endpoint's bearer scheme in any case, and an exact token.
//!
//! Assertions are on responses, upstream hit counts, recorded upstream request headers and
//! `/stats` counters, never on log wording. All traffic goes to 127.0.0.1.
//!
//! The JWT test runs envoy/jwt.yaml with one rule added at run time (jwt_authn skips the state
//! path, whose bearer token is not a JWT).

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::jwt::*;
use common::learning::*;
use common::*;
use integration::{
    envoy_dir, Behaviour, Envoy, EnvoyConfig, Harness, Request, Response, Upstreams,
};
use serde_json::{json, Value};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

const EVALUATOR: &str = "grader";
const USER_HEADER: &str = "x-user";

/// If the wall clock is in the last `margin` seconds of a minute, sleeps until the next minute
/// has started (so a sequence of rewards that must share one budget minute cannot straddle a
/// boundary). Returns the current minute.
fn minute_with_room(margin: u64) -> u64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970");
    if now.as_secs() % 60 >= 60 - margin {
        let next = (now.as_secs() / 60 + 1) * 60;
        let wait = Duration::from_secs(next) - now + Duration::from_millis(50);
        eprintln!("near a minute boundary: sleeping {wait:?}");
        thread::sleep(wait);
    }
    now_unix() / 60
}

/// `Bearer <a valid JWT with this subject>`.
fn jwt_of(sub: &str) -> String {
    let claims = json!({ "iss": JWT_ISSUER, "sub": sub, "iat": now_unix(),
                         "exp": now_unix() + 3600 });
    format!("Bearer {}", sign_hs256(JWT_KEY, &claims))
}

/// The `~`-separated fields of a decision token:
/// `<model>~<target>~<expires>~<nonce>~<bound>~<key id>~<signature>`.
#[track_caller]
fn fields(id: &str) -> Vec<&str> {
    let f: Vec<&str> = id.split('~').collect();
    assert_eq!(f.len(), 7, "decision token {id}");
    f
}

/// A routed GET of `sentiment` with these extra headers: its decision id.
#[track_caller]
fn decide(envoy: &Envoy, headers: &[(&str, &str)]) -> String {
    let mut req = Request::get("/v2/models/sentiment/ready");
    for (n, v) in headers {
        req = req.header(n, v);
    }
    let r = envoy.send(&req);
    let echo = r.echo();
    assert!(echo.cluster.starts_with("sentiment-v"), "{echo:?}");
    decision_of(&r).0
}

/// POSTs `{"decision", "reward"}` to the feedback path with these extra headers.
fn reward(envoy: &Envoy, id: &str, r: f64, headers: &[(&str, &str)]) -> Response {
    let mut req = feedback_body(id, json!(r));
    for (n, v) in headers {
        req = req.header(n, v);
    }
    envoy.send(&req)
}

/// Asserts an accepted reward and returns the model's `observations` it reports.
#[track_caller]
fn accepted(r: &Response) -> u64 {
    assert_eq!(r.status, 200, "{:?} {}", r.headers, r.text());
    let v = r.json();
    assert_eq!(v["updated"]["model"], "sentiment", "{v}");
    v["updated"]["observations"]
        .as_u64()
        .unwrap_or_else(|| panic!("no observations in {v}"))
}

/// `wasmcustom.inference_router.feedback.<name>`, waiting (at most 5 s) for `expected`.
fn feedback_counter(envoy: &Envoy, name: &str, expected: u64) -> u64 {
    envoy.wasm_counter_eventually(&format!("inference_router.feedback.{name}"), expected)
}

fn thompson_sentiment() -> Value {
    bandit_model(
        "sentiment",
        sentiment_targets(),
        json!({ "type": "thompson" }),
        None,
    )
}

// ---------------------------------------------------------------------------------------------
// 1 + 2. Binding by a verified JWT claim; the budget
// ---------------------------------------------------------------------------------------------

/// envoy/jwt.yaml, except that jwt_authn does not look at requests to the state endpoint: the
/// state endpoint's `Authorization: Bearer <token>` is not a JWT, and jwt_authn refuses a
/// malformed token (401) before the filter sees it. Derived from jwt.yaml at run time (written
/// to a scratch file) so it cannot drift from it.
fn jwt_template_with_state_path() -> PathBuf {
    let text = std::fs::read_to_string(envoy_dir().join("jwt.yaml")).expect("envoy/jwt.yaml");
    let anchor = "              rules:\n              - match: { prefix: \"/\" }\n";
    assert_eq!(
        text.matches(anchor).count(),
        1,
        "envoy/jwt.yaml's jwt_authn rules changed; update this test's template"
    );
    let patched = text.replace(
        anchor,
        &format!(
            "              rules:\n              - match: {{ path: \"{STATE_PATH}\" }}\n              - match: {{ prefix: \"/\" }}\n"
        ),
    );
    let dir = std::env::temp_dir().join("inference-router-e2e");
    std::fs::create_dir_all(&dir).expect("scratch directory");
    let path = dir.join(format!("trust-jwt-{}.yaml", std::process::id()));
    std::fs::write(&path, patched).expect("write the derived template");
    path
}

#[test]
fn decisions_bound_to_a_verified_jwt_claim_and_a_reward_budget() {
    let cfg = json!({
        "models": [ thompson_sentiment() ],
        "feedback": {
            "path": FEEDBACK_PATH, "signing_key": SIGNING_KEY, "ttl_seconds": 3600,
            "bind": { "jwt": { "payload_key": "jwt_payload", "claim": "sub" } },
            "evaluators": [ EVALUATOR ],
            "budget_per_minute": 2
        },
        "state_endpoint": state_section(),
    });
    let template = jwt_template_with_state_path();
    let h = Harness::start(&EnvoyConfig::new(&template, cfg.to_string()));
    let _ = std::fs::remove_file(&template);
    let envoy = &h.envoy;
    let (alice, bob, grader) = (jwt_of("alice"), jwt_of("bob"), jwt_of(EVALUATOR));
    let as_alice = [("authorization", alice.as_str())];
    let as_bob = [("authorization", bob.as_str())];
    let as_grader = [("authorization", grader.as_str())];

    // alice's first reward and her budget below should share one minute of the budget (the
    // budget part copes when they do not).
    minute_with_room(5);

    // Decisions: two for alice, one for a request without a token.
    let a1 = decide(envoy, &as_alice);
    let a2 = decide(envoy, &as_alice);
    let anonymous = decide(envoy, &[]);
    for id in [&a1, &a2] {
        assert!(!id.contains("alice"), "the token names its principal: {id}");
        assert_ne!(fields(id)[4], "-", "alice's decision is not bound: {id}");
    }
    assert_eq!(fields(&a1)[4], fields(&a2)[4], "one principal, one tag");
    assert_eq!(fields(&anonymous)[4], "-", "{anonymous}");
    // (jwt_authn let every request through, and the upstream saw the token.)
    assert_eq!(
        h.upstreams.hits("sentiment-v1") + h.upstreams.hits("sentiment-v2"),
        3
    );

    // alice's decision rewarded by bob, and by a request without a token: 403 `unauthorized`,
    // nothing learned.
    assert_refused(&reward(envoy, &a1, 0.0, &as_bob), 403, "unauthorized");
    assert_refused(&reward(envoy, &a1, 0.0, &[]), 403, "unauthorized");
    assert_eq!(feedback_counter(envoy, "rejected.unauthorized", 2), 2);
    assert_eq!(observations(envoy, "sentiment"), 0);
    // By alice herself: accepted.
    let before = now_unix() / 60;
    assert_eq!(accepted(&reward(envoy, &a1, 1.0, &as_alice)), 1);
    let after = now_unix() / 60;
    // Spent: replayed (by the evaluator, whom no budget holds; a replay by alice would be
    // charged to her budget today, see `a_refused_reward_does_not_spend_the_budget`).
    assert_refused(&reward(envoy, &a1, 1.0, &as_grader), 409, "replayed");

    // The decision of a request without a token: alice may not reward it, the evaluator may.
    assert_refused(
        &reward(envoy, &anonymous, 1.0, &as_alice),
        403,
        "unauthorized",
    );
    assert_eq!(observations(envoy, "sentiment"), 1);
    assert_eq!(accepted(&reward(envoy, &anonymous, 1.0, &as_grader)), 2);
    // The evaluator may reward alice's other decision too (and is not charged to any budget).
    assert_eq!(accepted(&reward(envoy, &a2, 0.5, &as_grader)), 3);
    assert_eq!(observations(envoy, "sentiment"), 3);
    assert_eq!(feedback_counter(envoy, "rejected.unauthorized", 3), 3);
    assert_eq!(feedback_counter(envoy, "accepted", 3), 3);
    // A token the jwt_authn filter refuses never reaches the filter's feedback path.
    let forged = format!(
        "Bearer {}",
        sign_hs256(
            b"another-key-of-the-same-length-as-the-real-one!!",
            &json!({ "iss": JWT_ISSUER, "sub": "alice", "exp": now_unix() + 3600 })
        )
    );
    let denied = envoy.counter("http.inference.jwt_authn.denied");
    let r = reward(envoy, &a2, 1.0, &[("authorization", forged.as_str())]);
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(
        envoy.counter_eventually("http.inference.jwt_authn.denied", denied + 1),
        denied + 1
    );

    // 2. The budget: 2 rewards a minute for alice. Her reward above counts if it fell in this
    //    minute; a boundary between her reward and now (or too close ahead) starts afresh.
    let ids: Vec<String> = (0..3).map(|_| decide(envoy, &as_alice)).collect();
    let mut minute = minute_with_room(5);
    let used = if before != after {
        // Which of the two minutes was her reward charged to? Start on a fresh one.
        minute = minute_with_room(60);
        0
    } else {
        usize::from(after == minute)
    };
    let mut obs = 3;
    for id in &ids[..2 - used] {
        obs += 1;
        assert_eq!(accepted(&reward(envoy, id, 0.0, &as_alice)), obs);
    }
    let refused_id = &ids[2 - used];
    let t0 = now_unix();
    let r = reward(envoy, refused_id, 0.0, &as_alice);
    let t1 = now_unix();
    assert_refused(&r, 429, "over_budget");
    assert_eq!(
        t1 / 60,
        minute,
        "the budget part crossed a minute boundary; the guard above should prevent that"
    );
    let retry_after: u64 = r
        .header("retry-after")
        .unwrap_or_else(|| panic!("429 without retry-after: {:?}", r.headers))
        .parse()
        .expect("retry-after in seconds");
    assert!((1..=60).contains(&retry_after), "retry-after {retry_after}");
    // The start of the next minute, as Envoy's clock saw it while answering.
    assert!(
        (60 - t1 % 60..=60 - t0 % 60).contains(&retry_after),
        "retry-after {retry_after}, sent at {t0}, answered by {t1}"
    );
    assert_eq!(feedback_counter(envoy, "rejected.over_budget", 1), 1);
    assert_eq!(
        observations(envoy, "sentiment"),
        obs,
        "a refused reward was learned"
    );
    // bob's budget is his own.
    let b1 = decide(envoy, &as_bob);
    obs += 1;
    assert_eq!(accepted(&reward(envoy, &b1, 1.0, &as_bob)), obs);
    // The refused id was not spent: the evaluator (no budget) can still reward it.
    obs += 1;
    assert_eq!(accepted(&reward(envoy, refused_id, 1.0, &as_grader)), obs);
    assert_eq!(observations(envoy, "sentiment"), obs);
    assert_eq!(feedback_counter(envoy, "accepted", obs), obs);
    assert_eq!(feedback_counter(envoy, "rejected.unauthorized", 3), 3);
    assert_eq!(
        envoy.wasm_counter("inference_router.feedback.rejected.replayed"),
        1
    );
    // No feedback request reached an upstream.
    for c in ["sentiment-v1", "sentiment-v2"] {
        assert!(
            h.upstreams
                .received(c)
                .iter()
                .all(|r| r.path != FEEDBACK_PATH),
            "feedback reached {c}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 3, 7, 8. Binding by header; headers a client controls; the state endpoint's token
// ---------------------------------------------------------------------------------------------

#[test]
fn header_binding_client_headers_and_the_state_token() {
    let cfg = json!({
        "models": [
            thompson_sentiment(),
            { "name": "iris",
              "targets": [ { "name": "v1", "cluster": "iris-v1", "weight": 1 },
                           { "name": "v2", "cluster": "iris-v2", "weight": 0 } ],
              "fallback": ["v2"], "retry": true, "cooldown_seconds": 0 }
        ],
        "feedback": {
            "path": FEEDBACK_PATH, "signing_key": SIGNING_KEY,
            "bind": { "header": USER_HEADER }, "evaluators": [ EVALUATOR ]
        },
        "state_endpoint": state_section(),
    });
    let h = Harness::demo(&cfg);
    let envoy = &h.envoy;

    // 3. Bound to the x-user header: bob may not reward alice's decision; alice may.
    let a = decide(envoy, &[(USER_HEADER, "alice")]);
    assert_ne!(fields(&a)[4], "-", "{a}");
    assert_refused(
        &reward(envoy, &a, 1.0, &[(USER_HEADER, "bob")]),
        403,
        "unauthorized",
    );
    assert_refused(&reward(envoy, &a, 1.0, &[]), 403, "unauthorized");
    assert_eq!(observations(envoy, "sentiment"), 0);
    assert_eq!(
        accepted(&reward(envoy, &a, 1.0, &[(USER_HEADER, "alice")])),
        1
    );
    assert_eq!(feedback_counter(envoy, "rejected.unauthorized", 2), 2);
    assert_eq!(feedback_counter(envoy, "accepted", 1), 1);

    // 8. The state endpoint: the scheme in any case; the token exact.
    let r = envoy
        .send(&Request::get(STATE_PATH).header("authorization", &format!("bearer {STATE_TOKEN}")));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json()["models"]["sentiment"]["observations"],
        1,
        "{}",
        r.text()
    );
    let short = &STATE_TOKEN[..STATE_TOKEN.len() - 1];
    for scheme in ["bearer", "Bearer"] {
        let r = envoy
            .send(&Request::get(STATE_PATH).header("authorization", &format!("{scheme} {short}")));
        assert_eq!(
            r.status,
            401,
            "{scheme} <token minus one character>: {}",
            r.text()
        );
        assert!(
            !r.text().contains(short),
            "401 leaks the token: {}",
            r.text()
        );
    }

    // 7a. A client's x-inference-shadow is removed before the request goes upstream.
    let r = envoy.send(
        &Request::get("/v2/models/sentiment/ready")
            .header("x-inference-shadow", "sentiment")
            .header(USER_HEADER, "alice"),
    );
    let echo = r.echo();
    assert!(echo.cluster.starts_with("sentiment-v"), "{echo:?}");
    assert_eq!(echo.headers.get("x-inference-shadow"), None, "{echo:?}");
    for c in ["sentiment-v1", "sentiment-v2"] {
        for got in h.upstreams.received(c) {
            assert!(
                !got.headers.contains_key("x-inference-shadow"),
                "{c} received x-inference-shadow: {:?}",
                got.headers
            );
        }
    }

    // 7b. A retried request: iris-v1 answers 503, the callout to iris-v2 carries the client's
    //     trace headers (and no x-inference-shadow either).
    h.upstreams
        .set_behaviour("iris-v1", Behaviour::default().with_failures(1.0, 503));
    let trace: BTreeMap<&str, &str> = [
        (
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ),
        ("x-request-id", "3c9a1f0e-trust-e2e-7b1d-000000000001"),
        ("x-b3-traceid", "80f198ee56343ba864fe8b2a57d3eff7"),
    ]
    .into();
    let mut req = Request::get("/v2/models/iris/ready").header("x-inference-shadow", "iris");
    for (n, v) in &trace {
        req = req.header(n, v);
    }
    let before = (h.upstreams.hits("iris-v1"), h.upstreams.hits("iris-v2"));
    let r = envoy.send(&req);
    let echo = assert_upstream(&r, "iris-v2");
    assert_meta(&r, "attempts", Some("v1,v2"));
    assert_eq!(
        (h.upstreams.hits("iris-v1"), h.upstreams.hits("iris-v2")),
        (before.0 + 1, before.1 + 1)
    );
    for (n, v) in &trace {
        assert_eq!(
            echo.headers.get(*n).map(String::as_str),
            Some(*v),
            "{n} on the retry; the retry carried {:?}",
            echo.headers
        );
    }
    assert_eq!(echo.headers.get("x-inference-shadow"), None, "{echo:?}");
    for c in ["iris-v1", "iris-v2"] {
        for got in h.upstreams.received(c) {
            assert!(
                !got.headers.contains_key("x-inference-shadow"),
                "{c} received x-inference-shadow: {:?}",
                got.headers
            );
        }
    }
    assert_eq!(envoy.wasm_counter("inference_router.retry.recovered"), 1);
}

// ---------------------------------------------------------------------------------------------
// 4, 5. Key rotation and TTL changes by LDS reload
// ---------------------------------------------------------------------------------------------

const OLD: (&str, &str) = ("old", "old-signing-key-0123456789abcdef");
const NEW: (&str, &str) = ("new", "new-signing-key-fedcba9876543210");

fn keyed_config(keys: &[(&str, &str)], ttl_seconds: u64, token: &str) -> Value {
    let keys: Vec<Value> = keys
        .iter()
        .map(|(id, key)| json!({ "id": id, "key": key }))
        .collect();
    json!({
        "models": [ thompson_sentiment() ],
        "feedback": { "path": FEEDBACK_PATH, "signing_keys": keys, "ttl_seconds": ttl_seconds },
        "state_endpoint": { "path": STATE_PATH, "token": token },
    })
}

/// Reloads the listener and waits until the new configuration answers on 5 new connections in
/// a row (so on both workers): its state token works.
#[track_caller]
fn reload(envoy: &mut Envoy, cfg: &Value, token: &str) {
    envoy
        .reload_listener(&cfg.to_string())
        .unwrap_or_else(|c| panic!("Envoy refused the listener: {c:?}\n{}", envoy.log()));
    let mut streak = 0;
    wait_for(
        Duration::from_secs(10),
        "the reloaded configuration answers",
        || {
            let r = envoy.send(
                &Request::get(STATE_PATH).header("authorization", &format!("Bearer {token}")),
            );
            streak = if r.status == 200 { streak + 1 } else { 0 };
            (streak >= 5).then_some(())
        },
    );
}

#[test]
fn signing_keys_rotate_and_ttl_changes_by_reload() {
    let upstreams = Upstreams::start_default();
    let tok = |n: u32| format!("trust-state-token-0123456789-{n}");
    let mut envoy = Envoy::start(
        &EnvoyConfig::lds(&keyed_config(&[OLD], 3600, &tok(1))),
        &upstreams,
    );

    // 4. Key rotation. Decisions A and B under the old key.
    let a = decide(&envoy, &[]);
    let b = decide(&envoy, &[]);
    for id in [&a, &b] {
        assert_eq!(fields(id)[5], "old", "{id}");
    }
    // The new key added first: it signs from now on, the old one still verifies.
    reload(
        &mut envoy,
        &keyed_config(&[NEW, OLD], 3600, &tok(2)),
        &tok(2),
    );
    let c = decide(&envoy, &[]);
    let d = decide(&envoy, &[]);
    for id in [&c, &d] {
        assert_eq!(fields(id)[5], "new", "{id}");
    }
    assert_eq!(accepted(&reward(&envoy, &a, 1.0, &[])), 1);
    assert_eq!(accepted(&reward(&envoy, &c, 1.0, &[])), 2);
    // Relabelled with the other listed key's id: does not verify.
    let relabelled = d.replacen("~new~", "~old~", 1);
    assert_refused(&reward(&envoy, &relabelled, 1.0, &[]), 403, "forged");
    // The old key removed: its tokens are forged; the new key's are still accepted.
    reload(&mut envoy, &keyed_config(&[NEW], 3600, &tok(3)), &tok(3));
    let r = reward(&envoy, &b, 1.0, &[]);
    assert_refused(&r, 403, "forged");
    assert_eq!(accepted(&reward(&envoy, &d, 1.0, &[])), 3);
    let e = decide(&envoy, &[]);
    assert_eq!(fields(&e)[5], "new", "{e}");
    assert_eq!(accepted(&reward(&envoy, &e, 0.0, &[])), 4);
    assert_eq!(feedback_counter(&envoy, "rejected.forged", 2), 2);
    assert_eq!(feedback_counter(&envoy, "accepted", 4), 4);

    // 5. A TTL reload does not re-open spent ids. Spent under ttl 3600 (e, and d above):
    for (n, ttl) in [(4, 604_800), (5, 60), (6, 3600)] {
        reload(&mut envoy, &keyed_config(&[NEW], ttl, &tok(n)), &tok(n));
        for id in [&d, &e] {
            assert_refused(&reward(&envoy, id, 1.0, &[]), 409, "replayed");
        }
        // And a fresh id of this ttl is accepted once.
        let f = decide(&envoy, &[]);
        let expires: u64 = fields(&f)[2].parse().expect("expiry in seconds");
        let now = now_unix();
        assert!(
            expires >= now + ttl - 5 && expires <= now + ttl + 5,
            "ttl {ttl}: expires {expires}, now {now}"
        );
        assert_eq!(reward(&envoy, &f, 1.0, &[]).status, 200);
        assert_refused(&reward(&envoy, &f, 1.0, &[]), 409, "replayed");
    }
    assert_eq!(feedback_counter(&envoy, "rejected.replayed", 9), 9);
    assert_eq!(feedback_counter(&envoy, "accepted", 7), 7);
    assert_eq!(
        envoy.counter("wasm.inference-router.vm_reload_success"),
        0,
        "a VM crashed"
    );
}

// ---------------------------------------------------------------------------------------------
// 6. A full spent-id store
// ---------------------------------------------------------------------------------------------

#[test]
fn a_full_spent_id_store_refuses_rather_than_accepts() {
    let mut feedback = feedback_section(3600);
    // 1,024 an hour: 16 ids per shard of 64.
    feedback["max_accepted_per_hour"] = json!(1024);
    let h = Harness::demo(&json!({
        "models": [ thompson_sentiment() ],
        "feedback": feedback,
        "state_endpoint": state_section(),
    }));
    let envoy = &h.envoy;
    // Spent ids are kept by the hour of their expiry, in 64 shards by nonce: decisions until 17
    // share one (hour, shard).
    let shard_of = |id: &str| {
        let f = fields(id);
        let expires: u64 = f[2].parse().expect("expiry");
        assert_eq!(f[3].len(), 16, "nonce of {id}");
        let nonce = u64::from_str_radix(f[3], 16).expect("hex nonce");
        (expires / 3600, nonce % 64)
    };
    let mut by_shard: BTreeMap<(u64, u64), Vec<String>> = BTreeMap::new();
    let req = Request::get("/v2/models/sentiment/ready");
    let mut conn = envoy.connect();
    let mut made = 0;
    let full = loop {
        assert!(made < 4000, "no shard reached 17 ids in {made} decisions");
        made += 1;
        let r = conn.send(&req).expect("decision");
        let (id, _) = decision_of(&r);
        let s = shard_of(&id);
        let ids = by_shard.entry(s).or_default();
        ids.push(id);
        if ids.len() == 17 {
            break s;
        }
    };
    conn.close();
    eprintln!("{made} decisions until shard {full:?} had 17");
    let ids = by_shard[&full].clone();
    for (i, id) in ids[..16].iter().enumerate() {
        let r = reward(envoy, id, 1.0, &[]);
        assert_eq!(r.status, 200, "reward {i} of the shard: {}", r.text());
    }
    let r = reward(envoy, &ids[16], 1.0, &[]);
    assert_refused(&r, 503, "full");
    assert_eq!(r.header("retry-after"), None, "{:?}", r.headers);
    assert_eq!(feedback_counter(envoy, "rejected.full", 1), 1);
    // Still full, and the spent ids stay spent.
    assert_refused(&reward(envoy, &ids[16], 1.0, &[]), 503, "full");
    assert_refused(&reward(envoy, &ids[0], 1.0, &[]), 409, "replayed");
    // Another shard still takes ids.
    let other = by_shard
        .iter()
        .find(|(s, ids)| **s != full && !ids.is_empty())
        .map(|(_, ids)| ids[0].clone())
        .expect("another shard");
    assert_eq!(reward(envoy, &other, 1.0, &[]).status, 200);
    assert_eq!(observations(envoy, "sentiment"), 17);
    assert_eq!(feedback_counter(envoy, "accepted", 17), 17);
    assert_eq!(
        envoy.wasm_counter("inference_router.feedback.rejected.replayed"),
        1
    );
}

// ---------------------------------------------------------------------------------------------
// Known filter bug: a refusal after the budget check still spends the budget
// ---------------------------------------------------------------------------------------------

/// `budget_per_minute` counts every reward a principal sends past the binding check, accepted
/// or refused afterwards (docs/configuration.md): a replay uses up the budget like a reward, so
/// replaying cannot be used to probe past it.
#[test]
fn every_reward_past_the_binding_counts_against_the_budget() {
    let h = Harness::demo(&json!({
        "models": [ thompson_sentiment() ],
        "feedback": {
            "path": FEEDBACK_PATH, "signing_key": SIGNING_KEY,
            "bind": { "header": USER_HEADER }, "budget_per_minute": 2
        },
        "state_endpoint": state_section(),
    }));
    let envoy = &h.envoy;
    let as_mallory = [(USER_HEADER, "mallory")];
    let ids: Vec<String> = (0..2).map(|_| decide(envoy, &as_mallory)).collect();
    let minute = minute_with_room(10);
    assert_eq!(accepted(&reward(envoy, &ids[0], 1.0, &as_mallory)), 1);
    assert_refused(&reward(envoy, &ids[0], 1.0, &as_mallory), 409, "replayed");
    let r = reward(envoy, &ids[1], 1.0, &as_mallory);
    assert_eq!(now_unix() / 60, minute, "crossed a minute boundary");
    assert_refused(&r, 429, "over_budget");
}
