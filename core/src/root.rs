//! The root context: configuration, seeding shared state, and the periodic work that must not
//! run on a request's path (spent-id buckets, evaluator callouts, shadow copies, rewards
//! forwarded to external routers, state gauges). Its callouts use the same `Pending` mechanism
//! as a stream's, each with its continuation.

mod registry;

use std::rc::Rc;

use crate::bandit::{seed, update_state, Reconciled, Refresh, SeedOutcome, StateCache};
use crate::callout::{status_class, Answer, CalloutAnswer, Pending};
use crate::fleet::{self, sync::Outgoing};
use crate::host::{Buffer, Call, Host, HostStore};
use crate::learning::{self, spent};
use crate::plugin::{MirrorKind, Plugin, VmState};
use crate::policy::Shared;
use crate::quote::quoted;
use crate::say;
use crate::stream::Stream;

const TICK_MS: u32 = 200;
/// Gauges are republished every this many ticks.
const GAUGE_TICKS: u32 = 5;
/// Evaluator callouts started per tick, so a burst cannot monopolise a tick.
const CALLOUTS_PER_TICK: usize = 64;
/// Shadow copies and router rewards started per tick (up to 1,280/s per worker at 200 ms);
/// beyond that the queue (`MAX_PENDING_MIRRORS`) fills and the oldest copies are dropped.
const MIRRORS_PER_TICK: usize = 256;
/// The identity of state when Envoy names no plugin.
const DEFAULT_PLUGIN_NAME: &str = "inference-router";

/// What a root-context callout's answer continues.
enum Then {
    /// An evaluation of a response of (model, target).
    Evaluator {
        model: usize,
        target: String,
        context: Option<crate::bandit::Context>,
    },
    /// A shadow copy, sent at this time (ns).
    Shadow { index: usize, started_ns: u64 },
    /// A reward forwarded to a model's router.
    Feedback { model: usize },
    /// A fleet request to etcd (sync round, lease, retirement, resolution of feedback in doubt),
    /// kept to be sent once more if it never reached etcd.
    Fleet(Outgoing<fleet::sync::Call>, bool),
    /// The release of a spent id whose reward could not be applied.
    Unspend,
    /// Answer `index` of registry poll `seq` (`crate::registry`).
    Registry { seq: u64, index: usize },
}

pub struct Root {
    vm: VmState,
    plugin: Option<Rc<Plugin>>,
    /// Spent-id buckets below this are known emptied; up to `seeded_to` known to exist.
    spent_cleared_below: u64,
    spent_seeded_to: u64,
    pending: Pending<Then>,
    ticks: u32,
    /// The model registry's poller, when one is configured.
    registry: Option<crate::registry::Poller>,
}

impl Root {
    pub fn new(vm: VmState) -> Self {
        Root {
            vm,
            plugin: None,
            spent_cleared_below: 0,
            spent_seeded_to: 0,
            pending: Pending::default(),
            ticks: 0,
            registry: None,
        }
    }

