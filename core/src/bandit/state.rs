//! Learned state of one model: per-arm statistics, its MessagePack encoding, and reconciliation
//! with the current configuration.
//!
//! * [`ModelState`] / [`ArmState`]: what every VM shares through proxy-wasm shared data.
//! * [`encode`] / [`decode`]: MessagePack, rmp-serde's compact array form, written and read by
//!   hand (`codec`). [`decode`] rejects garbage, truncated or trailing bytes, another format
//!   version, and states whose numbers are not usable (NaN, infinities, negative counts,
//!   duplicate names); it never panics.
//! * [`reconcile`]: lines a decoded state up with the configured targets (by name) and says what
//!   it did ([`Reconciled`]) so the host can log it.
//! * [`StateCache`]: the host's decoded copy, keyed by the shared-data CAS token, so a request
//!   only pays for a decode when another writer changed the bytes. It holds the *view* routing
//!   uses: this Envoy's statistics plus what the rest of the fleet learned ([`FleetPart`]).
//! * [`StateExt`]: the optional tail of a version-1 state, present only with time decay, a
//!   fleet or a contextual strategy, so states without any encode exactly as before. Its last
//!   field (`linear`) is left out when absent: a build that predates it reads every state that
//!   does not use it, and this build reads every earlier state.

use crate::format_float::plain;
use crate::vecmap::VecSet;
use core::fmt;

#[cfg(any(test, feature = "testing"))]
use serde::{Deserialize, Serialize};

use super::change::ChangeState;
use super::codec;
use super::strategy::{Prior, Strategy};

/// Format version written in every encoded state. Bump it when the layout of [`ModelState`] or
/// the meaning of a field changes; [`decode`] refuses any other version, and the store layer then
/// replaces the state (see [`super::store::update_state`]).
pub const STATE_VERSION: u32 = 1;

/// Statistics of one arm (one target of a model).
///
/// With decay, every count below is a *discounted* count: all arms are multiplied by the
/// strategy's discount factor on each accepted reward, so `pulls` is a real number, not an
/// integer. `alpha` and `beta` are the Beta posterior parameters including the prior; with decay
/// the part above the prior is discounted, so the posterior relaxes towards the prior.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(any(test, feature = "testing"), derive(Serialize, Deserialize))]
pub struct ArmState {
    /// Target name; arms are matched to configured targets by this name.
    pub name: String,
    /// (Discounted) number of rewards observed for this arm.
    pub pulls: f64,
    /// (Discounted) sum of those rewards, each in `[0, 1]`; so `0 <= reward_sum <= pulls`.
    pub reward_sum: f64,
    /// Beta posterior alpha: prior alpha + (discounted) sum of rewards.
    pub alpha: f64,
    /// Beta posterior beta: prior beta + (discounted) sum of `1 - reward`.
    pub beta: f64,
}

impl ArmState {
    /// An arm that has seen nothing: zero pulls, the posterior equal to `prior`.
    pub fn fresh(name: &str, prior: Prior) -> Self {
        ArmState {
            name: name.to_owned(),
            pulls: 0.0,
            reward_sum: 0.0,
            alpha: prior.alpha,
            beta: prior.beta,
        }
    }

    /// Empirical mean reward `reward_sum / pulls`, clamped to `[0, 1]` against rounding;
    /// `None` when the arm has no pulls.
    pub fn mean(&self) -> Option<f64> {
        if self.pulls > 0.0 {
            Some((self.reward_sum / self.pulls).clamp(0.0, 1.0))
        } else {
            None
        }
    }
}

/// Everything learned about one model. Arms are in the order of the configured targets once the
/// state has gone through [`reconcile`]; arm indices returned by
/// [`Strategy::select`](super::Strategy::select) index this vector.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(any(test, feature = "testing"), derive(Serialize, Deserialize))]
pub struct ModelState {
    /// Format version; [`STATE_VERSION`] for every state this build writes.
    pub version: u32,
    /// Identity of the configuration whose parameters give the numbers their meaning; see
    /// [`Strategy::config_id`](super::Strategy::config_id).
    pub config_id: u64,
    /// Number of rewards accepted into this state since the key was created: never decayed,
    /// never decreased (kept across migrations and resets), incremented by exactly one per
    /// successful [`Strategy::update`](super::Strategy::update).
    pub updates: u64,
    /// One entry per target: what *this* Envoy learned, prior included.
    pub arms: Vec<ArmState>,
    /// Time decay and fleet contributions; absent (and not encoded) when neither is used.
    #[cfg_attr(
        any(test, feature = "testing"),
        serde(default, skip_serializing_if = "Option::is_none")
    )]
    pub ext: Option<StateExt>,
    /// Change detectors, one per arm in arm order; only with `change_detection`. A state that
    /// has them is encoded as a map (see `codec`), so builds that do not know the field skip it.
    #[cfg_attr(
        any(test, feature = "testing"),
        serde(default, skip_serializing_if = "Option::is_none")
    )]
    pub change: Option<ChangeState>,
}

