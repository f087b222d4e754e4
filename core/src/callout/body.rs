//! The request body as the filter resends it.
//!
//! [`rewrite_model`] replaces the value of the top-level `model` field of a JSON or MessagePack
//! body and copies every other byte as it was (key order, number spelling, other fields), so a
//! shadow target sees the client's request with only its model name changed. [`is_streamed`]
//! tells a streamed request (OpenAI `"stream": true`, or `Accept: text/event-stream`), whose
//! answer cannot be collected into one reply.

use crate::inspect::openai::summarize;
use crate::json::read::{Error as JsonError, FromText, Parser};
use crate::payload::Format;

/// Nesting deeper than this is refused when skipping MessagePack values.
const MAX_DEPTH: usize = 128;

/// The body with its top-level `model` field set to `model`. `Ok(None)`: the body is a map
/// without a `model` field (it is sent unchanged). `Err`: not a JSON object / MessagePack map.
pub fn rewrite_model(format: Format, body: &[u8], model: &str) -> Result<Option<Vec<u8>>, String> {
    match format {
        Format::Json => rewrite_json(body, model),
        Format::MessagePack => rewrite_msgpack(body, model),
    }
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\n' | b'\r' | b'\t')
}

fn skip_ws(body: &[u8], mut i: usize) -> usize {
    while body.get(i).copied().is_some_and(is_ws) {
        i += 1;
    }
    i
}

