//! The parallel engine: one thread reads and decodes, every thread
//! (the reader included) tracks and inspects flows, a shard at a time.
//!
//! The input goes in chunks (see the [module documentation](super)). The
//! reader lists each chunk's packets by shard; for each chunk, every
//! thread takes the next shard no thread has taken yet, processes its
//! packets, and goes on until none is left, so the threads end a chunk
//! together however its work is spread (the reader starts late: it reads
//! the next chunk first). Every thread reads the cross-flow state as it
//! was when the chunk began, and logs what the packets teach; when all
//! are done, the reading thread hands the logs to the first worker thread,
//! which applies them in input order before it starts on the next chunk
//! (every thread waits for that before it does), hands out the next
//! chunk, and reports the finished chunk's events in input order while the
//! others work. Nothing a thread sees depends on how far another one got or on
//! which thread took a shard, so the output is the same whatever the
//! number of threads, and no thread waits for another except once per
//! chunk.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Condvar, Mutex, RwLock};

use super::merge::{Merge, push_in_order};
use super::shared::{Keyed, Shared};
use super::times::{Activity, Times};
use super::{
    ChunkCutter, Event, PacketOutcome, PipelineStats, SHARDS, Shard, ShardSeed, SharedAccess,
    Worker, add_table_stats, shard_of,
};
use crate::decode::{self, LinkType, Packet, Skip, TcpFlags, Transport};
use crate::detect::DetectConfig;
use crate::detect::rules::RuleSet;
use crate::flow::FlowConfig;
use crate::flow::FlowLookup;
use crate::output::RenderRecord;
use crate::policy::Policy;
use crate::prefetch::WriteHint;
use crate::timestamp::Timestamp;

/// One captured frame, as a source hands it over.
#[derive(Clone, Copy, Debug)]
pub struct Frame<'a> {
    /// Capture time.
    pub ts: Timestamp,
    /// The capture's link type.
    pub link: LinkType,
    /// The captured bytes.
    pub data: &'a [u8],
    /// The frame's length on the wire.
    pub wire_len: u32,
}

/// What a source had next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// A frame (given to the callback).
    Frame,
    /// Nothing for now (live capture): the chunk so far is processed.
    Idle,
    /// The input is over.
    End,
}

