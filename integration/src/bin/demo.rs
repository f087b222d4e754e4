//! Demo: fake model servers + the real Envoy with the filter (envoy/demo.yaml), some traffic,
//! and what the router decided. `cargo run -p integration --bin demo` (needs `make setup` and
//! `make build`). Bounded: a few hundred requests on loopback, then Envoy is stopped.
//!
//! Then a bandit section: a second Envoy, a Thompson-sampling model learning from response
//! status (implicit rewards) over two fake deployments whose success rates differ, and a live
//! table of where traffic goes as rewards arrive. Bounded: 1,200 requests.
//!
//! Then a live-load section: a third Envoy (envoy/load.yaml), `least_loaded` with a capacity over
//! two fake servers that slow down with the requests they hold; one of them turns slow, and
//! loses its traffic. Bounded: 8 clients × 2 × 40 requests.
//!
//! Exits 0 when every sample request was routed as expected, the bandit moved most traffic to
//! the better deployment and its `/stats` gauges caught up with the learned state (within 5 s),
//! 1 otherwise.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use integration::{
    fnv64_hex, Behaviour, Envoy, EnvoyConfig, LoadBehaviour, LoadedServers, Request, Response,
    Upstreams,
};
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
    }

    let bandit_ok = bandit_section(&upstreams);
    ok &= bandit_ok;
    ok &= load_section();
    if ok {
        println!("demo: all samples routed as expected; the bandit learned; the slow server lost traffic");
        ExitCode::SUCCESS
    } else {
        println!("demo: something was not as expected (see ✗ above)");
        ExitCode::FAILURE
    }
}

const STATE_PATH: &str = "/inference-router/state";
const STATE_TOKEN: &str = "demo-ops-token-0123";
/// Requests of the bandit section. The table gets a row every 10 requests while the bandit is
/// still exploring (the first 100), then every 100.
const BANDIT_REQUESTS: usize = 1200;

fn row_due(done: usize) -> bool {
    if done <= 100 {
        done.is_multiple_of(10)
    } else {
        done.is_multiple_of(100)
    }
}

fn bandit_config() -> serde_json::Value {
    json!({
        "models": [
            { "name": "sentiment",
              "targets": [ { "name": "v1", "cluster": "sentiment-v1" },
                           { "name": "v2", "cluster": "sentiment-v2" } ],
              "strategy": { "type": "thompson", "min_share": 0.02 },
              "reward": { "status": true } }
        ],
        "state_endpoint": { "path": STATE_PATH, "token": STATE_TOKEN }
    })
}