    /// Reads and compiles the plugin configuration; `false` (logged as critical) refuses it.
    pub fn configure(&mut self, host: &dyn Host) -> bool {
        let bytes = match host.buffer(Buffer::PluginConfiguration, 0, usize::MAX) {
            Ok(b) => b.unwrap_or_default(),
            Err(status) => {
                host.log_critical(&format!(
                    "inference-router: cannot read the plugin configuration: host status {status}"
                ));
                return false;
            }
        };
        let plugin = match Plugin::configure(host, plugin_name(host), &bytes) {
            Ok(p) => Rc::new(p),
            Err(e) => {
                host.log_critical(&format!("inference-router: {e}"));
                return false;
            }
        };
        // With a registry, its last good snapshot (another VM may have published it) replaces
        // the configured targets before any state is prepared.
        self.registry = crate::registry::Poller::start(host, &bytes, &plugin);
        let plugin = match self
            .registry
            .as_mut()
            .and_then(|r| r.refresh(host, &plugin))
        {
            Some(p) => Rc::new(p),
            None => plugin,
        };
        let cfg = &plugin.cfg;
        say::info(
            say::ROOT,
            format_args!(
                "plugin {} configured: {} model(s), {} rule(s), body source {:?}, feedback {}",
                quoted(&plugin.name),
                cfg.models.len(),
                cfg.rules.len(),
                cfg.body.source,
                if cfg.feedback.is_some() { "on" } else { "off" }
            ),
        );
        crate::telemetry::publish_build(host, self.vm.build);
        prepare_state(host, &plugin);
        self.spent_cleared_below = 0;
        self.spent_seeded_to = 0;
        self.maintain_spent(host, &plugin);
        if plugin.periodic {
            if let Err(status) = host.set_tick_period_ms(tick_ms(&plugin)) {
                say::warn(
                    say::ROOT,
                    format_args!(
                        "no tick (host status {status}): spent ids and gauges are not maintained"
                    ),
                );
            }
        }
        if plugin.cfg.fleet.is_some() {
            if fleet::local::incarnation(host, &plugin.name, self.vm.next_u64()).is_none() {
                say::warn(
                    say::FLEET,
                    format_args!(
                        "no incarnation could be recorded in shared data; sync waits for it"
                    ),
                );
            }
            // The first round right away: a replica that starts routes from the fleet's view
            // as soon as possible (a request that comes earlier waits for it, see warm_start).
            // While Envoy loads its configuration the cluster may not exist yet: then the
            // first tick tries again, and nothing is counted.
            let now = fleet::now_ms(host);
            let first = fleet::sync::tick(host, &plugin, now);
            for out in first {
                if !self.try_send_fleet(host, &plugin, &out, false) {
                    fleet::sync::release_round(host, &plugin);
                    break;
                }
            }
        }
        self.plugin = Some(plugin);
        true
    }

    /// A stream of this plugin; `None` before a configuration was accepted.
    pub fn stream(&self, context_id: u32) -> Option<Stream> {
        let plugin = Rc::clone(self.plugin.as_ref()?);
        Some(Stream::new(context_id, plugin, self.vm.clone()))
    }

    pub fn on_tick(&mut self, host: &dyn Host) {
        let Some(plugin) = self.plugin.clone() else {
            return;
        };
        let plugin = self.registry_tick(host, plugin);
        self.maintain_spent(host, &plugin);
        self.fleet_round(host, &plugin);
        self.send_evaluations(host, &plugin);
        self.send_mirrors(host, &plugin);
        self.ticks = self.ticks.wrapping_add(1);
        if self.ticks % GAUGE_TICKS == 0 {
            publish_gauges(host, &plugin);
        }
    }

    pub fn on_callout_answer(&mut self, host: &dyn Host, token: u32, body_size: usize) {
        let Some(then) = self.pending.take(token) else {
            return;
        };
        if let Then::Registry { seq, index } = then {
            // Read here, within the registry's size limit.
            self.registry_answered(host, seq, index, body_size);
            return;
        }
        let Some(plugin) = self.plugin.clone() else {
            return;
        };
        let answer = Answer::read(host, body_size);
        match then {
            Then::Evaluator {
                model,
                target,
                context,
            } => {
                let graded = learning::Graded {
                    target: &target,
                    context: context.as_ref(),
                };
                evaluated(host, &plugin, model, graded, &answer)
            }
            Then::Shadow { index, started_ns } => {
                let Some(shadow) = plugin.cfg.shadows.get(index) else {
                    return;
                };
                let latency_ms = host
                    .now_nanos()
                    .ok()
                    .map(|n| n.saturating_sub(started_ns) / 1_000_000);
                let class = status_class(&answer.classify());
                plugin.metrics.shadow(host, shadow.model, class, latency_ms);
            }
            Then::Feedback { model } => {
                feedback_forwarded(host, &plugin, model, &answer.classify())
            }
            Then::Fleet(out, retried) => {
                // A member that just went away refuses connections until Envoy's health check
                // notices: the next member is tried once (nothing reached etcd, so it is safe).
                if !retried && matches!(fleet::outcome(&answer), fleet::Outcome::NotSent) {
                    if !self.try_send_fleet(host, &plugin, &out, true) {
                        fleet::sync::not_sent(host, &plugin, out.call, fleet::now_ms(host));
                    }
                    return;
                }
                let now = fleet::now_ms(host);
                for next in fleet::sync::answered(host, &plugin, out.call, &answer, now) {
                    self.send_fleet(host, &plugin, next);
                }
            }
            Then::Registry { .. } => {}
            Then::Unspend => {
                if !matches!(fleet::outcome(&answer), fleet::Outcome::Answered) {
                    say::warn(say::FLEET, format_args!("a spent decision id whose reward was not applied could not be released; its sender will be told it was replayed"));
                }
            }
        }
    }

