//! The metrics a configuration defines: names, kinds, order of definition and the ids each
//! event counts with are an interface (dashboards, alerts, Envoy's stat ids).

use std::cell::RefCell;

use super::Metrics;
use crate::host::{Buffer, Call, Host, Map, MetricKind, Status, Stream, NOT_FOUND};

/// Records the metrics defined (id = position); every other host call fails.
#[derive(Default)]
struct Recorder {
    defined: RefCell<Vec<(MetricKind, String)>>,
}

impl Host for Recorder {
    fn header(&self, _: Map, _: &str) -> Result<Option<String>, Status> {
        Err(NOT_FOUND)
    }
    fn header_map(&self, _: Map) -> Result<Option<Vec<u8>>, Status> {
        Err(NOT_FOUND)
    }
    fn set_header(&self, _: Map, _: &str, _: &str) -> Result<(), Status> {
        Err(NOT_FOUND)
    }
    fn remove_header(&self, _: Map, _: &str) -> Result<(), Status> {
        Err(NOT_FOUND)
    }
    fn buffer(&self, _: Buffer, _: usize, _: usize) -> Result<Option<Vec<u8>>, Status> {
        Err(NOT_FOUND)
    }
    fn property(&self, _: &[&str]) -> Result<Option<Vec<u8>>, Status> {
        Err(NOT_FOUND)
    }
    fn send_local_response(
        &self,
        _: u16,
        _: &[(&str, &str)],
        _: Option<&[u8]>,
        _: Option<u32>,
    ) -> Result<(), Status> {
        Err(NOT_FOUND)
    }
    fn clear_route_cache(&self) -> Result<(), Status> {
        Err(NOT_FOUND)
    }
    fn continue_stream(&self, _: Stream) -> Result<(), Status> {
        Err(NOT_FOUND)
    }
    fn shared_data(&self, _: &str) -> Result<(Option<Vec<u8>>, Option<u32>), Status> {
        Err(NOT_FOUND)
    }
    fn set_shared_data(&self, _: &str, _: &[u8], _: Option<u32>) -> Result<(), Status> {
        Err(NOT_FOUND)
    }
    fn dispatch(&self, _: &Call<'_>) -> Result<u32, Status> {
        Err(NOT_FOUND)
    }
    fn define_metric(&self, kind: MetricKind, name: &str) -> Result<u32, Status> {
        let mut defined = self.defined.borrow_mut();
        defined.push((kind, name.to_string()));
        Ok(u32::try_from(defined.len() - 1).unwrap())
    }
    fn increment_metric(&self, _: u32, _: i64) -> Result<(), Status> {
        Err(NOT_FOUND)
    }
    fn record_metric(&self, _: u32, _: u64) -> Result<(), Status> {
        Err(NOT_FOUND)
    }
    fn now_nanos(&self) -> Result<u64, Status> {
        Err(NOT_FOUND)
    }
    fn set_tick_period_ms(&self, _: u32) -> Result<(), Status> {
        Err(NOT_FOUND)
    }
    fn log_critical(&self, _: &str) {}
}

/// Every id `Metrics` holds, field by field in declaration order.
fn ids(m: &Metrics) -> Vec<u32> {
    let mut out: Vec<u32> = m.requests.iter().flatten().copied().collect();
    out.extend(&m.decisions_fixed);
    out.extend(&m.decisions_rules);
    out.extend([
        m.body_parse_failures,
        m.body_too_large,
        m.body_decided_early,
    ]);
    out.extend(&m.local_replies);
    out.push(m.feedback_accepted);
    out.extend(&m.feedback_rejected);
    out.extend([
        m.rewards_implicit,
        m.rewards_evaluator,
        m.rewards_failed,
        m.cas_retries,
        m.cas_exhausted,
        m.state_resets,
        m.evaluator_failures,
    ]);
    out.extend(m.bandit_gauges.iter().flatten().flatten());
    out.extend(m.change_alarms.iter().flatten());
    out.extend(&m.detectors);
    out.extend(&m.not_scanned);
    out.extend(&m.bypassed);
    out.extend([
        m.router_failures,
        m.router_feedback_forwarded,
        m.router_feedback_failures,
        m.fan_out_partial,
        m.retry_attempts,
        m.retry_recovered,
        m.retry_failed,
        m.shadow_dropped,
    ]);
    for s in m.shadow.iter().flatten() {
        out.extend(s.classes);
        out.push(s.latency_ms);
    }
    if let Some(f) = &m.fleet {
        out.extend([
            f.sync_success,
            f.sync_failures,
            f.publish_success,
            f.publish_failures,
            f.etcd_requests,
            f.replicas,
            f.lag_ms,
            f.retired,
            f.rebased,
            f.conflicts,
            f.invalid,
            f.in_doubt,
            f.in_doubt_applied,
        ]);
    }
    if let Some(l) = &m.load {
        out.extend([
            l.over_capacity,
            l.full_skips,
            l.reports,
            l.reports_invalid,
            l.untracked,
        ]);
        out.extend(l.in_flight.iter().flatten());
    }
    out
}

