//! A fleet for tests: a real etcd cluster, one set of fake model servers, and several Envoys
//! (`envoy/fleet.yaml`, `--concurrency 2`) whose filter learns as one fleet through that etcd.
//! Fields drop in order: the Envoys stop before the upstreams and etcd.

use std::collections::BTreeMap;
use std::thread;
use std::time::{Duration, Instant};

use crate::{Envoy, EnvoyConfig, EtcdCluster, Request, Upstreams};

pub struct Fleet {
    pub envoys: Vec<Envoy>,
    pub upstreams: Upstreams,
    pub etcd: EtcdCluster,
    config: EnvoyConfig,
}

impl Fleet {
    /// A 3-member etcd cluster, the fake model servers, and `replicas` Envoys with this plugin
    /// configuration (its `fleet.cluster` must be `etcd`).
    pub fn start(replicas: usize, plugin_config: &serde_json::Value) -> Fleet {
        Fleet::start_with(
            replicas,
            EnvoyConfig::new("fleet.yaml", plugin_config.to_string()),
        )
    }

    pub fn start_with(replicas: usize, config: EnvoyConfig) -> Fleet {
        Fleet::start_on(EtcdCluster::start(3), replicas, config)
    }

    /// The same, against this etcd cluster.
    pub fn start_on(etcd: EtcdCluster, replicas: usize, config: EnvoyConfig) -> Fleet {
        let upstreams = Upstreams::start_default();
        let mut fleet = Fleet {
            envoys: Vec::new(),
            upstreams,
            etcd,
            config,
        };
        for _ in 0..replicas {
            let e = fleet.start_envoy();
            fleet.envoys.push(e);
        }
        fleet
    }

    /// Template ports: the model servers' and the etcd members'.
    pub fn ports(&self) -> BTreeMap<String, u16> {
        let mut ports = self.upstreams.ports();
        ports.extend(self.etcd.ports());
        ports
    }

    /// One more Envoy of this fleet (not added to `envoys`).
    pub fn start_envoy(&self) -> Envoy {
        Envoy::start_with_ports(&self.config, &self.ports())
    }

    /// Stops replica `i` and starts a new Envoy in its place (a restart: nothing of the old
    /// process's shared data survives).
    pub fn restart(&mut self, i: usize) {
        let _ = self.envoys[i].stop();
        self.envoys[i] = self.start_envoy();
    }

    pub fn send(&self, i: usize, req: &Request) -> crate::Response {
        self.envoys[i].send(req)
    }

    /// A `wasmcustom.inference_router.fleet.<name>` stat of replica `i`.
    pub fn fleet_stat(&self, i: usize, name: &str) -> u64 {
        self.envoys[i].wasm_counter(&format!("inference_router.fleet.{name}"))
    }

    /// Waits (at most `timeout`) until `ok` holds for every replica; panics naming `what`.
    pub fn wait_all(&self, timeout: Duration, what: &str, ok: impl Fn(usize, &Envoy) -> bool) {
        let deadline = Instant::now() + timeout;
        loop {
            let pending: Vec<usize> = (0..self.envoys.len())
                .filter(|&i| !ok(i, &self.envoys[i]))
                .collect();
            if pending.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "replicas {pending:?}: {what} not within {timeout:?}"
            );
            thread::sleep(Duration::from_millis(50));
        }
    }
}

