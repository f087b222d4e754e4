//! Between this Envoy's learned state and the fleet's documents, both ways: what this replica
//! publishes (its own statistics, without the prior), the fleet part merged from the others'
//! (plus the retired ones'), and the two corrections a replica's own statistics may need:
//! taking away what was folded into the retired document, and adopting a previous life's.

use crate::vecmap::VecMap;

use super::doc::{Contribution, Learned, TargetHealth};
use crate::bandit::{ArmSums, FleetPart, ModelState, Strategy};
use crate::learning::health::{FleetHealth, Health, FULL_WEIGHT, STALE_MS};

/// The identity under which a model's statistics are exchanged: replicas only add statistics
/// made under the same prior and the same time decay. Stable across builds (FNV-1a 64).
pub fn identity(strategy: &Strategy) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let half_life = strategy.half_life_ms().unwrap_or(0.0);
    let bytes = b"inference-router/fleet/v1"
        .iter()
        .copied()
        .chain(strategy.config_id().to_le_bytes())
        .chain(half_life.to_bits().to_le_bytes());
    for byte in bytes {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{hash:016x}")
}

/// This replica's own statistics of a model, as it publishes them: as stored, with the time
/// they are as of (readers decay them from there), so an unchanged state publishes the same.
pub fn own_learned(strategy: &Strategy, state: &ModelState, id: &str) -> Learned {
    let prior = strategy.prior();
    Learned {
        id: id.to_owned(),
        half_life_ms: strategy.half_life_ms().unwrap_or(0.0),
        as_of_ms: state.as_of_ms(),
        updates: state.updates,
        targets: state
            .arms
            .iter()
            .map(|a| (a.name.clone(), a.sums(prior).values()))
            .collect(),
    }
}

/// The fleet part of a model from the other replicas' entries (`replicas` of them counted as
/// replicas; the retired entry, if any, among `entries` but not counted), decayed to `at_ms`.
pub fn fleet_part(entries: &[&Learned], replicas: u32, targets: &[&str], at_ms: u64) -> FleetPart {
    FleetPart {
        as_of_ms: at_ms,
        updates: entries
            .iter()
            .fold(0u64, |n, e| n.saturating_add(e.updates)),
        replicas,
        arms: targets
            .iter()
            .map(|t| {
                let mut sum = ArmSums::zero(t);
                for e in entries {
                    sum.add_scaled(&e.sums(t, at_ms), 1.0);
                }
                sum
            })
            .collect(),
    }
}

/// Adds `learned` (scaled by `sign`: 1 to adopt a previous life's statistics, -1 to take away
/// what was folded into the retired document) to this replica's own statistics, at `now_ms`.
/// Numbers that would go below zero (rounding) stop at zero.
pub fn correct_own(
    strategy: &Strategy,
    state: &mut ModelState,
    learned: &Learned,
    sign: f64,
    now_ms: u64,
) {
    strategy.decay_to(state, now_ms);
    let prior = strategy.prior();
    for arm in &mut state.arms {
        let mut sums = arm.sums(prior);
        sums.add_scaled(&learned.sums(&arm.name, now_ms), sign);
        sums.clamp_non_negative();
        arm.pulls = sums.pulls;
        arm.reward_sum = sums.reward_sum;
        arm.alpha = prior.alpha + sums.alpha_gain;
        arm.beta = prior.beta + sums.beta_gain;
    }
    state.updates = if sign < 0.0 {
        state.updates.saturating_sub(learned.updates)
    } else {
        state.updates.saturating_add(learned.updates)
    };
}

/// This Envoy's own health of a model's targets, as published.
pub fn own_health(health: &Health, targets: &[&str]) -> VecMap<String, TargetHealth> {
    let mut own = VecMap::new();
    for (i, t) in targets.iter().enumerate() {
        let h = [
            health.cooling_until.get(i).copied().unwrap_or(0) as f64,
            health.latency_ms.get(i).copied().unwrap_or(-1.0),
            health.samples.get(i).copied().unwrap_or(0.0),
            health.sampled_ms.get(i).copied().unwrap_or(0) as f64,
        ];
        own.insert((*t).to_owned(), h);
    }
    own
}

