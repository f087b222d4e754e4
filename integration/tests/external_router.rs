//! External router (`models[].router`, Seldon's router contract) against the real Envoy at
//! `--concurrency 2`, envoy/demo.yaml, with the `router` cluster served by a REAL Seldon router
//! microservice: `seldon-core-microservice MyRouter --service-type ROUTER` from PyPI
//! `seldon-core` (installed into `<repo>/.venv`), running integration/seldon/MyRouter.py, which
//! routes to the child named by the request's first feature and logs the rewards it is sent.
//!
//! The filter POSTs the request body to the router and follows its answer: child N (reason
//! `router`), -1 (fan-out to every target), -2 (the request body is the answer). A router answer
//! out of range, a router slower than `timeout_ms`, or a router that is down leaves the model's
//! own strategy decision in place and counts `inference_router.router.failures`. Rewards sent to
//! the filter's feedback path for the router's decisions are forwarded to its `/send-feedback`.
//! Missing Python or seldon-core is a failure with the install line, never a skipped test.

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::learning::wait_for;
use common::*;
use integration::{closed_port, repo_root, Envoy, EnvoyConfig, Request, Response, Upstreams};
use serde_json::{json, Value};

/// A Seldon router microservice in its own process group, stopped (group and all) on drop.
struct SeldonRouter {
    child: Option<Child>,
    port: u16,
    feedback_log: PathBuf,
    dir: PathBuf,
}

impl SeldonRouter {
    fn start(unit_id: &str) -> SeldonRouter {
        use std::os::unix::process::CommandExt;
        let bin = repo_root().join(".venv/bin/seldon-core-microservice");
        assert!(
            bin.is_file(),
            "{} is missing: install the Seldon microservice wrapper with \
             `.venv/bin/pip install seldon-core==1.18.2 'setuptools<70'`",
            bin.display()
        );
        let dir = std::env::temp_dir()
            .join("inference-router-e2e")
            .join(format!(
                "seldon-{}-{}",
                std::process::id(),
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos()
            ));
        std::fs::create_dir_all(&dir).unwrap();
        let feedback_log = dir.join("feedback.jsonl");
        let (port, grpc, metrics) = (closed_port(), closed_port(), closed_port());
        let log = std::fs::File::create(dir.join("seldon.log")).unwrap();
        let child = Command::new(&bin)
            .args(["MyRouter", "--service-type", "ROUTER", "--threads", "4"])
            .args(["--http-port", &port.to_string()])
            .args(["--grpc-port", &grpc.to_string()])
            .args(["--metrics-port", &metrics.to_string()])
            .current_dir(repo_root().join("integration/seldon"))
            .env("PREDICTIVE_UNIT_ID", unit_id)
            .env("ROUTER_FEEDBACK_LOG", &feedback_log)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", bin.display()));
        let mut router = SeldonRouter {
            child: Some(child),
            port,
            feedback_log,
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ping = integration::client::send(port, &Request::get("/health/ping"));
            if ping.is_ok_and(|r| r.status == 200) {
                break;
            }
            if let Some(Ok(Some(status))) = router.child.as_mut().map(Child::try_wait) {
                panic!("the Seldon router exited ({status}):\n{}", router.log());
            }
            assert!(
                Instant::now() < deadline,
                "the Seldon router did not answer /health/ping within 60 s:\n{}",
                router.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        router
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("seldon.log")).unwrap_or_default()
    }

    /// The rewards the router received, one JSON document each.
    fn feedback(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.feedback_log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// Stops the microservice: its whole process group (gunicorn and its workers).
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let group = format!("-{}", child.id());
            let kill = |signal: &str| {
                let _ = Command::new("kill")
                    .args([signal, "--", &group])
                    .stderr(Stdio::null())
                    .status();
            };
            kill("-TERM");
            let deadline = Instant::now() + Duration::from_secs(10);
            while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            kill("-KILL");
            let _ = child.wait();
        }
    }
}

