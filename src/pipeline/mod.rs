//! The packet pipeline: decode, track the flow, detect, decide. It takes
//! bytes, a link type and a packet timestamp, and nothing else: no file, no
//! socket, no clock. Capture sources feed it; outputs and enforcers consume
//! its [`Event`]s (flows as they end, policy decisions as they are made)
//! and the [`PacketAction`] of each packet.
//!
//! Flows are spread over [`SHARDS`] flow tables by a hash of their
//! endpoints that both directions share. A [`Worker`] holds some of the
//! shards: one worker holding all of them is the single-threaded
//! [`Pipeline`]; in the parallel engine ([`parallel`]) each thread's
//! worker takes shards in turn, whichever is free taking the next. What
//! flows teach about other flows ([`shared`]) is read freely and changed
//! in input order.
//!
//! The input is cut into chunks (at most [`CHUNK_PACKETS`] packets or
//! [`CHUNK_SPAN`] of packet time, decided by the input alone). At each
//! chunk's end, flows idle past their timeout are ended; the parallel engine
//! also applies there what the chunk taught, so its results are the same
//! for any number of threads.

mod merge;
mod one_thread;
pub mod parallel;
pub mod shared;
pub mod times;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use crate::decode::{self, LinkType, Packet, Skip, SkipCounts, Transport};
use crate::detect::behaviour::{BehaviourStats, FlowFacts, Notes};
use crate::detect::cache::{CacheStats, Learnt, Lookup, Transports};
use crate::detect::{Confidence, DetectConfig, Detection, FlowState, PacketView, Protocol};
use crate::flow::{
    EndReason, Endpoint, Flow, FlowConfig, FlowKey, FlowLookup, FlowRef, FlowTable, FlowTableStats,
    bytes_per_flow,
};
use crate::output::{Enforced, FlowRecord};
use crate::policy::{Action, Decision, FlowView, Policy, Scope, Throttle};
use crate::timestamp::{Duration, Timestamp};
use shared::{Keyed, Shared, Write};

/// Flow tables per run; each flow belongs to one, by [`shard_of`]. The
/// flow cap is split evenly between them.
pub const SHARDS: usize = 64;

/// Most packets in a chunk.
pub const CHUNK_PACKETS: usize = 4096;

/// Most packet time a chunk spans.
pub const CHUNK_SPAN: Duration = Duration::from_millis(100);

/// The flows shard `shard` may hold of a cap of `max_flows` in all.
pub fn shard_cap(max_flows: usize, shard: usize) -> usize {
    let extra = usize::from(shard < max_flows % SHARDS);
    (max_flows / SHARDS + extra).max(1)
}

/// The seed of the hash that splits flows between the shards
/// ([`FlowKey::shard_hash`]): the one given ([`FlowConfig::hash_seed`]),
/// else one taken from the input's first frame, its exact time and bytes,
/// when it comes (decodable or not). The same input then gives the same
/// seed, so the same report, evictions included; a distant sender would
/// have to guess that frame to pick flows that share a shard, but it is no
/// secret from one who sees or sends it, or where timestamps are coarse or
/// rewritten (the command line's live commands draw a random seed).
#[derive(Clone, Copy, Debug)]
pub struct ShardSeed(Option<u64>);

impl ShardSeed {
    /// The seed `given`, or (`None`) one to take from the first frame.
    pub fn new(given: Option<u64>) -> ShardSeed {
        ShardSeed(given)
    }

    /// The seed, taken from this frame if none is yet.
    pub fn seed(&mut self, ts: Timestamp, frame: &[u8]) -> u64 {
        *self.0.get_or_insert_with(|| {
            use std::hash::BuildHasher;
            foldhash::quality::FixedState::with_seed(0x7032_7067_7561_7264)
                .hash_one((ts.as_nanos(), frame))
        })
    }
}

/// The shard that owns the flow of `packet`, by the hash seeded with
/// `seed` (see [`ShardSeed`]).
pub fn shard_of(packet: &Packet<'_>, seed: u64) -> usize {
    let src = Endpoint::new(packet.src, packet.src_port);
    let dst = Endpoint::new(packet.dst, packet.dst_port);
    (FlowKey::shard_hash(seed, packet.transport, src, dst) % SHARDS as u64) as usize
}

/// Cuts the input into chunks; see the module documentation.
#[derive(Clone, Debug, Default)]
pub struct ChunkCutter {
    start: Option<Timestamp>,
    count: usize,
    latest: Option<Timestamp>,
}

impl ChunkCutter {
    /// Counts a packet; true if it begins a new chunk (the previous one,
    /// if any, having ended before it).
    pub fn begins_chunk(&mut self, ts: Timestamp) -> bool {
        let new = match self.start {
            None => true,
            Some(start) => self.count >= CHUNK_PACKETS || ts.since(start) > CHUNK_SPAN,
        };
        if new {
            self.start = Some(ts);
            self.count = 0;
        }
        self.count += 1;
        self.latest = Some(self.latest.map_or(ts, |l| l.max(ts)));
        new
    }

    /// The latest packet time so far (the time flows expire at).
    pub fn latest(&self) -> Option<Timestamp> {
        self.latest
    }
}

/// What the pipeline reports as it goes.
#[derive(Clone, Debug)]
pub enum Event {
    /// A flow ended (idle timeout, eviction, reuse, end of input).
    FlowEnded(FlowRecord),
    /// The policy decided (or changed its decision) for a flow.
    Verdict(VerdictEvent),
}

/// A policy decision, reported once per decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerdictEvent {
    /// Packet time of the deciding packet.
    pub ts: Timestamp,
    /// The flow's id.
    pub flow: u64,
    /// TCP or UDP.
    pub transport: Transport,
    /// Originator.
    pub src: Endpoint,
    /// Responder.
    pub dst: Endpoint,
    /// The protocol named.
    pub protocol: Protocol,
    /// How sure.
    pub confidence: Confidence,
    /// The evidence so far.
    pub evidence: Vec<String>,
    /// The rule that matched (`default` if none did).
    pub rule: String,
    /// What is done.
    pub action: Action,
}

