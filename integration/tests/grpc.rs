//! gRPC end to end (issue 11): real gRPC clients, the real Envoy at `--concurrency 2` with
//! `envoy/grpc.yaml` (h2c downstream, HTTP/2 upstreams), and real gRPC model servers: one
//! MLServer process per deployment (iris v1, iris v2, wine w1; integration/src/mlserver.rs), each
//! answering `ModelInfer` with the name of the deployment that served it. The client is
//! tritonclient (`integration/fixtures/grpc/client.py`), one process per test running every call
//! of that test.
//!
//! What the filter does with gRPC (docs/grpc.md): a call with
//! `content-type: application/grpc[+proto]` to a KServe v2 model RPC
//! (`/inference.GRPCInferenceService/ModelInfer`, `ModelReady`, `ModelMetadata`, ...) is routed by
//! the model name and version in its first message (a version pins the target of that name);
//! server-level RPCs (`ServerReady`, `ServerMetadata`, ...) go to `default_model`; `x-model`
//! wins. Refusals are trailers-only gRPC answers (HTTP 200, `grpc-status`): unknown model or
//! version NOT_FOUND, malformed message INVALID_ARGUMENT. Rewards read the call's `grpc-status`:
//! INTERNAL / UNKNOWN / UNAVAILABLE are failures (reward 0 with `reward.status`).
//!
//! Missing MLServer or tritonclient (`make setup`: `.venv/ml`) is a failure, never a skip.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::learning::{arms, f, model_state, state_section, wait_for};
use integration::{GrpcCall, GrpcHarness};
use serde_json::{json, Value};

const KSERVE: &str = "/inference.GRPCInferenceService";
const TF_PREDICT: &str = "/tensorflow.serving.PredictionService/Predict";
const SELDON_PREDICT: &str = "/seldon.protos.Seldon/Predict";

/// The configuration of the issue: iris split 1:1 over v1/v2, wine learning by Thompson
/// sampling from the calls' status, iris the default model, the state endpoint on.
fn grpc_config() -> Value {
    json!({
        "models": [
            { "name": "iris",
              "targets": [ { "name": "v1", "cluster": "iris-v1", "weight": 1 },
                           { "name": "v2", "cluster": "iris-v2", "weight": 1 } ] },
            { "name": "wine",
              "targets": [ { "name": "w1", "cluster": "wine-w1" } ],
              "strategy": { "type": "thompson" },
              "reward": { "status": true } }
        ],
        "default_model": "iris",
        "state_endpoint": state_section()
    })
}

fn start() -> GrpcHarness {
    let t = Instant::now();
    let h = GrpcHarness::start(&grpc_config(), 2);
    eprintln!(
        "MLServer x3 ready in {:.2?}, then Envoy live: {:.2?} in all",
        h.servers.startup_time(),
        t.elapsed()
    );
    h
}

/// Runs the calls through Envoy, logging how long the client took.
fn run(h: &GrpcHarness, calls: Value) -> Vec<GrpcCall> {
    let t = Instant::now();
    let out = h.calls(&calls);
    eprintln!("gRPC client: {} calls in {:.2?}", out.len(), t.elapsed());
    out
}

/// The outcomes of call `i` (all its repeats).
fn of(out: &[GrpcCall], i: usize) -> Vec<&GrpcCall> {
    out.iter().filter(|c| c.i == i).collect()
}

#[track_caller]
fn assert_ok(c: &GrpcCall, deployment: Option<&str>) {
    assert!(c.ok, "expected OK, got {c:?}");
    if let Some(d) = deployment {
        assert_eq!(c.deployment.as_deref(), Some(d), "answered by {c:?}");
    }
}

#[track_caller]
fn assert_code(c: &GrpcCall, code: &str) {
    assert_eq!(c.code, code, "grpc status of {c:?}");
    assert!(!c.ok, "{c:?}");
}

/// Asserts the routing metadata of a routed call: `x-inference-model`, `x-inference-target`,
/// and a non-empty `x-inference-reason` and `x-inference-decision`.
#[track_caller]
fn assert_routed(c: &GrpcCall, model: &str, target: &str) {
    assert_eq!(
        c.meta("x-inference-model"),
        Some(model),
        "metadata of {c:?}"
    );
    assert_eq!(
        c.meta("x-inference-target"),
        Some(target),
        "metadata of {c:?}"
    );
    for h in ["x-inference-reason", "x-inference-decision"] {
        assert!(c.meta(h).is_some_and(|v| !v.is_empty()), "{h} in {c:?}");
    }
}

