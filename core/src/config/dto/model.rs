//! A model as written: its targets, strategy, reward, input spec and callouts.

use crate::vecmap::VecMap;

use crate::json::Value;

use super::default_true;
use crate::config::read::{
    invalid_type, missing_field, newtype_variant, read_fields, read_struct, unknown_variant, At,
    FromJson, Shape, Slot,
};
use crate::config::ConfigError;

#[derive(Debug)]
pub struct ModelDto {
    pub name: String,
    pub targets: Vec<TargetDto>,
    pub strategy: StrategyDto,
    pub default_target: Option<String>,
    pub reward: Option<RewardDto>,
    pub input_spec: Option<Vec<InputSpecDto>>,
    pub fallback: Vec<String>,
    pub cooldown_seconds: u64,
    pub retry: bool,
    pub router: Option<RouterDto>,
    pub fan_out: Option<FanOutDto>,
    /// Keeps a conversation on the endpoint whose KV cache holds its prefix.
    pub affinity: Option<AffinityDto>,
}

read_struct!(ModelDto {
    name: req,
    targets: req,
    strategy: or_default,
    default_target: or_default,
    reward: or_default,
    input_spec: or_default,
    fallback: or_default,
    cooldown_seconds: or(default_cooldown),
    retry: or_default,
    router: or_default,
    fan_out: or_default,
    affinity: or_default,
});

fn default_cooldown() -> u64 {
    30
}

/// Prefix affinity: the system prompt and the first `messages` messages choose the endpoint.
#[derive(Debug)]
pub struct AffinityDto {
    pub messages: u32,
}

read_struct!(AffinityDto {
    messages: or(default_affinity_messages),
});

fn default_affinity_messages() -> u32 {
    2
}

#[derive(Debug)]
pub struct InputSpecDto {
    pub name: String,
    pub datatype: String,
    pub shape: Vec<i64>,
}

read_struct!(InputSpecDto {
    name: req,
    datatype: req,
    shape: req,
});

/// An external router speaking Seldon's router API.
#[derive(Debug)]
pub struct RouterDto {
    pub cluster: String,
    pub path: String,
    pub authority: Option<String>,
    pub timeout_ms: u32,
    /// Where rewards are forwarded (Seldon's `/send-feedback`); none: not forwarded.
    pub feedback_path: Option<String>,
}

read_struct!(RouterDto {
    cluster: req,
    path: or(default_route_path),
    authority: or_default,
    timeout_ms: or(default_router_timeout),
    feedback_path: or_default,
});

fn default_route_path() -> String {
    "/route".into()
}
fn default_router_timeout() -> u32 {
    200
}

#[derive(Debug)]
pub struct FanOutDto {
    pub timeout_ms: u32,
}

read_struct!(FanOutDto {
    timeout_ms: or(default_fan_out_timeout),
});

fn default_fan_out_timeout() -> u32 {
    5000
}

#[derive(Debug)]
pub struct TargetDto {
    pub name: String,
    pub cluster: String,
    pub weight: Option<u32>,
    pub price: Option<PriceDto>,
    pub capabilities: Vec<String>,
    pub max_context_tokens: Option<u64>,
    pub region: Option<String>,
    pub tags: Vec<String>,
    /// Strength for escalation: the highest rank serves an escalated request.
    pub rank: u32,
    /// Most requests in flight to this target at once (all workers of this Envoy).
    pub capacity: Option<u32>,
    /// Endpoints (`ip:port`) inside the target's cluster the filter picks from (Envoy's
    /// `override_host` load-balancing policy reads the pick from `load.endpoint_header`).
    pub endpoints: Vec<String>,
    /// Endpoints seen answering (`upstream.address`) join `endpoints`.
    pub observe_endpoints: bool,
    /// Most requests in flight to one endpoint of this target.
    pub endpoint_capacity: Option<u32>,
}

read_struct!(TargetDto {
    name: req,
    cluster: req,
    weight: or_default,
    price: or_default,
    capabilities: or_default,
    max_context_tokens: or_default,
    region: or_default,
    tags: or_default,
    rank: or_default,
    capacity: or_default,
    endpoints: or_default,
    observe_endpoints: or_default,
    endpoint_capacity: or_default,
});

#[derive(Debug)]
pub struct PriceDto {
    pub input_per_1k: f64,
    pub output_per_1k: f64,
}

read_struct!(PriceDto {
    input_per_1k: or_default,
    output_per_1k: or_default,
});

