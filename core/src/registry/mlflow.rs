//! The MLflow Model Registry REST API: one `GET <prefix>/api/2.0/mlflow/registered-models/alias`
//! per mapped alias and poll, and what its answers mean.
//!
//! - 200 `{"model_version": {"version": "3", "tags": [{"key": "cluster", "value": …}], …}}`:
//!   the alias resolves to that version, which becomes a target;
//! - no such alias: MLflow 3 answers 400 `INVALID_PARAMETER_VALUE` "Registered model alias …
//!   not found." (older servers and other stores: 404 `RESOURCE_DOES_NOT_EXIST`), and no such
//!   registered model is 404 `RESOURCE_DOES_NOT_EXIST`: the alias is left out;
//! - anything else (another status, Envoy's own timeout or connection failure, a body that is
//!   not that JSON) fails the whole poll.

use crate::json::{json, Value};

use super::merge::{check_targets, Targets};
use super::settings::{fill, MlflowModel};
use crate::callout::{classify, Answer, CalloutAnswer};
use crate::config::ConfigError;
use crate::json::read::{from_text, text_struct};
use crate::quote::quoted;

/// Largest alias answer read (a model version with its tags is a few KiB).
pub const MAX_ANSWER_BYTES: usize = 256 * 1024;

/// What an alias resolved to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    pub version: String,
    /// The version's tags, in MLflow's order.
    pub tags: Vec<(String, String)>,
}

impl Version {
    fn tag(&self, key: &str) -> Option<&str> {
        self.tags
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// One alias lookup of a poll: `models[model].aliases[alias]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lookup {
    pub model: usize,
    pub alias: usize,
    pub path: String,
}

/// The lookups of one poll, in configuration order.
pub fn lookups(prefix: &str, models: &[MlflowModel]) -> Vec<Lookup> {
    let mut out = Vec::new();
    for (mi, m) in models.iter().enumerate() {
        for (ai, a) in m.aliases.iter().enumerate() {
            out.push(Lookup {
                model: mi,
                alias: ai,
                path: format!(
                    "{prefix}/api/2.0/mlflow/registered-models/alias?name={}&alias={}",
                    encode(&m.registered_model),
                    encode(&a.alias)
                ),
            });
        }
    }
    out
}

/// Percent-encodes a query value (everything but RFC 3986 unreserved characters).
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg_attr(test, derive(serde::Deserialize, Debug, PartialEq))]
struct AliasAnswer {
    model_version: ModelVersion,
}

#[cfg_attr(test, derive(serde::Deserialize, Debug, PartialEq))]
struct ModelVersion {
    version: Value,
    #[cfg_attr(test, serde(default))]
    tags: Vec<Tag>,
}

#[derive(Default)]
#[cfg_attr(test, derive(serde::Deserialize, Debug, PartialEq))]
struct Tag {
    key: String,
    #[cfg_attr(test, serde(default))]
    value: String,
}

#[cfg_attr(test, derive(serde::Deserialize, Debug, PartialEq))]
struct ErrorAnswer {
    error_code: String,
    #[cfg_attr(test, serde(default))]
    message: String,
}

// Read by hand, accepting what serde's derive did.
text_struct!(AliasAnswer { model_version });
text_struct!(ModelVersion { version, tags default });
text_struct!(Tag { key, value default });
text_struct!(ErrorAnswer { error_code, message default });

impl ErrorAnswer {
    /// MLflow's way of saying the alias (or the registered model) does not exist.
    fn not_found(&self) -> bool {
        self.error_code == "RESOURCE_DOES_NOT_EXIST"
            || (self.error_code == "INVALID_PARAMETER_VALUE"
                && self.message.starts_with("Registered model alias ")
                && self.message.ends_with(" not found."))
    }
}

/// An alias answer: `Ok(Some)` resolved, `Ok(None)` no such alias, `Err` a failed poll (why).
pub fn read_answer(answer: &Answer) -> Result<Option<Version>, String> {
    match classify(answer.status.as_deref(), &answer.body) {
        CalloutAnswer::Failed(why) => Err(format!("MLflow did not answer: {why}")),
        CalloutAnswer::Status(200) => {
            let a: AliasAnswer = from_text(&answer.body)
                .map_err(|e| format!("MLflow's answer is not a model version: {e}"))?;
            let version = match a.model_version.version {
                Value::String(s) if !s.is_empty() => s,
                Value::Number(n) => n.to_string(),
                other => return Err(format!("MLflow's model version has no version: {other}")),
            };
            let tags = a
                .model_version
                .tags
                .into_iter()
                .map(|t| (t.key, t.value))
                .collect();
            Ok(Some(Version { version, tags }))
        }
        CalloutAnswer::Status(s @ (400 | 404)) => match from_text::<ErrorAnswer>(&answer.body) {
            Ok(e) if e.not_found() => Ok(None),
            Ok(e) => Err(format!(
                "MLflow answered {s} {}: {}",
                e.error_code, e.message
            )),
            Err(_) => Err(format!(
                "MLflow answered {s} without an MLflow error (wrong path or prefix?)"
            )),
        },
        CalloutAnswer::Status(s) => {
            let code = from_text::<ErrorAnswer>(&answer.body)
                .map(|e| e.error_code)
                .unwrap_or_default();
            Err(format!("MLflow answered {s} {code}").trim_end().to_string())
        }
    }
}

