//! Live deployment state (issue 12, docs/load.md) against the real Envoy at `--concurrency 2`
//! (envoy/load.yaml) and fake loaded model servers (integration/src/loaded.rs) that answer more
//! slowly the more requests they hold and report their load in ORCA form:
//! - `least_loaded` with `capacity` keeps each server's in-flight under its capacity and sends
//!   the slow server less than a weighted split does (p50 / p99 of both printed, same run);
//! - a slot held by a client that gave up, or by a request whose upstream reset, comes back;
//! - inside cluster `pool` (Envoy's override_host policy), the filter picks the pod: a pod that
//!   reports a queue loses its traffic, endpoint capacity holds per pod, a conversation stays on
//!   one pod.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::learning::wait_for;
use integration::{Envoy, EnvoyConfig, LoadBehaviour, LoadMode, LoadedServers, Request};
use serde_json::{json, Value};

const SERVERS: [&str; 5] = ["fast", "slow", "pool-0", "pool-1", "pool-2"];

fn start(servers: &LoadedServers, plugin: &Value) -> Envoy {
    Envoy::start_with_ports(
        &EnvoyConfig::new("load.yaml", plugin.to_string()),
        &servers.ports(),
    )
}

fn chat(system: &str) -> Request {
    Request::post("/v1/chat/completions").json(&json!({
        "model": "chat",
        "messages": [{"role": "system", "content": system}, {"role": "user", "content": "hello"}]
    }))
}

fn in_flight_gauge(envoy: &Envoy, target: &str) -> Option<u64> {
    envoy.stat(&format!(
        "wasmcustom.inference_router.load.in_flight.chat.{target}"
    ))
}

/// Waits until the filter's in-flight gauge of `target` reads 0.
fn drained(envoy: &Envoy, target: &str) {
    wait_for(
        Duration::from_secs(10),
        &format!("{target} drained"),
        || (in_flight_gauge(envoy, target) == Some(0)).then_some(()),
    );
}

/// Latencies (ms) of the answered requests, and the 503s, of `clients` clients sending
/// `per_client` requests each, back to back.
fn drive(envoy: &Envoy, clients: usize, per_client: usize) -> (Vec<f64>, u64) {
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let refused = Arc::new(Mutex::new(0u64));
    thread::scope(|s| {
        for c in 0..clients {
            let (latencies, refused) = (Arc::clone(&latencies), Arc::clone(&refused));
            s.spawn(move || {
                let mut conn = envoy.connect();
                for i in 0..per_client {
                    let t = Instant::now();
                    let r = conn
                        .send(&chat(&format!("client {c} turn {i}")))
                        .expect("answer");
                    match r.status {
                        200 => latencies
                            .lock()
                            .unwrap()
                            .push(t.elapsed().as_secs_f64() * 1e3),
                        503 => {
                            assert_eq!(r.header("retry-after"), Some("1"), "{}", r.text());
                            *refused.lock().unwrap() += 1;
                            thread::sleep(Duration::from_millis(20));
                        }
                        other => panic!("status {other}: {}", r.text()),
                    }
                }
            });
        }
    });
    let mut l = latencies.lock().unwrap().clone();
    l.sort_by(f64::total_cmp);
    let refused = *refused.lock().unwrap();
    (l, refused)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or(f64::NAN)
}

fn two_targets(strategy: Value, capacity: Option<u32>) -> Value {
    let target = |name: &str| {
        let mut t = json!({ "name": name, "cluster": name, "weight": 1 });
        if let Some(c) = capacity {
            t["capacity"] = json!(c);
        }
        t
    };
    json!({ "models": [{ "name": "chat", "strategy": strategy,
                         "targets": [target("fast"), target("slow")] }] })
}

