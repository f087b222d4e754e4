//! The `registry` section as users write it, and its validation into [`RegistrySettings`].
//! Every error names the field (`registry.poll_ms`) and why.

use crate::vecmap::VecSet;

use crate::json::Value;

use crate::config::read::{read_struct, unit_variant, At, FromJson};
use crate::config::{ConfigError, Model};
use crate::quote::quoted;
use crate::substr;

/// Shortest and longest poll period.
pub const MIN_POLL_MS: u32 = 200;
pub const MAX_POLL_MS: u32 = 3_600_000;
pub const DEFAULT_POLL_MS: u32 = 5000;
pub const DEFAULT_TIMEOUT_MS: u32 = 2000;
/// Longest request to the registry.
pub const MAX_TIMEOUT_MS: u32 = 60_000;
/// Largest weight a registry target may carry (the configured targets' limit).
pub const MAX_WEIGHT: u32 = 1_000_000;
/// Aliases polled per poll at most (one callout each).
pub const MAX_ALIASES: usize = 64;

#[derive(Debug)]
pub struct RegistryDto {
    pub source: SourceKind,
    pub cluster: String,
    pub authority: Option<String>,
    pub path: Option<String>,
    pub poll_ms: u32,
    pub timeout_ms: Option<u32>,
    pub mlflow: Option<MlflowDto>,
}

read_struct!(RegistryDto {
    source: req,
    cluster: req,
    authority: or_default,
    path: or_default,
    poll_ms: or(default_poll_ms),
    timeout_ms: or_default,
    mlflow: or_default,
});

fn default_poll_ms() -> u32 {
    DEFAULT_POLL_MS
}

/// (`Default` is only the stand-in while a refused `registry` section is read.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SourceKind {
    #[default]
    Json,
    Mlflow,
}

impl FromJson for SourceKind {
    fn from_json(v: &Value, at: &At<'_>) -> Result<Self, ConfigError> {
        Ok(match unit_variant(v, at, &["json", "mlflow"])? {
            "json" => SourceKind::Json,
            _ => SourceKind::Mlflow,
        })
    }
}

#[derive(Debug)]
pub struct MlflowDto {
    pub models: Vec<MlflowModelDto>,
}

read_struct!(MlflowDto { models: req });

#[derive(Debug)]
pub struct MlflowModelDto {
    pub model: String,
    pub registered_model: String,
    pub cluster: String,
    pub aliases: Vec<AliasDto>,
}

read_struct!(MlflowModelDto {
    model: req,
    registered_model: req,
    cluster: req,
    aliases: req,
});

#[derive(Debug)]
pub struct AliasDto {
    pub alias: String,
    pub target: Option<String>,
    pub weight: u32,
}

read_struct!(AliasDto {
    alias: req,
    target: or_default,
    weight: or(default_weight),
});

fn default_weight() -> u32 {
    1
}

/// The compiled `registry` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrySettings {
    pub source: Source,
    /// The Envoy cluster of the registry, and the `:authority` sent to it.
    pub cluster: String,
    pub authority: String,
    pub poll_ms: u32,
    pub timeout_ms: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A JSON document at this path.
    Json { path: String },
    /// The MLflow Model Registry REST API under `prefix` ("" or `/something`).
    Mlflow {
        prefix: String,
        models: Vec<MlflowModel>,
    },
}

/// A configured model whose targets are an MLflow registered model's aliases.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MlflowModel {
    pub model: String,
    pub registered_model: String,
    /// Cluster template: `{version}` and `{alias}` are replaced.
    pub cluster: String,
    pub aliases: Vec<Alias>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alias {
    pub alias: String,
    /// The target's name.
    pub target: String,
    pub weight: u32,
}

fn err<T>(field: impl Into<String>, reason: impl Into<String>) -> Result<T, ConfigError> {
    Err(ConfigError {
        field: field.into(),
        reason: reason.into(),
    })
}