/// Which target of iris a deployment is.
fn iris_target(deployment: &str) -> &'static str {
    match deployment {
        "iris-v1" => "v1",
        "iris-v2" => "v2",
        other => panic!("not an iris deployment: {other}"),
    }
}

/// Waits until the access log has `n` lines for gRPC calls to `method` and returns them.
fn access_lines(h: &GrpcHarness, method: &str, n: usize) -> Vec<String> {
    wait_for(Duration::from_secs(5), "access log lines", || {
        let lines: Vec<String> = h
            .envoy
            .stdout_log()
            .lines()
            .filter(|l| l.starts_with("[access]") && l.contains(&format!("{KSERVE}/{method} ")))
            .map(str::to_string)
            .collect();
        (lines.len() >= n).then_some(lines)
    })
}

/// The end-to-end plumbing, independent of reading the message: a call pinned by the `x-model`
/// header goes over h2c into Envoy and over HTTP/2 to the MLServer of that model, and its answer
/// (data, trailers with `grpc-status`) comes back intact.
#[test]
fn header_pinned_grpc_call_reaches_its_model_server_over_http2() {
    let h = start();
    let wine = json!({ "x-model": "wine" });
    let out = run(
        &h,
        json!([
            { "op": "infer", "model": "wine", "headers": wine, "repeat": 3 },
            { "op": "raw_infer", "model": "wine", "version": "w1", "headers": wine },
            { "op": "model_ready", "model": "wine", "version": "w1", "headers": wine },
            { "op": "model_metadata", "model": "wine", "headers": wine },
            // A compressed message (grpc-encoding: gzip): the header still routes it.
            { "op": "infer", "model": "wine", "gzip": true, "floats": 4096, "headers": wine },
        ]),
    );
    assert_eq!(out.len(), 7, "{out:#?}");
    for c in &out {
        assert_ok(c, None);
        assert_routed(c, "wine", "w1");
    }
    for c in of(&out, 0).into_iter().chain(of(&out, 1)) {
        assert_ok(c, Some("wine-w1"));
        assert_eq!(c.value["model_name"], "wine", "{c:?}");
    }
    assert_eq!(out[4].value, json!(true), "{:?}", out[4]);
    assert_ok(&out[5], Some("wine-w1"));
    assert_ok(&out[6], Some("wine-w1"));
    let rq = h.upstream_requests();
    assert_eq!(rq["wine-w1"], 7, "upstream requests {rq:?}");
    assert_eq!(rq["iris-v1"] + rq["iris-v2"], 0, "upstream requests {rq:?}");
    let stats = h.envoy.stats();
    let stat = |k: &str| stats.get(k).copied().unwrap_or(0);
    assert!(
        stat("http.inference.downstream_cx_http2_total") >= 1,
        "the client spoke HTTP/2 (h2c) to Envoy"
    );
    assert!(
        stat("cluster.wine-w1.upstream_cx_http2_total") >= 1,
        "Envoy spoke HTTP/2 to MLServer"
    );
    assert_eq!(stat("cluster.wine-w1.upstream_rq_200"), 7);
    let lines = access_lines(&h, "ModelInfer", 5);
    assert!(
        lines
            .iter()
            .all(|l| l.contains("HTTP/2\" 200 grpc-status=0 ") && l.contains("cluster=wine-w1")),
        "{lines:#?}"
    );
}

