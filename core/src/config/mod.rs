//! Configuration: read (`read`, into the `dto` mirror of the JSON) → validate and compile
//! (`compile`) → the immutable runtime form defined here. The host calls [`parse`] once per plugin start; every request reads the result.

mod compile;
pub mod dto;
pub(crate) mod read;

pub use compile::parse;
pub use dto::{BodySource, OnInvalid, Unscanned};

use crate::payload::PointerSet;
use crate::vecmap::VecMap;

/// A configuration error: the field path (`models[0].targets[1].weight`) and why it is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub field: String,
    pub reason: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}", self.reason)
        } else {
            write!(f, "{}: {}", self.field, self.reason)
        }
    }
}

impl std::error::Error for ConfigError {}

/// The compiled configuration.
#[derive(Debug)]
pub struct Config {
    pub route_header: String,
    pub target_header: String,
    pub model_header: String,
    pub response_metadata: bool,
    pub body: BodySettings,
    pub default_model: Option<usize>,
    pub models: Vec<Model>,
    model_index: VecMap<String, usize>,
    pub rules: Vec<Rule>,
    /// Every body field that routing may read; index 0 is always `/model`.
    pub pointers: PointerSet,
    /// By pointer index: some condition compares the field as a number (decides how an
    /// untyped metadata value is read).
    pub numeric_pointers: Vec<bool>,
    /// Some rule replies with the request body, so a body may be needed whatever its type.
    pub has_echo: bool,
    /// Some rule has a `time_utc` condition (else the clock is not read per request).
    pub has_time_rules: bool,
    pub feedback: Option<FeedbackSettings>,
    pub state_endpoint: Option<StateEndpoint>,
    pub tenants: Option<Tenants>,
    /// Header carrying the region a request's data must stay in.
    pub residency_header: Option<String>,
    /// Sensitive-data detectors, by index (rules name them in `when.detected`).
    pub detectors: Vec<NamedDetector>,
    pub budget: Option<Budget>,
    pub shadows: Vec<Shadow>,
    /// Learning as one fleet (etcd); `None`: this Envoy learns alone.
    pub fleet: Option<FleetSettings>,
    /// How payloads are read for the detectors.
    pub scan: ScanSettings,
    /// Some rule or shadow has a `when.detected` condition: every request body must be
    /// scannable, whatever its method or type, or it is refused (`scan.unscanned`).
    pub has_detected_rules: bool,
    /// How load signals are read and the endpoint pick written (defaults when not configured).
    pub load: LoadSettings,
    /// A model registry polled for targets; `None`: targets are the configured ones only.
    pub registry: Option<crate::registry::RegistrySettings>,
}

/// The ORCA form asked of upstreams with `endpoint-load-metrics-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrcaFormat {
    Text,
    Json,
    /// Not asked (upstreams that report anyway are still read).
    None,
}

impl OrcaFormat {
    pub fn header_value(self) -> Option<&'static str> {
        match self {
            OrcaFormat::Text => Some("TEXT"),
            OrcaFormat::Json => Some("JSON"),
            OrcaFormat::None => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct LoadSettings {
    /// The request header Envoy's `override_host` policy reads the endpoint from.
    pub endpoint_header: String,
    pub orca_format: OrcaFormat,
    /// Load reports older than this are ignored.
    pub stale_ms: u64,
    /// `Retry-After` of the 503 answered when every candidate is at capacity.
    pub retry_after_seconds: u32,
}

#[derive(Debug, Clone, Copy)]
pub struct ScanSettings {
    /// Text read from a payload at most; more is "not scanned completely".
    pub max_bytes: usize,
    pub unscanned: Unscanned,
}

/// Where and how often the replicas of a fleet exchange what they learned.
#[derive(Debug, Clone)]
pub struct FleetSettings {
    /// The Envoy cluster of etcd's v3 JSON gateway, and the `:authority` sent to it.
    pub cluster: String,
    pub authority: String,
    /// Every key of this plugin starts with this (no trailing `/`).
    pub prefix: String,
    pub sync_ms: u32,
    pub timeout_ms: u32,
    /// This replica's id; `None`: derived from the node id and a per-start random part.
    pub replica: Option<String>,
    /// A replica not heard from for this long is retired (its contribution folded in).
    pub retire_after_ms: u64,
    /// Requests wait (at most `timeout_ms`) for the fleet's view after a replica starts.
    pub warm_start: bool,
    pub auth: Option<EtcdAuth>,
}

/// etcd user credentials (`/v3/auth/authenticate`).
#[derive(Clone)]
pub struct EtcdAuth {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for EtcdAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "EtcdAuth({}, <password>)",
            crate::quote::quoted(&self.username)
        )
    }
}

