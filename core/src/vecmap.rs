//! Ordered maps and sets kept in one sorted `Vec`, for the size of the module (issue 13).
//!
//! Every key and value type of a `BTreeMap` instantiates std's tree code (search, insert with
//! node splits, removal with rebalancing, iterators): 1–3 KB of wasm per instantiation, ~38 KB
//! for this crate's. A sorted `Vec` needs a binary search and a shift. Lookups are O(log n),
//! inserts and removals O(n): one at a time only for what the configuration bounds (models,
//! targets, rules, a fleet's replicas). What a client sends (a JSON or MessagePack object) is
//! built whole by [`VecMap::from_entries`], in O(n log n); never insert a client's keys one by
//! one (`inspect::seen` keeps an object's keys in a hash table for that reason).
//!
//! The behaviour is `BTreeMap`'s where the crate relies on it: iteration in key order,
//! `insert` returns the old value and keeps the first key, `collect` keeps a repeated key's last
//! value, and `entry(..).or_insert*`/`or_default` insert only when absent.

use std::borrow::Borrow;
use std::fmt;

/// A map ordered by key, in one sorted `Vec` of unique keys.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VecMap<K, V> {
    items: Vec<(K, V)>,
}

impl<K, V> Default for VecMap<K, V> {
    fn default() -> Self {
        VecMap { items: Vec::new() }
    }
}

impl<K, V> VecMap<K, V> {
    pub const fn new() -> Self {
        VecMap { items: Vec::new() }
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn clear(&mut self) {
        self.items.clear();
    }

    pub fn iter(&self) -> Iter<'_, K, V> {
        Iter(self.items.iter())
    }

    pub fn iter_mut(&mut self) -> IterMut<'_, K, V> {
        IterMut(self.items.iter_mut())
    }

    pub fn keys(&self) -> impl DoubleEndedIterator<Item = &K> + ExactSizeIterator + Clone {
        self.items.iter().map(|(k, _)| k)
    }

    pub fn values(&self) -> impl DoubleEndedIterator<Item = &V> + ExactSizeIterator + Clone {
        self.items.iter().map(|(_, v)| v)
    }

    pub fn values_mut(&mut self) -> impl DoubleEndedIterator<Item = &mut V> + ExactSizeIterator {
        self.items.iter_mut().map(|(_, v)| v)
    }

    pub fn into_values(self) -> impl DoubleEndedIterator<Item = V> + ExactSizeIterator {
        self.items.into_iter().map(|(_, v)| v)
    }

    pub fn into_keys(self) -> impl DoubleEndedIterator<Item = K> + ExactSizeIterator {
        self.items.into_iter().map(|(k, _)| k)
    }

    pub fn first_key_value(&self) -> Option<(&K, &V)> {
        self.items.first().map(|(k, v)| (k, v))
    }

    pub fn last_key_value(&self) -> Option<(&K, &V)> {
        self.items.last().map(|(k, v)| (k, v))
    }

    /// Keeps the entries for which `keep` is true, in order.
    pub fn retain(&mut self, mut keep: impl FnMut(&K, &mut V) -> bool) {
        self.items.retain_mut(|(k, v)| keep(k, v));
    }
}

impl<K: Ord, V> VecMap<K, V> {
    /// `Ok(index)` of `key`, or `Err(index)` where it would go.
    fn find<Q: Ord + ?Sized>(&self, key: &Q) -> Result<usize, usize>
    where
        K: Borrow<Q>,
    {
        self.items.binary_search_by(|(k, _)| k.borrow().cmp(key))
    }

    pub fn get<Q: Ord + ?Sized>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
    {
        let i = self.find(key).ok()?;
        self.items.get(i).map(|(_, v)| v)
    }

    pub fn get_key_value<Q: Ord + ?Sized>(&self, key: &Q) -> Option<(&K, &V)>
    where
        K: Borrow<Q>,
    {
        let i = self.find(key).ok()?;
        self.items.get(i).map(|(k, v)| (k, v))
    }

