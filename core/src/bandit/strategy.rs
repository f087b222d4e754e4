//! Bandit strategies: parameters, their validation, arm selection and reward updates.
//!
//! [`StrategyParams`] is the raw, unvalidated form the configuration layer fills in;
//! [`validate`] checks it and names the first bad parameter; [`Strategy::new`] compiles it once
//! into the immutable runtime form (half-life turned into a discount factor, min-share totals
//! precomputed). A [`Strategy`] then only reads its parameters:
//! [`select`](Strategy::select) draws an arm from a [`ModelState`], and
//! [`update`](Strategy::update) folds one reward into it.
//!
//! # Rewards
//! A reward is a finite number in `[0, 1]`. Anything else (NaN, ±inf, -0.1, 1.5) is refused with
//! a [`RewardError`] and changes nothing: rewards are never clamped, because a reward outside
//! the range means the reward mapping upstream is wrong, and folding it in silently would bias
//! every later decision.
//!
//! # Algorithms
//! * **epsilon-greedy**: arms never pulled are tried first; then with probability `epsilon` a
//!   uniformly random arm, otherwise the arm with the highest mean reward `reward_sum / pulls`.
//! * **Thompson sampling**: one draw from each arm's Beta(`alpha`, `beta`) posterior; the highest
//!   draw wins. A fractional reward `r` adds `r` to `alpha` and `1 - r` to `beta` (no rounding to
//!   0/1: the posterior mean then tracks the mean reward exactly).
//! * **UCB1**: arms never pulled are tried first; then the highest
//!   `mean + sqrt(2 ln N / n)`, `n` the arm's pulls and `N` the sum over arms (with decay, the
//!   discounted counts: discounted UCB, Garivier & Moulines 2011).
//!
//! Ties are broken uniformly at random, so VMs holding the same state do not all pile on the
//! lowest index.
//!
//! # Decay
//! With a discount factor `gamma` in `(0, 1]` every accepted reward first multiplies all arms'
//! `pulls` and `reward_sum` by `gamma`, and moves `alpha` and `beta` towards the prior
//! (`alpha = prior_alpha + gamma * (alpha - prior_alpha)`), then adds the new observation. A
//! half-life of `h` observations is the discount `gamma = 0.5^(1/h)`: an observation weighs
//! half as much `h` accepted rewards later. Decay counts rewards of the whole model (every VM's
//! updates), not time.
//!
//! ## Decay by time (composes across a fleet)
//! Per-update discounting depends on how many rewards *this* writer saw, so two replicas that
//! add their statistics would each discount by their own count: the sum means nothing.
//! `HalfLifeSeconds` discounts by wall-clock time instead: every statistic above the prior
//! weighs `0.5^(age / half-life)`, and a state records the time its numbers are as of
//! ([`ModelState::as_of_ms`]). Sums decayed to one instant add exactly, whichever replica made
//! them ([`Strategy::view`], `fleet`); replicas only need clocks that agree to well under a
//! half-life.
//!
//! # Minimum shares
//! `min_share[i]` (one per arm, each in `[0, 1)`, sum below 1) guarantees arm `i` at least that
//! fraction of selections: with probability `sum(min_share)` the arm is drawn in proportion to
//! `min_share`, otherwise the algorithm chooses. No arm with a positive share starves, whatever
//! the statistics say.
//!
//! # Change detection
//! With `change` (Thompson and UCB1), [`update_watched`](Strategy::update_watched) also runs
//! the arm's sequential change test ([`super::change`]) and restarts the arm at the prior when
//! its rewards shift; the floor above is what keeps observing an arm that is rarely chosen.

use crate::format_float::plain;
use core::fmt;

use super::change::{Alarm, ChangeParams, Detector};
use super::sample;
use super::state::{reconcile, ArmState, ModelState, Reconciled, StateExt};
use crate::rng::Rng;

/// Which bandit algorithm picks the arm.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Algorithm {
    /// Explore uniformly with probability `epsilon` (in `[0, 1]`), otherwise exploit.
    EpsilonGreedy { epsilon: f64 },
    /// Thompson sampling from Beta posteriors.
    Thompson,
    /// Upper confidence bound (UCB1).
    Ucb1,
    /// LinUCB over the request's features (`super::contextual`): exploration width `alpha`,
    /// ridge (prior precision) `ridge`.
    LinUcb { alpha: f64, ridge: f64 },
}

/// How older observations lose weight.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Decay {
    /// Every observation counts forever (stationary bandit).
    #[default]
    None,
    /// Multiply all statistics by `gamma` (in `(0, 1]`; 1 = no decay) on every update.
    Discount { gamma: f64 },
    /// An observation's weight halves after `observations` (at least 1) further updates.
    HalfLife { observations: f64 },
    /// An observation's weight halves every `seconds` (at least 1) of wall-clock time.
    HalfLifeSeconds { seconds: f64 },
}

/// Longest time half-life: ten years is "never" for a router.
pub const MAX_HALF_LIFE_SECONDS: f64 = 10.0 * 365.0 * 86_400.0;

/// Beta prior of every arm's mean reward; Beta(1, 1) (uniform) by default.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Prior {
    pub alpha: f64,
    pub beta: f64,
}

impl Default for Prior {
    fn default() -> Self {
        Prior {
            alpha: 1.0,
            beta: 1.0,
        }
    }
}

/// Largest accepted prior parameter: a prior worth a million observations is a typo.
pub const MAX_PRIOR: f64 = 1e6;

