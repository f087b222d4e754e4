//! Demo: fake model servers + the real Envoy with the filter (envoy/demo.yaml), some traffic,
//! and what the router decided. `cargo run -p integration --bin demo` (needs `make setup` and
//! `make build`). Bounded: a few hundred requests on loopback, then Envoy is stopped.
//!
//! Exits 0 when every sample request was routed as expected, 1 otherwise.

use std::collections::BTreeMap;
use std::process::ExitCode;

use integration::{fnv64_hex, Envoy, EnvoyConfig, Request, Response, Upstreams};
use serde_json::json;

fn demo_config() -> serde_json::Value {
    json!({
        "default_model": "sentiment",
        "models": [
            { "name": "sentiment",
              "targets": [ { "name": "v1", "cluster": "sentiment-v1", "weight": 90 },
                           { "name": "v2", "cluster": "sentiment-v2", "weight": 10 } ],
              "default_target": "v1" },
            { "name": "chat",
              "targets": [ { "name": "small", "cluster": "llm-small", "weight": 1 },
                           { "name": "large", "cluster": "llm-large", "weight": 0 } ] },
            { "name": "iris",
              "targets": [ { "name": "v1", "cluster": "iris-v1", "weight": 50 },
                           { "name": "v2", "cluster": "iris-v2", "weight": 50 } ],
              "strategy": { "type": "weighted", "sticky": { "header": "x-user-id" } } }
        ],
        "rules": [
            { "name": "long-answers",
              "when": { "path_prefix": "/v1/chat/", "body": { "/max_tokens": { "gt": 1024 } } },
              "then": { "model": "chat", "target": "large" } }
        ]
    })
}

struct Sample {
    title: &'static str,
    req: Request,
    expect_cluster: Option<&'static str>,
    expect_status: u16,
}

fn show(title: &str, req: &Request, r: &Response) {
    let cluster = r
        .upstream_cluster()
        .unwrap_or_else(|| "(local reply)".to_string());
    println!(
        "\n▶ {title}\n  {} {}  →  {} from {cluster}",
        req.method, req.path, r.status
    );
    for (n, v) in r.inference_headers() {
        println!("    {n}: {v}");
    }
    if r.upstream_cluster().is_none() {
        println!("    body: {}", r.text());
    }
}