    pub fn get_mut<Q: Ord + ?Sized>(&mut self, key: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
    {
        let i = self.find(key).ok()?;
        self.items.get_mut(i).map(|(_, v)| v)
    }

    pub fn contains_key<Q: Ord + ?Sized>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
    {
        self.find(key).is_ok()
    }

    /// Sets `key` to `value`; the old value if there was one (the key itself is kept).
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        match self.find(&key) {
            Ok(i) => self
                .items
                .get_mut(i)
                .map(|(_, v)| std::mem::replace(v, value)),
            Err(i) => {
                insert_at(&mut self.items, i, (key, value));
                None
            }
        }
    }

    pub fn remove<Q: Ord + ?Sized>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
    {
        let i = self.find(key).ok()?;
        remove_at(&mut self.items, i).map(|(_, v)| v)
    }

    pub fn entry(&mut self, key: K) -> Entry<'_, K, V> {
        let at = self.find(&key);
        Entry { map: self, key, at }
    }

    /// The map of `items` in O(n log n), for what a client sends (a JSON or MessagePack
    /// object's entries): `collect`'s map, a key given twice keeping its last value.
    #[inline(never)]
    pub fn from_entries(mut items: Vec<(K, V)>) -> Self {
        if items
            .windows(2)
            .all(|w| matches!(w, [(a, _), (b, _)] if a < b))
        {
            return VecMap { items };
        }
        if items.len() <= SHORT {
            crate::sort::insertion(&mut items, |a, b| a.0.cmp(&b.0));
        } else {
            let key = |i: usize| items.get(i).map(|(k, _)| k);
            let mut order = crate::sort::stable_order(items.len(), &mut |a, b| key(a).cmp(&key(b)));
            crate::sort::permute(&mut order, &mut |a, b| items.swap(a, b));
        }
        // Of equal keys, now side by side in their order, the first stays with the last value.
        items.dedup_by(|later, kept| {
            let same = later.0 == kept.0;
            if same {
                std::mem::swap(&mut later.1, &mut kept.1);
            }
            same
        });
        VecMap { items }
    }
}

/// Entries that `from_entries` sorts in place (`sort::insertion`: no allocation, quadratic).
const SHORT: usize = 16;

/// A place in a [`VecMap`], found once: `BTreeMap::entry`'s inserting half.
pub struct Entry<'a, K, V> {
    map: &'a mut VecMap<K, V>,
    key: K,
    at: Result<usize, usize>,
}

impl<'a, K, V> Entry<'a, K, V> {
    pub fn or_insert_with(self, make: impl FnOnce() -> V) -> &'a mut V {
        let i = match self.at {
            Ok(i) => i,
            Err(i) => {
                insert_at(&mut self.map.items, i, (self.key, make()));
                i
            }
        };
        // The index is the one just found or filled, so this always yields.
        let slot = self.map.items.get_mut(i).map(|(_, v)| v);
        match slot {
            Some(v) => v,
            None => unreachable_slot(),
        }
    }

    pub fn or_insert(self, value: V) -> &'a mut V {
        self.or_insert_with(|| value)
    }

    pub fn or_default(self) -> &'a mut V
    where
        V: Default,
    {
        self.or_insert_with(V::default)
    }

    pub fn key(&self) -> &K {
        &self.key
    }
}

/// `items.insert(i, item)` for an `i` a binary search gave (at most the length): clamped to the
/// length, which it never exceeds, so no panic path is compiled.
fn insert_at<T>(items: &mut Vec<T>, i: usize, item: T) {
    let i = i.min(items.len());
    items.insert(i, item);
}

/// `items.remove(i)` for an `i` a search found (below the length): `None` otherwise, which
/// never happens, so no panic path is compiled.
pub(crate) fn remove_at<T>(items: &mut Vec<T>, i: usize) -> Option<T> {
    (i < items.len()).then(|| items.remove(i))
}

