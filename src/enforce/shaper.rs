//! Shaping: token buckets with a bounded delay queue.
//!
//! Each bucket is a GCRA (generic cell rate algorithm), the virtual-clock
//! form of a token bucket: a packet of `b` bytes on a bucket of rate `r`
//! and size `B` departs at `max(now, tat - B/r)` and pushes the bucket's
//! theoretical arrival time `tat` on by `b/r`. Packets that may leave at
//! once do; the others wait in one queue ordered by departure time, and a
//! packet that would wait longer than the bound is dropped instead (the
//! only time shaping drops). Buckets are keyed by the throttle's scope, so
//! several flows can share one.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};
use std::time::{Duration, Instant};

use crate::pipeline::BucketKey;
use crate::policy::Throttle;

/// Longest a packet may wait in a throttle's queue, by default.
pub const DEFAULT_MAX_DELAY: Duration = Duration::from_millis(500);

/// What became of an offered packet.
#[derive(Debug)]
pub enum Shaped<T> {
    /// It may leave now.
    Now(T),
    /// It waits; [`Shaper::due`] gives it back when it may leave.
    Held,
    /// The queue bound was hit: drop it.
    Dropped(T),
}

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tat: Instant,
}

struct Held<T> {
    at: Instant,
    seq: u64,
    item: T,
}

impl<T> PartialEq for Held<T> {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl<T> Eq for Held<T> {}
impl<T> PartialOrd for Held<T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<T> Ord for Held<T> {
    // Reversed: BinaryHeap is a max-heap and the earliest must come first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// Token buckets and the queue of held packets.
pub struct Shaper<T> {
    buckets: HashMap<BucketKey, Bucket>,
    queue: BinaryHeap<Held<T>>,
    max_delay: Duration,
    max_held: usize,
    seq: u64,
    last_sweep: Option<Instant>,
}

impl<T> Shaper<T> {
    /// A shaper holding packets at most `max_delay`, and at most `max_held`
    /// packets in all.
    pub fn new(max_delay: Duration, max_held: usize) -> Self {
        Shaper {
            buckets: HashMap::new(),
            queue: BinaryHeap::new(),
            max_delay,
            max_held,
            seq: 0,
            last_sweep: None,
        }
    }

    /// Offers a packet of `bytes` to the bucket `key`.
    pub fn offer(
        &mut self,
        key: BucketKey,
        throttle: &Throttle,
        bytes: usize,
        now: Instant,
        item: T,
    ) -> Shaped<T> {
        self.sweep(now);
        let rate = throttle.rate_bps.max(1) as f64;
        let cost = Duration::from_secs_f64(bytes as f64 * 8.0 / rate);
        let tolerance = Duration::from_secs_f64(throttle.burst_bytes as f64 * 8.0 / rate);
        let bucket = self.buckets.entry(key).or_insert(Bucket { tat: now });
        let tat = bucket.tat.max(now);
        let depart = tat.checked_sub(tolerance).map_or(now, |t| t.max(now));
        if depart.duration_since(now) > self.max_delay
            || (depart > now && self.queue.len() >= self.max_held)
        {
            return Shaped::Dropped(item);
        }
        bucket.tat = tat + cost;
        if depart <= now {
            return Shaped::Now(item);
        }
        self.seq += 1;
        self.queue.push(Held {
            at: depart,
            seq: self.seq,
            item,
        });
        Shaped::Held
    }

    /// The next held packet whose time has come.
    pub fn due(&mut self, now: Instant) -> Option<T> {
        if self.queue.peek().is_some_and(|h| h.at <= now) {
            return self.queue.pop().map(|h| h.item);
        }
        None
    }

    /// When the next held packet may leave.
    pub fn next_due(&self) -> Option<Instant> {
        self.queue.peek().map(|h| h.at)
    }

    /// Packets held now.
    pub fn held(&self) -> usize {
        self.queue.len()
    }

