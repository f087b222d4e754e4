//! Lowercase hex for the bytes decision ids carry (MAC tags, a contextual decision's features).

/// `bytes` as lowercase hex, two digits a byte.
pub fn encode(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(
            *DIGITS.get(usize::from(b >> 4)).unwrap_or(&b'0'),
        ));
        s.push(char::from(
            *DIGITS.get(usize::from(b & 0xf)).unwrap_or(&b'0'),
        ));
    }
    s
}

/// The bytes of hex text, two digits a byte; `None` for an odd length or a pair that is not hex.
pub fn decode(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    let mut bytes = Vec::with_capacity(s.len() / 2);
    for i in (0..s.len()).step_by(2) {
        bytes.push(u8::from_str_radix(s.get(i..i + 2)?, 16).ok()?);
    }
    Some(bytes)
}