/// The tail of a state that uses time decay or learns as a fleet.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(any(test, feature = "testing"), derive(Serialize, Deserialize))]
pub struct StateExt {
    /// The Unix time (ms) the decayed statistics of `arms` are as of (time decay); 0 otherwise.
    pub as_of_ms: u64,
    /// What the other replicas of the fleet learned, as merged by the last sync.
    #[cfg_attr(any(test, feature = "testing"), serde(default))]
    pub fleet: Option<FleetPart>,
    /// A contextual strategy's regressions (`linucb`); absent, and not encoded, otherwise, so
    /// earlier states read unchanged.
    #[cfg_attr(
        any(test, feature = "testing"),
        serde(default, skip_serializing_if = "Option::is_none")
    )]
    pub linear: Option<super::linear::LinearPart>,
}

/// The rest of the fleet's statistics for one model: every other replica's contribution (and
/// the retired ones'), summed, decayed to `as_of_ms`.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(any(test, feature = "testing"), derive(Serialize, Deserialize))]
pub struct FleetPart {
    pub as_of_ms: u64,
    /// Rewards the other replicas accepted.
    pub updates: u64,
    /// Replicas whose contributions are in the sums (retired ones not counted).
    pub replicas: u32,
    pub arms: Vec<ArmSums>,
}

/// One target's statistics without the prior, as replicas exchange and add them.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(any(test, feature = "testing"), derive(Serialize, Deserialize))]
pub struct ArmSums {
    pub name: String,
    pub pulls: f64,
    pub reward_sum: f64,
    /// Posterior increments: alpha and beta above the prior.
    pub alpha_gain: f64,
    pub beta_gain: f64,
}

impl ArmSums {
    pub fn zero(name: &str) -> Self {
        ArmSums {
            name: name.to_owned(),
            pulls: 0.0,
            reward_sum: 0.0,
            alpha_gain: 0.0,
            beta_gain: 0.0,
        }
    }

    /// The statistics as numbers, in a fixed order (pulls, reward sum, alpha and beta gains).
    pub fn values(&self) -> [f64; 4] {
        [self.pulls, self.reward_sum, self.alpha_gain, self.beta_gain]
    }

    /// Adds `other` scaled by `factor` (a decay factor, or -1 to take it away).
    pub fn add_scaled(&mut self, other: &ArmSums, factor: f64) {
        self.pulls += other.pulls * factor;
        self.reward_sum += other.reward_sum * factor;
        self.alpha_gain += other.alpha_gain * factor;
        self.beta_gain += other.beta_gain * factor;
    }

    pub fn scale(&mut self, factor: f64) {
        self.pulls *= factor;
        self.reward_sum *= factor;
        self.alpha_gain *= factor;
        self.beta_gain *= factor;
    }

    /// Negative values (rounding after a subtraction) become 0, so the sums stay usable.
    pub fn clamp_non_negative(&mut self) {
        for v in [
            &mut self.pulls,
            &mut self.reward_sum,
            &mut self.alpha_gain,
            &mut self.beta_gain,
        ] {
            if v.is_nan() || *v < 0.0 {
                *v = 0.0;
            }
        }
        self.reward_sum = self.reward_sum.min(self.pulls);
    }

    fn check(&self) -> Result<(), String> {
        let ok = self.values().iter().all(|v| v.is_finite() && *v >= 0.0);
        if self.name.is_empty() || !ok || self.reward_sum > self.pulls * (1.0 + 1e-9) + 1e-9 {
            return Err(format!(
                "fleet sums of {} are not usable",
                crate::quote::quoted(&self.name)
            ));
        }
        Ok(())
    }
}