/// Rewards the filter computes from the responses it sees (and, optionally, an evaluator).
#[derive(Debug)]
pub struct RewardDto {
    pub status: bool,
    pub latency_target_ms: Option<u64>,
    pub header: Option<String>,
    pub cost_weight: f64,
    pub latency_weight: f64,
    pub evaluator: Option<EvaluatorDto>,
}

read_struct!(RewardDto {
    status: or(default_true),
    latency_target_ms: or_default,
    header: or_default,
    cost_weight: or_default,
    latency_weight: or_default,
    evaluator: or_default,
});

#[derive(Debug)]
pub struct EvaluatorDto {
    pub cluster: String,
    pub path: String,
    pub authority: Option<String>,
    pub timeout_ms: u32,
}

read_struct!(EvaluatorDto {
    cluster: req,
    path: or(default_evaluator_path),
    authority: or_default,
    timeout_ms: or(default_evaluator_timeout),
});

fn default_evaluator_path() -> String {
    "/evaluate".into()
}
fn default_evaluator_timeout() -> u32 {
    1000
}

/// Written `{"type": "thompson", ...}`: the variant's fields sit beside its `type`.
#[derive(Debug)]
pub enum StrategyDto {
    Weighted {
        sticky: Option<StickyDto>,
    },
    /// Power of two choices over the load score (`crate::load`).
    LeastLoaded {},
    EpsilonGreedy {
        epsilon: f64,
        decay: Option<DecayDto>,
        prior: Option<PriorDto>,
        min_share: Option<MinShareDto>,
    },
    Thompson {
        decay: Option<DecayDto>,
        prior: Option<PriorDto>,
        min_share: Option<MinShareDto>,
        change_detection: Option<ChangeDetectionDto>,
    },
    Ucb1 {
        decay: Option<DecayDto>,
        prior: Option<PriorDto>,
        min_share: Option<MinShareDto>,
        change_detection: Option<ChangeDetectionDto>,
    },
    /// LinUCB over the request's `features` (`crate::bandit::contextual`).
    LinUcb {
        features: Vec<String>,
        alpha: f64,
        ridge: f64,
        decay: Option<DecayDto>,
        prior: Option<PriorDto>,
        min_share: Option<MinShareDto>,
    },
}

impl Default for StrategyDto {
    fn default() -> Self {
        StrategyDto::Weighted { sticky: None }
    }
}

const STRATEGIES: &[&str] = &[
    "weighted",
    "least_loaded",
    "epsilon_greedy",
    "thompson",
    "ucb1",
    "linucb",
];
/// The fields Thompson and UCB1 take (epsilon-greedy: the first three and `epsilon`).
const WATCHED: &[&str] = &["decay", "prior", "min_share", "change_detection"];

/// A variant's fields (beside its `type`), as serde called the variant.
const fn variant(
    what: &'static str,
    names: &'static [&'static str],
    required: &'static [bool],
) -> Shape {
    Shape {
        what,
        names,
        required,
        tag: Some("type"),
    }
}

const WEIGHTED: Shape = variant("struct variant StrategyDto::Weighted", &["sticky"], &[]);
const LEAST_LOADED: Shape = variant("struct variant StrategyDto::LeastLoaded", &[], &[]);
const EPSILON_GREEDY: Shape = variant(
    "struct variant StrategyDto::EpsilonGreedy",
    &["epsilon", "decay", "prior", "min_share"],
    &[true],
);
const THOMPSON: Shape = variant("struct variant StrategyDto::Thompson", WATCHED, &[]);
const UCB1: Shape = variant("struct variant StrategyDto::Ucb1", WATCHED, &[]);
const LINUCB: Shape = variant(
    "struct variant StrategyDto::LinUcb",
    &["features", "alpha", "ridge", "decay", "prior", "min_share"],
    &[true],
);

