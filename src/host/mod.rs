//! The proxy-wasm adapter: the only module that calls the host. It translates host callbacks
//! into calls of the pure core (`config`, `policy`, `payload`, `learning`) and applies what the
//! core decides. Host calls go through `abi`, never the SDK's `hostcalls` or context convenience
//! methods: those panic on statuses they do not expect, and a panic here would kill the VM.

mod abi;
mod http;
mod metrics;
mod root;
mod store;

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;

use proxy_wasm::traits::RootContext;

use crate::bandit::{ModelState, StateCache};
use crate::config::Config;
use crate::learning::health::Health;
use crate::policy::{DecisionIds, Shared};
use crate::rng::Rng;

proxy_wasm::main! {{
    // Our own logger and panic hook: the SDK's unwrap the host's status. A panic still aborts
    // the VM; the hook makes sure the reason reaches the Envoy log first.
    let _ = log::set_logger(&abi::HostLogger);
    log::set_max_level(log::LevelFilter::Info);
    std::panic::set_hook(Box::new(|info| {
        let _ = abi::log(abi::LOG_CRITICAL, &format!("inference-router: panic: {info}"));
    }));
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(root::Root::default()) });
}}

pub const VERSION: &str = env!("CARGO_PKG_VERSION");
pub const GIT_SHA: &str = env!("INFERENCE_ROUTER_GIT_SHA");

/// A response summary waiting for the root context to send it to the evaluator.
pub(crate) struct EvalJob {
    pub model: usize,
    pub target: String,
    pub body: Vec<u8>,
}

/// Bounded: a slow or absent evaluator must not grow memory without limit.
pub(crate) const MAX_PENDING_EVALUATIONS: usize = 1024;

/// A request the root context sends on its tick, fire-and-forget: a shadow copy of a user's
/// request, or a reward forwarded to an external router. Sent from the root context because a
/// callout made from an HTTP context is cancelled when that stream ends.
pub(crate) struct MirrorJob {
    pub kind: MirrorKind,
    pub cluster: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub timeout_ms: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MirrorKind {
    /// A copy for `shadows[index]`, whose answer is counted and discarded.
    Shadow { index: usize },
    /// A reward for the router of `models[model]`.
    Feedback { model: usize },
}

/// Bounded like the evaluator outbox: the oldest job is dropped (and counted) first.
pub(crate) const MAX_PENDING_MIRRORS: usize = 1024;

/// What every HTTP context of one plugin instance shares (one VM is one thread: Rc is enough).
pub(crate) struct Plugin {
    pub cfg: Config,
    pub metrics: metrics::Metrics,
    /// The Envoy plugin name: the identity under which bandit state is kept.
    pub name: String,
    /// Shared-data key per model (`None` for models that do not learn).
    pub state_keys: Vec<Option<String>>,
    /// Decoded bandit state per model, refreshed only when the shared value's CAS changes.
    pub caches: RefCell<Vec<StateCache>>,
    pub outbox: RefCell<VecDeque<EvalJob>>,
    /// Shadow copies and router feedback waiting for the root context's tick.
    pub mirror: RefCell<VecDeque<MirrorJob>>,
    /// Some model resends requests by callout (router, fan-out, retry) or is shadowed: bodies
    /// of any content type are held for them.
    pub resends: bool,
    /// Some model learns from responses (its latency is measured).
    pub learns: bool,
    /// Shared-data key of each model's target health, for models that use it (fallback
    /// cooldowns, latency budgets).
    pub health_keys: Vec<Option<String>>,
    /// Decoded health per model, with the CAS it was read at.
    pub health: RefCell<Vec<Option<CachedHealth>>>,
    /// The clock is read for each decision (time rules, cooldowns).
    pub needs_clock: bool,
}

impl Plugin {
    /// Queues a job for the root context; when the queue is full the oldest is dropped.
    pub fn enqueue_mirror(&self, job: MirrorJob) {
        let Ok(mut queue) = self.mirror.try_borrow_mut() else {
            self.mirror_lost(job.kind);
            return;
        };
        if queue.len() >= MAX_PENDING_MIRRORS {
            if let Some(old) = queue.pop_front() {
                self.mirror_lost(old.kind);
            }
        }
        queue.push_back(job);
    }