impl ArmState {
    /// What this arm learned, without the prior.
    pub fn sums(&self, prior: Prior) -> ArmSums {
        ArmSums {
            name: self.name.clone(),
            pulls: self.pulls,
            reward_sum: self.reward_sum,
            alpha_gain: (self.alpha - prior.alpha).max(0.0),
            beta_gain: (self.beta - prior.beta).max(0.0),
        }
    }

    /// Adds sums learned elsewhere (scaled by `factor`) to this arm.
    pub fn absorb(&mut self, sums: &ArmSums, factor: f64) {
        self.pulls += sums.pulls * factor;
        self.reward_sum += sums.reward_sum * factor;
        self.alpha += sums.alpha_gain * factor;
        self.beta += sums.beta_gain * factor;
    }
}

impl ModelState {
    /// A state in which every target is fresh (no pulls, posterior = `prior`).
    pub fn new(target_names: &[&str], config_id: u64, prior: Prior) -> Self {
        ModelState {
            version: STATE_VERSION,
            config_id,
            updates: 0,
            arms: target_names
                .iter()
                .map(|name| ArmState::fresh(name, prior))
                .collect(),
            ext: None,
            change: None,
        }
    }

    /// The fleet part, if a sync merged one.
    pub fn fleet(&self) -> Option<&FleetPart> {
        self.ext.as_ref().and_then(|e| e.fleet.as_ref())
    }

    /// The contextual regressions, if a `linucb` strategy learned any.
    pub fn linear(&self) -> Option<&super::linear::LinearPart> {
        self.ext.as_ref().and_then(|e| e.linear.as_ref())
    }

    /// When the decayed statistics are as of (0: no time decay yet).
    pub fn as_of_ms(&self) -> u64 {
        self.ext.as_ref().map_or(0, |e| e.as_of_ms)
    }

    /// Checks the invariants [`decode`] relies on: at least one arm, non-empty unique names,
    /// finite numbers, `pulls >= 0`, `0 <= reward_sum <= pulls` (with a rounding allowance),
    /// `alpha > 0` and `beta > 0`. Returns a sentence naming the first bad field.
    pub fn check(&self) -> Result<(), String> {
        if self.arms.is_empty() {
            return Err("arms: the state has no arms".to_owned());
        }
        let mut names = VecSet::new();
        for (i, arm) in self.arms.iter().enumerate() {
            if arm.name.is_empty() {
                return Err(arm_error(i, format_args!(".name: is empty")));
            }
            if !names.insert(arm.name.as_str()) {
                return Err(arm_error(
                    i,
                    format_args!(".name: {} appears twice", crate::quote::quoted(&arm.name)),
                ));
            }
            let numbers = [
                ("pulls", arm.pulls),
                ("reward_sum", arm.reward_sum),
                ("alpha", arm.alpha),
                ("beta", arm.beta),
            ];
            for (field, value) in numbers {
                if !value.is_finite() {
                    return Err(arm_error(
                        i,
                        format_args!(".{field}: must be finite, got {}", plain(value)),
                    ));
                }
            }
            if arm.pulls < 0.0 {
                return Err(arm_error(
                    i,
                    format_args!(".pulls: must not be negative, got {}", plain(arm.pulls)),
                ));
            }
            let slack = 1e-9 * (1.0 + arm.pulls);
            if arm.reward_sum < -slack || arm.reward_sum > arm.pulls + slack {
                return Err(arm_error(
                    i,
                    format_args!(
                        ".reward_sum: must be within [0, pulls = {}], got {}",
                        plain(arm.pulls),
                        plain(arm.reward_sum)
                    ),
                ));
            }
            if arm.alpha <= 0.0 || arm.beta <= 0.0 {
                return Err(arm_error(
                    i,
                    format_args!(
                        ": alpha and beta must be above 0, got {} and {}",
                        plain(arm.alpha),
                        plain(arm.beta)
                    ),
                ));
            }
        }
        if let Some(fleet) = self.fleet() {
            fleet.arms.iter().try_for_each(ArmSums::check)?;
        }
        if let Some(linear) = self.linear() {
            linear.check()?;
        }
        if let Some(change) = &self.change {
            if change.arms.len() != self.arms.len() {
                return Err(format!(
                    "change: {} detectors for {} arms",
                    change.arms.len(),
                    self.arms.len()
                ));
            }
            if let Some(i) = change.arms.iter().position(|w| !w.is_valid()) {
                return Err(format!("change.arms[{i}]: numbers are not usable"));
            }
        }
        Ok(())
    }