/// Where frames come from.
pub trait Source {
    /// Gives the next frame to `frame` (the bytes may live only for the
    /// call), or says why there is none.
    fn next(&mut self, frame: &mut dyn FnMut(Frame<'_>)) -> Next;
}

/// What to do after a chunk.
#[derive(Default)]
pub enum Control {
    /// Go on.
    #[default]
    Continue,
    /// End every flow and stop.
    Stop,
    /// Use these rules and/or this policy from the next chunk on.
    Reload {
        /// New rules.
        rules: Option<Box<RuleSet>>,
        /// New policy (`Some(None)`: none).
        policy: Option<Option<Arc<Policy>>>,
    },
}

/// Where results go, in input order.
pub trait Sink {
    /// A flow ended or a decision was made.
    fn event(&mut self, event: Event);
    /// Whether [`Sink::packet`] is wanted (it costs a little).
    fn wants_packets(&self) -> bool {
        false
    }
    /// Every frame, in input order, with what became of it.
    fn packet(&mut self, _frame: Frame<'_>, _outcome: PacketOutcome) {}
    /// Called after each chunk with the counters so far.
    fn chunk_done(&mut self, _stats: &dyn Fn() -> PipelineStats) -> Control {
        Control::Continue
    }
    /// Whether only the records of flows named P2P (or decided or enforced
    /// on by a policy) are wanted: the others are then only counted, in
    /// [`PipelineStats::unreported`], which spares making, ordering and
    /// handing over a record for each of them (most flows, on most links).
    fn p2p_records_only(&self) -> bool {
        false
    }
    /// A formatter of flow records that any thread may run (see
    /// [`FlowSink::renderer`](crate::output::FlowSink::renderer)): each
    /// thread then formats the records of the flows it ends, and
    /// [`Sink::rendered`] gets them in place of [`Sink::event`]. The engine
    /// on one thread does not use it.
    fn renderer(&self) -> Option<Arc<RenderRecord>> {
        None
    }
    /// A flow ended, with the bytes [`Sink::renderer`]'s formatter made of
    /// its record.
    fn rendered(&mut self, event: Event, _rendered: &[u8]) {
        self.event(event);
    }
}

/// How the engine runs.
#[derive(Clone, Debug)]
pub struct EngineOptions {
    /// Threads, the reading one included (at least 1).
    pub threads: usize,
    /// Flow table limits (split over the shards).
    pub flows: FlowConfig,
    /// Detection settings.
    pub detect: DetectConfig,
    /// The policy whose decisions to report.
    pub policy: Option<Arc<Policy>>,
}

/// A decoded packet, by offsets into its chunk's bytes. Each shard's are
/// kept together (see [`Chunk::by_shard`]), so that a thread processing a
/// shard reads them in a row.
#[derive(Clone, Copy, Debug)]
struct Decoded {
    /// Input position.
    seq: u64,
    ts: Timestamp,
    wire_len: u32,
    /// Index of the frame in its chunk.
    frame: u32,
    src: std::net::IpAddr,
    dst: std::net::IpAddr,
    src_port: u16,
    dst_port: u16,
    transport: Transport,
    tcp_flags: TcpFlags,
    tcp_seq: u32,
    /// Offset of the payload in the frame, in the chunk once there.
    payload_start: u32,
    payload_len: u32,
    truncated: bool,
    shard: u8,
}

#[derive(Clone, Copy, Debug)]
struct ChunkFrame {
    seq: u64,
    ts: Timestamp,
    link: LinkType,
    wire_len: u32,
    start: u32,
    len: u32,
}

/// A frame as read, before it goes into a chunk.
type ReadFrame = (ChunkFrame, Result<Decoded, Skip>);

/// Up to [`super::CHUNK_PACKETS`] frames, copied out of the source.
#[derive(Debug)]
struct Chunk {
    data: Vec<u8>,
    frames: Vec<ChunkFrame>,
    /// Each shard's packets, in input order.
    by_shard: Vec<Vec<Decoded>>,
    /// The frames that could not be decoded, by index, and why.
    skipped: Vec<(u32, Skip)>,
    /// The next shard to be taken (by whichever thread is free).
    claim: AtomicUsize,
    /// The latest packet time up to this chunk's end.
    now: Timestamp,
    /// The input ended with this chunk (or the source asked to stop).
    last: bool,
    /// Chunks read before this one and this one (the first is 1).
    number: u64,
    /// Where the CPU has write hints (see [`Chunk::push`]).
    write_hint: Option<WriteHint>,
}

impl Default for Chunk {
    fn default() -> Chunk {
        Chunk {
            data: Vec::new(),
            frames: Vec::new(),
            by_shard: vec![Vec::new(); SHARDS],
            skipped: Vec::new(),
            claim: AtomicUsize::new(0),
            now: Timestamp(0),
            last: false,
            number: 0,
            write_hint: WriteHint::get(),
        }
    }
}

impl Chunk {
    fn bytes(&self, f: &ChunkFrame) -> &[u8] {
        &self.data[f.start as usize..(f.start + f.len) as usize]
    }

    fn packet(&self, d: &Decoded) -> Packet<'_> {
        let start = d.payload_start as usize;
        Packet {
            src: d.src,
            dst: d.dst,
            src_port: d.src_port,
            dst_port: d.dst_port,
            transport: d.transport,
            tcp_flags: d.tcp_flags,
            tcp_seq: d.tcp_seq,
            payload: &self.data[start..start + d.payload_len as usize],
            truncated: d.truncated,
        }
    }

    fn last_seq(&self) -> u64 {
        self.frames.last().map_or(0, |f| f.seq)
    }

    /// Adds a frame, its packet under its shard.
    ///
    /// This chunk's buffers were last read by the threads that processed
    /// the chunk they held before, and those threads' caches may still hold
    /// the lines. A store to such a line waits for the other CPU to give it
    /// up; on CPUs far apart that wait is long, and the stores queued
    /// behind it stall the reading thread. So the lines ahead of the bytes'
    /// end (and of each shard's list) are asked for a few packets before
    /// they are written.
    fn push(&mut self, (mut f, decoded): ReadFrame, data: &[u8]) {
        let i = self.frames.len() as u32;
        f.start = self.data.len() as u32;
        match decoded {
            Ok(mut d) => {
                d.frame = i;
                d.payload_start += f.start;
                let list = &mut self.by_shard[usize::from(d.shard)];
                if let Some(hint) = self.write_hint
                    && list.len() + WRITE_AHEAD_PACKETS < list.capacity()
                {
                    // An entry may span two lines.
                    let ahead = list.as_ptr().wrapping_add(list.len() + WRITE_AHEAD_PACKETS);
                    hint.write(ahead as usize);
                    hint.write(ahead as usize + std::mem::size_of::<Decoded>() - 1);
                }
                list.push(d);
            }
            Err(skip) => self.skipped.push((i, skip)),
        }
        if let Some(hint) = self.write_hint {
            // A frame larger than that (offloaded segments merged before
            // capture) is not hinted beyond it: its own copy comes first.
            let ahead = self.data.len() + WRITE_AHEAD_BYTES;
            let end = (ahead + data.len().min(WRITE_AHEAD_BYTES)).min(self.data.capacity());
            for at in (ahead..end).step_by(64) {
                hint.write(self.data.as_ptr().wrapping_add(at) as usize);
            }
        }
        self.data.extend_from_slice(data);
        self.frames.push(f);
    }
}

/// How far ahead of the chunk's bytes [`Chunk::push`] asks for the lines
/// it will write (a few packets).
const WRITE_AHEAD_BYTES: usize = 2048;
/// How far ahead in each shard's list [`Chunk::push`] asks for the lines it
/// will write, in packets of that shard.
const WRITE_AHEAD_PACKETS: usize = 4;

/// Reads frames into chunks, cut by [`ChunkCutter`].
struct Reader {
    cutter: ChunkCutter,
    seq: u64,
    /// The latest packet time of the frames handed out in chunks.
    latest: Timestamp,
    /// A frame read past the end of the previous chunk.
    pending: Option<ReadFrame>,
    pending_data: Vec<u8>,
    ended: bool,
    chunks: u64,
    /// The shard hash's seed.
    seed: ShardSeed,
}

impl Reader {
    fn new(seed: ShardSeed) -> Reader {
        Reader {
            seed,
            cutter: ChunkCutter::default(),
            seq: 0,
            latest: Timestamp(0),
            pending: None,
            pending_data: Vec::new(),
            ended: false,
            chunks: 0,
        }
    }

    /// The next chunk (`None` once the input is over), read into `chunk`.
    fn read(&mut self, source: &mut dyn Source, mut chunk: Chunk) -> Option<Chunk> {
        if self.ended {
            return None;
        }
        chunk.data.clear();
        chunk.frames.clear();
        chunk.by_shard.iter_mut().for_each(Vec::clear);
        chunk.skipped.clear();
        *chunk.claim.get_mut() = 0;
        chunk.last = false;
        self.chunks += 1;
        chunk.number = self.chunks;
        if let Some(f) = self.pending.take() {
            self.latest = self.latest.max(f.0.ts);
            chunk.push(f, &self.pending_data);
        }
        while self.pending.is_none() {
            let mut took = false;
            let next = source.next(&mut |frame| {
                took = true;
                let begins = self.cutter.begins_chunk(frame.ts);
                self.seq += 1;
                let f = self.decode(frame);
                if begins && !chunk.frames.is_empty() {
                    // This frame opens the next chunk.
                    self.pending_data.clear();
                    self.pending_data.extend_from_slice(frame.data);
                    self.pending = Some(f);
                    return;
                }
                self.latest = self.latest.max(f.0.ts);
                chunk.push(f, frame.data);
            });
            match next {
                Next::Frame if took => {}
                // Live capture with nothing to read: what there is goes now.
                Next::Frame | Next::Idle => break,
                Next::End => {
                    self.ended = true;
                    chunk.last = true;
                    break;
                }
            }
        }
        chunk.now = self.latest;
        Some(chunk)
    }

    fn decode(&mut self, frame: Frame<'_>) -> ReadFrame {
        let seed = self.seed.seed(frame.ts, frame.data);
        let decoded = decode::decode(frame.link, frame.data).map(|p| {
            let payload_start =
                (p.payload.as_ptr() as usize).saturating_sub(frame.data.as_ptr() as usize) as u32;
            Decoded {
                seq: self.seq,
                ts: frame.ts,
                wire_len: frame.wire_len,
                frame: 0, // set in the chunk
                shard: shard_of(&p, seed) as u8,
                src: p.src,
                dst: p.dst,
                src_port: p.src_port,
                dst_port: p.dst_port,
                transport: p.transport,
                tcp_flags: p.tcp_flags,
                tcp_seq: p.tcp_seq,
                payload_start,
                payload_len: p.payload.len() as u32,
                truncated: p.truncated,
            }
        });
        let f = ChunkFrame {
            seq: self.seq,
            ts: frame.ts,
            link: frame.link,
            wire_len: frame.wire_len,
            start: 0, // set in the chunk
            len: frame.data.len() as u32,
        };
        (f, decoded)
    }
}

/// Where an event arose, for ordering: `2 * seq` at the `seq`-th packet,
/// `2 * seq + 1` at the end of a chunk whose last packet it was, `u64::MAX`
/// at the end of the input.
pub(super) fn at_packet(seq: u64) -> u64 {
    seq << 1
}

pub(super) fn at_chunk_end(last_seq: u64) -> u64 {
    (last_seq << 1) | 1
}

/// What one shard's packets and chunk end made, each list in input order;
/// the lists of every shard are merged (see [`Merge`]).
#[derive(Default)]
struct ShardRun {
    /// Events with where they arose (see [`at_packet`]).
    events: Vec<(u64, Event)>,
    /// Cross-flow writes.
    writes: Vec<Keyed>,
    /// The events' records, formatted (if the sink has a formatter).
    rendered: Rendered,
}

/// Flow records formatted by the thread that ended them (see
/// [`Sink::renderer`]): an entry for each event of a list, in its order,
/// handed out in that order.
#[derive(Default)]
struct Rendered {
    bytes: Vec<u8>,
    /// Where each event's bytes end; `None`: not formatted (a verdict, or
    /// a record the formatter refused).
    ends: Vec<Option<usize>>,
    /// Entries handed out, and where the next one's bytes begin.
    taken: usize,
    start: usize,
}

impl Rendered {
    fn clear(&mut self) {
        self.bytes.clear();
        self.ends.clear();
        self.taken = 0;
        self.start = 0;
    }

    /// Formats the records of `events` (anew).
    fn render(&mut self, events: &[(u64, Event)], render: &RenderRecord) {
        self.clear();
        for (_, e) in events {
            let end = match e {
                Event::FlowEnded(record) => {
                    let at = self.bytes.len();
                    let done = render(record, &mut self.bytes);
                    debug_assert!(self.bytes.len() >= at, "a formatter took bytes away");
                    if done {
                        Some(self.bytes.len())
                    } else {
                        self.bytes.truncate(at);
                        None
                    }
                }
                Event::Verdict(_) => None,
            };
            self.ends.push(end);
        }
    }

    /// Adds `later`'s entries not yet handed out after this one's (a
    /// thread's next batch can come in before the last one is reported).
    fn append(&mut self, later: Rendered) {
        // What was handed out goes first.
        self.bytes.drain(..self.start);
        self.ends.drain(..self.taken);
        for end in self.ends.iter_mut().flatten() {
            *end -= self.start;
        }
        (self.start, self.taken) = (0, 0);
        let base = self.bytes.len();
        self.bytes.extend_from_slice(&later.bytes[later.start..]);
        let moved = |end: usize| end - later.start + base;
        let ends = later.ends[later.taken..].iter().map(|end| end.map(moved));
        self.ends.extend(ends);
    }

    /// The next event's bytes, if it was formatted.
    fn next(&mut self) -> Option<&[u8]> {
        let end = *self.ends.get(self.taken)?;
        self.taken += 1;
        let end = end?;
        let bytes = &self.bytes[self.start..end];
        self.start = end;
        Some(bytes)
    }
}

/// Hands `event` to the sink, with its formatted record if it has one.
fn deliver(sink: &mut dyn Sink, event: Event, rendered: &mut Rendered) {
    match rendered.next() {
        Some(bytes) => sink.rendered(event, bytes),
        None => sink.event(event),
    }
}

/// What one thread made of one chunk. Its buffers go back and forth
/// between the threads, so that they keep their capacity.
#[derive(Default)]
struct ChunkResult {
    /// One for each shard the thread processed: the first `runs_used`.
    runs: Vec<ShardRun>,
    runs_used: usize,
    /// At the end of the input: the flows ended, in order of creation.
    events: Vec<(u64, Event)>,
    /// Their records, formatted (if the sink has a formatter).
    rendered: Rendered,
    /// Flow starts and ends that count only if a host gets confirmed (see
    /// [`Shared::apply_chunk`]), in no order.
    unconfirmed: Vec<Keyed>,
    /// Outcomes by frame index in the chunk (if the sink wants them).
    outcomes: Vec<(u32, PacketOutcome)>,
    open_flows: u64,
    stats: PipelineStats,
    /// The flow look-ups of the shard being processed, by packet.
    lookups: Vec<FlowLookup>,
}

impl ChunkResult {
    fn clear(&mut self) {
        for run in &mut self.runs {
            run.events.clear();
            run.writes.clear();
            run.rendered.clear();
        }
        self.runs_used = 0;
        self.events.clear();
        self.rendered.clear();
        self.unconfirmed.clear();
        self.outcomes.clear();
        self.open_flows = 0;
        self.stats = PipelineStats::default();
    }
}

// One job per chunk and thread: its size does not matter.
#[allow(clippy::large_enum_variant)]
enum Job {
    /// A chunk, whether outcomes are wanted, and emptied buffers to fill.
    Chunk(Arc<Chunk>, bool, ChunkResult),
    /// End (up to) this many more flows at the end of the input.
    Finish(usize),
    Policy(Option<Arc<Policy>>),
    Rules(RuleSet),
    /// A chunk's cross-flow writes, to apply (see [`Pending`]).
    Apply(Pending),
}

/// A finished chunk's cross-flow writes, not yet applied. Applying them is
/// the one step no thread can process packets during (the next chunk must
/// see them); so the reading thread, which would otherwise do it while the
/// others wait, hands it to the first worker thread, which applies them and
/// goes on to the next chunk while the reading thread reports the finished
/// chunk and reads ahead. [`Applied`] says when the writes are in.
struct Pending {
    writes: Vec<Vec<Keyed>>,
    unconfirmed: Vec<Vec<Keyed>>,
    chunk: u64,
}

impl Pending {
    fn apply(mut self, shared: &RwLock<Shared>, applied: &Applied) {
        let mut guard = shared.write().unwrap_or_else(|e| e.into_inner());
        guard.apply_chunk(self.writes.iter_mut(), self.unconfirmed.iter_mut());
        drop(guard);
        applied.set(self.chunk);
    }
}

/// The number of the last chunk whose writes are applied: a thread waits
/// for chunk n - 1's before it processes chunk n.
struct Applied {
    chunk: AtomicU64,
    lock: Mutex<()>,
    changed: Condvar,
    /// Poll before blocking (see [`Waiting`]).
    spin: bool,
}

impl Applied {
    fn new(spin: bool) -> Applied {
        Applied {
            chunk: AtomicU64::new(0),
            lock: Mutex::new(()),
            changed: Condvar::new(),
            spin,
        }
    }

    fn set(&self, chunk: u64) {
        self.chunk.fetch_max(chunk, Ordering::Release);
        let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        self.changed.notify_all();
    }

    /// Waits until chunk `n`'s writes are applied (mostly done by then:
    /// the applying thread had them first).
    fn wait_for(&self, n: u64) {
        if self.spin {
            for _ in 0..1 << 12 {
                if self.chunk.load(Ordering::Acquire) >= n {
                    return;
                }
                std::hint::spin_loop();
            }
        }
        let mut guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        while self.chunk.load(Ordering::Acquire) < n {
            guard = self.changed.wait(guard).unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// What a worker thread does as it stops. If it panics, it says so to the
/// reading thread, which then panics too (rather than wait for a result
/// that will not come), ending the run. The thread applying the chunks'
/// writes also marks them all applied, so that no thread waits for them.
struct WorkerExit<'a> {
    results: &'a Sender<(usize, ChunkResult)>,
    applied: Option<&'a Applied>,
}

/// The thread index a [`WorkerExit`] sends when its thread panicked.
const STOPPED: usize = usize::MAX;

impl Drop for WorkerExit<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let _ = self.results.send((STOPPED, ChunkResult::default()));
        }
        if let Some(applied) = self.applied {
            applied.set(u64::MAX);
        }
    }
}

/// A worker thread's message, unless it is that the thread panicked.
fn from_worker(message: (usize, ChunkResult)) -> (usize, ChunkResult) {
    assert!(
        message.0 != STOPPED,
        "a worker thread stopped (see its panic above)"
    );
    message
}

/// How many packets ahead a shard's packets have their flow table index
/// entries fetched, and their flows (once the index entries are in).
const AHEAD_INDEX: usize = 8;
const AHEAD_FLOW: usize = 4;

/// The flow tables and enforcement counters of every shard, between
/// chunks. For each chunk, each thread takes shards from here until none
/// is left ([`Chunk::claim`] says which is next), processes their packets
/// and puts them back: the thread that is free takes the next shard, so
/// the threads finish a chunk together however its work is spread.
type Pool = [Mutex<Option<Shard>>];

fn lock(slot: &Mutex<Option<Shard>>) -> std::sync::MutexGuard<'_, Option<Shard>> {
    slot.lock().unwrap_or_else(|e| e.into_inner())
}

