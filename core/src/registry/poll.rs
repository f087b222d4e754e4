//! The registry poll, from the root contexts of one Envoy, through two shared-data records of
//! the plugin (keyed by a digest of the static configuration, so two configurations never mix):
//!
//! - `poll`: the VMs race for each period by CAS (`next_due_ms`); the one that moves it polls
//!   and records the outcome (consecutive failures, last success, last error);
//! - `snapshot`: the last good registry answer (targets by model) with a generation number,
//!   written by CAS only when what the registry says changed.
//!
//! Every root context reads `snapshot` on its tick (decoding it only when its CAS token
//! changed) and, on a new generation, rebuilds its plugin from the merged configuration. A poll
//! that fails, or whose answer is refused, writes nothing to `snapshot`: routing stays on the
//! last good generation (or the configured targets, before the first).

use crate::vecmap::VecSet;
use std::rc::Rc;

use super::merge::{merged, Targets};
use super::settings::{RegistrySettings, Source};
use super::{json, mlflow};
use crate::bandit::{cas_edit_with, Edit};
use crate::callout::{classify, Answer, CalloutAnswer};
use crate::config::ConfigError;
use crate::host::{Host, HostStore, MetricKind};
use crate::json::read::{from_text, text_struct, FromText};
use crate::json::{ObjectWriter, ToJson};
use crate::learning::shared_prefix;
use crate::metrics::PREFIX;
use crate::plugin::Plugin;
use crate::quote::quoted;
use crate::say;

/// CAS attempts on a registry record.
const ATTEMPTS: u32 = 16;

/// The poll bookkeeping of this Envoy.
#[derive(Debug, Clone, Default, PartialEq)]
#[cfg_attr(test, derive(serde::Serialize, serde::Deserialize))]
pub struct PollRecord {
    /// No poll starts before this (Unix ms).
    pub next_due_ms: u64,
    /// Polls claimed so far.
    pub seq: u64,
    /// Polls in a row that failed or were refused.
    pub failures: u32,
    /// The last poll whose answer was accepted (Unix ms; 0: none).
    pub last_ok_ms: u64,
    /// Why the last poll failed (logged when it changes).
    pub last_error: String,
    /// MLflow models none of whose aliases resolved at the last good poll.
    pub unresolved: VecSet<String>,
}

/// The last good registry answer.
#[derive(Debug, Clone, Default, PartialEq)]
#[cfg_attr(test, derive(serde::Serialize, serde::Deserialize))]
pub struct Snapshot {
    /// 0: nothing published yet (the configured targets serve).
    pub generation: u64,
    pub models: Targets,
    pub published_ms: u64,
}

// Read by hand, accepting what serde's derive did.
text_struct!(PollRecord {
    next_due_ms,
    seq,
    failures,
    last_ok_ms,
    last_error,
    unresolved
});
text_struct!(Snapshot {
    generation,
    models,
    published_ms
});

// Written by hand, fields in declaration order as serde's derive wrote them.
impl ToJson for PollRecord {
    fn write_json(&self, out: &mut Vec<u8>) {
        ObjectWriter::new(out)
            .field("next_due_ms", &self.next_due_ms)
            .field("seq", &self.seq)
            .field("failures", &self.failures)
            .field("last_ok_ms", &self.last_ok_ms)
            .field("last_error", &self.last_error)
            .field("unresolved", &self.unresolved)
            .end();
    }
}

impl ToJson for Snapshot {
    fn write_json(&self, out: &mut Vec<u8>) {
        ObjectWriter::new(out)
            .field("generation", &self.generation)
            .field("models", &self.models)
            .field("published_ms", &self.published_ms)
            .end();
    }
}

/// Changes a record: `f` edits it and says whether to write. The value now stored.
fn update<T>(host: &dyn Host, key: &str, mut f: impl FnMut(&mut T) -> bool) -> Result<T, String>
where
    T: ToJson + FromText + Default + Clone,
{
    update_dyn(host, key, &mut f)
}

