//! Traffic splitting: a 90/10 weighted split within statistical bounds, and sticky assignment
//! by header and by cookie across new connections (so both Envoy workers serve each user).
//! Real Envoy, `--concurrency 2`, envoy/demo.yaml.

mod common;

use std::collections::BTreeMap;

use common::*;
use integration::{Connection, Envoy, EnvoyConfig, Harness, Request, Upstreams};
use serde_json::json;

/// Counts per cluster of `n` requests sent round-robin over `conns` keep-alive connections.
fn spread(h: &Harness, n: usize, conns: usize, req: &Request) -> BTreeMap<String, u64> {
    let mut connections: Vec<Connection> = (0..conns).map(|_| h.envoy.connect()).collect();
    let mut counts = BTreeMap::new();
    for i in 0..n {
        let c = &mut connections[i % conns];
        let r = c.send(req).unwrap_or_else(|e| panic!("request {i}: {e}"));
        assert_eq!(r.status, 200, "request {i}: {} {}", r.status, r.text());
        let cluster = r.echo().cluster;
        // The header the filter reports agrees with where the request went.
        let target = r
            .header("x-inference-target")
            .unwrap_or("<none>")
            .to_string();
        assert!(
            cluster.ends_with(&target),
            "cluster {cluster} but x-inference-target {target}"
        );
        *counts.entry(cluster).or_insert(0) += 1;
    }
    for c in connections {
        c.close();
    }
    counts
}

#[test]
fn weighted_split_90_10_within_bounds() {
    let h = Harness::demo(&json!({
        "models": [
            { "name": "sentiment",
              "targets": [ { "name": "v1", "cluster": "sentiment-v1", "weight": 90 },
                           { "name": "v2", "cluster": "sentiment-v2", "weight": 10 } ] }
        ]
    }));
    const N: usize = 2000;
    let counts = spread(&h, N, 8, &Request::get("/v2/models/sentiment/ready"));
    let v1 = counts.get("sentiment-v1").copied().unwrap_or(0);
    let v2 = counts.get("sentiment-v2").copied().unwrap_or(0);
    assert_eq!(v1 + v2, N as u64, "{counts:?}");
    // Binomial(2000, 0.1): mean 200, sigma 13.4. ±6 sigma = [120, 280]: a correct filter fails
    // this about once in 10^9 runs; a 50/50 split (1000) or an ignored weight (0 or 2000) fails.
    assert!(
        (120..=280).contains(&v2),
        "v2 got {v2} of {N} requests; expected 200 ± 80: {counts:?}"
    );

    assert_eq!(
        h.envoy
            .wasm_counter_eventually("inference_router.requests.sentiment.v2", v2),
        v2
    );
    assert_eq!(
        h.envoy
            .wasm_counter_eventually("inference_router.requests.sentiment.v1", v1),
        v1
    );
    assert_eq!(
        h.envoy.wasm_counter("inference_router.decisions.weighted"),
        N as u64
    );
    assert_eq!(h.upstreams.hits("sentiment-v2"), v2);
}

