//! Target health kept in shared data per model: until when each target cools down after a
//! failure, and a moving estimate of its latency. Both feed the decision (fallback, budgets).
//! Updates are best effort: a lost race drops one sample, never blocks a request.

#[cfg(any(test, feature = "testing"))]
use serde::{Deserialize, Serialize};

use crate::bandit::{cas_edit_with, Edit, SharedStore, StoreError};

/// Weight of a new latency sample in the moving average.
pub const LATENCY_ALPHA: f64 = 0.2;
/// CAS attempts for a health update before the sample is dropped.
pub const MAX_ATTEMPTS: u32 = 8;
/// Longest cooldown a `Retry-After` may impose.
pub const MAX_COOLDOWN_SECONDS: u64 = 3600;

pub fn health_key(plugin: &str, model: &str) -> String {
    format!("inference-router/v1/{plugin}/health/{model}")
}

#[derive(Debug, Clone, Default, PartialEq)]
#[cfg_attr(any(test, feature = "testing"), derive(Serialize, Deserialize))]
pub struct Health {
    /// By target index: Unix second until which the target cools down (0: not cooling).
    pub cooling_until: Vec<u64>,
    /// By target index: latency estimate in ms (negative: no sample yet).
    pub latency_ms: Vec<f64>,
    /// By target index: samples behind the estimate, up to [`FULL_WEIGHT`] (what a fleet weighs
    /// this Envoy's estimate by).
    #[cfg_attr(any(test, feature = "testing"), serde(default))]
    pub samples: Vec<f64>,
    /// By target index: when the last sample was taken (Unix ms; 0: never).
    #[cfg_attr(any(test, feature = "testing"), serde(default))]
    pub sampled_ms: Vec<u64>,
    /// What the other replicas of a fleet report, as merged by the last sync.
    #[cfg_attr(
        any(test, feature = "testing"),
        serde(default, skip_serializing_if = "Option::is_none")
    )]
    pub fleet: Option<FleetHealth>,
}

/// The other replicas' health of a model's targets, merged: the latest cooldown, and the
/// latency estimates averaged by their samples (estimates older than [`STALE_MS`] left out).
#[derive(Debug, Clone, Default, PartialEq)]
#[cfg_attr(any(test, feature = "testing"), derive(Serialize, Deserialize))]
pub struct FleetHealth {
    pub cooling_until: Vec<u64>,
    pub latency_ms: Vec<f64>,
    pub samples: Vec<f64>,
}

/// An estimate weighs at most this many samples: about the memory of the moving average.
pub const FULL_WEIGHT: f64 = 1.0 / LATENCY_ALPHA;
/// A latency estimate whose last sample is older than this is not shared.
pub const STALE_MS: u64 = 300_000;

impl Health {
    pub fn new(targets: usize) -> Self {
        Health {
            cooling_until: vec![0; targets],
            latency_ms: vec![-1.0; targets],
            samples: vec![0.0; targets],
            sampled_ms: vec![0; targets],
            fleet: None,
        }
    }

    /// Decodes; bytes of another shape (or garbage) give a fresh health for `targets`. A
    /// health written before samples were counted weighs each estimate as one sample.
    pub fn decode(bytes: &[u8], targets: usize) -> Health {
        match super::health_codec::read_health(bytes) {
            Ok(mut h) if h.cooling_until.len() == targets && h.latency_ms.len() == targets => {
                if h.samples.len() != targets || h.sampled_ms.len() != targets {
                    h.samples = h
                        .latency_ms
                        .iter()
                        .map(|l| f64::from(u8::from(*l >= 0.0)))
                        .collect();
                    h.sampled_ms = vec![0; targets];
                }
                if h.fleet.as_ref().is_some_and(|f| {
                    f.cooling_until.len() != targets
                        || f.latency_ms.len() != targets
                        || f.samples.len() != targets
                }) {
                    h.fleet = None;
                }
                h
            }
            _ => Health::new(targets),
        }
    }

    /// rmp-serde's compact form, byte for byte (written by hand: `health_codec`).
    pub fn encode(&self) -> Vec<u8> {
        super::health_codec::write_health(self)
    }

    /// This Envoy's estimate and the fleet's, each weighed by the samples behind it.
    pub fn latency(&self, target: usize) -> Option<f64> {
        let own = self.latency_ms.get(target).copied().filter(|l| *l >= 0.0);
        let own_w = self.samples.get(target).copied().unwrap_or(1.0).max(1e-9);
        let fleet = self.fleet.as_ref().and_then(|f| {
            let l = f.latency_ms.get(target).copied().filter(|l| *l >= 0.0)?;
            Some((l, f.samples.get(target).copied().unwrap_or(0.0)))
        });
        match (own, fleet) {
            (Some(o), Some((f, w))) if w > 0.0 => Some((o * own_w + f * w) / (own_w + w)),
            (Some(o), _) => Some(o),
            (None, Some((f, _))) => Some(f),
            (None, None) => None,
        }
    }

    /// Until when the target cools down: the later of this Envoy's cooldown and the fleet's.
    pub fn cooling(&self, target: usize) -> u64 {
        let own = self.cooling_until.get(target).copied().unwrap_or(0);
        let fleet = (self.fleet.as_ref())
            .and_then(|f| f.cooling_until.get(target).copied())
            .unwrap_or(0);
        own.max(fleet)
    }
}

/// What one response says about a target.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub target: usize,
    /// Cool down until this Unix second (a failure), if any.
    pub cool_until: Option<u64>,
    pub latency_ms: Option<f64>,
    /// When the response was seen (Unix ms).
    pub at_ms: u64,
}

