//! The paths the filter answers itself: feedback (signed rewards) and the state endpoint.

use super::checks::{check_path, err};
use crate::config::dto::{FeedbackDto, StateEndpointDto};
use crate::config::{ConfigError, FeedbackSettings, StateEndpoint};

/// Longest accepted feedback `ttl_seconds`: spent decision ids are kept this long.
const MAX_TTL: u64 = 7 * 24 * 3600;

pub(super) fn compile_feedback(
    dto: Option<FeedbackDto>,
) -> Result<Option<FeedbackSettings>, ConfigError> {
    let Some(f) = dto else { return Ok(None) };
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
    Ok(Some(FeedbackSettings {
        path: f.path,
        signer: crate::feedback::TokenSigner::new(f.signing_key.as_bytes()),
        ttl_seconds: f.ttl_seconds,
    }))
}

pub(super) fn compile_state_endpoint(
    dto: Option<StateEndpointDto>,
    feedback: Option<&FeedbackSettings>,
) -> Result<Option<StateEndpoint>, ConfigError> {
    let Some(e) = dto else { return Ok(None) };
    check_path("state_endpoint.path", &e.path)?;
    if feedback.is_some_and(|f| f.path == e.path) {
        return err("state_endpoint.path", "must differ from feedback.path");
    }
    if e.token.as_ref().is_some_and(String::is_empty) {
        return err(
            "state_endpoint.token",
            "must not be empty (omit it for no token)",
        );
    }
    Ok(Some(StateEndpoint {
        path: e.path,
        token: e.token,
    }))
}