/// Takes shards of `chunk` from `pool` until none is left, and processes
/// their packets and their chunk end (the reading thread also counts the
/// frames that could not be decoded).
#[allow(clippy::too_many_arguments)]
fn process_chunk(
    worker: &mut Worker,
    pool: &Pool,
    shared: &Shared,
    chunk: &Chunk,
    counts_skipped: bool,
    want_outcomes: bool,
    render: Option<&RenderRecord>,
    mut r: ChunkResult,
) -> ChunkResult {
    r.clear();
    if counts_skipped {
        for &(i, skip) in &chunk.skipped {
            let f = &chunk.frames[i as usize];
            worker.skipped(f.ts, f.wire_len, skip);
            if want_outcomes {
                r.outcomes.push((i, PacketOutcome::Skipped(skip)));
            }
        }
    }
    loop {
        let shard = chunk.claim.fetch_add(1, Ordering::Relaxed);
        if shard >= SHARDS {
            break;
        }
        let mut slot = lock(&pool[shard]);
        let Some(state) = slot.take() else {
            debug_assert!(false, "shard {shard} is missing from the pool");
            continue;
        };
        worker.put_shard(shard, state);
        if r.runs.len() == r.runs_used {
            r.runs.push(ShardRun::default());
        }
        let run = &mut r.runs[r.runs_used];
        r.runs_used += 1;
        // The shard's packets are known ahead: their flows' index entries
        // and then the flows are fetched a few packets ahead, so that the
        // cache misses of several packets overlap.
        let packets = &chunk.by_shard[shard];
        r.lookups.clear();
        if let Some(table) = worker.table(shard) {
            let lookups = packets.iter().map(|d| table.lookup(&chunk.packet(d)));
            r.lookups.extend(lookups);
            for l in r.lookups.iter().take(AHEAD_INDEX) {
                table.prefetch_index(l.hash);
            }
        }
        // Bit j: packet k + j looked new when its flow was to be fetched;
        // for such a packet the free slot its flow will take is fetched
        // instead, after those the new flows before it will take.
        let mut new_ahead = 0u32;
        for (k, d) in packets.iter().enumerate() {
            if let Some(table) = worker.table(shard) {
                if let Some(l) = r.lookups.get(k + AHEAD_INDEX) {
                    table.prefetch_index(l.hash);
                }
                if let Some(l) = r.lookups.get(k + AHEAD_FLOW)
                    && !table.prefetch_flow(l.hash)
                {
                    table.prefetch_free(new_ahead.count_ones() as usize);
                    new_ahead |= 1 << AHEAD_FLOW;
                }
            }
            new_ahead >>= 1;
            let packet = (&chunk.packet(d), r.lookups.get(k));
            let access = SharedAccess {
                shared,
                log: &mut run.writes,
                unconfirmed: Some(&mut r.unconfirmed),
            };
            let events = &mut run.events;
            let outcome =
                worker.process(access, d.seq, d.ts, shard, packet, d.wire_len, &mut |e| {
                    push_in_order(events, (at_packet(d.seq), e), event_order)
                });
            if want_outcomes {
                r.outcomes.push((d.frame, outcome));
            }
        }
        if !chunk.frames.is_empty() {
            let access = SharedAccess {
                shared,
                log: &mut run.writes,
                unconfirmed: Some(&mut r.unconfirmed),
            };
            let (key, events) = (at_chunk_end(chunk.last_seq()), &mut run.events);
            worker.end_chunk_of(access, key, chunk.now, shard, &mut |e| {
                events.push((key, e))
            });
        }
        if let Some(render) = render {
            run.rendered.render(&run.events, render);
        }
        *slot = worker.take_shard(shard);
    }
    r.stats = worker.stats();
    r
}

