//! Implicit rewards: what a response the filter already sees says about the target that served
//! it — status, latency, an optional reward header, and OpenAI token usage priced per target.

mod usage;

pub use usage::{usage_from_json, SseUsageScanner, Usage};

use crate::config::{Price, RewardSettings};

/// 5xx and 429 are failures: quality 0 for an implicit reward, a cooldown for health, a retry
/// or a partial fan-out for callouts ([`crate::callout::is_failure`] is this function).
pub fn is_failure(status: u16) -> bool {
    status >= 500 || status == 429
}

/// What the host observed of one response.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observation {
    pub status: u16,
    /// Request start to response headers.
    pub latency_ms: u64,
    /// The configured reward header's value, if the upstream sent one.
    pub header: Option<String>,
    pub usage: Option<Usage>,
}

/// The reward for an observation:
/// `quality − cost_weight · cost − latency_weight · latency_seconds`, clamped to `[0, 1]`.
///
/// Quality is the reward header when present (it must parse as a number in `[0, 1]`, else the
/// observation is refused with the reason), else 0 for 5xx and 429 and 1 otherwise (with
/// `status: false`, always 1); a response slower than `latency_target_ms` has quality 0.
/// Unlike rewards sent to the feedback path, computed rewards are clamped: the penalty terms
/// are meant to be able to push a success to 0.
pub fn implicit_reward(
    settings: &RewardSettings,
    price: &Price,
    obs: &Observation,
) -> Result<f64, String> {
    let mut quality = match &obs.header {
        Some(raw) => {
            let v = crate::parse_float::parse_f64(raw.trim())
                .ok_or_else(|| "the reward header's value is not a number".to_string())?;
            crate::bandit::check_reward(v).map_err(|e| format!("reward header: {e}"))?
        }
        None if settings.status && is_failure(obs.status) => 0.0,
        None => 1.0,
    };
    if settings
        .latency_target_ms
        .is_some_and(|t| obs.latency_ms > t)
    {
        quality = 0.0;
    }
    let cost = obs
        .usage
        .map_or(0.0, |u| price.cost(u.prompt_tokens, u.completion_tokens));
    let r = quality
        - settings.cost_weight * cost
        - settings.latency_weight * (obs.latency_ms as f64 / 1000.0);
    Ok(r.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> RewardSettings {
        RewardSettings {
            status: true,
            latency_target_ms: None,
            header: None,
            cost_weight: 0.0,
            latency_weight: 0.0,
            evaluator: None,
        }
    }

    fn obs(status: u16) -> Observation {
        Observation {
            status,
            latency_ms: 100,
            ..Default::default()
        }
    }

    #[test]
    fn status_classes() {
        let p = Price::default();
        assert_eq!(implicit_reward(&settings(), &p, &obs(200)), Ok(1.0));
        assert_eq!(implicit_reward(&settings(), &p, &obs(404)), Ok(1.0));
        assert_eq!(implicit_reward(&settings(), &p, &obs(429)), Ok(0.0));
        assert_eq!(implicit_reward(&settings(), &p, &obs(503)), Ok(0.0));
        let s = RewardSettings {
            status: false,
            ..settings()
        };
        assert_eq!(implicit_reward(&s, &p, &obs(503)), Ok(1.0));
    }

    #[test]
    fn latency_target_and_weights() {
        let p = Price {
            input_per_1k: 1.0,
            output_per_1k: 2.0,
        };
        let s = RewardSettings {
            latency_target_ms: Some(50),
            ..settings()
        };
        assert_eq!(implicit_reward(&s, &p, &obs(200)), Ok(0.0));
        // quality 1 − 0.1·(0.5·1 + 0.25·2) − 0.2·0.1 s = 1 − 0.1 − 0.02 = 0.88
        let s = RewardSettings {
            cost_weight: 0.1,
            latency_weight: 0.2,
            ..settings()
        };
        let o = Observation {
            usage: Some(Usage {
                prompt_tokens: 500,
                completion_tokens: 250,
            }),
            ..obs(200)
        };
        let r = implicit_reward(&s, &p, &o).unwrap();
        assert!((r - 0.88).abs() < 1e-12, "{r}");
        // penalties never push below 0
        let s = RewardSettings {
            cost_weight: 100.0,
            ..settings()
        };
        assert_eq!(implicit_reward(&s, &p, &o), Ok(0.0));
    }

    #[test]
    fn reward_header() {
        let p = Price::default();
        let with = |h: &str| Observation {
            header: Some(h.into()),
            ..obs(503)
        };
        assert_eq!(implicit_reward(&settings(), &p, &with("0.7")), Ok(0.7));
        assert!(implicit_reward(&settings(), &p, &with("1.7"))
            .unwrap_err()
            .contains("within [0, 1]"));
        assert!(implicit_reward(&settings(), &p, &with("good"))
            .unwrap_err()
            .contains("not a number"));
    }
}
