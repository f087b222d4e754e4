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

    let mut detectors: Vec<NamedDetector> = Vec::with_capacity(dto.detectors.len());
    for (di, d) in dto.detectors.into_iter().enumerate() {
        let field = format!("detectors[{di}]");
        check_name(&format!("{field}.name"), &d.name)?;
        if detectors.iter().any(|x| x.name == d.name) {
            return err(
                format!("{field}.name"),
                format!("{:?} is used by an earlier detector", d.name),
            );
        }
        let detector = match (d.builtin, d.regex) {
            (Some(b), None) => {
                crate::inspect::detect::Detector::builtin(&b).ok_or_else(|| ConfigError {
                    field: format!("{field}.builtin"),
                    reason: format!("{b:?} is not a built-in detector (email, card, iban)"),
                })?
            }
            (None, Some(re)) => {
                crate::inspect::detect::Detector::regex(&re).map_err(|reason| ConfigError {
                    field: format!("{field}.regex"),
                    reason,
                })?
            }
            _ => return err(field, "needs exactly one of \"builtin\" or \"regex\""),
        };
        detectors.push(NamedDetector {
            name: d.name,
            detector,
        });
    }
    let detector_names: Vec<&str> = detectors.iter().map(|d| d.name.as_str()).collect();

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
        let when = compile_when(
            &format!("{field}.when"),
            r.when,
            &mut pointers,
            &detector_names,
        )?;
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

    let tenants = match dto.tenants {
        None => None,
        Some(t) => Some(compile_tenants(t, &models, &model_index)?),
    };
    let residency_header = match dto.residency {
        None => None,
        Some(r) => match r.header {
            Some(h) => {
                check_header_name("residency.header", &h)?;
                Some(h)
            }
            None => return err("residency.header", "is required"),
        },
    };
    let budget = match dto.budget {
        None => None,
        Some(b) => {
            check_header_name("budget.cost_header", &b.cost_header)?;
            check_header_name("budget.latency_header", &b.latency_header)?;
            check_header_name("budget.escalate_header", &b.escalate_header)?;
            Some(Budget {
                cost_header: b.cost_header,
                latency_header: b.latency_header,
                escalate_header: b.escalate_header,
                default_output_tokens: b.default_output_tokens,
            })
        }
    };
    let mut shadows = Vec::with_capacity(dto.shadows.len());
    for (si, sh) in dto.shadows.into_iter().enumerate() {
        let field = format!("shadows[{si}]");
        let Some(&model) = model_index.get(&sh.model) else {
            return err(
                format!("{field}.model"),
                format!("{:?} is not the name of a configured model", sh.model),
            );
        };
        let Some(target) = models.get(model).and_then(|m| m.target_by_name(&sh.target)) else {
            return err(
                format!("{field}.target"),
                format!("{:?} is not a target of model {:?}", sh.target, sh.model),
            );
        };
        if !(sh.percent > 0.0 && sh.percent <= 100.0) {
            return err(
                format!("{field}.percent"),
                format!("must be above 0 and at most 100, got {}", sh.percent),
            );
        }
        if sh.timeout_ms == 0 || sh.timeout_ms > 60_000 {
            return err(
                format!("{field}.timeout_ms"),
                format!("must be between 1 and 60000, got {}", sh.timeout_ms),
            );
        }
        if body.source == BodySource::Metadata {
            return err(field, "mirrors the request body, which body.source \"metadata\" does not give; use \"buffer\"");
        }
        let when = compile_when(
            &format!("{field}.when"),
            sh.when,
            &mut pointers,
            &detector_names,
        )?;
        shadows.push(Shadow {
            model,
            when,
            target,
            percent: sh.percent,
            rewrite_model: sh.rewrite_model,
            timeout_ms: sh.timeout_ms,
        });
    }
    // A router's pick or a fan-out reaches targets the policy did not choose: refuse the
    // combinations where the policy could have excluded some of them.
    let excluding_tenants = tenants.as_ref().is_some_and(|t| {
        t.list
            .iter()
            .any(|x| x.region.is_some() || x.allow.is_some())
    });
    for (mi, m) in models.iter().enumerate() {
        let what = if m.router.is_some() {
            "router"
        } else if m.fan_out.is_some() {
            "fan_out"
        } else {
            continue;
        };
        let conflict = if m.capability_routing {
            Some("capability routing (targets[].capabilities / max_context_tokens)")
        } else if residency_header.is_some() {
            Some("residency")
        } else if excluding_tenants {
            Some("tenant allow-lists or regions")
        } else {
            None
        };
        if let Some(conflict) = conflict {
            return err(
                format!("models[{mi}].{what}"),
                format!("cannot be combined with {conflict}: it would reach targets the policy may exclude"),
            );
        }
    }
    if body.source == BodySource::Metadata {
        if !detectors.is_empty() {
            return err("detectors", "scan the prompt text, which body.source \"metadata\" does not give; use \"buffer\"");
        }
        for (mi, m) in models.iter().enumerate() {
            let needs_body = [
                (
                    m.capability_routing,
                    "targets[].capabilities / max_context_tokens",
                ),
                (m.input_spec.is_some(), "input_spec"),
                (m.retry, "retry"),
                (m.fan_out.is_some(), "fan_out"),
                (m.router.is_some(), "router"),
            ];
            if let Some((_, what)) = needs_body.iter().find(|(on, _)| *on) {
                return err(
                    format!("models[{mi}]"),
                    format!("{what} needs the request body, which body.source \"metadata\" does not give; use \"buffer\""),
                );
            }
        }
    }

    Ok(Config {
        tenants,
        residency_header,
        detectors,
        budget,
        shadows,
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
        for (ci, c) in t.capabilities.iter().enumerate() {
            if !CAPABILITIES.contains(&c.as_str()) {
                return err(
                    format!("{tf}.capabilities[{ci}]"),
                    format!("{c:?} is not a capability ({})", CAPABILITIES.join(", ")),
                );
            }
        }
        if t.max_context_tokens == Some(0) {
            return err(format!("{tf}.max_context_tokens"), "must be above 0");
        }
        if t.region.as_ref().is_some_and(String::is_empty) {
            return err(format!("{tf}.region"), "must not be empty");
        }
        if t.tags.iter().any(String::is_empty) {
            return err(format!("{tf}.tags"), "tags must not be empty");
        }
        targets.push(Target {
            name: t.name,
            cluster: t.cluster,
            weight,
            price,
            capabilities: t.capabilities,
            max_context_tokens: t.max_context_tokens,
            region: t.region,
            tags: t.tags,
            rank: t.rank,
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

    let input_spec = match m.input_spec {
        None => None,
        Some(spec) => {
            let mut out = Vec::with_capacity(spec.len());
            for (ii, i) in spec.into_iter().enumerate() {
                let f = format!("{field}.input_spec[{ii}]");
                if i.name.is_empty()
                    || out
                        .iter()
                        .any(|o: &crate::inspect::kserve::InputSpec| o.name == i.name)
                {
                    return err(
                        format!("{f}.name"),
                        "must be a non-empty name, unique among the inputs",
                    );
                }
                if !crate::inspect::kserve::DATATYPES.contains(&i.datatype.as_str()) {
                    return err(
                        format!("{f}.datatype"),
                        format!(
                            "{:?} is not a KServe v2 datatype ({})",
                            i.datatype,
                            crate::inspect::kserve::DATATYPES.join(", ")
                        ),
                    );
                }
                if i.shape.iter().any(|&d| d < -1) {
                    return err(
                        format!("{f}.shape"),
                        "dimensions are sizes, or -1 for any size",
                    );
                }
                out.push(crate::inspect::kserve::InputSpec {
                    name: i.name,
                    datatype: i.datatype,
                    shape: i.shape,
                });
            }
            if out.is_empty() {
                return err(
                    format!("{field}.input_spec"),
                    "must declare at least one input",
                );
            }
            Some(out)
        }
    };
    let mut fallback = Vec::with_capacity(m.fallback.len());
    for (fi, name) in m.fallback.iter().enumerate() {
        match targets.iter().position(|t| &t.name == name) {
            Some(i) if !fallback.contains(&i) => fallback.push(i),
            Some(_) => {
                return err(
                    format!("{field}.fallback[{fi}]"),
                    format!("{name:?} is listed twice"),
                )
            }
            None => {
                return err(
                    format!("{field}.fallback[{fi}]"),
                    format!("{name:?} is not a target of this model"),
                )
            }
        }
    }
    if m.cooldown_seconds > 3600 {
        return err(
            format!("{field}.cooldown_seconds"),
            format!("must be at most 3600, got {}", m.cooldown_seconds),
        );
    }
    if m.retry && fallback.is_empty() {
        return err(
            format!("{field}.retry"),
            "needs a fallback list: a retry goes to the next fallback target",
        );
    }
    let router = match m.router {
        None => None,
        Some(r) => {
            let rf = format!("{field}.router");
            if r.cluster.is_empty() || r.cluster.chars().any(|c| c.is_ascii_control() || c == ' ') {
                return err(
                    format!("{rf}.cluster"),
                    "must be a non-empty Envoy cluster name",
                );
            }
            check_path(&format!("{rf}.path"), &r.path)?;
            if let Some(p) = &r.feedback_path {
                check_path(&format!("{rf}.feedback_path"), p)?;
            }
            if r.timeout_ms == 0 || r.timeout_ms > 60_000 {
                return err(
                    format!("{rf}.timeout_ms"),
                    format!("must be between 1 and 60000, got {}", r.timeout_ms),
                );
            }
            Some(ExternalRouter {
                authority: r.authority.unwrap_or_else(|| r.cluster.clone()),
                cluster: r.cluster,
                path: r.path,
                timeout_ms: r.timeout_ms,
                feedback_path: r.feedback_path,
            })
        }
    };
    let fan_out = match m.fan_out {
        None => None,
        Some(f) => {
            if f.timeout_ms == 0 || f.timeout_ms > 60_000 {
                return err(
                    format!("{field}.fan_out.timeout_ms"),
                    format!("must be between 1 and 60000, got {}", f.timeout_ms),
                );
            }
            if router.is_some() {
                return err(
                    format!("{field}.fan_out"),
                    "excludes \"router\": a fan-out sends to every target",
                );
            }
            Some(FanOut {
                timeout_ms: f.timeout_ms,
            })
        }
    };
    let capability_routing = targets
        .iter()
        .any(|t| !t.capabilities.is_empty() || t.max_context_tokens.is_some());

    Ok(Model {
        name: m.name,
        targets,
        strategy,
        default_target,
        cumulative_weights,
        total_weight: total,
        reward,
        input_spec,
        fallback,
        cooldown_seconds: m.cooldown_seconds,
        retry: m.retry,
        router,
        fan_out,
        capability_routing,
    })
}

fn one_or_many(v: OneOrMany) -> Vec<String> {
    match v {
        OneOrMany::One(x) => vec![x],
        OneOrMany::Many(xs) => xs,
    }
}

fn compile_when(
    field: &str,
    w: WhenDto,
    pointers: &mut PointerSet,
    detectors: &[&str],
) -> Result<Vec<Condition>, ConfigError> {
    let mut conds = Vec::new();
    for (name, list, make) in [
        (
            "tenant",
            w.tenant,
            Condition::Tenant as fn(Vec<String>) -> Condition,
        ),
        (
            "tier",
            w.tier,
            Condition::Tier as fn(Vec<String>) -> Condition,
        ),
    ] {
        if let Some(v) = list {
            let values = one_or_many(v);
            if values.is_empty() || values.iter().any(String::is_empty) {
                return err(
                    format!("{field}.{name}"),
                    "must name at least one non-empty value",
                );
            }
            conds.push(make(values));
        }
    }
    if let Some(v) = w.detected {
        let mut idx = Vec::new();
        for name in one_or_many(v) {
            match detectors.iter().position(|d| *d == name) {
                Some(i) => idx.push(i),
                None => {
                    return err(
                        format!("{field}.detected"),
                        format!("{name:?} is not a configured detector"),
                    )
                }
            }
        }
        if idx.is_empty() {
            return err(
                format!("{field}.detected"),
                "must name at least one detector",
            );
        }
        conds.push(Condition::Detected(idx));
    }
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
    conds.sort_by_key(Condition::cost);
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
        + usize::from(t.reject.is_some())
        + usize::from(t.restrict.is_some());
    if forms != 1 {
        return err(
            field,
            "needs exactly one of: \"model\"/\"target\" (pin), \"reply\", \"reject\", or \"restrict\"",
        );
    }
    if let Some(r) = t.restrict {
        if r.region.is_none() && r.tags.is_empty() {
            return err(
                format!("{field}.restrict"),
                "needs \"region\" and/or \"tags\"",
            );
        }
        return Ok(Action::Restrict {
            region: r.region,
            tags: r.tags,
        });
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

fn compile_tenants(
    t: TenantsDto,
    models: &[Model],
    index: &HashMap<String, usize>,
) -> Result<Tenants, ConfigError> {
    let source = match (t.header, t.jwt) {
        (Some(h), None) => {
            check_header_name("tenants.header", &h)?;
            TenantSource::Header(h)
        }
        (None, Some(j)) => {
            if j.namespace.is_empty() || j.payload_key.is_empty() || j.claim.is_empty() {
                return err(
                    "tenants.jwt",
                    "namespace, payload_key and claim must not be empty",
                );
            }
            TenantSource::Jwt {
                namespace: j.namespace,
                payload_key: j.payload_key,
                claim: j.claim,
            }
        }
        _ => return err("tenants", "needs exactly one of \"header\" or \"jwt\""),
    };
    let mut list = Vec::with_capacity(t.list.len());
    for (ti, d) in t.list.into_iter().enumerate() {
        let f = format!("tenants.list[{ti}]");
        if d.name.is_empty() || list.iter().any(|x: &Tenant| x.name == d.name) {
            return err(
                format!("{f}.name"),
                "must be a non-empty name, unique among the tenants",
            );
        }
        let default_model = match &d.default_model {
            None => None,
            Some(n) => match index.get(n) {
                Some(&i) => Some(i),
                None => {
                    return err(
                        format!("{f}.default_model"),
                        format!("{n:?} is not the name of a configured model"),
                    )
                }
            },
        };
        let allow = match d.allow {
            None => None,
            Some(map) => {
                let mut per_model = vec![ModelAllow::Denied; models.len()];
                for (model_name, targets) in map {
                    let Some(&mi) = index.get(&model_name) else {
                        return err(
                            format!("{f}.allow.{model_name}"),
                            "is not the name of a configured model",
                        );
                    };
                    let Some(m) = models.get(mi) else { continue };
                    let entry = if targets.is_empty() {
                        ModelAllow::All
                    } else {
                        let mut idx = Vec::new();
                        for tn in &targets {
                            match m.target_by_name(tn) {
                                Some(i) => idx.push(i),
                                None => {
                                    return err(
                                        format!("{f}.allow.{model_name}"),
                                        format!("{tn:?} is not a target of model {model_name:?}"),
                                    )
                                }
                            }
                        }
                        ModelAllow::Targets(idx)
                    };
                    if let Some(slot) = per_model.get_mut(mi) {
                        *slot = entry;
                    }
                }
                if let Some(dm) = default_model {
                    if matches!(per_model.get(dm), Some(ModelAllow::Denied) | None) {
                        return err(
                            format!("{f}.default_model"),
                            "is not in the tenant's allow list",
                        );
                    }
                }
                Some(per_model)
            }
        };
        list.push(Tenant {
            name: d.name,
            tier: d.tier,
            region: d.region,
            default_model,
            allow,
        });
    }
    Ok(Tenants {
        source,
        required: t.required,
        list,
    })
}
