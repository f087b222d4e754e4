//! The reader against serde_json's `from_slice` into a `Value`: the same answer for generated
//! documents, for every cut and many changes of them, and for numbers and strings built to hit
//! its edges (overflowing integers and exponents, escapes, surrogates, bad UTF-8, nesting).

use crate::json::Value;

use super::from_slice;
use crate::json::write::to_vec;
use crate::msgpack::testing::{any_f64, any_name};
use crate::rng::Rng;

/// Same value (bytes written back tell `-0.0` from `0.0`) or same error text.
fn agrees(doc: &[u8]) {
    let ours = from_slice(doc)
        .map(|v| to_vec(&v))
        .map_err(|e| e.to_string());
    let theirs = serde_json::from_slice::<Value>(doc)
        .map(|v| to_vec(&v))
        .map_err(|e| e.to_string());
    assert_eq!(ours, theirs, "{:?}", String::from_utf8_lossy(doc));
}

const PIECES: [&str; 40] = [
    " ",
    "\n",
    "\t",
    "\r",
    ",",
    ":",
    "[",
    "]",
    "{",
    "}",
    "\"",
    "\\",
    "\\u",
    "\\ud800",
    "\\udc00",
    "\\ud83d\\ude00",
    "\\x",
    "0",
    "-",
    "-0",
    "1",
    "9",
    ".",
    "e",
    "E+",
    "e-",
    "1e400",
    "00",
    "18446744073709551616",
    "-9223372036854775809",
    "null",
    "nul",
    "true",
    "fals",
    "\u{1}",
    "é",
    "\u{ff}",
    "/",
    "a",
    "1.0e",
];

fn any_piece(rng: &mut Rng) -> &'static str {
    PIECES[rng.below(PIECES.len() as u64) as usize]
}

fn any_value(rng: &mut Rng, depth: u32) -> Value {
    match rng.below(if depth > 3 { 6 } else { 8 }) {
        0 => Value::Null,
        1 => Value::Bool(rng.below(2) == 0),
        2 => Value::from(rng.next_u64() >> rng.below(64)),
        3 => Value::from(-((rng.next_u64() >> (1 + rng.below(63))) as i64)),
        4 => Value::from(any_f64(rng)),
        5 => Value::String(any_name(rng).chars().take(8).collect::<String>() + "\n\"é\\"),
        6 => Value::Array(
            (0..rng.below(4))
                .map(|_| any_value(rng, depth + 1))
                .collect(),
        ),
        _ => Value::Object(
            (0..rng.below(4))
                .map(|_| (rng.below(5).to_string(), any_value(rng, depth + 1)))
                .collect(),
        ),
    }
}

/// A document written with whitespace between its tokens, sometimes.
pub(crate) fn spaced(doc: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut out = Vec::new();
    let mut in_string = false;
    let mut escaped = false;
    for &b in doc {
        if !in_string && rng.below(6) == 0 {
            out.extend_from_slice([" ", "\n", "\t\r\n  "][rng.below(3) as usize].as_bytes());
        }
        out.push(b);
        match b {
            _ if escaped => escaped = false,
            b'\\' if in_string => escaped = true,
            b'"' => in_string = !in_string,
            _ => {}
        }
    }
    out
}

/// The document changed a little: a byte replaced, a piece put in, or a run cut out.
pub(crate) fn mutated(doc: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut out = doc.to_vec();
    let at = rng.below(out.len() as u64 + 1) as usize;
    match rng.below(3) {
        0 if at < out.len() => out[at] = any_piece(rng).as_bytes()[0],
        1 => {
            let cut = (at + rng.below(4) as usize).min(out.len());
            out.drain(at..cut);
        }
        _ => {
            let piece = any_piece(rng).as_bytes();
            out.splice(at..at, piece.iter().copied());
        }
    }
    out
}

