//! The plugin configuration: refused at start with one critical line naming the field (no
//! stream is ever served by a refused configuration); an accepted one defines its metrics,
//! seeds the shared state it owns, and asks for a tick only when it has periodic work.

use crate::driver::*;
use inference_router_core::plugin::VmState;
use inference_router_core::root::Root;
use inference_router_core::testing::TestHost;
use serde_json::{json, Value};

fn with(mutate: impl FnOnce(&mut Value)) -> Value {
    let mut v = deterministic();
    mutate(&mut v);
    v
}

/// Configures a root on a fresh host with `text`: whether it was accepted, the critical lines,
/// and whether the root serves streams afterwards.
fn configure(text: &str) -> (bool, Vec<String>, bool) {
    let host = TestHost::new();
    host.configure(text);
    let mut root = Root::new(VmState::new(7, 11));
    let ok = root.configure(&host);
    (ok, host.critical_logs(), root.stream(3).is_some())
}

#[test]
fn invalid_configurations_are_refused_with_one_critical_line_naming_the_field() {
    const P: &str = "inference-router: invalid configuration: ";
    let cases: Vec<(String, String)> = vec![
        ("{ this is not json".into(), format!("{P}key must be a string at line 1 column 3")),
        // A typo is an unknown field, not silently ignored.
        (with(|v| v["modles"] = json!([])).to_string(), format!("{P}modles: unknown field `modles`, expected one of")),
        (
            with(|v| v["models"][0]["targets"][0]["wieght"] = json!(1)).to_string(),
            format!("{P}models[0].targets[0].wieght: unknown field `wieght`"),
        ),
        (
            with(|v| v["default_model"] = json!("nonexistent")).to_string(),
            format!("{P}default_model: \"nonexistent\" is not the name of a configured model"),
        ),
        (
            with(|v| v["models"][1]["targets"][0]["weight"] = json!(0)).to_string(),
            format!("{P}models[1].targets: at least one target needs a weight above 0"),
        ),
        (
            with(|v| v["route_header"] = json!("x-inference-target")).to_string(),
            format!("{P}target_header: must differ from route_header"),
        ),
        (
            with(|v| v["model_header"] = json!("X-Model")).to_string(),
            format!("{P}model_header: \"X-Model\" must be lowercase (Envoy and HTTP/2 use lowercase header names)"),
        ),
        (
            with(|v| v["body"] = json!({"max_bytes": 0})).to_string(),
            format!("{P}body.max_bytes: must be between 1 and 67108864, got 0"),
        ),
        (
            with(|v| v["models"][2]["name"] = json!("chat")).to_string(),
            format!("{P}models[2].name: \"chat\" is used by an earlier model"),
        ),
        (
            with(|v| {
                v["rules"] = json!([{ "name": "r", "when": {}, "then": { "model": "chat", "target": "nope" } }])
            })
            .to_string(),
            format!("{P}rules[0].then.target: \"nope\" is not a target of model \"chat\""),
        ),
        // The echo reply needs the raw body, which metadata mode does not give.
        (
            with(|v| {
                v["body"] = json!({ "source": "metadata" });
                v["rules"] = json!([{ "name": "no-child", "when": {},
                                      "then": { "reply": { "status": 200, "echo": true } } }]);
            })
            .to_string(),
            format!("{P}rules[0].then.reply.echo: needs the raw body, which body.source \"metadata\" does not give; use \"buffer\""),
        ),
    ];
    for (config, line) in &cases {
        let (ok, critical, serves) = configure(config);
        assert!(!ok, "accepted: {config}");
        assert_eq!(critical.len(), 1, "{config}: {critical:?}");
        assert!(
            critical[0].starts_with(line.as_str()),
            "{config}:\n  got  {}\n  want {line}…",
            critical[0]
        );
        assert!(!serves, "a refused configuration serves streams: {config}");
    }
    // An empty configuration is not a configuration either.
    let (ok, critical, _) = configure("");
    assert!(!ok);
    assert_eq!(critical.len(), 1, "{critical:?}");
    assert!(critical[0].starts_with(P), "{critical:?}");
}

