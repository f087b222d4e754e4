//! Bandit state bytes as they sit in shared data: `bandit::decode` (and re-encoding what it
//! accepts), then the host's uses of whatever is stored: `StateCache::refresh` and `select`,
//! `update`, `apply_reward` through the bounded CAS loop over a `MemoryStore` holding the raw
//! bytes, and the state endpoint's document. Checked: the chosen arm is in range, and what an
//! update writes decodes again.
#![no_main]

use fuzz_support::{fixtures, PLUGIN};
use inference_router_core::plugin::Build;
use inference_router_core::bandit::{self, MemoryStore, StateCache};
use inference_router_core::learning::{apply_reward, state_document, state_key};
use inference_router_core::rng::Rng;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(state) = bandit::decode(data) {
        assert_eq!(bandit::decode(&bandit::encode(&state)).as_ref(), Ok(&state));
    }
    for fx in fixtures() {
        let cfg = &fx.cfg;
        let store = MemoryStore::new();
        for (mi, m) in cfg.models.iter().enumerate() {
            let Some(strategy) = m.bandit() else { continue };
            let names = m.target_names();
            let mut cache = StateCache::new();
            let _ = cache.refresh(Some(data), Some(1), strategy, || names.to_vec());
            let Some(state) = cache.state() else {
                panic!("refresh left no state");
            };
            assert_eq!(state.arms.len(), names.len(), "refresh did not reconcile");
            let mut rng = Rng::seed_from_u64(data.len() as u64);
            let mut arm = 0;
            for _ in 0..4 {
                arm = strategy.select(state, &mut rng);
                assert!(
                    arm < state.arms.len(),
                    "select gave arm {arm} of {}",
                    state.arms.len()
                );
            }
            let mut next = state.clone();
            if let Err(e) = strategy.update(&mut next, arm, 0.75) {
                panic!("update failed on a reconciled state: {e}");
            }
            let reread = bandit::decode(&bandit::encode(&next));
            assert!(
                reread.is_ok(),
                "an updated state does not decode: {reread:?}"
            );

            store.put_raw(&state_key(PLUGIN, &m.name), data);
            let target = names.get(arm).copied().unwrap_or_default();
            match apply_reward(&store, PLUGIN, cfg, mi, target, 0.5, 0) {
                Ok(applied) => assert!(bandit::decode(&bandit::encode(&applied.state)).is_ok()),
                Err(e) => panic!("reward not applied over stored bytes: {}", e.describe()),
            }
            store.put_raw(&state_key(PLUGIN, &m.name), data);
        }
        let _ = state_document(&store, PLUGIN, cfg, Build::UNKNOWN);
    }
});