fn main() -> ExitCode {
    let upstreams = Upstreams::start_default();
    let config = EnvoyConfig::demo(&demo_config());
    let mut envoy = Envoy::start(&config, &upstreams);
    println!(
        "Envoy {} (pid {}) listening on 127.0.0.1:{}, admin 127.0.0.1:{}, --concurrency {}",
        integration::envoy_binary().display(),
        envoy.pid().unwrap_or(0),
        envoy.port(),
        envoy.admin_port(),
        config.concurrency
    );
    println!(
        "plugin configuration:\n{}",
        serde_json::to_string_pretty(&demo_config()).unwrap_or_default()
    );

    let chat = json!({"model": "chat", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 64});
    let long = json!({"model": "chat", "messages": [{"role": "user", "content": "write an essay"}], "max_tokens": 4096});
    let mp_body =
        rmp_serde::to_vec_named(&json!({"model": "iris", "inputs": [[5.1, 3.5, 1.4, 0.2]]}))
            .unwrap_or_default();
    let samples = vec![
        Sample {
            title: "header routing (x-model: chat)",
            req: Request::get("/health").header("x-model", "chat"),
            expect_cluster: Some("llm-small"),
            expect_status: 200,
        },
        Sample {
            title: "KServe v2 path, pinned version",
            req: Request::post("/v2/models/sentiment/versions/v2/infer")
                .json(&json!({"inputs": []})),
            expect_cluster: Some("sentiment-v2"),
            expect_status: 200,
        },
        Sample {
            title: "TF-Serving path, sticky user",
            req: Request::post("/v1/models/iris:predict")
                .header("x-user-id", "alice")
                .json(&json!({"instances": [[1, 2, 3, 4]]})),
            expect_cluster: None,
            expect_status: 200,
        },
        Sample {
            title: "OpenAI body model (JSON)",
            req: Request::post("/v1/chat/completions").json(&chat),
            expect_cluster: Some("llm-small"),
            expect_status: 200,
        },
        Sample {
            title: "OpenAI body model (MessagePack)",
            req: Request::post("/v1/chat/completions")
                .header("content-type", "application/msgpack")
                .body(mp_body.clone()),
            expect_cluster: None,
            expect_status: 200,
        },
        Sample {
            title: "rule long-answers (path prefix + body max_tokens > 1024)",
            req: Request::post("/v1/chat/completions").json(&long),
            expect_cluster: Some("llm-large"),
            expect_status: 200,
        },
        Sample {
            title: "unknown model → default model's default target",
            req: Request::get("/v2/models/resnet/ready"),
            expect_cluster: Some("sentiment-v1"),
            expect_status: 200,
        },
        Sample {
            title: "malformed JSON body → 400",
            req: Request::post("/v1/chat/completions").json_text("{\"model\": "),
            expect_cluster: None,
            expect_status: 400,
        },
        Sample {
            title: "client tries to force a cluster (ignored)",
            req: Request::get("/v2/models/chat/ready").header("x-inference-cluster", "llm-large"),
            expect_cluster: Some("llm-small"),
            expect_status: 200,
        },
    ];

    let mut ok = true;
    for s in &samples {
        let r = match integration::client::send(envoy.port(), &s.req) {
            Ok(r) => r,
            Err(e) => {
                println!("\n✗ {}: request failed: {e}", s.title);
                ok = false;
                continue;
            }
        };
        show(s.title, &s.req, &r);
        let cluster = r.upstream_cluster();
        let good = r.status == s.expect_status
            && s.expect_cluster
                .is_none_or(|c| cluster.as_deref() == Some(c))
            && (s.expect_status != 200 || cluster.is_some());
        if !good {
            println!(
                "  ✗ expected status {} from {:?}",
                s.expect_status, s.expect_cluster
            );
            ok = false;
        }
        if let (Some(body), Ok(echo)) = (
            &s.req.body,
            serde_json::from_slice::<integration::Echo>(&r.body),
        ) {
            let intact = echo.body_fnv64 == fnv64_hex(body) && echo.body_len == body.len() as u64;
            println!(
                "    body upstream: {} bytes, {}",
                echo.body_len,
                if intact { "intact" } else { "CHANGED" }
            );
            ok &= intact;
        }
    }

    // Weighted 90/10 split for sentiment, and 50/50 sticky users for iris.
    const N: usize = 400;
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    let mut conns: Vec<_> = (0..4).map(|_| envoy.connect()).collect();
    for i in 0..N {
        let req = Request::get("/v2/models/sentiment/ready");
        match conns[i % 4].send(&req) {
            Ok(r) => {
                *counts
                    .entry(
                        r.upstream_cluster()
                            .unwrap_or_else(|| format!("status {}", r.status)),
                    )
                    .or_insert(0) += 1
            }
            Err(e) => {
                println!("request {i} failed: {e}");
                ok = false;
                break;
            }
        }
    }
    let mut users: BTreeMap<String, u64> = BTreeMap::new();
    for u in 0..100 {
        let req = Request::get("/v2/models/iris/ready").header("x-user-id", &format!("user-{u}"));
        if let Ok(r) = conns[u % 4].send(&req) {
            *users
                .entry(
                    r.upstream_cluster()
                        .unwrap_or_else(|| format!("status {}", r.status)),
                )
                .or_insert(0) += 1;
        }
    }
    for c in conns {
        c.close();
    }
    println!("\n▶ weighted split, {N} requests for sentiment (v1 90 / v2 10):");
    for (c, n) in &counts {
        println!("    {c:14} {n:4}  {:5.1} %", *n as f64 * 100.0 / N as f64);
    }
    println!("▶ sticky, 100 users for iris (v1 50 / v2 50):");
    for (c, n) in &users {
        println!("    {c:14} {n:4}");
    }

    println!("\n▶ per-target counters (/stats, wasmcustom.*):");
    for (name, v) in envoy.wasm_stats() {
        if v > 0 {
            println!("    {name} = {v}");
        }
    }
    println!("\n▶ fake upstream hits:");
    for c in integration::CLUSTERS {
        println!("    {c:14} {}", upstreams.hits(c));
    }

    let status = envoy.stop();
    println!(
        "\nEnvoy stopped ({}).",
        status.map(|s| s.to_string()).unwrap_or_default()
    );
    if ok {
        println!("demo: all samples routed as expected");
        ExitCode::SUCCESS
    } else {
        println!("demo: some samples were not routed as expected (see ✗ above)");
        ExitCode::FAILURE
    }
}
