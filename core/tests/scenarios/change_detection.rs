//! Change detection through the whole lifecycle: fractional rewards sent as feedback, a target
//! whose rewards fall is restarted, the alarm is counted per target
//! (`bandit.<model>.<target>.change_alarms`), and the detectors travel in the shared state.

use crate::driver::*;
use serde_json::json;

#[test]
fn feedback_that_falls_restarts_the_target_and_is_counted() {
    let mut vm = Vm::start(&json!({
        "models": [ bandit_model("sentiment", sentiment_targets(),
                                 json!({ "type": "thompson", "change_detection": {} }), None) ],
        "feedback": feedback_section(3600),
        "state_endpoint": state_section(),
    }));
    let mut v1_rewards = 0.0;
    for i in 0..300 {
        let (id, target) = vm.decision("sentiment");
        // v1 earns 0.9, then 0.1 from the 150th decision on; v2 always 0.6.
        let reward = match (target.as_str(), i < 150) {
            ("v1", true) => 0.9,
            ("v1", false) => 0.1,
            _ => 0.6,
        };
        v1_rewards += f64::from(u8::from(target == "v1"));
        let r = vm.feedback(&json!({ "decision": id, "reward": reward }));
        assert_eq!(r.status, 200, "{}", r.text());
    }
    assert_eq!(vm.counter("bandit.sentiment.v1.change_alarms"), 1);
    assert_eq!(vm.counter("bandit.sentiment.v2.change_alarms"), 0);
    assert_eq!(vm.counter("feedback.accepted"), 300);
    // v1 holds only what followed its restart (all at 0.1): far fewer pulls than it was sent.
    let [alpha, beta, pulls] = vm.arm("sentiment", "v1");
    assert!(
        pulls > 0.0 && pulls < v1_rewards - 100.0,
        "{pulls} of {v1_rewards}"
    );
    assert!(
        (alpha - (1.0 + 0.1 * pulls)).abs() < 1e-9,
        "{alpha} {pulls}"
    );
    assert!((beta - (1.0 + 0.9 * pulls)).abs() < 1e-9, "{beta} {pulls}");
    assert_eq!(vm.observations("sentiment"), 300);
    // The stored state has the detectors, so it is written by field name (a MessagePack map).
    let bytes = vm.host.shared_value(&state_key("sentiment")).unwrap();
    assert_eq!(bytes.first(), Some(&0x85));
    let state = inference_router_core::bandit::decode(&bytes).unwrap();
    assert_eq!(state.change.map(|c| c.arms.len()), Some(2));
}