/// What an enforcer does with one packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PacketAction {
    /// Pass it on.
    Forward,
    /// Drop it (and, for TCP with `reset`, reset both ends).
    Drop {
        /// Send TCP resets.
        reset: bool,
    },
    /// Pass it through the token bucket `bucket`.
    Shape {
        /// Which bucket (by the throttle's scope).
        bucket: BucketKey,
        /// The bucket's rate and size.
        throttle: Throttle,
    },
}

/// Who shares a token bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BucketKey {
    /// One flow.
    Flow(u64),
    /// One host.
    Host(IpAddr),
    /// Every flow of one rule (`None`: the default action).
    Rule(Option<usize>),
}

/// Where a packet's flow stands after the packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlowStatus {
    /// No protocol named yet; detection still looking.
    Undecided,
    /// Named P2P.
    P2p(Protocol),
    /// Detection finished without naming a protocol.
    NotP2p,
}

/// What became of one packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PacketOutcome {
    /// Not tracked (the reason is counted).
    Skipped(Skip),
    /// Counted on a flow.
    Tracked {
        /// The flow's id.
        flow: u64,
        /// The flow's status after this packet.
        status: FlowStatus,
        /// This packet named the protocol or raised the confidence.
        verdict_changed: bool,
        /// What to do with it, by the policy (`Forward` without one).
        action: PacketAction,
        /// Nothing can change for the rest of the flow: detection has
        /// finished without naming it P2P, or named it on the strongest
        /// evidence and it is forwarded. An enforcer may let its later
        /// packets bypass inspection.
        sealed: bool,
    },
}

/// Counters of everything the pipeline saw.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PipelineStats {
    /// Frames given to the pipeline.
    pub packets: u64,
    /// Their bytes (original length on the wire).
    pub bytes: u64,
    /// Frames tracked on a TCP or UDP flow.
    pub tracked: u64,
    /// Frames skipped, by reason.
    pub skipped: SkipCounts,
    /// Tracked frames whose payload was cut short by the snap length.
    pub truncated_payloads: u64,
    /// Flow table counters.
    pub flows: FlowTableStats,
    /// Bytes one flow costs in the table.
    pub bytes_per_flow: usize,
    /// Flows tracked at the end, before the final drain.
    pub flows_open_at_end: u64,
    /// Endpoint cache counters.
    pub cache: CacheStats,
    /// Host behaviour counters.
    pub behaviour: BehaviourStats,
    /// Earliest and latest packet time.
    pub first_ts: Option<Timestamp>,
    /// Latest packet time.
    pub last_ts: Option<Timestamp>,
    /// Policy decisions made (verdict events).
    pub decisions: u64,
    /// Flows not named P2P that were counted here instead of reported,
    /// for a sink that wants only P2P flows' records
    /// ([`parallel::Sink::p2p_records_only`]).
    pub unreported: Unreported,
}

/// Flows counted instead of reported (see [`PipelineStats::unreported`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Unreported {
    /// How many.
    pub flows: u64,
    /// Their frame bytes, both ways.
    pub bytes: u64,
}

impl PipelineStats {
    /// Adds another worker's counters (the cache and behaviour counters
    /// of the shared state are set by the caller).
    pub fn add(&mut self, o: &PipelineStats) {
        self.packets += o.packets;
        self.bytes += o.bytes;
        self.tracked += o.tracked;
        self.skipped.merge(&o.skipped);
        self.truncated_payloads += o.truncated_payloads;
        self.flows.created += o.flows.created;
        self.flows.timed_out += o.flows.timed_out;
        self.flows.evicted += o.flows.evicted;
        self.flows.reused += o.flows.reused;
        self.flows.peak = self.flows.peak.max(o.flows.peak);
        self.flows_open_at_end += o.flows_open_at_end;
        self.cache.hits += o.cache.hits;
        self.cache.expired += o.cache.expired;
        self.behaviour.named += o.behaviour.named;
        self.first_ts = match (self.first_ts, o.first_ts) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.last_ts = self.last_ts.max(o.last_ts);
        self.decisions += o.decisions;
        self.unreported.flows += o.unreported.flows;
        self.unreported.bytes += o.unreported.bytes;
        self.bytes_per_flow = o.bytes_per_flow;
    }

    /// Fills in the shared state's own counters.
    pub fn set_shared(&mut self, cache: CacheStats, behaviour: BehaviourStats) {
        self.cache = CacheStats {
            hits: self.cache.hits,
            expired: self.cache.expired,
            ..cache
        };
        self.behaviour = BehaviourStats {
            named: self.behaviour.named,
            ..behaviour
        };
    }
}

/// One shard's flows, and what was dropped and delayed of those the
/// policy acts on. A shard can move between workers (the parallel engine
/// hands each chunk's shards to whichever thread is free).
#[derive(Debug)]
pub struct Shard {
    table: FlowTable<FlowState>,
    enforced: HashMap<u64, Enforced>,
}

impl Shard {
    /// Flows held now.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// Whether no flow is held.
    pub fn is_empty(&self) -> bool {
        self.table.len() == 0
    }

    /// The flow table's counters.
    pub fn stats(&self) -> &FlowTableStats {
        self.table.stats()
    }
}

/// Adds a flow table's counters of flows created and ended to `to`.
fn add_table_stats(to: &mut FlowTableStats, f: &FlowTableStats) {
    to.created += f.created;
    to.timed_out += f.timed_out;
    to.evicted += f.evicted;
    to.reused += f.reused;
}

