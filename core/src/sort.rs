//! Ordering without std's sort, for the size of the module (issue 13).
//!
//! Every element type given to `sort`, `sort_by`, `sort_by_key` or `sort_unstable*`, and every
//! key type of a `collect()` into a `BTreeMap` or `BTreeSet` (`from_iter` sorts its input with
//! the stable sort before building the tree), instantiates std's driftsort / quicksort /
//! smallsort: ~3.5 KB of wasm per type, ~30 KB for this crate's seven. What the filter orders is
//! small (the conditions of one rule, a model's targets, a fleet's models), so:
//!
//! - [`by_key`]: an insertion sort, stable, O(n²) comparisons and swaps: for slices whose length
//!   the operator's configuration bounds, never for what a client sends.
//! - [`map`]: a tree built by inserting each item, O(n log n), with `from_iter`'s result: a key
//!   given twice keeps its last value (`insert` replaces the value). Of keys equal by `Ord`,
//!   `from_iter` keeps the last and `insert` the first: the same for the strings ordered here,
//!   which are equal only when identical.
//!
//! Sets, and maps the configuration bounds, are `vecmap`'s sorted `Vec`s instead.

use std::collections::BTreeMap;

/// Sorts `v` by `key`, stably (equal keys keep their order), in O(n²): only for short slices
/// whose length the configuration bounds (see the module documentation).
pub fn by_key<T, K: Ord>(v: &mut [T], mut key: impl FnMut(&T) -> K) {
    for i in 1..v.len() {
        let mut j = i;
        // Moves v[i] down past every earlier element with a greater key (not an equal one).
        while let Some(prev) = j.checked_sub(1) {
            match (v.get(prev), v.get(j)) {
                (Some(a), Some(b)) if key(a) > key(b) => v.swap(prev, j),
                _ => break,
            }
            j = prev;
        }
    }
}

/// `iter.collect::<BTreeMap<_, _>>()` without the sort: the same map (a key given twice keeps
/// its last value; of keys equal by `Ord` the first stays, not the last, which for the strings
/// and numbers used as keys here is the same).
pub fn map<K: Ord, V>(iter: impl IntoIterator<Item = (K, V)>) -> BTreeMap<K, V> {
    let mut m = BTreeMap::new();
    for (k, v) in iter {
        m.insert(k, v);
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Equal keys (the first field) keep their input order (the second field).
    #[test]
    fn by_key_is_stable() {
        let mut v = vec![(3, 0), (1, 1), (3, 2), (0, 3), (1, 4), (3, 5), (0, 6)];
        by_key(&mut v, |p| p.0);
        assert_eq!(v, [(0, 3), (0, 6), (1, 1), (1, 4), (3, 0), (3, 2), (3, 5)]);
    }

    /// Against std's stable sort on every sequence of up to 6 keys from 0..3 (all orders,
    /// duplicates, sorted and reversed input), the input position riding along.
    #[test]
    fn by_key_matches_std_stable_sort() {
        for len in 0..=6u32 {
            for code in 0..3u32.pow(len) {
                let mut c = code;
                let mut v: Vec<(u32, usize)> = Vec::new();
                for i in 0..len as usize {
                    v.push((c % 3, i));
                    c /= 3;
                }
                let mut want = v.clone();
                want.sort_by_key(|p| p.0);
                by_key(&mut v, |p| p.0);
                assert_eq!(v, want, "code {code} len {len}");
            }
        }
    }

    #[test]
    fn by_key_short_slices() {
        let mut empty: [u8; 0] = [];
        by_key(&mut empty, |x| *x);
        let mut one = [7];
        by_key(&mut one, |x| *x);
        assert_eq!(one, [7]);
        let mut two = [2, 1];
        by_key(&mut two, |x| *x);
        assert_eq!(two, [1, 2]);
    }

    /// A key given twice keeps its last value, as `collect` does.
    #[test]
    fn map_is_collect() {
        let pairs = vec![("b", 1), ("a", 2), ("b", 3), ("c", 4), ("a", 5)];
        let want: BTreeMap<_, _> = pairs.clone().into_iter().collect();
        let got = map(pairs);
        assert_eq!(got, want);
        assert_eq!(got.get("b"), Some(&3));
        assert_eq!(got.get("a"), Some(&5));
    }
}
