//! Everything a payload says, as text for the sensitive-data detectors: every string anywhere in
//! the document (object keys included), integers as their digits, decoded (JSON escapes
//! resolved, MessagePack binaries read as UTF-8), one per line. Reading *every* string, rather
//! than the fields of known request shapes, covers every payload the filter routes: OpenAI chat
//! (string and parts), completions `prompt`, embeddings and Responses `input`, KServe v2 `BYTES`
//! inputs and parameters, TF-Serving `instances` / `inputs`, Seldon `data`, `strData`,
//! `jsonData`, and whatever comes next.
//!
//! A document that cannot be read completely is *not scanned*, with the reason: the filter
//! refuses such a request where a detector must decide (`scan.unscanned`), so that nothing
//! passes a sensitive-data rule unread.

#[cfg(test)]
use std::fmt;

#[cfg(test)]
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use crate::json::read::{Num, Parser};
use crate::msgpack::read::{Error as MpError, Reader, Token};
use crate::payload::Format;

use super::seen::SeenKeys;

/// Nesting deeper than this is not scanned (the wasm stack is 1 MiB); below serde_json's own
/// limit (128), so the reason is ours.
const MAX_DEPTH: usize = 100;

/// Why a request's payload was not scanned completely.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotScanned {
    /// A body with no content type, or one the filter does not read.
    ContentType,
    /// A body over `body.max_bytes`.
    TooLarge,
    /// A compressed body (`content-encoding` other than `identity`).
    Compressed,
    /// Not valid JSON / MessagePack, or something after the document.
    Malformed,
    /// An object with the same key twice (two readers may see two different values).
    DuplicateKey,
    /// More text than `scan.max_bytes`.
    ScanLimit,
    /// Nested deeper than the scanner reads.
    TooDeep,
    /// A streaming gRPC call: its later messages cannot be waited for.
    Streamed,
}

impl NotScanned {
    pub const ALL: [NotScanned; 8] = [
        NotScanned::ContentType,
        NotScanned::TooLarge,
        NotScanned::Compressed,
        NotScanned::Malformed,
        NotScanned::DuplicateKey,
        NotScanned::ScanLimit,
        NotScanned::TooDeep,
        NotScanned::Streamed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            NotScanned::ContentType => "content_type",
            NotScanned::TooLarge => "too_large",
            NotScanned::Compressed => "compressed",
            NotScanned::Malformed => "malformed",
            NotScanned::DuplicateKey => "duplicate_key",
            NotScanned::ScanLimit => "scan_limit",
            NotScanned::TooDeep => "too_deep",
            NotScanned::Streamed => "streamed",
        }
    }

    pub fn index(self) -> usize {
        NotScanned::ALL
            .iter()
            .position(|r| *r == self)
            .unwrap_or_default()
    }

    /// The status a refusal answers with: what the client should change.
    pub fn status(self) -> u16 {
        match self {
            NotScanned::ContentType | NotScanned::Compressed | NotScanned::Streamed => 415,
            NotScanned::TooLarge | NotScanned::ScanLimit => 413,
            NotScanned::Malformed | NotScanned::DuplicateKey | NotScanned::TooDeep => 400,
        }
    }

    /// A sentence for the refusal's detail.
    pub fn describe(self) -> &'static str {
        match self {
            NotScanned::ContentType => "the body's content type is missing or not JSON / MessagePack, so it could not be checked for sensitive data",
            NotScanned::TooLarge => "the body is over body.max_bytes, so it could not be checked for sensitive data",
            NotScanned::Compressed => "the body is compressed (content-encoding), so it could not be checked for sensitive data",
            NotScanned::Malformed => "the body is not valid JSON / MessagePack, so it could not be checked for sensitive data",
            NotScanned::DuplicateKey => "the body has an object with the same key twice, so what the model reads could not be checked",
            NotScanned::ScanLimit => "the body holds more text than scan.max_bytes, so it could not be checked completely",
            NotScanned::TooDeep => "the body is nested too deeply to be checked for sensitive data",
            NotScanned::Streamed => "a streaming gRPC call's messages cannot all be checked for sensitive data before it is routed",
        }
    }
}

