//! Bytes in as serde_json's reader (`from_slice`) takes them: the same documents accepted, the
//! same values read (numbers by its rules: `u64`, then `i64`, then its own `f64` arithmetic),
//! and the same errors, word for word and at the same line and column.

use std::borrow::Cow;
use std::fmt;

use crate::json::{Map, Number, Value};

/// A syntax error, in serde_json's words and place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    what: Cow<'static, str>,
    line: usize,
    column: usize,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} at line {} column {}",
            self.what, self.line, self.column
        )
    }
}

const EOF_LIST: &str = "EOF while parsing a list";
const EOF_OBJECT: &str = "EOF while parsing an object";
const EOF_STRING: &str = "EOF while parsing a string";
const EOF_VALUE: &str = "EOF while parsing a value";
const EXPECTED_COLON: &str = "expected `:`";
const EXPECTED_LIST_COMMA_OR_END: &str = "expected `,` or `]`";
const EXPECTED_OBJECT_COMMA_OR_END: &str = "expected `,` or `}`";
const EXPECTED_IDENT: &str = "expected ident";
const EXPECTED_VALUE: &str = "expected value";
const INVALID_ESCAPE: &str = "invalid escape";
const INVALID_NUMBER: &str = "invalid number";
const OUT_OF_RANGE: &str = "number out of range";
const INVALID_CODE_POINT: &str = "invalid unicode code point";
const CONTROL_CHARACTER: &str = "control character (\\u0000-\\u001F) found while parsing a string";
const KEY_MUST_BE_A_STRING: &str = "key must be a string";
const LONE_LEADING_SURROGATE: &str = "lone leading surrogate in hex escape";
const TRAILING_COMMA: &str = "trailing comma";
const TRAILING_CHARACTERS: &str = "trailing characters";
const END_OF_HEX_ESCAPE: &str = "unexpected end of hex escape";
const RECURSION_LIMIT: &str = "recursion limit exceeded";

/// How deep arrays and objects may nest (serde_json's limit).
const DEPTH: u8 = 128;

/// One whole document: a value and nothing after it but whitespace.
pub fn from_slice(bytes: &[u8]) -> Result<Value, Error> {
    let mut p = Parser::new(bytes);
    let v = p.value()?;
    p.end()?;
    Ok(v)
}

/// A number as serde_json reads it, before it becomes a value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Num {
    U64(u64),
    I64(i64),
    F64(f64),
}

impl From<Num> for Value {
    fn from(n: Num) -> Value {
        match n {
            Num::U64(u) => Value::Number(u.into()),
            Num::I64(i) => Value::Number(i.into()),
            Num::F64(f) => Number::from_f64(f).map_or(Value::Null, Value::Number),
        }
    }
}

/// `a * 10 + b` would exceed `max`.
fn overflows<T: Copy + PartialOrd + std::ops::Div<Output = T> + std::ops::Rem<Output = T>>(
    a: T,
    b: T,
    max: T,
    ten: T,
) -> bool {
    a >= max / ten && (a > max / ten || b > max % ten)
}

/// A reader over one slice, byte by byte as serde_json's `SliceRead`.
pub struct Parser<'a> {
    bytes: &'a [u8],
    index: usize,
    /// Levels of nesting still allowed.
    depth: u8,
    scratch: Vec<u8>,
}

