//! Validation and compilation of [`ConfigDto`] into [`Config`]. Every check names the field.

use std::collections::{HashMap, HashSet};

use super::dto::*;
use super::*;
use crate::metrics::metric_segment;

/// Largest accepted `body.max_bytes` (64 MiB): beyond that a sidecar's memory is at risk.
pub const MAX_BODY_LIMIT: u64 = 64 * 1024 * 1024;
const MAX_WEIGHT: u32 = 1_000_000;
const MAX_NAME_LEN: usize = 128;

fn err<T>(field: impl Into<String>, reason: impl Into<String>) -> Result<T, ConfigError> {
    Err(ConfigError {
        field: field.into(),
        reason: reason.into(),
    })
}

/// Parses, validates and compiles a configuration document.
pub fn parse(bytes: &[u8]) -> Result<Config, ConfigError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return err(
            "",
            "the plugin configuration is empty; a JSON object with `models` is required",
        );
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    let dto: ConfigDto = serde_path_to_error::deserialize(de).map_err(|e| {
        let mut field = e.path().to_string();
        if field == "." || field == "?" {
            field.clear();
        }
        let reason = e.into_inner().to_string();
        // serde reports a missing field at its parent: name the field itself.
        if let Some(missing) = reason
            .strip_prefix("missing field `")
            .and_then(|r| r.split('`').next())
        {
            field = if field.is_empty() {
                missing.to_string()
            } else {
                format!("{field}.{missing}")
            };
        }
        ConfigError { field, reason }
    })?;
    compile(dto)
}

fn check_name(field: &str, name: &str) -> Result<(), ConfigError> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return err(field, format!("must be 1 to {MAX_NAME_LEN} characters"));
    }
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    let rest_ok = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-'));
    if !first_ok || !rest_ok {
        return err(
            field,
            format!("{name:?} may hold only letters, digits, '.', '_', ':' and '-', and must start with a letter or digit"),
        );
    }
    Ok(())
}

fn check_header_name(field: &str, name: &str) -> Result<(), ConfigError> {
    if name.is_empty() {
        return err(field, "must not be empty");
    }
    if name.starts_with(':') {
        return err(
            field,
            format!("{name:?} is a pseudo-header; name a regular header"),
        );
    }
    let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if !name.chars().all(token) {
        return err(field, format!("{name:?} is not a valid HTTP header name"));
    }
    if name.chars().any(|c| c.is_ascii_uppercase()) {
        return err(
            field,
            format!("{name:?} must be lowercase (Envoy and HTTP/2 use lowercase header names)"),
        );
    }
    Ok(())
}

/// `HH:MM` → minute of the day.
fn parse_hhmm(field: &str, s: &str) -> Result<u32, ConfigError> {
    let parsed = s.split_once(':').and_then(|(h, m)| {
        if h.len() != 2 || m.len() != 2 {
            return None;
        }
        let h: u32 = h.parse().ok()?;
        let m: u32 = m.parse().ok()?;
        (h < 24 && m < 60).then_some(h * 60 + m)
    });
    match parsed {
        Some(minute) => Ok(minute),
        None => err(
            field,
            format!("{s:?} is not a UTC time of day as \"HH:MM\" (00:00 to 23:59)"),
        ),
    }
}

