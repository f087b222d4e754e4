//! Upgrading the filter while traffic flows (docs/release.md, "Upgrades"): the LDS listener of a
//! real Envoy at `--concurrency 2` is switched to a new build of the module
//! (scripts/upgrade-build.sh: same source, another commit) and back (the rollback) while four
//! clients send header- and body-routed requests on new connections and feedback arrives.
//! Every answer is a 2xx (no non-2xx at all); the few requests whose connection Envoy closes
//! without an answer as the new module takes over (in flight in the old one) are counted and
//! retried once; the learned state and the spent decision ids are kept; ids signed by the old
//! build are accepted by the new one and the other way round.
//!
//! What keeps them is the `vm_id`: Envoy keeps shared data per vm_id for as long as a VM with
//! that vm_id exists, and it starts the new listener's VMs (new code, so new VMs) before it
//! drains the old listener's. A listener with another vm_id gets a store of its own and starts
//! from nothing, spent ids included (the last test).

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use common::learning::*;
use common::vm::*;
use common::*;
use integration::client::{self, must_send};
use integration::{
    build_gauge, envoy_dir, filter_version, switch_listener, upgrade_build_commit,
    upgrade_wasm_path, wasm_path, Envoy, EnvoyConfig, Request, Upstreams, LDS_LISTENER_TEMPLATE,
};
use serde_json::{json, Value};

const CLIENTS: usize = 4;
/// Each client pauses between requests, so traffic spans the switches without running out.
const MAX_PER_CLIENT: usize = 2000;
const PAUSE: Duration = Duration::from_millis(4);
/// Requests sent in each phase (before, after the upgrade, after the rollback) at least.
const PER_PHASE: usize = 80;

fn learning_cfg() -> Value {
    learning_config(json!([bandit_model(
        "sentiment",
        sentiment_targets(),
        json!({ "type": "epsilon_greedy", "epsilon": 0.1 }),
        Some(json!({ "status": true })),
    )]))
}

fn build_commit(envoy: &Envoy) -> String {
    state(envoy)["build"]["commit"]
        .as_str()
        .expect("build.commit")
        .to_string()
}

/// Switches the listener to `config` and waits until 5 answers in a row, each on a new
/// connection, come from the build with `commit`.
fn switch_to(envoy: &Envoy, config: &EnvoyConfig, ports: &BTreeMap<String, u16>, commit: &str) {
    let applied = switch_listener(envoy, config, ports);
    assert!(applied.is_ok(), "the listener was refused: {applied:?}");
    let mut streak = 0;
    wait_for(
        Duration::from_secs(10),
        &format!("build {commit} answers"),
        || {
            streak = if build_commit(envoy) == commit {
                streak + 1
            } else {
                0
            };
            (streak >= 5).then_some(())
        },
    );
}

/// Feedback for `id`, retried on 503 (contended shared data; the docs say retrying is safe).
fn feedback_accepted(envoy: &Envoy, id: &str) -> u16 {
    for _ in 0..20 {
        let r = send_feedback(envoy, id, 1.0);
        if r.status != 503 {
            return r.status;
        }
        thread::sleep(Duration::from_millis(50));
    }
    503
}

/// One request under load and the phase it was sent in: 0 old build, 1 while switching to the
/// new build, 2 new build, 3 while switching back, 4 rolled back. `status` 0: the connection
/// closed without an answer.
struct Sent {
    phase: u32,
    status: u16,
    error: Option<String>,
    reason: Option<String>,
    /// The second try of a request whose connection closed without an answer.
    retry: bool,
}

fn send_once(port: u16, req: &Request, phase: u32, retry: bool) -> Sent {
    match client::send(port, req) {
        Ok(r) => Sent {
            phase,
            status: r.status,
            error: None,
            reason: r.header("x-inference-reason").map(str::to_string),
            retry,
        },
        Err(e) => Sent {
            phase,
            status: 0,
            error: Some(e.to_string()),
            reason: None,
            retry,
        },
    }
}

