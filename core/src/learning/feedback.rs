//! One feedback request, one pipeline: parse (body or headers) → verify the decision token once
//! → find the model → check the sender may reward it (`trust`) → charge its budget → spend the
//! decision id (each counts once, across workers) → apply the reward to the model's bandit state
//! and/or forward it to the model's router (`router.feedback_path`). The stream
//! (`stream::endpoints`) sends the reply and queues the forward.

use crate::json::{json, Value};

use super::trust::{self, BudgetError, Grant};
use super::{apply_reward, spent, spent_prefix, Applied, ApplyError, Refusal, MAX_CAS_ATTEMPTS};
use crate::bandit::SharedStore;
use crate::callout::target_child;
use crate::config::{Config, Model};
use crate::feedback::{parse_feedback, DecisionToken, Feedback, TokenError};

/// What a feedback request carried, as the host read it.
pub struct FeedbackInput<'a> {
    pub body: &'a [u8],
    /// `x-inference-decision` of the feedback request.
    pub header_decision: Option<&'a str>,
    /// `x-inference-reward` of the feedback request (header-only feedback, no body).
    pub header_reward: Option<&'a str>,
    /// Who sent it, under `feedback.bind` ([`trust::principal`]).
    pub principal: Option<&'a str>,
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
#[derive(Debug, Clone, PartialEq)]
pub struct Refused(pub Refusal, pub String);

impl Refused {
    fn new(refusal: Refusal, detail: &str) -> Self {
        Refused(refusal, detail.to_string())
    }

    pub fn reply(self) -> FeedbackReply {
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
    token: DecisionToken,
    feedback: Feedback,
    /// The model's index, and the model.
    index: usize,
    model: &'c Model,
}

/// A feedback request that verified: whose decision it grades, with what reward, and what
/// accepting it does. Owned, so it can wait for a fleet-wide spend (`fleet::spend`).
#[derive(Debug, Clone, PartialEq)]
pub struct Checked {
    pub model: usize,
    pub token: DecisionToken,
    pub reward: f64,
    pub plan: Plan,
    /// The sender's budget tag, when a budget applies to it.
    pub budget: Option<u64>,
}

/// What accepting a checked feedback does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// A bandit model's own target: apply the reward (and forward it if the model's router
    /// takes rewards).
    Learn { target: usize },
    /// A model that learns through its router only: forward to this child.
    Forward { child: i64 },
}

/// Verifies, charges, spends and applies (or forwards) one feedback request against this
/// Envoy's shared data.
pub fn process_feedback<S: SharedStore + ?Sized>(
    store: &S,
    plugin: &str,
    cfg: &Config,
    now: u64,
    input: &FeedbackInput<'_>,
) -> FeedbackReply {
    let checked = match admit(store, plugin, cfg, now, input) {
        Ok(c) => c,
        Err(refused) => return refused.reply(),
    };
    let key = spent::shard_key(
        &spent_prefix(plugin),
        spent::bucket_of(checked.token.expires),
        checked.token.nonce,
    );
    let capacity = cfg.feedback.as_ref().map_or(0, |f| f.spent_per_shard);
    if let Err(refused) = spend(store, &key, checked.token.nonce, capacity) {
        return refused.reply();
    }
    let reply = complete(store, plugin, cfg, &checked, now.saturating_mul(1000));
    if reply.result.is_err() {
        // Not applied: release the id so the sender may retry.
        let _ = spent::unspend(store, &key, checked.token.nonce, MAX_CAS_ATTEMPTS);
    }
    reply
}

/// The steps before the decision id is spent, whoever spends it (this Envoy's shared data or
/// the fleet's etcd): [`check`], then the sender's budget is charged.
pub fn admit<S: SharedStore + ?Sized>(
    store: &S,
    plugin: &str,
    cfg: &Config,
    now: u64,
    input: &FeedbackInput<'_>,
) -> Result<Checked, Refused> {
    let checked = check(cfg, plugin, now, input)?;
    charge(store, plugin, cfg, &checked, now)?;
    Ok(checked)
}