fn compile(dto: ConfigDto) -> Result<Config, ConfigError> {
    check_header_name("route_header", &dto.route_header)?;
    check_header_name("target_header", &dto.target_header)?;
    check_header_name("model_header", &dto.model_header)?;
    if dto.route_header == dto.target_header {
        return err("target_header", "must differ from route_header");
    }
    if dto.model_header == dto.route_header || dto.model_header == dto.target_header {
        return err(
            "model_header",
            "must differ from route_header and target_header",
        );
    }

    let body = &dto.body;
    if body.max_bytes == 0 || body.max_bytes > MAX_BODY_LIMIT {
        return err(
            "body.max_bytes",
            format!(
                "must be between 1 and {MAX_BODY_LIMIT}, got {}",
                body.max_bytes
            ),
        );
    }
    if body.source == BodySource::Metadata && body.metadata_namespace.trim().is_empty() {
        return err(
            "body.metadata_namespace",
            "must not be empty when body.source is \"metadata\"",
        );
    }

    if dto.models.is_empty() {
        return err("models", "at least one model is required");
    }
    let mut models = Vec::with_capacity(dto.models.len());
    let mut model_index = HashMap::new();
    let mut model_metric_names = HashSet::new();
    for (mi, m) in dto.models.into_iter().enumerate() {
        let field = format!("models[{mi}]");
        models.push(compile_model(
            &field,
            m,
            &mut model_index,
            &mut model_metric_names,
            mi,
        )?);
    }

    let default_model = match &dto.default_model {
        None => None,
        Some(name) => match model_index.get(name) {
            Some(&i) => Some(i),
            None => {
                return err(
                    "default_model",
                    format!("{name:?} is not the name of a configured model"),
                )
            }
        },
    };

    let mut pointers = PointerSet::new();
    let mut rules = Vec::with_capacity(dto.rules.len());
    let mut rule_names = HashSet::new();
    let mut rule_metric_names = HashSet::new();
    let mut has_echo = false;
    for (ri, r) in dto.rules.into_iter().enumerate() {
        let field = format!("rules[{ri}]");
        check_name(&format!("{field}.name"), &r.name)?;
        if !rule_names.insert(r.name.clone()) {
            return err(
                format!("{field}.name"),
                format!("{:?} is used by an earlier rule", r.name),
            );
        }
        if !rule_metric_names.insert(metric_segment(&r.name)) {
            return err(
                format!("{field}.name"),
                format!("{:?} gives the same metric name as an earlier rule", r.name),
            );
        }
        let when = compile_when(&format!("{field}.when"), r.when, &mut pointers)?;
        let then = compile_then(
            &format!("{field}.then"),
            r.then,
            &models,
            &model_index,
            body.source,
        )?;
        if matches!(
            then,
            Action::Reply {
                body: ReplyBody::Echo,
                ..
            }
        ) {
            has_echo = true;
        }
        rules.push(Rule {
            name: r.name,
            when,
            then,
        });
    }

    let has_time_rules = rules.iter().any(|r| {
        r.when
            .iter()
            .any(|c| matches!(c, Condition::TimeUtc { .. }))
    });
    let mut numeric_pointers = vec![false; pointers.len()];
    for rule in &rules {
        for cond in &rule.when {
            if let Condition::Body { pointer, test } = cond {
                let numeric = match test {
                    BodyTest::Range { .. } => true,
                    BodyTest::Exact(v) => v.is_number(),
                    BodyTest::OneOf(vs) => vs.iter().all(serde_json::Value::is_number),
                    BodyTest::Present(_) => false,
                };
                if let Some(slot) = numeric_pointers.get_mut(*pointer) {
                    *slot |= numeric;
                }
            }
        }
    }

    let feedback = match dto.feedback {
        None => None,
        Some(f) => {
            check_path("feedback.path", &f.path)?;
            if f.signing_key.len() < 16 {
                return err(
                    "feedback.signing_key",
                    "must be at least 16 characters: it is what stops forged rewards",
                );
            }
            if f.ttl_seconds == 0 || f.ttl_seconds > MAX_TTL {
                return err(
                    "feedback.ttl_seconds",
                    format!(
                        "must be between 1 and {MAX_TTL} (7 days), got {}",
                        f.ttl_seconds
                    ),
                );
            }
            Some(FeedbackSettings {
                path: f.path,
                signer: crate::feedback::TokenSigner::new(f.signing_key.as_bytes()),
                ttl_seconds: f.ttl_seconds,
            })
        }
    };
    let state_endpoint = match dto.state_endpoint {
        None => None,
        Some(e) => {
            check_path("state_endpoint.path", &e.path)?;
            if feedback.as_ref().is_some_and(|f| f.path == e.path) {
                return err("state_endpoint.path", "must differ from feedback.path");
            }
            if e.token.as_ref().is_some_and(String::is_empty) {
                return err(
                    "state_endpoint.token",
                    "must not be empty (omit it for no token)",
                );
            }
            Some(StateEndpoint {
                path: e.path,
                token: e.token,
            })
        }
    };

    Ok(Config {
        route_header: dto.route_header,
        target_header: dto.target_header,
        model_header: dto.model_header,
        response_metadata: dto.response_metadata,
        body: BodySettings {
            source: body.source,
            max_bytes: body.max_bytes,
            on_invalid: body.on_invalid,
            metadata_namespace: body.metadata_namespace.clone(),
        },
        default_model,
        models,
        model_index,
        rules,
        has_time_rules,
        pointers,
        numeric_pointers,
        has_echo,
        feedback,
        state_endpoint,
    })
}