    /// Every held packet, in departure order (at shutdown).
    pub fn drain(&mut self) -> Vec<T> {
        let mut out = Vec::with_capacity(self.queue.len());
        while let Some(h) = self.queue.pop() {
            out.push(h.item);
        }
        out
    }

    /// Forgets buckets idle for a while (their state would be full anyway).
    fn sweep(&mut self, now: Instant) {
        if self
            .last_sweep
            .is_some_and(|t| now.duration_since(t) < Duration::from_secs(10))
        {
            return;
        }
        self.last_sweep = Some(now);
        self.buckets
            .retain(|_, b| b.tat + Duration::from_secs(10) > now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Scope;

    fn throttle(rate_bps: u64, burst_bytes: u64) -> Throttle {
        Throttle {
            rate_bps,
            burst_bytes,
            scope: Scope::Flow,
        }
    }

    #[test]
    fn a_burst_passes_then_packets_leave_at_the_rate() {
        let t0 = Instant::now();
        let mut s = Shaper::new(Duration::from_secs(10), 1000);
        let th = throttle(1_000_000, 3000); // 1 Mbit/s, 3000-byte bucket
        let key = BucketKey::Flow(1);
        let mut now_count = 0;
        for i in 0..10 {
            match s.offer(key, &th, 1000, t0, i) {
                Shaped::Now(_) => now_count += 1,
                Shaped::Held => {}
                Shaped::Dropped(_) => panic!("dropped"),
            }
        }
        // The bucket's 3000 bytes (plus the first packet) leave at once.
        assert_eq!(now_count, 4);
        // The rest leave 8 ms apart (1000 bytes at 1 Mbit/s).
        let mut departures = Vec::new();
        while let Some(at) = s.next_due() {
            departures.push(at.duration_since(t0));
            s.due(at).unwrap();
        }
        assert_eq!(departures.len(), 6);
        for (i, d) in departures.iter().enumerate() {
            let want = Duration::from_millis(8 * (i as u64 + 1));
            assert!(
                (d.as_secs_f64() - want.as_secs_f64()).abs() < 1e-6,
                "{i}: {d:?} vs {want:?}"
            );
        }
    }

    #[test]
    fn over_a_long_run_the_rate_is_the_configured_one() {
        let t0 = Instant::now();
        let mut s = Shaper::new(Duration::from_secs(1000), 1_000_000);
        let th = throttle(1_000_000, 16_000);
        let key = BucketKey::Rule(None);
        let (mut sent, mut last) = (0usize, t0);
        for i in 0..2000u32 {
            if let Shaped::Now(_) = s.offer(key, &th, 1500, t0, i) {
                sent += 1500;
            }
        }
        while let Some(at) = s.next_due() {
            s.due(at).unwrap();
            sent += 1500;
            last = at;
        }
        let secs = last.duration_since(t0).as_secs_f64();
        let rate = (sent - 16_000) as f64 * 8.0 / secs;
        assert!((rate - 1e6).abs() / 1e6 < 0.01, "{rate}");
    }

    #[test]
    fn the_delay_bound_drops_and_buckets_are_separate() {
        let t0 = Instant::now();
        let mut s = Shaper::new(Duration::from_millis(50), 1000);
        let th = throttle(1_000_000, 1514); // 12 ms per 1500-byte packet
        let (mut held, mut dropped) = (0, 0);
        for i in 0..20 {
            match s.offer(BucketKey::Flow(1), &th, 1500, t0, i) {
                Shaped::Held => held += 1,
                Shaped::Dropped(_) => dropped += 1,
                Shaped::Now(_) => {}
            }
        }
        // Two leave at once (the first, and the bucket's one frame), four
        // fit in 50 ms of queue, the rest would wait longer.
        assert_eq!(held, 4, "50 ms holds four 12 ms packets");
        assert_eq!(dropped, 14);
        // Another flow's bucket is untouched.
        assert!(matches!(
            s.offer(BucketKey::Flow(2), &th, 1500, t0, 99),
            Shaped::Now(_)
        ));
    }
}