/// Never reached: `Entry` holds an index it found or filled itself. An endless loop, not a
/// panic, keeps the no-panic rule; the compiler sees it is never taken.
#[cold]
fn unreachable_slot() -> ! {
    loop {
        std::hint::spin_loop();
    }
}

/// Iterates `(&K, &V)` in key order.
#[derive(Clone)]
pub struct Iter<'a, K, V>(std::slice::Iter<'a, (K, V)>);

impl<'a, K, V> Iterator for Iter<'a, K, V> {
    type Item = (&'a K, &'a V);
    fn next(&mut self) -> Option<Self::Item> {
        self.0.next().map(|(k, v)| (k, v))
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        self.0.size_hint()
    }
}

impl<K, V> DoubleEndedIterator for Iter<'_, K, V> {
    fn next_back(&mut self) -> Option<Self::Item> {
        self.0.next_back().map(|(k, v)| (k, v))
    }
}

impl<K, V> ExactSizeIterator for Iter<'_, K, V> {}

/// Iterates `(&K, &mut V)` in key order.
pub struct IterMut<'a, K, V>(std::slice::IterMut<'a, (K, V)>);

impl<'a, K, V> Iterator for IterMut<'a, K, V> {
    type Item = (&'a K, &'a mut V);
    fn next(&mut self) -> Option<Self::Item> {
        self.0.next().map(|(k, v)| (&*k, v))
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        self.0.size_hint()
    }
}

impl<K, V> DoubleEndedIterator for IterMut<'_, K, V> {
    fn next_back(&mut self) -> Option<Self::Item> {
        self.0.next_back().map(|(k, v)| (&*k, v))
    }
}

impl<K, V> ExactSizeIterator for IterMut<'_, K, V> {}

impl<'a, K, V> IntoIterator for &'a VecMap<K, V> {
    type Item = (&'a K, &'a V);
    type IntoIter = Iter<'a, K, V>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl<'a, K, V> IntoIterator for &'a mut VecMap<K, V> {
    type Item = (&'a K, &'a mut V);
    type IntoIter = IterMut<'a, K, V>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter_mut()
    }
}

impl<K, V> IntoIterator for VecMap<K, V> {
    type Item = (K, V);
    type IntoIter = std::vec::IntoIter<(K, V)>;
    fn into_iter(self) -> Self::IntoIter {
        self.items.into_iter()
    }
}

/// A key given twice keeps its last value, as `BTreeMap`'s `collect` does.
impl<K: Ord, V> FromIterator<(K, V)> for VecMap<K, V> {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut map = VecMap::new();
        map.extend(iter);
        map
    }
}

impl<K: Ord, V> Extend<(K, V)> for VecMap<K, V> {
    fn extend<I: IntoIterator<Item = (K, V)>>(&mut self, iter: I) {
        for (k, v) in iter {
            self.insert(k, v);
        }
    }
}

impl<K: Ord, V, const N: usize> From<[(K, V); N]> for VecMap<K, V> {
    fn from(items: [(K, V); N]) -> Self {
        items.into_iter().collect()
    }
}

/// `map[key]` as `BTreeMap`'s, panicking when the key is absent: for tests only (filter code
/// may not panic).
#[cfg(any(test, feature = "testing"))]
#[allow(clippy::expect_used)]
impl<K: Ord + Borrow<Q>, Q: Ord + ?Sized, V> std::ops::Index<&Q> for VecMap<K, V> {
    type Output = V;

    fn index(&self, key: &Q) -> &V {
        self.get(key).expect("no entry found for key")
    }
}

impl<K: fmt::Debug, V: fmt::Debug> fmt::Debug for VecMap<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

/// A set ordered by value, in one sorted `Vec` of unique values.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VecSet<T> {
    items: Vec<T>,
}

impl<T> Default for VecSet<T> {
    fn default() -> Self {
        VecSet { items: Vec::new() }
    }
}