impl Condition {
    /// Evaluation order: header-phase facts first, body reads last, prompt scans after that.
    pub fn cost(&self) -> u8 {
        match self {
            Condition::Method(_) | Condition::PathPrefix(_) => 0,
            Condition::Header { .. } | Condition::TimeUtc { .. } => 1,
            Condition::Tenant(_) | Condition::Tier(_) => 2,
            Condition::Body { .. } => 3,
            Condition::Detected(_) => 4,
        }
    }
}

impl Config {
    /// Whether some decision may need the OpenAI request summary (capabilities, detectors).
    pub fn needs_summary(&self, model: Option<usize>) -> bool {
        !self.detectors.is_empty()
            || self.budget.is_some()
            || match model {
                Some(m) => self.models.get(m).is_some_and(|m| m.capability_routing),
                None => self.models.iter().any(|m| m.capability_routing),
            }
    }
}

#[derive(Debug)]
pub struct NamedDetector {
    pub name: String,
    pub detector: crate::inspect::detect::Detector,
}

#[derive(Debug)]
pub enum ValueSource {
    Header(String),
    Jwt {
        namespace: String,
        payload_key: String,
        claim: String,
    },
}

#[derive(Debug)]
pub struct Tenants {
    pub source: ValueSource,
    pub required: bool,
    pub list: Vec<Tenant>,
}

impl Tenants {
    pub fn by_name(&self, name: &str) -> Option<usize> {
        self.list.iter().position(|t| t.name == name)
    }
}

#[derive(Debug)]
pub struct Tenant {
    pub name: String,
    pub tier: Option<String>,
    pub region: Option<String>,
    pub default_model: Option<usize>,
    /// By model index; `None` for the whole field: every model and target is allowed.
    pub allow: Option<Vec<ModelAllow>>,
}

impl Tenant {
    pub fn model_allowed(&self, model: usize) -> bool {
        match &self.allow {
            None => true,
            Some(per_model) => !matches!(per_model.get(model), None | Some(ModelAllow::Denied)),
        }
    }

