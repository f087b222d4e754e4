//! f64 as text without core's float formatting: `{}`, `{:e}` or `{:.3}` of an f64 anywhere in
//! the filter links core's flt2dec (Grisu, Dragon, their power-of-ten table and bignum, ~14 KB
//! of module). ryu (feature `small`) gives the shortest digits; the layouts here are Rust's, so
//! every message reads as it did with `{}` and `{:.3}`.
//!
//! - [`shortest`]: ryu's text, for the JSON writer;
//! - [`plain`]: Rust's `{}` of an f64 (`1`, `0.0000001`, `1000000000000000000000`, `-0`);
//! - [`fixed`]: Rust's `{:.N}`, the exact binary value rounded to N places, ties to even.

use std::fmt;

/// ryu's text of a finite `v`: the shortest digits that read back to `v`, the closest of them
/// to it (an exact tie to an even last digit), as `1.0`, `12.5`, `0.001234`, `1e16`, `1.5e-7`.
pub fn shortest(v: f64, buf: &mut ryu::Buffer) -> &str {
    buf.format_finite(v)
}

/// Rust's `{}` of `v`: `format!("{}", plain(v)) == format!("{}", v)` (no width or precision).
pub fn plain(v: f64) -> Plain {
    Plain(v)
}

/// Rust's `{:.P$}` of `v`: `format!("{}", fixed::<3>(v)) == format!("{:.3}", v)` (P ≤ 19).
pub fn fixed<const P: u32>(v: f64) -> Fixed<P> {
    Fixed(v)
}

/// See [`plain`].
pub struct Plain(f64);

/// See [`fixed`].
pub struct Fixed<const P: u32>(f64);

impl fmt::Display for Plain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(a) = sign_or_special(f, self.0)? else {
            return Ok(());
        };
        if a == 0.0 {
            return f.write_str("0");
        }
        let (digits, point) = rust_digits(a);
        let digits = digits.text();
        let len = i32::try_from(digits.len()).unwrap_or(0);
        if point <= 0 {
            f.write_str("0.")?; // 0.0000001
            zeros(f, point.unsigned_abs())?;
            f.write_str(digits)
        } else if point >= len {
            f.write_str(digits)?; // 1000000000000000000000
            zeros(f, point.abs_diff(len))
        } else {
            // 0 < point < len; checked, not `split_at`: no panic path compiled.
            let at = point.unsigned_abs() as usize;
            let (int, frac) = digits.split_at_checked(at).unwrap_or((digits, "")); // 12.5
            f.write_str(int)?;
            f.write_str(".")?;
            f.write_str(frac)
        }
    }
}

impl<const P: u32> fmt::Display for Fixed<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        /// `10^P`; a `P` over 19 fails to compile here (it overflows `u64`).
        const fn scale(p: u32) -> u64 {
            10u64.pow(p)
        }
        let scale_p: u64 = const { scale(P) };
        let Some(a) = sign_or_special(f, self.0)? else {
            return Ok(());
        };
        let (mantissa, exp) = binary_parts(a);
        if let Ok(exp) = u32::try_from(exp) {
            big_integer(f, mantissa, exp)?; // an integer: the fraction is all zeros
            return fraction(f, 0, P);
        }
        // a = mantissa / 2^shift: scaled by 10^P and rounded to an integer, ties to even. Past
        // a shift of 118 the scaled mantissa (< 2^117) is below half of 2^shift: 0 as at 120.
        let shift = exp.unsigned_abs().min(120);
        let scaled = u128::from(mantissa) * u128::from(scale_p);
        let (q, rest, half) = (
            scaled >> shift,
            scaled & ((1 << shift) - 1),
            1 << (shift - 1),
        );
        let rounded = q + u128::from(rest > half || (rest == half && q % 2 == 1));
        // Both fit: the integer part is below 2^53, the fraction below 10^P.
        let whole = u64::try_from(rounded / u128::from(scale_p)).unwrap_or(0);
        write!(f, "{whole}")?;
        fraction(
            f,
            u64::try_from(rounded % u128::from(scale_p)).unwrap_or(0),
            P,
        )
    }
}

/// Writes the sign of `v` (`-` for every negative, `-0` and `-inf` included) and `NaN` or `inf`;
/// `Some(|v|)` when `v` is finite, digits still to write.
fn sign_or_special(f: &mut fmt::Formatter<'_>, v: f64) -> Result<Option<f64>, fmt::Error> {
    if v.is_nan() {
        f.write_str("NaN")?;
        return Ok(None);
    }
    if v.is_sign_negative() {
        f.write_str("-")?;
    }
    if v.is_infinite() {
        f.write_str("inf")?;
        return Ok(None);
    }
    Ok(Some(v.abs()))
}

/// Significant digits, at most 17 (ASCII, `len` of them used).
struct Digits {
    ascii: [u8; 17],
    len: usize,
}

impl Digits {
    fn text(&self) -> &str {
        let used = self.ascii.get(..self.len).unwrap_or_default();
        std::str::from_utf8(used).unwrap_or_default()
    }
}

