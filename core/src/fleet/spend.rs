//! A feedback's decision id, spent once fleet-wide: one etcd transaction creates the id's key
//! only if it has never existed (`Absent`), attached to the lease of the token's expiry bucket
//! (so etcd drops it after the token expires), with this Envoy's incarnation as the value. Of
//! any number of concurrent attempts on any replicas, exactly one creates it.
//!
//! An attempt whose answer was lost (timeout, reset, an etcd 5xx) may or may not have created
//! the key. The sender gets 503 and the attempt is kept *in doubt*: when etcd shows the key
//! with this incarnation (the sender's next attempt, or a later sync round's look), the reward
//! is applied then, exactly once; when the key stays absent, the record goes. So a reward is
//! never counted twice and never lost without a trace, whatever the network does.

use super::etcd::{self, Compare, Op};
use super::keys::Keys;
use super::local::{self, InDoubt, MAX_IN_DOUBT};
use super::sync::{Call, Outgoing};
use super::{outcome, Outcome};
use crate::callout::Answer;
use crate::config::FleetSettings;
use crate::host::{Host, HostStore};
use crate::learning::{self, spent, Checked};
use crate::plugin::Plugin;
use crate::quote::quoted;
use crate::say;
use crate::substr;
use crate::vecmap::remove_at;

/// A lost answer's key that etcd still does not show after this long was never written.
const SETTLE_MS: u64 = 30_000;

/// What a feedback stream's fleet callout continues.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamCall {
    /// A lease for the token's expiry bucket, then the spend.
    Lease {
        checked: Checked,
        bucket: u64,
    },
    Spend {
        checked: Checked,
    },
}

/// What etcd said of a spend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Spent {
    /// The id is spent now, by this attempt (or by an earlier one of this Envoy whose answer was
    /// lost): apply the reward.
    Apply,
    /// Spent by an earlier attempt of this Envoy, and its reward already applied.
    AlreadyApplied,
    /// Spent before: a replay.
    Replayed,
    /// The lease is gone (etcd forgot it): grant another and spend again.
    LeaseGone,
    /// Not recorded (etcd unreachable or refusing); `in_doubt` when it may have been.
    Retry { why: String, in_doubt: bool },
}

fn keys(plugin: &Plugin, fleet: &FleetSettings) -> Keys {
    Keys::new(&fleet.prefix, &plugin.name)
}

/// The first request of a spend: the spend itself when the token's bucket has a lease, else
/// the lease.
pub fn begin(
    host: &dyn Host,
    plugin: &Plugin,
    fleet: &FleetSettings,
    checked: Checked,
    now_ms: u64,
) -> Option<Outgoing<StreamCall>> {
    let bucket = spent::bucket_of(checked.token.expires);
    let lease = local::leases(&plugin.name)
        .read(host)
        .iter()
        .find(|(b, _)| *b == bucket)
        .map(|(_, id)| *id);
    match lease {
        Some(id) => spend(host, plugin, fleet, checked, id),
        None => {
            let ttl = super::sync::lease_ttl(bucket, now_ms / 1000);
            Some(Outgoing {
                request: etcd::lease_grant(ttl),
                call: StreamCall::Lease { checked, bucket },
            })
        }
    }
}

/// The transaction that spends the id.
pub fn spend(
    host: &dyn Host,
    plugin: &Plugin,
    fleet: &FleetSettings,
    checked: Checked,
    lease: i64,
) -> Option<Outgoing<StreamCall>> {
    let incarnation = local::current_incarnation(host, &plugin.name)?;
    let key = keys(plugin, fleet).spent(checked.token.expires, checked.token.nonce);
    let put = Op::Put {
        key: &key,
        value: incarnation.as_bytes(),
        lease: Some(lease),
    };
    Some(Outgoing {
        request: etcd::txn(&[Compare::Absent(&key)], &[put], &[Op::Get(&key)]),
        call: StreamCall::Spend { checked },
    })
}

