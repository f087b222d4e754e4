//! The load document of one model, kept in shared data so every worker sees the same counts:
//! requests in flight per target and per endpoint, latency estimates, and the last load report
//! of each endpoint. Written by CAS on every request start and end (`track`).

#[cfg(any(test, feature = "testing"))]
use serde::{Deserialize, Serialize};

use crate::config::{Model, Target};

/// Endpoints kept per model document; observed ones beyond are not added.
pub const MAX_ENDPOINTS: usize = 128;
/// Weight of a new latency sample in the moving averages.
const LATENCY_ALPHA: f64 = 0.2;

#[derive(Debug, Clone, Default, PartialEq)]
#[cfg_attr(any(test, feature = "testing"), derive(Serialize, Deserialize))]
pub struct Load {
    /// The model's target names when written: a document of other targets is not this one's.
    pub names: Vec<String>,
    pub targets: Vec<TargetLoad>,
    pub endpoints: Vec<EndpointLoad>,
}

#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(any(test, feature = "testing"), derive(Serialize, Deserialize))]
pub struct TargetLoad {
    pub in_flight: u32,
    /// Moving averages in ms, to the end of the response / to its headers (negative: none).
    pub latency_ms: f64,
    pub ttfb_ms: f64,
}

impl Default for TargetLoad {
    fn default() -> Self {
        TargetLoad {
            in_flight: 0,
            latency_ms: -1.0,
            ttfb_ms: -1.0,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(any(test, feature = "testing"), derive(Serialize, Deserialize))]
pub struct EndpointLoad {
    /// `ip:port`, as Envoy's `upstream.address` and the override_host header write it.
    pub address: String,
    pub target: u32,
    pub in_flight: u32,
    pub latency_ms: f64,
    /// From the last load report (`reported_ms`; 0: none).
    pub waiting: f64,
    pub kv_cache: f64,
    pub reported_ms: u64,
    /// Last time it answered (Unix ms; 0: never).
    pub seen_ms: u64,
}

impl EndpointLoad {
    pub fn new(address: &str, target: usize) -> Self {
        EndpointLoad {
            address: address.to_string(),
            target: u32::try_from(target).unwrap_or(u32::MAX),
            in_flight: 0,
            latency_ms: -1.0,
            waiting: 0.0,
            kv_cache: 0.0,
            reported_ms: 0,
            seen_ms: 0,
        }
    }
}

/// What the score of a target or endpoint is made of.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Signals {
    pub in_flight: u32,
    pub waiting: f64,
    pub kv_cache: f64,
    pub latency_ms: Option<f64>,
}

/// How long a new request is expected to take here, up to a constant: the requests ahead of it
/// (in flight and queued, plus itself) per slot, times the latency estimate, inflated by the
/// KV-cache use (a full cache preempts). `slots` is the capacity (1 when none);
/// `unknown_latency_ms` stands in for a missing estimate.
pub fn score(s: &Signals, slots: u32, unknown_latency_ms: f64) -> f64 {
    let ahead = f64::from(s.in_flight) + s.waiting + 1.0;
    let latency = s.latency_ms.unwrap_or(unknown_latency_ms).max(1.0);
    ahead / f64::from(slots.max(1)) * latency * (1.0 + s.kv_cache.clamp(0.0, 1.0))
}

/// The estimate standing in for a missing one: the lowest known, so a new target is tried.
pub fn unknown_latency(known: impl Iterator<Item = Option<f64>>) -> f64 {
    known
        .flatten()
        .fold(f64::INFINITY, f64::min)
        .clamp(1.0, 1e9)
}

fn ewma(slot: &mut f64, sample: f64) {
    *slot = if *slot < 0.0 {
        sample
    } else {
        *slot + LATENCY_ALPHA * (sample - *slot)
    };
}

fn estimate(v: f64) -> Option<f64> {
    (v >= 0.0).then_some(v)
}

impl Load {
    pub fn fresh(model: &Model) -> Load {
        Load {
            names: model.targets.iter().map(|t| t.name.clone()).collect(),
            targets: vec![TargetLoad::default(); model.targets.len()],
            endpoints: Vec::new(),
        }
    }

    /// Decodes; garbage, or a document of other targets (a new configuration), is fresh.
    pub fn decode(bytes: &[u8], model: &Model) -> Load {
        match super::codec::read_load(bytes) {
            Ok(l)
                if l.targets.len() == model.targets.len()
                    && l.names.iter().eq(model.targets.iter().map(|t| &t.name)) =>
            {
                l
            }
            _ => Load::fresh(model),
        }
    }

