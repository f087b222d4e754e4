//! What the filter reports: `x-inference-*` response headers on upstream answers and local
//! replies (unique decision ids), and its counters on `/stats` and `/stats/prometheus`.
//! Real Envoy, `--concurrency 2`, envoy/demo.yaml.

mod common;

use std::collections::BTreeSet;

use common::*;
use integration::{Envoy, EnvoyConfig, Harness, Request, Response, Upstreams};
use serde_json::json;

fn config() -> serde_json::Value {
    json!({
        "models": deterministic_models(),
        "rules": [
            { "name": "no-child", "when": { "headers": { "x-seldon-route": { "exact": "none" } } },
              "then": { "reply": { "status": 200, "echo": true } } },
            { "name": "deny", "when": { "headers": { "x-deny": { "present": true } } },
              "then": { "reject": { "status": 403, "message": "denied" } } }
        ]
    })
}

#[test]
fn response_metadata_on_upstream_and_local_replies_with_unique_decision_ids() {
    let h = Harness::demo(&config());
    let mut ids = BTreeSet::new();
    let mut record = |r: &Response| {
        let id = r
            .header("x-inference-decision")
            .unwrap_or_else(|| panic!("no x-inference-decision: {:?}", r.headers));
        assert!(!id.is_empty());
        assert_eq!(
            r.header_all("x-inference-decision").len(),
            1,
            "one decision header: {:?}",
            r.headers
        );
        assert!(ids.insert(id.to_string()), "decision id {id} repeated");
    };

    for i in 0..30 {
        // Upstream answer (new connection each: both workers).
        let r = h.send(&Request::get("/v2/models/iris/ready"));
        assert_upstream(&r, "iris-v1");
        assert_decision(&r, "iris", "v1", "weighted");
        assert_meta(&r, "body", None);
        assert_eq!(
            r.header("x-upstream-cluster"),
            Some("iris-v1"),
            "upstream headers kept"
        );
        record(&r);

        // Filter error reply: reason error, no target.
        let r = h.send(&Request::get(&format!("/v2/models/missing-{i}/ready")));
        assert_error_reply(&r, 404, "unknown_model");
        assert_meta(&r, "target", None);
        record(&r);

        // Rule reject and rule echo.
        let r = h.send(&Request::get("/v2/models/iris/ready").header("x-deny", "1"));
        assert_eq!(r.status, 403);
        assert_meta(&r, "reason", Some("rule:deny"));
        record(&r);
        let r = h.send(
            &Request::post("/x")
                .header("x-seldon-route", "none")
                .json(&json!({"i": i})),
        );
        assert_eq!(r.status, 200);
        assert_meta(&r, "reason", Some("rule:no-child"));
        record(&r);
    }
    // Keep-alive requests get their own ids too.
    let mut conn = h.envoy.connect();
    for _ in 0..20 {
        let r = conn
            .send(&Request::get("/v2/models/chat/ready"))
            .expect("request");
        assert_upstream(&r, "llm-small");
        record(&r);
    }
    conn.close();
    assert_eq!(ids.len(), 140);
}

#[test]
fn response_metadata_can_be_turned_off() {
    let h = Harness::demo(&json!({ "response_metadata": false, "models": deterministic_models() }));
    let r = h.send(&Request::get("/v2/models/iris/ready"));
    assert_upstream(&r, "iris-v1");
    assert!(
        r.inference_headers().is_empty(),
        "{:?}",
        r.inference_headers()
    );
    let r = h.send(&Request::get("/v2/models/nope/ready"));
    assert_eq!(r.status, 404);
    assert!(
        r.inference_headers().is_empty(),
        "{:?}",
        r.inference_headers()
    );
}

