//! Learning from the responses themselves (docs/configuration.md, "Learning from rewards" →
//! `reward`), against the real Envoy at `--concurrency 2`, envoy/demo.yaml, with fake upstreams
//! whose behaviour differs (seeded failure draws, delays, reward headers, OpenAI usage):
//! - a bandit (thompson, epsilon-greedy, ucb1) sends most traffic to the target that fails less;
//! - the per-target gauges appear on /stats and agree with the state endpoint;
//! - the reward header, token cost (JSON body and SSE usage chunk) and the latency target give
//!   exactly the documented reward.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::learning::*;
use integration::{Answer, Behaviour, Connection, Envoy, Harness, Request};
use serde_json::{json, Value};

/// Opens keep-alive connections until both workers hold at least one (at most 64 tries), so
/// decisions and rewards come from both workers' VMs and meet in shared data.
fn connections_on_both_workers(envoy: &Envoy, want: usize) -> Vec<Connection> {
    let before = envoy.worker_connections();
    let mut conns = Vec::new();
    for _ in 0..64 {
        conns.push(envoy.connect());
        // One request (a 404 for an unknown model: no decision, no reward), so the connection
        // is surely accepted and counted.
        let r = conns
            .last_mut()
            .unwrap()
            .send(&Request::get("/ready-probe").header("x-model", "probe"))
            .expect("probe request");
        assert_eq!(r.status, 404, "{}", r.text());
        let now = envoy.worker_connections();
        let both = now
            .iter()
            .filter(|(w, n)| **n > before.get(w).copied().unwrap_or(0))
            .count()
            >= 2;
        if both && conns.len() >= want {
            return conns;
        }
    }
    panic!(
        "64 connections all landed on one worker: {:?}",
        envoy.worker_connections()
    );
}

struct Run {
    /// Cluster of each request, in order.
    clusters: Vec<String>,
    failures: u64,
}

/// Sends `n` requests for `model`, round-robin over `conns`, one at a time.
fn run(conns: &mut [Connection], model: &str, n: usize) -> Run {
    let req = Request::get(&format!("/v2/models/{model}/ready"));
    let mut clusters = Vec::with_capacity(n);
    let mut failures = 0;
    let k = conns.len();
    for i in 0..n {
        let r = conns[i % k]
            .send(&req)
            .unwrap_or_else(|e| panic!("request {i}: {e}"));
        assert!(
            matches!(r.status, 200 | 500),
            "request {i}: {} {}",
            r.status,
            r.text()
        );
        assert_eq!(
            r.header("x-inference-reason"),
            Some("bandit"),
            "{:?}",
            r.headers
        );
        failures += u64::from(r.status == 500);
        let cluster = r
            .header("x-upstream-cluster")
            .unwrap_or_else(|| panic!("no x-upstream-cluster: {:?}", r.headers))
            .to_string();
        clusters.push(cluster);
    }
    Run { clusters, failures }
}

fn share(clusters: &[String], cluster: &str) -> f64 {
    clusters.iter().filter(|c| *c == cluster).count() as f64 / clusters.len() as f64
}

const REQUESTS: usize = 1500;
const WINDOW: usize = 500;

