//! `payload::PrefixScan` (the early decision's walk), checked against `payload::extract` on the
//! whole body: fed in two chunks cut anywhere, it never panics, and on a body that `extract`
//! reads with every pointer found it completes with the same fields.
//!
//! Input: as `extract_json` (optional first line of pointers, then the body); the body's first
//! byte picks the cut.
#![no_main]

use fuzz_support::pointer_set_and_body;
use inference_router_core::payload::{extract, Format, PrefixScan, Progress};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (set, body) = pointer_set_and_body(data);
    let cut = usize::from(body.first().copied().unwrap_or(0)) * body.len() / 256;
    let (a, b) = body.split_at(cut.min(body.len()));
    let mut scan = PrefixScan::new(&set);
    let mut progress = scan.feed(&set, a);
    if progress == Progress::More {
        progress = scan.feed(&set, b);
    }
    if progress == Progress::Complete {
        assert!(scan.fields().all_found());
    }
    if let Ok(whole) = extract(&set, Format::Json, body) {
        if whole.all_found() {
            assert_eq!(progress, Progress::Complete, "a readable body was given up");
            assert_eq!(scan.fields(), &whole, "the early walk and extract disagree");
        }
    }
});
