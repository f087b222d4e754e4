#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
//! The registry examples of docs/configuration.md (`<!-- example:registry-json -->`,
//! `<!-- example:registry-mlflow -->`) and docs/registry.md (the JSON registry document) load,
//! and mean what the pages say.

use inference_router_core::config::parse;
use inference_router_core::registry::{json, merged, Source};

/// The block right after `<!-- MARKER -->` in `docs/<page>`, whose fence starts with `fence`.
fn block(page: &str, marker: &str, fence: &str) -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/").to_string() + page;
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let marker = format!("<!-- {marker} -->");
    let at = text
        .find(&marker)
        .unwrap_or_else(|| panic!("{path} has no {marker}"));
    let after = text[at + marker.len()..].trim_start();
    let body = after
        .strip_prefix(fence)
        .unwrap_or_else(|| panic!("{marker} is not followed by {fence:?}"));
    let end = body.find("```").expect("an unterminated block");
    body[..end].to_string()
}

#[test]
fn the_json_registry_example_loads() {
    let text = block("configuration.md", "example:registry-json", "```json\n");
    let c = parse(text.as_bytes()).unwrap_or_else(|e| panic!("refused: {e}\n{text}"));
    let r = c.registry.expect("a registry");
    assert_eq!(r.cluster, "model-registry");
    assert_eq!(r.authority, "registry.local");
    assert_eq!((r.poll_ms, r.timeout_ms), (5000, 2000));
    assert_eq!(
        r.source,
        Source::Json {
            path: "/registry.json".into()
        }
    );
}

#[test]
fn the_mlflow_registry_example_loads() {
    let text = block("configuration.md", "example:registry-mlflow", "```json\n");
    let c = parse(text.as_bytes()).unwrap_or_else(|e| panic!("refused: {e}\n{text}"));
    let r = c.registry.expect("a registry");
    assert_eq!(
        (r.cluster.as_str(), r.authority.as_str()),
        ("mlflow", "127.0.0.1")
    );
    let Source::Mlflow { prefix, models } = r.source else {
        panic!("an MLflow source");
    };
    assert_eq!(prefix, "");
    assert_eq!(models.len(), 1);
    let m = &models[0];
    assert_eq!(
        (
            m.model.as_str(),
            m.registered_model.as_str(),
            m.cluster.as_str()
        ),
        ("fraud", "fraud-detector", "fraud-v{version}")
    );
    let aliases: Vec<(&str, &str, u32)> = m
        .aliases
        .iter()
        .map(|a| (a.alias.as_str(), a.target.as_str(), a.weight))
        .collect();
    assert_eq!(
        aliases,
        [
            ("champion", "champion", 90),
            ("challenger", "challenger", 10)
        ]
    );
}

#[test]
fn the_registry_document_example_gives_what_the_guide_says() {
    let doc = block(
        "registry.md",
        "registry-document:example",
        "```json registry-document\n",
    );
    let targets = json::parse(doc.as_bytes()).unwrap_or_else(|e| panic!("refused: {e}\n{doc}"));
    let names = |m: &str| -> Vec<String> {
        targets[m]
            .iter()
            .map(|t| t["name"].as_str().unwrap().to_string())
            .collect()
    };
    // The down version is left out.
    assert_eq!(names("fraud"), ["v3", "v4"]);
    // Merged into the JSON example: fraud's targets replaced, vision added as weighted.
    let cfg = block("configuration.md", "example:registry-json", "```json\n");
    let merged = merged(cfg.as_bytes(), &targets).unwrap();
    let c = parse(&merged).unwrap();
    let fraud = &c.models[c.model_by_name("fraud").unwrap()];
    assert_eq!(fraud.target_names(), ["v3", "v4"]);
    assert_eq!(fraud.total_weight, 100);
    assert_eq!(fraud.targets[0].region.as_deref(), Some("eu"));
    let vision = &c.models[c.model_by_name("vision").unwrap()];
    assert_eq!(vision.target_names(), ["a"]);
    assert!(!vision.is_bandit());
}
