//! The root context's sync rounds. At most one round per `sync_ms` per Envoy (the VMs race for
//! it on the shared `sync` record; one wins): publish this replica's contribution (skipped
//! while unchanged, but at least every quarter of `retire_after`), read `learned/` and merge
//! the others' contributions into the view routing uses, and now and then a lease for spent
//! ids, a retirement, or the resolution of feedback in doubt. About one read and one write
//! per `sync_ms`.
//!
//! A publish is a transaction that only writes while this replica's key is what it believes:
//! created by it (`Exists`), or absent before its first write (`Absent`). When that fails:
//! - the key is gone: another replica retired this one (it was cut off for `retire_after`) and
//!   folded its last contribution into the retired document; this replica takes the folded
//!   snapshot away from its own statistics (the retired document counts it now) and creates
//!   its key again;
//! - the key exists with another incarnation: a previous life of this replica id (explicit
//!   `replica`), whose statistics are adopted once it has stopped writing; or a live duplicate,
//!   which stops this replica from publishing (`fleet.replica_conflicts`).

use crate::vecmap::VecMap;

use super::doc::{Contribution, Learned, Retired, TargetHealth, DOC_VERSION};
use super::etcd::{self, Compare, Kv, Op};
use super::keys::Keys;
use super::local::{self, Published, Snapshot, SyncRecord};
use super::merge::{correct_own, fleet_health, fleet_part, identity, own_health, own_learned};
use super::{outcome, Outcome};
use crate::bandit::{decode, update_state, ModelState, StateExt, Strategy};
use crate::callout::Answer;
use crate::config::{FleetSettings, Model};
use crate::host::{Host, HostStore};
use crate::json::ToJson;
use crate::learning::{health, spent, MAX_CAS_ATTEMPTS};
use crate::plugin::Plugin;
use crate::quote::quoted;
use crate::say;

/// Extra life of a spent-id lease beyond the end of its expiry bucket.
pub const LEASE_MARGIN_S: u64 = 60;
/// Feedback in doubt re-examined per round.
const RESOLVE_PER_ROUND: usize = 8;

/// What a fleet callout of the root context continues.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    Auth,
    Publish { seq: u64, digest: u64 },
    Read,
    Fold { replica: String },
    Lease { bucket: u64 },
    Resolve { nonce: u64 },
}

/// A request for etcd and what its answer continues.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing<C> {
    pub request: etcd::Request,
    pub call: C,
}

/// This replica's id: the configured one, or the node id and this Envoy's incarnation.
pub fn replica_id(plugin: &Plugin, fleet: &FleetSettings, incarnation: &str) -> String {
    match &fleet.replica {
        Some(r) => r.clone(),
        None => format!("{}~{incarnation}", plugin.node),
    }
}

fn keys(plugin: &Plugin, fleet: &FleetSettings) -> Keys {
    Keys::new(&fleet.prefix, &plugin.name)
}

/// Claims a round when one is due: `Some(seq)` for the VM that won it.
fn claim(host: &dyn Host, plugin: &Plugin, fleet: &FleetSettings, now_ms: u64) -> Option<u64> {
    let mut claimed = None;
    let result = local::sync(&plugin.name).update(host, |r| {
        claimed = None;
        if now_ms < r.next_due_ms {
            return false;
        }
        r.next_due_ms = now_ms.saturating_add(u64::from(fleet.sync_ms));
        r.seq = r.seq.saturating_add(1);
        claimed = Some(r.seq);
        true
    });
    result.ok().and(claimed)
}

/// A round, when one is due and this VM wins it: the requests to send.
pub fn tick(host: &dyn Host, plugin: &Plugin, now_ms: u64) -> Vec<Outgoing<Call>> {
    let Some(fleet) = &plugin.cfg.fleet else {
        return Vec::new();
    };
    let Some(seq) = claim(host, plugin, fleet, now_ms) else {
        return Vec::new();
    };
    if let Some(request) = login(fleet) {
        if local::token(&plugin.name).read(host).is_empty() {
            return vec![Outgoing {
                request,
                call: Call::Auth,
            }];
        }
    }
    let record = local::sync(&plugin.name).read(host);
    let mut out = Vec::with_capacity(4);
    // Pushed rather than `extend`ed from an `Option`: one less copy of `extend`'s code.
    if let Some(publish) = publish(host, plugin, fleet, &record, seq, now_ms) {
        out.push(publish);
    }
    out.push(read(plugin, fleet));
    if let Some(lease) = lease_due(host, plugin, now_ms) {
        out.push(lease);
    }
    out.extend(super::spend::resolutions(
        host,
        plugin,
        fleet,
        RESOLVE_PER_ROUND,
    ));
    out
}

