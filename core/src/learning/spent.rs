//! Spent decision ids, so each is accepted once across every worker of this Envoy.
//!
//! A token is kept by its expiry: tokens expiring in the same hour share a bucket
//! ([`BUCKET_SECONDS`], fixed, so a reload with another TTL finds every id where it was put), and
//! within it one of [`SHARDS`] shards by nonce, each its own shared-data key holding the sorted
//! nonces as 8-byte big-endian integers. A spend rewrites one shard, at most
//! `max_accepted_per_hour / SHARDS` ids; a full shard refuses (the id is never accepted twice, so
//! the only safe answer when there is no room is no). Shards are created *ahead of time* (the
//! root context seeds the buckets tokens issued now land in, before any such token exists),
//! because the host ignores CAS when a key is missing: creating a shard lazily while another
//! worker spends into it could drop a spent id. Buckets whose tokens have all expired are emptied;
//! a late spend cannot reach them, since expired tokens are refused first.

use crate::bandit::{cas_update, Bytes, Change, SharedStore, StoreError, UpdateFailure};

/// Seconds of expiry one bucket covers.
pub const BUCKET_SECONDS: u64 = 3600;
/// Shards of a bucket.
pub const SHARDS: u64 = 64;
const NONCE_BYTES: usize = 8;

pub fn bucket_of(expires: u64) -> u64 {
    expires / BUCKET_SECONDS
}

/// The shared-data key of the shard that keeps `nonce` of `bucket`.
pub fn shard_key(prefix: &str, bucket: u64, nonce: u64) -> String {
    format!("{prefix}/spent/{bucket}/{}", nonce % SHARDS)
}

fn shard_keys(prefix: &str, bucket: u64) -> impl Iterator<Item = String> + '_ {
    (0..SHARDS).map(move |shard| shard_key(prefix, bucket, shard))
}

/// The buckets tokens issued from `now` until the next bucket starts can land in.
pub fn issuing_buckets(now: u64, ttl_seconds: u64) -> std::ops::RangeInclusive<u64> {
    let first = bucket_of(now.saturating_add(ttl_seconds));
    first..=first.saturating_add(1)
}

/// Creates a bucket's shards that do not exist. Returns how many it wrote.
pub fn seed_bucket<S: SharedStore + ?Sized>(
    store: &S,
    prefix: &str,
    bucket: u64,
) -> Result<usize, StoreError> {
    let mut wrote = 0;
    for key in shard_keys(prefix, bucket) {
        if store.get(&key)?.0.is_none() {
            store.set(&key, &[], None)?;
            wrote += 1;
        }
    }
    Ok(wrote)
}

/// Empties a bucket whose tokens have all expired.
pub fn clear_bucket<S: SharedStore + ?Sized>(
    store: &S,
    prefix: &str,
    bucket: u64,
) -> Result<(), StoreError> {
    for key in shard_keys(prefix, bucket) {
        if let (Some(bytes), cas) = store.get(&key)? {
            if !bytes.is_empty() {
                store.set(&key, &[], cas)?;
            }
        }
    }
    Ok(())
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
    /// The shard holds as many ids as it may.
    Full,
    /// The shard's bytes are not a list of ids (nothing is accepted into it until it is cleared).
    Corrupt,
    Store(StoreError),
}

/// Where `nonce` is, or would go, in a shard's bytes.
fn search(bytes: &[u8], nonce: u64) -> Result<usize, usize> {
    let mut lo = 0;
    let mut hi = bytes.len() / NONCE_BYTES;
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let at = mid.saturating_mul(NONCE_BYTES);
        let value = bytes
            .get(at..at.saturating_add(NONCE_BYTES))
            .and_then(|b| <[u8; NONCE_BYTES]>::try_from(b).ok())
            .map_or(0, crate::be::from_be);
        match value.cmp(&nonce) {
            std::cmp::Ordering::Less => lo = mid + 1,
            std::cmp::Ordering::Greater => hi = mid,
            std::cmp::Ordering::Equal => return Ok(mid),
        }
    }
    Err(lo)
}

