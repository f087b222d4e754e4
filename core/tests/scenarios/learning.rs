//! Learning from the responses themselves (`reward`): thompson, epsilon-greedy and ucb1 send
//! most traffic to the target that fails less, every response counted once; the reward header,
//! token cost (JSON body and SSE usage chunk), the latency target (time to first byte for a
//! streamed answer) and the latency weight give exactly the documented reward; the gauges follow
//! the state. The VM's RNG seeds are fixed, so every run draws the same.

use crate::driver::*;
use inference_router_core::host::Action;
use serde_json::{json, Value};

fn pair(model: &str, strategy: Value) -> Value {
    bandit_model(
        model,
        json!([ { "name": "good", "cluster": format!("{model}-good") },
                { "name": "poor", "cluster": format!("{model}-poor") } ]),
        strategy,
        Some(json!({ "status": true })),
    )
}

struct Run {
    targets: Vec<String>,
    successes: [u64; 2],
    served: [u64; 2],
}

/// `n` requests for `model`; `good` fails every 10th of its requests, `poor` 4 of every 10.
fn run(vm: &mut Vm, model: &str, n: usize) -> Run {
    let mut r = Run {
        targets: Vec::new(),
        successes: [0; 2],
        served: [0; 2],
    };
    for i in 0..n {
        let mut sent = vm.send(&get(&format!("/v2/models/{model}/ready")), b"");
        assert_eq!(sent.action, Action::Continue, "request {i}");
        let cluster = vm.routed_cluster().unwrap();
        let t = usize::from(cluster.ends_with("-poor"));
        let k = r.served[t];
        r.served[t] += 1;
        let fails = if t == 0 { k % 10 == 9 } else { k % 10 < 4 };
        let response: &[(&str, &str)] = if fails { &[(":status", "500")] } else { OK };
        vm.respond(&mut sent, response, b"");
        assert_eq!(
            vm.response_header("x-inference-reason").as_deref(),
            Some("bandit")
        );
        let target = vm.response_header("x-inference-target").unwrap();
        assert_eq!(
            target,
            if t == 0 { "good" } else { "poor" },
            "x-inference-target agrees with the cluster"
        );
        r.successes[t] += u64::from(!fails);
        r.targets.push(target);
    }
    r
}

#[test]
fn bandits_learn_from_status_and_favour_the_better_target() {
    let mut vm = Vm::start(&json!({
        "models": [ pair("thompson", json!({ "type": "thompson" })),
                    pair("greedy", json!({ "type": "epsilon_greedy", "epsilon": 0.1 })),
                    pair("ucb", json!({ "type": "ucb1" })) ],
        "state_endpoint": state_section(),
    }));
    const N: usize = 1000;
    const WINDOW: usize = 300;
    let mut pulls = Vec::new();
    for (model, floor) in [("thompson", 0.9), ("greedy", 0.85), ("ucb", 0.7)] {
        let r = run(&mut vm, model, N);
        let last = &r.targets[N - WINDOW..];
        let share = last.iter().filter(|t| *t == "good").count() as f64 / WINDOW as f64;
        // A uniform router gives 50 % ± 2.9 % (one sigma of Binomial(300, 0.5)).
        assert!(
            share > floor,
            "{model}: good got {:.1} % of the last {WINDOW}",
            100.0 * share
        );
        // Every response is one reward, on the target that served it.
        let m = vm.model_state(model);
        assert_eq!(m["observations"], N as u64, "{m}");
        for (i, name) in ["good", "poor"].iter().enumerate() {
            let [alpha, beta, p] = vm.arm(model, name);
            assert_eq!(p, r.served[i] as f64, "{model}/{name}: {m}");
            // Implicit rewards are exactly the successes (1) and failures (0).
            assert_eq!(alpha - 1.0, r.successes[i] as f64, "{model}/{name}: {m}");
            assert_eq!(
                beta - 1.0,
                (r.served[i] - r.successes[i]) as f64,
                "{model}/{name}: {m}"
            );
        }
        let good = m["targets"][0]["mean_reward"].as_f64().unwrap();
        assert!(
            (good - r.successes[0] as f64 / r.served[0] as f64).abs() < 1e-12,
            "{m}"
        );
        pulls.push((model, r.served));
    }
    assert_eq!(vm.counter("rewards.implicit"), 3 * N as u64);
    assert_eq!(vm.counter("decisions.bandit"), 3 * N as u64);
    assert_eq!(vm.counter("rewards.failed"), 0);

    // The gauges are republished every fifth tick, in whole pulls and thousandths.
    vm.tick(4);
    assert_eq!(
        vm.host.metric("inference_router.bandit.ucb.good.pulls"),
        Some(0)
    );
    vm.tick(1);
    for (model, served) in pulls {
        for (i, name) in ["good", "poor"].iter().enumerate() {
            let [alpha, beta, _] = vm.arm(model, name);
            let g = |s: &str| {
                vm.host
                    .metric(&format!("inference_router.bandit.{model}.{name}.{s}"))
                    .unwrap()
            };
            assert_eq!(g("pulls"), served[i], "{model}/{name}");
            assert_eq!(g("alpha_milli"), (alpha * 1000.0).round() as u64);
            assert_eq!(g("beta_milli"), (beta * 1000.0).round() as u64);
            assert_eq!(
                g("mean_reward_milli"),
                ((alpha - 1.0) / served[i] as f64 * 1000.0).round() as u64
            );
        }
    }
}

