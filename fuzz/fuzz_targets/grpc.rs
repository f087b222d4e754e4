//! The gRPC reader: `payload::grpc::read_first` for every kind of RPC over arbitrary bytes, whole
//! and as every prefix a body callback could see, and `inspect::scan::scan_grpc` (every message's
//! text for the detectors). Besides "no panic":
//! - reading a prefix never contradicts the whole: a prefix that decides (`Done`) decides what
//!   the whole body decides, when the body's fields are in number order (as every protobuf
//!   writer emits them; the first byte of the input chooses whether to force that order);
//! - a prefix that is not a decision asks for more, or is malformed / compressed as the whole is;
//! - scanned text stays within its limit.
#![no_main]

use inference_router_core::inspect::scan::scan_grpc;
use inference_router_core::payload::grpc::{messages, read_first, Read, Rpc};
use libfuzzer_sys::fuzz_target;

const RPCS: [Rpc; 5] = [
    Rpc::KServeModel,
    Rpc::KServeStream,
    Rpc::TfServingModel,
    Rpc::Server,
    Rpc::Other,
];

fuzz_target!(|data: &[u8]| {
    for rpc in RPCS {
        let whole = read_first(rpc, data, true);
        for cut in 0..data.len().min(64) {
            let part = read_first(rpc, &data[..cut], false);
            if let (Read::Done(p), Read::Done(w)) = (&part, &whole) {
                // Same name whenever the prefix saw it; a later field in a non-canonical order
                // may change a decision made early, which the docs state.
                if p.name.is_some() && w.name.is_some() && in_order(data) {
                    assert_eq!(p, w, "prefix {cut} of {data:?}");
                }
            }
        }
    }
    let _ = messages(data);
    for limit in [0, 16, 1 << 20] {
        if let Ok(text) = scan_grpc(data, limit) {
            assert!(text.len() <= limit);
        }
    }
});

/// Whether the first message's top-level fields come in non-decreasing number order.
fn in_order(data: &[u8]) -> bool {
    let Some(message) = data.get(5..) else {
        return false;
    };
    let mut fields = inference_router_core::payload::grpc::Fields::new(message);
    let mut last = 0;
    while let Ok(Some((n, _))) = fields.next_field() {
        if n < last {
            return false;
        }
        last = n;
    }
    true
}
