//! `payload::extract` of a MessagePack body. When rmp-serde also reads the whole document as
//! a `serde_json::Value`, every pointer must yield what `Value::pointer` yields.
//!
//! Input: an optional first line of extra pointers (starts with `/`, space-separated), then
//! the body.
#![no_main]

use fuzz_support::pointer_set_and_body;
use inference_router_core::payload::{extract, Format};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let (set, body) = pointer_set_and_body(data);
    match extract(&set, Format::MessagePack, body) {
        Ok(fields) => {
            if let Ok(doc) = rmp_serde::from_slice::<Value>(body) {
                for (i, p) in set.iter().enumerate() {
                    assert_eq!(
                        fields.get(i).map(Value::from),
                        doc.pointer(p).cloned(),
                        "pointer {p:?}"
                    );
                }
            }
            for i in 0..set.len() {
                if let Some(v) = fields.get(i) {
                    // What the filter may echo in an error or compare: must serialise.
                    assert!(serde_json::to_vec(v).is_ok());
                }
            }
        }
        Err(e) => assert!(
            e.detail.starts_with("malformed MessagePack"),
            "{}",
            e.detail
        ),
    }
});