impl<T> VecSet<T> {
    pub const fn new() -> Self {
        VecSet { items: Vec::new() }
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn iter(&self) -> std::slice::Iter<'_, T> {
        self.items.iter()
    }

    pub fn first(&self) -> Option<&T> {
        self.items.first()
    }

    pub fn last(&self) -> Option<&T> {
        self.items.last()
    }

    pub fn retain(&mut self, keep: impl FnMut(&T) -> bool) {
        self.items.retain(keep);
    }

    pub fn clear(&mut self) {
        self.items.clear();
    }
}

impl<T: Ord> VecSet<T> {
    fn find<Q: Ord + ?Sized>(&self, value: &Q) -> Result<usize, usize>
    where
        T: Borrow<Q>,
    {
        self.items.binary_search_by(|t| t.borrow().cmp(value))
    }

    pub fn contains<Q: Ord + ?Sized>(&self, value: &Q) -> bool
    where
        T: Borrow<Q>,
    {
        self.find(value).is_ok()
    }

    pub fn get<Q: Ord + ?Sized>(&self, value: &Q) -> Option<&T>
    where
        T: Borrow<Q>,
    {
        self.items.get(self.find(value).ok()?)
    }

    /// Adds `value`; false if an equal one was there (which is kept, as `BTreeSet` does).
    pub fn insert(&mut self, value: T) -> bool {
        match self.find(&value) {
            Ok(_) => false,
            Err(i) => {
                insert_at(&mut self.items, i, value);
                true
            }
        }
    }

    pub fn remove<Q: Ord + ?Sized>(&mut self, value: &Q) -> bool
    where
        T: Borrow<Q>,
    {
        match self.find(value) {
            Ok(i) => remove_at(&mut self.items, i).is_some(),
            Err(_) => false,
        }
    }

    pub fn is_subset(&self, other: &VecSet<T>) -> bool {
        self.items.iter().all(|t| other.contains(t))
    }

    /// The values in `self` and not in `other`, in order.
    pub fn difference<'a>(&'a self, other: &'a VecSet<T>) -> impl Iterator<Item = &'a T> + 'a {
        self.items.iter().filter(move |t| !other.contains(*t))
    }

    /// The values in both, in order.
    pub fn intersection<'a>(&'a self, other: &'a VecSet<T>) -> impl Iterator<Item = &'a T> + 'a {
        self.items.iter().filter(move |t| other.contains(*t))
    }
}

impl<'a, T> IntoIterator for &'a VecSet<T> {
    type Item = &'a T;
    type IntoIter = std::slice::Iter<'a, T>;
    fn into_iter(self) -> Self::IntoIter {
        self.items.iter()
    }
}

impl<T> IntoIterator for VecSet<T> {
    type Item = T;
    type IntoIter = std::vec::IntoIter<T>;
    fn into_iter(self) -> Self::IntoIter {
        self.items.into_iter()
    }
}

impl<T: Ord> FromIterator<T> for VecSet<T> {
    fn from_iter<I: IntoIterator<Item = T>>(iter: I) -> Self {
        let mut set = VecSet::new();
        set.extend(iter);
        set
    }
}

impl<T: Ord> Extend<T> for VecSet<T> {
    fn extend<I: IntoIterator<Item = T>>(&mut self, iter: I) {
        for t in iter {
            self.insert(t);
        }
    }
}

impl<T: Ord, const N: usize> From<[T; N]> for VecSet<T> {
    fn from(items: [T; N]) -> Self {
        items.into_iter().collect()
    }
}

impl<T: fmt::Debug> fmt::Debug for VecSet<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

/// serde, for the test references that read the same documents through serde's derives: the
/// forms of `BTreeMap` and `BTreeSet` (a repeated key keeps its last value).
#[cfg(any(test, feature = "testing"))]
mod serde_impls {
    use super::{VecMap, VecSet};
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use std::collections::{BTreeMap, BTreeSet};

