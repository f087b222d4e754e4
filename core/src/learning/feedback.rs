//! One feedback request, one pipeline: parse (body or headers) → verify the decision token once
//! → find the model → spend the decision id (each counts once, across workers) → apply the
//! reward to the model's bandit state and/or forward it to the model's router
//! (`router.feedback_path`). The stream (`stream::endpoints`) sends the reply and queues the forward.

use serde_json::{json, Value};

use super::{apply_reward, spent, spent_prefix, Applied, ApplyError, Refusal, MAX_CAS_ATTEMPTS};
use crate::bandit::SharedStore;
use crate::callout::target_child;
use crate::config::{Config, FeedbackSettings, Model};
use crate::feedback::{parse_feedback, DecisionToken, Feedback, TokenError};

/// What a feedback request carried, as the host read it.
pub struct FeedbackInput<'a> {
    pub body: &'a [u8],
    /// `x-inference-decision` of the feedback request.
    pub header_decision: Option<&'a str>,
    /// `x-inference-reward` of the feedback request (header-only feedback, no body).
    pub header_reward: Option<&'a str>,
}

/// A reward to forward to a model's router (`router.feedback_path`).
#[derive(Debug, Clone, PartialEq)]
pub struct RouterForward {
    pub model: usize,
    pub target: String,
    /// Seldon's child index of the target (`-1`: all children, `-2`: none).
    pub child: i64,
    pub reward: f64,
}

/// Accepted feedback: the reward applied to the model's own state (bandit models), and/or to
/// be forwarded to its router.
#[derive(Debug, Clone, PartialEq)]
pub struct Accepted {
    pub applied: Option<Applied>,
    pub forward: Option<RouterForward>,
}

/// The answer to a feedback request.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedbackReply {
    pub status: u16,
    pub body: Value,
    pub result: Result<Accepted, Refusal>,
}

/// A refusal on its way out of a step (small, unlike the reply it becomes).
struct Refused(Refusal, String);

impl Refused {
    fn new(refusal: Refusal, detail: &str) -> Self {
        Refused(refusal, detail.to_string())
    }

    fn reply(self) -> FeedbackReply {
        let Refused(refusal, detail) = self;
        FeedbackReply {
            status: refusal.status(),
            body: json!({ "error": refusal.as_str(), "detail": detail }),
            result: Err(refusal),
        }
    }
}

const MODEL_GONE: &str = "the decision's model is no longer configured";
const TARGET_GONE: &str = "the decision's target is no longer configured";
const ROUTING_DISAGREES: &str = "response.meta.routing disagrees with the decision's target";

/// A verified, not yet spent feedback request.
struct Verified<'c> {
    settings: &'c FeedbackSettings,
    token: DecisionToken,
    feedback: Feedback,
    /// The model's index, and the model.
    index: usize,
    model: &'c Model,
}

/// Verifies, spends and applies (or forwards) one feedback request. `spent_reset` is set when a
/// spent-id bucket held undecodable bytes (the stream logs it).
pub fn process_feedback<S: SharedStore + ?Sized>(
    store: &S,
    plugin: &str,
    cfg: &Config,
    now: u64,
    input: &FeedbackInput<'_>,
    spent_reset: &mut bool,
) -> FeedbackReply {
    let v = match verify(cfg, now, input) {
        Ok(v) => v,
        Err(refused) => return refused.reply(),
    };
    let has_router_feedback = v
        .model
        .router
        .as_ref()
        .is_some_and(|r| r.feedback_path.is_some());
    // A bandit learns itself; a target it does not know may still be a router's own choice
    // (`-1`, `-2`), which only its router can learn from.
    let own_target = v
        .model
        .is_bandit()
        .then(|| v.model.target_by_name(&v.token.target))
        .flatten();
    let reply = match own_target {
        Some(target) => learn(store, plugin, cfg, &v, target, spent_reset),
        None if has_router_feedback => forward_only(store, plugin, cfg, &v, spent_reset),
        None if v.model.is_bandit() => Err(Refused::new(Refusal::NotLearning, TARGET_GONE)),
        None => Err(Refused::new(
            Refusal::NotLearning,
            "the decision's model does not learn from rewards",
        )),
    };
    reply.unwrap_or_else(Refused::reply)
}

/// Reads the feedback, verifies its token and finds its model.
fn verify<'c>(
    cfg: &'c Config,
    now: u64,
    input: &FeedbackInput<'_>,
) -> Result<Verified<'c>, Refused> {
    let Some(settings) = &cfg.feedback else {
        return Err(Refused::new(Refusal::Invalid, "feedback is not configured"));
    };
    let feedback = read(input)?;
    let token = settings
        .signer
        .verify(&feedback.decision, now)
        .map_err(|e| {
            let refusal = match e {
                TokenError::Expired => Refusal::Expired,
                TokenError::BadSignature | TokenError::Malformed => Refusal::Forged,
            };
            Refused::new(refusal, e.describe())
        })?;
    let found = cfg
        .model_by_name(&token.model)
        .and_then(|i| cfg.models.get(i).map(|m| (i, m)));
    let Some((index, model)) = found else {
        return Err(Refused::new(Refusal::NotLearning, MODEL_GONE));
    };
    Ok(Verified {
        settings,
        token,
        feedback,
        index,
        model,
    })
}

