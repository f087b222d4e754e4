//! Strings, as serde_json reads them into a `String`: escapes decoded, surrogates paired, no
//! control characters, UTF-8 checked (the error placed where serde_json places it).

use std::borrow::Cow;

use super::{
    Error, Parser, CONTROL_CHARACTER, END_OF_HEX_ESCAPE, EOF_STRING, INVALID_CODE_POINT,
    INVALID_ESCAPE, LONE_LEADING_SURROGATE,
};

impl<'a> Parser<'a> {
    /// The rest of a string whose opening quote was read, borrowed from the input when it holds
    /// no escape (as serde_json handed keys to a visitor): no allocation for a plain key.
    pub(crate) fn string_ref(&mut self) -> Result<Cow<'a, str>, Error> {
        let start = self.index;
        let rest = self.bytes.get(start..).unwrap_or_default();
        let plain = plain_len(rest);
        let Some(end) = plain.filter(|n| rest.get(*n) == Some(&b'"')) else {
            return self.string().map(Cow::Owned);
        };
        let text = rest.get(..end).unwrap_or_default();
        self.index = start.saturating_add(end).saturating_add(1);
        std::str::from_utf8(text).map(Cow::Borrowed).map_err(|e| {
            let mut err = self.error(INVALID_CODE_POINT);
            err.column = err.column.saturating_sub(text.len() - e.valid_up_to());
            err
        })
    }
}

impl Parser<'_> {
    /// The rest of a string whose opening quote was read.
    pub(super) fn string(&mut self) -> Result<String, Error> {
        self.scratch.clear();
        loop {
            let start = self.index;
            let rest = self.bytes.get(start..).unwrap_or_default();
            let plain = plain_len(rest);
            self.index = start.saturating_add(plain.unwrap_or(rest.len()));
            self.scratch
                .extend_from_slice(self.bytes.get(start..self.index).unwrap_or_default());
            match self.next() {
                None => return Err(self.error(EOF_STRING)),
                Some(b'"') => return self.utf8(),
                Some(b'\\') => self.escape()?,
                Some(_) => return Err(self.error(CONTROL_CHARACTER)),
            }
        }
    }

    /// The bytes read as text; the error points at the first bad byte as if no escape had
    /// shortened the string (serde_json's approximation).
    fn utf8(&mut self) -> Result<String, Error> {
        let bytes = std::mem::take(&mut self.scratch);
        String::from_utf8(bytes).map_err(|e| {
            let bad = e.as_bytes().len() - e.utf8_error().valid_up_to();
            let mut err = self.error(INVALID_CODE_POINT);
            err.column = err.column.saturating_sub(bad);
            err
        })
    }

    /// An escape, after its backslash.
    fn escape(&mut self) -> Result<(), Error> {
        let short = match self.next() {
            None => return Err(self.error(EOF_STRING)),
            Some(b'u') => return self.unicode_escape(),
            Some(b @ (b'"' | b'\\' | b'/')) => b,
            Some(b'b') => 0x08,
            Some(b'f') => 0x0c,
            Some(b'n') => b'\n',
            Some(b'r') => b'\r',
            Some(b't') => b'\t',
            Some(_) => return Err(self.error(INVALID_ESCAPE)),
        };
        self.scratch.push(short);
        Ok(())
    }

    /// Four hex digits.
    pub(super) fn hex(&mut self) -> Result<u16, Error> {
        let Some(four) = self.bytes.get(self.index..self.index.saturating_add(4)) else {
            self.index = self.bytes.len();
            return Err(self.error(EOF_STRING));
        };
        self.index = self.index.saturating_add(4);
        let digits = std::str::from_utf8(four)
            .ok()
            .filter(|s| s.bytes().all(|b| b.is_ascii_hexdigit()));
        digits
            .and_then(|s| crate::parse_int::unsigned::<u16>(s, 16))
            .ok_or_else(|| self.error(INVALID_ESCAPE))
    }

    /// `\uXXXX` (after the `u`), a surrogate pair as two.
    fn unicode_escape(&mut self) -> Result<(), Error> {
        let n = self.hex()?;
        let c = match n {
            0xdc00..=0xdfff => return Err(self.error(LONE_LEADING_SURROGATE)),
            0xd800..=0xdbff => {
                for expected in [b'\\', b'u'] {
                    match self.next() {
                        None => return Err(self.error(EOF_STRING)),
                        Some(b) if b != expected => return Err(self.error(END_OF_HEX_ESCAPE)),
                        Some(_) => {}
                    }
                }
                let n2 = self.hex()?;
                if !(0xdc00..=0xdfff).contains(&n2) {
                    return Err(self.error(LONE_LEADING_SURROGATE));
                }
                0x1_0000 + ((u32::from(n - 0xd800) << 10) | u32::from(n2 - 0xdc00))
            }
            _ => u32::from(n),
        };
        let c = char::from_u32(c).unwrap_or(char::REPLACEMENT_CHARACTER);
        let mut buf = [0; 4];
        self.scratch
            .extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
        Ok(())
    }
}

/// The length of the plain run at the start of `rest`: up to the first quote, backslash or
/// control character (`None`: there is none). Eight bytes at a time, as serde_json skips a
/// string: a byte-at-a-time scan made 64 KiB bodies twice as slow to walk.
pub(super) fn plain_len(rest: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = ONES << 7;
    let mut chunks = rest.chunks_exact(8);
    let mut done = 0usize;
    for chunk in chunks.by_ref() {
        let Ok(word) = <[u8; 8]>::try_from(chunk) else {
            break;
        };
        let w = u64::from_le_bytes(word);
        // A byte's high bit is set when it is below 0x20, a quote or a backslash. Borrows only
        // run upwards from such a byte, so the lowest flag is exact.
        let control = w.wrapping_sub(ONES * 0x20) & !w;
        let q = w ^ (ONES * u64::from(b'"'));
        let quote = q.wrapping_sub(ONES) & !q;
        let b = w ^ (ONES * u64::from(b'\\'));
        let backslash = b.wrapping_sub(ONES) & !b;
        let flags = (control | quote | backslash) & HIGH;
        if flags != 0 {
            return Some(done.saturating_add((flags.trailing_zeros() / 8) as usize));
        }
        done = done.saturating_add(8);
    }
    let tail = chunks.remainder();
    tail.iter()
        .position(|b| matches!(b, b'"' | b'\\' | 0..=0x1f))
        .map(|n| done.saturating_add(n))
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::plain_len;

    /// Eight bytes at a time finds what one at a time finds: every byte value at every place of
    /// runs up to 20 long, behind plain bytes, bytes above 0x7f and other special bytes.
    #[test]
    fn plain_len_agrees_with_a_byte_scan() {
        let naive = |s: &[u8]| s.iter().position(|b| matches!(b, b'"' | b'\\' | 0..=0x1f));
        for fill in [b'a', 0x20, 0x7f, 0x80, 0xff, b'!', b'#', b'[', b']'] {
            for len in 0..20 {
                for at in 0..len {
                    for special in 0..=255u8 {
                        let mut s = vec![fill; len];
                        s[at] = special;
                        assert_eq!(plain_len(&s), naive(&s), "{s:02x?}");
                        // A second special byte after the first changes nothing.
                        if at + 1 < len {
                            s[at + 1] = b'"';
                            assert_eq!(plain_len(&s), naive(&s), "{s:02x?}");
                        }
                    }
                }
            }
        }
    }
}
