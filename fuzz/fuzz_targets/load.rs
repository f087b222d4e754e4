//! Live load input (`load`): the input as an upstream's `endpoint-load-metrics` header
//! (`orca::parse`), as a request body for the prefix-affinity key, and as the load document
//! bytes in shared data: `Load::decode` for a model of every shape, then a reservation and a
//! release over those bytes. Checked: counts never go below zero or past capacity, what is
//! written decodes again, and a chosen endpoint is one of the target's.
#![no_main]

use inference_router_core::bandit::MemoryStore;
use inference_router_core::config::parse;
use inference_router_core::load::affinity::affinity_key;
use inference_router_core::load::{orca, release, reserve, Ask, Done, Load, ReserveError};
use inference_router_core::rng::Rng;
use libfuzzer_sys::fuzz_target;

const CONFIG: &str = r#"{"models": [{"name": "chat", "affinity": {"messages": 1},
  "targets": [
    {"name": "a", "cluster": "a", "weight": 1, "capacity": 2},
    {"name": "b", "cluster": "b", "weight": 1, "endpoint_capacity": 1, "observe_endpoints": true,
     "endpoints": ["127.0.0.1:1", "127.0.0.1:2"]}]}]}"#;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(r) = orca::parse(&text) {
        assert!(r.kv_cache.is_none_or(|k| (0.0..=1.0).contains(&k)));
        assert!(r.waiting.is_none_or(|w| w.is_finite() && w >= 0.0));
    }
    let key = affinity_key(data, 2);
    let Ok(cfg) = parse(CONFIG.as_bytes()) else {
        panic!("the fuzz configuration is refused");
    };
    let Some(model) = cfg.models.first() else {
        return;
    };
    let decoded = Load::decode(data, model);
    assert_eq!(decoded.targets.len(), model.targets.len());
    let store = MemoryStore::new();
    let mut rng = Rng::seed_from_u64(data.len() as u64);
    for target in 0..model.targets.len() {
        store.put_raw("k", data);
        let ask = Ask {
            model,
            target,
            affinity: key,
            now_ms: 1_000,
            stale_ms: 100,
        };
        let endpoint = match reserve(&store, "k", &ask, &mut rng) {
            Ok(r) => r.endpoint,
            Err(ReserveError::Full) => continue,
            Err(ReserveError::Store(e)) => panic!("store failed: {e}"),
        };
        let after = stored(&store, model);
        let t = &model.targets[target];
        if let Some(c) = t.capacity {
            assert!(after.in_flight(target) <= c, "past capacity");
        }
        if let Some(e) = &endpoint {
            assert!(after.endpoints_of(t, target).iter().any(|x| x.address == e));
        }
        let report = orca::parse(&text).ok();
        let done = Done {
            target,
            reserved: true,
            endpoint,
            answered_by: Some(text.to_string()),
            latency_ms: Some(5.0),
            ttfb_ms: Some(1.0),
            report,
            now_ms: 1_050,
            stale_ms: 100,
        };
        if let Err(e) = release(&store, "k", model, &done) {
            panic!("release failed: {e}");
        }
        let _ = stored(&store, model);
    }
});

/// The document as stored: it must decode as a document of this model.
fn stored(store: &MemoryStore, model: &inference_router_core::config::Model) -> Load {
    let Some((bytes, _)) = store.raw("k") else {
        panic!("nothing stored")
    };
    let Ok(l) = rmp_serde::from_slice::<Load>(&bytes) else {
        panic!("stored bytes do not decode")
    };
    assert_eq!(l, Load::decode(&bytes, model));
    l
}