/// The flows of some shards and what deciding about them needs: one
/// thread's part of the work. See the module documentation.
#[derive(Debug)]
pub struct Worker {
    /// Indexed by shard; `None` for shards another worker holds.
    tables: Vec<Option<Shard>>,
    detection: Detection,
    /// Endpoints announced by the packet being processed (reused buffer).
    learnt: Vec<Learnt>,
    policy: Option<Arc<Policy>>,
    /// Bumped when the policy changes, so flows decide again.
    generation: u8,
    /// Counters of what this worker saw (packets it was given, its flows).
    stats: PipelineStats,
    /// Flows still to end at the end of the input, last first.
    finishing: Vec<(u64, u8, FlowRef)>,
    /// Flows idle past their timeout at a chunk's end (reused buffer).
    idle: Vec<(u64, u8, FlowRef)>,
    /// Flows that end without being named P2P, decided or enforced on are
    /// only counted, not reported.
    p2p_records_only: bool,
}

/// Where a worker reads and writes the cross-flow state.
pub struct SharedAccess<'a> {
    /// The state as of the start of the chunk (or of the packet).
    pub shared: &'a Shared,
    /// Where the changes go.
    pub log: &'a mut Vec<Keyed>,
    /// Where the starts and ends of flows go that host behaviour notes only
    /// if a host of theirs turns out to be confirmed by the time they apply
    /// (see [`Shared::apply_chunk`]); `None` where writes apply at once,
    /// so that the state read is the state they apply to.
    pub unconfirmed: Option<&'a mut Vec<Keyed>>,
}

impl Worker {
    /// A worker owning the shards `owns(shard)` says, of flow tables split
    /// from `flows`: the cap is shared out so that the shards together
    /// hold at most `max_flows` (each at least one, so never fewer than
    /// [`SHARDS`] in all).
    pub fn new(flows: &FlowConfig, detect: &DetectConfig, owns: impl Fn(usize) -> bool) -> Worker {
        Worker {
            tables: (0..SHARDS)
                .map(|s| {
                    owns(s).then(|| Shard {
                        table: FlowTable::new(FlowConfig {
                            max_flows: shard_cap(flows.max_flows, s),
                            ..flows.clone()
                        }),
                        enforced: HashMap::new(),
                    })
                })
                .collect(),
            detection: Detection::new(detect.clone()),
            learnt: Vec::new(),
            policy: None,
            generation: 0,
            stats: PipelineStats {
                bytes_per_flow: bytes_per_flow::<FlowState>(),
                ..PipelineStats::default()
            },
            finishing: Vec::new(),
            idle: Vec::new(),
            p2p_records_only: false,
        }
    }

    /// Gives up `shard` (if held), for another worker to take.
    pub fn take_shard(&mut self, shard: usize) -> Option<Shard> {
        self.tables.get_mut(shard)?.take()
    }

    /// Takes over `shard`, which it must not hold already.
    pub fn put_shard(&mut self, shard: usize, state: Shard) {
        debug_assert!(self.tables[shard].is_none(), "shard {shard} held twice");
        self.tables[shard] = Some(state);
    }

    /// The detection engine (rules, evidence names).
    pub fn detection(&self) -> &Detection {
        &self.detection
    }

    /// With `true`, a flow that ends without being named P2P, decided or
    /// enforced on is counted in [`PipelineStats::unreported`] instead of
    /// becoming a record: for a report of P2P flows and totals alone.
    pub fn set_p2p_records_only(&mut self, only: bool) {
        self.p2p_records_only = only;
    }

    /// Sets (or, with `None`, removes) the policy. Flows decide again at
    /// their next packet.
    pub fn set_policy(&mut self, policy: Option<Arc<Policy>>) {
        self.policy = policy;
        self.generation = self.generation.wrapping_add(1);
    }

    /// Replaces the signature rules (e.g. on SIGHUP); flows already
    /// tracked keep their evidence and go on being inspected.
    pub fn reload_rules(&mut self, rules: crate::detect::rules::RuleSet) {
        self.detection = self.detection.reloaded(rules);
    }

    /// The policy in force.
    pub fn policy(&self) -> Option<&Arc<Policy>> {
        self.policy.as_ref()
    }

    /// Flows held now.
    pub fn open_flows(&self) -> u64 {
        self.tables.iter().flatten().map(|t| t.len() as u64).sum()
    }

    /// Counters so far (the shared state's are the caller's to fill in).
    pub fn stats(&self) -> PipelineStats {
        let mut s = self.stats.clone();
        for t in self.tables.iter().flatten() {
            add_table_stats(&mut s.flows, t.stats());
        }
        s
    }

    /// Counts a frame that could not be tracked.
    pub fn skipped(&mut self, ts: Timestamp, wire_len: u32, skip: Skip) {
        self.count_frame(ts, wire_len);
        self.stats.skipped.add(skip);
    }

    fn count_frame(&mut self, ts: Timestamp, wire_len: u32) {
        self.stats.packets += 1;
        self.stats.bytes += u64::from(wire_len);
        self.stats.first_ts = Some(self.stats.first_ts.map_or(ts, |f| f.min(ts)));
        self.stats.last_ts = Some(self.stats.last_ts.map_or(ts, |l| l.max(ts)));
    }

    /// An enforcer dropped a packet it had been told to shape (its delay
    /// queue was full): counted as dropped instead of delayed.
    pub fn shaper_dropped(&mut self, flow: u64, wire_len: u32) {
        let mut shards = self.tables.iter_mut().flatten();
        if let Some(e) = shards.find_map(|s| s.enforced.get_mut(&flow)) {
            e.delayed_packets = e.delayed_packets.saturating_sub(1);
            e.delayed_bytes = e.delayed_bytes.saturating_sub(u64::from(wire_len));
            e.dropped_packets += 1;
            e.dropped_bytes += u64::from(wire_len);
        }
    }

