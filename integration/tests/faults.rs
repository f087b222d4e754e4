//! Faults around a learning router, against the real Envoy at `--concurrency 2`, with bandit
//! models that learn from every response (implicit rewards), explicit feedback and the state
//! endpoint (docs/configuration.md, "Learning from rewards"):
//! - upstreams that refuse connections, answer 5xx or 429, or stall past the route timeout, and
//!   an evaluator that is down: what the user sees, and each response learned from exactly once;
//! - a feedback flood from many clients while traffic runs: every accepted feedback and every
//!   implicit reward is in the state (`observations` = accepted 200s + `rewards.implicit`);
//! - the listener replaced through LDS while several clients send traffic: every request answered,
//!   nothing lost;
//! - a trap (the TEST-ONLY `test-trap` build) under `failure_policy: FAIL_RELOAD`: what the user
//!   sees, the VM reloaded, the learned state and the spent decision ids kept.
//!
//! Every loop is bounded in count and time; nothing asserts on wall-clock durations.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use common::learning::*;
use common::vm::*;
use common::*;
use integration::client::{self, must_send};
use integration::{
    envoy_dir, test_trap_wasm_path, Behaviour, Envoy, EnvoyConfig, Harness, RefusedPort, Request,
    Response, Upstreams,
};
use serde_json::{json, Value};

/// A thompson model with one target on `cluster`, learning from `reward`.
fn single(name: &str, cluster: &str, reward: Value) -> Value {
    bandit_model(
        name,
        json!([{ "name": "a", "cluster": cluster }]),
        json!({ "type": "thompson" }),
        Some(reward),
    )
}

/// envoy/demo.yaml with the model route's timeout cut from 30 s to 1 s, so a stalled upstream
/// times out quickly. (Envoy ignores `x-envoy-upstream-rq-timeout-ms` from these clients: it
/// strips `x-envoy-*` request headers from requests it does not consider internal.)
fn demo_with_short_route_timeout() -> PathBuf {
    let text = std::fs::read_to_string(envoy_dir().join("demo.yaml")).expect("read demo.yaml");
    assert_eq!(
        text.matches("timeout: 30s").count(),
        1,
        "envoy/demo.yaml should have one route timeout"
    );
    let dir = std::env::temp_dir().join("inference-router-e2e");
    std::fs::create_dir_all(&dir).expect("create temp dir");
    let path = dir.join(format!("demo-route-timeout-1s-{}.yaml", std::process::id()));
    std::fs::write(&path, text.replace("timeout: 30s", "timeout: 1s")).expect("write template");
    path
}

struct Fault {
    model: &'static str,
    requests: usize,
    /// What the user gets.
    status: u16,
    /// The response comes from Envoy, not from the model server.
    from_envoy: bool,
    /// The implicit reward of such a response (None: judged by the evaluator instead).
    reward: Option<f64>,
}