    pub fn target_allowed(&self, model: usize, target: usize) -> bool {
        match &self.allow {
            None => true,
            Some(per_model) => match per_model.get(model) {
                None | Some(ModelAllow::Denied) => false,
                Some(ModelAllow::All) => true,
                Some(ModelAllow::Targets(ts)) => ts.contains(&target),
            },
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelAllow {
    Denied,
    All,
    Targets(Vec<usize>),
}

#[derive(Debug)]
pub struct Budget {
    pub cost_header: String,
    pub latency_header: String,
    pub escalate_header: String,
    pub default_output_tokens: u64,
    /// The three names are claims of this verified JWT payload, not client headers.
    pub jwt: Option<JwtPayload>,
}

/// Where Envoy's `jwt_authn` filter put a verified token's payload (dynamic metadata).
#[derive(Debug, Clone)]
pub struct JwtPayload {
    pub namespace: String,
    pub payload_key: String,
}

/// Mirrors a share of a model's requests to a shadow target, from the root context.
#[derive(Debug)]
pub struct Shadow {
    pub model: usize,
    pub when: Vec<Condition>,
    pub target: usize,
    /// Share of matching requests mirrored, in `(0, 100]`.
    pub percent: f64,
    pub rewrite_model: Option<String>,
    pub timeout_ms: u32,
}

/// An external router speaking Seldon's router API.
#[derive(Debug, Clone)]
pub struct ExternalRouter {
    pub cluster: String,
    pub path: String,
    pub authority: String,
    pub timeout_ms: u32,
    pub feedback_path: Option<String>,
}

#[derive(Debug, Clone)]
pub struct FanOut {
    pub timeout_ms: u32,
}

/// Capabilities a target may declare.
pub const CAPABILITIES: [&str; 4] = ["vision", "tools", "json_mode", "streaming"];

/// Explicit rewards: the path the filter answers, and how decision ids are signed.
#[derive(Debug)]
pub struct FeedbackSettings {
    pub path: String,
    pub keys: crate::feedback::TokenKeys,
    pub ttl_seconds: u64,
    /// Decisions are bound to who asked; `None`: whoever holds a decision id may reward it.
    pub bind: Option<Bind>,
    /// Principals that may reward any decision, exempt from the budget.
    pub evaluators: Vec<String>,
    pub budget_per_minute: Option<u32>,
    /// Ids one spent-id shard holds (`max_accepted_per_hour` / shards).
    pub spent_per_shard: usize,
}

/// Where the principal of a request comes from (`feedback.bind`).
#[derive(Debug)]
pub enum Bind {
    /// The request's tenant, when it is a configured one.
    Tenant,
    Value(ValueSource),
}

/// The read-only state endpoint.
#[derive(Debug)]
pub struct StateEndpoint {
    pub path: String,
    /// `None` only when declared public.
    pub token: Option<String>,
}

impl Config {
    pub fn model_by_name(&self, name: &str) -> Option<usize> {
        self.model_index.get(name).copied()
    }
}

#[derive(Debug, Clone)]
pub struct BodySettings {
    pub source: BodySource,
    pub max_bytes: u64,
    pub on_invalid: OnInvalid,
    pub metadata_namespace: String,
}

#[derive(Debug)]
pub struct Model {
    pub name: String,
    pub targets: Vec<Target>,
    pub strategy: Strategy,
    pub default_target: usize,
    /// Running sums of the weights, for a binary search of a draw in `[0, total_weight)`.
    pub cumulative_weights: Vec<u64>,
    pub total_weight: u64,
    /// Rewards computed from responses (bandit models only).
    pub reward: Option<RewardSettings>,
    /// KServe v2 inputs requests must match.
    pub input_spec: Option<Vec<crate::inspect::kserve::InputSpec>>,
    /// Target indices to try, in order, when the chosen one is cooling down or failed.
    pub fallback: Vec<usize>,
    pub cooldown_seconds: u64,
    /// Retry a failed non-streamed request on the next fallback target, by callout.
    pub retry: bool,
    pub router: Option<ExternalRouter>,
    pub fan_out: Option<FanOut>,
    /// Some target declares capabilities or a context size: requests are matched to them.
    pub capability_routing: bool,
    /// Prefix affinity: messages (after the system prompt) that choose the endpoint.
    pub affinity: Option<u32>,
    /// In-flight requests, latency and load reports are tracked (`crate::load`): the strategy
    /// is `least_loaded` or some target has a capacity or endpoints.
    pub tracks_load: bool,
}

impl Model {
    pub fn bandit(&self) -> Option<&crate::bandit::Strategy> {
        match &self.strategy {
            Strategy::Bandit(b) => Some(b),
            Strategy::Weighted { .. } | Strategy::LeastLoaded => None,
        }
    }

    pub fn target_names(&self) -> Vec<&str> {
        self.targets.iter().map(|t| t.name.as_str()).collect()
    }
}

#[derive(Debug, Clone)]
pub struct RewardSettings {
    /// 5xx and 429 are failures (quality 0), anything else success (quality 1).
    pub status: bool,
    /// Slower than this (to the response headers) counts as a failure.
    pub latency_target_ms: Option<u64>,
    /// An upstream response header carrying the quality in `[0, 1]`.
    pub header: Option<String>,
    /// λ: reward lost per unit of cost (target prices × token usage).
    pub cost_weight: f64,
    /// μ: reward lost per second of latency.
    pub latency_weight: f64,
    pub evaluator: Option<Evaluator>,
}

#[derive(Debug, Clone)]
pub struct Evaluator {
    pub cluster: String,
    pub path: String,
    pub authority: String,
    pub timeout_ms: u32,
}

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Price {
    pub input_per_1k: f64,
    pub output_per_1k: f64,
}

impl Price {
    /// Cost of a request: tokens per 1,000 × these prices. The one formula for the budget's
    /// estimate (before) and the implicit reward's cost (after, from the reported usage).
    pub fn cost(&self, prompt_tokens: u64, output_tokens: u64) -> f64 {
        prompt_tokens as f64 / 1000.0 * self.input_per_1k
            + output_tokens as f64 / 1000.0 * self.output_per_1k
    }
}

impl Model {
    pub fn is_bandit(&self) -> bool {
        self.bandit().is_some()
    }

    pub fn target_by_name(&self, name: &str) -> Option<usize> {
        self.targets.iter().position(|t| t.name == name)
    }
}

#[derive(Debug)]
pub struct Target {
    pub name: String,
    pub cluster: String,
    pub weight: u32,
    pub price: Price,
    pub capabilities: Vec<String>,
    pub max_context_tokens: Option<u64>,
    pub region: Option<String>,
    pub tags: Vec<String>,
    pub rank: u32,
    /// Most requests in flight at once; `None`: unbounded.
    pub capacity: Option<u32>,
    /// Endpoints (`ip:port`) the filter picks from, as configured.
    pub endpoints: Vec<String>,
    /// Endpoints seen answering join the configured ones.
    pub observe_endpoints: bool,
    pub endpoint_capacity: Option<u32>,
}

impl Target {
    /// The filter chooses the endpoint inside this target's cluster.
    pub fn picks_endpoint(&self) -> bool {
        !self.endpoints.is_empty() || self.observe_endpoints
    }

    pub fn has_capability(&self, c: &str) -> bool {
        self.capabilities.iter().any(|x| x == c)
    }
}

#[derive(Debug)]
pub enum Strategy {
    Weighted {
        sticky: Option<StickyKey>,
    },
    /// Two candidates drawn by weight; the lower load score serves (`crate::load::score`).
    LeastLoaded,
    Bandit(crate::bandit::Strategy),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StickyKey {
    Header(String),
    Cookie(String),
}

#[derive(Debug)]
pub struct Rule {
    pub name: String,
    /// Conditions, cheapest first: a body condition is only reached when the others hold.
    pub when: Vec<Condition>,
    pub then: Action,
}

#[derive(Debug)]
pub enum Condition {
    Method(Vec<String>),
    PathPrefix(String),
    Header {
        name: String,
        test: HeaderTest,
    },
    TimeUtc {
        from_minute: u32,
        to_minute: u32,
    },
    Tenant(Vec<String>),
    Tier(Vec<String>),
    /// Any of these detectors (indices into `Config::detectors`) fired.
    Detected(Vec<usize>),
    Body {
        pointer: usize,
        test: BodyTest,
    },
}

#[derive(Debug)]
pub enum HeaderTest {
    Exact(String),
    Prefix(String),
    Present(bool),
}

#[derive(Debug)]
pub enum BodyTest {
    Exact(crate::json::Value),
    OneOf(Vec<crate::json::Value>),
    Present(bool),
    Range { gt: Option<f64>, lt: Option<f64> },
}

#[derive(Debug)]
pub enum Action {
    /// Pin a model and/or a target. `TargetPin::Named` applies to whichever model the request
    /// addresses; the rule matches only if that model has such a target.
    Pin {
        model: Option<usize>,
        target: TargetPin,
    },
    Reply {
        status: u16,
        body: ReplyBody,
    },
    Reject {
        status: u16,
        message: String,
    },
    /// Keep only targets in `region` and carrying every tag; the strategy picks among them.
    Restrict {
        region: Option<String>,
        tags: Vec<String>,
    },
}

#[derive(Debug)]
pub enum TargetPin {
    None,
    Index(usize),
    Named(String),
}

#[derive(Debug)]
pub enum ReplyBody {
    Echo,
    Json(Vec<u8>),
    Empty,
}
