//! The root context: configuration, seeding shared state, and the periodic work that must not
//! run on a request's path (spent-id buckets, evaluator callouts, shadow copies, rewards
//! forwarded to external routers, state gauges).

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::ContextType;

use super::store::HostStore;
use super::{abi, critical, http, metrics, now_secs, HostShared, MirrorKind, Plugin, VmState};
use super::{GIT_SHA, VERSION};
use crate::bandit::{seed, update_state, Reconciled, SeedOutcome, StateCache};
use crate::callout::{classify, status_class, CalloutAnswer};
use crate::config;
use crate::learning::{self, spent};
use crate::policy::Shared;

const TICK_MS: u32 = 200;
/// Gauges are republished every this many ticks.
const GAUGE_TICKS: u32 = 5;
/// Evaluator callouts started per tick, so a burst cannot monopolise a tick.
const CALLOUTS_PER_TICK: usize = 64;
/// Shadow copies and router rewards started per tick (up to 1,280/s per worker at 200 ms);
/// beyond that the queue (`MAX_PENDING_MIRRORS`) fills and the oldest copies are dropped.
const MIRRORS_PER_TICK: usize = 256;

#[derive(Default)]
pub(crate) struct Root {
    plugin: Option<Rc<Plugin>>,
    vm: Option<VmState>,
    /// Spent-id buckets below this are known emptied; up to `seeded_to` known to exist.
    spent_cleared_below: u64,
    spent_seeded_to: u64,
    /// Callouts in flight, by token.
    callouts: HashMap<u32, Pending>,
    ticks: u32,
}

/// What a root-context callout was for.
enum Pending {
    /// An evaluation of a response of (model, target).
    Evaluator(usize, String),
    /// A shadow copy, sent at this time (ns).
    Shadow { index: usize, started_ns: u64 },
    /// A reward forwarded to a model's router.
    Feedback { model: usize },
}

fn plugin_name() -> String {
    abi::get_property(&["plugin_name"])
        .ok()
        .flatten()
        .and_then(|b| String::from_utf8(b).ok())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "inference-router".into())
}

impl Root {
    /// Seeds each bandit model's key (a missing key ignores CAS, so it must exist before the
    /// first reward) and migrates state whose targets no longer match the configuration.
    fn prepare_state(plugin: &Plugin) {
        let store = HostStore;
        for (i, m) in plugin.cfg.models.iter().enumerate() {
            let (Some(strategy), Some(Some(key))) = (m.bandit(), plugin.state_keys.get(i)) else {
                continue;
            };
            let names = m.target_names();
            let initial = strategy.initial_state(&names);
            match seed(&store, key, &initial) {
                Ok(SeedOutcome::Seeded) => {
                    log::info!("inference-router: bandit state {key:?} created")
                }
                Ok(SeedOutcome::AlreadyPresent) => {}
                Err(e) => log::warn!("inference-router: seeding bandit state {key:?} failed: {e}"),
            }
            // Reconcile stored state with this configuration once, and log what changed.
            let mut cache = StateCache::new();
            let (bytes, cas) = abi::get_shared_data(key).unwrap_or((None, None));
            let how = cache.refresh(bytes.as_deref(), cas, strategy, &names);
            let needs_write = match &how {
                crate::bandit::Refresh::Decoded(Reconciled::Unchanged)
                | crate::bandit::Refresh::Cached => false,
                crate::bandit::Refresh::Decoded(r) => {
                    log::info!("inference-router: bandit state {key:?}: {r}");
                    true
                }
                crate::bandit::Refresh::Undecodable(e) => {
                    log::warn!(
                        "inference-router: bandit state {key:?} was undecodable ({e}); reset"
                    );
                    metrics::Metrics::bump(plugin.metrics.state_resets);
                    true
                }
                crate::bandit::Refresh::Missing => false,
            };
            if needs_write {
                let result = update_state(&store, key, learning::MAX_CAS_ATTEMPTS, &initial, |s| {
                    Ok::<_, String>(strategy.reconcile(s, &names).0)
                });
                if let Err(e) = result {
                    log::warn!("inference-router: writing reconciled state {key:?} failed: {e}");
                }
            }
        }
    }