fn is_cluster_name(s: &str) -> bool {
    !s.is_empty() && !s.chars().any(|c| c.is_ascii_control() || c == ' ')
}

/// A target name as the configuration's names: letters, digits, `.`, `_`, `:`, `-`.
fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-'))
}

/// Validates and compiles the section; `models` are the configured models.
pub fn compile(dto: RegistryDto, models: &[Model]) -> Result<RegistrySettings, ConfigError> {
    if !is_cluster_name(&dto.cluster) {
        return err(
            "registry.cluster",
            "must be a non-empty Envoy cluster name without spaces",
        );
    }
    let authority = dto.authority.unwrap_or_else(|| dto.cluster.clone());
    if authority.is_empty() || authority.chars().any(|c| c.is_ascii_control() || c == ' ') {
        return err(
            "registry.authority",
            "must be a non-empty host name without spaces",
        );
    }
    if !(MIN_POLL_MS..=MAX_POLL_MS).contains(&dto.poll_ms) {
        return err(
            "registry.poll_ms",
            format!(
                "must be between {MIN_POLL_MS} and {MAX_POLL_MS}, got {}",
                dto.poll_ms
            ),
        );
    }
    let max_timeout = dto.poll_ms.min(MAX_TIMEOUT_MS);
    let timeout_ms = dto
        .timeout_ms
        .unwrap_or_else(|| DEFAULT_TIMEOUT_MS.min(dto.poll_ms));
    if timeout_ms == 0 || timeout_ms > max_timeout {
        return err(
            "registry.timeout_ms",
            format!(
                "must be between 1 and {max_timeout} (at most poll_ms and {MAX_TIMEOUT_MS}), got {timeout_ms}"
            ),
        );
    }
    let source = match dto.source {
        SourceKind::Json => {
            if dto.mlflow.is_some() {
                return err(
                    "registry.mlflow",
                    "applies only to source \"mlflow\", and source is \"json\"",
                );
            }
            let Some(path) = dto.path else {
                return err(
                    "registry.path",
                    "is required with source \"json\": the path of the registry document",
                );
            };
            if !path.starts_with('/')
                || path.contains(['#', ' '])
                || path.chars().any(|c| c.is_ascii_control())
            {
                return err(
                    "registry.path",
                    format!(
                        "{} must be a path starting with '/', without spaces or '#'",
                        quoted(&path)
                    ),
                );
            }
            Source::Json { path }
        }
        SourceKind::Mlflow => {
            let prefix = dto.path.unwrap_or_default();
            if !prefix.is_empty()
                && (!prefix.starts_with('/')
                    || prefix.ends_with('/')
                    || prefix.contains(['?', '#', ' '])
                    || prefix.chars().any(|c| c.is_ascii_control()))
            {
                return err(
                    "registry.path",
                    format!("{} must be empty or a path starting with '/', without a trailing '/' or query", quoted(&prefix)),
                );
            }
            let Some(mlflow) = dto.mlflow else {
                return err(
                    "registry.mlflow",
                    "is required with source \"mlflow\": which configured models map to which registered models",
                );
            };
            Source::Mlflow {
                prefix,
                models: compile_mlflow(mlflow, models)?,
            }
        }
    };
    Ok(RegistrySettings {
        source,
        cluster: dto.cluster,
        authority,
        poll_ms: dto.poll_ms,
        timeout_ms,
    })
}

