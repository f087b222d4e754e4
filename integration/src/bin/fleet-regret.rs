//! Measures the fleet's regret against one Envoy serving the same traffic and against three
//! Envoys learning alone (docs/fleet.md, "How well a fleet learns"): a real 3-member etcd, real
//! Envoys at `--concurrency 2`, upstreams that succeed 90 % (`good`) and 60 % (`poor`).
//!
//! `cargo run -p integration --bin fleet-regret -- [runs] [requests] [rate] [sync_ms]`
//! (defaults 64 runs of 1000 requests at 100 requests/s each, sync every 100 ms; `make build`
//! first). Each run is its own model; runs go at once, so the whole takes requests / rate
//! seconds per arm.

use integration::fleet::{mean_se, regret};

fn arg(i: usize, default: f64) -> f64 {
    std::env::args()
        .nth(i)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let runs = arg(1, 64.0) as usize;
    let requests = arg(2, 1000.0) as usize;
    let rate = arg(3, 100.0);
    let sync_ms = arg(4, 100.0) as u32;
    let r = regret(runs, requests, rate, sync_ms);
    let line = |name: &str, v: &[usize]| {
        let (m, se) = mean_se(v);
        println!(
            "{name:<28} regret {:>6.2} ± {:.2}  (worse target pulled {m:.1} ± {se:.1} times)",
            0.3 * m,
            0.3 * se
        );
        m
    };
    println!("{runs} runs × {requests} requests at {rate}/s per run; fleet sync_ms {sync_ms}");
    let s = line("one Envoy, all traffic", &r.single);
    let f = line("three replicas, one fleet", &r.fleet);
    let i = line("three replicas, alone", &r.independent);
    println!(
        "fleet / one Envoy: {:.2}; alone / one Envoy: {:.2}; etcd requests per second per replica: {:.1}",
        f / s,
        i / s,
        r.etcd_rps
    );
}
