//! Learning from rewards: where bandit state lives in shared data, how a reward is applied, and
//! how a feedback request becomes a reward. Pure: the host passes its [`SharedStore`].

pub mod feedback;
pub mod health;
mod health_codec;
pub mod spent;
pub mod trust;

use crate::json::{json, Value};

pub use feedback::{
    admit, complete, process_feedback, refusal, Accepted, Checked, FeedbackInput, FeedbackReply,
    Plan, RouterForward,
};

use crate::bandit::{update_state, Alarm, Context, ModelState, SharedStore, UpdateFailure};
use crate::config::Config;

/// CAS attempts before a reward is given up as lost to contention (counted in a metric).
pub const MAX_CAS_ATTEMPTS: u32 = 32;

/// Shared-data key of a model's state. `plugin` (the Envoy plugin name) is the configuration's
/// identity: two plugins in one VM group learn separately; a reload of the same plugin keeps its
/// state (migrated by target name if the targets changed).
pub fn state_key(plugin: &str, model: &str) -> String {
    format!("inference-router/v1/{plugin}/state/{model}")
}

/// Prefix of every shared-data key of a plugin.
pub fn shared_prefix(plugin: &str) -> String {
    format!("inference-router/v1/{plugin}")
}

/// Prefix of the spent-decision buckets.
pub fn spent_prefix(plugin: &str) -> String {
    shared_prefix(plugin)
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
    /// Change detection restarted the target's statistics (to be counted and logged).
    pub alarm: Option<Alarm>,
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

/// The decision a reward grades: the target that served it and, for a contextual strategy, the
/// request's context (without one, only the context-free counts learn).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Graded<'a> {
    pub target: &'a str,
    pub context: Option<&'a Context>,
}

impl<'a> From<&'a str> for Graded<'a> {
    fn from(target: &'a str) -> Self {
        Graded {
            target,
            context: None,
        }
    }
}

