//! The digits decision ids carry, written without the formatting machinery: lowercase hex for
//! bytes (MAC tags, a contextual decision's features) and numbers (prefix, counter, nonce), and
//! decimal for an expiry.

const DIGITS: &[u8; 16] = b"0123456789abcdef";

/// The lowercase hex digit of the low nibble of `n`.
fn digit(n: u64) -> u8 {
    // `n & 0xf` is below 16: the lookup never misses.
    DIGITS.get((n & 0xf) as usize).copied().unwrap_or(b'0')
}

/// `bytes` as lowercase hex, two digits a byte.
pub fn encode(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    push_bytes(&mut s, bytes);
    s
}

/// Appends `bytes` as lowercase hex, two digits a byte (ASCII pushed as one slice per byte
/// instead of one `char` at a time: no UTF-8 encoding per digit).
pub fn push_bytes(out: &mut String, bytes: &[u8]) {
    for b in bytes {
        let pair = [digit(u64::from(b >> 4)), digit(u64::from(*b))];
        out.push_str(std::str::from_utf8(&pair).unwrap_or_default());
    }
}

/// Appends `v` in lowercase hex, at least `min_digits` digits (zero-padded, at most 16), as
/// `format!("{v:0min_digits$x}")` writes it, without the formatting machinery.
pub fn push_u64(out: &mut String, v: u64, min_digits: usize) {
    // Significant digits: one per started nibble, at least one (zero is "0").
    let significant = (64 - v.leading_zeros() as usize).div_ceil(4).max(1);
    let digits = significant.max(min_digits).min(16);
    let mut buf = [b'0'; 16];
    for (i, slot) in buf.iter_mut().take(digits).enumerate() {
        // Digit i from the left of `digits`: the nibble at (digits - 1 - i) * 4 bits.
        let shift = (digits - 1 - i) * 4;
        *slot = digit(v >> shift);
    }
    out.push_str(std::str::from_utf8(buf.get(..digits).unwrap_or_default()).unwrap_or_default());
}

/// Appends `v` in decimal, as `format!("{v}")` writes it.
pub fn push_decimal(out: &mut String, mut v: u64) {
    // u64::MAX has 20 decimal digits.
    let mut buf = [b'0'; 20];
    let mut at = buf.len();
    loop {
        at -= 1;
        if let Some(slot) = buf.get_mut(at) {
            *slot = b'0' + (v % 10) as u8;
        }
        v /= 10;
        if v == 0 || at == 0 {
            break;
        }
    }
    out.push_str(std::str::from_utf8(buf.get(at..).unwrap_or_default()).unwrap_or_default());
}

/// The bytes of hex text, two digits a byte; `None` for an odd length or a pair that is not hex.
pub fn decode(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    let mut bytes = Vec::with_capacity(s.len() / 2);
    for i in (0..s.len()).step_by(2) {
        bytes.push(crate::parse_int::unsigned::<u8>(s.get(i..i + 2)?, 16)?);
    }
    Some(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_as_format_writes_them() {
        for v in [
            0u64,
            1,
            9,
            10,
            15,
            16,
            255,
            0xdead_beef,
            0xffff_ffff,
            0x1_0000_0000,
            1_800_000_000,
            u64::MAX / 3,
            u64::MAX,
        ] {
            for min in [0usize, 1, 8, 16] {
                let mut s = String::from("x");
                push_u64(&mut s, v, min);
                assert_eq!(s, format!("x{v:0min$x}"), "{v} {min}");
            }
            let mut s = String::new();
            push_decimal(&mut s, v);
            assert_eq!(s, v.to_string());
        }
        assert_eq!(encode(&[0, 0x0f, 0xa5, 0xff]), "000fa5ff");
    }
}
