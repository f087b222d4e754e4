//! The merged configuration: the static configuration's JSON with the registry's targets put in
//! place of the configured ones (a model the registry lists), or added as a new weighted model
//! (a model it lists that is not configured). References to target names that are gone are
//! adjusted in one way only, dropping them: `default_target` (the first target serves instead),
//! `fallback` entries and per-target `strategy.min_share` entries. Everything else is checked
//! by the normal [`config::parse`]: a rule, shadow or tenant allow-list that names a target the
//! registry removed makes the merged configuration fail, and it is refused.

use crate::vecmap::{VecMap, VecSet};

use crate::json::{json, Map, Value};

use crate::config::{self, ConfigError};

/// Model name → its targets, each a JSON object of a configured target's fields.
pub type Targets = VecMap<String, Vec<Value>>;

/// Merges `targets` into the static configuration; the merged document, which `config::parse`
/// accepts (else its error).
pub fn merged(static_bytes: &[u8], targets: &Targets) -> Result<Vec<u8>, ConfigError> {
    let mut doc = crate::json::read::from_slice(static_bytes).map_err(|e| ConfigError {
        field: String::new(),
        reason: format!("the static configuration is not JSON: {e}"),
    })?;
    let Some(models) = doc.get_mut("models").and_then(Value::as_array_mut) else {
        return Err(ConfigError {
            field: "models".into(),
            reason: "the static configuration has no models array".into(),
        });
    };
    for (name, ts) in targets {
        let names: VecSet<&str> = ts
            .iter()
            .filter_map(|t| t.get("name").and_then(Value::as_str))
            .collect();
        let found = models
            .iter_mut()
            .filter_map(Value::as_object_mut)
            .find(|m| m.get("name").and_then(Value::as_str) == Some(name.as_str()));
        match found {
            Some(m) => {
                m.insert("targets".into(), Value::Array(ts.clone()));
                adjust_references(m, &names);
            }
            None => models.push(json!({ "name": name, "targets": ts })),
        }
    }
    let bytes = crate::json::write::to_vec(&doc);
    config::parse(&bytes)?;
    Ok(bytes)
}

/// Drops `default_target`, `fallback` entries and `min_share` entries naming a target not in
/// `names`.
fn adjust_references(model: &mut Map<String, Value>, names: &VecSet<&str>) {
    let gone = |v: &Value| v.as_str().is_some_and(|n| !names.contains(n));
    if model.get("default_target").is_some_and(gone) {
        model.remove("default_target");
    }
    if let Some(list) = model.get_mut("fallback").and_then(Value::as_array_mut) {
        list.retain(|v| !gone(v));
    }
    if let Some(shares) = model
        .get_mut("strategy")
        .and_then(|s| s.get_mut("min_share"))
        .and_then(Value::as_object_mut)
    {
        shares.retain(|k, _| names.contains(k.as_str()));
    }
}