#[test]
fn upstream_faults_are_answered_clearly_and_each_response_is_learned_once() {
    let upstreams = Upstreams::start_default();
    // iris-v2's and the evaluator's ports refuse connections.
    let refused = RefusedPort::new();
    let refused_evaluator = RefusedPort::new();
    let mut ports = upstreams.ports();
    ports.insert("iris-v2".into(), refused.port());
    ports.insert("evaluator".into(), refused_evaluator.port());
    upstreams.set_behaviour("llm-small", Behaviour::default().with_failures(1.0, 500));
    upstreams.set_behaviour("llm-large", Behaviour::default().with_failures(1.0, 429));
    upstreams.set_behaviour("iris-v1", Behaviour::stall(Duration::from_secs(3)));
    let status = json!({ "status": true });
    let cfg = json!({
        "models": [
            single("down", "iris-v2", status.clone()),
            single("failing", "llm-small", status.clone()),
            single("limited", "llm-large", status.clone()),
            single("stalled", "iris-v1", status.clone()),
            single("judged", "sentiment-v1",
                   json!({ "status": true,
                           "evaluator": { "cluster": "evaluator", "timeout_ms": 500 } })),
            single("healthy", "sentiment-v2", status),
        ],
        "feedback": feedback_section(3600),
        "state_endpoint": state_section(),
    });
    let template = demo_with_short_route_timeout();
    let config = EnvoyConfig::new(&template, cfg.to_string());
    let envoy = Envoy::start_with_ports(&config, &ports);
    // Rendered into Envoy's working directory by now.
    let _ = std::fs::remove_file(&template);
    let h = Harness { envoy, upstreams };
    let vm_before = vm_stats(&h.envoy);

    let faults = [
        Fault {
            model: "down",
            requests: 4,
            status: 503,
            from_envoy: true,
            reward: Some(0.0),
        },
        Fault {
            model: "failing",
            requests: 4,
            status: 500,
            from_envoy: false,
            reward: Some(0.0),
        },
        Fault {
            model: "limited",
            requests: 4,
            status: 429,
            from_envoy: false,
            reward: Some(0.0),
        },
        Fault {
            model: "stalled",
            requests: 2,
            status: 504,
            from_envoy: true,
            reward: Some(0.0),
        },
        Fault {
            model: "judged",
            requests: 4,
            status: 200,
            from_envoy: false,
            reward: None,
        },
    ];
    let mut ids: Vec<(&str, String)> = Vec::new();
    let mut healthy = 0u64;
    for fault in &faults {
        for i in 0..fault.requests {
            let r = h.send(&Request::get(&format!("/v2/models/{}/ready", fault.model)));
            assert_eq!(
                r.status,
                fault.status,
                "{} {i}: {:?} {}",
                fault.model,
                r.headers,
                r.text()
            );
            // The decision is on the answer whoever wrote it, so feedback can still be sent.
            assert_decision(&r, fault.model, "a", "bandit");
            assert_eq!(
                r.upstream_cluster().is_none() && r.header("x-upstream-cluster").is_none(),
                fault.from_envoy,
                "{}: {:?} {}",
                fault.model,
                r.headers,
                r.text()
            );
            if i == 0 {
                eprintln!(
                    "{:8} → {} {:?} {}",
                    fault.model,
                    r.status,
                    r.header("content-type"),
                    r.text().chars().take(120).collect::<String>()
                );
            }
            ids.push((
                fault.model,
                r.header("x-inference-decision").unwrap().to_string(),
            ));
            // The next request, on a fresh connection, is served normally.
            let ok = h.send(&Request::get("/v2/models/healthy/ready"));
            assert_upstream(&ok, "sentiment-v2");
            healthy += 1;
        }
    }
    // Envoy's own answers are what they should be.
    let r = h.send(&Request::get("/v2/models/down/ready"));
    assert!(
        r.text().starts_with("upstream connect error"),
        "{}",
        r.text()
    );
    ids.push((
        "down",
        r.header("x-inference-decision").unwrap().to_string(),
    ));
    let r = h.send(&Request::get("/v2/models/stalled/ready"));
    assert_eq!(r.status, 504);
    assert_eq!(r.text(), "upstream request timeout");
    ids.push((
        "stalled",
        r.header("x-inference-decision").unwrap().to_string(),
    ));

    // Feedback for every decision, whatever its answer was: all accepted.
    for (model, id) in &ids {
        let r = send_feedback(&h.envoy, id, 1.0);
        assert_eq!(r.status, 200, "feedback for {model}: {}", r.text());
    }

    // Each response taught its model once: observations = responses with an implicit reward +
    // feedback; the faults' implicit rewards are 0 (beta), the feedback's are 1 (alpha).
    let count = |m: &str| ids.iter().filter(|(x, _)| *x == m).count() as u64;
    let mut implicit = healthy;
    for fault in &faults {
        let n = count(fault.model);
        let with_reward = if fault.reward.is_some() { n } else { 0 };
        implicit += with_reward;
        assert_eq!(
            wait_observations(&h.envoy, fault.model, n + with_reward),
            n + with_reward,
            "{}",
            fault.model
        );
        let m = model_state(&h.envoy, fault.model);
        let a = &arms(&m)["a"];
        assert_eq!(f(&a["alpha"]), 1.0 + n as f64, "{}: {m}", fault.model);
        assert_eq!(
            f(&a["beta"]),
            1.0 + with_reward as f64,
            "{}: {m}",
            fault.model
        );
    }
    assert_eq!(wait_observations(&h.envoy, "healthy", healthy), healthy);
    let m = model_state(&h.envoy, "healthy");
    assert_eq!(f(&arms(&m)["a"]["beta"]), 1.0, "{m}");
    // The evaluator is down: every callout failed, none taught anything, users never noticed.
    let judged = count("judged");
    wait_for(
        Duration::from_secs(10),
        "evaluator failures counted",
        || (h.envoy.wasm_counter("inference_router.evaluator.failures") >= judged).then_some(()),
    );
    assert_eq!(
        h.envoy.wasm_counter("inference_router.evaluator.failures"),
        judged
    );
    assert_eq!(
        h.envoy.wasm_counter("inference_router.rewards.evaluator"),
        0
    );
    assert_eq!(
        h.envoy
            .wasm_counter_eventually("inference_router.rewards.implicit", implicit),
        implicit
    );
    assert_eq!(h.envoy.wasm_counter("inference_router.rewards.failed"), 0);
    assert_eq!(
        h.envoy.wasm_counter("inference_router.feedback.accepted"),
        ids.len() as u64
    );
    assert_eq!(h.upstreams.hits("evaluator"), 0);
    assert_vm_never_crashed(&h.envoy, &vm_before);
}

