//! Learning as one fleet, natively: several VMs, each its own Envoy (its own shared data), and
//! one in-memory etcd (`fake_etcd`) answering their callouts; the e2e suite
//! (integration/tests/fleet.rs) is the judge against real Envoys and a real etcd cluster.
//! Exact numbers: views add up to one learner, time decay composes, a spend whose answer was
//! lost counts once, a retired replica that comes back is not counted twice, a replica id's
//! previous life is resumed, the first request waits for the fleet's view, etcd logins.

use crate::driver::*;
use crate::fake_etcd::FakeEtcd;
use inference_router_core::host::{Action, Host, Stream as Half};
use serde_json::{json, Value};

const SYNC_MS: u64 = 1000;
const T0_S: u64 = 1_800_000_000;

fn fleet_section() -> Value {
    json!({ "cluster": "etcd", "prefix": "/t", "sync_ms": SYNC_MS })
}

fn chat(strategy: Value, reward: bool) -> Value {
    let mut cfg = json!({
        "models": [ bandit_model("chat",
            json!([ { "name": "good", "cluster": "llm-large" }, { "name": "poor", "cluster": "llm-small" } ]),
            strategy, reward.then(|| json!({ "status": true }))) ],
        "feedback": feedback_section(3600),
        "state_endpoint": state_section(),
        "fleet": fleet_section(),
    });
    if !reward {
        cfg["models"][0].as_object_mut().unwrap().remove("reward");
    }
    cfg
}

/// Several replicas and the etcd they share.
struct World {
    etcd: FakeEtcd,
    vms: Vec<Vm>,
    /// Replicas cut off from etcd: their callouts are never answered.
    cut: Vec<bool>,
}

impl World {
    fn start(config: &Value, n: usize) -> World {
        let mut w = World {
            etcd: FakeEtcd::new(),
            vms: Vec::new(),
            cut: Vec::new(),
        };
        for _ in 0..n {
            w.add(config);
        }
        w
    }

    /// One more replica; its first round (sent at configure) is answered.
    fn add(&mut self, config: &Value) -> usize {
        let i = self.vms.len() as u64;
        let vm = Vm::start_seeded(config, (1000 + i, 2000 + i));
        if let Some(first) = self.vms.first() {
            // Every replica's clock reads the same.
            let lag = first.host.now_secs().saturating_sub(vm.host.now_secs());
            vm.host.advance_secs(lag);
        }
        self.vms.push(vm);
        self.cut.push(false);
        self.pump(self.vms.len() - 1);
        self.vms.len() - 1
    }

    fn now_s(&self) -> u64 {
        self.vms.first().map_or(T0_S, |v| v.host.now_secs())
    }

    /// Answers every callout replica `i`'s root context sent, and what they lead to.
    fn pump(&mut self, i: usize) {
        for _ in 0..16 {
            let sent = self.vms[i].host.take_dispatched();
            if sent.is_empty() || self.cut[i] {
                return;
            }
            let now = self.now_s();
            for d in sent {
                let (headers, body) = self.etcd.answer(&d, now);
                self.vms[i].answer_root(d.token, &headers, &body);
            }
        }
    }

    /// `ms` pass everywhere, then every replica's root context ticks (a round when due).
    fn tick(&mut self, ms: u64) {
        for vm in &self.vms {
            vm.host.advance_ms(ms);
        }
        let now = self.now_s();
        self.etcd.expire(now);
        for i in 0..self.vms.len() {
            self.vms[i].tick(1);
            self.pump(i);
        }
    }

    /// `n` sync periods.
    fn sync(&mut self, n: usize) {
        for _ in 0..2 * n {
            self.tick(SYNC_MS / 2);
        }
    }

    /// A request to replica `i` answered by the upstream with `status` (and the stream's end).
    fn serve(&mut self, i: usize, status: &'static str) -> String {
        let mut sent = self.vms[i].send(&get("/v2/models/chat/ready"), b"");
        assert_eq!(sent.action, Action::Continue, "replica {i} did not route");
        let target = self.vms[i]
            .host
            .request_header_value("x-inference-target")
            .unwrap();
        self.vms[i].respond(&mut sent, &[(":status", status)], b"");
        target
    }

    /// A decision id of replica `i`.
    fn decision(&mut self, i: usize) -> String {
        self.vms[i].decision("chat").0
    }

