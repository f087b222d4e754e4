//! Feedback bodies: `parse_feedback` with and without a header decision, then the whole
//! `learning::process_feedback` against an in-memory store with the coverage fixture (feedback
//! on, three bandit models). The request also carries a validly signed `x-inference-decision`
//! header and an `x-inference-reward`, so bodies without their own decision reach spending and
//! learning. Checked: an accepted decision is refused as replayed the second time, and the
//! state endpoint's document can be built from what was stored.
#![no_main]

use fuzz_support::{coverage_fixture, signed_token, NOW, PLUGIN};
use inference_router_core::bandit::MemoryStore;
use inference_router_core::feedback::parse_feedback;
use inference_router_core::learning::{process_feedback, state_document, FeedbackInput};
use inference_router_core::plugin::Build;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = parse_feedback(data, None);
    let _ = parse_feedback(data, Some("sentiment~v1~1~0000000000000001~-~k0~00"));

    let fx = coverage_fixture();
    let header = signed_token(PLUGIN, "chat", "large", NOW + 300, 0x00c0_ffee);
    let input = FeedbackInput {
        body: data,
        header_decision: Some(&header),
        header_reward: Some("0.25"),
        principal: None,
    };
    let store = MemoryStore::new();
    let first = process_feedback(&store, PLUGIN, &fx.cfg, NOW, &input);
    assert!(
        [200, 400, 403, 409, 410, 422, 429, 503].contains(&first.status),
        "unexpected status {}",
        first.status
    );
    assert_eq!(first.status == 200, first.result.is_ok());
    assert!(serde_json::to_vec(&first.body).is_ok());
    if first.status == 200 {
        let again = process_feedback(&store, PLUGIN, &fx.cfg, NOW, &input);
        assert_eq!(again.status, 409, "accepted twice: {:?}", again.body);
    }
    let _ = state_document(&store, PLUGIN, &fx.cfg, Build::UNKNOWN);
});
