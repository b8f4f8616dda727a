//! The packet pipeline: decode, track the flow, detect, decide. It takes
//! bytes, a link type and a packet timestamp, and nothing else: no file, no
//! socket, no clock. Capture sources feed it; outputs and enforcers consume
//! its [`Event`]s (flows as they end, policy decisions as they are made)
//! and the [`PacketAction`] of each packet.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use crate::decode::{self, LinkType, Skip, SkipCounts, Transport};
use crate::detect::behaviour::{Behaviour, BehaviourStats, FlowFacts};
use crate::detect::cache::{CacheStats, EndpointCache, Learnt, Transports};
use crate::detect::{Confidence, DetectConfig, Detection, FlowState, PacketView, Protocol};
use crate::flow::{
    EndReason, Endpoint, Flow, FlowConfig, FlowTable, FlowTableStats, bytes_per_flow,
};
use crate::output::{Enforced, FlowRecord};
use crate::policy::{Action, Decision, FlowView, Policy, Scope, Throttle};
use crate::timestamp::Timestamp;

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
    policy: Option<Arc<Policy>>,
    /// Bumped when the policy changes, so flows decide again.
    generation: u8,
    /// What was dropped and delayed, for flows the policy acts on.
    enforced: HashMap<u64, Enforced>,
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
            policy: None,
            generation: 0,
            enforced: HashMap::new(),
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

    /// An enforcer dropped a packet it had been told to shape (its delay
    /// queue was full): counted as dropped instead of delayed.
    pub fn shaper_dropped(&mut self, flow: u64, wire_len: u32) {
        if let Some(e) = self.enforced.get_mut(&flow) {
            e.delayed_packets = e.delayed_packets.saturating_sub(1);
            e.delayed_bytes = e.delayed_bytes.saturating_sub(u64::from(wire_len));
            e.dropped_packets += 1;
            e.dropped_bytes += u64::from(wire_len);
        }
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
        self.stats.packets += 1;
        self.stats.bytes += u64::from(wire_len);
        self.stats.first_ts = Some(self.stats.first_ts.map_or(ts, |f| f.min(ts)));
        self.stats.last_ts = Some(self.stats.last_ts.map_or(ts, |l| l.max(ts)));
        let mut ender = Ender {
            detection: &self.detection,
            behaviour: &mut self.behaviour,
            policy: self.policy.as_deref(),
            generation: self.generation,
            enforced: &mut self.enforced,
            decisions: &mut self.stats.decisions,
        };
        if ts > self.now {
            self.now = ts;
            self.table
                .expire(ts, &mut |flow, why| ender.end(flow, why, events));
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
        let tracked = self.table.track(&packet, wire_len, ts, &mut |flow, why| {
            ender.end(flow, why, events)
        });
        let flow = self.table.get_mut(tracked.flow);
        let mut verdict_changed = false;
        if tracked.is_new {
            // A flow to or from a known P2P endpoint is named at once.
            let hit = [flow.responder(), flow.originator()]
                .into_iter()
                .find_map(|ep| self.cache.lookup(ep, packet.transport, ts));
            let facts = flow_facts(flow);
            ender.behaviour.flow_started(&facts, ts);
            if let Some(protocol) = hit {
                self.detection.name_from_cache(&mut flow.ext, protocol);
                verdict_changed = true;
            } else if let Some((protocol, signals)) = ender.behaviour.judge(&facts, ts) {
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
                ender
                    .behaviour
                    .confirm_host(flow.originator().ip(), protocol, ts);
                ender
                    .behaviour
                    .confirm_host(flow.responder().ip(), protocol, ts);
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
        PacketOutcome::Tracked {
            flow: flow.id,
            status,
            verdict_changed,
            action,
            sealed,
        }
    }

    /// Ends every open flow (end of input).
    pub fn finish(&mut self, events: &mut impl FnMut(Event)) {
        self.stats.flows_open_at_end = self.table.len() as u64;
        let mut ender = Ender {
            detection: &self.detection,
            behaviour: &mut self.behaviour,
            policy: self.policy.as_deref(),
            generation: self.generation,
            enforced: &mut self.enforced,
            decisions: &mut self.stats.decisions,
        };
        self.table
            .drain(&mut |flow, why| ender.end(flow, why, events));
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

/// What ending flows and deciding need, borrowed from the pipeline.
struct Ender<'a> {
    detection: &'a Detection,
    behaviour: &'a mut Behaviour,
    policy: Option<&'a Policy>,
    generation: u8,
    enforced: &'a mut HashMap<u64, Enforced>,
    decisions: &'a mut u64,
}

impl Ender<'_> {
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
            *self.decisions += 1;
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
        self.behaviour.flow_ended(&facts, flow.last_seen);
        let mut named = false;
        if flow.ext.verdict.protocol.is_none()
            && let Some((protocol, signals)) = self.behaviour.judge(&facts, flow.last_seen)
        {
            let at = flow.total_packets();
            self.detection
                .name_from_behaviour(&mut flow.ext, protocol, &signals, at);
            named = true;
        }
        let last = flow.last_seen;
        let decision = self.decide(&mut flow, last, named, events);
        let enforced = self.enforced.remove(&flow.id).unwrap_or_default();
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
