//! The shared-state CAS loop, `seed`, and the in-memory store, through the public API.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use inference_router_core::bandit::{
    cas_update, decode, encode, seed, update_state, Algorithm, Change, Codec, MemoryStore,
    ModelState, SeedOutcome, SharedStore, StoreError, Strategy, StrategyParams, UpdateError,
    UpdateFailure,
};
use inference_router_core::rng::Rng;

const KEY: &str = "inference-router/bandit/chat";
const NAMES: [&str; 3] = ["small", "medium", "large"];

fn strategy() -> Strategy {
    Strategy::new(StrategyParams::new(Algorithm::Thompson), NAMES.len()).unwrap()
}

/// One reward, applied the way the host will: reconcile, then look the target up by name.
fn reward<'a>(
    s: &'a Strategy,
    target: &'a str,
    r: f64,
) -> impl FnMut(ModelState) -> Result<ModelState, UpdateError> + 'a {
    move |state| {
        let (mut state, _) = s.reconcile(state, &NAMES);
        let arm = state.arm_index(target).unwrap_or(usize::MAX);
        s.update(&mut state, arm, r)?;
        Ok(state)
    }
}

fn stored(store: &MemoryStore) -> ModelState {
    decode(&store.raw(KEY).unwrap().0).unwrap()
}

#[test]
fn seed_writes_only_when_absent() {
    let s = strategy();
    let store = MemoryStore::new();
    let initial = s.initial_state(&NAMES);
    assert_eq!(seed(&store, KEY, &initial).unwrap(), SeedOutcome::Seeded);
    assert_eq!(stored(&store), initial);

    let mut learned = initial.clone();
    s.update(&mut learned, 0, 1.0).unwrap();
    store.put_raw(KEY, &encode(&learned));
    // A VM starting later (or reloading) keeps what was learned.
    assert_eq!(
        seed(&store, KEY, &initial).unwrap(),
        SeedOutcome::AlreadyPresent
    );
    assert_eq!(stored(&store), learned);

    // Host errors surface.
    store.fail_next_get(StoreError::Host("BadArgument".into()));
    assert_eq!(
        seed(&store, KEY, &initial),
        Err(StoreError::Host("BadArgument".into()))
    );
}

#[test]
fn no_contention_is_one_attempt() {
    let s = strategy();
    let store = MemoryStore::new();
    let initial = s.initial_state(&NAMES);
    seed(&store, KEY, &initial).unwrap();
    let out = update_state(&store, KEY, 4, &initial, reward(&s, "large", 0.25)).unwrap();
    assert_eq!((out.attempts, out.retries(), out.seeded), (1, 0, false));
    assert_eq!(out.discarded, None);
    let st = stored(&store);
    assert_eq!(st, out.state);
    assert_eq!(st.updates, 1);
    assert_eq!((st.arms[2].alpha, st.arms[2].beta), (1.25, 1.75));
}

#[test]
fn mismatch_then_success() {
    let s = strategy();
    let store = MemoryStore::new();
    let initial = s.initial_state(&NAMES);
    seed(&store, KEY, &initial).unwrap();
    store.fail_next_set(StoreError::CasMismatch);
    store.fail_next_set(StoreError::CasMismatch);
    let out = update_state(&store, KEY, 4, &initial, reward(&s, "small", 1.0)).unwrap();
    assert_eq!((out.attempts, out.retries()), (3, 2));
    assert_eq!(stored(&store).updates, 1);
}

#[test]
fn persistent_mismatch_is_contention_after_exactly_max_attempts() {
    let s = strategy();
    let store = MemoryStore::new();
    let initial = s.initial_state(&NAMES);
    seed(&store, KEY, &initial).unwrap();
    let sets_before = store.sets();
    for _ in 0..20 {
        store.fail_next_set(StoreError::CasMismatch);
    }
    let err = update_state(&store, KEY, 5, &initial, reward(&s, "small", 1.0)).unwrap_err();
    assert_eq!(err, UpdateFailure::Contention { attempts: 5 });
    assert_eq!(
        store.sets() - sets_before,
        5,
        "exactly max_attempts CAS writes"
    );
    assert_eq!(stored(&store), initial, "nothing of the update was written");
    assert_eq!(
        err.to_string(),
        "gave up after 5 CAS attempts lost to other writers"
    );

    // Zero attempts allowed: no write at all.
    let err = update_state(&store, KEY, 0, &initial, reward(&s, "small", 1.0)).unwrap_err();
    assert_eq!(err, UpdateFailure::Contention { attempts: 0 });
}

