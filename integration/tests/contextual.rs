//! A contextual strategy (docs/configuration.md, "Contextual strategy: linucb") against the real
//! Envoy at `--concurrency 2`, envoy/demo.yaml: requests of two clearly different contexts —
//! a one-word chat prompt and a ~2,000-token one — whose best target differs (`small` for the
//! short, `large` for the long), graded through the feedback path. Each context ends up on its
//! own best target, which no context-free bandit can do (it would send both to one target, or
//! split them blindly).

mod common;

use common::learning::*;
use integration::{Harness, Request};
use serde_json::json;

const ROUNDS: usize = 120;
const LAST: usize = 40;

fn chat(prompt: &str) -> Request {
    Request::post("/v1/chat/completions").json(&json!({
        "model": "chat",
        "messages": [ { "role": "user", "content": prompt } ],
    }))
}

#[test]
fn each_context_ends_on_its_own_best_target() {
    let h = Harness::demo(&learning_config(json!([bandit_model(
        "chat",
        json!([ { "name": "small", "cluster": "llm-small" },
                { "name": "large", "cluster": "llm-large" } ]),
        json!({ "type": "linucb", "features": ["prompt_tokens"], "alpha": 0.5 }),
        None,
    )])));
    let short = chat("hi");
    let long = chat(&"The quick brown fox jumps over the lazy dog. ".repeat(180));
    let mut conns: Vec<_> = (0..2).map(|_| h.envoy.connect()).collect();
    // (round, is long, target) of every decision.
    let mut routed = Vec::new();
    let mut contexts = [None, None];
    for round in 0..ROUNDS {
        for (is_long, req) in [(false, &short), (true, &long)] {
            let r = conns[usize::from(is_long)]
                .send(req)
                .unwrap_or_else(|e| panic!("round {round}: {e}"));
            let (id, target) = decision_of(&r);
            assert_eq!(
                r.header("x-inference-reason"),
                Some("bandit"),
                "{:?}",
                r.headers
            );
            // The signed id carries the request's features (`~c<hex>~` before the signature).
            let context = id.split('~').nth(6).map(str::to_string);
            assert!(
                context.as_deref().is_some_and(|c| c.starts_with('c')),
                "no context in {id}"
            );
            let seen = contexts[usize::from(is_long)].get_or_insert(context.clone());
            assert_eq!(*seen, context, "one context per prompt");
            let best = if is_long { "large" } else { "small" };
            let reward = if target == best { 1.0 } else { 0.0 };
            let fb = send_feedback(&h.envoy, &id, reward);
            assert_eq!(fb.status, 200, "{}", fb.text());
            routed.push((round, is_long, target));
        }
    }
    assert_ne!(
        contexts[0], contexts[1],
        "the two prompts have different contexts"
    );
    for (is_long, best) in [(false, "small"), (true, "large")] {
        let last: Vec<_> = routed
            .iter()
            .filter(|(round, l, _)| *l == is_long && *round >= ROUNDS - LAST)
            .collect();
        let on_best = last.iter().filter(|(_, _, t)| t == best).count();
        eprintln!(
            "{} prompts: {on_best} of the last {LAST} on {best}",
            if is_long { "long" } else { "short" }
        );
        // Blind (context-free) routing puts at most one context on its best target; a uniform
        // split gives 20 ± 3. 32 of 40 is 4 sigma above it.
        assert!(
            on_best >= 32,
            "{best} got {on_best} of the last {LAST}: {last:?}"
        );
    }
    // Every decision was rewarded once; the upstreams saw what was chosen.
    let obs = wait_observations(&h.envoy, "chat", 2 * ROUNDS as u64);
    assert_eq!(obs, 2 * ROUNDS as u64);
    let to = |cluster: &str| routed.iter().filter(|(_, _, t)| t == cluster).count() as u64;
    assert_eq!(h.upstreams.hits("llm-small"), to("small"));
    assert_eq!(h.upstreams.hits("llm-large"), to("large"));
    let arms = arms(&model_state(&h.envoy, "chat"));
    assert_eq!(f(&arms["small"]["pulls"]) as u64, to("small"));
}
