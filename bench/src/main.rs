//! Native micro-benchmark of the decision core: `policy::decide` per decision and
//! `payload::extract` per KiB, built with the filter's release profile.
//!
//! `core-bench` prints a Markdown table of median nanoseconds (each case is calibrated so one
//! sample takes `BENCH_MICRO_SAMPLE_MS`, default 20 ms, then `BENCH_MICRO_SAMPLES`, default 21,
//! samples are taken; the table shows the median and the spread of the samples).
//! `core-bench --write-bodies DIR` writes the request bodies the Envoy benchmark sends
//! (`chat-1k.json`, `chat-64k.json`, the large-prompt latency rows' `prompt-{1k,64k,256k,1m}.json`
//! and the gRPC `ModelInfer` call `infer-1k.grpc`), so both benchmarks use the same documents.

mod whole;

use std::hint::black_box;
use std::time::{Duration, Instant};

use inference_router_core::bandit::ModelState;
use inference_router_core::config::{parse, Config};
use inference_router_core::feedback::DecisionToken;
use inference_router_core::payload::grpc::{read_first, Read, Rpc};
use inference_router_core::payload::{extract, Fields, Format};
use inference_router_core::policy::{decide, Body, NoShared, Outcome, RequestView, Shared};
use inference_router_core::rng::Rng;

/// A request as the core sees it: a header list, looked up by name (the host adapter makes one
/// host call per header instead).
struct Req(Vec<(String, String)>);

impl Req {
    fn new(method: &str, path: &str, headers: &[(&str, &str)]) -> Req {
        let mut h = vec![
            (":method".to_string(), method.to_string()),
            (":path".to_string(), path.to_string()),
            (":authority".to_string(), "127.0.0.1".to_string()),
        ];
        h.extend(headers.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        Req(h)
    }
}

impl RequestView for Req {
    fn header(&self, name: &str) -> Option<String> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }
}

const SUFFIX: &str = r#"],"model":"chat","temperature":0.7,"max_tokens":256,"stream":false}"#;

