//! The `LinUcb` algorithm inside [`Strategy`]: its parameter checks, its part of the config id,
//! selection for a context and the update of the chosen arm's regression. The math is in
//! [`super::linear`], the features in [`super::context`].

use super::context::{Context, MAX_FEATURES};
use super::linear::{LinearArm, LinearPart};
use super::state::{ModelState, StateExt};
use super::strategy::{
    argmax, out_of_range, Algorithm, Decay, ParamError, Strategy, StrategyParams,
};
use crate::format_float::plain;
use crate::rng::Rng;

/// The regression learns `reward − 0.5`: the ridge pulls every estimate towards 0, so an arm
/// that has seen little is taken for a 0.5 arm plus its bonus, not a 0 arm no bonus can lift
/// above a learned 0.8 (which would leave it unexplored for good). A constant shift changes no
/// ranking.
pub const REWARD_CENTRE: f64 = 0.5;

/// Widest exploration accepted: the bonus multiplies a standard deviation of rewards in [0, 1].
pub const MAX_ALPHA: f64 = 100.0;
/// Largest ridge: a prior worth a million observations is a typo.
pub const MAX_RIDGE: f64 = 1e6;

fn error(field: &'static str, reason: String) -> ParamError {
    ParamError {
        field,
        arm: None,
        reason,
    }
}

/// The checks specific to `LinUcb` (and that nothing else takes features).
pub(super) fn validate(params: &StrategyParams) -> Result<(), ParamError> {
    let Algorithm::LinUcb { alpha, ridge } = params.algorithm else {
        if !params.features.is_empty() {
            return Err(error("features", "only linucb takes features".into()));
        }
        return Ok(());
    };
    if !(0.0..=MAX_ALPHA).contains(&alpha) {
        return Err(out_of_range(
            "alpha",
            format_args!("must be within [0, {}]", plain(MAX_ALPHA)),
            alpha,
        ));
    }
    if !(ridge > 0.0 && ridge <= MAX_RIDGE) {
        return Err(out_of_range(
            "ridge",
            format_args!("must be above 0 and at most {}", plain(MAX_RIDGE)),
            ridge,
        ));
    }
    let n = params.features.len();
    if n == 0 || n > MAX_FEATURES {
        return Err(error(
            "features",
            format!("must list 1 to {MAX_FEATURES} features, got {n}"),
        ));
    }
    if let Some((i, f)) = (params.features.iter().enumerate())
        .find(|(i, f)| params.features.iter().take(*i).any(|g| g == *f))
    {
        return Err(error("features", format!("{f} is listed twice (at {i})")));
    }
    if matches!(params.decay, Decay::HalfLifeSeconds { .. }) {
        return Err(error(
            "decay.half_life_seconds",
            "linucb decays per observation only (gamma or half_life)".into(),
        ));
    }
    Ok(())
}

/// What `LinUcb` adds to the config id: the ridge (folded into every `A`) and the features
/// (what each coordinate means). Nothing for the other algorithms, so their ids are unchanged.
pub(super) fn identity(s: &Strategy) -> Vec<u8> {
    let Algorithm::LinUcb { ridge, .. } = s.algorithm() else {
        return Vec::new();
    };
    let mut bytes = b"linucb".to_vec();
    bytes.extend(ridge.to_bits().to_le_bytes());
    for f in &s.features {
        bytes.extend(f.to_string().bytes());
        bytes.push(0);
    }
    bytes
}

impl Strategy {
    /// Dimensions of the regression: the bias and each feature.
    pub fn dims(&self) -> usize {
        self.features.len() + 1
    }

    /// The configured features.
    pub fn features(&self) -> &[super::context::Feature] {
        &self.features
    }

    /// The vector `context` stands for: bias only when it is absent or made for other features.
    fn vector(&self, context: Option<&Context>) -> Vec<f64> {
        match context {
            Some(c) if c.len() + 1 == self.dims() => c.vector(),
            _ => {
                let mut x = vec![0.0; self.dims()];
                if let Some(bias) = x.first_mut() {
                    *bias = 1.0;
                }
                x
            }
        }
    }

    /// The arm with the highest upper confidence bound for `context`; ties at random, an arm
    /// whose statistics do not factor never wins.
    pub(super) fn linucb_pick(
        &self,
        state: &ModelState,
        context: Option<&Context>,
        alpha: f64,
        rng: &mut Rng,
    ) -> usize {
        let Algorithm::LinUcb { ridge, .. } = self.algorithm() else {
            return 0;
        };
        let x = self.vector(context);
        let learned = state.linear();
        argmax(&state.arms, rng, |arm, _| {
            match learned.and_then(|l| l.arm(&arm.name)) {
                Some(l) => l.ucb(&x, alpha),
                // A = ridge·I, b = 0: θ = 0 and xᵀA⁻¹x = |x|² / ridge.
                None => alpha * (x.iter().map(|v| v * v).sum::<f64>() / ridge).sqrt(),
            }
        })
    }