    impl<K: Serialize, V: Serialize> Serialize for VecMap<K, V> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.collect_map(self.iter())
        }
    }

    impl<'de, K: Ord + Deserialize<'de>, V: Deserialize<'de>> Deserialize<'de> for VecMap<K, V> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            BTreeMap::<K, V>::deserialize(d).map(|m| m.into_iter().collect())
        }
    }

    impl<T: Serialize> Serialize for VecSet<T> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.collect_seq(self.iter())
        }
    }

    impl<'de, T: Ord + Deserialize<'de>> Deserialize<'de> for VecSet<T> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            BTreeSet::<T>::deserialize(d).map(|s| s.into_iter().collect())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;
    use std::collections::{BTreeMap, BTreeSet};

    /// Random inserts, removals, entries and retains give the same maps and sets as std's.
    #[test]
    fn behaves_as_btree_map_and_set() {
        let mut rng = Rng::seed_from_u64(7);
        for _ in 0..200 {
            let mut ours: VecMap<u8, u32> = VecMap::new();
            let mut std_map: BTreeMap<u8, u32> = BTreeMap::new();
            let mut our_set: VecSet<u8> = VecSet::new();
            let mut std_set: BTreeSet<u8> = BTreeSet::new();
            for step in 0..300u32 {
                let k = (rng.next_u64() % 40) as u8;
                match rng.next_u64() % 6 {
                    0 | 1 => {
                        assert_eq!(ours.insert(k, step), std_map.insert(k, step));
                        assert_eq!(our_set.insert(k), std_set.insert(k));
                    }
                    2 => {
                        assert_eq!(ours.remove(&k), std_map.remove(&k));
                        assert_eq!(our_set.remove(&k), std_set.remove(&k));
                    }
                    3 => {
                        *ours.entry(k).or_default() += 1;
                        *std_map.entry(k).or_default() += 1;
                    }
                    4 => {
                        ours.retain(|key, v| (u32::from(*key) + *v) % 7 != 0);
                        std_map.retain(|key, v| (u32::from(*key) + *v) % 7 != 0);
                        our_set.retain(|key| key % 5 != 0);
                        std_set.retain(|key| key % 5 != 0);
                    }
                    _ => {
                        assert_eq!(ours.get(&k), std_map.get(&k));
                        assert_eq!(ours.contains_key(&k), std_map.contains_key(&k));
                        assert_eq!(our_set.contains(&k), std_set.contains(&k));
                    }
                }
                assert!(ours.iter().eq(std_map.iter()));
                assert!(our_set.iter().eq(std_set.iter()));
            }
        }
    }

    /// `from_entries` is `BTreeMap`'s `collect`: key order, a repeated key's last value; on
    /// sorted input, shuffled input and many repeats.
    #[test]
    fn from_entries_is_collect() {
        let mut rng = Rng::seed_from_u64(11);
        for round in 0..300u32 {
            let n = (rng.next_u64() % 70) as u32;
            let range = 1 + rng.next_u64() % 80;
            let items: Vec<(u8, u32)> = (0..n)
                .map(|i| match round % 3 {
                    0 => (i as u8, i),
                    _ => ((rng.next_u64() % range) as u8, i),
                })
                .collect();
            let want: BTreeMap<u8, u32> = items.iter().copied().collect();
            let got = VecMap::from_entries(items);
            assert!(got.iter().eq(want.iter()), "round {round}");
        }
    }

    #[test]
    fn collect_keeps_a_repeated_keys_last_value_and_borrowed_lookups_work() {
        let m: VecMap<String, u32> = [("b", 1), ("a", 2), ("b", 3)]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        assert_eq!(m.get("b"), Some(&3));
        assert_eq!(m.keys().map(String::as_str).collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(format!("{m:?}"), r#"{"a": 2, "b": 3}"#);
        let back: VecMap<String, u32> =
            serde_json::from_str(&serde_json::to_string(&m).unwrap()).unwrap();
        assert_eq!(back, m);
    }
}