/// Feedback answers by status, and which decisions were accepted.
#[derive(Default)]
struct FeedbackTally {
    by_status: BTreeMap<u16, u64>,
    accepted_reward_sum: f64,
}

#[test]
fn feedback_flood_while_traffic_runs_loses_no_accepted_reward() {
    let h = Harness::demo(&learning_config(json!([bandit_model(
        "sentiment",
        sentiment_targets(),
        json!({ "type": "thompson" }),
        Some(json!({ "status": true }))
    )])));
    let vm_before = vm_stats(&h.envoy);
    const IDS: usize = 240;
    const INVALID: usize = 20;
    const FORGED: usize = 20;
    let ds = decisions(&h.envoy, "sentiment", IDS + INVALID);
    // From now on the model servers fail 20% of the time (implicit reward 0 for those).
    h.upstreams
        .set_behaviour("sentiment-v1", Behaviour::success_rate(0.8).with_seed(7));
    h.upstreams
        .set_behaviour("sentiment-v2", Behaviour::success_rate(0.8).with_seed(8));

    // The flood: each valid id once, every 4th id a second time (a replay, maybe at the same
    // moment), ids with a forged signature, and out-of-range rewards.
    let rewards = [0.0, 0.25, 0.5, 1.0];
    let mut jobs: Vec<(usize, Request, &str)> = Vec::new();
    for (i, (id, _)) in ds.iter().take(IDS).enumerate() {
        jobs.push((i, feedback_body(id, json!(rewards[i % 4])), "valid"));
    }
    for (i, (id, _)) in ds.iter().take(IDS).enumerate().step_by(4) {
        jobs.push((i, feedback_body(id, json!(rewards[i % 4])), "valid"));
    }
    for (i, (id, _)) in ds.iter().take(FORGED).enumerate() {
        let mut forged = id.clone();
        let last = forged.pop().unwrap();
        forged.push(if last == '0' { '1' } else { '0' });
        jobs.push((i, feedback_body(&forged, json!(1.0)), "forged"));
    }
    for (i, (id, _)) in ds.iter().skip(IDS).enumerate() {
        jobs.push((IDS + i, feedback_body(id, json!(1.5)), "invalid"));
    }
    // Interleave the kinds so replays and originals meet.
    jobs.sort_by_key(|(i, _, kind)| (i * 7919 % 263, *kind));

    const FEEDBACK_CLIENTS: usize = 12;
    const TRAFFIC_CLIENTS: usize = 4;
    const TRAFFIC_PER_CLIENT: usize = 60;
    let deadline = Instant::now() + Duration::from_secs(60);
    let port = h.envoy.port();
    let answers: Mutex<Vec<(usize, &str, Response)>> = Mutex::new(Vec::new());
    let traffic: Mutex<BTreeMap<u16, u64>> = Mutex::new(BTreeMap::new());
    thread::scope(|s| {
        for t in 0..FEEDBACK_CLIENTS {
            let (jobs, answers) = (&jobs, &answers);
            s.spawn(move || {
                for (i, req, kind) in jobs.iter().skip(t).step_by(FEEDBACK_CLIENTS) {
                    assert!(Instant::now() < deadline, "feedback flood ran out of time");
                    let r = must_send(port, req);
                    answers.lock().unwrap().push((*i, *kind, r));
                }
            });
        }
        for _ in 0..TRAFFIC_CLIENTS {
            let traffic = &traffic;
            s.spawn(move || {
                let req = Request::get("/v2/models/sentiment/ready");
                for _ in 0..TRAFFIC_PER_CLIENT {
                    assert!(Instant::now() < deadline, "traffic ran out of time");
                    let r = must_send(port, &req);
                    assert!(matches!(r.status, 200 | 500), "{} {}", r.status, r.text());
                    assert_meta(&r, "reason", Some("bandit"));
                    *traffic.lock().unwrap().entry(r.status).or_default() += 1;
                }
            });
        }
    });
    let answers = answers.into_inner().unwrap();
    let traffic = traffic.into_inner().unwrap();
    assert_eq!(answers.len(), jobs.len(), "every feedback answered");

    let mut tally = FeedbackTally::default();
    let mut accepted_per_id = vec![0u32; IDS + INVALID];
    for (i, kind, r) in &answers {
        *tally.by_status.entry(r.status).or_default() += 1;
        match (*kind, r.status) {
            ("valid", 200) => {
                accepted_per_id[*i] += 1;
                tally.accepted_reward_sum += rewards[i % 4];
                assert_eq!(f(&r.json()["updated"]["reward"]), rewards[i % 4]);
            }
            ("valid", 409) => assert_refused(r, 409, "replayed"),
            ("valid", 503) => assert_refused(r, 503, "unavailable"),
            ("forged", _) => assert_refused(r, 403, "forged"),
            ("invalid", _) => assert_refused(r, 400, "invalid"),
            (kind, s) => panic!("{kind} feedback {i}: unexpected {s} {}", r.text()),
        }
    }
    assert!(
        accepted_per_id.iter().all(|n| *n <= 1),
        "a decision id was accepted twice"
    );
    let accepted = tally.by_status.get(&200).copied().unwrap_or(0);
    let replays = jobs.len() - IDS - FORGED - INVALID;
    eprintln!(
        "feedback answers by status: {:?}; traffic answers: {traffic:?}",
        tally.by_status
    );
    assert!(
        accepted >= (IDS as u64) * 9 / 10,
        "only {accepted} of {IDS} ids accepted: {:?}",
        tally.by_status
    );
    assert_eq!(
        tally.by_status.get(&409).copied().unwrap_or(0)
            + tally.by_status.get(&503).copied().unwrap_or(0)
            + accepted,
        (IDS + replays) as u64
    );

    // Every response is a reward (applied once its stream ended): the gathered decisions and
    // the traffic. Wait until all are applied or failed.
    let responses = (IDS + INVALID + TRAFFIC_CLIENTS * TRAFFIC_PER_CLIENT) as u64;
    let (implicit, failed) = wait_for(
        Duration::from_secs(10),
        "every implicit reward applied or counted as failed",
        || {
            let implicit = h.envoy.wasm_counter("inference_router.rewards.implicit");
            let failed = h.envoy.wasm_counter("inference_router.rewards.failed");
            (implicit + failed >= responses).then_some((implicit, failed))
        },
    );
    assert_eq!(implicit + failed, responses);
    let exhausted = h
        .envoy
        .wasm_counter("inference_router.bandit.cas_exhausted");
    let retries = h.envoy.wasm_counter("inference_router.bandit.cas_retries");
    eprintln!(
        "implicit rewards applied {implicit}, failed {failed}; CAS retries {retries}, exhausted \
         {exhausted}"
    );
    assert_eq!(
        failed, exhausted,
        "a reward was lost for another reason than documented contention"
    );
    assert_eq!(failed, 0, "implicit rewards dropped under contention");

    // The invariant: the state holds every accepted feedback and every implicit reward.
    let m = model_state(&h.envoy, "sentiment");
    assert_eq!(m["observations"].as_u64(), Some(accepted + implicit), "{m}");
    let a = arms(&m);
    let pulls: f64 = a.values().map(|t| f(&t["pulls"])).sum();
    assert_eq!(pulls, (accepted + implicit) as f64, "{m}");
    // Σ(alpha − 1) = Σ rewards: the feedbacks accepted, plus 1 per successful response.
    let successes = (IDS + INVALID) as f64 + traffic.get(&200).copied().unwrap_or(0) as f64;
    let sum_alpha: f64 = a.values().map(|t| f(&t["alpha"]) - 1.0).sum();
    assert!(
        (sum_alpha - (tally.accepted_reward_sum + successes)).abs() < 1e-6,
        "Σ(alpha − 1) = {sum_alpha}, expected {} + {successes}: {m}",
        tally.accepted_reward_sum
    );
    let fb = |why: &str| {
        h.envoy
            .wasm_counter(&format!("inference_router.feedback.rejected.{why}"))
    };
    assert_eq!(
        h.envoy.wasm_counter("inference_router.feedback.accepted"),
        accepted
    );
    assert_eq!(fb("forged"), FORGED as u64);
    assert_eq!(fb("invalid"), INVALID as u64);
    assert_eq!(
        fb("replayed"),
        tally.by_status.get(&409).copied().unwrap_or(0)
    );
    assert_eq!(
        fb("unavailable"),
        tally.by_status.get(&503).copied().unwrap_or(0)
    );
    assert_vm_never_crashed(&h.envoy, &vm_before);
}