    /// Discounts every arm's regression (per-update decay) and adds `(context, reward)` to
    /// `arm`'s. Arms no longer in the state are dropped; without a context nothing is added.
    pub(super) fn linucb_learn(
        &self,
        state: &mut ModelState,
        arm: usize,
        context: Option<&Context>,
        reward: f64,
    ) {
        let Algorithm::LinUcb { ridge, .. } = self.algorithm() else {
            return;
        };
        let d = self.dims();
        let names: Vec<String> = state.arms.iter().map(|a| a.name.clone()).collect();
        let ext = state.ext.get_or_insert(StateExt {
            as_of_ms: 0,
            fleet: None,
            linear: None,
        });
        let part = ext.linear.get_or_insert(LinearPart { arms: Vec::new() });
        part.arms
            .retain(|a| a.dims() == d && names.contains(&a.name));
        let gamma = self.gamma();
        part.arms.iter_mut().for_each(|a| a.discount(gamma, ridge));
        let (Some(context), Some(name)) = (context, names.get(arm)) else {
            return;
        };
        if context.len() + 1 != d {
            return;
        }
        let i = match part.arms.iter().position(|a| a.name == *name) {
            Some(i) => i,
            None => {
                part.arms.push(LinearArm::fresh(name, d, ridge));
                part.arms.len() - 1
            }
        };
        if let Some(a) = part.arms.get_mut(i) {
            a.update(&context.vector(), reward - REWARD_CENTRE, 1.0, ridge);
        }
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
    use crate::bandit::context::{Facts, Feature};
    use crate::bandit::{decode, encode};

    fn linucb(features: &[&str]) -> Strategy {
        let mut p = StrategyParams::new(Algorithm::LinUcb {
            alpha: 0.5,
            ridge: 1.0,
        });
        p.features = features
            .iter()
            .map(|f| Feature::parse(f).unwrap())
            .collect();
        Strategy::new(p, 2).unwrap()
    }

    fn ctx(s: &Strategy, prompt_tokens: u64) -> Context {
        Context::of(
            s.features(),
            &Facts {
                prompt_tokens,
                ..Facts::default()
            },
        )
    }

    /// Short prompts: arm 0 answers well (0.9) and arm 1 badly (0.2); long prompts the
    /// reverse. A context-free bandit can only find the better mix; LinUCB learns both.
    #[test]
    fn learns_the_best_arm_per_context() {
        let s = linucb(&["prompt_tokens"]);
        let mut st = s.initial_state(&["small", "large"]);
        let mut rng = Rng::seed_from_u64(7);
        let (short, long) = (ctx(&s, 10), ctx(&s, 8000));
        let p = |arm: usize, long: bool| match (arm, long) {
            (0, false) | (1, true) => 0.9,
            _ => 0.2,
        };
        let mut right = [0usize; 2];
        for step in 0..4000 {
            let is_long = rng.next_f64() < 0.5;
            let c = if is_long { long } else { short };
            let arm = s.select_in(&st, Some(&c), &mut rng);
            let reward = if rng.next_f64() < p(arm, is_long) {
                1.0
            } else {
                0.0
            };
            s.update_in(&mut st, arm, Some(&c), reward).unwrap();
            if step >= 3000 && arm == usize::from(is_long) {
                right[usize::from(is_long)] += 1;
            }
        }
        // Last 1000 steps, ~500 per context: at least 90% on the right arm.
        assert!(right.iter().all(|&n| n > 450), "{right:?}");
        let part = st.linear().unwrap();
        assert_eq!(part.arms.len(), 2);
        let round = decode(&encode(&st)).unwrap();
        assert_eq!(round, st);
        // Selection is the same from the decoded state.
        let mut a = Rng::seed_from_u64(1);
        let mut b = Rng::seed_from_u64(1);
        for _ in 0..50 {
            assert_eq!(
                s.select_in(&st, Some(&short), &mut a),
                s.select_in(&round, Some(&short), &mut b)
            );
        }
    }

    #[test]
    fn codec_keeps_the_regressions_and_survives_damage() {
        let s = linucb(&["prompt_tokens", "tools"]);
        let mut st = s.initial_state(&["a", "b"]);
        let c = ctx(&s, 300);
        s.update_in(&mut st, 1, Some(&c), 0.75).unwrap();
        let bytes = encode(&st);
        assert_eq!(decode(&bytes).unwrap(), st);
        // The tail is [as_of_ms, fleet, [[[name, A, b]]]]: a state without it is byte for byte
        // what earlier builds wrote, and reads back without it.
        let plain = s.initial_state(&["a", "b"]);
        assert_eq!(decode(&encode(&plain)).unwrap().linear(), None);
        assert!(bytes.len() > encode(&plain).len() + 9 * 8);
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut]).is_err());
        }
        for i in 0..bytes.len() {
            for flip in [0x01u8, 0x80, 0xff] {
                let mut b = bytes.clone();
                b[i] ^= flip;
                if let Ok(damaged) = decode(&b) {
                    damaged.check().unwrap();
                    let mut rng = Rng::seed_from_u64(i as u64);
                    assert!(s.select_in(&damaged, Some(&c), &mut rng) < 2);
                }
            }
        }
        // A matrix that decodes but does not factor never wins, and never traps.
        let mut broken = st.clone();
        let arm = &mut broken.ext.as_mut().unwrap().linear.as_mut().unwrap().arms[0];
        arm.a[1] = 1e6; // off-diagonal far above the diagonal: not positive definite
        broken.check().unwrap();
        let mut rng = Rng::seed_from_u64(5);
        assert!((0..50).all(|_| s.select_in(&broken, Some(&c), &mut rng) == 0));
    }

    #[test]
    fn fresh_arms_explore_and_ties_are_random() {
        let s = linucb(&["prompt_tokens", "tools"]);
        let st = s.initial_state(&["a", "b"]);
        let mut rng = Rng::seed_from_u64(3);
        let c = ctx(&s, 100);
        let zeros = (0..2000)
            .filter(|_| s.select_in(&st, Some(&c), &mut rng) == 0)
            .count();
        assert!((900..1100).contains(&zeros), "{zeros}");
    }

    #[test]
    fn update_without_context_or_of_another_size_counts_only() {
        let s = linucb(&["prompt_tokens"]);
        let mut st = s.initial_state(&["a", "b"]);
        s.update_in(&mut st, 0, None, 1.0).unwrap();
        let wrong = Context::from_values(&[0.1, 0.2]);
        s.update_in(&mut st, 0, Some(&wrong), 1.0).unwrap();
        assert_eq!(st.arms[0].pulls, 2.0);
        assert!(st.linear().unwrap().arms.is_empty());
        s.update(&mut st, 0, 0.5).unwrap();
        // Removed targets lose their regression at the next update.
        let right = ctx(&s, 5);
        s.update_in(&mut st, 1, Some(&right), 1.0).unwrap();
        let (mut st, _) = s.reconcile(st, &["a"]);
        s.update_in(&mut st, 0, Some(&right), 1.0).unwrap();
        let names: Vec<_> = st.linear().unwrap().arms.iter().map(|a| &a.name).collect();
        assert_eq!(names, ["a"]);
        // Reward errors change nothing.
        let before = st.clone();
        assert!(s.update_in(&mut st, 0, Some(&right), f64::NAN).is_err());
        assert_eq!(st, before);
    }

    #[test]
    fn parameters_are_checked_and_part_of_the_id() {
        let base = StrategyParams::new(Algorithm::LinUcb {
            alpha: 1.0,
            ridge: 1.0,
        });
        let with = |f: &dyn Fn(&mut StrategyParams)| {
            let mut p = base.clone();
            p.features = vec![Feature::PromptTokens];
            f(&mut p);
            Strategy::new(p, 2)
                .map(|s| s.config_id())
                .map_err(|e| e.to_string())
        };
        let id = with(&|_| {}).unwrap();
        assert_eq!(
            with(&|p| p.algorithm = Algorithm::LinUcb {
                alpha: 3.0,
                ridge: 1.0
            }),
            Ok(id),
            "alpha only changes how the statistics are used"
        );
        assert_ne!(
            with(&|p| p.algorithm = Algorithm::LinUcb {
                alpha: 1.0,
                ridge: 2.0
            })
            .unwrap(),
            id
        );
        assert_ne!(
            with(&|p| p.features = vec![Feature::MaxTokens]).unwrap(),
            id
        );
        for (f, message) in [
            (
                &(|p: &mut StrategyParams| {
                    p.algorithm = Algorithm::LinUcb {
                        alpha: -1.0,
                        ridge: 1.0,
                    }
                }) as &dyn Fn(&mut StrategyParams),
                "alpha: must be within [0, 100], got -1",
            ),
            (
                &|p: &mut StrategyParams| {
                    p.algorithm = Algorithm::LinUcb {
                        alpha: 1.0,
                        ridge: f64::NAN,
                    }
                },
                "ridge: must be above 0 and at most 1000000, got NaN",
            ),
            (
                &|p: &mut StrategyParams| p.features.clear(),
                "features: must list 1 to 8 features, got 0",
            ),
            (
                &|p: &mut StrategyParams| p.features.push(Feature::PromptTokens),
                "features: prompt_tokens is listed twice (at 1)",
            ),
            (
                &|p: &mut StrategyParams| p.decay = Decay::HalfLifeSeconds { seconds: 60.0 },
                "decay.half_life_seconds: linucb decays per observation only (gamma or half_life)",
            ),
            (
                &|p: &mut StrategyParams| p.algorithm = Algorithm::Thompson,
                "features: only linucb takes features",
            ),
        ] {
            assert_eq!(with(f), Err(message.to_string()));
        }
        // The other algorithms' ids are unchanged by this module.
        let thompson = Strategy::new(StrategyParams::new(Algorithm::Thompson), 2).unwrap();
        assert!(identity(&thompson).is_empty());
    }
}