    /// A sync round when one is due (and this VM wins it).
    fn fleet_round(&mut self, host: &dyn Host, plugin: &Plugin) {
        if plugin.cfg.fleet.is_none() {
            return;
        }
        for out in fleet::sync::tick(host, plugin, fleet::now_ms(host)) {
            self.send_fleet(host, plugin, out);
        }
    }

    fn send_fleet(&mut self, host: &dyn Host, plugin: &Plugin, out: Outgoing<fleet::sync::Call>) {
        if !self.try_send_fleet(host, plugin, &out, false) {
            fleet::sync::not_sent(host, plugin, out.call, fleet::now_ms(host));
        }
    }

    /// Sends a fleet request (`retried`: for the second time); `false` when the host refused
    /// to start it.
    fn try_send_fleet(
        &mut self,
        host: &dyn Host,
        plugin: &Plugin,
        out: &Outgoing<fleet::sync::Call>,
        retried: bool,
    ) -> bool {
        let Some(settings) = &plugin.cfg.fleet else {
            return false;
        };
        let token = fleet::local::token(&plugin.name).read(host);
        let token = (!token.is_empty()).then_some(token.as_str());
        let headers = fleet::headers(settings, out.request.path, token);
        let timeout_ms = match out.call {
            fleet::sync::Call::Auth => fleet::login_timeout_ms(settings),
            _ => settings.timeout_ms,
        };
        let call = Call {
            cluster: &settings.cluster,
            headers: &headers,
            body: &out.request.body,
            timeout_ms,
        };
        match self
            .pending
            .send(host, &call, Then::Fleet(out.clone(), retried))
        {
            Ok(()) => {
                if let Some(ids) = &plugin.metrics.fleet {
                    host.bump(ids.etcd_requests);
                }
                true
            }
            Err(status) => {
                say::debug(
                    say::FLEET,
                    format_args!(
                        "request to cluster {} not started: host status {status}",
                        quoted(&settings.cluster)
                    ),
                );
                false
            }
        }
    }

    /// Keeps spent-id buckets: creates those new tokens can land in before any such token
    /// exists, and empties those whose tokens have all expired.
    fn maintain_spent(&mut self, host: &dyn Host, plugin: &Plugin) {
        let Some(fb) = &plugin.cfg.feedback else {
            return;
        };
        let store = HostStore(host);
        let now = host.now_secs();
        let prefix = learning::spent_prefix(&plugin.name);
        let issuing = spent::issuing_buckets(now, fb.ttl_seconds);
        let from = (*issuing.start()).max(self.spent_seeded_to);
        for b in from..=*issuing.end() {
            if let Err(e) = spent::seed_bucket(&store, &prefix, b) {
                say::warn(
                    say::ROOT,
                    format_args!("creating spent-id bucket {b} failed: {e}"),
                );
            }
        }
        self.spent_seeded_to = issuing.end().saturating_add(1);
        let current = spent::bucket_of(now);
        if self.spent_cleared_below == 0 {
            // First run in this VM: older buckets may hold ids of tokens issued before a reload.
            self.spent_cleared_below = current.saturating_sub(4);
        }
        for b in self.spent_cleared_below..current {
            let _ = spent::clear_bucket(&store, &prefix, b);
        }
        self.spent_cleared_below = current;
    }