/// Routing by the model name and version in the first message, against the real servers: each
/// answer names the deployment that served it, and Envoy's per-cluster request counts agree.
#[test]
fn routes_grpc_calls_by_the_model_in_the_message() {
    let h = start();
    let out = run(
        &h,
        json!([
            { "op": "infer", "model": "wine" },                                   // 0
            { "op": "infer", "model": "iris", "version": "v2", "repeat": 20 },    // 1
            { "op": "infer", "model": "iris", "repeat": 40 },                     // 2
            { "op": "model_ready", "model": "wine", "version": "w1" },            // 3
            { "op": "model_metadata", "model": "iris", "version": "v1" },         // 4
            { "op": "server_ready" },                                             // 5
            { "op": "server_metadata", "repeat": 10 },                            // 6
            { "op": "raw_infer", "model": "iris", "version": "v1" },              // 7
            // x-model wins over the message: routed to wine-w1, whose MLServer has no iris.
            { "op": "raw_infer", "model": "iris", "headers": { "x-model": "wine" } }, // 8
            { "op": "model_ready", "model": "iris", "version": "v2" },            // 9
            { "op": "server_live" },                                              // 10
        ]),
    );
    assert_eq!(
        out.len(),
        1 + 20 + 40 + 1 + 1 + 1 + 10 + 1 + 1 + 1 + 1,
        "{out:#?}"
    );
    let mut answered: BTreeMap<String, u64> = BTreeMap::new();

    let wine = of(&out, 0)[0];
    assert_ok(wine, Some("wine-w1"));
    assert_routed(wine, "wine", "w1");
    *answered.entry("wine-w1".into()).or_default() += 1;

    for c in of(&out, 1) {
        assert_ok(c, Some("iris-v2"));
        assert_routed(c, "iris", "v2");
        assert_eq!(c.value["model_version"], "v2", "{c:?}");
        *answered.entry("iris-v2".into()).or_default() += 1;
    }

    let mut split: BTreeMap<String, u64> = BTreeMap::new();
    for c in of(&out, 2) {
        assert_ok(c, None);
        let d = c.deployment.clone().expect("infer names its deployment");
        assert_routed(c, "iris", iris_target(&d));
        *split.entry(d.clone()).or_default() += 1;
        *answered.entry(d).or_default() += 1;
    }
    assert!(
        split.get("iris-v1").is_some_and(|&n| n > 0)
            && split.get("iris-v2").is_some_and(|&n| n > 0),
        "a 1:1 split of 40 calls reaches both deployments: {split:?}"
    );

    let ready = of(&out, 3)[0];
    assert_ok(ready, None);
    assert_eq!(ready.value, json!(true), "{ready:?}");
    assert_routed(ready, "wine", "w1");
    *answered.entry("wine-w1".into()).or_default() += 1;

    let meta = of(&out, 4)[0];
    assert_ok(meta, Some("iris-v1"));
    assert_routed(meta, "iris", "v1");
    *answered.entry("iris-v1".into()).or_default() += 1;

    // Server-level RPCs go to the default model (iris), split like its other calls.
    let server_ready = of(&out, 5)[0];
    assert_ok(server_ready, None);
    assert_eq!(server_ready.value, json!(true));
    assert_eq!(
        server_ready.meta("x-inference-model"),
        Some("iris"),
        "{server_ready:?}"
    );
    for c in of(&out, 6) {
        assert_ok(c, None);
        let d = c
            .deployment
            .clone()
            .expect("ServerMetadata names its server");
        assert_routed(c, "iris", iris_target(&d));
        *answered.entry(d).or_default() += 1;
    }
    let live = of(&out, 10)[0];
    assert_ok(live, None);
    assert_eq!(live.meta("x-inference-model"), Some("iris"), "{live:?}");

    // The raw stub reads the initial metadata of the call itself.
    let raw = of(&out, 7)[0];
    assert_ok(raw, Some("iris-v1"));
    for (k, v) in [("x-inference-model", "iris"), ("x-inference-target", "v1")] {
        assert_eq!(
            raw.initial_metadata.get(k).map(String::as_str),
            Some(v),
            "initial metadata of a routed ModelInfer: {raw:?}"
        );
    }
    *answered.entry("iris-v1".into()).or_default() += 1;

    let pinned = of(&out, 8)[0];
    assert_code(pinned, "NOT_FOUND");
    assert!(
        pinned.message.contains("iris"),
        "wine's MLServer has no iris: {pinned:?}"
    );
    assert_routed(pinned, "wine", "w1");
    *answered.entry("wine-w1".into()).or_default() += 1;

    let ready_v2 = of(&out, 9)[0];
    assert_ok(ready_v2, None);
    assert_eq!(ready_v2.value, json!(true));
    assert_routed(ready_v2, "iris", "v2");
    *answered.entry("iris-v2".into()).or_default() += 1;

    // Envoy's counts agree with who answered; the two calls whose answer names no server
    // (ServerReady, ServerLive) went to one of iris's.
    let rq = h.upstream_requests();
    assert_eq!(
        rq["wine-w1"], answered["wine-w1"],
        "upstream {rq:?}, answers {answered:?}"
    );
    assert!(rq["iris-v1"] >= answered["iris-v1"] && rq["iris-v2"] >= answered["iris-v2"]);
    assert_eq!(
        rq["iris-v1"] + rq["iris-v2"],
        answered["iris-v1"] + answered["iris-v2"] + 2,
        "upstream {rq:?}, answers {answered:?}"
    );
    eprintln!("iris split of 40: {split:?}; upstream requests {rq:?}");
}

