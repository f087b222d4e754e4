//! Models: names, targets, strategy (weighted or bandit), implicit rewards, the default
//! target, the KServe input spec, fallback, retry, and their router or fan-out.

use super::callouts::{compile_evaluator, compile_fan_out, compile_router};
use super::checks::{
    check_at_most, check_header_name, check_range, check_weight, child, err, err_at, err_in,
    err_with, is_cluster_name, item, item_in, listed_twice, quoted_then, refusal, target_named,
    Names, Range, Refusal,
};
use crate::bandit::Algorithm;
use crate::config::dto::*;
use crate::config::{Model, Price, RewardSettings, StickyKey, Strategy, Target, CAPABILITIES};
use crate::inspect::kserve::{InputSpec, DATATYPES};
use crate::quote::quoted;
use crate::vecmap::VecMap;

const MAX_WEIGHT: u32 = 1_000_000;
/// Longest cooldown of a failed target.
const MAX_COOLDOWN_SECONDS: u64 = 3600;

/// The models, and their index by name.
pub(super) fn compile_models(
    dtos: Vec<ModelDto>,
) -> Result<(Vec<Model>, VecMap<String, usize>), Refusal> {
    if dtos.is_empty() {
        return err("models", "at least one model is required");
    }
    let mut models = Vec::with_capacity(dtos.len());
    let mut index = VecMap::new();
    let mut names = Names::default();
    for (mi, m) in dtos.into_iter().enumerate() {
        let field = item("models", mi);
        names.add((&field, "name"), &m.name, "model", "model")?;
        index.insert(m.name.clone(), mi);
        models.push(compile_model(&field, m)?);
    }
    Ok((models, index))
}

