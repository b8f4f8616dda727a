//! The flow table: bidirectional flows keyed by [`FlowKey`], ended by idle
//! timeouts measured in packet time, by TCP teardown, or by eviction when the
//! table is full.
//!
//! A flow idle for longer than its timeout ends when its next packet comes
//! (which then opens a new flow) or at the owner's next call to
//! [`FlowTable::expire`], whichever is first; so when expiry runs changes
//! only when a record is reported, never what it holds.
//!
//! Flows live in a slab. Each flow sits in one of four lists, one per timeout
//! class (TCP opening, TCP established, TCP closing, UDP), kept in order of
//! last activity; so the next flow to time out is always at the head of one
//! of the lists and expiry costs O(1) per packet. The longest-idle flow,
//! evicted when the table is full, is the oldest of the four heads.

use std::hash::BuildHasher;

use hashbrown::{DefaultHashBuilder, HashTable};

use super::key::{Direction, Endpoint, FlowKey};
use crate::decode::{Packet, TcpFlags, Transport};
use crate::prefetch::read as prefetch;
use crate::timestamp::{Duration, Timestamp};

/// Limits and timeouts of the flow table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlowConfig {
    /// Concurrent flows at most; the longest-idle flow is evicted beyond it.
    pub max_flows: usize,
    /// Idle timeout of a TCP flow whose handshake has not completed.
    pub tcp_opening_timeout: Duration,
    /// Idle timeout of an established TCP flow.
    pub tcp_established_timeout: Duration,
    /// Idle timeout after FIN in both directions or RST.
    pub tcp_closing_timeout: Duration,
    /// Idle timeout of a UDP flow.
    pub udp_timeout: Duration,
    /// Seed of the hash that splits flows between the engine's shards,
    /// whose tables each hold a share of `max_flows` (see
    /// [`FlowKey::shard_hash`](super::FlowKey::shard_hash)); `None`: taken
    /// from the input's first frame (see `pipeline::ShardSeed`).
    pub hash_seed: Option<u64>,
}

impl Default for FlowConfig {
    fn default() -> Self {
        FlowConfig {
            max_flows: 1_000_000,
            tcp_opening_timeout: Duration::from_secs(60),
            tcp_established_timeout: Duration::from_secs(300),
            tcp_closing_timeout: Duration::from_secs(15),
            udp_timeout: Duration::from_secs(60),
            hash_seed: None,
        }
    }
}

/// Why a flow left the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndReason {
    /// Idle for longer than its timeout.
    IdleTimeout,
    /// Evicted because the table was full.
    Evicted,
    /// A new TCP connection reused the key of a closed one.
    Reused,
    /// The input ended.
    EndOfInput,
}

impl EndReason {
    /// Stable name for output.
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::IdleTimeout => "idle_timeout",
            EndReason::Evicted => "evicted",
            EndReason::Reused => "reused",
            EndReason::EndOfInput => "end_of_input",
        }
    }
}

/// TCP flags seen on a flow, per side.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpSeen(u8);

impl TcpSeen {
    const SYN_O: u8 = 0x01;
    const SYN_R: u8 = 0x02;
    const FIN_O: u8 = 0x04;
    const FIN_R: u8 = 0x08;
    const RST: u8 = 0x10;

    fn record(&mut self, dir: Direction, flags: TcpFlags) {
        let (syn, fin) = match dir {
            Direction::Originator => (Self::SYN_O, Self::FIN_O),
            Direction::Responder => (Self::SYN_R, Self::FIN_R),
        };
        if flags.has(TcpFlags::SYN) {
            self.0 |= syn;
        }
        if flags.has(TcpFlags::FIN) {
            self.0 |= fin;
        }
        if flags.has(TcpFlags::RST) {
            self.0 |= Self::RST;
        }
    }

    /// FIN seen both ways, or a RST.
    pub fn closed(self) -> bool {
        self.0 & Self::RST != 0 || self.0 & (Self::FIN_O | Self::FIN_R) == Self::FIN_O | Self::FIN_R
    }

    /// A RST was seen.
    pub fn reset(self) -> bool {
        self.0 & Self::RST != 0
    }

    /// A SYN was seen from the originator.
    pub fn syn_from_originator(self) -> bool {
        self.0 & Self::SYN_O != 0
    }
}