fn paragraph(i: usize) -> String {
    let words = [
        "the",
        "model",
        "router",
        "reads",
        "only",
        "what",
        "routing",
        "needs",
        "and",
        "skips",
        "everything",
        "else",
        "in",
        "one",
        "pass",
        "over",
        "bytes",
        "latency",
        "matters",
        "tokens",
        "answer",
        "question",
        "context",
        "window",
    ];
    let mut s = format!("Turn {i}: ");
    for k in 0..60 {
        s.push_str(words[(i * 7 + k * 3) % words.len()]);
        s.push(' ');
    }
    // Escapes a JSON string skipper must handle.
    s.push_str(r#"\"quoted\" caf\u00e9\nend."#);
    s
}

/// An OpenAI chat/completions request of exactly `size` bytes. Like the OpenAI Python SDK's,
/// `messages` comes before `model`, so the whole conversation is read before the model name.
pub fn chat_body(size: usize) -> Vec<u8> {
    let mut s = String::from(
        r#"{"messages":[{"role":"system","content":"You are a helpful assistant.\nAnswer briefly."}"#,
    );
    let open = r#",{"role":"user","content":""#;
    let close = r#""}"#;
    let reserve = open.len() + close.len() + SUFFIX.len();
    let mut i = 0;
    loop {
        let role = if i % 2 == 0 { "user" } else { "assistant" };
        let msg = format!(r#",{{"role":"{role}","content":"{}"}}"#, paragraph(i));
        if s.len() + msg.len() + reserve > size {
            break;
        }
        s.push_str(&msg);
        i += 1;
    }
    let fill = size.saturating_sub(s.len() + reserve);
    s.push_str(open);
    s.extend("lorem ipsum dolor sit amet ".chars().cycle().take(fill));
    s.push_str(close);
    s.push_str(SUFFIX);
    s.into_bytes()
}

/// A chat/completions request of exactly `size` bytes with `"model"` as its first key and one
/// long user message (a large prompt: a pasted document), as the large-prompt latency rows
/// send it.
pub fn prompt_body(size: usize) -> Vec<u8> {
    let head = r#"{"model":"chat","messages":[{"role":"user","content":""#;
    let tail = r#""}],"temperature":0.7,"max_tokens":256,"stream":false}"#;
    let mut s = String::from(head);
    let mut i = 0;
    loop {
        let part = paragraph(i) + r"\n\n";
        if s.len() + part.len() + tail.len() > size {
            break;
        }
        s.push_str(&part);
        i += 1;
    }
    let fill = size.saturating_sub(s.len() + tail.len());
    s.extend("lorem ipsum dolor sit amet ".chars().cycle().take(fill));
    s.push_str(tail);
    s.into_bytes()
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A length-delimited protobuf field (wire type 2).
fn bytes_field(out: &mut Vec<u8>, number: u64, value: &[u8]) {
    varint(out, number << 3 | 2);
    varint(out, value.len() as u64);
    out.extend_from_slice(value);
}

/// The body of a KServe v2 / Triton gRPC `ModelInfer` call with one FP32 tensor of `floats`
/// values (shape `[1, floats]`) in `raw_input_contents`: the 5-byte gRPC prefix (uncompressed,
/// big-endian length) and an `inference.ModelInferRequest` in protobuf wire format, fields in
/// number order as protobuf writers emit them: `model_name` (1) = "iris", no `model_version`
/// (2, empty, so not written), `inputs` (5) = { `name` (1) "input-0", `datatype` (2) "FP32",
/// `shape` (3, packed) [1, floats] }, `raw_input_contents` (7) = the tensor, little-endian.
pub fn infer_body(floats: usize) -> Vec<u8> {
    let mut shape = Vec::new();
    varint(&mut shape, 1);
    varint(&mut shape, floats as u64);
    let mut input = Vec::new();
    bytes_field(&mut input, 1, b"input-0");
    bytes_field(&mut input, 2, b"FP32");
    bytes_field(&mut input, 3, &shape);
    let tensor: Vec<u8> = (0..floats)
        .flat_map(|i| (i as f32 * 0.01).to_le_bytes())
        .collect();
    let mut message = Vec::new();
    bytes_field(&mut message, 1, b"iris");
    bytes_field(&mut message, 5, &input);
    bytes_field(&mut message, 7, &tensor);
    let mut body = vec![0u8];
    body.extend_from_slice(&(message.len() as u32).to_be_bytes());
    body.extend_from_slice(&message);
    body
}

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Sampling {
    samples: usize,
    sample_time: Duration,
}

struct Stat {
    median: f64,
    min: f64,
    max: f64,
}

/// Nanoseconds per call of `f`: calibrated batch size, then `samples` timed batches.
fn measure(s: &Sampling, mut f: impl FnMut()) -> Stat {
    let mut iters: u64 = 1;
    loop {
        let t = Instant::now();
        for _ in 0..iters {
            f();
        }
        let e = t.elapsed();
        if e >= s.sample_time / 2 {
            let scale = s.sample_time.as_secs_f64() / e.as_secs_f64().max(1e-9);
            iters = ((iters as f64) * scale).ceil().max(1.0) as u64;
            break;
        }
        iters *= 2;
    }
    let mut per: Vec<f64> = (0..s.samples)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..iters {
                f();
            }
            t.elapsed().as_nanos() as f64 / iters as f64
        })
        .collect();
    per.sort_by(f64::total_cmp);
    Stat {
        median: per[per.len() / 2],
        min: per[0],
        max: per[per.len() - 1],
    }
}

/// The cases to run: all of them timed, or one (`--only KEY --iterations N`) run N times
/// untimed, for an instruction count under `valgrind --tool=callgrind`.
struct Runner {
    sampling: Sampling,
    only: Option<String>,
    iterations: u64,
    rows: Vec<(String, Stat, Option<f64>)>,
}

impl Runner {
    /// Whether case `key` is to be run (its setup can be skipped otherwise).
    fn wants(&self, key: &str) -> bool {
        self.only.as_deref().is_none_or(|o| o == key)
    }

    fn case(&mut self, key: &str, label: String, kib: Option<f64>, mut f: impl FnMut()) {
        match self.only.as_deref() {
            Some(o) if o == key => {
                for _ in 0..self.iterations {
                    f();
                }
                println!("{key}: {} iterations", self.iterations);
            }
            Some(_) => {}
            None => {
                let st = measure(&self.sampling, f);
                self.rows.push((format!("{label} [{key}]"), st, kib));
            }
        }
    }
}

fn cfg(v: serde_json::Value) -> Config {
    match parse(v.to_string().as_bytes()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("core-bench: configuration refused: {e}");
            std::process::exit(2);
        }
    }
}