/// Flows held in the pool, and the pool's flow table counters.
fn pool_flows(pool: &Pool) -> (u64, crate::flow::FlowTableStats) {
    let mut stats = crate::flow::FlowTableStats::default();
    let mut open = 0;
    for slot in pool {
        if let Some(s) = lock(slot).as_ref() {
            open += s.len() as u64;
            add_table_stats(&mut stats, s.stats());
        }
    }
    (open, stats)
}

/// At the end of the input, thread `t` of `threads` takes every shard `s`
/// with `s % threads == t` to end its flows.
fn adopt(worker: &mut Worker, pool: &Pool, t: usize, threads: usize) {
    for (s, slot) in pool.iter().enumerate() {
        if s % threads == t
            && let Some(state) = lock(slot).take()
        {
            worker.put_shard(s, state);
        }
    }
}

/// Flows ended per request at the end of the input: the end-of-input
/// records are merged in order of creation a batch at a time, so they never
/// all sit in memory at once.
pub(super) const FINISH_BATCH: usize = 4096;

fn finish_batch(
    worker: &mut Worker,
    shared: &Shared,
    first: Option<(&Pool, usize, usize)>,
    render: Option<&RenderRecord>,
) -> (ChunkResult, bool) {
    if let Some((pool, t, threads)) = first {
        adopt(worker, pool, t, threads);
        worker.begin_finish();
    }
    let mut r = ChunkResult::default();
    // What ending flows teaches is of no use any more.
    let mut writes = Vec::new();
    let access = SharedAccess {
        shared,
        log: &mut writes,
        unconfirmed: None,
    };
    let events = &mut r.events;
    let more = worker.finish_some(access, FINISH_BATCH, &mut |e| events.push((u64::MAX, e)));
    if let Some(render) = render {
        r.rendered.render(&r.events, render);
    }
    r.stats = worker.stats();
    (r, more)
}

