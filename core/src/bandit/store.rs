//! Shared state between VMs: the [`SharedStore`] trait (proxy-wasm shared data as the core sees
//! it), [`seed`], the crate's one bounded CAS read-modify-write loop [`cas_update`] (generic over
//! the stored value through a [`Codec`]; bandit state, spent decision ids and target health all
//! use it), its bandit-state form [`update_state`], and [`MemoryStore`], an in-memory store with
//! injectable faults for tests.
//!
//! # Host semantics modelled here
//! * `get` returns the value and its CAS token; a missing key is `(None, None)`.
//! * `set` with `Some(cas)` fails with [`StoreError::CasMismatch`] when the key exists and its
//!   token is no longer `cas`; with `None` (or `Some(0)`) it writes unconditionally.
//! * **A `set` on a missing key ignores the CAS and inserts unconditionally.** So CAS cannot
//!   protect the first write of a key: two writers that both saw "missing" would both write, and
//!   the second would erase the first's update.
//!
//! # Seeding, and the residual race
//! Call [`seed`] for every model key when the VM starts (`on_vm_start`/`on_configure`, not in
//! `_initialize` where host calls are refused). It writes the initial state only if the key is
//! absent. Two VMs seeding at the same moment can both see "absent" and both write; they write
//! the same fresh state, so that is harmless. The one residual hazard: a seed that saw "absent"
//! lands after another VM has already seeded *and* accepted a reward into the key, erasing that
//! reward. That needs a reward to be fully processed inside the few microseconds between another
//! VM's `get` and `set` at the very first start (shared data survives VM reloads, so later
//! starts find the key present); at most the rewards of that window are lost, never the key's
//! consistency.
//!
//! [`update_state`] does not trust CAS for a first write either: on a missing key it seeds the
//! initial state (same residual race) and retries, so the update itself is always a CAS write
//! over an existing key.
//!
//! # Outcomes of [`update_state`]
//! * `Ok(UpdateOutcome)`: the new state is stored. `attempts` is the number of CAS writes tried
//!   (1 = no contention, `retries() = attempts - 1`); `seeded` says the key was missing and was
//!   seeded first; `discarded` carries the [`DecodeError`] when the stored bytes were undecodable.
//! * Undecodable bytes (garbage, another format version, NaN): the closure receives a copy of
//!   `initial` instead, and the result is written with the CAS token of the bad bytes (so a
//!   concurrent repair is not overwritten). Learning restarts from the prior; the host should
//!   log `discarded` at warn level.
//! * `Err(UpdateFailure::Contention { attempts })`: every one of `max_attempts` CAS writes lost
//!   to another writer. Nothing of this update was written; the reward is dropped (the host
//!   should count it in a metric). `max_attempts == 0` returns this at once with 0 attempts.
//! * `Err(UpdateFailure::Store { .. })`: the host refused a `get` or `set` with anything but a
//!   CAS mismatch; nothing further is tried.
//! * `Err(UpdateFailure::Rejected(e))`: the closure refused (e.g. a bad reward); nothing written.
//!
//! Each round reads, decodes, applies the closure and encodes, so the closure may run several
//! times; it must be a pure function of the state it is given (plus captured inputs).

use core::fmt;
use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};

use super::state::{decode, encode, DecodeError, ModelState};

/// Why the store refused an operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// The CAS token given to `set` is stale: another writer got there first.
    CasMismatch,
    /// Any other host failure, described for the log.
    Host(String),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::CasMismatch => f.write_str("shared data CAS mismatch"),
            StoreError::Host(why) => write!(f, "shared data host error: {why}"),
        }
    }
}

impl std::error::Error for StoreError {}

/// Proxy-wasm shared data as the core sees it. The host adapter implements it with
/// `proxy_wasm::hostcalls::{get_shared_data, set_shared_data}` (the `Result` forms; map
/// `Status::CasMismatch` to [`StoreError::CasMismatch`], anything else to
/// [`StoreError::Host`]).
pub trait SharedStore {
    /// The value of `key` and its CAS token; `(None, None)` when the key does not exist.
    fn get(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), StoreError>;
    /// Writes `value`; with `cas`, only if the key's token is still `cas` (but see the module
    /// docs: a missing key is inserted whatever `cas` says).
    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError>;
}

/// What [`seed`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeedOutcome {
    /// The key was absent and `initial` was written.
    Seeded,
    /// The key already existed (another VM seeded it, or shared data survived a VM reload);
    /// nothing was written.
    AlreadyPresent,
}

