//! Policy sections as written: tenants, residency, detectors, budget and shadows.

use crate::vecmap::VecMap;

use super::rules::WhenDto;
use crate::config::read::read_struct;

#[derive(Debug)]
pub struct TenantsDto {
    pub header: Option<String>,
    pub jwt: Option<JwtClaimDto>,
    /// A request without a known tenant is refused (403).
    pub required: bool,
    pub list: Vec<TenantDto>,
}

read_struct!(TenantsDto {
    header: or_default,
    jwt: or_default,
    required: or_default,
    list: req,
});

/// A claim that Envoy's `jwt_authn` filter put in dynamic metadata (`payload_in_metadata`).
#[derive(Debug)]
pub struct JwtClaimDto {
    pub namespace: String,
    pub payload_key: String,
    pub claim: String,
}

read_struct!(JwtClaimDto {
    namespace: or(default_jwt_namespace),
    payload_key: req,
    claim: req,
});

fn default_jwt_namespace() -> String {
    "envoy.filters.http.jwt_authn".into()
}

#[derive(Debug)]
pub struct TenantDto {
    pub name: String,
    pub tier: Option<String>,
    pub region: Option<String>,
    pub default_model: Option<String>,
    /// Model → allowed targets (an empty list allows every target). Absent: every model.
    pub allow: Option<VecMap<String, Vec<String>>>,
}

read_struct!(TenantDto {
    name: req,
    tier: or_default,
    region: or_default,
    default_model: or_default,
    allow: or_default,
});

#[derive(Debug)]
pub struct ResidencyDto {
    pub header: Option<String>,
}

read_struct!(ResidencyDto { header: or_default });

#[derive(Debug)]
pub struct DetectorDto {
    pub name: String,
    pub builtin: Option<String>,
    pub regex: Option<String>,
}

read_struct!(DetectorDto {
    name: req,
    builtin: or_default,
    regex: or_default,
});

#[derive(Debug)]
pub struct BudgetDto {
    pub cost_header: String,
    pub latency_header: String,
    pub escalate_header: String,
    /// Output tokens assumed when a request does not say `max_tokens`.
    pub default_output_tokens: u64,
    /// Read the three values from claims of this verified JWT payload (named as the three
    /// `*_header` fields) instead of from the client's headers.
    pub jwt: Option<JwtPayloadDto>,
}

read_struct!(BudgetDto {
    cost_header: or(default_cost_header),
    latency_header: or(default_latency_header),
    escalate_header: or(default_escalate_header),
    default_output_tokens: or(default_output_tokens),
    jwt: or_default,
});

/// A JWT payload Envoy's `jwt_authn` filter put in dynamic metadata (`payload_in_metadata`).
#[derive(Debug)]
pub struct JwtPayloadDto {
    pub namespace: String,
    pub payload_key: String,
}

read_struct!(JwtPayloadDto {
    namespace: or(default_jwt_namespace),
    payload_key: req,
});

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

#[derive(Debug)]
pub struct ShadowDto {
    pub model: String,
    pub when: WhenDto,
    pub target: String,
    pub percent: f64,
    pub rewrite_model: Option<String>,
    pub timeout_ms: u32,
}

read_struct!(ShadowDto {
    model: req,
    when: or_default,
    target: req,
    percent: req,
    rewrite_model: or_default,
    timeout_ms: or(default_shadow_timeout),
});

fn default_shadow_timeout() -> u32 {
    5000
}