/// Sends `req`; if the connection closes without an answer, sends it once more on a new
/// connection, as a client (or a proxy with `retry_on: reset`) does. Returns both tries.
fn send_with_retry(port: u16, req: &Request, phase: u32) -> Vec<Sent> {
    let first = send_once(port, req, phase, false);
    if first.status != 0 {
        return vec![first];
    }
    let second = send_once(port, req, phase, true);
    vec![first, second]
}

#[test]
fn upgrade_and_rollback_under_load_answer_every_request_and_keep_what_was_learned() {
    let upstreams = Upstreams::start_default();
    let ports = upstreams.ports();
    let old = EnvoyConfig::lds(&learning_cfg()).with_wasm(wasm_path());
    let new = old.clone().with_wasm(upgrade_wasm_path());
    let envoy = Envoy::start(&old, &upstreams);
    let (old_commit, new_commit) = (build_commit(&envoy), upgrade_build_commit());
    assert_ne!(old_commit, new_commit, "the two builds must be told apart");
    let vm_before = vm_stats(&envoy);
    let port = envoy.port();
    // Decision ids signed by the old build; the first one spent before the upgrade.
    let ds = decisions(&envoy, "sentiment", 40);
    assert_eq!(feedback_accepted(&envoy, &ds[0].0), 200);

    let deadline = Instant::now() + Duration::from_secs(60);
    let phase = AtomicU32::new(0);
    let stop = AtomicBool::new(false);
    let sent_total = AtomicUsize::new(0);
    let log: Mutex<Vec<Sent>> = Mutex::new(Vec::new());
    let feedback: Mutex<Vec<(u32, u16)>> = Mutex::new(Vec::new());
    let body = serde_json::to_vec(&chat_body("sentiment")).unwrap();
    let mut replays = Vec::new();
    thread::scope(|s| {
        for c in 0..CLIENTS {
            let (phase, stop, sent_total, log, body) = (&phase, &stop, &sent_total, &log, &body);
            s.spawn(move || {
                for i in 0..MAX_PER_CLIENT {
                    if stop.load(Ordering::SeqCst) || Instant::now() > deadline {
                        return;
                    }
                    let req = if (i + c) % 2 == 0 {
                        Request::get("/v2/models/sentiment/ready")
                    } else {
                        Request::post("/v1/chat/completions")
                            .header("content-type", "application/json")
                            .body(body.clone())
                    };
                    let p = phase.load(Ordering::SeqCst);
                    let tries = send_with_retry(port, &req, p);
                    log.lock().unwrap().extend(tries);
                    sent_total.fetch_add(1, Ordering::SeqCst);
                    thread::sleep(PAUSE);
                }
            });
        }
        // Feedback for old-build ids all along (ds[3..]; ds[0..3] are spent by hand below).
        let (phase, stop, feedback, ds) = (&phase, &stop, &feedback, &ds);
        s.spawn(move || {
            for (id, _) in &ds[3..] {
                if stop.load(Ordering::SeqCst) || Instant::now() > deadline {
                    return;
                }
                let p = phase.load(Ordering::SeqCst);
                let r = must_send(port, &feedback_body(id, json!(1.0)));
                feedback.lock().unwrap().push((p, r.status));
                thread::sleep(Duration::from_millis(40));
            }
        });

        let wait_sent = |n: usize| {
            let target = sent_total.load(Ordering::SeqCst) + n;
            while sent_total.load(Ordering::SeqCst) < target {
                assert!(Instant::now() < deadline, "traffic stalled");
                thread::sleep(Duration::from_millis(10));
            }
        };
        wait_sent(PER_PHASE);
        // Upgrade: the new build refuses an id the old one spent and takes one it signed.
        phase.store(1, Ordering::SeqCst);
        switch_to(&envoy, &new, &ports, &new_commit);
        phase.store(2, Ordering::SeqCst);
        replays.push(send_feedback(&envoy, &ds[0].0, 1.0));
        assert_eq!(
            feedback_accepted(&envoy, &ds[1].0),
            200,
            "old-build id refused"
        );
        let gauge = format!("wasmcustom.{}", build_gauge(&filter_version(), &new_commit));
        assert_eq!(envoy.counter(&gauge), 1, "{gauge} on /stats");
        wait_sent(PER_PHASE);
        // Rollback, the same way.
        phase.store(3, Ordering::SeqCst);
        switch_to(&envoy, &old, &ports, &old_commit);
        phase.store(4, Ordering::SeqCst);
        replays.push(send_feedback(&envoy, &ds[1].0, 1.0));
        assert_eq!(feedback_accepted(&envoy, &ds[2].0), 200);
        wait_sent(PER_PHASE);
        stop.store(true, Ordering::SeqCst);
    });
    let log = log.into_inner().unwrap();
    let feedback = feedback.into_inner().unwrap();

    let mut by_phase: BTreeMap<(u32, u16), u64> = BTreeMap::new();
    for s in &log {
        *by_phase.entry((s.phase, s.status)).or_default() += 1;
    }
    let answered: Vec<&Sent> = log.iter().filter(|s| s.status != 0).collect();
    let non_2xx = |p: u32| {
        let bad = |s: &&&Sent| s.phase == p && !(200..300).contains(&s.status);
        answered.iter().filter(bad).count()
    };
    let closed: Vec<&Sent> = log.iter().filter(|s| s.status == 0).collect();
    eprintln!(
        "upgrade {old_commit} -> {new_commit} -> {old_commit}: requests by (phase, status) \
         {by_phase:?} (status 0: closed without an answer, then retried); non-2xx answers while \
         upgrading {}, while rolling back {}, in all {}; feedback (phase, status) {feedback:?}",
        non_2xx(1),
        non_2xx(3),
        (0..=4).map(non_2xx).sum::<usize>()
    );
    // Every answer is a 2xx routed by the bandit, the retries' included.
    let failures: Vec<_> = answered
        .iter()
        .filter(|s| s.status != 200 || s.reason.as_deref() != Some("bandit"))
        .map(|s| (s.phase, s.status, s.reason.clone()))
        .collect();
    assert!(
        failures.is_empty(),
        "answers other than 200/bandit: {failures:?}"
    );
    // Envoy closes the connections of requests in flight in the old module on a worker at the
    // instant the new listener takes over there (a code change; a configuration-only reload
    // does not): only while switching, never more than one per client, never twice in a row.
    assert!(
        closed.iter().all(|s| matches!(s.phase, 1 | 3) && !s.retry),
        "closed without an answer: {:?}",
        closed
            .iter()
            .map(|s| (s.phase, s.retry, s.error.clone()))
            .collect::<Vec<_>>()
    );
    for p in [1, 3] {
        assert!(closed.iter().filter(|s| s.phase == p).count() <= CLIENTS);
    }
    // Traffic before, during and after each switch.
    for p in 0..=4 {
        assert!(
            by_phase.get(&(p, 200)).copied().unwrap_or(0) >= 10,
            "too few requests in phase {p}: {by_phase:?}"
        );
    }
    // Spent by the old build, replayed to the new one; spent by the new, replayed after the
    // rollback: both refused.
    for r in &replays {
        assert_refused(r, 409, "replayed");
    }
    assert!(
        feedback.iter().all(|(_, s)| matches!(s, 200 | 503)),
        "{feedback:?}"
    );

    // Nothing learned was lost: every response and every accepted feedback is in the state (a
    // request whose connection closed may or may not have been answered upstream).
    let responses = (ds.len() + answered.len()) as u64;
    let implicit = envoy.wasm_counter_eventually("inference_router.rewards.implicit", responses);
    assert!(
        (responses..=responses + closed.len() as u64).contains(&implicit),
        "implicit rewards {implicit} for {responses} responses"
    );
    let accepted = 3 + feedback.iter().filter(|(_, s)| *s == 200).count() as u64;
    assert_eq!(
        wait_observations(&envoy, "sentiment", implicit + accepted),
        implicit + accepted
    );

    assert_eq!(envoy.port(), port);
    assert_eq!(
        envoy.listener_port("inference"),
        port,
        "the socket was kept"
    );
    assert_eq!(envoy.counter("listener_manager.lds.update_success"), 3);
    // New code means new VMs; none crashed or was reloaded.
    let now = vm_stats(&envoy);
    assert!(now[V8_CREATED] > vm_before[V8_CREATED], "{now:?}");
    for k in [RELOAD, RELOAD_SUCCESS, RELOAD_FAILURE, RELOAD_BACKOFF] {
        assert_eq!(now[k], vm_before[k], "{k}");
    }
    let bad = crash_lines(&envoy);
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

/// envoy/lds/listener.yaml with another `vm_id`, as a template file of its own.
fn listener_with_vm_id(vm_id: &str) -> std::path::PathBuf {
    let text = std::fs::read_to_string(envoy_dir().join(LDS_LISTENER_TEMPLATE)).unwrap();
    assert_eq!(text.matches("vm_id: inference-router\n").count(), 1);
    let dir = std::env::temp_dir().join("inference-router-e2e");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("listener-{vm_id}-{}.yaml", std::process::id()));
    let changed = text.replace("vm_id: inference-router\n", &format!("vm_id: {vm_id}\n"));
    std::fs::write(&path, changed).unwrap();
    path
}

