//! Spent-decision buckets holding arbitrary bytes (`MemoryStore::put_raw`): `spend`, a replay,
//! `unspend`, `spend` again, `seed_bucket` and `clear_bucket` must never panic or fail on a
//! well-behaved store. When the bytes are something the filter itself could have written (no
//! bytes, garbage it replaces, or a sorted list without duplicates), the once-only property is
//! checked too: after a successful spend, the same nonce is a replay.
#![no_main]

use inference_router_core::bandit::MemoryStore;
use inference_router_core::learning::spent::{clear_bucket, seed_bucket, spend, unspend, Spend};
use libfuzzer_sys::fuzz_target;

const KEY: &str = "inference-router/v1/fuzz/spent/28333333";

fuzz_target!(|data: &[u8]| {
    let ours = match rmp_serde::from_slice::<Vec<u64>>(data) {
        Ok(list) => list.windows(2).all(|w| w[0] < w[1]),
        Err(_) => true,
    };
    let mut tail = [0u8; 8];
    for (slot, b) in tail.iter_mut().zip(data.iter().rev()) {
        *slot = *b;
    }
    for nonce in [0, 1, 42, u64::MAX, u64::from_le_bytes(tail)] {
        let store = MemoryStore::new();
        store.put_raw(KEY, data);
        let mut reset = false;
        let first = spend(&store, KEY, nonce, 8, &mut reset);
        assert!(first.is_ok(), "spend failed: {first:?}");
        let second = spend(&store, KEY, nonce, 8, &mut reset);
        assert!(second.is_ok(), "spend failed: {second:?}");
        if ours {
            assert_eq!(second, Ok(Spend::Replayed), "spent twice");
        }
        assert!(unspend(&store, KEY, nonce, 8).is_ok());
        let third = spend(&store, KEY, nonce, 8, &mut reset);
        if ours {
            assert_eq!(third, Ok(Spend::Fresh), "unspend did not release");
        }
        assert_eq!(seed_bucket(&store, KEY), Ok(false));
        assert!(clear_bucket(&store, KEY).is_ok());
        assert_eq!(spend(&store, KEY, nonce, 8, &mut reset), Ok(Spend::Fresh));
        assert_eq!(
            spend(&store, KEY, nonce, 8, &mut reset),
            Ok(Spend::Replayed)
        );
    }
});