const RICH: &str = r#"{
  "models": [
    { "name": "chat.v1", "strategy": { "type": "thompson", "change_detection": {} },
      "reward": { "status": true },
      "targets": [ { "name": "big:1", "cluster": "c1", "capacity": 4 },
                   { "name": "small", "cluster": "c2" } ] },
    { "name": "w", "targets": [ { "name": "t", "cluster": "c3", "weight": 1 } ] },
    { "name": "eg", "strategy": { "type": "epsilon_greedy", "epsilon": 0.1 },
      "targets": [ { "name": "x", "cluster": "c4" } ] }
  ],
  "detectors": [ { "name": "email", "builtin": "email" } ],
  "rules": [ { "name": "no.email", "when": { "detected": "email" },
               "then": { "reject": { "status": 403, "message": "no" } } },
             { "name": "to-w", "when": { "path_prefix": "/w" }, "then": { "model": "w" } } ],
  "shadows": [ { "model": "w", "target": "t", "percent": 10 } ],
  "feedback": { "path": "/feedback", "signing_key": "e2e-signing-key-0123456789abcdef", "ttl_seconds": 60 },
  "state_endpoint": { "path": "/state", "token": "state-token-0123456789" }
}"#;

const FLEET: &str = r#"{
  "models": [ { "name": "m", "strategy": { "type": "ucb1" }, "reward": { "status": true },
                "targets": [ { "name": "a", "cluster": "c1" }, { "name": "b", "cluster": "c2" } ] } ],
  "feedback": { "path": "/feedback", "signing_key": "e2e-signing-key-0123456789abcdef", "ttl_seconds": 60 },
  "state_endpoint": { "path": "/state", "token": "state-token-0123456789" },
  "fleet": { "cluster": "etcd", "prefix": "/t", "sync_ms": 1000 }
}"#;

#[test]
fn a_configuration_defines_its_metrics_by_name_kind_and_order() {
    for (config, expected, expected_ids) in [
        (RICH, RICH_METRICS, RICH_IDS),
        (FLEET, FLEET_METRICS, FLEET_IDS),
    ] {
        defines(config, expected, expected_ids);
    }
}

/// `expected_ids`: the id of each field of `Metrics` in declaration order ([`ids`]).
fn defines(config: &str, expected: &[&str], expected_ids: &[u32]) {
    let cfg = crate::config::parse(config.as_bytes()).unwrap();
    let host = Recorder::default();
    let m = Metrics::define(&host, &cfg).unwrap();
    let defined = host.defined.borrow();
    let listed: Vec<String> = (defined.iter())
        .map(|(kind, name)| format!("{kind:?} {name}"))
        .collect();
    assert_eq!(listed, expected);
    assert_eq!(ids(&m), expected_ids);
}

#[test]
fn a_minimal_configuration_defines_no_optional_metrics() {
    let cfg = crate::config::parse(
        br#"{"models": [{"name": "m", "targets": [{"name": "t", "cluster": "c", "weight": 1}]}]}"#,
    )
    .unwrap();
    let host = Recorder::default();
    let m = Metrics::define(&host, &cfg).unwrap();
    assert!(m.fleet.is_none() && m.load.is_none());
    assert_eq!(host.defined.borrow().len(), ids(&m).len());
}

