//! One configured plugin instance: the compiled configuration, its metric ids, the shared-data
//! keys it owns, and the queues its streams hand to the root context. Everything a stream of
//! this plugin shares with the others (one VM is one thread: `Rc` and `RefCell` are enough).

use crate::quote::quoted;
use std::cell::{Cell, RefCell, RefMut};
use std::collections::VecDeque;
use std::rc::Rc;

use crate::bandit::{ModelState, Reconciled, Refresh, StateCache};
use crate::callout::forward_message;
use crate::config::{self, Config};
use crate::host::{Host, HostStore};
use crate::learning::RouterForward;
use crate::learning::{self, health::Health};
use crate::load::{Load, Signals};
use crate::policy::{DecisionIds, Shared};
use crate::rng::Rng;
use crate::telemetry::Metrics;

/// Bounded: a slow or absent evaluator must not grow memory without limit.
pub const MAX_PENDING_EVALUATIONS: usize = 1024;
/// Bounded like the evaluator outbox: the oldest job is dropped (and counted) first.
pub const MAX_PENDING_MIRRORS: usize = 1024;
/// Rewards forwarded to a router wait at least this long for its answer.
const FEEDBACK_FORWARD_MIN_TIMEOUT_MS: u32 = 1000;

/// A response summary waiting for the root context to send it to the evaluator.
pub struct EvalJob {
    pub model: usize,
    pub target: String,
    /// The decision's context (contextual strategies), for the reward the answer brings.
    pub context: Option<crate::bandit::Context>,
    pub body: Vec<u8>,
}