    /// Position of the arm named `name`.
    pub fn arm_index(&self, name: &str) -> Option<usize> {
        self.arms.iter().position(|arm| arm.name == name)
    }
}

/// `"arms[{i}]{rest}"`: the index written once for every arm's error.
fn arm_error(i: usize, rest: fmt::Arguments<'_>) -> String {
    format!("arms[{i}]{rest}")
}

/// Why stored bytes could not be used. Every variant is recoverable: the caller replaces the
/// state (see [`super::store::update_state`]) and logs this.
#[derive(Debug, Clone, PartialEq)]
pub enum DecodeError {
    /// Not a MessagePack encoding of a [`ModelState`] (garbage, truncated, trailing bytes).
    Malformed(String),
    /// A well-formed state of another format version.
    Version { found: u32, expected: u32 },
    /// Well-formed, right version, but the numbers are unusable (see [`ModelState::check`]).
    Invalid(String),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Malformed(why) => write!(f, "malformed bandit state: {why}"),
            DecodeError::Version { found, expected } => {
                write!(
                    f,
                    "bandit state has format version {found}, this build reads {expected}"
                )
            }
            DecodeError::Invalid(why) => write!(f, "invalid bandit state: {why}"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// MessagePack encoding of `state`: rmp-serde's compact form (structs as arrays), byte for
/// byte as `rmp_serde::to_vec` wrote it.
pub fn encode(state: &ModelState) -> Vec<u8> {
    codec::write_state(state)
}

/// Decodes bytes written by [`encode`] and checks them ([`ModelState::check`]).
///
/// Never panics: garbage, truncated input, trailing bytes, another [`STATE_VERSION`], NaN or
/// other unusable numbers all return a [`DecodeError`]. The version is read first, on its own,
/// so that a state of another version (another layout) is reported as such, not as malformed.
pub fn decode(bytes: &[u8]) -> Result<ModelState, DecodeError> {
    let malformed = |e: crate::msgpack::read::Error| DecodeError::Malformed(e.to_string());
    let version = codec::read_version(bytes).map_err(malformed)?;
    if version != STATE_VERSION {
        return Err(DecodeError::Version {
            found: version,
            expected: STATE_VERSION,
        });
    }
    let state = codec::read_state(bytes).map_err(malformed)?;
    state.check().map_err(DecodeError::Invalid)?;
    Ok(state)
}

/// Why [`reconcile`] started over.
#[derive(Debug, Clone, PartialEq)]
pub enum ResetReason {
    /// The state was written with another format version.
    Version { found: u32 },
    /// The state was made under a configuration with another
    /// [`config_id`](super::Strategy::config_id) (for example another prior).
    ConfigChanged { stored: u64, current: u64 },
    /// No configured target has an arm in the state (every target was renamed or replaced).
    NoCommonTarget,
    /// The state failed [`ModelState::check`].
    Invalid(String),
}

impl fmt::Display for ResetReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResetReason::Version { found } => {
                write!(f, "state format version {found} is not {STATE_VERSION}")
            }
            ResetReason::ConfigChanged { stored, current } => write!(
                f,
                "learning parameters changed (config id {stored:016x} -> {current:016x})"
            ),
            ResetReason::NoCommonTarget => {
                f.write_str("no configured target has learned statistics")
            }
            ResetReason::Invalid(why) => write!(f, "stored state is invalid: {why}"),
        }
    }
}

/// What [`reconcile`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum Reconciled {
    /// Same config id, same targets in the same order: the state is returned as it was.
    Unchanged,
    /// Same config id, different targets or order. `kept` arms survived by name (statistics
    /// intact, moved to their target's position), `added` targets start at the prior, and
    /// `removed` arms no longer configured were dropped.
    Migrated {
        kept: usize,
        added: usize,
        removed: usize,
    },
    /// Statistics discarded: every target starts at the prior. `updates` is carried over.
    Reset(ResetReason),
}

impl fmt::Display for Reconciled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reconciled::Unchanged => f.write_str("unchanged"),
            Reconciled::Migrated {
                kept,
                added,
                removed,
            } => write!(
                f,
                "migrated: kept {kept}, added {added}, removed {removed} targets"
            ),
            Reconciled::Reset(reason) => write!(f, "reset: {reason}"),
        }
    }
}

