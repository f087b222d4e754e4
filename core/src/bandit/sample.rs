//! Random variates built on [`Rng::next_f64`]: standard normal, Gamma and Beta.
//!
//! No sampler here can loop forever, divide by zero or take `ln(0)`: rejection loops are capped
//! (the cap is reached with probability far below 2^-100) and fall back to the distribution's
//! mean, and every logarithm is taken of a number in `(0, 1]`. Invalid shapes (zero, negative,
//! NaN, infinite) give a documented fallback value instead of a trap, because the callers run
//! inside a wasm VM where a panic kills it. The bandit validates its parameters, so the
//! fallbacks are a last line of defence, not a feature.

use crate::rng::Rng;

/// Rejection rounds before a sampler gives up and returns its fallback. The acceptance
/// probability of each round is above 0.75 for the polar method and above 0.95 for
/// Marsaglia–Tsang, so 64 consecutive rejections happen with probability below 1e-38.
const MAX_ROUNDS: u32 = 64;

/// Uniform in `(0, 1]`: safe to pass to `ln`.
fn open_unit(rng: &mut Rng) -> f64 {
    1.0 - rng.next_f64()
}

/// A standard normal variate (mean 0, variance 1), by Marsaglia's polar form of Box–Muller.
///
/// The second variate of each pair is discarded: the generator is cheap and keeping no hidden
/// state makes draws reproducible from the [`Rng`] alone.
pub fn standard_normal(rng: &mut Rng) -> f64 {
    for _ in 0..MAX_ROUNDS {
        let u = 2.0 * rng.next_f64() - 1.0;
        let v = 2.0 * rng.next_f64() - 1.0;
        let s = u * u + v * v;
        // s == 0 would make ln(s) = -inf; s >= 1 falls outside the unit disc.
        if s > 0.0 && s < 1.0 {
            return u * (-2.0 * s.ln() / s).sqrt();
        }
    }
    0.0
}

/// Natural logarithm of a Gamma(`shape`, 1) variate.
///
/// Working in log space keeps tiny shapes usable: with `shape < 1` the variate is
/// `G(shape + 1) · U^(1/shape)`, whose value underflows to 0 for small shapes although its
/// logarithm, `ln G(shape + 1) + ln(U) / shape`, is an ordinary finite number.
///
/// Returns `f64::NEG_INFINITY` (a Gamma value of 0) when `shape` is not a finite number above 0.
pub fn ln_gamma_variate(rng: &mut Rng, shape: f64) -> f64 {
    if !(shape.is_finite() && shape > 0.0) {
        return f64::NEG_INFINITY;
    }
    if shape < 1.0 {
        // Marsaglia–Tsang boost: X ~ Gamma(a + 1), U ~ U(0, 1] => X · U^(1/a) ~ Gamma(a).
        let boosted = ln_gamma_variate(rng, shape + 1.0);
        return boosted + open_unit(rng).ln() / shape;
    }
    // Marsaglia & Tsang (2000), "A simple method for generating gamma variables", for a >= 1.
    let d = shape - 1.0 / 3.0;
    let c = 1.0 / (9.0 * d).sqrt();
    for _ in 0..MAX_ROUNDS {
        let x = standard_normal(rng);
        let t = 1.0 + c * x;
        if t <= 0.0 {
            continue;
        }
        let v = t * t * t;
        let u = open_unit(rng);
        let x2 = x * x;
        // Squeeze first (cheap), then the exact log test; u in (0, 1] and v > 0, so both
        // logarithms are finite.
        if u < 1.0 - 0.0331 * x2 * x2 || u.ln() < 0.5 * x2 + d * (1.0 - v + v.ln()) {
            return (d * v).ln();
        }
    }
    shape.ln()
}

/// A Gamma(`shape`, 1) variate; 0 when `shape` is not a finite number above 0.
pub fn gamma(rng: &mut Rng, shape: f64) -> f64 {
    ln_gamma_variate(rng, shape).exp()
}

