//! A map with a hard cap on its entries, dropping the least recently
//! written one when full: the shape of every piece of state detection keeps
//! across flows (the endpoint cache, host behaviour), so that no traffic can
//! make it grow without bound.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;

/// A bounded map; see the module documentation.
#[derive(Debug)]
pub struct BoundedMap<K, V> {
    capacity: usize,
    entries: HashMap<K, (V, u64)>,
    /// Write order; a slot whose stamp no longer matches its entry is stale.
    order: VecDeque<(K, u64)>,
    next_stamp: u64,
    evicted: u64,
}

impl<K: Copy + Eq + Hash, V> BoundedMap<K, V> {
    /// An empty map holding at most `capacity` entries.
    pub fn new(capacity: usize) -> Self {
        BoundedMap {
            capacity,
            entries: HashMap::new(),
            order: VecDeque::new(),
            next_stamp: 0,
            evicted: 0,
        }
    }

    /// Entries now.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the map is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Entries dropped because the map was full.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// The value of `key`.
    pub fn get(&self, key: &K) -> Option<&V> {
        self.entries.get(key).map(|(v, _)| v)
    }

    /// Removes `key`.
    pub fn remove(&mut self, key: &K) -> Option<V> {
        self.entries.remove(key).map(|(v, _)| v)
    }

    /// The value of `key`, created with `make` if absent (dropping the least
    /// recently written entry if the map is full), and marked as the most
    /// recently written. `None` only if the capacity is zero.
    pub fn write(&mut self, key: K, make: impl FnOnce() -> V) -> Option<&mut V> {
        if self.capacity == 0 {
            return None;
        }
        let stamp = self.next_stamp;
        self.next_stamp += 1;
        if !self.entries.contains_key(&key) {
            while self.entries.len() >= self.capacity {
                self.drop_oldest();
            }
            self.entries.insert(key, (make(), stamp));
        }
        self.order.push_back((key, stamp));
        if self.order.len() > 2 * self.entries.len() + 64 {
            let entries = &self.entries;
            self.order
                .retain(|(k, s)| entries.get(k).is_some_and(|(_, e)| e == s));
        }
        let slot = self.entries.get_mut(&key)?;
        slot.1 = stamp;
        Some(&mut slot.0)
    }

    fn drop_oldest(&mut self) {
        while let Some((key, stamp)) = self.order.pop_front() {
            if self.entries.get(&key).is_some_and(|(_, s)| *s == stamp) {
                self.entries.remove(&key);
                self.evicted += 1;
                return;
            }
        }
    }

    #[cfg(test)]
    fn queue_len(&self) -> usize {
        self.order.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_the_least_recently_written_entry() {
        let mut m = BoundedMap::new(2);
        *m.write(1, || 0).unwrap() += 10;
        m.write(2, || 20);
        m.write(1, || 0); // 1 is now the most recent
        m.write(3, || 30);
        assert_eq!(m.get(&1), Some(&10));
        assert_eq!(m.get(&2), None);
        assert_eq!(m.get(&3), Some(&30));
        assert_eq!((m.len(), m.evicted()), (2, 1));
        assert_eq!(m.remove(&3), Some(30));
    }

    #[test]
    fn stays_bounded_under_churn_and_rewrites() {
        let mut m = BoundedMap::new(100);
        for i in 0..100_000u32 {
            m.write(i % 150, || i);
            m.write(7, || 0);
        }
        assert_eq!(m.len(), 100);
        assert!(m.queue_len() <= 2 * m.len() + 64);
        let mut zero = BoundedMap::<u8, u8>::new(0);
        assert!(zero.write(1, || 1).is_none());
    }
}