/// Writes `initial` under `key` only if the key is absent. Call it at VM start; see the module
/// docs for the residual race (two VMs seeding at once both write the same fresh state).
pub fn seed<S: SharedStore + ?Sized>(
    store: &S,
    key: &str,
    initial: &ModelState,
) -> Result<SeedOutcome, StoreError> {
    let (bytes, _) = store.get(key)?;
    if bytes.is_some() {
        return Ok(SeedOutcome::AlreadyPresent);
    }
    store.set(key, &encode(initial), None)?;
    Ok(SeedOutcome::Seeded)
}

/// A successful [`update_state`].
#[derive(Debug, Clone, PartialEq)]
pub struct UpdateOutcome {
    /// CAS writes tried, the successful one included (at least 1).
    pub attempts: u32,
    /// The key was missing and was seeded with `initial` before the update.
    pub seeded: bool,
    /// The stored bytes could not be decoded and were replaced (the update was applied to a
    /// copy of `initial`); the reason, for the log.
    pub discarded: Option<DecodeError>,
    /// The state now stored (its CAS token is unknown: the host learns it on the next read).
    pub state: ModelState,
}

impl UpdateOutcome {
    /// CAS writes lost to other writers before this one succeeded.
    pub fn retries(&self) -> u32 {
        self.attempts.saturating_sub(1)
    }
}

/// A failed [`update_state`]; in every case nothing of this update was stored.
#[derive(Debug, Clone, PartialEq)]
pub enum UpdateFailure<E> {
    /// All `attempts` CAS writes lost to other writers.
    Contention { attempts: u32 },
    /// The host refused an operation with something other than a CAS mismatch.
    Store { error: StoreError, attempts: u32 },
    /// The closure refused the update.
    Rejected(E),
}

impl<E: fmt::Display> fmt::Display for UpdateFailure<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UpdateFailure::Contention { attempts } => {
                write!(
                    f,
                    "gave up after {attempts} CAS attempts lost to other writers"
                )
            }
            UpdateFailure::Store { error, attempts } => {
                write!(f, "{error} (after {attempts} CAS attempts)")
            }
            UpdateFailure::Rejected(e) => write!(f, "update refused: {e}"),
        }
    }
}

impl<E: fmt::Debug + fmt::Display> std::error::Error for UpdateFailure<E> {}

/// How a value is kept in shared data, for [`cas_update`].
pub trait Codec {
    type Value;
    /// Why stored bytes could not be read (the caller logs it).
    type Error;
    fn decode(&self, bytes: &[u8]) -> Result<Self::Value, Self::Error>;
    fn encode(&self, value: &Self::Value) -> Vec<u8>;
}

/// Bandit state: [`encode`] / [`decode`].
#[derive(Debug, Clone, Copy, Default)]
pub struct StateCodec;

impl Codec for StateCodec {
    type Value = ModelState;
    type Error = DecodeError;
    fn decode(&self, bytes: &[u8]) -> Result<ModelState, DecodeError> {
        decode(bytes)
    }
    fn encode(&self, value: &ModelState) -> Vec<u8> {
        encode(value)
    }
}

/// What the closure of [`cas_update`] made of the value it was given.
#[derive(Debug, Clone, PartialEq)]
pub enum Change<T> {
    /// Store this value (a CAS write).
    Write(T),
    /// The value needs no change: nothing is written.
    Keep(T),
}

/// A successful [`cas_update`].
#[derive(Debug, Clone, PartialEq)]
pub struct CasOutcome<T, D> {
    /// CAS writes tried (the successful one included; 0 when nothing needed writing at once).
    pub attempts: u32,
    /// The key was missing and was seeded with `initial` first.
    pub seeded: bool,
    /// The stored bytes could not be decoded and the closure was given a copy of `initial`.
    pub discarded: Option<D>,
    /// The value now stored (written, or kept as it was).
    pub value: T,
    /// Whether a write happened ([`Change::Write`]).
    pub wrote: bool,
}