/// Gives a claimed round back (its requests could not be started): the next tick may run it.
pub fn release_round(host: &dyn Host, plugin: &Plugin) {
    local::sync(&plugin.name).set(host, |r| {
        r.next_due_ms = 0;
    });
}

/// The read of everything learned (a sync's, or a request's that waits for the first view).
pub fn read_request(plugin: &Plugin, fleet: &FleetSettings) -> etcd::Request {
    etcd::range_prefix(&keys(plugin, fleet).learned())
}

fn read(plugin: &Plugin, fleet: &FleetSettings) -> Outgoing<Call> {
    Outgoing {
        request: read_request(plugin, fleet),
        call: Call::Read,
    }
}

/// A model's learned state as stored (reconciled with the configuration; fresh when missing
/// or undecodable).
fn stored_state(host: &dyn Host, key: &str, strategy: &Strategy, names: &[&str]) -> ModelState {
    let decoded = host
        .shared_data(key)
        .ok()
        .and_then(|(bytes, _)| bytes)
        .and_then(|b| decode(&b).ok());
    match decoded {
        Some(state) => strategy.reconcile(state, names).0,
        None => strategy.initial_state(names),
    }
}

/// Bandit models with their state key, strategy and identity.
fn learning_models(plugin: &Plugin) -> impl Iterator<Item = (&Model, &str, &Strategy)> {
    plugin
        .cfg
        .models
        .iter()
        .zip(&plugin.state_keys)
        .filter_map(|(m, key)| Some((m, key.as_deref()?, m.bandit()?)))
}

/// Models whose target health is tracked, with the health key.
fn health_models(plugin: &Plugin) -> impl Iterator<Item = (&Model, &str)> {
    plugin
        .cfg
        .models
        .iter()
        .zip(&plugin.health_keys)
        .filter_map(|(m, key)| Some((m, key.as_deref()?)))
}

type OwnHealth = VecMap<String, VecMap<String, TargetHealth>>;

/// What this replica publishes now: its own statistics per model, and its health.
fn own_parts(host: &dyn Host, plugin: &Plugin) -> (VecMap<String, Learned>, OwnHealth) {
    let mut models = VecMap::new();
    for (m, key, strategy) in learning_models(plugin) {
        let names = m.target_names();
        let state = stored_state(host, key, strategy, &names);
        models.insert(
            m.name.clone(),
            own_learned(strategy, &state, &identity(strategy)),
        );
    }
    let mut healths = VecMap::new();
    for (m, key) in health_models(plugin) {
        let n = m.targets.len();
        let h = match host.shared_data(key) {
            Ok((Some(b), _)) => health::Health::decode(&b, n),
            _ => health::Health::new(n),
        };
        healths.insert(m.name.clone(), own_health(&h, &m.target_names()));
    }
    (models, healths)
}

/// FNV-1a 64 of what a contribution says (not when or by which round).
fn digest(models: &VecMap<String, Learned>, health: &OwnHealth) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut bytes = crate::json::write::to_vec(models);
    health.write_json(&mut bytes);
    for b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// The publish of this round, unless nothing changed since the last one etcd took (and that
/// one is recent enough to keep this replica alive), or another writer holds the key.
fn publish(
    host: &dyn Host,
    plugin: &Plugin,
    fleet: &FleetSettings,
    record: &SyncRecord,
    seq: u64,
    now_ms: u64,
) -> Option<Outgoing<Call>> {
    if record.conflict {
        return None;
    }
    let incarnation = local::current_incarnation(host, &plugin.name)?;
    let (models, health) = own_parts(host, plugin);
    let digest = digest(&models, &health);
    let heartbeat = heartbeat_ms(fleet);
    if record.created
        && digest == record.published_digest
        && now_ms.saturating_sub(record.published_ms) < heartbeat
    {
        return None;
    }
    let snapshot = Snapshot {
        seq,
        models: models.clone(),
    };
    local::published(&plugin.name).set(host, |p| {
        p.attempted = Some(snapshot.clone());
    });
    let replica = replica_id(plugin, fleet, &incarnation);
    let doc = Contribution {
        v: DOC_VERSION,
        replica: replica.clone(),
        incarnation,
        seq,
        written_ms: now_ms,
        models: models.into_iter().map(|(m, l)| (m, vec![l])).collect(),
        health,
    };
    let k = keys(plugin, fleet);
    let (key, retired) = (k.replica(&replica), k.retired());
    let compare = if record.created {
        Compare::Exists(&key)
    } else {
        Compare::Absent(&key)
    };
    let value = doc.encode();
    let put = Op::Put {
        key: &key,
        value: &value,
        lease: None,
    };
    Some(Outgoing {
        request: etcd::txn(&[compare], &[put], &[Op::Get(&key), Op::Get(&retired)]),
        call: Call::Publish { seq, digest },
    })
}