/// Refusals are gRPC trailers-only answers (HTTP 200, `grpc-status`, `grpc-message`) with the
/// right status, and the refused call never reaches a model server: unknown model or version,
/// malformed messages, and rules' rejects and replies (rules on gRPC metadata and on the
/// message's routing fields).
#[test]
fn refuses_grpc_calls_with_grpc_status_and_no_upstream_request() {
    let mut cfg = grpc_config();
    let on = |v: &str| json!({ "headers": { "x-test": { "exact": v } } });
    let reject = |status: u16| json!({ "reject": { "status": status, "message": "test says no" } });
    cfg["rules"] = json!([
        { "name": "deny", "when": on("deny"), "then": reject(403) },
        { "name": "throttle", "when": on("throttle"), "then": reject(429) },
        { "name": "down", "when": on("down"), "then": reject(503) },
        { "name": "answer", "when": on("reply"), "then": { "reply": { "status": 200, "body": {} } } },
        { "name": "canary", "when": { "body": { "/model_version": { "exact": "canary" } } },
          "then": reject(403) },
        { "name": "to-v2", "when": on("v2"), "then": { "target": "v2" } },
    ]);
    let h = GrpcHarness::start(&cfg, 2);
    let hdr = |v: &str| json!({ "x-test": v });
    let out = run(
        &h,
        json!([
            { "op": "infer", "model": "nosuch" },                                      // 0
            { "op": "infer", "model": "iris", "version": "v9" },                       // 1
            { "op": "model_ready", "model": "wine", "version": "w7" },                 // 2
            // TF-Serving PredictRequest{model_spec{name: "iris", version{value: 7}}}.
            { "op": "raw", "method": TF_PREDICT, "hex": "0a0a0a046972697312020807" },  // 3
            { "op": "raw", "method": format!("{KSERVE}/ModelInfer"), "hex": "ffffff" }, // 4
            { "op": "raw", "method": format!("{KSERVE}/ModelReady"), "hex": "0a" },     // 5
            { "op": "raw", "method": TF_PREDICT, "hex": "0a05" },                       // 6
            { "op": "infer", "model": "iris", "headers": hdr("deny") },                 // 7
            { "op": "infer", "model": "iris", "headers": hdr("throttle") },             // 8
            { "op": "infer", "model": "iris", "headers": hdr("down") },                 // 9
            { "op": "infer", "model": "iris", "headers": hdr("reply") },                // 10
            { "op": "infer", "model": "iris", "version": "canary" },                    // 11
            // A rule pinning a target: the one call here that reaches a server.
            { "op": "infer", "model": "iris", "headers": hdr("v2") },                   // 12
        ]),
    );
    assert_eq!(out.len(), 13, "{out:#?}");
    assert_code(&out[0], "NOT_FOUND");
    assert!(out[0].message.contains("nosuch"), "{:?}", out[0]);
    let expected = [
        (1, "NOT_FOUND", "error"),
        (2, "NOT_FOUND", "error"),
        (3, "NOT_FOUND", "error"),
        (4, "INVALID_ARGUMENT", "error"),
        (5, "INVALID_ARGUMENT", "error"),
        (6, "INVALID_ARGUMENT", "error"),
        (7, "PERMISSION_DENIED", "rule:deny"),
        (8, "RESOURCE_EXHAUSTED", "rule:throttle"),
        (9, "UNAVAILABLE", "rule:down"),
        (10, "UNIMPLEMENTED", "rule:answer"),
        (11, "PERMISSION_DENIED", "rule:canary"),
    ];
    for (i, code, reason) in expected {
        let c = &out[i];
        assert_code(c, code);
        assert!(!c.message.is_empty(), "grpc-message of {c:?}");
        assert_eq!(
            c.meta("x-inference-reason"),
            Some(reason),
            "refusal metadata {c:?}"
        );
    }
    for c in &out[..12] {
        // Trailers-only: the routing metadata comes in the only header block.
        assert!(c.initial_metadata.is_empty(), "trailers-only: {c:?}");
    }
    for c in &out[7..10] {
        assert!(c.message.contains("test says no"), "{c:?}");
    }
    let pinned = &out[12];
    assert_ok(pinned, Some("iris-v2"));
    assert_routed(pinned, "iris", "v2");
    assert_eq!(
        pinned.meta("x-inference-reason"),
        Some("rule:to-v2"),
        "{pinned:?}"
    );
    let rq = h.upstream_requests();
    assert_eq!(
        (rq["iris-v1"], rq["iris-v2"], rq["wine-w1"]),
        (0, 1, 0),
        "a refused call must not reach a model server: {rq:?}"
    );
    // HTTP 200 with the status in the only header block.
    let lines = access_lines(&h, "ModelInfer", 9);
    for status in [5, 3, 7, 8, 14, 12] {
        assert!(
            lines
                .iter()
                .any(|l| l.contains(&format!("HTTP/2\" 200 grpc-status={status} "))),
            "grpc-status {status}: {lines:#?}"
        );
    }
}

