//! Feedback bodies: `parse_feedback` with and without a header decision, then the whole
//! `learning::process_feedback` against an in-memory store with the coverage fixture (feedback
//! on, three bandit models). The request also carries a validly signed `x-inference-decision`
//! header and an `x-inference-reward`, so bodies without their own decision reach spending and
//! learning. Checked: an accepted decision is refused as replayed the second time, and the
//! state endpoint's document can be built from what was stored.
#![no_main]

use fuzz_support::{coverage_fixture, COVERAGE_SIGNING_KEY, NOW, PLUGIN};
use inference_router_core::plugin::Build;
use inference_router_core::bandit::MemoryStore;
use inference_router_core::feedback::{parse_feedback, DecisionToken, TokenSigner};
use inference_router_core::learning::{process_feedback, state_document, FeedbackInput};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = parse_feedback(data, None);
    let _ = parse_feedback(data, Some("sentiment~v1~1~0000000000000001~00"));

    let fx = coverage_fixture();
    let header = TokenSigner::new(COVERAGE_SIGNING_KEY).sign(&DecisionToken {
        model: "chat".into(),
        target: "large".into(),
        expires: NOW + 300,
        nonce: 0x00c0_ffee,
    });
    let input = FeedbackInput {
        body: data,
        header_decision: Some(&header),
        header_reward: Some("0.25"),
    };
    let store = MemoryStore::new();
    let mut reset = false;
    let first = process_feedback(&store, PLUGIN, &fx.cfg, NOW, &input, &mut reset);
    assert!(
        [200, 400, 403, 409, 410, 422, 503].contains(&first.status),
        "unexpected status {}",
        first.status
    );
    assert_eq!(first.status == 200, first.result.is_ok());
    assert!(serde_json::to_vec(&first.body).is_ok());
    if first.status == 200 {
        let again = process_feedback(&store, PLUGIN, &fx.cfg, NOW, &input, &mut reset);
        assert_eq!(again.status, 409, "accepted twice: {:?}", again.body);
    }
    let _ = state_document(&store, PLUGIN, &fx.cfg, Build::UNKNOWN);
});