/// An unchanged contribution is written again this often, so readers can tell a live replica
/// (retirement, a previous life of a replica id) from one that went away.
pub fn heartbeat_ms(fleet: &FleetSettings) -> u64 {
    (fleet.retire_after_ms / 4).min(u64::from(fleet.sync_ms).saturating_mul(10))
}

/// A spent-id lease for the expiry bucket of tokens issued now, when there is none yet.
fn lease_due(host: &dyn Host, plugin: &Plugin, now_ms: u64) -> Option<Outgoing<Call>> {
    let ttl = plugin.cfg.feedback.as_ref()?.ttl_seconds;
    let now_s = now_ms / 1000;
    let bucket = spent::bucket_of(now_s.saturating_add(ttl));
    if local::leases(&plugin.name)
        .read(host)
        .iter()
        .any(|(b, _)| *b == bucket)
    {
        return None;
    }
    Some(Outgoing {
        request: etcd::lease_grant(lease_ttl(bucket, now_s)),
        call: Call::Lease { bucket },
    })
}

/// A lease for `bucket` lives until every token of the bucket has expired, and a margin.
pub fn lease_ttl(bucket: u64, now_s: u64) -> u64 {
    bucket
        .saturating_add(1)
        .saturating_mul(spent::BUCKET_SECONDS)
        .saturating_sub(now_s)
        .saturating_add(LEASE_MARGIN_S)
}

/// Records a lease granted for `bucket` (and forgets leases whose tokens have all expired).
pub fn keep_lease(host: &dyn Host, plugin: &Plugin, bucket: u64, lease: i64, now_ms: u64) {
    if plugin.cfg.feedback.is_none() {
        return;
    }
    let now_s = now_ms / 1000;
    local::leases(&plugin.name).set(host, |leases| {
        leases.retain(|(b, _)| lease_ttl(*b, now_s) > LEASE_MARGIN_S);
        leases.retain(|(b, _)| *b != bucket);
        leases.push((bucket, lease));
    });
}

/// An answer of the root context's fleet callouts; follow-up requests, if any.
pub fn answered(
    host: &dyn Host,
    plugin: &Plugin,
    call: Call,
    answer: &Answer,
    now_ms: u64,
) -> Vec<Outgoing<Call>> {
    settled(host, plugin, call, outcome(answer), &answer.body, now_ms)
}

/// A fleet callout that could not even be started: as if etcd were unreachable.
pub fn not_sent(host: &dyn Host, plugin: &Plugin, call: Call, now_ms: u64) {
    settled(host, plugin, call, Outcome::NotSent, &[], now_ms);
}

fn settled(
    host: &dyn Host,
    plugin: &Plugin,
    call: Call,
    result: Outcome,
    body: &[u8],
    now_ms: u64,
) -> Vec<Outgoing<Call>> {
    let Some(fleet) = &plugin.cfg.fleet else {
        return Vec::new();
    };
    if matches!(result, Outcome::Unauthenticated) {
        forget_token(host, plugin);
    }
    match call {
        Call::Auth => authenticated(host, plugin, &result, body, now_ms),
        Call::Publish { seq, digest } => {
            published(host, plugin, fleet, &result, body, (seq, digest), now_ms)
        }
        Call::Read => match (&result, etcd::parse_range(body)) {
            (Outcome::Answered, Ok(range)) => {
                let fold = merge_read(host, plugin, fleet, &range.kvs, now_ms, true);
                return fold.map_or_else(Vec::new, |f| vec![f]);
            }
            (_, parsed) => {
                let why = match (&result, parsed) {
                    (Outcome::Answered, Err(e)) => format!("{e:?}"),
                    (other, _) => format!("{other:?}"),
                };
                read_failed(host, plugin, &why);
            }
        },
        Call::Fold { replica } => folded(host, plugin, &result, body, &replica),
        Call::Lease { bucket } => match (&result, etcd::parse_lease(body)) {
            (Outcome::Answered, Ok(id)) => keep_lease(host, plugin, bucket, id, now_ms),
            (other, _) => say::warn(
                say::FLEET,
                format_args!("spent-id lease not granted: {other:?}"),
            ),
        },
        Call::Resolve { nonce } => {
            super::spend::resolved(host, plugin, nonce, &result, body, now_ms)
        }
    }
    Vec::new()
}

