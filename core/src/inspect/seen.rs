//! The keys seen in one object of a payload the scanner reads, to refuse an object with the
//! same key twice (two readers may see two different values). The keys come from clients, so
//! the set is O(1) per key whatever they are (a sorted `Vec` would shift on every insert:
//! quadratic on a hostile body): open addressing over SipHash values, keyed by a secret the
//! host draws as each root context starts (`seed_key_hash`), so a client cannot choose keys
//! that collide. Not std's `HashSet`: its `RandomState` would link std's own entropy call and
//! error table, and its table code, ~6 KB of module for what these few lines do.

use std::hash::Hasher;
use std::sync::atomic::{AtomicU64, Ordering};

/// The SipHash key, until the host seeds it: a fixed key (native tests, tools) is still SipHash.
static SECRET: [AtomicU64; 2] = [
    AtomicU64::new(0x736f_6d65_7073_6575),
    AtomicU64::new(0x6c79_6765_6e65_7261),
];

/// Sets the key objects' keys are hashed with; the host calls it as each root context starts,
/// with fresh entropy.
pub fn seed_key_hash(seed: u64) {
    let mut rng = crate::rng::Rng::seed_from_u64(seed);
    for half in &SECRET {
        half.store(rng.next_u64(), Ordering::Relaxed);
    }
}

pub(crate) struct SeenKeys {
    /// The hash key this set was made with, kept for its life: a re-seed never strands entries.
    key: [u64; 2],
    /// Each key with its hash, in the order seen.
    entries: Vec<(u64, String)>,
    /// Open addressing, linear probing: 0 is empty, `i + 1` is `entries[i]`. A power of two
    /// at least twice the entries.
    slots: Vec<u32>,
}

impl SeenKeys {
    pub(crate) fn new() -> SeenKeys {
        let [k0, k1] = &SECRET;
        SeenKeys {
            key: [k0.load(Ordering::Relaxed), k1.load(Ordering::Relaxed)],
            entries: Vec::new(),
            slots: Vec::new(),
        }
    }

    /// Records a key; `false` when the object already had it.
    pub(crate) fn first_time(&mut self, key: String) -> bool {
        if (self.entries.len() + 1) * 2 > self.slots.len() {
            self.grow();
        }
        let hash = self.hash(&key);
        let at = self.find(hash, &key);
        match self.slots.get_mut(at) {
            Some(slot @ 0) => {
                self.entries.push((hash, key));
                *slot = self.entries.len() as u32;
                true
            }
            _ => false,
        }
    }

    /// The slot holding `key`, or the empty slot where it goes.
    fn find(&self, hash: u64, key: &str) -> usize {
        let mask = self.slots.len().saturating_sub(1);
        let mut at = hash as usize & mask;
        loop {
            let entry = match self.slots.get(at) {
                Some(0) | None => return at,
                Some(&i) => self.entries.get(i as usize - 1),
            };
            if entry.is_some_and(|(h, k)| *h == hash && k == key) {
                return at;
            }
            at = (at + 1) & mask;
        }
    }

    fn grow(&mut self) {
        let size = (self.slots.len() * 2).max(8);
        self.slots = vec![0; size];
        for i in 0..self.entries.len() {
            let Some((hash, key)) = self.entries.get(i) else {
                break;
            };
            let at = self.find(*hash, key);
            if let Some(slot) = self.slots.get_mut(at) {
                *slot = i as u32 + 1;
            }
        }
    }

    fn hash(&self, key: &str) -> u64 {
        // SipHash-2-4: std keeps its keyed constructor only under this deprecated name.
        #[allow(deprecated)]
        let mut h = std::hash::SipHasher::new_with_keys(self.key[0], self.key[1]);
        h.write(key.as_bytes());
        h.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against a std `HashSet` on many keys (growing through several sizes), with repeats,
    /// under several hash keys; a set made before a re-seed still finds its keys.
    #[test]
    fn finds_what_a_hash_set_finds() {
        for seed in [0, 1, u64::MAX] {
            seed_key_hash(seed);
            let mut ours = SeenKeys::new();
            let mut std = std::collections::HashSet::new();
            for i in 0..5_000u32 {
                let key = format!("k{}", i.wrapping_mul(2_654_435_761) % 3_000);
                assert_eq!(ours.first_time(key.clone()), std.insert(key));
            }
            assert!(ours.first_time(String::new()));
            assert!(!ours.first_time(String::new()));
        }
        let mut keys = SeenKeys::new();
        assert!(keys.first_time("k".into()));
        seed_key_hash(7);
        assert!(!keys.first_time("k".into()));
    }
}