/// The other replicas' health of a model, merged: the latest cooldown per target, and the
/// latency estimates sampled in the last [`STALE_MS`] averaged by their samples.
pub fn fleet_health(
    others: &[&Contribution],
    model: &str,
    targets: &[&str],
    now_ms: u64,
) -> FleetHealth {
    let n = targets.len();
    let mut out = FleetHealth {
        cooling_until: vec![0; n],
        latency_ms: vec![-1.0; n],
        samples: vec![0.0; n],
    };
    let mut weighted = vec![0.0; n];
    for c in others {
        let Some(per_target) = c.health.get(model) else {
            continue;
        };
        for (i, t) in targets.iter().enumerate() {
            let Some([cooling, latency, samples, sampled]) = per_target.get(*t).copied() else {
                continue;
            };
            if let Some(slot) = out.cooling_until.get_mut(i) {
                *slot = (*slot).max(cooling as u64);
            }
            let fresh = now_ms.saturating_sub(sampled as u64) <= STALE_MS;
            let w = samples.min(FULL_WEIGHT);
            if latency >= 0.0 && fresh && w > 0.0 {
                if let (Some(sum), Some(total)) = (weighted.get_mut(i), out.samples.get_mut(i)) {
                    *sum += latency * w;
                    *total += w;
                }
            }
        }
    }
    for ((l, sum), total) in out.latency_ms.iter_mut().zip(&weighted).zip(&out.samples) {
        if *total > 0.0 {
            *l = sum / total;
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::bandit::{Algorithm, Decay, StrategyParams};

    fn strategy(decay: Decay) -> Strategy {
        let mut p = StrategyParams::new(Algorithm::Thompson);
        p.decay = decay;
        Strategy::new(p, 2).unwrap()
    }

    fn learned_from(s: &Strategy, rewards: &[(usize, f64)], now: u64) -> (ModelState, Learned) {
        let mut st = s.initial_state(&["a", "b"]);
        for (arm, r) in rewards {
            s.decay_to(&mut st, now);
            s.update(&mut st, *arm, *r).unwrap();
        }
        let l = own_learned(s, &st, &identity(s));
        (st, l)
    }

    #[test]
    fn three_replicas_add_up_to_one_learner() {
        let s = strategy(Decay::None);
        let rewards: Vec<(usize, f64)> = (0..30)
            .map(|i| (i % 2, f64::from(u8::from(i % 3 != 0))))
            .collect();
        // One learner sees everything; three replicas see a third each.
        let (one, _) = learned_from(&s, &rewards, 0);
        let parts: Vec<(ModelState, Learned)> = (0..3)
            .map(|r| {
                let mine: Vec<(usize, f64)> = rewards.iter().skip(r).step_by(3).copied().collect();
                learned_from(&s, &mine, 0)
            })
            .collect();
        let (own, _) = &parts[0];
        let others: Vec<&Learned> = parts[1..].iter().map(|(_, l)| l).collect();
        let mut with_fleet = own.clone();
        with_fleet.ext = Some(crate::bandit::StateExt {
            as_of_ms: 0,
            fleet: Some(fleet_part(&others, 2, &["a", "b"], 0)),
            linear: None,
        });
        let view = s.view(&with_fleet);
        assert_eq!(view.updates, one.updates);
        for (v, o) in view.arms.iter().zip(&one.arms) {
            assert!(
                (v.pulls - o.pulls).abs() < 1e-9 && (v.alpha - o.alpha).abs() < 1e-9,
                "{v:?} {o:?}"
            );
            assert!((v.beta - o.beta).abs() < 1e-9 && (v.reward_sum - o.reward_sum).abs() < 1e-9);
        }
    }

    #[test]
    fn time_decay_composes_where_per_update_decay_does_not() {
        // One learner with a 10 s half-life seeing rewards at 0 s, 10 s and 20 s equals two
        // replicas seeing some each, merged at 20 s.
        let s = strategy(Decay::HalfLifeSeconds { seconds: 10.0 });
        const T0: u64 = 1_700_000_000_000;
        let all = [(0, 1.0, T0), (1, 0.0, T0 + 10_000), (0, 1.0, T0 + 20_000)];
        let mut one = s.initial_state(&["a", "b"]);
        for (arm, r, t) in all {
            s.decay_to(&mut one, t);
            s.update(&mut one, arm, r).unwrap();
        }
        let mut x = s.initial_state(&["a", "b"]);
        let mut y = s.initial_state(&["a", "b"]);
        for (i, (arm, r, t)) in all.iter().enumerate() {
            let st = if i == 1 { &mut y } else { &mut x };
            s.decay_to(st, *t);
            s.update(st, *arm, *r).unwrap();
        }
        let ly = own_learned(&s, &y, &identity(&s));
        let mut merged = x.clone();
        merged.ext.as_mut().unwrap().fleet = Some(fleet_part(&[&ly], 1, &["a", "b"], T0 + 20_000));
        let view = s.view(&merged);
        for (v, o) in view.arms.iter().zip(&one.arms) {
            assert!(
                (v.pulls - o.pulls).abs() < 1e-9 && (v.alpha - o.alpha).abs() < 1e-9,
                "{v:?} {o:?}"
            );
        }
        // The identity tells the two decays (and priors) apart.
        assert_ne!(identity(&s), identity(&strategy(Decay::None)));
    }

    #[test]
    fn fleet_health_takes_the_latest_cooldown_and_weighs_fresh_latencies() {
        use crate::vecmap::VecMap;
        let doc = |health: VecMap<String, TargetHealth>| Contribution {
            v: 1,
            replica: "r".into(),
            incarnation: "i".into(),
            seq: 1,
            written_ms: 1,
            models: VecMap::new(),
            health: VecMap::from([("m".into(), health)]),
        };
        let now = 1_000_000_000;
        let a = doc(VecMap::from([
            ("x".into(), [100.0, 200.0, 5.0, (now - 1000) as f64]),
            ("y".into(), [0.0, 50.0, 5.0, (now - STALE_MS - 1) as f64]),
        ]));
        let b = doc(VecMap::from([(
            "x".into(),
            [300.0, 100.0, 1.0, now as f64],
        )]));
        let h = fleet_health(&[&a, &b], "m", &["x", "y", "z"], now);
        assert_eq!(h.cooling_until, [300, 0, 0]);
        // x: (200·5 + 100·1) / 6; y's only estimate is stale; z has none.
        assert!((h.latency_ms[0] - 1100.0 / 6.0).abs() < 1e-9, "{h:?}");
        assert_eq!((h.latency_ms[1], h.latency_ms[2]), (-1.0, -1.0));
        assert_eq!(h.samples, [6.0, 0.0, 0.0]);
    }

    #[test]
    fn taking_away_a_folded_snapshot_leaves_what_came_after() {
        let s = strategy(Decay::None);
        let (mut st, snapshot) = learned_from(&s, &[(0, 1.0), (1, 0.0)], 0);
        s.update(&mut st, 0, 0.5).unwrap();
        correct_own(&s, &mut st, &snapshot, -1.0, 0);
        assert_eq!(st.updates, 1);
        assert_eq!(
            (st.arms[0].pulls, st.arms[0].alpha, st.arms[0].beta),
            (1.0, 1.5, 1.5)
        );
        assert_eq!(
            (st.arms[1].pulls, st.arms[1].alpha, st.arms[1].beta),
            (0.0, 1.0, 1.0)
        );
        correct_own(&s, &mut st, &snapshot, 1.0, 0);
        assert_eq!(st.updates, 3);
        assert_eq!(st.arms[0].pulls, 2.0);
    }
}