    fn send_evaluations(&mut self, host: &dyn Host, plugin: &Plugin) {
        let Ok(mut outbox) = plugin.outbox.try_borrow_mut() else {
            return;
        };
        for _ in 0..CALLOUTS_PER_TICK {
            let Some(job) = outbox.pop_front() else { break };
            let Some(eval) = plugin
                .cfg
                .models
                .get(job.model)
                .and_then(|m| m.reward.as_ref())
                .and_then(|r| r.evaluator.as_ref())
            else {
                continue;
            };
            let headers = [
                (":method", "POST"),
                (":path", eval.path.as_str()),
                (":authority", eval.authority.as_str()),
                ("content-type", "application/json"),
            ];
            let call = Call {
                cluster: &eval.cluster,
                headers: &headers,
                body: &job.body,
                timeout_ms: eval.timeout_ms,
            };
            let then = Then::Evaluator {
                model: job.model,
                target: job.target,
                context: job.context,
            };
            if let Err(status) = self.pending.send(host, &call, then) {
                host.bump(plugin.metrics.evaluator_failures);
                say::warn(
                    say::ROOT,
                    format_args!(
                        "evaluator callout to cluster {} not started: host status {status}",
                        quoted(&eval.cluster)
                    ),
                );
            }
        }
    }

    /// Sends queued shadow copies and router feedback; their answers are only counted.
    fn send_mirrors(&mut self, host: &dyn Host, plugin: &Plugin) {
        let Ok(mut queue) = plugin.mirror.try_borrow_mut() else {
            return;
        };
        for _ in 0..MIRRORS_PER_TICK {
            let Some(job) = queue.pop_front() else { break };
            let headers: Vec<(&str, &str)> = job
                .headers
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_str()))
                .collect();
            let call = Call {
                cluster: &job.cluster,
                headers: &headers,
                body: &job.body,
                timeout_ms: job.timeout_ms,
            };
            let then = match job.kind {
                MirrorKind::Shadow { index } => Then::Shadow {
                    index,
                    started_ns: host.now_nanos().unwrap_or(0),
                },
                MirrorKind::Feedback { model } => Then::Feedback { model },
                MirrorKind::Unspend => Then::Unspend,
            };
            if let Err(status) = self.pending.send(host, &call, then) {
                plugin.mirror_lost(host, job.kind);
                say::warn(
                    say::ROOT,
                    format_args!(
                        "callout to cluster {} not started: host status {status}",
                        quoted(&job.cluster)
                    ),
                );
            }
        }
    }
}

/// Ticks come every 200 ms, or twice per sync period when the fleet syncs faster.
fn tick_ms(plugin: &Plugin) -> u32 {
    match &plugin.cfg.fleet {
        Some(f) => TICK_MS.min(f.sync_ms / 2).max(1),
        None => TICK_MS,
    }
}

fn plugin_name(host: &dyn Host) -> String {
    host.property(&["plugin_name"])
        .ok()
        .flatten()
        .and_then(|b| String::from_utf8(b).ok())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| DEFAULT_PLUGIN_NAME.into())
}