/// The learned state of `sentiment`: target → (pulls, mean reward).
fn learned(envoy: &Envoy) -> BTreeMap<String, (f64, Option<f64>)> {
    let r = envoy
        .send(&Request::get(STATE_PATH).header("authorization", &format!("Bearer {STATE_TOKEN}")));
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap_or_default();
    v["models"]["sentiment"]["targets"]
        .as_array()
        .map(|ts| {
            ts.iter()
                .map(|t| {
                    (
                        t["name"].as_str().unwrap_or("?").to_string(),
                        (
                            t["pulls"].as_f64().unwrap_or(0.0),
                            t["mean_reward"].as_f64(),
                        ),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// How long the demo waits for the bandit gauges to be republished (they are every ~1 s).
const GAUGE_WAIT: Duration = Duration::from_secs(5);

/// Polls `/stats` until every `inference_router.bandit.sentiment.<target>.pulls` gauge equals the
/// state endpoint's pulls for that target (rounded, as the filter publishes them), and returns
/// the `wasmcustom.*` stats of that moment. Both are read again on every poll, in case a last
/// reward is still being recorded. After `wait`, the last mismatch as text.
fn gauges_caught_up(envoy: &Envoy, wait: Duration) -> Result<BTreeMap<String, u64>, String> {
    let deadline = Instant::now() + wait;
    loop {
        let state = learned(envoy);
        let stats = envoy.wasm_stats();
        let mismatches: Vec<String> = if state.is_empty() {
            vec!["the state endpoint reports no targets".into()]
        } else {
            state
                .iter()
                .filter_map(|(target, (pulls, _))| {
                    let name = format!("inference_router.bandit.sentiment.{target}.pulls");
                    let want = pulls.round() as u64;
                    let got = stats.get(&name).copied();
                    (got != Some(want)).then(|| {
                        format!(
                            "{name} = {} (state: {want})",
                            got.map_or("missing".into(), |g| g.to_string())
                        )
                    })
                })
                .collect()
        };
        if mismatches.is_empty() {
            return Ok(stats);
        }
        if Instant::now() >= deadline {
            return Err(mismatches.join(", "));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A second Envoy with a Thompson-sampling model: v1 answers 200 70 % of the time, v2 (the new
/// deployment) 95 %. Every response is a reward (status: 5xx = 0, else 1).
fn bandit_section(upstreams: &Upstreams) -> bool {
    println!("\n━━━━━━━━ bandit: learning from responses ━━━━━━━━");
    upstreams.set_behaviour("sentiment-v1", Behaviour::success_rate(0.70).with_seed(7));
    upstreams.set_behaviour("sentiment-v2", Behaviour::success_rate(0.95).with_seed(8));
    let config = EnvoyConfig::demo(&bandit_config());
    let mut envoy = Envoy::start(&config, upstreams);
    println!(
        "Envoy (pid {}) on 127.0.0.1:{}; plugin configuration:\n{}",
        envoy.pid().unwrap_or(0),
        envoy.port(),
        serde_json::to_string_pretty(&bandit_config()).unwrap_or_default()
    );
    println!("fake upstreams: sentiment-v1 succeeds 70 %, sentiment-v2 succeeds 95 % (else 500)");
    println!("shares and 200s are over the requests since the previous row; pulls and mean reward are\nthe learned state (state endpoint) when the row is printed\n");
    println!(
        "{:>8} │ {:<17} {:<17} │ {:>9} │ {:>17} {:>17}",
        "requests", "v1 share", "v2 share", "200s", "v1 pulls / mean", "v2 pulls / mean"
    );
    println!("{}", "─".repeat(97));

    let mut conns: Vec<_> = (0..4).map(|_| envoy.connect()).collect();
    let req = Request::get("/v2/models/sentiment/ready");
    let mut window: Vec<String> = Vec::with_capacity(100);
    let mut window_ok = 0usize;
    let mut last_300: Vec<String> = Vec::new();
    let mut ok = true;
    for i in 0..BANDIT_REQUESTS {
        let k = conns.len();
        let r = match conns[i % k].send(&req) {
            Ok(r) => r,
            Err(e) => {
                println!("✗ request {i} failed: {e}");
                ok = false;
                break;
            }
        };
        let target = r.header("x-inference-target").unwrap_or("?").to_string();
        window_ok += usize::from(r.status == 200);
        if i + 300 >= BANDIT_REQUESTS {
            last_300.push(target.clone());
        }
        window.push(target);
        if row_due(i + 1) {
            let share = |t: &str| {
                100.0 * window.iter().filter(|w| *w == t).count() as f64 / window.len() as f64
            };
            let state = learned(&envoy);
            let col = |t: &str| match state.get(t) {
                Some((pulls, Some(mean))) => format!("{pulls:>6.0} / {mean:.3}"),
                Some((pulls, None)) => format!("{pulls:>6.0} / -"),
                None => "-".into(),
            };
            let bar = |p: f64| "█".repeat((p / 10.0).round() as usize);
            println!(
                "{:>8} │ {:>5.1}% {:<10} {:>5.1}% {:<10} │ {:>8.1}% │ {:>17} {:>17}",
                i + 1,
                share("v1"),
                bar(share("v1")),
                share("v2"),
                bar(share("v2")),
                100.0 * window_ok as f64 / window.len() as f64,
                col("v1"),
                col("v2")
            );
            window.clear();
            window_ok = 0;
        }
    }
    for c in conns {
        c.close();
    }
    let final_share = if last_300.is_empty() {
        0.0
    } else {
        last_300.iter().filter(|t| *t == "v2").count() as f64 / last_300.len() as f64
    };
    println!(
        "\n▶ final: v2 got {:.1} % of the last {} requests (a uniform router: 50 % ± 2.9 %)",
        100.0 * final_share,
        last_300.len()
    );
    // The root contexts republish the bandit gauges on a timer (every 5th tick of 200 ms), not
    // per reward: right after the traffic they may still show older values. Wait (bounded) for
    // them to match the state endpoint's pulls before printing them.
    match gauges_caught_up(&envoy, GAUGE_WAIT) {
        Ok(stats) => {
            println!("▶ gauges on /stats (they match the state endpoint's pulls):");
            for (name, v) in stats {
                if name.starts_with("inference_router.bandit.")
                    || name.starts_with("inference_router.rewards.")
                {
                    println!("    wasmcustom.{name} = {v}");
                }
            }
        }
        Err(mismatch) => {
            println!(
                "✗ after {} s the bandit gauges on /stats still differ from the state endpoint: \
                 {mismatch}",
                GAUGE_WAIT.as_secs()
            );
            ok = false;
        }
    }
    let _ = envoy.stop();
    if final_share <= 0.70 {
        println!("✗ the bandit did not favour the better deployment (expected > 70 %)");
        ok = false;
    }
    ok
}

const LOAD_CLIENTS: usize = 8;
const LOAD_PER_CLIENT: usize = 40;
const LOAD_CAPACITY: u64 = 6;

/// `clients` clients sending `per_client` chat requests each; the share (%) the `slow` server
/// served and the 503s.
fn load_phase(envoy: &Envoy, servers: &LoadedServers) -> (f64, usize) {
    let before = (servers.hits("fast"), servers.hits("slow"));
    let refused = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for c in 0..LOAD_CLIENTS {
            let refused = &refused;
            s.spawn(move || {
                let mut conn = envoy.connect();
                for i in 0..LOAD_PER_CLIENT {
                    let body = json!({"model": "chat",
                        "messages": [{"role": "user", "content": format!("client {c} turn {i}")}]});
                    match conn.send(&Request::post("/v1/chat/completions").json(&body)) {
                        Ok(r) if r.status == 200 => {}
                        _ => {
                            refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            std::thread::sleep(Duration::from_millis(20));
                        }
                    }
                }
            });
        }
    });
    let fast = servers.hits("fast") - before.0;
    let slow = servers.hits("slow") - before.1;
    let share = 100.0 * slow as f64 / (fast + slow).max(1) as f64;
    (share, refused.into_inner())
}

fn load_section() -> bool {
    println!("\n━━━━━━━━ live load: least_loaded with capacity ━━━━━━━━");
    let servers = LoadedServers::start(&["fast", "slow", "pool-0", "pool-1", "pool-2"]);
    servers.set_behaviour("fast", LoadBehaviour::latency(10, 10));
    servers.set_behaviour("slow", LoadBehaviour::latency(10, 10));
    let config = json!({ "models": [{ "name": "chat", "strategy": { "type": "least_loaded" },
        "targets": [ { "name": "fast", "cluster": "fast", "capacity": LOAD_CAPACITY },
                     { "name": "slow", "cluster": "slow", "capacity": LOAD_CAPACITY } ] }] });
    println!(
        "plugin configuration:\n{}",
        serde_json::to_string_pretty(&config).unwrap_or_default()
    );
    let mut envoy = Envoy::start_with_ports(
        &EnvoyConfig::new("load.yaml", config.to_string()),
        &servers.ports(),
    );
    println!("{LOAD_CLIENTS} clients, {LOAD_PER_CLIENT} chat requests each, per phase\n");
    println!(
        "{:<46} │ {:<22} │ {:>5}",
        "servers", "share of slow", "503s"
    );
    println!("{}", "─".repeat(80));
    let row = |what: &str, (share, refused): (f64, usize)| {
        let bar = "█".repeat((share / 5.0).round() as usize);
        println!("{what:<46} │ {share:>5.1}% {bar:<15} │ {refused:>5}");
    };
    let even = load_phase(&envoy, &servers);
    row("both 10 ms + 10 ms per request held", even);
    servers.set_behaviour("slow", LoadBehaviour::latency(80, 80));
    let slowed = load_phase(&envoy, &servers);
    row("`slow` now 80 ms + 80 ms per request held", slowed);
    let max = (servers.max_in_flight("fast"), servers.max_in_flight("slow"));
    println!(
        "\n▶ most requests in flight on one server: fast {}, slow {} (capacity {LOAD_CAPACITY})",
        max.0, max.1
    );
    let _ = envoy.stop();
    let mut ok = true;
    if slowed.0 > even.0 - 15.0 {
        println!(
            "✗ the slow server did not lose traffic ({:.1} % → {:.1} %)",
            even.0, slowed.0
        );
        ok = false;
    }
    if max.0 > LOAD_CAPACITY || max.1 > LOAD_CAPACITY {
        println!("✗ a server held more than its capacity");
        ok = false;
    }
    ok
}
