//! `inspect::scan::scan`, the full-document read behind the sensitive-data detectors, over
//! arbitrary bytes as JSON and as MessagePack at several `scan.max_bytes` limits. Besides "no
//! panic":
//! - an `Ok` text is at most the limit, and empty or newline-terminated;
//! - the limit only ever cuts: a document read whole at the largest limit reads to the same text
//!   at every limit it fits in, and is refused with `ScanLimit` (nothing else) at the others;
//! - nothing is refused for its size below the largest limit (inputs are far smaller);
//! - a document the scanner reads is one serde_json (or rmp-serde, where its `Value` can hold
//!   the document) reads too, and every string, key and integer in it is in the text: nothing a
//!   detector must see is skipped;
//! - bytes serde_json refuses are never scanned as JSON.
#![no_main]

use inference_router_core::inspect::scan::{scan, NotScanned};
use inference_router_core::payload::Format;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

/// `scan.max_bytes` values tried, ascending; the last is far above anything a fuzz input holds.
const LIMITS: [usize; 6] = [0, 1, 8, 64, 1024, 1 << 22];

/// Every string, object key and integer of a document, as the scanner writes them.
fn scalars(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                out.push(u.to_string());
            } else if let Some(i) = n.as_i64() {
                out.push(i.to_string());
            }
        }
        Value::Array(a) => a.iter().for_each(|x| scalars(x, out)),
        Value::Object(o) => {
            for (k, x) in o {
                out.push(k.clone());
                scalars(x, out);
            }
        }
        Value::Null | Value::Bool(_) => {}
    }
}

fn check(format: Format, data: &[u8]) {
    let results: Vec<Result<String, NotScanned>> =
        LIMITS.iter().map(|&l| scan(format, data, l)).collect();
    for (limit, r) in LIMITS.iter().zip(&results) {
        if let Ok(text) = r {
            assert!(
                text.len() <= *limit,
                "{format:?}: text of {} bytes over the limit {limit}",
                text.len()
            );
            assert!(
                text.is_empty() || text.ends_with('\n'),
                "{format:?}: text not newline-terminated"
            );
        }
    }
    let largest = results.last().expect("limits");
    // A MessagePack byte can become at most a few bytes of text ("-32\n", a float's digits).
    if data.len() * 32 < LIMITS[LIMITS.len() - 1] {
        assert_ne!(
            largest.as_ref().err(),
            Some(&NotScanned::ScanLimit),
            "{format:?}: {} input bytes over the largest limit",
            data.len()
        );
    }
    if let Ok(whole) = largest {
        for (limit, r) in LIMITS.iter().zip(&results) {
            if whole.len() <= *limit {
                assert_eq!(
                    r.as_ref(),
                    Ok(whole),
                    "{format:?}: read whole, but not at limit {limit}"
                );
            } else {
                assert_eq!(
                    r.as_ref(),
                    Err(&NotScanned::ScanLimit),
                    "{format:?}: {} bytes of text at limit {limit}",
                    whole.len()
                );
            }
        }
    }

    let doc = match format {
        Format::Json => serde_json::from_slice::<Value>(data).map_err(|_| ()),
        Format::MessagePack => rmp_serde::from_slice::<Value>(data).map_err(|_| ()),
    };
    match (largest, doc) {
        (Ok(text), Ok(doc)) => {
            let mut all = Vec::new();
            scalars(&doc, &mut all);
            for s in &all {
                assert!(
                    text.contains(s.as_str()),
                    "{format:?}: {s:?} is in the document but not in the scanned text"
                );
            }
        }
        (Ok(_), Err(())) if format == Format::Json => {
            panic!("JSON: scanned a document serde_json refuses")
        }
        _ => {}
    }
}

fuzz_target!(|data: &[u8]| {
    check(Format::Json, data);
    check(Format::MessagePack, data);
});