/// The shortest digits of a finite, positive `a` as Rust's `{}` picks them, and where the point
/// goes: `0.d₁d₂… × 10^point`. They are ryu's but when `a` lies exactly halfway between two
/// shortest candidates: Rust takes the upper one, ryu the even one (then the lower, as its last
/// digit is even: one more there, never a 9).
fn rust_digits(a: f64) -> (Digits, i32) {
    let (mut digits, point) = parse_shortest(a);
    let value = digits
        .text()
        .bytes()
        .fold(0u64, |n, b| n * 10 + u64::from(b - b'0'));
    let q = point - i32::try_from(digits.len).unwrap_or(0);
    if halfway_above(a, value, q) {
        if let Some(last) = digits.ascii.get_mut(digits.len.wrapping_sub(1)) {
            *last += 1;
        }
    }
    (digits, point)
}

/// Whether `a` is exactly `(d + 1/2) × 10^q`, that is `(2d + 1) × 5^q × 2^(q - 1)`: its odd
/// mantissa times `2^e` must have `e = q - 1`, and the mantissa times `5^-q` must be `2d + 1`.
/// Only `q < 0` can hold ryu's `d`: for `q ≥ 0` that odd mantissa's ulp is at most `2^(q-1)`,
/// less than the `10^q / 2` by which `d` would miss `a`, and `d` would not read back.
fn halfway_above(a: f64, d: u64, q: i32) -> bool {
    let (mantissa, exp) = binary_parts(a);
    let zeros = mantissa.trailing_zeros();
    if q >= 0 || exp + zeros as i32 != q - 1 {
        return false;
    }
    let twice = 2 * d + 1; // d has at most 17 digits: below 2^58
    let mut odd = mantissa >> zeros;
    for _ in 0..q.unsigned_abs() {
        if odd > twice {
            return false;
        }
        odd *= 5; // below 2^61
    }
    odd == twice
}

/// ryu's digits of a finite, positive `a` without zeros at either end, and where the point goes:
/// `0.d₁d₂… × 10^point` (`0.00123` → `123`, -2; `1.5e-7` → `15`, -6; `100.0` → `1`, 3).
fn parse_shortest(a: f64) -> (Digits, i32) {
    let mut buf = ryu::Buffer::new();
    let text = shortest(a, &mut buf);
    let (mantissa, exp) = text.split_once('e').unwrap_or((text, ""));
    let (minus, exp) = exp.strip_prefix('-').map_or((false, exp), |e| (true, e));
    let exp = exp.bytes().fold(0, |n, b| n * 10 + i32::from(b - b'0'));
    let mut point = if minus { -exp } else { exp };
    let mut digits = Digits {
        ascii: [0; 17],
        len: 0,
    };
    let mut integer = true;
    for b in mantissa.bytes() {
        match b {
            b'.' => integer = false,
            b'0' if digits.len == 0 => point -= i32::from(!integer), // 0.00123
            _ => {
                if let Some(d) = digits.ascii.get_mut(digits.len) {
                    *d = b;
                    digits.len += 1;
                }
                point += i32::from(integer);
            }
        }
    }
    while digits.text().ends_with('0') {
        digits.len -= 1; // 100.0
    }
    (digits, point)
}

/// A finite, positive `a` as `mantissa × 2^exp` (mantissa < 2^53).
fn binary_parts(a: f64) -> (u64, i32) {
    let bits = a.to_bits();
    let fraction = bits & ((1 << 52) - 1);
    let biased = ((bits >> 52) & 0x7ff) as i32;
    if biased == 0 {
        (fraction, -1074)
    } else {
        (fraction | 1 << 52, biased - 1075)
    }
}

/// `mantissa × 2^exp` (mantissa > 0) in decimal: a decimal string multiplied by up to `2^59` at
/// a time (a digit times that plus the carry stays in a `u64`); at most 309 digits (`f64::MAX`).
fn big_integer(f: &mut fmt::Formatter<'_>, mantissa: u64, exp: u32) -> fmt::Result {
    let mut buf = [b'0'; 309];
    let (mut start, mut carry, mut left) = (buf.len(), mantissa, exp);
    loop {
        while carry > 0 {
            start = start.saturating_sub(1);
            if let Some(d) = buf.get_mut(start) {
                *d = b'0' + (carry % 10) as u8;
            }
            carry /= 10;
        }
        if left == 0 {
            break;
        }
        let shift = left.min(59);
        left -= shift;
        for d in buf.iter_mut().skip(start).rev() {
            let x = (u64::from(*d - b'0') << shift) + carry;
            *d = b'0' + (x % 10) as u8;
            carry = x / 10;
        }
    }
    let digits = buf.get(start..).unwrap_or_default();
    f.write_str(std::str::from_utf8(digits).unwrap_or_default())
}

/// `.` and `frac` in `places` digits, zeros first; nothing for no places.
fn fraction(f: &mut fmt::Formatter<'_>, frac: u64, places: u32) -> fmt::Result {
    if places == 0 {
        return Ok(());
    }
    write!(f, ".{frac:0width$}", width = places as usize)
}

/// `n` zeros.
fn zeros(f: &mut fmt::Formatter<'_>, n: u32) -> fmt::Result {
    const ZEROS: &str = "0000000000000000";
    let mut left = n as usize;
    while left > 0 {
        let chunk = left.min(ZEROS.len());
        f.write_str(ZEROS.get(..chunk).unwrap_or_default())?;
        left -= chunk;
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
#[path = "format_float_tests.rs"]
mod tests;
