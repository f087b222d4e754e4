//! MessagePack read into a `Value` by hand, as serde_json's `Value` was deserialized from
//! rmp-serde: the same documents accepted, the same values (a float that is not finite is
//! null), and the same errors word for word (a bin or an extension is no JSON value; the first
//! key of a map must be a str, later ones may be a bin holding UTF-8, as serde's `String` took).

use crate::format_float::plain;
use crate::json::{Map, Number, Value};

use super::read::{Error, Reader, Token};

/// What serde named a value found where another kind was expected (its `Unexpected`).
pub fn unexpected(t: &Token<'_>) -> String {
    match *t {
        Token::Nil => "unit value".into(),
        Token::Bool(b) => format!("boolean `{b}`"),
        Token::Uint(n) => format!("integer `{n}`"),
        Token::Int(n) => format!("integer `{n}`"),
        Token::Float(f) => {
            // serde's `WithDecimalPoint`: a finite float shows a decimal point.
            let mut s = crate::quote::text(&plain(f));
            if f.is_finite() && !s.contains('.') {
                s.push_str(".0");
            }
            format!("floating point `{s}`")
        }
        Token::Str(_) | Token::Bin(_) => "byte array".into(),
        Token::Array(_) => "sequence".into(),
        Token::Map(_) => "map".into(),
        Token::Ext(_) => "newtype struct".into(),
    }
}

fn invalid_type(t: &Token<'_>, expected: &str) -> Error {
    Error::Syntax(format!(
        "invalid type: {}, expected {expected}",
        unexpected(t)
    ))
}

/// The next value.
pub fn value(r: &mut Reader<'_>) -> Result<Value, Error> {
    let t = r.token()?;
    Ok(match t {
        Token::Nil => Value::Null,
        Token::Bool(b) => Value::Bool(b),
        Token::Uint(n) => Value::Number(n.into()),
        Token::Int(n) => Value::Number(n.into()),
        Token::Float(f) => Number::from_f64(f).map_or(Value::Null, Value::Number),
        Token::Str(b) => Value::String(std::str::from_utf8(b).map_err(Error::Utf8)?.to_owned()),
        Token::Bin(_) => return Err(invalid_type(&t, EXPECTED)),
        Token::Array(n) => r.nested(|r| {
            let mut items = Vec::new();
            for _ in 0..n {
                items.push(value(r)?);
            }
            Ok(Value::Array(items))
        })?,
        Token::Map(n) => r.nested(|r| map(r, n))?,
        Token::Ext(_) => r.nested(|_| Err(invalid_type(&t, EXPECTED)))?,
    })
}

const EXPECTED: &str = "any valid JSON value";

fn map(r: &mut Reader<'_>, n: u32) -> Result<Value, Error> {
    let mut out = Vec::new();
    for i in 0..n {
        let t = r.token()?;
        let expected = if i == 0 { "a string key" } else { "a string" };
        let key = match t {
            Token::Str(b) => std::str::from_utf8(b).map_err(Error::Utf8)?,
            Token::Bin(b) if i > 0 => std::str::from_utf8(b).map_err(|_| {
                Error::Syntax(format!("invalid value: byte array, expected {expected}"))
            })?,
            Token::Array(_) | Token::Map(_) | Token::Ext(_) => {
                return r.nested(|_| Err(invalid_type(&t, expected)))
            }
            _ => return Err(invalid_type(&t, expected)),
        };
        let v = value(r)?;
        out.push((key.to_owned(), v));
    }
    Ok(Value::Object(Map::from_entries(out)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use serde::Deserialize;

    fn read(bytes: &[u8]) -> Result<(Value, usize), String> {
        let mut r = Reader::new(bytes, 128);
        let v = value(&mut r).map_err(|e| e.to_string())?;
        Ok((v, r.rest().len()))
    }

    fn read_rmp(bytes: &[u8]) -> Result<(Value, usize), String> {
        let mut rest = bytes;
        let mut de = rmp_serde::Deserializer::new(&mut rest);
        de.set_max_depth(128);
        let v = Value::deserialize(&mut de).map_err(|e| e.to_string())?;
        Ok((v, rest.len()))
    }

    #[test]
    fn every_marker_and_cut_reads_as_with_rmp_serde() {
        let fills: [&[u8]; 7] = [
            &[0; 24],
            &[1; 24],
            &[0xff; 24],
            b"\x03abcdefghijklmnopqrstuvw",
            b"\x00\x02\x91\xc0\x81\xa1k\xcb\x7f\xf8\0\0\0\0\0\0\xd4\x01\x02\xc4\x01\xfe\xa2\xc3",
            b"\xa1k\xc0\xc4\x01k\xc0\xc4\x01\xff\xc0\xca\x7f\x80\0\0\xc0\xcb\x41\xf0\0\0\0\0\0\0\xc0",
            b"\xa1k\xc0\xa1\xffk\xc0\x91\xc0\xc0\x80\xc0\xd4\x01\x02\xc0\xc3\xc0\xe0\xc0",
        ];
        for marker in 0..=255u8 {
            for fill in fills {
                for len in 0..=fill.len() {
                    let mut bytes = vec![marker];
                    bytes.extend_from_slice(&fill[..len]);
                    assert_eq!(read(&bytes), read_rmp(&bytes), "{bytes:02x?}");
                }
            }
        }
    }

    #[test]
    fn generated_and_mutated_documents_read_as_with_rmp_serde() {
        use crate::msgpack::testing::{any_doc, any_request, mutations, respell};
        let mut rng = crate::rng::Rng::seed_from_u64(61);
        let (mut read_ok, mut refused) = (0, 0);
        for round in 0..3000 {
            let doc = match round % 2 {
                0 => any_doc(&mut rng),
                _ => any_request(&mut rng),
            };
            let mut inputs = vec![respell(&doc, &mut rng), doc];
            if round % 4 == 0 {
                inputs.extend(mutations(&inputs[1], &mut rng));
            }
            for bytes in &inputs {
                let got = read(bytes);
                assert_eq!(got, read_rmp(bytes), "{bytes:02x?}");
                if got.is_ok() {
                    read_ok += 1;
                } else {
                    refused += 1;
                }
            }
        }
        assert!(
            read_ok > 1000 && refused > 1000,
            "{read_ok} read, {refused} refused"
        );
    }

    #[test]
    fn deep_nesting_is_refused_as_rmp_serde_refused_it() {
        for depth in [126, 127, 128, 129, 300] {
            for open in [0x91u8, 0x81] {
                let mut bytes = Vec::new();
                for _ in 0..depth {
                    bytes.push(open);
                    if open == 0x81 {
                        bytes.extend_from_slice(b"\xa1k");
                    }
                }
                bytes.push(0xc0);
                assert_eq!(read(&bytes), read_rmp(&bytes), "{depth} {open:x}");
                // A bad key or an extension at the bottom.
                for bottom in [
                    &b"\x81\x91\xc0\xc0"[..],
                    b"\xd4\x01\x02",
                    b"\x81\xd4\x01\x02\xc0",
                ] {
                    let mut b = bytes[..bytes.len() - 1].to_vec();
                    b.extend_from_slice(bottom);
                    assert_eq!(read(&b), read_rmp(&b), "{depth} {open:x} {bottom:x?}");
                }
            }
        }
    }
}