/// The feedback message: a JSON body (ours or Seldon's), or the two headers when there is none.
fn read(input: &FeedbackInput<'_>) -> Result<Feedback, Refused> {
    if !input.body.iter().all(u8::is_ascii_whitespace) {
        return parse_feedback(input.body, input.header_decision)
            .map_err(|e| Refused(Refusal::Invalid, e.0));
    }
    let (Some(decision), Some(reward)) = (input.header_decision, input.header_reward) else {
        return Err(Refused::new(
            Refusal::Invalid,
            "send a JSON body {\"decision\": ..., \"reward\": ...}, Seldon's Feedback message, or the x-inference-decision and x-inference-reward headers",
        ));
    };
    let reward = reward
        .trim()
        .parse::<f64>()
        .map_err(|_| Refused::new(Refusal::Invalid, "x-inference-reward is not a number"))?;
    let reward = crate::bandit::check_reward(reward)
        .map_err(|e| Refused(Refusal::Invalid, e.to_string()))?;
    Ok(Feedback {
        decision: decision.to_string(),
        reward,
        routing: None,
    })
}

/// Seldon's `meta.routing` names the child under the model's name: it must agree with the
/// signed decision. `child` is how the value must read (bandit targets are indices ≥ 0, a
/// router's child may be `-1`/`-2`).
fn routing_agrees(v: &Verified<'_>, child: impl Fn(&Value) -> bool) -> bool {
    v.feedback
        .routing
        .as_ref()
        .and_then(|r| r.get(&v.model.name))
        .is_none_or(child)
}

fn spent_key(plugin: &str, v: &Verified<'_>) -> String {
    spent::bucket_key(
        &spent_prefix(plugin),
        spent::bucket_of(
            v.token.expires,
            spent::bucket_seconds(v.settings.ttl_seconds),
        ),
    )
}

/// Records the decision id as used; `Err` is the refusal to send.
fn spend<S: SharedStore + ?Sized>(
    store: &S,
    key: &str,
    nonce: u64,
    spent_reset: &mut bool,
) -> Result<(), Refused> {
    match spent::spend(store, key, nonce, MAX_CAS_ATTEMPTS, spent_reset) {
        Ok(spent::Spend::Fresh) => Ok(()),
        Ok(spent::Spend::Replayed) => Err(Refused::new(
            Refusal::Replayed,
            "this decision's feedback was already accepted",
        )),
        Err(_) => Err(Refused::new(
            Refusal::Unavailable,
            "could not record the decision as used; try again",
        )),
    }
}

/// A bandit model's own target: spend, apply, and forward to its router if it has one.
fn learn<S: SharedStore + ?Sized>(
    store: &S,
    plugin: &str,
    cfg: &Config,
    v: &Verified<'_>,
    target: usize,
    spent_reset: &mut bool,
) -> Result<FeedbackReply, Refused> {
    let index = u64::try_from(target).ok();
    if !routing_agrees(v, |c| c.as_u64().is_some_and(|c| Some(c) == index)) {
        return Err(Refused::new(Refusal::Invalid, ROUTING_DISAGREES));
    }
    let key = spent_key(plugin, v);
    spend(store, &key, v.token.nonce, spent_reset)?;
    let applied = apply_reward(
        store,
        plugin,
        cfg,
        v.index,
        &v.token.target,
        v.feedback.reward,
    )
    .map_err(|e| {
        // Not applied: release the id so the sender may retry.
        let _ = spent::unspend(store, &key, v.token.nonce, MAX_CAS_ATTEMPTS);
        let refusal = match e {
            ApplyError::NotBandit | ApplyError::UnknownTarget => Refusal::NotLearning,
            _ => Refusal::Unavailable,
        };
        Refused(refusal, e.describe())
    })?;
    let forward = v
        .model
        .router
        .as_ref()
        .and_then(|r| r.feedback_path.as_ref())
        .and_then(|_| target_child(cfg, v.index, &applied.target))
        .map(|child| RouterForward {
            model: v.index,
            target: applied.target.clone(),
            child,
            reward: applied.reward,
        });
    Ok(FeedbackReply {
        status: 200,
        body: json!({
            "updated": {
                "model": applied.model,
                "target": applied.target,
                "reward": applied.reward,
                "observations": applied.updates,
            }
        }),
        result: Ok(Accepted {
            applied: Some(applied),
            forward,
        }),
    })
}

/// A model that learns through its router only: spend, then forward.
fn forward_only<S: SharedStore + ?Sized>(
    store: &S,
    plugin: &str,
    cfg: &Config,
    v: &Verified<'_>,
    spent_reset: &mut bool,
) -> Result<FeedbackReply, Refused> {
    let Some(child) = target_child(cfg, v.index, &v.token.target) else {
        return Err(Refused::new(Refusal::NotLearning, TARGET_GONE));
    };
    if !routing_agrees(v, |c| c.as_i64() == Some(child)) {
        return Err(Refused::new(Refusal::Invalid, ROUTING_DISAGREES));
    }
    spend(store, &spent_key(plugin, v), v.token.nonce, spent_reset)?;
    let reward = v.feedback.reward;
    Ok(FeedbackReply {
        status: 200,
        body: json!({"forwarded": {"model": v.model.name, "target": v.token.target, "reward": reward}}),
        result: Ok(Accepted {
            applied: None,
            forward: Some(RouterForward {
                model: v.index,
                target: v.token.target.clone(),
                child,
                reward,
            }),
        }),
    })
}
