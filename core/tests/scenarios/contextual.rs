//! The contextual strategy (`linucb`) learning from the responses themselves (`reward`): a short
//! and a long chat prompt whose best target differs (`small` fails long prompts, `large` fails
//! short ones). The features reach the reward through the stream: each context ends on its own
//! target, and the state endpoint shows the learned coefficients.

use crate::driver::*;
use inference_router_core::host::Action;
use serde_json::json;

#[test]
fn implicit_rewards_teach_each_context_its_target() {
    let mut vm = Vm::start(&json!({
        "models": [bandit_model(
            "chat",
            json!([ { "name": "small", "cluster": "llm-small" },
                    { "name": "large", "cluster": "llm-large" } ]),
            json!({ "type": "linucb", "features": ["prompt_tokens"], "alpha": 0.5 }),
            Some(json!({ "status": true })),
        )],
        "state_endpoint": state_section(),
    }));
    let body = |prompt: &str| {
        serde_json::to_vec(&json!({
            "model": "chat", "messages": [ { "role": "user", "content": prompt } ]
        }))
        .unwrap()
    };
    let (short, long) = (body("hi"), body(&"All work and no play. ".repeat(400)));
    let mut last_on_best = [0; 2];
    for round in 0..150 {
        for (is_long, b) in [(false, &short), (true, &long)] {
            let mut sent = vm.send(&post_json("/v1/chat/completions"), b);
            assert_eq!(sent.action, Action::Continue, "round {round}");
            let cluster = vm.routed_cluster().unwrap();
            let best = if is_long { "llm-large" } else { "llm-small" };
            let status: &[(&str, &str)] = if cluster == best {
                OK
            } else {
                &[(":status", "500")]
            };
            vm.respond(&mut sent, status, b"");
            if round >= 100 && cluster == best {
                last_on_best[usize::from(is_long)] += 1;
            }
        }
    }
    // 50 requests per context at the end: a blind router gives 25 ± 3.5.
    assert!(last_on_best.iter().all(|&n| n >= 45), "{last_on_best:?}");
    assert_eq!(vm.observations("chat"), 300);
    let targets = vm.model_state("chat")["targets"].clone();
    for t in targets.as_array().unwrap() {
        let theta = t["theta"]
            .as_array()
            .unwrap_or_else(|| panic!("no theta: {t}"));
        assert_eq!(theta.len(), 2, "bias and prompt_tokens: {t}");
        // Reward − 0.5 falls with the prompt's length on `small`, rises on `large`.
        let slope = theta[1].as_f64().unwrap();
        match t["name"].as_str().unwrap() {
            "small" => assert!(slope < 0.0, "{t}"),
            _ => assert!(slope > 0.0, "{t}"),
        }
    }
}