/// Unvalidated strategy parameters, as the configuration layer reads them.
#[derive(Debug, Clone, PartialEq)]
pub struct StrategyParams {
    pub algorithm: Algorithm,
    pub decay: Decay,
    pub prior: Prior,
    /// Empty for no floor, otherwise one share per arm, in target order.
    pub min_share: Vec<f64>,
    /// The context's features (`LinUcb` only; empty otherwise).
    pub features: Vec<super::context::Feature>,
    /// Restart an arm whose rewards shift ([`super::change`]); Thompson and UCB1 only.
    pub change: Option<ChangeParams>,
}

impl StrategyParams {
    /// `algorithm` with no decay, the default prior and no minimum shares.
    pub fn new(algorithm: Algorithm) -> Self {
        StrategyParams {
            algorithm,
            decay: Decay::None,
            prior: Prior::default(),
            min_share: Vec::new(),
            features: Vec::new(),
            change: None,
        }
    }
}

/// A bad strategy parameter. `Display` gives `"<field>: <reason>"`, e.g.
/// `"epsilon: must be within [0, 1], got 1.5"` or `"min_share[2]: must be within [0, 1), got 1"`;
/// the configuration validator prefixes its own path (or renders `arm` as a target name).
#[derive(Debug, Clone, PartialEq)]
pub struct ParamError {
    /// Parameter name: `epsilon`, `prior.alpha`, `prior.beta`, `decay.gamma`,
    /// `decay.half_life`, `min_share`, `change_detection` (or one of its fields, e.g.
    /// `change_detection.warmup`) or `arms`.
    pub field: &'static str,
    /// For `min_share`, the arm whose share is wrong.
    pub arm: Option<usize>,
    /// What is wrong, with the offending value.
    pub reason: String,
}

impl fmt::Display for ParamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.arm {
            Some(i) => write!(f, "{}[{}]: {}", self.field, i, self.reason),
            None => write!(f, "{}: {}", self.field, self.reason),
        }
    }
}

impl std::error::Error for ParamError {}

fn param_error(field: &'static str, reason: String) -> ParamError {
    ParamError {
        field,
        arm: None,
        reason,
    }
}

/// `field`'s error `"{text}, got {value}"`: one format for every number out of its range.
pub(super) fn out_of_range(
    field: &'static str,
    text: fmt::Arguments<'_>,
    value: f64,
) -> ParamError {
    param_error(field, format!("{text}, got {}", plain(value)))
}

/// Checks `params` for a model with `arms` targets; the error names the first bad parameter.
pub fn validate(params: &StrategyParams, arms: usize) -> Result<(), ParamError> {
    discount_of(params, arms).map(|_| ())
}

/// Validates and returns the effective discount factor.
fn discount_of(params: &StrategyParams, arms: usize) -> Result<f64, ParamError> {
    if arms == 0 {
        return Err(param_error(
            "arms",
            "a model needs at least one target".into(),
        ));
    }
    super::contextual::validate(params)?;
    if let Algorithm::EpsilonGreedy { epsilon } = params.algorithm {
        if !(0.0..=1.0).contains(&epsilon) {
            return Err(out_of_range(
                "epsilon",
                format_args!("must be within [0, 1]"),
                epsilon,
            ));
        }
    }
    for (field, value) in [
        ("prior.alpha", params.prior.alpha),
        ("prior.beta", params.prior.beta),
    ] {
        if !(value > 0.0 && value <= MAX_PRIOR) {
            return Err(out_of_range(
                field,
                format_args!("must be above 0 and at most {}", plain(MAX_PRIOR)),
                value,
            ));
        }
    }
    let gamma = match params.decay {
        Decay::None => 1.0,
        Decay::Discount { gamma } => {
            if !(gamma > 0.0 && gamma <= 1.0) {
                return Err(out_of_range(
                    "decay.gamma",
                    format_args!("must be within (0, 1]"),
                    gamma,
                ));
            }
            gamma
        }
        Decay::HalfLife { observations } => {
            if !(observations.is_finite() && observations >= 1.0) {
                return Err(out_of_range(
                    "decay.half_life",
                    format_args!("must be a finite number of observations, at least 1"),
                    observations,
                ));
            }
            half_life_to_gamma(observations)
        }
        Decay::HalfLifeSeconds { seconds } => {
            if !(seconds.is_finite() && (1.0..=MAX_HALF_LIFE_SECONDS).contains(&seconds)) {
                return Err(out_of_range(
                    "decay.half_life_seconds",
                    format_args!(
                        "must be a number of seconds from 1 to {}",
                        plain(MAX_HALF_LIFE_SECONDS)
                    ),
                    seconds,
                ));
            }
            1.0
        }
    };
    if !params.min_share.is_empty() {
        if params.min_share.len() != arms {
            return Err(param_error(
                "min_share",
                format!(
                    "must have one share per target ({arms}), got {}",
                    params.min_share.len()
                ),
            ));
        }
        for (i, &share) in params.min_share.iter().enumerate() {
            if !(0.0..1.0).contains(&share) {
                return Err(ParamError {
                    arm: Some(i),
                    ..out_of_range("min_share", format_args!("must be within [0, 1)"), share)
                });
            }
        }
        let total: f64 = params.min_share.iter().sum();
        if total >= 1.0 {
            return Err(out_of_range(
                "min_share",
                format_args!("shares must sum to less than 1"),
                total,
            ));
        }
    }
    check_change(params)?;
    Ok(gamma)
}

fn check_change(params: &StrategyParams) -> Result<(), ParamError> {
    match (params.change, params.algorithm) {
        (None, _) => Ok(()),
        (Some(_), Algorithm::EpsilonGreedy { .. } | Algorithm::LinUcb { .. }) => Err(param_error(
            "change_detection",
            "is available for thompson and ucb1 only".into(),
        )),
        (Some(c), _) => c.validate(),
    }
}