fn event_flow(e: &Event) -> u64 {
    match e {
        Event::FlowEnded(r) => r.id,
        Event::Verdict(v) => v.flow,
    }
}

/// Where an event goes in the input order: where it arose, ties by flow.
pub(super) fn event_order((at, e): &(u64, Event)) -> (u64, u64) {
    (*at, event_flow(e))
}

/// Runs the engine over `source` until it ends (or `sink` says stop), then
/// ends every flow. Returns the counters.
pub fn run(options: &EngineOptions, source: &mut dyn Source, sink: &mut dyn Sink) -> PipelineStats {
    let threads = options.threads.clamp(1, SHARDS);
    if threads == 1 {
        return super::one_thread::run(options, source, sink);
    }
    let spin = threads <= std::thread::available_parallelism().map_or(1, |n| n.get());
    // Every shard starts in the pool, and the workers hold none.
    let mut all = Worker::new(&options.flows, &options.detect, |_| true);
    let pool: Vec<Mutex<Option<Shard>>> =
        (0..SHARDS).map(|s| Mutex::new(all.take_shard(s))).collect();
    let pool = &pool[..];
    let mut workers: Vec<Worker> = (0..threads)
        .map(|_| {
            let mut w = Worker::new(&options.flows, &options.detect, |_| false);
            w.set_policy(options.policy.clone());
            w.set_p2p_records_only(sink.p2p_records_only());
            w
        })
        .collect();
    let shared = RwLock::new(Shared::new(&options.detect));
    let applied = Applied::new(spin);
    let want_outcomes = sink.wants_packets();
    let renderer = sink.renderer();
    let render = renderer.as_deref();
    let mut reader0 = workers.remove(0);
    let timed = Times::wanted();
    let mut times = Times::new(timed);

    let (stats, worker_times) = std::thread::scope(|scope| {
        let (result_tx, result_rx) = channel::<(usize, ChunkResult)>();
        let mut jobs: Vec<Sender<Job>> = Vec::new();
        let mut handles = Vec::new();
        for (i, worker) in workers.into_iter().enumerate() {
            let (tx, rx) = channel::<Job>();
            jobs.push(tx);
            let (result_tx, shared, applied) = (result_tx.clone(), &shared, &applied);
            let handle = std::thread::Builder::new()
                .name(format!("p2pguard-{}", i + 1))
                .spawn_scoped(scope, move || {
                    work(
                        (i + 1, threads, spin, timed),
                        worker,
                        rx,
                        result_tx,
                        pool,
                        (shared, applied),
                        render,
                    )
                })
                .expect("cannot start a thread");
            handles.push(handle);
        }
        drop(result_tx);
        let mut reader = Reader::new(ShardSeed::new(options.flows.hash_seed));
        let mut results_wait = Waiting::new(spin);
        let mut latest: Vec<PipelineStats> = vec![PipelineStats::default(); threads];
        let mut peak = 0u64;
        let mut spare: Vec<Chunk> = Vec::new();
        let mut current = reader.read(source, Chunk::default()).map(Arc::new);
        let mut last_chunk = 0;
        // Emptied buffers, by thread, for the next chunk but one (the next
        // one's are sent out before this one's are emptied).
        let mut emptied: Vec<ChunkResult> = (0..threads).map(|_| ChunkResult::default()).collect();
        if let Some(c) = &current {
            for tx in &jobs {
                let _ = tx.send(Job::Chunk(
                    Arc::clone(c),
                    want_outcomes,
                    ChunkResult::default(),
                ));
            }
        }
        while let Some(chunk) = current.take() {
            // Read ahead while the other threads work.
            let mut next = if chunk.last {
                None
            } else {
                reader.read(source, spare.pop().unwrap_or_default())
            };
            times.mark(Activity::Reading);
            let mut results: Vec<ChunkResult> = Vec::with_capacity(threads);
            applied.wait_for(chunk.number - 1);
            times.mark(Activity::Waiting);
            {
                let guard = shared.read().unwrap_or_else(|e| e.into_inner());
                results.push(process_chunk(
                    &mut reader0,
                    pool,
                    &guard,
                    &chunk,
                    true,
                    want_outcomes,
                    render,
                    std::mem::take(&mut emptied[0]),
                ));
            }
            times.mark(Activity::Flows);
            results.resize_with(threads, ChunkResult::default);
            // The other threads' results answer one chunk: each is polled
            // for as the first is.
            let poll = results_wait.poll_for();
            for _ in 1..threads {
                match results_wait.recv_polling(&result_rx, poll).map(from_worker) {
                    Ok((i, r)) => results[i] = r,
                    Err(_) => break,
                }
            }
            times.mark(Activity::Waiting);
            let (mut writes, mut unconfirmed) = (Vec::new(), Vec::new());
            for r in results.iter_mut() {
                let runs = r.runs[..r.runs_used].iter_mut();
                writes.extend(runs.map(|run| std::mem::take(&mut run.writes)));
                unconfirmed.push(std::mem::take(&mut r.unconfirmed));
            }
            let pending = std::cell::RefCell::new(Some(Pending {
                writes,
                unconfirmed,
                chunk: chunk.number,
            }));
            last_chunk = chunk.number;
            peak = peak.max(pool_flows(pool).0);
            for (i, r) in results.iter_mut().enumerate() {
                latest[i] = std::mem::take(&mut r.stats);
            }
            let snapshot = || {
                // Counters asked for now include this chunk's writes.
                if let Some(p) = pending.borrow_mut().take() {
                    p.apply(&shared, &applied);
                }
                let mut s = merged(&latest, &shared, pool);
                s.flows.peak = peak;
                s
            };
            match sink.chunk_done(&snapshot) {
                Control::Continue => {}
                Control::Stop => next = None,
                Control::Reload { rules, policy } => {
                    if let Some(rules) = rules {
                        reader0.reload_rules((*rules).clone());
                        for tx in &jobs {
                            let _ = tx.send(Job::Rules((*rules).clone()));
                        }
                    }
                    if let Some(policy) = policy {
                        reader0.set_policy(policy.clone());
                        for tx in &jobs {
                            let _ = tx.send(Job::Policy(policy.clone()));
                        }
                    }
                }
            }
            if let Some(p) = pending.into_inner()
                && let Err(std::sync::mpsc::SendError(Job::Apply(p))) = jobs[0].send(Job::Apply(p))
            {
                p.apply(&shared, &applied);
            }
            // The others start on the next chunk while this one is reported.
            let next = next.map(Arc::new);
            if let Some(n) = &next {
                for (t, tx) in jobs.iter().enumerate() {
                    let spare = std::mem::take(&mut emptied[t + 1]);
                    let _ = tx.send(Job::Chunk(Arc::clone(n), want_outcomes, spare));
                }
            }
            times.mark(Activity::Handing);
            report(&chunk, &mut results, sink, want_outcomes);
            times.mark(Activity::Reporting);
            for (buffer, r) in emptied.iter_mut().zip(results) {
                *buffer = r;
            }
            if let Ok(c) = Arc::try_unwrap(chunk) {
                spare.push(c);
            }
            current = next;
        }
        // The end of the input: every thread ends its open flows, a batch
        // at a time; the batches are merged by flow id. Each worker thread
        // makes its next batch while the last one is reported.
        applied.wait_for(last_chunk);
        let guard = shared.read().unwrap_or_else(|e| e.into_inner());
        let mut buffers: Vec<std::collections::VecDeque<Event>> = vec![Default::default(); threads];
        // The buffered events' records, formatted.
        let mut rendered: Vec<Rendered> = (0..threads).map(|_| Rendered::default()).collect();
        let mut more = vec![true; threads];
        for tx in &jobs {
            let _ = tx.send(Job::Finish(1));
        }
        let mut first = true;
        loop {
            // Refill every empty buffer that has more to come.
            for t in 0..threads {
                while buffers[t].is_empty() && more[t] {
                    if t == 0 {
                        let adopt = first.then_some((pool, 0, threads));
                        first = false;
                        let (r, m) = finish_batch(&mut reader0, &guard, adopt, render);
                        take_batch((&mut buffers[0], &mut rendered[0]), &mut latest[0], r);
                        more[0] = m;
                        continue;
                    }
                    match finish_rx(&result_rx, &mut results_wait) {
                        Some((u, r, m)) => {
                            take_batch((&mut buffers[u], &mut rendered[u]), &mut latest[u], r);
                            more[u] = m;
                            if m {
                                let _ = jobs[u - 1].send(Job::Finish(0));
                            }
                        }
                        None => more.iter_mut().for_each(|m| *m = false),
                    }
                }
            }
            // Report in id order until a buffer that may have more runs dry.
            loop {
                let next = (0..threads)
                    .filter_map(|t| buffers[t].front().map(|e| (event_flow(e), t)))
                    .min();
                let Some((_, t)) = next else {
                    break;
                };
                let e = buffers[t].pop_front().expect("a front");
                deliver(sink, e, &mut rendered[t]);
                if buffers[t].is_empty() && more[t] {
                    break;
                }
            }
            if buffers.iter().all(|b| b.is_empty()) && more.iter().all(|m| !m) {
                break;
            }
        }
        for tx in &jobs {
            let _ = tx.send(Job::Finish(usize::MAX));
        }
        times.mark(Activity::Ending);
        drop(guard);
        let mut stats = merged(&latest, &shared, pool);
        stats.flows.peak = peak.max(stats.flows_open_at_end);
        let worker_times: Vec<Times> = handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect();
        (stats, worker_times)
    });
    if times.on() {
        // Written as well as may be: a closed standard error must not
        // fail the run (eprintln! would panic).
        use std::io::Write;
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "{}: thread 0 (reads): {times}", super::times::ENV);
        for (i, t) in worker_times.iter().enumerate() {
            let _ = writeln!(err, "{}: thread {}: {t}", super::times::ENV, i + 1);
        }
    }
    stats
}

