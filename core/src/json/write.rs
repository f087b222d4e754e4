//! Bytes out as serde_json's compact writer spells them: strings with its escapes, integers in
//! decimal, floats in zmij's shortest form (`1.0`, `1e+16`, `1.5e-7`; `null` when not finite),
//! struct fields in declaration order, maps in their key order.

use crate::vecmap::{VecMap, VecSet};
use std::fmt::Write as _;

/// A value that writes itself as JSON.
pub trait ToJson {
    fn write_json(&self, out: &mut Vec<u8>);
}

/// `value` as JSON bytes.
pub fn to_vec<T: ToJson + ?Sized>(value: &T) -> Vec<u8> {
    let mut out = Vec::new();
    value.write_json(&mut out);
    out
}

/// A string, quoted, with serde_json's escapes: `"` and `\`, the short forms of backspace,
/// form feed, newline, carriage return and tab, `\u00XX` (lower-case hex) for the other
/// control characters; everything else as it is.
pub fn string(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let short = match b {
            b'"' => b'"',
            b'\\' => b'\\',
            0x08 => b'b',
            0x0c => b'f',
            b'\n' => b'n',
            b'\r' => b'r',
            b'\t' => b't',
            0x00..=0x1f => b'u',
            _ => continue,
        };
        out.extend_from_slice(bytes.get(start..i).unwrap_or_default());
        out.push(b'\\');
        out.push(short);
        if short == b'u' {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.extend_from_slice(b"00");
            out.extend(HEX.get(usize::from(b >> 4)));
            out.extend(HEX.get(usize::from(b & 0xf)));
        }
        start = i + 1;
    }
    out.extend_from_slice(bytes.get(start..).unwrap_or_default());
    out.push(b'"');
}

/// A float as serde_json writes it (zmij's layout of the shortest digits that read back to the
/// same value); `null` for NaN and the infinities.
pub fn float(out: &mut Vec<u8>, v: f64) {
    if !v.is_finite() {
        out.extend_from_slice(b"null");
        return;
    }
    if v.is_sign_negative() {
        out.push(b'-');
    }
    if v == 0.0 {
        out.extend_from_slice(b"0.0");
        return;
    }
    // Rust's `{:e}` gives the same shortest digits but for a tie, as `d.ddde-x`.
    let (mut digits, point) = scientific(v.abs());
    if let Some(even) = tie_to_even(v.abs(), &digits, point) {
        digits = even;
    }
    layout(out, &digits, point);
}

/// The shortest significant digits of `v` and where the decimal point goes:
/// `0.d₁d₂… × 10^point`.
fn scientific(v: f64) -> (Vec<u8>, i32) {
    let mut sci = String::with_capacity(32);
    let _ = write!(sci, "{v:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let digits = mantissa.bytes().filter(u8::is_ascii_digit).collect();
    (digits, exp.parse::<i32>().unwrap_or(0).saturating_add(1))
}

/// When `v` lies exactly halfway between two shortest candidates, Rust takes the upper one
/// and zmij the one whose last digit is even: that one, if it is not `digits`.
///
/// The test is exact, in integers from `v`'s bits: std's exact decimal expansion (`{:.800e}`)
/// would do it too, at the cost of a long formatting for every float written.
fn tie_to_even(v: f64, digits: &[u8], point: i32) -> Option<Vec<u8>> {
    let n = u32::try_from(digits.len()).ok()?;
    let q = point.checked_sub(i32::try_from(n).ok()?)?;
    let lower = halfway_lower(v, q)?;
    let (least, bound) = (power(10, n.checked_sub(1)?)?, power(10, n)?);
    if !(least..bound).contains(&lower) {
        return None; // another number of digits: not a tie between two n-digit candidates
    }
    let even = if lower % 2 == 1 { lower + 1 } else { lower };
    if even == bound {
        return None; // carries out of the first digit: not a tie's case
    }
    let mut even = even.to_string().into_bytes();
    while even.len() > 1 && even.last() == Some(&b'0') {
        even.pop();
    }
    (even != digits).then_some(even)
}

/// `l` when `v` is exactly `(l + 1/2) × 10^q`: `(2l + 1) × 5^q × 2^(q - 1)`, so `v`'s odd
/// mantissa times `2^e` must have `e = q - 1` and the mantissa must be `(2l + 1) × 5^q`.
fn halfway_lower(v: f64, q: i32) -> Option<u64> {
    let (mantissa, exp) = binary_parts(v);
    if mantissa == 0 || exp != q.checked_sub(1)? {
        return None;
    }
    let five = power(5, q.unsigned_abs())?;
    let odd = if q >= 0 {
        (mantissa % five == 0).then(|| mantissa / five)?
    } else {
        mantissa.checked_mul(five)?
    };
    Some(odd / 2)
}

/// `base^exp`, `None` past `u64` (a loop: smaller than std's `checked_pow`, exponents are small).
fn power(base: u64, exp: u32) -> Option<u64> {
    (0..exp).try_fold(1u64, |acc, _| acc.checked_mul(base))
}

/// A finite `v`'s magnitude as `mantissa × 2^exp` with an odd mantissa (0 for zero).
fn binary_parts(v: f64) -> (u64, i32) {
    let bits = v.to_bits();
    let fraction = bits & ((1 << 52) - 1);
    let biased = ((bits >> 52) & 0x7ff) as i32;
    let (mantissa, exp) = if biased == 0 {
        (fraction, -1074)
    } else {
        (fraction | 1 << 52, biased - 1075)
    };
    if mantissa == 0 {
        return (0, 0);
    }
    let zeros = mantissa.trailing_zeros();
    (mantissa >> zeros, exp + zeros as i32)
}

/// zmij's choice of form (as ryu's, but for the exponent's sign) for `0.d₁d₂… × 10^point`.
fn layout(out: &mut Vec<u8>, digits: &[u8], point: i32) {
    let len = i32::try_from(digits.len()).unwrap_or(i32::MAX);
    let zeros = |out: &mut Vec<u8>, n: i32| out.extend((0..n).map(|_| b'0'));
    if len <= point && point <= 16 {
        out.extend_from_slice(digits); // 1234e7 → 12340000000.0
        zeros(out, point - len);
        out.extend_from_slice(b".0");
    } else if 0 < point && point <= 16 {
        let (int, frac) = digits.split_at(usize::try_from(point).unwrap_or(0)); // 12.34
        out.extend_from_slice(int);
        out.push(b'.');
        out.extend_from_slice(frac);
    } else if -5 < point && point <= 0 {
        out.extend_from_slice(b"0."); // 0.001234
        zeros(out, -point);
        out.extend_from_slice(digits);
    } else {
        let (first, rest) = digits.split_at(1.min(digits.len())); // 1e30, 1.234e33
        out.extend_from_slice(first);
        if !rest.is_empty() {
            out.push(b'.');
            out.extend_from_slice(rest);
        }
        out.extend_from_slice(if point > 0 { b"e+" } else { b"e-" });
        out.extend_from_slice((point - 1).unsigned_abs().to_string().as_bytes());
    }
}

/// `{"a":…,"b":…}`: fields written in the order given.
pub struct ObjectWriter<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
}