/// The discount factor equivalent to a half-life of `observations`: `0.5^(1/observations)`.
pub fn half_life_to_gamma(observations: f64) -> f64 {
    0.5_f64.powf(1.0 / observations)
}

/// A reward that cannot be accepted. `Display` gives a sentence with the value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RewardError {
    /// NaN or infinite.
    NotFinite(f64),
    /// Finite but outside `[0, 1]`.
    OutOfRange(f64),
}

impl fmt::Display for RewardError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RewardError::NotFinite(r) => {
                write!(
                    f,
                    "reward must be a finite number within [0, 1], got {}",
                    plain(*r)
                )
            }
            RewardError::OutOfRange(r) => {
                write!(f, "reward must be within [0, 1], got {}", plain(*r))
            }
        }
    }
}

impl std::error::Error for RewardError {}

/// Accepts finite rewards in `[0, 1]`, refuses anything else (never clamps).
pub fn check_reward(reward: f64) -> Result<f64, RewardError> {
    if !reward.is_finite() {
        Err(RewardError::NotFinite(reward))
    } else if !(0.0..=1.0).contains(&reward) {
        Err(RewardError::OutOfRange(reward))
    } else {
        Ok(reward)
    }
}

/// Why [`Strategy::update`] changed nothing.
#[derive(Debug, Clone, PartialEq)]
pub enum UpdateError {
    /// The reward was refused.
    Reward(RewardError),
    /// `arm` is not an index of the state's arms.
    UnknownArm { arm: usize, arms: usize },
}

impl fmt::Display for UpdateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UpdateError::Reward(e) => e.fmt(f),
            UpdateError::UnknownArm { arm, arms } => {
                write!(f, "arm {arm} does not exist (the state has {arms} arms)")
            }
        }
    }
}

impl std::error::Error for UpdateError {}

impl From<RewardError> for UpdateError {
    fn from(e: RewardError) -> Self {
        UpdateError::Reward(e)
    }
}

/// A validated, compiled strategy. Immutable; cheap to share.
#[derive(Debug, Clone, PartialEq)]
pub struct Strategy {
    algorithm: Algorithm,
    gamma: f64,
    /// Time decay: the half-life in milliseconds.
    half_life_ms: Option<f64>,
    prior: Prior,
    min_share: Vec<f64>,
    min_share_total: f64,
    pub(super) features: Vec<super::context::Feature>,
    change: Option<Detector>,
    /// [`config_id`](Self::config_id), computed once in [`new`](Self::new) (the strategy is
    /// immutable): every decode of a changed state reconciles against it.
    config_id: u64,
}

impl Strategy {
    /// Validates `params` for a model with `arms` targets (see [`validate`]) and compiles them.
    pub fn new(params: StrategyParams, arms: usize) -> Result<Self, ParamError> {
        let gamma = discount_of(&params, arms)?;
        let min_share_total = params.min_share.iter().sum();
        let half_life_ms = match params.decay {
            Decay::HalfLifeSeconds { seconds } => Some(seconds * 1000.0),
            _ => None,
        };
        let change = params.change.map(Detector::new).transpose()?;
        let mut strategy = Strategy {
            change,
            algorithm: params.algorithm,
            gamma,
            half_life_ms,
            prior: params.prior,
            min_share: params.min_share,
            min_share_total,
            features: params.features,
            config_id: 0,
        };
        strategy.config_id = strategy.compute_config_id();
        Ok(strategy)
    }

    /// Whether arms restart on a change of their rewards.
    pub fn detects_changes(&self) -> bool {
        self.change.is_some()
    }

    /// The change-detection parameters, when configured.
    pub fn change_detection(&self) -> Option<ChangeParams> {
        self.change.map(|d| d.params())
    }

    /// The algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// Effective discount factor applied on each update (1 = no decay).
    pub fn gamma(&self) -> f64 {
        self.gamma
    }

    /// The prior every fresh arm starts at.
    pub fn prior(&self) -> Prior {
        self.prior
    }

    /// Whether statistics decay per update (`gamma`, `half_life`): such decay does not compose
    /// across replicas that add their statistics.
    pub fn decays_per_update(&self) -> bool {
        self.gamma < 1.0
    }

    /// The time half-life in ms, when statistics decay by time.
    pub fn half_life_ms(&self) -> Option<f64> {
        self.half_life_ms
    }

    /// The weight left after `elapsed_ms` of time decay (1 without it).
    pub fn time_factor(&self, elapsed_ms: u64) -> f64 {
        match self.half_life_ms {
            Some(h) if elapsed_ms > 0 => 0.5_f64.powf(elapsed_ms as f64 / h),
            _ => 1.0,
        }
    }

    /// Brings the time-decayed statistics of `state` (this Envoy's own) to `now_ms`: everything
    /// above the prior weighs `0.5^(elapsed / half-life)`. A no-op without time decay, and when
    /// the clock reads earlier than the state (the older time is kept).
    pub fn decay_to(&self, state: &mut ModelState, now_ms: u64) {
        if self.half_life_ms.is_none() {
            return;
        }
        let ext = state.ext.get_or_insert(StateExt {
            as_of_ms: now_ms,
            fleet: None,
            linear: None,
        });
        if ext.as_of_ms == 0 {
            ext.as_of_ms = now_ms;
        }
        let factor = self.time_factor(now_ms.saturating_sub(ext.as_of_ms));
        ext.as_of_ms = ext.as_of_ms.max(now_ms);
        self.discount(state, factor);
    }

    /// Multiplies everything learned (what is above the prior) by `factor` (< 1 to decay).
    fn discount(&self, state: &mut ModelState, factor: f64) {
        if factor >= 1.0 {
            return;
        }
        let prior = self.prior;
        for a in &mut state.arms {
            a.pulls *= factor;
            a.reward_sum *= factor;
            a.alpha = prior.alpha + factor * (a.alpha - prior.alpha);
            a.beta = prior.beta + factor * (a.beta - prior.beta);
        }
    }