/// The one bounded CAS read-modify-write loop of the crate (bandit state, spent decision ids,
/// target health): read `(bytes, cas)`, decode, `f`, encode, write with the CAS token just
/// read; on a CAS mismatch, start over, at most `max_attempts` writes.
///
/// * A missing key is first seeded with `initial` (the host ignores CAS on a missing key, so
///   the update itself must be a CAS write over an existing key). Seeding uses no attempt the
///   first time and one each time the key is missing again, so the loop always ends.
/// * An existing value without a CAS token is refused ([`UpdateFailure::Store`]): writing it
///   would be unconditional and could erase other workers' updates.
/// * Undecodable bytes: `f` gets a copy of `initial`, reported in [`CasOutcome::discarded`];
///   the result is written with the CAS token of the bad bytes (a concurrent repair wins).
/// * `f` may run several times (once per round): it must be a pure function of the value it is
///   given (plus captured inputs).
pub fn cas_update<S, C, E, F>(
    store: &S,
    key: &str,
    max_attempts: u32,
    codec: &C,
    initial: &C::Value,
    mut f: F,
) -> Result<CasOutcome<C::Value, C::Error>, UpdateFailure<E>>
where
    S: SharedStore + ?Sized,
    C: Codec + ?Sized,
    C::Value: Clone,
    F: FnMut(C::Value) -> Result<Change<C::Value>, E>,
{
    cas_loop(store, key, max_attempts, codec, initial, &mut f)
}

/// `cas_update`'s loop, one copy per store, codec and error type whatever the edit (a generic
/// edit would copy it into every caller).
fn cas_loop<S, C, E>(
    store: &S,
    key: &str,
    max_attempts: u32,
    codec: &C,
    initial: &C::Value,
    f: &mut dyn FnMut(C::Value) -> Result<Change<C::Value>, E>,
) -> Result<CasOutcome<C::Value, C::Error>, UpdateFailure<E>>
where
    S: SharedStore + ?Sized,
    C: Codec + ?Sized,
    C::Value: Clone,
{
    let mut attempts = 0u32;
    let mut seeded = false;
    let store_failure = |error, attempts| UpdateFailure::Store { error, attempts };
    loop {
        if attempts >= max_attempts {
            return Err(UpdateFailure::Contention { attempts });
        }
        let (bytes, cas) = store.get(key).map_err(|e| store_failure(e, attempts))?;
        let Some(bytes) = bytes else {
            if seeded {
                attempts = attempts.saturating_add(1);
            }
            match store.set(key, &codec.encode(initial), None) {
                Ok(()) | Err(StoreError::CasMismatch) => {}
                Err(e) => return Err(store_failure(e, attempts)),
            }
            seeded = true;
            continue;
        };
        if cas.is_none() {
            return Err(store_failure(
                StoreError::Host("shared data returned a value without a CAS token".into()),
                attempts,
            ));
        }
        let (current, discarded) = match codec.decode(&bytes) {
            Ok(value) => (value, None),
            Err(e) => (initial.clone(), Some(e)),
        };
        let next = match f(current).map_err(UpdateFailure::Rejected)? {
            Change::Write(next) => next,
            Change::Keep(value) => {
                return Ok(CasOutcome {
                    attempts,
                    seeded,
                    discarded,
                    value,
                    wrote: false,
                })
            }
        };
        attempts = attempts.saturating_add(1);
        match store.set(key, &codec.encode(&next), cas) {
            Ok(()) => {
                return Ok(CasOutcome {
                    attempts,
                    seeded,
                    discarded,
                    value: next,
                    wrote: true,
                })
            }
            Err(StoreError::CasMismatch) => continue,
            Err(e) => return Err(store_failure(e, attempts)),
        }
    }
}

/// [`cas_update`] for edits that cannot be refused: `f` changes the value in place and says
/// whether to write it (`false`: leave it as stored). The value now stored; losing every
/// attempt is [`StoreError::CasMismatch`].
pub fn cas_edit<S, C>(
    store: &S,
    key: &str,
    max_attempts: u32,
    codec: &C,
    initial: &C::Value,
    mut f: impl FnMut(&mut C::Value) -> bool,
) -> Result<C::Value, StoreError>
where
    S: SharedStore + ?Sized,
    C: Codec + ?Sized,
    C::Value: Clone,
{
    let edit = |mut v: C::Value| {
        let change = if f(&mut v) {
            Change::Write(v)
        } else {
            Change::Keep(v)
        };
        Ok::<_, std::convert::Infallible>(change)
    };
    match cas_update(store, key, max_attempts, codec, initial, edit) {
        Ok(out) => Ok(out.value),
        Err(UpdateFailure::Contention { .. }) => Err(StoreError::CasMismatch),
        Err(UpdateFailure::Store { error, .. }) => Err(error),
        Err(UpdateFailure::Rejected(never)) => match never {},
    }
}

/// Stored bytes as they are: the codec of a loop that runs over the bytes, the caller reading
/// and writing its value in its edit (one loop for all such values rather than one per codec).
pub struct Bytes;