#[test]
fn bandits_learn_from_status_and_favour_the_better_target() {
    // Two models, two strategies, the same pair of behaviours: *-v1 answers 200 with
    // probability 0.9 (else 500), *-v2 with probability 0.6.
    let h = Harness::demo(&json!({
        "models": [
            bandit_model("sentiment", sentiment_targets(), json!({ "type": "thompson" }),
                         Some(json!({ "status": true }))),
            bandit_model("iris",
                         json!([ { "name": "v1", "cluster": "iris-v1" },
                                 { "name": "v2", "cluster": "iris-v2" } ]),
                         json!({ "type": "epsilon_greedy", "epsilon": 0.1 }),
                         Some(json!({ "status": true }))),
            bandit_model("chat",
                         json!([ { "name": "v1", "cluster": "llm-small" },
                                 { "name": "v2", "cluster": "llm-large" } ]),
                         json!({ "type": "ucb1" }),
                         Some(json!({ "status": true }))),
        ],
        "state_endpoint": state_section(),
    }));
    for (cluster, success, seed) in [
        ("sentiment-v1", 0.9, 11),
        ("sentiment-v2", 0.6, 12),
        ("iris-v1", 0.9, 13),
        ("iris-v2", 0.6, 14),
        ("llm-small", 0.9, 15),
        ("llm-large", 0.6, 16),
    ] {
        h.upstreams
            .set_behaviour(cluster, Behaviour::success_rate(success).with_seed(seed));
    }
    let mut conns = connections_on_both_workers(&h.envoy, 4);

    let mut summary = BTreeMap::new();
    for (model, better, worse) in [
        ("sentiment", "sentiment-v1", "sentiment-v2"),
        ("iris", "iris-v1", "iris-v2"),
        ("chat", "llm-small", "llm-large"),
    ] {
        let r = run(&mut conns, model, REQUESTS);
        let last = &r.clusters[REQUESTS - WINDOW..];
        let better_share = share(last, better);
        eprintln!(
            "{model}: {better} got {:.1}% of the last {WINDOW} ({:.1}% overall), {} failures",
            100.0 * better_share,
            100.0 * share(&r.clusters, better),
            r.failures
        );
        // A uniform router gives 50% ± 2.2% (one sigma of Binomial(500, 0.5)); 70% is 9 sigma
        // above it. Here thompson sends ~99%, epsilon-greedy (ε = 0.1) ~95%, ucb1 ~90%.
        assert!(
            better_share > 0.70,
            "{model}: {better} got only {:.1}% of the last {WINDOW} requests ({worse}: {:.1}%)",
            100.0 * better_share,
            100.0 * share(last, worse)
        );
        // Every response was a reward: observations = requests (applied when each stream ended).
        let obs = wait_observations(&h.envoy, model, REQUESTS as u64);
        assert_eq!(obs, REQUESTS as u64, "{model}");
        let m = model_state(&h.envoy, model);
        let a = arms(&m);
        let pulls_v1 = f(&a["v1"]["pulls"]);
        let pulls_v2 = f(&a["v2"]["pulls"]);
        assert_eq!(pulls_v1 + pulls_v2, REQUESTS as f64, "{m}");
        // Pulls agree with where the requests went.
        assert_eq!(
            pulls_v1 as usize,
            r.clusters.iter().filter(|c| *c == better).count(),
            "{m}"
        );
        // Learned means are near the true success rates (loose: v2 may have few pulls).
        let mean_v1 = f(&a["v1"]["mean_reward"]);
        assert!(
            (mean_v1 - 0.9).abs() < 0.06,
            "{model} v1 mean {mean_v1}: {m}"
        );
        // Implicit rewards are exactly the successes: Σ rewards = requests − failures.
        let sum: f64 = a.values().map(|t| f(&t["alpha"]) - 1.0).sum();
        assert!(
            (sum - (REQUESTS as u64 - r.failures) as f64).abs() < 1e-6,
            "{model}: Σ(alpha − 1) = {sum}, successes {}",
            REQUESTS as u64 - r.failures
        );
        summary.insert(model, (pulls_v1, pulls_v2));
    }
    assert_eq!(
        h.envoy.wasm_counter("inference_router.rewards.implicit"),
        3 * REQUESTS as u64
    );
    assert_eq!(h.envoy.wasm_counter("inference_router.rewards.failed"), 0);
    assert_eq!(
        h.envoy.wasm_counter("inference_router.decisions.bandit"),
        3 * REQUESTS as u64
    );
    // The upstreams saw what the bandit chose.
    assert_eq!(
        h.upstreams.hits("sentiment-v1") + h.upstreams.hits("sentiment-v2"),
        REQUESTS as u64
    );

    // Gauges: on /stats, and (once the root contexts republish, every second) equal to the
    // state's pulls, rounded.
    for (model, (v1, v2)) in &summary {
        for (target, pulls) in [("v1", *v1), ("v2", *v2)] {
            let name = format!("wasmcustom.inference_router.bandit.{model}.{target}.pulls");
            let got = wait_for(Duration::from_secs(5), &format!("{name} = {pulls}"), || {
                h.envoy.stat(&name).filter(|v| *v == pulls.round() as u64)
            });
            assert_eq!(got, pulls.round() as u64);
            for suffix in ["mean_reward_milli", "alpha_milli", "beta_milli"] {
                let g = format!("wasmcustom.inference_router.bandit.{model}.{target}.{suffix}");
                assert!(h.envoy.stat(&g).is_some(), "{g} missing from /stats");
            }
        }
        let prom = h.envoy.prometheus();
        let metric = format!("inference_router_bandit_{model}_v1_pulls");
        assert!(
            prom.lines().any(|l| l.starts_with(&metric)),
            "{metric} missing from /stats/prometheus"
        );
    }
    let m = model_state(&h.envoy, "sentiment");
    let mean_milli = h
        .envoy
        .stat("wasmcustom.inference_router.bandit.sentiment.v1.mean_reward_milli")
        .unwrap();
    let mean = f(&arms(&m)["v1"]["mean_reward"]);
    assert!(
        (mean_milli as f64 - 1000.0 * mean).abs() <= 1.0,
        "mean_reward_milli {mean_milli} vs state {mean}"
    );
}

/// One single-target bandit model per reward source, so every request is a known reward.
fn reward_model(name: &str, cluster: &str, reward: Value, price: Option<Value>) -> Value {
    let mut target = json!({ "name": "only", "cluster": cluster });
    if let Some(p) = price {
        target["price"] = p;
    }
    bandit_model(
        name,
        json!([target]),
        json!({ "type": "thompson" }),
        Some(reward),
    )
}

