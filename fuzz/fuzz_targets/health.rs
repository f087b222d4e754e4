//! Target health bytes as they sit in shared data (`learning::health`): `Health::decode` for
//! every model of the fallback and budget examples, decisions that read the decoded cooldowns
//! and latency estimates (NaN, infinities and far-future cooldowns included), `record` of a
//! failure and a latency sample over the raw bytes, and `cooldown_seconds` of the input as a
//! `Retry-After` value.
#![no_main]

use fuzz_support::{canned_requests, fixtures, route_request, HealthShared, NOW, PLUGIN};
use inference_router_core::bandit::MemoryStore;
use inference_router_core::learning::health::MAX_COOLDOWN_SECONDS;
use inference_router_core::learning::health::{
    cooldown_seconds, health_key, record, Health, Sample,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let retry_after = String::from_utf8_lossy(data);
    assert!(cooldown_seconds(Some(&retry_after), 30) <= MAX_COOLDOWN_SECONDS.max(30));

    for fx in fixtures()
        .iter()
        .filter(|f| matches!(f.name, "fallback" | "budget" | "configs/coverage.json"))
    {
        let cfg = &fx.cfg;
        let health: Vec<Health> = cfg
            .models
            .iter()
            .map(|m| Health::decode(data, m.targets.len()))
            .collect();
        for (h, m) in health.iter().zip(&cfg.models) {
            assert_eq!(h.cooling_until.len(), m.targets.len());
            assert_eq!(h.latency_ms.len(), m.targets.len());
        }
        for (mut req, body) in canned_requests(cfg).into_iter().take(12) {
            req.headers.push(("x-max-cost".into(), "0.5".into()));
            req.headers
                .push(("x-latency-budget-ms".into(), "120".into()));
            let mut shared = HealthShared {
                states: &fx.states,
                health: &health,
            };
            route_request(cfg, &mut shared, &req, body.as_deref(), None, NOW);
        }
        let store = MemoryStore::new();
        for m in &cfg.models {
            let key = health_key(PLUGIN, &m.name);
            store.put_raw(&key, data);
            let sample = Sample {
                target: m.targets.len() - 1,
                cool_until: Some(NOW + 30),
                latency_ms: Some(250.0),
                at_ms: 0,
            };
            assert!(record(&store, &key, m.targets.len(), sample).is_ok());
            let stored = store.raw(&key).map(|(b, _)| b).unwrap_or_default();
            let h = Health::decode(&stored, m.targets.len());
            assert!(h.cooling(m.targets.len() - 1) >= NOW + 30, "cooldown lost");
        }
    }
});