/// How long a failure cools a target down: `Retry-After` (seconds, capped) or the default.
pub fn cooldown_seconds(retry_after: Option<&str>, default: u64) -> u64 {
    retry_after
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map_or(default, |s| s.min(MAX_COOLDOWN_SECONDS))
}

impl Health {
    fn apply(&mut self, sample: Sample) {
        if let Some(until) = sample.cool_until {
            if let Some(slot) = self.cooling_until.get_mut(sample.target) {
                *slot = (*slot).max(until);
            }
        }
        if let Some(l) = sample.latency_ms {
            if let Some(slot) = self.latency_ms.get_mut(sample.target) {
                *slot = if *slot < 0.0 {
                    l
                } else {
                    *slot + LATENCY_ALPHA * (l - *slot)
                };
            }
            if let Some(n) = self.samples.get_mut(sample.target) {
                *n = (*n + 1.0).min(FULL_WEIGHT);
            }
            if let Some(t) = self.sampled_ms.get_mut(sample.target) {
                *t = sample.at_ms;
            }
        }
    }
}

/// Applies a sample ([`cas_update`]; a missing key is seeded with a fresh health first). All
/// `MAX_ATTEMPTS` writes lost is [`StoreError::CasMismatch`]: the sample is dropped.
pub fn record<S: SharedStore + ?Sized>(
    store: &S,
    key: &str,
    targets: usize,
    sample: Sample,
) -> Result<(), StoreError> {
    change(store, key, targets, |h| h.apply(sample))
}

/// Replaces the fleet part of a model's health (a sync merged the others').
pub fn set_fleet<S: SharedStore + ?Sized>(
    store: &S,
    key: &str,
    targets: usize,
    fleet: FleetHealth,
) -> Result<(), StoreError> {
    change(store, key, targets, |h| h.fleet = Some(fleet.clone()))
}

/// The bounded CAS read-modify-write of a model's health.
fn change<S: SharedStore + ?Sized>(
    store: &S,
    key: &str,
    targets: usize,
    mut edit: impl FnMut(&mut Health),
) -> Result<(), StoreError> {
    change_dyn(store, key, targets, &mut |h: &mut Health| {
        edit(h);
        true
    })
}

/// `change`'s body, one copy whatever the edit.
fn change_dyn<S: SharedStore + ?Sized>(
    store: &S,
    key: &str,
    targets: usize,
    edit: &mut dyn Edit<Health>,
) -> Result<(), StoreError> {
    // `Health::decode` never fails: bytes of another shape give a fresh health.
    cas_edit_with(
        store,
        key,
        MAX_ATTEMPTS,
        Health::new(targets),
        |bytes| Health::decode(bytes, targets),
        Health::encode,
        |h| edit.edit(h),
    )
    .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bandit::MemoryStore;

    #[test]
    fn samples_accumulate() {
        let s = MemoryStore::new();
        record(
            &s,
            "h",
            2,
            Sample {
                target: 1,
                cool_until: Some(100),
                latency_ms: Some(50.0),
                at_ms: 1,
            },
        )
        .unwrap();
        record(
            &s,
            "h",
            2,
            Sample {
                target: 1,
                cool_until: Some(90),
                latency_ms: Some(100.0),
                at_ms: 2,
            },
        )
        .unwrap();
        let h = Health::decode(&s.raw("h").unwrap().0, 2);
        assert_eq!(h.samples, [0.0, 2.0]);
        assert_eq!(h.cooling(1), 100);
        assert_eq!(h.cooling(0), 0);
        assert_eq!(h.latency(1), Some(60.0)); // 50 + 0.2·(100 − 50)
        assert_eq!(h.latency(0), None);
    }

    #[test]
    fn shape_change_and_garbage_reset() {
        let s = MemoryStore::new();
        record(
            &s,
            "h",
            2,
            Sample {
                target: 0,
                cool_until: Some(5),
                latency_ms: None,
                at_ms: 0,
            },
        )
        .unwrap();
        assert_eq!(Health::decode(&s.raw("h").unwrap().0, 3), Health::new(3));
        assert_eq!(Health::decode(&[0xc1], 2), Health::new(2));
    }

    #[test]
    fn the_fleet_adds_cooldowns_and_weighs_latencies() {
        let mut h = Health::new(2);
        h.latency_ms = vec![100.0, -1.0];
        h.samples = vec![1.0, 0.0];
        h.cooling_until = vec![5, 0];
        h.fleet = Some(FleetHealth {
            cooling_until: vec![3, 50],
            latency_ms: vec![200.0, 40.0],
            samples: vec![3.0, 2.0],
        });
        assert_eq!((h.cooling(0), h.cooling(1)), (5, 50));
        assert_eq!(h.latency(0), Some(175.0)); // (100·1 + 200·3) / 4
        assert_eq!(h.latency(1), Some(40.0));
        let back = Health::decode(&h.encode(), 2);
        assert_eq!(back, h);
        // An older health (two fields) still reads; estimates weigh one sample.
        let old = rmp_serde::to_vec(&(vec![7u64, 0], vec![30.0f64, -1.0])).unwrap();
        let h = Health::decode(&old, 2);
        assert_eq!(
            (h.cooling(0), h.latency(0), h.samples.clone()),
            (7, Some(30.0), vec![1.0, 0.0])
        );
    }

    #[test]
    fn retry_after() {
        assert_eq!(cooldown_seconds(Some("7"), 30), 7);
        assert_eq!(cooldown_seconds(Some("999999"), 30), MAX_COOLDOWN_SECONDS);
        assert_eq!(
            cooldown_seconds(Some("Wed, 21 Oct 2015 07:28:00 GMT"), 30),
            30
        );
        assert_eq!(cooldown_seconds(None, 30), 30);
    }
}
