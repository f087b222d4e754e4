//! The routing decision end to end, as the host makes it: headers, then (if the core asks) the
//! body extracted as JSON or MessagePack per `content-type`, then the decision again with the
//! fields and the raw body — against each buffer-mode fixture (`configs/coverage.json` and the
//! examples of docs/configuration.md and docs/policy.md) at three times of day, with no target,
//! the first targets, or every target cooling down.
//!
//! Input: header lines `name: value` (`:method: POST`, `:path: /v1/...`; `@a.b.c: value` for
//! a dynamic-metadata property such as a JWT claim), a blank line, then the body. Without a
//! blank line the request has no body.
#![no_main]

use fuzz_support::{fixtures, parse_request, route_request, NOWS};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (req, body) = parse_request(data);
    for fx in fixtures() {
        for (which, now) in NOWS.into_iter().enumerate() {
            let mut shared = fx.shared(which, now);
            route_request(&fx.cfg, &mut shared, &req, body, None, now);
        }
    }
});