    /// What ending and deciding flows of `shard` needs, and its table
    /// (`None` if this worker does not hold it).
    fn ender<'a>(
        &'a mut self,
        shared: &'a Shared,
        log: &'a mut Vec<Keyed>,
        unconfirmed: Option<&'a mut Vec<Keyed>>,
        seq: u64,
        shard: usize,
    ) -> Option<(Ender<'a>, &'a mut FlowTable<FlowState>)> {
        let state = self.tables.get_mut(shard)?.as_mut()?;
        let ender = Ender {
            detection: &self.detection,
            shared,
            log,
            unconfirmed,
            seq,
            policy: self.policy.as_deref(),
            generation: self.generation,
            enforced: &mut state.enforced,
            stats: &mut self.stats,
            p2p_records_only: self.p2p_records_only,
        };
        Some((ender, &mut state.table))
    }

    /// The flow table of `shard`, if this worker holds it.
    pub(crate) fn table(&self, shard: usize) -> Option<&FlowTable<FlowState>> {
        Some(&self.tables.get(shard)?.as_ref()?.table)
    }

    /// Asks the CPU to fetch what ending the flow at `at` in a list of
    /// flows to end will touch: the flow itself, else (fetched earlier)
    /// its removal's index entries and list neighbours.
    fn prefetch_ending(&self, at: Option<&(u64, u8, FlowRef)>, flow: bool) {
        if let Some(&(_, shard, r)) = at
            && let Some(table) = self.table(usize::from(shard))
        {
            if flow {
                table.prefetch_node(r);
            } else {
                table.prefetch_removal(r);
            }
        }
    }

    /// Processes one decoded packet, the `seq`-th of the input, whose flow
    /// is in `shard` (which this worker owns); `lookup` is its flow's
    /// [`FlowTable::lookup`] if the caller made it. Flows that end on the
    /// way and policy decisions go to `events`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn process(
        &mut self,
        access: SharedAccess<'_>,
        seq: u64,
        ts: Timestamp,
        shard: usize,
        (packet, lookup): (&Packet<'_>, Option<&FlowLookup>),
        wire_len: u32,
        events: &mut impl FnMut(Event),
    ) -> PacketOutcome {
        self.count_frame(ts, wire_len);
        self.stats.tracked += 1;
        if packet.truncated {
            self.stats.truncated_payloads += 1;
        }
        let mut learnt = std::mem::take(&mut self.learnt);
        // Writes are ordered like events: see `parallel::at_packet`.
        let Some((mut ender, table)) = self.ender(
            access.shared,
            access.log,
            access.unconfirmed,
            seq << 1,
            shard,
        ) else {
            debug_assert!(false, "shard {shard} is not this worker's");
            return PacketOutcome::Skipped(Skip::NotIp);
        };
        let ended = &mut |flow, why| ender.end(flow, why, events);
        let tracked = match lookup {
            Some(lookup) => table.track_looked_up(packet, lookup, wire_len, ts, seq, ended),
            None => table.track(packet, wire_len, ts, seq, ended),
        };
        let flow = table.get_mut(tracked.flow);
        let mut verdict_changed = false;
        if tracked.is_new {
            // A flow to or from a known P2P endpoint is named at once.
            let mut hit = None;
            for ep in [flow.responder(), flow.originator()] {
                match ender.shared.cache.lookup(ep, packet.transport, ts) {
                    Lookup::Hit(p) => {
                        hit = Some(p);
                        break;
                    }
                    Lookup::Expired => ender.stats.cache.expired += 1,
                    Lookup::Miss => {}
                }
            }
            let facts = flow_facts(flow);
            let notes = ender.shared.behaviour.notes_start(&facts, ts);
            ender.note(flow.id, ts, notes, Write::FlowStarted(facts));
            if let Some(protocol) = hit {
                ender.stats.cache.hits += 1;
                ender.detection.name_from_cache(&mut flow.ext, protocol);
                verdict_changed = true;
            } else if let Some((protocol, signals)) =
                ender.shared.behaviour.judge(&facts, ts, false)
            {
                ender.stats.behaviour.named += 1;
                ender
                    .detection
                    .name_from_behaviour(&mut flow.ext, protocol, &signals, 1);
                verdict_changed = true;
            }
        }
        if !packet.payload.is_empty() && !flow.ext.finished() {
            let (src, dst) = match tracked.direction {
                crate::flow::Direction::Originator => (flow.originator(), flow.responder()),
                crate::flow::Direction::Responder => (flow.responder(), flow.originator()),
            };
            let view = PacketView {
                payload: packet.payload,
                direction: tracked.direction,
                index: 0, // set by detection, which counts payload packets per side
                transport: packet.transport,
                src,
                dst,
                ts,
                truncated: packet.truncated,
            };
            let total = flow.total_packets();
            let progress = ender
                .detection
                .inspect(&mut flow.ext, &view, total, &mut learnt);
            verdict_changed |= progress.verdict_changed;
            for l in learnt.drain(..) {
                ender.write(flow.id, ts, Write::Learn(l));
            }
            // Structural evidence confirms the flow's listening endpoints:
            // the TCP responder; for UDP both sides (P2P UDP sockets listen).
            if let (Some(protocol), false) = (flow.ext.verdict.protocol, flow.ext.endpoints_cached)
                && flow.ext.verdict.confidence >= Confidence::Unidirectional
            {
                flow.ext.endpoints_cached = true;
                let transports = Transports::from(packet.transport);
                let mut confirm = vec![flow.responder()];
                if packet.transport == Transport::Udp {
                    confirm.push(flow.originator());
                }
                for endpoint in confirm {
                    let w = Write::Confirm {
                        protocol,
                        endpoint,
                        transports,
                    };
                    ender.write(flow.id, ts, w);
                }
                for ip in [flow.originator().ip(), flow.responder().ip()] {
                    ender.write(flow.id, ts, Write::ConfirmHost { ip, protocol });
                }
            }
        }
        // The decision applies from the deciding packet on.
        let action = match ender.decide(flow, ts, verdict_changed, events) {
            Some(d) => {
                let action = packet_action(flow, &d, ender.policy);
                ender.count(flow.id, &action, wire_len);
                action
            }
            None => PacketAction::Forward,
        };
        let status = status(&flow.ext);
        let sealed = action == PacketAction::Forward
            && match status {
                FlowStatus::NotP2p => true,
                FlowStatus::P2p(_) => flow.ext.verdict.confidence == Confidence::Bidirectional,
                FlowStatus::Undecided => false,
            };
        let outcome = PacketOutcome::Tracked {
            flow: flow.id,
            status,
            verdict_changed,
            action,
            sealed,
        };
        self.learnt = learnt;
        outcome
    }

    /// The end of a chunk: ends every flow idle past its timeout at packet
    /// time `now`. `order` places what this teaches in the input order
    /// (after the chunk's last packet).
    pub fn end_chunk(
        &mut self,
        access: SharedAccess<'_>,
        order: u64,
        now: Timestamp,
        events: &mut impl FnMut(Event),
    ) {
        // In order of creation, as the parallel engine reports them (see
        // `parallel::report`): listed first, then ended.
        self.end_idle(access, order, now, 0..SHARDS, events);
    }

    /// [`Worker::end_chunk`] for the flows of `shard` alone.
    pub fn end_chunk_of(
        &mut self,
        access: SharedAccess<'_>,
        order: u64,
        now: Timestamp,
        shard: usize,
        events: &mut impl FnMut(Event),
    ) {
        self.end_idle(access, order, now, shard..shard + 1, events);
    }

    fn end_idle(
        &mut self,
        mut access: SharedAccess<'_>,
        order: u64,
        now: Timestamp,
        shards: std::ops::Range<usize>,
        events: &mut impl FnMut(Event),
    ) {
        let mut idle = std::mem::take(&mut self.idle);
        for shard in shards {
            if let Some(table) = self.table(shard) {
                table.idle_flows(now, |id, r| idle.push((id, shard as u8, r)));
            }
        }
        if idle.is_empty() {
            self.idle = idle;
            return;
        }
        idle.sort_unstable_by_key(|(id, _, _)| *id);
        // Their removals are fetched a few flows ahead (the walk that
        // listed them brought the flows in).
        for k in 0..AHEAD_REMOVAL {
            self.prefetch_ending(idle.get(k), false);
        }
        for k in 0..idle.len() {
            self.prefetch_ending(idle.get(k + AHEAD_REMOVAL), false);
            let (_, shard, r) = idle[k];
            let (log, unconfirmed) = (&mut *access.log, access.unconfirmed.as_deref_mut());
            if let Some((mut ender, table)) =
                self.ender(access.shared, log, unconfirmed, order, shard.into())
            {
                ender.end(table.take_idle(r), EndReason::IdleTimeout, events);
            }
        }
        idle.clear();
        self.idle = idle;
    }

    /// The input is over: lists the open flows, to be ended in order of
    /// creation by [`Worker::finish_some`].
    pub fn begin_finish(&mut self) {
        self.stats.flows_open_at_end = self.open_flows();
        let mut open: Vec<(u64, u8, FlowRef)> = Vec::new();
        for (shard, state) in self.tables.iter().enumerate() {
            if let Some(s) = state {
                open.extend(s.table.open_flows().map(|(id, r)| (id, shard as u8, r)));
            }
        }
        // Last first, to pop from the end.
        open.sort_unstable_by_key(|(id, _, _)| std::cmp::Reverse(*id));
        self.finishing = open;
    }

    /// Ends up to `max` of the flows [`Worker::begin_finish`] listed, in
    /// order of creation; false once none is left.
    pub fn finish_some(
        &mut self,
        mut access: SharedAccess<'_>,
        max: usize,
        events: &mut impl FnMut(Event),
    ) -> bool {
        let mut finishing = std::mem::take(&mut self.finishing);
        // Listed last first: the flow k places ahead is at `len - 1 - k`.
        // Flows are fetched two removals' worth ahead, and what their
        // removal touches one worth ahead.
        for _ in 0..max {
            let ahead = |k: usize| finishing.len().checked_sub(k + 1);
            let flow = ahead(2 * AHEAD_REMOVAL).and_then(|i| finishing.get(i));
            self.prefetch_ending(flow, true);
            let removal = ahead(AHEAD_REMOVAL).and_then(|i| finishing.get(i));
            self.prefetch_ending(removal, false);
            let Some((_, shard, r)) = finishing.pop() else {
                break;
            };
            let (log, unconfirmed) = (&mut *access.log, access.unconfirmed.as_deref_mut());
            if let Some((mut ender, table)) =
                self.ender(access.shared, log, unconfirmed, u64::MAX, shard.into())
            {
                let flow = table.take(r);
                ender.end(flow, EndReason::EndOfInput, events);
            }
        }
        let more = !finishing.is_empty();
        self.finishing = finishing;
        more
    }
}

