//! `json::write` against serde_json's writer: any document serde_json reads is written back to
//! the same bytes (numbers as the text gave them, strings with every escape); and the first 8
//! bytes, as a float's bits, are spelled as serde_json spells that float.
#![no_main]

use inference_router_core::json::write::to_vec;
use inference_router_core::json::Value;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(bits) = data.get(..8).and_then(|b| <[u8; 8]>::try_from(b).ok()) {
        let f = f64::from_bits(u64::from_le_bytes(bits));
        assert_eq!(to_vec(&f), serde_json::to_vec(&f).unwrap(), "{f:e}");
    }
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) {
        assert_eq!(to_vec(&Value::from(&v)), serde_json::to_vec(&v).unwrap());
    }
});