impl FromJson for StrategyDto {
    fn from_json(v: &Value, at: &At<'_>) -> Result<Self, ConfigError> {
        let (kind, kind_at) = strategy_type(v, at)?;
        // Every variant's fields, read into these (the defaults of those left out).
        let (mut decay, mut prior, mut min_share, mut change_detection) = (None, None, None, None);
        let mut sticky = None;
        let (mut epsilon, mut alpha, mut ridge) =
            (0.0, default_linucb_alpha(), default_linucb_ridge());
        let mut features = Vec::new();
        let (shape, slots): (&Shape, &mut [&mut dyn Slot]) = match kind {
            "weighted" => (&WEIGHTED, &mut [&mut sticky]),
            "least_loaded" => (&LEAST_LOADED, &mut []),
            "epsilon_greedy" => (
                &EPSILON_GREEDY,
                &mut [&mut epsilon, &mut decay, &mut prior, &mut min_share],
            ),
            "thompson" | "ucb1" => (
                if kind == "thompson" { &THOMPSON } else { &UCB1 },
                &mut [
                    &mut decay,
                    &mut prior,
                    &mut min_share,
                    &mut change_detection,
                ],
            ),
            "linucb" => (
                &LINUCB,
                &mut [
                    &mut features,
                    &mut alpha,
                    &mut ridge,
                    &mut decay,
                    &mut prior,
                    &mut min_share,
                ],
            ),
            other => return Err(unknown_variant(&kind_at, other, STRATEGIES)),
        };
        read_fields(v, at, shape, slots)?;
        Ok(match kind {
            "weighted" => StrategyDto::Weighted { sticky },
            "least_loaded" => StrategyDto::LeastLoaded {},
            "epsilon_greedy" => StrategyDto::EpsilonGreedy {
                epsilon,
                decay,
                prior,
                min_share,
            },
            "thompson" => StrategyDto::Thompson {
                decay,
                prior,
                min_share,
                change_detection,
            },
            "ucb1" => StrategyDto::Ucb1 {
                decay,
                prior,
                min_share,
                change_detection,
            },
            _ => StrategyDto::LinUcb {
                features,
                alpha,
                ridge,
                decay,
                prior,
                min_share,
            },
        })
    }
}

fn default_linucb_alpha() -> f64 {
    1.0
}
fn default_linucb_ridge() -> f64 {
    1.0
}

/// The strategy's `type`, and where it is: a key, or the first value of the positional form
/// serde took too.
fn strategy_type<'v, 'a>(v: &'v Value, at: &'a At<'_>) -> Result<(&'v str, At<'a>), ConfigError> {
    let (tag, tag_at) = match v {
        Value::Object(map) => (map.get("type"), at.key("type")),
        Value::Array(values) => (values.first(), at.index(0)),
        other => {
            return Err(invalid_type(
                other,
                at,
                "internally tagged enum StrategyDto",
            ))
        }
    };
    match tag {
        Some(Value::String(kind)) => Ok((kind, tag_at)),
        Some(other) => Err(invalid_type(other, &tag_at, "variant identifier")),
        None => Err(missing_field(at, "type")),
    }
}

/// Written `{"gamma": 0.99}`.
#[derive(Debug)]
pub enum DecayDto {
    Gamma(f64),
    HalfLife(f64),
    HalfLifeSeconds(f64),
}

impl FromJson for DecayDto {
    fn from_json(v: &Value, at: &At<'_>) -> Result<Self, ConfigError> {
        let variants = &["gamma", "half_life", "half_life_seconds"];
        Ok(match newtype_variant(v, at, variants)? {
            ("gamma", x) => DecayDto::Gamma(x),
            ("half_life", x) => DecayDto::HalfLife(x),
            (_, x) => DecayDto::HalfLifeSeconds(x),
        })
    }
}

/// `{"min_change": 0.1, "false_alarm_rate": 1e-6, "warmup": 30}`, each optional.
#[derive(Debug, Default)]
pub struct ChangeDetectionDto {
    pub min_change: Option<f64>,
    pub false_alarm_rate: Option<f64>,
    pub warmup: Option<u32>,
}

read_struct!(ChangeDetectionDto {
    min_change: or_default,
    false_alarm_rate: or_default,
    warmup: or_default,
});

#[derive(Debug)]
pub struct PriorDto {
    pub alpha: f64,
    pub beta: f64,
}

read_struct!(PriorDto {
    alpha: req,
    beta: req,
});

/// One floor for every target, or a floor per target name.
#[derive(Debug)]
pub enum MinShareDto {
    All(f64),
    PerTarget(VecMap<String, f64>),
}

impl FromJson for MinShareDto {
    fn from_json(v: &Value, at: &At<'_>) -> Result<Self, ConfigError> {
        if let Some(x) = v.as_f64() {
            return Ok(MinShareDto::All(x));
        }
        VecMap::from_json(v, at)
            .map(MinShareDto::PerTarget)
            .map_err(|_| at.error("data did not match any variant of untagged enum MinShareDto"))
    }
}

/// Written `{"header": "x-user"}` or `{"cookie": "session"}`.
#[derive(Debug)]
pub enum StickyDto {
    Header(String),
    Cookie(String),
}

impl FromJson for StickyDto {
    fn from_json(v: &Value, at: &At<'_>) -> Result<Self, ConfigError> {
        Ok(match newtype_variant(v, at, &["header", "cookie"])? {
            ("header", name) => StickyDto::Header(name),
            (_, name) => StickyDto::Cookie(name),
        })
    }
}