/// `reward.status` on gRPC: an OK call is reward 1, a call the model server fails (INTERNAL) is
/// reward 0, and so is one Envoy fails because the server is gone (UNAVAILABLE). Thompson
/// sampling: alpha += r, beta += 1 - r.
#[test]
fn learns_from_the_grpc_status_of_each_call() {
    let mut h = start();
    let arm = |h: &GrpcHarness| {
        let m = model_state(&h.envoy, "wine");
        let a = arms(&m)["w1"].clone();
        (
            m["observations"].as_u64().unwrap_or(0),
            f(&a["alpha"]),
            f(&a["beta"]),
        )
    };
    let (obs0, alpha0, beta0) = arm(&h);
    let out = run(
        &h,
        json!([
            { "op": "infer", "model": "wine", "repeat": 3 },
            { "op": "infer", "model": "wine", "fail": true },
        ]),
    );
    for c in of(&out, 0) {
        assert_ok(c, Some("wine-w1"));
    }
    let failed = of(&out, 1)[0];
    assert_code(failed, "INTERNAL");
    assert!(failed.message.contains("wine-w1 failed"), "{failed:?}");
    assert_routed(failed, "wine", "w1");
    let (obs1, alpha1, beta1) = wait_for(Duration::from_secs(10), "4 rewards learned", || {
        let s = arm(&h);
        (s.0 >= obs0 + 4).then_some(s)
    });
    assert_eq!(obs1, obs0 + 4);
    assert!(
        (alpha1 - alpha0 - 3.0).abs() < 1e-9,
        "alpha {alpha0} → {alpha1}"
    );
    assert!(
        (beta1 - beta0 - 1.0).abs() < 1e-9,
        "beta {beta0} → {beta1}: the INTERNAL call is reward 0"
    );

    // Streams: each is one call. An answered stream is reward 1; a stream that answers its
    // first request and then fails has its INTERNAL in real trailers, after data: reward 0.
    let out = run(
        &h,
        json!([
            { "op": "stream_infer", "model": "wine", "count": 2 },
            { "op": "stream_infer", "model": "wine", "count": 2, "fail_at": 1 },
        ]),
    );
    assert_eq!(out.len(), 4, "{out:#?}");
    for c in &out[..3] {
        assert_ok(c, Some("wine-w1"));
    }
    assert_code(&out[3], "INTERNAL");
    assert_eq!(
        out[3].meta("x-inference-target"),
        Some("w1"),
        "{:?}",
        out[3]
    );
    let (obs1, alpha1, beta1) = {
        let (o, a, b) = wait_for(Duration::from_secs(10), "2 stream rewards learned", || {
            let s = arm(&h);
            (s.0 >= obs1 + 2).then_some(s)
        });
        assert_eq!(o, obs1 + 2);
        assert!(
            (a - alpha1 - 1.0).abs() < 1e-9,
            "alpha {alpha1} → {a}: the answered stream is reward 1"
        );
        assert!(
            (b - beta1 - 1.0).abs() < 1e-9,
            "beta {beta1} → {b}: the failed stream is reward 0"
        );
        (o, a, b)
    };

    // The server is gone: Envoy answers UNAVAILABLE itself; that is reward 0 too.
    h.servers.kill("wine-w1");
    let out = run(&h, json!([{ "op": "infer", "model": "wine" }]));
    assert_code(&out[0], "UNAVAILABLE");
    let (obs2, alpha2, beta2) = wait_for(Duration::from_secs(10), "1 more reward", || {
        let s = arm(&h);
        (s.0 > obs1).then_some(s)
    });
    assert_eq!(obs2, obs1 + 1);
    assert!((alpha2 - alpha1).abs() < 1e-9, "alpha {alpha1} → {alpha2}");
    assert!(
        (beta2 - beta1 - 1.0).abs() < 1e-9,
        "beta {beta1} → {beta2}: UNAVAILABLE is reward 0"
    );
}

