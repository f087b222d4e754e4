//! The feedback and state endpoints as written.

use super::policy::JwtClaimDto;
use crate::config::read::read_struct;

#[derive(Debug)]
pub struct FeedbackDto {
    pub path: String,
    /// One key (id `k0`); or `signing_keys`.
    pub signing_key: Option<String>,
    /// The first signs, every one verifies.
    pub signing_keys: Option<Vec<SigningKeyDto>>,
    pub ttl_seconds: u64,
    /// Who asked: a decision is bound to it, and only it (or an evaluator) may reward it.
    pub bind: Option<BindDto>,
    /// Principals that may reward any decision (and are not held to the budget).
    pub evaluators: Vec<String>,
    /// Rewards accepted per principal per minute on one Envoy.
    pub budget_per_minute: Option<u32>,
    /// Decision ids one Envoy accepts per hour of expiry; past it feedback is refused (503).
    pub max_accepted_per_hour: u64,
}

read_struct!(FeedbackDto {
    path: or(default_feedback_path),
    signing_key: or_default,
    signing_keys: or_default,
    ttl_seconds: or(default_ttl),
    bind: or_default,
    evaluators: or_default,
    budget_per_minute: or_default,
    max_accepted_per_hour: or(default_max_accepted_per_hour),
});

#[derive(Debug)]
pub struct SigningKeyDto {
    pub id: String,
    pub key: String,
}

read_struct!(SigningKeyDto { id: req, key: req });

/// Where a feedback principal comes from: exactly one field.
#[derive(Debug)]
pub struct BindDto {
    pub header: Option<String>,
    pub jwt: Option<JwtClaimDto>,
    /// The request's tenant (`tenants`), when it is a configured one.
    pub tenant: bool,
}

read_struct!(BindDto {
    header: or_default,
    jwt: or_default,
    tenant: or_default,
});

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

#[derive(Debug)]
pub struct StateEndpointDto {
    pub path: String,
    pub token: Option<String>,
    /// No token: anyone who reaches the path may read the state.
    pub public: bool,
}

read_struct!(StateEndpointDto {
    path: req,
    token: or_default,
    public: or_default,
});
