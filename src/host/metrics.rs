//! Counter and gauge ids, defined once per VM from the names the core derives.

use super::abi;
use crate::bandit::ModelState;
use crate::callout::StatusClass;
use crate::config::Config;
use crate::learning::Refusal;
use crate::metrics::{metric_segment, MetricNames, PREFIX};
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
    /// External routers: answers that could not be used (down, slow, malformed, out of range).
    pub router_failures: u32,
    /// Rewards forwarded to a router's `feedback_path` that it accepted (2xx) / that failed.
    pub router_feedback_forwarded: u32,
    pub router_feedback_failures: u32,
    /// Fan-out replies in which some target failed.
    pub fan_out_partial: u32,
    /// Retries started on a fallback target / that gave the client a good answer / that failed.
    pub retry_attempts: u32,
    pub retry_recovered: u32,
    pub retry_failed: u32,
    /// Shadow copies dropped before they were sent (queue full, callout refused).
    pub shadow_dropped: u32,
    /// By model index, for models that have shadows: counters by status class and the latency
    /// histogram.
    shadow: Vec<Option<ShadowIds>>,
}

struct ShadowIds {
    classes: [u32; 5],
    latency_ms: u32,
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
            router_failures: counter(&format!("{PREFIX}.router.failures"))?,
            router_feedback_forwarded: counter(&format!("{PREFIX}.router.feedback_forwarded"))?,
            router_feedback_failures: counter(&format!("{PREFIX}.router.feedback_failures"))?,
            fan_out_partial: counter(&format!("{PREFIX}.fan_out.partial"))?,
            retry_attempts: counter(&format!("{PREFIX}.retry.attempts"))?,
            retry_recovered: counter(&format!("{PREFIX}.retry.recovered"))?,
            retry_failed: counter(&format!("{PREFIX}.retry.failed"))?,
            shadow_dropped: counter(&format!("{PREFIX}.shadow.dropped"))?,
            shadow: Self::define_shadows(cfg)?,
        })
    }

    /// `shadow.<model>.<class>` counters and the `shadow.<model>.latency_ms` histogram, once
    /// per model that some shadow mirrors.
    fn define_shadows(cfg: &Config) -> Result<Vec<Option<ShadowIds>>, String> {
        let mut out = Vec::with_capacity(cfg.models.len());
        for (mi, m) in cfg.models.iter().enumerate() {
            if !cfg.shadows.iter().any(|s| s.model == mi) {
                out.push(None);
                continue;
            }
            let base = format!("{PREFIX}.shadow.{}", metric_segment(&m.name));
            let mut classes = [0u32; 5];
            for (slot, class) in classes.iter_mut().zip(StatusClass::ALL) {
                *slot = counter(&format!("{base}.{}", class.as_str()))?;
            }
            let latency_ms = define(abi::METRIC_HISTOGRAM, &format!("{base}.latency_ms"))?;
            out.push(Some(ShadowIds {
                classes,
                latency_ms,
            }));
        }
        Ok(out)
    }

    /// Counts a shadow answer by status class and records its latency (only for answers).
    pub fn shadow(&self, model: usize, class: StatusClass, latency_ms: Option<u64>) {
        let Some(Some(ids)) = self.shadow.get(model) else {
            return;
        };
        if let Some(&id) = ids.classes.get(class.index()) {
            Self::bump(id);
        }
        if let Some(ms) = latency_ms {
            let _ = abi::record_metric(ids.latency_ms, ms);
        }
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
