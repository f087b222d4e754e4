//! Change detection: a sequential test per arm that restarts the arm's statistics when its
//! reward distribution shifts (`thompson` and `ucb1`, option `change_detection`).
//!
//! # The test
//! A two-sided Bernoulli CUSUM (Page 1954) on each arm's own rewards, with a reference mean
//! learned since the arm's last restart. After `warmup` observations, every reward `r` adds
//! the log-likelihood ratio of "the mean moved by `min_change`" against "it is the reference
//! `mu`":
//!
//! ```text
//! down += r ln(p/mu) + (1-r) ln((1-p)/(1-mu)),  p = mu - min_change   (then max(0, ·))
//! up   += the same with p = mu + min_change
//! alarm when down or up exceeds h = ln(1 / false_alarm_rate)
//! ```
//!
//! `mu = (sum + 1/2) / (n + 1)` (never exactly 0 or 1, so the ratios stay finite). The ratio is
//! linear in `r`, so fractional rewards in `[0, 1]` need nothing more: for any reward in
//! `[0, 1]` with mean `mu`, `exp(ratio)` is a supermartingale (the Bernoulli is the most
//! spread law on `[0, 1]` with a given mean), which gives a known mean `mu` Lorden's bound of
//! at least `1 / false_alarm_rate` observations between false alarms per direction. The mean
//! is estimated, so the bound holds once `n` is large; the warm-up keeps the first, noisy
//! estimates from testing at all. The simulator reports the measured rate.
//!
//! # Why CUSUM and not GLR
//! The Bernoulli GLR of GLR-klUCB (Besson et al. 2020) scans every split point of the arm's
//! history: its state grows with the history (or a window of raw rewards, hundreds of numbers
//! per arm) and so does the work per reward. This state is decoded by every worker on every
//! change and rewritten on every reward, so it must be small: CUSUM needs four numbers per arm
//! (`n`, `sum`, `down`, `up`) and constant work, and its detection delay after a shift of
//! `d >= min_change` is about `h / E[ratio]` rewards (about 50 for 0.9 → 0.5 at the defaults).
//!
//! # On an alarm
//! Only the arm that moved restarts (fresh statistics at the prior, detector in warm-up); the
//! others keep theirs. An arm that is rarely played learns of its own improvement slowly: give
//! it a `min_share` so it keeps being observed.

use crate::format_float::{fixed, plain};
use core::fmt;

#[cfg(any(test, feature = "testing"))]
use serde::{Deserialize, Serialize};

use super::state::{ArmState, ModelState};
use super::strategy::{out_of_range, ParamError, Prior};

/// Unvalidated change-detection parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChangeParams {
    /// Smallest shift of an arm's mean reward the test looks for, in `(0, 0.5]`.
    pub min_change: f64,
    /// Bound on false alarms per observation of an arm on steady traffic, in `(0, 0.01]`.
    pub false_alarm_rate: f64,
    /// Observations of an arm (since its last restart) before it is tested, 1 to 10,000.
    pub warmup: u32,
}

impl Default for ChangeParams {
    fn default() -> Self {
        ChangeParams {
            min_change: 0.1,
            false_alarm_rate: 1e-6,
            warmup: 30,
        }
    }
}

pub const MAX_WARMUP: u32 = 10_000;

impl ChangeParams {
    /// Checks every parameter; the error names it (`change_detection.<field>`).
    pub fn validate(&self) -> Result<(), ParamError> {
        let bad = |field: &'static str, reason: String| ParamError {
            field,
            arm: None,
            reason,
        };
        if !(self.min_change > 0.0 && self.min_change <= 0.5) {
            return Err(out_of_range(
                "change_detection.min_change",
                format_args!("must be within (0, 0.5]"),
                self.min_change,
            ));
        }
        if !(self.false_alarm_rate > 0.0 && self.false_alarm_rate <= 0.01) {
            return Err(out_of_range(
                "change_detection.false_alarm_rate",
                format_args!("must be within (0, 0.01]"),
                self.false_alarm_rate,
            ));
        }
        if !(1..=MAX_WARMUP).contains(&self.warmup) {
            return Err(bad(
                "change_detection.warmup",
                format!("must be from 1 to {MAX_WARMUP}, got {}", self.warmup),
            ));
        }
        Ok(())
    }
}

