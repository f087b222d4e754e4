//! Counter, gauge and histogram ids, defined through the host once per configuration from the
//! names `metrics` derives, and what each event counts.

use crate::bandit::{Alarm, ModelState};
use crate::callout::StatusClass;
use crate::config::Config;
use crate::host::{Host, MetricKind};
use crate::inspect::scan::NotScanned;
use crate::learning::Refusal;
use crate::metrics::{metric_segment, MetricNames, PREFIX};
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
    fn define(host: &dyn Host, cfg: &Config) -> Result<Self, String> {
        let c = |name: &str| define(host, MetricKind::Counter, &format!("{PREFIX}.load.{name}"));
        let mut in_flight = Vec::with_capacity(cfg.models.len());
        for m in &cfg.models {
            let mut ids = Vec::new();
            for t in m.targets.iter().filter(|_| m.tracks_load) {
                let name = format!(
                    "{PREFIX}.load.in_flight.{}.{}",
                    metric_segment(&m.name),
                    metric_segment(&t.name)
                );
                ids.push(define(host, MetricKind::Gauge, &name)?);
            }
            in_flight.push(ids);
        }
        Ok(LoadIds {
            over_capacity: c("over_capacity")?,
            full_skips: c("full_skips")?,
            reports: c("reports")?,
            reports_invalid: c("reports_invalid")?,
            untracked: c("untracked")?,
            in_flight,
        })
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
    fn define(host: &dyn Host) -> Result<Self, String> {
        let c = |name: &str| define(host, MetricKind::Counter, &format!("{PREFIX}.fleet.{name}"));
        let g = |name: &str| define(host, MetricKind::Gauge, &format!("{PREFIX}.fleet.{name}"));
        Ok(FleetIds {
            sync_success: c("sync.success")?,
            sync_failures: c("sync.failures")?,
            publish_success: c("publish.success")?,
            publish_failures: c("publish.failures")?,
            etcd_requests: c("etcd_requests")?,
            replicas: g("replicas")?,
            lag_ms: g("lag_ms")?,
            retired: c("retired")?,
            rebased: c("rebased")?,
            conflicts: c("replica_conflicts")?,
            invalid: c("invalid_contributions")?,
            in_doubt: c("feedback.in_doubt")?,
            in_doubt_applied: c("feedback.in_doubt_applied")?,
        })
    }
}

struct ShadowIds {
    classes: [u32; 5],
    latency_ms: u32,
}

fn define(host: &dyn Host, kind: MetricKind, name: &str) -> Result<u32, String> {
    host.define_metric(kind, name)
        .map_err(|s| format!("{name}: host status {s}"))
}

fn counters(host: &dyn Host, names: &[String]) -> Result<Vec<u32>, String> {
    names
        .iter()
        .map(|n| define(host, MetricKind::Counter, n))
        .collect()
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
        Err(status) => log::warn!("inference-router: {name}: host status {status}"),
    }
}