/// A finish batch's results from a worker thread (`more` is in the
/// stats' place: see [`work`]).
fn finish_rx(
    rx: &Receiver<(usize, ChunkResult)>,
    waiting: &mut Waiting,
) -> Option<(usize, ChunkResult, bool)> {
    let (t, r) = waiting.recv(rx).map(from_worker).ok()?;
    let more = r.open_flows > 0;
    Some((t, r, more))
}

/// Adds a finish batch to a thread's buffer, which may still hold some of
/// its last batch: the reading thread takes whichever thread's batch comes
/// in, and each worker thread makes its next batch as soon as its last one
/// is taken.
fn take_batch(
    (buffer, rendered): (&mut std::collections::VecDeque<Event>, &mut Rendered),
    latest: &mut PipelineStats,
    mut r: ChunkResult,
) {
    buffer.extend(r.events.drain(..).map(|(_, e)| e));
    rendered.append(std::mem::take(&mut r.rendered));
    *latest = std::mem::take(&mut r.stats);
}

/// The counters of every thread, of the shards in the pool and of the
/// shared state.
fn merged(latest: &[PipelineStats], shared: &RwLock<Shared>, pool: &Pool) -> PipelineStats {
    let mut s = PipelineStats::default();
    for l in latest {
        s.add(l);
    }
    add_table_stats(&mut s.flows, &pool_flows(pool).1);
    let guard = shared.read().unwrap_or_else(|e| e.into_inner());
    let (cache, behaviour) = guard.stats();
    s.set_shared(cache, behaviour);
    s
}

