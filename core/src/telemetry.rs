//! Counter, gauge and histogram ids, defined through the host once per configuration from the
//! names `metrics` derives, and what each event counts.

use crate::bandit::{Alarm, ModelState};
use crate::callout::StatusClass;
use crate::config::{Config, Model};
use crate::host::{Host, MetricKind};
use crate::inspect::scan::NotScanned;
use crate::learning::Refusal;
use crate::metrics::{metric_segment, segment_char, GAUGE_SUFFIXES, PREFIX};
use crate::policy::{Reason, ReplyKind};

pub struct Metrics {
    requests: Vec<Vec<u32>>,
    decisions_fixed: Vec<u32>,
    decisions_rules: Vec<u32>,
    pub body_parse_failures: u32,
    pub body_too_large: u32,
    pub body_decided_early: u32,
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
    change_alarms: Vec<Vec<u32>>,
    detectors: Vec<u32>,
    /// By `NotScanned` reason (with a sensitive-data rule): refused / let through by a bypass.
    not_scanned: Vec<u32>,
    bypassed: Vec<u32>,
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
    /// Defined only when `fleet` is configured.
    pub fleet: Option<FleetIds>,
    /// Defined only when some model tracks load.
    pub load: Option<LoadIds>,
}

/// Live load signals (`inference_router.load.*`).
pub struct LoadIds {
    /// Requests answered 503 because every candidate was at capacity.
    pub over_capacity: u32,
    /// A target found full when its slot was taken (another worker was faster): decided again.
    pub full_skips: u32,
    /// Load reports read / refused (unknown form, malformed).
    pub reports: u32,
    pub reports_invalid: u32,
    /// Requests whose slot could not be taken or given back (shared data refused or contended).
    pub untracked: u32,
    /// By `[model][target]` (empty for models that do not track load): requests in flight.
    pub in_flight: Vec<Vec<u32>>,
}

impl LoadIds {
    fn define(d: &mut Definer<'_>, cfg: &Config) -> Self {
        let in_flight = d.per_target(
            MetricKind::Gauge,
            "load.in_flight",
            cfg,
            |m| m.tracks_load,
            None,
        );
        let mut ids = [0u32; 5];
        d.fixed(
            MetricKind::Counter,
            &[
                "load.over_capacity",
                "load.full_skips",
                "load.reports",
                "load.reports_invalid",
                "load.untracked",
            ],
            &mut ids,
        );
        let [over_capacity, full_skips, reports, reports_invalid, untracked] = ids;
        LoadIds {
            over_capacity,
            full_skips,
            reports,
            reports_invalid,
            untracked,
            in_flight,
        }
    }
}

/// The fleet's counters and gauges (`inference_router.fleet.*`).
pub struct FleetIds {
    /// Reads of the fleet merged / failed (etcd down, slow, refusing).
    pub sync_success: u32,
    pub sync_failures: u32,
    /// Contributions etcd took / did not.
    pub publish_success: u32,
    pub publish_failures: u32,
    /// Every request sent to etcd (sync rounds, spends, leases, retirements).
    pub etcd_requests: u32,
    /// Gauges: replicas in the last merge (this one included), ms since it.
    pub replicas: u32,
    pub lag_ms: u32,
    /// Departed replicas this one folded into the retired document.
    pub retired: u32,
    /// Times this replica found itself retired and took the folded part away.
    pub rebased: u32,
    /// Another live Envoy writes this replica's key.
    pub conflicts: u32,
    /// Contributions ignored because they did not decode or hold unusable numbers.
    pub invalid: u32,
    /// Spends whose answer was lost, and those later applied once etcd showed them.
    pub in_doubt: u32,
    pub in_doubt_applied: u32,
}