/// Longest accepted feedback `ttl_seconds`: spent decision ids are kept this long.
const MAX_TTL: u64 = 7 * 24 * 3600;

fn check_path(field: &str, path: &str) -> Result<(), ConfigError> {
    if !path.starts_with('/') || path.contains(['?', '#', ' ']) {
        return err(
            field,
            format!("{path:?} must be a path starting with '/', without query"),
        );
    }
    Ok(())
}

fn check_weight(field: String, v: f64) -> Result<f64, ConfigError> {
    if !v.is_finite() || v < 0.0 {
        return err(
            field,
            format!("must be a finite number of at least 0, got {v}"),
        );
    }
    Ok(v)
}

fn compile_reward(field: &str, r: RewardDto) -> Result<RewardSettings, ConfigError> {
    if let Some(h) = &r.header {
        check_header_name(&format!("{field}.header"), h)?;
    }
    if r.latency_target_ms == Some(0) {
        return err(format!("{field}.latency_target_ms"), "must be above 0");
    }
    let evaluator = match r.evaluator {
        None => None,
        Some(e) => {
            if e.cluster.is_empty() || e.cluster.chars().any(|c| c.is_ascii_control() || c == ' ') {
                return err(
                    format!("{field}.evaluator.cluster"),
                    "must be a non-empty Envoy cluster name",
                );
            }
            check_path(&format!("{field}.evaluator.path"), &e.path)?;
            if e.timeout_ms == 0 || e.timeout_ms > 60_000 {
                return err(
                    format!("{field}.evaluator.timeout_ms"),
                    format!("must be between 1 and 60000, got {}", e.timeout_ms),
                );
            }
            Some(Evaluator {
                authority: e.authority.unwrap_or_else(|| e.cluster.clone()),
                cluster: e.cluster,
                path: e.path,
                timeout_ms: e.timeout_ms,
            })
        }
    };
    Ok(RewardSettings {
        status: r.status,
        latency_target_ms: r.latency_target_ms,
        header: r.header,
        cost_weight: check_weight(format!("{field}.cost_weight"), r.cost_weight)?,
        latency_weight: check_weight(format!("{field}.latency_weight"), r.latency_weight)?,
        evaluator,
    })
}

fn compile_bandit(
    field: &str,
    algorithm: crate::bandit::Algorithm,
    decay: Option<DecayDto>,
    prior: Option<PriorDto>,
    min_share: Option<MinShareDto>,
    targets: &[Target],
) -> Result<crate::bandit::Strategy, ConfigError> {
    use crate::bandit::{Decay, Prior, Strategy as Bandit, StrategyParams};
    let mut params = StrategyParams::new(algorithm);
    params.decay = match decay {
        None => Decay::None,
        Some(DecayDto::Gamma(gamma)) => Decay::Discount { gamma },
        Some(DecayDto::HalfLife(observations)) => Decay::HalfLife { observations },
    };
    if let Some(p) = prior {
        params.prior = Prior {
            alpha: p.alpha,
            beta: p.beta,
        };
    }
    params.min_share = match min_share {
        None => Vec::new(),
        Some(MinShareDto::All(share)) => vec![share; targets.len()],
        Some(MinShareDto::PerTarget(map)) => {
            for name in map.keys() {
                if !targets.iter().any(|t| &t.name == name) {
                    return err(
                        format!("{field}.min_share.{name}"),
                        "is not a target of this model",
                    );
                }
            }
            targets
                .iter()
                .map(|t| map.get(&t.name).copied().unwrap_or(0.0))
                .collect()
        }
    };
    Bandit::new(params, targets.len()).map_err(|e| {
        let sub = match e.arm.and_then(|a| targets.get(a)) {
            Some(t) => format!("{}.{}", e.field, t.name),
            None => e.field.to_string(),
        };
        ConfigError {
            field: format!("{field}.{sub}"),
            reason: e.reason,
        }
    })
}

