//! One pass over a JSON or MessagePack body that keeps only the fields in a [`PointerSet`].
//!
//! The walk is driven by the pointer trie: keys on a pointer's path are followed, everything else
//! is skipped as serde's `IgnoredAny` skips it (still checked for well-formedness), and only the
//! values a pointer ends at are materialised. MessagePack is walked by hand on
//! `msgpack::read::Reader` (`mp_walk`), JSON on `json::read`'s parser (`json_walk`): each accepts
//! and refuses what the serde walk (`NodeSeed`, kept for tests) did over rmp-serde and
//! serde_json, error for error.

use std::fmt;

use crate::json::Value;
#[cfg(test)]
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};

#[cfg(test)]
use super::pointer::Node;
use super::pointer::PointerSet;
use crate::json::read::{Error as JsonError, Parser};
use crate::msgpack;
use crate::msgpack::read::{Error as MpError, Reader, Token};

/// Nesting deeper than this is refused (serde_json's own limit is the same).
pub(super) const MAX_DEPTH: usize = 128;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    MessagePack,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Json => "JSON",
            Format::MessagePack => "MessagePack",
        }
    }
}

/// The values found for each pointer of the set, by pointer index.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Fields {
    values: Vec<Option<Value>>,
}

impl Fields {
    pub fn with_len(len: usize) -> Self {
        Fields {
            values: vec![None; len],
        }
    }

    pub fn get(&self, pointer: usize) -> Option<&Value> {
        self.values.get(pointer).and_then(Option::as_ref)
    }

    /// Every pointer has a value.
    pub fn all_found(&self) -> bool {
        self.values.iter().all(Option::is_some)
    }

    pub fn set(&mut self, pointer: usize, value: Value) {
        if let Some(slot) = self.values.get_mut(pointer) {
            *slot = Some(value);
        }
    }
}

/// Why a body could not be read. `detail` is safe to return to the client: it describes the
/// document's shape, never echoes its content beyond a key name routing reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtractError {
    pub detail: String,
}

impl fmt::Display for ExtractError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.detail)
    }
}

pub fn extract(set: &PointerSet, format: Format, bytes: &[u8]) -> Result<Fields, ExtractError> {
    let mut out = Fields::with_len(set.len());
    let result = match format {
        // JSON is UTF-8 (RFC 8259). serde_json skips unread strings without checking them, so
        // check the whole body once: a router must not pass on what the model server may reject
        // differently.
        Format::Json if std::str::from_utf8(bytes).is_err() => {
            Err("the body is not valid UTF-8".to_string())
        }
        Format::Json => {
            let mut p = Parser::new(bytes);
            json_walk(&mut p, set, 0, &mut out)
                .and_then(|()| p.end())
                .map_err(|e| crate::quote::text(&e))
        }
        Format::MessagePack => {
            let mut r = Reader::new(bytes, MAX_DEPTH);
            match mp_walk(&mut r, set, 0, &mut out) {
                Ok(()) if !r.rest().is_empty() => Err(format!(
                    "{} bytes after the end of the document",
                    r.rest().len()
                )),
                other => other.map_err(|e| crate::quote::text(&e)),
            }
        }
    };
    match result {
        Ok(()) => Ok(out),
        Err(detail) => Err(ExtractError {
            detail: format!("malformed {}: {}", format.name(), detail),
        }),
    }
}

#[cfg(test)]
struct NodeSeed<'s, 'o> {
    set: &'s PointerSet,
    node: usize,
    out: &'o mut Fields,
}

#[cfg(test)]
impl NodeSeed<'_, '_> {
    fn node(&self) -> Option<&Node> {
        self.set.nodes.get(self.node)
    }
}

#[cfg(test)]
impl<'de> DeserializeSeed<'de> for NodeSeed<'_, '_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        let ends_here = self.node().is_some_and(|n| !n.ends.is_empty());
        if ends_here {
            // A pointer ends here: keep the value, and serve deeper pointers from it.
            let value = Value::deserialize(deserializer)?;
            fill_from_value(self.set, self.node, &value, self.out);
            Ok(())
        } else {
            deserializer.deserialize_any(NodeVisitor { seed: self })
        }
    }
}

#[cfg(test)]
use serde::Deserialize;

