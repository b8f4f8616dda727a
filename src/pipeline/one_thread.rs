//! The engine on one thread: frames are decoded and processed as the source
//! hands them over, straight from its buffer, with nothing staged in chunks
//! (copying each chunk out and reading it back cost more than the copy: a
//! chunk is larger than a core's cache). The input is still cut into the
//! same chunks and what flows teach still applies at each chunk's end, so
//! the results are exactly those of the [`parallel`](super::parallel)
//! engine with any number of threads. Only when the sink hears of them
//! differs: here a packet's events reach it at once, before the chunk's
//! [`Sink::chunk_done`], where the parallel engine reports a chunk after
//! it (a stats line taken there counts one chunk's flows more or less).

use super::merge::push_in_order;
use super::parallel::{
    Control, EngineOptions, FINISH_BATCH, Next, Sink, Source, at_chunk_end, at_packet, event_order,
};
use super::shared::{Keyed, Shared};
use super::{
    ChunkCutter, Event, PacketOutcome, PipelineStats, ShardSeed, SharedAccess, Worker, shard_of,
};
use crate::decode;
use crate::timestamp::Timestamp;

/// The state of a run.
struct Run<'a> {
    worker: Worker,
    shared: Shared,
    sink: &'a mut dyn Sink,
    want_outcomes: bool,
    cutter: ChunkCutter,
    /// Input position of the latest frame.
    seq: u64,
    /// Frames in the current chunk.
    in_chunk: usize,
    /// The latest packet time of the frames in chunks so far.
    latest: Timestamp,
    /// Writes of the current chunk, applied at its end.
    writes: Vec<Keyed>,
    /// Flow starts and ends that count only if a host gets confirmed.
    unconfirmed: Vec<Keyed>,
    /// One packet's (or one chunk end's) events, put in order.
    events: Vec<(u64, Event)>,
    /// Most flows open at a chunk's end.
    peak: u64,
    stopped: bool,
    /// The shard hash's seed.
    seed: ShardSeed,
}

impl Run<'_> {
    fn frame(&mut self, frame: super::parallel::Frame<'_>) {
        if self.cutter.begins_chunk(frame.ts) && self.in_chunk > 0 {
            self.end_chunk();
        }
        if self.stopped {
            return;
        }
        self.seq += 1;
        self.in_chunk += 1;
        self.latest = self.latest.max(frame.ts);
        let seed = self.seed.seed(frame.ts, frame.data);
        let outcome = match decode::decode(frame.link, frame.data) {
            Ok(packet) => {
                let access = SharedAccess {
                    shared: &self.shared,
                    log: &mut self.writes,
                    unconfirmed: Some(&mut self.unconfirmed),
                };
                let (events, key) = (&mut self.events, at_packet(self.seq));
                self.worker.process(
                    access,
                    self.seq,
                    frame.ts,
                    shard_of(&packet, seed),
                    (&packet, None),
                    frame.wire_len,
                    &mut |e| push_in_order(events, (key, e), event_order),
                )
            }
            Err(skip) => {
                self.worker.skipped(frame.ts, frame.wire_len, skip);
                PacketOutcome::Skipped(skip)
            }
        };
        self.report_events();
        if self.want_outcomes {
            self.sink.packet(frame, outcome);
        }
    }

    fn report_events(&mut self) {
        // Most packets end nothing and decide nothing.
        if self.events.is_empty() {
            return;
        }
        for (_, e) in self.events.drain(..) {
            self.sink.event(e);
        }
    }

    /// The end of a chunk: idle flows end, what the chunk taught applies,
    /// and the sink may stop the run or reload rules and policy.
    /// A chunk with no frame (live capture, idle) only gives the sink its
    /// turn.
    fn end_chunk(&mut self) {
        if self.in_chunk > 0 {
            let access = SharedAccess {
                shared: &self.shared,
                log: &mut self.writes,
                unconfirmed: Some(&mut self.unconfirmed),
            };
            let (events, key) = (&mut self.events, at_chunk_end(self.seq));
            self.worker
                .end_chunk(access, key, self.latest, &mut |e| events.push((key, e)));
            self.shared
                .apply_chunk([&mut self.writes], [&mut self.unconfirmed]);
            self.in_chunk = 0;
        }
        self.peak = self.peak.max(self.worker.open_flows());
        let (worker, shared, peak) = (&self.worker, &self.shared, self.peak);
        let snapshot = || stats(worker, shared, peak);
        match self.sink.chunk_done(&snapshot) {
            Control::Continue => {}
            Control::Stop => self.stopped = true,
            Control::Reload { rules, policy } => {
                if let Some(rules) = rules {
                    self.worker.reload_rules(*rules);
                }
                if let Some(policy) = policy {
                    self.worker.set_policy(policy);
                }
            }
        }
        self.report_events();
    }

    /// The end of the input: every open flow ends, in order of creation.
    fn finish(mut self) -> PipelineStats {
        self.worker.begin_finish();
        loop {
            let access = SharedAccess {
                shared: &self.shared,
                log: &mut self.writes,
                unconfirmed: None,
            };
            let events = &mut self.events;
            let more = self
                .worker
                .finish_some(access, FINISH_BATCH, &mut |e| events.push((u64::MAX, e)));
            self.writes.clear();
            self.report_events();
            if !more {
                break;
            }
        }
        let mut s = stats(&self.worker, &self.shared, self.peak);
        s.flows.peak = self.peak.max(s.flows_open_at_end);
        s
    }
}

fn stats(worker: &Worker, shared: &Shared, peak: u64) -> PipelineStats {
    let mut s = worker.stats();
    let (cache, behaviour) = shared.stats();
    s.set_shared(cache, behaviour);
    s.flows.peak = peak;
    s
}

/// Runs the engine on this thread over `source` until it ends (or `sink`
/// says stop), then ends every flow. Returns the counters.
pub(super) fn run(
    options: &EngineOptions,
    source: &mut dyn Source,
    sink: &mut dyn Sink,
) -> PipelineStats {
    let mut worker = Worker::new(&options.flows, &options.detect, |_| true);
    worker.set_policy(options.policy.clone());
    worker.set_p2p_records_only(sink.p2p_records_only());
    let mut run = Run {
        worker,
        shared: Shared::new(&options.detect),
        want_outcomes: sink.wants_packets(),
        sink,
        cutter: ChunkCutter::default(),
        seq: 0,
        in_chunk: 0,
        latest: Timestamp(0),
        writes: Vec::new(),
        unconfirmed: Vec::new(),
        events: Vec::new(),
        peak: 0,
        stopped: false,
        seed: ShardSeed::new(options.flows.hash_seed),
    };
    while !run.stopped {
        let mut took = false;
        let next = source.next(&mut |frame| {
            took = true;
            run.frame(frame)
        });
        match next {
            Next::Frame if took => {}
            // Live capture with nothing to read: the chunk so far ends now
            // (and the sink serves signals and stats). A source that says
            // "frame" and gives none is taken as idle, as the parallel
            // reader takes it.
            Next::Frame | Next::Idle => run.end_chunk(),
            Next::End => {
                run.end_chunk();
                break;
            }
        }
    }
    run.finish()
}