fn compile_model(
    field: &str,
    m: ModelDto,
    index: &mut HashMap<String, usize>,
    metric_names: &mut HashSet<String>,
    position: usize,
) -> Result<Model, ConfigError> {
    check_name(&format!("{field}.name"), &m.name)?;
    if index.insert(m.name.clone(), position).is_some() {
        return err(
            format!("{field}.name"),
            format!("{:?} is used by an earlier model", m.name),
        );
    }
    if !metric_names.insert(metric_segment(&m.name)) {
        return err(
            format!("{field}.name"),
            format!(
                "{:?} gives the same metric name as an earlier model",
                m.name
            ),
        );
    }
    if m.targets.is_empty() {
        return err(
            format!("{field}.targets"),
            "at least one target is required",
        );
    }
    let mut targets = Vec::with_capacity(m.targets.len());
    let mut names = HashSet::new();
    let mut target_metric_names = HashSet::new();
    let weighted = matches!(m.strategy, StrategyDto::Weighted { .. });
    for (ti, t) in m.targets.into_iter().enumerate() {
        let tf = format!("{field}.targets[{ti}]");
        check_name(&format!("{tf}.name"), &t.name)?;
        if !names.insert(t.name.clone()) {
            return err(
                format!("{tf}.name"),
                format!("{:?} is used by an earlier target of this model", t.name),
            );
        }
        if !target_metric_names.insert(metric_segment(&t.name)) {
            return err(
                format!("{tf}.name"),
                format!(
                    "{:?} gives the same metric name as an earlier target",
                    t.name
                ),
            );
        }
        if t.cluster.is_empty() || t.cluster.chars().any(|c| c.is_ascii_control() || c == ' ') {
            return err(
                format!("{tf}.cluster"),
                "must be a non-empty Envoy cluster name without spaces",
            );
        }
        let weight = match (t.weight, weighted) {
            (Some(w), _) if w > MAX_WEIGHT => {
                return err(
                    format!("{tf}.weight"),
                    format!("must be at most {MAX_WEIGHT}, got {w}"),
                )
            }
            (Some(w), _) => w,
            (None, true) => {
                return err(
                    format!("{tf}.weight"),
                    "is required by the \"weighted\" strategy",
                )
            }
            (None, false) => 0,
        };
        let price = match t.price {
            None => Price::default(),
            Some(p) => Price {
                input_per_1k: check_weight(format!("{tf}.price.input_per_1k"), p.input_per_1k)?,
                output_per_1k: check_weight(format!("{tf}.price.output_per_1k"), p.output_per_1k)?,
            },
        };
        targets.push(Target {
            name: t.name,
            cluster: t.cluster,
            weight,
            price,
        });
    }

    let strategy = match m.strategy {
        StrategyDto::Weighted { sticky } => {
            let sticky = match sticky {
                None => None,
                Some(StickyDto::Header(h)) => {
                    check_header_name(&format!("{field}.strategy.sticky.header"), &h)?;
                    Some(StickyKey::Header(h))
                }
                Some(StickyDto::Cookie(c)) => {
                    if c.is_empty()
                        || c.chars()
                            .any(|ch| ch.is_ascii_control() || " ;=,".contains(ch))
                    {
                        return err(
                            format!("{field}.strategy.sticky.cookie"),
                            "must be a valid cookie name",
                        );
                    }
                    Some(StickyKey::Cookie(c))
                }
            };
            Strategy::Weighted { sticky }
        }
        StrategyDto::EpsilonGreedy {
            epsilon,
            decay,
            prior,
            min_share,
        } => Strategy::Bandit(compile_bandit(
            &format!("{field}.strategy"),
            crate::bandit::Algorithm::EpsilonGreedy { epsilon },
            decay,
            prior,
            min_share,
            &targets,
        )?),
        StrategyDto::Thompson {
            decay,
            prior,
            min_share,
        } => Strategy::Bandit(compile_bandit(
            &format!("{field}.strategy"),
            crate::bandit::Algorithm::Thompson,
            decay,
            prior,
            min_share,
            &targets,
        )?),
        StrategyDto::Ucb1 {
            decay,
            prior,
            min_share,
        } => Strategy::Bandit(compile_bandit(
            &format!("{field}.strategy"),
            crate::bandit::Algorithm::Ucb1,
            decay,
            prior,
            min_share,
            &targets,
        )?),
    };
    let reward = match m.reward {
        None => None,
        Some(_) if matches!(strategy, Strategy::Weighted { .. }) => {
            return err(
                format!("{field}.reward"),
                "only bandit strategies (epsilon_greedy, thompson, ucb1) learn from rewards",
            )
        }
        Some(r) => Some(compile_reward(&format!("{field}.reward"), r)?),
    };

    let mut cumulative_weights = Vec::with_capacity(targets.len());
    let mut total: u64 = 0;
    for t in &targets {
        total += u64::from(t.weight);
        cumulative_weights.push(total);
    }
    if weighted && total == 0 {
        return err(
            format!("{field}.targets"),
            "at least one target needs a weight above 0",
        );
    }

    let default_target = match &m.default_target {
        None => 0,
        Some(name) => match targets.iter().position(|t| &t.name == name) {
            Some(i) => i,
            None => {
                return err(
                    format!("{field}.default_target"),
                    format!("{name:?} is not a target of model {:?}", m.name),
                )
            }
        },
    };

    Ok(Model {
        name: m.name,
        targets,
        strategy,
        default_target,
        cumulative_weights,
        total_weight: total,
        reward,
    })
}