/// One tracked flow. `T` is what the owner of the table keeps per flow
/// (for p2pguard: the detection state).
#[derive(Clone, Debug)]
pub struct Flow<T> {
    /// The key (endpoints unordered).
    pub key: FlowKey,
    /// A number unique within the run, given by the owner (p2pguard: the
    /// input position of the flow's first packet).
    pub id: u64,
    /// The originator is `key.lo` (else `key.hi`).
    originator_is_lo: bool,
    /// Timestamp of the first packet.
    pub first_seen: Timestamp,
    /// Timestamp of the latest packet.
    pub last_seen: Timestamp,
    /// Packets per side, indexed by [`Direction::index`].
    pub packets: [u64; 2],
    /// Frame bytes per side (original length on the wire).
    pub bytes: [u64; 2],
    /// TCP flags seen.
    pub tcp: TcpSeen,
    /// The owner's per-flow state.
    pub ext: T,
}

impl<T> Flow<T> {
    /// The originator (sender of the first packet; for TCP, the SYN's sender).
    pub fn originator(&self) -> Endpoint {
        if self.originator_is_lo {
            self.key.lo
        } else {
            self.key.hi
        }
    }

    /// The responder.
    pub fn responder(&self) -> Endpoint {
        if self.originator_is_lo {
            self.key.hi
        } else {
            self.key.lo
        }
    }

    /// Total packets both ways.
    pub fn total_packets(&self) -> u64 {
        self.packets[0] + self.packets[1]
    }
}

/// Counters kept by the table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FlowTableStats {
    /// Flows created.
    pub created: u64,
    /// Flows ended by idle timeout.
    pub timed_out: u64,
    /// Flows evicted because the table was full.
    pub evicted: u64,
    /// TCP flows ended because a new SYN reused their key.
    pub reused: u64,
    /// Most flows held at once.
    pub peak: u64,
}

/// A packet's flow key, whether its sender is the key's lower endpoint, and
/// the key's hash in one table (see [`FlowTable::lookup`]).
#[derive(Clone, Copy, Debug)]
pub(crate) struct FlowLookup {
    key: FlowKey,
    src_is_lo: bool,
    /// For the prefetch hints.
    pub(crate) hash: u64,
}

/// Handle to a flow in the table, valid until the next mutation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowRef(u32);

/// Outcome of [`FlowTable::track`].
#[derive(Clone, Copy, Debug)]
pub struct Tracked {
    /// The flow the packet belongs to.
    pub flow: FlowRef,
    /// Which way the packet travels.
    pub direction: Direction,
    /// The packet opened a new flow.
    pub is_new: bool,
}

const NONE: u32 = u32::MAX;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Class {
    TcpOpening = 0,
    TcpEstablished = 1,
    TcpClosing = 2,
    Udp = 3,
}

#[derive(Clone, Copy, Debug)]
struct List {
    head: u32,
    tail: u32,
}

/// A flow's place in its timeout list. Links live apart from the flows, in
/// one compact array, so that moving a flow to the back of its list touches
/// a few bytes of its neighbours rather than their whole (large) flows.
#[derive(Clone, Copy, Debug)]
struct Link {
    prev: u32,
    next: u32,
    class: Class,
}

const UNLINKED: Link = Link {
    prev: NONE,
    next: NONE,
    class: Class::Udp,
};

/// How many flows ahead [`FlowTable::idle_flows`] fetches the flows of the
/// list it walks.
const WALK_AHEAD: usize = 4;

/// Flows live in pages of this many slots, allocated as the table grows
/// and kept for reuse: growing never copies the flows already held, and a
/// table costs at most one partly used page beyond its flows.
const PAGE: usize = 256;

/// Flows the index has room for from the start, if the table may hold as
/// many: growing it rehashes every flow's key, each a cache miss (with the
/// default cap, each of the 64 shards' tables holds at most 15,625). The
/// room costs 5 bytes a flow, 8/7 of that as slack, mostly untouched.
const INDEX_RESERVE: usize = 1 << 14;

/// The slab of flows, in pages.
#[derive(Debug)]
struct Slab<T> {
    pages: Vec<Box<[Option<Flow<T>>]>>,
    len: usize,
}

impl<T> Slab<T> {
    fn get(&self, i: u32) -> &Option<Flow<T>> {
        let i = i as usize;
        &self.pages[i / PAGE][i % PAGE]
    }

    fn get_mut(&mut self, i: u32) -> &mut Option<Flow<T>> {
        let i = i as usize;
        &mut self.pages[i / PAGE][i % PAGE]
    }

