//! Learning as one fleet (docs/fleet.md) against the real thing: three Envoys at
//! `--concurrency 2` (envoy/fleet.yaml) and a real 3-member etcd cluster, each test its own.
//! - every replica's state reaches the fleet's totals, and the fleet learns about as well as
//!   one Envoy serving all the traffic (three replicas learning alone do much worse);
//! - a decision id is accepted once fleet-wide, whichever replicas it is sent to, at once or not;
//! - one etcd member going away changes nothing; all going away leaves routing alone and
//!   refuses feedback with 503 + Retry-After; when they return, the counts are exact;
//! - a restarted replica routes from the fleet's posterior on its first request;
//! - a cooldown learned on one replica steers the others;
//! - a replica that goes away is retired, and what it learned stays counted;
//! - etcd with authentication.

mod common;

use std::sync::Barrier;
use std::thread;
use std::time::{Duration, Instant};

use common::learning::*;
use common::vm::{assert_vm_never_crashed, vm_stats};
use inference_router_core::fleet::etcd::{parse_range, range_prefix};
use integration::fleet::{mean_se, rank_sum_z, regret, Fleet};
use integration::{Behaviour, EnvoyConfig, EtcdCluster, Request, Response};
use serde_json::{json, Value};

const SYNC_MS: u64 = 200;
const MODEL: &str = "chat";

fn fleet_section() -> Value {
    json!({ "cluster": "etcd", "prefix": "/e2e", "sync_ms": SYNC_MS })
}

/// `chat` (Thompson) on `llm-large` (`good`) and `llm-small` (`poor`), learning from the
/// responses' status when `implicit`, from feedback only otherwise.
fn config(implicit: bool) -> Value {
    let reward = implicit.then(|| json!({ "status": true }));
    let targets = json!([ { "name": "good", "cluster": "llm-large" },
                          { "name": "poor", "cluster": "llm-small" } ]);
    let mut cfg = learning_config(json!([bandit_model(
        MODEL,
        targets,
        json!({ "type": "thompson" }),
        reward
    )]));
    cfg["fleet"] = fleet_section();
    cfg
}

fn ready() -> Request {
    Request::get(&format!("/v2/models/{MODEL}/ready"))
}

/// A few sync periods: long enough for a contribution to be published and read everywhere.
fn settle() -> Duration {
    Duration::from_millis(SYNC_MS * 15)
}

fn pulls(envoy: &integration::Envoy) -> (f64, f64) {
    let a = arms(&model_state(envoy, MODEL));
    (f(&a["good"]["pulls"]), f(&a["poor"]["pulls"]))
}

#[test]
fn every_replica_reaches_the_fleet_totals_with_about_one_read_and_one_write_per_sync() {
    let fleet = Fleet::start(3, &config(true));
    fleet
        .upstreams
        .set_behaviour("llm-large", Behaviour::success_rate(0.9));
    fleet
        .upstreams
        .set_behaviour("llm-small", Behaviour::success_rate(0.6));
    const N: usize = 300;
    let mut conns: Vec<_> = fleet.envoys.iter().map(|e| e.connect()).collect();
    for i in 0..N {
        let r = conns[i % 3].send(&ready()).unwrap();
        assert!(
            r.header("x-inference-target").is_some(),
            "request {i}: {}",
            r.text()
        );
    }
    let good = fleet.upstreams.hits("llm-large") as f64;
    let poor = fleet.upstreams.hits("llm-small") as f64;
    assert_eq!(good + poor, N as f64);
    // Each replica saw a third of the traffic; within a few syncs each one's view is all of it.
    fleet.wait_all(settle(), "the fleet's totals", |_, e| {
        observations(e, MODEL) == N as u64 && pulls(e) == (good, poor)
    });
    for (i, e) in fleet.envoys.iter().enumerate() {
        let m = model_state(e, MODEL);
        assert_eq!(m["own_observations"], json!(N / 3), "replica {i}: {m}");
        assert_eq!(m["fleet"]["replicas"], json!(2), "replica {i}: {m}");
        assert_eq!(fleet.fleet_stat(i, "replicas"), 3);
        assert_eq!(fleet.fleet_stat(i, "sync.failures"), 0);
        assert_eq!(fleet.fleet_stat(i, "invalid_contributions"), 0);
    }
    // Idle, a replica reads once per sync and writes only a heartbeat (nothing changed): at
    // most one read and one write per sync period.
    let before: Vec<u64> = (0..3)
        .map(|i| fleet.fleet_stat(i, "etcd_requests"))
        .collect();
    let window = Duration::from_secs(3);
    thread::sleep(window);
    let periods = window.as_millis() as u64 / SYNC_MS;
    for (i, b) in before.iter().enumerate() {
        let sent = fleet.fleet_stat(i, "etcd_requests") - b;
        assert!(
            sent >= periods / 2 && sent <= 2 * periods,
            "replica {i} sent {sent} requests to etcd in {window:?} ({periods} sync periods)"
        );
    }
}