/// The walk of [`NodeSeed`] over JSON, by hand on `json::read`'s parser: what serde_json did
/// when driven by the seed (keys off the pointers skipped as `IgnoredAny`), error for error.
fn json_walk(
    p: &mut Parser<'_>,
    set: &PointerSet,
    node: usize,
    out: &mut Fields,
) -> Result<(), JsonError> {
    let here = set.nodes.get(node);
    if here.is_some_and(|n| !n.ends.is_empty()) {
        let value = p.value()?;
        fill_from_value(set, node, &value, out);
        return Ok(());
    }
    let children: &[(String, usize)] = here.map(|n| n.children.as_slice()).unwrap_or_default();
    match p.whitespace() {
        Some(b'{') => {
            p.enter()?;
            p.closed(true, &mut |p: &mut Parser<'_>| {
                json_object(p, set, children, out)
            })
        }
        Some(b'[') => {
            p.enter()?;
            p.closed(false, &mut |p: &mut Parser<'_>| {
                json_array(p, set, children, out)
            })
        }
        // A leaf: read (and checked) whole, as serde_json handed it to the visitor.
        _ => p.value().map(drop),
    }
}

fn json_object(
    p: &mut Parser<'_>,
    set: &PointerSet,
    children: &[(String, usize)],
    out: &mut Fields,
) -> Result<(), JsonError> {
    let mut seen = vec![false; children.len()];
    let mut first = true;
    while let Some(key) = p.next_key(first)? {
        first = false;
        match children.iter().position(|(token, _)| *token == key) {
            Some(slot) => {
                if let Some(flag) = seen.get_mut(slot) {
                    if *flag {
                        return Err(JsonError::custom(format!(
                            "duplicate key \"{key}\" in one object"
                        )));
                    }
                    *flag = true;
                }
                p.colon()?;
                let child = children.get(slot).map_or(usize::MAX, |(_, c)| *c);
                json_walk(p, set, child, out)?;
            }
            None => {
                p.colon()?;
                p.ignore_value()?;
            }
        }
    }
    Ok(())
}

fn json_array(
    p: &mut Parser<'_>,
    set: &PointerSet,
    children: &[(String, usize)],
    out: &mut Fields,
) -> Result<(), JsonError> {
    let mut index = 0usize;
    while p.next_item(index == 0)? {
        let wanted = children
            .iter()
            .find(|(token, _)| array_index(token) == Some(index))
            .map(|(_, c)| *c);
        match wanted {
            Some(child) => json_walk(p, set, child, out)?,
            None => p.ignore_value()?,
        }
        index = index.saturating_add(1);
    }
    Ok(())
}

/// The walk of [`NodeSeed`] over MessagePack, by hand on `msgpack::read`'s reader: what
/// rmp-serde did when driven by the seed (keys off the pointers skipped as `IgnoredAny`; keys
/// that are not str never match; an extension is the sequence (type, payload)), error for error.
fn mp_walk(
    r: &mut Reader<'_>,
    set: &PointerSet,
    node: usize,
    out: &mut Fields,
) -> Result<(), MpError> {
    let here = set.nodes.get(node);
    if here.is_some_and(|n| !n.ends.is_empty()) {
        let value = msgpack::value::value(r)?;
        fill_from_value(set, node, &value, out);
        return Ok(());
    }
    let children: &[(String, usize)] = here.map(|n| n.children.as_slice()).unwrap_or_default();
    let at = |index: usize| {
        children
            .iter()
            .find(|(token, _)| array_index(token) == Some(index))
            .map(|(_, c)| *c)
    };
    match r.token()? {
        Token::Array(n) => r.nested(|r| {
            for index in 0..n {
                match at(index as usize) {
                    Some(child) => mp_walk(r, set, child, out)?,
                    None => r.skip()?,
                }
            }
            Ok(())
        }),
        Token::Map(n) => r.nested(|r| mp_map(r, set, children, n, out)),
        Token::Ext(len) => r.nested(|r| {
            let tag = r.ext_type()?;
            let ends = |c: Option<usize>| {
                c.and_then(|c| set.nodes.get(c).map(|n| (c, !n.ends.is_empty())))
                    .filter(|(_, e)| *e)
                    .map(|(c, _)| c)
            };
            if let Some(c) = ends(at(0)) {
                fill_from_value(set, c, &Value::Number(i64::from(tag).into()), out);
            }
            r.ext_data(len)?;
            match ends(at(1)) {
                Some(_) => Err(MpError::Syntax(
                    "invalid type: byte array, expected any valid JSON value".into(),
                )),
                None => Ok(()),
            }
        }),
        // A leaf, read (and checked) whole: nothing below it can match.
        _ => Ok(()),
    }
}