/// One arm's detector: four numbers, in the shared state beside the arm.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
#[cfg_attr(any(test, feature = "testing"), derive(Serialize, Deserialize))]
pub struct Watch {
    /// Observations since the arm's last restart.
    pub n: f64,
    /// Their sum (the reference mean is `sum / n`, smoothed).
    pub sum: f64,
    /// The CUSUM statistics for a fall and for a rise of the mean.
    pub down: f64,
    pub up: f64,
}

impl Watch {
    pub fn values(&self) -> [f64; 4] {
        [self.n, self.sum, self.down, self.up]
    }

    /// Usable numbers: finite, non-negative, `sum <= n` (with a rounding allowance).
    pub fn is_valid(&self) -> bool {
        let ok = self.values().iter().all(|v| v.is_finite() && *v >= 0.0);
        ok && self.sum <= self.n * (1.0 + 1e-9) + 1e-9
    }
}

/// The detectors of a model's arms, in arm order (same length as the arms, else ignored).
#[derive(Debug, Clone, PartialEq, Default)]
#[cfg_attr(any(test, feature = "testing"), derive(Serialize, Deserialize))]
pub struct ChangeState {
    pub arms: Vec<Watch>,
}

/// Which way an arm's mean moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Down,
    Up,
}

/// An alarm: `arm` restarted after `observations` rewards whose mean was `reference`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Alarm {
    pub arm: usize,
    pub direction: Direction,
    pub observations: f64,
    pub reference: f64,
}

impl fmt::Display for Alarm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let way = match self.direction {
            Direction::Down => "fell",
            Direction::Up => "rose",
        };
        write!(
            f,
            "mean reward {way} from {} (over {} rewards)",
            fixed::<3>(self.reference),
            plain(self.observations)
        )
    }
}

/// Compiled parameters: the threshold in log-likelihood units.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Detector {
    params: ChangeParams,
    min_change: f64,
    threshold: f64,
    warmup: f64,
}

impl Detector {
    pub fn new(p: ChangeParams) -> Result<Self, ParamError> {
        p.validate()?;
        Ok(Detector {
            params: p,
            min_change: p.min_change,
            threshold: (1.0 / p.false_alarm_rate).ln(),
            warmup: f64::from(p.warmup),
        })
    }

    /// The parameters it was made from.
    pub fn params(&self) -> ChangeParams {
        self.params
    }

    /// Folds `reward` (in `[0, 1]`) into `w`; `Some` when the test fires (the caller restarts
    /// the arm and `w`).
    pub fn step(&self, w: &mut Watch, reward: f64) -> Option<Direction> {
        if w.n >= self.warmup {
            let mu = (w.sum + 0.5) / (w.n + 1.0);
            w.down = (w.down + llr(reward, mu, mu - self.min_change)).max(0.0);
            w.up = (w.up + llr(reward, mu, mu + self.min_change)).max(0.0);
        }
        w.n += 1.0;
        w.sum += reward;
        if w.down > self.threshold {
            Some(Direction::Down)
        } else if w.up > self.threshold {
            Some(Direction::Up)
        } else {
            None
        }
    }
}