#[test]
fn least_loaded_with_capacity_keeps_servers_under_capacity_and_the_slow_one_loses_traffic() {
    const CLIENTS: usize = 12;
    const PER_CLIENT: usize = 20;
    const CAPACITY: u64 = 8;
    let servers = LoadedServers::start(&SERVERS);
    servers.set_behaviour("fast", LoadBehaviour::latency(10, 10));
    servers.set_behaviour("slow", LoadBehaviour::latency(40, 40));

    let weighted = start(&servers, &two_targets(json!({ "type": "weighted" }), None));
    let (w_lat, w_refused) = drive(&weighted, CLIENTS, PER_CLIENT);
    let w_slow = servers.hits("slow");
    let w_max = servers.max_in_flight("slow");
    drop(weighted);

    let before = (servers.hits("fast"), servers.hits("slow"));
    servers.reset_max();
    let loaded = start(
        &servers,
        &two_targets(json!({ "type": "least_loaded" }), Some(CAPACITY as u32)),
    );
    let (l_lat, l_refused) = drive(&loaded, CLIENTS, PER_CLIENT);
    let l_fast = servers.hits("fast") - before.0;
    let l_slow = servers.hits("slow") - before.1;
    println!(
        "weighted:     p50 {:.0} ms, p99 {:.0} ms, slow served {w_slow} of {}, slow max in flight {w_max}, 503s {w_refused}",
        percentile(&w_lat, 0.5),
        percentile(&w_lat, 0.99),
        w_lat.len()
    );
    println!(
        "least_loaded: p50 {:.0} ms, p99 {:.0} ms, slow served {l_slow} of {}, max in flight fast {} slow {} (capacity {CAPACITY}), 503s {l_refused}",
        percentile(&l_lat, 0.5),
        percentile(&l_lat, 0.99),
        l_lat.len(),
        servers.max_in_flight("fast"),
        servers.max_in_flight("slow"),
    );
    assert_eq!(w_refused, 0);
    assert_eq!(
        w_lat.len() + l_lat.len(),
        2 * CLIENTS * PER_CLIENT - l_refused as usize
    );
    assert!(
        servers.max_in_flight("fast") <= CAPACITY,
        "fast over capacity"
    );
    assert!(
        servers.max_in_flight("slow") <= CAPACITY,
        "slow over capacity"
    );
    // The weighted split sends the slow server about half; least_loaded much less.
    let w_share = w_slow as f64 / (CLIENTS * PER_CLIENT) as f64;
    let l_share = l_slow as f64 / (l_fast + l_slow) as f64;
    assert!(w_share > 0.35, "weighted share of slow {w_share}");
    assert!(l_share < 0.3, "least_loaded share of slow {l_share}");
    assert!(loaded.wasm_counter("inference_router.decisions.least_loaded") > 0);
    drained(&loaded, "fast");
    drained(&loaded, "slow");
}

/// Opens a request that the server holds (mode `Hang`); returns the open socket.
fn held_request(envoy: &Envoy) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", envoy.port())).expect("connect");
    s.write_all(&chat("held").to_bytes()).expect("send");
    s
}

#[test]
fn slots_come_back_after_client_aborts_and_upstream_resets() {
    let servers = LoadedServers::start(&SERVERS);
    let plugin = json!({ "models": [{ "name": "chat",
        "targets": [{ "name": "slow", "cluster": "slow", "weight": 1, "capacity": 2 }] }] });
    let envoy = start(&servers, &plugin);
    servers.set_behaviour("slow", LoadBehaviour::default().with_mode(LoadMode::Hang));
    let held = [held_request(&envoy), held_request(&envoy)];
    assert_eq!(
        servers.wait_in_flight("slow", 2, Duration::from_secs(10)),
        2
    );
    let over = envoy.send(&chat("third"));
    assert_eq!(over.status, 503, "{}", over.text());
    assert_eq!(over.header("retry-after"), Some("1"));
    assert_eq!(over.json()["error"], "over_capacity");
    assert_eq!(envoy.wasm_counter("inference_router.load.over_capacity"), 1);
    assert_eq!(
        servers.hits("slow"),
        2,
        "the refused request never reached the server"
    );
    // The clients give up: their slots come back.
    drop(held);
    drained(&envoy, "slow");
    assert_eq!(
        envoy.counter("cluster.slow.upstream_rq_timeout"),
        0,
        "the slots came back because the clients left, not by the route timeout"
    );
    // The upstream resets every connection: Envoy answers 503 itself, and slots come back.
    servers.set_mode("slow", LoadMode::Reset);
    for _ in 0..6 {
        assert_eq!(envoy.send(&chat("reset")).status, 503);
    }
    drained(&envoy, "slow");
    assert_eq!(envoy.wasm_counter("inference_router.load.over_capacity"), 1);
    // Both slots are free again: two requests at a time pass.
    servers.set_behaviour("slow", LoadBehaviour::latency(200, 0));
    thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| assert_eq!(envoy.send(&chat("together")).status, 200));
        }
    });
    assert_eq!(envoy.wasm_counter("inference_router.load.over_capacity"), 1);
    for _ in 0..4 {
        assert_eq!(envoy.send(&chat("after")).status, 200);
    }
    drained(&envoy, "slow");
}

fn pool(extra: Value, servers: &LoadedServers) -> Value {
    let endpoints = ["pool-0", "pool-1", "pool-2"].map(|p| servers.address(p));
    let mut target = json!({ "name": "pool", "cluster": "pool", "weight": 1,
        "endpoints": endpoints });
    let mut model = json!({ "name": "chat", "targets": [] });
    for (k, v) in extra.as_object().into_iter().flatten() {
        if k == "affinity" {
            model[k] = v.clone();
        } else {
            target[k] = v.clone();
        }
    }
    model["targets"] = json!([target]);
    json!({ "models": [model] })
}

fn pool_hits(servers: &LoadedServers) -> [u64; 3] {
    ["pool-0", "pool-1", "pool-2"].map(|p| servers.hits(p))
}

