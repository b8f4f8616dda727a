//! A map with a hard cap on its entries: the shape of every piece of state
//! detection keeps across flows (the endpoint cache, host behaviour), so
//! that no traffic can make it grow without bound.
//!
//! When full, it drops an entry that has not been written recently, chosen
//! by the CLOCK (second chance) rule: entries queue in order of insertion;
//! the oldest is dropped unless it was written since it last came to the
//! front, in which case it goes to the back once more. That approximates
//! "least recently written" without touching the queue on every write.

use std::collections::VecDeque;
use std::hash::Hash;

use hashbrown::HashMap;
use hashbrown::hash_map::Entry;

/// A bounded map; see the module documentation.
#[derive(Debug)]
pub struct BoundedMap<K, V> {
    capacity: usize,
    entries: HashMap<K, Slot<V>>,
    /// Insertion order; a key whose stamp no longer matches its entry's
    /// (removed, or removed and inserted again) is stale and skipped.
    order: VecDeque<(K, u32)>,
    next_stamp: u32,
    evicted: u64,
}

#[derive(Debug)]
struct Slot<V> {
    value: V,
    stamp: u32,
    written: bool,
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
        self.entries.get(key).map(|s| &s.value)
    }

    /// Every key held, in no particular order.
    pub fn keys(&self) -> impl Iterator<Item = &K> {
        self.entries.keys()
    }

    /// Removes `key`.
    pub fn remove(&mut self, key: &K) -> Option<V> {
        let removed = self.entries.remove(key).map(|s| s.value);
        if self.order.len() > 2 * self.entries.len() + 64 {
            // Removals leave stale keys in the queue; drop them.
            let entries = &self.entries;
            self.order
                .retain(|(k, stamp)| entries.get(k).is_some_and(|s| s.stamp == *stamp));
        }
        removed
    }

    /// The value of `key`, created with `make` if absent (dropping an entry
    /// by the CLOCK rule if the map is full), and marked as written. `None`
    /// only if the capacity is zero.
    pub fn write(&mut self, key: K, make: impl FnOnce() -> V) -> Option<&mut V> {
        if self.capacity == 0 {
            return None;
        }
        if self.entries.len() >= self.capacity && !self.entries.contains_key(&key) {
            self.drop_one();
        }
        match self.entries.entry(key) {
            Entry::Occupied(o) => {
                let slot = o.into_mut();
                slot.written = true;
                Some(&mut slot.value)
            }
            Entry::Vacant(v) => {
                let stamp = self.next_stamp;
                self.next_stamp = self.next_stamp.wrapping_add(1);
                self.order.push_back((key, stamp));
                let slot = v.insert(Slot {
                    value: make(),
                    stamp,
                    written: false,
                });
                Some(&mut slot.value)
            }
        }
    }

    fn drop_one(&mut self) {
        while let Some((key, stamp)) = self.order.pop_front() {
            let Some(slot) = self.entries.get_mut(&key) else {
                continue;
            };
            if slot.stamp != stamp {
                continue;
            }
            if slot.written {
                slot.written = false;
                self.order.push_back((key, stamp));
                continue;
            }
            self.entries.remove(&key);
            self.evicted += 1;
            return;
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
            if i % 3 == 0 {
                m.remove(&(i % 140));
            }
        }
        assert!(m.len() <= 100 && m.len() >= 95, "{}", m.len());
        assert!(m.queue_len() <= 2 * m.len() + 64);
        let mut zero = BoundedMap::<u8, u8>::new(0);
        assert!(zero.write(1, || 1).is_none());
    }
}