/// Runs `arm`'s detector of `state` on `reward` (already folded into the arm); on an alarm
/// restarts the arm at `prior` and its detector in warm-up. Detectors that do not line up with
/// the arms (first use, or a state written without them) start afresh.
pub fn watch(
    d: &Detector,
    state: &mut ModelState,
    arm: usize,
    reward: f64,
    prior: Prior,
) -> Option<Alarm> {
    let arms = state.arms.len();
    let change = state.change.get_or_insert_with(ChangeState::default);
    if change.arms.len() != arms {
        change.arms = vec![Watch::default(); arms];
    }
    let w = change.arms.get_mut(arm)?;
    let direction = d.step(w, reward)?;
    let alarm = Alarm {
        arm,
        direction,
        observations: w.n,
        reference: if w.n > 0.0 { w.sum / w.n } else { 0.0 },
    };
    *w = Watch::default();
    if let Some(a) = state.arms.get_mut(arm) {
        *a = ArmState::fresh(&a.name, prior);
    }
    Some(alarm)
}

/// Log-likelihood ratio of reward `r` under mean `p` against mean `mu` (Bernoulli form, linear
/// in `r`); 0 when `p` is outside `(0, 1)`: a shift that cannot happen is not tested.
fn llr(r: f64, mu: f64, p: f64) -> f64 {
    if !(p > 0.0 && p < 1.0) {
        return 0.0;
    }
    let v = r * (p / mu).ln() + (1.0 - r) * ((1.0 - p) / (1.0 - mu)).ln();
    if v.is_finite() {
        v
    } else {
        0.0
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use super::*;
    use crate::bandit::{Algorithm, Strategy, StrategyParams};
    use crate::rng::Rng;

    fn detector() -> Detector {
        Detector::new(ChangeParams::default()).unwrap()
    }

    /// Steps until the first alarm on `mean` (Bernoulli, or uniform around it when
    /// `fractional`), or `None` within `limit`.
    fn first_alarm(
        d: &Detector,
        w: &mut Watch,
        rng: &mut Rng,
        mean: f64,
        fractional: bool,
        limit: u32,
    ) -> Option<u32> {
        for t in 0..limit {
            let r = if fractional {
                // Uniform on [mean - 0.1, mean + 0.1]: a fractional reward with that mean.
                (mean - 0.1 + 0.2 * rng.next_f64()).clamp(0.0, 1.0)
            } else {
                f64::from(u8::from(rng.next_f64() < mean))
            };
            if d.step(w, r).is_some() {
                return Some(t);
            }
        }
        None
    }

    #[test]
    fn hand_computed_step() {
        let d = Detector::new(ChangeParams {
            warmup: 2,
            ..ChangeParams::default()
        })
        .unwrap();
        let mut w = Watch::default();
        assert_eq!(d.step(&mut w, 1.0), None);
        assert_eq!(d.step(&mut w, 0.0), None);
        assert_eq!((w.n, w.sum, w.down, w.up), (2.0, 1.0, 0.0, 0.0));
        // mu = 1.5 / 3 = 0.5; a reward of 0.25 against p = 0.4 and p = 0.6:
        // down: .25 ln(.8) + .75 ln(1.2) = -0.055786 + 0.136741 = 0.080955;
        // up: .25 ln(1.2) + .75 ln(.8) < 0.
        d.step(&mut w, 0.25);
        let down = 0.25 * 0.8f64.ln() + 0.75 * 1.2f64.ln();
        assert!((w.down - down).abs() < 1e-12, "{w:?}");
        assert!((w.down - 0.080_955).abs() < 1e-6);
        assert_eq!(w.up, 0.0, "a negative ratio leaves the statistic at 0");
        assert_eq!((w.n, w.sum), (3.0, 1.25));
    }

    /// 200 streams of 100,000 steady rewards per mean (seed 7): at most 10 of them may alarm
    /// at all, i.e. at most 5e-7 alarms per reward, below the configured 1e-6 per reward and
    /// direction (measured: 2, 0, 1 and 0 streams). A stream at a mean below `min_change` is
    /// only tested upwards.
    #[test]
    fn no_alarm_on_steady_streams() {
        let d = detector();
        let mut rng = Rng::seed_from_u64(7);
        for (mean, fractional) in [(0.9, false), (0.6, false), (0.05, false), (0.5, true)] {
            let mut alarmed = 0;
            for _ in 0..200 {
                let mut w = Watch::default();
                if first_alarm(&d, &mut w, &mut rng, mean, fractional, 100_000).is_some() {
                    alarmed += 1;
                }
            }
            assert!(alarmed <= 10, "{alarmed} of 200 streams at {mean} alarmed");
        }
    }

    /// After 5,000 steady rewards the mean moves: every one of 200 streams alarms within a
    /// bound of about 2.5 times the expected delay `h / E[ratio]` (h = ln 1e6 = 13.8): 0.9 → 0.5
    /// (0.288 per reward: 48), 0.6 → 0.9 (0.110: 126), fractional 0.7 → 0.4 (0.111: 125); the
    /// mean delay is below half the bound.
    #[test]
    fn alarm_soon_after_a_step_change() {
        let d = detector();
        let mut rng = Rng::seed_from_u64(8);
        let cases = [
            (0.9, 0.5, false, 120),
            (0.6, 0.9, false, 320),
            (0.7, 0.4, true, 320),
        ];
        for (before, after, fractional, bound) in cases {
            let mut total = 0;
            for _ in 0..200 {
                let mut w = Watch::default();
                assert_eq!(
                    first_alarm(&d, &mut w, &mut rng, before, fractional, 5_000),
                    None
                );
                total += first_alarm(&d, &mut w, &mut rng, after, fractional, bound)
                    .unwrap_or_else(|| panic!("{before} -> {after}: no alarm in {bound} ({w:?})"));
            }
            let mean = f64::from(total) / 200.0;
            assert!(mean < f64::from(bound) / 2.0, "{before} -> {after}: {mean}");
        }
    }
    #[test]
    fn direction_is_reported() {
        let d = detector();
        let mut w = Watch {
            n: 1000.0,
            sum: 900.0,
            ..Watch::default()
        };
        let down = (0..100).find_map(|_| d.step(&mut w, 0.0));
        assert_eq!(down, Some(Direction::Down));
        let mut w = Watch {
            n: 1000.0,
            sum: 100.0,
            ..Watch::default()
        };
        assert_eq!(
            (0..100).find_map(|_| d.step(&mut w, 1.0)),
            Some(Direction::Up)
        );
    }

    fn watched(algorithm: Algorithm) -> Strategy {
        let mut p = StrategyParams::new(algorithm);
        p.change = Some(ChangeParams::default());
        Strategy::new(p, 2).unwrap()
    }

    /// Through the strategy: arm 0 learns 0.9 for 2,000 rewards, then gets 0s; the alarm
    /// comes within 100 rewards, restarts arm 0 only (at the prior), and is reported once.
    #[test]
    fn an_alarm_restarts_the_arm_that_moved() {
        for algorithm in [Algorithm::Thompson, Algorithm::Ucb1] {
            let s = watched(algorithm);
            let mut st = s.initial_state(&["a", "b"]);
            let mut rng = Rng::seed_from_u64(3);
            for i in 0..2_000 {
                let r = f64::from(u8::from(rng.next_f64() < 0.9));
                assert_eq!(s.update_watched(&mut st, i % 2, None, r * 0.7), Ok(None));
            }
            let b = st.arms[1].clone();
            let alarm = (0..100).find_map(|_| s.update_watched(&mut st, 0, None, 0.0).unwrap());
            let alarm = alarm.unwrap();
            assert_eq!((alarm.arm, alarm.direction), (0, Direction::Down));
            assert!((alarm.reference - 0.63).abs() < 0.05, "{alarm}");
            assert_eq!(st.arms[0], ArmState::fresh("a", Prior::default()));
            assert_eq!(st.arms[1], b, "the other arm keeps its statistics");
            let change = st.change.as_ref().unwrap();
            assert_eq!(change.arms[0], Watch::default());
            assert_eq!(change.arms[1].n, 1_000.0);
            assert!(
                alarm.to_string().starts_with("mean reward fell from 0."),
                "{alarm}"
            );
            // The restarted arm is watched again (in warm-up).
            assert_eq!(s.update_watched(&mut st, 0, None, 0.0), Ok(None));
            assert_eq!(st.change.as_ref().unwrap().arms[0].n, 1.0);
        }
    }

    #[test]
    fn without_detection_the_state_has_no_detectors() {
        let s = watched(Algorithm::Thompson);
        let mut st = s.initial_state(&["a", "b"]);
        s.update_watched(&mut st, 1, None, 0.5).unwrap();
        assert_eq!(st.change.as_ref().map(|c| c.arms.len()), Some(2));
        // Turned off: the next update drops them.
        let plain = Strategy::new(StrategyParams::new(Algorithm::Thompson), 2).unwrap();
        assert_eq!(plain.update_watched(&mut st, 1, None, 0.5), Ok(None));
        assert_eq!(st.change, None);
        // Targets reordered: the detectors would sit on the wrong arms, so they start again.
        s.update_watched(&mut st, 1, None, 0.5).unwrap();
        let (moved, _) = s.reconcile(st.clone(), &["b", "a"]);
        assert_eq!(moved.change, None);
        let (same, _) = s.reconcile(st.clone(), &["a", "b"]);
        assert_eq!(same.change, st.change);
    }

    #[test]
    fn only_thompson_and_ucb1_detect_changes() {
        let mut p = StrategyParams::new(Algorithm::EpsilonGreedy { epsilon: 0.1 });
        p.change = Some(ChangeParams::default());
        assert_eq!(
            Strategy::new(p, 2).unwrap_err().to_string(),
            "change_detection: is available for thompson and ucb1 only"
        );
        let mut p = StrategyParams::new(Algorithm::Ucb1);
        p.change = Some(ChangeParams {
            warmup: 20_000,
            ..ChangeParams::default()
        });
        assert_eq!(
            crate::bandit::validate(&p, 2).unwrap_err().to_string(),
            "change_detection.warmup: must be from 1 to 10000, got 20000"
        );
    }

    #[test]
    fn parameters_are_validated() {
        let cases = [
            (
                ChangeParams {
                    min_change: 0.0,
                    ..ChangeParams::default()
                },
                "change_detection.min_change: must be within (0, 0.5], got 0",
            ),
            (
                ChangeParams {
                    false_alarm_rate: 0.5,
                    ..ChangeParams::default()
                },
                "change_detection.false_alarm_rate: must be within (0, 0.01], got 0.5",
            ),
            (
                ChangeParams {
                    false_alarm_rate: f64::NAN,
                    ..ChangeParams::default()
                },
                "change_detection.false_alarm_rate: must be within (0, 0.01], got NaN",
            ),
            (
                ChangeParams {
                    warmup: 0,
                    ..ChangeParams::default()
                },
                "change_detection.warmup: must be from 1 to 10000, got 0",
            ),
        ];
        for (p, message) in cases {
            assert_eq!(p.validate().unwrap_err().to_string(), message);
        }
        assert!(ChangeParams::default().validate().is_ok());
    }

    #[test]
    fn validity_of_stored_numbers() {
        assert!(Watch::default().is_valid());
        let w = |n, sum, down, up| Watch { n, sum, down, up };
        assert!(w(3.0, 1.5, 0.2, 9.0).is_valid());
        assert!(!w(3.0, 4.0, 0.0, 0.0).is_valid());
        assert!(!w(-1.0, 0.0, 0.0, 0.0).is_valid());
        assert!(!w(1.0, 0.0, f64::NAN, 0.0).is_valid());
        assert!(!w(1.0, 0.0, 0.0, f64::INFINITY).is_valid());
    }
}