/// etcd said the token is no longer valid: the next request logs in again.
pub fn forget_token(host: &dyn Host, plugin: &Plugin) {
    let _ = local::token(&plugin.name).update(host, |t| {
        let had = !t.is_empty();
        t.clear();
        had
    });
}

fn authenticated(host: &dyn Host, plugin: &Plugin, result: &Outcome, body: &[u8], now_ms: u64) {
    let ok = logged_in(host, plugin, result, body, now_ms);
    // The round this login took the place of runs at the next tick (after a refusal: after
    // the login backoff).
    local::sync(&plugin.name).set(host, |r| {
        r.next_due_ms = if ok { 0 } else { r.login_after_ms };
    });
}

/// The answer to a login: keeps the token for every request of this Envoy; `false` (counted,
/// logged) when there is none. A refused login holds the next one back (`LOGIN_BACKOFF_MS`).
pub fn logged_in(
    host: &dyn Host,
    plugin: &Plugin,
    result: &Outcome,
    body: &[u8],
    now_ms: u64,
) -> bool {
    match (result, etcd::parse_token(body)) {
        (Outcome::Answered, Ok(token)) => {
            say::info(say::FLEET, format_args!("logged in to etcd"));
            local::token(&plugin.name).set(host, |t| {
                *t = token.clone();
            });
            true
        }
        (other, _) => {
            bump(host, plugin, |f| f.sync_failures);
            say::warn(say::FLEET, format_args!("etcd login failed: {other:?}"));
            if matches!(other, Outcome::Refused(_)) {
                local::sync(&plugin.name).set(host, |r| {
                    r.login_after_ms = now_ms.saturating_add(super::LOGIN_BACKOFF_MS);
                });
            }
            false
        }
    }
}

/// Whether a login may be tried now (none was refused in the last `LOGIN_BACKOFF_MS`).
pub fn may_log_in(host: &dyn Host, plugin: &Plugin, now_ms: u64) -> bool {
    local::sync(&plugin.name).read(host).login_after_ms <= now_ms
}

/// The login request, when the fleet logs in to etcd.
pub fn login(fleet: &FleetSettings) -> Option<etcd::Request> {
    let auth = fleet.auth.as_ref()?;
    Some(etcd::authenticate(&auth.username, &auth.password))
}

fn bump(host: &dyn Host, plugin: &Plugin, pick: impl Fn(&crate::telemetry::FleetIds) -> u32) {
    if let Some(ids) = &plugin.metrics.fleet {
        host.bump(pick(ids));
    }
}

/// The answer to a publish of round `seq` that carried `digest`.
fn published(
    host: &dyn Host,
    plugin: &Plugin,
    fleet: &FleetSettings,
    result: &Outcome,
    body: &[u8],
    (seq, digest): (u64, u64),
    now_ms: u64,
) {
    let txn = match (result, etcd::parse_txn(body)) {
        (Outcome::Answered, Ok(txn)) => txn,
        (other, _) => {
            bump(host, plugin, |f| f.publish_failures);
            say::warn(say::FLEET, format_args!("publish failed: {other:?}"));
            return;
        }
    };
    if txn.succeeded {
        bump(host, plugin, |f| f.publish_success);
        local::sync(&plugin.name).set(host, |r| {
            r.created = true;
            r.published_ms = now_ms;
            r.published_digest = digest;
        });
        local::published(&plugin.name).set(host, |p| {
            if p.attempted.as_ref().is_some_and(|a| a.seq == seq) {
                p.confirmed = p.attempted.clone();
            }
        });
        return;
    }
    let own = txn.ranges.first().and_then(|kvs| kvs.first());
    let retired = txn.ranges.get(1).and_then(|kvs| kvs.first());
    match own {
        None => rebase(host, plugin, retired, now_ms),
        Some(kv) => foreign_key(host, plugin, fleet, kv, now_ms),
    }
}