/// A lease granted for a spend: kept for the bucket (shared with later spends).
pub fn lease_answer(
    host: &dyn Host,
    plugin: &Plugin,
    bucket: u64,
    answer: &Answer,
    now_ms: u64,
) -> Result<i64, String> {
    match (outcome(answer), etcd::parse_lease(&answer.body)) {
        (Outcome::Answered, Ok(id)) => {
            super::sync::keep_lease(host, plugin, bucket, id, now_ms);
            Ok(id)
        }
        (Outcome::Unauthenticated, _) => {
            super::sync::forget_token(host, plugin);
            Err("etcd wants a new login".into())
        }
        (other, _) => Err(format!("{other:?}")),
    }
}

/// What the spend's answer means; records the attempt in doubt when its answer was lost.
pub fn spent(
    host: &dyn Host,
    plugin: &Plugin,
    checked: &Checked,
    answer: &Answer,
    now_ms: u64,
) -> Spent {
    let result = outcome(answer);
    let nonce = checked.token.nonce;
    match result {
        Outcome::Answered => match etcd::parse_txn(&answer.body) {
            Ok(txn) if txn.succeeded => took(host, plugin, nonce, true),
            Ok(txn) => {
                let ours = local::current_incarnation(host, &plugin.name);
                let spender = txn
                    .ranges
                    .first()
                    .and_then(|kvs| kvs.first())
                    .map(|kv| kv.value.clone());
                if ours.is_some_and(|o| spender.as_deref() == Some(o.as_bytes())) {
                    took(host, plugin, nonce, false)
                } else {
                    let _ = take(host, plugin, nonce);
                    Spent::Replayed
                }
            }
            // An answer that is not etcd's: as good as lost.
            Err(e) => lost(host, plugin, checked, &format!("{e:?}"), now_ms),
        },
        Outcome::Refused(why) if substr::contains(&why, "lease not found") => {
            let bucket = spent::bucket_of(checked.token.expires);
            let _ = local::leases(&plugin.name).update(host, |l| {
                let before = l.len();
                l.retain(|(b, _)| *b != bucket);
                l.len() != before
            });
            Spent::LeaseGone
        }
        Outcome::Refused(why) => Spent::Retry {
            why,
            in_doubt: false,
        },
        Outcome::Unauthenticated => {
            super::sync::forget_token(host, plugin);
            Spent::Retry {
                why: "etcd wants a new login".into(),
                in_doubt: false,
            }
        }
        Outcome::NotSent => Spent::Retry {
            why: "etcd is unreachable".into(),
            in_doubt: false,
        },
        Outcome::Unknown(why) => lost(host, plugin, checked, &why, now_ms),
    }
}

/// The id is spent by this Envoy (`fresh`: by this very attempt): apply its reward unless an
/// earlier attempt's record says it was applied already.
fn took(host: &dyn Host, plugin: &Plugin, nonce: u64, fresh: bool) -> Spent {
    match take(host, plugin, nonce) {
        Some(r) if r.applied => Spent::AlreadyApplied,
        Some(_) => {
            if let Some(ids) = &plugin.metrics.fleet {
                host.bump(ids.in_doubt_applied);
            }
            Spent::Apply
        }
        None if fresh => Spent::Apply,
        // Spent by this Envoy, with no attempt in doubt: an ordinary replay.
        None => Spent::Replayed,
    }
}

/// Removes the record of `nonce`, returning it.
fn take(host: &dyn Host, plugin: &Plugin, nonce: u64) -> Option<InDoubt> {
    let mut taken = None;
    let _ = local::in_doubt(&plugin.name).update(host, |list| {
        taken = None;
        let i = list.iter().position(|r| r.token.nonce == nonce);
        taken = i.and_then(|i| remove_at(list, i));
        taken.is_some()
    });
    taken
}