#[test]
fn an_accepted_configuration_defines_its_metrics_and_asks_for_a_tick_only_with_periodic_work() {
    let vm = Vm::start(&deterministic());
    assert!(vm.host.critical_logs().is_empty());
    // Nothing periodic: no tick, no shared data.
    assert_eq!(vm.host.tick_period_ms(), None);
    assert!(
        vm.host.shared_keys().is_empty(),
        "{:?}",
        vm.host.shared_keys()
    );
    // Every counter exists (at 0) before the first request, for every model × target and reason.
    for name in [
        "requests.chat.small",
        "requests.chat.large",
        "requests.iris.v2",
        "decisions.weighted",
        "decisions.path_version",
        "decisions.fan_out",
        "body.parse_failures",
        "local_replies.echo",
        "feedback.rejected.replayed",
        "router.failures",
        "retry.recovered",
        "shadow.dropped",
    ] {
        assert_eq!(vm.counter(name), 0, "{name}");
    }
    // Per-model shadow metrics exist only for shadowed models, gauges only for bandits.
    assert_eq!(vm.host.metric("inference_router.shadow.chat.2xx"), None);
    assert_eq!(
        vm.host.metric("inference_router.bandit.chat.small.pulls"),
        None
    );

    // A learning configuration: the 200 ms tick, the bandit state seeded at the prior, and the
    // 64 shards of each spent-id bucket tokens issued within the hour land in (hour buckets of
    // expiry: now + ttl's, and the next).
    let vm = Vm::start(&json!({
        "models": [ bandit_model("sentiment", sentiment_targets(), json!({ "type": "thompson" }), None) ],
        "feedback": feedback_section(3600),
    }));
    assert_eq!(vm.host.tick_period_ms(), Some(200));
    let now = 1_800_000_000u64;
    let mut want: Vec<String> = ((now + 3600) / 3600..=(now + 3600) / 3600 + 1)
        .flat_map(|b| {
            (0..64).map(move |s| format!("inference-router/v1/inference-router/spent/{b}/{s}"))
        })
        .collect();
    want.push(state_key("sentiment"));
    want.sort();
    assert_eq!(vm.host.shared_keys(), want);
    let state = inference_router_core::bandit::decode(
        &vm.host.shared_value(&state_key("sentiment")).unwrap(),
    )
    .unwrap();
    assert_eq!(state.updates, 0);
    let arms: Vec<(&str, f64, f64, f64)> = state
        .arms
        .iter()
        .map(|a| (a.name.as_str(), a.pulls, a.alpha, a.beta))
        .collect();
    assert_eq!(arms, [("v1", 0.0, 1.0, 1.0), ("v2", 0.0, 1.0, 1.0)]);
    assert_eq!(
        vm.host
            .metric("inference_router.bandit.sentiment.v2.alpha_milli"),
        Some(0)
    );
}

#[test]
fn the_plugin_name_is_the_identity_of_the_learned_state() {
    let host = TestHost::new();
    host.set_property(&["plugin_name"], b"edge-router");
    host.configure(
        &json!({ "models": [ bandit_model("chat", json!([{ "name": "a", "cluster": "llm-small" }]),
                                          json!({ "type": "ucb1" }), Some(json!({}))) ] })
        .to_string(),
    );
    let mut root = Root::new(VmState::new(7, 11));
    assert!(root.configure(&host));
    assert_eq!(
        host.shared_keys(),
        ["inference-router/v1/edge-router/state/chat"]
    );
}

#[test]
fn metric_names_replace_dots_and_colons_and_colliding_names_are_refused() {
    let mut vm = Vm::start(&json!({
        "models": [ { "name": "gpt-4.1:mini", "targets": [ { "name": "2024.06", "cluster": "c", "weight": 1 } ] } ]
    }));
    vm.send(&get("/v2/models/gpt-4.1:mini/ready"), b"");
    assert_eq!(vm.routed_cluster().as_deref(), Some("c"));
    assert_eq!(vm.counter("requests.gpt-4_1_mini.2024_06"), 1);
    let critical = Vm::try_start(&json!({
        "models": [ { "name": "gpt.4", "targets": [ { "name": "a", "cluster": "c", "weight": 1 } ] },
                    { "name": "gpt:4", "targets": [ { "name": "a", "cluster": "c", "weight": 1 } ] } ]
    }))
    .err()
    .expect("refused");
    assert_eq!(
        critical,
        ["inference-router: invalid configuration: models[1].name: \"gpt:4\" gives the same metric name as an earlier model"]
    );
}