    /// Keeps spent-id buckets: creates those new tokens can land in before any such token
    /// exists, and empties those whose tokens have all expired.
    fn maintain_spent(&mut self, plugin: &Plugin) {
        let Some(fb) = &plugin.cfg.feedback else {
            return;
        };
        let store = HostStore;
        let now = now_secs();
        let prefix = learning::spent_prefix(&plugin.name);
        let live = spent::live_buckets(now, fb.ttl_seconds);
        let from = (*live.start()).max(self.spent_seeded_to);
        for b in from..=*live.end() {
            if let Err(e) = spent::seed_bucket(&store, &spent::bucket_key(&prefix, b)) {
                log::warn!("inference-router: creating spent-id bucket {b} failed: {e}");
            }
        }
        self.spent_seeded_to = live.end().saturating_add(1);
        let current = *live.start();
        if self.spent_cleared_below == 0 {
            // First run in this VM: older buckets may hold ids of tokens issued before a reload.
            self.spent_cleared_below = current.saturating_sub(4);
        }
        for b in self.spent_cleared_below..current {
            let _ = spent::clear_bucket(&store, &spent::bucket_key(&prefix, b));
        }
        self.spent_cleared_below = current;
    }

    fn send_evaluations(&mut self, plugin: &Plugin) {
        let mut outbox = match plugin.outbox.try_borrow_mut() {
            Ok(o) => o,
            Err(_) => return,
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
            match abi::http_call(&eval.cluster, &headers, Some(&job.body), eval.timeout_ms) {
                Ok(token) => {
                    self.callouts
                        .insert(token, Pending::Evaluator(job.model, job.target));
                }
                Err(status) => {
                    metrics::Metrics::bump(plugin.metrics.evaluator_failures);
                    log::warn!(
                        "inference-router: evaluator callout to cluster {:?} not started: host status {status}",
                        eval.cluster
                    );
                }
            }
        }
    }

    /// Sends queued shadow copies and router feedback; their answers are only counted.
    fn send_mirrors(&mut self, plugin: &Plugin) {
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
            let started_ns = abi::now_nanos().unwrap_or(0);
            match abi::http_call(&job.cluster, &headers, Some(&job.body), job.timeout_ms) {
                Ok(token) => {
                    let pending = match job.kind {
                        MirrorKind::Shadow { index } => Pending::Shadow { index, started_ns },
                        MirrorKind::Feedback { model } => Pending::Feedback { model },
                    };
                    self.callouts.insert(token, pending);
                }
                Err(status) => {
                    plugin.mirror_lost(job.kind);
                    log::warn!(
                        "inference-router: callout to cluster {:?} not started: host status {status}",
                        job.cluster
                    );
                }
            }
        }
    }

    fn shadow_answered(plugin: &Plugin, index: usize, started_ns: u64, answer: &CalloutAnswer) {
        let Some(shadow) = plugin.cfg.shadows.get(index) else {
            return;
        };
        let latency_ms = abi::now_nanos()
            .ok()
            .map(|n| n.saturating_sub(started_ns) / 1_000_000);
        plugin
            .metrics
            .shadow(shadow.model, status_class(answer), latency_ms);
    }

    fn feedback_answered(plugin: &Plugin, model: usize, answer: &CalloutAnswer) {
        match answer {
            CalloutAnswer::Status(s) if (200..300).contains(s) => {
                metrics::Metrics::bump(plugin.metrics.router_feedback_forwarded);
            }
            other => {
                metrics::Metrics::bump(plugin.metrics.router_feedback_failures);
                let name = plugin.cfg.models.get(model).map(|m| m.name.as_str());
                log::warn!(
                    "inference-router: the router of model {name:?} did not take the reward: {other:?}"
                );
            }
        }
    }

    fn publish_gauges(plugin: &Plugin) {
        let mut shared = HostShared::new(plugin);
        for i in 0..plugin.cfg.models.len() {
            if let Some(state) = shared.bandit_state(i) {
                let state = state.clone();
                plugin.metrics.publish_state(&plugin.cfg, i, &state);
            }
        }
    }
}

impl Context for Root {
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        _num_headers: usize,
        body_size: usize,
        _num_trailers: usize,
    ) {
        let Some(pending) = self.callouts.remove(&token_id) else {
            return;
        };
        let Some(plugin) = self.plugin.clone() else {
            return;
        };
        let (status, body) = abi::callout_answer(body_size);
        let (model, target) = match pending {
            Pending::Evaluator(model, target) => (model, target),
            Pending::Shadow { index, started_ns } => {
                let answer = classify(status.as_deref(), &body);
                return Self::shadow_answered(&plugin, index, started_ns, &answer);
            }
            Pending::Feedback { model } => {
                let answer = classify(status.as_deref(), &body);
                return Self::feedback_answered(&plugin, model, &answer);
            }
        };
        let reward = match status.as_deref() {
            Some("200") => serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get("reward").and_then(serde_json::Value::as_f64))
                .ok_or_else(|| "the evaluator's answer has no numeric \"reward\"".to_string())
                .and_then(|r| crate::bandit::check_reward(r).map_err(|e| e.to_string())),
            Some(s) => Err(format!("the evaluator answered status {s}")),
            None => Err("the evaluator did not answer (timeout or connection failure)".into()),
        };
        match reward {
            Ok(r) => {
                http::record_reward(&plugin, model, &target, r, plugin.metrics.rewards_evaluator)
            }
            Err(e) => {
                metrics::Metrics::bump(plugin.metrics.evaluator_failures);
                log::warn!("inference-router: evaluator: {e}");
            }
        }
    }
}

