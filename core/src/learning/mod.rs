//! Learning from rewards: where bandit state lives in shared data, how a reward is applied, and
//! how a feedback request becomes a reward. Pure: the host passes its [`SharedStore`].

pub mod health;
pub mod spent;

use serde_json::{json, Value};

use crate::bandit::{update_state, ModelState, SharedStore, UpdateFailure};
use crate::config::Config;
use crate::feedback::{parse_feedback, Feedback, TokenError};

/// CAS attempts before a reward is given up as lost to contention (counted in a metric).
pub const MAX_CAS_ATTEMPTS: u32 = 32;

/// Shared-data key of a model's state. `plugin` (the Envoy plugin name) is the configuration's
/// identity: two plugins in one VM group learn separately; a reload of the same plugin keeps its
/// state (migrated by target name if the targets changed).
pub fn state_key(plugin: &str, model: &str) -> String {
    format!("inference-router/v1/{plugin}/state/{model}")
}

/// Prefix of the spent-decision buckets.
pub fn spent_prefix(plugin: &str) -> String {
    format!("inference-router/v1/{plugin}")
}

#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    pub model: String,
    pub target: String,
    pub reward: f64,
    /// Rewards this model has accepted in all, this one included.
    pub updates: u64,
    pub retries: u32,
    /// The stored bytes were undecodable and replaced by a fresh state (to be logged).
    pub reset: bool,
    pub state: ModelState,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ApplyError {
    NotBandit,
    UnknownTarget,
    Contention { attempts: u32 },
    Store(String),
    Rejected(String),
}

impl ApplyError {
    pub fn describe(&self) -> String {
        match self {
            ApplyError::NotBandit => {
                "the model does not learn from rewards (not a bandit strategy)".into()
            }
            ApplyError::UnknownTarget => {
                "the target is not in the model's current configuration".into()
            }
            ApplyError::Contention { attempts } => {
                format!(
                    "the state was changed by other workers {attempts} times in a row; try again"
                )
            }
            ApplyError::Store(e) => format!("shared data failed: {e}"),
            ApplyError::Rejected(e) => e.clone(),
        }
    }
}

/// Applies one reward to a model's shared state.
pub fn apply_reward<S: SharedStore + ?Sized>(
    store: &S,
    plugin: &str,
    cfg: &Config,
    model: usize,
    target: &str,
    reward: f64,
) -> Result<Applied, ApplyError> {
    let m = cfg.models.get(model).ok_or(ApplyError::UnknownTarget)?;
    let strategy = m.bandit().ok_or(ApplyError::NotBandit)?;
    if m.target_by_name(target).is_none() {
        return Err(ApplyError::UnknownTarget);
    }
    let names = m.target_names();
    let initial = strategy.initial_state(&names);
    let key = state_key(plugin, &m.name);
    let outcome = update_state(store, &key, MAX_CAS_ATTEMPTS, &initial, |state| {
        let (mut state, _) = strategy.reconcile(state, &names);
        let arm = state
            .arm_index(target)
            .ok_or_else(|| "target missing from state".to_string())?;
        strategy
            .update(&mut state, arm, reward)
            .map_err(|e| e.to_string())?;
        Ok::<_, String>(state)
    })
    .map_err(|e| match e {
        UpdateFailure::Contention { attempts } => ApplyError::Contention { attempts },
        UpdateFailure::Store { error, .. } => ApplyError::Store(error.to_string()),
        UpdateFailure::Rejected(reason) => ApplyError::Rejected(reason),
    })?;
    Ok(Applied {
        model: m.name.clone(),
        target: target.to_string(),
        reward,
        updates: outcome.state.updates,
        retries: outcome.retries(),
        reset: outcome.discarded.is_some(),
        state: outcome.state,
    })
}

/// Why feedback was refused, for the metric and the reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Invalid,
    Forged,
    Expired,
    Replayed,
    NotLearning,
    Unavailable,
}

impl Refusal {
    pub const ALL: [Refusal; 6] = [
        Refusal::Invalid,
        Refusal::Forged,
        Refusal::Expired,
        Refusal::Replayed,
        Refusal::NotLearning,
        Refusal::Unavailable,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Invalid => "invalid",
            Refusal::Forged => "forged",
            Refusal::Expired => "expired",
            Refusal::Replayed => "replayed",
            Refusal::NotLearning => "not_learning",
            Refusal::Unavailable => "unavailable",
        }
    }

    pub fn status(self) -> u16 {
        match self {
            Refusal::Invalid => 400,
            Refusal::Forged => 403,
            Refusal::Expired => 410,
            Refusal::Replayed => 409,
            Refusal::NotLearning => 422,
            Refusal::Unavailable => 503,
        }
    }

    pub fn index(self) -> usize {
        Refusal::ALL
            .iter()
            .position(|r| *r == self)
            .unwrap_or_default()
    }
}

/// The answer to a feedback request.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedbackReply {
    pub status: u16,
    pub body: Value,
    pub result: Result<Applied, Refusal>,
}

fn refuse(refusal: Refusal, detail: &str) -> FeedbackReply {
    FeedbackReply {
        status: refusal.status(),
        body: json!({ "error": refusal.as_str(), "detail": detail }),
        result: Err(refusal),
    }
}

/// What a feedback request carried, as the host read it.
pub struct FeedbackInput<'a> {
    pub body: &'a [u8],
    /// `x-inference-decision` of the feedback request.
    pub header_decision: Option<&'a str>,
    /// `x-inference-reward` of the feedback request (header-only feedback, no body).
    pub header_reward: Option<&'a str>,
}