#[test]
fn every_target_is_tried_first_and_a_min_share_keeps_a_failing_target_alive() {
    let three = json!([ { "name": "a", "cluster": "c-a" }, { "name": "b", "cluster": "c-b" }, { "name": "c", "cluster": "c-c" } ]);
    let mut vm = Vm::start(&json!({
        "models": [ bandit_model("ucb", three.clone(), json!({ "type": "ucb1" }), Some(json!({}))),
                    bandit_model("greedy", three, json!({ "type": "epsilon_greedy", "epsilon": 0.0 }), Some(json!({}))),
                    bandit_model("floor", json!([ { "name": "ok", "cluster": "floor-ok" }, { "name": "broken", "cluster": "floor-broken" } ]),
                                 json!({ "type": "thompson", "min_share": { "broken": 0.3 } }), Some(json!({}))) ],
        "state_endpoint": state_section(),
    }));
    // Only `b` answers well on its first try.
    let pull = |vm: &mut Vm, model: &str| {
        let mut sent = vm.send(&get(&format!("/v2/models/{model}/ready")), b"");
        let t = vm.host.request_header_value("x-inference-target").unwrap();
        let response: &[(&str, &str)] = if t == "b" { OK } else { &[(":status", "500")] };
        vm.respond(&mut sent, response, b"");
        t
    };
    for model in ["ucb", "greedy"] {
        let mut seen: Vec<String> = (0..3).map(|_| pull(&mut vm, model)).collect();
        seen.sort();
        assert_eq!(seen, ["a", "b", "c"], "{model}: unpulled targets first");
    }
    // epsilon 0: the best mean from now on.
    let next: Vec<String> = (0..5).map(|_| pull(&mut vm, "greedy")).collect();
    assert_eq!(next, ["b"; 5]);
    assert_eq!(vm.arm("greedy", "b"), [7.0, 1.0, 6.0]);

    // `broken` always fails; min_share still sends it 30 % of the traffic (+ what thompson
    // gives it, which is nearly nothing).
    let mut broken = 0;
    for _ in 0..1000 {
        let mut sent = vm.send(&get("/v2/models/floor/ready"), b"");
        let is_broken = vm.routed_cluster().as_deref() == Some("floor-broken");
        broken += usize::from(is_broken);
        let response: &[(&str, &str)] = if is_broken { &[(":status", "503")] } else { OK };
        vm.respond(&mut sent, response, b"");
    }
    // Binomial(1000, 0.3): sigma 14.5; ±5 sigma. Without min_share it would be a handful.
    assert!((228..=372).contains(&broken), "broken got {broken} of 1000");
    assert_eq!(vm.arm("floor", "broken")[2], broken as f64);
}

/// (model, response headers, body, ms before the headers, ms before the body, reward)
type Case<'a> = (&'a str, Headers<'a>, &'a [u8], u64, u64, Option<f64>);

