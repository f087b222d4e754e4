//! Spent decision ids, so each is accepted once across every worker.
//!
//! Nonces are kept per expiry bucket under their own shared-data key: a token whose expiry falls
//! in bucket `b` is recorded in bucket `b`'s sorted list. Buckets are created *ahead of time*
//! (the root context seeds those that tokens issued now could land in, before any such token
//! exists), because the host ignores CAS when a key is missing: creating a bucket lazily while
//! another worker spends into it could drop a spent id. Buckets whose tokens have all expired
//! are emptied; a late spend cannot reach them, since expired tokens are refused first.

use std::convert::Infallible;

use crate::bandit::{cas_update, Change, Codec, SharedStore, StoreError, UpdateFailure};

/// Seconds covered by one bucket: at least a minute, and at most ~64 buckets for any TTL.
pub fn bucket_seconds(ttl_seconds: u64) -> u64 {
    (ttl_seconds / 64).max(60)
}

pub fn bucket_of(expires: u64, bucket_seconds: u64) -> u64 {
    expires / bucket_seconds.max(1)
}

pub fn bucket_key(prefix: &str, bucket: u64) -> String {
    format!("{prefix}/spent/{bucket}")
}

/// The buckets a token issued at `now` can fall in.
pub fn live_buckets(now: u64, ttl_seconds: u64) -> std::ops::RangeInclusive<u64> {
    let b = bucket_seconds(ttl_seconds);
    bucket_of(now, b)..=bucket_of(now.saturating_add(ttl_seconds), b).saturating_add(1)
}

/// A bucket: the sorted spent nonces, MessagePack (no bytes: empty, as seeded).
struct Nonces;

impl Codec for Nonces {
    type Value = Vec<u64>;
    type Error = ();
    fn decode(&self, bytes: &[u8]) -> Result<Vec<u64>, ()> {
        if bytes.is_empty() {
            return Ok(Vec::new());
        }
        rmp_serde::from_slice(bytes).map_err(|_| ())
    }
    fn encode(&self, nonces: &Vec<u64>) -> Vec<u8> {
        rmp_serde::to_vec(nonces).unwrap_or_default()
    }
}

/// Creates a bucket if it does not exist. Returns whether it wrote.
pub fn seed_bucket<S: SharedStore + ?Sized>(store: &S, key: &str) -> Result<bool, StoreError> {
    match store.get(key)? {
        (Some(_), _) => Ok(false),
        (None, _) => store.set(key, &[], None).map(|()| true),
    }
}

/// Empties a bucket whose tokens have all expired.
pub fn clear_bucket<S: SharedStore + ?Sized>(store: &S, key: &str) -> Result<(), StoreError> {
    match store.get(key)? {
        (Some(bytes), cas) if !bytes.is_empty() => store.set(key, &[], cas),
        _ => Ok(()),
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Spend {
    /// Recorded now: the id had not been used.
    Fresh,
    /// Already recorded: a replay.
    Replayed,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpendError {
    Contention,
    Store(StoreError),
}

/// Adds `nonce` to the bucket (bounded CAS loop). Undecodable bucket bytes are replaced (the
/// ids in them are forgotten, which the caller logs via `reset`).
pub fn spend<S: SharedStore + ?Sized>(
    store: &S,
    key: &str,
    nonce: u64,
    max_attempts: u32,
    reset: &mut bool,
) -> Result<Spend, SpendError> {
    change(store, key, max_attempts, reset, |list| {
        match list.binary_search(&nonce) {
            Ok(_) => None,
            Err(pos) => {
                list.insert(pos, nonce);
                Some(())
            }
        }
    })
    .map(|wrote| if wrote { Spend::Fresh } else { Spend::Replayed })
}

/// Removes `nonce` again (the reward it carried could not be applied, so it may be retried).
pub fn unspend<S: SharedStore + ?Sized>(
    store: &S,
    key: &str,
    nonce: u64,
    max_attempts: u32,
) -> Result<(), SpendError> {
    let mut reset = false;
    change(store, key, max_attempts, &mut reset, |list| {
        list.binary_search(&nonce).ok().map(|pos| {
            list.remove(pos);
        })
    })
    .map(|_| ())
}

/// CAS read-modify-write of a bucket ([`cas_update`]); `edit` returns `None` to write nothing.
/// A missing bucket should have been seeded ahead of time: it is seeded here and the (logged)
/// race accepted.
fn change<S: SharedStore + ?Sized>(
    store: &S,
    key: &str,
    max_attempts: u32,
    reset: &mut bool,
    mut edit: impl FnMut(&mut Vec<u64>) -> Option<()>,
) -> Result<bool, SpendError> {
    let outcome = cas_update(
        store,
        key,
        max_attempts,
        &Nonces,
        &Vec::new(),
        |mut list| {
            Ok::<_, Infallible>(match edit(&mut list) {
                Some(()) => Change::Write(list),
                None => Change::Keep(list),
            })
        },
    );
    match outcome {
        Ok(out) => {
            *reset |= out.discarded.is_some();
            Ok(out.wrote)
        }
        Err(UpdateFailure::Contention { .. }) => Err(SpendError::Contention),
        Err(UpdateFailure::Store { error, .. }) => Err(SpendError::Store(error)),
        Err(UpdateFailure::Rejected(never)) => match never {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bandit::MemoryStore;

    #[test]
    fn spend_once() {
        let s = MemoryStore::new();
        let mut reset = false;
        seed_bucket(&s, "k").unwrap();
        assert_eq!(spend(&s, "k", 5, 8, &mut reset), Ok(Spend::Fresh));
        assert_eq!(spend(&s, "k", 3, 8, &mut reset), Ok(Spend::Fresh));
        assert_eq!(spend(&s, "k", 5, 8, &mut reset), Ok(Spend::Replayed));
        unspend(&s, "k", 5, 8).unwrap();
        assert_eq!(spend(&s, "k", 5, 8, &mut reset), Ok(Spend::Fresh));
        assert!(!reset);
    }

    #[test]
    fn seeding_never_overwrites() {
        let s = MemoryStore::new();
        let mut reset = false;
        seed_bucket(&s, "k").unwrap();
        spend(&s, "k", 1, 8, &mut reset).unwrap();
        assert!(!seed_bucket(&s, "k").unwrap());
        assert_eq!(spend(&s, "k", 1, 8, &mut reset), Ok(Spend::Replayed));
    }

    #[test]
    fn garbage_resets_and_contention_is_bounded() {
        let s = MemoryStore::new();
        s.put_raw("k", &[0xc1, 0xc1]);
        let mut reset = false;
        assert_eq!(spend(&s, "k", 1, 8, &mut reset), Ok(Spend::Fresh));
        assert!(reset);
        for _ in 0..3 {
            s.fail_next_set(StoreError::CasMismatch);
        }
        assert_eq!(
            spend(&s, "k", 2, 3, &mut reset),
            Err(SpendError::Contention)
        );
        assert_eq!(spend(&s, "k", 2, 3, &mut reset), Ok(Spend::Fresh));
    }

    #[test]
    fn buckets_cover_the_ttl() {
        assert_eq!(bucket_seconds(3600), 60);
        assert_eq!(bucket_seconds(7 * 24 * 3600), 9450);
        let live = live_buckets(1_000_000, 3600);
        let b = bucket_seconds(3600);
        assert!(live.contains(&bucket_of(1_000_000 + 3600, b)));
        assert!(live.contains(&bucket_of(1_000_001, b)));
        assert!(live.clone().count() <= 66);
    }
}
