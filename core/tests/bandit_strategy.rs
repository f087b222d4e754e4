//! Strategies through the public API: learning behaviour, decay, floors, validation messages.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use inference_router_core::bandit::{
    check_reward, sample, validate, Algorithm, Decay, ModelState, Prior, RewardError, Strategy,
    StrategyParams, UpdateError,
};
use inference_router_core::rng::Rng;

const NAMES: [&str; 3] = ["v1", "v2", "v3"];

fn algorithms() -> [Algorithm; 3] {
    [
        Algorithm::EpsilonGreedy { epsilon: 0.1 },
        Algorithm::Thompson,
        Algorithm::Ucb1,
    ]
}

/// Plays `steps` Bernoulli rounds with success probabilities `p`; returns pulls per arm.
fn play(s: &Strategy, state: &mut ModelState, p: &[f64], steps: usize, rng: &mut Rng) -> Vec<u64> {
    let mut pulls = vec![0; p.len()];
    for _ in 0..steps {
        let arm = s.select(state, rng);
        let r = if rng.next_f64() < p[arm] { 1.0 } else { 0.0 };
        s.update(state, arm, r).unwrap();
        pulls[arm] += 1;
    }
    pulls
}

#[test]
fn every_algorithm_finds_the_best_arm() {
    for algorithm in algorithms() {
        let s = Strategy::new(StrategyParams::new(algorithm), 3).unwrap();
        let mut state = s.initial_state(&NAMES);
        let mut rng = Rng::seed_from_u64(31);
        let pulls = play(&s, &mut state, &[0.5, 0.9, 0.6], 5_000, &mut rng);
        assert!(pulls[1] > 3_500, "{algorithm:?}: {pulls:?}");
        assert_eq!(state.updates, 5_000);
        // Posterior mean of the best arm close to 0.9.
        let best = &state.arms[1];
        assert!((best.alpha / (best.alpha + best.beta) - 0.9).abs() < 0.03);
    }
}

#[test]
fn fractional_rewards_track_the_mean() {
    // Beta(8, 2)-distributed rewards (mean 0.8) vs a constant 0.7: Thompson must prefer the
    // first and its posterior mean must approach 0.8 (rounding rewards to 0/1 would also give
    // 0.8 in expectation, but with far more variance; here we just check the arithmetic).
    let s = Strategy::new(StrategyParams::new(Algorithm::Thompson), 2).unwrap();
    let mut state = s.initial_state(&["a", "b"]);
    let mut rng = Rng::seed_from_u64(5);
    let mut pulls = [0u32; 2];
    for _ in 0..4_000 {
        let arm = s.select(&state, &mut rng);
        let r = if arm == 0 {
            sample::beta(&mut rng, 8.0, 2.0)
        } else {
            0.7
        };
        s.update(&mut state, arm, r).unwrap();
        pulls[arm] += 1;
    }
    assert!(pulls[0] > 3_000, "{pulls:?}");
    let a = &state.arms[0];
    assert!((a.alpha - 1.0 - a.reward_sum).abs() < 1e-9);
    assert!((a.beta - 1.0 - (a.pulls - a.reward_sum)).abs() < 1e-9);
    assert!((a.reward_sum / a.pulls - 0.8).abs() < 0.02);
}

#[test]
fn decay_adapts_to_a_regime_change() {
    // 3000 rounds with v1 best, then v3 best. With a half-life of 200 observations the
    // strategy must spend most of the last 1000 rounds on v3.
    for algorithm in algorithms() {
        let params = StrategyParams {
            decay: Decay::HalfLife {
                observations: 200.0,
            },
            ..StrategyParams::new(algorithm)
        };
        let s = Strategy::new(params, 3).unwrap();
        let mut state = s.initial_state(&NAMES);
        let mut rng = Rng::seed_from_u64(77);
        play(&s, &mut state, &[0.9, 0.5, 0.6], 3_000, &mut rng);
        play(&s, &mut state, &[0.5, 0.6, 0.9], 1_000, &mut rng);
        let late = play(&s, &mut state, &[0.5, 0.6, 0.9], 1_000, &mut rng);
        assert!(late[2] > 700, "{algorithm:?}: {late:?}");
        // Discounted pulls stay bounded by 1 / (1 - gamma).
        let total: f64 = state.arms.iter().map(|a| a.pulls).sum();
        assert!(total <= 1.0 / (1.0 - s.gamma()) + 1e-6, "{total}");
        assert_eq!(state.updates, 5_000);
    }
}

#[test]
fn min_share_keeps_a_losing_arm_alive() {
    let params = StrategyParams {
        min_share: vec![0.0, 0.0, 0.1],
        ..StrategyParams::new(Algorithm::Thompson)
    };
    let s = Strategy::new(params, 3).unwrap();
    let mut state = s.initial_state(&NAMES);
    let mut rng = Rng::seed_from_u64(8);
    play(&s, &mut state, &[0.9, 0.5, 0.1], 2_000, &mut rng);
    let pulls = play(&s, &mut state, &[0.9, 0.5, 0.1], 20_000, &mut rng);
    let share = pulls[2] as f64 / 20_000.0;
    assert!(share >= 0.09, "{pulls:?}");
}

#[test]
fn validation_sentences() {
    let p = StrategyParams::new(Algorithm::EpsilonGreedy { epsilon: 1.5 });
    assert_eq!(
        validate(&p, 2).unwrap_err().to_string(),
        "epsilon: must be within [0, 1], got 1.5"
    );
    let p = StrategyParams {
        prior: Prior {
            alpha: -1.0,
            beta: 1.0,
        },
        ..StrategyParams::new(Algorithm::Thompson)
    };
    let err = Strategy::new(p, 2).unwrap_err();
    assert_eq!(err.field, "prior.alpha");
    let p = StrategyParams {
        min_share: vec![0.5, f64::NAN],
        ..StrategyParams::new(Algorithm::Ucb1)
    };
    let err = validate(&p, 2).unwrap_err();
    assert_eq!((err.field, err.arm), ("min_share", Some(1)));
    assert_eq!(
        err.to_string(),
        "min_share[1]: must be within [0, 1), got NaN"
    );
}

#[test]
fn reward_errors() {
    assert_eq!(check_reward(0.0), Ok(0.0));
    assert_eq!(check_reward(1.0), Ok(1.0));
    assert_eq!(check_reward(1.5), Err(RewardError::OutOfRange(1.5)));
    assert!(matches!(
        check_reward(f64::NAN),
        Err(RewardError::NotFinite(_))
    ));
    let s = Strategy::new(StrategyParams::new(Algorithm::Ucb1), 3).unwrap();
    let mut state = s.initial_state(&NAMES);
    let err = s.update(&mut state, 1, -0.2).unwrap_err();
    assert_eq!(err, UpdateError::Reward(RewardError::OutOfRange(-0.2)));
    assert_eq!(err.to_string(), "reward must be within [0, 1], got -0.2");
    assert_eq!(
        s.update(&mut state, 9, 0.2).unwrap_err().to_string(),
        "arm 9 does not exist (the state has 3 arms)"
    );
    assert_eq!(state.updates, 0);
}

#[test]
fn selection_is_reproducible_from_the_seed() {
    let s = Strategy::new(StrategyParams::new(Algorithm::Thompson), 3).unwrap();
    let state = s.initial_state(&NAMES);
    let draws = |seed| {
        let mut rng = Rng::seed_from_u64(seed);
        (0..50)
            .map(|_| s.select(&state, &mut rng))
            .collect::<Vec<_>>()
    };
    assert_eq!(draws(1), draws(1));
    assert_ne!(draws(1), draws(2));
}