/// Checks registry targets as the configuration checks a model's targets: `model_field` names
/// the model and `targets_field` the list in the registry's terms (errors are renamed to them).
pub fn check_targets(
    model_field: &str,
    targets_field: &str,
    name: &str,
    targets: &[Value],
) -> Result<(), ConfigError> {
    // A bandit strategy: weights are optional here (whether the model needs them is the merged
    // configuration's business).
    let probe = json!({ "models": [ { "name": name, "targets": targets,
                                      "strategy": { "type": "thompson" } } ] });
    let bytes = crate::json::write::to_vec(&probe);
    match config::parse(&bytes) {
        Ok(_) => Ok(()),
        Err(e) => {
            let field = if let Some(rest) = e.field.strip_prefix("models[0].targets") {
                format!("{targets_field}{rest}")
            } else if let Some(rest) = e.field.strip_prefix("models[0]") {
                format!("{model_field}{rest}")
            } else {
                model_field.to_string()
            };
            Err(ConfigError {
                field,
                reason: e.reason,
            })
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn static_config() -> Value {
        json!({
            "models": [
                { "name": "fraud",
                  "targets": [ { "name": "v1", "cluster": "fraud-v1", "weight": 1 },
                               { "name": "v2", "cluster": "fraud-v2", "weight": 1 } ],
                  "default_target": "v2", "fallback": ["v2", "v1"] },
                { "name": "chat",
                  "targets": [ { "name": "a", "cluster": "llm-a" }, { "name": "b", "cluster": "llm-b" } ],
                  "strategy": { "type": "thompson", "min_share": { "a": 0.1, "b": 0.1 } } }
            ]
        })
    }

    fn merge(cfg: &Value, targets: Value) -> Result<Value, ConfigError> {
        let targets: Targets = serde_json::from_value(targets.into()).unwrap();
        merged(cfg.to_string().as_bytes(), &targets).map(|b| serde_json::from_slice(&b).unwrap())
    }

    #[test]
    fn listed_models_are_replaced_others_kept_unknown_added() {
        let m = merge(
            &static_config(),
            json!({
                "fraud": [ { "name": "v3", "cluster": "fraud-v3", "weight": 5 } ],
                "vision": [ { "name": "x", "cluster": "vis-x", "weight": 1 } ]
            }),
        )
        .unwrap();
        assert_eq!(
            m["models"][0]["targets"],
            json!([ { "name": "v3", "cluster": "fraud-v3", "weight": 5 } ])
        );
        // Names that are gone are dropped from default_target and fallback.
        assert!(m["models"][0].get("default_target").is_none());
        assert_eq!(m["models"][0]["fallback"], json!([]));
        assert_eq!(m["models"][1], static_config()["models"][1]);
        assert_eq!(
            m["models"][2],
            json!({ "name": "vision", "targets": [ { "name": "x", "cluster": "vis-x", "weight": 1 } ] })
        );
    }

    #[test]
    fn surviving_references_are_kept() {
        let m = merge(
            &static_config(),
            json!({
                "fraud": [ { "name": "v1", "cluster": "fraud-v1b", "weight": 1 },
                           { "name": "v9", "cluster": "fraud-v9", "weight": 1 } ],
                "chat": [ { "name": "b", "cluster": "llm-b" }, { "name": "c", "cluster": "llm-c" } ]
            }),
        )
        .unwrap();
        assert!(m["models"][0].get("default_target").is_none());
        assert_eq!(m["models"][0]["fallback"], json!(["v1"]));
        assert_eq!(m["models"][1]["strategy"]["min_share"], json!({ "b": 0.1 }));
    }

    #[test]
    fn a_merged_configuration_that_does_not_compile_is_refused_with_its_field() {
        let mut cfg = static_config();
        cfg["rules"] = json!([ { "name": "pin", "then": { "model": "fraud", "target": "v1" } } ]);
        let e = merge(
            &cfg,
            json!({ "fraud": [ { "name": "v3", "cluster": "fraud-v3", "weight": 1 } ] }),
        )
        .unwrap_err();
        assert_eq!(e.field, "rules[0].then.target", "{e}");
        // A weighted model needs a weight on every target.
        let e = merge(
            &static_config(),
            json!({ "fraud": [ { "name": "v3", "cluster": "fraud-v3" } ] }),
        )
        .unwrap_err();
        assert_eq!(e.field, "models[0].targets[0].weight", "{e}");
        // A model added by the registry is weighted.
        let e = merge(
            &static_config(),
            json!({ "new": [ { "name": "x", "cluster": "c" } ] }),
        )
        .unwrap_err();
        assert_eq!(e.field, "models[2].targets[0].weight", "{e}");
    }

    #[test]
    fn target_checks_are_renamed_to_the_registry_fields() {
        let ok = [json!({ "name": "v1", "cluster": "c", "capabilities": ["tools"] })];
        assert!(check_targets("models[3]", "models[3].versions", "m", &ok).is_ok());
        let bad = [
            json!({ "name": "v1", "cluster": "c" }),
            json!({ "name": "v2", "cluster": "c", "capabilities": ["fly"] }),
        ];
        let e = check_targets("models[3]", "models[3].versions", "m", &bad).unwrap_err();
        assert_eq!(e.field, "models[3].versions[1].capabilities[0]");
        let e = check_targets("models[3]", "models[3].versions", "bad name", &ok).unwrap_err();
        assert_eq!(e.field, "models[3].name");
        let e = check_targets(
            "m",
            "m.versions",
            "m",
            &[json!({ "name": "v", "cluster": "c", "colour": 1 })],
        )
        .unwrap_err();
        assert!(e.field.starts_with("m.versions[0]"), "{e}");
    }
}
