//! Keeping what threads report in input order without sorting it.
//!
//! Each worker's events and cross-flow writes come out nearly in input
//! order by themselves; [`push_in_order`] keeps each list exactly in order,
//! and [`Merge`] then interleaves the lists, one per shard of a chunk, so
//! nothing large is ever sorted (a flow record is a few hundred bytes;
//! sorting a chunk's records once cost a fifth of a run).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::iter::Peekable;
use std::vec::Drain;

/// Appends `item` to a list kept in order of `key`, after any items with an
/// equal key. The pipeline makes its events and writes in order already
/// (one packet ends at most one flow before its own, older ones by id), so
/// this is a push; the insertion is the safeguard that keeps the merge
/// right should that ever change.
pub fn push_in_order<T, K: Ord>(list: &mut Vec<T>, item: T, key: impl Fn(&T) -> K) {
    let k = key(&item);
    match list.last() {
        Some(last) if key(last) > k => {
            let at = list.iter().rposition(|x| key(x) <= k).map_or(0, |i| i + 1);
            list.insert(at, item);
        }
        _ => list.push(item),
    }
}

/// The items of several lists, each in order of `key`, taken in order of
/// `key`; equal keys come from the earlier list first. The lists are
/// drained, keeping their capacity for reuse. The next item is found by a
/// heap of the lists' heads, so many lists (one per shard) cost little.
pub struct Merge<'a, T, K, F: Fn(&T) -> K> {
    lists: Vec<Peekable<Drain<'a, T>>>,
    heads: BinaryHeap<Reverse<(K, usize)>>,
    key: F,
}

impl<'a, T, K: Ord, F: Fn(&T) -> K> Merge<'a, T, K, F> {
    /// Merges these lists.
    pub fn new(lists: impl IntoIterator<Item = &'a mut Vec<T>>, key: F) -> Self {
        let mut lists: Vec<Peekable<Drain<'a, T>>> =
            lists.into_iter().map(|l| l.drain(..).peekable()).collect();
        let heads = lists
            .iter_mut()
            .enumerate()
            .filter_map(|(i, l)| l.peek().map(|item| Reverse((key(item), i))))
            .collect();
        Merge { lists, heads, key }
    }

    /// The next item and the position of its list among those given to
    /// [`Merge::new`].
    pub fn next_of_list(&mut self) -> Option<(usize, T)> {
        let Reverse((_, i)) = self.heads.pop()?;
        let list = &mut self.lists[i];
        let item = list.next()?;
        if let Some(next) = list.peek() {
            self.heads.push(Reverse(((self.key)(next), i)));
        }
        Some((i, item))
    }

    /// [`Merge::next_of_list`], if `pred` accepts the item's key.
    pub fn next_of_list_if(&mut self, pred: impl FnOnce(&K) -> bool) -> Option<(usize, T)> {
        let Reverse((k, _)) = self.heads.peek()?;
        if !pred(k) {
            return None;
        }
        self.next_of_list()
    }
}

impl<T, K: Ord, F: Fn(&T) -> K> Iterator for Merge<'_, T, K, F> {
    type Item = T;

    fn next(&mut self) -> Option<T> {
        self.next_of_list().map(|(_, item)| item)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pushes_keep_the_list_in_order_and_stable() {
        let mut l: Vec<(u32, char)> = Vec::new();
        for item in [(1, 'a'), (3, 'b'), (2, 'c'), (3, 'd'), (0, 'e'), (2, 'f')] {
            push_in_order(&mut l, item, |x| x.0);
        }
        assert_eq!(
            l,
            [(0, 'e'), (1, 'a'), (2, 'c'), (2, 'f'), (3, 'b'), (3, 'd')]
        );
    }

    #[test]
    fn merges_in_key_order_with_ties_to_the_earlier_list() {
        let mut a = vec![(1, 'a'), (4, 'b'), (4, 'c')];
        let mut b = vec![(0, 'x'), (4, 'y'), (9, 'z')];
        let mut c = Vec::new();
        let merged: Vec<_> = Merge::new([&mut a, &mut b, &mut c], |x| x.0).collect();
        assert_eq!(
            merged,
            [(0, 'x'), (1, 'a'), (4, 'b'), (4, 'c'), (4, 'y'), (9, 'z')]
        );
        assert!(a.is_empty() && b.is_empty());
    }

    #[test]
    fn each_item_comes_with_the_position_of_its_list() {
        let mut a = vec![3, 8];
        let mut empty = Vec::new();
        let mut c = vec![1, 3, 9];
        let mut m = Merge::new([&mut a, &mut empty, &mut c], |x| *x);
        assert_eq!(m.next_of_list_if(|k| *k < 3), Some((2, 1)));
        assert_eq!(m.next_of_list_if(|k| *k < 3), None);
        let rest: Vec<_> = std::iter::from_fn(|| m.next_of_list()).collect();
        assert_eq!(rest, [(0, 3), (2, 3), (0, 8), (2, 9)]);
    }

    #[test]
    fn next_of_list_if_stops_before_a_key_the_predicate_refuses() {
        let mut a = vec![1, 5];
        let mut b = vec![2, 7];
        let mut m = Merge::new([&mut a, &mut b], |x| *x);
        assert_eq!(m.next_of_list_if(|k| *k <= 4), Some((0, 1)));
        assert_eq!(m.next_of_list_if(|k| *k <= 4), Some((1, 2)));
        assert_eq!(m.next_of_list_if(|k| *k <= 4), None);
        assert_eq!(m.collect::<Vec<_>>(), [5, 7]);
    }

    #[test]
    fn merging_equals_a_stable_sort_of_the_concatenation() {
        let mut x: u32 = 7;
        let mut rnd = move || {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x
        };
        for _ in 0..200 {
            let mut lists: Vec<Vec<(u32, u32)>> = (0..rnd() % 5)
                .map(|_| {
                    let mut l = Vec::new();
                    for n in 0..rnd() % 20 {
                        push_in_order(&mut l, (rnd() % 8, n), |x| x.0);
                    }
                    l
                })
                .collect();
            let mut want: Vec<_> = lists.concat();
            want.sort_by_key(|x| x.0);
            let got: Vec<_> = Merge::new(lists.iter_mut(), |x| x.0).collect();
            assert_eq!(got, want);
        }
    }
}