impl Codec for Bytes {
    type Value = Vec<u8>;
    type Error = std::convert::Infallible;
    fn decode(&self, bytes: &[u8]) -> Result<Vec<u8>, Self::Error> {
        Ok(bytes.to_vec())
    }
    fn encode(&self, bytes: &Vec<u8>) -> Vec<u8> {
        bytes.clone()
    }
}

/// [`cas_edit`] of a value that `decode` reads from any bytes (making the best of bad ones, as
/// `initial`) and `encode` writes: the same outcomes, with the loop over the stored bytes
/// ([`Bytes`]), so one loop serves every such value.
pub fn cas_edit_with<S: SharedStore + ?Sized, T>(
    store: &S,
    key: &str,
    max_attempts: u32,
    initial: T,
    decode: impl Fn(&[u8]) -> T,
    encode: impl Fn(&T) -> Vec<u8>,
    mut f: impl FnMut(&mut T) -> bool,
) -> Result<T, StoreError> {
    let seed = encode(&initial);
    let mut now = initial;
    edit_bytes(store, key, max_attempts, &seed, &mut |bytes: &mut Vec<
        u8,
    >| {
        now = decode(bytes);
        let write = f(&mut now);
        if write {
            *bytes = encode(&now);
        }
        write
    })?;
    // The edit ran on the value now stored: `cas_edit` succeeds only after it.
    Ok(now)
}

/// An edit of a value in place that says whether to write it, as the edit loops take it behind
/// `dyn`: a trait of its own rather than `dyn FnMut`, whose vtable holds a `call_once` shim per
/// closure that nothing calls.
pub trait Edit<T: ?Sized> {
    fn edit(&mut self, value: &mut T) -> bool;
}

impl<T: ?Sized, F: FnMut(&mut T) -> bool> Edit<T> for F {
    fn edit(&mut self, value: &mut T) -> bool {
        self(value)
    }
}

/// `cas_edit_with`'s loop: one copy whatever the value and the edit.
fn edit_bytes<S: SharedStore + ?Sized>(
    store: &S,
    key: &str,
    max_attempts: u32,
    seed: &Vec<u8>,
    edit: &mut dyn Edit<Vec<u8>>,
) -> Result<Vec<u8>, StoreError> {
    cas_edit(store, key, max_attempts, &Bytes, seed, |v| edit.edit(v))
}

/// Bounded CAS read-modify-write of the bandit state under `key`: [`cas_update`] with
/// [`StateCodec`], `f` always writing. All outcomes are listed in the module docs.
pub fn update_state<S, E, F>(
    store: &S,
    key: &str,
    max_attempts: u32,
    initial: &ModelState,
    mut f: F,
) -> Result<UpdateOutcome, UpdateFailure<E>>
where
    S: SharedStore + ?Sized,
    F: FnMut(ModelState) -> Result<ModelState, E>,
{
    let out = cas_update(store, key, max_attempts, &StateCodec, initial, |state| {
        f(state).map(Change::Write)
    })?;
    Ok(UpdateOutcome {
        attempts: out.attempts,
        seeded: out.seeded,
        discarded: out.discarded,
        state: out.value,
    })
}

/// An in-memory [`SharedStore`] with Envoy's semantics (per-key CAS tokens from one increasing
/// counter; `None`/`Some(0)` writes unconditionally; a missing key is inserted whatever the
/// CAS) and scripted faults, for native tests of the host logic.
///
/// Faults are queued per operation and consumed in order: [`fail_next_get`](Self::fail_next_get)
/// and [`fail_next_set`](Self::fail_next_set) make the next `get`/`set` return the given error
/// without touching the data. The store is single-threaded (`RefCell`); a re-entrant call from
/// inside another call is reported as a [`StoreError::Host`], never a panic.
#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: RefCell<MemoryInner>,
}

#[derive(Debug, Default)]
struct MemoryInner {
    entries: BTreeMap<String, (Vec<u8>, u32)>,
    last_cas: u32,
    get_faults: VecDeque<StoreError>,
    set_faults: VecDeque<StoreError>,
    gets: u64,
    sets: u64,
    writes: u64,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn with<T>(&self, f: impl FnOnce(&mut MemoryInner) -> T) -> Result<T, StoreError> {
        let mut inner = self
            .inner
            .try_borrow_mut()
            .map_err(|_| StoreError::Host("re-entrant MemoryStore call".into()))?;
        Ok(f(&mut inner))
    }

    /// The next `get` fails with `error` (queued after earlier injected faults).
    pub fn fail_next_get(&self, error: StoreError) {
        let _ = self.with(|s| s.get_faults.push_back(error));
    }