#[test]
fn host_errors_surface() {
    let s = strategy();
    let store = MemoryStore::new();
    let initial = s.initial_state(&NAMES);
    seed(&store, KEY, &initial).unwrap();

    store.fail_next_get(StoreError::Host("InternalFailure".into()));
    let err = update_state(&store, KEY, 3, &initial, reward(&s, "small", 1.0)).unwrap_err();
    assert_eq!(
        err,
        UpdateFailure::Store {
            error: StoreError::Host("InternalFailure".into()),
            attempts: 0
        }
    );

    store.fail_next_set(StoreError::CasMismatch);
    store.fail_next_set(StoreError::Host("BadArgument".into()));
    let err = update_state(&store, KEY, 3, &initial, reward(&s, "small", 1.0)).unwrap_err();
    assert_eq!(
        err,
        UpdateFailure::Store {
            error: StoreError::Host("BadArgument".into()),
            attempts: 2
        }
    );
    assert_eq!(stored(&store), initial);
}

#[test]
fn rejected_update_writes_nothing() {
    let s = strategy();
    let store = MemoryStore::new();
    let initial = s.initial_state(&NAMES);
    seed(&store, KEY, &initial).unwrap();
    let writes = store.writes();
    let err = update_state(&store, KEY, 3, &initial, reward(&s, "small", f64::NAN)).unwrap_err();
    assert!(matches!(
        err,
        UpdateFailure::Rejected(UpdateError::Reward(_))
    ));
    assert!(err.to_string().contains("reward must be a finite number"));
    let err = update_state(&store, KEY, 3, &initial, reward(&s, "gone", 0.5)).unwrap_err();
    assert!(matches!(
        err,
        UpdateFailure::Rejected(UpdateError::UnknownArm { .. })
    ));
    assert_eq!(store.writes(), writes);
}

#[test]
fn missing_key_is_seeded_then_updated_with_cas() {
    let s = strategy();
    let store = MemoryStore::new();
    let initial = s.initial_state(&NAMES);
    let out = update_state(&store, KEY, 2, &initial, reward(&s, "medium", 0.5)).unwrap();
    assert!(out.seeded);
    assert_eq!(out.attempts, 1, "the seed does not use up an attempt");
    // get (missing) → seed set → get → CAS set.
    assert_eq!((store.gets(), store.sets(), store.writes()), (2, 2, 2));
    let st = stored(&store);
    assert_eq!(st.updates, 1);
    assert_eq!(st.arms[1].pulls, 1.0);

    // With max_attempts = 1 a missing key still gets its update.
    let store = MemoryStore::new();
    let out = update_state(&store, KEY, 1, &initial, reward(&s, "medium", 0.5)).unwrap();
    assert!(out.seeded && out.attempts == 1);
}

#[test]
fn key_that_keeps_disappearing_ends_the_loop() {
    /// A store where every set is lost: models a host that drops the key.
    struct Forgetful;
    impl SharedStore for Forgetful {
        fn get(&self, _: &str) -> Result<(Option<Vec<u8>>, Option<u32>), StoreError> {
            Ok((None, None))
        }
        fn set(&self, _: &str, _: &[u8], _: Option<u32>) -> Result<(), StoreError> {
            Ok(())
        }
    }
    let s = strategy();
    let initial = s.initial_state(&NAMES);
    let err = update_state(&Forgetful, KEY, 3, &initial, reward(&s, "small", 1.0)).unwrap_err();
    assert_eq!(err, UpdateFailure::Contention { attempts: 3 });
}

#[test]
fn value_without_cas_is_not_written_blindly() {
    struct NoCas;
    impl SharedStore for NoCas {
        fn get(&self, _: &str) -> Result<(Option<Vec<u8>>, Option<u32>), StoreError> {
            Ok((Some(b"x".to_vec()), None))
        }
        fn set(&self, _: &str, _: &[u8], _: Option<u32>) -> Result<(), StoreError> {
            Err(StoreError::Host("must not be called".into()))
        }
    }
    let s = strategy();
    let initial = s.initial_state(&NAMES);
    let err = update_state(&NoCas, KEY, 3, &initial, reward(&s, "small", 1.0)).unwrap_err();
    assert!(
        matches!(err, UpdateFailure::Store { attempts: 0, .. }),
        "{err:?}"
    );
}

