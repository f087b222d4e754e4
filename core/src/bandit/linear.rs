//! LinUCB (Li, Chu, Langford & Schapire 2010, disjoint model): per arm, a ridge regression of
//! the reward on the context vector `x` ([`super::context`]), and the arm with the highest
//! upper confidence bound `θᵀx + alpha · sqrt(xᵀ A⁻¹ x)` wins.
//!
//! LinUCB rather than linear Thompson sampling: its choice is a function of the state (ties
//! aside), so it is tested against hand-computed values and every worker holding the same state
//! agrees; it costs two triangular solves per arm and request, where linear Thompson sampling
//! also draws a `d`-dimensional normal vector per arm (`d` normal variates and a product with a
//! Cholesky factor of `A⁻¹`) and has a posterior scale to tune on top of the ridge.
//!
//! Per arm the state keeps the sufficient statistics, not their inverse:
//! `A = ridge · I + Σ xxᵀ` (symmetric, stored as its upper triangle, row by row) and
//! `b = Σ r·x`. Sums add exactly (two writers' increments, a discount), never drift the way an
//! inverse updated by Sherman–Morrison does, and are checked on decode. Selection solves with
//! a Cholesky factor of `A` (dimension at most [`MAX_DIMS`] = 9: under 300 multiply-adds per
//! arm); a factorisation that fails (a pivot not above [`MIN_PIVOT`], a NaN) scores the arm NaN,
//! which never wins, instead of trapping. With decay, what is above the ridge is discounted like
//! the Beta posteriors are.

#[cfg(any(test, feature = "testing"))]
use serde::{Deserialize, Serialize};

use super::context::MAX_DIMS;

/// Smallest pivot of a usable Cholesky factor. `A ⪰ ridge · I` with `ridge > 0` keeps every
/// pivot at least `sqrt(ridge)` in exact arithmetic; below this the state is broken.
pub const MIN_PIVOT: f64 = 1e-9;

/// Most arms a stored linear part may hold (the configuration's targets bound it far lower).
pub const MAX_LINEAR_ARMS: usize = 256;

/// One arm's statistics: `a` the upper triangle of `A` (`d(d+1)/2` values), `b` (`d`).
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(any(test, feature = "testing"), derive(Serialize, Deserialize))]
pub struct LinearArm {
    pub name: String,
    pub a: Vec<f64>,
    pub b: Vec<f64>,
}

/// The contextual statistics of a model, by arm name. Arms that have seen no reward are absent
/// (they are `A = ridge · I`, `b = 0`).
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(any(test, feature = "testing"), derive(Serialize, Deserialize))]
pub struct LinearPart {
    pub arms: Vec<LinearArm>,
}

/// Values in the upper triangle of a `d × d` matrix.
pub fn packed_len(d: usize) -> usize {
    d * (d + 1) / 2
}

/// Index of `(i, j)`, `i <= j`, in the packed upper triangle of a `d × d` matrix.
fn at(d: usize, i: usize, j: usize) -> usize {
    let (i, j) = if i <= j { (i, j) } else { (j, i) };
    i * d - i * (i + 1) / 2 + j
}

impl LinearArm {
    /// `A = ridge · I`, `b = 0`.
    pub fn fresh(name: &str, d: usize, ridge: f64) -> Self {
        let mut a = vec![0.0; packed_len(d)];
        for i in 0..d {
            if let Some(v) = a.get_mut(at(d, i, i)) {
                *v = ridge;
            }
        }
        LinearArm {
            name: name.to_owned(),
            a,
            b: vec![0.0; d],
        }
    }

    /// Dimension of the vectors.
    pub fn dims(&self) -> usize {
        self.b.len()
    }