/// Seeds each bandit model's key (a missing key ignores CAS, so it must exist before the
/// first reward) and migrates state whose targets no longer match the configuration.
fn prepare_state(host: &dyn Host, plugin: &Plugin) {
    let store = HostStore(host);
    for (m, key) in plugin.cfg.models.iter().zip(&plugin.state_keys) {
        let (Some(strategy), Some(key)) = (m.bandit(), key) else {
            continue;
        };
        let names = m.target_names();
        let initial = strategy.initial_state(&names);
        match seed(&store, key, &initial) {
            Ok(SeedOutcome::Seeded) => say::info(
                say::ROOT,
                format_args!("bandit state {} created", quoted(key)),
            ),
            Ok(SeedOutcome::AlreadyPresent) => {}
            Err(e) => say::warn(
                say::ROOT,
                format_args!("seeding bandit state {} failed: {e}", quoted(key)),
            ),
        }
        // Reconcile stored state with this configuration once, and log what changed.
        let (bytes, cas) = host.shared_data(key).unwrap_or((None, None));
        let needs_write = match StateCache::new()
            .refresh(bytes.as_deref(), cas, strategy, || names.clone())
        {
            Refresh::Decoded(Reconciled::Unchanged) | Refresh::Cached | Refresh::Missing => false,
            Refresh::Decoded(r) => {
                say::info(say::ROOT, format_args!("bandit state {}: {r}", quoted(key)));
                true
            }
            Refresh::Undecodable(e) => {
                say::warn(
                    say::ROOT,
                    format_args!("bandit state {} was undecodable ({e}); reset", quoted(key)),
                );
                host.bump(plugin.metrics.state_resets);
                true
            }
        };
        if needs_write {
            let result = update_state(&store, key, learning::MAX_CAS_ATTEMPTS, &initial, |s| {
                Ok::<_, String>(strategy.reconcile(s, &names).0)
            });
            if let Err(e) = result {
                say::warn(
                    say::ROOT,
                    format_args!("writing reconciled state {} failed: {e}", quoted(key)),
                );
            }
        }
    }
}

/// The evaluator's answer: `{"reward": r}` with r in [0, 1].
fn evaluated(
    host: &dyn Host,
    plugin: &Plugin,
    model: usize,
    graded: learning::Graded<'_>,
    answer: &Answer,
) {
    let reward = match answer.status.as_deref() {
        Some("200") => crate::json::read::from_slice(&answer.body)
            .ok()
            .and_then(|v| v.get("reward").and_then(crate::json::Value::as_f64))
            .ok_or_else(|| "the evaluator's answer has no numeric \"reward\"".to_string())
            .and_then(|r| crate::bandit::check_reward(r).map_err(|e| crate::quote::text(&e))),
        Some(s) => Err(format!("the evaluator answered status {s}")),
        None => Err("the evaluator did not answer (timeout or connection failure)".into()),
    };
    match reward {
        Ok(r) => plugin.record_reward(host, model, graded, r, plugin.metrics.rewards_evaluator),
        Err(e) => {
            host.bump(plugin.metrics.evaluator_failures);
            say::warn(say::ROOT, format_args!("evaluator: {e}"));
        }
    }
}

fn feedback_forwarded(host: &dyn Host, plugin: &Plugin, model: usize, answer: &CalloutAnswer) {
    match answer {
        CalloutAnswer::Status(s) if (200..300).contains(s) => {
            host.bump(plugin.metrics.router_feedback_forwarded);
        }
        other => {
            host.bump(plugin.metrics.router_feedback_failures);
            let name = plugin.cfg.models.get(model).map(|m| m.name.as_str());
            say::warn(
                say::ROOT,
                format_args!("the router of model {name:?} did not take the reward: {other:?}"),
            );
        }
    }
}

fn publish_gauges(host: &dyn Host, plugin: &Plugin) {
    let mut shared = plugin.shared(host);
    for i in 0..plugin.cfg.models.len() {
        if let Some(state) = shared.bandit_state(i) {
            plugin.metrics.publish_state(host, &plugin.cfg, i, state);
        }
    }
    if let Some(ids) = &plugin.metrics.load {
        for (mi, gauges) in ids.in_flight.iter().enumerate() {
            let Some(load) = plugin.load(host, mi) else {
                continue;
            };
            for (t, id) in gauges.iter().enumerate() {
                let _ = host.record_metric(*id, u64::from(load.in_flight(t)));
            }
        }
    }
    if let Some(ids) = &plugin.metrics.fleet {
        if let Some(lag) = fleet::sync::lag_ms(host, plugin, fleet::now_ms(host)) {
            let _ = host.record_metric(ids.lag_ms, lag);
        }
    }
}