/// This replica's key is gone: take away what the retired document holds of it, and create
/// the key again at the next round.
fn rebase(host: &dyn Host, plugin: &Plugin, retired: Option<&Kv>, now_ms: u64) {
    let Some(incarnation) = local::current_incarnation(host, &plugin.name) else {
        return;
    };
    let folded = retired
        .and_then(|kv| Retired::decode(&kv.value).ok())
        .and_then(|r| r.folded_seq(&incarnation));
    let published = local::published(&plugin.name).read(host);
    let snapshot = folded.and_then(|seq| published.by_seq(seq).or(published.confirmed.as_ref()));
    match (folded, snapshot) {
        (Some(seq), Some(s)) => {
            if s.seq != seq {
                say::warn(say::FLEET, format_args!("this replica's contribution {seq} was retired; taking away {} (the last one known)", s.seq));
            }
            correct_all(host, plugin, &s.models, -1.0, now_ms);
            bump(host, plugin, |f| f.rebased);
            say::warn(say::FLEET, format_args!("this replica was retired while cut off; its folded statistics now count in the retired document"));
        }
        _ => say::warn(say::FLEET, format_args!("this replica's key is gone (not retired by a replica); publishing everything again")),
    }
    local::sync(&plugin.name).set(host, |r| {
        r.created = false;
        r.published_digest = 0;
    });
    local::published(&plugin.name).set(host, |p| {
        *p = Published::default();
    });
}

/// Adds (`sign` 1) or takes away (-1) statistics of this replica's own, model by model.
fn correct_all(
    host: &dyn Host,
    plugin: &Plugin,
    models: &VecMap<String, Learned>,
    sign: f64,
    now_ms: u64,
) {
    let store = HostStore(host);
    for (m, key, strategy) in learning_models(plugin) {
        let id = identity(strategy);
        let Some(learned) = models.get(&m.name).filter(|l| l.id == id) else {
            continue;
        };
        let names = m.target_names();
        let initial = strategy.initial_state(&names);
        let result = update_state(&store, key, MAX_CAS_ATTEMPTS, &initial, |state| {
            let (mut state, _) = strategy.reconcile(state, &names);
            correct_own(strategy, &mut state, learned, sign, now_ms);
            Ok::<_, String>(state)
        });
        if let Err(e) = result {
            say::warn(
                say::FLEET,
                format_args!(
                    "correcting the statistics of {} failed: {e}",
                    quoted(&m.name)
                ),
            );
        }
    }
}

/// The key exists but this replica did not create it (this life): an earlier create whose
/// answer was lost, a previous life of this replica id, or a live duplicate.
fn foreign_key(host: &dyn Host, plugin: &Plugin, fleet: &FleetSettings, kv: &Kv, now_ms: u64) {
    let Some(incarnation) = local::current_incarnation(host, &plugin.name) else {
        return;
    };
    let doc = match Contribution::decode(&kv.value) {
        Ok(doc) => doc,
        Err(why) => {
            say::warn(
                say::FLEET,
                format_args!("this replica's key holds something unusable ({why}); it is replaced"),
            );
            local::sync(&plugin.name).set(host, |r| {
                r.created = true;
            });
            return;
        }
    };
    if doc.incarnation == incarnation {
        local::sync(&plugin.name).set(host, |r| {
            r.created = true;
        });
        return;
    }
    // A previous life stopped writing; a live duplicate writes at least every heartbeat.
    let quiet_for = now_ms.saturating_sub(doc.written_ms);
    let live = heartbeat_ms(fleet) + 2 * u64::from(fleet.sync_ms) + u64::from(fleet.timeout_ms);
    if quiet_for < live {
        bump(host, plugin, |f| f.conflicts);
        say::error(say::FLEET, format_args!(
            "replica id {} is written by another live Envoy (incarnation {}); this one stops publishing until it goes",
            quoted(&doc.replica),
            doc.incarnation
        ));
        local::sync(&plugin.name).set(host, |r| {
            r.conflict = true;
        });
        return;
    }
    let models: VecMap<String, Learned> = doc
        .models
        .iter()
        .filter_map(|(m, entries)| Some((m.clone(), entries.first()?.clone())))
        .collect();
    correct_all(host, plugin, &models, 1.0, now_ms);
    say::info(
        say::FLEET,
        format_args!(
            "resuming replica {} from its previous life's contribution (seq {})",
            quoted(&doc.replica),
            doc.seq
        ),
    );
    local::sync(&plugin.name).set(host, |r| {
        r.created = true;
        r.published_digest = 0;
    });
}