fn compile_model(field: &str, m: ModelDto) -> Result<Model, Refusal> {
    let weighted = matches!(m.strategy, StrategyDto::Weighted { .. });
    let least_loaded = matches!(m.strategy, StrategyDto::LeastLoaded {});
    let targets = compile_targets(field, m.targets, weighted, least_loaded)?;
    let strategy = compile_strategy(field, m.strategy, &targets)?;
    let reward = match m.reward {
        None => None,
        Some(_) if m_is_fixed(&strategy) => return err_in(
            field,
            "reward",
            "only bandit strategies (epsilon_greedy, thompson, ucb1, linucb) learn from rewards",
        ),
        Some(r) => Some(compile_reward(&child(field, "reward"), r)?),
    };
    let (cumulative_weights, total_weight) =
        cumulative_weights(field, &targets, weighted || least_loaded)?;
    let default_target = match &m.default_target {
        None => 0,
        Some(name) => target_named(field, "default_target", &targets, &m.name, name)?,
    };
    let input_spec = m
        .input_spec
        .map(|spec| compile_input_spec(&child(field, "input_spec"), spec))
        .transpose()?;
    let fallback = compile_fallback(field, &m.fallback, &targets)?;
    check_at_most(
        field,
        "cooldown_seconds",
        MAX_COOLDOWN_SECONDS,
        m.cooldown_seconds,
    )?;
    if m.retry && fallback.is_empty() {
        return err_in(
            field,
            "retry",
            "needs a fallback list: a retry goes to the next fallback target",
        );
    }
    let router = compile_router(field, m.router)?;
    let fan_out = compile_fan_out(field, m.fan_out, router.is_some())?;
    let capability_routing = targets
        .iter()
        .any(|t| !t.capabilities.is_empty() || t.max_context_tokens.is_some());
    let affinity = compile_affinity(field, m.affinity, &targets)?;
    let tracks_load = least_loaded
        || targets
            .iter()
            .any(|t| t.capacity.is_some() || t.picks_endpoint());
    Ok(Model {
        affinity,
        tracks_load,
        name: m.name,
        targets,
        strategy,
        default_target,
        cumulative_weights,
        total_weight,
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

/// Running sums of the weights (for a binary search of a draw) and their total.
fn cumulative_weights(
    field: &str,
    targets: &[Target],
    weighted: bool,
) -> Result<(Vec<u64>, u64), Refusal> {
    let mut sums = Vec::with_capacity(targets.len());
    let mut total = 0u64;
    for t in targets {
        total = total.saturating_add(u64::from(t.weight));
        sums.push(total);
    }
    if weighted && total == 0 {
        return err_in(
            field,
            "targets",
            "at least one target needs a weight above 0",
        );
    }
    Ok((sums, total))
}

/// Weighted and least-loaded models draw by weight; bandits do not.
fn m_is_fixed(strategy: &Strategy) -> bool {
    matches!(strategy, Strategy::Weighted { .. } | Strategy::LeastLoaded)
}

fn compile_affinity(
    field: &str,
    dto: Option<AffinityDto>,
    targets: &[Target],
) -> Result<Option<u32>, Refusal> {
    let Some(a) = dto else { return Ok(None) };
    if !targets.iter().any(Target::picks_endpoint) {
        return err_in(
            field,
            "affinity",
            "needs a target that picks endpoints (`endpoints` or `observe_endpoints`)",
        );
    }
    check_range(
        field,
        "affinity.messages",
        Range::To,
        (1, u64::from(MAX_AFFINITY_MESSAGES)),
        u64::from(a.messages),
    )?;
    Ok(Some(a.messages))
}

const MAX_AFFINITY_MESSAGES: u32 = 64;
/// Most endpoints configured per target (the load document keeps at most `load::MAX_ENDPOINTS`).
const MAX_TARGET_ENDPOINTS: usize = 32;
// Its message says 32 in words, an unknown capability's lists CAPABILITIES (literals, not a
// `format!`; a test compares the list).
const _: () = assert!(MAX_TARGET_ENDPOINTS == 32 && CAPABILITIES.len() == 4);

fn compile_targets(
    field: &str,
    dtos: Vec<TargetDto>,
    weighted: bool,
    least_loaded: bool,
) -> Result<Vec<Target>, Refusal> {
    if dtos.is_empty() {
        return err_in(field, "targets", "at least one target is required");
    }
    let mut names = Names::default();
    let mut targets = Vec::with_capacity(dtos.len());
    for (ti, t) in dtos.into_iter().enumerate() {
        let tf = item_in(field, "targets", ti);
        names.add((&tf, "name"), &t.name, "target of this model", "target")?;
        targets.push(compile_target(&tf, t, weighted, least_loaded)?);
    }
    Ok(targets)
}

fn compile_target(
    tf: &str,
    t: TargetDto,
    weighted: bool,
    least_loaded: bool,
) -> Result<Target, Refusal> {
    if !is_cluster_name(&t.cluster) {
        return err_in(
            tf,
            "cluster",
            "must be a non-empty Envoy cluster name without spaces",
        );
    }
    check_load_fields(tf, &t)?;
    let weight = match (t.weight, weighted) {
        (Some(w), _) => {
            check_at_most(tf, "weight", MAX_WEIGHT.into(), w.into())?;
            w
        }
        (None, true) => return err_in(tf, "weight", "is required by the \"weighted\" strategy"),
        (None, false) if least_loaded => 1,
        (None, false) => 0,
    };
    let price = match t.price {
        None => Price::default(),
        Some(p) => Price {
            input_per_1k: check_weight(tf, "price.input_per_1k", p.input_per_1k)?,
            output_per_1k: check_weight(tf, "price.output_per_1k", p.output_per_1k)?,
        },
    };
    if let Some((ci, c)) =
        (t.capabilities.iter().enumerate()).find(|(_, c)| !CAPABILITIES.contains(&c.as_str()))
    {
        let reason = quoted_then(
            c,
            "is not a capability (vision, tools, json_mode, streaming)",
        );
        return err_with(item_in(tf, "capabilities", ci), reason);
    }
    if t.max_context_tokens == Some(0) {
        return err_in(tf, "max_context_tokens", "must be above 0");
    }
    if t.region.as_ref().is_some_and(String::is_empty) {
        return err_in(tf, "region", "must not be empty");
    }
    if t.tags.iter().any(String::is_empty) {
        return err_in(tf, "tags", "tags must not be empty");
    }
    Ok(Target {
        capacity: t.capacity,
        endpoints: t.endpoints,
        observe_endpoints: t.observe_endpoints,
        endpoint_capacity: t.endpoint_capacity,
        name: t.name,
        cluster: t.cluster,
        weight,
        price,
        capabilities: t.capabilities,
        max_context_tokens: t.max_context_tokens,
        region: t.region,
        tags: t.tags,
        rank: t.rank,
    })
}

/// Capacities above 0; endpoints as `ip:port`, each once; an endpoint capacity only where
/// endpoints are picked.
fn check_load_fields(tf: &str, t: &TargetDto) -> Result<(), Refusal> {
    for (name, value) in [
        ("capacity", t.capacity),
        ("endpoint_capacity", t.endpoint_capacity),
    ] {
        if value == Some(0) {
            return err_in(tf, name, "must be above 0");
        }
    }
    if t.endpoints.len() > MAX_TARGET_ENDPOINTS {
        return err_in(tf, "endpoints", "at most 32 endpoints");
    }
    for (i, e) in t.endpoints.iter().enumerate() {
        if !super::addr::is_socket_addr(e) {
            return err_with(item_in(tf, "endpoints", i), quoted_then(e, "is not an address `ip:port` (IPv6 as `[ip]:port`), the form Envoy's override_host policy matches"));
        }
        if t.endpoints.iter().take(i).any(|x| x == e) {
            return Err(listed_twice(item_in(tf, "endpoints", i), e));
        }
    }
    if t.endpoint_capacity.is_some() && t.endpoints.is_empty() && !t.observe_endpoints {
        return err_in(
            tf,
            "endpoint_capacity",
            "needs `endpoints` or `observe_endpoints`: the filter only limits endpoints it picks",
        );
    }
    Ok(())
}

fn compile_strategy(
    field: &str,
    dto: StrategyDto,
    targets: &[Target],
) -> Result<Strategy, Refusal> {
    let bandit = match dto {
        StrategyDto::Weighted { sticky } => {
            let sticky = sticky.map(|s| compile_sticky(field, s)).transpose()?;
            return Ok(Strategy::Weighted { sticky });
        }
        StrategyDto::LeastLoaded {} => return Ok(Strategy::LeastLoaded),
        StrategyDto::EpsilonGreedy {
            epsilon,
            decay,
            prior,
            min_share,
        } => (
            Algorithm::EpsilonGreedy { epsilon },
            decay,
            prior,
            min_share,
            None,
        ),
        StrategyDto::Thompson {
            decay,
            prior,
            min_share,
            change_detection,
        } => (
            Algorithm::Thompson,
            decay,
            prior,
            min_share,
            change_detection,
        ),
        StrategyDto::Ucb1 {
            decay,
            prior,
            min_share,
            change_detection,
        } => (Algorithm::Ucb1, decay, prior, min_share, change_detection),
        StrategyDto::LinUcb {
            features,
            alpha,
            ridge,
            decay,
            prior,
            min_share,
        } => {
            let field = child(field, "strategy");
            let features = compile_features(&field, &features)?;
            let dto = (
                Algorithm::LinUcb { alpha, ridge },
                decay,
                prior,
                min_share,
                None,
            );
            return compile_bandit_with(&field, dto, features, targets).map(Strategy::Bandit);
        }
    };
    let bandit = compile_bandit(&child(field, "strategy"), bandit, targets)?;
    Ok(Strategy::Bandit(bandit))
}

fn compile_sticky(field: &str, dto: StickyDto) -> Result<StickyKey, Refusal> {
    match dto {
        StickyDto::Header(h) => {
            check_header_name(field, "strategy.sticky.header", &h)?;
            Ok(StickyKey::Header(h))
        }
        StickyDto::Cookie(c) => {
            // Bytes, not chars: the bad ones are ASCII, and a char search links std's substring
            // searcher for the non-ASCII case.
            let bad = |b: u8| b.is_ascii_control() || b" ;=,".contains(&b);
            if c.is_empty() || c.bytes().any(bad) {
                return err_in(
                    field,
                    "strategy.sticky.cookie",
                    "must be a valid cookie name",
                );
            }
            Ok(StickyKey::Cookie(c))
        }
    }
}

/// A bandit strategy's algorithm and its optional decay, prior, minimum shares and change
/// detection.
type BanditDto = (
    Algorithm,
    Option<DecayDto>,
    Option<PriorDto>,
    Option<MinShareDto>,
    Option<ChangeDetectionDto>,
);

fn compile_bandit(
    field: &str,
    dto: BanditDto,
    targets: &[Target],
) -> Result<crate::bandit::Strategy, Refusal> {
    compile_bandit_with(field, dto, Vec::new(), targets)
}

/// `features` of a `linucb` strategy: each a known feature, each once.
fn compile_features(field: &str, names: &[String]) -> Result<Vec<crate::bandit::Feature>, Refusal> {
    use crate::bandit::context::MAX_FEATURES;
    if names.is_empty() || names.len() > MAX_FEATURES {
        return err_at(
            field,
            "features",
            format!(
                "must list 1 to {MAX_FEATURES} features, got {}",
                names.len()
            ),
        );
    }
    let mut out = Vec::with_capacity(names.len());
    for (i, name) in names.iter().enumerate() {
        let Some(f) = crate::bandit::Feature::parse(name) else {
            return err_with(item_in(field, "features", i), quoted_then(name, "is not a feature: prompt_tokens, max_tokens, tools, vision, json_mode, stream, tenant:<name> or path:</prefix>"));
        };
        if out.contains(&f) {
            return Err(listed_twice(item_in(field, "features", i), name));
        }
        out.push(f);
    }
    Ok(out)
}

fn compile_bandit_with(
    field: &str,
    (algorithm, decay, prior, min_share, change): BanditDto,
    features: Vec<crate::bandit::Feature>,
    targets: &[Target],
) -> Result<crate::bandit::Strategy, Refusal> {
    use crate::bandit::{Decay, Prior, Strategy as Bandit, StrategyParams};
    let mut params = StrategyParams::new(algorithm);
    params.features = features;
    params.decay = match decay {
        None => Decay::None,
        Some(DecayDto::Gamma(gamma)) => Decay::Discount { gamma },
        Some(DecayDto::HalfLife(observations)) => Decay::HalfLife { observations },
        Some(DecayDto::HalfLifeSeconds(seconds)) => Decay::HalfLifeSeconds { seconds },
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
            if let Some(name) = map.keys().find(|n| !targets.iter().any(|t| &t.name == *n)) {
                // `name` is the document's and may be empty: joined by `child`, not `err_in`.
                let field = child(&child(field, "min_share"), name);
                return err_with(field, "is not a target of this model");
            }
            (targets.iter())
                .map(|t| map.get(&t.name).copied().unwrap_or(0.0))
                .collect()
        }
    };
    params.change = change.map(|c| {
        let d = crate::bandit::ChangeParams::default();
        crate::bandit::ChangeParams {
            min_change: c.min_change.unwrap_or(d.min_change),
            false_alarm_rate: c.false_alarm_rate.unwrap_or(d.false_alarm_rate),
            warmup: c.warmup.unwrap_or(d.warmup),
        }
    });
    Bandit::new(params, targets.len()).map_err(|e| {
        let at = child(field, e.field);
        let field = match e.arm.and_then(|a| targets.get(a)) {
            Some(t) => child(&at, &t.name),
            None => at,
        };
        refusal(field, e.reason)
    })
}

fn compile_reward(field: &str, r: RewardDto) -> Result<RewardSettings, Refusal> {
    if let Some(h) = &r.header {
        check_header_name(field, "header", h)?;
    }
    if r.latency_target_ms == Some(0) {
        return err_in(field, "latency_target_ms", "must be above 0");
    }
    let evaluator = compile_evaluator(field, r.evaluator)?;
    Ok(RewardSettings {
        status: r.status,
        latency_target_ms: r.latency_target_ms,
        header: r.header,
        cost_weight: check_weight(field, "cost_weight", r.cost_weight)?,
        latency_weight: check_weight(field, "latency_weight", r.latency_weight)?,
        evaluator,
    })
}

fn compile_input_spec(field: &str, spec: Vec<InputSpecDto>) -> Result<Vec<InputSpec>, Refusal> {
    let mut out: Vec<InputSpec> = Vec::with_capacity(spec.len());
    for (ii, i) in spec.into_iter().enumerate() {
        let f = item(field, ii);
        if i.name.is_empty() || out.iter().any(|o| o.name == i.name) {
            return err_in(
                &f,
                "name",
                "must be a non-empty name, unique among the inputs",
            );
        }
        if !DATATYPES.contains(&i.datatype.as_str()) {
            // DATATYPES in words (a literal, not a `join` and a `format!`; a test compares them).
            let reason = quoted_then(&i.datatype, "is not a KServe v2 datatype (BOOL, UINT8, UINT16, UINT32, UINT64, INT8, INT16, INT32, INT64, FP16, FP32, FP64, BYTES)");
            return err_at(&f, "datatype", reason);
        }
        if i.shape.iter().any(|&d| d < -1) {
            return err_in(&f, "shape", "dimensions are sizes, or -1 for any size");
        }
        out.push(InputSpec {
            name: i.name,
            datatype: i.datatype,
            shape: i.shape,
        });
    }
    if out.is_empty() {
        return err(field, "must declare at least one input");
    }
    Ok(out)
}

/// Fallback target names → indices, each once.
fn compile_fallback(
    field: &str,
    names: &[String],
    targets: &[Target],
) -> Result<Vec<usize>, Refusal> {
    let mut fallback = Vec::with_capacity(names.len());
    for (fi, name) in names.iter().enumerate() {
        match targets.iter().position(|t| &t.name == name) {
            Some(i) if !fallback.contains(&i) => fallback.push(i),
            Some(_) => return Err(listed_twice(item_in(field, "fallback", fi), name)),
            None => {
                return err_with(
                    item_in(field, "fallback", fi),
                    quoted_then(name, "is not a target of this model"),
                )
            }
        }
    }
    Ok(fallback)
}

/// A `tenant:<name>` feature must name a configured tenant: another name never matches.
pub(super) fn check_tenant_features(
    models: &[Model],
    tenants: Option<&crate::config::Tenants>,
) -> Result<(), Refusal> {
    for (mi, m) in models.iter().enumerate() {
        let features = m.bandit().map_or(&[][..], |b| b.features());
        for (i, f) in features.iter().enumerate() {
            let crate::bandit::Feature::Tenant(name) = f else {
                continue;
            };
            if tenants.and_then(|t| t.by_name(name)).is_none() {
                return err_with(
                    item(&child(&item("models", mi), "strategy.features"), i),
                    format!("tenant {} is not in tenants.list", quoted(name)),
                );
            }
        }
    }
    Ok(())
}
