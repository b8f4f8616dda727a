//! Per-flow detection: shows each payload packet (but whole DNS messages,
//! see [`known`](super::known)) to the signature rules and to the
//! structural detectors, and folds what they report into the flow's
//! [`Verdict`].

use std::collections::HashMap;

use super::behaviour::{BehaviourConfig, Signal};
use super::cache::{CacheConfig, Learnt};
use super::known;
use super::registry::{DetectorStates, Detectors};
use super::rules::RuleSet;
use super::{Confidence, Evidence, Facts, PacketView, Protocol, Verdict};
use crate::flow::Direction;

/// What detection is built from.
#[derive(Clone, Debug)]
pub struct DetectConfig {
    /// The compiled signature rules.
    pub rules: RuleSet,
    /// Limits of the endpoint cache.
    pub cache: CacheConfig,
    /// Window, limits and thresholds of the host behaviour signals.
    pub behaviour: BehaviourConfig,
}

impl DetectConfig {
    /// These rules, with the default cache and behaviour settings.
    pub fn new(rules: RuleSet) -> DetectConfig {
        DetectConfig {
            rules,
            cache: CacheConfig::default(),
            behaviour: BehaviourConfig::default(),
        }
    }
}

/// The evidence of a flow named from the endpoint cache.
pub const CACHE_EVIDENCE: &str = "cache.endpoint";

/// Payload packets (both ways) after which detection stops looking at a
/// flow, whatever the rules and detectors still wait for.
const MAX_INSPECTED_PAYLOAD_PACKETS: u32 = 32;

/// Evidence names a flow keeps at most; later ones are counted, not kept.
const MAX_EVIDENCE: usize = 6;

/// Detection state of one flow: small and fixed-size (facts, rare, are boxed).
#[derive(Clone, Debug, Default)]
pub struct FlowState {
    /// The verdict so far.
    pub verdict: Verdict,
    /// Best evidence for the verdict's protocol from each side.
    side: [Option<Confidence>; 2],
    /// Ids (see [`Detection::evidence_name`]) of the evidence seen.
    evidence: [u16; MAX_EVIDENCE],
    evidence_len: u8,
    /// Payload packets seen per side.
    payload_packets: [u16; 2],
    /// Detectors that said "not mine", one bit each.
    retired: u32,
    /// No rule or detector will look at another packet of this flow.
    finished: bool,
    /// The flow's endpoints were given to the endpoint cache.
    pub endpoints_cached: bool,
    /// The policy's decision: rule index (`u16::MAX`: the default action)
    /// and the policy generation it was made under.
    pub decision: Option<(u16, u8)>,
    /// Cleartext facts, if any were found.
    pub facts: Option<Box<Facts>>,
    detectors: DetectorStates,
}

impl FlowState {
    /// Ids of the evidence seen, in order.
    pub fn evidence_ids(&self) -> &[u16] {
        &self.evidence[..usize::from(self.evidence_len)]
    }

    /// Whether detection has stopped looking at this flow.
    pub fn finished(&self) -> bool {
        self.finished
    }
}

/// What one packet changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// The protocol or confidence changed.
    pub verdict_changed: bool,
    /// Detection finished with this packet.
    pub finished: bool,
}

/// The detection engine: rules and detectors, shared by every flow.
#[derive(Debug)]
pub struct Detection {
    rules: RuleSet,
    detectors: Detectors,
    /// Evidence names by id. Ids only ever grow: rules reloaded later get
    /// new ids, so the evidence of flows already tracked keeps its names.
    names: Vec<String>,
    ids: HashMap<String, u16>,
    /// The evidence id of each rule, by rule index.
    rule_ids: Vec<u16>,
}

impl Detection {
    /// Builds the engine.
    pub fn new(config: DetectConfig) -> Detection {
        Detection::with_names(config.rules, Vec::new())
    }

    /// Builds an engine with new rules that keeps the evidence ids of this
    /// one (for reloading rules while flows are tracked).
    pub fn reloaded(&self, rules: RuleSet) -> Detection {
        Detection::with_names(rules, self.names.clone())
    }

    fn with_names(rules: RuleSet, names: Vec<String>) -> Detection {
        let mut d = Detection {
            ids: names
                .iter()
                .enumerate()
                .map(|(i, n)| (n.clone(), i as u16))
                .collect(),
            names,
            rules: RuleSet::empty(),
            detectors: Detectors::default(),
            rule_ids: Vec::new(),
        };
        let rule_names: Vec<String> = rules.rules().iter().map(|r| r.id.clone()).collect();
        d.rule_ids = rule_names.iter().map(|n| d.intern(n)).collect();
        for name in Detectors::evidence_names()
            .into_iter()
            .chain([CACHE_EVIDENCE])
            .chain(Signal::ALL.map(Signal::name))
        {
            d.intern(name);
        }
        d.rules = rules;
        d
    }

    fn intern(&mut self, name: &str) -> u16 {
        if let Some(id) = self.ids.get(name) {
            return *id;
        }
        let id = u16::try_from(self.names.len()).unwrap_or(u16::MAX);
        self.names.push(name.to_string());
        self.ids.insert(name.to_string(), id);
        id
    }

    /// The rules.
    pub fn rules(&self) -> &RuleSet {
        &self.rules
    }