fn compile_when(
    field: &str,
    w: WhenDto,
    pointers: &mut PointerSet,
) -> Result<Vec<Condition>, ConfigError> {
    let mut conds = Vec::new();
    if let Some(method) = w.method {
        let methods = match method {
            OneOrMany::One(m) => vec![m],
            OneOrMany::Many(ms) => ms,
        };
        if methods.is_empty() {
            return err(format!("{field}.method"), "must name at least one method");
        }
        for m in &methods {
            if m.is_empty() || !m.chars().all(|c| c.is_ascii_uppercase()) {
                return err(
                    format!("{field}.method"),
                    format!("{m:?} is not an uppercase HTTP method"),
                );
            }
        }
        conds.push(Condition::Method(methods));
    }
    if let Some(prefix) = w.path_prefix {
        if !prefix.starts_with('/') {
            return err(
                format!("{field}.path_prefix"),
                format!("{prefix:?} must start with '/'"),
            );
        }
        conds.push(Condition::PathPrefix(prefix));
    }
    for (name, c) in w.headers {
        let hf = format!("{field}.headers.{name}");
        check_header_name(&hf, &name)?;
        let test = match (c.exact, c.prefix, c.present) {
            (Some(v), None, None) => HeaderTest::Exact(v),
            (None, Some(p), None) => HeaderTest::Prefix(p),
            (None, None, Some(b)) => HeaderTest::Present(b),
            _ => {
                return err(
                    hf,
                    "needs exactly one of \"exact\", \"prefix\" or \"present\"",
                )
            }
        };
        conds.push(Condition::Header { name, test });
    }
    if let Some(t) = w.time_utc {
        let from_minute = parse_hhmm(&format!("{field}.time_utc.from"), &t.from)?;
        let to_minute = parse_hhmm(&format!("{field}.time_utc.to"), &t.to)?;
        if from_minute == to_minute {
            return err(
                format!("{field}.time_utc"),
                "\"from\" and \"to\" are equal: the window would be empty",
            );
        }
        conds.push(Condition::TimeUtc {
            from_minute,
            to_minute,
        });
    }
    for (ptr, c) in w.body {
        let bf = format!("{field}.body.{ptr}");
        let pointer = pointers
            .insert(&ptr)
            .or_else(|reason| err(bf.clone(), reason))?;
        let test = match (c.exact, c.one_of, c.present, c.gt, c.lt) {
            (Some(v), None, None, None, None) => BodyTest::Exact(v),
            (None, Some(vs), None, None, None) => {
                if vs.is_empty() {
                    return err(format!("{bf}.one_of"), "must list at least one value");
                }
                BodyTest::OneOf(vs)
            }
            (None, None, Some(b), None, None) => BodyTest::Present(b),
            (None, None, None, gt, lt) if gt.is_some() || lt.is_some() => {
                for (name, v) in [("gt", gt), ("lt", lt)] {
                    if v.is_some_and(|v| !v.is_finite()) {
                        return err(format!("{bf}.{name}"), "must be a finite number");
                    }
                }
                if let (Some(g), Some(l)) = (gt, lt) {
                    if g >= l {
                        return err(
                            bf,
                            format!("\"gt\" ({g}) must be below \"lt\" ({l}): nothing could match"),
                        );
                    }
                }
                BodyTest::Range { gt, lt }
            }
            _ => {
                return err(
                    bf,
                    "needs exactly one of \"exact\", \"one_of\", \"present\", or \"gt\"/\"lt\"",
                )
            }
        };
        conds.push(Condition::Body { pointer, test });
    }
    Ok(conds)
}