/// How many flows ahead the flows ended at a chunk's end or at the end of
/// the input have what their removal touches fetched.
const AHEAD_REMOVAL: usize = 8;

/// The single-threaded pipeline: one [`Worker`] owning every shard, whose
/// cross-flow changes apply straight after each packet. The enforcing
/// modes use it; offline analysis uses the [`parallel`] engine, with one
/// thread or more.
#[derive(Debug)]
pub struct Pipeline {
    worker: Worker,
    shared: Shared,
    log: Vec<Keyed>,
    seq: u64,
    cutter: ChunkCutter,
    peak: u64,
    seed: ShardSeed,
}

impl Pipeline {
    /// A pipeline with the given flow limits and detection rules.
    pub fn new(flows: FlowConfig, detect: DetectConfig) -> Pipeline {
        Pipeline {
            worker: Worker::new(&flows, &detect, |_| true),
            shared: Shared::new(&detect),
            log: Vec::new(),
            seq: 0,
            cutter: ChunkCutter::default(),
            peak: 0,
            seed: ShardSeed::new(flows.hash_seed),
        }
    }

    /// The detection engine (rules, evidence names).
    pub fn detection(&self) -> &Detection {
        self.worker.detection()
    }

    /// Sets (or, with `None`, removes) the policy. Flows decide again at
    /// their next packet.
    pub fn set_policy(&mut self, policy: Option<Arc<Policy>>) {
        self.worker.set_policy(policy);
    }