/// Lines `state` up with the configured `target_names` (in configuration order).
///
/// * another version, another `config_id`, or a state failing [`ModelState::check`] → a fresh
///   state and [`Reconciled::Reset`];
/// * same targets in the same order → the state untouched and [`Reconciled::Unchanged`];
/// * otherwise arms are matched by name: survivors keep their statistics and move to their
///   target's index, new targets start at `prior`, arms of removed targets are dropped →
///   [`Reconciled::Migrated`]; if no target survives, [`Reconciled::Reset`] with
///   [`ResetReason::NoCommonTarget`].
///
/// `updates` is carried over in every case. `target_names` should be unique (the configuration
/// validator guarantees it); a repeated name gets a copy of the same statistics.
pub fn reconcile(
    state: ModelState,
    target_names: &[&str],
    config_id: u64,
    prior: Prior,
) -> (ModelState, Reconciled) {
    // A reset keeps the count of updates; the fleet part was merged under the old identity
    // and is dropped (the next sync brings the new one's).
    let reset = |reason: ResetReason, updates: u64| {
        let mut fresh = ModelState::new(target_names, config_id, prior);
        fresh.updates = updates;
        (fresh, Reconciled::Reset(reason))
    };
    if state.version != STATE_VERSION {
        return reset(
            ResetReason::Version {
                found: state.version,
            },
            state.updates,
        );
    }
    if state.config_id != config_id {
        return reset(
            ResetReason::ConfigChanged {
                stored: state.config_id,
                current: config_id,
            },
            state.updates,
        );
    }
    if let Err(why) = state.check() {
        return reset(ResetReason::Invalid(why), state.updates);
    }
    let same_order = state.arms.len() == target_names.len()
        && state
            .arms
            .iter()
            .zip(target_names)
            .all(|(arm, name)| arm.name == *name);
    if same_order {
        return (state, Reconciled::Unchanged);
    }
    let mut kept = 0;
    let arms: Vec<ArmState> = target_names
        .iter()
        .map(
            |name| match state.arms.iter().find(|arm| arm.name == *name) {
                Some(arm) => {
                    kept += 1;
                    arm.clone()
                }
                None => ArmState::fresh(name, prior),
            },
        )
        .collect();
    if kept == 0 {
        return reset(ResetReason::NoCommonTarget, state.updates);
    }
    let removed = state
        .arms
        .iter()
        .filter(|arm| !target_names.contains(&arm.name.as_str()))
        .count();
    let migrated = ModelState {
        version: STATE_VERSION,
        config_id,
        updates: state.updates,
        arms,
        ext: state.ext,
        // Detectors follow arm positions, which moved: they start again in warm-up.
        change: None,
    };
    let added = target_names.len().saturating_sub(kept);
    (
        migrated,
        Reconciled::Migrated {
            kept,
            added,
            removed,
        },
    )
}

/// What [`StateCache::refresh`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum Refresh {
    /// The CAS token is the cached one: nothing was decoded.
    Cached,
    /// New bytes were decoded and reconciled; the value says how (log anything but `Unchanged`).
    Decoded(Reconciled),
    /// The key does not exist (yet): the cache holds a fresh state.
    Missing,
    /// The bytes could not be decoded: the cache holds a fresh state until the bytes change
    /// (the next reward's [`update_state`](super::store::update_state) replaces them).
    Undecodable(DecodeError),
}

/// The host's decoded copy of one model's shared state, tagged with the CAS token it was read
/// at.
///
/// Use: read the key (`get_shared_data` gives bytes and CAS together), call
/// [`refresh`](Self::refresh) — it compares the CAS with the cached one and decodes only when it
/// differs — then [`select`](super::Strategy::select) on [`state`](Self::state). Whether to read
/// on every request or on a timer is the host's choice; either way, decoding happens once per
/// change of the stored value per VM, never per request. After [`refresh`](Self::refresh) has
/// been called once, [`state`](Self::state) is always `Some`.
#[derive(Debug, Clone, Default)]
pub struct StateCache {
    cas: Option<u32>,
    state: Option<ModelState>,
}

impl StateCache {
    /// An empty cache: [`state`](Self::state) is `None` until the first refresh.
    pub fn new() -> Self {
        Self::default()
    }