/// Reads and verifies a feedback request, checks its sender may reward the decision and decides
/// what accepting it would do; the reply is the refusal. Nothing is spent or changed.
fn check(
    cfg: &Config,
    plugin: &str,
    now: u64,
    input: &FeedbackInput<'_>,
) -> Result<Checked, Refused> {
    let v = verify(cfg, plugin, now, input)?;
    let grant = match &cfg.feedback {
        Some(fb) => trust::authorize(fb, plugin, &v.token, input.principal)
            .map_err(|(refusal, detail)| Refused::new(refusal, detail))?,
        None => Grant::Free,
    };
    let plan = match plan_for(cfg, &v.token) {
        Some((_, Plan::Learn { target })) => {
            let index = u64::try_from(target).ok();
            if !routing_agrees(&v, |c| c.as_u64().is_some_and(|c| Some(c) == index)) {
                return Err(Refused::new(Refusal::Invalid, ROUTING_DISAGREES));
            }
            Plan::Learn { target }
        }
        Some((_, Plan::Forward { child })) => {
            if !routing_agrees(&v, |c| c.as_i64() == Some(child)) {
                return Err(Refused::new(Refusal::Invalid, ROUTING_DISAGREES));
            }
            Plan::Forward { child }
        }
        None if v.model.is_bandit()
            || v.model
                .router
                .as_ref()
                .is_some_and(|r| r.feedback_path.is_some()) =>
        {
            return Err(Refused::new(Refusal::NotLearning, TARGET_GONE))
        }
        None => {
            return Err(Refused::new(
                Refusal::NotLearning,
                "the decision's model does not learn from rewards",
            ))
        }
    };
    Ok(Checked {
        model: v.index,
        token: v.token,
        reward: v.feedback.reward,
        plan,
        budget: match grant {
            Grant::Budgeted(tag) => Some(tag),
            Grant::Free => None,
        },
    })
}

/// Counts the feedback against its sender's budget (`feedback.budget_per_minute`).
fn charge<S: SharedStore + ?Sized>(
    store: &S,
    plugin: &str,
    cfg: &Config,
    c: &Checked,
    now: u64,
) -> Result<(), Refused> {
    let per_minute = cfg.feedback.as_ref().and_then(|f| f.budget_per_minute);
    let (Some(tag), Some(per_minute)) = (c.budget, per_minute) else {
        return Ok(());
    };
    trust::charge(store, plugin, tag, per_minute, now).map_err(|e| match e {
        BudgetError::Spent { .. } => Refused::new(
            Refusal::OverBudget,
            "this principal's rewards for this minute are spent (feedback.budget_per_minute)",
        ),
        BudgetError::Unavailable => Refused::new(
            Refusal::Unavailable,
            "the reward budget could not be checked; try again",
        ),
    })
}

/// What accepting feedback on `token`'s decision does under this configuration, and the
/// model's index; `None` when it can do nothing (model or target gone, model does not learn).
pub fn plan_for(cfg: &Config, token: &DecisionToken) -> Option<(usize, Plan)> {
    let index = cfg.model_by_name(&token.model)?;
    let model = cfg.models.get(index)?;
    // A bandit learns itself; a target it does not know may still be a router's own choice
    // (`-1`, `-2`), which only its router can learn from.
    if let Some(target) = model
        .is_bandit()
        .then(|| model.target_by_name(&token.target))
        .flatten()
    {
        return Some((index, Plan::Learn { target }));
    }
    model
        .router
        .as_ref()
        .and_then(|r| r.feedback_path.as_ref())?;
    let child = target_child(cfg, index, &token.target)?;
    Some((index, Plan::Forward { child }))
}

/// A refusal reply, for steps outside this module (the fleet's spend).
pub fn refusal(refusal: Refusal, detail: &str) -> FeedbackReply {
    Refused::new(refusal, detail).reply()
}

