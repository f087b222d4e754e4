//! Metadata mode: the proxy-wasm pairs encoding of a dynamic-metadata namespace
//! (`decode_pairs`), each value (`decode_value`, as number and as string), the fields built
//! from them, and the decision a metadata-mode configuration makes with those fields.
#![no_main]

use fuzz_support::{metadata_fixture, route_request, Req, NOWS};
use inference_router_core::payload::{
    decode_pairs, decode_value, encode_pairs, fields_from_metadata,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = decode_value(data, true);
    let _ = decode_value(data, false);
    let Some(pairs) = decode_pairs(data) else {
        return;
    };
    if !pairs.is_empty() {
        assert_eq!(
            decode_pairs(&encode_pairs(&pairs)).as_ref(),
            Some(&pairs),
            "pairs do not survive re-encoding"
        );
    }
    for (_, v) in &pairs {
        let _ = decode_value(v, true);
        let _ = decode_value(v, false);
    }
    let fx = metadata_fixture();
    let fields = fields_from_metadata(&fx.cfg.pointers, &fx.cfg.numeric_pointers, &pairs);
    let requests = [
        Req::new(&[(":method", "POST"), (":path", "/v1/chat/completions")]),
        Req::new(&[(":method", "GET"), (":path", "/v2/models/sentiment/infer")]),
    ];
    for req in &requests {
        for (which, now) in NOWS.into_iter().enumerate() {
            let mut shared = fx.shared(which, now);
            route_request(&fx.cfg, &mut shared, req, None, Some(&fields), now);
        }
    }
});