fn compile_then(
    field: &str,
    t: ThenDto,
    models: &[Model],
    index: &HashMap<String, usize>,
    source: BodySource,
) -> Result<Action, ConfigError> {
    let forms = usize::from(t.model.is_some() || t.target.is_some())
        + usize::from(t.reply.is_some())
        + usize::from(t.reject.is_some());
    if forms != 1 {
        return err(
            field,
            "needs exactly one of: \"model\"/\"target\" (pin), \"reply\", or \"reject\"",
        );
    }
    if let Some(reply) = t.reply {
        let rf = format!("{field}.reply");
        if !(200..=599).contains(&reply.status) {
            return err(
                format!("{rf}.status"),
                format!("must be 200 to 599, got {}", reply.status),
            );
        }
        let body = match (reply.echo, reply.body) {
            (true, Some(_)) => return err(rf, "\"echo\" and \"body\" exclude each other"),
            (true, None) => {
                if source == BodySource::Metadata {
                    return err(
                        format!("{rf}.echo"),
                        "needs the raw body, which body.source \"metadata\" does not give; use \"buffer\"",
                    );
                }
                ReplyBody::Echo
            }
            (false, Some(v)) => ReplyBody::Json(serde_json::to_vec(&v).unwrap_or_default()),
            (false, None) => ReplyBody::Empty,
        };
        return Ok(Action::Reply {
            status: reply.status,
            body,
        });
    }
    if let Some(reject) = t.reject {
        if !(400..=599).contains(&reject.status) {
            return err(
                format!("{field}.reject.status"),
                format!("must be 400 to 599, got {}", reject.status),
            );
        }
        if reject.message.is_empty() {
            return err(format!("{field}.reject.message"), "must not be empty");
        }
        return Ok(Action::Reject {
            status: reject.status,
            message: reject.message,
        });
    }
    let model = match &t.model {
        None => None,
        Some(name) => match index.get(name) {
            Some(&i) => Some(i),
            None => {
                return err(
                    format!("{field}.model"),
                    format!("{name:?} is not the name of a configured model"),
                )
            }
        },
    };
    let target = match (&t.target, model) {
        (None, _) => TargetPin::None,
        (Some(name), Some(mi)) => match models.get(mi).and_then(|m| m.target_by_name(name)) {
            Some(ti) => TargetPin::Index(ti),
            None => {
                return err(
                    format!("{field}.target"),
                    format!(
                        "{name:?} is not a target of model {:?}",
                        t.model.as_deref().unwrap_or_default()
                    ),
                )
            }
        },
        (Some(name), None) => {
            if !models.iter().any(|m| m.target_by_name(name).is_some()) {
                return err(
                    format!("{field}.target"),
                    format!("no model has a target named {name:?}"),
                );
            }
            TargetPin::Named(name.clone())
        }
    };
    Ok(Action::Pin { model, target })
}
