//! A request's place in the load document: reserved when it is routed (the target's and the
//! endpoint's in-flight counts go up, atomically with the capacity check, so two workers cannot
//! both take the last slot), released when its stream ends however it ends (counts go down,
//! latencies and the load report are recorded).

use std::convert::Infallible;

use super::orca::Report;
use super::state::{score, unknown_latency, EndpointLoad, Load, MAX_ENDPOINTS};
use crate::bandit::{
    cas_edit_with, cas_update, Change, Codec, SharedStore, StoreError, UpdateFailure,
};
use crate::config::Model;
use crate::rng::Rng;

/// CAS attempts before a reservation or release gives up.
const MAX_ATTEMPTS: u32 = 16;
/// Observed endpoints not seen for this many `stale_ms` (and idle) leave the document.
const FORGET_AFTER_STALE: u64 = 30;
/// A target that observes its endpoints leaves one request in this many to Envoy's balancer,
/// so pods it has not seen answer yet are found.
pub const EXPLORE_ONE_IN: u64 = 16;

/// The load document of a model with these targets.
struct LoadCodec<'a>(&'a Model);

impl Codec for LoadCodec<'_> {
    type Value = Load;
    type Error = Infallible;
    fn decode(&self, bytes: &[u8]) -> Result<Load, Infallible> {
        Ok(Load::decode(bytes, self.0))
    }
    fn encode(&self, value: &Load) -> Vec<u8> {
        value.encode()
    }
}

/// A reservation: the endpoint chosen inside the target, when the filter picks one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reserved {
    pub endpoint: Option<String>,
}

#[derive(Debug)]
pub enum ReserveError {
    /// The target (or every endpoint of it) is at capacity.
    Full,
    /// Shared data refused or stayed contended: the request goes uncounted.
    Store(StoreError),
}

/// What a reservation needs besides the document.
pub struct Ask<'a> {
    pub model: &'a Model,
    pub target: usize,
    /// Prefix-affinity key of the request (`affinity_key`), when the model has affinity.
    pub affinity: Option<u64>,
    pub now_ms: u64,
    pub stale_ms: u64,
}

/// Takes a slot of the target (and of an endpoint of it) or says it is full.
pub fn reserve<S: SharedStore + ?Sized>(
    store: &S,
    key: &str,
    ask: &Ask<'_>,
    rng: &mut Rng,
) -> Result<Reserved, ReserveError> {
    let fresh = Load::fresh(ask.model);
    let mut chosen = None;
    let outcome = cas_update(
        store,
        key,
        MAX_ATTEMPTS,
        &LoadCodec(ask.model),
        &fresh,
        |mut load| {
            let Some(target) = ask.model.targets.get(ask.target) else {
                return Err(());
            };
            if !load.has_room(target, ask.target) {
                return Err(());
            }
            chosen = if target.picks_endpoint() {
                pick_endpoint(&load, ask, rng).ok_or(())?
            } else {
                None
            };
            take(&mut load, ask.target, chosen.as_deref());
            Ok(Change::Write(load))
        },
    );
    match outcome {
        Ok(_) => Ok(Reserved { endpoint: chosen }),
        Err(UpdateFailure::Rejected(())) => Err(ReserveError::Full),
        Err(UpdateFailure::Contention { .. }) => Err(ReserveError::Store(StoreError::CasMismatch)),
        Err(UpdateFailure::Store { error, .. }) => Err(ReserveError::Store(error)),
    }
}

/// The endpoint for a request: `Some(None)` when Envoy's balancer chooses (no endpoint known
/// yet, or an exploring request of an observing target); `None` when every endpoint is at
/// capacity. With affinity, the endpoint the key hashes to while it has room; otherwise the
/// lower score of two drawn with room.
fn pick_endpoint(load: &Load, ask: &Ask<'_>, rng: &mut Rng) -> Option<Option<String>> {
    let target = ask.model.targets.get(ask.target)?;
    let all = load.endpoints_of(target, ask.target);
    if all.is_empty() || (target.observe_endpoints && rng.below(EXPLORE_ONE_IN) == 0) {
        return Some(None);
    }
    let cap = target.endpoint_capacity.unwrap_or(u32::MAX);
    if let Some(key) = ask.affinity {
        let home = all.iter().max_by_key(|e| rendezvous(key, e.address));
        if let Some(e) = home.filter(|e| e.in_flight() < cap) {
            return Some(Some(e.address.to_string()));
        }
    }
    let open: Vec<_> = all.iter().filter(|e| e.in_flight() < cap).collect();
    let signals: Vec<_> = open
        .iter()
        .map(|e| e.signals(ask.now_ms, ask.stale_ms))
        .collect();
    let unknown = unknown_latency(signals.iter().map(|s| s.latency_ms));
    let slots = target.endpoint_capacity.unwrap_or(1);
    let i = two_choices(signals.len(), rng, |i| {
        signals
            .get(i)
            .map_or(f64::INFINITY, |s| score(s, slots, unknown))
    })?;
    open.get(i).map(|e| Some(e.address.to_string()))
}