#[test]
fn garbage_bytes_are_replaced_and_flagged() {
    let s = strategy();
    let store = MemoryStore::new();
    let initial = s.initial_state(&NAMES);
    store.put_raw(KEY, b"\xc1 not messagepack");
    let out = update_state(&store, KEY, 3, &initial, reward(&s, "large", 1.0)).unwrap();
    assert!(out.discarded.is_some(), "the host must be told");
    assert!(!out.seeded);
    let st = stored(&store);
    assert_eq!(st.updates, 1);
    assert_eq!(st.arms[2].alpha, 2.0);

    // A NaN inside an otherwise well-formed state is discarded the same way.
    let mut nan = initial.clone();
    nan.arms[0].alpha = f64::NAN;
    store.put_raw(KEY, &encode(&nan));
    let out = update_state(&store, KEY, 3, &initial, reward(&s, "large", 1.0)).unwrap();
    assert!(out.discarded.unwrap().to_string().contains("alpha"));

    // The replacement is a CAS write over the bad bytes: a concurrent repair wins.
    store.put_raw(KEY, b"garbage again");
    store.fail_next_set(StoreError::CasMismatch);
    let out = update_state(&store, KEY, 3, &initial, reward(&s, "large", 1.0)).unwrap();
    assert_eq!(out.attempts, 2);
}

#[test]
fn interleaved_writers_lose_no_update() {
    // Writer B completes a whole update while writer A is between its read and its write: A's
    // CAS write fails and A retries on top of B's state.
    let s = strategy();
    let store = MemoryStore::new();
    let initial = s.initial_state(&NAMES);
    seed(&store, KEY, &initial).unwrap();
    let mut interfered = false;
    let out = update_state(&store, KEY, 3, &initial, |state| {
        if !interfered {
            interfered = true;
            update_state(&store, KEY, 3, &initial, reward(&s, "medium", 1.0)).unwrap();
        }
        reward(&s, "small", 1.0)(state)
    })
    .unwrap();
    assert_eq!(out.attempts, 2);
    let st = stored(&store);
    assert_eq!(st.updates, 2);
    assert_eq!((st.arms[0].pulls, st.arms[1].pulls), (1.0, 1.0));
}

#[test]
fn many_simulated_writers_final_count_is_exact() {
    // Random nesting: each writer's closure may start other writers' updates (up to depth 3)
    // between its read and its write. Every update that reports success must be in the final
    // state, and nothing else.
    struct World<'a> {
        store: &'a MemoryStore,
        strategy: &'a Strategy,
        initial: &'a ModelState,
    }
    #[derive(Default)]
    struct Tally {
        ok: u64,
        contention: u64,
        retries: u64,
        per_arm: [u64; 3],
    }
    fn writer(world: &World<'_>, rng: &mut Rng, depth: u32, tally: &mut Tally) {
        let s = world.strategy;
        let arm = rng.below(3) as usize;
        let r = rng.next_f64();
        let interfere = depth < 3 && rng.next_f64() < 0.4;
        let mut nested_done = false;
        let result = update_state(world.store, KEY, 4, world.initial, |state| {
            if interfere && !nested_done {
                nested_done = true;
                for _ in 0..1 + rng.below(3) {
                    writer(world, rng, depth + 1, tally);
                }
            }
            let (mut state, _) = s.reconcile(state, &NAMES);
            s.update(&mut state, arm, r)?;
            Ok::<_, UpdateError>(state)
        });
        match result {
            Ok(out) => {
                tally.ok += 1;
                tally.retries += u64::from(out.retries());
                tally.per_arm[arm] += 1;
            }
            Err(UpdateFailure::Contention { .. }) => tally.contention += 1,
            Err(e) => panic!("{e:?}"),
        }
    }

    let s = strategy();
    let store = MemoryStore::new();
    let initial = s.initial_state(&NAMES);
    let world = World {
        store: &store,
        strategy: &s,
        initial: &initial,
    };
    let mut rng = Rng::seed_from_u64(2024);
    let mut tally = Tally::default();
    // No seed: the first writer seeds the key.
    for _ in 0..300 {
        // Random host-level CAS failures on top of the interleavings.
        for _ in 0..rng.below(6) {
            store.fail_next_set(StoreError::CasMismatch);
        }
        writer(&world, &mut rng, 0, &mut tally);
    }
    let st = stored(&store);
    assert!(tally.ok > 300, "nesting should add writers: {}", tally.ok);
    assert!(
        tally.retries > 100,
        "the test must exercise retries: {}",
        tally.retries
    );
    assert!(tally.contention > 0, "and contention: {}", tally.contention);
    assert_eq!(st.updates, tally.ok, "contention: {}", tally.contention);
    for (arm, n) in st.arms.iter().zip(tally.per_arm) {
        assert!((arm.pulls - n as f64).abs() < 1e-9, "{} vs {n}", arm.pulls);
    }
}

// --- The generic loop, as spent ids and health use it ------------------------------------------

