//! Target health kept in shared data per model: until when each target cools down after a
//! failure, and a moving estimate of its latency. Both feed the decision (fallback, budgets).
//! Updates are best effort: a lost race drops one sample, never blocks a request.

use serde::{Deserialize, Serialize};

use std::convert::Infallible;

use crate::bandit::{cas_update, Change, Codec, SharedStore, StoreError, UpdateFailure};

/// Weight of a new latency sample in the moving average.
pub const LATENCY_ALPHA: f64 = 0.2;
/// CAS attempts for a health update before the sample is dropped.
pub const MAX_ATTEMPTS: u32 = 8;
/// Longest cooldown a `Retry-After` may impose.
pub const MAX_COOLDOWN_SECONDS: u64 = 3600;

pub fn health_key(plugin: &str, model: &str) -> String {
    format!("inference-router/v1/{plugin}/health/{model}")
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Health {
    /// By target index: Unix second until which the target cools down (0: not cooling).
    pub cooling_until: Vec<u64>,
    /// By target index: latency estimate in ms (negative: no sample yet).
    pub latency_ms: Vec<f64>,
}

impl Health {
    pub fn new(targets: usize) -> Self {
        Health {
            cooling_until: vec![0; targets],
            latency_ms: vec![-1.0; targets],
        }
    }

    /// Decodes; bytes of another shape (or garbage) give a fresh health for `targets`.
    pub fn decode(bytes: &[u8], targets: usize) -> Health {
        match rmp_serde::from_slice::<Health>(bytes) {
            Ok(h) if h.cooling_until.len() == targets && h.latency_ms.len() == targets => h,
            _ => Health::new(targets),
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        rmp_serde::to_vec(self).unwrap_or_default()
    }

    pub fn latency(&self, target: usize) -> Option<f64> {
        self.latency_ms.get(target).copied().filter(|l| *l >= 0.0)
    }

    pub fn cooling(&self, target: usize) -> u64 {
        self.cooling_until.get(target).copied().unwrap_or(0)
    }
}

/// What one response says about a target.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub target: usize,
    /// Cool down until this Unix second (a failure), if any.
    pub cool_until: Option<u64>,
    pub latency_ms: Option<f64>,
}

/// How long a failure cools a target down: `Retry-After` (seconds, capped) or the default.
pub fn cooldown_seconds(retry_after: Option<&str>, default: u64) -> u64 {
    retry_after
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map_or(default, |s| s.min(MAX_COOLDOWN_SECONDS))
}

/// Health of a model with this many targets ([`Health::decode`] never fails: bytes of another
/// shape give a fresh health).
struct HealthCodec(usize);

impl Codec for HealthCodec {
    type Value = Health;
    type Error = Infallible;
    fn decode(&self, bytes: &[u8]) -> Result<Health, Infallible> {
        Ok(Health::decode(bytes, self.0))
    }
    fn encode(&self, value: &Health) -> Vec<u8> {
        value.encode()
    }
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
    let fresh = Health::new(targets);
    cas_update(
        store,
        key,
        MAX_ATTEMPTS,
        &HealthCodec(targets),
        &fresh,
        |mut h| {
            h.apply(sample);
            Ok::<_, Infallible>(Change::Write(h))
        },
    )
    .map(|_| ())
    .map_err(|e| match e {
        UpdateFailure::Contention { .. } => StoreError::CasMismatch,
        UpdateFailure::Store { error, .. } => error,
        UpdateFailure::Rejected(never) => match never {},
    })
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
            },
        )
        .unwrap();
        let h = Health::decode(&s.raw("h").unwrap().0, 2);
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
            },
        )
        .unwrap();
        assert_eq!(Health::decode(&s.raw("h").unwrap().0, 3), Health::new(3));
        assert_eq!(Health::decode(&[0xc1], 2), Health::new(2));
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
