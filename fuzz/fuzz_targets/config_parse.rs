//! `config::parse` on arbitrary bytes; a configuration that compiles is then used: every
//! bandit strategy selects and learns on its initial state, and canned requests are decided
//! through the host's flow (route indices, rule indices and statuses checked).
#![no_main]

use fuzz_support::{bandit_states, canned_requests, route_request, FixedShared, NOWS};
use inference_router_core::bandit;
use inference_router_core::rng::Rng;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let cfg = match inference_router_core::config::parse(data) {
        Ok(cfg) => cfg,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    assert!(
        !cfg.models.is_empty(),
        "a configuration without models compiled"
    );
    assert_eq!(cfg.pointers.pointer(0), Some("/model"));
    assert_eq!(cfg.numeric_pointers.len(), cfg.pointers.len());
    if let Some(d) = cfg.default_model {
        assert!(d < cfg.models.len(), "default_model out of range");
    }
    for m in &cfg.models {
        assert!(!m.targets.is_empty(), "model {:?} has no targets", m.name);
        assert!(
            m.default_target < m.targets.len(),
            "default_target out of range"
        );
        if let Some(strategy) = m.bandit() {
            let names = m.target_names();
            let mut state = strategy.initial_state(&names);
            let mut rng = Rng::seed_from_u64(7);
            for reward in [1.0, 0.0, 0.5] {
                let arm = strategy.select(&state, &mut rng);
                assert!(
                    arm < state.arms.len(),
                    "select gave arm {arm} of {}",
                    state.arms.len()
                );
                if let Err(e) = strategy.update(&mut state, arm, reward) {
                    panic!("update of a fresh state failed: {e}");
                }
            }
            let decoded = bandit::decode(&bandit::encode(&state));
            assert_eq!(
                decoded.as_ref(),
                Ok(&state),
                "state does not survive encode/decode"
            );
        }
    }
    let states = bandit_states(&cfg);
    for (req, body) in canned_requests(&cfg) {
        for (which, now) in NOWS.into_iter().enumerate() {
            let mut shared = FixedShared {
                states: &states,
                cooling: which,
                now,
            };
            route_request(&cfg, &mut shared, &req, body.as_deref(), None, now);
        }
    }
});