fn compile_mlflow(dto: MlflowDto, models: &[Model]) -> Result<Vec<MlflowModel>, ConfigError> {
    const F: &str = "registry.mlflow.models";
    if dto.models.is_empty() {
        return err(F, "at least one model is required");
    }
    let mut seen = VecSet::new();
    let mut total_aliases = 0usize;
    let mut out = Vec::with_capacity(dto.models.len());
    for (mi, m) in dto.models.into_iter().enumerate() {
        let f = format!("{F}[{mi}]");
        let Some(configured) = models.iter().find(|c| c.name == m.model) else {
            return err(
                format!("{f}.model"),
                format!("{} is not the name of a configured model", quoted(&m.model)),
            );
        };
        if !seen.insert(m.model.clone()) {
            return err(
                format!("{f}.model"),
                format!("{} is mapped by an earlier entry", quoted(&m.model)),
            );
        }
        if m.registered_model.is_empty()
            || m.registered_model.len() > 256
            || m.registered_model.chars().any(|c| c.is_ascii_control())
        {
            return err(
                format!("{f}.registered_model"),
                "must be 1 to 256 characters without control characters",
            );
        }
        check_template(&format!("{f}.cluster"), &m.cluster)?;
        if m.aliases.is_empty() {
            return err(format!("{f}.aliases"), "at least one alias is required");
        }
        total_aliases = total_aliases.saturating_add(m.aliases.len());
        if total_aliases > MAX_ALIASES {
            return err(
                format!("{f}.aliases"),
                format!("at most {MAX_ALIASES} aliases in all (one request each per poll)"),
            );
        }
        let mut aliases: Vec<Alias> = Vec::with_capacity(m.aliases.len());
        for (ai, a) in m.aliases.into_iter().enumerate() {
            let af = format!("{f}.aliases[{ai}]");
            let alias_ok = !a.alias.is_empty()
                && a.alias.len() <= 255
                && a.alias
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'));
            if !alias_ok {
                return err(
                    format!("{af}.alias"),
                    format!(
                        "{} must be 1 to 255 letters, digits, '_' or '-' (an MLflow alias)",
                        quoted(&a.alias)
                    ),
                );
            }
            if aliases.iter().any(|x| x.alias == a.alias) {
                return err(
                    format!("{af}.alias"),
                    format!("{} is listed twice", quoted(&a.alias)),
                );
            }
            let target = a.target.unwrap_or_else(|| a.alias.clone());
            if !is_name(&target) {
                return err(
                    format!("{af}.target"),
                    format!("{} may hold only letters, digits, '.', '_', ':' and '-', and must start with a letter or digit (1 to 128 characters)", quoted(&target)),
                );
            }
            if aliases.iter().any(|x| x.target == target) {
                return err(
                    format!("{af}.target"),
                    format!("{} is the target of an earlier alias", quoted(&target)),
                );
            }
            if a.weight > MAX_WEIGHT {
                return err(
                    format!("{af}.weight"),
                    format!("must be at most {MAX_WEIGHT}, got {}", a.weight),
                );
            }
            aliases.push(Alias {
                alias: a.alias,
                target,
                weight: a.weight,
            });
        }
        if !configured.is_bandit() && aliases.iter().all(|a| a.weight == 0) {
            return err(
                format!("{f}.aliases"),
                format!(
                    "model {} is weighted: at least one alias needs a weight above 0",
                    quoted(&m.model)
                ),
            );
        }
        out.push(MlflowModel {
            model: m.model,
            registered_model: m.registered_model,
            cluster: m.cluster,
            aliases,
        });
    }
    Ok(out)
}

/// A cluster template: a cluster name whose only `{…}` are `{version}` and `{alias}`.
fn check_template(field: &str, template: &str) -> Result<(), ConfigError> {
    let bare = substr::replace(&substr::replace(template, "{version}", ""), "{alias}", "");
    if bare.contains(['{', '}']) {
        return err(
            field,
            format!(
                "{}: the only placeholders are {{version}} and {{alias}}",
                quoted(template)
            ),
        );
    }
    if !is_cluster_name(template) {
        return err(
            field,
            "must be a non-empty Envoy cluster name (template) without spaces",
        );
    }
    Ok(())
}

