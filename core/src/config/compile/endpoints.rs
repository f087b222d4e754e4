//! The paths the filter answers itself: feedback (signed rewards) and the state endpoint.

use super::checks::{check_path, check_range, err, err_at, err_in, err_with, item, Range, Refusal};
use super::policy::value_source;
use crate::config::dto::{BindDto, FeedbackDto, SigningKeyDto, StateEndpointDto};
use crate::config::{Bind, FeedbackSettings, StateEndpoint};
use crate::feedback::{SigningKey, TokenKeys};
use crate::learning::spent;

/// Shortest accepted state endpoint token.
const MIN_STATE_TOKEN: usize = 16;
/// Most keys `feedback.signing_keys` may hold (each is tried only by its id).
const MAX_KEYS: usize = 8;
// Their messages say 16 and 8 in words (a literal is smaller than a `format!`).
const _: () = assert!(MIN_STATE_TOKEN == 16 && MAX_KEYS == 8);

/// Longest accepted feedback `ttl_seconds`: spent decision ids are kept this long.
const MAX_TTL: u64 = 7 * 24 * 3600;

pub(super) fn compile_feedback(
    dto: Option<FeedbackDto>,
    has_tenants: bool,
) -> Result<Option<FeedbackSettings>, Refusal> {
    let Some(f) = dto else { return Ok(None) };
    check_path("feedback.path", "", &f.path)?;
    let keys = compile_keys(f.signing_key, f.signing_keys)?;
    if f.ttl_seconds == 0 || f.ttl_seconds > MAX_TTL {
        return err_at(
            "feedback.ttl_seconds",
            "",
            format!(
                "must be between 1 and {MAX_TTL} (7 days), got {}",
                f.ttl_seconds
            ),
        );
    }
    let bind = compile_bind(f.bind, has_tenants)?;
    if bind.is_none() && !f.evaluators.is_empty() {
        return err(
            "feedback.evaluators",
            "needs feedback.bind: an evaluator is a principal",
        );
    }
    for (i, e) in f.evaluators.iter().enumerate() {
        if e.is_empty()
            || f.evaluators
                .get(..i)
                .is_some_and(|before| before.contains(e))
        {
            return err_with(
                item("feedback.evaluators", i),
                "must be a non-empty principal, listed once",
            );
        }
    }
    match f.budget_per_minute {
        Some(_) if bind.is_none() => {
            return err(
                "feedback.budget_per_minute",
                "needs feedback.bind: the budget is per principal",
            )
        }
        Some(0) => return err("feedback.budget_per_minute", "must be at least 1"),
        _ => {}
    }
    let spent_per_shard = spent_per_shard(f.max_accepted_per_hour)?;
    Ok(Some(FeedbackSettings {
        path: f.path,
        keys,
        ttl_seconds: f.ttl_seconds,
        bind,
        evaluators: f.evaluators,
        budget_per_minute: f.budget_per_minute,
        spent_per_shard,
    }))
}

/// `signing_key` (one key, id `k0`) or `signing_keys` (the first signs, all verify).
fn compile_keys(
    one: Option<String>,
    many: Option<Vec<SigningKeyDto>>,
) -> Result<TokenKeys, Refusal> {
    const SHORT: &str = "must be at least 16 characters: it is what stops forged rewards";
    match (one, many) {
        (Some(key), None) if key.len() < 16 => err("feedback.signing_key", SHORT),
        (Some(key), None) => Ok(TokenKeys::single(key.as_bytes())),
        (None, Some(list)) if list.is_empty() || list.len() > MAX_KEYS => err(
            "feedback.signing_keys",
            "must hold 1 to 8 keys (the first signs)",
        ),
        (None, Some(list)) => {
            let mut keys: Vec<SigningKey> = Vec::with_capacity(list.len());
            for (i, k) in list.iter().enumerate() {
                let valid = !k.id.is_empty()
                    && k.id.len() <= 32
                    && k.id
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
                if !valid || keys.iter().any(|seen| seen.id == k.id) {
                    return err_in(
                        &item("feedback.signing_keys", i),
                        "id",
                        "must be 1 to 32 letters, digits, '.', '_' or '-', unique among the keys",
                    );
                }
                if k.key.len() < 16 {
                    return err_in(&item("feedback.signing_keys", i), "key", SHORT);
                }
                keys.push(SigningKey::new(&k.id, k.key.as_bytes()));
            }
            Ok(TokenKeys::new(keys))
        }
        (Some(_), Some(_)) => err("feedback", "set signing_key or signing_keys, not both"),
        (None, None) => err(
            "feedback.signing_keys",
            "is required (or signing_key): decision ids are signed",
        ),
    }
}

fn compile_bind(dto: Option<BindDto>, has_tenants: bool) -> Result<Option<Bind>, Refusal> {
    let Some(b) = dto else { return Ok(None) };
    let value = value_source("feedback.bind", b.header, b.jwt)?;
    match (value, b.tenant) {
        (Some(v), false) => Ok(Some(Bind::Value(v))),
        (None, true) if has_tenants => Ok(Some(Bind::Tenant)),
        (None, true) => err("feedback.bind.tenant", "needs the tenants section"),
        _ => err(
            "feedback.bind",
            "needs exactly one of \"header\", \"jwt\" or \"tenant\": true",
        ),
    }
}

/// Ids per spent-id shard for `feedback.max_accepted_per_hour`.
fn spent_per_shard(per_hour: u64) -> Result<usize, Refusal> {
    let (min, max) = (1_024, 4_194_304);
    check_range(
        "feedback.max_accepted_per_hour",
        "",
        Range::Between,
        (min, max),
        per_hour,
    )?;
    Ok(usize::try_from(per_hour.div_ceil(spent::SHARDS)).unwrap_or(usize::MAX))
}

pub(super) fn compile_state_endpoint(
    dto: Option<StateEndpointDto>,
    feedback: Option<&FeedbackSettings>,
) -> Result<Option<StateEndpoint>, Refusal> {
    let Some(e) = dto else { return Ok(None) };
    check_path("state_endpoint.path", "", &e.path)?;
    if feedback.is_some_and(|f| f.path == e.path) {
        return err("state_endpoint.path", "must differ from feedback.path");
    }
    match (&e.token, e.public) {
        (Some(_), true) => {
            return err(
                "state_endpoint.public",
                "a public endpoint has no token: remove one of them",
            )
        }
        (Some(t), false) if t.chars().count() < MIN_STATE_TOKEN => {
            return err("state_endpoint.token", "must be at least 16 characters")
        }
        (None, false) => {
            return err(
                "state_endpoint.token",
                "is required (at least 16 characters), or declare the endpoint \"public\": true",
            )
        }
        _ => {}
    }
    Ok(Some(StateEndpoint {
        path: e.path,
        token: e.token,
    }))
}