const RICH_METRICS: &[&str] = &[
    "Gauge inference_router.bandit.chat_v1.big_1.pulls",
    "Gauge inference_router.bandit.chat_v1.big_1.mean_reward_milli",
    "Gauge inference_router.bandit.chat_v1.big_1.alpha_milli",
    "Gauge inference_router.bandit.chat_v1.big_1.beta_milli",
    "Gauge inference_router.bandit.chat_v1.small.pulls",
    "Gauge inference_router.bandit.chat_v1.small.mean_reward_milli",
    "Gauge inference_router.bandit.chat_v1.small.alpha_milli",
    "Gauge inference_router.bandit.chat_v1.small.beta_milli",
    "Gauge inference_router.bandit.eg.x.pulls",
    "Gauge inference_router.bandit.eg.x.mean_reward_milli",
    "Gauge inference_router.bandit.eg.x.alpha_milli",
    "Gauge inference_router.bandit.eg.x.beta_milli",
    "Counter inference_router.requests.chat_v1.big_1",
    "Counter inference_router.requests.chat_v1.small",
    "Counter inference_router.requests.w.t",
    "Counter inference_router.requests.eg.x",
    "Counter inference_router.decisions.weighted",
    "Counter inference_router.decisions.least_loaded",
    "Counter inference_router.decisions.sticky",
    "Counter inference_router.decisions.path_version",
    "Counter inference_router.decisions.bandit",
    "Counter inference_router.decisions.budget",
    "Counter inference_router.decisions.escalated",
    "Counter inference_router.decisions.fallback",
    "Counter inference_router.decisions.router",
    "Counter inference_router.decisions.fan_out",
    "Counter inference_router.decisions.default",
    "Counter inference_router.decisions.rule.no_email",
    "Counter inference_router.decisions.rule.to-w",
    "Counter inference_router.body.parse_failures",
    "Counter inference_router.body.too_large",
    "Counter inference_router.body.decided_early",
    "Counter inference_router.local_replies.echo",
    "Counter inference_router.local_replies.reply",
    "Counter inference_router.local_replies.reject",
    "Counter inference_router.local_replies.error",
    "Counter inference_router.feedback.accepted",
    "Counter inference_router.feedback.rejected.invalid",
    "Counter inference_router.feedback.rejected.forged",
    "Counter inference_router.feedback.rejected.expired",
    "Counter inference_router.feedback.rejected.replayed",
    "Counter inference_router.feedback.rejected.not_learning",
    "Counter inference_router.feedback.rejected.unavailable",
    "Counter inference_router.feedback.rejected.unauthorized",
    "Counter inference_router.feedback.rejected.over_budget",
    "Counter inference_router.feedback.rejected.full",
    "Counter inference_router.rewards.implicit",
    "Counter inference_router.rewards.evaluator",
    "Counter inference_router.rewards.failed",
    "Counter inference_router.bandit.cas_retries",
    "Counter inference_router.bandit.cas_exhausted",
    "Counter inference_router.bandit.state_resets",
    "Counter inference_router.evaluator.failures",
    "Counter inference_router.bandit.chat_v1.big_1.change_alarms",
    "Counter inference_router.bandit.chat_v1.small.change_alarms",
    "Counter inference_router.detectors.email",
    "Counter inference_router.detectors.not_scanned.content_type",
    "Counter inference_router.detectors.not_scanned.too_large",
    "Counter inference_router.detectors.not_scanned.compressed",
    "Counter inference_router.detectors.not_scanned.malformed",
    "Counter inference_router.detectors.not_scanned.duplicate_key",
    "Counter inference_router.detectors.not_scanned.scan_limit",
    "Counter inference_router.detectors.not_scanned.too_deep",
    "Counter inference_router.detectors.not_scanned.streamed",
    "Counter inference_router.detectors.bypassed.content_type",
    "Counter inference_router.detectors.bypassed.too_large",
    "Counter inference_router.detectors.bypassed.compressed",
    "Counter inference_router.detectors.bypassed.malformed",
    "Counter inference_router.detectors.bypassed.duplicate_key",
    "Counter inference_router.detectors.bypassed.scan_limit",
    "Counter inference_router.detectors.bypassed.too_deep",
    "Counter inference_router.detectors.bypassed.streamed",
    "Counter inference_router.router.failures",
    "Counter inference_router.router.feedback_forwarded",
    "Counter inference_router.router.feedback_failures",
    "Counter inference_router.fan_out.partial",
    "Counter inference_router.retry.attempts",
    "Counter inference_router.retry.recovered",
    "Counter inference_router.retry.failed",
    "Counter inference_router.shadow.dropped",
    "Counter inference_router.shadow.w.2xx",
    "Counter inference_router.shadow.w.3xx",
    "Counter inference_router.shadow.w.4xx",
    "Counter inference_router.shadow.w.5xx",
    "Counter inference_router.shadow.w.failed",
    "Histogram inference_router.shadow.w.latency_ms",
    "Gauge inference_router.load.in_flight.chat_v1.big_1",
    "Gauge inference_router.load.in_flight.chat_v1.small",
    "Counter inference_router.load.over_capacity",
    "Counter inference_router.load.full_skips",
    "Counter inference_router.load.reports",
    "Counter inference_router.load.reports_invalid",
    "Counter inference_router.load.untracked",
];
const FLEET_METRICS: &[&str] = &[
    "Gauge inference_router.bandit.m.a.pulls",
    "Gauge inference_router.bandit.m.a.mean_reward_milli",
    "Gauge inference_router.bandit.m.a.alpha_milli",
    "Gauge inference_router.bandit.m.a.beta_milli",
    "Gauge inference_router.bandit.m.b.pulls",
    "Gauge inference_router.bandit.m.b.mean_reward_milli",
    "Gauge inference_router.bandit.m.b.alpha_milli",
    "Gauge inference_router.bandit.m.b.beta_milli",
    "Counter inference_router.requests.m.a",
    "Counter inference_router.requests.m.b",
    "Counter inference_router.decisions.weighted",
    "Counter inference_router.decisions.least_loaded",
    "Counter inference_router.decisions.sticky",
    "Counter inference_router.decisions.path_version",
    "Counter inference_router.decisions.bandit",
    "Counter inference_router.decisions.budget",
    "Counter inference_router.decisions.escalated",
    "Counter inference_router.decisions.fallback",
    "Counter inference_router.decisions.router",
    "Counter inference_router.decisions.fan_out",
    "Counter inference_router.decisions.default",
    "Counter inference_router.body.parse_failures",
    "Counter inference_router.body.too_large",
    "Counter inference_router.body.decided_early",
    "Counter inference_router.local_replies.echo",
    "Counter inference_router.local_replies.reply",
    "Counter inference_router.local_replies.reject",
    "Counter inference_router.local_replies.error",
    "Counter inference_router.feedback.accepted",
    "Counter inference_router.feedback.rejected.invalid",
    "Counter inference_router.feedback.rejected.forged",
    "Counter inference_router.feedback.rejected.expired",
    "Counter inference_router.feedback.rejected.replayed",
    "Counter inference_router.feedback.rejected.not_learning",
    "Counter inference_router.feedback.rejected.unavailable",
    "Counter inference_router.feedback.rejected.unauthorized",
    "Counter inference_router.feedback.rejected.over_budget",
    "Counter inference_router.feedback.rejected.full",
    "Counter inference_router.rewards.implicit",
    "Counter inference_router.rewards.evaluator",
    "Counter inference_router.rewards.failed",
    "Counter inference_router.bandit.cas_retries",
    "Counter inference_router.bandit.cas_exhausted",
    "Counter inference_router.bandit.state_resets",
    "Counter inference_router.evaluator.failures",
    "Counter inference_router.router.failures",
    "Counter inference_router.router.feedback_forwarded",
    "Counter inference_router.router.feedback_failures",
    "Counter inference_router.fan_out.partial",
    "Counter inference_router.retry.attempts",
    "Counter inference_router.retry.recovered",
    "Counter inference_router.retry.failed",
    "Counter inference_router.shadow.dropped",
    "Counter inference_router.fleet.sync.success",
    "Counter inference_router.fleet.sync.failures",
    "Counter inference_router.fleet.publish.success",
    "Counter inference_router.fleet.publish.failures",
    "Counter inference_router.fleet.etcd_requests",
    "Gauge inference_router.fleet.replicas",
    "Gauge inference_router.fleet.lag_ms",
    "Counter inference_router.fleet.retired",
    "Counter inference_router.fleet.rebased",
    "Counter inference_router.fleet.replica_conflicts",
    "Counter inference_router.fleet.invalid_contributions",
    "Counter inference_router.fleet.feedback.in_doubt",
    "Counter inference_router.fleet.feedback.in_doubt_applied",
];
const RICH_IDS: &[u32] = &[
    12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35,
    36, 37, 38, 39, 40, 41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 51, 52, 0, 1, 2, 3, 4, 5, 6, 7, 8,
    9, 10, 11, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 63, 64, 65, 66, 67, 68, 69, 70, 71, 72, 73,
    74, 75, 76, 77, 78, 79, 80, 81, 82, 83, 84, 85, 88, 89, 90, 91, 92, 86, 87,
];
const FLEET_IDS: &[u32] = &[
    8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31,
    32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 0, 1, 2, 3, 4, 5, 6, 7, 45, 46, 47, 48, 49,
    50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 63, 64, 65,
];
