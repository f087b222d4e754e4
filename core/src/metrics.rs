//! Metric names, derived once from the configuration. The host defines them at plugin start and
//! increments them by index; nothing is formatted per request.

use crate::config::Config;
use crate::policy::Reason;

pub const PREFIX: &str = "inference_router";

/// A name as one segment of a metric name: `.` would split Envoy's stat hierarchy and `:` is not
/// valid in Prometheus names, so both become `_`.
pub fn metric_segment(name: &str) -> String {
    name.chars()
        .map(|c| if c == '.' || c == ':' { '_' } else { c })
        .collect()
}

/// Every counter the filter defines, in a fixed order the host keeps ids for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricNames {
    /// `requests.<model>.<target>`, indexed `[model][target]`.
    pub requests: Vec<Vec<String>>,
    /// `decisions.<reason>` for the fixed reasons, in `Reason::FIXED` order.
    pub decisions_fixed: Vec<String>,
    /// `decisions.rule.<rule>`, by rule index.
    pub decisions_rules: Vec<String>,
    pub body_parse_failures: String,
    pub body_too_large: String,
    /// Requests routed on the first part of their body, the rest streamed to the upstream.
    pub body_decided_early: String,
    /// `local_replies.<kind>`, in `ReplyKind::ALL` order.
    pub local_replies: Vec<String>,
    pub feedback_accepted: String,
    /// `feedback.rejected.<refusal>`, in `Refusal::ALL` order.
    pub feedback_rejected: Vec<String>,
    pub rewards_implicit: String,
    pub rewards_evaluator: String,
    pub rewards_failed: String,
    pub cas_retries: String,
    pub cas_exhausted: String,
    pub state_resets: String,
    pub evaluator_failures: String,
    /// Gauges per bandit target, `[model][target]` (empty for weighted models):
    /// `bandit.<model>.<target>.{pulls,mean_reward_milli,alpha_milli,beta_milli}`.
    pub bandit_gauges: Vec<Vec<[String; 4]>>,
    /// `bandit.<model>.<target>.change_alarms`, `[model][target]`, for models with
    /// `change_detection` (else empty): times the target's statistics restarted.
    pub change_alarms: Vec<Vec<String>>,
    /// `detectors.<name>`: decisions in which that detector fired.
    pub detectors: Vec<String>,
    /// `detectors.not_scanned.<reason>` / `detectors.bypassed.<reason>`, in `NotScanned::ALL`
    /// order, when some rule has `when.detected` (else empty).
    pub not_scanned: Vec<String>,
    pub bypassed: Vec<String>,
}

pub const GAUGE_SUFFIXES: [&str; 4] = ["pulls", "mean_reward_milli", "alpha_milli", "beta_milli"];

impl MetricNames {
    pub fn for_config(cfg: &Config) -> Self {
        MetricNames {
            requests: cfg
                .models
                .iter()
                .map(|m| {
                    m.targets
                        .iter()
                        .map(|t| {
                            format!(
                                "{PREFIX}.requests.{}.{}",
                                metric_segment(&m.name),
                                metric_segment(&t.name)
                            )
                        })
                        .collect()
                })
                .collect(),
            decisions_fixed: Reason::FIXED
                .iter()
                .map(|r| format!("{PREFIX}.decisions.{}", r.metric_segment()))
                .collect(),
            decisions_rules: cfg
                .rules
                .iter()
                .map(|r| format!("{PREFIX}.decisions.rule.{}", metric_segment(&r.name)))
                .collect(),
            body_parse_failures: format!("{PREFIX}.body.parse_failures"),
            body_too_large: format!("{PREFIX}.body.too_large"),
            body_decided_early: format!("{PREFIX}.body.decided_early"),
            local_replies: crate::policy::ReplyKind::ALL
                .iter()
                .map(|k| format!("{PREFIX}.local_replies.{}", k.as_str()))
                .collect(),
            feedback_accepted: format!("{PREFIX}.feedback.accepted"),
            feedback_rejected: crate::learning::Refusal::ALL
                .iter()
                .map(|r| format!("{PREFIX}.feedback.rejected.{}", r.as_str()))
                .collect(),
            rewards_implicit: format!("{PREFIX}.rewards.implicit"),
            rewards_evaluator: format!("{PREFIX}.rewards.evaluator"),
            rewards_failed: format!("{PREFIX}.rewards.failed"),
            cas_retries: format!("{PREFIX}.bandit.cas_retries"),
            cas_exhausted: format!("{PREFIX}.bandit.cas_exhausted"),
            state_resets: format!("{PREFIX}.bandit.state_resets"),
            evaluator_failures: format!("{PREFIX}.evaluator.failures"),
            detectors: cfg
                .detectors
                .iter()
                .map(|d| format!("{PREFIX}.detectors.{}", metric_segment(&d.name)))
                .collect(),
            not_scanned: unscanned_names(cfg, "not_scanned"),
            bypassed: unscanned_names(cfg, "bypassed"),
            change_alarms: cfg.models.iter().map(change_alarm_names).collect(),
            bandit_gauges: cfg
                .models
                .iter()
                .map(|m| {
                    if !m.is_bandit() {
                        return Vec::new();
                    }
                    m.targets
                        .iter()
                        .map(|t| {
                            GAUGE_SUFFIXES.map(|g| {
                                format!(
                                    "{PREFIX}.bandit.{}.{}.{g}",
                                    metric_segment(&m.name),
                                    metric_segment(&t.name)
                                )
                            })
                        })
                        .collect()
                })
                .collect(),
        }
    }

    /// All counter names (gauges are in `bandit_gauges`).
    pub fn counters(&self) -> impl Iterator<Item = &str> {
        self.requests
            .iter()
            .flatten()
            .chain(&self.decisions_fixed)
            .chain(&self.decisions_rules)
            .chain([
                &self.body_parse_failures,
                &self.body_too_large,
                &self.body_decided_early,
            ])
            .chain(&self.local_replies)
            .chain([&self.feedback_accepted])
            .chain(&self.feedback_rejected)
            .chain([
                &self.rewards_implicit,
                &self.rewards_evaluator,
                &self.rewards_failed,
                &self.cas_retries,
                &self.cas_exhausted,
                &self.state_resets,
                &self.evaluator_failures,
            ])
            .chain(self.change_alarms.iter().flatten())
            .chain(&self.detectors)
            .chain(&self.not_scanned)
            .chain(&self.bypassed)
            .map(String::as_str)
    }
}

fn change_alarm_names(m: &crate::config::Model) -> Vec<String> {
    if !m.bandit().is_some_and(|b| b.detects_changes()) {
        return Vec::new();
    }
    (m.targets.iter())
        .map(|t| {
            format!(
                "{PREFIX}.bandit.{}.{}.change_alarms",
                metric_segment(&m.name),
                metric_segment(&t.name)
            )
        })
        .collect()
}

fn unscanned_names(cfg: &Config, what: &str) -> Vec<String> {
    if !cfg.has_detected_rules {
        return Vec::new();
    }
    crate::inspect::scan::NotScanned::ALL
        .iter()
        .map(|r| format!("{PREFIX}.detectors.{what}.{}", r.as_str()))
        .collect()
}