/// One single-target thompson model per reward source.
fn reward_model(name: &str, reward: Value, price: Option<Value>) -> Value {
    let mut target = json!({ "name": "only", "cluster": format!("{name}-cluster") });
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
fn implicit_rewards_from_header_usage_stream_and_latency() {
    let price = json!({ "input_per_1k": 0.2, "output_per_1k": 0.4 });
    let mut vm = Vm::start(&json!({
        "models": [
            reward_model("graded", json!({ "header": "x-reward" }), None),
            // 1000 prompt + 500 completion tokens: cost 0.2 + 0.2 = 0.4; λ = 0.5 → 0.8.
            reward_model("priced-json", json!({ "cost_weight": 0.5 }), Some(price.clone())),
            reward_model("priced-sse", json!({ "cost_weight": 0.5 }), Some(price)),
            reward_model("slow", json!({ "latency_target_ms": 100 }), None),
            reward_model("fast", json!({ "latency_target_ms": 5000 }), None),
            // 2 s × μ 0.05 = 0.1 lost.
            reward_model("weighted", json!({ "latency_weight": 0.05 }), None),
            // A streamed answer's latency is its first byte (150 ms), not its headers (50 ms).
            reward_model("sse-ttfb", json!({ "latency_target_ms": 100 }), None),
            reward_model("json-headers", json!({ "latency_target_ms": 100 }), None),
            reward_model("lenient", json!({ "status": false }), None),
            reward_model("broken", json!({ "header": "x-reward" }), None),
        ],
        "state_endpoint": state_section(),
    }));
    let usage = br#"{"id":"x","choices":[],"usage":{"prompt_tokens":1000,"completion_tokens":500,"total_tokens":1500}}"#;
    let sse = concat!(
        "data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\n",
        "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":1000,\"completion_tokens\":500}}\n\n",
        "data: [DONE]\n\n"
    )
    .as_bytes();
    const SSE: &[(&str, &str)] = &[(":status", "200"), ("content-type", "text/event-stream")];
    // (model, response headers, body, ms before headers, ms before the body, reward)
    let cases: [Case; 10] = [
        (
            "graded",
            &[(":status", "200"), ("x-reward", "0.25")],
            b"",
            10,
            0,
            Some(0.25),
        ),
        ("priced-json", OK, usage, 10, 0, Some(0.8)),
        ("priced-sse", SSE, sse, 10, 0, Some(0.8)),
        ("slow", OK, b"", 250, 0, Some(0.0)),
        ("fast", OK, b"", 250, 0, Some(1.0)),
        ("weighted", OK, b"", 2000, 0, Some(0.9)),
        ("sse-ttfb", SSE, sse, 50, 100, Some(0.0)),
        ("json-headers", OK, usage, 50, 100, Some(1.0)),
        ("lenient", &[(":status", "503")], b"", 10, 0, Some(1.0)),
        (
            "broken",
            &[(":status", "200"), ("x-reward", "excellent")],
            b"",
            10,
            0,
            None,
        ),
    ];
    const K: u64 = 4;
    for (model, headers, body, before_headers, before_body, _) in &cases {
        for _ in 0..K {
            let mut sent = vm.send(
                &post_json("/v1/chat/completions"),
                format!(r#"{{"model":"{model}"}}"#).as_bytes(),
            );
            assert_eq!(sent.action, Action::Continue);
            vm.host.advance_ms(*before_headers);
            vm.response_headers(&mut sent, headers, body);
            vm.host.advance_ms(*before_body);
            if !body.is_empty() {
                assert_eq!(
                    vm.response_body(&mut sent, body.len()),
                    Action::Continue,
                    "the body is never held back"
                );
            }
            vm.done(&mut sent);
            assert_eq!(
                vm.response_header("x-inference-model").as_deref(),
                Some(*model)
            );
        }
    }
    for (model, _, _, _, _, reward) in cases {
        let [alpha, beta, pulls] = vm.arm(model, "only");
        match reward {
            Some(r) => {
                assert_eq!(pulls, K as f64, "{model}");
                assert!(
                    (alpha - (1.0 + K as f64 * r)).abs() < 1e-9,
                    "{model}: alpha {alpha}, reward {r}"
                );
                assert!(
                    (beta - (1.0 + K as f64 * (1.0 - r))).abs() < 1e-9,
                    "{model}: beta {beta}, reward {r}"
                );
            }
            // A malformed reward header: no reward at all.
            None => assert_eq!([alpha, beta, pulls], [1.0, 1.0, 0.0], "{model}"),
        }
    }
    assert_eq!(vm.counter("rewards.implicit"), 9 * K);
    assert_eq!(vm.counter("rewards.failed"), K);
}