/// Applies one reward, received at `now_ms` (Unix ms; what time decay counts from), to a
/// model's shared state.
pub fn apply_reward<'g, S: SharedStore + ?Sized>(
    store: &S,
    plugin: &str,
    cfg: &Config,
    model: usize,
    graded: impl Into<Graded<'g>>,
    reward: f64,
    now_ms: u64,
) -> Result<Applied, ApplyError> {
    let Graded { target, context } = graded.into();
    let m = cfg.models.get(model).ok_or(ApplyError::UnknownTarget)?;
    let strategy = m.bandit().ok_or(ApplyError::NotBandit)?;
    if m.target_by_name(target).is_none() {
        return Err(ApplyError::UnknownTarget);
    }
    let names = m.target_names();
    let initial = strategy.initial_state(&names);
    let key = state_key(plugin, &m.name);
    // Set by the attempt that is written (a retried attempt's alarm is overwritten).
    let mut alarm = None;
    let outcome = update_state(store, &key, MAX_CAS_ATTEMPTS, &initial, |state| {
        let (mut state, _) = strategy.reconcile(state, &names);
        strategy.decay_to(&mut state, now_ms);
        let arm = state
            .arm_index(target)
            .ok_or_else(|| "target missing from state".to_string())?;
        alarm = strategy
            .update_watched(&mut state, arm, context, reward)
            .map_err(|e| e.to_string())?;
        Ok::<_, String>(state)
    })
    .map_err(|e| match e {
        UpdateFailure::Contention { attempts } => ApplyError::Contention { attempts },
        UpdateFailure::Store { error, .. } => ApplyError::Store(crate::quote::text(&error)),
        UpdateFailure::Rejected(reason) => ApplyError::Rejected(reason),
    })?;
    Ok(Applied {
        model: m.name.clone(),
        target: target.to_string(),
        reward,
        updates: outcome.state.updates,
        retries: outcome.retries(),
        reset: outcome.discarded.is_some(),
        alarm,
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
    /// `feedback.bind`: the sender is not the decision's principal nor an evaluator.
    Unauthorized,
    /// `feedback.budget_per_minute`: the principal's budget for this minute is spent.
    OverBudget,
    /// The spent-id shard of the decision is full (`feedback.max_accepted_per_hour`).
    Full,
}

impl Refusal {
    pub const ALL: [Refusal; 9] = [
        Refusal::Invalid,
        Refusal::Forged,
        Refusal::Expired,
        Refusal::Replayed,
        Refusal::NotLearning,
        Refusal::Unavailable,
        Refusal::Unauthorized,
        Refusal::OverBudget,
        Refusal::Full,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Invalid => "invalid",
            Refusal::Forged => "forged",
            Refusal::Expired => "expired",
            Refusal::Replayed => "replayed",
            Refusal::NotLearning => "not_learning",
            Refusal::Unavailable => "unavailable",
            Refusal::Unauthorized => "unauthorized",
            Refusal::OverBudget => "over_budget",
            Refusal::Full => "full",
        }
    }

    pub fn status(self) -> u16 {
        match self {
            Refusal::Invalid => 400,
            Refusal::Forged => 403,
            Refusal::Expired => 410,
            Refusal::Replayed => 409,
            Refusal::NotLearning => 422,
            Refusal::Unavailable | Refusal::Full => 503,
            Refusal::Unauthorized => 403,
            Refusal::OverBudget => 429,
        }
    }

    pub fn index(self) -> usize {
        Refusal::ALL
            .iter()
            .position(|r| *r == self)
            .unwrap_or_default()
    }
}

/// The JSON the state endpoint returns: the build that runs, and every bandit model's current
/// state as routing sees it (with a fleet: this Envoy's statistics plus the fleet's, and how
/// many were its own).
pub fn state_document<S: SharedStore + ?Sized>(
    store: &S,
    plugin: &str,
    cfg: &Config,
    build: crate::plugin::Build,
) -> Value {
    let mut models = crate::json::Map::new();
    for m in cfg.models.iter() {
        let Some(strategy) = m.bandit() else { continue };
        let key = state_key(plugin, &m.name);
        let entry = match store.get(&key) {
            Ok((Some(bytes), _)) => match crate::bandit::decode(&bytes) {
                Ok(state) => {
                    let (state, _) = strategy.reconcile(state, &m.target_names());
                    let mut doc = state_json(&strategy.view(&state));
                    if let (Some(fleet), Some(obj)) = (state.fleet(), doc.as_object_mut()) {
                        obj.insert("own_observations".into(), json!(state.updates));
                        obj.insert(
                            "fleet".into(),
                            json!({
                                "replicas": fleet.replicas,
                                "observations": fleet.updates,
                                "as_of_ms": fleet.as_of_ms,
                            }),
                        );
                    }
                    doc
                }
                Err(e) => error_json(format!("undecodable state: {e}")),
            },
            Ok((None, _)) => error_json("no state yet".into()),
            Err(e) => error_json(format!("shared data failed: {e}")),
        };
        models.insert(m.name.clone(), entry);
    }
    let mut doc = json!({
        "build": { "version": build.version, "commit": build.commit },
        "models": models,
    });
    let load = crate::load::document(store, plugin, cfg);
    if let (Some(obj), false) = (
        doc.as_object_mut(),
        load.as_object().is_none_or(|l| l.is_empty()),
    ) {
        obj.insert("load".into(), load);
    }
    doc
}

/// `{"error": text}`: one object built for the state endpoint's three errors.
fn error_json(text: String) -> Value {
    json!({ "error": text })
}

pub fn state_json(state: &ModelState) -> Value {
    json!({
        "observations": state.updates,
        "targets": state.arms.iter().map(|a| {
            let mut t = json!({
                "name": a.name,
                "pulls": a.pulls,
                "mean_reward": a.mean(),
                "alpha": a.alpha,
                "beta": a.beta,
            });
            // linucb: the regression's coefficients (bias first, then the features in order),
            // predicting `reward − 0.5`.
            let theta = state.linear().and_then(|l| l.arm(&a.name)?.theta());
            if let (Some(theta), Some(obj)) = (theta, t.as_object_mut()) {
                obj.insert("theta".into(), json!(theta));
            }
            t
        }).collect::<Vec<_>>(),
    })
}
