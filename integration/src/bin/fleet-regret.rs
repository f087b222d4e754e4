//! Measures the fleet's regret against one Envoy serving the same traffic and against three
//! Envoys learning alone (docs/fleet.md, "How well a fleet learns"): a real 3-member etcd, real
//! Envoys at `--concurrency 2`, upstreams that succeed 90 % (`good`) and 60 % (`poor`).
//!
//! `cargo run --release -p integration --bin fleet-regret -- [runs] [requests] [rate] [sync_ms] [repeat]`
//! (defaults: 16 runs at once, 1000 requests each at 100 requests/s per run, sync every 100 ms,
//! the whole repeated 4 times; `make build` first). Each run is a model of its own, so the runs
//! of one repetition go at once and take requests / rate seconds per arm.

use integration::fleet::{mean_se, regret};

fn arg(i: usize, default: f64) -> f64 {
    std::env::args()
        .nth(i)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let runs = arg(1, 16.0) as usize;
    let requests = arg(2, 1000.0) as usize;
    let rate = arg(3, 100.0);
    let sync_ms = arg(4, 100.0) as u32;
    let repeat = arg(5, 4.0) as usize;
    let (mut single, mut fleet, mut alone, mut rps) = (Vec::new(), Vec::new(), Vec::new(), 0.0);
    for r in 0..repeat {
        let got = regret(runs, requests, rate, sync_ms);
        eprintln!(
            "repetition {}: worse target pulled (mean) one Envoy {:.1}, fleet {:.1}, alone {:.1}",
            r + 1,
            mean_se(&got.single).0,
            mean_se(&got.fleet).0,
            mean_se(&got.independent).0
        );
        single.extend(got.single);
        fleet.extend(got.fleet);
        alone.extend(got.independent);
        rps += got.etcd_rps / repeat as f64;
    }
    let line = |name: &str, v: &[usize]| {
        let (m, se) = mean_se(v);
        println!(
            "{name:<28} regret {:>6.2} ± {:.2}  (worse target pulled {m:.1} ± {se:.1} times)",
            0.3 * m,
            0.3 * se
        );
        m
    };
    println!(
        "{} runs ({repeat} × {runs} at once) × {requests} requests at {rate}/s per run; fleet sync_ms {sync_ms}",
        runs * repeat
    );
    let s = line("one Envoy, all traffic", &single);
    let f = line("three replicas, one fleet", &fleet);
    let i = line("three replicas, alone", &alone);
    println!(
        "fleet / one Envoy: {:.2}; alone / one Envoy: {:.2}; etcd requests per second per replica: {:.1}",
        f / s,
        i / s,
        rps
    );
}