fn lost(host: &dyn Host, plugin: &Plugin, checked: &Checked, why: &str, now_ms: u64) -> Spent {
    let record = InDoubt {
        token: checked.token.clone(),
        reward: checked.reward,
        recorded_ms: now_ms,
        applied: false,
    };
    let stored = local::in_doubt(&plugin.name).update(host, |list| {
        if list.iter().any(|r| r.token.nonce == record.token.nonce) {
            return false;
        }
        if list.len() >= MAX_IN_DOUBT {
            let gone = list.remove(0);
            say::warn(
                say::FLEET,
                format_args!(
                    "too many feedbacks in doubt; forgetting the oldest (decision of {})",
                    quoted(&gone.token.model)
                ),
            );
        }
        list.push(record.clone());
        true
    });
    if let Some(ids) = &plugin.metrics.fleet {
        host.bump(ids.in_doubt);
    }
    Spent::Retry {
        why: format!("etcd's answer was lost ({why}); the spend is checked again"),
        in_doubt: stored.is_ok(),
    }
}

/// Reads of the keys of feedback in doubt, for a sync round (at most `max`).
pub fn resolutions(
    host: &dyn Host,
    plugin: &Plugin,
    fleet: &FleetSettings,
    max: usize,
) -> Vec<Outgoing<Call>> {
    let k = keys(plugin, fleet);
    local::in_doubt(&plugin.name)
        .read(host)
        .iter()
        .filter(|r| !r.applied)
        .take(max)
        .map(|r| {
            let key = k.spent(r.token.expires, r.token.nonce);
            Outgoing {
                request: etcd::txn(&[], &[Op::Get(&key)], &[]),
                call: Call::Resolve {
                    nonce: r.token.nonce,
                },
            }
        })
        .collect()
}

/// A sync round's look at a key in doubt: spent by this Envoy → apply the reward now (once);
/// by another → forget it; still absent long after → it was never written.
pub fn resolved(
    host: &dyn Host,
    plugin: &Plugin,
    nonce: u64,
    result: &Outcome,
    body: &[u8],
    now_ms: u64,
) {
    let txn = match (result, etcd::parse_txn(body)) {
        (Outcome::Answered, Ok(txn)) => txn,
        _ => return,
    };
    let spender = txn
        .ranges
        .first()
        .and_then(|kvs| kvs.first())
        .map(|kv| kv.value.clone());
    let ours = local::current_incarnation(host, &plugin.name);
    let mut to_apply = None;
    let _ = local::in_doubt(&plugin.name).update(host, |list| {
        to_apply = None;
        let Some(i) = list
            .iter()
            .position(|r| r.token.nonce == nonce && !r.applied)
        else {
            return false;
        };
        match (&spender, &ours) {
            (Some(s), Some(o)) if s.as_slice() == o.as_bytes() => {
                if let Some(r) = list.get_mut(i) {
                    r.applied = true;
                    to_apply = Some(r.clone());
                }
                true
            }
            (Some(_), _) => {
                remove_at(list, i);
                true
            }
            (None, _) => {
                let settled = list
                    .get(i)
                    .is_some_and(|r| now_ms.saturating_sub(r.recorded_ms) > SETTLE_MS);
                if settled {
                    remove_at(list, i);
                }
                settled
            }
        }
    });
    if let Some(r) = to_apply {
        apply_in_doubt(host, plugin, &r, now_ms);
    }
}

/// Applies the reward of a record whose id etcd shows spent by this Envoy.
fn apply_in_doubt(host: &dyn Host, plugin: &Plugin, r: &InDoubt, now_ms: u64) {
    let Some((model, plan)) = learning::feedback::plan_for(&plugin.cfg, &r.token) else {
        say::warn(
            say::FLEET,
            format_args!(
                "a feedback in doubt names a model or target no longer configured; not applied"
            ),
        );
        return;
    };
    let checked = Checked {
        model,
        token: r.token.clone(),
        reward: r.reward,
        plan,
        // Charged when it first arrived.
        budget: None,
    };
    let reply = learning::complete(
        &HostStore(host),
        &plugin.name,
        &plugin.cfg,
        &checked,
        now_ms,
    );
    match reply.result {
        Ok(_) => {
            host.bump(plugin.metrics.feedback_accepted);
            if let Some(ids) = &plugin.metrics.fleet {
                host.bump(ids.in_doubt_applied);
            }
        }
        Err(refusal) => say::warn(
            say::FLEET,
            format_args!(
                "a feedback in doubt could not be applied: {}",
                refusal.as_str()
            ),
        ),
    }
}