    /// The next `set` fails with `error` (queued after earlier injected faults).
    pub fn fail_next_set(&self, error: StoreError) {
        let _ = self.with(|s| s.set_faults.push_back(error));
    }

    /// Writes raw bytes as another writer would (new CAS token), bypassing faults and counters.
    pub fn put_raw(&self, key: &str, value: &[u8]) {
        let _ = self.with(|s| {
            let cas = s.next_cas();
            s.entries.insert(key.to_owned(), (value.to_vec(), cas));
        });
    }

    /// Removes a key, bypassing faults and counters.
    pub fn remove(&self, key: &str) {
        let _ = self.with(|s| s.entries.remove(key));
    }

    /// The stored bytes and CAS token of `key`, bypassing faults and counters.
    pub fn raw(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        self.with(|s| s.entries.get(key).cloned()).ok().flatten()
    }

    /// Every key, in order, bypassing faults and counters.
    pub fn keys(&self) -> Vec<String> {
        self.with(|s| s.entries.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// `get` calls so far (failed ones included).
    pub fn gets(&self) -> u64 {
        self.with(|s| s.gets).unwrap_or(0)
    }

    /// `set` calls so far (failed ones included).
    pub fn sets(&self) -> u64 {
        self.with(|s| s.sets).unwrap_or(0)
    }

    /// `set` calls that changed the data.
    pub fn writes(&self) -> u64 {
        self.with(|s| s.writes).unwrap_or(0)
    }
}

impl MemoryInner {
    fn next_cas(&mut self) -> u32 {
        // Tokens are never 0 (0 means "no CAS" to the host).
        self.last_cas = self.last_cas.checked_add(1).unwrap_or(1);
        self.last_cas
    }
}

impl SharedStore for MemoryStore {
    fn get(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), StoreError> {
        self.with(|s| {
            s.gets += 1;
            if let Some(fault) = s.get_faults.pop_front() {
                return Err(fault);
            }
            Ok(match s.entries.get(key) {
                Some((value, cas)) => (Some(value.clone()), Some(*cas)),
                None => (None, None),
            })
        })?
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError> {
        self.with(|s| {
            s.sets += 1;
            if let Some(fault) = s.set_faults.pop_front() {
                return Err(fault);
            }
            if let (Some(expected), Some((_, current))) = (cas, s.entries.get(key)) {
                if expected != 0 && expected != *current {
                    return Err(StoreError::CasMismatch);
                }
            }
            let token = s.next_cas();
            s.entries.insert(key.to_owned(), (value.to_vec(), token));
            s.writes += 1;
            Ok(())
        })?
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
    use crate::bandit::{Algorithm, Strategy, StrategyParams, UpdateError};

    fn strategy() -> Strategy {
        Strategy::new(StrategyParams::new(Algorithm::Thompson), 2).unwrap()
    }

    #[test]
    fn memory_store_models_envoy_cas() {
        let store = MemoryStore::new();
        assert_eq!(store.get("k").unwrap(), (None, None));
        // Missing key: CAS ignored.
        store.set("k", b"one", Some(77)).unwrap();
        let (v, cas) = store.get("k").unwrap();
        assert_eq!(v.as_deref(), Some(&b"one"[..]));
        let cas = cas.unwrap();
        assert_eq!(
            store.set("k", b"two", Some(cas + 1)),
            Err(StoreError::CasMismatch)
        );
        store.set("k", b"two", Some(cas)).unwrap();
        assert_eq!(
            store.set("k", b"three", Some(cas)),
            Err(StoreError::CasMismatch)
        );
        store.set("k", b"three", None).unwrap();
        store.set("k", b"four", Some(0)).unwrap();
        assert_eq!(store.raw("k").unwrap().0, b"four");
        assert_eq!((store.gets(), store.sets(), store.writes()), (2, 6, 4));
    }

    #[test]
    fn closure_runs_once_per_round_and_sees_the_latest_state() {
        let s = strategy();
        let store = MemoryStore::new();
        let initial = s.initial_state(&["x", "y"]);
        seed(&store, "m", &initial).unwrap();
        store.fail_next_set(StoreError::CasMismatch);
        let mut calls = 0;
        let out = update_state(&store, "m", 3, &initial, |mut st| {
            calls += 1;
            s.update(&mut st, 1, 0.5)?;
            Ok::<_, UpdateError>(st)
        })
        .unwrap();
        assert_eq!((calls, out.attempts, out.retries()), (2, 2, 1));
        assert_eq!(out.state.updates, 1);
    }
}