/// Adds `nonce` to its shard (bounded CAS loop), unless the shard already holds `capacity` ids.
pub fn spend<S: SharedStore + ?Sized>(
    store: &S,
    key: &str,
    nonce: u64,
    capacity: usize,
    max_attempts: u32,
) -> Result<Spend, SpendError> {
    change(store, key, max_attempts, |bytes| {
        match search(bytes, nonce) {
            Ok(_) => Ok(None),
            Err(_) if bytes.len() / NONCE_BYTES >= capacity => Err(SpendError::Full),
            Err(pos) => {
                let at = pos.saturating_mul(NONCE_BYTES);
                let mut out = Vec::with_capacity(bytes.len().saturating_add(NONCE_BYTES));
                out.extend_from_slice(bytes.get(..at).unwrap_or_default());
                out.extend_from_slice(&crate::be::to_be(nonce));
                out.extend_from_slice(bytes.get(at..).unwrap_or_default());
                Ok(Some(out))
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
    change(store, key, max_attempts, |bytes| {
        Ok(search(bytes, nonce).ok().map(|pos| {
            let at = pos.saturating_mul(NONCE_BYTES);
            let mut out = bytes.get(..at).unwrap_or_default().to_vec();
            out.extend_from_slice(
                bytes
                    .get(at.saturating_add(NONCE_BYTES)..)
                    .unwrap_or_default(),
            );
            out
        }))
    })
    .map(|_| ())
}

/// CAS read-modify-write of a shard ([`cas_update`] over its bytes as they are: their form is
/// checked here, which refuses rather than resets, as forgetting spent ids would accept
/// replays); `edit` returns `Ok(None)` to write nothing. A missing shard should have been
/// seeded ahead of time: it is seeded here and the race accepted.
fn change<S: SharedStore + ?Sized>(
    store: &S,
    key: &str,
    max_attempts: u32,
    mut edit: impl FnMut(&[u8]) -> Result<Option<Vec<u8>>, SpendError>,
) -> Result<bool, SpendError> {
    change_dyn(store, key, max_attempts, &mut edit)
}

/// An edit of a shard's bytes: the bytes to write instead, if any. A trait of its own rather
/// than `dyn FnMut`, whose vtable holds a `call_once` shim per closure that nothing calls.
trait ShardEdit {
    fn edit(&mut self, bytes: &[u8]) -> Result<Option<Vec<u8>>, SpendError>;
}

impl<F: FnMut(&[u8]) -> Result<Option<Vec<u8>>, SpendError>> ShardEdit for F {
    fn edit(&mut self, bytes: &[u8]) -> Result<Option<Vec<u8>>, SpendError> {
        self(bytes)
    }
}

/// `change`'s body, one copy whatever the edit.
fn change_dyn<S: SharedStore + ?Sized>(
    store: &S,
    key: &str,
    max_attempts: u32,
    edit: &mut dyn ShardEdit,
) -> Result<bool, SpendError> {
    let outcome = cas_update(store, key, max_attempts, &Bytes, &Vec::new(), |bytes| {
        if bytes.len() % NONCE_BYTES != 0 {
            return Err(SpendError::Corrupt);
        }
        Ok(match edit.edit(&bytes)? {
            Some(next) => Change::Write(next),
            None => Change::Keep(bytes),
        })
    });
    match outcome {
        Ok(out) => Ok(out.wrote),
        Err(UpdateFailure::Contention { .. }) => Err(SpendError::Contention),
        Err(UpdateFailure::Store { error, .. }) => Err(SpendError::Store(error)),
        Err(UpdateFailure::Rejected(e)) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bandit::MemoryStore;

    #[test]
    fn spend_once_in_order() {
        let s = MemoryStore::new();
        seed_bucket(&s, "p", 1).unwrap();
        let key = shard_key("p", 1, 0);
        for n in [640, 64, 6400, 0] {
            assert_eq!(spend(&s, &key, n, 8, 8), Ok(Spend::Fresh));
        }
        assert_eq!(spend(&s, &key, 640, 8, 8), Ok(Spend::Replayed));
        let (bytes, _) = s.get(&key).unwrap();
        let ids: Vec<u64> = bytes
            .unwrap()
            .chunks(8)
            .map(|c| u64::from_be_bytes(c.try_into().unwrap()))
            .collect();
        assert_eq!(ids, vec![0, 64, 640, 6400]);
        unspend(&s, &key, 640, 8).unwrap();
        assert_eq!(spend(&s, &key, 640, 8, 8), Ok(Spend::Fresh));
    }

    #[test]
    fn a_full_shard_refuses_and_never_forgets() {
        let s = MemoryStore::new();
        let key = shard_key("p", 1, 0);
        seed_bucket(&s, "p", 1).unwrap();
        assert_eq!(spend(&s, &key, 64, 2, 8), Ok(Spend::Fresh));
        assert_eq!(spend(&s, &key, 128, 2, 8), Ok(Spend::Fresh));
        assert_eq!(spend(&s, &key, 192, 2, 8), Err(SpendError::Full));
        assert_eq!(spend(&s, &key, 64, 2, 8), Ok(Spend::Replayed));
    }

    #[test]
    fn seeding_never_overwrites_and_clearing_empties() {
        let s = MemoryStore::new();
        assert_eq!(seed_bucket(&s, "p", 7).unwrap(), 64);
        let key = shard_key("p", 7, 5);
        spend(&s, &key, 5, 8, 8).unwrap();
        assert_eq!(seed_bucket(&s, "p", 7).unwrap(), 0);
        assert_eq!(spend(&s, &key, 5, 8, 8), Ok(Spend::Replayed));
        clear_bucket(&s, "p", 7).unwrap();
        assert_eq!(s.get(&key).unwrap().0, Some(Vec::new()));
    }

    #[test]
    fn garbage_refuses_and_contention_is_bounded() {
        let s = MemoryStore::new();
        s.put_raw("k", &[1, 2, 3]);
        assert_eq!(spend(&s, "k", 1, 8, 8), Err(SpendError::Corrupt));
        s.put_raw("k", &[]);
        for _ in 0..3 {
            s.fail_next_set(StoreError::CasMismatch);
        }
        assert_eq!(spend(&s, "k", 2, 8, 3), Err(SpendError::Contention));
        assert_eq!(spend(&s, "k", 2, 8, 3), Ok(Spend::Fresh));
    }

    #[test]
    fn buckets_do_not_depend_on_the_ttl() {
        assert_eq!(bucket_of(7_199), 1);
        assert_eq!(issuing_buckets(1_000_000, 3600), 278..=279);
        assert!(issuing_buckets(1_000_000, 60).contains(&bucket_of(1_000_060 + 3599)));
    }
}