/// Verifies, spends and applies one feedback request. `spent_reset` is set when a spent-id
/// bucket held undecodable bytes (the host logs it).
pub fn process_feedback<S: SharedStore + ?Sized>(
    store: &S,
    plugin: &str,
    cfg: &Config,
    now: u64,
    input: &FeedbackInput<'_>,
    spent_reset: &mut bool,
) -> FeedbackReply {
    let Some(settings) = &cfg.feedback else {
        return refuse(Refusal::Invalid, "feedback is not configured");
    };
    let feedback = if input.body.iter().all(u8::is_ascii_whitespace) {
        match (input.header_decision, input.header_reward) {
            (Some(d), Some(r)) => match r.trim().parse::<f64>() {
                Ok(reward) => match crate::bandit::check_reward(reward) {
                    Ok(reward) => Feedback {
                        decision: d.to_string(),
                        reward,
                        routing: None,
                    },
                    Err(e) => return refuse(Refusal::Invalid, &e.to_string()),
                },
                Err(_) => return refuse(Refusal::Invalid, "x-inference-reward is not a number"),
            },
            _ => {
                return refuse(
                    Refusal::Invalid,
                    "send a JSON body {\"decision\": ..., \"reward\": ...}, Seldon's Feedback message, or the x-inference-decision and x-inference-reward headers",
                )
            }
        }
    } else {
        match parse_feedback(input.body, input.header_decision) {
            Ok(f) => f,
            Err(e) => return refuse(Refusal::Invalid, &e.0),
        }
    };
    let token = match settings.signer.verify(&feedback.decision, now) {
        Ok(t) => t,
        Err(e) => {
            let refusal = match e {
                TokenError::Expired => Refusal::Expired,
                TokenError::BadSignature => Refusal::Forged,
                TokenError::Malformed => Refusal::Forged,
            };
            return refuse(refusal, e.describe());
        }
    };
    let Some(model) = cfg.model_by_name(&token.model) else {
        return refuse(
            Refusal::NotLearning,
            "the decision's model is no longer configured",
        );
    };
    let Some(m) = cfg.models.get(model) else {
        return refuse(
            Refusal::NotLearning,
            "the decision's model is no longer configured",
        );
    };
    if !m.is_bandit() {
        return refuse(
            Refusal::NotLearning,
            "the decision's model does not learn from rewards",
        );
    }
    let Some(target_index) = m.target_by_name(&token.target) else {
        return refuse(
            Refusal::NotLearning,
            "the decision's target is no longer configured",
        );
    };
    // Seldon's meta.routing names the child by index: it must agree with the signed decision.
    if let Some(child) = feedback.routing.as_ref().and_then(|r| r.get(&m.name)) {
        if child.as_u64() != Some(target_index as u64) {
            return refuse(
                Refusal::Invalid,
                "response.meta.routing disagrees with the decision's target",
            );
        }
    }

    let prefix = spent_prefix(plugin);
    let key = spent::bucket_key(
        &prefix,
        spent::bucket_of(token.expires, spent::bucket_seconds(settings.ttl_seconds)),
    );
    match spent::spend(store, &key, token.nonce, MAX_CAS_ATTEMPTS, spent_reset) {
        Ok(spent::Spend::Fresh) => {}
        Ok(spent::Spend::Replayed) => {
            return refuse(
                Refusal::Replayed,
                "this decision's feedback was already accepted",
            )
        }
        Err(_) => {
            return refuse(
                Refusal::Unavailable,
                "could not record the decision as used; try again",
            )
        }
    }
    match apply_reward(store, plugin, cfg, model, &token.target, feedback.reward) {
        Ok(applied) => FeedbackReply {
            status: 200,
            body: json!({
                "updated": {
                    "model": applied.model,
                    "target": applied.target,
                    "reward": applied.reward,
                    "observations": applied.updates,
                }
            }),
            result: Ok(applied),
        },
        Err(e) => {
            // Not applied: release the id so the sender may retry.
            let _ = spent::unspend(store, &key, token.nonce, MAX_CAS_ATTEMPTS);
            let refusal = match e {
                ApplyError::NotBandit | ApplyError::UnknownTarget => Refusal::NotLearning,
                _ => Refusal::Unavailable,
            };
            refuse(refusal, &e.describe())
        }
    }
}

/// The JSON the state endpoint returns: every bandit model's current state.
pub fn state_document<S: SharedStore + ?Sized>(store: &S, plugin: &str, cfg: &Config) -> Value {
    let mut models = serde_json::Map::new();
    for m in cfg.models.iter() {
        let Some(strategy) = m.bandit() else { continue };
        let key = state_key(plugin, &m.name);
        let entry = match store.get(&key) {
            Ok((Some(bytes), _)) => match crate::bandit::decode(&bytes) {
                Ok(state) => {
                    let (state, _) = strategy.reconcile(state, &m.target_names());
                    state_json(&state)
                }
                Err(e) => json!({ "error": format!("undecodable state: {e}") }),
            },
            Ok((None, _)) => json!({ "error": "no state yet" }),
            Err(e) => json!({ "error": format!("shared data failed: {e}") }),
        };
        models.insert(m.name.clone(), entry);
    }
    json!({ "models": models })
}

pub fn state_json(state: &ModelState) -> Value {
    json!({
        "observations": state.updates,
        "targets": state.arms.iter().map(|a| json!({
            "name": a.name,
            "pulls": a.pulls,
            "mean_reward": a.mean(),
            "alpha": a.alpha,
            "beta": a.beta,
        })).collect::<Vec<_>>(),
    })
}