    /// Names a flow from host behaviour (confidence `heuristic`), with one
    /// piece of evidence per signal.
    pub fn name_from_behaviour(
        &self,
        state: &mut FlowState,
        protocol: Protocol,
        signals: &[Signal],
        at: u64,
    ) {
        for s in signals {
            let id = self.ids.get(s.name()).copied().unwrap_or(u16::MAX);
            state.add(protocol, id, Confidence::Heuristic, 0, at);
        }
    }

    /// Names a new flow from the endpoint cache (confidence `cache`).
    pub fn name_from_cache(&self, state: &mut FlowState, protocol: Protocol) {
        let id = self.ids.get(CACHE_EVIDENCE).copied().unwrap_or(u16::MAX);
        state.add(protocol, id, Confidence::Cache, 0, 1);
    }

    /// The name of an evidence id.
    pub fn evidence_name(&self, id: u16) -> &str {
        self.names.get(usize::from(id)).map_or("?", String::as_str)
    }

    /// Looks at one payload packet of a flow. `flow_packets` is the number of
    /// packets the flow has had so far, this one included.
    pub fn inspect(
        &self,
        state: &mut FlowState,
        view: &PacketView<'_>,
        flow_packets: u64,
        learnt: &mut Vec<Learnt>,
    ) -> Progress {
        if state.finished {
            return Progress::default();
        }
        let before = (state.verdict.protocol, state.verdict.confidence);
        let side = view.direction.index();
        state.payload_packets[side] = state.payload_packets[side].saturating_add(1);
        let view = PacketView {
            index: state.payload_packets[side],
            ..*view
        };
        // A whole DNS message is looked at by nothing; the flow's other
        // packets are (see `known`).
        if known::is_dns(&view) {
            return Progress::default();
        }
        self.rules.scan(&view, |index, rule| {
            let id = self.rule_ids.get(index).copied().unwrap_or(u16::MAX);
            state.add(rule.protocol, id, rule.confidence, side, flow_packets);
        });
        let mut reported: [Option<Evidence>; 4] = [None; 4];
        let mut n = 0;
        self.detectors.inspect(
            &mut state.detectors,
            &mut state.retired,
            &view,
            &mut state.facts,
            learnt,
            &mut |e| {
                if let Some(slot) = reported.get_mut(n) {
                    *slot = Some(e);
                    n += 1;
                }
            },
        );
        for e in reported.iter().flatten() {
            let id = self.ids.get(e.name).copied().unwrap_or(u16::MAX);
            debug_assert!(id != u16::MAX, "evidence {} is not declared", e.name);
            state.add(e.protocol, id, e.strength, side, flow_packets);
        }

        // A bidirectional verdict cannot rise further; detection then stops,
        // unless no fact (info-hash, peer id, client) has been found yet and
        // the detectors' budget still lets one turn up (e.g. the UDP
        // tracker's announce that follows its connect exchange).
        let decided = state.verdict.protocol.is_some()
            && state.verdict.confidence == Confidence::Bidirectional
            && state.facts.is_some();
        let rules_done = [Direction::Originator, Direction::Responder]
            .into_iter()
            .all(|d| state.payload_packets[d.index()] >= self.rules.max_packet(d));
        // P2P protocols show themselves in their first few packets each
        // way; a flow that has gone this far without (or with all the)
        // evidence, e.g. a download whose client sent one request, is done.
        let far_along = u32::from(state.payload_packets[0]) + u32::from(state.payload_packets[1])
            >= MAX_INSPECTED_PAYLOAD_PACKETS;
        state.finished = decided
            || far_along
            || (rules_done
                && self
                    .detectors
                    .exhausted(state.retired, state.payload_packets));
        Progress {
            verdict_changed: before != (state.verdict.protocol, state.verdict.confidence),
            finished: state.finished,
        }
    }
}

impl FlowState {
    fn add(&mut self, protocol: Protocol, id: u16, strength: Confidence, side: usize, at: u64) {
        let len = usize::from(self.evidence_len);
        if !self.evidence[..len].contains(&id) && len < MAX_EVIDENCE {
            self.evidence[len] = id;
            self.evidence_len += 1;
        }
        match self.verdict.protocol {
            None => {
                self.verdict.protocol = Some(protocol);
                self.verdict.confidence = Confidence::Heuristic;
                self.verdict.decided_at_packet = u32::try_from(at).unwrap_or(u32::MAX);
                self.verdict.decided_at_payload_packet =
                    self.payload_packets[0].saturating_add(self.payload_packets[1]);
            }
            // Conflicting evidence: switch only to something stronger.
            Some(p) if p != protocol => {
                if strength <= self.verdict.confidence {
                    return;
                }
                self.verdict.protocol = Some(protocol);
                self.verdict.confidence = Confidence::Heuristic;
                self.side = [None; 2];
            }
            Some(_) => {}
        }
        self.side[side] = self.side[side].max(Some(strength));
        let structural = |c: Option<Confidence>| c.is_some_and(|c| c >= Confidence::Unidirectional);
        let combined = if strength == Confidence::Bidirectional
            || (structural(self.side[0]) && structural(self.side[1]))
        {
            Confidence::Bidirectional
        } else {
            self.side[0]
                .max(self.side[1])
                .unwrap_or(Confidence::Heuristic)
        };
        self.verdict.confidence = self.verdict.confidence.max(combined);
    }
}
