//! State encoding, reconciliation and the decode-on-change cache, through the public API.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use inference_router_core::bandit::{
    decode, encode, Algorithm, Decay, DecodeError, MemoryStore, Prior, Reconciled, Refresh,
    ResetReason, SharedStore, StateCache, Strategy, StrategyParams, STATE_VERSION,
};
use inference_router_core::rng::Rng;

fn thompson(prior: Prior) -> Strategy {
    let params = StrategyParams {
        prior,
        ..StrategyParams::new(Algorithm::Thompson)
    };
    Strategy::new(params, 3).unwrap()
}

#[test]
fn round_trip_after_learning() {
    let params = StrategyParams {
        decay: Decay::Discount { gamma: 0.99 },
        ..StrategyParams::new(Algorithm::Ucb1)
    };
    let s = Strategy::new(params, 3).unwrap();
    let mut state = s.initial_state(&["a", "b", "c"]);
    let mut rng = Rng::seed_from_u64(1);
    for _ in 0..500 {
        let arm = s.select(&state, &mut rng);
        s.update(&mut state, arm, rng.next_f64()).unwrap();
    }
    let bytes = encode(&state);
    assert!(bytes.len() < 200, "compact encoding: {} bytes", bytes.len());
    assert_eq!(decode(&bytes).unwrap(), state);
    assert_eq!(state.version, STATE_VERSION);
}

#[test]
fn decode_refuses_bad_input() {
    let s = thompson(Prior::default());
    let good = encode(&s.initial_state(&["a", "b", "c"]));
    assert!(matches!(decode(b""), Err(DecodeError::Malformed(_))));
    assert!(matches!(
        decode(&good[..good.len() / 2]),
        Err(DecodeError::Malformed(_))
    ));
    let mut rng = Rng::seed_from_u64(99);
    for len in 0..200 {
        let junk: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
        let _ = decode(&junk); // must not panic
    }
    let mut nan = s.initial_state(&["a", "b", "c"]);
    nan.arms[1].reward_sum = f64::NAN;
    let err = decode(&encode(&nan)).unwrap_err();
    assert!(matches!(err, DecodeError::Invalid(_)));
    assert_eq!(
        err.to_string(),
        "invalid bandit state: arms[1].reward_sum: must be finite, got NaN"
    );
}

#[test]
fn reconcile_through_the_strategy() {
    let s = thompson(Prior::default());
    let mut state = s.initial_state(&["a", "b", "c"]);
    s.update(&mut state, 1, 1.0).unwrap();

    let (same, how) = s.reconcile(state.clone(), &["a", "b", "c"]);
    assert_eq!((how, &same), (Reconciled::Unchanged, &state));

    let (moved, how) = s.reconcile(state.clone(), &["b", "d"]);
    assert_eq!(
        how,
        Reconciled::Migrated {
            kept: 1,
            added: 1,
            removed: 2
        }
    );
    assert_eq!(moved.arms[0], state.arms[1]);
    assert_eq!(moved.arms[1].pulls, 0.0);
    assert_eq!(
        how.to_string(),
        "migrated: kept 1, added 1, removed 2 targets"
    );

    // A new prior invalidates alpha/beta: reset, counter kept.
    let other = thompson(Prior {
        alpha: 2.0,
        beta: 2.0,
    });
    let (fresh, how) = other.reconcile(state.clone(), &["a", "b", "c"]);
    assert!(matches!(
        how,
        Reconciled::Reset(ResetReason::ConfigChanged { .. })
    ));
    assert_eq!(fresh.updates, 1);
    assert_eq!((fresh.arms[1].alpha, fresh.arms[1].pulls), (2.0, 0.0));
}

#[test]
fn cache_decodes_only_when_the_cas_changes() {
    let s = thompson(Prior::default());
    let names = ["a", "b", "c"];
    let store = MemoryStore::new();
    let mut cache = StateCache::new();
    assert!(cache.state().is_none());

    // Missing key: a fresh state to select from.
    let (bytes, cas) = store.get("k").unwrap();
    assert_eq!(
        cache.refresh(bytes.as_deref(), cas, &s, || names.to_vec()),
        Refresh::Missing
    );
    assert_eq!(cache.state().unwrap(), &s.initial_state(&names));

    let mut learned = s.initial_state(&names);
    s.update(&mut learned, 2, 1.0).unwrap();
    store.put_raw("k", &encode(&learned));
    let (bytes, cas) = store.get("k").unwrap();
    assert_eq!(
        cache.refresh(bytes.as_deref(), cas, &s, || names.to_vec()),
        Refresh::Decoded(Reconciled::Unchanged)
    );
    assert_eq!(cache.state().unwrap(), &learned);
    assert!(cache.is_current(cas));

    // Same CAS: nothing decoded, even if we hand it garbage (proves no decode happened).
    assert_eq!(
        cache.refresh(Some(b"garbage"), cas, &s, || names.to_vec()),
        Refresh::Cached
    );
    assert_eq!(cache.state().unwrap(), &learned);

    // Changed targets: the decoded state is reconciled before use.
    store.put_raw("k", &encode(&learned));
    let (bytes, cas) = store.get("k").unwrap();
    let how = cache.refresh(bytes.as_deref(), cas, &s, || vec!["c", "a"]);
    assert!(matches!(
        how,
        Refresh::Decoded(Reconciled::Migrated { kept: 2, .. })
    ));
    assert_eq!(cache.state().unwrap().arms[0].name, "c");

    // Undecodable bytes: fresh state, reported once, not decoded again until they change.
    store.put_raw("k", b"\xff\xff");
    let (bytes, cas) = store.get("k").unwrap();
    assert!(matches!(
        cache.refresh(bytes.as_deref(), cas, &s, || names.to_vec()),
        Refresh::Undecodable(_)
    ));
    assert_eq!(cache.state().unwrap(), &s.initial_state(&names));
    assert_eq!(
        cache.refresh(bytes.as_deref(), cas, &s, || names.to_vec()),
        Refresh::Cached
    );

    cache.clear();
    assert!(cache.state().is_none() && cache.cas().is_none());
}

#[test]
fn decay_changes_keep_the_state() {
    // Changing the decay or the algorithm does not throw learning away.
    let plain = thompson(Prior::default());
    let decayed = Strategy::new(
        StrategyParams {
            decay: Decay::HalfLife {
                observations: 100.0,
            },
            ..StrategyParams::new(Algorithm::Ucb1)
        },
        3,
    )
    .unwrap();
    let mut state = plain.initial_state(&["a", "b", "c"]);
    plain.update(&mut state, 0, 1.0).unwrap();
    let (_, how) = decayed.reconcile(state, &["a", "b", "c"]);
    assert_eq!(how, Reconciled::Unchanged);
}