/// `update`'s body, one copy per record type (a generic edit would make one per change).
fn update_dyn<T>(host: &dyn Host, key: &str, f: &mut dyn Edit<T>) -> Result<T, String>
where
    T: ToJson + FromText + Default + Clone,
{
    cas_edit_with(
        &HostStore(host),
        key,
        ATTEMPTS,
        T::default(),
        |bytes| from_text(bytes).unwrap_or_default(),
        crate::json::write::to_vec,
        |v: &mut T| f.edit(v),
    )
    .map_err(|e| crate::quote::text(&e))
}

fn read<T: FromText + Default>(host: &dyn Host, key: &str) -> T {
    match host.shared_data(key) {
        Ok((Some(b), _)) => from_text(&b).unwrap_or_default(),
        _ => T::default(),
    }
}

/// Writes the initial value of a missing key (a missing key ignores CAS: seeded before use).
fn seed<T: ToJson + Default>(host: &dyn Host, key: &str) {
    if let Ok((None, _)) = host.shared_data(key) {
        let _ = host.set_shared_data(key, &crate::json::write::to_vec(&T::default()), None);
    }
}

/// FNV-1a 64 of the static configuration: the identity of the registry's records.
fn digest(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Shared-data key of a registry record.
pub fn key(plugin: &str, static_bytes: &[u8], what: &str) -> String {
    format!(
        "{}/registry/{:016x}/{what}",
        shared_prefix(plugin),
        digest(static_bytes)
    )
}

/// The registry's metrics (`inference_router.registry.*`).
struct Ids {
    polls: u32,
    failures: u32,
    refused: u32,
    updates: u32,
    applied: u32,
    generation: u32,
}

impl Ids {
    fn define(host: &dyn Host) -> Self {
        let d = |kind, name: &str| {
            host.define_metric(kind, &format!("{PREFIX}.registry.{name}"))
                .unwrap_or_else(|s| {
                    say::warn(
                        say::REGISTRY,
                        format_args!("metric {name} not defined: host status {s}"),
                    );
                    u32::MAX
                })
        };
        Ids {
            polls: d(MetricKind::Counter, "polls"),
            failures: d(MetricKind::Counter, "failures"),
            refused: d(MetricKind::Counter, "refused"),
            updates: d(MetricKind::Counter, "updates"),
            applied: d(MetricKind::Counter, "applied"),
            generation: d(MetricKind::Gauge, "generation"),
        }
    }
}

/// A callout of a poll: answer `index` of poll `seq`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub seq: u64,
    pub index: usize,
    pub path: String,
}

/// A poll this VM started and waits for.
struct InFlight {
    seq: u64,
    started_ms: u64,
    /// MLflow: each alias's answer as it comes (JSON: one slot, unused).
    resolved: Vec<Option<Option<mlflow::Version>>>,
}

enum Outcome {
    /// The registry could not be read.
    Failed(String),
    /// It answered something that does not validate.
    Refused(ConfigError),
    Got {
        targets: Targets,
        unresolved: Vec<String>,
    },
}

/// One VM's side of the registry: its poll in flight, the generation it routes with, and the
/// plugins it replaced that running streams still hold.
pub struct Poller {
    settings: RegistrySettings,
    static_bytes: Vec<u8>,
    poll_key: String,
    snapshot_key: String,
    /// The generation this VM routes with (0: the configured targets).
    applied: u64,
    /// CAS token of the snapshot last looked at.
    seen_cas: Option<u32>,
    inflight: Option<InFlight>,
    ids: Ids,
    retired: Vec<Rc<Plugin>>,
}

impl Poller {
    /// The poller of a plugin that has a registry (`None` otherwise); `static_bytes` is the
    /// configuration it was built from. Seeds the shared records.
    pub fn start(host: &dyn Host, static_bytes: &[u8], plugin: &Plugin) -> Option<Poller> {
        let settings = plugin.cfg.registry.clone()?;
        let poll_key = key(&plugin.name, static_bytes, "poll");
        let snapshot_key = key(&plugin.name, static_bytes, "snapshot");
        seed::<PollRecord>(host, &poll_key);
        seed::<Snapshot>(host, &snapshot_key);
        Some(Poller {
            settings,
            static_bytes: static_bytes.to_vec(),
            poll_key,
            snapshot_key,
            applied: 0,
            seen_cas: None,
            inflight: None,
            ids: Ids::define(host),
            retired: Vec::new(),
        })
    }

