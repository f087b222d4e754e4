//! The configuration as users write it: a mirror of the JSON document, nothing more, each struct
//! followed by how it is read (`read_struct!`: its fields, which are required and the defaults).
//! Every struct refuses unknown fields so a typo is an error, not a silently ignored setting.
//! `compile` turns this into the runtime form after validating it.
//!
//! - here: the document, `body`, `scan` and `load`;
//! - [`model`]: models, targets, strategies, rewards and callouts of a model;
//! - [`rules`]: rules (`when` conditions, `then` actions);
//! - [`policy`]: tenants, residency, detectors, budget and shadows;
//! - [`endpoints`]: the feedback and state endpoints;
//! - [`fleet`]: learning as one fleet through etcd.

mod endpoints;
mod fleet;
mod model;
mod policy;
mod rules;

pub use endpoints::*;
pub use fleet::*;
pub use model::*;
pub use policy::*;
pub use rules::*;

use crate::json::Value;

use super::read::{read_struct, unit_variant, At, FromJson};
use super::ConfigError;

#[derive(Debug)]
pub struct ConfigDto {
    pub route_header: String,
    pub target_header: String,
    pub model_header: String,
    pub response_metadata: bool,
    pub body: BodyDto,
    pub default_model: Option<String>,
    pub models: Vec<ModelDto>,
    pub rules: Vec<RuleDto>,
    pub feedback: Option<FeedbackDto>,
    pub state_endpoint: Option<StateEndpointDto>,
    pub tenants: Option<TenantsDto>,
    pub residency: Option<ResidencyDto>,
    pub detectors: Vec<DetectorDto>,
    pub budget: Option<BudgetDto>,
    pub shadows: Vec<ShadowDto>,
    pub fleet: Option<FleetDto>,
    pub scan: Option<ScanDto>,
    /// Live load signals: endpoint header, ORCA form, staleness (`crate::load`).
    pub load: Option<LoadDto>,
    /// A model registry polled for targets (`crate::registry`).
    pub registry: Option<crate::registry::RegistryDto>,
}

read_struct!(ConfigDto {
    route_header: or(default_route_header),
    target_header: or(default_target_header),
    model_header: or(default_model_header),
    response_metadata: or(default_true),
    body: or_default,
    default_model: or_default,
    models: req,
    rules: or_default,
    feedback: or_default,
    state_endpoint: or_default,
    tenants: or_default,
    residency: or_default,
    detectors: or_default,
    budget: or_default,
    shadows: or_default,
    fleet: or_default,
    scan: or_default,
    load: or_default,
    registry: or_default,
});

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

/// How payloads are read for the sensitive-data detectors (`when.detected`).
#[derive(Debug)]
pub struct ScanDto {
    pub max_bytes: u64,
    pub unscanned: Unscanned,
}

read_struct!(ScanDto {
    max_bytes: or(default_scan_max_bytes),
    unscanned: or_default,
});

pub const DEFAULT_SCAN_MAX_BYTES: u64 = 256 * 1024;

fn default_scan_max_bytes() -> u64 {
    DEFAULT_SCAN_MAX_BYTES
}

/// What a rule with `when.detected` does with a request whose payload could not be read
/// completely.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Unscanned {
    /// Refuse it (the default: nothing passes a sensitive-data rule unread).
    #[default]
    Refuse,
    /// Let it through as if no detector fired: a bypass, counted.
    Bypass,
}

impl FromJson for Unscanned {
    fn from_json(v: &Value, at: &At<'_>) -> Result<Self, ConfigError> {
        Ok(match unit_variant(v, at, &["refuse", "bypass"])? {
            "refuse" => Unscanned::Refuse,
            _ => Unscanned::Bypass,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BodySource {
    #[default]
    Buffer,
    Metadata,
}

impl FromJson for BodySource {
    fn from_json(v: &Value, at: &At<'_>) -> Result<Self, ConfigError> {
        Ok(match unit_variant(v, at, &["buffer", "metadata"])? {
            "buffer" => BodySource::Buffer,
            _ => BodySource::Metadata,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnInvalid {
    #[default]
    Reject,
    Default,
}

impl FromJson for OnInvalid {
    fn from_json(v: &Value, at: &At<'_>) -> Result<Self, ConfigError> {
        Ok(match unit_variant(v, at, &["reject", "default"])? {
            "reject" => OnInvalid::Reject,
            _ => OnInvalid::Default,
        })
    }
}

pub const DEFAULT_MAX_BODY_BYTES: u64 = 1024 * 1024;

#[derive(Debug)]
pub struct BodyDto {
    pub source: BodySource,
    pub max_bytes: u64,
    pub on_invalid: OnInvalid,
    pub metadata_namespace: String,
}

read_struct!(BodyDto {
    source: or_default,
    max_bytes: or(default_max_bytes),
    on_invalid: or_default,
    metadata_namespace: or(default_metadata_namespace),
});

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

/// How live load signals are read and where the endpoint pick is written.
#[derive(Debug)]
pub struct LoadDto {
    pub endpoint_header: String,
    /// `text`, `json` or `none`: the ORCA form asked of upstreams (`endpoint-load-metrics-format`).
    pub orca_format: String,
    pub stale_ms: u64,
    pub retry_after_seconds: u32,
}

read_struct!(LoadDto {
    endpoint_header: or(default_endpoint_header),
    orca_format: or(default_orca_format),
    stale_ms: or(default_stale_ms),
    retry_after_seconds: or(default_retry_after),
});

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