/// The text of a gRPC body's messages (every length-delimited field as text, and as a message
/// when it is one; integers as digits), at most `limit` bytes.
pub fn scan_grpc(body: &[u8], limit: usize) -> Result<String, NotScanned> {
    let messages = crate::payload::grpc::messages(body).map_err(|why| match why {
        "compressed" => NotScanned::Compressed,
        _ => NotScanned::Malformed,
    })?;
    let mut walk = Walk {
        text: String::new(),
        limit,
        why: None,
    };
    for message in messages {
        proto_text(&mut walk, message, 0)?;
    }
    Ok(walk.text)
}

/// A protobuf message's text. A length-delimited field may be a string, bytes or a message: the
/// wire does not say, so it is read as text, and also as a message when it parses as one.
fn proto_text(walk: &mut Walk, message: &[u8], depth: usize) -> Result<(), NotScanned> {
    use crate::payload::grpc::{Field, Fields};
    if depth > MAX_DEPTH {
        return Err(NotScanned::TooDeep);
    }
    let mut fields = Fields::new(message);
    while let Some((_, field)) = fields.next_field().map_err(|_| NotScanned::Malformed)? {
        match field {
            Field::Varint(v) => walk.push(&v.to_string())?,
            Field::Bytes(b) => {
                walk.push(&crate::utf8::lossy(b))?;
                if is_message(b) {
                    proto_text(walk, b, depth + 1)?;
                }
            }
            Field::Fixed32 | Field::Fixed64 => {}
            Field::Cut => return Err(NotScanned::Malformed),
        }
    }
    if fields.cut {
        return Err(NotScanned::Malformed);
    }
    Ok(())
}

/// Whether bytes parse as a protobuf message to their end (non-empty).
fn is_message(bytes: &[u8]) -> bool {
    let mut fields = crate::payload::grpc::Fields::new(bytes);
    let mut any = false;
    loop {
        match fields.next_field() {
            Ok(Some((_, crate::payload::grpc::Field::Cut))) | Err(_) => return false,
            Ok(Some(_)) => any = true,
            Ok(None) => return any && !fields.cut,
        }
    }
}

/// The text of a payload, at most `limit` bytes; `Err` when it cannot be read completely.
pub fn scan(format: Format, body: &[u8], limit: usize) -> Result<String, NotScanned> {
    let mut walk = Walk {
        text: String::new(),
        limit,
        why: None,
    };
    let ok = match format {
        Format::Json => {
            let mut p = Parser::new(body);
            json_node(&mut p, &mut walk, 0).is_ok() && p.end().is_ok()
        }
        Format::MessagePack => {
            let mut r = Reader::new(body, MAX_DEPTH + 8);
            mp_node(&mut r, &mut walk, 0).is_ok() && r.rest().is_empty()
        }
    };
    match (ok, walk.why) {
        (true, _) => Ok(walk.text),
        (false, Some(why)) => Err(why),
        (false, None) => Err(NotScanned::Malformed),
    }
}

/// A key's text as one entry of the walk: without the newline its last scalar got, and with any
/// newline of its own (a key ending in "\n" keeps it, so the text holds every scalar whole).
fn key_line(text: &str) -> &str {
    text.strip_suffix('\n').unwrap_or(text)
}

struct Walk {
    text: String,
    limit: usize,
    /// Set before the walk stops on purpose (the deserializer's error says only "custom").
    why: Option<NotScanned>,
}

impl Walk {
    fn push(&mut self, s: &str) -> Result<(), NotScanned> {
        if self.text.len().saturating_add(s.len()).saturating_add(1) > self.limit {
            return Err(NotScanned::ScanLimit);
        }
        self.text.push_str(s);
        self.text.push('\n');
        Ok(())
    }

    #[cfg(test)]
    fn stop<E: de::Error>(&mut self, why: NotScanned) -> E {
        self.why = Some(why);
        E::custom(why.as_str())
    }
}

