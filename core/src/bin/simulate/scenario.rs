//! The synthetic problems: arms, when they change, how feedback arrives, and the Lai–Robbins
//! lower bound for the steady Bernoulli ones.

use inference_router_core::bandit::sample;
use inference_router_core::rng::Rng;

/// Reward distribution of one arm.
#[derive(Clone, Copy)]
pub enum Arm {
    Bernoulli(f64),
    Beta(f64, f64),
}

impl Arm {
    pub fn mean(self) -> f64 {
        match self {
            Arm::Bernoulli(p) => p,
            Arm::Beta(a, b) => a / (a + b),
        }
    }

    pub fn draw(self, rng: &mut Rng) -> f64 {
        match self {
            Arm::Bernoulli(p) => f64::from(u8::from(rng.next_f64() < p)),
            Arm::Beta(a, b) => sample::beta(rng, a, b),
        }
    }
}

pub struct Scenario {
    pub name: &'static str,
    pub title: &'static str,
    pub before: Vec<Arm>,
    /// The arms from half-way on; `None`: steady.
    pub after: Option<Vec<Arm>>,
    /// Rewards are applied in batches of this many decisions (1: at once).
    pub batch: usize,
}

impl Scenario {
    /// The arms at step `t` of `steps`.
    pub fn arms(&self, t: u64, steps: u64) -> &[Arm] {
        match &self.after {
            Some(after) if t >= steps / 2 => after,
            _ => &self.before,
        }
    }

    /// The Lai–Robbins coefficient `c` (regret >= c ln T asymptotically) of a steady Bernoulli
    /// problem; `None` otherwise.
    pub fn lai_robbins(&self) -> Option<f64> {
        if self.after.is_some() {
            return None;
        }
        let means: Option<Vec<f64>> = (self.before.iter())
            .map(|a| match a {
                Arm::Bernoulli(p) => Some(*p),
                Arm::Beta(..) => None,
            })
            .collect();
        lai_robbins(&means?)
    }
}

/// `sum over suboptimal arms of (best - mean) / KL(mean, best)`, Bernoulli KL.
pub fn lai_robbins(means: &[f64]) -> Option<f64> {
    let best = means.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if !(best > 0.0 && best < 1.0) {
        return None;
    }
    let c = (means.iter())
        .filter(|m| **m < best)
        .map(|m| (best - m) / kl_bernoulli(*m, best))
        .sum();
    Some(c)
}

fn kl_bernoulli(p: f64, q: f64) -> f64 {
    let term = |a: f64, b: f64| if a > 0.0 { a * (a / b).ln() } else { 0.0 };
    term(p, q) + term(1.0 - p, 1.0 - q)
}

pub const NAMES: [&str; 5] = ["steady", "drift", "regime", "continuous", "batched"];

pub fn scenarios() -> Vec<Scenario> {
    let steady = || vec![Arm::Bernoulli(0.9), Arm::Bernoulli(0.6)];
    vec![
        Scenario {
            name: "steady",
            title: "Bernoulli arms 0.9 / 0.6, steady",
            before: steady(),
            after: None,
            batch: 1,
        },
        Scenario {
            name: "drift",
            title: "Bernoulli arms 0.9 / 0.6; the best falls to 0.5 half-way (0.6 is then best)",
            before: steady(),
            after: Some(vec![Arm::Bernoulli(0.5), Arm::Bernoulli(0.6)]),
            batch: 1,
        },
        Scenario {
            name: "regime",
            title: "Bernoulli arms 0.9 / 0.6 / 0.5, best and worst swap half-way",
            before: vec![
                Arm::Bernoulli(0.9),
                Arm::Bernoulli(0.6),
                Arm::Bernoulli(0.5),
            ],
            after: Some(vec![
                Arm::Bernoulli(0.5),
                Arm::Bernoulli(0.6),
                Arm::Bernoulli(0.9),
            ]),
            batch: 1,
        },
        Scenario {
            name: "continuous",
            title: "Beta-distributed rewards, means 0.7 / 0.55 / 0.5, best and worst swap half-way",
            before: vec![
                Arm::Beta(7.0, 3.0),
                Arm::Beta(5.5, 4.5),
                Arm::Beta(5.0, 5.0),
            ],
            after: Some(vec![
                Arm::Beta(5.0, 5.0),
                Arm::Beta(5.5, 4.5),
                Arm::Beta(7.0, 3.0),
            ]),
            batch: 1,
        },
        Scenario {
            name: "batched",
            title: "Bernoulli arms 0.9 / 0.6, steady, rewards applied in batches of 50",
            before: steady(),
            after: None,
            batch: 50,
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lai_robbins_of_the_steady_problem() {
        // KL(0.6, 0.9) = 0.6 ln(2/3) + 0.4 ln 4 = 0.311239; 0.3 / 0.311239 = 0.963890.
        let c = lai_robbins(&[0.9, 0.6]).unwrap_or(0.0);
        assert!((c - 0.963_890).abs() < 1e-6, "{c}");
        assert!((c * 10_000f64.ln() - 8.878).abs() < 1e-3);
        assert_eq!(lai_robbins(&[1.0, 0.5]), None);
    }
}