#[test]
fn sticky_by_header_and_cookie() {
    let h = Harness::demo(&json!({
        "models": [
            { "name": "sentiment",
              "targets": [ { "name": "v1", "cluster": "sentiment-v1", "weight": 50 },
                           { "name": "v2", "cluster": "sentiment-v2", "weight": 50 } ],
              "strategy": { "type": "weighted", "sticky": { "header": "x-user-id" } } },
            { "name": "chat",
              "targets": [ { "name": "small", "cluster": "llm-small", "weight": 50 },
                           { "name": "large", "cluster": "llm-large", "weight": 50 } ],
              "strategy": { "type": "weighted", "sticky": { "cookie": "session" } } }
        ]
    }));

    // The same user, 40 requests, each on a NEW connection: Envoy spreads connections over both
    // workers (separate Wasm VMs), and every one must pick the same target.
    let workers_before = h.envoy.worker_connections();
    let mut seen = BTreeMap::new();
    for i in 0..40 {
        let r = h.send(&Request::get("/v2/models/sentiment/ready").header("x-user-id", "alice"));
        assert_eq!(r.status, 200, "request {i}: {}", r.text());
        assert_meta(&r, "reason", Some("sticky"));
        *seen.entry(r.echo().cluster).or_insert(0) += 1;
    }
    assert_eq!(
        seen.len(),
        1,
        "user alice was split across targets: {seen:?}"
    );
    let workers_after = h.envoy.worker_connections();
    let served: Vec<u64> = workers_after
        .iter()
        .map(|(w, n)| n - workers_before.get(w).copied().unwrap_or(0))
        .collect();
    assert!(
        served.len() == 2 && served.iter().all(|n| *n > 0),
        "both workers should have served alice's 40 connections: {served:?}"
    );

    // More users, several new connections each: each stays put.
    for u in 0..10 {
        let user = format!("user-{u}");
        let mut clusters = std::collections::BTreeSet::new();
        for _ in 0..6 {
            let r = h.send(&Request::get("/v2/models/sentiment/ready").header("x-user-id", &user));
            clusters.insert(r.echo().cluster);
        }
        assert_eq!(clusters.len(), 1, "{user} was split: {clusters:?}");
    }

    // Different users spread over both targets (50/50): 400 users, expect 200 ± 6 sigma (60).
    let mut conn = h.envoy.connect();
    let mut per_target: BTreeMap<String, u64> = BTreeMap::new();
    for u in 0..400 {
        let r = conn
            .send(
                &Request::get("/v2/models/sentiment/ready")
                    .header("x-user-id", &format!("customer-{u}@example.com")),
            )
            .expect("request");
        *per_target.entry(r.echo().cluster).or_insert(0) += 1;
    }
    conn.close();
    let v2 = per_target.get("sentiment-v2").copied().unwrap_or(0);
    assert!(
        (140..=260).contains(&v2),
        "400 users over 50/50 sticky targets: {per_target:?}"
    );

    // Cookie stickiness: the `session` cookie among others.
    let mut cookie_clusters = std::collections::BTreeSet::new();
    for i in 0..20 {
        let r = h.send(
            &Request::get("/v2/models/chat/ready")
                .header("cookie", &format!("theme=dark; session=s-12345; n={i}")),
        );
        assert_eq!(r.status, 200, "{}", r.text());
        assert_meta(&r, "reason", Some("sticky"));
        cookie_clusters.insert(r.echo().cluster);
    }
    assert_eq!(
        cookie_clusters.len(),
        1,
        "one session split across targets: {cookie_clusters:?}"
    );
    let mut sessions: BTreeMap<String, u64> = BTreeMap::new();
    let mut conn = h.envoy.connect();
    for s in 0..200 {
        let r = conn
            .send(
                &Request::get("/v2/models/chat/ready")
                    .header("cookie", &format!("session=sess-{s}")),
            )
            .expect("request");
        *sessions.entry(r.echo().cluster).or_insert(0) += 1;
    }
    conn.close();
    // 200 sessions, 50/50: 100 ± 6 sigma (42).
    let large = sessions.get("llm-large").copied().unwrap_or(0);
    assert!(
        (58..=142).contains(&large),
        "200 sessions over 50/50 targets: {sessions:?}"
    );

    // Without the header or cookie: a random draw. A cookie whose name merely ends in
    // `session` is a different cookie.
    let r = h.send(&Request::get("/v2/models/sentiment/ready"));
    assert_eq!(r.status, 200);
    assert_meta(&r, "reason", Some("weighted"));
    let r = h.send(
        &Request::get("/v2/models/chat/ready")
            .header("cookie", "xsession=s-12345; session_old=s-1"),
    );
    assert_eq!(r.status, 200);
    assert_meta(&r, "reason", Some("weighted"));

    let sticky = 40 + 60 + 400 + 20 + 200;
    assert_eq!(
        h.envoy
            .wasm_counter_eventually("inference_router.decisions.sticky", sticky),
        sticky
    );
    assert_eq!(
        h.envoy.wasm_counter("inference_router.decisions.weighted"),
        2
    );
}

/// Where each of `users` lands for `model` through `envoy` (one keep-alive connection).
fn assignments(envoy: &Envoy, users: &[String]) -> Vec<String> {
    let mut conn = envoy.connect();
    let out = users
        .iter()
        .map(|u| {
            let r = conn
                .send(&Request::get("/v2/models/sentiment/ready").header("x-user-id", u))
                .expect("request");
            assert_meta(&r, "reason", Some("sticky"));
            r.echo().cluster
        })
        .collect();
    conn.close();
    out
}

fn sticky_config(w1: u32, w2: u32) -> serde_json::Value {
    json!({
        "models": [
            { "name": "sentiment",
              "targets": [ { "name": "v1", "cluster": "sentiment-v1", "weight": w1 },
                           { "name": "v2", "cluster": "sentiment-v2", "weight": w2 } ],
              "strategy": { "type": "weighted", "sticky": { "header": "x-user-id" } } }
        ]
    })
}

#[test]
fn sticky_assignment_survives_restart_and_reweighting_moves_few_users() {
    let upstreams = Upstreams::start_default();
    let users: Vec<String> = (0..300).map(|u| format!("u{u}")).collect();

    // Two independent Envoy processes (fresh VMs, fresh RNG seeds), same configuration: the
    // same user lands on the same target — stickiness is a hash, not state.
    let a = assignments(
        &Envoy::start(&EnvoyConfig::demo(&sticky_config(50, 50)), &upstreams),
        &users,
    );
    let b = assignments(
        &Envoy::start(&EnvoyConfig::demo(&sticky_config(50, 50)), &upstreams),
        &users,
    );
    assert_eq!(
        a, b,
        "sticky assignment differs between two Envoy instances"
    );

    // Reweighting 50/50 → 60/40 moves only users whose bucket changes owner: nobody goes from
    // v1 to v2, and about 10 % of all users go from v2 to v1.
    let c = assignments(
        &Envoy::start(&EnvoyConfig::demo(&sticky_config(60, 40)), &upstreams),
        &users,
    );
    let v1_to_v2 = a
        .iter()
        .zip(&c)
        .filter(|(x, y)| *x == "sentiment-v1" && *y == "sentiment-v2")
        .count();
    let v2_to_v1 = a
        .iter()
        .zip(&c)
        .filter(|(x, y)| *x == "sentiment-v2" && *y == "sentiment-v1")
        .count();
    assert_eq!(v1_to_v2, 0, "growing v1 moved users from v1 to v2");
    // Binomial(300, 0.1): 30 ± 6 sigma (31).
    assert!(
        (1..=61).contains(&v2_to_v1),
        "{v2_to_v1} of 300 users moved v2 → v1; expected about 30"
    );
}