/// Power of two choices: two distinct indices below `n` drawn uniformly, the lower score wins.
pub fn two_choices(n: usize, rng: &mut Rng, score: impl Fn(usize) -> f64) -> Option<usize> {
    let n64 = u64::try_from(n).ok().filter(|&n| n > 0)?;
    let a = usize::try_from(rng.below(n64)).ok()?;
    if n == 1 {
        return Some(a);
    }
    let b = usize::try_from(rng.below(n64 - 1)).ok()?;
    let b = if b >= a { b + 1 } else { b };
    Some(if score(b) < score(a) { b } else { a })
}

/// Highest-random-weight hashing: an endpoint joining or leaving moves only its own keys.
fn rendezvous(key: u64, address: &str) -> u64 {
    let mut h = key ^ 0x9e37_79b9_7f4a_7c15;
    for b in address.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    h ^ (h >> 29)
}

fn take(load: &mut Load, t: usize, endpoint: Option<&str>) {
    if let Some(l) = load.targets.get_mut(t) {
        l.in_flight = l.in_flight.saturating_add(1);
    }
    if let Some(a) = endpoint {
        if load.endpoint_mut(t, a).is_none() && load.endpoints.len() < MAX_ENDPOINTS {
            load.endpoints.push(EndpointLoad::new(a, t));
        }
        if let Some(e) = load.endpoint_mut(t, a) {
            e.in_flight = e.in_flight.saturating_add(1);
        }
    }
}

/// A finished request, as the release records it.
#[derive(Debug, Clone, Default)]
pub struct Done {
    pub target: usize,
    /// It held a slot (a reservation that succeeded), on this endpoint if any.
    pub reserved: bool,
    pub endpoint: Option<String>,
    /// The endpoint that answered (`upstream.address`), when Envoy said.
    pub answered_by: Option<String>,
    pub latency_ms: Option<f64>,
    pub ttfb_ms: Option<f64>,
    pub report: Option<Report>,
    pub now_ms: u64,
    pub stale_ms: u64,
}

/// Gives the slot back and records what the response showed.
pub fn release<S: SharedStore + ?Sized>(
    store: &S,
    key: &str,
    model: &Model,
    done: &Done,
) -> Result<(), StoreError> {
    cas_edit_with(
        store,
        key,
        MAX_ATTEMPTS,
        Load::fresh(model),
        |bytes| Load::decode(bytes, model),
        Load::encode,
        |load| {
            if done.reserved {
                give_back(load, done.target, done.endpoint.as_deref());
            }
            observe(load, model, done);
            true
        },
    )
    .map(|_| ())
}

fn give_back(load: &mut Load, t: usize, endpoint: Option<&str>) {
    if let Some(l) = load.targets.get_mut(t) {
        l.in_flight = l.in_flight.saturating_sub(1);
    }
    if let Some(e) = endpoint.and_then(|a| load.endpoint_mut(t, a)) {
        e.in_flight = e.in_flight.saturating_sub(1);
    }
}

/// Latencies and the load report, kept on the endpoint that answered (`""`: the target itself,
/// when Envoy did not say); an endpoint seen for the first time joins an observing target.
fn observe(load: &mut Load, model: &Model, done: &Done) {
    let t = done.target;
    let observing = model.targets.get(t).is_some_and(|x| x.observe_endpoints);
    let at = (done.answered_by.as_deref())
        .or(done.endpoint.as_deref())
        .unwrap_or("");
    let new = load.endpoint_mut(t, at).is_none();
    let keep = done.report.is_some() || (observing && !at.is_empty());
    if new && keep && load.endpoints.len() < MAX_ENDPOINTS {
        load.endpoints.push(EndpointLoad::new(at, t));
    }
    if let Some(e) = load.endpoint_mut(t, at) {
        e.seen_ms = done.now_ms;
        if let Some(r) = done.report {
            e.waiting = r.waiting.unwrap_or(0.0);
            e.kv_cache = r.kv_cache.unwrap_or(0.0);
            e.reported_ms = done.now_ms;
        }
    }
    load.sample(t, Some(at), done.latency_ms, done.ttfb_ms);
    forget_departed(load, model, done.now_ms, done.stale_ms);
}

/// Observed endpoints that stopped answering and hold no request leave the document.
fn forget_departed(load: &mut Load, model: &Model, now_ms: u64, stale_ms: u64) {
    let horizon = stale_ms.saturating_mul(FORGET_AFTER_STALE);
    load.endpoints.retain(|e| {
        let configured = model
            .targets
            .get(e.target as usize)
            .is_some_and(|t| t.endpoints.contains(&e.address));
        configured || e.in_flight > 0 || now_ms.saturating_sub(e.seen_ms) <= horizon
    });
}
