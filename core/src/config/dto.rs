//! The configuration as users write it: a serde mirror of the JSON document, nothing more.
//! Every struct denies unknown fields so a typo is an error, not a silently ignored setting.
//! `compile` turns this into the runtime form after validating it.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer};
use serde_json::Value;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigDto {
    #[serde(default = "default_route_header")]
    pub route_header: String,
    #[serde(default = "default_target_header")]
    pub target_header: String,
    #[serde(default = "default_model_header")]
    pub model_header: String,
    #[serde(default = "default_true")]
    pub response_metadata: bool,
    #[serde(default)]
    pub body: BodyDto,
    #[serde(default)]
    pub default_model: Option<String>,
    pub models: Vec<ModelDto>,
    #[serde(default)]
    pub rules: Vec<RuleDto>,
    #[serde(default)]
    pub feedback: Option<FeedbackDto>,
    #[serde(default)]
    pub state_endpoint: Option<StateEndpointDto>,
    #[serde(default)]
    pub tenants: Option<TenantsDto>,
    #[serde(default)]
    pub residency: Option<ResidencyDto>,
    #[serde(default)]
    pub detectors: Vec<DetectorDto>,
    #[serde(default)]
    pub budget: Option<BudgetDto>,
    #[serde(default)]
    pub shadows: Vec<ShadowDto>,
    #[serde(default)]
    pub fleet: Option<FleetDto>,
    #[serde(default)]
    pub scan: Option<ScanDto>,
    /// Live load signals: endpoint header, ORCA form, staleness (`crate::load`).
    #[serde(default)]
    pub load: Option<LoadDto>,
    /// A model registry polled for targets (`crate::registry`).
    #[serde(default)]
    pub registry: Option<crate::registry::RegistryDto>,
}

/// How payloads are read for the sensitive-data detectors (`when.detected`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScanDto {
    #[serde(default = "default_scan_max_bytes")]
    pub max_bytes: u64,
    #[serde(default)]
    pub unscanned: Unscanned,
}

pub const DEFAULT_SCAN_MAX_BYTES: u64 = 256 * 1024;

fn default_scan_max_bytes() -> u64 {
    DEFAULT_SCAN_MAX_BYTES
}

/// What a rule with `when.detected` does with a request whose payload could not be read
/// completely.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Unscanned {
    /// Refuse it (the default: nothing passes a sensitive-data rule unread).
    #[default]
    Refuse,
    /// Let it through as if no detector fired: a bypass, counted.
    Bypass,
}

/// Learning as one fleet through etcd's v3 JSON gateway.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetDto {
    pub cluster: String,
    #[serde(default = "default_fleet_prefix")]
    pub prefix: String,
    #[serde(default = "default_sync_ms")]
    pub sync_ms: u32,
    #[serde(default)]
    pub timeout_ms: Option<u32>,
    #[serde(default)]
    pub authority: Option<String>,
    #[serde(default)]
    pub replica: Option<String>,
    #[serde(default = "default_retire_after")]
    pub retire_after_seconds: u64,
    #[serde(default = "default_true")]
    pub warm_start: bool,
    #[serde(default)]
    pub auth: Option<FleetAuthDto>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetAuthDto {
    pub username: String,
    pub password: String,
}

fn default_fleet_prefix() -> String {
    "/inference-router".into()
}
fn default_sync_ms() -> u32 {
    1000
}
fn default_retire_after() -> u64 {
    600
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantsDto {
    #[serde(default)]
    pub header: Option<String>,
    #[serde(default)]
    pub jwt: Option<JwtClaimDto>,
    /// A request without a known tenant is refused (403).
    #[serde(default)]
    pub required: bool,
    pub list: Vec<TenantDto>,
}

/// A claim that Envoy's `jwt_authn` filter put in dynamic metadata (`payload_in_metadata`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtClaimDto {
    #[serde(default = "default_jwt_namespace")]
    pub namespace: String,
    pub payload_key: String,
    pub claim: String,
}

