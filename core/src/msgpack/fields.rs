//! Typed reading of the shared-state documents, accepting exactly what rmp-serde hands a
//! derived `Deserialize` (the documents were written and read that way before):
//!
//! * a struct: an array of its fields in order (trailing `#[serde(default)]` fields may be
//!   missing, extra items are an error); a map keyed by field name (str or bin) or field index
//!   (a positive fixint / uint), unknown keys skipped, a repeated field an error; or a bin
//!   whose bytes are its fields;
//! * a sequence: an array, or a bin whose bytes are its items;
//! * an unsigned integer: any integer in range; a float: any integer or float; a string: a str
//!   or bin holding UTF-8; an option: nil for none.
//!
//! Each reader takes the value's first token, already read, and reads the rest of it.

use super::read::{Error, Reader, Token};

/// A sentence for an error on a value of the wrong kind (logged, never matched).
fn unexpected(t: Token, expected: &str) -> Error {
    let kind = match t {
        Token::Nil => "nil",
        Token::Bool(_) => "a boolean",
        Token::Uint(_) | Token::Int(_) => "an integer",
        Token::Float(_) => "a float",
        Token::Str(_) => "a string",
        Token::Bin(_) => "bytes",
        Token::Array(_) => "an array",
        Token::Map(_) => "a map",
        Token::Ext(_) => "an extension",
    };
    Error::Syntax(format!("invalid type: {kind}, expected {expected}"))
}

pub fn u64_of(t: Token) -> Result<u64, Error> {
    match t {
        Token::Uint(v) => Ok(v),
        Token::Int(v) => u64::try_from(v).map_err(|_| unexpected(t, "an unsigned integer")),
        _ => Err(unexpected(t, "an unsigned integer")),
    }
}

pub fn u32_of(t: Token) -> Result<u32, Error> {
    u32::try_from(u64_of(t)?).map_err(|_| Error::Syntax("integer out of range for u32".into()))
}

pub fn f64_of(t: Token) -> Result<f64, Error> {
    match t {
        Token::Uint(v) => Ok(v as f64),
        Token::Int(v) => Ok(v as f64),
        Token::Float(v) => Ok(v),
        _ => Err(unexpected(t, "a float")),
    }
}

pub fn string_of(t: Token) -> Result<String, Error> {
    match t {
        Token::Str(b) | Token::Bin(b) => std::str::from_utf8(b)
            .map(str::to_owned)
            .map_err(Error::Utf8),
        _ => Err(unexpected(t, "a string")),
    }
}

/// `None` for nil, else what `read` makes of the value. (rmp-serde also refuses a bin's byte
/// as an option; no document has an optional number, so that case never arises here.)
pub fn option_of<'a, T>(
    r: &mut Reader<'a>,
    t: Token<'a>,
    read: impl FnOnce(&mut Reader<'a>, Token<'a>) -> Result<T, Error>,
) -> Result<Option<T>, Error> {
    match t {
        Token::Nil => Ok(None),
        _ => read(r, t).map(Some),
    }
}

/// The items of a sequence, each read by `item`. A bin's bytes are unsigned integers.
pub fn seq_of<'a, T>(
    r: &mut Reader<'a>,
    t: Token<'a>,
    mut item: impl FnMut(&mut Reader<'a>, Token<'a>) -> Result<T, Error>,
) -> Result<Vec<T>, Error> {
    let mut out = Vec::new();
    each_item(r, t, &mut |r: &mut Reader<'a>, first, capacity| {
        if out.capacity() == 0 {
            out.reserve_exact(capacity);
        }
        out.push(item(r, first)?);
        Ok(())
    })?;
    Ok(out)
}

/// What [`each_item`] and [`fields`] call, behind `dyn`: traits of their own rather than
/// `dyn FnMut`, whose vtable holds a `call_once` shim per closure that nothing calls.
trait Item<'a> {
    fn item(&mut self, r: &mut Reader<'a>, first: Token<'a>, capacity: usize) -> Result<(), Error>;
}

impl<'a, F: FnMut(&mut Reader<'a>, Token<'a>, usize) -> Result<(), Error>> Item<'a> for F {
    fn item(&mut self, r: &mut Reader<'a>, first: Token<'a>, capacity: usize) -> Result<(), Error> {
        self(r, first, capacity)
    }
}

