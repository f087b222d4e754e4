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
        let plain = rest
            .iter()
            .position(|b| matches!(b, b'"' | b'\\' | 0..=0x1f));
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
            let plain = rest
                .iter()
                .position(|b| matches!(b, b'"' | b'\\' | 0..=0x1f));
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
            .and_then(|s| u16::from_str_radix(s, 16).ok())
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