    /// Replaces the signature rules (e.g. on SIGHUP); flows already
    /// tracked keep their evidence and go on being inspected.
    pub fn reload_rules(&mut self, rules: crate::detect::rules::RuleSet) {
        self.worker.reload_rules(rules);
    }

    /// The policy in force.
    pub fn policy(&self) -> Option<&Arc<Policy>> {
        self.worker.policy()
    }

    /// An enforcer dropped a packet it had been told to shape (its delay
    /// queue was full): counted as dropped instead of delayed.
    pub fn shaper_dropped(&mut self, flow: u64, wire_len: u32) {
        self.worker.shaper_dropped(flow, wire_len);
    }

    /// Processes one captured frame. `wire_len` is its original length.
    /// Flows that end on the way (timeouts, eviction) and policy decisions
    /// go to `events`.
    pub fn process(
        &mut self,
        ts: Timestamp,
        link: LinkType,
        frame: &[u8],
        wire_len: u32,
        events: &mut impl FnMut(Event),
    ) -> PacketOutcome {
        let previous_latest = self.cutter.latest();
        if self.cutter.begins_chunk(ts)
            && let Some(now) = previous_latest
        {
            self.end_chunk(now, events);
        }
        self.seq += 1;
        let seed = self.seed.seed(ts, frame);
        let packet = match decode::decode(link, frame) {
            Ok(p) => p,
            Err(skip) => {
                self.worker.skipped(ts, wire_len, skip);
                return PacketOutcome::Skipped(skip);
            }
        };
        let access = SharedAccess {
            shared: &self.shared,
            log: &mut self.log,
            unconfirmed: None,
        };
        let shard = shard_of(&packet, seed);
        let outcome = self.worker.process(
            access,
            self.seq,
            ts,
            shard,
            (&packet, None),
            wire_len,
            events,
        );
        for k in self.log.drain(..) {
            self.shared.apply(&k);
        }
        outcome
    }

    fn end_chunk(&mut self, now: Timestamp, events: &mut impl FnMut(Event)) {
        self.peak = self.peak.max(self.worker.open_flows());
        let access = SharedAccess {
            shared: &self.shared,
            log: &mut self.log,
            unconfirmed: None,
        };
        self.worker
            .end_chunk(access, (self.seq << 1) | 1, now, events);
        for k in self.log.drain(..) {
            self.shared.apply(&k);
        }
    }

    /// Ends every open flow (end of input).
    pub fn finish(&mut self, events: &mut impl FnMut(Event)) {
        self.peak = self.peak.max(self.worker.open_flows());
        let access = SharedAccess {
            shared: &self.shared,
            log: &mut self.log,
            unconfirmed: None,
        };
        self.worker.begin_finish();
        self.worker.finish_some(access, usize::MAX, events);
        self.log.clear();
    }

    /// Counters so far.
    pub fn stats(&self) -> PipelineStats {
        let mut s = self.worker.stats();
        s.flows.peak = self.peak.max(self.worker.open_flows());
        let (cache, behaviour) = self.shared.stats();
        s.set_shared(cache, behaviour);
        s
    }
}

fn status(state: &FlowState) -> FlowStatus {
    match state.verdict.protocol {
        Some(p) => FlowStatus::P2p(p),
        None if state.finished() => FlowStatus::NotP2p,
        None => FlowStatus::Undecided,
    }
}

/// What host behaviour needs to know of a flow.
fn flow_facts(flow: &Flow<FlowState>) -> FlowFacts {
    FlowFacts {
        transport: flow.key.transport,
        originator: flow.originator(),
        responder: flow.responder(),
        // No answer at all, or a reset before any data (a refused attempt).
        failed: flow.packets[1] == 0 || (flow.tcp.reset() && flow.total_packets() <= 4),
    }
}

/// The action a decision has on each packet of the flow.
fn packet_action(flow: &Flow<FlowState>, d: &Decision, policy: Option<&Policy>) -> PacketAction {
    match d.action {
        Action::Allow | Action::Log => PacketAction::Forward,
        Action::Block { reset } => PacketAction::Drop { reset },
        Action::Throttle(throttle) => {
            let bucket = match throttle.scope {
                Scope::Flow => BucketKey::Flow(flow.id),
                Scope::Rule => BucketKey::Rule(d.rule),
                // The local side of the flow if the policy knows the local
                // networks, else the originator.
                Scope::Host => {
                    let (o, r) = (flow.originator().ip(), flow.responder().ip());
                    let local = policy.is_some_and(|p| !p.is_local(o) && p.is_local(r));
                    BucketKey::Host(if local { r } else { o })
                }
            };
            PacketAction::Shape { bucket, throttle }
        }
    }
}

/// What ending flows and deciding need, borrowed from the worker.
struct Ender<'a> {
    detection: &'a Detection,
    shared: &'a Shared,
    log: &'a mut Vec<Keyed>,
    unconfirmed: Option<&'a mut Vec<Keyed>>,
    /// Input position of what is being processed.
    seq: u64,
    policy: Option<&'a Policy>,
    generation: u8,
    enforced: &'a mut HashMap<u64, Enforced>,
    stats: &'a mut PipelineStats,
    p2p_records_only: bool,
}

