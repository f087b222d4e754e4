//! Counter and gauge ids, defined once per VM from the names the core derives.

use super::abi;
use crate::bandit::ModelState;
use crate::config::Config;
use crate::learning::Refusal;
use crate::metrics::MetricNames;
use crate::policy::{Reason, ReplyKind};

pub(crate) struct Metrics {
    requests: Vec<Vec<u32>>,
    decisions_fixed: Vec<u32>,
    decisions_rules: Vec<u32>,
    pub body_parse_failures: u32,
    pub body_too_large: u32,
    local_replies: Vec<u32>,
    pub feedback_accepted: u32,
    feedback_rejected: Vec<u32>,
    pub rewards_implicit: u32,
    pub rewards_evaluator: u32,
    pub rewards_failed: u32,
    pub cas_retries: u32,
    pub cas_exhausted: u32,
    pub state_resets: u32,
    pub evaluator_failures: u32,
    bandit_gauges: Vec<Vec<[u32; 4]>>,
    detectors: Vec<u32>,
}

fn define(kind: u32, name: &str) -> Result<u32, String> {
    abi::define_metric(kind, name).map_err(|s| format!("{name}: host status {s}"))
}

fn counter(name: &str) -> Result<u32, String> {
    define(abi::METRIC_COUNTER, name)
}

fn counters(names: &[String]) -> Result<Vec<u32>, String> {
    names.iter().map(|n| counter(n)).collect()
}

impl Metrics {
    pub fn define(cfg: &Config) -> Result<Self, String> {
        let n = MetricNames::for_config(cfg);
        let mut bandit_gauges = Vec::with_capacity(n.bandit_gauges.len());
        for per_model in &n.bandit_gauges {
            let mut ids = Vec::with_capacity(per_model.len());
            for names in per_model {
                let mut four = [0u32; 4];
                for (slot, name) in four.iter_mut().zip(names) {
                    *slot = define(abi::METRIC_GAUGE, name)?;
                }
                ids.push(four);
            }
            bandit_gauges.push(ids);
        }
        Ok(Metrics {
            requests: n
                .requests
                .iter()
                .map(|m| counters(m))
                .collect::<Result<_, _>>()?,
            decisions_fixed: counters(&n.decisions_fixed)?,
            decisions_rules: counters(&n.decisions_rules)?,
            body_parse_failures: counter(&n.body_parse_failures)?,
            body_too_large: counter(&n.body_too_large)?,
            local_replies: counters(&n.local_replies)?,
            feedback_accepted: counter(&n.feedback_accepted)?,
            feedback_rejected: counters(&n.feedback_rejected)?,
            rewards_implicit: counter(&n.rewards_implicit)?,
            rewards_evaluator: counter(&n.rewards_evaluator)?,
            rewards_failed: counter(&n.rewards_failed)?,
            cas_retries: counter(&n.cas_retries)?,
            cas_exhausted: counter(&n.cas_exhausted)?,
            state_resets: counter(&n.state_resets)?,
            evaluator_failures: counter(&n.evaluator_failures)?,
            bandit_gauges,
            detectors: counters(&n.detectors)?,
        })
    }

    pub fn bump(id: u32) {
        Self::add(id, 1);
    }

    pub fn add(id: u32, n: u64) {
        // A failed increment loses a count; it must never fail the request.
        if n > 0 {
            let _ = abi::increment_metric(id, i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    pub fn request(&self, model: usize, target: usize) {
        if let Some(&id) = self.requests.get(model).and_then(|m| m.get(target)) {
            Self::bump(id);
        }
    }

    pub fn decision(&self, reason: Reason) {
        let id = match reason {
            Reason::Rule(i) => self.decisions_rules.get(i),
            fixed => fixed
                .fixed_index()
                .and_then(|i| self.decisions_fixed.get(i)),
        };
        if let Some(&id) = id {
            Self::bump(id);
        }
    }

    pub fn local_reply(&self, kind: ReplyKind) {
        if let Some(&id) = self.local_replies.get(kind.index()) {
            Self::bump(id);
        }
    }

    pub fn detector(&self, index: usize) {
        if let Some(&id) = self.detectors.get(index) {
            Self::bump(id);
        }
    }

    pub fn feedback_rejected(&self, refusal: Refusal) {
        if let Some(&id) = self.feedback_rejected.get(refusal.index()) {
            Self::bump(id);
        }
    }

    /// Publishes a model's learned state: pulls, and mean reward and posterior parameters in
    /// thousandths (gauges hold integers).
    pub fn publish_state(&self, cfg: &Config, model: usize, state: &ModelState) {
        let (Some(m), Some(ids)) = (cfg.models.get(model), self.bandit_gauges.get(model)) else {
            return;
        };
        for (target, four) in m.targets.iter().zip(ids) {
            let Some(arm) = state.arms.iter().find(|a| a.name == target.name) else {
                continue;
            };
            let milli = |v: f64| (v * 1000.0).round().max(0.0) as u64;
            let values = [
                arm.pulls.round().max(0.0) as u64,
                milli(arm.mean().unwrap_or(0.0)),
                milli(arm.alpha),
                milli(arm.beta),
            ];
            for (id, v) in four.iter().zip(values) {
                let _ = abi::record_metric(*id, v);
            }
        }
    }
}