fn default_jwt_namespace() -> String {
    "envoy.filters.http.jwt_authn".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantDto {
    pub name: String,
    #[serde(default)]
    pub tier: Option<String>,
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default)]
    pub default_model: Option<String>,
    /// Model → allowed targets (an empty list allows every target). Absent: every model.
    #[serde(default)]
    pub allow: Option<BTreeMap<String, Vec<String>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResidencyDto {
    #[serde(default)]
    pub header: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetectorDto {
    pub name: String,
    #[serde(default)]
    pub builtin: Option<String>,
    #[serde(default)]
    pub regex: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetDto {
    #[serde(default = "default_cost_header")]
    pub cost_header: String,
    #[serde(default = "default_latency_header")]
    pub latency_header: String,
    #[serde(default = "default_escalate_header")]
    pub escalate_header: String,
    /// Output tokens assumed when a request does not say `max_tokens`.
    #[serde(default = "default_output_tokens")]
    pub default_output_tokens: u64,
    /// Read the three values from claims of this verified JWT payload (named as the three
    /// `*_header` fields) instead of from the client's headers.
    #[serde(default)]
    pub jwt: Option<JwtPayloadDto>,
}

/// A JWT payload Envoy's `jwt_authn` filter put in dynamic metadata (`payload_in_metadata`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtPayloadDto {
    #[serde(default = "default_jwt_namespace")]
    pub namespace: String,
    pub payload_key: String,
}

fn default_cost_header() -> String {
    "x-max-cost".into()
}
fn default_latency_header() -> String {
    "x-latency-budget-ms".into()
}
fn default_escalate_header() -> String {
    "x-escalate".into()
}
fn default_output_tokens() -> u64 {
    256
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShadowDto {
    pub model: String,
    #[serde(default)]
    pub when: WhenDto,
    pub target: String,
    pub percent: f64,
    #[serde(default)]
    pub rewrite_model: Option<String>,
    #[serde(default = "default_shadow_timeout")]
    pub timeout_ms: u32,
}

fn default_shadow_timeout() -> u32 {
    5000
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedbackDto {
    #[serde(default = "default_feedback_path")]
    pub path: String,
    /// One key (id `k0`); or `signing_keys`.
    #[serde(default)]
    pub signing_key: Option<String>,
    /// The first signs, every one verifies.
    #[serde(default)]
    pub signing_keys: Option<Vec<SigningKeyDto>>,
    #[serde(default = "default_ttl")]
    pub ttl_seconds: u64,
    /// Who asked: a decision is bound to it, and only it (or an evaluator) may reward it.
    #[serde(default)]
    pub bind: Option<BindDto>,
    /// Principals that may reward any decision (and are not held to the budget).
    #[serde(default)]
    pub evaluators: Vec<String>,
    /// Rewards accepted per principal per minute on one Envoy.
    #[serde(default)]
    pub budget_per_minute: Option<u32>,
    /// Decision ids one Envoy accepts per hour of expiry; past it feedback is refused (503).
    #[serde(default = "default_max_accepted_per_hour")]
    pub max_accepted_per_hour: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SigningKeyDto {
    pub id: String,
    pub key: String,
}

/// Where a feedback principal comes from: exactly one field.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BindDto {
    #[serde(default)]
    pub header: Option<String>,
    #[serde(default)]
    pub jwt: Option<JwtClaimDto>,
    /// The request's tenant (`tenants`), when it is a configured one.
    #[serde(default)]
    pub tenant: bool,
}

pub const DEFAULT_MAX_ACCEPTED_PER_HOUR: u64 = 262_144;

fn default_max_accepted_per_hour() -> u64 {
    DEFAULT_MAX_ACCEPTED_PER_HOUR
}

fn default_feedback_path() -> String {
    "/feedback".into()
}
fn default_ttl() -> u64 {
    3600
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateEndpointDto {
    pub path: String,
    #[serde(default)]
    pub token: Option<String>,
    /// No token: anyone who reaches the path may read the state.
    #[serde(default)]
    pub public: bool,
}

fn default_route_header() -> String {
    "x-inference-cluster".into()
}
fn default_target_header() -> String {
    "x-inference-target".into()
}
fn default_model_header() -> String {
    "x-model".into()
}
fn default_true() -> bool {
    true
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum BodySource {
    #[default]
    Buffer,
    Metadata,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum OnInvalid {
    #[default]
    Reject,
    Default,
}

pub const DEFAULT_MAX_BODY_BYTES: u64 = 1024 * 1024;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BodyDto {
    #[serde(default)]
    pub source: BodySource,
    #[serde(default = "default_max_bytes")]
    pub max_bytes: u64,
    #[serde(default)]
    pub on_invalid: OnInvalid,
    #[serde(default = "default_metadata_namespace")]
    pub metadata_namespace: String,
}

fn default_max_bytes() -> u64 {
    DEFAULT_MAX_BODY_BYTES
}
fn default_metadata_namespace() -> String {
    "inference-router".into()
}

impl Default for BodyDto {
    fn default() -> Self {
        BodyDto {
            source: BodySource::default(),
            max_bytes: DEFAULT_MAX_BODY_BYTES,
            on_invalid: OnInvalid::default(),
            metadata_namespace: default_metadata_namespace(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelDto {
    pub name: String,
    pub targets: Vec<TargetDto>,
    #[serde(default)]
    pub strategy: StrategyDto,
    #[serde(default)]
    pub default_target: Option<String>,
    #[serde(default)]
    pub reward: Option<RewardDto>,
    #[serde(default)]
    pub input_spec: Option<Vec<InputSpecDto>>,
    #[serde(default)]
    pub fallback: Vec<String>,
    #[serde(default = "default_cooldown")]
    pub cooldown_seconds: u64,
    #[serde(default)]
    pub retry: bool,
    #[serde(default)]
    pub router: Option<RouterDto>,
    #[serde(default)]
    pub fan_out: Option<FanOutDto>,
    /// Keeps a conversation on the endpoint whose KV cache holds its prefix.
    #[serde(default)]
    pub affinity: Option<AffinityDto>,
}

/// Prefix affinity: the system prompt and the first `messages` messages choose the endpoint.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AffinityDto {
    #[serde(default = "default_affinity_messages")]
    pub messages: u32,
}

fn default_affinity_messages() -> u32 {
    2
}

/// How live load signals are read and where the endpoint pick is written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadDto {
    #[serde(default = "default_endpoint_header")]
    pub endpoint_header: String,
    /// `text`, `json` or `none`: the ORCA form asked of upstreams (`endpoint-load-metrics-format`).
    #[serde(default = "default_orca_format")]
    pub orca_format: String,
    #[serde(default = "default_stale_ms")]
    pub stale_ms: u64,
    #[serde(default = "default_retry_after")]
    pub retry_after_seconds: u32,
}

impl Default for LoadDto {
    fn default() -> Self {
        LoadDto {
            endpoint_header: default_endpoint_header(),
            orca_format: default_orca_format(),
            stale_ms: default_stale_ms(),
            retry_after_seconds: default_retry_after(),
        }
    }
}

fn default_endpoint_header() -> String {
    "x-gateway-destination-endpoint".into()
}
fn default_orca_format() -> String {
    "text".into()
}
fn default_stale_ms() -> u64 {
    10_000
}
fn default_retry_after() -> u32 {
    1
}

fn default_cooldown() -> u64 {
    30
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputSpecDto {
    pub name: String,
    pub datatype: String,
    pub shape: Vec<i64>,
}

/// An external router speaking Seldon's router API.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouterDto {
    pub cluster: String,
    #[serde(default = "default_route_path")]
    pub path: String,
    #[serde(default)]
    pub authority: Option<String>,
    #[serde(default = "default_router_timeout")]
    pub timeout_ms: u32,
    /// Where rewards are forwarded (Seldon's `/send-feedback`); none: not forwarded.
    #[serde(default)]
    pub feedback_path: Option<String>,
}

fn default_route_path() -> String {
    "/route".into()
}
fn default_router_timeout() -> u32 {
    200
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FanOutDto {
    #[serde(default = "default_fan_out_timeout")]
    pub timeout_ms: u32,
}

fn default_fan_out_timeout() -> u32 {
    5000
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetDto {
    pub name: String,
    pub cluster: String,
    #[serde(default)]
    pub weight: Option<u32>,
    #[serde(default)]
    pub price: Option<PriceDto>,
    #[serde(default)]
    pub capabilities: Vec<String>,
    #[serde(default)]
    pub max_context_tokens: Option<u64>,
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    /// Strength for escalation: the highest rank serves an escalated request.
    #[serde(default)]
    pub rank: u32,
    /// Most requests in flight to this target at once (all workers of this Envoy).
    #[serde(default)]
    pub capacity: Option<u32>,
    /// Endpoints (`ip:port`) inside the target's cluster the filter picks from (Envoy's
    /// `override_host` load-balancing policy reads the pick from `load.endpoint_header`).
    #[serde(default)]
    pub endpoints: Vec<String>,
    /// Endpoints seen answering (`upstream.address`) join `endpoints`.
    #[serde(default)]
    pub observe_endpoints: bool,
    /// Most requests in flight to one endpoint of this target.
    #[serde(default)]
    pub endpoint_capacity: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceDto {
    #[serde(default)]
    pub input_per_1k: f64,
    #[serde(default)]
    pub output_per_1k: f64,
}

/// Rewards the filter computes from the responses it sees (and, optionally, an evaluator).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RewardDto {
    #[serde(default = "default_true")]
    pub status: bool,
    #[serde(default)]
    pub latency_target_ms: Option<u64>,
    #[serde(default)]
    pub header: Option<String>,
    #[serde(default)]
    pub cost_weight: f64,
    #[serde(default)]
    pub latency_weight: f64,
    #[serde(default)]
    pub evaluator: Option<EvaluatorDto>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvaluatorDto {
    pub cluster: String,
    #[serde(default = "default_evaluator_path")]
    pub path: String,
    #[serde(default)]
    pub authority: Option<String>,
    #[serde(default = "default_evaluator_timeout")]
    pub timeout_ms: u32,
}

fn default_evaluator_path() -> String {
    "/evaluate".into()
}
fn default_evaluator_timeout() -> u32 {
    1000
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum StrategyDto {
    Weighted {
        #[serde(default)]
        sticky: Option<StickyDto>,
    },
    /// Power of two choices over the load score (`crate::load`).
    LeastLoaded {},
    EpsilonGreedy {
        epsilon: f64,
        #[serde(default)]
        decay: Option<DecayDto>,
        #[serde(default)]
        prior: Option<PriorDto>,
        #[serde(default)]
        min_share: Option<MinShareDto>,
    },
    Thompson {
        #[serde(default)]
        decay: Option<DecayDto>,
        #[serde(default)]
        prior: Option<PriorDto>,
        #[serde(default)]
        min_share: Option<MinShareDto>,
    },
    Ucb1 {
        #[serde(default)]
        decay: Option<DecayDto>,
        #[serde(default)]
        prior: Option<PriorDto>,
        #[serde(default)]
        min_share: Option<MinShareDto>,
    },
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum DecayDto {
    Gamma(f64),
    HalfLife(f64),
    HalfLifeSeconds(f64),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriorDto {
    pub alpha: f64,
    pub beta: f64,
}

/// One floor for every target, or a floor per target name.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum MinShareDto {
    All(f64),
    PerTarget(BTreeMap<String, f64>),
}

impl Default for StrategyDto {
    fn default() -> Self {
        StrategyDto::Weighted { sticky: None }
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum StickyDto {
    Header(String),
    Cookie(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleDto {
    pub name: String,
    #[serde(default)]
    pub when: WhenDto,
    pub then: ThenDto,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct WhenDto {
    #[serde(default)]
    pub headers: BTreeMap<String, HeaderCondDto>,
    #[serde(default)]
    pub path_prefix: Option<String>,
    #[serde(default)]
    pub method: Option<OneOrMany>,
    #[serde(default)]
    pub body: BTreeMap<String, BodyCondDto>,
    #[serde(default)]
    pub time_utc: Option<TimeWindowDto>,
    #[serde(default)]
    pub tenant: Option<OneOrMany>,
    #[serde(default)]
    pub tier: Option<OneOrMany>,
    /// Any of these detectors fired on the prompt text.
    #[serde(default)]
    pub detected: Option<OneOrMany>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderCondDto {
    #[serde(default)]
    pub exact: Option<String>,
    #[serde(default)]
    pub prefix: Option<String>,
    #[serde(default)]
    pub present: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BodyCondDto {
    /// `Some(Value::Null)` when the user wrote `"exact": null`, `None` when absent.
    #[serde(default, deserialize_with = "explicit_value")]
    pub exact: Option<Value>,
    #[serde(default)]
    pub one_of: Option<Vec<Value>>,
    #[serde(default)]
    pub present: Option<bool>,
    #[serde(default)]
    pub gt: Option<f64>,
    #[serde(default)]
    pub lt: Option<f64>,
}

fn explicit_value<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeWindowDto {
    pub from: String,
    pub to: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThenDto {
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub target: Option<String>,
    #[serde(default)]
    pub reply: Option<ReplyDto>,
    #[serde(default)]
    pub reject: Option<RejectDto>,
    /// Keep only targets in this region / with all these tags.
    #[serde(default)]
    pub restrict: Option<RestrictDto>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestrictDto {
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplyDto {
    #[serde(default = "default_reply_status")]
    pub status: u16,
    #[serde(default)]
    pub echo: bool,
    #[serde(default, deserialize_with = "explicit_value")]
    pub body: Option<Value>,
}

fn default_reply_status() -> u16 {
    200
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RejectDto {
    pub status: u16,
    pub message: String,
}