/// Parses one JSON value at `start` with `read`, as serde_json's `StreamDeserializer` read
/// one (a value not closed by its own bracket or quote must be followed by a delimiter);
/// returns it and the offset after it.
fn json_value_at<T>(
    body: &[u8],
    start: usize,
    read: fn(&mut Parser<'_>) -> Result<T, JsonError>,
) -> Result<(T, usize), String> {
    let rest = body.get(start..).ok_or("truncated JSON")?;
    let mut p = Parser::new(rest);
    let Some(first) = p.whitespace() else {
        return Err("truncated JSON".into());
    };
    let closed = matches!(first, b'[' | b'"' | b'{');
    let value = read(&mut p)
        .and_then(|v| {
            if closed {
                Ok(v)
            } else {
                p.end_of_value().map(|()| v)
            }
        })
        .map_err(|e| format!("invalid JSON: {e}"))?;
    Ok((value, start + p.offset()))
}

fn rewrite_json(body: &[u8], model: &str) -> Result<Option<Vec<u8>>, String> {
    let replacement = crate::json::write::to_vec(model);
    let mut spans = Vec::new();
    let mut i = skip_ws(body, 0);
    if body.get(i) != Some(&b'{') {
        return Err("the body is not a JSON object".into());
    }
    i = skip_ws(body, i + 1);
    if body.get(i) == Some(&b'}') {
        return Ok(None);
    }
    loop {
        if body.get(i) != Some(&b'"') {
            return Err("invalid JSON: expected a key".into());
        }
        let (key, after_key) = json_value_at(body, i, String::read)?;
        i = skip_ws(body, after_key);
        if body.get(i) != Some(&b':') {
            return Err("invalid JSON: expected ':'".into());
        }
        let value_start = skip_ws(body, i + 1);
        let (_, value_end) = json_value_at(body, value_start, |p| p.ignore_value())?;
        if key == "model" {
            spans.push((value_start, value_end));
        }
        i = skip_ws(body, value_end);
        match body.get(i) {
            Some(b',') => i = skip_ws(body, i + 1),
            Some(b'}') => break,
            _ => return Err("invalid JSON: expected ',' or '}'".into()),
        }
    }
    if skip_ws(body, i + 1) != body.len() {
        return Err("invalid JSON: trailing characters".into());
    }
    Ok(splice(body, &spans, &replacement))
}

/// `body` with every span replaced by `replacement`; `None` when there are no spans.
fn splice(body: &[u8], spans: &[(usize, usize)], replacement: &[u8]) -> Option<Vec<u8>> {
    if spans.is_empty() {
        return None;
    }
    let mut out = Vec::with_capacity(body.len() + replacement.len());
    let mut at = 0;
    for &(start, end) in spans {
        out.extend_from_slice(body.get(at..start)?);
        out.extend_from_slice(replacement);
        at = end;
    }
    out.extend_from_slice(body.get(at..)?);
    Some(out)
}

fn be(bytes: &[u8], at: usize, n: usize) -> Result<u64, String> {
    let b = bytes.get(at..at + n).ok_or("truncated MessagePack")?;
    Ok(b.iter().fold(0u64, |acc, x| (acc << 8) | u64::from(*x)))
}

/// A MessagePack value at `at`: its kind, where its payload starts, its payload length in bytes
/// (strings, binaries, extensions, scalars) and how many nested values follow (arrays: n,
/// maps: 2n).
struct Head {
    payload: usize,
    len: usize,
    children: u64,
    is_map: Option<u64>,
    is_str: bool,
}

fn head(b: &[u8], at: usize) -> Result<Head, String> {
    let tag = *b.get(at).ok_or("truncated MessagePack")?;
    let p = at + 1;
    let scalar = |len: usize| Head {
        payload: p,
        len,
        children: 0,
        is_map: None,
        is_str: false,
    };
    let sized = |size_bytes: usize, is_str: bool| -> Result<Head, String> {
        let n = usize::try_from(be(b, p, size_bytes)?).map_err(|e| e.to_string())?;
        Ok(Head {
            payload: p + size_bytes,
            len: n,
            children: 0,
            is_map: None,
            is_str,
        })
    };
    // An extension's payload is its type byte, then its data.
    let ext = |size_bytes: usize| -> Result<Head, String> {
        let h = sized(size_bytes, false)?;
        Ok(Head {
            len: h.len + 1,
            ..h
        })
    };
    let container = |size_bytes: usize, map: bool| -> Result<Head, String> {
        let n = be(b, p, size_bytes)?;
        Ok(Head {
            payload: p + size_bytes,
            len: 0,
            children: if map { n.saturating_mul(2) } else { n },
            is_map: map.then_some(n),
            is_str: false,
        })
    };
    Ok(match tag {
        0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => scalar(0),
        0x80..=0x8f => Head {
            payload: p,
            len: 0,
            children: u64::from(tag & 0x0f) * 2,
            is_map: Some(u64::from(tag & 0x0f)),
            is_str: false,
        },
        0x90..=0x9f => Head {
            payload: p,
            len: 0,
            children: u64::from(tag & 0x0f),
            is_map: None,
            is_str: false,
        },
        0xa0..=0xbf => Head {
            payload: p,
            len: usize::from(tag & 0x1f),
            children: 0,
            is_map: None,
            is_str: true,
        },
        0xc4 => sized(1, false)?,
        0xc5 => sized(2, false)?,
        0xc6 => sized(4, false)?,
        0xc7 => ext(1)?,
        0xc8 => ext(2)?,
        0xc9 => ext(4)?,
        0xca => scalar(4),
        0xcb => scalar(8),
        0xcc | 0xd0 => scalar(1),
        0xcd | 0xd1 => scalar(2),
        0xce | 0xd2 => scalar(4),
        0xcf | 0xd3 => scalar(8),
        0xd4 => scalar(2),
        0xd5 => scalar(3),
        0xd6 => scalar(5),
        0xd7 => scalar(9),
        0xd8 => scalar(17),
        0xd9 => sized(1, true)?,
        0xda => sized(2, true)?,
        0xdb => sized(4, true)?,
        0xdc => container(2, false)?,
        0xdd => container(4, false)?,
        0xde => container(2, true)?,
        0xdf => container(4, true)?,
        // 0xc1 is never used.
        _ => return Err("invalid MessagePack".into()),
    })
}

/// The offset just after the MessagePack value at `at`.
fn skip_msgpack(b: &[u8], at: usize) -> Result<usize, String> {
    // Values still to skip at each open nesting level.
    let mut pending: Vec<u64> = vec![1];
    let mut i = at;
    while let Some(top) = pending.last_mut() {
        if *top == 0 {
            pending.pop();
            continue;
        }
        *top -= 1;
        let h = head(b, i)?;
        i = h.payload.checked_add(h.len).ok_or("invalid MessagePack")?;
        if i > b.len() {
            return Err("truncated MessagePack".into());
        }
        if h.children > 0 {
            if pending.len() >= MAX_DEPTH {
                return Err("MessagePack nested too deeply".into());
            }
            pending.push(h.children);
        }
    }
    Ok(i)
}

fn msgpack_str(s: &str) -> Vec<u8> {
    let n = s.len();
    let mut out = Vec::with_capacity(n + 5);
    if n < 32 {
        out.push(0xa0 | n as u8);
    } else if n < 256 {
        out.push(0xd9);
        out.push(n as u8);
    } else if n < 65_536 {
        out.push(0xda);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(0xdb);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    }
    out.extend_from_slice(s.as_bytes());
    out
}

fn rewrite_msgpack(body: &[u8], model: &str) -> Result<Option<Vec<u8>>, String> {
    let top = head(body, 0)?;
    let Some(pairs) = top.is_map else {
        return Err("the body is not a MessagePack map".into());
    };
    let mut i = top.payload;
    let mut spans = Vec::new();
    for _ in 0..pairs {
        let key = head(body, i)?;
        let key_end = skip_msgpack(body, i)?;
        let is_model =
            key.is_str && body.get(key.payload..key.payload + key.len) == Some(b"model".as_slice());
        let value_end = skip_msgpack(body, key_end)?;
        if is_model {
            spans.push((key_end, value_end));
        }
        i = value_end;
    }
    if i != body.len() {
        return Err("invalid MessagePack: trailing bytes".into());
    }
    Ok(splice(body, &spans, &msgpack_str(model)))
}

/// Whether a request asks for a streamed answer: `Accept: text/event-stream`, or a JSON /
/// MessagePack body whose top-level `stream` is `true` (read by the OpenAI request summary).
pub fn is_streamed(format: Option<Format>, body: &[u8], accept: Option<&str>) -> bool {
    // Compared in place, in any ASCII case: no lower-cased copy of the header.
    const SSE: &[u8] = b"text/event-stream";
    let asks_sse = |a: &str| (a.as_bytes().windows(SSE.len())).any(|w| w.eq_ignore_ascii_case(SSE));
    if accept.is_some_and(asks_sse) {
        return true;
    }
    format
        .and_then(|f| summarize(f, body))
        .is_some_and(|s| s.stream)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::json;

    #[test]
    fn json_model_is_replaced_and_nothing_else_changes() {
        let body = br#" { "temperature" : 1.50, "model":"gpt-4o" ,"messages":[{"role":"user","content":"hi \"model\""}], "n": 12345678901234567890 } "#;
        let out = rewrite_model(Format::Json, body, "shadow-\"x\"")
            .unwrap()
            .unwrap();
        let want = br#" { "temperature" : 1.50, "model":"shadow-\"x\"" ,"messages":[{"role":"user","content":"hi \"model\""}], "n": 12345678901234567890 } "#;
        assert_eq!(String::from_utf8_lossy(&out), String::from_utf8_lossy(want));
    }

    #[test]
    fn json_nested_model_is_not_top_level() {
        let body = br#"{"meta":{"model":"a"},"x":[1,{"model":2}]}"#;
        assert_eq!(rewrite_model(Format::Json, body, "b").unwrap(), None);
        let body = br#"{"model":{"name":"a"},"k":true}"#;
        assert_eq!(
            rewrite_model(Format::Json, body, "b").unwrap().unwrap(),
            br#"{"model":"b","k":true}"#
        );
        assert_eq!(rewrite_model(Format::Json, b"{}", "b").unwrap(), None);
        assert_eq!(
            rewrite_model(Format::Json, br#"{"model":null}"#, "b")
                .unwrap()
                .unwrap(),
            br#"{"model":"b"}"#
        );
    }

    #[test]
    fn json_escaped_key_counts() {
        let body = br#"{"mod\u0065l":"a"}"#;
        assert_eq!(
            rewrite_model(Format::Json, body, "b").unwrap().unwrap(),
            br#"{"mod\u0065l":"b"}"#
        );
    }

    #[test]
    fn json_refusals() {
        for body in [
            &b"[1]"[..],
            b"",
            b"{",
            br#"{"model":"a""#,
            br#"{"model":"a",}"#,
            br#"{"model" "a"}"#,
            br#"{"model":"a"} x"#,
            br#"{"model":tru}"#,
            br#"{model:"a"}"#,
        ] {
            assert!(
                rewrite_model(Format::Json, body, "b").is_err(),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn msgpack_model_is_replaced() {
        let doc = json!({"a": [1, 2.5, {"model": "nested"}], "model": "gpt-4o", "z": {"k": null}});
        let body = rmp_serde::to_vec_named(&doc).unwrap();
        let long = "m".repeat(300);
        for name in ["small", &"x".repeat(40), &long] {
            let out = rewrite_model(Format::MessagePack, &body, name)
                .unwrap()
                .unwrap();
            let back: crate::json::Value = rmp_serde::from_slice(&out).unwrap();
            let mut want = doc.clone();
            want["model"] = json!(name);
            assert_eq!(back, want);
        }
    }

    #[test]
    fn msgpack_all_kinds_are_skipped() {
        // A map with binary, ext, every integer and float width, and long strings/arrays.
        let mut body = vec![0x88];
        let mut kv = |k: &[u8], v: &[u8]| {
            body.extend_from_slice(&msgpack_str(std::str::from_utf8(k).unwrap()));
            body.extend_from_slice(v);
        };
        kv(b"bin", &[0xc4, 3, 1, 2, 3]);
        kv(b"ext", &[0xd6, 1, 0, 0, 0, 0]);
        kv(b"ext8", &[0xc7, 2, 5, 9, 9]);
        kv(
            b"ints",
            &[
                0x96, 0xcc, 1, 0xcd, 0, 1, 0xd2, 0, 0, 0, 1, 0xd3, 0, 0, 0, 0, 0, 0, 0, 1, 0xff,
                0x05,
            ],
        );
        kv(b"f", &[0xcb, 0, 0, 0, 0, 0, 0, 0, 0]);
        kv(b"model", &[0xda, 0, 3, b'a', b'b', b'c']);
        kv(b"arr16", &[0xdc, 0, 2, 0xc0, 0xc3]);
        kv(b"m16", &[0xde, 0, 1, 0xa1, b'k', 0xc2]);
        let out = rewrite_model(Format::MessagePack, &body, "new")
            .unwrap()
            .unwrap();
        let want_model = [0xa5, b'm', b'o', b'd', b'e', b'l', 0xa3, b'n', b'e', b'w'];
        assert!(out.windows(want_model.len()).any(|w| w == want_model));
        assert_eq!(out.len(), body.len() - 6 + 4);
    }

    #[test]
    fn msgpack_refusals() {
        for body in [
            &[0x91, 0x01][..],
            &[0x81, 0xa5, b'm', b'o', b'd', b'e', b'l'],
            &[0x81, 0xa1, b'k', 0xd9, 10, b'a'],
            &[0x80, 0x00],
            &[0xc1],
            &[],
        ] {
            assert!(
                rewrite_model(Format::MessagePack, body, "b").is_err(),
                "{body:?}"
            );
        }
        // Deep nesting is refused, not recursed into.
        let mut deep = vec![0x81, 0xa1, b'k'];
        deep.extend(std::iter::repeat_n(0x91, 1000));
        deep.push(0xc0);
        assert!(rewrite_model(Format::MessagePack, &deep, "b").is_err());
    }

    #[test]
    fn streamed() {
        let j = Some(Format::Json);
        assert!(is_streamed(j, br#"{"model":"a","stream":true}"#, None));
        assert!(!is_streamed(j, br#"{"model":"a","stream":false}"#, None));
        assert!(!is_streamed(
            j,
            br#"{"model":"a","x":{"stream":true}}"#,
            None
        ));
        assert!(!is_streamed(j, br#"{"stream":"yes"}"#, None));
        assert!(!is_streamed(j, b"not json", None));
        assert!(is_streamed(None, b"", Some("text/event-stream")));
        assert!(is_streamed(
            j,
            b"{}",
            Some("application/json, Text/Event-Stream")
        ));
        let mp = rmp_serde::to_vec_named(&json!({"stream": true})).unwrap();
        assert!(is_streamed(Some(Format::MessagePack), &mp, None));
    }

    /// `json_value_at` as it was, on serde_json's `StreamDeserializer`.
    fn serde_value_at<'a, T: serde::Deserialize<'a>>(
        body: &'a [u8],
        start: usize,
    ) -> Result<(T, usize), String> {
        let rest = body.get(start..).ok_or("truncated JSON")?;
        let mut values = serde_json::Deserializer::from_slice(rest).into_iter::<T>();
        match values.next() {
            Some(Ok(v)) => Ok((v, start + values.byte_offset())),
            Some(Err(e)) => Err(format!("invalid JSON: {e}")),
            None => Err("truncated JSON".into()),
        }
    }

    #[test]
    fn values_are_read_as_serde_json_streamed_them() {
        use crate::json::read::tests::{mutated, spaced};
        let mut rng = crate::rng::Rng::seed_from_u64(71);
        let base = br#"{"model" : "a\n\u00e9", "x":[1,{"y":null}], "n":-1.5e3,"t":true , "s":"\ud800\udc00"} "#;
        for _ in 0..20_000 {
            let doc = mutated(&spaced(base, &mut rng), &mut rng);
            for start in 0..=doc.len() + 1 {
                assert_eq!(
                    json_value_at(&doc, start, String::read),
                    serde_value_at::<String>(&doc, start),
                    "{}",
                    String::from_utf8_lossy(&doc)
                );
                assert_eq!(
                    json_value_at(&doc, start, |p| p.ignore_value()).map(|(_, at)| at),
                    serde_value_at::<serde::de::IgnoredAny>(&doc, start).map(|(_, at)| at),
                    "{}",
                    String::from_utf8_lossy(&doc)
                );
            }
        }
    }
}