    /// Counts a job that was never sent.
    pub fn mirror_lost(&self, kind: MirrorKind) {
        metrics::Metrics::bump(match kind {
            MirrorKind::Shadow { .. } => self.metrics.shadow_dropped,
            MirrorKind::Feedback { .. } => self.metrics.router_feedback_failures,
        });
    }
}

/// A model's decoded health and the CAS token it was read at.
pub(crate) type CachedHealth = (Option<u32>, Health);

/// Per-VM state that outlives a configuration.
#[derive(Clone)]
pub(crate) struct VmState {
    pub rng: Rc<RefCell<Rng>>,
    pub ids: Rc<RefCell<DecisionIds>>,
}

impl VmState {
    pub fn new() -> Self {
        VmState {
            rng: Rc::new(RefCell::new(Rng::seed_from_u64(entropy_u64()))),
            ids: Rc::new(RefCell::new(DecisionIds::new(entropy_u64()))),
        }
    }
}

/// `log` has no critical level; configuration refusals use the host's directly.
pub(crate) fn critical(message: &str) {
    let _ = abi::log(abi::LOG_CRITICAL, message);
}

pub(crate) fn now_secs() -> u64 {
    abi::now_nanos().map_or(0, |n| n / 1_000_000_000)
}

fn entropy_u64() -> u64 {
    let mut buf = [0u8; 8];
    match getrandom::fill(&mut buf) {
        Ok(()) => u64::from_le_bytes(buf),
        Err(e) => {
            // Still distinct per VM start; logged because draws would repeat across restarts.
            log::warn!("inference-router: getrandom failed ({e}); seeding from the clock");
            abi::now_nanos().unwrap_or(0x5eed)
        }
    }
}

/// The core's view of shared state: each value read fresh (one host call) and decoded only when
/// its CAS token changed since this VM last decoded it.
pub(crate) struct HostShared<'a> {
    plugin: &'a Plugin,
    caches: Option<std::cell::RefMut<'a, Vec<StateCache>>>,
}

impl<'a> HostShared<'a> {
    pub fn new(plugin: &'a Plugin) -> Self {
        HostShared {
            plugin,
            caches: None,
        }
    }

    fn health(&mut self, model: usize) -> Option<Health> {
        let key = self.plugin.health_keys.get(model)?.as_ref()?;
        let targets = self.plugin.cfg.models.get(model)?.targets.len();
        let (bytes, cas) = abi::get_shared_data(key).ok()?;
        let mut cache = self.plugin.health.try_borrow_mut().ok()?;
        let slot = cache.get_mut(model)?;
        match (slot.as_ref(), bytes) {
            (Some((cached, h)), _) if cas.is_some() && *cached == cas => Some(h.clone()),
            (_, None) => None,
            (_, Some(b)) => {
                let h = Health::decode(&b, targets);
                *slot = Some((cas, h.clone()));
                Some(h)
            }
        }
    }
}

impl Shared for HostShared<'_> {
    fn bandit_state(&mut self, model: usize) -> Option<&ModelState> {
        let plugin = self.plugin;
        let m = plugin.cfg.models.get(model)?;
        let strategy = m.bandit()?;
        let key = plugin.state_keys.get(model)?.as_ref()?;
        let (bytes, cas) = match abi::get_shared_data(key) {
            Ok(v) => v,
            Err(status) => {
                log::warn!(
                    "inference-router: reading bandit state {key:?} failed: host status {status}"
                );
                return None;
            }
        };
        if self.caches.is_none() {
            self.caches = plugin.caches.try_borrow_mut().ok();
        }
        let cache = self.caches.as_mut()?.get_mut(model)?;
        match cache.refresh(bytes.as_deref(), cas, strategy, &m.target_names()) {
            crate::bandit::Refresh::Undecodable(e) => {
                log::warn!("inference-router: bandit state {key:?} is undecodable ({e}); using a fresh state until the next reward replaces it");
            }
            crate::bandit::Refresh::Decoded(how) if how != crate::bandit::Reconciled::Unchanged => {
                log::info!("inference-router: bandit state {key:?}: {how}");
            }
            _ => {}
        }
        cache.state()
    }

    fn cooling_until(&mut self, model: usize, target: usize) -> u64 {
        self.health(model).map_or(0, |h| h.cooling(target))
    }

    fn latency_ms(&mut self, model: usize, target: usize) -> Option<f64> {
        self.health(model)?.latency(target)
    }
}