/// Every shard's events of a chunk, and their formatted records.
type Runs<'a> = (Vec<&'a mut Vec<(u64, Event)>>, Vec<&'a mut Rendered>);

fn runs(results: &mut [ChunkResult]) -> Runs<'_> {
    results
        .iter_mut()
        .flat_map(|r| r.runs[..r.runs_used].iter_mut())
        .map(|run| (&mut run.events, &mut run.rendered))
        .unzip()
}

/// Hands a finished chunk's events (and frames) to the sink in input order.
fn report(chunk: &Chunk, results: &mut [ChunkResult], sink: &mut dyn Sink, want_outcomes: bool) {
    let mut outcomes: Vec<Option<PacketOutcome>> = Vec::new();
    if want_outcomes {
        outcomes.resize(chunk.frames.len(), None);
        for r in results.iter_mut() {
            for (i, o) in r.outcomes.drain(..) {
                outcomes[i as usize] = Some(o);
            }
        }
    }
    let (lists, mut rendered) = runs(results);
    let mut events = Merge::new(lists, event_order);
    if !want_outcomes {
        while let Some((run, (_, e))) = events.next_of_list() {
            deliver(sink, e, rendered[run]);
        }
        return;
    }
    // Events of a packet come before the packet, as in one thread.
    for (f, outcome) in chunk.frames.iter().zip(outcomes) {
        while let Some((run, (_, e))) = events.next_of_list_if(|(key, _)| *key <= at_packet(f.seq))
        {
            deliver(sink, e, rendered[run]);
        }
        if let Some(o) = outcome {
            let frame = Frame {
                ts: f.ts,
                link: f.link,
                data: chunk.bytes(f),
                wire_len: f.wire_len,
            };
            sink.packet(frame, o);
        }
    }
    while let Some((run, (_, e))) = events.next_of_list() {
        deliver(sink, e, rendered[run]);
    }
}

/// A worker thread (`index` of `threads`): processes chunks until told to
/// finish. Returns where its time went (see [`Times`]; counted if `timed`).
fn work(
    (index, threads, spin, timed): (usize, usize, bool, bool),
    mut worker: Worker,
    jobs: Receiver<Job>,
    results: Sender<(usize, ChunkResult)>,
    pool: &Pool,
    (shared, applied): (&RwLock<Shared>, &Applied),
    render: Option<&RenderRecord>,
) -> Times {
    // The first worker thread applies the chunks' writes.
    let _exit = WorkerExit {
        results: &results,
        applied: (index == 1).then_some(applied),
    };
    let mut times = Times::new(timed);
    let mut waiting = Waiting::new(spin);
    while let Ok(job) = waiting.recv(&jobs) {
        times.mark(Activity::Waiting);
        match job {
            Job::Chunk(chunk, want_outcomes, buffers) => {
                applied.wait_for(chunk.number - 1);
                times.mark(Activity::Waiting);
                let r = {
                    let guard = shared.read().unwrap_or_else(|e| e.into_inner());
                    process_chunk(
                        &mut worker,
                        pool,
                        &guard,
                        &chunk,
                        false,
                        want_outcomes,
                        render,
                        buffers,
                    )
                };
                drop(chunk);
                times.mark(Activity::Flows);
                if results.send((index, r)).is_err() {
                    return times;
                }
            }
            Job::Policy(p) => {
                worker.set_policy(p);
                times.mark(Activity::Applying);
            }
            Job::Rules(r) => {
                worker.reload_rules(r);
                times.mark(Activity::Applying);
            }
            Job::Apply(p) => {
                p.apply(shared, applied);
                times.mark(Activity::Applying);
            }
            // 1: the first batch, 0: the next one, anything else: done.
            Job::Finish(first @ (0 | 1)) => {
                let (mut r, more) = {
                    let guard = shared.read().unwrap_or_else(|e| e.into_inner());
                    let adopt = (first == 1).then_some((pool, index, threads));
                    finish_batch(&mut worker, &guard, adopt, render)
                };
                r.open_flows = u64::from(more);
                times.mark(Activity::Ending);
                if results.send((index, r)).is_err() {
                    return times;
                }
            }
            Job::Finish(_) => return times,
        }
    }
    times
}

/// How a thread waits for the next message from the others: polling for
/// a short while first. The other threads mostly answer within a chunk's
/// time, and a blocked thread takes long to wake (on a virtual machine, an
/// idle virtual CPU is halted and woken by the hypervisor, which can take a
/// tenth of a millisecond: that once per chunk and thread cost a tenth of
/// the run). A thread polls for at most as long as it has been since its
/// last message (working, mostly), so that polling takes at most about
/// half of its time: on a live link a chunk may come every few
/// milliseconds and hold a few packets, and polling for a fixed half
/// millisecond after each took a quarter of a CPU. Polling is only for
/// threads that each have a CPU: else it takes one from a thread with work
/// to do.
struct Waiting {
    poll: bool,
    /// When the last message came.
    came: std::time::Instant,
}