    /// `A ← ridge·I + gamma·(A − ridge·I) + xxᵀ`, `b ← gamma·b + r·x`. `x` of another
    /// dimension changes nothing.
    pub fn update(&mut self, x: &[f64], reward: f64, gamma: f64, ridge: f64) {
        let d = self.dims();
        if x.len() != d {
            return;
        }
        self.discount(gamma, ridge);
        for (i, xi) in x.iter().enumerate() {
            for (j, xj) in x.iter().enumerate().skip(i) {
                if let Some(v) = self.a.get_mut(at(d, i, j)) {
                    *v += xi * xj;
                }
            }
        }
        for (bi, xi) in self.b.iter_mut().zip(x) {
            *bi += reward * xi;
        }
    }

    /// Multiplies what is above the ridge by `factor` (< 1 to decay).
    pub fn discount(&mut self, factor: f64, ridge: f64) {
        if factor >= 1.0 {
            return;
        }
        let d = self.dims();
        for i in 0..d {
            for j in i..d {
                if let Some(v) = self.a.get_mut(at(d, i, j)) {
                    let base = if i == j { ridge } else { 0.0 };
                    *v = base + factor * (*v - base);
                }
            }
        }
        self.b.iter_mut().for_each(|v| *v *= factor);
    }

    /// `(θᵀx, xᵀA⁻¹x)`: the estimated reward of `x` and its variance factor. `None` when `A`
    /// does not factor (not positive definite, NaN) or `x` has another dimension.
    pub fn estimate(&self, x: &[f64]) -> Option<(f64, f64)> {
        let d = self.dims();
        if x.len() != d || self.a.len() != packed_len(d) {
            return None;
        }
        let l = cholesky(&self.a, d)?;
        // A = LLᵀ: θ = L⁻ᵀ L⁻¹ b; xᵀA⁻¹x = |L⁻¹x|².
        let theta = back(&l, d, &forward(&l, d, &self.b));
        let z = forward(&l, d, x);
        let mean: f64 = theta.iter().zip(x).map(|(t, xi)| t * xi).sum();
        let var: f64 = z.iter().map(|v| v * v).sum();
        (mean.is_finite() && var.is_finite()).then_some((mean, var.max(0.0)))
    }

    /// The upper confidence bound `θᵀx + alpha · sqrt(xᵀA⁻¹x)`; NaN when
    /// [`estimate`](Self::estimate) fails.
    pub fn ucb(&self, x: &[f64], alpha: f64) -> f64 {
        self.estimate(x)
            .map_or(f64::NAN, |(mean, var)| mean + alpha * var.sqrt())
    }

    /// `θ = A⁻¹b`, for the state document.
    pub fn theta(&self) -> Option<Vec<f64>> {
        let d = self.dims();
        let l = cholesky(&self.a, d)?;
        Some(back(&l, d, &forward(&l, d, &self.b)))
    }

    /// Finite numbers, consistent lengths, a dimension of at most [`MAX_DIMS`], a positive
    /// diagonal (a sentence naming the field otherwise).
    pub fn check(&self, d: usize) -> Result<(), String> {
        let problem = if self.name.is_empty() || self.b.len() != d || self.a.len() != packed_len(d)
        {
            format_args!("expected {d} dimensions")
        } else if !self.a.iter().chain(&self.b).all(|v| v.is_finite()) {
            format_args!("numbers must be finite")
        } else if (0..d).any(|i| self.a.get(at(d, i, i)).is_none_or(|v| *v <= 0.0)) {
            format_args!("diagonal of A must be above 0")
        } else {
            return Ok(());
        };
        // One format for the three: the arm named first.
        Err(format!(
            "linear arm {}: {problem}",
            crate::quote::quoted(&self.name)
        ))
    }
}

impl LinearPart {
    /// The arm named `name`, if it has learned anything.
    pub fn arm(&self, name: &str) -> Option<&LinearArm> {
        self.arms.iter().find(|a| a.name == name)
    }