impl Metrics {
    pub fn define(host: &dyn Host, cfg: &Config) -> Result<Self, String> {
        let n = MetricNames::for_config(cfg);
        let mut bandit_gauges = Vec::with_capacity(n.bandit_gauges.len());
        for per_model in &n.bandit_gauges {
            let mut ids = Vec::with_capacity(per_model.len());
            for names in per_model {
                let mut four = [0u32; 4];
                for (slot, name) in four.iter_mut().zip(names) {
                    *slot = define(host, MetricKind::Gauge, name)?;
                }
                ids.push(four);
            }
            bandit_gauges.push(ids);
        }
        Ok(Metrics {
            requests: n
                .requests
                .iter()
                .map(|m| counters(host, m))
                .collect::<Result<_, _>>()?,
            decisions_fixed: counters(host, &n.decisions_fixed)?,
            decisions_rules: counters(host, &n.decisions_rules)?,
            body_parse_failures: define(host, MetricKind::Counter, &n.body_parse_failures)?,
            body_too_large: define(host, MetricKind::Counter, &n.body_too_large)?,
            body_decided_early: define(host, MetricKind::Counter, &n.body_decided_early)?,
            local_replies: counters(host, &n.local_replies)?,
            feedback_accepted: define(host, MetricKind::Counter, &n.feedback_accepted)?,
            feedback_rejected: counters(host, &n.feedback_rejected)?,
            rewards_implicit: define(host, MetricKind::Counter, &n.rewards_implicit)?,
            rewards_evaluator: define(host, MetricKind::Counter, &n.rewards_evaluator)?,
            rewards_failed: define(host, MetricKind::Counter, &n.rewards_failed)?,
            cas_retries: define(host, MetricKind::Counter, &n.cas_retries)?,
            cas_exhausted: define(host, MetricKind::Counter, &n.cas_exhausted)?,
            state_resets: define(host, MetricKind::Counter, &n.state_resets)?,
            evaluator_failures: define(host, MetricKind::Counter, &n.evaluator_failures)?,
            bandit_gauges,
            change_alarms: (n.change_alarms.iter())
                .map(|m| counters(host, m))
                .collect::<Result<_, _>>()?,
            detectors: counters(host, &n.detectors)?,
            not_scanned: counters(host, &n.not_scanned)?,
            bypassed: counters(host, &n.bypassed)?,
            router_failures: define(
                host,
                MetricKind::Counter,
                &format!("{PREFIX}.router.failures"),
            )?,
            router_feedback_forwarded: define(
                host,
                MetricKind::Counter,
                &format!("{PREFIX}.router.feedback_forwarded"),
            )?,
            router_feedback_failures: define(
                host,
                MetricKind::Counter,
                &format!("{PREFIX}.router.feedback_failures"),
            )?,
            fan_out_partial: define(
                host,
                MetricKind::Counter,
                &format!("{PREFIX}.fan_out.partial"),
            )?,
            retry_attempts: define(
                host,
                MetricKind::Counter,
                &format!("{PREFIX}.retry.attempts"),
            )?,
            retry_recovered: define(
                host,
                MetricKind::Counter,
                &format!("{PREFIX}.retry.recovered"),
            )?,
            retry_failed: define(host, MetricKind::Counter, &format!("{PREFIX}.retry.failed"))?,
            shadow_dropped: define(
                host,
                MetricKind::Counter,
                &format!("{PREFIX}.shadow.dropped"),
            )?,
            shadow: Self::define_shadows(host, cfg)?,
            fleet: cfg
                .fleet
                .as_ref()
                .map(|_| FleetIds::define(host))
                .transpose()?,
            load: (cfg.models.iter().any(|m| m.tracks_load))
                .then(|| LoadIds::define(host, cfg))
                .transpose()?,
        })
    }

    /// `shadow.<model>.<class>` counters and the `shadow.<model>.latency_ms` histogram, once
    /// per model that some shadow mirrors.
    fn define_shadows(host: &dyn Host, cfg: &Config) -> Result<Vec<Option<ShadowIds>>, String> {
        let mut out = Vec::with_capacity(cfg.models.len());
        for (mi, m) in cfg.models.iter().enumerate() {
            if !cfg.shadows.iter().any(|s| s.model == mi) {
                out.push(None);
                continue;
            }
            let base = format!("{PREFIX}.shadow.{}", metric_segment(&m.name));
            let mut classes = [0u32; 5];
            for (slot, class) in classes.iter_mut().zip(StatusClass::ALL) {
                *slot = define(
                    host,
                    MetricKind::Counter,
                    &format!("{base}.{}", class.as_str()),
                )?;
            }
            let latency_ms = define(host, MetricKind::Histogram, &format!("{base}.latency_ms"))?;
            out.push(Some(ShadowIds {
                classes,
                latency_ms,
            }));
        }
        Ok(out)
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
        log::warn!(
            "inference-router: model {:?}, target {:?}: {alarm}; its statistics restart",
            m.map_or("", |m| m.name.as_str()),
            target.map_or("", |t| t.name.as_str()),
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