    /// POSTs feedback to replica `i`, answering its etcd callouts, until it replies.
    fn feedback(&mut self, i: usize, decision: &str, reward: f64) -> LocalReply {
        let body = serde_json::to_vec(&json!({ "decision": decision, "reward": reward })).unwrap();
        let mut sent = self.vms[i].send(&post_json(FEEDBACK_PATH), &body);
        assert_eq!(sent.action, Action::Pause);
        for _ in 0..8 {
            if let Some(reply) = self.vms[i].host.reply() {
                return reply;
            }
            let d = self.vms[i].one_dispatched();
            let (headers, body) = self.etcd.answer(&d, self.now_s());
            self.vms[i].host.take_dispatched();
            self.vms[i].answer(&mut sent, d.token, &headers, &body);
        }
        panic!("no reply to the feedback")
    }

    fn stat(&self, i: usize, name: &str) -> u64 {
        self.vms[i].counter(&format!("fleet.{name}"))
    }
}

#[test]
fn three_replicas_add_up_to_the_traffic_they_served_together() {
    let mut w = World::start(&chat(json!({ "type": "thompson" }), true), 3);
    let mut served = [[0u64; 2]; 2];
    for k in 0..60 {
        let status = if k % 4 == 0 { "500" } else { "200" };
        let t = w.serve(k % 3, status);
        served[usize::from(t == "poor")][usize::from(status == "200")] += 1;
    }
    w.sync(2);
    let own: Vec<u64> = (0..3)
        .map(|i| {
            w.vms[i].model_state("chat")["own_observations"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(own, [20, 20, 20]);
    for i in 0..3 {
        assert_eq!(w.vms[i].observations("chat"), 60, "replica {i}");
        for (t, name) in ["good", "poor"].iter().enumerate() {
            let [alpha, beta, pulls] = w.vms[i].arm("chat", name);
            let [fail, ok] = served[t];
            assert_eq!(pulls, (fail + ok) as f64, "replica {i} {name}");
            assert_eq!(
                (alpha, beta),
                (1.0 + ok as f64, 1.0 + fail as f64),
                "replica {i} {name}"
            );
        }
        assert_eq!(w.vms[i].model_state("chat")["fleet"]["replicas"], 2);
        assert_eq!(w.stat(i, "sync.failures"), 0);
    }
    // The gauges show the fleet's view too.
    w.tick(SYNC_MS * 3);
    assert_eq!(
        w.vms[1].host.metric("inference_router.fleet.replicas"),
        Some(3)
    );
    let pulls = w.vms[1]
        .host
        .metric("inference_router.bandit.chat.good.pulls")
        .unwrap();
    assert_eq!(pulls, served[0][0] + served[0][1]);
}

#[test]
fn time_decay_composes_across_replicas() {
    // A: success on `good` at 0 s; B: failure on `good` at 10 s; half-life 10 s. One learner
    // would hold, at 10 s: pulls ½ + 1, alpha 1 + ½, beta 1 + 1.
    let mut w = World::start(
        &chat(
            json!({ "type": "thompson", "decay": { "half_life_seconds": 10 } }),
            false,
        ),
        2,
    );
    let good = |w: &mut World, i: usize| loop {
        let (id, target) = w.vms[i].decision("chat");
        if target == "good" {
            break id;
        }
    };
    let ms = |w: &World, i: usize| w.vms[i].host.now_nanos().unwrap() / 1_000_000;
    let id = good(&mut w, 0);
    let t_a = ms(&w, 0);
    assert_eq!(w.feedback(0, &id, 1.0).status, 200);
    for _ in 0..20 {
        w.tick(500);
    }
    let id = good(&mut w, 1);
    let t_b = ms(&w, 1);
    assert_eq!(w.feedback(1, &id, 0.0).status, 200);
    w.sync(2);
    // Each view is as of its last merge: one learner would hold, then, the success of t_a and
    // the failure of t_b, each weighing 0.5^(age / 10 s).
    for i in 0..2 {
        let m = w.vms[i].model_state("chat");
        let t = m["fleet"]["as_of_ms"].as_u64().unwrap();
        let weight = |at: u64| 0.5f64.powf((t - at) as f64 / 10_000.0);
        let [alpha, beta, pulls] = w.vms[i].arm("chat", "good");
        let close = |a: f64, b: f64| (a - b).abs() < 1e-9;
        assert!(
            close(pulls, weight(t_a) + weight(t_b)),
            "replica {i}: pulls {pulls} {m}"
        );
        assert!(
            close(alpha, 1.0 + weight(t_a)) && close(beta, 1.0 + weight(t_b)),
            "replica {i}: {m}"
        );
    }
    // Per-update discounting does not add up across replicas: refused with a fleet.
    let errors = Vm::try_start(&chat(
        json!({ "type": "thompson", "decay": { "half_life": 100 } }),
        false,
    ))
    .err()
    .unwrap();
    assert!(errors[0].contains("models[0].strategy.decay"), "{errors:?}");
    assert!(errors[0].contains("half_life_seconds"), "{errors:?}");
}

#[test]
fn a_spend_whose_answer_was_lost_counts_once() {
    let mut w = World::start(&chat(json!({ "type": "thompson" }), false), 2);
    // The spend reached etcd, its answer did not: 503 + Retry-After, in doubt.
    let id = w.decision(0);
    w.etcd.lose_answers = 1;
    let r = w.feedback(0, &id, 1.0);
    assert_refused(&r, 503, "unavailable");
    assert_eq!(r.header("retry-after"), Some("1"));
    assert_eq!(w.stat(0, "feedback.in_doubt"), 1);
    assert_eq!(w.vms[0].observations("chat"), 0);
    // The sender's next attempt finds the id spent by this Envoy: applied now, once.
    assert_eq!(w.feedback(0, &id, 1.0).status, 200);
    assert_eq!(w.vms[0].observations("chat"), 1);
    assert_refused(&w.feedback(0, &id, 1.0), 409, "replayed");
    assert_refused(&w.feedback(1, &id, 1.0), 409, "replayed");

    // Lost again, and the sender never comes back: the next sync round looks and applies it.
    let id = w.decision(0);
    w.etcd.lose_answers = 1;
    assert_refused(&w.feedback(0, &id, 0.0), 503, "unavailable");
    w.sync(1);
    assert_eq!(w.vms[0].observations("chat"), 2);
    assert_eq!(w.stat(0, "feedback.in_doubt_applied"), 2);
    // The sender comes back after all: told it counted (once), then replays are refused.
    let late = w.feedback(0, &id, 0.0);
    assert_eq!(late.status, 200, "{}", late.text());
    assert_refused(&w.feedback(0, &id, 0.0), 409, "replayed");
    w.sync(2);
    assert_eq!(w.vms[0].observations("chat"), 2);
    assert_eq!(w.vms[1].observations("chat"), 2);

    // etcd down: refused, nothing in doubt (it never reached etcd), and it counts when back.
    let id = w.decision(1);
    w.etcd.down = true;
    assert_refused(&w.feedback(1, &id, 1.0), 503, "unavailable");
    assert_eq!(w.stat(1, "feedback.in_doubt"), 0);
    w.etcd.down = false;
    assert_eq!(w.feedback(1, &id, 1.0).status, 200);
    w.sync(2);
    assert_eq!(w.vms[0].observations("chat"), 3);
}

#[test]
fn a_lease_etcd_forgot_is_granted_again() {
    let mut w = World::start(&chat(json!({ "type": "thompson" }), false), 1);
    let id = w.decision(0);
    assert_eq!(w.feedback(0, &id, 1.0).status, 200);
    // etcd lost its leases (restored from an old snapshot, say).
    w.etcd.expire(u64::MAX);
    let id = w.decision(0);
    assert_eq!(w.feedback(0, &id, 1.0).status, 200);
    assert_refused(&w.feedback(0, &id, 1.0), 409, "replayed");
    assert_eq!(w.vms[0].observations("chat"), 2);
}

#[test]
fn a_replica_cut_off_is_retired_then_comes_back_without_being_counted_twice() {
    let mut cfg = chat(json!({ "type": "thompson" }), true);
    cfg["fleet"]["retire_after_seconds"] = json!(10);
    let mut w = World::start(&cfg, 3);
    for k in 0..30 {
        w.serve(k % 3, "200");
    }
    w.sync(2);
    assert_eq!(w.vms[0].observations("chat"), 30);
    // Replica 2 is cut off (it keeps serving and learning alone) for longer than 10 s.
    w.cut[2] = true;
    for _ in 0..5 {
        w.serve(2, "200");
    }
    w.sync(14);
    assert_eq!(w.stat(0, "retired") + w.stat(1, "retired"), 1);
    assert!(w
        .etcd
        .keys()
        .iter()
        .any(|k| k.ends_with("/learned/retired")));
    assert_eq!(
        w.vms[0].observations("chat"),
        30,
        "what it learned stays counted"
    );
    // Back: its key is gone, it takes away what was folded, and publishes the rest.
    w.cut[2] = false;
    w.sync(3);
    assert_eq!(w.stat(2, "rebased"), 1);
    for i in 0..3 {
        assert_eq!(w.vms[i].observations("chat"), 35, "replica {i}");
    }
    assert_eq!(w.vms[2].model_state("chat")["own_observations"], 5);
}

#[test]
fn a_replica_id_resumes_its_previous_life_and_a_live_duplicate_is_refused() {
    let mut cfg = chat(json!({ "type": "thompson" }), true);
    cfg["fleet"]["replica"] = json!("gw-1");
    let mut w = World::start(&cfg, 1);
    let mut other = cfg.clone();
    other["fleet"]["replica"] = json!("gw-2");
    w.add(&other);
    for k in 0..20 {
        w.serve(k % 2, "200");
    }
    w.sync(2);
    // gw-1 restarts: a new Envoy (empty shared data) with the same replica id. Its old life
    // went quiet for longer than a heartbeat (10 syncs); the new one adopts what it published.
    w.cut[0] = true;
    w.sync(14);
    w.vms[0] = Vm::start_seeded(&cfg, (77, 88));
    let lag = w.vms[1].host.now_secs() - w.vms[0].host.now_secs();
    w.vms[0].host.advance_secs(lag);
    w.cut[0] = false;
    w.pump(0);
    w.sync(2);
    assert_eq!(w.vms[0].model_state("chat")["own_observations"], 10);
    assert_eq!(w.vms[0].observations("chat"), 20);
    assert_eq!(w.vms[1].observations("chat"), 20);
    // A second live Envoy with the id gw-2: refused to publish over the live one.
    let dup = w.add(&other);
    w.sync(2);
    assert_eq!(w.stat(dup, "replica_conflicts"), 1);
    assert_eq!(w.vms[0].observations("chat"), 20);
    w.serve(dup, "200");
    w.sync(2);
    assert_eq!(
        w.vms[0].observations("chat"),
        20,
        "the duplicate's rewards are not published"
    );
}

#[test]
fn the_first_request_after_a_start_waits_for_the_fleets_view() {
    // epsilon 0: from the fleet's view, the best mean (`good`); from the prior, an unpulled
    // target at random, which for the seeds below is `poor` (checked on a control replica).
    let greedy = json!({ "type": "epsilon_greedy", "epsilon": 0.0 });
    let mut w = World::start(&chat(greedy.clone(), true), 1);
    for _ in 0..20 {
        let mut sent = w.vms[0].send(&get("/v2/models/chat/ready"), b"");
        let poor = w.vms[0].routed_cluster().as_deref() == Some("llm-small");
        w.vms[0].respond(
            &mut sent,
            &[(":status", if poor { "500" } else { "200" })],
            b"",
        );
    }
    w.sync(2);
    let seeds = (5, 6);
    let mut control_cfg = chat(greedy.clone(), true);
    control_cfg["fleet"]["warm_start"] = json!(false);
    let mut control = Vm::start_seeded(&control_cfg, seeds);
    let _lost = control.host.take_dispatched();
    control.send(&get("/v2/models/chat/ready"), b"");
    assert_eq!(
        control.routed_cluster().as_deref(),
        Some("llm-small"),
        "the control routes from the prior"
    );
    // A new replica whose first round is lost (etcd still answering it when traffic comes).
    for (path, body, headers) in [
        (
            "/v2/models/chat/ready",
            Vec::new(),
            get("/v2/models/chat/ready"),
        ),
        (
            "/v1/chat/completions",
            chat_body("chat"),
            post_json("/v1/chat/completions"),
        ),
    ] {
        let mut vm = Vm::start_seeded(&chat(greedy.clone(), true), seeds);
        let lag = w.vms[0].host.now_secs() - vm.host.now_secs();
        vm.host.advance_secs(lag);
        let _lost = vm.host.take_dispatched();
        let mut sent = vm.send(&headers, &body);
        assert_eq!(sent.action, Action::Pause, "{path}: it waits");
        assert_eq!(vm.routed_cluster(), None);
        let read = vm.one_dispatched();
        assert_eq!(read.header(":path"), Some("/v3/kv/range"));
        let (h, b) = w.etcd.answer(&read, w.now_s());
        vm.answer(&mut sent, read.token, &h, &b);
        assert_eq!(vm.host.resumed(), [Half::Request], "{path}");
        assert_eq!(vm.routed_cluster().as_deref(), Some("llm-large"), "{path}");
        vm.respond(&mut sent, OK, b"");
        // Once the view is merged, nothing waits any more.
        let sent = vm.send(&get("/v2/models/chat/ready"), b"");
        assert_eq!(sent.action, Action::Continue);
    }
}

#[test]
fn etcd_logins_and_a_refused_password() {
    let mut cfg = chat(json!({ "type": "thompson" }), false);
    cfg["fleet"]["auth"] = json!({ "username": "router", "password": "s3cret" });
    let mut w = World::start(&cfg, 0);
    w.etcd.require_login("router", "s3cret");
    w.add(&cfg);
    w.add(&cfg);
    w.sync(2);
    assert_eq!(w.stat(0, "sync.failures"), 0);
    assert!(w.stat(0, "sync.success") > 0);
    let id = w.decision(0);
    assert_eq!(w.feedback(0, &id, 1.0).status, 200);
    assert_refused(&w.feedback(1, &id, 1.0), 409, "replayed");
    // A replica with the wrong password: refused, and it does not hammer etcd with logins.
    let mut wrong = cfg.clone();
    wrong["fleet"]["auth"]["password"] = json!("nope");
    let bad = w.add(&wrong);
    let id = w.decision(bad);
    assert_refused(&w.feedback(bad, &id, 1.0), 503, "unavailable");
    let before = w.etcd.requests;
    w.sync(3);
    assert!(
        w.etcd.requests - before <= 3 * 2 * 2 + 1,
        "logins held back"
    );
    assert_eq!(w.stat(bad, "sync.success"), 0);
}

#[test]
fn unusable_contributions_are_ignored_and_counted() {
    let mut w = World::start(&chat(json!({ "type": "thompson" }), true), 1);
    w.etcd.put_raw("/t/v1/inference-router/learned/replicas/evil", br#"{"v":1,"replica":"evil","incarnation":"x","seq":1,"written_ms":1,"models":{"chat":[{"id":"ignored","as_of_ms":0,"updates":5,"targets":{"good":[-1e9,0,0,0]}}]}}"#);
    w.etcd
        .put_raw("/t/v1/inference-router/learned/replicas/junk", b"\xff\x00");
    w.serve(0, "200");
    w.sync(1);
    assert_eq!(w.stat(0, "invalid_contributions"), 2);
    assert_eq!(w.vms[0].observations("chat"), 1);
}

#[test]
fn a_cooldown_one_replica_learned_steers_another() {
    let cfg = json!({
        "models": [ { "name": "chat",
            "targets": [ { "name": "primary", "cluster": "llm-large", "weight": 1 },
                         { "name": "backup", "cluster": "llm-small", "weight": 0 } ],
            "fallback": ["backup"], "cooldown_seconds": 60 } ],
        "fleet": fleet_section(),
    });
    let mut w = World::start(&cfg, 2);
    let mut sent = w.vms[0].send(&get("/v2/models/chat/ready"), b"");
    w.vms[0].respond(&mut sent, &[(":status", "503"), ("retry-after", "30")], b"");
    assert_eq!(w.serve(1, "200"), "primary", "not yet synced");
    w.sync(2);
    let mut sent = w.vms[1].send(&get("/v2/models/chat/ready"), b"");
    assert_eq!(w.vms[1].routed_cluster().as_deref(), Some("llm-small"));
    w.vms[1].respond(&mut sent, OK, b"");
    assert_eq!(
        w.vms[1].response_header("x-inference-reason").as_deref(),
        Some("fallback")
    );
    // 30 s later (Retry-After), the cooldown is over everywhere.
    for _ in 0..31 {
        w.tick(1000);
    }
    assert_eq!(w.serve(1, "200"), "primary");
}