impl<'a> ObjectWriter<'a> {
    pub fn new(out: &'a mut Vec<u8>) -> Self {
        out.push(b'{');
        ObjectWriter { out, first: true }
    }

    pub fn field(&mut self, name: &str, value: &(impl ToJson + ?Sized)) -> &mut Self {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        string(self.out, name);
        self.out.push(b':');
        value.write_json(self.out);
        self
    }

    pub fn end(&mut self) {
        self.out.push(b'}');
    }
}

fn seq<'v, T: ToJson + 'v>(out: &mut Vec<u8>, items: impl IntoIterator<Item = &'v T>) {
    out.push(b'[');
    for (i, item) in items.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        item.write_json(out);
    }
    out.push(b']');
}

impl ToJson for str {
    fn write_json(&self, out: &mut Vec<u8>) {
        string(out, self);
    }
}

impl ToJson for String {
    fn write_json(&self, out: &mut Vec<u8>) {
        string(out, self);
    }
}

impl ToJson for bool {
    fn write_json(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(if *self { b"true" } else { b"false" });
    }
}

impl ToJson for f64 {
    fn write_json(&self, out: &mut Vec<u8>) {
        float(out, *self);
    }
}

macro_rules! integers {
    ($($t:ty),*) => {$(
        impl ToJson for $t {
            fn write_json(&self, out: &mut Vec<u8>) {
                out.extend_from_slice(self.to_string().as_bytes());
            }
        }
    )*};
}
integers!(u32, u64, i64);

impl<T: ToJson> ToJson for Option<T> {
    fn write_json(&self, out: &mut Vec<u8>) {
        match self {
            Some(v) => v.write_json(out),
            None => out.extend_from_slice(b"null"),
        }
    }
}

impl<T: ToJson> ToJson for [T] {
    fn write_json(&self, out: &mut Vec<u8>) {
        seq(out, self);
    }
}

impl<T: ToJson> ToJson for Vec<T> {
    fn write_json(&self, out: &mut Vec<u8>) {
        seq(out, self);
    }
}

impl<T: ToJson, const N: usize> ToJson for [T; N] {
    fn write_json(&self, out: &mut Vec<u8>) {
        seq(out, self);
    }
}

impl<T: ToJson> ToJson for VecSet<T> {
    fn write_json(&self, out: &mut Vec<u8>) {
        seq(out, self);
    }
}

impl<A: ToJson, B: ToJson> ToJson for (A, B) {
    fn write_json(&self, out: &mut Vec<u8>) {
        out.push(b'[');
        self.0.write_json(out);
        out.push(b',');
        self.1.write_json(out);
        out.push(b']');
    }
}

impl<T: ToJson> ToJson for VecMap<String, T> {
    fn write_json(&self, out: &mut Vec<u8>) {
        let mut o = ObjectWriter::new(out);
        for (k, v) in self {
            o.field(k, v);
        }
        o.end();
    }
}

impl ToJson for crate::json::Value {
    fn write_json(&self, out: &mut Vec<u8>) {
        use crate::json::Value;
        match self {
            Value::Null => out.extend_from_slice(b"null"),
            Value::Bool(b) => b.write_json(out),
            Value::Number(n) => match (n.as_u64(), n.as_i64(), n.as_f64()) {
                (Some(u), _, _) => u.write_json(out),
                (None, Some(i), _) => i.write_json(out),
                (None, None, f) => float(out, f.unwrap_or(f64::NAN)),
            },
            Value::String(s) => string(out, s),
            Value::Array(items) => seq(out, items),
            Value::Object(map) => {
                let mut o = ObjectWriter::new(out);
                for (k, v) in map {
                    o.field(k, v);
                }
                o.end();
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
#[path = "write_tests.rs"]
mod tests;
