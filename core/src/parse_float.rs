//! Decimal text to `f64`: the strings `str::parse::<f64>` accepts, read to the value it returns
//! (the tests compare the two bit for bit), without core's `dec2flt`, whose Eisel-Lemire table
//! alone is 10 KB of the module. Rewards, load reports and budgets are short decimals: they take
//! Clinger's fast path, one exact multiply or divide. Anything else is converted exactly by
//! "simple decimal conversion": a string of decimal digits halved or doubled by powers of two until
//! its binary exponent and 53 significant bits are known.

use crate::json::read::POW10;

/// Significant digits the exact conversion keeps; past them it only notes whether any is non-zero.
/// A value halfway between two adjacent f64s has at most 767 significant digits, so the first 800
/// digits of a number already lie on the same side of it as the whole number, or equal it (and
/// then a non-zero digit further on says "above").
const KEPT_DIGITS: usize = 800;

/// Reads `s` as `f64::from_str` does: an optional sign, then digits with at most one point (at
/// least one digit) and an optional exponent (`e` or `E`, optional sign, digits), or "inf",
/// "infinity" or "nan" in any case. No whitespace, underscores or hex. `None` where it refuses.
pub fn parse_f64(s: &str) -> Option<f64> {
    let (negative, body) = match s.as_bytes() {
        [b'-', rest @ ..] => (true, rest),
        [b'+', rest @ ..] => (false, rest),
        all => (false, all),
    };
    let magnitude = match Number::read(body) {
        Some(number) => number.value(),
        None => special(body)?,
    };
    Some(if negative { -magnitude } else { magnitude })
}

fn special(s: &[u8]) -> Option<f64> {
    if s.eq_ignore_ascii_case(b"inf") || s.eq_ignore_ascii_case(b"infinity") {
        Some(f64::INFINITY)
    } else if s.eq_ignore_ascii_case(b"nan") {
        Some(f64::NAN)
    } else {
        None
    }
}

/// A number as written, without its sign: worth (its digits as one integer) × 10^`exp10`.
struct Number<'a> {
    /// The digits and the point, if any, before the exponent.
    mantissa: &'a [u8],
    /// How many digits there are from the first non-zero one on.
    significant: usize,
    /// The first 19 of them (all of them when `significant` is at most 19).
    leading: u64,
    exp10: i64,
}

impl Number<'_> {
    fn read(s: &[u8]) -> Option<Number<'_>> {
        let (mut digits, mut after_point, mut significant, mut leading) = (0usize, 0usize, 0, 0u64);
        let mut point = false;
        let mut rest = s;
        while let [b, tail @ ..] = rest {
            match *b {
                b'.' if !point => point = true,
                b'0'..=b'9' => {
                    let d = b - b'0';
                    digits += 1;
                    after_point += usize::from(point);
                    if significant > 0 || d > 0 {
                        significant += 1;
                        if significant <= 19 {
                            leading = leading * 10 + u64::from(d);
                        }
                    }
                }
                _ => break,
            }
            rest = tail;
        }
        if digits == 0 {
            return None;
        }
        let exponent = match rest {
            [] => 0,
            [b'e' | b'E', e @ ..] => exponent(e)?,
            _ => return None,
        };
        Some(Number {
            mantissa: s.get(..s.len() - rest.len())?,
            significant,
            leading,
            exp10: exponent - after_point as i64,
        })
    }

    fn value(&self) -> f64 {
        if self.significant == 0 {
            return 0.0;
        }
        // Clinger: the integer and 10^|exp10| are exact f64s, so one correctly rounded operation
        // gives the correctly rounded result.
        if self.significant <= 19 && self.leading <= 1 << 53 && self.exp10.abs() <= 22 {
            let w = self.leading as f64;
            if let Some(&p) = POW10.get(self.exp10.unsigned_abs() as usize) {
                return if self.exp10 < 0 { w / p } else { w * p };
            }
        }
        match Decimal::new(self) {
            Ok(d) => d.into_f64(),
            Err(zero_or_infinity) => zero_or_infinity,
        }
    }
}

/// The exponent's digits after the `e`, with their sign. Like std, it stops taking digits once at
/// 65536 or above: beyond that every number of fewer than 65,000 digits is 0 or infinite, and
/// longer ones read the same as there.
fn exponent(s: &[u8]) -> Option<i64> {
    let (negative, digits) = match s {
        [b'-', rest @ ..] => (true, rest),
        [b'+', rest @ ..] => (false, rest),
        all => (false, all),
    };
    if digits.is_empty() {
        return None;
    }
    let mut e = 0i64;
    for b in digits {
        let d = b.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        if e < 0x10000 {
            e = e * 10 + i64::from(d);
        }
    }
    Some(if negative { -e } else { e })
}

/// The base of `Decimal`'s limbs, nine decimal digits each.
const BASE: u64 = 1_000_000_000;
/// One half in a limb after the point.
const HALF: u32 = 500_000_000;
/// The most bits `Decimal` is halved or doubled by at once: 2^29 < `BASE`, so a doubling carries
/// one limb at most, and a number below BASE^-1 doubled stays below 1.
const MAX_SHIFT: u32 = 29;

/// 0.L₁L₂L₃… × BASE^`point` in limbs of nine decimal digits (L₁ non-zero, no zero limb last).
/// Halving and doubling it are exact: with at most 801 digits read and a value in f64's range,
/// the digits never exceed 801 + 1100·log₁₀5 < 1,570 (1100 bits halved at most) or
/// 801 + 1200·log₁₀2 < 1,170 (doubled), so there are fewer than 180 limbs.
struct Decimal {
    limbs: Vec<u32>,
    point: i64,
}