    pub fn settings(&self) -> &RegistrySettings {
        &self.settings
    }

    /// The generation this VM routes with (0: the configured targets).
    pub fn generation(&self) -> u64 {
        self.applied
    }

    /// This Envoy's poll bookkeeping (for the state endpoint and logs).
    pub fn record(&self, host: &dyn Host) -> PollRecord {
        read(host, &self.poll_key)
    }

    /// A plugin rebuilt from a newer snapshot than the one `current` routes with, carrying
    /// over `current`'s queues; `None` when there is none (or it does not compile: counted in
    /// `refused`, logged, the current plugin serves on).
    pub fn refresh(&mut self, host: &dyn Host, current: &Plugin) -> Option<Plugin> {
        let (bytes, cas) = host.shared_data(&self.snapshot_key).ok()?;
        if cas.is_some() && cas == self.seen_cas {
            return None;
        }
        self.seen_cas = cas;
        let snap: Snapshot = match from_text(&bytes?) {
            Ok(s) => s,
            Err(e) => {
                say::warn(
                    say::REGISTRY,
                    format_args!("the shared snapshot is undecodable ({e}); ignored"),
                );
                return None;
            }
        };
        if snap.generation == 0 || snap.generation == self.applied {
            return None;
        }
        let rebuilt = merged(&self.static_bytes, &snap.models)
            .map_err(|e| e.to_string())
            .and_then(|b| Plugin::configure(host, current.name.clone(), &b));
        match rebuilt {
            Ok(next) => {
                carry_over(current, &next);
                next.warm.set(current.warm.get());
                say::info(
                    say::REGISTRY,
                    format_args!(
                        "generation {} applied (was {}): {}",
                        snap.generation,
                        self.applied,
                        changes(current, &next)
                    ),
                );
                self.applied = snap.generation;
                host.bump(self.ids.applied);
                let _ = host.record_metric(self.ids.generation, snap.generation);
                Some(next)
            }
            Err(e) => {
                host.bump(self.ids.refused);
                say::warn(
                    say::REGISTRY,
                    format_args!("generation {} cannot be applied here: {e}", snap.generation),
                );
                None
            }
        }
    }

    /// The callouts of a poll when one is due and this VM claims it.
    pub fn due(
        &mut self,
        host: &dyn Host,
        current: &Plugin,
        now_ms: u64,
    ) -> (Vec<Request>, Option<Plugin>) {
        if let Some(f) = &self.inflight {
            let limit = u64::from(self.settings.poll_ms)
                .saturating_add(u64::from(self.settings.timeout_ms));
            if now_ms.saturating_sub(f.started_ms) <= limit {
                return (Vec::new(), None);
            }
            self.inflight = None;
            let next = self.finish(
                host,
                current,
                Outcome::Failed("no answer in time".into()),
                now_ms,
            );
            return (Vec::new(), next);
        }
        let poll_ms = u64::from(self.settings.poll_ms);
        let mut claimed = None;
        let _ = update::<PollRecord>(host, &self.poll_key, |r| {
            claimed = None;
            if now_ms < r.next_due_ms {
                return false;
            }
            r.next_due_ms = now_ms.saturating_add(poll_ms);
            r.seq = r.seq.saturating_add(1);
            claimed = Some(r.seq);
            true
        });
        let Some(seq) = claimed else {
            return (Vec::new(), None);
        };
        let requests: Vec<Request> = match &self.settings.source {
            Source::Json { path } => vec![Request {
                seq,
                index: 0,
                path: path.clone(),
            }],
            Source::Mlflow { prefix, models } => mlflow::lookups(prefix, models)
                .into_iter()
                .enumerate()
                .map(|(index, l)| Request {
                    seq,
                    index,
                    path: l.path,
                })
                .collect(),
        };
        self.inflight = Some(InFlight {
            seq,
            started_ms: now_ms,
            resolved: vec![None; requests.len()],
        });
        (requests, None)
    }