#[test]
fn metrics_on_stats_and_prometheus() {
    let h = Harness::demo(&config());

    for _ in 0..3 {
        assert_upstream(&h.send(&Request::get("/v2/models/iris/ready")), "iris-v1");
    }
    assert_upstream(
        &h.send(&Request::get("/v2/models/iris/versions/v2/ready")),
        "iris-v2",
    );
    assert_upstream(
        &h.send(&Request::post("/v1/chat/completions").json(&chat_body("chat"))),
        "llm-small",
    );
    assert_eq!(
        h.send(&Request::get("/v2/models/unknown/ready")).status,
        404
    );
    assert_eq!(
        h.send(&Request::post("/v1/chat/completions").json_text("{"))
            .status,
        400
    );
    assert_eq!(
        h.send(&Request::get("/v2/models/iris/ready").header("x-deny", "y"))
            .status,
        403
    );
    assert_eq!(
        h.send(
            &Request::post("/x")
                .header("x-seldon-route", "none")
                .json(&json!({}))
        )
        .status,
        200
    );

    let e = &h.envoy;
    assert_eq!(
        e.wasm_counter_eventually("inference_router.requests.iris.v1", 3),
        3
    );
    assert_eq!(
        e.wasm_counter_eventually("inference_router.requests.iris.v2", 1),
        1
    );
    assert_eq!(
        e.wasm_counter_eventually("inference_router.requests.chat.small", 1),
        1
    );
    assert_eq!(e.wasm_counter("inference_router.requests.chat.large"), 0);
    assert_eq!(
        e.wasm_counter_eventually("inference_router.decisions.weighted", 4),
        4
    );
    assert_eq!(
        e.wasm_counter_eventually("inference_router.decisions.path_version", 1),
        1
    );
    assert_eq!(
        e.wasm_counter_eventually("inference_router.decisions.rule.deny", 1),
        1
    );
    assert_eq!(
        e.wasm_counter_eventually("inference_router.decisions.rule.no-child", 1),
        1
    );
    assert_eq!(
        e.wasm_counter_eventually("inference_router.body.parse_failures", 1),
        1
    );
    assert_eq!(
        e.wasm_counter_eventually("inference_router.local_replies.error", 2),
        2
    );
    assert_eq!(
        e.wasm_counter_eventually("inference_router.local_replies.reject", 1),
        1
    );
    assert_eq!(
        e.wasm_counter_eventually("inference_router.local_replies.echo", 1),
        1
    );
    assert_eq!(e.wasm_counter("inference_router.body.too_large"), 0);
    // The requests counters agree with what the upstreams saw.
    assert_eq!(h.upstreams.hits("iris-v1"), 3);
    assert_eq!(h.upstreams.total_hits(), 5);

    // Prometheus: the same counter without `wasmcustom.`, dots as underscores.
    let prom = e.prometheus();
    let line = prom
        .lines()
        .find(|l| l.starts_with("inference_router_requests_iris_v1"))
        .unwrap_or_else(|| {
            let ours: Vec<&str> = prom.lines().filter(|l| l.contains("inference_router")).collect();
            panic!("inference_router_requests_iris_v1 not on /stats/prometheus; lines naming inference_router: {ours:#?}")
        });
    let value: f64 = line
        .rsplit(' ')
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or(-1.0);
    assert_eq!(value, 3.0, "{line}");
    assert!(
        prom.contains("# TYPE inference_router_requests_iris_v1 counter"),
        "TYPE line missing"
    );
}

#[test]
fn envoy_errors_after_a_decision_still_carry_metadata() {
    // iris-v2's server is down; `ghost` points at a cluster Envoy does not have.
    let upstreams = Upstreams::start_default();
    let mut ports = upstreams.ports();
    // A port held bound but never listening: refused, and no other socket (Envoy's own
    // listener included) can take it while the test runs.
    let refused = integration::RefusedPort::new();
    ports.insert("iris-v2".to_string(), refused.port());
    let mut models = deterministic_models();
    models.as_array_mut().unwrap().push(json!(
        { "name": "ghost", "targets": [ { "name": "g1", "cluster": "no-such-cluster", "weight": 1 } ] }
    ));
    let envoy = Envoy::start_with_ports(&EnvoyConfig::demo(&json!({ "models": models })), &ports);
    let h = Harness { envoy, upstreams };

    // Upstream connection refused: Envoy's own 503, after the filter decided.
    let r = h.send(&Request::get("/v2/models/iris/versions/v2/ready"));
    assert_eq!(r.status, 503, "{}", r.text());
    assert_decision(&r, "iris", "v2", "path-version");

    // A cluster Envoy does not know: also a 503 from Envoy, with the decision.
    let r = h.send(&Request::get("/v2/models/ghost/ready"));
    assert_eq!(r.status, 503, "{}", r.text());
    assert_decision(&r, "ghost", "g1", "weighted");
}

/// The filter crate's version (the root Cargo.toml's `[package]`).
fn filter_version() -> String {
    let toml = std::fs::read_to_string(integration::repo_root().join("Cargo.toml")).unwrap();
    let package = toml.split("[package]").nth(1).unwrap();
    let line = package.lines().find(|l| l.starts_with("version")).unwrap();
    line.split('"').nth(1).unwrap().to_string()
}

/// The commit `build.rs` embeds: git's short (12) HEAD, as the module was built from it.
fn head_commit() -> String {
    let out = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(integration::repo_root())
        .output()
        .expect("git");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn the_build_shows_on_stats_prometheus_and_the_state_endpoint() {
    let mut cfg = config();
    cfg["state_endpoint"] = json!({ "path": "/state", "token": "state-token-0123456789" });
    let h = Harness::demo(&cfg);
    let version = filter_version();
    let state = h
        .send(&Request::get("/state").header("authorization", "Bearer state-token-0123456789"))
        .json();
    let commit = state["build"]["commit"].as_str().unwrap().to_string();
    assert_eq!(state["build"]["version"], version, "{state}");
    // The module under test was built from this checkout (make builds it before the tests).
    assert_eq!(commit, head_commit(), "{state}");
    let gauge = format!(
        "inference_router.build.{}.{commit}",
        version.replace('.', "_")
    );
    assert_eq!(h.envoy.wasm_counter(&gauge), 1, "{gauge} on /stats");
    let prom = h.envoy.prometheus();
    let series = format!("{} 1", gauge.replace('.', "_"));
    assert!(
        prom.lines()
            .any(|l| l.starts_with(&gauge.replace('.', "_")) && l.ends_with(" 1")),
        "{series} missing from /stats/prometheus"
    );
}