#[test]
fn the_fleet_learns_about_as_well_as_one_envoy_serving_all_the_traffic() {
    // 16 runs at once, 1000 requests each at 100/s, sync every 100 ms: the same traffic for
    // one Envoy, a fleet of three, and three alone. `make`-free numbers with more runs:
    // `cargo run -p integration --bin fleet-regret`.
    let r = regret(16, 1000, 100.0, 100);
    let (s, s_se) = mean_se(&r.single);
    let (f, f_se) = mean_se(&r.fleet);
    let (i, i_se) = mean_se(&r.independent);
    let summary = format!(
        "worse target pulled: one Envoy {s:.1}±{s_se:.1} {:?}, fleet {f:.1}±{f_se:.1} {:?}, alone {i:.1}±{i_se:.1} {:?}",
        r.single, r.fleet, r.independent
    );
    eprintln!("{summary}");
    // Within 1.3× of one Envoy, unless the runs say otherwise beyond 2.5 standard errors.
    let se = (f_se.powi(2) + (1.3 * s_se).powi(2)).sqrt();
    assert!(
        f <= 1.3 * s + 2.5 * se,
        "the fleet learns worse than 1.3× one Envoy: {summary}"
    );
    // And the experiment tells the fleet from replicas learning alone: their runs pull the
    // worse target more, by ranks (a single stuck run must not hide it by widening the spread).
    let z = rank_sum_z(&r.independent, &r.fleet);
    assert!(
        i > f && z > 2.0,
        "replicas alone did not do worse than the fleet (rank-sum z {z:.1}): {summary}"
    );
}

/// A decision of `chat` through replica `i`: its id.
fn decision(fleet: &Fleet, i: usize) -> String {
    decision_of(&fleet.send(i, &ready())).0
}

