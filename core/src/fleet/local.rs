//! The fleet's bookkeeping in this Envoy's shared data, one record per key (JSON: the format the
//! fleet's documents already use, so the module carries one set of decoders for them), shared
//! by every VM: the sync rounds, the incarnation, the etcd auth token, the spent-id leases and
//! the feedback whose spend is in doubt. Every change is a bounded CAS loop (`cas_update`);
//! records are seeded ahead of use where a lost first write would matter.

use crate::vecmap::VecMap;
use std::marker::PhantomData;

use super::doc::Learned;
use super::keys::local;
use crate::bandit::{cas_edit_with, Edit, StoreError};
use crate::feedback::DecisionToken;
use crate::host::{Host, HostStore};
use crate::json::read::{from_text, text_struct, FromText};
use crate::json::{ObjectWriter, ToJson};
use crate::say;

/// CAS attempts on a bookkeeping record.
const ATTEMPTS: u32 = 16;
/// Feedback in doubt kept at most (the oldest is dropped, and counted, beyond that).
pub const MAX_IN_DOUBT: usize = 1024;

/// The sync rounds of this Envoy.
#[derive(Debug, Clone, Default, PartialEq)]
#[cfg_attr(test, derive(serde::Serialize, serde::Deserialize))]
pub struct SyncRecord {
    /// No round starts before this (Unix ms).
    pub next_due_ms: u64,
    /// Rounds claimed so far (each publishes with its own seq).
    pub seq: u64,
    /// The last read merged (0: none since this Envoy started).
    pub last_ok_ms: u64,
    /// The first read after start is over, merged or failed: requests stop waiting for it.
    pub warm_done: bool,
    /// Replicas in the last merge, this one included.
    pub replicas: u32,
    /// This replica's key exists in etcd (publishes compare on it).
    pub created: bool,
    /// The last publish that etcd took, and the digest of what it carried.
    pub published_ms: u64,
    pub published_digest: u64,
    /// Rounds in a row whose read failed.
    pub failures: u32,
    /// Another live writer uses this replica's key (stops this one from publishing).
    pub conflict: bool,
    /// No login is tried before this (Unix ms): the last one was refused.
    #[cfg_attr(test, serde(default))]
    pub login_after_ms: u64,
}

/// What this replica published, as far as a later correction needs it: the last attempt and
/// the last one etcd confirmed, each by seq.
#[derive(Debug, Clone, Default, PartialEq)]
#[cfg_attr(test, derive(serde::Serialize, serde::Deserialize))]
pub struct Published {
    pub attempted: Option<Snapshot>,
    pub confirmed: Option<Snapshot>,
}

#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(test, derive(serde::Serialize, serde::Deserialize))]
pub struct Snapshot {
    pub seq: u64,
    pub models: VecMap<String, Learned>,
}

impl Published {
    /// The snapshot etcd holds for `seq`, if this replica still knows it.
    pub fn by_seq(&self, seq: u64) -> Option<&Snapshot> {
        [&self.confirmed, &self.attempted]
            .into_iter()
            .flatten()
            .find(|s| s.seq == seq)
    }
}

/// A feedback whose spend may or may not have reached etcd (its answer was lost).
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(test, derive(serde::Serialize, serde::Deserialize))]
pub struct InDoubt {
    pub token: DecisionToken,
    pub reward: f64,
    pub recorded_ms: u64,
    /// The reward was applied after etcd showed the id was spent by this incarnation: the
    /// sender's next attempt is answered 200 once, then the record goes.
    pub applied: bool,
}

// Read by hand, accepting what serde's derive did.
text_struct!(SyncRecord {
    next_due_ms,
    seq,
    last_ok_ms,
    warm_done,
    replicas,
    created,
    published_ms,
    published_digest,
    failures,
    conflict,
    login_after_ms default,
});
text_struct!(Published { attempted option, confirmed option });
text_struct!(Snapshot { seq, models });
text_struct!(InDoubt {
    token,
    reward,
    recorded_ms,
    applied
});

// Written by hand, fields in declaration order as serde's derive wrote them.
impl ToJson for SyncRecord {
    fn write_json(&self, out: &mut Vec<u8>) {
        ObjectWriter::new(out)
            .field("next_due_ms", &self.next_due_ms)
            .field("seq", &self.seq)
            .field("last_ok_ms", &self.last_ok_ms)
            .field("warm_done", &self.warm_done)
            .field("replicas", &self.replicas)
            .field("created", &self.created)
            .field("published_ms", &self.published_ms)
            .field("published_digest", &self.published_digest)
            .field("failures", &self.failures)
            .field("conflict", &self.conflict)
            .field("login_after_ms", &self.login_after_ms)
            .end();
    }
}