impl Waiting {
    /// The longest a thread polls.
    const POLL: std::time::Duration = std::time::Duration::from_micros(500);

    fn new(poll: bool) -> Waiting {
        Waiting {
            poll,
            came: std::time::Instant::now(),
        }
    }

    /// How long to poll for the next message.
    fn poll_for(&self) -> std::time::Duration {
        if self.poll {
            self.came.elapsed().min(Self::POLL)
        } else {
            std::time::Duration::ZERO
        }
    }

    /// Receives from `rx`.
    fn recv<T>(&mut self, rx: &Receiver<T>) -> Result<T, std::sync::mpsc::RecvError> {
        self.recv_polling(rx, self.poll_for())
    }

    /// Receives from `rx`, polling for up to `poll` first.
    fn recv_polling<T>(
        &mut self,
        rx: &Receiver<T>,
        poll: std::time::Duration,
    ) -> Result<T, std::sync::mpsc::RecvError> {
        let v = poll_then_recv(rx, poll);
        self.came = std::time::Instant::now();
        v
    }
}

fn poll_then_recv<T>(
    rx: &Receiver<T>,
    poll: std::time::Duration,
) -> Result<T, std::sync::mpsc::RecvError> {
    if poll.is_zero() {
        return rx.recv();
    }
    let start = std::time::Instant::now();
    loop {
        for _ in 0..64 {
            match rx.try_recv() {
                Ok(v) => return Ok(v),
                Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                    return Err(std::sync::mpsc::RecvError);
                }
                Err(std::sync::mpsc::TryRecvError::Empty) => std::hint::spin_loop(),
            }
        }
        if start.elapsed() > poll {
            return rx.recv();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::{Confidence, Protocol};
    use crate::output::FlowRecord;
    use crate::output::sample::record;
    use crate::pipeline::VerdictEvent;
    use crate::policy::Action;

    fn flow(id: u64) -> (u64, Event) {
        let mut r = record(None, None, None);
        r.id = id;
        (id, Event::FlowEnded(r))
    }

    #[test]
    fn formatted_records_stay_with_their_events() {
        let r = record(None, None, None);
        let verdict = VerdictEvent {
            ts: r.first_seen,
            flow: 2,
            transport: r.transport,
            src: r.src,
            dst: r.dst,
            protocol: Protocol::Bittorrent,
            confidence: Confidence::Unidirectional,
            evidence: Vec::new(),
            rule: "default".into(),
            action: Action::Log,
        };
        let events = [
            flow(1),
            (2, Event::Verdict(verdict)),
            flow(3),
            flow(4),
            flow(5),
        ];
        // Refuses flow 3, writes nothing for flow 4.
        let render = |record: &FlowRecord, out: &mut Vec<u8>| match record.id {
            3 => {
                out.extend_from_slice(b"half");
                false
            }
            4 => true,
            id => {
                out.extend_from_slice(format!("flow {id};").as_bytes());
                true
            }
        };
        let mut rendered = Rendered::default();
        rendered.render(&events, &render);
        let got: Vec<Option<Vec<u8>>> = (0..events.len() + 1)
            .map(|_| rendered.next().map(<[u8]>::to_vec))
            .collect();
        let want: [Option<&[u8]>; 6] = [
            Some(b"flow 1;"),
            None,
            None,
            Some(b""),
            Some(b"flow 5;"),
            None,
        ];
        assert_eq!(got, want.map(|w| w.map(<[u8]>::to_vec)));
        // Formatting anew starts over.
        rendered.render(&events[4..], &render);
        assert_eq!(rendered.next(), Some(&b"flow 5;"[..]));
    }

    #[test]
    fn a_batch_appended_comes_after_what_is_left_of_the_last() {
        let render = |record: &FlowRecord, out: &mut Vec<u8>| {
            out.extend_from_slice(format!("{};", record.id).as_bytes());
            true
        };
        let mut left = Rendered::default();
        left.render(&[flow(1), flow(2), flow(3)], &render);
        assert_eq!(left.next(), Some(&b"1;"[..]));
        let mut later = Rendered::default();
        later.render(&[flow(4), flow(5)], &render);
        left.append(later);
        let rest: Vec<Vec<u8>> = std::iter::from_fn(|| left.next().map(<[u8]>::to_vec)).collect();
        assert_eq!(rest, [&b"2;"[..], b"3;", b"4;", b"5;"]);
        // Appended to an emptied one, and to a new one.
        let mut more = Rendered::default();
        more.render(&[flow(6)], &render);
        left.append(more);
        assert_eq!(left.next(), Some(&b"6;"[..]));
        let mut fresh = Rendered::default();
        let mut one = Rendered::default();
        one.render(&[flow(7)], &render);
        fresh.append(one);
        assert_eq!(fresh.next(), Some(&b"7;"[..]));
        assert_eq!(fresh.next(), None);
    }

    /// The CPU time the calling thread has used.
    #[allow(unsafe_code)]
    fn thread_cpu() -> std::time::Duration {
        let mut t = std::mem::MaybeUninit::<libc::timespec>::uninit();
        // SAFETY: `t` is writable memory for one timespec, which
        // clock_gettime fills when it returns 0.
        let t = unsafe {
            let r = libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, t.as_mut_ptr());
            assert_eq!(r, 0, "clock_gettime failed");
            t.assume_init()
        };
        std::time::Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
    }

    #[test]
    fn a_thread_with_next_to_no_work_does_not_poll_for_its_next_message() {
        // Messages 2 ms apart, as a quiet live link makes chunks; the
        // receiver does nothing between them.
        let (tx, rx) = channel();
        let sender = std::thread::spawn(move || {
            for i in 0..100 {
                std::thread::sleep(std::time::Duration::from_millis(2));
                tx.send(i).unwrap();
            }
        });
        let mut waiting = Waiting::new(true);
        let start = thread_cpu();
        for i in 0..100 {
            assert_eq!(waiting.recv(&rx).unwrap(), i);
        }
        let used = thread_cpu() - start;
        sender.join().unwrap();
        assert!(waiting.recv(&rx).is_err(), "the sender is gone");
        // Polling for Waiting::POLL before each message would take 50 ms.
        assert!(
            used < std::time::Duration::from_millis(20),
            "waiting for 100 messages took {used:?} of CPU"
        );
    }
}