impl FleetIds {
    fn define(d: &mut Definer<'_>) -> Self {
        let mut counters = [0u32; 11];
        let mut gauges = [0u32; 2];
        d.fixed(
            MetricKind::Counter,
            &[
                "fleet.sync.success",
                "fleet.sync.failures",
                "fleet.publish.success",
                "fleet.publish.failures",
                "fleet.etcd_requests",
            ],
            &mut counters[..5],
        );
        d.fixed(
            MetricKind::Gauge,
            &["fleet.replicas", "fleet.lag_ms"],
            &mut gauges,
        );
        d.fixed(
            MetricKind::Counter,
            &[
                "fleet.retired",
                "fleet.rebased",
                "fleet.replica_conflicts",
                "fleet.invalid_contributions",
                "fleet.feedback.in_doubt",
                "fleet.feedback.in_doubt_applied",
            ],
            &mut counters[5..],
        );
        let [sync_success, sync_failures, publish_success, publish_failures, etcd_requests, retired, rebased, conflicts, invalid, in_doubt, in_doubt_applied] =
            counters;
        let [replicas, lag_ms] = gauges;
        FleetIds {
            sync_success,
            sync_failures,
            publish_success,
            publish_failures,
            etcd_requests,
            replicas,
            lag_ms,
            retired,
            rebased,
            conflicts,
            invalid,
            in_doubt,
            in_doubt_applied,
        }
    }
}

struct ShadowIds {
    classes: [u32; 5],
    latency_ms: u32,
}

/// Defines metrics through the host, each name `inference_router.<head>.<tail>...` written into
/// one buffer: a tail (a model, target, rule or detector name) as a [`metric_segment`].
///
/// The first failure is kept and every later definition skipped (id 0) without a host call;
/// [`Metrics::define`] returns it at the end. The same calls and the same error as stopping
/// there, without an early return (and its clean-up code) after every definition.
struct Definer<'h> {
    host: &'h dyn Host,
    name: String,
    failed: Option<String>,
}

impl Definer<'_> {
    fn define(&mut self, kind: MetricKind, head: &str, tail: &[&str]) -> u32 {
        if self.failed.is_some() {
            return 0;
        }
        let name = &mut self.name;
        name.clear();
        name.push_str(PREFIX);
        name.push('.');
        name.push_str(head);
        for part in tail {
            name.push('.');
            name.extend(part.chars().map(segment_char));
        }
        match self.host.define_metric(kind, name) {
            Ok(id) => id,
            Err(s) => {
                self.failed = Some(format!("{name}: host status {s}"));
                0
            }
        }
    }

    /// One metric per head, into `ids`.
    fn fixed(&mut self, kind: MetricKind, heads: &[&str], ids: &mut [u32]) {
        for (id, head) in ids.iter_mut().zip(heads) {
            *id = self.define(kind, head, &[]);
        }
    }

    /// `<head>.<tail>` for each tail.
    fn each(&mut self, kind: MetricKind, head: &str, tails: &[&str]) -> Vec<u32> {
        (tails.iter())
            .map(|t| self.define(kind, head, &[t]))
            .collect()
    }

    /// `<head>.<model>.<target>[.<suffix>]` for every target of the models `which` picks, by
    /// `[model][target]` (empty for the others).
    fn per_target(
        &mut self,
        kind: MetricKind,
        head: &str,
        cfg: &Config,
        which: fn(&Model) -> bool,
        suffix: Option<&str>,
    ) -> Vec<Vec<u32>> {
        let mut out = Vec::with_capacity(cfg.models.len());
        for m in &cfg.models {
            let mut ids = Vec::new();
            for t in m.targets.iter().filter(|_| which(m)) {
                let id = match suffix {
                    None => self.define(kind, head, &[&m.name, &t.name]),
                    Some(s) => self.define(kind, head, &[&m.name, &t.name, s]),
                };
                ids.push(id);
            }
            out.push(ids);
        }
        out
    }
}

/// `inference_router.build.<version>.<commit>`, set to 1: in Prometheus, one series per build
/// running, so a fleet's mixed versions show (`{__name__=~"inference_router_build_.*"}`).
pub fn publish_build(host: &dyn Host, build: crate::plugin::Build) {
    let name = format!(
        "{PREFIX}.build.{}.{}",
        metric_segment(&build.version.replace(['-', '+'], "_")),
        metric_segment(build.commit)
    );
    match host.define_metric(MetricKind::Gauge, &name) {
        Ok(id) => {
            let _ = host.record_metric(id, 1);
        }
        Err(status) => crate::host_log!(Warn, "inference-router: {name}: host status {status}"),
    }
}

