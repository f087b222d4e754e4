//! Multi-armed bandit routing: the pure decision and learning core.
//!
//! Nothing here calls the proxy: the host adapter owns the shared-data handle, the RNG seed and
//! the clock, and passes them in. Every function is total: malformed input (bad parameters,
//! rewards outside `[0, 1]`, unknown arms, undecodable bytes, host errors) comes back as an
//! error value, never a trap.
//!
//! | module | what |
//! |---|---|
//! | [`strategy`] | [`StrategyParams`] → [`validate`] / [`Strategy::new`]; [`Strategy::select`] and [`Strategy::update`] for epsilon-greedy, Thompson sampling and UCB1, with optional decay, prior and minimum shares |
//! | [`change`] | [`ChangeParams`], a per-arm Bernoulli CUSUM ([`Watch`]) that restarts an arm whose rewards shift ([`Strategy::update_watched`] returns the [`Alarm`]) |
//! | [`state`] | [`ModelState`] / [`ArmState`], [`encode`] / [`decode`] (MessagePack), [`reconcile`] with the configured targets, [`StateCache`] |
//! | [`store`] | the [`SharedStore`] trait, [`seed`], the bounded CAS loop [`cas_update`] (any [`Codec`]) and its bandit form [`update_state`], and [`MemoryStore`] for tests |
//! | [`sample`] | normal, Gamma (Marsaglia–Tsang) and Beta variates from [`Rng`](crate::rng::Rng) |
//! | [`context`] | [`Feature`]s of a request and its quantised [`Context`] (a decision carries it to its reward) |
//! | [`linear`] | LinUCB's per-arm ridge regression ([`LinearArm`]: sums `A`, `b`, a checked Cholesky solve) |
//! | `contextual` | the `LinUcb` algorithm in [`Strategy`]: [`Strategy::select_in`], [`Strategy::update_in`] |
//!
//! # How the host uses it
//! ```text
//! on_configure (once per model):
//!     strategy = Strategy::new(params, targets.len())?        // error: "epsilon: must be ..."
//!     names    = target names, in configuration order
//!     initial  = strategy.initial_state(&names)
//!     seed(&store, key, &initial)                              // writes only if the key is absent
//!     cache    = StateCache::new()
//!
//! request (or on_tick):
//!     (bytes, cas) = store.get(key)
//!     cache.refresh(bytes.as_deref(), cas, &strategy, || names) // decodes only if cas changed
//!     arm = strategy.select(cache.state(), &mut rng)           // index into names
//!
//! reward (root context, e.g. after the response):
//!     update_state(&store, key, 8, &initial, |state| {
//!         let (mut state, _how) = strategy.reconcile(state, &names);
//!         strategy.update(&mut state, arm_index_of(&state, target), reward)?;
//!         Ok(state)
//!     })
//! ```
//! Look the rewarded target up by name in the state the closure receives
//! ([`ModelState::arm_index`]): arm indices follow the configuration that reconciled the state.
//!
//! Outcomes of [`seed`] and [`update_state`] (seeding race, contention, undecodable bytes) are
//! documented in [`store`]. Which parameters force a reset of learned statistics is documented
//! at [`Strategy::config_id`].

pub mod change;
mod codec;
pub mod context;
mod contextual;
pub mod linear;
pub mod sample;
pub mod state;
pub mod store;
pub mod strategy;

pub use change::{Alarm, ChangeParams, ChangeState, Direction, Watch};
pub use context::{Context, Facts, Feature};
pub use linear::{LinearArm, LinearPart};
pub use state::{
    decode, encode, reconcile, ArmState, ArmSums, DecodeError, FleetPart, ModelState, Reconciled,
    Refresh, ResetReason, StateCache, StateExt, STATE_VERSION,
};
pub use store::{
    cas_edit, cas_edit_with, cas_update, seed, update_state, Bytes, CasOutcome, Change, Codec,
    Edit, MemoryStore, SeedOutcome, SharedStore, StateCodec, StoreError, UpdateFailure,
    UpdateOutcome,
};
pub use strategy::{
    check_reward, half_life_to_gamma, ucb1_index, validate, Algorithm, Decay, ParamError, Prior,
    RewardError, Strategy, StrategyParams, UpdateError,
};