impl ToJson for Published {
    fn write_json(&self, out: &mut Vec<u8>) {
        ObjectWriter::new(out)
            .field("attempted", &self.attempted)
            .field("confirmed", &self.confirmed)
            .end();
    }
}

impl ToJson for Snapshot {
    fn write_json(&self, out: &mut Vec<u8>) {
        ObjectWriter::new(out)
            .field("seq", &self.seq)
            .field("models", &self.models)
            .end();
    }
}

impl ToJson for InDoubt {
    fn write_json(&self, out: &mut Vec<u8>) {
        ObjectWriter::new(out)
            .field("token", &self.token)
            .field("reward", &self.reward)
            .field("recorded_ms", &self.recorded_ms)
            .field("applied", &self.applied)
            .end();
    }
}

/// A record's JSON; bytes that do not decode give the record's initial value.
fn decode<T: FromText + Default>(bytes: &[u8]) -> T {
    from_text(bytes).unwrap_or_default()
}

/// One record of a plugin's fleet bookkeeping.
pub struct Record<T> {
    key: String,
    _t: PhantomData<T>,
}

impl<T: ToJson + FromText + Default + Clone> Record<T> {
    pub fn new(plugin: &str, what: &str) -> Self {
        Record {
            key: local(plugin, what),
            _t: PhantomData,
        }
    }

    /// The record (its initial value when missing or undecodable).
    pub fn read(&self, host: &dyn Host) -> T {
        match host.shared_data(&self.key) {
            Ok((Some(bytes), _)) => decode(&bytes),
            _ => T::default(),
        }
    }

    /// Changes the record: `f` edits it and says whether to write (`false`: leave it as it
    /// is). Returns the value now stored.
    pub fn update(
        &self,
        host: &dyn Host,
        mut f: impl FnMut(&mut T) -> bool,
    ) -> Result<T, StoreError> {
        // One edit per record type, whatever the change (a `dyn` edit: less code in the module).
        self.update_dyn(host, &mut f)
    }

    fn update_dyn(&self, host: &dyn Host, f: &mut dyn Edit<T>) -> Result<T, StoreError> {
        cas_edit_with(
            &HostStore(host),
            &self.key,
            ATTEMPTS,
            T::default(),
            decode,
            crate::json::write::to_vec,
            |v: &mut T| f.edit(v),
        )
    }

    /// Changes the record (always written); a lost race or a host failure is logged, not
    /// returned: bookkeeping that a later round redoes.
    pub fn set(&self, host: &dyn Host, mut f: impl FnMut(&mut T)) {
        self.set_dyn(host, &mut |v: &mut T| {
            f(v);
            true
        });
    }

    /// `set`'s body, one copy per record type (inlined, it would be one per change).
    #[inline(never)]
    fn set_dyn(&self, host: &dyn Host, f: &mut dyn Edit<T>) {
        if let Err(e) = self.update_dyn(host, f) {
            say::warn(say::FLEET, format_args!("{} not updated: {e}", self.key));
        }
    }
}

pub fn sync(plugin: &str) -> Record<SyncRecord> {
    Record::new(plugin, "sync")
}

pub fn published(plugin: &str) -> Record<Published> {
    Record::new(plugin, "published")
}

/// The etcd auth token (empty: none yet).
pub fn token(plugin: &str) -> Record<String> {
    Record::new(plugin, "token")
}

/// Spent-id leases by expiry bucket.
pub fn leases(plugin: &str) -> Record<Vec<(u64, i64)>> {
    Record::new(plugin, "leases")
}

pub fn in_doubt(plugin: &str) -> Record<Vec<InDoubt>> {
    Record::new(plugin, "in-doubt")
}

/// This Envoy's incarnation: random, chosen once per Envoy start by whichever VM gets there
/// first. The key is seeded empty (a missing key ignores CAS), then exactly one VM's value
/// replaces the empty one by CAS; everyone reads that one.
pub fn incarnation(host: &dyn Host, plugin: &str, random: u64) -> Option<String> {
    let key = local(plugin, "incarnation");
    for _ in 0..ATTEMPTS {
        match host.shared_data(&key) {
            Ok((Some(v), _)) if !v.is_empty() => return String::from_utf8(v).ok(),
            Ok((Some(_), cas)) => {
                let _ = host.set_shared_data(&key, format!("{random:016x}").as_bytes(), cas);
            }
            Ok((None, _)) => {
                let _ = host.set_shared_data(&key, b"", None);
            }
            Err(_) => return None,
        }
    }
    None
}

/// The incarnation as stored (never creates it).
pub fn current_incarnation(host: &dyn Host, plugin: &str) -> Option<String> {
    match host.shared_data(&local(plugin, "incarnation")) {
        Ok((Some(v), _)) if !v.is_empty() => String::from_utf8(v).ok(),
        _ => None,
    }
}