/// A store holding one value the host reports without a CAS token; writes are recorded.
#[derive(Default)]
struct NoCasToken {
    writes: std::cell::Cell<u32>,
}

impl SharedStore for NoCasToken {
    fn get(&self, _: &str) -> Result<(Option<Vec<u8>>, Option<u32>), StoreError> {
        Ok((Some(Vec::new()), None))
    }
    fn set(&self, _: &str, _: &[u8], _: Option<u32>) -> Result<(), StoreError> {
        self.writes.set(self.writes.get() + 1);
        Ok(())
    }
}

#[test]
fn every_cas_user_refuses_a_value_without_a_cas_token() {
    use inference_router_core::learning::{health, spent};
    let refused = StoreError::Host("shared data returned a value without a CAS token".into());

    let store = NoCasToken::default();
    assert_eq!(
        spent::spend(&store, "k", 1, 8, 8),
        Err(spent::SpendError::Store(refused.clone()))
    );
    assert_eq!(
        spent::unspend(&store, "k", 1, 8),
        Err(spent::SpendError::Store(refused.clone()))
    );
    let sample = health::Sample {
        target: 0,
        cool_until: Some(10),
        latency_ms: None,
        at_ms: 0,
    };
    assert_eq!(health::record(&store, "h", 1, sample), Err(refused));
    let s = strategy();
    let initial = s.initial_state(&NAMES);
    assert!(update_state(&store, KEY, 3, &initial, reward(&s, "small", 1.0)).is_err());
    assert_eq!(store.writes.get(), 0, "nothing was written blindly");
}

/// Counters as a codec: the smallest value the loop can carry.
struct Counter;

impl Codec for Counter {
    type Value = u64;
    type Error = String;
    fn decode(&self, bytes: &[u8]) -> Result<u64, String> {
        let arr: [u8; 8] = bytes
            .try_into()
            .map_err(|_| format!("{} bytes", bytes.len()))?;
        Ok(u64::from_le_bytes(arr))
    }
    fn encode(&self, value: &u64) -> Vec<u8> {
        value.to_le_bytes().to_vec()
    }
}

#[test]
fn cas_update_is_generic_and_may_write_nothing() {
    let store = MemoryStore::new();
    let bump = |n: u64| Ok::<_, ()>(Change::Write(n + 1));
    let out = cas_update(&store, "n", 3, &Counter, &10, bump).unwrap();
    assert_eq!(
        (out.value, out.wrote, out.seeded, out.attempts),
        (11, true, true, 1)
    );
    store.fail_next_set(StoreError::CasMismatch);
    let out = cas_update(&store, "n", 3, &Counter, &10, bump).unwrap();
    assert_eq!((out.value, out.attempts), (12, 2));

    // Keep: nothing written, no attempt used.
    let writes = store.writes();
    let out = cas_update(&store, "n", 3, &Counter, &10, |n| {
        Ok::<_, ()>(Change::Keep(n))
    })
    .unwrap();
    assert_eq!((out.value, out.wrote, out.attempts), (12, false, 0));
    assert_eq!(store.writes(), writes);

    // Undecodable: the closure gets `initial`, the reason is reported.
    store.put_raw("n", b"xyz");
    let out = cas_update(&store, "n", 3, &Counter, &10, bump).unwrap();
    assert_eq!(
        (out.value, out.discarded),
        (11, Some("3 bytes".to_string()))
    );

    // Refused by the closure: nothing written.
    let writes = store.writes();
    let err = cas_update(&store, "n", 3, &Counter, &10, |_| {
        Err::<Change<u64>, _>("no")
    })
    .unwrap_err();
    assert_eq!(err, UpdateFailure::Rejected("no"));
    assert_eq!(store.writes(), writes);
}

#[test]
fn health_on_a_missing_key_is_seeded_then_written_with_cas() {
    use inference_router_core::learning::health::{record, Health, Sample};
    let store = MemoryStore::new();
    let sample = Sample {
        target: 1,
        cool_until: Some(100),
        latency_ms: Some(40.0),
        at_ms: 0,
    };
    record(&store, "h", 2, sample).unwrap();
    // get (missing) → seed → get → CAS write.
    assert_eq!((store.gets(), store.sets()), (2, 2));
    let h = Health::decode(&store.raw("h").unwrap().0, 2);
    assert_eq!((h.cooling(1), h.latency(1)), (100, Some(40.0)));
    // Contention drops the sample as a CAS mismatch.
    for _ in 0..inference_router_core::learning::health::MAX_ATTEMPTS {
        store.fail_next_set(StoreError::CasMismatch);
    }
    assert_eq!(record(&store, "h", 2, sample), Err(StoreError::CasMismatch));
}
