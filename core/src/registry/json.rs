//! The plain JSON registry document:
//!
//! ```json
//! {"models": [{"name": "fraud", "versions": [
//!    {"name": "v3", "cluster": "fraud-v3", "weight": 90, "health": "up"}]}]}
//! ```
//!
//! Each version is a target (a configured target's fields) plus `health`: `up` (the default) or
//! `down`; down versions are left out. The whole document is validated before anything of it
//! is used; a refusal names the document's field (`models[0].versions[1].weight`).

use crate::json::{Map, Value};

use super::merge::{check_targets, Targets};
use crate::config::read::{self, read_struct};
use crate::config::ConfigError;
use crate::quote::quoted;
use crate::vecmap::VecSet;

/// Largest document read (bigger answers fail the poll unread).
pub const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;

struct Document {
    models: Vec<DocModel>,
}

read_struct!(Document { models: req });

struct DocModel {
    name: String,
    versions: Vec<Version>,
}

read_struct!(DocModel {
    name: req,
    versions: req,
});

/// A version's fields as the document gives them (any object; checked as a target later).
struct Version(Map<String, Value>);

impl read::FromJson for Version {
    fn from_json(v: &Value, at: &read::At<'_>) -> Result<Self, ConfigError> {
        match v {
            Value::Object(fields) => Ok(Version(fields.clone())),
            _ => Err(read::invalid_type(v, at, "a map")),
        }
    }
}

fn err<T>(field: impl Into<String>, reason: impl Into<String>) -> Result<T, ConfigError> {
    Err(ConfigError {
        field: field.into(),
        reason: reason.into(),
    })
}

/// The targets a document gives, by model; its first error otherwise.
pub fn parse(bytes: &[u8]) -> Result<Targets, ConfigError> {
    let doc: Document = read::document(bytes)?;
    let mut names = VecSet::new();
    let mut out = Targets::new();
    for (mi, m) in doc.models.into_iter().enumerate() {
        let mf = format!("models[{mi}]");
        if !names.insert(m.name.clone()) {
            return err(
                format!("{mf}.name"),
                format!("{} is listed by an earlier model", quoted(&m.name)),
            );
        }
        let vf = format!("{mf}.versions");
        if m.versions.is_empty() {
            return err(&vf, "at least one version is required");
        }
        let mut all = Vec::with_capacity(m.versions.len());
        let mut up = Vec::with_capacity(m.versions.len());
        for (vi, Version(mut v)) in m.versions.into_iter().enumerate() {
            let is_up = match v.remove("health") {
                None => true,
                Some(Value::String(h)) if h == "up" => true,
                Some(Value::String(h)) if h == "down" => false,
                Some(other) => {
                    return err(
                        format!("{vf}[{vi}].health"),
                        format!("must be \"up\" or \"down\", got {other}"),
                    )
                }
            };
            let target = Value::Object(v);
            if is_up {
                up.push(target.clone());
            }
            all.push(target);
        }
        // Down versions are checked too: a document is valid as a whole or not at all.
        check_targets(&mf, &vf, &m.name, &all)?;
        if up.is_empty() {
            return err(vf, "no version is up");
        }
        out.insert(m.name, up);
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use crate::json::json;

    use super::*;

    fn field_of(doc: Value) -> String {
        let e = parse(doc.to_string().as_bytes()).unwrap_err();
        assert!(!e.reason.is_empty());
        e.field
    }

    #[test]
    fn the_documented_example_gives_its_up_versions() {
        let doc = json!({ "models": [ { "name": "fraud", "versions": [
            { "name": "v3", "cluster": "fraud-v3", "weight": 90, "capabilities": ["tools"],
              "region": "eu", "tags": [], "max_context_tokens": 8192, "health": "up" },
            { "name": "v4", "cluster": "fraud-v4", "weight": 10, "health": "down" },
            { "name": "v5", "cluster": "fraud-v5", "weight": 10 } ] } ] });
        let t = parse(doc.to_string().as_bytes()).unwrap();
        let names: Vec<&str> = t["fraud"]
            .iter()
            .map(|v| v["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["v3", "v5"]);
        assert!(t["fraud"][0].get("health").is_none());
        assert_eq!(t["fraud"][0]["region"], "eu");
        assert_eq!(parse(br#"{"models": []}"#).unwrap(), Targets::new());
    }

    #[test]
    fn a_refused_document_names_the_field() {
        let v = |extra: Value| {
            let mut t = json!({ "name": "v1", "cluster": "c", "weight": 1 });
            for (k, x) in extra.as_object().unwrap() {
                t[k] = x.clone();
            }
            json!({ "models": [ { "name": "m", "versions": [ { "name": "ok", "cluster": "c" }, t ] } ] })
        };
        assert_eq!(field_of(json!({})), "models");
        assert_eq!(field_of(json!({ "models": {} })), "models");
        assert_eq!(field_of(json!({ "models": [], "x": 1 })), "x");
        assert_eq!(
            field_of(json!({ "models": [ { "name": "m" } ] })),
            "models[0].versions"
        );
        assert_eq!(
            field_of(json!({ "models": [ { "name": "m", "versions": [] } ] })),
            "models[0].versions"
        );
        assert_eq!(
            field_of(
                json!({ "models": [ { "name": "m", "versions": [ { "name": "a", "cluster": "c", "health": "down" } ] } ] })
            ),
            "models[0].versions"
        );
        assert_eq!(
            field_of(
                json!({ "models": [ { "name": "m", "versions": [ { "name": "a", "cluster": "c" } ] }, { "name": "m", "versions": [ { "name": "a", "cluster": "c" } ] } ] })
            ),
            "models[1].name"
        );
        assert_eq!(
            field_of(
                json!({ "models": [ { "name": "bad name", "versions": [ { "name": "a", "cluster": "c" } ] } ] })
            ),
            "models[0].name"
        );
        assert_eq!(
            field_of(v(json!({ "health": "sick" }))),
            "models[0].versions[1].health"
        );
        assert_eq!(
            field_of(v(json!({ "weight": -1 }))),
            "models[0].versions[1].weight"
        );
        assert_eq!(
            field_of(v(json!({ "weight": 1_000_001 }))),
            "models[0].versions[1].weight"
        );
        assert_eq!(
            field_of(v(json!({ "cluster": "" }))),
            "models[0].versions[1].cluster"
        );
        assert_eq!(
            field_of(v(json!({ "name": "ok" }))),
            "models[0].versions[1].name"
        );
        assert_eq!(
            field_of(v(json!({ "capabilities": ["telepathy"] }))),
            "models[0].versions[1].capabilities[0]"
        );
        assert_eq!(
            field_of(v(json!({ "max_context_tokens": 0 }))),
            "models[0].versions[1].max_context_tokens"
        );
        assert_eq!(
            field_of(v(json!({ "region": "" }))),
            "models[0].versions[1].region"
        );
        assert!(field_of(v(json!({ "colour": "red" }))).starts_with("models[0].versions[1]"));
        let e = parse(b"not json").unwrap_err();
        assert!(!e.reason.is_empty());
    }
}
