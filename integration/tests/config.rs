//! An invalid plugin configuration makes Envoy refuse to start, and the log names the field.
//! Real Envoy, `--concurrency 2`.

mod common;

use common::*;
use integration::{Envoy, EnvoyConfig, Upstreams};
use serde_json::{json, Value};

/// Starts Envoy with `config` on `template`, expects it to refuse, and checks the log line
/// `inference-router: invalid configuration: <field>: <reason>` names one of `fields`.
#[track_caller]
fn assert_refused(upstreams: &Upstreams, template: &str, config: &str, fields: &[&str]) {
    let failure = Envoy::start_expect_failure(&EnvoyConfig::new(template, config), upstreams);
    assert!(
        !failure.status.success(),
        "Envoy exited successfully with config {config}"
    );
    let line = failure
        .log
        .lines()
        .find(|l| l.contains("inference-router: invalid configuration:"))
        .unwrap_or_else(|| {
            panic!(
                "no `inference-router: invalid configuration:` line for config {config}\n{}",
                failure.log
            )
        });
    assert!(
        line.contains("critical"),
        "the error is logged at critical level: {line}"
    );
    assert!(
        fields.is_empty() || fields.iter().any(|f| line.contains(f)),
        "the log line should name one of {fields:?}: {line}\nconfig: {config}"
    );
}

fn with(mutate: impl FnOnce(&mut Value)) -> String {
    let mut v = deterministic_config();
    mutate(&mut v);
    v.to_string()
}

#[test]
fn invalid_plugin_config_refuses_to_start_naming_the_field() {
    let up = Upstreams::start_default();
    let cases: Vec<(String, &[&str])> = vec![
        ("{ this is not json".to_string(), &[]),
        // A typo is an unknown field, not silently ignored.
        (with(|v| v["modles"] = json!([])), &["modles"]),
        (
            with(|v| v["models"][0]["targets"][0]["wieght"] = json!(1)),
            &["wieght"],
        ),
        (
            with(|v| v["default_model"] = json!("nonexistent")),
            &["default_model"],
        ),
        // chat's only weighted target set to 0: no target can take unpinned traffic.
        (
            with(|v| v["models"][1]["targets"][0]["weight"] = json!(0)),
            &["weight", "targets"],
        ),
        (
            with(|v| v["route_header"] = json!("x-inference-target")),
            &["route_header", "target_header"],
        ),
        (
            with(|v| v["model_header"] = json!("X-Model")),
            &["model_header"],
        ),
        (
            with(|v| v["body"] = json!({"max_bytes": 0})),
            &["max_bytes"],
        ),
        (
            with(|v| v["models"][2]["name"] = json!("chat")),
            &["models[2].name", "models[2]", "duplicate", "name"],
        ),
        (
            with(
                |v| v["rules"] = json!([{ "name": "r", "when": {}, "then": { "model": "chat", "target": "nope" } }]),
            ),
            &["target"],
        ),
    ];
    for (config, field) in &cases {
        assert_refused(&up, "demo.yaml", config, field);
    }
}

#[test]
fn echo_reply_is_refused_in_metadata_mode() {
    let up = Upstreams::start_default();
    let config = with(|v| {
        v["body"] = json!({ "source": "metadata" });
        v["rules"] = json!([{ "name": "no-child", "when": {}, "then": { "reply": { "status": 200, "echo": true } } }]);
    });
    assert_refused(&up, "metadata-mode.yaml", &config, &["echo"]);
}

#[test]
fn validate_mode_checks_the_plugin_configuration_too() {
    // `envoy --mode validate` loads the module and runs its on_configure: `make validate`
    // catches a bad plugin configuration, not only bad Envoy YAML.
    let ports = Upstreams::start_default().ports();
    let (status, out) =
        integration::envoy::validate(&EnvoyConfig::demo(&deterministic_config()), &ports);
    assert!(
        status.success(),
        "a valid configuration failed validation:\n{out}"
    );
    let (status, out) = integration::envoy::validate(
        &EnvoyConfig::new("demo.yaml", with(|v| v["modles"] = json!([]))),
        &ports,
    );
    assert!(
        !status.success(),
        "validation accepted an invalid plugin configuration"
    );
    assert!(
        out.contains("inference-router: invalid configuration: modles"),
        "{out}"
    );
}