/// A read of the fleet that failed: counted, and the first view is given up on (requests stop
/// waiting for it).
pub fn read_failed(host: &dyn Host, plugin: &Plugin, why: &str) {
    bump(host, plugin, |f| f.sync_failures);
    let record = local::sync(&plugin.name).update(host, |r| {
        r.failures = r.failures.saturating_add(1);
        r.warm_done = true;
        true
    });
    // Once per outage, not once per round.
    if record.map_or(true, |r| r.failures == 1) {
        say::warn(
            say::FLEET,
            format_args!("sync read failed ({why}); routing goes on from the last merged view"),
        );
    }
}

/// Merges a read of `learned/` into this Envoy's state: every bandit model's fleet part and
/// every tracked model's fleet health. Returns the retirement of one departed replica when
/// `may_fold` (the root context's rounds; a request's warm-up read only merges).
pub fn merge_read(
    host: &dyn Host,
    plugin: &Plugin,
    fleet: &FleetSettings,
    kvs: &[Kv],
    now_ms: u64,
    may_fold: bool,
) -> Option<Outgoing<Call>> {
    let incarnation = local::current_incarnation(host, &plugin.name).unwrap_or_default();
    let me = replica_id(plugin, fleet, &incarnation);
    let k = keys(plugin, fleet);
    let mut others: Vec<(&Kv, Contribution)> = Vec::new();
    let mut retired: Option<(&Kv, Retired)> = None;
    let mut mine_is_mine = true;
    for kv in kvs {
        if k.is_retired(&kv.key) {
            match Retired::decode(&kv.value) {
                Ok(r) => retired = Some((kv, r)),
                Err(why) => invalid(host, plugin, "the retired document", &why),
            }
            continue;
        }
        let Some(replica) = k.replica_of(&kv.key) else {
            continue;
        };
        match Contribution::decode(&kv.value) {
            Ok(c) if replica == me => mine_is_mine = c.incarnation == incarnation,
            Ok(c) => others.push((kv, c)),
            Err(why) => invalid(host, plugin, replica, &why),
        }
    }
    let docs: Vec<&Contribution> = others.iter().map(|(_, c)| c).collect();
    merge_models(
        host,
        plugin,
        &docs,
        retired.as_ref().map(|(_, r)| r),
        now_ms,
    );
    merge_health(host, plugin, &docs, now_ms);
    let replicas = u32::try_from(docs.len())
        .unwrap_or(u32::MAX)
        .saturating_add(1);
    local::sync(&plugin.name).set(host, |r| {
        if r.failures > 0 {
            say::info(
                say::FLEET,
                format_args!("sync works again after {} failed rounds", r.failures),
            );
        }
        r.last_ok_ms = now_ms;
        r.warm_done = true;
        r.failures = 0;
        r.replicas = replicas;
        if mine_is_mine {
            r.conflict = false;
        }
    });
    bump(host, plugin, |f| f.sync_success);
    if let Some(ids) = &plugin.metrics.fleet {
        let _ = host.record_metric(ids.replicas, u64::from(replicas));
    }
    if !may_fold {
        return None;
    }
    retire(plugin, fleet, &others, retired.as_ref(), now_ms)
}

fn invalid(host: &dyn Host, plugin: &Plugin, whose: &str, why: &str) {
    bump(host, plugin, |f| f.invalid);
    say::warn(
        say::FLEET,
        format_args!("ignoring {}: {why}", quoted(whose)),
    );
}