    /// The host refused to start a callout of poll `seq`: the poll fails.
    pub fn not_sent(
        &mut self,
        host: &dyn Host,
        current: &Plugin,
        seq: u64,
        why: String,
        now_ms: u64,
    ) {
        if self.inflight.as_ref().is_some_and(|f| f.seq == seq) {
            self.inflight = None;
            let _ = self.finish(host, current, Outcome::Failed(why), now_ms);
        }
    }

    /// The largest answer read for this source.
    pub fn max_answer_bytes(&self) -> usize {
        match self.settings.source {
            Source::Json { .. } => json::MAX_DOCUMENT_BYTES,
            Source::Mlflow { .. } => mlflow::MAX_ANSWER_BYTES,
        }
    }

    /// Answer `index` of poll `seq` (`Err`: it was not read, why). A rebuilt plugin when this
    /// poll published a new generation.
    pub fn answered(
        &mut self,
        host: &dyn Host,
        current: &Plugin,
        seq: u64,
        index: usize,
        answer: Result<Answer, String>,
        now_ms: u64,
    ) -> Option<Plugin> {
        let f = self.inflight.as_mut().filter(|f| f.seq == seq)?;
        let outcome = match &self.settings.source {
            Source::Json { .. } => match answer {
                Err(why) => Outcome::Failed(why),
                Ok(a) => match classify(a.status.as_deref(), &a.body) {
                    CalloutAnswer::Status(200) => match json::parse(&a.body) {
                        Ok(targets) => Outcome::Got {
                            targets,
                            unresolved: Vec::new(),
                        },
                        Err(e) => Outcome::Refused(e),
                    },
                    CalloutAnswer::Status(s) => {
                        Outcome::Failed(format!("the registry answered {s}"))
                    }
                    CalloutAnswer::Failed(why) => {
                        Outcome::Failed(format!("the registry did not answer: {why}"))
                    }
                },
            },
            Source::Mlflow { models, .. } => match answer.and_then(|a| mlflow::read_answer(&a)) {
                Err(why) => Outcome::Failed(why),
                Ok(v) => {
                    if let Some(slot) = f.resolved.get_mut(index) {
                        *slot = Some(v);
                    }
                    if f.resolved.iter().any(Option::is_none) {
                        return None;
                    }
                    let resolved: Vec<Option<mlflow::Version>> =
                        f.resolved.iter().map(|s| s.clone().flatten()).collect();
                    match mlflow::targets(models, &resolved) {
                        Ok((targets, unresolved)) => Outcome::Got {
                            targets,
                            unresolved,
                        },
                        Err(e) => Outcome::Refused(e),
                    }
                }
            },
        };
        self.inflight = None;
        self.finish(host, current, outcome, now_ms)
    }

    /// Counts and records a finished poll; publishes a good answer that changes something.
    fn finish(
        &mut self,
        host: &dyn Host,
        current: &Plugin,
        outcome: Outcome,
        now_ms: u64,
    ) -> Option<Plugin> {
        host.bump(self.ids.polls);
        let (targets, unresolved) = match outcome {
            Outcome::Failed(why) => {
                host.bump(self.ids.failures);
                self.failed(host, why);
                return None;
            }
            Outcome::Refused(e) => {
                host.bump(self.ids.failures);
                host.bump(self.ids.refused);
                self.failed(host, format!("its answer was refused: {e}"));
                return None;
            }
            Outcome::Got {
                targets,
                unresolved,
            } => (targets, unresolved),
        };
        if let Err(e) = merged(&self.static_bytes, &targets) {
            host.bump(self.ids.failures);
            host.bump(self.ids.refused);
            self.failed(host, format!("the merged configuration was refused: {e}"));
            return None;
        }
        let unresolved: VecSet<String> = unresolved.into_iter().collect();
        let mut before = PollRecord::default();
        let stored = update::<PollRecord>(host, &self.poll_key, |r| {
            before = r.clone();
            r.failures = 0;
            r.last_ok_ms = now_ms;
            r.last_error.clear();
            r.unresolved = unresolved.clone();
            true
        });
        if let Err(e) = stored {
            say::warn(say::REGISTRY, format_args!("poll record not updated: {e}"));
        }
        if before.failures > 0 {
            say::info(
                say::REGISTRY,
                format_args!("answers again after {} failed poll(s)", before.failures),
            );
        }
        for m in unresolved.difference(&before.unresolved) {
            say::warn(
                say::REGISTRY,
                format_args!(
                    "no alias of model {} resolves in MLflow; it keeps its configured targets",
                    quoted(m)
                ),
            );
        }
        let mut generation = None;
        let published = update::<Snapshot>(host, &self.snapshot_key, |s| {
            generation = None;
            if s.generation > 0 && s.models == targets {
                return false;
            }
            s.generation = s.generation.saturating_add(1);
            s.models = targets.clone();
            s.published_ms = now_ms;
            generation = Some(s.generation);
            true
        });
        match (published, generation) {
            (Ok(_), Some(g)) => {
                host.bump(self.ids.updates);
                say::info(say::REGISTRY, format_args!("generation {g} published"));
            }
            (Ok(_), None) => {}
            (Err(e), _) => say::warn(say::REGISTRY, format_args!("snapshot not published: {e}")),
        }
        self.refresh(host, current)
    }

