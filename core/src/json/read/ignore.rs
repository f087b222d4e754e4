//! A value skipped as serde_json skips a field a struct does not know (`IgnoredAny`): looser
//! than reading it: numbers are not checked for range, strings neither for UTF-8 nor for paired
//! surrogates, and nesting is not limited.

use super::{
    Error, Parser, CONTROL_CHARACTER, EOF_LIST, EOF_OBJECT, EOF_STRING, EOF_VALUE, EXPECTED_COLON,
    EXPECTED_LIST_COMMA_OR_END, EXPECTED_OBJECT_COMMA_OR_END, EXPECTED_VALUE, INVALID_ESCAPE,
    INVALID_NUMBER, KEY_MUST_BE_A_STRING,
};

impl Parser<'_> {
    pub(crate) fn ignore_value(&mut self) -> Result<(), Error> {
        // The open arrays and objects, innermost last, as serde_json keeps them.
        let mut frames: Vec<u8> = Vec::new();
        let mut enclosing: Option<u8> = None;
        loop {
            let Some(peek) = self.whitespace() else {
                return Err(self.peek_error(EOF_VALUE));
            };
            let opened = match peek {
                b'n' => self.ident(b"null").map(|()| None)?,
                b't' => self.ident(b"true").map(|()| None)?,
                b'f' => self.ident(b"false").map(|()| None)?,
                b'-' => {
                    self.eat();
                    self.ignore_integer().map(|()| None)?
                }
                b'0'..=b'9' => self.ignore_integer().map(|()| None)?,
                b'"' => {
                    self.eat();
                    self.ignore_str().map(|()| None)?
                }
                frame @ (b'[' | b'{') => {
                    frames.extend(enclosing.take());
                    self.eat();
                    Some(frame)
                }
                _ => return Err(self.peek_error(EXPECTED_VALUE)),
            };
            let (mut accept_comma, mut frame) = match opened {
                Some(frame) => (false, frame),
                None => match enclosing.take().or_else(|| frames.pop()) {
                    Some(frame) => (true, frame),
                    None => return Ok(()),
                },
            };
            loop {
                match self.whitespace() {
                    Some(b',') if accept_comma => {
                        self.eat();
                        break;
                    }
                    Some(b']') if frame == b'[' => {}
                    Some(b'}') if frame == b'{' => {}
                    Some(_) if accept_comma => {
                        return Err(self.peek_error(if frame == b'[' {
                            EXPECTED_LIST_COMMA_OR_END
                        } else {
                            EXPECTED_OBJECT_COMMA_OR_END
                        }));
                    }
                    Some(_) => break,
                    None => {
                        return Err(self.peek_error(if frame == b'[' {
                            EOF_LIST
                        } else {
                            EOF_OBJECT
                        }));
                    }
                }
                self.eat();
                match frames.pop() {
                    Some(f) => frame = f,
                    None => return Ok(()),
                }
                accept_comma = true;
            }
            if frame == b'{' {
                match self.whitespace() {
                    Some(b'"') => self.eat(),
                    Some(_) => return Err(self.peek_error(KEY_MUST_BE_A_STRING)),
                    None => return Err(self.peek_error(EOF_OBJECT)),
                }
                self.ignore_str()?;
                match self.whitespace() {
                    Some(b':') => self.eat(),
                    Some(_) => return Err(self.peek_error(EXPECTED_COLON)),
                    None => return Err(self.peek_error(EOF_OBJECT)),
                }
            }
            enclosing = Some(frame);
        }
    }

    fn ignore_integer(&mut self) -> Result<(), Error> {
        match self.next().unwrap_or(0) {
            b'0' if self.peek_or_null().is_ascii_digit() => {
                return Err(self.peek_error(INVALID_NUMBER));
            }
            b'0' => {}
            b'1'..=b'9' => {
                self.ignore_digits();
            }
            _ => return Err(self.error(INVALID_NUMBER)),
        }
        match self.peek_or_null() {
            b'.' => self.ignore_decimal(),
            b'e' | b'E' => self.ignore_exponent(),
            _ => Ok(()),
        }
    }

    fn ignore_digits(&mut self) -> bool {
        let mut any = false;
        while self.peek_or_null().is_ascii_digit() {
            self.eat();
            any = true;
        }
        any
    }

    fn ignore_decimal(&mut self) -> Result<(), Error> {
        self.eat();
        if !self.ignore_digits() {
            return Err(self.peek_error(INVALID_NUMBER));
        }
        match self.peek_or_null() {
            b'e' | b'E' => self.ignore_exponent(),
            _ => Ok(()),
        }
    }

    fn ignore_exponent(&mut self) -> Result<(), Error> {
        self.eat();
        if let b'+' | b'-' = self.peek_or_null() {
            self.eat();
        }
        if !self.next().unwrap_or(0).is_ascii_digit() {
            return Err(self.error(INVALID_NUMBER));
        }
        self.ignore_digits();
        Ok(())
    }

    /// The rest of a string: escapes checked for form only.
    fn ignore_str(&mut self) -> Result<(), Error> {
        loop {
            let rest = self.bytes.get(self.index..).unwrap_or_default();
            let plain = super::string::plain_len(rest);
            self.index = self.index.saturating_add(plain.unwrap_or(rest.len()));
            match self.peek() {
                None => return Err(self.error(EOF_STRING)),
                Some(b'"') => {
                    self.eat();
                    return Ok(());
                }
                Some(b'\\') => {
                    self.eat();
                    match self.next() {
                        None => return Err(self.error(EOF_STRING)),
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {}
                        Some(b'u') => {
                            self.hex()?;
                        }
                        Some(_) => return Err(self.error(INVALID_ESCAPE)),
                    }
                }
                Some(_) => return Err(self.error(CONTROL_CHARACTER)),
            }
        }
    }
}