impl RootContext for Root {
    fn on_vm_start(&mut self, _vm_configuration_size: usize) -> bool {
        log::info!("inference-router {VERSION} ({GIT_SHA}) starting");
        self.vm = Some(VmState::new());
        true
    }

    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        let bytes = match abi::get_buffer(abi::BUFFER_PLUGIN_CONFIGURATION, 0, usize::MAX) {
            Ok(b) => b.unwrap_or_default(),
            Err(status) => {
                critical(&format!(
                    "inference-router: cannot read the plugin configuration: host status {status}"
                ));
                return false;
            }
        };
        let cfg = match config::parse(&bytes) {
            Ok(cfg) => cfg,
            Err(e) => {
                critical(&format!("inference-router: invalid configuration: {e}"));
                return false;
            }
        };
        let metrics = match metrics::Metrics::define(&cfg) {
            Ok(m) => m,
            Err(e) => {
                critical(&format!("inference-router: cannot define metrics: {e}"));
                return false;
            }
        };
        let name = plugin_name();
        let state_keys = cfg
            .models
            .iter()
            .map(|m| m.is_bandit().then(|| learning::state_key(&name, &m.name)))
            .collect();
        let caches = RefCell::new(vec![StateCache::new(); cfg.models.len()]);
        log::info!(
            "inference-router: plugin {name:?} configured: {} model(s), {} rule(s), body source {:?}, feedback {}",
            cfg.models.len(),
            cfg.rules.len(),
            cfg.body.source,
            if cfg.feedback.is_some() { "on" } else { "off" }
        );
        let forwards_feedback = cfg.feedback.is_some()
            && cfg
                .models
                .iter()
                .any(|m| m.router.as_ref().is_some_and(|r| r.feedback_path.is_some()));
        let periodic = cfg.feedback.is_some()
            || cfg.models.iter().any(|m| m.is_bandit())
            || !cfg.shadows.is_empty()
            || forwards_feedback;
        let resends = !cfg.shadows.is_empty()
            || cfg
                .models
                .iter()
                .any(|m| m.router.is_some() || m.fan_out.is_some() || m.retry);
        let learns = cfg.models.iter().any(|m| m.reward.is_some());
        let health_keys: Vec<Option<String>> = cfg
            .models
            .iter()
            .map(|m| {
                (!m.fallback.is_empty() || cfg.budget.is_some())
                    .then(|| learning::health::health_key(&name, &m.name))
            })
            .collect();
        let needs_clock = cfg.has_time_rules || cfg.models.iter().any(|m| !m.fallback.is_empty());
        let plugin = Rc::new(Plugin {
            learns,
            health: RefCell::new(vec![None; cfg.models.len()]),
            health_keys,
            needs_clock,
            cfg,
            metrics,
            name,
            state_keys,
            caches,
            outbox: RefCell::new(VecDeque::new()),
            mirror: RefCell::new(VecDeque::new()),
            resends,
        });
        Self::prepare_state(&plugin);
        self.spent_cleared_below = 0;
        self.spent_seeded_to = 0;
        self.maintain_spent(&plugin);
        if periodic {
            if let Err(status) = abi::set_tick_period_ms(TICK_MS) {
                log::warn!("inference-router: no tick (host status {status}): spent ids and gauges are not maintained");
            }
        }
        self.plugin = Some(plugin);
        true
    }

    fn on_tick(&mut self) {
        let Some(plugin) = self.plugin.clone() else {
            return;
        };
        self.maintain_spent(&plugin);
        self.send_evaluations(&plugin);
        self.send_mirrors(&plugin);
        self.ticks = self.ticks.wrapping_add(1);
        if self.ticks % GAUGE_TICKS == 0 {
            Self::publish_gauges(&plugin);
        }
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        // The SDK panics on None; without a configuration (Envoy refuses the listener first,
        // so this is defensive) the stream passes through untouched.
        let Some(plugin) = self.plugin.clone() else {
            return Some(Box::new(http::PassThrough));
        };
        let vm = self.vm.clone().unwrap_or_else(VmState::new);
        Some(Box::new(http::Http::new(context_id, plugin, vm)))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