#[test]
fn the_filter_picks_the_pod_and_a_pod_reporting_a_queue_loses_its_traffic() {
    let servers = LoadedServers::start(&SERVERS);
    let envoy = start(&servers, &pool(json!({}), &servers));
    for p in ["pool-0", "pool-2"] {
        servers.set_behaviour(p, LoadBehaviour::latency(2, 0).with_slots(100));
    }
    // pool-1 has no slot to spare: every answer reports a queue and a full KV cache.
    servers.set_behaviour(
        "pool-1",
        LoadBehaviour::latency(2, 0).with_slots(0).with_kv_slots(1),
    );
    for i in 0..30 {
        let r = envoy.send(&chat(&format!("warm {i}")));
        assert_eq!(r.status, 200);
        assert_eq!(
            r.header("endpoint-load-metrics"),
            None,
            "reports stay with the filter"
        );
    }
    let before = pool_hits(&servers);
    assert!(
        before[1] > 0,
        "pool-1 was tried before it reported: {before:?}"
    );
    for i in 0..60 {
        assert_eq!(envoy.send(&chat(&format!("after {i}"))).status, 200);
    }
    let after = pool_hits(&servers);
    let gained = [0, 1, 2].map(|i| after[i] - before[i]);
    println!("per-pod hits: warm-up {before:?}, after pool-1 reported its queue {gained:?}");
    assert_eq!(gained[1], 0, "pool-1 reported a queue: {gained:?}");
    assert!(
        gained[0] > 10 && gained[2] > 10,
        "the others share it: {gained:?}"
    );
    assert!(envoy.wasm_counter("inference_router.load.reports") >= 90);
}

#[test]
fn endpoint_capacity_holds_per_pod_and_a_conversation_stays_on_its_pod() {
    let servers = LoadedServers::start(&SERVERS);
    let envoy = start(
        &servers,
        &pool(
            json!({ "endpoint_capacity": 1, "affinity": { "messages": 1 } }),
            &servers,
        ),
    );
    for p in ["pool-0", "pool-1", "pool-2"] {
        servers.set_behaviour(p, LoadBehaviour::latency(1, 0));
    }
    for _ in 0..12 {
        assert_eq!(envoy.send(&chat("you are a pirate")).status, 200);
    }
    let hits = pool_hits(&servers);
    assert_eq!(
        hits.iter().filter(|&&h| h == 12).count(),
        1,
        "one pod: {hits:?}"
    );
    for i in 0..30 {
        assert_eq!(envoy.send(&chat(&format!("conversation {i}"))).status, 200);
    }
    let spread = pool_hits(&servers);
    assert!(spread.iter().all(|&h| h > 0), "others spread: {spread:?}");
    // Three held requests fill the three pods (one each); a fourth is refused.
    for p in ["pool-0", "pool-1", "pool-2"] {
        servers.set_mode(p, LoadMode::Hang);
    }
    let held: Vec<_> = (0..3).map(|_| held_request(&envoy)).collect();
    for p in ["pool-0", "pool-1", "pool-2"] {
        assert_eq!(
            servers.wait_in_flight(p, 1, Duration::from_secs(10)),
            1,
            "{p}"
        );
    }
    assert_eq!(envoy.send(&chat("fourth")).status, 503);
    drop(held);
    drained(&envoy, "pool");
}

#[test]
fn pods_seen_answering_are_picked_like_configured_ones() {
    let servers = LoadedServers::start(&SERVERS);
    let plugin = json!({ "models": [{ "name": "chat", "targets": [{ "name": "pool",
        "cluster": "pool", "weight": 1, "observe_endpoints": true }] }] });
    let envoy = start(&servers, &plugin);
    for p in ["pool-0", "pool-2"] {
        servers.set_behaviour(p, LoadBehaviour::latency(1, 0).with_slots(100));
    }
    servers.set_behaviour(
        "pool-1",
        LoadBehaviour::latency(1, 0).with_slots(0).with_kv_slots(1),
    );
    // The filter learns the pods from Envoy's `upstream.address` as they answer: the first
    // request, and one in 16 after, are left to Envoy's round robin.
    for i in 0..120 {
        assert_eq!(envoy.send(&chat(&format!("warm {i}"))).status, 200);
    }
    let before = pool_hits(&servers);
    assert!(before.iter().all(|&h| h > 0), "{before:?}");
    const N: u64 = 160;
    for i in 0..N {
        assert_eq!(envoy.send(&chat(&format!("after {i}"))).status, 200);
    }
    let after = pool_hits(&servers);
    let gained = [0, 1, 2].map(|i| after[i] - before[i]);
    println!("observed pods: warm-up {before:?}, then {gained:?}");
    // pool-1 reports a queue: only exploring requests (1 in 16, a third of them) reach it;
    // expected ~3.3 of 160, at most 16 allowed.
    assert!(gained[1] <= N / 10, "{gained:?}");
    assert!(gained[0] > N / 4 && gained[2] > N / 4, "{gained:?}");
    drained(&envoy, "pool");
}