fn mp_map(
    r: &mut Reader<'_>,
    set: &PointerSet,
    children: &[(String, usize)],
    n: u32,
    out: &mut Fields,
) -> Result<(), MpError> {
    let mut seen = vec![false; children.len()];
    for _ in 0..n {
        let slot = match r.token()? {
            Token::Str(b) => std::str::from_utf8(b)
                .ok()
                .and_then(|key| children.iter().position(|(token, _)| token == key)),
            Token::Array(m) => r.nested(|r| (0..m).try_for_each(|_| r.skip()).map(|()| None))?,
            Token::Map(m) => r.nested(|r| {
                (0..m)
                    .try_for_each(|_| r.skip().and_then(|()| r.skip()))
                    .map(|()| None)
            })?,
            Token::Ext(_) => r.nested(|_| {
                Err(MpError::Syntax(
                    "invalid type: newtype struct, expected a map key".into(),
                ))
            })?,
            _ => None,
        };
        match slot.and_then(|slot| Some((seen.get_mut(slot)?, children.get(slot)?))) {
            Some((flag, (token, child))) => {
                if *flag {
                    return Err(MpError::Syntax(format!(
                        "duplicate key \"{token}\" in one object"
                    )));
                }
                *flag = true;
                mp_walk(r, set, *child, out)?;
            }
            None => r.skip()?,
        }
    }
    Ok(())
}

pub(super) fn fill_from_value(set: &PointerSet, node: usize, value: &Value, out: &mut Fields) {
    let Some(n) = set.nodes.get(node) else { return };
    for &end in &n.ends {
        out.set(end, value.clone());
    }
    for (token, child) in &n.children {
        let sub = match value {
            Value::Object(map) => map.get(token),
            Value::Array(items) => array_index(token).and_then(|i| items.get(i)),
            _ => None,
        };
        if let Some(sub) = sub {
            fill_from_value(set, *child, sub, out);
        }
    }
}

/// RFC 6901 array index: digits without a leading zero (except "0").
pub(super) fn array_index(token: &str) -> Option<usize> {
    if token.is_empty() || (token.len() > 1 && token.starts_with('0')) {
        return None;
    }
    if !token.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    crate::parse_int::unsigned(token, 10)
}

#[cfg(test)]
struct NodeVisitor<'s, 'o> {
    seed: NodeSeed<'s, 'o>,
}

#[cfg(test)]
impl<'de> Visitor<'de> for NodeVisitor<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let NodeSeed { set, node, out } = self.seed;
        let children: &[(String, usize)] = set
            .nodes
            .get(node)
            .map(|n| n.children.as_slice())
            .unwrap_or_default();
        let mut seen = vec![false; children.len()];
        while let Some(key) = map.next_key_seed(KeySeed { children })? {
            match key {
                Some(slot) => {
                    let Some((token, child)) = children.get(slot) else {
                        return Err(de::Error::custom("internal: key slot out of range"));
                    };
                    if let Some(flag) = seen.get_mut(slot) {
                        if *flag {
                            return Err(de::Error::custom(format!(
                                "duplicate key \"{token}\" in one object"
                            )));
                        }
                        *flag = true;
                    }
                    map.next_value_seed(NodeSeed {
                        set,
                        node: *child,
                        out: &mut *out,
                    })?;
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let NodeSeed { set, node, out } = self.seed;
        let wanted: Vec<(usize, usize)> = set
            .nodes
            .get(node)
            .map(|n| {
                n.children
                    .iter()
                    .filter_map(|(token, child)| array_index(token).map(|i| (i, *child)))
                    .collect()
            })
            .unwrap_or_default();
        let mut index = 0usize;
        loop {
            let child = wanted.iter().find(|(i, _)| *i == index).map(|(_, c)| *c);
            let more = match child {
                Some(child) => seq
                    .next_element_seed(NodeSeed {
                        set,
                        node: child,
                        out: &mut *out,
                    })?
                    .is_some(),
                None => seq.next_element::<IgnoredAny>()?.is_some(),
            };
            if !more {
                return Ok(());
            }
            index = index.saturating_add(1);
        }
    }

    // Scalars and other leaves: nothing below them can match.
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_bytes<E: de::Error>(self, _: &[u8]) -> Result<(), E> {
        Ok(())
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
    fn visit_newtype_struct<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
    fn visit_enum<A: de::EnumAccess<'de>>(self, data: A) -> Result<(), A::Error> {
        // MessagePack extension types surface as enums; routing never reads inside them.
        let (_, variant) = data.variant::<IgnoredAny>()?;
        de::VariantAccess::newtype_variant::<IgnoredAny>(variant)?;
        Ok(())
    }
}

/// Reads a map key and says which child of the current node it names, if any. Non-string keys
/// (MessagePack allows them) never match a pointer token.
#[cfg(test)]
struct KeySeed<'c> {
    children: &'c [(String, usize)],
}