impl Drop for SeldonRouter {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!("===== Seldon router log =====\n{}", self.log());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

const SIGNING_KEY: &str = "router-tests-signing-key-0123456789";

fn router_config() -> Value {
    json!({
        "models": [
            { "name": "iris",
              "targets": [ { "name": "v1", "cluster": "iris-v1", "weight": 1 },
                           { "name": "v2", "cluster": "iris-v2", "weight": 0 },
                           { "name": "v3", "cluster": "sentiment-v2", "weight": 0 } ],
              "router": { "cluster": "router", "path": "/route", "timeout_ms": 1500,
                          "feedback_path": "/send-feedback" } }
        ],
        "feedback": { "path": "/feedback", "signing_key": SIGNING_KEY }
    })
}

/// A Seldon prediction request for model iris whose first feature names the child.
fn predict(first: i64, second: f64) -> (Request, Vec<u8>) {
    let body =
        serde_json::to_vec(&json!({"data": {"names": ["a", "b"], "ndarray": [[first, second]]}}))
            .unwrap();
    let req = Request::post("/api/v1.0/predictions")
        .header("x-model", "iris")
        .header("content-type", "application/json")
        .body(body.clone());
    (req, body)
}

struct Setup {
    // Drop order: Envoy, then the fake upstreams, then the router.
    envoy: Envoy,
    upstreams: Upstreams,
    router: SeldonRouter,
}

impl Setup {
    fn start() -> Setup {
        let router = SeldonRouter::start("iris");
        let upstreams = Upstreams::start_default();
        let mut ports = upstreams.ports();
        ports.insert("router".into(), router.port);
        let envoy = Envoy::start_with_ports(&EnvoyConfig::demo(&router_config()), &ports);
        Setup {
            envoy,
            upstreams,
            router,
        }
    }

    fn send(&self, req: &Request) -> Response {
        self.envoy.send(req)
    }