impl<'a> Parser<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Parser {
            bytes,
            index: 0,
            depth: DEPTH,
            scratch: Vec::new(),
        }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.index).copied()
    }

    fn peek_or_null(&self) -> u8 {
        self.peek().unwrap_or(0)
    }

    fn eat(&mut self) {
        self.index = self.index.saturating_add(1);
    }

    fn next(&mut self) -> Option<u8> {
        let b = self.peek();
        if b.is_some() {
            self.eat();
        }
        b
    }

    /// An error about the byte just read.
    fn error(&self, what: impl Into<Cow<'static, str>>) -> Error {
        self.error_at(self.index, what.into())
    }

    /// An error about the byte about to be read.
    fn peek_error(&self, what: &'static str) -> Error {
        let at = self.bytes.len().min(self.index.saturating_add(1));
        self.error_at(at, what.into())
    }

    fn error_at(&self, i: usize, what: Cow<'static, str>) -> Error {
        let before = self.bytes.get(..i).unwrap_or(self.bytes);
        let line_start = before
            .iter()
            .rposition(|b| *b == b'\n')
            .map_or(0, |p| p + 1);
        let lines = before.get(..line_start).unwrap_or_default();
        Error {
            what,
            line: 1 + lines.iter().filter(|b| **b == b'\n').count(),
            column: i - line_start,
        }
    }

    /// The next byte that is not whitespace, not consumed.
    pub(crate) fn whitespace(&mut self) -> Option<u8> {
        while let Some(b' ' | b'\n' | b'\t' | b'\r') = self.peek() {
            self.eat();
        }
        self.peek()
    }

    /// Bytes read so far.
    pub fn offset(&self) -> usize {
        self.index
    }

    /// After a number or a literal, read as one of a stream of values: what follows must end
    /// it (serde_json's `StreamDeserializer`).
    pub(crate) fn end_of_value(&self) -> Result<(), Error> {
        match self.peek() {
            None
            | Some(b' ' | b'\n' | b'\t' | b'\r' | b'"' | b'[' | b']' | b'{' | b'}' | b',' | b':') => {
                Ok(())
            }
            Some(_) => Err(self.peek_error(TRAILING_CHARACTERS)),
        }
    }

    /// Nothing but whitespace is left.
    pub fn end(&mut self) -> Result<(), Error> {
        match self.whitespace() {
            Some(_) => Err(self.peek_error(TRAILING_CHARACTERS)),
            None => Ok(()),
        }
    }

    /// Any value.
    pub fn value(&mut self) -> Result<Value, Error> {
        let Some(peek) = self.whitespace() else {
            return Err(self.peek_error(EOF_VALUE));
        };
        match peek {
            b'n' => self.ident(b"null").map(|()| Value::Null),
            b't' => self.ident(b"true").map(|()| Value::Bool(true)),
            b'f' => self.ident(b"false").map(|()| Value::Bool(false)),
            b'-' | b'0'..=b'9' => self.number().map(Value::from),
            b'"' => {
                self.eat();
                self.string().map(Value::String)
            }
            b'[' => {
                self.enter()?;
                let items = self.items();
                self.leave();
                let items = items?;
                self.end_seq().map(|()| Value::Array(items))
            }
            b'{' => {
                self.enter()?;
                let entries = self.entries();
                self.leave();
                let entries = entries?;
                self.end_map().map(|()| Value::Object(entries))
            }
            _ => Err(self.peek_error(EXPECTED_VALUE)),
        }
    }

    /// One level deeper, at `[` or `{` (eaten).
    pub(crate) fn enter(&mut self) -> Result<(), Error> {
        self.depth = self.depth.saturating_sub(1);
        if self.depth == 0 {
            return Err(self.peek_error(RECURSION_LIMIT));
        }
        self.eat();
        Ok(())
    }

    pub(crate) fn leave(&mut self) {
        self.depth = self.depth.saturating_add(1);
    }

    /// `word` (its first byte peeked).
    fn ident(&mut self, word: &[u8]) -> Result<(), Error> {
        self.eat();
        for expected in word.iter().skip(1) {
            match self.next() {
                None => return Err(self.error(EOF_VALUE)),
                Some(b) if b != *expected => return Err(self.error(EXPECTED_IDENT)),
                Some(_) => {}
            }
        }
        Ok(())
    }

    /// Before the next item of an array: `true` when there is one.
    pub(crate) fn next_item(&mut self, first: bool) -> Result<bool, Error> {
        match self.whitespace() {
            None => Err(self.peek_error(EOF_LIST)),
            Some(b']') => Ok(false),
            Some(_) if first => Ok(true),
            Some(b',') => {
                self.eat();
                match self.whitespace() {
                    Some(b']') => Err(self.peek_error(TRAILING_COMMA)),
                    Some(_) => Ok(true),
                    None => Err(self.peek_error(EOF_VALUE)),
                }
            }
            Some(_) => Err(self.peek_error(EXPECTED_LIST_COMMA_OR_END)),
        }
    }

    fn items(&mut self) -> Result<Vec<Value>, Error> {
        let mut items = Vec::new();
        while self.next_item(items.is_empty())? {
            items.push(self.value()?);
        }
        Ok(items)
    }

    /// Before the next key of an object: the key, read (not the `:`), when there is one.
    pub(crate) fn next_key(&mut self, first: bool) -> Result<Option<Cow<'a, str>>, Error> {
        if !self.has_next_key(first)? {
            return Ok(None);
        }
        self.eat();
        self.string_ref().map(Some)
    }

    /// Before the next key of an object: `true` when there is one (at its `"`).
    pub(crate) fn has_next_key(&mut self, first: bool) -> Result<bool, Error> {
        match self.whitespace() {
            None => Err(self.peek_error(EOF_OBJECT)),
            Some(b'}') => Ok(false),
            Some(b'"') if first => Ok(true),
            Some(_) if first => Err(self.peek_error(KEY_MUST_BE_A_STRING)),
            Some(b',') => {
                self.eat();
                match self.whitespace() {
                    Some(b'"') => Ok(true),
                    Some(b'}') => Err(self.peek_error(TRAILING_COMMA)),
                    Some(_) => Err(self.peek_error(KEY_MUST_BE_A_STRING)),
                    None => Err(self.peek_error(EOF_VALUE)),
                }
            }
            Some(_) => Err(self.peek_error(EXPECTED_OBJECT_COMMA_OR_END)),
        }
    }

    /// A string (its opening quote peeked).
    pub(crate) fn quoted(&mut self) -> Result<String, Error> {
        self.eat();
        self.string()
    }

    /// The `:` after a key.
    pub(crate) fn colon(&mut self) -> Result<(), Error> {
        match self.whitespace() {
            Some(b':') => {
                self.eat();
                Ok(())
            }
            Some(_) => Err(self.peek_error(EXPECTED_COLON)),
            None => Err(self.peek_error(EOF_OBJECT)),
        }
    }

    /// Entries of an object; a key given twice keeps its last value, as serde_json's map does.
    fn entries(&mut self) -> Result<Map<String, Value>, Error> {
        let mut entries = Vec::new();
        let mut first = true;
        while let Some(key) = self.next_key(first)? {
            first = false;
            self.colon()?;
            let value = self.value()?;
            entries.push((key.into_owned(), value));
        }
        Ok(Map::from_entries(entries))
    }

    pub(crate) fn end_seq(&mut self) -> Result<(), Error> {
        match self.whitespace() {
            Some(b']') => {
                self.eat();
                Ok(())
            }
            Some(b',') => {
                self.eat();
                match self.whitespace() {
                    Some(b']') => Err(self.peek_error(TRAILING_COMMA)),
                    _ => Err(self.peek_error(TRAILING_CHARACTERS)),
                }
            }
            Some(_) => Err(self.peek_error(TRAILING_CHARACTERS)),
            None => Err(self.peek_error(EOF_LIST)),
        }
    }

    pub(crate) fn end_map(&mut self) -> Result<(), Error> {
        match self.whitespace() {
            Some(b'}') => {
                self.eat();
                Ok(())
            }
            Some(b',') => Err(self.peek_error(TRAILING_COMMA)),
            Some(_) => Err(self.peek_error(TRAILING_CHARACTERS)),
            None => Err(self.peek_error(EOF_OBJECT)),
        }
    }
}

mod ignore;
mod number;
mod string;
pub(crate) mod typed;

pub(crate) use number::POW10;
pub(crate) use typed::text_struct;
pub use typed::{from_text, invalid_type, FromText, IgnoredAny};

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
#[path = "read_tests.rs"]
pub(crate) mod tests;