/// A request the root context sends on its tick, fire-and-forget: a shadow copy of a user's
/// request, or a reward forwarded to an external router. Sent from the root context because a
/// callout made from an HTTP context is cancelled when that stream ends.
pub struct MirrorJob {
    pub kind: MirrorKind,
    pub cluster: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub timeout_ms: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MirrorKind {
    /// A copy for `shadows[index]`, whose answer is counted and discarded.
    Shadow { index: usize },
    /// A reward for the router of `models[model]`.
    Feedback { model: usize },
    /// The release of a spent decision id (fleet) whose reward could not be applied.
    Unspend,
}

/// A model's decoded health and the CAS token it was read at.
type CachedHealth = (Option<u32>, Health);
/// A model's decoded load document and the CAS token it was read at.
type CachedLoad = (Option<u32>, Rc<Load>);

pub struct Plugin {
    pub cfg: Config,
    pub metrics: Metrics,
    /// The Envoy plugin name: the identity under which bandit state is kept.
    pub name: String,
    /// Shared-data key per model (`None` for models that do not learn).
    pub state_keys: Vec<Option<String>>,
    /// Decoded bandit state per model, refreshed only when the shared value's CAS changes.
    caches: RefCell<Vec<StateCache>>,
    pub outbox: RefCell<VecDeque<EvalJob>>,
    /// Shadow copies and router feedback waiting for the root context's tick.
    pub mirror: RefCell<VecDeque<MirrorJob>>,
    /// Some model resends requests by callout (router, fan-out, retry) or is shadowed: bodies
    /// of any content type are held for them.
    pub resends: bool,
    /// A JSON body may be routed on its first part (`stream::early`): no model keys load on
    /// the prompt's prefix, which needs the whole body, and no policy (tenants, rules that
    /// refuse, restrict or answer) could be slipped past by a key repeated after that part.
    pub decides_early: bool,
    /// Some model learns from responses, or tracks target health: the request start is read.
    pub times_requests: bool,
    /// Shared-data key of each model's target health, for models that use it (fallback
    /// cooldowns, latency budgets).
    pub health_keys: Vec<Option<String>>,
    health: RefCell<Vec<Option<CachedHealth>>>,
    /// Shared-data key of each load-tracking model's load document (`crate::load`).
    pub load_keys: Vec<Option<String>>,
    load: RefCell<Vec<Option<CachedLoad>>>,
    /// The clock is read for each decision (time rules, cooldowns).
    pub needs_clock: bool,
    /// Some target's pods are picked by the filter: a client's pod header never stands.
    pub picks_endpoints: bool,
    /// The root context has periodic work (spent ids, gauges, queued callouts, fleet sync).
    pub periodic: bool,
    /// Envoy's node id as one etcd key part (fleet only): the default replica id's first half.
    pub node: String,
    /// This VM has seen the fleet's first view merged (or given up on it): requests stop
    /// checking for it.
    pub warm: Cell<bool>,
}

/// The longest node id kept in a replica id.
/// Per model, its shared-data key of one kind (`None`: the model has none). One loop for
/// every kind of key rather than a collect per closure.
fn keys(cfg: &Config, key: &dyn Fn(&config::Model) -> Option<String>) -> Vec<Option<String>> {
    let mut out = Vec::with_capacity(cfg.models.len());
    for m in &cfg.models {
        out.push(key(m));
    }
    out
}

const MAX_NODE_LEN: usize = 96;

/// Envoy's node id (`xds.node.id`) made safe as an etcd key part; `envoy` when there is none.
fn node_id(host: &dyn Host) -> String {
    let raw = host
        .property(&["xds", "node", "id"])
        .ok()
        .flatten()
        .map(|b| crate::utf8::lossy(&b).into_owned())
        .unwrap_or_default();
    let safe: String = raw
        .chars()
        .take(MAX_NODE_LEN)
        .map(|c| {
            if c.is_ascii_graphic() && c != '/' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if safe.is_empty() {
        "envoy".into()
    } else {
        safe
    }
}

impl Plugin {
    /// Parses and compiles the configuration and defines the metrics; the error is the
    /// sentence the host logs before refusing to start.
    pub fn configure(host: &dyn Host, name: String, bytes: &[u8]) -> Result<Plugin, String> {
        let cfg = config::parse(bytes).map_err(|e| format!("invalid configuration: {e}"))?;
        let metrics =
            Metrics::define(host, &cfg).map_err(|e| format!("cannot define metrics: {e}"))?;
        let state_keys = keys(&cfg, &|m| {
            m.is_bandit().then(|| learning::state_key(&name, &m.name))
        });
        let health_keys = keys(&cfg, &|m| {
            (!m.fallback.is_empty() || cfg.budget.is_some())
                .then(|| learning::health::health_key(&name, &m.name))
        });
        let load_keys = keys(&cfg, &|m| {
            m.tracks_load.then(|| crate::load::load_key(&name, m))
        });
        let forwards_feedback = cfg.feedback.is_some()
            && cfg
                .models
                .iter()
                .any(|m| m.router.as_ref().is_some_and(|r| r.feedback_path.is_some()));
        let periodic = cfg.feedback.is_some()
            || cfg.models.iter().any(|m| m.is_bandit())
            || !cfg.shadows.is_empty()
            || forwards_feedback
            || cfg.fleet.is_some()
            || cfg.registry.is_some()
            || load_keys.iter().any(Option::is_some);
        let node = if cfg.fleet.is_some() {
            node_id(host)
        } else {
            String::new()
        };
        let resends = !cfg.shadows.is_empty()
            || cfg
                .models
                .iter()
                .any(|m| m.router.is_some() || m.fan_out.is_some() || m.retry);
        let times_requests = cfg.models.iter().any(|m| m.reward.is_some())
            || health_keys.iter().any(Option::is_some)
            || load_keys.iter().any(Option::is_some);
        let needs_clock = cfg.has_time_rules || cfg.models.iter().any(|m| !m.fallback.is_empty());
        Ok(Plugin {
            caches: RefCell::new(vec![StateCache::new(); cfg.models.len()]),
            health: RefCell::new(vec![None; cfg.models.len()]),
            load: RefCell::new(vec![None; cfg.models.len()]),
            load_keys,
            outbox: RefCell::new(VecDeque::new()),
            mirror: RefCell::new(VecDeque::new()),
            state_keys,
            health_keys,
            resends,
            decides_early: cfg.models.iter().all(|m| m.affinity.is_none())
                && cfg.tenants.is_none()
                && cfg
                    .rules
                    .iter()
                    .all(|r| matches!(r.then, config::Action::Pin { .. })),
            times_requests,
            needs_clock,
            picks_endpoints: cfg
                .models
                .iter()
                .any(|m| m.targets.iter().any(config::Target::picks_endpoint)),
            periodic,
            node,
            warm: Cell::new(false),
            metrics,
            name,
            cfg,
        })
    }

    /// Queues a job for the root context; when the queue is full the oldest is dropped.
    pub fn enqueue_mirror(&self, host: &dyn Host, job: MirrorJob) {
        let Ok(mut queue) = self.mirror.try_borrow_mut() else {
            self.mirror_lost(host, job.kind);
            return;
        };
        if queue.len() >= MAX_PENDING_MIRRORS {
            if let Some(old) = queue.pop_front() {
                self.mirror_lost(host, old.kind);
            }
        }
        queue.push_back(job);
    }

    /// Queues a reward for the router of `fwd.model` (its `router.feedback_path`), carrying the
    /// client's Seldon `request` and `truth` when its feedback had them.
    pub fn forward_reward(&self, host: &dyn Host, fwd: &RouterForward, client_body: &[u8]) {
        let Some(m) = self.cfg.models.get(fwd.model) else {
            return;
        };
        let Some((router, path)) = m
            .router
            .as_ref()
            .and_then(|r| Some((r, r.feedback_path.as_ref()?)))
        else {
            return;
        };
        let headers = vec![
            (":method".to_string(), "POST".to_string()),
            (":path".to_string(), path.clone()),
            (":authority".to_string(), router.authority.clone()),
            ("content-type".to_string(), "application/json".to_string()),
        ];
        let job = MirrorJob {
            kind: MirrorKind::Feedback { model: fwd.model },
            cluster: router.cluster.clone(),
            headers,
            body: forward_message(&m.name, fwd.child, fwd.reward, client_body),
            // Feedback is not on anyone's request path: give the router time.
            timeout_ms: router.timeout_ms.max(FEEDBACK_FORWARD_MIN_TIMEOUT_MS),
        };
        self.enqueue_mirror(host, job);
    }

    /// Counts a job that was never sent.
    pub fn mirror_lost(&self, host: &dyn Host, kind: MirrorKind) {
        match kind {
            MirrorKind::Shadow { .. } => host.bump(self.metrics.shadow_dropped),
            MirrorKind::Feedback { .. } => host.bump(self.metrics.router_feedback_failures),
            MirrorKind::Unspend => crate::host_log!(Warn, "inference-router: fleet: the release of a spent decision id whose reward was not applied was dropped"),
        }
    }

    /// Queues a response summary for the evaluator; when full, the oldest is dropped (counted).
    pub fn enqueue_evaluation(&self, host: &dyn Host, job: EvalJob) {
        let Ok(mut outbox) = self.outbox.try_borrow_mut() else {
            host.bump(self.metrics.evaluator_failures);
            return;
        };
        if outbox.len() >= MAX_PENDING_EVALUATIONS {
            outbox.pop_front();
            host.bump(self.metrics.evaluator_failures);
        }
        outbox.push_back(job);
    }

    /// Applies a reward to shared state and counts it under `counter` (or counts its failure).
    pub fn record_reward(
        &self,
        host: &dyn Host,
        model: usize,
        graded: learning::Graded<'_>,
        reward: f64,
        counter: u32,
    ) {
        let target = graded.target;
        let store = HostStore(host);
        // The clock only matters to time decay: one host call saved per reward otherwise.
        let timed = (self.cfg.models.get(model))
            .and_then(|m| m.bandit())
            .is_some_and(|b| b.half_life_ms().is_some());
        let now_ms = if timed { now_ms(host) } else { 0 };
        match learning::apply_reward(&store, &self.name, &self.cfg, model, graded, reward, now_ms) {
            Ok(applied) => {
                host.bump(counter);
                host.add(self.metrics.cas_retries, u64::from(applied.retries));
                if applied.reset {
                    host.bump(self.metrics.state_resets);
                    crate::host_log!(
                        Warn,
                        "inference-router: bandit state of {} was undecodable and was reset",
                        quoted(&applied.model)
                    );
                }
                if let Some(alarm) = &applied.alarm {
                    self.metrics.change_alarm(host, &self.cfg, model, alarm);
                }
                // Gauges are republished by the root context's timer: no per-reward host calls.
            }
            Err(e) => {
                host.bump(self.metrics.rewards_failed);
                if matches!(e, learning::ApplyError::Contention { .. }) {
                    host.bump(self.metrics.cas_exhausted);
                }
                crate::host_log!(
                    Warn,
                    "inference-router: reward for {} not applied: {}",
                    quoted(target),
                    e.describe()
                );
            }
        }
    }

    /// The shared state a decision reads, through the host.
    pub fn shared<'a>(&'a self, host: &'a dyn Host) -> HostShared<'a> {
        HostShared {
            plugin: self,
            host,
            caches: None,
            full: &[],
            now_ms: None,
            load: None,
        }
    }

    /// A model's load document as shared data has it (decoded again only when it changed);
    /// `None` for models that do not track load or when shared data cannot be read.
    pub fn load(&self, host: &dyn Host, model: usize) -> Option<Rc<Load>> {
        let key = self.load_keys.get(model)?.as_ref()?;
        let m = self.cfg.models.get(model)?;
        let (bytes, cas) = host.shared_data(key).ok()?;
        let mut cache = self.load.try_borrow_mut().ok()?;
        let slot = cache.get_mut(model)?;
        match (slot.as_ref(), bytes) {
            (Some((cached, l)), _) if cas.is_some() && *cached == cas => Some(Rc::clone(l)),
            (_, None) => Some(Rc::new(Load::fresh(m))),
            (_, Some(b)) => {
                let l = Rc::new(Load::decode(&b, m));
                *slot = Some((cas, Rc::clone(&l)));
                Some(l)
            }
        }
    }
}

/// The host's clock in Unix milliseconds (0 when it cannot be read).
pub fn now_ms(host: &dyn Host) -> u64 {
    host.now_nanos().map_or(0, |n| n / 1_000_000)
}

/// What build of the module is running: the crate version and the commit it was built from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Build {
    pub version: &'static str,
    pub commit: &'static str,
}

impl Build {
    /// For VMs of tests and tools that do not say.
    pub const UNKNOWN: Build = Build {
        version: "0.0.0",
        commit: "unknown",
    };
}

/// Per-VM state that outlives a configuration.
#[derive(Clone)]
pub struct VmState {
    pub rng: Rc<RefCell<Rng>>,
    pub ids: Rc<RefCell<DecisionIds>>,
    pub build: Build,
}

impl VmState {
    /// `rng_seed` and `id_seed` come from the host's entropy: distinct per VM start.
    pub fn new(rng_seed: u64, id_seed: u64) -> Self {
        VmState {
            rng: Rc::new(RefCell::new(Rng::seed_from_u64(rng_seed))),
            ids: Rc::new(RefCell::new(DecisionIds::new(id_seed))),
            build: Build::UNKNOWN,
        }
    }

    /// The same VM, saying which build it runs (the state endpoint and `/stats` show it).
    pub fn with_build(mut self, build: Build) -> Self {
        self.build = build;
        self
    }

    pub fn next_u64(&self) -> u64 {
        self.rng.try_borrow_mut().map_or(0, |mut r| r.next_u64())
    }

    /// A unique decision id (for decisions that need no signature).
    pub fn next_id(&self) -> String {
        self.ids
            .try_borrow_mut()
            .map_or_else(|_| String::new(), |mut ids| ids.next_id())
    }
}

/// The core's view of shared state: each value read fresh (one host call) and decoded only when
/// its CAS token changed since this VM last decoded it.
pub struct HostShared<'a> {
    plugin: &'a Plugin,
    host: &'a dyn Host,
    /// Borrowed on the first bandit read and held for the decision, which reads by reference.
    caches: Option<RefMut<'a, Vec<StateCache>>>,
    /// (model, target) pairs a reservation found full since the decision began.
    full: &'a [(usize, usize)],
    now_ms: Option<u64>,
    /// The load document read for this decision: one shared-data read per decision.
    load: Option<(usize, Option<Rc<Load>>)>,
}

impl<'a> HostShared<'a> {
    /// The same view, reading the time as `ms` (the request's start) instead of the clock.
    pub fn with_now_ms(mut self, ms: u64) -> Self {
        self.now_ms = Some(ms);
        self
    }