    fn failures(&self) -> u64 {
        self.envoy.wasm_counter("inference_router.router.failures")
    }
}

#[track_caller]
fn assert_routed(s: &Setup, child: i64, cluster: &str, target: &str) -> Response {
    let (req, body) = predict(child, 4.5);
    let r = s.send(&req);
    let echo = assert_upstream(&r, cluster);
    assert_body_intact(&echo, &body);
    assert_eq!(echo.path, "/api/v1.0/predictions");
    assert_decision(&r, "iris", target, "router");
    r
}

/// The strategy's own choice (v1, weight 1): what a request gets when the router cannot decide.
#[track_caller]
fn assert_strategy_fallback(s: &Setup, child: i64) {
    let before = s.failures();
    let (req, body) = predict(child, 1.0);
    let r = s.send(&req);
    let echo = assert_upstream(&r, "iris-v1");
    assert_body_intact(&echo, &body);
    assert_decision(&r, "iris", "v1", "weighted");
    assert_eq!(s.failures(), before + 1, "router.failures");
}

#[test]
fn a_seldon_router_picks_the_child_fans_out_answers_itself_and_learns() {
    let mut s = Setup::start();

    // Child N: routed there, reason `router`.
    for _ in 0..3 {
        assert_routed(&s, 1, "iris-v2", "v2");
        assert_routed(&s, 0, "iris-v1", "v1");
        assert_routed(&s, 2, "sentiment-v2", "v3");
    }
    assert_eq!(s.envoy.wasm_counter("inference_router.decisions.router"), 9);
    assert_eq!(s.failures(), 0);

    // -1: every child, one reply.
    let (req, body) = predict(-1, 2.0);
    let r = s.send(&req);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_meta(&r, "reason", Some("fan-out"));
    let v = r.json();
    assert_eq!(v["partial"], false, "{v}");
    let clusters: Vec<&str> = v["responses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["body"]["cluster"].as_str().unwrap())
        .collect();
    assert_eq!(clusters, ["iris-v1", "iris-v2", "sentiment-v2"], "{v}");
    for e in v["responses"].as_array().unwrap() {
        assert_eq!(e["body"]["body_fnv64"], integration::fnv64_hex(&body));
    }
    let fan_out_decision = r.header("x-inference-decision").unwrap().to_string();

    // -2: no child: the request body is the answer, and no model server is asked.
    let before = s.upstreams.total_hits();
    let (req, body) = predict(-2, 3.0);
    let r = s.send(&req);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.body, body);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_meta(&r, "model", Some("iris"));
    assert_meta(&r, "reason", Some("router"));
    assert_eq!(s.upstreams.total_hits(), before);

    // Out of range, and slower than timeout_ms (the router sleeps 5 s on 99): the strategy.
    assert_strategy_fallback(&s, 7);
    assert_strategy_fallback(&s, 99);

    // A version in the path pins the target: the router is not asked.
    let body = serde_json::to_vec(&json!({"data": {"ndarray": [[1, 0.0]]}})).unwrap();
    let pinned = s.send(
        &Request::post("/v2/models/iris/versions/v1/infer")
            .header("content-type", "application/json")
            .body(body.clone()),
    );
    assert_body_intact(&assert_upstream(&pinned, "iris-v1"), &body);
    assert_decision(&pinned, "iris", "v1", "path-version");

    // A GET (readiness, metadata) is not an inference call: the router is not asked.
    let r = s.send(&Request::get("/v2/models/iris/ready"));
    assert_upstream(&r, "iris-v1");
    assert_decision(&r, "iris", "v1", "weighted");
    assert_eq!(s.failures(), 2);

    // Rewards for the router's decisions are forwarded to its /send-feedback.
    let routed = assert_routed(&s, 1, "iris-v2", "v2");
    let decision = routed.header("x-inference-decision").unwrap().to_string();
    let fb =
        s.send(&Request::post("/feedback").json(&json!({"decision": decision, "reward": 0.75})));
    assert_eq!(fb.status, 200, "{}", fb.text());
    assert_eq!(
        fb.json(),
        json!({"forwarded": {"model": "iris", "target": "v2", "reward": 0.75}})
    );
    let again =
        s.send(&Request::post("/feedback").json(&json!({"decision": decision, "reward": 0.75})));
    assert_eq!(again.status, 409, "{}", again.text());
    // Seldon's own Feedback message, with the request it was about.
    let routed = assert_routed(&s, 0, "iris-v1", "v1");
    let decision0 = routed.header("x-inference-decision").unwrap().to_string();
    let seldon = json!({
        "request": {"data": {"ndarray": [[0, 8.5]]}},
        "response": {"meta": {"routing": {"iris": 0}, "tags": {"x-inference-decision": decision0}}},
        "reward": 1
    });
    let fb = s.send(&Request::post("/feedback").json(&seldon));
    assert_eq!(fb.status, 200, "{}", fb.text());
    // The fan-out the router chose is child -1.
    let fb = s.send(
        &Request::post("/feedback")
            .header("x-inference-decision", &fan_out_decision)
            .header("x-inference-reward", "0.25"),
    );
    assert_eq!(fb.status, 200, "{}", fb.text());

    let got = wait_for(
        Duration::from_secs(15),
        "three rewards at the router",
        || {
            let f = s.router.feedback();
            (f.len() >= 3).then_some(f)
        },
    );
    assert_eq!(got.len(), 3, "{got:?}");
    let find = |routing: i64| {
        got.iter()
            .find(|f| f["routing"] == routing)
            .unwrap_or_else(|| panic!("no reward with routing {routing}: {got:?}"))
    };
    assert_eq!(find(1)["reward"], 0.75);
    assert_eq!(find(0)["reward"], 1.0);
    assert_eq!(find(0)["features"], json!([0.0, 8.5]));
    assert_eq!(find(-1)["reward"], 0.25);
    wait_for(Duration::from_secs(10), "forwards counted", || {
        (s.envoy
            .wasm_counter("inference_router.router.feedback_forwarded")
            == 3)
            .then_some(())
    });
    assert_eq!(
        s.envoy
            .wasm_counter("inference_router.router.feedback_failures"),
        0
    );

    // The router goes down: the strategy decides, and each request counts a failure.
    s.router.stop();
    for _ in 0..3 {
        assert_strategy_fallback(&s, 1);
    }
    assert_eq!(
        s.envoy.counter("wasm.inference-router.vm_reload_success"),
        0,
        "a VM crashed"
    );
}

#[test]
fn malformed_router_answers_fall_back_and_excluding_configurations_are_refused() {
    // A fake router (the demo's `router` cluster) that answers something that is not a child.
    let h = integration::Harness::demo(&router_config());
    h.upstreams.set_behaviour(
        "router",
        integration::Behaviour::json(json!({"data": {"ndarray": [[1, 2]]}})),
    );
    for i in 0..3 {
        let (req, body) = predict(1, f64::from(i));
        let r = h.send(&req);
        assert_body_intact(&assert_upstream(&r, "iris-v1"), &body);
        assert_decision(&r, "iris", "v1", "weighted");
    }
    assert_eq!(h.upstreams.hits("router"), 3);
    // What the router was sent: the client's body, POSTed to the configured path.
    for got in h.upstreams.received("router") {
        assert_eq!((got.method.as_str(), got.path.as_str()), ("POST", "/route"));
        assert_eq!(
            serde_json::from_slice::<Value>(&got.body).unwrap()["data"]["names"],
            json!(["a", "b"])
        );
    }
    assert_eq!(h.envoy.wasm_counter("inference_router.router.failures"), 3);
    drop(h);

    // With residency a router could pick a target outside the required region: such a
    // configuration is refused at start, naming the field.
    let mut cfg = router_config();
    cfg["residency"] = json!({"header": "x-data-region"});
    let upstreams = integration::Upstreams::start_default();
    let failure = integration::Envoy::start_expect_failure(
        &integration::EnvoyConfig::new("demo.yaml", cfg.to_string()),
        &upstreams,
    );
    assert!(!failure.status.success());
    assert!(
        failure
            .log
            .contains("models[0].router: cannot be combined with residency"),
        "{}",
        failure.log
    );
}