    /// The cached view (this Envoy's statistics plus the fleet's, see [`Strategy::view`]),
    /// reconciled with the configuration given to the last refresh.
    pub fn state(&self) -> Option<&ModelState> {
        self.state.as_ref()
    }

    /// The CAS token the cached state was read at (`None` for a missing key or an empty cache).
    pub fn cas(&self) -> Option<u32> {
        self.cas
    }

    /// True when `cas` is the token of the cached state, i.e. a refresh would decode nothing.
    pub fn is_current(&self, cas: Option<u32>) -> bool {
        self.state.is_some() && cas.is_some() && self.cas == cas
    }

    /// Brings the cache up to date with the value just read from shared data.
    ///
    /// Decodes and reconciles (against `strategy` and the configured target names, gathered by
    /// `target_names` only then) only when `cas` differs from the cached token: the usual
    /// request finds the value unchanged and builds nothing. Never fails: a missing key or
    /// undecodable bytes leave a fresh state in the cache and are reported in the returned
    /// [`Refresh`].
    pub fn refresh<'n>(
        &mut self,
        bytes: Option<&[u8]>,
        cas: Option<u32>,
        strategy: &Strategy,
        target_names: impl FnOnce() -> Vec<&'n str>,
    ) -> Refresh {
        if self.is_current(cas) {
            return Refresh::Cached;
        }
        self.cas = cas;
        let target_names = &target_names();
        let Some(bytes) = bytes else {
            self.state = Some(strategy.initial_state(target_names));
            return Refresh::Missing;
        };
        match decode(bytes) {
            Ok(decoded) => {
                let (state, how) = strategy.reconcile(decoded, target_names);
                self.state = Some(strategy.view(&state));
                Refresh::Decoded(how)
            }
            Err(err) => {
                self.state = Some(strategy.initial_state(target_names));
                Refresh::Undecodable(err)
            }
        }
    }

    /// Forgets the cached state, forcing the next refresh to decode (e.g. after a
    /// reconfiguration changed the targets).
    pub fn clear(&mut self) {
        self.cas = None;
        self.state = None;
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
mod tests {
    use super::*;

    const PRIOR: Prior = Prior {
        alpha: 1.0,
        beta: 1.0,
    };

    fn sample_state() -> ModelState {
        let mut s = ModelState::new(&["v1", "v2", "v3"], 42, PRIOR);
        s.updates = 7;
        s.arms[0].pulls = 3.5;
        s.arms[0].reward_sum = 2.25;
        s.arms[0].alpha = 3.25;
        s.arms[0].beta = 2.25;
        s
    }

    #[test]
    fn round_trip() {
        let s = sample_state();
        let bytes = encode(&s);
        assert!(!bytes.is_empty());
        assert_eq!(decode(&bytes).unwrap(), s);
    }

    #[test]
    fn named_form_is_accepted_too() {
        let s = sample_state();
        let bytes = rmp_serde::to_vec_named(&s).unwrap();
        assert_eq!(decode(&bytes).unwrap(), s);
    }

    #[test]
    fn garbage_and_truncation_are_errors() {
        assert!(matches!(decode(&[]), Err(DecodeError::Malformed(_))));
        assert!(matches!(
            decode(b"hello world"),
            Err(DecodeError::Malformed(_))
        ));
        assert!(matches!(decode(&[0xc1]), Err(DecodeError::Malformed(_))));
        let bytes = encode(&sample_state());
        for cut in 0..bytes.len() {
            assert!(
                decode(&bytes[..cut]).is_err(),
                "prefix of {cut} bytes decoded"
            );
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(matches!(decode(&longer), Err(DecodeError::Malformed(_))));
        // An array claiming 2^32-1 elements with none present must fail, not allocate.
        assert!(decode(&[0xdd, 0xff, 0xff, 0xff, 0xff]).is_err());
    }

    #[test]
    fn every_single_byte_corruption_is_handled() {
        let bytes = encode(&sample_state());
        for i in 0..bytes.len() {
            for flip in [0x01u8, 0x80, 0xff] {
                let mut b = bytes.clone();
                b[i] ^= flip;
                // Must not panic; may decode (e.g. a changed count) or fail.
                if let Ok(s) = decode(&b) {
                    s.check().unwrap();
                }
            }
        }
    }

    #[test]
    fn other_version_is_reported_as_such() {
        let mut s = sample_state();
        s.version = 2;
        let bytes = encode(&s);
        assert_eq!(
            decode(&bytes),
            Err(DecodeError::Version {
                found: 2,
                expected: STATE_VERSION
            })
        );
        // A future layout with extra fields still reports its version.
        let future = rmp_serde::to_vec(&(9u32, "something else", [1, 2, 3])).unwrap();
        assert_eq!(
            decode(&future),
            Err(DecodeError::Version {
                found: 9,
                expected: STATE_VERSION
            })
        );
    }

    #[test]
    fn unusable_numbers_are_invalid() {
        let bad: [fn(&mut ArmState); 7] = [
            |a| a.pulls = f64::NAN,
            |a| a.alpha = f64::INFINITY,
            |a| a.beta = 0.0,
            |a| a.pulls = -1.0,
            |a| a.reward_sum = 5.0, // > pulls
            |a| a.reward_sum = -0.5,
            |a| a.name.clear(),
        ];
        for (i, corrupt) in bad.iter().enumerate() {
            let mut s = sample_state();
            corrupt(&mut s.arms[0]);
            assert!(
                matches!(decode(&encode(&s)), Err(DecodeError::Invalid(_))),
                "case {i}"
            );
        }
        let mut dup = sample_state();
        dup.arms[1].name = "v1".into();
        assert!(matches!(
            decode(&encode(&dup)),
            Err(DecodeError::Invalid(_))
        ));
        let mut empty = sample_state();
        empty.arms.clear();
        assert!(matches!(
            decode(&encode(&empty)),
            Err(DecodeError::Invalid(_))
        ));
    }

    #[test]
    fn reconcile_unchanged() {
        let s = sample_state();
        let (out, how) = reconcile(s.clone(), &["v1", "v2", "v3"], 42, PRIOR);
        assert_eq!(how, Reconciled::Unchanged);
        assert_eq!(out, s);
    }

    #[test]
    fn reconcile_migrates_by_name() {
        let s = sample_state();
        let (out, how) = reconcile(s.clone(), &["v4", "v1", "v3"], 42, PRIOR);
        assert_eq!(
            how,
            Reconciled::Migrated {
                kept: 2,
                added: 1,
                removed: 1
            }
        );
        let names: Vec<&str> = out.arms.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["v4", "v1", "v3"]);
        assert_eq!(out.arms[0], ArmState::fresh("v4", PRIOR));
        assert_eq!(out.arms[1], s.arms[0]);
        assert_eq!(out.arms[2], s.arms[2]);
        assert_eq!(out.updates, 7);
        assert_eq!(out.config_id, 42);

        // Reordering only is a migration too (indices changed).
        let (_, how) = reconcile(s, &["v3", "v2", "v1"], 42, PRIOR);
        assert_eq!(
            how,
            Reconciled::Migrated {
                kept: 3,
                added: 0,
                removed: 0
            }
        );
    }

    #[test]
    fn reconcile_resets() {
        let s = sample_state();
        let (out, how) = reconcile(s.clone(), &["v1", "v2", "v3"], 43, PRIOR);
        assert_eq!(
            how,
            Reconciled::Reset(ResetReason::ConfigChanged {
                stored: 42,
                current: 43
            })
        );
        assert_eq!(out.config_id, 43);
        assert_eq!(out.updates, 7);
        assert!(out.arms.iter().all(|a| a.pulls == 0.0 && a.alpha == 1.0));

        let (_, how) = reconcile(s.clone(), &["x", "y"], 42, PRIOR);
        assert_eq!(how, Reconciled::Reset(ResetReason::NoCommonTarget));

        let mut old = s.clone();
        old.version = 0;
        let (_, how) = reconcile(old, &["v1"], 42, PRIOR);
        assert_eq!(how, Reconciled::Reset(ResetReason::Version { found: 0 }));

        let mut broken = s;
        broken.arms[2].alpha = f64::NAN;
        let (out, how) = reconcile(broken, &["v1", "v2", "v3"], 42, PRIOR);
        assert!(matches!(how, Reconciled::Reset(ResetReason::Invalid(_))));
        out.check().unwrap();
        assert!(how
            .to_string()
            .starts_with("reset: stored state is invalid: arms[2].alpha"));
    }
}