#[test]
fn a_listener_with_another_vm_id_starts_from_nothing_and_a_vm_id_without_vms_loses_its_store() {
    let upstreams = Upstreams::start_default();
    let ports = upstreams.ports();
    let config = EnvoyConfig::lds(&learning_cfg());
    let envoy = Envoy::start(&config, &upstreams);
    let ds = decisions(&envoy, "sentiment", 10);
    assert_eq!(feedback_accepted(&envoy, &ds[0].0), 200);
    assert_eq!(wait_observations(&envoy, "sentiment", 11), 11);

    let mut other = config.clone();
    other.listener_template = Some(listener_with_vm_id("inference-router-b"));
    let applied = switch_listener(&envoy, &other, &ports);
    assert!(applied.is_ok(), "{applied:?}");
    let mut streak = 0;
    wait_for(Duration::from_secs(10), "the new vm_id answers", || {
        streak = if observations(&envoy, "sentiment") == 0 {
            streak + 1
        } else {
            0
        };
        (streak >= 5).then_some(())
    });
    // The spent id is spendable again: its record is in the old vm_id's store.
    assert_eq!(feedback_accepted(&envoy, &ds[0].0), 200);
    assert_eq!(wait_observations(&envoy, "sentiment", 1), 1);

    // Once the old listener has drained (`--drain-time-s 1`), no VM has the old vm_id and Envoy
    // drops its store: going back to it starts from nothing too.
    thread::sleep(Duration::from_millis(1500));
    wait_for(Duration::from_secs(10), "the old listener drains", || {
        (envoy.counter("listener_manager.total_filter_chains_draining") == 0).then_some(())
    });
    assert!(switch_listener(&envoy, &config, &ports).is_ok());
    // The other store has 1 observation; the first had 11 and, dropped, has none.
    let mut streak = 0;
    let seen = wait_for(Duration::from_secs(10), "the first vm_id answers", || {
        let o = observations(&envoy, "sentiment");
        streak = if o != 1 { streak + 1 } else { 0 };
        (streak >= 5).then_some(o)
    });
    assert_eq!(seen, 0, "the store of a vm_id with no VM left was kept");
    let _ = std::fs::remove_file(other.listener_template.unwrap());
}