impl Metrics {
    pub fn define(host: &dyn Host, cfg: &Config) -> Result<Self, String> {
        let mut d = Definer {
            host,
            name: String::new(),
            failed: None,
        };
        let d = &mut d;
        let bandit_gauges = Self::define_bandit_gauges(d, cfg);
        let requests = d.per_target(MetricKind::Counter, "requests", cfg, |_| true, None);
        let reasons = Reason::FIXED.map(Reason::metric_segment);
        let decisions_fixed = d.each(MetricKind::Counter, "decisions", &reasons);
        let rules: Vec<&str> = cfg.rules.iter().map(|r| r.name.as_str()).collect();
        let decisions_rules = d.each(MetricKind::Counter, "decisions.rule", &rules);
        let mut body = [0u32; 3];
        d.fixed(
            MetricKind::Counter,
            &[
                "body.parse_failures",
                "body.too_large",
                "body.decided_early",
            ],
            &mut body,
        );
        let local_replies = d.each(
            MetricKind::Counter,
            "local_replies",
            &ReplyKind::ALL.map(ReplyKind::as_str),
        );
        let feedback_accepted = d.define(MetricKind::Counter, "feedback.accepted", &[]);
        let feedback_rejected = d.each(
            MetricKind::Counter,
            "feedback.rejected",
            &Refusal::ALL.map(Refusal::as_str),
        );
        let mut learning = [0u32; 7];
        d.fixed(
            MetricKind::Counter,
            &[
                "rewards.implicit",
                "rewards.evaluator",
                "rewards.failed",
                "bandit.cas_retries",
                "bandit.cas_exhausted",
                "bandit.state_resets",
                "evaluator.failures",
            ],
            &mut learning,
        );
        let detects_changes = |m: &Model| m.bandit().is_some_and(|b| b.detects_changes());
        let change_alarms = d.per_target(
            MetricKind::Counter,
            "bandit",
            cfg,
            detects_changes,
            Some("change_alarms"),
        );
        let names: Vec<&str> = cfg.detectors.iter().map(|x| x.name.as_str()).collect();
        let detectors = d.each(MetricKind::Counter, "detectors", &names);
        let reasons: &[&str] = if cfg.has_detected_rules {
            &NotScanned::ALL.map(NotScanned::as_str)
        } else {
            &[]
        };
        let not_scanned = d.each(MetricKind::Counter, "detectors.not_scanned", reasons);
        let bypassed = d.each(MetricKind::Counter, "detectors.bypassed", reasons);
        let mut callouts = [0u32; 8];
        d.fixed(
            MetricKind::Counter,
            &[
                "router.failures",
                "router.feedback_forwarded",
                "router.feedback_failures",
                "fan_out.partial",
                "retry.attempts",
                "retry.recovered",
                "retry.failed",
                "shadow.dropped",
            ],
            &mut callouts,
        );
        let shadow = Self::define_shadows(d, cfg);
        let fleet = cfg.fleet.as_ref().map(|_| FleetIds::define(d));
        let load = (cfg.models.iter().any(|m| m.tracks_load)).then(|| LoadIds::define(d, cfg));
        if let Some(failed) = d.failed.take() {
            return Err(failed);
        }
        let [body_parse_failures, body_too_large, body_decided_early] = body;
        let [rewards_implicit, rewards_evaluator, rewards_failed, cas_retries, cas_exhausted, state_resets, evaluator_failures] =
            learning;
        let [router_failures, router_feedback_forwarded, router_feedback_failures, fan_out_partial, retry_attempts, retry_recovered, retry_failed, shadow_dropped] =
            callouts;
        Ok(Metrics {
            requests,
            decisions_fixed,
            decisions_rules,
            body_parse_failures,
            body_too_large,
            body_decided_early,
            local_replies,
            feedback_accepted,
            feedback_rejected,
            rewards_implicit,
            rewards_evaluator,
            rewards_failed,
            cas_retries,
            cas_exhausted,
            state_resets,
            evaluator_failures,
            bandit_gauges,
            change_alarms,
            detectors,
            not_scanned,
            bypassed,
            router_failures,
            router_feedback_forwarded,
            router_feedback_failures,
            fan_out_partial,
            retry_attempts,
            retry_recovered,
            retry_failed,
            shadow_dropped,
            shadow,
            fleet,
            load,
        })
    }

    /// `bandit.<model>.<target>.{pulls,mean_reward_milli,alpha_milli,beta_milli}`, by
    /// `[model][target]` (empty for models that are not bandits).
    fn define_bandit_gauges(d: &mut Definer<'_>, cfg: &Config) -> Vec<Vec<[u32; 4]>> {
        let mut out = Vec::with_capacity(cfg.models.len());
        for m in &cfg.models {
            let mut ids = Vec::new();
            for t in m.targets.iter().filter(|_| m.is_bandit()) {
                let mut four = [0u32; 4];
                for (slot, g) in four.iter_mut().zip(GAUGE_SUFFIXES) {
                    *slot = d.define(MetricKind::Gauge, "bandit", &[&m.name, &t.name, g]);
                }
                ids.push(four);
            }
            out.push(ids);
        }
        out
    }