impl Ender<'_> {
    fn write(&mut self, flow: u64, ts: Timestamp, write: Write) {
        let k = Keyed {
            seq: self.seq,
            flow,
            ts,
            write,
        };
        merge::push_in_order(self.log, k, Keyed::order);
    }

    /// Logs a flow's start or end for host behaviour, as the state read
    /// says it needs (see [`Notes`]).
    fn note(&mut self, flow: u64, ts: Timestamp, notes: Notes, write: Write) {
        match notes {
            Notes::Now => self.write(flow, ts, write),
            Notes::IfConfirmed => {
                if let Some(u) = self.unconfirmed.as_deref_mut() {
                    u.push(Keyed {
                        seq: self.seq,
                        flow,
                        ts,
                        write,
                    });
                }
            }
            Notes::Never => {}
        }
    }

    /// The flow's decision under the policy: decided again when the
    /// verdict changed or the policy did; reported when it changes.
    fn decide(
        &mut self,
        flow: &mut Flow<FlowState>,
        ts: Timestamp,
        verdict_changed: bool,
        events: &mut impl FnMut(Event),
    ) -> Option<Decision> {
        let policy = self.policy?;
        let protocol = flow.ext.verdict.protocol?;
        let current = flow.ext.decision;
        if let Some((rule, generation)) = current
            && generation == self.generation
            && !verdict_changed
        {
            let rule = (rule != u16::MAX).then_some(usize::from(rule));
            let action = rule
                .and_then(|i| policy.rules.get(i))
                .map_or(policy.default, |r| r.action);
            return Some(Decision { rule, action });
        }
        let view = FlowView {
            protocol,
            confidence: flow.ext.verdict.confidence,
            src: flow.originator(),
            dst: flow.responder(),
            transport: flow.key.transport,
        };
        let d = policy.decide(&view);
        let tag = d
            .rule
            .map_or(u16::MAX, |i| u16::try_from(i).unwrap_or(u16::MAX - 1));
        let changed =
            current.is_none_or(|(rule, generation)| rule != tag || generation != self.generation);
        flow.ext.decision = Some((tag, self.generation));
        if changed {
            self.stats.decisions += 1;
            if d.action.enforces() {
                self.enforced.entry(flow.id).or_default();
            }
            events(Event::Verdict(VerdictEvent {
                ts,
                flow: flow.id,
                transport: flow.key.transport,
                src: flow.originator(),
                dst: flow.responder(),
                protocol,
                confidence: flow.ext.verdict.confidence,
                evidence: evidence(self.detection, &flow.ext),
                rule: policy.rule_name(&d).to_string(),
                action: d.action,
            }));
        }
        Some(d)
    }

    /// Counts what an action does to a packet.
    fn count(&mut self, flow: u64, action: &PacketAction, wire_len: u32) {
        let Some(e) = self.enforced.get_mut(&flow) else {
            return;
        };
        match action {
            PacketAction::Forward => {}
            PacketAction::Drop { .. } => {
                e.dropped_packets += 1;
                e.dropped_bytes += u64::from(wire_len);
            }
            PacketAction::Shape { .. } => {
                e.delayed_packets += 1;
                e.delayed_bytes += u64::from(wire_len);
            }
        }
    }

    /// A flow ends: it counts for its host's behaviour, may be named from
    /// it if nothing else named it (and then decided), and becomes a record.
    fn end(&mut self, mut flow: Flow<FlowState>, why: EndReason, events: &mut impl FnMut(Event)) {
        let facts = flow_facts(&flow);
        let notes = self.shared.behaviour.notes_end(&facts, flow.last_seen);
        self.note(flow.id, flow.last_seen, notes, Write::FlowEnded(facts));
        let mut named = false;
        if flow.ext.verdict.protocol.is_none()
            && let Some((protocol, signals)) =
                self.shared.behaviour.judge(&facts, flow.last_seen, true)
        {
            self.stats.behaviour.named += 1;
            let at = flow.total_packets();
            self.detection
                .name_from_behaviour(&mut flow.ext, protocol, &signals, at);
            named = true;
        }
        let last = flow.last_seen;
        let decision = self.decide(&mut flow, last, named, events);
        // Most runs enforce on nothing: no hash of the id then.
        let enforced = if self.enforced.is_empty() {
            Enforced::default()
        } else {
            self.enforced.remove(&flow.id).unwrap_or_default()
        };
        if self.p2p_records_only
            && flow.ext.verdict.protocol.is_none()
            && decision.is_none()
            && enforced == Enforced::default()
        {
            self.stats.unreported.flows += 1;
            self.stats.unreported.bytes += flow.bytes[0] + flow.bytes[1];
            return;
        }
        let mut r = record(self.detection, flow, why);
        if let (Some(d), Some(policy)) = (decision, self.policy) {
            r.action = Some(d.action.name());
            r.rule = Some(policy.rule_name(&d).to_string());
            r.enforced = enforced;
        }
        events(Event::FlowEnded(r));
    }
}

fn evidence(detection: &Detection, state: &FlowState) -> Vec<String> {
    state
        .evidence_ids()
        .iter()
        .map(|id| detection.evidence_name(*id).to_string())
        .collect()
}