    /// The statistics routing uses: this Envoy's own plus the fleet's, both decayed to the later
    /// of their two times (no clock read: the view changes only when the state does), and the
    /// fleet's updates added to the count. Arms are matched by name; fleet sums for targets
    /// this configuration does not have are ignored. Without a fleet part, a copy.
    pub fn view(&self, state: &ModelState) -> ModelState {
        let mut view = state.clone();
        let Some(fleet) = state.fleet() else {
            return view;
        };
        let own_as_of = state.as_of_ms();
        let at = own_as_of.max(fleet.as_of_ms);
        if own_as_of > 0 {
            self.decay_to(&mut view, at);
        }
        let factor = self.time_factor(at.saturating_sub(fleet.as_of_ms));
        for arm in &mut view.arms {
            if let Some(sums) = fleet.arms.iter().find(|s| s.name == arm.name) {
                arm.absorb(sums, factor);
            }
        }
        view.updates = view.updates.saturating_add(fleet.updates);
        view
    }

    /// Minimum shares per arm (empty when none were configured).
    pub fn min_share(&self) -> &[f64] {
        &self.min_share
    }

    /// Identity of the parameters that give stored statistics their meaning, to be stored as
    /// [`ModelState::config_id`]. Only the prior counts: it is folded into every arm's
    /// `alpha`/`beta`, so a state made under another prior must be reset. The algorithm,
    /// `epsilon`, the decay and the minimum shares only change how the same statistics are used,
    /// so changing them keeps what was learned; targets are reconciled by name.
    ///
    /// Stable across builds, platforms and VMs: FNV-1a 64 of a tag and the prior's IEEE bits.
    pub fn config_id(&self) -> u64 {
        self.config_id
    }