/// A cluster template filled in.
pub fn fill(template: &str, version: &str, alias: &str) -> String {
    substr::replace(
        &substr::replace(template, "{version}", version),
        "{alias}",
        alias,
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use crate::json::{json, Value};

    use crate::config::parse;

    fn with_registry(registry: Value) -> Value {
        json!({
            "models": [
                { "name": "fraud", "targets": [ { "name": "v1", "cluster": "fraud-v1", "weight": 1 } ] },
                { "name": "chat", "targets": [ { "name": "a", "cluster": "llm-a" } ],
                  "strategy": { "type": "thompson" } }
            ],
            "registry": registry
        })
    }

    fn refused(registry: Value) -> (String, String) {
        let e = parse(with_registry(registry).to_string().as_bytes()).unwrap_err();
        (e.field, e.reason)
    }

    fn accepted(registry: Value) -> super::RegistrySettings {
        parse(with_registry(registry).to_string().as_bytes())
            .unwrap()
            .registry
            .unwrap()
    }

    #[test]
    fn defaults() {
        let s = accepted(json!({ "source": "json", "cluster": "reg", "path": "/r.json" }));
        assert_eq!(s.authority, "reg");
        assert_eq!((s.poll_ms, s.timeout_ms), (5000, 2000));
        assert_eq!(
            s.source,
            super::Source::Json {
                path: "/r.json".into()
            }
        );
        // The default timeout never exceeds the period.
        let s =
            accepted(json!({ "source": "json", "cluster": "reg", "path": "/r", "poll_ms": 500 }));
        assert_eq!(s.timeout_ms, 500);
        let s = accepted(json!({ "source": "mlflow", "cluster": "mlflow",
            "mlflow": { "models": [ { "model": "fraud", "registered_model": "fraud-detector",
              "cluster": "fraud-v{version}", "aliases": [ { "alias": "champion" },
                { "alias": "challenger", "target": "next", "weight": 0 } ] } ] } }));
        match s.source {
            super::Source::Mlflow { prefix, models } => {
                assert_eq!(prefix, "");
                assert_eq!(models[0].aliases[0].target, "champion");
                assert_eq!(models[0].aliases[0].weight, 1);
                assert_eq!(models[0].aliases[1].target, "next");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn each_error_names_its_field() {
        let mlflow = |models: Value| json!({ "source": "mlflow", "cluster": "m", "mlflow": { "models": models } });
        let alias_model = |aliases: Value| json!([ { "model": "fraud", "registered_model": "f", "cluster": "c-{version}", "aliases": aliases } ]);
        let cases: Vec<(Value, &str)> = vec![
            (json!({ "cluster": "r", "path": "/x" }), "registry.source"),
            (
                json!({ "source": "etcd", "cluster": "r" }),
                "registry.source",
            ),
            (
                json!({ "source": "json", "path": "/x" }),
                "registry.cluster",
            ),
            (
                json!({ "source": "json", "cluster": "a b", "path": "/x" }),
                "registry.cluster",
            ),
            (
                json!({ "source": "json", "cluster": "r", "path": "/x", "authority": "" }),
                "registry.authority",
            ),
            (json!({ "source": "json", "cluster": "r" }), "registry.path"),
            (
                json!({ "source": "json", "cluster": "r", "path": "x.json" }),
                "registry.path",
            ),
            (
                json!({ "source": "json", "cluster": "r", "path": "/x", "poll_ms": 199 }),
                "registry.poll_ms",
            ),
            (
                json!({ "source": "json", "cluster": "r", "path": "/x", "poll_ms": 3_600_001 }),
                "registry.poll_ms",
            ),
            (
                json!({ "source": "json", "cluster": "r", "path": "/x", "poll_ms": 1000, "timeout_ms": 1001 }),
                "registry.timeout_ms",
            ),
            (
                json!({ "source": "json", "cluster": "r", "path": "/x", "timeout_ms": 0 }),
                "registry.timeout_ms",
            ),
            (
                json!({ "source": "json", "cluster": "r", "path": "/x", "mlflow": { "models": [] } }),
                "registry.mlflow",
            ),
            (
                json!({ "source": "json", "cluster": "r", "path": "/x", "extra": 1 }),
                "registry.extra",
            ),
            (
                json!({ "source": "mlflow", "cluster": "m" }),
                "registry.mlflow",
            ),
            (
                json!({ "source": "mlflow", "cluster": "m", "path": "/api/", "mlflow": { "models": [] } }),
                "registry.path",
            ),
            (mlflow(json!([])), "registry.mlflow.models"),
            (
                mlflow(
                    json!([ { "model": "nope", "registered_model": "f", "cluster": "c", "aliases": [ { "alias": "a" } ] } ]),
                ),
                "registry.mlflow.models[0].model",
            ),
            (
                mlflow(
                    json!([ { "model": "fraud", "registered_model": "", "cluster": "c", "aliases": [ { "alias": "a" } ] } ]),
                ),
                "registry.mlflow.models[0].registered_model",
            ),
            (
                mlflow(
                    json!([ { "model": "fraud", "registered_model": "f", "cluster": "c-{v}", "aliases": [ { "alias": "a" } ] } ]),
                ),
                "registry.mlflow.models[0].cluster",
            ),
            (
                mlflow(
                    json!([ { "model": "fraud", "registered_model": "f", "cluster": "c", "aliases": [ { "alias": "a" } ] },
                            { "model": "fraud", "registered_model": "g", "cluster": "c", "aliases": [ { "alias": "a" } ] } ]),
                ),
                "registry.mlflow.models[1].model",
            ),
            (
                mlflow(alias_model(json!([]))),
                "registry.mlflow.models[0].aliases",
            ),
            (
                mlflow(alias_model(json!([ { "alias": "a b" } ]))),
                "registry.mlflow.models[0].aliases[0].alias",
            ),
            (
                mlflow(alias_model(json!([ { "alias": "a" }, { "alias": "a" } ]))),
                "registry.mlflow.models[0].aliases[1].alias",
            ),
            (
                mlflow(alias_model(json!([ { "alias": "a", "target": "/x" } ]))),
                "registry.mlflow.models[0].aliases[0].target",
            ),
            (
                mlflow(alias_model(
                    json!([ { "alias": "a", "target": "t" }, { "alias": "b", "target": "t" } ]),
                )),
                "registry.mlflow.models[0].aliases[1].target",
            ),
            (
                mlflow(alias_model(
                    json!([ { "alias": "a", "weight": 1_000_001 } ]),
                )),
                "registry.mlflow.models[0].aliases[0].weight",
            ),
            (
                mlflow(alias_model(json!([ { "alias": "a", "weight": 0 } ]))),
                "registry.mlflow.models[0].aliases",
            ),
            (
                mlflow(alias_model(json!([ { "alias": "a", "extra": 0 } ]))),
                "registry.mlflow.models[0].aliases[0].extra",
            ),
        ];
        for (registry, field) in cases {
            let (got, reason) = refused(registry.clone());
            assert_eq!(got, field, "{registry}: {reason}");
            assert!(!reason.is_empty());
        }
    }

    #[test]
    fn a_bandit_model_may_map_zero_weights() {
        let s = accepted(
            json!({ "source": "mlflow", "cluster": "m", "path": "/mlflow",
            "mlflow": { "models": [ { "model": "chat", "registered_model": "chat model",
              "cluster": "chat-{alias}", "aliases": [ { "alias": "a", "weight": 0 } ] } ] } }),
        );
        assert!(
            matches!(s.source, super::Source::Mlflow { ref prefix, .. } if prefix == "/mlflow")
        );
    }

    #[test]
    fn templates_fill() {
        assert_eq!(
            super::fill("fraud-v{version}-{alias}", "3", "champion"),
            "fraud-v3-champion"
        );
    }
}