/// A Beta(`alpha`, `beta`) variate in `[0, 1]`, as `X / (X + Y)` with `X ~ Gamma(alpha)` and
/// `Y ~ Gamma(beta)`, computed from their logarithms so that neither underflow nor overflow can
/// produce NaN.
///
/// When a parameter is not a finite number above 0, the result is 0.5 if both are invalid, and
/// otherwise leans entirely to the valid side (0 if `alpha` is invalid, 1 if `beta` is).
pub fn beta(rng: &mut Rng, alpha: f64, beta: f64) -> f64 {
    let valid = |p: f64| p.is_finite() && p > 0.0;
    match (valid(alpha), valid(beta)) {
        (true, true) => {}
        (false, false) => return 0.5,
        (false, true) => return 0.0,
        (true, false) => return 1.0,
    }
    let ln_x = ln_gamma_variate(rng, alpha);
    let ln_y = ln_gamma_variate(rng, beta);
    // X / (X + Y) = 1 / (1 + exp(ln Y - ln X)); exp overflowing to +inf gives exactly 0.
    let ratio = 1.0 / (1.0 + (ln_y - ln_x).exp());
    if ratio.is_nan() {
        // Only reachable if both logs are -inf (impossible for valid shapes); stay in range.
        0.5
    } else {
        ratio
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

    fn mean_var(xs: &[f64]) -> (f64, f64) {
        let n = xs.len() as f64;
        let m = xs.iter().sum::<f64>() / n;
        let v = xs.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (n - 1.0);
        (m, v)
    }

    #[test]
    fn normal_moments() {
        let mut rng = Rng::seed_from_u64(1);
        let xs: Vec<f64> = (0..200_000).map(|_| standard_normal(&mut rng)).collect();
        let (m, v) = mean_var(&xs);
        // Standard error of the mean is 1/sqrt(200k) ~ 0.0022.
        assert!(m.abs() < 0.015, "mean {m}");
        assert!((v - 1.0).abs() < 0.02, "variance {v}");
        assert!(xs.iter().all(|x| x.is_finite()));
    }

    #[test]
    fn gamma_mean_and_variance_match_shape() {
        // Gamma(k, 1): mean k, variance k. Includes shapes below 1 (the boost path).
        for (i, &k) in [0.05, 0.3, 0.9, 1.0, 2.5, 7.0, 150.0].iter().enumerate() {
            let mut rng = Rng::seed_from_u64(100 + i as u64);
            let xs: Vec<f64> = (0..100_000).map(|_| gamma(&mut rng, k)).collect();
            assert!(xs.iter().all(|x| x.is_finite() && *x >= 0.0), "shape {k}");
            let (m, v) = mean_var(&xs);
            // 6 standard errors of the mean: sqrt(k / n) * 6.
            let tol = 6.0 * (k / 100_000.0_f64).sqrt();
            assert!((m - k).abs() < tol, "shape {k}: mean {m}, tol {tol}");
            assert!((v - k).abs() < 0.1 * k, "shape {k}: variance {v}");
        }
    }

    #[test]
    fn beta_mean_within_bounds() {
        // Beta(a, b): mean a / (a + b), variance ab / ((a+b)^2 (a+b+1)).
        let cases = [
            (1.0, 1.0),
            (2.3, 2.7),
            (0.5, 0.5),
            (10.0, 2.0),
            (0.2, 3.0),
            (300.0, 700.0),
        ];
        for (i, &(a, b)) in cases.iter().enumerate() {
            let mut rng = Rng::seed_from_u64(7 + i as u64);
            let xs: Vec<f64> = (0..100_000).map(|_| beta(&mut rng, a, b)).collect();
            assert!(xs.iter().all(|x| (0.0..=1.0).contains(x)), "Beta({a}, {b})");
            let (m, v) = mean_var(&xs);
            let mean = a / (a + b);
            let var = a * b / ((a + b) * (a + b) * (a + b + 1.0));
            let tol = 6.0 * (var / 100_000.0).sqrt();
            assert!((m - mean).abs() < tol, "Beta({a}, {b}) mean {m} vs {mean}");
            assert!(
                (v - var).abs() < 0.1 * var,
                "Beta({a}, {b}) var {v} vs {var}"
            );
        }
    }

    #[test]
    fn tiny_shapes_do_not_produce_nan() {
        let mut rng = Rng::seed_from_u64(3);
        let mut ones = 0;
        for _ in 0..10_000 {
            let x = beta(&mut rng, 1e-3, 1e-3);
            assert!((0.0..=1.0).contains(&x));
            if x > 0.5 {
                ones += 1;
            }
            assert!(ln_gamma_variate(&mut rng, 1e-300).is_finite());
        }
        // Beta(e, e) with tiny e puts half its mass near 0 and half near 1.
        assert!((4_000..6_000).contains(&ones), "{ones}");
    }

    #[test]
    fn invalid_shapes_fall_back() {
        let mut rng = Rng::seed_from_u64(4);
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            assert_eq!(gamma(&mut rng, bad), 0.0);
            assert_eq!(beta(&mut rng, bad, 1.0), 0.0);
            assert_eq!(beta(&mut rng, 1.0, bad), 1.0);
            assert_eq!(beta(&mut rng, bad, bad), 0.5);
        }
        let huge = gamma(&mut rng, 1e300);
        assert!(huge.is_finite() && huge > 0.0);
    }
}