#[test]
fn implicit_reward_from_header_usage_stream_and_latency() {
    let price = json!({ "input_per_1k": 0.2, "output_per_1k": 0.4 });
    let h = Harness::demo(&json!({
        "models": [
            // Quality from an upstream header.
            reward_model("graded", "sentiment-v1",
                         json!({ "status": true, "header": "x-reward" }), None),
            // 1000 prompt + 500 completion tokens: cost 0.2 + 0.2 = 0.4; λ = 0.5 → reward 0.8.
            reward_model("priced-json", "llm-small",
                         json!({ "status": true, "cost_weight": 0.5 }), Some(price.clone())),
            reward_model("priced-sse", "llm-large",
                         json!({ "status": true, "cost_weight": 0.5 }), Some(price)),
            // Slower than the latency target: quality 0.
            reward_model("slow", "iris-v1", json!({ "status": true, "latency_target_ms": 100 }), None),
            // Well within it: quality 1.
            reward_model("fast", "iris-v2", json!({ "status": true, "latency_target_ms": 5000 }), None),
            // A malformed reward header: no reward, counted in rewards.failed.
            reward_model("broken", "sentiment-v2",
                         json!({ "status": true, "header": "x-reward" }), None),
        ],
        "state_endpoint": state_section(),
    }));
    let u = &h.upstreams;
    u.set_behaviour(
        "sentiment-v1",
        Behaviour::default().with_header("x-reward", "0.25"),
    );
    u.set_behaviour(
        "llm-small",
        Behaviour::default().with_answer(Answer::OpenAi {
            prompt_tokens: 1000,
            completion_tokens: 500,
        }),
    );
    u.set_behaviour(
        "llm-large",
        Behaviour::default().with_answer(Answer::Sse {
            chunks: 4,
            gap: Duration::from_millis(5),
            prompt_tokens: 1000,
            completion_tokens: 500,
        }),
    );
    u.set_behaviour(
        "iris-v1",
        Behaviour::default().with_delay(Duration::from_millis(250)),
    );
    u.set_behaviour(
        "sentiment-v2",
        Behaviour::default().with_header("x-reward", "excellent"),
    );

    const K: usize = 8;
    let chat = |model: &str| {
        Request::post("/v1/chat/completions").json(&json!({
            "model": model, "stream": model == "priced-sse",
            "messages": [ { "role": "user", "content": "hi" } ] }))
    };
    for model in [
        "graded",
        "priced-json",
        "priced-sse",
        "slow",
        "fast",
        "broken",
    ] {
        for i in 0..K {
            let r = h.send(&chat(model));
            assert!(
                matches!(r.status, 200 | 500),
                "{model} {i}: {} {}",
                r.status,
                r.text()
            );
            assert_eq!(r.header("x-inference-model"), Some(model));
            if model == "priced-sse" {
                assert_eq!(r.status, 200);
                assert_eq!(r.header("content-type"), Some("text/event-stream"));
                let text = r.text();
                // The stream reached the client whole: deltas, the usage chunk, [DONE].
                assert_eq!(text.matches("data: ").count(), 4 + 2, "{text}");
                assert!(
                    text.contains("\"usage\"") && text.ends_with("data: [DONE]\n\n"),
                    "{text}"
                );
            }
            if model == "priced-json" {
                assert_eq!(r.json()["usage"]["completion_tokens"], 500);
            }
        }
    }
    let expect = [
        ("graded", 0.25),
        ("priced-json", 0.8),
        ("priced-sse", 0.8),
        ("slow", 0.0),
        ("fast", 1.0),
    ];
    for (model, reward) in expect {
        wait_observations(&h.envoy, model, K as u64);
        let m = model_state(&h.envoy, model);
        let a = &arms(&m)["only"];
        assert_eq!(m["observations"].as_u64(), Some(K as u64), "{model}: {m}");
        assert!(
            (f(&a["mean_reward"]) - reward).abs() < 1e-9,
            "{model}: expected reward {reward}: {m}"
        );
        assert!(
            (f(&a["alpha"]) - (1.0 + K as f64 * reward)).abs() < 1e-9,
            "{model}: {m}"
        );
        assert!(
            (f(&a["beta"]) - (1.0 + K as f64 * (1.0 - reward))).abs() < 1e-9,
            "{model}: {m}"
        );
    }
    // The malformed header: no reward at all, each counted as failed.
    assert_eq!(
        h.envoy
            .wasm_counter_eventually("inference_router.rewards.failed", K as u64),
        K as u64
    );
    assert_eq!(observations(&h.envoy, "broken"), 0);
    assert_eq!(
        h.envoy.wasm_counter("inference_router.rewards.implicit"),
        5 * K as u64
    );
}