    /// [`config_id`](Self::config_id) from the fields it depends on.
    fn compute_config_id(&self) -> u64 {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        let bytes = b"inference-router/bandit/v1"
            .iter()
            .copied()
            .chain(self.prior.alpha.to_bits().to_le_bytes())
            .chain(self.prior.beta.to_bits().to_le_bytes())
            .chain(super::contextual::identity(self));
        for byte in bytes {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
        hash
    }

    /// A fresh state for `target_names` (in configuration order), tagged with
    /// [`config_id`](Self::config_id).
    pub fn initial_state(&self, target_names: &[&str]) -> ModelState {
        ModelState::new(target_names, self.config_id(), self.prior)
    }

    /// [`reconcile`] with this strategy's config id and prior.
    pub fn reconcile(&self, state: ModelState, target_names: &[&str]) -> (ModelState, Reconciled) {
        reconcile(state, target_names, self.config_id(), self.prior)
    }

    /// Chooses an arm: an index into `state.arms`.
    ///
    /// Valid for any state, including one with no pulls at all. Reads only `state` and draws
    /// from `rng`; no allocation. A state with no arms (which [`decode`](super::decode) and
    /// [`reconcile`] never produce) yields 0, which the caller must treat as out of range like
    /// any index it looks up with `get`.
    pub fn select(&self, state: &ModelState, rng: &mut Rng) -> usize {
        self.select_in(state, None, rng)
    }

    /// [`select`](Self::select) for a request with `context` (used by `LinUcb` only; `None`
    /// scores the bias alone).
    pub fn select_in(
        &self,
        state: &ModelState,
        context: Option<&super::context::Context>,
        rng: &mut Rng,
    ) -> usize {
        let arms = &state.arms;
        if arms.is_empty() {
            return 0;
        }
        if self.min_share_total > 0.0 {
            let u = rng.next_f64();
            if u < self.min_share_total {
                let mut cumulative = 0.0;
                for (i, share) in self.min_share.iter().take(arms.len()).enumerate() {
                    cumulative += share;
                    if u < cumulative {
                        return i;
                    }
                }
                // Only reachable when the state has fewer arms than shares: fall through.
            }
        }
        match self.algorithm {
            Algorithm::EpsilonGreedy { epsilon } => {
                if let Some(i) = unplayed(arms, rng) {
                    return i;
                }
                if rng.next_f64() < epsilon {
                    return usize::try_from(rng.below(arms.len() as u64)).unwrap_or(0);
                }
                argmax(arms, rng, |a, _| a.mean().unwrap_or(0.0))
            }
            Algorithm::Thompson => argmax(arms, rng, |a, rng| sample::beta(rng, a.alpha, a.beta)),
            Algorithm::LinUcb { alpha, .. } => self.linucb_pick(state, context, alpha, rng),
            Algorithm::Ucb1 => {
                if let Some(i) = unplayed(arms, rng) {
                    return i;
                }
                let total: f64 = arms.iter().map(|a| a.pulls).sum();
                argmax(arms, rng, |a, _| ucb1_index(a, total))
            }
        }
    }

    /// Folds `reward` for `arm` into `state`: applies decay to every arm, then adds the
    /// observation to `arm` and increments `state.updates` by one.
    ///
    /// On error (reward not a finite number in `[0, 1]`, or `arm` out of range) `state` is left
    /// exactly as it was.
    pub fn update(
        &self,
        state: &mut ModelState,
        arm: usize,
        reward: f64,
    ) -> Result<(), UpdateError> {
        self.update_in(state, arm, None, reward)
    }

    /// [`update`](Self::update) of the decision made for `context`: `LinUcb` also folds the
    /// reward into the arm's regression (without a context, only the context-free counts).
    pub fn update_in(
        &self,
        state: &mut ModelState,
        arm: usize,
        context: Option<&super::context::Context>,
        reward: f64,
    ) -> Result<(), UpdateError> {
        let reward = check_reward(reward)?;
        let arms = state.arms.len();
        if arm >= arms {
            return Err(UpdateError::UnknownArm { arm, arms });
        }
        self.discount(state, self.gamma);
        self.linucb_learn(state, arm, context, reward);
        if let Some(a) = state.arms.get_mut(arm) {
            a.pulls += 1.0;
            a.reward_sum += reward;
            a.alpha += reward;
            a.beta += 1.0 - reward;
        }
        state.updates = state.updates.saturating_add(1);
        Ok(())
    }

    /// [`update_in`](Self::update_in), then change detection (when configured): on an alarm
    /// the arm's statistics restart at the prior, and the alarm is returned for the host to
    /// count and log.
    pub fn update_watched(
        &self,
        state: &mut ModelState,
        arm: usize,
        context: Option<&super::context::Context>,
        reward: f64,
    ) -> Result<Option<Alarm>, UpdateError> {
        self.update_in(state, arm, context, reward)?;
        match &self.change {
            Some(d) => Ok(super::change::watch(d, state, arm, reward, self.prior)),
            None => {
                // Detection was turned off: its detectors go (and the state is compact again).
                state.change = None;
                Ok(None)
            }
        }
    }
}

/// The UCB1 index `mean + sqrt(2 ln N / n)` of `arm`, with `n = arm.pulls` and `N = total_pulls`
/// (`ln` of at least 1, so the bonus is never NaN). `+inf` for an arm without pulls.
pub fn ucb1_index(arm: &ArmState, total_pulls: f64) -> f64 {
    match arm.mean() {
        None => f64::INFINITY,
        Some(mean) => {
            let bonus = (2.0 * total_pulls.max(1.0).ln() / arm.pulls).sqrt();
            if bonus.is_nan() {
                f64::INFINITY
            } else {
                mean + bonus
            }
        }
    }
}

/// A uniformly random arm among those never pulled, if any.
fn unplayed(arms: &[ArmState], rng: &mut Rng) -> Option<usize> {
    let mut chosen = None;
    let mut seen = 0u64;
    for (i, arm) in arms.iter().enumerate() {
        if arm.pulls <= 0.0 {
            seen += 1;
            // Reservoir sampling: keep the i-th candidate with probability 1/seen.
            if rng.below(seen) == 0 {
                chosen = Some(i);
            }
        }
    }
    chosen
}

/// Index of the arm with the highest `score`, ties broken uniformly at random; a NaN score never
/// wins; 0 if empty. `score` gets the same `rng` (Thompson draws from it) without allocating.
pub(super) fn argmax(
    arms: &[ArmState],
    rng: &mut Rng,
    mut score: impl FnMut(&ArmState, &mut Rng) -> f64,
) -> usize {
    let mut best = 0;
    let mut best_value = f64::NEG_INFINITY;
    let mut ties = 0u64;
    for (i, arm) in arms.iter().enumerate() {
        let v = score(arm, rng);
        if v.is_nan() {
            continue;
        }
        if ties == 0 || v > best_value {
            best = i;
            best_value = v;
            ties = 1;
        } else if v == best_value {
            ties += 1;
            if rng.below(ties) == 0 {
                best = i;
            }
        }
    }
    best
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

    const NAMES: [&str; 3] = ["a", "b", "c"];

    fn strategy(algorithm: Algorithm) -> Strategy {
        Strategy::new(StrategyParams::new(algorithm), 3).unwrap()
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    fn counts(s: &Strategy, state: &ModelState, draws: usize, seed: u64) -> Vec<usize> {
        let mut rng = Rng::seed_from_u64(seed);
        let mut c = vec![0; state.arms.len()];
        for _ in 0..draws {
            c[s.select(state, &mut rng)] += 1;
        }
        c
    }

    #[test]
    fn thompson_fractional_update_hand_computed() {
        let s = strategy(Algorithm::Thompson);
        let mut st = s.initial_state(&NAMES);
        for r in [1.0, 0.0, 0.3] {
            s.update(&mut st, 0, r).unwrap();
        }
        let a = &st.arms[0];
        // alpha = 1 + 1 + 0 + 0.3; beta = 1 + 0 + 1 + 0.7
        assert!(close(a.alpha, 2.3), "{}", a.alpha);
        assert!(close(a.beta, 2.7), "{}", a.beta);
        assert!(close(a.pulls, 3.0));
        assert!(close(a.reward_sum, 1.3));
        assert_eq!(st.updates, 3);
        assert_eq!(st.arms[1], ArmState::fresh("b", Prior::default()));
    }

    #[test]
    fn custom_prior() {
        let mut p = StrategyParams::new(Algorithm::Thompson);
        p.prior = Prior {
            alpha: 2.0,
            beta: 8.0,
        };
        let s = Strategy::new(p, 2).unwrap();
        let mut st = s.initial_state(&["x", "y"]);
        assert_eq!((st.arms[1].alpha, st.arms[1].beta), (2.0, 8.0));
        s.update(&mut st, 1, 0.5).unwrap();
        assert!(close(st.arms[1].alpha, 2.5) && close(st.arms[1].beta, 8.5));
        assert_ne!(s.config_id(), strategy(Algorithm::Thompson).config_id());
    }

    #[test]
    fn thompson_prefers_the_better_posterior() {
        let s = strategy(Algorithm::Thompson);
        let mut st = s.initial_state(&NAMES);
        // a ~ Beta(91, 11) (mean .89), b ~ Beta(11, 91), c ~ Beta(51, 51).
        st.arms[0].alpha = 91.0;
        st.arms[0].beta = 11.0;
        st.arms[1].alpha = 11.0;
        st.arms[1].beta = 91.0;
        st.arms[2].alpha = 51.0;
        st.arms[2].beta = 51.0;
        let c = counts(&s, &st, 10_000, 5);
        assert!(c[0] > 9_950, "{c:?}");
        // Fresh state: uniform-ish.
        let c = counts(&s, &s.initial_state(&NAMES), 30_000, 6);
        assert!(c.iter().all(|&n| (9_000..11_000).contains(&n)), "{c:?}");
    }

    /// `n` requests of Thompson sampling on `good` (succeeds 90 %) and `poor` (60 %), from the
    /// uniform prior, `good`'s first `forced` answers failing: how many went to `poor`.
    fn poor_pulls(s: &Strategy, rng: &mut Rng, n: usize, forced: usize) -> usize {
        let mut st = s.initial_state(&["good", "poor"]);
        let (mut poor, mut good) = (0, 0);
        for _ in 0..n {
            let arm = s.select(&st, rng);
            let success = rng.next_f64() < [0.9, 0.6][arm];
            let failed = arm == 0 && good < forced;
            good += usize::from(arm == 0);
            poor += arm;
            s.update(&mut st, arm, f64::from(u8::from(success && !failed)))
                .unwrap();
        }
        assert_eq!(st.updates, n as u64, "every reward is in the state");
        poor
    }

    /// An unlucky start can hold Thompson sampling on the worse arm for hundreds of requests,
    /// every reward applied. After `good` failed its first four answers, its posterior
    /// Beta(1, 5) beats `poor`'s (about 0.6) with probability 0.4^5 = 1 %: it is seldom tried
    /// again, and about one run in five sends `poor` over 300 of 333 requests. Unforced, a
    /// start that unlucky is rare: about 2.5 runs of 333 requests in 100,000 go over 300
    /// (as one learner of the e2e regret test once did in CI: 339 pulls for its run).
    #[test]
    fn thompson_can_stay_on_the_worse_arm_after_an_unlucky_start() {
        let s = Strategy::new(StrategyParams::new(Algorithm::Thompson), 2).unwrap();
        let mut rng = Rng::seed_from_u64(1);
        let unlucky: Vec<usize> = (0..100).map(|_| poor_pulls(&s, &mut rng, 333, 4)).collect();
        let stuck = unlucky.iter().filter(|&&p| p > 300).count();
        assert!((8..=40).contains(&stuck), "{stuck} of 100: {unlucky:?}");
        let usual: Vec<usize> = (0..100).map(|_| poor_pulls(&s, &mut rng, 333, 0)).collect();
        let mean = usual.iter().sum::<usize>() as f64 / 100.0;
        assert!(mean < 20.0 && usual.iter().all(|&p| p < 300), "{usual:?}");
    }

    #[test]
    fn ucb1_index_hand_computed() {
        // pulls (10, 5, 1), sums (6, 4, 0): N = 16, ln 16 = 2.772588722239781.
        let mk = |pulls: f64, sum: f64| ArmState {
            name: "x".into(),
            pulls,
            reward_sum: sum,
            alpha: 1.0 + sum,
            beta: 1.0 + pulls - sum,
        };
        let ln16 = 16f64.ln();
        let i0 = ucb1_index(&mk(10.0, 6.0), 16.0);
        let i1 = ucb1_index(&mk(5.0, 4.0), 16.0);
        let i2 = ucb1_index(&mk(1.0, 0.0), 16.0);
        assert!(close(i0, 0.6 + (2.0 * ln16 / 10.0).sqrt())); // 0.6 + 0.744659 = 1.344659
        assert!(close(i1, 0.8 + (2.0 * ln16 / 5.0).sqrt())); // 0.8 + 1.053108 = 1.853108
        assert!(close(i2, 0.0 + (2.0 * ln16).sqrt())); // 2.354820
        assert!((i0 - 1.344_659).abs() < 1e-6 && (i1 - 1.853_108).abs() < 1e-6);
        assert!((i2 - 2.354_820).abs() < 1e-6);
        assert_eq!(ucb1_index(&mk(0.0, 0.0), 16.0), f64::INFINITY);

        let s = strategy(Algorithm::Ucb1);
        let mut st = s.initial_state(&NAMES);
        for (arm, (p, r)) in st
            .arms
            .iter_mut()
            .zip([(10.0, 6.0), (5.0, 4.0), (1.0, 0.0)])
        {
            *arm = ArmState {
                name: arm.name.clone(),
                ..mk(p, r)
            };
        }
        // Deterministic: c has the highest index.
        assert_eq!(counts(&s, &st, 100, 1), [0, 0, 100]);
        // Give c more pulls at 0 reward: (10, 5, 10) pulls, N = 25;
        // a: .6 + sqrt(2 ln25/10) = 1.4024, b: .8 + sqrt(2 ln25/5) = 1.9347, c: 0 + .8024.
        st.arms[2].pulls = 10.0;
        assert_eq!(counts(&s, &st, 100, 1), [0, 100, 0]);
    }

    #[test]
    fn ucb1_and_greedy_play_every_arm_first() {
        for algorithm in [Algorithm::Ucb1, Algorithm::EpsilonGreedy { epsilon: 0.0 }] {
            let s = strategy(algorithm);
            let mut st = s.initial_state(&NAMES);
            let mut rng = Rng::seed_from_u64(9);
            let mut seen = [false; 3];
            for _ in 0..3 {
                let arm = s.select(&st, &mut rng);
                assert!(!seen[arm], "{algorithm:?} replayed {arm} before trying all");
                seen[arm] = true;
                s.update(&mut st, arm, 0.0).unwrap();
            }
            // Among several unplayed arms the first pick is uniform.
            let c = counts(&s, &s.initial_state(&NAMES), 30_000, 10);
            assert!(c.iter().all(|&n| (9_000..11_000).contains(&n)), "{c:?}");
        }
    }

    #[test]
    fn epsilon_greedy_greedy_choice_and_exploration_rate() {
        let mut st = strategy(Algorithm::Thompson).initial_state(&NAMES);
        // means .5, .75, .25
        for (arm, (p, r)) in st.arms.iter_mut().zip([(4.0, 2.0), (4.0, 3.0), (4.0, 1.0)]) {
            arm.pulls = p;
            arm.reward_sum = r;
        }
        let greedy = strategy(Algorithm::EpsilonGreedy { epsilon: 0.0 });
        assert_eq!(counts(&greedy, &st, 1000, 2), [0, 1000, 0]);

        // epsilon .2: P(b) = .8 + .2/3 = .8667, P(a) = P(c) = .0667.
        let eg = strategy(Algorithm::EpsilonGreedy { epsilon: 0.2 });
        let c = counts(&eg, &st, 60_000, 3);
        let frac: Vec<f64> = c.iter().map(|&n| n as f64 / 60_000.0).collect();
        assert!((frac[1] - 0.8667).abs() < 0.01, "{frac:?}");
        assert!((frac[0] - 0.0667).abs() < 0.006, "{frac:?}");
        assert!((frac[2] - 0.0667).abs() < 0.006, "{frac:?}");

        // Ties between equal means are split evenly.
        st.arms[0].reward_sum = 3.0;
        let c = counts(&greedy, &st, 20_000, 4);
        assert_eq!(c[2], 0);
        assert!((9_000..11_000).contains(&c[0]), "{c:?}");
    }

    #[test]
    fn discount_hand_computed() {
        let mut p = StrategyParams::new(Algorithm::Thompson);
        p.decay = Decay::Discount { gamma: 0.5 };
        let s = Strategy::new(p, 2).unwrap();
        let mut st = s.initial_state(&["x", "y"]);
        s.update(&mut st, 0, 1.0).unwrap();
        // x: pulls 1, sum 1, alpha 2, beta 1.
        s.update(&mut st, 1, 0.4).unwrap();
        // x decays: pulls .5, sum .5, alpha 1 + .5*(2-1) = 1.5, beta 1 + .5*0 = 1.
        // y: pulls 1, sum .4, alpha 1.4, beta 1.6.
        s.update(&mut st, 0, 0.0).unwrap();
        // x: pulls .25 + 1 = 1.25, sum .25, alpha 1 + .5*.5 + 0 = 1.25, beta 1 + 0 + 1 = 2.
        // y: pulls .5, sum .2, alpha 1 + .5*.4 = 1.2, beta 1 + .5*.6 = 1.3.
        let (x, y) = (&st.arms[0], &st.arms[1]);
        assert!(close(x.pulls, 1.25) && close(x.reward_sum, 0.25));
        assert!(close(x.alpha, 1.25) && close(x.beta, 2.0));
        assert!(close(y.pulls, 0.5) && close(y.reward_sum, 0.2));
        assert!(close(y.alpha, 1.2) && close(y.beta, 1.3));
        assert_eq!(st.updates, 3, "updates are counted, never decayed");
    }

    #[test]
    fn half_life_converts_and_halves() {
        assert!(close(half_life_to_gamma(1.0), 0.5));
        assert!(close(half_life_to_gamma(2.0), 0.5f64.sqrt()));
        let mut p = StrategyParams::new(Algorithm::Ucb1);
        p.decay = Decay::HalfLife { observations: 10.0 };
        let s = Strategy::new(p, 2).unwrap();
        assert!(close(s.gamma().powi(10), 0.5));
        let mut st = s.initial_state(&["x", "y"]);
        s.update(&mut st, 0, 1.0).unwrap();
        for _ in 0..10 {
            s.update(&mut st, 1, 1.0).unwrap();
        }
        // The single observation of x now weighs one half.
        assert!(close(st.arms[0].pulls, 0.5) && close(st.arms[0].reward_sum, 0.5));
        assert!(close(st.arms[0].alpha, 1.5) && close(st.arms[0].beta, 1.0));
        // y: sum of gamma^k, k = 0..9 = (1 - .5) / (1 - gamma).
        let expected = 0.5 / (1.0 - s.gamma());
        assert!((st.arms[1].pulls - expected).abs() < 1e-9);
    }

    #[test]
    fn min_share_floor_is_honoured() {
        let mut p = StrategyParams::new(Algorithm::EpsilonGreedy { epsilon: 0.0 });
        p.min_share = vec![0.0, 0.05, 0.15];
        let s = Strategy::new(p, 3).unwrap();
        let mut st = s.initial_state(&NAMES);
        for (arm, sum) in st.arms.iter_mut().zip([9.0, 1.0, 0.0]) {
            arm.pulls = 10.0;
            arm.reward_sum = sum;
        }
        // Greedy always wants a; the floors give b 5% and c 15%.
        let c = counts(&s, &st, 100_000, 11);
        let frac: Vec<f64> = c.iter().map(|&n| n as f64 / 100_000.0).collect();
        assert!((frac[0] - 0.80).abs() < 0.006, "{frac:?}");
        assert!((frac[1] - 0.05).abs() < 0.004, "{frac:?}");
        assert!((frac[2] - 0.15).abs() < 0.006, "{frac:?}");
    }

    #[test]
    fn rewards_are_validated_not_clamped() {
        let s = strategy(Algorithm::Thompson);
        let mut st = s.initial_state(&NAMES);
        let before = st.clone();
        for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            assert_eq!(
                s.update(&mut st, 0, bad)
                    .map_err(|e| matches!(e, UpdateError::Reward(RewardError::NotFinite(_)))),
                Err(true)
            );
        }
        for bad in [-0.0001, 1.0001, -1.0, 2.0] {
            assert_eq!(
                s.update(&mut st, 0, bad),
                Err(UpdateError::Reward(RewardError::OutOfRange(bad)))
            );
        }
        assert_eq!(
            s.update(&mut st, 3, 0.5),
            Err(UpdateError::UnknownArm { arm: 3, arms: 3 })
        );
        assert_eq!(st, before, "a refused update changes nothing");
        assert_eq!(
            RewardError::OutOfRange(1.5).to_string(),
            "reward must be within [0, 1], got 1.5"
        );
        s.update(&mut st, 2, 0.0).unwrap();
        s.update(&mut st, 2, 1.0).unwrap();
        assert_eq!(st.updates, 2);
    }

    #[test]
    fn parameter_errors_name_the_parameter() {
        let cases: Vec<(StrategyParams, usize, &str)> = vec![
            (
                StrategyParams::new(Algorithm::EpsilonGreedy { epsilon: 1.5 }),
                2,
                "epsilon: must be within [0, 1], got 1.5",
            ),
            (
                StrategyParams::new(Algorithm::EpsilonGreedy { epsilon: f64::NAN }),
                2,
                "epsilon: must be within [0, 1], got NaN",
            ),
            (
                StrategyParams {
                    prior: Prior {
                        alpha: 0.0,
                        beta: 1.0,
                    },
                    ..StrategyParams::new(Algorithm::Thompson)
                },
                2,
                "prior.alpha: must be above 0 and at most 1000000, got 0",
            ),
            (
                StrategyParams {
                    prior: Prior {
                        alpha: 1.0,
                        beta: f64::INFINITY,
                    },
                    ..StrategyParams::new(Algorithm::Thompson)
                },
                2,
                "prior.beta: must be above 0 and at most 1000000, got inf",
            ),
            (
                StrategyParams {
                    decay: Decay::Discount { gamma: 0.0 },
                    ..StrategyParams::new(Algorithm::Ucb1)
                },
                2,
                "decay.gamma: must be within (0, 1], got 0",
            ),
            (
                StrategyParams {
                    decay: Decay::HalfLife { observations: 0.5 },
                    ..StrategyParams::new(Algorithm::Ucb1)
                },
                2,
                "decay.half_life: must be a finite number of observations, at least 1, got 0.5",
            ),
            (
                StrategyParams {
                    min_share: vec![0.1],
                    ..StrategyParams::new(Algorithm::Thompson)
                },
                2,
                "min_share: must have one share per target (2), got 1",
            ),
            (
                StrategyParams {
                    min_share: vec![0.1, 1.0],
                    ..StrategyParams::new(Algorithm::Thompson)
                },
                2,
                "min_share[1]: must be within [0, 1), got 1",
            ),
            (
                StrategyParams {
                    min_share: vec![0.6, 0.4],
                    ..StrategyParams::new(Algorithm::Thompson)
                },
                2,
                "min_share: shares must sum to less than 1, got 1",
            ),
            (
                StrategyParams::new(Algorithm::Thompson),
                0,
                "arms: a model needs at least one target",
            ),
        ];
        for (params, arms, message) in cases {
            let err = validate(&params, arms).unwrap_err();
            assert_eq!(err.to_string(), message);
            assert_eq!(
                Strategy::new(params, arms).unwrap_err().to_string(),
                message
            );
        }
        let ok = StrategyParams {
            decay: Decay::Discount { gamma: 1.0 },
            min_share: vec![0.0, 0.99],
            ..StrategyParams::new(Algorithm::EpsilonGreedy { epsilon: 1.0 })
        };
        assert!(validate(&ok, 2).is_ok());
    }

    #[test]
    fn config_id_depends_on_prior_only() {
        let base = strategy(Algorithm::Thompson).config_id();
        assert_eq!(strategy(Algorithm::Ucb1).config_id(), base);
        let decayed = Strategy::new(
            StrategyParams {
                decay: Decay::HalfLife { observations: 5.0 },
                ..StrategyParams::new(Algorithm::Thompson)
            },
            3,
        )
        .unwrap();
        assert_eq!(decayed.config_id(), base);
        // Pinned: the id is stored in shared data, so it must not change between builds.
        assert_eq!(base, strategy(Algorithm::Thompson).config_id());
        assert_eq!(format!("{base:016x}").len(), 16);
    }

    #[test]
    fn select_is_total_on_odd_states() {
        let mut rng = Rng::seed_from_u64(12);
        let empty = ModelState {
            version: 1,
            config_id: 0,
            updates: 0,
            arms: vec![],
            ext: None,
            change: None,
        };
        let mut p = StrategyParams::new(Algorithm::Ucb1);
        p.min_share = vec![0.3, 0.3, 0.3];
        let floors = Strategy::new(p, 3).unwrap();
        for s in [
            strategy(Algorithm::Thompson),
            strategy(Algorithm::Ucb1),
            strategy(Algorithm::EpsilonGreedy { epsilon: 0.5 }),
            floors,
        ] {
            assert_eq!(s.select(&empty, &mut rng), 0);
            // Fewer arms than min_share entries, tiny and huge counts.
            let mut st = s.initial_state(&["only"]);
            for _ in 0..100 {
                assert_eq!(s.select(&st, &mut rng), 0);
            }
            st = s.initial_state(&NAMES);
            st.arms[0].pulls = 5e-324;
            st.arms[1].pulls = 1e300;
            st.arms[1].reward_sum = 1e300;
            st.arms[2].pulls = 1.0;
            st.arms[2].alpha = 1e-300;
            for _ in 0..100 {
                assert!(s.select(&st, &mut rng) < 3);
            }
        }
    }
}