/// The targets of a poll whose every alias was answered (`resolved[i]` answers lookup `i` of
/// [`lookups`]), and the mapped models none of whose aliases resolved (they keep their
/// configured targets). A version that does not make a valid target refuses the whole poll.
pub fn targets(
    models: &[MlflowModel],
    resolved: &[Option<Version>],
) -> Result<(Targets, Vec<String>), ConfigError> {
    let mut out = Targets::new();
    let mut unresolved = Vec::new();
    let mut answers = resolved.iter();
    for (mi, m) in models.iter().enumerate() {
        let mut ts = Vec::new();
        for (ai, a) in m.aliases.iter().enumerate() {
            let Some(Some(v)) = answers.next() else {
                continue;
            };
            let cluster = match v.tag("cluster") {
                Some(c) => c.to_string(),
                None => fill(&m.cluster, &v.version, &a.alias),
            };
            let mut fields = crate::json::Map::new();
            fields.insert("name".into(), json!(a.target));
            fields.insert("cluster".into(), json!(cluster));
            fields.insert("weight".into(), json!(a.weight));
            if let Some(caps) = v.tag("capabilities") {
                let caps: Vec<&str> = caps
                    .split(',')
                    .map(str::trim)
                    .filter(|c| !c.is_empty())
                    .collect();
                fields.insert("capabilities".into(), json!(caps));
            }
            if let Some(region) = v.tag("region") {
                fields.insert("region".into(), json!(region));
            }
            let t = Value::Object(fields);
            check_targets("", "", &m.model, std::slice::from_ref(&t)).map_err(|e| {
                let sub = e.field.strip_prefix("[0]").unwrap_or(&e.field);
                ConfigError {
                    field: format!("registry.mlflow.models[{mi}].aliases[{ai}]{sub}"),
                    reason: format!(
                        "version {} of {} (alias {}): {}",
                        v.version,
                        quoted(&m.registered_model),
                        quoted(&a.alias),
                        e.reason
                    ),
                }
            })?;
            ts.push(t);
        }
        if ts.is_empty() {
            unresolved.push(m.model.clone());
        } else {
            out.insert(m.model.clone(), ts);
        }
    }
    Ok((out, unresolved))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::registry::settings::Alias;

    fn answer(status: &str, body: &str) -> Answer {
        Answer {
            status: Some(status.into()),
            content_type: Some("application/json".into()),
            body: body.as_bytes().to_vec(),
        }
    }

    fn model() -> MlflowModel {
        MlflowModel {
            model: "fraud".into(),
            registered_model: "fraud detector".into(),
            cluster: "fraud-v{version}".into(),
            aliases: vec![
                Alias {
                    alias: "champion".into(),
                    target: "champion".into(),
                    weight: 90,
                },
                Alias {
                    alias: "challenger".into(),
                    target: "next".into(),
                    weight: 10,
                },
            ],
        }
    }

    #[test]
    fn lookups_are_encoded() {
        let l = lookups("/mlflow", &[model()]);
        assert_eq!(l.len(), 2);
        assert_eq!(
            l[0].path,
            "/mlflow/api/2.0/mlflow/registered-models/alias?name=fraud%20detector&alias=champion"
        );
        assert_eq!((l[1].model, l[1].alias), (0, 1));
        assert_eq!(encode("a/b&c=d"), "a%2Fb%26c%3Dd");
    }

    #[test]
    fn answers() {
        let v = read_answer(&answer("200", MLFLOW_VERSION_ANSWER))
            .unwrap()
            .unwrap();
        assert_eq!(v.version, "2");
        assert_eq!(v.tag("cluster"), Some("fraud-canary"));
        assert_eq!(read_answer(&answer("404", MLFLOW_NO_MODEL)).unwrap(), None);
        assert_eq!(read_answer(&answer("400", MLFLOW_NO_ALIAS)).unwrap(), None);
        assert_eq!(
            read_answer(&answer("404", MLFLOW_NO_ALIAS_404)).unwrap(),
            None
        );
        // A version without tags has no "tags" field.
        let untagged = r#"{"model_version": {"name": "fd", "version": "1", "status": "READY", "run_link": ""}}"#;
        assert_eq!(
            read_answer(&answer("200", untagged)).unwrap().unwrap().tags,
            []
        );
        assert!(read_answer(&answer("403", MLFLOW_BAD_HOST)).is_err());
        for (status, body) in [
            (
                "500",
                r#"{"error_code": "INTERNAL_ERROR", "message": "boom"}"#,
            ),
            (
                "400",
                r#"{"error_code": "INVALID_PARAMETER_VALUE", "message": "x"}"#,
            ),
            (
                "403",
                r#"{"error_code": "PERMISSION_DENIED", "message": "x"}"#,
            ),
            ("404", "<html>not found</html>"),
            ("200", "{}"),
            ("200", "not json"),
            ("200", r#"{"model_version": {"name": "x"}}"#),
            ("504", "upstream request timeout"),
            ("503", "no healthy upstream"),
        ] {
            assert!(
                read_answer(&answer(status, body)).is_err(),
                "{status} {body}"
            );
        }
        let reset = Answer {
            status: None,
            content_type: None,
            body: Vec::new(),
        };
        assert!(read_answer(&reset).is_err());
    }

    #[test]
    fn versions_become_targets() {
        let champion = Version {
            version: "1".into(),
            tags: vec![
                ("capabilities".into(), "tools, json_mode".into()),
                ("region".into(), "eu".into()),
            ],
        };
        let challenger = Version {
            version: "2".into(),
            tags: vec![("cluster".into(), "fraud-canary".into())],
        };
        let (t, unresolved) =
            targets(&[model()], &[Some(champion.clone()), Some(challenger)]).unwrap();
        assert!(unresolved.is_empty());
        assert_eq!(
            t["fraud"],
            vec![
                json!({ "name": "champion", "cluster": "fraud-v1", "weight": 90,
                    "capabilities": ["tools", "json_mode"], "region": "eu" }),
                json!({ "name": "next", "cluster": "fraud-canary", "weight": 10 }),
            ]
        );
        // An alias that does not exist is left out; none resolving keeps the configured targets.
        let (t, _) = targets(&[model()], &[None, Some(champion)]).unwrap();
        assert_eq!(t["fraud"][0]["name"], "next");
        let (t, unresolved) = targets(&[model()], &[None, None]).unwrap();
        assert!(t.is_empty());
        assert_eq!(unresolved, ["fraud"]);
        // A tag that makes an invalid target refuses the poll, naming the alias.
        let bad = Version {
            version: "3".into(),
            tags: vec![("capabilities".into(), "x-ray".into())],
        };
        let e = targets(&[model()], &[Some(bad), None]).unwrap_err();
        assert!(
            e.field.starts_with("registry.mlflow.models[0].aliases[0]"),
            "{e}"
        );
        assert!(e.field.ends_with("].capabilities[0]"), "{e}");
    }

    // Answers of a real `mlflow server` 3.17.2 (SQLite store).
    const MLFLOW_VERSION_ANSWER: &str = r#"{
  "model_version": {
    "name": "fraud-detector",
    "version": "2",
    "creation_timestamp": 1796514816782,
    "last_updated_timestamp": 1796514816782,
    "current_stage": "None",
    "description": "",
    "source": "s3://b/m",
    "run_id": "",
    "status": "READY",
    "tags": [
      {
        "key": "cluster",
        "value": "fraud-canary"
      }
    ],
    "run_link": "",
    "aliases": [
      "champion"
    ]
  }
}"#;
    const MLFLOW_NO_ALIAS: &str = r#"{"error_code": "INVALID_PARAMETER_VALUE", "message": "Registered model alias champion not found.", "sqlstate": "KAM00", "error_class": "INVALID_PARAMETER_VALUE"}"#;
    const MLFLOW_NO_MODEL: &str = r#"{"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "Registered Model with name=nope not found", "sqlstate": "KAM00", "error_class": "RESOURCE_NOT_FOUND"}"#;
    const MLFLOW_NO_ALIAS_404: &str = r#"{"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "Registered model alias champion not found."}"#;
    const MLFLOW_BAD_HOST: &str = "Invalid Host header - possible DNS rebinding attack detected";

    #[test]
    fn read_as_serde_read_it() {
        let mut rng = crate::rng::Rng::seed_from_u64(41);
        for base in [
            r#"{"model_version":{"name":"m","version":"3","tags":[{"key":"weight","value":"5"},{"key":"k"}]}}"#,
            r#"{"model_version":{"version":3}}"#,
            r#"{"model_version":{"version":null,"tags":[]}}"#,
            r#"{"model_version":{}}"#,
            r#"{"model_version":["7",[["k","v"]]]}"#,
            r#"{"error_code":"RESOURCE_DOES_NOT_EXIST","message":"x"}"#,
            r#"{"error_code":"INVALID_PARAMETER_VALUE","message":"Registered model alias a not found."}"#,
            r#"{"error_code":5}"#,
            r#"[]"#,
            r#"{"model_version":{"version":"1","tags":[{"key":"a","value":1}]}}"#,
        ] {
            for _ in 0..200 {
                let doc = crate::json::documents_tests::respelled(base.as_bytes(), &mut rng);
                crate::json::documents_tests::reads_alike::<AliasAnswer>(&doc);
                crate::json::documents_tests::reads_alike::<ErrorAnswer>(&doc);
            }
            crate::json::documents_tests::reads_alike::<AliasAnswer>(base.as_bytes());
        }
    }
}
