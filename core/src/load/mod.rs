//! Live deployment state: what routing knows of each target's load, shared by every worker of
//! one Envoy through shared data.
//!
//! - `state`: the per-model load document (in-flight counts, latency estimates, load reports per
//!   endpoint) and the load score;
//! - `track`: a request's reservation (capacity checked atomically, endpoint chosen) and its
//!   release when the stream ends;
//! - `orca`: ORCA load reports (`endpoint-load-metrics`, TEXT and JSON);
//! - `affinity`: the prefix key that keeps a conversation on one endpoint.

pub mod affinity;
mod codec;
pub mod orca;
pub mod state;
pub mod track;

pub use state::{score, unknown_latency, Load, Signals};
pub use track::{release, reserve, two_choices, Ask, Done, ReserveError, Reserved};

/// Shared-data key of a model's load document. It names the model's targets (a hash of their
/// names, in order): a configuration or registry update that changes them starts a document of
/// its own, and the streams still running under the old targets give their slots back to the
/// old one.
pub fn load_key(plugin: &str, model: &crate::config::Model) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for t in &model.targets {
        for b in t.name.bytes().chain([0]) {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("inference-router/v1/{plugin}/load/{}/{h:016x}", model.name)
}

/// The state endpoint's `load` section: per load-tracking model, its targets' in-flight counts
/// and latency estimates and its pods' counts and last reports (`{}` when no model tracks load).
pub fn document<S: crate::bandit::SharedStore + ?Sized>(
    store: &S,
    plugin: &str,
    cfg: &crate::config::Config,
) -> crate::json::Value {
    use crate::json::json;
    let estimate = |v: f64| (v >= 0.0).then_some(v);
    let mut models = crate::json::Map::new();
    for m in cfg.models.iter().filter(|m| m.tracks_load) {
        let load = match store.get(&load_key(plugin, m)) {
            Ok((Some(bytes), _)) => Load::decode(&bytes, m),
            _ => Load::fresh(m),
        };
        let targets: Vec<_> = (m.targets.iter().zip(&load.targets))
            .map(|(t, l)| {
                json!({ "name": t.name, "in_flight": l.in_flight, "capacity": t.capacity,
                        "latency_ms": estimate(l.latency_ms), "ttfb_ms": estimate(l.ttfb_ms) })
            })
            .collect();
        let endpoints: Vec<_> = (load.endpoints.iter())
            .filter(|e| !e.address.is_empty())
            .map(|e| {
                json!({ "address": e.address,
                        "target": m.targets.get(e.target as usize).map(|t| t.name.as_str()),
                        "in_flight": e.in_flight, "latency_ms": estimate(e.latency_ms),
                        "waiting": e.waiting, "kv_cache": e.kv_cache,
                        "reported_ms": e.reported_ms, "seen_ms": e.seen_ms })
            })
            .collect();
        models.insert(
            m.name.clone(),
            json!({ "targets": targets, "endpoints": endpoints }),
        );
    }
    crate::json::Value::Object(models)
}