/// What a real client does beyond one small unary call: a bidirectional `ModelStreamInfer`
/// stream (routed by its first message, answered before the client half-closes), a 2 MiB
/// message (over `body.max_bytes`: routed by its first fields all the same), TF-Serving
/// `PredictionService` / `ModelService` calls (routed by `model_spec`; MLServer does not serve
/// TF-Serving, so they end UNIMPLEMENTED at the chosen server), and a gzip-compressed message.
#[test]
fn routes_streams_large_messages_and_tf_serving_calls() {
    let h = start();
    let out = run(
        &h,
        json!([
            { "op": "stream_infer", "model": "wine", "count": 3 },                        // 0
            { "op": "stream_infer", "model": "iris", "version": "v2", "count": 3 },       // 1
            { "op": "infer", "model": "iris", "version": "v2", "floats": 524288 },        // 2
            // PredictRequest{model_spec{name: "wine"}}
            { "op": "raw", "method": TF_PREDICT, "hex": "0a060a0477696e65" },              // 3
            // PredictRequest{model_spec{name: "iris", version_label: "v2"}}
            { "op": "raw", "method": TF_PREDICT, "hex": "0a0a0a046972697322027632" },      // 4
            // GetModelStatusRequest{model_spec{name: "wine"}}
            { "op": "raw", "method": "/tensorflow.serving.ModelService/GetModelStatus",
              "hex": "0a060a0477696e65" },                                                 // 5
            // The same wine call as 0, its message gzip-compressed, no x-model.
            { "op": "infer", "model": "wine", "gzip": true, "floats": 4096 },             // 6
            // A routing field written twice: protobuf's last value wins, for the model
            // server and for the filter alike. model_name "wine", ..., model_name "iris":
            { "op": "raw_infer", "model": "wine", "suffix_hex": "0a0469726973" },          // 7
            // model_name "iris", then the wine request:
            { "op": "raw_infer", "model": "wine", "prefix_hex": "0a0469726973" },          // 8
            // iris, model_version "v1", ..., model_version "v2":
            { "op": "raw_infer", "model": "iris", "version": "v1", "suffix_hex": "12027632" }, // 9
            // The other model RPCs (MLServer does not implement them: UNIMPLEMENTED).
            // ModelConfigRequest{name: "wine"}
            { "op": "raw", "method": format!("{KSERVE}/ModelConfig"), "hex": "0a0477696e65" }, // 10
            // ModelStatisticsRequest{name: "iris", version: "v2"}
            { "op": "raw", "method": format!("{KSERVE}/ModelStatistics"),
              "hex": "0a046972697312027632" },                                            // 11
            // Seldon's gRPC API: routed by headers and path only.
            { "op": "raw", "method": SELDON_PREDICT, "hex": "", "headers": { "x-model": "wine" } }, // 12
            { "op": "raw", "method": SELDON_PREDICT, "hex": "" },                           // 13
        ]),
    );
    assert_eq!(out.len(), 3 + 3 + 5 + 3 + 4, "{out:#?}");
    for c in of(&out, 0) {
        assert_ok(c, Some("wine-w1"));
        assert_routed(c, "wine", "w1");
        assert_eq!(
            c.initial_metadata
                .get("x-inference-model")
                .map(String::as_str),
            Some("wine")
        );
    }
    for c in of(&out, 1) {
        assert_ok(c, Some("iris-v2"));
        assert_routed(c, "iris", "v2");
    }
    let large = of(&out, 2)[0];
    assert_ok(large, Some("iris-v2"));
    assert_routed(large, "iris", "v2");
    for (i, model, target) in [
        (3, "wine", "w1"),
        (4, "iris", "v2"),
        (5, "wine", "w1"),
        (10, "wine", "w1"),
        (11, "iris", "v2"),
        (12, "wine", "w1"),
    ] {
        let c = of(&out, i)[0];
        assert_code(c, "UNIMPLEMENTED");
        assert_routed(c, model, target);
    }
    let compressed = of(&out, 6)[0];
    eprintln!("compressed wine call without x-model: {compressed:?}");
    assert_eq!(
        compressed.meta("x-inference-body"),
        Some("compressed"),
        "the filter says it did not read a compressed message: {compressed:?}"
    );
    let last_name = of(&out, 7)[0];
    assert_ok(last_name, None);
    assert_eq!(last_name.value["model_name"], "iris", "{last_name:?}");
    let d = last_name
        .deployment
        .clone()
        .expect("infer names its deployment");
    assert_routed(last_name, "iris", iris_target(&d));
    let first_name = of(&out, 8)[0];
    assert_ok(first_name, Some("wine-w1"));
    assert_routed(first_name, "wine", "w1");
    let last_version = of(&out, 9)[0];
    assert_ok(last_version, Some("iris-v2"));
    assert_routed(last_version, "iris", "v2");
    let rq = h.upstream_requests();
    // Streams and calls 0..=5, 7..=12 as routed, 13 to the default model; the compressed call went wherever headers and
    // path send it (the default model, iris).
    let seldon = of(&out, 13)[0];
    assert_code(seldon, "UNIMPLEMENTED");
    assert_eq!(
        seldon.meta("x-inference-model"),
        Some("iris"),
        "default model: {seldon:?}"
    );
    assert_eq!(rq["wine-w1"], 1 + 2 + 1 + 2, "upstream {rq:?}");
    assert_eq!(
        rq["iris-v1"] + rq["iris-v2"],
        1 + 1 + 1 + 1 + 2 + 2,
        "upstream {rq:?}"
    );
    assert!(rq["iris-v2"] >= 5, "upstream {rq:?}");
    let streams = access_lines(&h, "ModelStreamInfer", 2);
    assert!(
        streams
            .iter()
            .all(|l| l.contains("HTTP/2\" 200 grpc-status=0 ")),
        "{streams:#?}"
    );
}