fn record(detection: &Detection, flow: Flow<FlowState>, why: EndReason) -> FlowRecord {
    let state = &flow.ext;
    let protocol = state.verdict.protocol;
    let facts = state.facts.as_deref().cloned().unwrap_or_default();
    FlowRecord {
        id: flow.id,
        transport: flow.key.transport,
        src: flow.originator(),
        dst: flow.responder(),
        first_seen: flow.first_seen,
        last_seen: flow.last_seen,
        packets: flow.packets,
        bytes: flow.bytes,
        protocol,
        confidence: protocol.map(|_| state.verdict.confidence),
        evidence: evidence(detection, state),
        decided_at_packet: protocol.map(|_| state.verdict.decided_at_packet),
        decided_at_payload_packet: protocol.map(|_| state.verdict.decided_at_payload_packet),
        facts,
        end: why,
        action: None,
        rule: None,
        enforced: Enforced::default(),
    }
}

#[cfg(test)]
mod cap_tests {
    use super::*;

    #[test]
    fn the_shards_share_the_flow_cap_exactly() {
        for max in [64, 65, 200, 1000, 50_000, 1_000_000, 1_000_063] {
            let total: usize = (0..SHARDS).map(|s| shard_cap(max, s)).sum();
            assert_eq!(total, max, "cap {max}");
        }
        // Below one flow per shard, every shard still holds one.
        assert_eq!((0..SHARDS).map(|s| shard_cap(10, s)).sum::<usize>(), SHARDS);
    }
}

#[cfg(test)]
mod seed_tests {
    use super::*;
    use crate::detect::rules::RuleSet;
    use crate::synth::{L4, ip_packet};

    /// The ids of the flows a per-packet pipeline (the live commands')
    /// evicts from 600 UDP flows under a cap of 64, after a first frame
    /// that is not IP and ends in `last`.
    fn evicted(seed: Option<u64>, last: u8) -> Vec<u64> {
        let rules = RuleSet::load(&[]).expect("built-in rules");
        let flows = FlowConfig {
            max_flows: 64,
            hash_seed: seed,
            ..FlowConfig::default()
        };
        let mut p = Pipeline::new(flows, DetectConfig::new(rules));
        let mut ids = Vec::new();
        let mut events = |e: Event| {
            if let Event::FlowEnded(r) = e
                && r.end == EndReason::Evicted
            {
                ids.push(r.id);
            }
        };
        let arp = crate::synth::arp_request([10, 0, 0, 1].into(), [10, 0, 0, last].into());
        let t0 = Timestamp::from_secs(1_000);
        p.process(t0, LinkType::ETHERNET, &arp, arp.len() as u32, &mut events);
        for i in 0..600u16 {
            let src = format!("100.64.{}.{}:{}", i / 200, i % 200, 1024 + i)
                .parse()
                .unwrap();
            let ip = ip_packet(src, "100.64.9.9:6881".parse().unwrap(), L4::Udp, b"x");
            let ts = t0.plus(Duration::from_millis(u64::from(i) + 1));
            p.process(ts, LinkType::RAW, &ip, ip.len() as u32, &mut events);
        }
        p.finish(&mut events);
        ids
    }

    #[test]
    fn the_per_packet_pipeline_takes_its_seed_from_the_first_frame_unless_given() {
        let first = evicted(None, 1);
        assert!(first.len() >= 500, "{} evicted", first.len());
        assert_eq!(evicted(None, 1), first, "the same input, other evictions");
        assert_ne!(
            evicted(None, 2),
            first,
            "the first frame made no difference"
        );
        assert_eq!(
            evicted(Some(7), 1),
            evicted(Some(7), 2),
            "a given seed was not kept"
        );
        assert_ne!(evicted(Some(7), 1), evicted(Some(8), 1));
    }
}

#[cfg(test)]
mod known_tests {
    use super::*;
    use crate::detect::rules::RuleSet;
    use crate::synth::{L4, ip_packet};

    /// The protocols of the flows a pipeline reports for `packets` (from
    /// `a` to `b` if the flag is set, else back), one a millisecond.
    fn protocols(packets: &[(bool, &[u8])]) -> Vec<Option<Protocol>> {
        let rules = RuleSet::load(&[]).expect("built-in rules");
        let mut p = Pipeline::new(FlowConfig::default(), DetectConfig::new(rules));
        let (a, b) = (
            "100.64.0.1:40000".parse().unwrap(),
            "100.64.0.2:53".parse().unwrap(),
        );
        let mut found = Vec::new();
        let mut events = |e: Event| {
            if let Event::FlowEnded(r) = e {
                found.push(r.protocol);
            }
        };
        for (i, (forth, payload)) in packets.iter().enumerate() {
            let (src, dst) = if *forth { (a, b) } else { (b, a) };
            let ip = ip_packet(src, dst, L4::Udp, payload);
            let ts = Timestamp::from_secs(1_000).plus(Duration::from_millis(i as u64));
            p.process(ts, LinkType::RAW, &ip, ip.len() as u32, &mut events);
        }
        p.finish(&mut events);
        found
    }

    const DNS_QUERY: &[u8] = &[
        0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 7, b'e', b'x', b'a', b'm', b'p', b'l',
        b'e', 3, b'c', b'o', b'm', 0, 0, 1, 0, 1,
    ];
    const DHT_QUERY: &[u8] = b"d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t2:aa1:y1:qe";
    const DHT_REPLY: &[u8] = b"d1:rd2:id20:mnopqrstuvwxyz123456e1:t2:aa1:y1:re";

    #[test]
    fn one_dns_message_does_not_shield_the_rest_of_a_flow() {
        // The DHT exchange alone, and after a DNS query on the same
        // addresses and ports (port 53), is named either way.
        let dht = protocols(&[(true, DHT_QUERY), (false, DHT_REPLY)]);
        assert_eq!(dht, vec![Some(Protocol::Bittorrent)]);
        let after_dns = protocols(&[(true, DNS_QUERY), (true, DHT_QUERY), (false, DHT_REPLY)]);
        assert_eq!(after_dns, dht);
        // The DNS query alone is not.
        assert_eq!(protocols(&[(true, DNS_QUERY)]), vec![None]);
    }
}