#[test]
fn documents_read_as_serde_json_reads_them() {
    let mut rng = Rng::seed_from_u64(31);
    for _ in 0..20_000 {
        let doc = spaced(&to_vec(&any_value(&mut rng, 0)), &mut rng);
        agrees(&doc);
        for _ in 0..4 {
            agrees(&mutated(&doc, &mut rng));
        }
        let cut = rng.below(doc.len() as u64) as usize;
        agrees(&doc[..cut]);
    }
}

#[test]
fn every_cut_of_a_document_fails_as_in_serde_json() {
    let doc = br#" {"a" : [1, -2, 3.5e-3, true, false, null, "x\n\u00e9\ud83d\ude00"], "b": {}} "#;
    for cut in 0..doc.len() {
        agrees(&doc[..cut]);
        let mut twice = doc.to_vec();
        twice.insert(cut, b'x');
        agrees(&twice);
    }
}

#[test]
fn pieces_put_together_read_as_in_serde_json() {
    let mut rng = Rng::seed_from_u64(32);
    for _ in 0..200_000 {
        let n = 1 + rng.below(6);
        let doc: String = (0..n).map(|_| any_piece(&mut rng)).collect();
        agrees(doc.as_bytes());
        agrees(format!("[{doc}]").as_bytes());
        agrees(format!("\"{doc}\"").as_bytes());
        agrees(format!("{{\"{doc}\":{doc}}}").as_bytes());
    }
}

fn digits(rng: &mut Rng, max: u64) -> String {
    (0..rng.below(max))
        .map(|_| char::from(b'0' + rng.below(10) as u8))
        .collect()
}

#[test]
fn numbers_read_as_serde_json_reads_them() {
    let mut rng = Rng::seed_from_u64(33);
    for _ in 0..200_000 {
        let sign = ["", "-", "+"][rng.below(3) as usize];
        let int = digits(&mut rng, 25);
        let frac = if rng.below(2) == 0 {
            format!(".{}", digits(&mut rng, 25))
        } else {
            String::new()
        };
        let exp = match rng.below(3) {
            0 => String::new(),
            _ => format!(
                "{}{}{}",
                ["e", "E"][rng.below(2) as usize],
                ["", "+", "-"][rng.below(3) as usize],
                digits(&mut rng, 12)
            ),
        };
        agrees(format!("{sign}{int}{frac}{exp}").as_bytes());
        agrees(format!("[{sign}{int}{frac}{exp}]").as_bytes());
    }
    for f in [
        f64::MAX,
        f64::MIN_POSITIVE,
        5e-324,
        1.7976931348623157e308,
        2.2250738585072014e-308,
    ] {
        agrees(f.to_string().as_bytes());
        agrees(format!("{f:e}").as_bytes());
    }
}

#[test]
fn strings_read_as_serde_json_reads_them() {
    let mut rng = Rng::seed_from_u64(34);
    for _ in 0..100_000 {
        let mut doc = vec![b'"'];
        for _ in 0..rng.below(8) {
            match rng.below(4) {
                0 => doc.push(rng.below(256) as u8),
                1 => doc.extend_from_slice(format!("\\u{:04x}", rng.below(0x10000)).as_bytes()),
                2 => doc
                    .extend_from_slice(format!("\\u{:04X}", 0xd800 + rng.below(0x800)).as_bytes()),
                _ => doc.extend_from_slice(any_piece(&mut rng).as_bytes()),
            }
        }
        if rng.below(4) > 0 {
            doc.push(b'"');
        }
        agrees(&doc);
        doc.splice(0..0, *b"\n [\n");
        agrees(&doc);
    }
}

#[test]
fn nesting_stops_where_serde_json_stops() {
    for depth in [1, 126, 127, 128, 129, 300] {
        for (open, close) in [("[", "]"), ("{\"a\":", "}")] {
            let doc = format!("{}1{}", open.repeat(depth), close.repeat(depth));
            agrees(doc.as_bytes());
            agrees(&doc.as_bytes()[..doc.len() / 2]);
        }
    }
}
