#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
//! The complete examples of docs/configuration.md (`<!-- example:full -->` and
//! `<!-- example:bandit -->`) load, and compile to what the page says they mean.
//! (tests/config.rs checks that every documented configuration is accepted; this file pins the
//! reference page's own examples by name, so renaming or emptying them fails here.)

use inference_router_core::config::{parse, Action, Config, Strategy, TargetPin};

/// The JSON block right after `<!-- example:NAME -->` in docs/configuration.md.
fn example(name: &str) -> String {
    // The docs are the workspace's, one level above this crate.
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let path = format!("{root}/docs/configuration.md");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let marker = format!("<!-- example:{name} -->");
    let at = text
        .find(&marker)
        .unwrap_or_else(|| panic!("{path} has no {marker}"));
    let after = text[at + marker.len()..].trim_start();
    let block = after
        .strip_prefix("```json\n")
        .unwrap_or_else(|| panic!("{marker} is not followed by a ```json block"));
    let end = block
        .find("```")
        .unwrap_or_else(|| panic!("{marker}: unterminated block"));
    block[..end].to_owned()
}

fn load(name: &str) -> Config {
    let block = example(name);
    parse(block.as_bytes())
        .unwrap_or_else(|e| panic!("docs/configuration.md example:{name} refused: {e}\n{block}"))
}

#[test]
fn full_example_loads() {
    let c = load("full");

    assert_eq!(c.route_header, "x-inference-cluster");
    assert_eq!(c.target_header, "x-inference-target");
    assert_eq!(c.model_header, "x-model");
    assert!(c.response_metadata);
    assert_eq!(c.body.max_bytes, 1_048_576);

    assert_eq!(c.models.len(), 2);
    let sentiment = c.model_by_name("sentiment").expect("model sentiment");
    assert_eq!(c.default_model, Some(sentiment));
    let m = &c.models[sentiment];
    assert_eq!(m.target_names(), ["v1", "v2"]);
    assert_eq!(m.targets[0].cluster, "sentiment-v1");
    assert_eq!(m.targets[1].cluster, "sentiment-v2");
    assert_eq!(m.total_weight, 100);
    assert_eq!(m.default_target, 0, "default_target v1");
    assert!(
        matches!(&m.strategy, Strategy::Weighted { sticky: Some(_) }),
        "sentiment is weighted and sticky: {:?}",
        m.strategy
    );

    let chat = c.model_by_name("chat").expect("model chat");
    assert_eq!(c.models[chat].target_names(), ["small", "large"]);

    let names: Vec<&str> = c.rules.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        names,
        ["acme-canary", "long-answers", "no-child", "maintenance"]
    );
    match &c.rules[0].then {
        Action::Pin {
            model: Some(model),
            target: TargetPin::Index(t),
        } => {
            assert_eq!(*model, sentiment);
            assert_eq!(c.models[sentiment].targets[*t].name, "v2");
        }
        other => panic!("acme-canary pins sentiment/v2, got {other:?}"),
    }
    assert_eq!(c.rules[0].when.len(), 2, "a header and a body condition");
    assert!(matches!(c.rules[2].then, Action::Reply { status: 200, .. }));
    assert!(c.has_echo, "the no-child rule echoes the body");
    match &c.rules[3].then {
        Action::Reject { status, message } => {
            assert_eq!(*status, 503);
            assert_eq!(message, "scheduled maintenance");
        }
        other => panic!("maintenance rejects with 503, got {other:?}"),
    }
    assert!(c.has_time_rules, "the maintenance rule reads the clock");
}

#[test]
fn bandit_example_loads() {
    let c = load("bandit");

    assert_eq!(c.models.len(), 1);
    let m = &c.models[0];
    assert_eq!(m.name, "chat");
    assert_eq!(m.target_names(), ["small", "large"]);
    assert!(m.is_bandit(), "chat learns: {:?}", m.strategy);
    assert!((m.targets[1].price.output_per_1k - 10.0).abs() < 1e-9);
    let reward = m.reward.as_ref().expect("reward settings");
    assert!(reward.status);
    assert_eq!(reward.latency_target_ms, Some(2000));
    assert_eq!(reward.header.as_deref(), Some("x-reward"));

    let feedback = c.feedback.as_ref().expect("feedback settings");
    assert_eq!(feedback.path, "/feedback");
    assert_eq!(feedback.ttl_seconds, 3600);
    let state = c.state_endpoint.as_ref().expect("state endpoint");
    assert_eq!(state.path, "/inference-router/state");
    assert_eq!(state.token.as_deref(), Some("ops-secret-0123456789"));
}

#[test]
fn change_detection_example_loads() {
    let c = load("change-detection");
    let b = c.models[0].bandit().expect("chat learns");
    assert!(b.detects_changes());
    let p = b.change_detection().expect("change detection");
    assert_eq!(
        (p.min_change, p.false_alarm_rate, p.warmup),
        (0.1, 1e-6, 30)
    );
    assert_eq!(b.min_share(), [0.02, 0.02]);
}

#[test]
fn feedback_trust_example_loads() {
    use inference_router_core::config::{Bind, ValueSource};
    use inference_router_core::feedback::DecisionToken;
    let c = load("feedback-trust");
    let fb = c.feedback.as_ref().expect("feedback settings");
    assert!(matches!(
        &fb.bind,
        Some(Bind::Value(ValueSource::Jwt { payload_key, claim, .. }))
            if payload_key == "jwt_payload" && claim == "sub"
    ));
    assert_eq!(fb.evaluators, ["grader@ml-platform"]);
    assert_eq!(fb.budget_per_minute, Some(30));
    // The first key signs.
    let token = DecisionToken {
        model: "chat".into(),
        target: "small".into(),
        expires: 2_000_000_000,
        nonce: 1,
        bound: None,
        key: String::new(),
        context: None,
    };
    let signed = fb.keys.sign("p", &token, None);
    assert!(signed.contains("~2026-12~"), "{signed}");
    assert_eq!(
        fb.keys.verify("p", &signed, 1).map(|t| t.key),
        Ok("2026-12".into())
    );
}

#[test]
fn load_example_loads() {
    let c = load("load");
    let m = &c.models[0];
    assert!(matches!(m.strategy, Strategy::LeastLoaded));
    assert!(m.tracks_load);
    assert_eq!(m.affinity, Some(2));
    assert_eq!(m.targets[0].capacity, Some(64));
    assert_eq!(m.targets[1].endpoints.len(), 3);
    assert_eq!(m.targets[1].endpoint_capacity, Some(8));
    assert!(m.targets[1].observe_endpoints);
    assert_eq!(c.load.endpoint_header, "x-gateway-destination-endpoint");
    assert_eq!(c.load.stale_ms, 10_000);
}

#[test]
fn contextual_example_loads() {
    use inference_router_core::bandit::{Algorithm, Feature};
    let c = load("contextual");
    let m = &c.models[0];
    let b = m.bandit().expect("chat learns");
    assert_eq!(
        b.algorithm(),
        Algorithm::LinUcb {
            alpha: 0.5,
            ridge: 1.0
        }
    );
    assert_eq!(
        b.features(),
        [Feature::PromptTokens, Feature::MaxTokens, Feature::Tools]
    );
    assert_eq!(b.dims(), 4);
    assert!(b.decays_per_update());
    assert_eq!(b.min_share(), [0.02, 0.02]);
    assert!(m.reward.is_some() && c.feedback.is_some());
}