/// The reload configuration: `sentiment` (epsilon-greedy, implicit rewards) with this epsilon
/// and state token; same plugin name and signing key throughout.
fn reload_config(epsilon: f64, token: &str) -> Value {
    json!({
        "models": [ bandit_model("sentiment", sentiment_targets(),
                                 json!({ "type": "epsilon_greedy", "epsilon": epsilon }),
                                 Some(json!({ "status": true }))) ],
        "feedback": feedback_section(3600),
        "state_endpoint": { "path": STATE_PATH, "token": token },
    })
}

fn state_with(port: u16, token: &str) -> Option<Value> {
    let r = must_send(
        port,
        &Request::get(STATE_PATH).header("authorization", &format!("Bearer {token}")),
    );
    (r.status == 200).then(|| r.json())
}

/// One answer under load: the phase it was sent in (0 before the first reload, 1 after it, …),
/// its status (0: no answer) and the reason header.
struct Sent {
    phase: u32,
    status: u16,
    error: Option<String>,
    reason: Option<String>,
}

#[test]
fn listener_reload_under_load_answers_every_request_and_loses_no_reward() {
    let upstreams = Upstreams::start_default();
    let mut envoy = Envoy::start(
        &EnvoyConfig::lds(&reload_config(0.1, "state-token-0123456789-1")),
        &upstreams,
    );
    let vm_before = vm_stats(&envoy);
    let port = envoy.port();
    // Decisions to send feedback for during the reloads.
    let ds = decisions(&envoy, "sentiment", 60);

    const CLIENTS: usize = 4;
    const MAX_PER_CLIENT: usize = 400;
    const AFTER_LAST_RELOAD: usize = 60;
    let deadline = Instant::now() + Duration::from_secs(60);
    let phase = AtomicU32::new(0);
    let stop = AtomicBool::new(false);
    let sent_total = AtomicUsize::new(0);
    let log: Mutex<Vec<Sent>> = Mutex::new(Vec::new());
    let feedback: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    let body = serde_json::to_vec(&chat_body("sentiment")).unwrap();
    let mut ports_seen = vec![port];
    thread::scope(|s| {
        for c in 0..CLIENTS {
            let (phase, stop, sent_total, log, body) = (&phase, &stop, &sent_total, &log, &body);
            s.spawn(move || {
                for i in 0..MAX_PER_CLIENT {
                    if stop.load(Ordering::SeqCst) || Instant::now() > deadline {
                        return;
                    }
                    // Header-routed and body-routed requests (the latter pause for the body).
                    let req = if (i + c) % 2 == 0 {
                        Request::get("/v2/models/sentiment/ready")
                    } else {
                        Request::post("/v1/chat/completions")
                            .header("content-type", "application/json")
                            .body(body.clone())
                    };
                    let p = phase.load(Ordering::SeqCst);
                    let sent = match client::send(port, &req) {
                        Ok(r) => Sent {
                            phase: p,
                            status: r.status,
                            error: None,
                            reason: r.header("x-inference-reason").map(str::to_string),
                        },
                        Err(e) => Sent {
                            phase: p,
                            status: 0,
                            error: Some(e.to_string()),
                            reason: None,
                        },
                    };
                    log.lock().unwrap().push(sent);
                    sent_total.fetch_add(1, Ordering::SeqCst);
                }
            });
        }
        let (stop, feedback, ds) = (&stop, &feedback, &ds);
        s.spawn(move || {
            for (id, _) in ds {
                if stop.load(Ordering::SeqCst) || Instant::now() > deadline {
                    return;
                }
                let r = must_send(port, &feedback_body(id, json!(1.0)));
                feedback.lock().unwrap().push(r.status);
                thread::sleep(Duration::from_millis(5));
            }
        });

        let wait_sent = |n: usize| {
            let target = sent_total.load(Ordering::SeqCst) + n;
            while sent_total.load(Ordering::SeqCst) < target {
                assert!(Instant::now() < deadline, "traffic stalled");
                thread::sleep(Duration::from_millis(10));
            }
        };
        wait_sent(50);
        for (i, (epsilon, token)) in [
            (0.3, "state-token-0123456789-2"),
            (0.05, "state-token-0123456789-3"),
        ]
        .iter()
        .enumerate()
        {
            let applied = envoy.reload_listener(&reload_config(*epsilon, token).to_string());
            assert!(applied.is_ok(), "reload {i} refused: {applied:?}");
            phase.store(i as u32 + 1, Ordering::SeqCst);
            ports_seen.push(envoy.port());
            wait_sent(if i == 0 { 50 } else { AFTER_LAST_RELOAD });
        }
        stop.store(true, Ordering::SeqCst);
    });
    let log = log.into_inner().unwrap();
    let feedback = feedback.into_inner().unwrap();
    let mut by_phase: BTreeMap<(u32, u16), u64> = BTreeMap::new();
    for s in &log {
        *by_phase.entry((s.phase, s.status)).or_default() += 1;
    }
    eprintln!(
        "answers by (phase, status): {by_phase:?}; feedback statuses: {:?}; listener ports {ports_seen:?}",
        feedback.iter().fold(BTreeMap::<u16, u64>::new(), |mut m, s| {
            *m.entry(*s).or_default() += 1;
            m
        })
    );
    let failures: Vec<_> = log
        .iter()
        .filter(|s| s.status != 200 || s.reason.as_deref() != Some("bandit"))
        .map(|s| (s.phase, s.status, s.error.clone(), s.reason.clone()))
        .collect();
    assert!(
        failures.is_empty(),
        "requests not served normally across the reloads: {failures:?}"
    );
    for p in 0..=2 {
        assert!(
            by_phase.get(&(p, 200)).copied().unwrap_or(0) > 0,
            "no request in phase {p}: {by_phase:?}"
        );
    }
    assert!(
        feedback.iter().all(|s| matches!(s, 200 | 503)),
        "{feedback:?}"
    );
    let accepted = feedback.iter().filter(|s| **s == 200).count() as u64;

    // The new configuration answers; the old tokens no longer do.
    let port = envoy.port();
    assert!(state_with(port, "state-token-0123456789-1").is_none());
    let responses = (ds.len() + log.len()) as u64;
    assert_eq!(
        envoy.wasm_counter_eventually("inference_router.rewards.implicit", responses),
        responses,
        "an implicit reward is missing"
    );
    assert_eq!(envoy.wasm_counter("inference_router.rewards.failed"), 0);
    let doc =
        state_with(port, "state-token-0123456789-3").expect("the last configuration's token works");
    assert_eq!(
        doc["models"]["sentiment"]["observations"].as_u64(),
        Some(responses + accepted),
        "{doc}"
    );
    assert_eq!(
        envoy.counter("listener_manager.lds.update_success"),
        3,
        "the initial listener and two reloads"
    );
    // A reload is not a VM crash: no VM was reloaded or failed. (A plugin configuration
    // change may start VMs, so only the crash counters are compared.)
    let now = vm_stats(&envoy);
    for k in [RELOAD, RELOAD_SUCCESS, RELOAD_FAILURE, RELOAD_BACKOFF] {
        assert_eq!(now[k], vm_before[k], "{k}");
    }
    let bad = crash_lines(&envoy);
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

#[test]
fn trap_under_fail_reload_fails_one_request_then_serves_with_the_learned_state() {
    // Fails loudly, naming the build command, when the test-trap build is missing.
    let wasm = test_trap_wasm_path();
    let cfg = learning_config(json!([bandit_model(
        "sentiment",
        sentiment_targets(),
        json!({ "type": "thompson" }),
        Some(json!({ "status": true }))
    )]));
    let h = Harness::start(&EnvoyConfig::demo(&cfg).with_wasm(wasm));
    let envoy = &h.envoy;
    let port = envoy.port();

    // Learn something: 20 responses and 5 feedbacks.
    let ds = decisions(envoy, "sentiment", 20);
    for (id, _) in &ds[..5] {
        assert_eq!(send_feedback(envoy, id, 1.0).status, 200);
    }
    assert_eq!(wait_observations(envoy, "sentiment", 25), 25);
    let learned = model_state(envoy, "sentiment");
    let vm_before = vm_stats(envoy);
    assert_eq!(vm_before[RELOAD_SUCCESS], 0);
    let hits_before = h.upstreams.total_hits();

    // The trapping request, which also forges the route header.
    let r = must_send(
        port,
        &Request::get("/v2/models/sentiment/ready")
            .header("x-inference-test-trap", "1")
            .header("x-inference-cluster", "llm-large"),
    );
    eprintln!(
        "the trapping request: {} {:?} {:?}",
        r.status,
        r.headers,
        r.text()
    );
    assert_eq!(r.status, 503, "{:?} {}", r.headers, r.text());
    assert!(r.body.is_empty(), "{}", r.text());
    assert!(r.inference_headers().is_empty(), "{:?}", r.headers);
    assert_eq!(
        h.upstreams.total_hits(),
        hits_before,
        "the trapped request went upstream"
    );
    let panics = wait_for(Duration::from_secs(5), "the panic is logged", || {
        let lines = crash_lines(envoy);
        (!lines.is_empty()).then_some(lines)
    });

    // Until the dead VM is reloaded (Envoy waits out `vm_config.reload_config`'s backoff, 1 s by
    // default), requests that land on its worker get Envoy's empty 503; the other worker
    // serves. Then the next requests are all served. Bounded: 400 requests, 20 s.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut served = 0u64;
    let mut refused = 0u64;
    let mut after_reload = 0;
    let mut new_ids = Vec::new();
    for i in 0..400 {
        assert!(
            Instant::now() < deadline,
            "the VM was not reloaded in time (served {served}, refused {refused}): {:?}",
            vm_stats(envoy)
        );
        let reloaded = envoy.counter(RELOAD_SUCCESS) > 0;
        let r = must_send(port, &Request::get("/v2/models/sentiment/ready"));
        match r.status {
            200 => {
                served += 1;
                new_ids.push(decision_of(&r).0);
            }
            503 if !reloaded => {
                assert!(
                    r.body.is_empty() && r.inference_headers().is_empty(),
                    "{i}: {r:?}"
                );
                refused += 1;
            }
            s => panic!("request {i} after the trap (reloaded: {reloaded}): {s} {r:?}"),
        }
        if reloaded {
            after_reload += 1;
            if after_reload == 20 {
                break;
            }
        } else {
            thread::sleep(Duration::from_millis(25));
        }
    }
    assert_eq!(after_reload, 20, "20 requests after the reload, all served");
    let vm_after = vm_stats(envoy);
    eprintln!(
        "after the trap: {served} served, {refused} answered 503 while the VM was dead; wasm \
         stats {vm_before:?} → {vm_after:?}"
    );
    assert_eq!(vm_after[RELOAD_SUCCESS], 1, "one VM reloaded");
    assert_eq!(vm_after[RELOAD_FAILURE], 0);
    assert_eq!(
        vm_after[RELOAD_BACKOFF] - vm_before[RELOAD_BACKOFF],
        refused,
        "every 503 was Envoy's answer for the dead VM"
    );
    assert_eq!(
        h.upstreams.hits("llm-large"),
        0,
        "the forged route was used"
    );

    // The learned state was kept: every response served since counts on top of it, nothing
    // was reset (the state key was created once, at the first start).
    assert_eq!(
        wait_observations(envoy, "sentiment", 25 + served),
        25 + served
    );
    let now = model_state(envoy, "sentiment");
    let (a0, a1) = (arms(&learned), arms(&now));
    for t in ["v1", "v2"] {
        assert!(
            f(&a1[t]["alpha"]) >= f(&a0[t]["alpha"]) && f(&a1[t]["pulls"]) >= f(&a0[t]["pulls"]),
            "{t}: before {learned}, after {now}"
        );
    }
    let created = envoy
        .app_log()
        .matches("bandit state \"inference-router/v1/inference-router/state/sentiment\" created")
        .count();
    assert_eq!(created, 1, "the state was created again after the reload");
    // Spent decision ids stay spent; unspent ones, and ids issued by the reloaded VM, are
    // accepted.
    assert_refused(&send_feedback(envoy, &ds[0].0, 1.0), 409, "replayed");
    for id in [&ds[10].0, &new_ids[new_ids.len() - 1]] {
        let r = send_feedback(envoy, id, 1.0);
        assert_eq!(r.status, 200, "{}", r.text());
    }
    assert_eq!(
        wait_observations(envoy, "sentiment", 27 + served),
        27 + served
    );
    // The only crash lines are the deliberate trap's: the panic hook's line (its message, on
    // the next line, names the test trap) and V8's runtime error.
    let all = crash_lines(envoy);
    assert!(
        all.iter()
            .all(|l| l.contains("inference-router: panic: panicked at")
                || l.contains("proxy_on_request_headers failed: Uncaught RuntimeError")),
        "unexpected crash lines: {all:#?}"
    );
    assert_eq!(all.len(), 2, "one trap: {all:#?} (first seen: {panics:#?})");
    assert_eq!(
        envoy
            .app_log()
            .matches("test-trap build: trap requested by x-inference-test-trap")
            .count(),
        1
    );
}