    /// rmp-serde's compact form, byte for byte (written by hand: `load::codec`).
    pub fn encode(&self) -> Vec<u8> {
        super::codec::write_load(self)
    }

    pub fn in_flight(&self, target: usize) -> u32 {
        self.targets.get(target).map_or(0, |t| t.in_flight)
    }

    fn endpoint(&self, t: usize, address: &str) -> Option<&EndpointLoad> {
        self.endpoints
            .iter()
            .find(|e| e.target as usize == t && e.address == address)
    }

    pub(super) fn endpoint_mut(&mut self, t: usize, address: &str) -> Option<&mut EndpointLoad> {
        self.endpoints
            .iter_mut()
            .find(|e| e.target as usize == t && e.address == address)
    }

    /// The endpoints of target `t`: the configured ones, then those observed answering.
    pub fn endpoints_of<'a>(&'a self, target: &'a Target, t: usize) -> Vec<EndpointView<'a>> {
        let observed = self
            .endpoints
            .iter()
            .filter(move |e| {
                e.target as usize == t
                    && !e.address.is_empty()
                    && !target.endpoints.contains(&e.address)
            })
            .filter(|_| target.observe_endpoints)
            .map(|e| EndpointView {
                address: &e.address,
                load: Some(e),
            });
        target
            .endpoints
            .iter()
            .map(|a| EndpointView {
                address: a,
                load: self.endpoint(t, a),
            })
            .chain(observed)
            .collect()
    }

    /// A target's signals: its in-flight count and latency, and the queue (sum) and KV-cache use
    /// (mean) its endpoints reported within `stale_ms`.
    pub fn target_signals(&self, t: usize, now_ms: u64, stale_ms: u64) -> Signals {
        let (mut waiting, mut kv, mut reports) = (0.0, 0.0, 0u32);
        for e in self.endpoints.iter().filter(|e| e.target as usize == t) {
            if is_fresh(e, now_ms, stale_ms) {
                waiting += e.waiting;
                kv += e.kv_cache;
                reports += 1;
            }
        }
        let own = self.targets.get(t);
        Signals {
            in_flight: own.map_or(0, |l| l.in_flight),
            waiting,
            kv_cache: if reports == 0 {
                0.0
            } else {
                kv / f64::from(reports)
            },
            latency_ms: own.and_then(|l| estimate(l.latency_ms)),
        }
    }

    /// Whether target `t` can take one more request: under its capacity, and (when the filter
    /// picks its endpoints and limits them) some known endpoint under the endpoint capacity.
    pub fn has_room(&self, target: &Target, t: usize) -> bool {
        if target.capacity.is_some_and(|c| self.in_flight(t) >= c) {
            return false;
        }
        let Some(cap) = target.endpoint_capacity else {
            return true;
        };
        let endpoints = self.endpoints_of(target, t);
        endpoints.is_empty() || endpoints.iter().any(|e| e.in_flight() < cap)
    }

    /// Records a finished request's latencies on its target and on the endpoint that answered.
    pub(super) fn sample(
        &mut self,
        t: usize,
        endpoint: Option<&str>,
        latency: Option<f64>,
        ttfb: Option<f64>,
    ) {
        if let Some(l) = self.targets.get_mut(t) {
            if let Some(x) = latency {
                ewma(&mut l.latency_ms, x);
            }
            if let Some(x) = ttfb {
                ewma(&mut l.ttfb_ms, x);
            }
        }
        if let (Some(e), Some(x)) = (endpoint.and_then(|a| self.endpoint_mut(t, a)), latency) {
            ewma(&mut e.latency_ms, x);
        }
    }
}

/// An endpoint of a target, with what is known of it.
#[derive(Debug, Clone, Copy)]
pub struct EndpointView<'a> {
    pub address: &'a str,
    pub load: Option<&'a EndpointLoad>,
}

impl EndpointView<'_> {
    pub fn in_flight(&self) -> u32 {
        self.load.map_or(0, |e| e.in_flight)
    }

    pub fn signals(&self, now_ms: u64, stale_ms: u64) -> Signals {
        let Some(e) = self.load else {
            return Signals::default();
        };
        let fresh = is_fresh(e, now_ms, stale_ms);
        Signals {
            in_flight: e.in_flight,
            waiting: if fresh { e.waiting } else { 0.0 },
            kv_cache: if fresh { e.kv_cache } else { 0.0 },
            latency_ms: estimate(e.latency_ms),
        }
    }
}

fn is_fresh(e: &EndpointLoad, now_ms: u64, stale_ms: u64) -> bool {
    e.reported_ms > 0 && now_ms.saturating_sub(e.reported_ms) <= stale_ms
}