/// A regret experiment: several independent runs at once, each its own model (`chat<k>`, two
/// targets on `llm-large` and `llm-small`), each `requests` long at `rate` requests per second,
/// sent round-robin over `envoys`. Returns the pulls of the worse target per run.
pub fn poor_pulls(envoys: &[Envoy], runs: usize, requests: usize, rate: f64) -> Vec<usize> {
    let gap = Duration::from_secs_f64(1.0 / rate);
    thread::scope(|s| {
        let handles: Vec<_> = (0..runs)
            .map(|k| {
                s.spawn(move || {
                    let path = format!("/v2/models/chat{k}/ready");
                    let mut conns: Vec<_> = envoys.iter().map(Envoy::connect).collect();
                    // Runs start a little apart, so they do not all hit one sync at once.
                    let start = Instant::now() + Duration::from_millis((k as u64 * 7) % 50);
                    let mut poor = 0;
                    for i in 0..requests {
                        let due = start + gap.mul_f64(i as f64);
                        if let Some(wait) = due.checked_duration_since(Instant::now()) {
                            thread::sleep(wait);
                        }
                        let n = conns.len();
                        let r = conns[i % n]
                            .send(&Request::get(&path))
                            .unwrap_or_else(|e| panic!("run {k}, request {i}: {e}"));
                        let target = r.header("x-inference-target");
                        assert!(target.is_some(), "run {k}, request {i}: {}", r.text());
                        poor += usize::from(target == Some("poor"));
                    }
                    poor
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a run's client panicked"))
            .collect()
    })
}

/// The plugin configuration of a regret experiment: `runs` Thompson models `chat<k>` learning
/// from the status of responses, and `fleet` when given.
pub fn regret_config(runs: usize, fleet: Option<serde_json::Value>) -> serde_json::Value {
    let models: Vec<serde_json::Value> = (0..runs)
        .map(|k| {
            serde_json::json!({
                "name": format!("chat{k}"),
                "targets": [ { "name": "good", "cluster": "llm-large" },
                             { "name": "poor", "cluster": "llm-small" } ],
                "strategy": { "type": "thompson" },
                "reward": { "status": true }
            })
        })
        .collect();
    let mut cfg = serde_json::json!({ "models": models });
    if let Some(f) = fleet {
        cfg["fleet"] = f;
    }
    cfg
}

/// Mean and standard error of the mean.
pub fn mean_se(v: &[usize]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().sum::<usize>() as f64 / n;
    let var = v.iter().map(|x| (*x as f64 - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    (mean, (var / n).sqrt())
}

/// How far `a`'s values tend to lie above `b`'s, in standard deviations: the Mann–Whitney
/// rank-sum statistic (pairs where `a`'s value is larger, ties counting half) against its mean
/// and spread when both come from one distribution. Unlike a difference of means, one extreme
/// run moves it by one pair's worth, not by its size.
pub fn rank_sum_z(a: &[usize], b: &[usize]) -> f64 {
    let (n1, n2) = (a.len() as f64, b.len() as f64);
    let u: f64 = a
        .iter()
        .flat_map(|x| b.iter().map(move |y| (x, y)))
        .map(|(x, y)| match x.cmp(y) {
            std::cmp::Ordering::Greater => 1.0,
            std::cmp::Ordering::Equal => 0.5,
            std::cmp::Ordering::Less => 0.0,
        })
        .sum();
    let sd = (n1 * n2 * (n1 + n2 + 1.0) / 12.0).sqrt();
    (u - n1 * n2 / 2.0) / sd.max(f64::MIN_POSITIVE)
}

/// One regret comparison: one Envoy serving everything, three learning as a fleet, three
/// learning alone; the same runs, rate and upstreams (`good` succeeds 90 %, `poor` 60 %).
pub struct Regret {
    pub single: Vec<usize>,
    pub fleet: Vec<usize>,
    pub independent: Vec<usize>,
    /// etcd requests per second of one fleet replica during its runs.
    pub etcd_rps: f64,
}

/// Runs the comparison; `sync_ms` is the fleet's. Regret is 0.3 × the worse target's pulls.
pub fn regret(runs: usize, requests: usize, rate: f64, sync_ms: u32) -> Regret {
    let fleet_section =
        serde_json::json!({ "cluster": "etcd", "prefix": "/regret", "sync_ms": sync_ms });
    let mut f = Fleet::start(0, &regret_config(1, Some(fleet_section.clone())));
    f.upstreams
        .set_behaviour("llm-large", crate::Behaviour::success_rate(0.9));
    f.upstreams
        .set_behaviour("llm-small", crate::Behaviour::success_rate(0.6));
    let ports = f.ports();
    let envoys = |cfg: &serde_json::Value, n: usize| -> Vec<Envoy> {
        let c = EnvoyConfig::new("fleet.yaml", cfg.to_string());
        (0..n)
            .map(|_| Envoy::start_with_ports(&c, &ports))
            .collect()
    };
    let alone = regret_config(runs, None);
    let single = poor_pulls(&envoys(&alone, 1), runs, requests, rate);
    let independent = poor_pulls(&envoys(&alone, 3), runs, requests, rate);
    let fleet_envoys = envoys(&regret_config(runs, Some(fleet_section)), 3);
    let before = fleet_envoys[0].wasm_counter("inference_router.fleet.etcd_requests");
    let started = Instant::now();
    let fleet = poor_pulls(&fleet_envoys, runs, requests, rate);
    let etcd_rps = (fleet_envoys[0].wasm_counter("inference_router.fleet.etcd_requests") - before)
        as f64
        / started.elapsed().as_secs_f64();
    f.envoys = fleet_envoys;
    Regret {
        single,
        fleet,
        independent,
        etcd_rps,
    }
}