/// The walk of [`Node`] over JSON, by hand on `json::read`'s parser: the same text, and the
/// same reason to stop, as when serde_json drove it. `Err` once the walk cannot go on (the
/// reason, if it is not malformed JSON, in `walk.why`).
fn json_node(p: &mut Parser<'_>, walk: &mut Walk, depth: usize) -> Result<(), ()> {
    if depth > MAX_DEPTH {
        walk.why = Some(NotScanned::TooDeep);
        return Err(());
    }
    let pushed = |walk: &mut Walk, s: &str| walk.push(s).map_err(|why| walk.why = Some(why));
    match p.whitespace() {
        Some(b'[') => {
            p.enter().map_err(drop)?;
            let items = json_items(p, walk, depth);
            p.leave();
            items?;
            p.end_seq().map_err(drop)
        }
        Some(b'{') => {
            p.enter().map_err(drop)?;
            let entries = json_entries(p, walk, depth);
            p.leave();
            entries?;
            p.end_map().map_err(drop)
        }
        Some(b'"') => {
            let s = p.quoted().map_err(drop)?;
            pushed(walk, &s)
        }
        Some(b'-' | b'0'..=b'9') => match p.number().map_err(drop)? {
            Num::U64(u) => pushed(walk, &u.to_string()),
            Num::I64(i) => pushed(walk, &i.to_string()),
            // A card number written as a float (4.111111111111111e15) is still its digits.
            Num::F64(v) if v.is_finite() && v.fract() == 0.0 && v.abs() < 1e20 => {
                pushed(walk, &format!("{}", v.abs() as u64))
            }
            Num::F64(_) => Ok(()),
        },
        _ => p.value().map(drop).map_err(drop),
    }
}

fn json_items(p: &mut Parser<'_>, walk: &mut Walk, depth: usize) -> Result<(), ()> {
    let mut first = true;
    while p.next_item(first).map_err(drop)? {
        first = false;
        json_node(p, walk, depth + 1)?;
    }
    Ok(())
}

/// An object's keys and values; a key written twice stops the walk.
fn json_entries(p: &mut Parser<'_>, walk: &mut Walk, depth: usize) -> Result<(), ()> {
    let mut keys = SeenKeys::new();
    let mut first = true;
    while p.has_next_key(first).map_err(drop)? {
        first = false;
        let mut key = Walk {
            text: String::new(),
            limit: walk.limit,
            why: None,
        };
        let got = if depth + 1 > MAX_DEPTH {
            key.why = Some(NotScanned::TooDeep);
            Err(())
        } else {
            let s = p.quoted().map_err(drop)?;
            key.push(&s).map_err(|why| key.why = Some(why))
        };
        if got.is_err() {
            walk.why = walk.why.or(key.why);
            return Err(());
        }
        walk.push(key_line(&key.text))
            .map_err(|why| walk.why = Some(why))?;
        if !keys.first_time(key.text) {
            walk.why = Some(NotScanned::DuplicateKey);
            return Err(());
        }
        p.colon().map_err(drop)?;
        json_node(p, walk, depth + 1)?;
    }
    Ok(())
}

/// The walk of [`Node`] over MessagePack, by hand on `msgpack::read`'s reader: the same text,
/// and the same reason to stop, as when rmp-serde drove it (an extension is malformed; a key may
/// be any value, its text the key's).
fn mp_node(r: &mut Reader<'_>, walk: &mut Walk, depth: usize) -> Result<(), ()> {
    if depth > MAX_DEPTH {
        walk.why = Some(NotScanned::TooDeep);
        return Err(());
    }
    let pushed = |walk: &mut Walk, s: &str| walk.push(s).map_err(|why| walk.why = Some(why));
    // Only whether the walk went through matters: the reader's own errors are all "malformed".
    let nested = |r: &mut Reader<'_>, walk: &mut Walk, items: u64, each: MpItem| {
        r.nested(|r| {
            (0..items).try_for_each(|_| each(r, walk, depth + 1).map_err(|()| MpError::Marker))
        })
        .map_err(drop)
    };
    match r.token().map_err(drop)? {
        Token::Nil | Token::Bool(_) => Ok(()),
        Token::Uint(u) => pushed(walk, &u.to_string()),
        Token::Int(i) => pushed(walk, &i.to_string()),
        // A card number written as a float (4.111111111111111e15) is still its digits.
        Token::Float(v) if v.is_finite() && v.fract() == 0.0 && v.abs() < 1e20 => {
            pushed(walk, &format!("{}", v.abs() as u64))
        }
        Token::Float(_) => Ok(()),
        Token::Str(b) | Token::Bin(b) => pushed(walk, &crate::utf8::lossy(b)),
        Token::Array(n) => nested(r, walk, u64::from(n), mp_node),
        Token::Map(n) => {
            let mut keys = SeenKeys::new();
            r.nested(|r| {
                (0..n).try_for_each(|_| {
                    mp_entry(r, walk, depth, &mut keys).map_err(|()| MpError::Marker)
                })
            })
            .map_err(drop)
        }
        Token::Ext(_) => r.nested(|_| Err(MpError::Marker)).map_err(drop),
    }
}