    /// At most [`MAX_LINEAR_ARMS`] arms, unique names, one dimension of at most [`MAX_DIMS`].
    pub fn check(&self) -> Result<(), String> {
        if self.arms.len() > MAX_LINEAR_ARMS {
            return Err(format!("linear: more than {MAX_LINEAR_ARMS} arms"));
        }
        let d = self.arms.first().map_or(0, LinearArm::dims);
        if (d == 0 && !self.arms.is_empty()) || d > MAX_DIMS {
            return Err(format!(
                "linear: dimension must be 1 to {MAX_DIMS}, got {d}"
            ));
        }
        for (i, arm) in self.arms.iter().enumerate() {
            arm.check(d)?;
            if self.arms.iter().take(i).any(|o| o.name == arm.name) {
                return Err(format!(
                    "linear arm {} appears twice",
                    crate::quote::quoted(&arm.name)
                ));
            }
        }
        Ok(())
    }
}

/// Lower Cholesky factor (row-major, `d × d`) of the packed symmetric `a`; `None` when a pivot
/// is not above [`MIN_PIVOT`] or anything is not finite.
fn cholesky(a: &[f64], d: usize) -> Option<Vec<f64>> {
    if d > MAX_DIMS || a.len() != packed_len(d) {
        return None;
    }
    let mut l = vec![0.0; d * d];
    for i in 0..d {
        for j in 0..=i {
            let mut sum = *a.get(at(d, i, j))?;
            for k in 0..j {
                sum -= l.get(i * d + k)? * l.get(j * d + k)?;
            }
            let v = if i == j {
                if !(sum.is_finite() && sum > MIN_PIVOT * MIN_PIVOT) {
                    return None;
                }
                sum.sqrt()
            } else {
                sum / l.get(j * d + j)?
            };
            *l.get_mut(i * d + j)? = v;
        }
    }
    Some(l)
}

/// Solves `L y = v` (forward substitution); pivots were checked by [`cholesky`].
fn forward(l: &[f64], d: usize, v: &[f64]) -> Vec<f64> {
    let mut y = vec![0.0; d];
    for i in 0..d {
        let mut sum = v.get(i).copied().unwrap_or(0.0);
        for k in 0..i {
            sum -= l.get(i * d + k).copied().unwrap_or(0.0) * y.get(k).copied().unwrap_or(0.0);
        }
        if let Some(slot) = y.get_mut(i) {
            *slot = sum / l.get(i * d + i).copied().unwrap_or(f64::NAN);
        }
    }
    y
}