    /// Records a failed poll; logs it when a failure streak starts or its reason changes.
    fn failed(&self, host: &dyn Host, why: String) {
        let mut before = PollRecord::default();
        let _ = update::<PollRecord>(host, &self.poll_key, |r| {
            before = r.clone();
            r.failures = r.failures.saturating_add(1);
            r.last_error = why.clone();
            true
        });
        if before.failures == 0 || before.last_error != why {
            let serving = match self.applied {
                0 => "the configured targets".to_string(),
                g => format!("registry generation {g}"),
            };
            say::warn(
                say::REGISTRY,
                format_args!(
                    "poll of cluster {} failed: {why}; routing stays on {serving}",
                    quoted(&self.settings.cluster)
                ),
            );
        }
    }

    /// Keeps a replaced plugin until the streams holding it end, so what they queue (evaluator
    /// jobs, shadow copies, forwarded rewards) is still sent.
    pub fn retire(&mut self, old: Rc<Plugin>) {
        self.retired.push(old);
    }

    /// Moves what replaced plugins queued into `current`; forgets those no stream holds.
    pub fn drain_retired(&mut self, current: &Plugin) {
        for old in &self.retired {
            carry_over(old, current);
        }
        self.retired.retain(|p| Rc::strong_count(p) > 1);
    }
}

/// Moves `from`'s queued evaluator jobs and mirror jobs into `to` (model order is kept by the
/// merge, so their model indices stay valid).
fn carry_over(from: &Plugin, to: &Plugin) {
    // Job by job with the queues' own push and pop: `extend(drain(..))` is 3 KB of code more.
    if let (Ok(mut a), Ok(mut b)) = (from.outbox.try_borrow_mut(), to.outbox.try_borrow_mut()) {
        while let Some(job) = a.pop_front() {
            b.push_back(job);
        }
    }
    if let (Ok(mut a), Ok(mut b)) = (from.mirror.try_borrow_mut(), to.mirror.try_borrow_mut()) {
        while let Some(job) = a.pop_front() {
            b.push_back(job);
        }
    }
}

/// What changed between two plugins' targets, for the log: `model: name→cluster(weight), …`.
fn changes(old: &Plugin, new: &Plugin) -> String {
    let describe = |m: &crate::config::Model| {
        let targets: Vec<String> = (m.targets.iter())
            .map(|t| format!("{}→{}({})", t.name, t.cluster, t.weight))
            .collect();
        crate::quote::join(&targets, ", ")
    };
    let mut out = Vec::new();
    for m in &new.cfg.models {
        let now = describe(m);
        match old.cfg.models.iter().find(|o| o.name == m.name) {
            Some(o) if describe(o) == now => {}
            Some(o) => out.push(format!("{}: {now} (was {})", m.name, describe(o))),
            None => out.push(format!("{}: {now} (new model)", m.name)),
        }
    }
    if out.is_empty() {
        "no target changed".into()
    } else {
        crate::quote::join(&out, "; ")
    }
}