type MpItem = fn(&mut Reader<'_>, &mut Walk, usize) -> Result<(), ()>;

/// One key and its value; a key written twice stops the walk.
fn mp_entry(
    r: &mut Reader<'_>,
    walk: &mut Walk,
    depth: usize,
    keys: &mut SeenKeys,
) -> Result<(), ()> {
    let mut key = Walk {
        text: String::new(),
        limit: walk.limit,
        why: None,
    };
    if mp_node(r, &mut key, depth + 1).is_err() {
        walk.why = walk.why.or(key.why);
        return Err(());
    }
    walk.push(key_line(&key.text))
        .map_err(|why| walk.why = Some(why))?;
    if !keys.first_time(key.text) {
        walk.why = Some(NotScanned::DuplicateKey);
        return Err(());
    }
    mp_node(r, walk, depth + 1)
}

/// One value of the document, at some depth: serde's walk, for MessagePack (kept for tests).
#[cfg(test)]
struct Node<'w> {
    walk: &'w mut Walk,
    depth: usize,
}

#[cfg(test)]
impl<'de> DeserializeSeed<'de> for Node<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<(), D::Error> {
        if self.depth > MAX_DEPTH {
            return Err(self.walk.stop(NotScanned::TooDeep));
        }
        de.deserialize_any(self)
    }
}

#[cfg(test)]
impl Node<'_> {
    fn text<E: de::Error>(self, s: &str) -> Result<(), E> {
        self.walk.push(s).map_err(|why| self.walk.stop(why))
    }

    fn child(&mut self) -> Node<'_> {
        Node {
            walk: self.walk,
            depth: self.depth + 1,
        }
    }
}

