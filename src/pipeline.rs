//! The packet pipeline: decode, track the flow, detect. It takes bytes, a
//! link type and a packet timestamp, and nothing else: no file, no socket,
//! no clock. Capture sources feed it; outputs consume the [`FlowRecord`]s of
//! flows as they end.

use crate::decode::{self, LinkType, Skip, SkipCounts, Transport};
use crate::detect::behaviour::{Behaviour, BehaviourStats, FlowFacts};
use crate::detect::cache::{CacheStats, EndpointCache, Learnt, Transports};
use crate::detect::{Confidence, DetectConfig, Detection, FlowState, PacketView, Protocol};
use crate::flow::{EndReason, Flow, FlowConfig, FlowTable, FlowTableStats, bytes_per_flow};
use crate::output::FlowRecord;
use crate::timestamp::Timestamp;

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
}

/// The pipeline; see the module documentation.
#[derive(Debug)]
pub struct Pipeline {
    table: FlowTable<FlowState>,
    detection: Detection,
    cache: EndpointCache,
    behaviour: Behaviour,
    /// Endpoints announced by the packet being processed (reused buffer).
    learnt: Vec<Learnt>,
    stats: PipelineStats,
    now: Timestamp,
}

impl Pipeline {
    /// A pipeline with the given flow limits and detection rules.
    pub fn new(flows: FlowConfig, detect: DetectConfig) -> Pipeline {
        Pipeline {
            table: FlowTable::new(flows),
            cache: EndpointCache::new(detect.cache.clone()),
            behaviour: Behaviour::new(detect.behaviour.clone()),
            learnt: Vec::new(),
            detection: Detection::new(detect),
            stats: PipelineStats {
                bytes_per_flow: bytes_per_flow::<FlowState>(),
                ..PipelineStats::default()
            },
            now: Timestamp(0),
        }
    }

    /// The detection engine (rules, evidence names).
    pub fn detection(&self) -> &Detection {
        &self.detection
    }

    /// Processes one captured frame. `wire_len` is its original length.
    /// Flows that end on the way (timeouts, eviction) go to `ended`.
    pub fn process(
        &mut self,
        ts: Timestamp,
        link: LinkType,
        frame: &[u8],
        wire_len: u32,
        ended: &mut impl FnMut(FlowRecord),
    ) -> PacketOutcome {
        self.stats.packets += 1;
        self.stats.bytes += u64::from(wire_len);
        self.stats.first_ts = Some(self.stats.first_ts.map_or(ts, |f| f.min(ts)));
        self.stats.last_ts = Some(self.stats.last_ts.map_or(ts, |l| l.max(ts)));
        if ts > self.now {
            self.now = ts;
            let (detection, behaviour) = (&self.detection, &mut self.behaviour);
            self.table.expire(ts, &mut |flow, why| {
                ended(end_flow(detection, behaviour, flow, why))
            });
        }
        let packet = match decode::decode(link, frame) {
            Ok(p) => p,
            Err(skip) => {
                self.stats.skipped.add(skip);
                return PacketOutcome::Skipped(skip);
            }
        };
        self.stats.tracked += 1;
        if packet.truncated {
            self.stats.truncated_payloads += 1;
        }
        let (detection, behaviour) = (&self.detection, &mut self.behaviour);
        let tracked = self.table.track(&packet, wire_len, ts, &mut |flow, why| {
            ended(end_flow(detection, behaviour, flow, why))
        });
        let flow = self.table.get_mut(tracked.flow);
        let mut verdict_changed = false;
        if tracked.is_new {
            // A flow to or from a known P2P endpoint is named at once.
            let hit = [flow.responder(), flow.originator()]
                .into_iter()
                .find_map(|ep| self.cache.lookup(ep, packet.transport, ts));
            let facts = flow_facts(flow);
            self.behaviour.flow_started(&facts, ts);
            if let Some(protocol) = hit {
                self.detection.name_from_cache(&mut flow.ext, protocol);
                verdict_changed = true;
            } else if let Some((protocol, signals)) = self.behaviour.judge(&facts, ts) {
                self.detection
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
            let progress = self
                .detection
                .inspect(&mut flow.ext, &view, total, &mut self.learnt);
            verdict_changed |= progress.verdict_changed;
            for learnt in self.learnt.drain(..) {
                self.cache.learn(learnt, ts);
            }
            // Structural evidence confirms the flow's listening endpoints:
            // the TCP responder; for UDP both sides (P2P UDP sockets listen).
            if let (Some(protocol), false) = (flow.ext.verdict.protocol, flow.ext.endpoints_cached)
                && flow.ext.verdict.confidence >= Confidence::Unidirectional
            {
                flow.ext.endpoints_cached = true;
                let t = Transports::from(packet.transport);
                self.cache.confirm(protocol, flow.responder(), t, ts);
                if packet.transport == Transport::Udp {
                    self.cache.confirm(protocol, flow.originator(), t, ts);
                }
                self.behaviour
                    .confirm_host(flow.originator().ip(), protocol, ts);
                self.behaviour
                    .confirm_host(flow.responder().ip(), protocol, ts);
            }
        }
        PacketOutcome::Tracked {
            flow: flow.id,
            status: status(&flow.ext),
            verdict_changed,
        }
    }

    /// Ends every open flow (end of input).
    pub fn finish(&mut self, ended: &mut impl FnMut(FlowRecord)) {
        self.stats.flows_open_at_end = self.table.len() as u64;
        let (detection, behaviour) = (&self.detection, &mut self.behaviour);
        self.table
            .drain(&mut |flow, why| ended(end_flow(detection, behaviour, flow, why)));
    }

    /// Counters so far.
    pub fn stats(&self) -> PipelineStats {
        PipelineStats {
            flows: self.table.stats().clone(),
            cache: self.cache.stats(),
            behaviour: self.behaviour.stats(),
            ..self.stats.clone()
        }
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

/// A flow ends: it counts for its host's behaviour, may be named from it
/// if nothing else named it, and becomes a record.
fn end_flow(
    detection: &Detection,
    behaviour: &mut Behaviour,
    mut flow: Flow<FlowState>,
    why: EndReason,
) -> FlowRecord {
    let facts = flow_facts(&flow);
    behaviour.flow_ended(&facts, flow.last_seen);
    if flow.ext.verdict.protocol.is_none()
        && let Some((protocol, signals)) = behaviour.judge(&facts, flow.last_seen)
    {
        let at = flow.total_packets();
        detection.name_from_behaviour(&mut flow.ext, protocol, &signals, at);
    }
    record(detection, flow, why)
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
        evidence: state
            .evidence_ids()
            .iter()
            .map(|id| detection.evidence_name(*id).to_string())
            .collect(),
        decided_at_packet: protocol.map(|_| state.verdict.decided_at_packet),
        decided_at_payload_packet: protocol.map(|_| state.verdict.decided_at_payload_packet),
        facts,
        end: why,
    }
}