    /// The same view, with targets a reservation found full counted as full.
    pub fn with_full(mut self, full: &'a [(usize, usize)]) -> Self {
        self.full = full;
        self
    }

    fn load_of(&mut self, model: usize) -> Option<Rc<Load>> {
        match &self.load {
            Some((m, l)) if *m == model => l.clone(),
            _ => {
                let l = self.plugin.load(self.host, model);
                self.load = Some((model, l.clone()));
                l
            }
        }
    }

    fn now_ms(&mut self) -> u64 {
        let host = self.host;
        *self.now_ms.get_or_insert_with(|| now_ms(host))
    }
}

impl HostShared<'_> {
    /// A target's (cooling until, latency estimate) from its model's health, read in the
    /// cache (decoded again only when its CAS token changed), without a copy of the health.
    fn target_health(&mut self, model: usize, target: usize) -> Option<(u64, Option<f64>)> {
        let key = self.plugin.health_keys.get(model)?.as_ref()?;
        let targets = self.plugin.cfg.models.get(model)?.targets.len();
        let (bytes, cas) = self.host.shared_data(key).ok()?;
        let mut cache = self.plugin.health.try_borrow_mut().ok()?;
        let slot = cache.get_mut(model)?;
        let fresh = matches!(slot, Some((cached, _)) if cas.is_some() && *cached == cas);
        if !fresh {
            *slot = Some((cas, Health::decode(&bytes?, targets)));
        }
        let (_, h) = slot.as_ref()?;
        Some((h.cooling(target), h.latency(target)))
    }
}