#[cfg(test)]
impl<'de> Visitor<'de> for Node<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any value")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        self.text(v)
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<(), E> {
        self.text(&crate::utf8::lossy(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.text(&v.to_string())
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.text(&v.to_string())
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        // A card number written as a float (4.111111111111111e15) is still its digits.
        if v.is_finite() && v.fract() == 0.0 && v.abs() < 1e20 {
            return self.text(&format!("{}", v.abs() as u64));
        }
        Ok(())
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_some<D: Deserializer<'de>>(mut self, de: D) -> Result<(), D::Error> {
        self.child().deserialize(de)
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(self.child())?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<(), A::Error> {
        // Keys seen in this object (a hash set: O(1) whatever order they come in); a second
        // one with the same text is refused.
        let mut keys = SeenKeys::new();
        loop {
            let mut key = Walk {
                text: String::new(),
                limit: self.walk.limit,
                why: None,
            };
            let got = map.next_key_seed(Node {
                walk: &mut key,
                depth: self.depth + 1,
            });
            match got {
                Ok(Some(())) => {}
                Ok(None) => return Ok(()),
                Err(e) => {
                    self.walk.why = self.walk.why.or(key.why);
                    return Err(e);
                }
            }
            self.walk
                .push(key_line(&key.text))
                .map_err(|why| self.walk.stop::<A::Error>(why))?;
            if !keys.first_time(key.text) {
                return Err(self.walk.stop(NotScanned::DuplicateKey));
            }
            map.next_value_seed(self.child())?;
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn json(s: &str) -> Result<String, NotScanned> {
        scan(Format::Json, s.as_bytes(), 1 << 20)
    }

    /// A key that ends in newlines keeps them (found by the `scan` fuzz target: a MessagePack
    /// bin key ending in "\n\n" lost both, so the text no longer held the key).
    #[test]
    fn a_key_keeps_its_own_trailing_newlines() {
        let text = json(r#"{"k\n\n":"v","plain":1}"#).unwrap();
        assert_eq!(text, "k\n\n\nv\nplain\n1\n");
        let doc = b"\x82\xc4\x03k\n\n\xa1v\xa1w\x01";
        let text = scan(Format::MessagePack, doc, 1 << 20).unwrap();
        assert_eq!(text, "k\n\n\nv\nw\n1\n");
    }

    #[test]
    fn every_string_key_and_integer_anywhere() {
        let text = json(r#"{"inputs":[{"name":"t","datatype":"BYTES","data":["jane\u0040example.com"]}],"n":4111111111111111,"f":4.111111111111111e15,"ok":true}"#).unwrap();
        for part in [
            "inputs",
            "BYTES",
            "jane@example.com",
            "4111111111111111",
            "data",
        ] {
            assert!(text.contains(part), "{part} in {text:?}");
        }
        assert_eq!(text.matches("4111111111111111").count(), 2);
    }

    #[test]
    fn what_cannot_be_read_completely_says_why() {
        assert_eq!(
            json(r#"{"messages":[],"messages":[]}"#),
            Err(NotScanned::DuplicateKey)
        );
        assert_eq!(
            json(r#"{"a":{"x":1,"x":2}}"#),
            Err(NotScanned::DuplicateKey)
        );
        assert_eq!(json(r#"{"a":1} trailing"#), Err(NotScanned::Malformed));
        assert_eq!(json(r#"{"a":"#), Err(NotScanned::Malformed));
        assert_eq!(
            scan(Format::Json, br#"{"a":"0123456789"}"#, 8),
            Err(NotScanned::ScanLimit)
        );
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        assert_eq!(json(&deep), Err(NotScanned::TooDeep));
        // Different keys, and equal keys in different objects, are fine.
        assert!(json(r#"{"a":{"x":1},"b":{"x":2}}"#).is_ok());
    }

    /// How the scan read MessagePack with rmp-serde, the reference for the reader now used.
    fn scan_rmp(body: &[u8], limit: usize) -> Result<String, NotScanned> {
        let mut walk = Walk {
            text: String::new(),
            limit,
            why: None,
        };
        let mut rest = body;
        let mut de = rmp_serde::Deserializer::new(&mut rest);
        de.set_max_depth(MAX_DEPTH + 8);
        let node = Node {
            walk: &mut walk,
            depth: 0,
        };
        match (
            node.deserialize(&mut de).is_ok() && rest.is_empty(),
            walk.why,
        ) {
            (true, _) => Ok(walk.text),
            (false, why) => Err(why.unwrap_or(NotScanned::Malformed)),
        }
    }

    #[test]
    fn messagepack_reads_as_rmp_serde_did() {
        use crate::msgpack::testing::{any_doc, any_request, mutations, respell};
        let mut rng = crate::rng::Rng::seed_from_u64(51);
        let mut outcomes = std::collections::BTreeMap::new();
        for round in 0..3000 {
            let doc = match round % 2 {
                0 => any_doc(&mut rng),
                _ => any_request(&mut rng),
            };
            let mut inputs = vec![respell(&doc, &mut rng), doc];
            if round % 8 == 0 {
                inputs.extend(mutations(&inputs[1], &mut rng));
            }
            for body in &inputs {
                let limit = [1 << 20, 40][round % 2];
                let got = scan(Format::MessagePack, body, limit);
                assert_eq!(got, scan_rmp(body, limit), "{body:02x?}");
                *outcomes
                    .entry(got.err().map(NotScanned::as_str))
                    .or_insert(0) += 1;
            }
        }
        // Read, malformed, duplicate keys, over the limit, too deep: each seen many times.
        assert!(
            outcomes.len() >= 5 && outcomes.values().all(|n| *n > 50),
            "{outcomes:?}"
        );
    }

    #[test]
    fn messagepack_odd_keys_and_extensions_scan_as_with_rmp_serde() {
        let docs: [&[u8]; 6] = [
            b"\x82\x92\xa1a\x01\xa1v\xa1y\xc4\x02\xff\xfe",
            b"\x82\x81\xa1a\x01\xa1v\xa1y\xcb\x43\x30\0\0\0\0\0\0",
            b"\x81\xd4\x05\x07\xa1v",
            b"\x91\xc7\x01\x05\x07",
            b"\x82\x91\xa1k\x01\x91\xa1k\x02",
            b"\x82\xa2\xffk\x01\xc4\x02\xffk\x02",
        ];
        for doc in docs {
            for cut in 0..=doc.len() {
                for limit in [1 << 20, 4] {
                    let b = &doc[..cut];
                    assert_eq!(
                        scan(Format::MessagePack, b, limit),
                        scan_rmp(b, limit),
                        "{b:02x?}"
                    );
                }
            }
        }
    }

    #[test]
    fn messagepack_reads_the_same() {
        let doc =
            crate::json::json!({"data": {"strData": "call +1 jane@example.com"}, "k": [1, 2]});
        let bytes = rmp_serde::to_vec_named(&doc).unwrap();
        let text = scan(Format::MessagePack, &bytes, 1 << 20).unwrap();
        assert!(
            text.contains("jane@example.com") && text.contains("strData"),
            "{text:?}"
        );
        let mut trailing = bytes.clone();
        trailing.push(0xc0);
        assert_eq!(
            scan(Format::MessagePack, &trailing, 1 << 20),
            Err(NotScanned::Malformed)
        );
        // A map with an integer key twice.
        let dup = [0x82, 0x01, 0xc0, 0x01, 0xc0];
        assert_eq!(
            scan(Format::MessagePack, &dup, 1 << 20),
            Err(NotScanned::DuplicateKey)
        );
    }

    /// The scan of JSON as it was: serde's walk over serde_json.
    fn scan_serde(body: &[u8], limit: usize) -> Result<String, NotScanned> {
        let mut walk = Walk {
            text: String::new(),
            limit,
            why: None,
        };
        let mut de = serde_json::Deserializer::from_slice(body);
        let ok = Node {
            walk: &mut walk,
            depth: 0,
        }
        .deserialize(&mut de)
        .and_then(|()| de.end())
        .is_ok();
        match (ok, walk.why) {
            (true, _) => Ok(walk.text),
            (false, Some(why)) => Err(why),
            (false, None) => Err(NotScanned::Malformed),
        }
    }

    #[test]
    fn json_is_scanned_as_serde_json_scanned_it() {
        use crate::json::read::tests::{mutated, spaced};
        let mut rng = crate::rng::Rng::seed_from_u64(81);
        let bases = [
            r#"{"messages":[{"role":"user","content":"card 4111111111111111"}],"n":4.111111111111111e15,"m":-3,"x":1e400}"#,
            r#"{"a":"x","a":"y","b":{"\u0061":[true,null,1.5,"\ud83d\ude00"]}}"#,
            r#"[["k"],{"k":{"k":{"k":"v"}}},"long text here",12345678901234567890123]"#,
        ];
        for base in bases {
            for _ in 0..4_000 {
                let doc = mutated(&spaced(base.as_bytes(), &mut rng), &mut rng);
                let doc = mutated(&doc, &mut rng);
                for limit in [0, 5, 20, 1 << 20] {
                    assert_eq!(
                        scan(Format::Json, &doc, limit),
                        scan_serde(&doc, limit),
                        "{} {limit}",
                        String::from_utf8_lossy(&doc)
                    );
                }
            }
        }
        for depth in [98, 99, 100, 101, 102, 130] {
            for doc in [
                format!("{}1{}", "[".repeat(depth), "]".repeat(depth)),
                format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth)),
                format!("{}{{}}{}", "[".repeat(depth), "]".repeat(depth)),
                format!("{}{{\"k\":1}}{}", "[".repeat(depth), "]".repeat(depth)),
            ] {
                assert_eq!(
                    scan(Format::Json, doc.as_bytes(), 1 << 20),
                    scan_serde(doc.as_bytes(), 1 << 20),
                    "{doc}"
                );
            }
        }
    }
}
