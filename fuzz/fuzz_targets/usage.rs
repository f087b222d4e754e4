//! Usage scanning of response bodies: `usage_from_json`, and `SseUsageScanner` fed the same
//! bytes whole, one byte at a time and in input-derived chunk sizes — all three must find the
//! same usage (lines here are far below the scanner's 256 KiB line limit). The bytes also go
//! through `implicit_reward` as a reward header value.
#![no_main]

use inference_router_core::config::{Price, RewardSettings};
use inference_router_core::reward::{
    implicit_reward, usage_from_json, Observation, SseUsageScanner,
};
use libfuzzer_sys::fuzz_target;

fn scan<'a>(chunks: impl Iterator<Item = &'a [u8]>) -> SseUsageScanner {
    let mut s = SseUsageScanner::default();
    for c in chunks {
        s.feed(c);
    }
    s
}

fuzz_target!(|data: &[u8]| {
    let json = usage_from_json(data);

    let whole = scan(std::iter::once(data)).usage();
    let bytewise = scan(data.chunks(1)).usage();
    assert_eq!(whole, bytewise, "byte-at-a-time feeding changed the result");
    if data.len() < 200_000 {
        let mut sizes = data.len() as u64 ^ 0x9e37_79b9_7f4a_7c15;
        let mut rest = data;
        let mut chunks = Vec::new();
        while !rest.is_empty() {
            sizes = sizes
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1);
            let n = 1 + (sizes >> 33) as usize % 97;
            let (c, r) = rest.split_at(n.min(rest.len()));
            chunks.push(c);
            rest = r;
        }
        assert_eq!(
            scan(chunks.into_iter()).usage(),
            whole,
            "chunking changed the result"
        );
    }

    let settings = RewardSettings {
        status: true,
        latency_target_ms: Some(1000),
        header: Some("x-reward".into()),
        cost_weight: 0.5,
        latency_weight: 0.05,
        evaluator: None,
    };
    let price = Price {
        input_per_1k: 2.5,
        output_per_1k: 10.0,
    };
    let obs = Observation {
        status: 200,
        latency_ms: 250,
        header: Some(String::from_utf8_lossy(data).into_owned()),
        usage: json.or(whole),
    };
    if let Ok(r) = implicit_reward(&settings, &price, &obs) {
        assert!((0.0..=1.0).contains(&r), "reward {r} outside [0, 1]");
    }
});