/// Fallback on gRPC failures: a call that fails with INTERNAL (HTTP 200, `grpc-status: 13`)
/// cools its target down like a 5xx, and the next calls go to the fallback target.
#[test]
fn falls_back_when_a_grpc_target_fails() {
    let mut cfg = grpc_config();
    cfg["models"][0] = json!({
        "name": "iris",
        "targets": [ { "name": "v1", "cluster": "iris-v1", "weight": 1 },
                     { "name": "v2", "cluster": "iris-v2", "weight": 0 } ],
        "fallback": ["v2"],
        "cooldown_seconds": 60
    });
    let h = GrpcHarness::start(&cfg, 2);
    let out = run(
        &h,
        json!([
            { "op": "infer", "model": "iris", "repeat": 3 },
            { "op": "infer", "model": "iris", "fail": true },
            { "op": "infer", "model": "iris", "repeat": 5 },
        ]),
    );
    assert_eq!(out.len(), 9, "{out:#?}");
    for c in of(&out, 0) {
        assert_ok(c, Some("iris-v1"));
        assert_routed(c, "iris", "v1");
    }
    let failed = of(&out, 1)[0];
    assert_code(failed, "INTERNAL");
    assert_routed(failed, "iris", "v1");
    for c in of(&out, 2) {
        assert_ok(c, Some("iris-v2"));
        assert_routed(c, "iris", "v2");
        assert_eq!(c.meta("x-inference-reason"), Some("fallback"), "{c:?}");
    }
    let rq = h.upstream_requests();
    assert_eq!((rq["iris-v1"], rq["iris-v2"]), (4, 5), "upstream {rq:?}");
}