    /// `shadow.<model>.<class>` counters and the `shadow.<model>.latency_ms` histogram, once
    /// per model that some shadow mirrors.
    fn define_shadows(d: &mut Definer<'_>, cfg: &Config) -> Vec<Option<ShadowIds>> {
        let mut out = Vec::with_capacity(cfg.models.len());
        for (mi, m) in cfg.models.iter().enumerate() {
            if !cfg.shadows.iter().any(|s| s.model == mi) {
                out.push(None);
                continue;
            }
            let mut classes = [0u32; 5];
            for (slot, class) in classes.iter_mut().zip(StatusClass::ALL) {
                *slot = d.define(MetricKind::Counter, "shadow", &[&m.name, class.as_str()]);
            }
            let latency_ms = d.define(MetricKind::Histogram, "shadow", &[&m.name, "latency_ms"]);
            out.push(Some(ShadowIds {
                classes,
                latency_ms,
            }));
        }
        out
    }

    /// Counts a shadow answer by status class and records its latency (only for answers).
    pub fn shadow(
        &self,
        host: &dyn Host,
        model: usize,
        class: StatusClass,
        latency_ms: Option<u64>,
    ) {
        let Some(Some(ids)) = self.shadow.get(model) else {
            return;
        };
        if let Some(&id) = ids.classes.get(class.index()) {
            host.bump(id);
        }
        if let Some(ms) = latency_ms {
            let _ = host.record_metric(ids.latency_ms, ms);
        }
    }

    pub fn request(&self, host: &dyn Host, model: usize, target: usize) {
        if let Some(&id) = self.requests.get(model).and_then(|m| m.get(target)) {
            host.bump(id);
        }
    }

    pub fn decision(&self, host: &dyn Host, reason: Reason) {
        let id = match reason {
            Reason::Rule(i) => self.decisions_rules.get(i),
            fixed => fixed
                .fixed_index()
                .and_then(|i| self.decisions_fixed.get(i)),
        };
        if let Some(&id) = id {
            host.bump(id);
        }
    }

    pub fn local_reply(&self, host: &dyn Host, kind: ReplyKind) {
        if let Some(&id) = self.local_replies.get(kind.index()) {
            host.bump(id);
        }
    }

    /// Change detection restarted a target's statistics: counted, and logged with the model.
    pub fn change_alarm(&self, host: &dyn Host, cfg: &Config, model: usize, alarm: &Alarm) {
        let ids = self.change_alarms.get(model);
        if let Some(&id) = ids.and_then(|t| t.get(alarm.arm)) {
            host.bump(id);
        }
        let m = cfg.models.get(model);
        let target = m.and_then(|m| m.targets.get(alarm.arm));
        crate::host_log!(
            Warn,
            "inference-router: model {}, target {}: {alarm}; its statistics restart",
            crate::quote::quoted(m.map_or("", |m| m.name.as_str())),
            crate::quote::quoted(target.map_or("", |t| t.name.as_str())),
        );
    }

    pub fn detector(&self, host: &dyn Host, index: usize) {
        if let Some(&id) = self.detectors.get(index) {
            host.bump(id);
        }
    }

    /// A payload the detectors could not scan: refused, or (`bypass`) let through.
    pub fn unscanned(&self, host: &dyn Host, why: NotScanned, bypassed: bool) {
        let ids = if bypassed {
            &self.bypassed
        } else {
            &self.not_scanned
        };
        if let Some(&id) = ids.get(why.index()) {
            host.bump(id);
        }
    }

    pub fn feedback_rejected(&self, host: &dyn Host, refusal: Refusal) {
        if let Some(&id) = self.feedback_rejected.get(refusal.index()) {
            host.bump(id);
        }
    }

    /// Publishes a model's learned state: pulls, and mean reward and posterior parameters in
    /// thousandths (gauges hold integers).
    pub fn publish_state(&self, host: &dyn Host, cfg: &Config, model: usize, state: &ModelState) {
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
                let _ = host.record_metric(*id, v);
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests;