impl Decimal {
    /// The value itself when it is 0 or infinite anyway: 0.d₁d₂… × 10^point (the digits as
    /// written) below 10^-325, under half the least subnormal, or at least 10^309.
    fn new(n: &Number) -> Result<Decimal, f64> {
        let point = n.significant as i64 + n.exp10;
        if point < -324 {
            return Err(0.0);
        } else if point > 309 {
            return Err(f64::INFINITY);
        }
        // Zeros in front of the digits bring the point to a limb boundary.
        let limb_point = (point + 8).div_euclid(9);
        let mut digits = vec![0; (9 * limb_point - point) as usize];
        let written = n
            .mantissa
            .iter()
            .filter(|b| b.is_ascii_digit())
            .map(|b| b - b'0');
        let mut significant = written.skip_while(|&b| b == 0);
        digits.extend(significant.by_ref().take(KEPT_DIGITS));
        // The digits past those kept, when not all zero, make a number strictly between the kept
        // ones and the next at their last place; so does a 1 after them, and no halfway point
        // between two f64s (767 digits at most) lies between the two.
        if significant.any(|b| b != 0) {
            digits.push(1);
        }
        digits.resize(digits.len().div_ceil(9) * 9, 0);
        let limbs = digits.chunks_exact(9);
        let mut d = Decimal {
            limbs: limbs
                .map(|c| c.iter().fold(0, |l, &b| l * 10 + u32::from(b)))
                .collect(),
            point: limb_point,
        };
        d.trim();
        Ok(d)
    }

    fn into_f64(mut self) -> f64 {
        // The value is self × 2^exp2; bring self into [1/2, 1).
        let mut exp2 = 0i64;
        while self.point > 0 {
            self.halve(MAX_SHIFT);
            exp2 += i64::from(MAX_SHIFT);
        }
        loop {
            let k = match (self.point, self.limbs.first()) {
                (p, Some(_)) if p < 0 => MAX_SHIFT,
                // L₁ × 2^k below 2^29 (a little over half of BASE), so not past 1.
                (0, Some(&l)) if l < HALF => (l.leading_zeros() - HALF.leading_zeros()).max(1),
                _ => break,
            };
            self.double(k);
            exp2 -= i64::from(k);
        }
        // self × 2 in [1, 2): the f64's exponent is exp2 - 1. Subnormals have -1022 with fewer
        // significant bits.
        let mut exponent = exp2 - 1;
        while exponent < -1022 {
            let k = (-1022 - exponent).min(i64::from(MAX_SHIFT)) as u32;
            self.halve(k);
            exponent += i64::from(k);
        }
        self.double(MAX_SHIFT);
        self.double(53 - MAX_SHIFT);
        let mut mantissa = self.round();
        if mantissa == 1 << 53 {
            // Rounded up into a 54th bit: 2^53 halved is exact.
            mantissa = 1 << 52;
            exponent += 1;
        }
        if exponent > 1023 {
            return f64::INFINITY;
        }
        let biased = if mantissa < 1 << 52 {
            0
        } else {
            exponent + 1023
        } as u64;
        f64::from_bits((biased << 52) | (mantissa & ((1 << 52) - 1)))
    }

    /// self ÷ 2^k (k ≤ 29) by long division, in place: limb i of the quotient is written after
    /// limb i of the dividend is read.
    fn halve(&mut self, k: u32) {
        let mask = (1u64 << k) - 1;
        let (mut rem, mut read, mut write) = (0u64, 0, 0);
        loop {
            let limb = match self.limbs.get(read) {
                Some(&l) => l,
                None if rem == 0 => break,
                None => 0,
            };
            read += 1;
            // rem < 2^k, so the quotient limb is below BASE.
            let v = rem * BASE + u64::from(limb);
            let q = (v >> k) as u32;
            rem = v & mask;
            if write == 0 && q == 0 {
                self.point -= 1;
            } else {
                match self.limbs.get_mut(write) {
                    Some(slot) => *slot = q,
                    None => self.limbs.push(q),
                }
                write += 1;
            }
        }
        self.limbs.truncate(write);
        self.trim();
    }

    /// self × 2^k (k ≤ 29), from the last limb up; the carry out is a new first limb.
    fn double(&mut self, k: u32) {
        let mut carry = 0u64;
        for l in self.limbs.iter_mut().rev() {
            // carry < 2^k < BASE.
            let v = (u64::from(*l) << k) + carry;
            *l = (v % BASE) as u32;
            carry = v / BASE;
        }
        if carry > 0 {
            self.limbs.insert(0, carry as u32);
            self.point += 1;
        }
        self.trim();
    }

    fn trim(&mut self) {
        while self.limbs.last() == Some(&0) {
            self.limbs.pop();
        }
    }

    /// The integer part (below 2^53 here: two limbs at most) rounded half to even.
    fn round(&self) -> u64 {
        let Ok(int_limbs) = usize::try_from(self.point) else {
            return 0;
        };
        let limb = |i: usize| self.limbs.get(i).copied().unwrap_or(0);
        let int_part = (0..int_limbs).fold(0u64, |m, i| {
            m.wrapping_mul(BASE).wrapping_add(u64::from(limb(i)))
        });
        let next = limb(int_limbs);
        let beyond = self.limbs.len() > int_limbs + 1;
        let up = next > HALF || (next == HALF && (beyond || int_part & 1 == 1));
        int_part + u64::from(up)
    }
}

#[cfg(test)]
#[path = "parse_float_tests.rs"]
mod tests;
