//! Decimal text to f64 (`parse_float::parse_f64`, how reward, budget and load headers are read)
//! against `str::parse::<f64>`: the same strings refused, the same bits read.
#![no_main]

use inference_router_core::parse_float::parse_f64;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let ours = parse_f64(text).map(f64::to_bits);
    let std = text.parse::<f64>().ok().map(f64::to_bits);
    assert_eq!(ours, std, "{text:?}");
});