fn two_models() -> serde_json::Value {
    serde_json::json!({ "models": [
        { "name": "chat", "targets": [ { "name": "stable", "cluster": "chat", "weight": 1 } ] },
        { "name": "chat-large", "targets": [ { "name": "stable", "cluster": "chat-canary", "weight": 1 } ] }
    ] })
}

fn weighted(sticky: bool) -> serde_json::Value {
    let mut m = serde_json::json!({ "name": "chat",
        "targets": [ { "name": "stable", "cluster": "chat", "weight": 90 },
                     { "name": "canary", "cluster": "chat-canary", "weight": 10 } ] });
    if sticky {
        m["strategy"] =
            serde_json::json!({ "type": "weighted", "sticky": { "header": "x-user-id" } });
    }
    serde_json::json!({ "models": [m] })
}

/// The large-prompt latency rows' configuration (bench/envoy/ir-body.yaml): the model from
/// the body's `model`.
fn model_from_body() -> serde_json::Value {
    serde_json::json!({
        "body": { "max_bytes": 2 * 1024 * 1024 },
        "models": [
            { "name": "chat", "targets": [ { "name": "stable", "cluster": "chat", "weight": 1 } ] },
            { "name": "chat-large", "targets": [ { "name": "stable", "cluster": "chat-canary", "weight": 1 } ] } ]
    })
}

fn body_rule() -> serde_json::Value {
    serde_json::json!({
        "models": [ { "name": "chat",
                      "targets": [ { "name": "small", "cluster": "chat", "weight": 1 },
                                   { "name": "large", "cluster": "chat-canary", "weight": 0 } ] } ],
        "rules": [ { "name": "long-answers",
                     "when": { "path_prefix": "/v1/chat/", "body": { "/max_tokens": { "gt": 1024 } } },
                     "then": { "model": "chat", "target": "large" } } ]
    })
}

/// Times `decide` on one bodiless request: `case` is the row's key and label.
fn decide_case(
    r: &mut Runner,
    case: (&str, &str),
    (c, req): (&Config, &Req),
    rng: &mut Rng,
    shared: &mut dyn Shared,
) {
    r.case(case.0, case.1.into(), None, || {
        black_box(decide(c, black_box(req), Body::Absent, 0, rng, shared));
    });
}

/// The learned state of one bandit model, as the host has it cached.
struct OneState(ModelState);

impl Shared for OneState {
    fn bandit_state(&mut self, _model: usize) -> Option<&ModelState> {
        Some(&self.0)
    }
}

fn thompson() -> serde_json::Value {
    serde_json::json!({
        "models": [ { "name": "chat",
                      "targets": [ { "name": "stable", "cluster": "chat" },
                                   { "name": "canary", "cluster": "chat-canary" } ],
                      "strategy": { "type": "thompson", "min_share": 0.05 } } ],
        "feedback": { "path": "/feedback", "signing_key": "bench-signing-key-not-a-secret-0123" }
    })
}

fn expect_route(o: &Outcome, what: &str) {
    if !matches!(o, Outcome::Route(_)) {
        eprintln!("core-bench: {what}: expected a route, got {o:?}");
        std::process::exit(2);
    }
}