/// Solves `Lᵀ x = y` (back substitution).
fn back(l: &[f64], d: usize, y: &[f64]) -> Vec<f64> {
    let mut x = vec![0.0; d];
    for i in (0..d).rev() {
        let mut sum = y.get(i).copied().unwrap_or(0.0);
        for k in i + 1..d {
            sum -= l.get(k * d + i).copied().unwrap_or(0.0) * x.get(k).copied().unwrap_or(0.0);
        }
        if let Some(slot) = x.get_mut(i) {
            *slot = sum / l.get(i * d + i).copied().unwrap_or(f64::NAN);
        }
    }
    x
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn two_dimensions_by_hand() {
        // ridge 1; x1 = (1, 0.5) with reward 1:
        //   A = [[2, .5], [.5, 1.25]], b = (1, .5), det A = 2.25,
        //   A⁻¹ = [[1.25, -.5], [-.5, 2]] / 2.25, θ = A⁻¹b = (1, .5) / 2.25,
        //   θᵀx1 = 1.25 / 2.25, x1ᵀA⁻¹x1 = 1.25 / 2.25 (Sherman–Morrison: |x|²/(1+|x|²)).
        let mut arm = LinearArm::fresh("a", 2, 1.0);
        assert_eq!(arm.a, [1.0, 0.0, 1.0]);
        arm.update(&[1.0, 0.5], 1.0, 1.0, 1.0);
        assert_eq!(arm.a, [2.0, 0.5, 1.25]);
        assert_eq!(arm.b, [1.0, 0.5]);
        let theta = arm.theta().unwrap();
        assert!(
            close(theta[0], 1.0 / 2.25) && close(theta[1], 0.5 / 2.25),
            "{theta:?}"
        );
        let (mean, var) = arm.estimate(&[1.0, 0.5]).unwrap();
        assert!(close(mean, 1.25 / 2.25) && close(var, 1.25 / 2.25));
        // x = (0, 1): θᵀx = .5/2.25; xᵀA⁻¹x = 2/2.25. UCB with alpha 0.5: + .5·sqrt(2/2.25).
        let ucb = arm.ucb(&[0.0, 1.0], 0.5);
        assert!(close(ucb, 0.5 / 2.25 + 0.5 * (2.0f64 / 2.25).sqrt()));

        // x2 = (1, 0), reward 0: A = [[3, .5], [.5, 1.25]], det 3.5,
        //   A⁻¹ = [[1.25, -.5], [-.5, 3]] / 3.5, θ = (1.25 - .25, -.5 + 1.5) / 3.5 = (1, 1) / 3.5.
        arm.update(&[1.0, 0.0], 0.0, 1.0, 1.0);
        let theta = arm.theta().unwrap();
        assert!(
            close(theta[0], 1.0 / 3.5) && close(theta[1], 1.0 / 3.5),
            "{theta:?}"
        );
        let (_, var) = arm.estimate(&[1.0, 0.0]).unwrap();
        assert!(close(var, 1.25 / 3.5));
    }

    #[test]
    fn discount_keeps_the_ridge() {
        let mut arm = LinearArm::fresh("a", 2, 2.0);
        arm.update(&[1.0, 1.0], 1.0, 1.0, 2.0);
        assert_eq!(arm.a, [3.0, 1.0, 3.0]);
        // gamma .5, then (1, 0) with reward .5: A = 2I + .5·[[1,1],[1,1]] + [[1,0],[0,0]].
        arm.update(&[1.0, 0.0], 0.5, 0.5, 2.0);
        assert_eq!(arm.a, [3.5, 0.5, 2.5]);
        assert_eq!(arm.b, [1.0, 0.5]);
    }

    #[test]
    fn broken_matrices_never_panic_nor_win() {
        let mut arm = LinearArm::fresh("a", 2, 1.0);
        for bad in [
            vec![0.0, 0.0, 0.0],
            vec![1.0, 2.0, 1.0], // not positive definite
            vec![f64::NAN, 0.0, 1.0],
            vec![1.0, 0.0],
        ] {
            arm.a = bad.clone();
            assert_eq!(arm.estimate(&[1.0, 1.0]), None, "{bad:?}");
            assert!(arm.ucb(&[1.0, 1.0], 1.0).is_nan());
        }
        let fresh = LinearArm::fresh("a", 2, 1.0);
        assert_eq!(fresh.estimate(&[1.0]), None, "wrong dimension");
        // Huge but finite sums still factor.
        let mut big = LinearArm::fresh("a", 2, 1.0);
        for _ in 0..1000 {
            big.update(&[1.0, 1e-3], 1.0, 1.0, 1.0);
        }
        assert!(big.estimate(&[1.0, 0.0]).is_some());
    }

    #[test]
    fn part_checks() {
        let arm = LinearArm::fresh("a", 3, 1.0);
        let mut part = LinearPart {
            arms: vec![arm.clone(), LinearArm::fresh("b", 3, 1.0)],
        };
        part.check().unwrap();
        part.arms[1].name = "a".into();
        assert!(part.check().unwrap_err().contains("twice"));
        part.arms[1] = LinearArm::fresh("b", 2, 1.0);
        assert!(part.check().is_err());
        part.arms[1] = LinearArm::fresh("b", 3, 1.0);
        part.arms[1].a[0] = -1.0;
        assert!(part.check().unwrap_err().contains("diagonal"));
        part.arms[1].a[0] = f64::INFINITY;
        assert!(part.check().unwrap_err().contains("finite"));
        let wide = LinearPart {
            arms: vec![LinearArm::fresh("w", MAX_DIMS + 1, 1.0)],
        };
        assert!(wide.check().is_err());
    }
}