impl Shared for HostShared<'_> {
    fn bandit_state(&mut self, model: usize) -> Option<&ModelState> {
        let plugin = self.plugin;
        let m = plugin.cfg.models.get(model)?;
        let strategy = m.bandit()?;
        let key = plugin.state_keys.get(model)?.as_ref()?;
        let (bytes, cas) = match self.host.shared_data(key) {
            Ok(v) => v,
            Err(status) => {
                crate::host_log!(
                    Warn,
                    "inference-router: reading bandit state {} failed: host status {status}",
                    quoted(key)
                );
                return None;
            }
        };
        if self.caches.is_none() {
            self.caches = plugin.caches.try_borrow_mut().ok();
        }
        let cache = self.caches.as_mut()?.get_mut(model)?;
        match cache.refresh(bytes.as_deref(), cas, strategy, || m.target_names()) {
            Refresh::Undecodable(e) => {
                crate::host_log!(Warn, "inference-router: bandit state {} is undecodable ({e}); using a fresh state until the next reward replaces it", quoted(key));
            }
            Refresh::Decoded(how) if how != Reconciled::Unchanged => {
                crate::host_log!(
                    Info,
                    "inference-router: bandit state {}: {how}",
                    quoted(key)
                );
            }
            _ => {}
        }
        cache.state()
    }

    fn cooling_until(&mut self, model: usize, target: usize) -> u64 {
        self.target_health(model, target)
            .map_or(0, |(cooling, _)| cooling)
    }

    fn latency_ms(&mut self, model: usize, target: usize) -> Option<f64> {
        self.target_health(model, target)?.1
    }

    fn has_room(&mut self, model: usize, target: usize) -> bool {
        if self.full.contains(&(model, target)) {
            return false;
        }
        let Some(t) = (self.plugin.cfg.models.get(model)).and_then(|m| m.targets.get(target))
        else {
            return true;
        };
        // Unreadable shared data: the reservation decides.
        self.load_of(model).is_none_or(|l| l.has_room(t, target))
    }

    fn signals(&mut self, model: usize, target: usize) -> Option<Signals> {
        let load = self.load_of(model)?;
        let stale = self.plugin.cfg.load.stale_ms;
        Some(load.target_signals(target, self.now_ms(), stale))
    }
}
