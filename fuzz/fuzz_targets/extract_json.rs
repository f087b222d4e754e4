//! `payload::extract` of a JSON body, checked against serde_json: when both read the document,
//! every pointer yields what `Value::pointer` yields; when serde_json reads it but `extract`
//! refuses it, the only allowed reason is a duplicated key that routing reads. A document
//! both accept is also re-encoded as MessagePack and must extract to the same fields.
//!
//! Input: an optional first line of extra pointers (starts with `/`, space-separated), then
//! the body.
#![no_main]

use fuzz_support::pointer_set_and_body;
use inference_router_core::payload::{extract, Format};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fn depth(v: &Value) -> usize {
    match v {
        Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        Value::Object(o) => 1 + o.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

fuzz_target!(|data: &[u8]| {
    let (set, body) = pointer_set_and_body(data);
    let got = extract(&set, Format::Json, body);
    let doc = serde_json::from_slice::<Value>(body);
    match (&got, &doc) {
        (Ok(fields), Ok(doc)) => {
            for (i, p) in set.iter().enumerate() {
                assert_eq!(
                    fields.get(i).map(Value::from),
                    doc.pointer(p).cloned(),
                    "pointer {p:?}"
                );
            }
            // serde_json and rmp-serde count nesting differently near their limits (128).
            if depth(doc) < 100 {
                if let Ok(mp) = rmp_serde::to_vec_named(doc) {
                    match extract(&set, Format::MessagePack, &mp) {
                        Ok(again) => assert_eq!(&again, fields, "JSON and MessagePack disagree"),
                        Err(e) => panic!("MessagePack form of an accepted JSON body refused: {e}"),
                    }
                }
            }
        }
        (Err(e), Ok(_)) => assert!(
            e.detail.contains("duplicate key"),
            "serde_json reads the body, extract refuses it: {}",
            e.detail
        ),
        (Ok(_), Err(_)) | (Err(_), Err(_)) => {}
    }
    if let Err(e) = &got {
        assert!(e.detail.starts_with("malformed JSON"), "{}", e.detail);
    }
});