fn write_bodies(dir: &str) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(format!("{dir}/chat-1k.json"), chat_body(1024))?;
    std::fs::write(format!("{dir}/chat-64k.json"), chat_body(64 * 1024))?;
    for (name, size) in [("1k", 1), ("64k", 64), ("256k", 256), ("1m", 1024)] {
        std::fs::write(
            format!("{dir}/prompt-{name}.json"),
            prompt_body(size * 1024),
        )?;
    }
    // 256 FP32 values: a 1 KiB tensor.
    std::fs::write(format!("{dir}/infer-1k.grpc"), infer_body(256))?;
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut only = None;
    let mut iterations = 10_000u64;
    match args.as_slice() {
        [] => {}
        [flag, key] if flag == "--only" => only = Some(key.clone()),
        [flag, key, it, n] if flag == "--only" && it == "--iterations" => {
            only = Some(key.clone());
            iterations = match n.parse() {
                Ok(n) => n,
                Err(_) => {
                    eprintln!("core-bench: --iterations {n}: not a number");
                    std::process::exit(2);
                }
            };
        }
        [flag, dir] if flag == "--write-bodies" => {
            if let Err(e) = write_bodies(dir) {
                eprintln!("core-bench: writing bodies into {dir}: {e}");
                std::process::exit(1);
            }
            return;
        }
        _ => {
            eprintln!("usage: core-bench [--write-bodies DIR | --only CASE [--iterations N]]");
            std::process::exit(2);
        }
    }
    let mut r = Runner {
        sampling: Sampling {
            samples: env_num("BENCH_MICRO_SAMPLES", 21).max(3) as usize,
            sample_time: Duration::from_millis(env_num("BENCH_MICRO_SAMPLE_MS", 20).max(1)),
        },
        only,
        iterations,
        rows: Vec::new(),
    };
    let common = [
        ("x-inference-cluster", "chat"),
        ("x-user-id", "user-000042"),
    ];

    // Header routing: the model named by `x-model`, one target.
    let c = cfg(two_models());
    let req = Req::new(
        "GET",
        "/v1/chat/completions",
        &[("x-model", "chat"), common[0], common[1]],
    );
    let mut rng = Rng::seed_from_u64(1);
    expect_route(
        &decide(&c, &req, Body::Absent, 0, &mut rng, &mut NoShared),
        "header",
    );
    decide_case(
        &mut r,
        ("header", "decide: header routing (x-model)"),
        (&c, &req),
        &mut rng,
        &mut NoShared,
    );

    // Weighted 90/10, no stickiness: one random draw.
    let c = cfg(weighted(false));
    decide_case(
        &mut r,
        ("weighted", "decide: weighted 90/10"),
        (&c, &req),
        &mut rng,
        &mut NoShared,
    );

    // Sticky by x-user-id over 10,000 distinct users.
    if r.wants("sticky") {
        let c = cfg(weighted(true));
        let users: Vec<Req> = (0..10_000)
            .map(|u| {
                let id = format!("user-{u:06}");
                Req::new(
                    "GET",
                    "/v1/chat/completions",
                    &[("x-model", "chat"), common[0], ("x-user-id", &id)],
                )
            })
            .collect();
        let mut u = 0usize;
        r.case(
            "sticky",
            "decide: weighted 90/10, sticky (x-user-id, 10k users)".into(),
            None,
            || {
                u = (u + 1) % users.len();
                black_box(decide(
                    &c,
                    black_box(&users[u]),
                    Body::Absent,
                    0,
                    &mut rng,
                    &mut NoShared,
                ));
            },
        );
    }

    // Thompson sampling over two targets from a cached state (the host reads the shared value
    // and decodes it only when it changed), and the signed decision id every answer carries
    // when feedback is on.
    let c = cfg(thompson());
    let Some(strategy) = c.models[0].bandit() else {
        eprintln!("core-bench: the thompson model is not a bandit");
        std::process::exit(2);
    };
    let mut states = OneState(strategy.initial_state(&c.models[0].target_names()));
    expect_route(
        &decide(&c, &req, Body::Absent, 0, &mut rng, &mut states),
        "thompson",
    );
    decide_case(
        &mut r,
        ("thompson", "decide: Thompson sampling, 2 targets"),
        (&c, &req),
        &mut rng,
        &mut states,
    );
    let Some(fb) = &c.feedback else {
        eprintln!("core-bench: no feedback settings");
        std::process::exit(2);
    };
    let mut nonce = 0u64;
    r.case(
        "sign",
        "feedback: sign a decision id (HMAC-SHA256, per routed request)".into(),
        None,
        || {
            nonce = nonce.wrapping_add(1);
            black_box(fb.keys.sign(
                "bench",
                black_box(&DecisionToken {
                    model: "chat".into(),
                    target: "stable".into(),
                    expires: 1_800_000_000,
                    nonce,
                    bound: None,
                    key: String::new(),
                    context: None,
                }),
                None,
            ));
        },
    );
    let id = fb.keys.sign(
        "bench",
        &DecisionToken {
            model: "chat".into(),
            target: "stable".into(),
            expires: 1_800_000_000,
            nonce: 7,
            bound: None,
            key: String::new(),
            context: None,
        },
        None,
    );
    r.case(
        "verify",
        "feedback: verify a decision id (per feedback request)".into(),
        None,
        || {
            black_box(fb.keys.verify("bench", black_box(&id), 1_700_000_000).ok());
        },
    );

    // A rule with a body condition, model from the body: the headers pass (→ NeedBody) and the
    // body pass, on fields already extracted from the 1 KiB document.
    let c = cfg(body_rule());
    let body_1k = chat_body(1024);
    let fields: Fields = match extract(&c.pointers, Format::Json, &body_1k) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("core-bench: extract: {e}");
            std::process::exit(2);
        }
    };
    let post = Req::new(
        "POST",
        "/v1/chat/completions",
        &[("content-type", "application/json"), common[0], common[1]],
    );
    expect_route(
        &decide(&c, &post, Body::Fields(&fields), 0, &mut rng, &mut NoShared),
        "body rule",
    );
    r.case(
        "body-rule",
        "decide: rule with a body condition (both passes, fields given)".into(),
        None,
        || {
            black_box(decide(
                &c,
                black_box(&post),
                Body::Pending,
                0,
                &mut rng,
                &mut NoShared,
            ));
            black_box(decide(
                &c,
                black_box(&post),
                Body::Fields(black_box(&fields)),
                0,
                &mut rng,
                &mut NoShared,
            ));
        },
    );

    // Whole requests through the lifecycle, the host answering at once: the module's own work.
    let get = [
        (":method", "GET"),
        (":path", "/v1/chat/completions"),
        (":authority", "127.0.0.1"),
        ("x-model", "chat"),
    ];
    for (key, what, config) in [
        ("whole-header", "header routing", two_models()),
        ("whole-weighted", "weighted 90/10", weighted(false)),
        ("whole-thompson", "Thompson, signed decision id", thompson()),
    ] {
        if !r.wants(key) {
            continue;
        }
        let host = whole::NopHost::new(&config.to_string(), &get);
        let root = whole::root_or_exit(&host, what);
        let mut context = 2u32;
        if !whole::request(&root, &host, context) {
            eprintln!("core-bench: whole request ({what}): not routed");
            std::process::exit(2);
        }
        r.case(
            key,
            format!("request lifecycle, host calls free: {what}"),
            None,
            || {
                black_box(whole::request(
                    &root,
                    &host,
                    whole::next_context(&mut context),
                ));
            },
        );
    }

    // A Thompson request and the feedback on its decision id (POST /feedback with a JSON body):
    // the signed id, its verification, the reward learned into the shared state.
    if r.wants("whole-thompson-feedback") {
        let host = whole::NopHost::new(&thompson().to_string(), &get);
        let root = whole::root_or_exit(&host, "Thompson feedback");
        let post_feedback = [
            (":method", "POST"),
            (":path", "/feedback"),
            (":authority", "127.0.0.1"),
            ("content-type", "application/json"),
        ];
        let mut context = 2u32;
        let round = |context: &mut u32| -> bool {
            host.set_request(&get, b"");
            if !whole::request(&root, &host, whole::next_context(context)) {
                return false;
            }
            let Some(id) = host.decision() else {
                return false;
            };
            let body = format!(r#"{{"decision":"{id}","reward":0.8}}"#);
            host.set_request(&post_feedback, body.as_bytes());
            whole::request_with_body(&root, &host, whole::next_context(context), usize::MAX)
                .is_some()
                && (200..300).contains(&host.local_status())
        };
        if !round(&mut context) {
            eprintln!("core-bench: whole request (Thompson feedback): no decision id");
            std::process::exit(2);
        }
        r.case(
            "whole-thompson-feedback",
            "request lifecycle, host calls free: Thompson request + its feedback".into(),
            None,
            || {
                black_box(round(&mut context));
            },
        );
    }

    // Body routing: a POST whose 1 KiB / 64 KiB JSON body the rule reads.
    for (key, size) in [("whole-body-1k", 1024usize), ("whole-body-64k", 64 * 1024)] {
        if !r.wants(key) {
            continue;
        }
        let post = [
            (":method", "POST"),
            (":path", "/v1/chat/completions"),
            (":authority", "127.0.0.1"),
            ("content-type", "application/json"),
        ];
        let host = whole::NopHost::new(&body_rule().to_string(), &post);
        host.set_request(&post, &chat_body(size));
        let root = whole::root_or_exit(&host, &format!("body {size}"));
        let mut context = 2u32;
        if whole::request_with_body(&root, &host, context, usize::MAX)
            != Some(inference_router_core::host::Action::Continue)
            || host.local_status() != 0
        {
            eprintln!(
                "core-bench: whole request (body {size}): not routed (local reply {})",
                host.local_status()
            );
            std::process::exit(2);
        }
        r.case(
            key,
            format!("request lifecycle, host calls free: body routing, {size} bytes JSON"),
            None,
            || {
                let context = whole::next_context(&mut context);
                black_box(whole::request_with_body(&root, &host, context, usize::MAX));
            },
        );
    }

    // The large-prompt latency rows' request: `model` first, the body handed on in 16 KiB
    // pieces; over 64 KiB it is routed on its first piece and the rest passes.
    for (key, size) in [
        ("whole-prompt-1k", 1024usize),
        ("whole-prompt-256k", 256 * 1024),
    ] {
        if !r.wants(key) {
            continue;
        }
        let length = size.to_string();
        let post = [
            (":method", "POST"),
            (":path", "/v1/chat/completions"),
            (":authority", "127.0.0.1"),
            ("content-type", "application/json"),
            ("content-length", length.as_str()),
        ];
        let host = whole::NopHost::new(&model_from_body().to_string(), &post);
        host.set_request(&post, &prompt_body(size));
        let root = whole::root_or_exit(&host, &format!("prompt {size}"));
        let mut context = 2u32;
        if whole::request_with_body(&root, &host, context, 16 * 1024)
            != Some(inference_router_core::host::Action::Continue)
            || host.local_status() != 0
        {
            eprintln!("core-bench: whole request (prompt {size}): not routed");
            std::process::exit(2);
        }
        r.case(
            key,
            format!("request lifecycle, host calls free: model from a {size}-byte prompt, 16 KiB pieces"),
            None,
            || {
                let context = whole::next_context(&mut context);
                black_box(whole::request_with_body(&root, &host, context, 16 * 1024));
            },
        );
    }

    // Extraction of `/model` and `/max_tokens` (the body-rule configuration's pointers).
    for size in [1024usize, 64 * 1024] {
        let json = chat_body(size);
        let doc: serde_json::Value = match serde_json::from_slice(&json) {
            Ok(v) => v,
            Err(e) => {
                eprintln!("core-bench: generated body is not JSON: {e}");
                std::process::exit(2);
            }
        };
        let msgpack = match rmp_serde::to_vec_named(&doc) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("core-bench: MessagePack encoding: {e}");
                std::process::exit(2);
            }
        };
        for (format, bytes) in [(Format::Json, &json), (Format::MessagePack, &msgpack)] {
            if let Err(e) = extract(&c.pointers, format, bytes) {
                eprintln!("core-bench: extract {}: {e}", format.name());
                std::process::exit(2);
            }
            let key = format!(
                "extract-{}-{}k",
                format.name().to_ascii_lowercase(),
                size / 1024
            );
            let kib = bytes.len() as f64 / 1024.0;
            r.case(
                &key,
                format!(
                    "extract: {} chat body, {} bytes ({} KiB JSON document)",
                    format.name(),
                    bytes.len(),
                    size / 1024
                ),
                Some(kib),
                || {
                    black_box(extract(&c.pointers, format, black_box(bytes)).ok());
                },
            );
        }
    }

    // gRPC: the routing fields of a KServe v2 ModelInfer call (the Envoy benchmark's
    // infer-1k.grpc), as the filter reads them: from a chunk that is not the last (it stops at
    // the first field after the version), and from the whole body (it walks every field).
    let infer = infer_body(256);
    for (complete, key, what) in [
        (false, "grpc-first-chunk", "first chunk"),
        (true, "grpc-whole-body", "whole body"),
    ] {
        match read_first(Rpc::KServeModel, &infer, complete) {
            Read::Done(r) if r.name.as_deref() == Some("iris") => {}
            other => {
                eprintln!("core-bench: gRPC read_first ({what}): {other:?}");
                std::process::exit(2);
            }
        }
        r.case(
            key,
            format!(
                "grpc read_first: ModelInfer, {} bytes (1 KiB FP32 tensor), {what}",
                infer.len()
            ),
            None,
            || {
                black_box(read_first(Rpc::KServeModel, black_box(&infer), complete));
            },
        );
    }

    if r.only.is_some() {
        return;
    }
    println!(
        "| case | median ns per call | ns per KiB | samples min–max (ns) |\n|---|---:|---:|---:|"
    );
    for (name, st, kib) in &r.rows {
        let per_kib = kib.map_or("".to_string(), |k| format!("{:.0}", st.median / k));
        println!(
            "| {name} | {:.0} | {per_kib} | {:.0}–{:.0} |",
            st.median, st.min, st.max
        );
    }
    println!(
        "\n{} samples of ~{} ms per case; medians. Release profile of the filter (opt-level z, LTO), native {}.",
        r.sampling.samples,
        r.sampling.sample_time.as_millis(),
        std::env::consts::ARCH
    );
}