    /// A new slot at the end.
    fn push(&mut self, flow: Flow<T>) -> u32 {
        if self.len == self.pages.len() * PAGE {
            self.pages.push((0..PAGE).map(|_| None).collect());
        }
        let i = self.len as u32;
        self.len += 1;
        *self.get_mut(i) = Some(flow);
        i
    }
}

/// The flow table; see the module documentation.
#[derive(Debug)]
pub struct FlowTable<T> {
    config: FlowConfig,
    /// Slab indices, found by the hash of their flow's key (the key itself
    /// lives in the node only, which keeps an index entry at 4 bytes).
    index: HashTable<u32>,
    hasher: DefaultHashBuilder,
    nodes: Slab<T>,
    links: Vec<Link>,
    free: Vec<u32>,
    lists: [List; 4],
    stats: FlowTableStats,
    /// Where the index's control bytes start, as last seen: only to
    /// prefetch (see [`FlowTable::prefetch_index`]), never dereferenced.
    index_ctrl: usize,
}

impl<T: Default> FlowTable<T> {
    /// An empty table.
    pub fn new(config: FlowConfig) -> Self {
        FlowTable {
            index: HashTable::with_capacity(config.max_flows.min(INDEX_RESERVE)),
            config,
            hasher: DefaultHashBuilder::default(),
            nodes: Slab {
                pages: Vec::new(),
                len: 0,
            },
            links: Vec::new(),
            free: Vec::new(),
            lists: [List {
                head: NONE,
                tail: NONE,
            }; 4],
            stats: FlowTableStats::default(),
            index_ctrl: 0,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &FlowConfig {
        &self.config
    }

    /// Flows currently held.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Whether the table holds no flow.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Counters.
    pub fn stats(&self) -> &FlowTableStats {
        &self.stats
    }

    /// The flow behind a handle.
    pub fn get(&self, r: FlowRef) -> &Flow<T> {
        self.node(r.0)
    }

    /// The flow behind a handle, mutably.
    pub fn get_mut(&mut self, r: FlowRef) -> &mut Flow<T> {
        self.node_mut(r.0)
    }

    /// The key of `packet`'s flow and its hash in this table: for
    /// [`FlowTable::prefetch_index`], [`FlowTable::prefetch_flow`] and
    /// [`FlowTable::track_looked_up`].
    pub(crate) fn lookup(&self, packet: &Packet<'_>) -> FlowLookup {
        let src = Endpoint::new(packet.src, packet.src_port);
        let dst = Endpoint::new(packet.dst, packet.dst_port);
        let (key, src_is_lo) = FlowKey::new(packet.transport, src, dst);
        FlowLookup {
            key,
            src_is_lo,
            hash: self.hasher.hash_one(key),
        }
    }

    /// Asks the CPU to fetch the index entries a look-up of `hash` will
    /// read first, so that a caller who knows its next packets can overlap
    /// their cache misses. A hint only: the addresses follow hashbrown's
    /// layout (values stored downwards before the control bytes, the probe
    /// starting at `hash & mask`); were that to change, the prefetch would
    /// fetch the wrong lines and nothing else would differ.
    #[inline]
    pub fn prefetch_index(&self, hash: u64) {
        if self.index_ctrl == 0 {
            return;
        }
        let pos = (hash as usize) & (self.index.num_buckets() - 1);
        prefetch(self.index_ctrl.wrapping_add(pos));
        let slot = std::mem::size_of::<u32>();
        prefetch(self.index_ctrl.wrapping_sub((pos + 1) * slot));
    }

    /// Asks the CPU to fetch the flow a look-up of `hash` would find (the
    /// first whose hash tag matches; its key is not compared, which would
    /// wait for the flow to arrive), best after
    /// [`FlowTable::prefetch_index`] has had time to bring the index in.
    /// Says whether there was one: if not, the packet most likely opens a
    /// flow (see [`FlowTable::prefetch_free`]).
    #[inline]
    pub fn prefetch_flow(&self, hash: u64) -> bool {
        match self.index.find(hash, |_| true) {
            Some(&i) => {
                self.prefetch_node(FlowRef(i));
                true
            }
            None => false,
        }
    }

    /// Asks the CPU to fetch the slot the `k`-th next new flow will take
    /// (counting from 0) if no flow ends before it. That slot was last
    /// touched when the flow before ended, long since, and writing a new
    /// flow into it would wait for it.
    #[inline]
    pub fn prefetch_free(&self, k: usize) {
        let i = self.next_slot(k);
        if i / PAGE >= self.nodes.pages.len() {
            return;
        }
        let node = &self.nodes.pages[i / PAGE][i % PAGE] as *const Option<Flow<T>> as usize;
        let size = std::mem::size_of::<Option<Flow<T>>>();
        for line in (0..size).step_by(64) {
            prefetch(node + line);
        }
        prefetch(node + size - 1);
        if let Some(link) = self.links.get(i) {
            prefetch(link as *const Link as usize);
        }
    }

    /// The slot the `k`-th next new flow takes (counting from 0) if no
    /// flow ends before it: free slots go last freed first, then new ones.
    fn next_slot(&self, k: usize) -> usize {
        match self.free.len().checked_sub(k + 1) {
            Some(j) => self.free[j] as usize,
            None => self.nodes.len + (k - self.free.len()),
        }
    }

    /// Asks the CPU to fetch the flow behind `r` and its list links.
    #[inline]
    pub fn prefetch_node(&self, r: FlowRef) {
        let node = self.nodes.get(r.0) as *const Option<Flow<T>> as usize;
        let size = std::mem::size_of::<Option<Flow<T>>>();
        for line in (0..size).step_by(64) {
            prefetch(node + line);
        }
        prefetch(node + size - 1);
        prefetch(&self.links[r.0 as usize] as *const Link as usize);
    }

    /// Asks the CPU to fetch what taking out the flow behind `r` will
    /// touch besides the flow: its index entries and its list neighbours.
    #[inline]
    pub fn prefetch_removal(&self, r: FlowRef) {
        let Some(flow) = self.nodes.get(r.0).as_ref() else {
            return;
        };
        self.prefetch_index(self.hasher.hash_one(flow.key));
        let link = self.links[r.0 as usize];
        for i in [link.prev, link.next] {
            if i != NONE {
                prefetch(&self.links[i as usize] as *const Link as usize);
            }
        }
    }

    /// Finds or creates (with id `id`) the flow of `packet`, counts the
    /// packet on it and updates its TCP state and timeout class. Flows that
    /// must end first (the packet's own flow if it was idle for longer than
    /// its timeout, a closed TCP flow whose key a new SYN reuses, or the
    /// longest-idle flow when the table is full) are passed to `ended`.
    pub fn track(
        &mut self,
        packet: &Packet<'_>,
        wire_len: u32,
        ts: Timestamp,
        id: u64,
        ended: &mut impl FnMut(Flow<T>, EndReason),
    ) -> Tracked {
        let lookup = self.lookup(packet);
        // The index's control bytes and its slot numbers live apart, and a
        // look-up reads the first, then the second: fetching both at once
        // overlaps their cache misses (with one thread, about 6% of the run on
        // the benchmark capture).
        self.prefetch_index(lookup.hash);
        self.track_looked_up(packet, &lookup, wire_len, ts, id, ended)
    }

    /// [`FlowTable::track`] for a packet whose [`FlowTable::lookup`] (in
    /// this table: each table's hasher has its own seed) is made. A hash
    /// from another table would index the flow where no look-up finds it,
    /// hence only within the crate.
    pub(crate) fn track_looked_up(
        &mut self,
        packet: &Packet<'_>,
        lookup: &FlowLookup,
        wire_len: u32,
        ts: Timestamp,
        id: u64,
        ended: &mut impl FnMut(Flow<T>, EndReason),
    ) -> Tracked {
        let FlowLookup {
            key,
            src_is_lo,
            hash,
        } = *lookup;
        debug_assert_eq!(hash, self.hasher.hash_one(key), "another table's hash");
        let flags = packet.tcp_flags;
        let opening_syn = flags.has(TcpFlags::SYN) && !flags.has(TcpFlags::ACK);

        let nodes = &self.nodes;
        let mut existing = self
            .index
            .find(hash, |i| {
                nodes.get(*i).as_ref().is_some_and(|f| f.key == key)
            })
            .copied();
        if let Some(i) = existing {
            let class = self.links[i as usize].class;
            if ts.since(self.node(i).last_seen) > self.timeout(class) {
                let flow = self.remove(i);
                self.stats.timed_out += 1;
                ended(flow, EndReason::IdleTimeout);
                existing = None;
            } else if opening_syn && class == Class::TcpClosing {
                let flow = self.remove(i);
                self.stats.reused += 1;
                ended(flow, EndReason::Reused);
                existing = None;
            }
        }
        let (i, is_new) = match existing {
            Some(i) => (i, false),
            None => {
                if self.index.len() >= self.config.max_flows.max(1)
                    && let Some(victim) = self.longest_idle()
                {
                    let flow = self.remove(victim);
                    self.stats.evicted += 1;
                    ended(flow, EndReason::Evicted);
                }
                // The originator sends the first packet; a SYN-ACK seen first
                // means the capture missed the SYN, so its receiver began.
                let syn_ack = flags.has(TcpFlags::SYN | TcpFlags::ACK);
                let originator_is_lo = src_is_lo != syn_ack;
                (self.insert(key, hash, originator_is_lo, ts, id), true)
            }
        };

        let flow = self.node_mut(i);
        let direction = if flow.originator_is_lo == src_is_lo {
            Direction::Originator
        } else {
            Direction::Responder
        };
        let d = direction.index();
        flow.packets[d] += 1;
        flow.bytes[d] += u64::from(wire_len);
        if ts > flow.last_seen {
            flow.last_seen = ts;
        }
        if packet.transport == Transport::Tcp {
            flow.tcp.record(direction, flags);
        }
        let class = Self::classify(flow);
        // Already last in its list (a burst of one flow): nothing to move.
        if self.links[i as usize].class != class || self.lists[class as usize].tail != i {
            self.unlink(i);
            self.push_back(i, class);
        }
        Tracked {
            flow: FlowRef(i),
            direction,
            is_new,
        }
    }

    /// Ends every flow idle for longer than its timeout at packet time `now`.
    pub fn expire(&mut self, now: Timestamp, ended: &mut impl FnMut(Flow<T>, EndReason)) {
        let mut idle = Vec::new();
        self.idle_flows(now, |_, r| idle.push(r));
        for r in idle {
            ended(self.take_idle(r), EndReason::IdleTimeout);
        }
    }

    /// Gives `each` the id and handle of every flow idle for longer than
    /// its timeout at packet time `now`, without ending any: the caller
    /// ends them with [`FlowTable::take_idle`], in the order it chooses.
    pub fn idle_flows(&self, now: Timestamp, mut each: impl FnMut(u64, FlowRef)) {
        for class in [
            Class::TcpOpening,
            Class::TcpEstablished,
            Class::TcpClosing,
            Class::Udp,
        ] {
            let timeout = self.timeout(class);
            let mut at = self.lists[class as usize].head;
            // Once the head has timed out, the flows a few places further
            // down the list are fetched ahead (the links are compact; the
            // flows miss the cache).
            let mut ahead = None;
            while at != NONE {
                let flow = self.node(at);
                if now.since(flow.last_seen) <= timeout {
                    break;
                }
                each(flow.id, FlowRef(at));
                let next = self.links[at as usize].next;
                let steps = if ahead.is_none() { WALK_AHEAD } else { 1 };
                let mut a = ahead.unwrap_or(next);
                for _ in 0..steps {
                    if a == NONE {
                        break;
                    }
                    self.prefetch_node(FlowRef(a));
                    a = self.links[a as usize].next;
                }
                ahead = Some(a);
                at = next;
            }
        }
    }

    /// Takes out a flow [`FlowTable::idle_flows`] listed, counted as timed
    /// out.
    pub fn take_idle(&mut self, r: FlowRef) -> Flow<T> {
        self.stats.timed_out += 1;
        self.remove(r.0)
    }

    /// Every flow held, by id and handle (in no particular order).
    pub fn open_flows(&self) -> impl Iterator<Item = (u64, FlowRef)> + '_ {
        self.index.iter().map(|i| (self.node(*i).id, FlowRef(*i)))
    }

    /// Takes a flow out of the table (the handle is then invalid).
    pub fn take(&mut self, r: FlowRef) -> Flow<T> {
        self.remove(r.0)
    }

    /// Ends every flow, in order of creation.
    pub fn drain(&mut self, ended: &mut impl FnMut(Flow<T>, EndReason)) {
        let mut live: Vec<u32> = self.index.iter().copied().collect();
        live.sort_by_key(|i| self.node(*i).id);
        for i in live {
            let flow = self.remove(i);
            ended(flow, EndReason::EndOfInput);
        }
    }

    fn timeout(&self, class: Class) -> Duration {
        match class {
            Class::TcpOpening => self.config.tcp_opening_timeout,
            Class::TcpEstablished => self.config.tcp_established_timeout,
            Class::TcpClosing => self.config.tcp_closing_timeout,
            Class::Udp => self.config.udp_timeout,
        }
    }

    fn classify(flow: &Flow<T>) -> Class {
        match flow.key.transport {
            Transport::Udp => Class::Udp,
            Transport::Tcp if flow.tcp.closed() => Class::TcpClosing,
            Transport::Tcp if flow.packets[1] == 0 && flow.tcp.syn_from_originator() => {
                Class::TcpOpening
            }
            Transport::Tcp => Class::TcpEstablished,
        }
    }

    fn longest_idle(&self) -> Option<u32> {
        self.lists
            .iter()
            .filter(|l| l.head != NONE)
            .map(|l| l.head)
            .min_by_key(|i| (self.node(*i).last_seen, self.node(*i).id))
    }

    fn insert(
        &mut self,
        key: FlowKey,
        hash: u64,
        originator_is_lo: bool,
        ts: Timestamp,
        id: u64,
    ) -> u32 {
        let flow = Flow {
            key,
            id,
            originator_is_lo,
            first_seen: ts,
            last_seen: ts,
            packets: [0; 2],
            bytes: [0; 2],
            tcp: TcpSeen::default(),
            ext: T::default(),
        };
        self.stats.created += 1;
        let i = match self.free.pop() {
            Some(i) => {
                *self.nodes.get_mut(i) = Some(flow);
                self.links[i as usize] = UNLINKED;
                i
            }
            None => {
                self.links.push(UNLINKED);
                self.nodes.push(flow)
            }
        };
        let (nodes, hasher) = (&self.nodes, &self.hasher);
        let entry = self.index.insert_unique(hash, i, |j| {
            nodes.get(*j).as_ref().map_or(0, |f| hasher.hash_one(f.key))
        });
        // The control bytes follow the values, the one of bucket b being
        // the (b + 1)-th before them; an insert is what may move them.
        let value = entry.get() as *const u32 as usize;
        self.index_ctrl = value + (entry.bucket_index() + 1) * std::mem::size_of::<u32>();
        self.stats.peak = self.stats.peak.max(self.index.len() as u64);
        // Linked into its list by the caller's push_back; keep the invariant
        // that every live node is in exactly one list.
        self.push_back(i, Class::Udp);
        i
    }

    fn remove(&mut self, i: u32) -> Flow<T> {
        self.unlink(i);
        let flow = self.nodes.get_mut(i).take().expect("live flow");
        let hash = self.hasher.hash_one(flow.key);
        if let Ok(entry) = self.index.find_entry(hash, |j| *j == i) {
            entry.remove();
        }
        self.free.push(i);
        flow
    }

    fn node(&self, i: u32) -> &Flow<T> {
        self.nodes.get(i).as_ref().expect("live flow")
    }

    fn node_mut(&mut self, i: u32) -> &mut Flow<T> {
        self.nodes.get_mut(i).as_mut().expect("live flow")
    }

    fn unlink(&mut self, i: u32) {
        let Link { prev, next, class } = self.links[i as usize];
        if prev == NONE {
            self.lists[class as usize].head = next;
        } else {
            self.links[prev as usize].next = next;
        }
        if next == NONE {
            self.lists[class as usize].tail = prev;
        } else {
            self.links[next as usize].prev = prev;
        }
        let l = &mut self.links[i as usize];
        l.prev = NONE;
        l.next = NONE;
    }

    fn push_back(&mut self, i: u32, class: Class) {
        let tail = self.lists[class as usize].tail;
        self.links[i as usize] = Link {
            prev: tail,
            next: NONE,
            class,
        };
        if tail == NONE {
            self.lists[class as usize].head = i;
        } else {
            self.links[tail as usize].next = i;
        }
        self.lists[class as usize].tail = i;
    }
}

/// Bytes one flow costs in the table: its slab node plus its share of the
/// hash index (a 4-byte slot number and a control byte, at the index's
/// maximum load factor of 7/8). Facts found in clear text (info-hash, peer
/// ids, client names) are allocated separately, for the few flows that have
/// them.
pub fn bytes_per_flow<T>() -> usize {
    let index_entry = std::mem::size_of::<u32>() + 1;
    std::mem::size_of::<Option<Flow<T>>>()
        + std::mem::size_of::<Link>()
        + (index_entry * 8).div_ceil(7)
}

#[cfg(test)]
mod tests;