#[cfg(test)]
impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
    type Value = Option<usize>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Option<usize>, D::Error> {
        d.deserialize_any(self)
    }
}

#[cfg(test)]
impl KeySeed<'_> {
    fn slot(&self, key: &str) -> Option<usize> {
        self.children.iter().position(|(token, _)| token == key)
    }
}

#[cfg(test)]
impl<'de> Visitor<'de> for KeySeed<'_> {
    type Value = Option<usize>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a map key")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Option<usize>, E> {
        Ok(self.slot(v))
    }
    fn visit_bytes<E: de::Error>(self, _: &[u8]) -> Result<Option<usize>, E> {
        // A MessagePack binary key is not a field name: only string keys match, as in every
        // other reader of the body (shadow and retry copies rewrite string keys only).
        Ok(None)
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Option<usize>, E> {
        Ok(None)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Option<usize>, E> {
        Ok(None)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Option<usize>, E> {
        Ok(None)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Option<usize>, E> {
        Ok(None)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Option<usize>, E> {
        Ok(None)
    }
    fn visit_none<E: de::Error>(self) -> Result<Option<usize>, E> {
        Ok(None)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Option<usize>, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(None)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Option<usize>, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(None)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::json::json;

    fn set(pointers: &[&str]) -> PointerSet {
        let mut s = PointerSet::new();
        for p in pointers {
            s.insert(p).unwrap();
        }
        s
    }

    #[test]
    fn json_reads_only_pointed_fields() {
        let s = set(&["/temperature", "/messages/1/role", "/meta/tags/0"]);
        let body = br#"{"model":"chat","temperature":1.5,"messages":[{"role":"system"},{"role":"user","content":"hi"}],"meta":{"tags":["a","b"]},"other":{"x":[1,2,{"y":null}]}}"#;
        let f = extract(&s, Format::Json, body).unwrap();
        assert_eq!(f.get(0), Some(&json!("chat")));
        assert_eq!(f.get(1), Some(&json!(1.5)));
        assert_eq!(f.get(2), Some(&json!("user")));
        assert_eq!(f.get(3), Some(&json!("a")));
    }

    #[test]
    fn missing_and_type_mismatch_are_absent() {
        let s = set(&["/a/b", "/list/5"]);
        let f = extract(&s, Format::Json, br#"{"a":3,"list":[1]}"#).unwrap();
        assert_eq!(f.get(0), None);
        assert_eq!(f.get(1), None);
        assert_eq!(f.get(2), None);
        let f = extract(&s, Format::Json, b"[1,2]").unwrap();
        assert_eq!(f.get(1), None);
        let f = extract(&s, Format::Json, b"\"scalar\"").unwrap();
        assert_eq!(f.get(0), None);
    }

    #[test]
    fn nested_pointer_under_leaf_pointer() {
        let s = set(&["/a", "/a/b"]);
        let f = extract(&s, Format::Json, br#"{"a":{"b":2}}"#).unwrap();
        assert_eq!(f.get(1), Some(&json!({"b":2})));
        assert_eq!(f.get(2), Some(&json!(2)));
    }

    #[test]
    fn malformed_json_is_an_error() {
        let s = set(&[]);
        for bad in [
            &b"{\"model\": "[..],
            b"",
            b"{}{}",
            b"{\"a\":1,}",
            b"\xff\xfe",
            b"{\"model\":\"\xff\"}",
        ] {
            let e = extract(&s, Format::Json, bad).unwrap_err();
            assert!(e.detail.starts_with("malformed JSON"), "{}", e.detail);
        }
    }

    #[test]
    fn skipped_invalid_utf8_strings_still_error() {
        let s = set(&[]);
        assert!(extract(&s, Format::Json, b"{\"x\":\"\xc3\x28\"}").is_err());
    }

    #[test]
    fn duplicate_routing_key_is_an_error_but_other_duplicates_are_not() {
        let s = set(&[]);
        let e = extract(&s, Format::Json, br#"{"model":"a","model":"b"}"#).unwrap_err();
        assert!(e.detail.contains("duplicate key \"model\""), "{}", e.detail);
        assert!(extract(&s, Format::Json, br#"{"x":1,"x":2,"model":"a"}"#).is_ok());
    }

    #[test]
    fn deep_nesting_never_overflows() {
        let s = set(&[]);
        // Skipped subtrees are walked iteratively by serde_json: valid, however deep.
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(extract(&s, Format::Json, deep.as_bytes()).is_ok());
        // A value routing reads is built recursively, so depth is limited there.
        let deep_model = format!(
            "{{\"model\":{}{}}}",
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        assert!(extract(&s, Format::Json, deep_model.as_bytes()).is_err());
        let ok = format!("{{\"model\":{}{}}}", "[".repeat(100), "]".repeat(100));
        assert!(extract(&s, Format::Json, ok.as_bytes()).is_ok());
    }

    #[test]
    fn messagepack_same_semantics() {
        let s = set(&["/temperature", "/messages/0/role"]);
        let doc = json!({"model":"chat","temperature":0.2,"messages":[{"role":"user"}],"x":{"y":[1,2,3]}});
        let bytes = rmp_serde::to_vec_named(&doc).unwrap();
        let f = extract(&s, Format::MessagePack, &bytes).unwrap();
        assert_eq!(f.get(0), Some(&json!("chat")));
        assert_eq!(f.get(1), Some(&json!(0.2)));
        assert_eq!(f.get(2), Some(&json!("user")));
    }

    #[test]
    fn messagepack_garbage_trailing_and_bombs() {
        let s = set(&[]);
        let mut bytes = rmp_serde::to_vec_named(&json!({"model":"m"})).unwrap();
        bytes.push(0xc0);
        assert!(extract(&s, Format::MessagePack, &bytes).is_err());
        // array32 claiming 4 billion elements, with none present
        assert!(extract(&s, Format::MessagePack, &[0xdd, 0xff, 0xff, 0xff, 0xff]).is_err());
        // map32 claiming 4 billion entries
        assert!(extract(&s, Format::MessagePack, &[0xdf, 0xff, 0xff, 0xff, 0xff]).is_err());
        // str32 claiming 4 GiB
        assert!(extract(&s, Format::MessagePack, &[0xdb, 0xff, 0xff, 0xff, 0xff]).is_err());
        // deep nesting
        let deep = vec![0x91u8; 100_000];
        assert!(extract(&s, Format::MessagePack, &deep).is_err());
        assert!(extract(&s, Format::MessagePack, &[]).is_err());
        assert!(extract(&s, Format::MessagePack, &[0xc1]).is_err());
    }

    /// How extraction read MessagePack with rmp-serde, the reference for the reader now used.
    fn extract_rmp(set: &PointerSet, bytes: &[u8]) -> Result<Fields, ExtractError> {
        let mut out = Fields::with_len(set.len());
        let seed = NodeSeed {
            set,
            node: 0,
            out: &mut out,
        };
        let mut rest = bytes;
        let mut de = rmp_serde::Deserializer::new(&mut rest);
        de.set_max_depth(MAX_DEPTH);
        let detail = match seed.deserialize(&mut de) {
            Ok(()) if rest.is_empty() => return Ok(out),
            Ok(()) => format!("{} bytes after the end of the document", rest.len()),
            Err(e) => e.to_string(),
        };
        Err(ExtractError {
            detail: format!("malformed MessagePack: {detail}"),
        })
    }

    #[test]
    fn messagepack_reads_as_rmp_serde_did() {
        use crate::msgpack::testing::{any_doc, mutations, respell};
        let sets = [
            set(&[]),
            set(&["/model"]),
            set(&[
                "/model",
                "/messages/0/role",
                "/messages/1",
                "/x/0",
                "/x/1",
                "/0/0",
            ]),
            set(&["/x/1", "/0/1", "/y/0/1", "/messages/0"]),
        ];
        let mut rng = crate::rng::Rng::seed_from_u64(31);
        let (mut read, mut refused) = (0, 0);
        for round in 0..2000 {
            let doc = any_doc(&mut rng);
            let mut inputs = vec![respell(&doc, &mut rng), doc];
            if round % 8 == 0 {
                inputs.extend(mutations(&inputs[1], &mut rng));
            }
            for bytes in &inputs {
                for s in &sets {
                    let got = extract(s, Format::MessagePack, bytes);
                    assert_eq!(got, extract_rmp(s, bytes), "{bytes:02x?}");
                    if got.is_ok() {
                        read += 1
                    } else {
                        refused += 1
                    }
                }
            }
        }
        // Both outcomes are well represented.
        assert!(
            read > 3000 && refused > 3000,
            "{read} read, {refused} refused"
        );
    }

    #[test]
    fn messagepack_extensions_and_odd_keys_read_as_rmp_serde_did() {
        let sets = [
            set(&["/x/0"]),
            set(&["/x/1"]),
            set(&["/x/0", "/x/2"]),
            set(&["/x/0/a"]),
            set(&["/y"]),
        ];
        let docs: [&[u8]; 8] = [
            b"\x81\xa1x\xd4\x05\x07",
            b"\x81\xa1x\xc7\x02\xfe\x01\x02",
            b"\x81\xa1x\xc7\x02\xfe\x01",
            b"\x81\xa1x\xc7",
            b"\x82\xd4\x05\x07\xc0\xa1y\x01",
            b"\x82\x91\xc0\xc0\xa1y\x01",
            b"\x82\x81\xc0\xc0\xc0\xa1y\x01",
            b"\x82\xa1y\x01\xa1y\x02",
        ];
        for doc in docs {
            for cut in 0..=doc.len() {
                for s in &sets {
                    let b = &doc[..cut];
                    assert_eq!(
                        extract(s, Format::MessagePack, b),
                        extract_rmp(s, b),
                        "{b:02x?}"
                    );
                }
            }
        }
    }

    #[test]
    fn messagepack_non_string_keys_are_skipped() {
        let s = set(&[]);
        // {1: "x", "model": "m"}
        let bytes = [
            0x82, 0x01, 0xa1, b'x', 0xa5, b'm', b'o', b'd', b'e', b'l', 0xa1, b'm',
        ];
        let f = extract(&s, Format::MessagePack, &bytes).unwrap();
        assert_eq!(f.get(0), Some(&json!("m")));
    }

    /// The walk by serde over serde_json, as JSON was read before `json_walk`.
    fn extract_serde(set: &PointerSet, bytes: &[u8]) -> Result<Fields, ExtractError> {
        if std::str::from_utf8(bytes).is_err() {
            return extract(set, Format::Json, bytes);
        }
        let mut out = Fields::with_len(set.len());
        let seed = NodeSeed {
            set,
            node: 0,
            out: &mut out,
        };
        let mut de = serde_json::Deserializer::from_slice(bytes);
        match seed.deserialize(&mut de).and_then(|()| de.end()) {
            Ok(()) => Ok(out),
            Err(e) => Err(ExtractError {
                detail: format!("malformed JSON: {e}"),
            }),
        }
    }

    #[test]
    fn json_reads_as_serde_json_did() {
        use crate::json::read::tests::{mutated, spaced};
        let sets = [
            set(&["/model"]),
            set(&["/model", "/messages/0/content", "/a/b", "/a"]),
            set(&["/messages/1", "/stream", "/0", "/x/0/y"]),
        ];
        let mut rng = crate::rng::Rng::seed_from_u64(61);
        for base in [
            r#"{"model":"m","messages":[{"role":"u","content":"hi"},{"content":[1,2]}],"stream":true,"x":[{"y":1e400}]}"#,
            r#"{"a":{"b":[1,-0,"\u00e9"],"b":2},"model":"m","model":"n","junk":[[[[{"k":"\ud800"}]]]]}"#,
            r#"[{"x":[{"y":null}]},1,2]"#,
            r#"{"model":{"model":"x"},"a":1.5e-3,"messages":{"1":2}}"#,
        ] {
            let d = base.as_bytes();
            for cut in 0..d.len() {
                for s in &sets {
                    assert_eq!(
                        extract(s, Format::Json, &d[..cut]),
                        extract_serde(s, &d[..cut])
                    );
                }
            }
            for _ in 0..3_000 {
                let doc = mutated(&spaced(d, &mut rng), &mut rng);
                let doc = mutated(&doc, &mut rng);
                for s in &sets {
                    assert_eq!(
                        extract(s, Format::Json, &doc),
                        extract_serde(s, &doc),
                        "{}",
                        String::from_utf8_lossy(&doc)
                    );
                }
            }
        }
    }
}