#[test]
fn a_decision_id_counts_once_fleet_wide() {
    let fleet = Fleet::start(3, &config(false));
    let id = decision(&fleet, 0);
    let r = send_feedback(&fleet.envoys[0], &id, 1.0);
    assert_eq!(r.status, 200, "{}", r.text());
    for i in [1, 2] {
        assert_refused(&send_feedback(&fleet.envoys[i], &id, 1.0), 409, "replayed");
    }
    assert_refused(&send_feedback(&fleet.envoys[0], &id, 1.0), 409, "replayed");

    // Each id sent to all three replicas at the same moment: exactly one of the three counts.
    const IDS: usize = 30;
    let ids: Vec<String> = (0..IDS).map(|k| decision(&fleet, k % 3)).collect();
    let barrier = Barrier::new(3);
    let answers: Vec<Vec<u16>> = thread::scope(|s| {
        let handles: Vec<_> = (0..3)
            .map(|i| {
                let (fleet, ids, barrier) = (&fleet, &ids, &barrier);
                s.spawn(move || {
                    ids.iter()
                        .map(|id| {
                            barrier.wait();
                            send_feedback(&fleet.envoys[i], id, 0.5).status
                        })
                        .collect::<Vec<u16>>()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for k in 0..IDS {
        let statuses: Vec<u16> = answers.iter().map(|a| a[k]).collect();
        let mut sorted = statuses.clone();
        sorted.sort();
        assert_eq!(sorted, [200, 409, 409], "id {k}: {statuses:?}");
    }
    let accepted: u64 = (0..3)
        .map(|i| fleet.envoys[i].wasm_counter("inference_router.feedback.accepted"))
        .sum();
    assert_eq!(accepted, 1 + IDS as u64);
    fleet.wait_all(settle(), "every accepted reward in every view", |_, e| {
        observations(e, MODEL) == 1 + IDS as u64
    });
}

/// Sends feedback until it is answered with something other than 503 (at most `tries`),
/// honouring Retry-After; the answers in order.
fn feedback_until_decided(fleet: &Fleet, i: usize, id: &str, tries: usize) -> Vec<Response> {
    let mut answers = Vec::new();
    for _ in 0..tries {
        let r = send_feedback(&fleet.envoys[i], id, 1.0);
        let status = r.status;
        answers.push(r);
        if status != 503 {
            break;
        }
        thread::sleep(Duration::from_millis(250));
    }
    answers
}

#[test]
fn etcd_going_away_leaves_routing_alone_refuses_feedback_and_counts_exactly_when_back() {
    let fleet = Fleet::start(3, &config(false));
    let vms: Vec<_> = fleet.envoys.iter().map(vm_stats).collect();
    let mut accepted = 0u64;
    let mut feedback_round = |fleet: &Fleet, n: usize| {
        for k in 0..n {
            let i = k % 3;
            let id = decision(fleet, i);
            let r = send_feedback(&fleet.envoys[i], &id, 1.0);
            assert_eq!(r.status, 200, "{}", r.text());
            accepted += 1;
        }
    };
    feedback_round(&fleet, 9);

    // One member goes away: nothing changes, at once.
    fleet.etcd.kill(0);
    feedback_round(&fleet, 12);
    fleet.wait_all(settle(), "the accepted rewards in every view", |_, e| {
        observations(e, MODEL) == accepted
    });

    // All go away: routing answers from the last view; feedback is refused, with Retry-After.
    fleet.etcd.kill_all();
    let failures_before: Vec<u64> = (0..3)
        .map(|i| fleet.fleet_stat(i, "sync.failures"))
        .collect();
    let mut refused = Vec::new();
    for k in 0..9 {
        let i = k % 3;
        let (id, _) = decision_of(&fleet.send(i, &ready()));
        let r = send_feedback(&fleet.envoys[i], &id, 1.0);
        assert_refused(&r, 503, "unavailable");
        assert!(
            r.header("retry-after")
                .is_some_and(|v| v.parse::<u64>().is_ok_and(|s| s >= 1)),
            "{:?}",
            r.headers
        );
        refused.push((i, id));
    }
    thread::sleep(Duration::from_millis(SYNC_MS * 3));
    for (i, before) in failures_before.iter().enumerate() {
        assert!(
            fleet.fleet_stat(i, "sync.failures") > *before,
            "replica {i} counted no failed sync"
        );
        assert_eq!(
            observations(&fleet.envoys[i], MODEL),
            accepted,
            "replica {i}"
        );
    }

    // Back: sync resumes, the refused feedback is sent again and counts once.
    fleet.etcd.restart_all();
    let ok_before: Vec<u64> = (0..3)
        .map(|i| fleet.fleet_stat(i, "sync.success"))
        .collect();
    fleet.wait_all(Duration::from_secs(15), "sync resumes", |i, _| {
        fleet.fleet_stat(i, "sync.success") > ok_before[i]
    });
    for (i, id) in &refused {
        let answers = feedback_until_decided(&fleet, *i, id, 40);
        let last = answers.last().map(|r| r.status);
        // 409 only for an attempt whose answer was lost while etcd went away: it was recorded
        // then (and applied once etcd showed it).
        assert!(
            matches!(last, Some(200) | Some(409)),
            "{:?}",
            answers
                .iter()
                .map(|r| (r.status, r.text()))
                .collect::<Vec<_>>()
        );
        accepted += 1;
    }
    fleet.wait_all(
        settle(),
        "every accepted reward, exactly once, in every view",
        |_, e| observations(e, MODEL) == accepted,
    );
    for (i, e) in fleet.envoys.iter().enumerate() {
        let applied = e.wasm_counter("inference_router.feedback.accepted");
        assert!(applied <= accepted, "replica {i}");
        assert_vm_never_crashed(e, &vms[i]);
    }
    let total: u64 = fleet
        .envoys
        .iter()
        .map(|e| e.wasm_counter("inference_router.feedback.accepted"))
        .sum();
    assert_eq!(
        total, accepted,
        "accepted feedback == observations, fleet-wide"
    );
}

#[test]
fn a_restarted_replica_routes_from_the_fleets_posterior_on_its_first_request() {
    let mut fleet = Fleet::start(3, &config(true));
    // `poor` always fails: the fleet learns it quickly.
    fleet
        .upstreams
        .set_behaviour("llm-small", Behaviour::success_rate(0.0));
    for k in 0..240 {
        let r = fleet.send(k % 3, &ready());
        assert_eq!(
            r.header("x-inference-reason"),
            Some("bandit"),
            "{}",
            r.text()
        );
    }
    fleet.wait_all(settle(), "240 observations", |_, e| {
        observations(e, MODEL) == 240
    });
    let (_, poor_before) = pulls(&fleet.envoys[0]);
    fleet.restart(2);
    // From the prior, each request would go to `poor` half of the time.
    let hits = fleet.upstreams.hits("llm-small");
    let mut conn = fleet.envoys[2].connect();
    for k in 0..20 {
        let r = conn.send(&ready()).unwrap();
        assert_eq!(
            r.header("x-inference-target"),
            Some("good"),
            "request {k} after the restart"
        );
    }
    assert_eq!(fleet.upstreams.hits("llm-small"), hits);
    let m = model_state(&fleet.envoys[2], MODEL);
    assert!(
        m["observations"].as_u64().is_some_and(|o| o >= 240),
        "the restarted replica's view: {m}"
    );
    assert!(pulls(&fleet.envoys[2]).1 >= poor_before, "{m}");
}

#[test]
fn a_cooldown_learned_on_one_replica_steers_the_others() {
    let cfg = json!({
        "models": [ { "name": MODEL,
            "targets": [ { "name": "primary", "cluster": "llm-large", "weight": 1 },
                         { "name": "backup", "cluster": "llm-small", "weight": 0 } ],
            "fallback": ["backup"], "cooldown_seconds": 60 } ],
        "fleet": fleet_section(),
    });
    let fleet = Fleet::start(3, &cfg);
    fleet.upstreams.set_behaviour(
        "llm-large",
        Behaviour::default()
            .with_failures(1.0, 503)
            .with_header("retry-after", "30"),
    );
    let first = fleet.send(0, &ready());
    assert_eq!(first.status, 503);
    assert_eq!(first.header("x-inference-target"), Some("primary"));
    // Replica 0 cools `primary` down at once; the others within a few syncs.
    let r = fleet.send(0, &ready());
    assert_eq!(
        (r.status, r.header("x-inference-reason")),
        (200, Some("fallback"))
    );
    let deadline = Instant::now() + settle();
    for i in [1, 2] {
        loop {
            let r = fleet.send(i, &ready());
            if r.header("x-inference-reason") == Some("fallback") {
                assert_eq!(r.header("x-inference-target"), Some("backup"));
                break;
            }
            assert!(
                Instant::now() < deadline,
                "replica {i} still routes to primary"
            );
            thread::sleep(Duration::from_millis(SYNC_MS / 2));
        }
    }
    // Whatever the others sent to `primary` before the cooldown reached them failed; after it,
    // nobody does.
    let hits = fleet.upstreams.hits("llm-large");
    for k in 0..9 {
        let r = fleet.send(k % 3, &ready());
        assert_eq!(
            (r.status, r.header("x-inference-target")),
            (200, Some("backup"))
        );
    }
    assert_eq!(fleet.upstreams.hits("llm-large"), hits);
}

#[test]
fn a_replica_that_goes_away_is_retired_and_what_it_learned_stays_counted() {
    let mut cfg = config(true);
    cfg["fleet"]["retire_after_seconds"] = json!(10);
    let mut fleet = Fleet::start(3, &cfg);
    for k in 0..90 {
        assert_eq!(fleet.send(k % 3, &ready()).status, 200);
    }
    fleet.wait_all(settle(), "90 observations", |_, e| {
        observations(e, MODEL) == 90
    });
    let gone = fleet.envoys.remove(2);
    drop(gone);
    // Quiet for 10 s: one of the two others folds its contribution into the retired document.
    let deadline = Instant::now() + Duration::from_secs(20);
    while fleet.fleet_stat(0, "retired") + fleet.fleet_stat(1, "retired") == 0 {
        assert!(
            Instant::now() < deadline,
            "nobody retired the replica that went away"
        );
        thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        fleet.fleet_stat(0, "retired") + fleet.fleet_stat(1, "retired"),
        1
    );
    thread::sleep(settle());
    for e in &fleet.envoys {
        let m = model_state(e, MODEL);
        assert_eq!(m["observations"], json!(90), "{m}");
        assert_eq!(m["fleet"]["replicas"], json!(1), "{m}");
    }
    // In etcd: two replica keys and the retired document.
    let req = range_prefix("/e2e/v1/inference-router/learned/");
    let (status, body) = fleet
        .etcd
        .post(0, req.path, &String::from_utf8(req.body).unwrap())
        .unwrap();
    assert_eq!(status, 200, "{body}");
    let keys: Vec<String> = parse_range(body.as_bytes())
        .unwrap()
        .kvs
        .into_iter()
        .map(|kv| String::from_utf8(kv.key).unwrap())
        .collect();
    assert_eq!(keys.len(), 3, "{keys:?}");
    assert!(
        keys.iter().any(|k| k.ends_with("/learned/retired")),
        "{keys:?}"
    );
}

#[test]
fn etcd_with_authentication() {
    let mut cfg = config(false);
    cfg["fleet"]["auth"] = json!({ "username": "root", "password": "fleet-secret" });
    // Envoy spreads requests over every member: tokens must be valid on all of them (JWT),
    // not only on the member that issued them (etcd's default "simple" tokens).
    let mut fleet = Fleet::start_on(
        EtcdCluster::start_with_jwt(3),
        0,
        EnvoyConfig::new("fleet.yaml", cfg.to_string()),
    );
    fleet.etcd.enable_auth("fleet-secret");
    for _ in 0..2 {
        let e = fleet.start_envoy();
        fleet.envoys.push(e);
    }
    let id = decision(&fleet, 0);
    assert_eq!(send_feedback(&fleet.envoys[0], &id, 1.0).status, 200);
    assert_refused(&send_feedback(&fleet.envoys[1], &id, 1.0), 409, "replayed");
    fleet.wait_all(settle(), "the reward in both views", |_, e| {
        observations(e, MODEL) == 1
    });
    // A wrong password: nothing reaches the fleet's keys; feedback is refused, not lost.
    let mut wrong = cfg.clone();
    wrong["fleet"]["auth"]["password"] = json!("not-it");
    let outsider = integration::Envoy::start_with_ports(
        &EnvoyConfig::new("fleet.yaml", wrong.to_string()),
        &fleet.ports(),
    );
    let (id, _) = decision_of(&outsider.send(&ready()));
    assert_refused(&send_feedback(&outsider, &id, 1.0), 503, "unavailable");
    thread::sleep(Duration::from_millis(SYNC_MS * 3));
    assert_eq!(
        outsider.wasm_counter("inference_router.fleet.sync.success"),
        0
    );
    assert!(outsider.wasm_counter("inference_router.fleet.sync.failures") > 0);
}