/// See [`Item`].
trait Field<'a> {
    fn field(&mut self, i: usize, r: &mut Reader<'a>, first: Token<'a>) -> Result<(), Error>;
}

impl<'a, F: FnMut(usize, &mut Reader<'a>, Token<'a>) -> Result<(), Error>> Field<'a> for F {
    fn field(&mut self, i: usize, r: &mut Reader<'a>, first: Token<'a>) -> Result<(), Error> {
        self(i, r, first)
    }
}

/// `seq_of`'s walk, one copy for every item type (a generic body would be one per caller):
/// hands each item's first token to `item` with the capacity the sequence needs.
fn each_item<'a>(r: &mut Reader<'a>, t: Token<'a>, item: &mut dyn Item<'a>) -> Result<(), Error> {
    match t {
        Token::Array(n) => r.nested(|r| {
            // Every item takes a byte at least: a count beyond the input is not allocated.
            let capacity = (n as usize).min(r.rest().len());
            for _ in 0..n {
                let first = r.token()?;
                item.item(r, first, capacity)?;
            }
            Ok(())
        }),
        Token::Bin(bytes) => {
            for b in bytes {
                item.item(r, Token::Uint(u64::from(*b)), bytes.len())?;
            }
            Ok(())
        }
        _ => Err(unexpected(t, "a sequence")),
    }
}

/// Reads a struct with the fields `names` (at most 32), handing each field present to `field`
/// (its index, the reader, its first token). The first `required` fields must be present; the
/// others have defaults, which the caller starts from.
pub fn struct_of<'a>(
    r: &mut Reader<'a>,
    t: Token<'a>,
    names: &[&str],
    required: usize,
    mut field: impl FnMut(usize, &mut Reader<'a>, Token<'a>) -> Result<(), Error>,
) -> Result<(), Error> {
    fields(r, t, names, required, &mut field)
}

/// `struct_of`'s walk, one copy for every struct (a generic body would be one per caller).
fn fields<'a>(
    r: &mut Reader<'a>,
    t: Token<'a>,
    names: &[&str],
    required: usize,
    field: &mut dyn Field<'a>,
) -> Result<(), Error> {
    let all = names.len();
    let present = match t {
        Token::Array(n) => r.nested(|r| {
            let n = n as usize;
            for i in 0..all.min(n) {
                let first = r.token()?;
                field.field(i, r, first)?;
            }
            if n > all {
                return Err(Error::Length(all as u32));
            }
            Ok(leading(n))
        })?,
        // Bytes past the fields are ignored: rmp-serde does not check that this sequence ended.
        Token::Bin(bytes) => {
            for (i, b) in bytes.iter().take(all).enumerate() {
                field.field(i, r, Token::Uint(u64::from(*b)))?;
            }
            leading(bytes.len())
        }
        Token::Map(n) => r.nested(|r| {
            let mut seen = 0u32;
            for _ in 0..n {
                let key = r.token()?;
                let Some(i) = field_index(key, names)? else {
                    r.skip()?;
                    continue;
                };
                if seen & (1 << i) != 0 {
                    let name = names.get(i).copied().unwrap_or_default();
                    return Err(Error::Syntax(format!("duplicate field `{name}`")));
                }
                seen |= 1 << i;
                let first = r.token()?;
                field.field(i, r, first)?;
            }
            Ok(seen)
        })?,
        _ => return Err(unexpected(t, "a struct")),
    };
    match names
        .iter()
        .take(required)
        .enumerate()
        .find(|(i, _)| present & (1 << i) == 0)
    {
        Some((_, name)) => Err(Error::Syntax(format!("missing field `{name}`"))),
        None => Ok(()),
    }
}

/// Bits 0 to `n - 1` (the first `n` fields).
fn leading(n: usize) -> u32 {
    u32::try_from((1u64 << n.min(32)) - 1).unwrap_or(u32::MAX)
}

/// Which field a map key names: by name (str or bin), or by index; `None` for another field.
fn field_index(key: Token, names: &[&str]) -> Result<Option<usize>, Error> {
    match key {
        Token::Str(b) | Token::Bin(b) => Ok(names.iter().position(|n| n.as_bytes() == b)),
        Token::Uint(i) => Ok(usize::try_from(i).ok().filter(|i| *i < names.len())),
        _ => Err(unexpected(key, "a field name")),
    }
}
