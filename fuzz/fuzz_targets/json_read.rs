//! `json::read` against serde_json's `from_slice` into a `Value`: the same documents accepted,
//! the same values read (written back to the same bytes, so `-0.0` and every float bit count),
//! and the same error text, line and column for every document refused.
#![no_main]

use inference_router_core::json::{read, write, Value};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let ours = read::from_slice(data).map(|v| write::to_vec(&v));
    let theirs =
        serde_json::from_slice::<serde_json::Value>(data).map(|v| write::to_vec(&Value::from(&v)));
    match (ours, theirs) {
        (Ok(a), Ok(b)) => assert_eq!(a, b),
        (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string()),
        (a, b) => panic!("json::read {a:?}, serde_json {b:?}"),
    }
});