fn merge_models(
    host: &dyn Host,
    plugin: &Plugin,
    docs: &[&Contribution],
    retired: Option<&Retired>,
    now_ms: u64,
) {
    let store = HostStore(host);
    for (m, key, strategy) in learning_models(plugin) {
        let id = identity(strategy);
        let mut entries: Vec<&Learned> = docs
            .iter()
            .filter_map(|d| d.learned(&m.name, &id))
            .collect();
        let replicas = u32::try_from(entries.len()).unwrap_or(u32::MAX);
        entries.extend(retired.and_then(|r| r.learned(&m.name, &id)));
        let names = m.target_names();
        let part = fleet_part(&entries, replicas, &names, now_ms);
        let initial = strategy.initial_state(&names);
        let result = update_state(&store, key, MAX_CAS_ATTEMPTS, &initial, |state| {
            let (mut state, _) = strategy.reconcile(state, &names);
            let ext = state.ext.get_or_insert(StateExt {
                as_of_ms: 0,
                fleet: None,
                linear: None,
            });
            ext.fleet = Some(part.clone());
            Ok::<_, String>(state)
        });
        if let Err(e) = result {
            say::warn(
                say::FLEET,
                format_args!(
                    "merging the fleet's statistics of {} failed: {e}",
                    quoted(&m.name)
                ),
            );
        }
    }
}

fn merge_health(host: &dyn Host, plugin: &Plugin, docs: &[&Contribution], now_ms: u64) {
    for (m, key) in health_models(plugin) {
        let fleet = fleet_health(docs, &m.name, &m.target_names(), now_ms);
        if let Err(e) = health::set_fleet(&HostStore(host), key, m.targets.len(), fleet) {
            say::warn(
                say::FLEET,
                format_args!(
                    "merging the fleet's health of {} failed: {e}",
                    quoted(&m.name)
                ),
            );
        }
    }
}

/// The retirement of the replica quiet the longest, if one has been quiet for `retire_after`:
/// one transaction deletes its key and adds its contribution to the retired document, only if
/// neither changed since this read (so a replica is folded once, and one that comes back in
/// time is not).
fn retire(
    plugin: &Plugin,
    fleet: &FleetSettings,
    others: &[(&Kv, Contribution)],
    retired: Option<&(&Kv, Retired)>,
    now_ms: u64,
) -> Option<Outgoing<Call>> {
    let (kv, doc) = others
        .iter()
        .filter(|(_, c)| now_ms.saturating_sub(c.written_ms) > fleet.retire_after_ms)
        .min_by_key(|(_, c)| c.written_ms)?;
    let (retired_rev, mut folded) = match retired {
        Some((rkv, r)) => (rkv.mod_revision, r.clone()),
        None => (0, Retired::default()),
    };
    folded.fold(doc, now_ms);
    let k = keys(plugin, fleet);
    let (key, retired_key) = (crate::utf8::lossy(&kv.key).into_owned(), k.retired());
    let value = folded.encode();
    let compares = [
        Compare::ModRevision(&key, kv.mod_revision),
        Compare::ModRevision(&retired_key, retired_rev),
    ];
    let ops = [
        Op::Delete(&key),
        Op::Put {
            key: &retired_key,
            value: &value,
            lease: None,
        },
    ];
    Some(Outgoing {
        request: etcd::txn(&compares, &ops, &[]),
        call: Call::Fold {
            replica: doc.replica.clone(),
        },
    })
}

fn folded(host: &dyn Host, plugin: &Plugin, result: &Outcome, body: &[u8], replica: &str) {
    match (result, etcd::parse_txn(body)) {
        (Outcome::Answered, Ok(txn)) if txn.succeeded => {
            bump(host, plugin, |f| f.retired);
            say::info(say::FLEET, format_args!("retired replica {} (quiet for longer than retire_after_seconds); what it learned stays counted", quoted(replica)));
        }
        // Another replica folded it first, or it came back: nothing to do.
        (Outcome::Answered, Ok(_)) => {}
        (other, _) => say::warn(
            say::FLEET,
            format_args!("retiring {} failed: {other:?}", quoted(replica)),
        ),
    }
}

/// Whether this replica has merged the fleet's view since it started, or given up waiting.
pub fn warm(host: &dyn Host, plugin: &Plugin) -> bool {
    local::sync(&plugin.name).read(host).warm_done
}

/// The lag gauge: ms since the last merge (published with the other gauges).
pub fn lag_ms(host: &dyn Host, plugin: &Plugin, now_ms: u64) -> Option<u64> {
    let r = local::sync(&plugin.name).read(host);
    (r.last_ok_ms > 0).then(|| now_ms.saturating_sub(r.last_ok_ms))
}
