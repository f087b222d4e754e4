//! Spent-decision shards holding arbitrary bytes (`MemoryStore::put_raw`): `spend`, a replay,
//! `unspend`, `spend` again, `seed_bucket` and `clear_bucket` must never panic. Bytes that are
//! not a list of 8-byte ids are refused (never reset: forgetting ids would accept replays).
//! When they are something the filter itself could have written (a sorted list without
//! duplicates), the once-only property is checked: after a successful spend, the same nonce is
//! a replay; and a shard at capacity never takes a new id.
#![no_main]

use inference_router_core::bandit::MemoryStore;
use inference_router_core::learning::spent::{
    clear_bucket, seed_bucket, shard_key, spend, unspend, Spend, SpendError,
};
use libfuzzer_sys::fuzz_target;

const PREFIX: &str = "inference-router/v1/fuzz";
const BUCKET: u64 = 472_222;

fuzz_target!(|data: &[u8]| {
    let ids: Option<Vec<u64>> = (data.len() % 8 == 0).then(|| {
        data.chunks_exact(8)
            .map(|c| u64::from_be_bytes(c.try_into().unwrap_or_default()))
            .collect()
    });
    let ours = ids
        .as_ref()
        .is_some_and(|ids| ids.windows(2).all(|w| w[0] < w[1]));
    let held = ids.as_ref().map_or(0, Vec::len);
    let mut tail = [0u8; 8];
    for (slot, b) in tail.iter_mut().zip(data.iter().rev()) {
        *slot = *b;
    }
    for nonce in [0, 1, 42, u64::MAX, u64::from_le_bytes(tail)] {
        let key = shard_key(PREFIX, BUCKET, nonce);
        for capacity in [held, held + 4] {
            let store = MemoryStore::new();
            store.put_raw(&key, data);
            let first = spend(&store, &key, nonce, capacity, 8);
            if ids.is_none() {
                assert_eq!(
                    first,
                    Err(SpendError::Corrupt),
                    "undecodable bytes accepted"
                );
                continue;
            }
            if !ours {
                continue;
            }
            let was_there = ids.as_ref().is_some_and(|ids| ids.contains(&nonce));
            match first {
                Ok(Spend::Fresh) => assert!(
                    !was_there && held < capacity,
                    "spent twice or over capacity"
                ),
                Ok(Spend::Replayed) => assert!(was_there),
                Err(SpendError::Full) => assert!(!was_there && held >= capacity),
                Err(e) => panic!("spend failed: {e:?}"),
            }
            if first != Ok(Spend::Fresh) {
                continue;
            }
            assert_eq!(
                spend(&store, &key, nonce, capacity, 8),
                Ok(Spend::Replayed),
                "spent twice"
            );
            assert!(unspend(&store, &key, nonce, 8).is_ok());
            assert_eq!(
                spend(&store, &key, nonce, capacity, 8),
                Ok(Spend::Fresh),
                "unspend did not release"
            );
        }
        let store = MemoryStore::new();
        store.put_raw(&key, data);
        let _ = seed_bucket(&store, PREFIX, BUCKET);
        assert!(clear_bucket(&store, PREFIX, BUCKET).is_ok());
        assert_eq!(spend(&store, &key, nonce, 8, 8), Ok(Spend::Fresh));
        assert_eq!(spend(&store, &key, nonce, 8, 8), Ok(Spend::Replayed));
    }
});
