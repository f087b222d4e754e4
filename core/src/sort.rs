//! Ordering without std's sort, for the size of the module (issue 13).
//!
//! Every element type given to `sort`, `sort_by`, `sort_by_key` or `sort_unstable*`, and every
//! key type of a `collect()` into a `BTreeMap` or `BTreeSet` (`from_iter` sorts its input with
//! the stable sort before building the tree), instantiates std's driftsort / quicksort /
//! smallsort: ~3.5 KB of wasm per type, ~30 KB for this crate's seven. What the filter orders is
//! small (the conditions of one rule, a model's targets, a fleet's models), so:
//!
//! - [`by_key`] and [`insertion`]: an insertion sort, stable, O(n²) comparisons and swaps: for
//!   slices whose length the operator's configuration bounds, or short ones, never for what a
//!   client can grow.
//! - [`stable_order`]: a merge sort of indices, O(n log n), for what a client can grow (the
//!   entries of a JSON or MessagePack object): one copy whatever is ordered, as it moves
//!   indices and asks the caller to compare.
//!
//! Sets, and maps the configuration bounds, are `vecmap`'s sorted `Vec`s instead.

use std::cmp::Ordering;

/// Sorts `v` by `key`, stably (equal keys keep their order), in O(n²): only for short slices
/// whose length the configuration bounds (see the module documentation).
pub fn by_key<T, K: Ord>(v: &mut [T], mut key: impl FnMut(&T) -> K) {
    insertion(v, |a, b| key(a).cmp(&key(b)));
}

/// Sorts `v` by `cmp`, stably, in place: an insertion sort, O(n²), no allocation. For slices
/// the configuration bounds, or short ones (`VecMap::from_entries` below 17 entries).
pub fn insertion<T>(v: &mut [T], mut cmp: impl FnMut(&T, &T) -> Ordering) {
    for i in 1..v.len() {
        let mut j = i;
        // Moves v[i] down past every earlier element that orders after it (not an equal one).
        while let Some(prev) = j.checked_sub(1) {
            match (v.get(prev), v.get(j)) {
                (Some(a), Some(b)) if cmp(a, b) == Ordering::Greater => v.swap(prev, j),
                _ => break,
            }
            j = prev;
        }
    }
}

/// The indices `0..n` ordered by `cmp`, stably (equal items keep their order): a bottom-up
/// merge sort, O(n log n) comparisons.
pub fn stable_order(n: usize, cmp: &mut dyn FnMut(usize, usize) -> Ordering) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    let mut merged = vec![0; n];
    let mut width = 1usize;
    while width < n {
        let mut start = 0;
        while start < n {
            let mid = start.saturating_add(width).min(n);
            let end = mid.saturating_add(width).min(n);
            let (left, right) = (
                order.get(start..mid).unwrap_or_default(),
                order.get(mid..end).unwrap_or_default(),
            );
            merge(
                left,
                right,
                merged.get_mut(start..end).unwrap_or_default(),
                cmp,
            );
            start = end;
        }
        std::mem::swap(&mut order, &mut merged);
        width = width.saturating_mul(2);
    }
    order
}

/// Moves the items of a slice, by `swap`, so that the item at `order[i]` ends at `i` (`order` a
/// permutation of its indices, as `stable_order` gives). `order` is used up on the way.
pub fn permute(order: &mut [usize], swap: &mut dyn FnMut(usize, usize)) {
    for start in 0..order.len() {
        // Each cycle of the permutation by swaps along it; a placed index points at itself.
        let mut at = start;
        while let Some(from) = order.get_mut(at).map(|from| std::mem::replace(from, at)) {
            if from == start || from == at {
                break;
            }
            swap(at, from);
            at = from;
        }
    }
}

/// `left` and `right`, each in order, into `out` in order; of equal items `left`'s first.
fn merge(
    left: &[usize],
    right: &[usize],
    out: &mut [usize],
    cmp: &mut dyn FnMut(usize, usize) -> Ordering,
) {
    let (mut l, mut r) = (left.iter().peekable(), right.iter().peekable());
    for slot in out {
        let from_right = match (l.peek(), r.peek()) {
            (Some(&&a), Some(&&b)) => cmp(b, a) == Ordering::Less,
            (None, _) => true,
            (Some(_), None) => false,
        };
        let next = if from_right { r.next() } else { l.next() };
        *slot = next.copied().unwrap_or_default();
    }
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

    /// Every permutation of up to 6 items lands each item where `order` says.
    #[test]
    fn permute_places_every_item() {
        fn each(n: usize, prefix: &mut Vec<usize>, check: &mut dyn FnMut(&[usize])) {
            if prefix.len() == n {
                return check(prefix);
            }
            for i in 0..n {
                if !prefix.contains(&i) {
                    prefix.push(i);
                    each(n, prefix, check);
                    prefix.pop();
                }
            }
        }
        for n in 0..=6 {
            each(n, &mut Vec::new(), &mut |order| {
                let mut items: Vec<usize> = (0..n).map(|i| i * 10).collect();
                let mut scratch = order.to_vec();
                permute(&mut scratch, &mut |a, b| items.swap(a, b));
                let want: Vec<usize> = order.iter().map(|i| i * 10).collect();
                assert_eq!(items, want, "{order:?}");
            });
        }
    }

    /// Against std's stable sort on every sequence of up to 7 keys from 0..3, and on longer
    /// ones (odd lengths, runs).
    #[test]
    fn stable_order_matches_std_stable_sort() {
        let check = |keys: &[u32]| {
            let got = stable_order(keys.len(), &mut |a, b| keys[a].cmp(&keys[b]));
            let mut want: Vec<usize> = (0..keys.len()).collect();
            want.sort_by_key(|&i| keys[i]);
            assert_eq!(got, want, "{keys:?}");
        };
        for len in 0..=7u32 {
            for code in 0..3u32.pow(len) {
                let mut c = code;
                let keys: Vec<u32> = (0..len)
                    .map(|_| {
                        let k = c % 3;
                        c /= 3;
                        k
                    })
                    .collect();
                check(&keys);
            }
        }
        for len in [100u32, 257, 1000] {
            check(&(0..len).map(|i| (i * 7919) % 13).collect::<Vec<_>>());
            check(&(0..len).rev().collect::<Vec<_>>());
        }
    }
}