/// Reads the feedback, verifies its token and finds its model.
fn verify<'c>(
    cfg: &'c Config,
    plugin: &str,
    now: u64,
    input: &FeedbackInput<'_>,
) -> Result<Verified<'c>, Refused> {
    let Some(settings) = &cfg.feedback else {
        return Err(Refused::new(Refusal::Invalid, "feedback is not configured"));
    };
    let feedback = read(input)?;
    let token = settings
        .keys
        .verify(plugin, &feedback.decision, now)
        .map_err(|e| {
            let refusal = match e {
                TokenError::Expired => Refusal::Expired,
                TokenError::BadSignature | TokenError::Malformed | TokenError::UnknownKey => {
                    Refusal::Forged
                }
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
    let reward = crate::parse_float::parse_f64(reward.trim())
        .ok_or_else(|| Refused::new(Refusal::Invalid, "x-inference-reward is not a number"))?;
    let reward = crate::bandit::check_reward(reward)
        .map_err(|e| Refused(Refusal::Invalid, crate::quote::text(&e)))?;
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

/// Records the decision id as used; `Err` is the refusal to send.
fn spend<S: SharedStore + ?Sized>(
    store: &S,
    key: &str,
    nonce: u64,
    capacity: usize,
) -> Result<(), Refused> {
    match spent::spend(store, key, nonce, capacity, MAX_CAS_ATTEMPTS) {
        Ok(spent::Spend::Fresh) => Ok(()),
        Ok(spent::Spend::Replayed) => Err(Refused::new(
            Refusal::Replayed,
            "this decision's feedback was already accepted",
        )),
        Err(spent::SpendError::Full) => Err(Refused::new(
            Refusal::Full,
            "this Envoy accepts no more feedback for decisions expiring this hour (feedback.max_accepted_per_hour)",
        )),
        Err(spent::SpendError::Corrupt) => {
            crate::host_log!(Error, "inference-router: spent-id shard {key} is undecodable; its feedback is refused until it expires");
            Err(Refused::new(
                Refusal::Unavailable,
                "could not record the decision as used",
            ))
        }
        Err(_) => Err(Refused::new(
            Refusal::Unavailable,
            "could not record the decision as used; try again",
        )),
    }
}

/// Accepts a checked feedback whose decision id was just spent: applies the reward (at
/// `now_ms`) and/or says what to forward to the model's router. A refusal means nothing was
/// applied: the caller releases the id again.
pub fn complete<S: SharedStore + ?Sized>(
    store: &S,
    plugin: &str,
    cfg: &Config,
    c: &Checked,
    now_ms: u64,
) -> FeedbackReply {
    match c.plan {
        Plan::Learn { .. } => learn(store, plugin, cfg, c, now_ms).unwrap_or_else(Refused::reply),
        Plan::Forward { child } => FeedbackReply {
            status: 200,
            body: json!({"forwarded": {"model": model_name(cfg, c.model), "target": c.token.target, "reward": c.reward}}),
            result: Ok(Accepted {
                applied: None,
                forward: Some(RouterForward {
                    model: c.model,
                    target: c.token.target.clone(),
                    child,
                    reward: c.reward,
                }),
            }),
        },
    }
}

fn model_name(cfg: &Config, model: usize) -> &str {
    cfg.models.get(model).map_or("", |m| m.name.as_str())
}

/// A bandit model's own target: apply, and forward to its router if it has one.
fn learn<S: SharedStore + ?Sized>(
    store: &S,
    plugin: &str,
    cfg: &Config,
    c: &Checked,
    now_ms: u64,
) -> Result<FeedbackReply, Refused> {
    let applied = apply_reward(
        store,
        plugin,
        cfg,
        c.model,
        super::Graded {
            target: &c.token.target,
            context: c.token.context.as_ref(),
        },
        c.reward,
        now_ms,
    )
    .map_err(|e| {
        let refusal = match e {
            ApplyError::NotBandit | ApplyError::UnknownTarget => Refusal::NotLearning,
            _ => Refusal::Unavailable,
        };
        Refused(refusal, e.describe())
    })?;
    let forward = cfg
        .models
        .get(c.model)
        .and_then(|m| m.router.as_ref())
        .and_then(|r| r.feedback_path.as_ref())
        .and_then(|_| target_child(cfg, c.model, &applied.target))
        .map(|child| RouterForward {
            model: c.model,
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
