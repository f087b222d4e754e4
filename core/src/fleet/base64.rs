//! Standard base64 (RFC 4648 alphabet, `=` padding) for etcd's gateway, by hand: the `base64`
//! crate's engine cost ~7 KB of wasm for the two calls the fleet makes. Decoding accepts exactly
//! what the crate's `STANDARD` engine accepts: canonical padding to a multiple of four, no
//! whitespace, and zero bits after the last byte.

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// The character for the low six bits of `bits`.
fn char_of(bits: u32) -> char {
    let i = usize::try_from(bits & 63).unwrap_or(0);
    char::from(*ALPHABET.get(i).unwrap_or(&b'A'))
}

/// The six bits `c` stands for; `None` for a character outside the alphabet (`=` included).
fn bits_of(c: u8) -> Option<u32> {
    let v = match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => return None,
    };
    Some(u32::from(v))
}

/// `bytes` in base64, padded with `=` to a multiple of four characters.
pub fn encode(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len().div_ceil(3).saturating_mul(4));
    for chunk in bytes.chunks(3) {
        let group = chunk
            .iter()
            .enumerate()
            .fold(0u32, |g, (i, b)| g | u32::from(*b) << (16 - 8 * i));
        // One byte gives two characters, two give three, three give four.
        for i in 0..=chunk.len() {
            s.push(char_of(group >> (18 - 6 * i)));
        }
        for _ in chunk.len()..3 {
            s.push('=');
        }
    }
    s
}

/// The bytes of base64 text; `None` for anything `STANDARD` refuses: a length that is not a
/// multiple of four, a character outside the alphabet, padding anywhere but at the end of the
/// last group (at most two `=`), or a last group whose unused bits are not zero.
pub fn decode(text: &str) -> Option<Vec<u8>> {
    let text = text.as_bytes();
    if text.len() % 4 != 0 {
        return None;
    }
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let mut groups = text.chunks(4).peekable();
    while let Some(group) = groups.next() {
        let last = groups.peek().is_none();
        // Characters before the padding: 4, or in the last group 3 or 2.
        let chars = group.iter().take_while(|c| **c != b'=').count();
        if chars < 4 && !(last && chars >= 2 && group.iter().skip(chars).all(|c| *c == b'=')) {
            return None;
        }
        let mut bits = 0u32;
        for (i, c) in group.iter().take(chars).enumerate() {
            bits |= bits_of(*c)? << (18 - 6 * i);
        }
        // Bytes the group holds: 3, 2 or 1; the bits after them must be zero.
        let n = chars - 1;
        if bits & (0xff_ffff >> (8 * n)) != 0 {
            return None;
        }
        for i in 0..n {
            out.push((bits >> (16 - 8 * i)) as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine;

    #[test]
    fn encodes_as_the_crate_does() {
        for len in 0..70usize {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 151 + len * 7) as u8).collect();
            assert_eq!(encode(&bytes), STANDARD.encode(&bytes), "{bytes:?}");
            assert_eq!(decode(&encode(&bytes)), Some(bytes));
        }
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(encode(&all), STANDARD.encode(&all));
    }

    /// Every text of up to 4 characters, and every 8, from characters that exercise each rule
    /// (both ends of each alphabet range, padding, characters just outside, whitespace):
    /// accepted and refused as the crate does, with the same bytes.
    #[test]
    fn decodes_exactly_what_the_crate_decodes() {
        let chars = b"AQBZaz09+/=w-_ \n.";
        let check = |text: &[u8]| {
            let text = std::str::from_utf8(text).unwrap();
            assert_eq!(decode(text), STANDARD.decode(text).ok(), "{text:?}");
        };
        let mut text = Vec::new();
        for len in 0..=4u32 {
            for code in 0..chars.len().pow(len) {
                text.clear();
                let mut c = code;
                for _ in 0..len {
                    text.push(chars[c % chars.len()]);
                    c /= chars.len();
                }
                check(&text);
            }
        }
        // Two groups: padding in the first, or at both ends, is refused.
        let tails = [
            "QQ==", "QUI=", "QUJD", "Q===", "QR==", "QUJ=", "=QQ=", "QQ=A",
        ];
        for a in tails {
            for b in tails {
                check(format!("{a}{b}").as_bytes());
            }
        }
    }
}
