//! A serde `Deserializer` over MessagePack, kept for tests: the body readers' serde walks
//! (`payload::extract`, `inspect::openai`, `inspect::scan`) ran on it before they were written by
//! hand on [`super::read::Reader`]. It hands every
//! visitor what rmp-serde's did, for the methods those walks call (`any`, `option`, `seq`,
//! `struct`, `identifier`, `str`, `ignored_any`, `newtype_struct`); a bin read as a sequence
//! or struct is its bytes as integers, invalid UTF-8 in a str is offered as bytes, an extension
//! is a newtype holding (type, payload), and a container left with items unread is an error.
//! The number methods, `unit_struct` and `enum`, which no body reader calls, take any value.

use std::fmt::Display;

use serde::de::value::SeqDeserializer;
use serde::de::{self, DeserializeSeed, Visitor};
use serde::forward_to_deserialize_any;

use super::read::{Error, Reader, Token};

impl de::Error for Error {
    fn custom<T: Display>(msg: T) -> Self {
        Error::Syntax(msg.to_string())
    }
}

impl<'de> Reader<'de> {
    /// The next value, to `v`. A bin goes to `visit_bytes` if `bin_as_bytes`, else it is a
    /// sequence of its bytes (what rmp-serde does for `seq` and `struct`).
    fn visit<V: Visitor<'de>>(&mut self, v: V, bin_as_bytes: bool) -> Result<V::Value, Error> {
        match self.token()? {
            Token::Nil => v.visit_unit(),
            Token::Bool(b) => v.visit_bool(b),
            Token::Uint(n) => v.visit_u64(n),
            Token::Int(n) => v.visit_i64(n),
            Token::Float(f) => v.visit_f64(f),
            Token::Str(b) => match std::str::from_utf8(b) {
                Ok(s) => v.visit_borrowed_str(s),
                Err(e) => v
                    .visit_borrowed_bytes::<Error>(b)
                    .map_err(|_| Error::Utf8(e)),
            },
            Token::Bin(b) if bin_as_bytes => v.visit_borrowed_bytes(b),
            Token::Bin(b) => v.visit_seq(SeqDeserializer::new(b.iter().copied())),
            Token::Array(n) => self.nested(|r| Items::visit(r, n, |items| v.visit_seq(items))),
            Token::Map(n) => self.nested(|r| Items::visit(r, n, |items| v.visit_map(items))),
            Token::Ext(len) => self.nested(|r| v.visit_newtype_struct(Ext::new(r, len))),
        }
    }
}

impl<'de> de::Deserializer<'de> for &mut Reader<'de> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        self.visit(v, true)
    }

    fn deserialize_option<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        match self.peek() {
            None => Err(Error::Marker),
            Some(0xc0) => {
                self.token()?;
                v.visit_none()
            }
            Some(_) => v.visit_some(self),
        }
    }

    fn deserialize_seq<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        self.visit(v, false)
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, _: usize, v: V) -> Result<V::Value, Error> {
        self.visit(v, false)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: usize,
        v: V,
    ) -> Result<V::Value, Error> {
        self.visit(v, false)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, Error> {
        self.visit(v, false)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        v: V,
    ) -> Result<V::Value, Error> {
        v.visit_newtype_struct(self)
    }

    fn is_human_readable(&self) -> bool {
        false
    }

    forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        unit unit_struct map enum identifier ignored_any
    }
}

/// The items of an array or map being visited.
struct Items<'r, 'de> {
    r: &'r mut Reader<'de>,
    left: u32,
}

impl<'r, 'de> Items<'r, 'de> {
    /// Runs `visit` over `n` items; items it leaves unread are an error.
    fn visit<T>(
        r: &'r mut Reader<'de>,
        n: u32,
        visit: impl FnOnce(&mut Self) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let mut items = Items { r, left: n };
        let out = visit(&mut items)?;
        match items.left {
            0 => Ok(out),
            left => Err(Error::Length(n - left)),
        }
    }

    fn next<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, Error> {
        if self.left == 0 {
            return Ok(None);
        }
        self.left -= 1;
        seed.deserialize(&mut *self.r).map(Some)
    }

    /// Items left, bounded by the bytes left (each takes one at least): a count in a header
    /// is not an allocation size.
    fn size_hint(&self) -> Option<usize> {
        Some((self.left as usize).min(self.r.rest().len()))
    }
}

impl<'de> de::SeqAccess<'de> for &mut Items<'_, 'de> {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        self.next(seed)
    }

    fn size_hint(&self) -> Option<usize> {
        Items::size_hint(self)
    }
}

impl<'de> de::MapAccess<'de> for &mut Items<'_, 'de> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        self.next(seed)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        seed.deserialize(&mut *self.r)
    }

    fn size_hint(&self) -> Option<usize> {
        Items::size_hint(self)
    }
}

/// An extension as rmp-serde shows it: a newtype around the sequence (type as i8, payload as
/// bytes), each read when asked for.
struct Ext<'r, 'de> {
    r: &'r mut Reader<'de>,
    len: u32,
    /// Elements handed out: 0, 1 (the type) or 2 (the payload).
    read: u8,
}

impl<'r, 'de> Ext<'r, 'de> {
    fn new(r: &'r mut Reader<'de>, len: u32) -> Self {
        Ext { r, len, read: 0 }
    }
}

impl<'de> de::Deserializer<'de> for Ext<'_, 'de> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(mut self, v: V) -> Result<V::Value, Error> {
        v.visit_seq(&mut self)
    }

    forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map struct enum
        identifier ignored_any
    }
}

impl<'de> de::SeqAccess<'de> for &mut Ext<'_, 'de> {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        match self.read {
            0 | 1 => seed.deserialize(ExtPart(self)).map(Some),
            _ => Ok(None),
        }
    }
}

/// The next element of an [`Ext`].
struct ExtPart<'e, 'r, 'de>(&'e mut Ext<'r, 'de>);

impl<'de> de::Deserializer<'de> for ExtPart<'_, '_, 'de> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        let ext = self.0;
        ext.read += 1;
        match ext.read {
            1 => v.visit_i8(ext.r.ext_type()?),
            _ => v.visit_borrowed_bytes(ext.r.ext_data(ext.len)?),
        }
    }

    forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map struct enum
        identifier ignored_any
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use serde_json::Value;

    /// A value and what is left after it, or the error's text.
    fn read(bytes: &[u8]) -> Result<(Value, usize), String> {
        let mut r = Reader::new(bytes, 128);
        let v = Value::deserialize(&mut r).map_err(|e| e.to_string())?;
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
        let fills: [&[u8]; 5] = [
            &[0; 24],
            &[1; 24],
            &[0xff; 24],
            b"\x03abcdefghijklmnopqrstuvw",
            b"\x00\x02\x91\xc0\x81\xa1k\xcb\x7f\xf8\0\0\0\0\0\0\xd4\x01\x02\xc4\x01\xfe\xa2\xc3",
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
    fn a_count_is_no_size_hint_beyond_the_bytes_left() {
        // array 32 claiming 2^32 - 1 items, two present.
        let mut r = Reader::new(&[0xdd, 0xff, 0xff, 0xff, 0xff, 0xc0, 0xc0], 128);
        assert_eq!(r.token(), Ok(Token::Array(u32::MAX)));
        let items = Items {
            r: &mut r,
            left: u32::MAX,
        };
        assert_eq!(items.size_hint(), Some(2));
        let mut r = Reader::new(&[0xdb, 0xff, 0xff, 0xff, 0xff], 128);
        assert_eq!(r.token(), Err(Error::Payload));
    }
}
