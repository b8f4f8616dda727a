//! Detect: decides, flow by flow, whether traffic is P2P file sharing.
//!
//! Two kinds of evidence feed a [`Verdict`]:
//! - signature rules (`rules/*.yaml`, see [`rules`]): byte literals with
//!   positional constraints, all compiled into one Aho-Corasick automaton;
//! - structural detectors ([`protocols`]), one per protocol behind the
//!   [`Detector`] trait, for what a literal cannot express: length fields,
//!   bencoding, header arithmetic, request/response relations.
//!
//! Both name their evidence (`bittorrent.handshake`, `utp.syn`, ...). The
//! detectors state facts; what to do about them is the policy's business.

pub mod behaviour;
pub mod bencode;
pub mod bounded;
pub mod cache;
mod engine;
mod known;
pub mod protocols;
mod registry;
pub mod rules;

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::decode::Transport;
use crate::flow::{Direction, Endpoint};
use crate::timestamp::Timestamp;

pub use engine::{DetectConfig, Detection, FlowState, Progress};
pub use registry::DETECTOR_NAMES;

/// The P2P protocol families p2pguard names. One fixed list: output, rules
/// and policies use these lower-case names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// BitTorrent: peer wire (TCP, uTP), DHT (mainline and Vuze), trackers,
    /// local peer discovery, web seeds, and its MSE/PE-encrypted form.
    Bittorrent,
    /// Gnutella and Gnutella2, their HTTP downloads, UDP traffic and the
    /// Mojito DHT.
    Gnutella,
    /// eDonkey2000 / eMule, and the Kad DHT.
    Edonkey,
    /// Direct Connect: NMDC and ADC hubs and client-to-client transfers.
    Directconnect,
    /// FastTrack (KaZaA, Grokster, iMesh).
    Fasttrack,
    /// Ares Galaxy.
    Ares,
    /// Soulseek.
    Soulseek,
    /// Thunder / Xunlei.
    Thunder,
    /// PPStream and PPLive P2P streaming.
    Ppstream,
}

impl Protocol {
    /// Every protocol, in report order.
    pub const ALL: [Protocol; 9] = [
        Protocol::Bittorrent,
        Protocol::Gnutella,
        Protocol::Edonkey,
        Protocol::Directconnect,
        Protocol::Fasttrack,
        Protocol::Ares,
        Protocol::Soulseek,
        Protocol::Thunder,
        Protocol::Ppstream,
    ];

    /// The lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Bittorrent => "bittorrent",
            Protocol::Gnutella => "gnutella",
            Protocol::Edonkey => "edonkey",
            Protocol::Directconnect => "directconnect",
            Protocol::Fasttrack => "fasttrack",
            Protocol::Ares => "ares",
            Protocol::Soulseek => "soulseek",
            Protocol::Thunder => "thunder",
            Protocol::Ppstream => "ppstream",
        }
    }

    /// Parses a lower-case name.
    pub fn from_name(name: &str) -> Option<Protocol> {
        Protocol::ALL.into_iter().find(|p| p.as_str() == name)
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How sure a verdict is, weakest first. The order matters: a policy's
/// minimum confidence admits every level at or above it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Confidence {
    /// Behavioural or statistical evidence only.
    Heuristic,
    /// An endpoint known from earlier evidence.
    Cache,
    /// Only byte-pattern rules matched; no structure was checked.
    Signature,
    /// A structural match in one direction (the other side silent, not
    /// seen, or not checkable).
    Unidirectional,
    /// Structural matches in both directions, or a reply proven to answer
    /// its request (matching transaction or connection ids).
    Bidirectional,
}

impl Confidence {
    /// Every level, weakest first.
    pub const ALL: [Confidence; 5] = [
        Confidence::Heuristic,
        Confidence::Cache,
        Confidence::Signature,
        Confidence::Unidirectional,
        Confidence::Bidirectional,
    ];

    /// The lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Confidence::Heuristic => "heuristic",
            Confidence::Cache => "cache",
            Confidence::Signature => "signature",
            Confidence::Unidirectional => "unidirectional",
            Confidence::Bidirectional => "bidirectional",
        }
    }
}

impl fmt::Display for Confidence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One payload-carrying packet of a flow, as a detector sees it.
#[derive(Clone, Copy, Debug)]
pub struct PacketView<'a> {
    /// The transport payload (possibly cut short by the snap length).
    pub payload: &'a [u8],
    /// Which side sent it.
    pub direction: Direction,
    /// 1 for the first payload packet from this side, 2 for the next, ...
    pub index: u16,
    /// TCP or UDP.
    pub transport: Transport,
    /// Sender.
    pub src: Endpoint,
    /// Receiver.
    pub dst: Endpoint,
    /// Packet time.
    pub ts: Timestamp,
    /// The payload is shorter than what was sent.
    pub truncated: bool,
}

/// What a piece of evidence says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Evidence {
    /// The protocol it points to.
    pub protocol: Protocol,
    /// Its stable name, e.g. `bittorrent.handshake`.
    pub name: &'static str,
    /// What it is worth: [`Confidence::Unidirectional`] for a structural
    /// match of one packet, [`Confidence::Bidirectional`] when the packet is
    /// proven to answer the other side's (matching ids).
    pub strength: Confidence,
}

/// A detector's answer for one packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Probe {
    /// This packet is evidence of the protocol. The detector keeps being
    /// asked, to find evidence from the other side too, until it says
    /// [`Probe::NotMine`] or its packet budget is spent.
    Match(Evidence),
    /// Undecided: show me the next payload packet.
    NeedMore,
    /// Not this protocol (or nothing more to learn): stop asking.
    NotMine,
}

/// Which packets a detector wants to see.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Interest {
    /// The transport it understands (`None`: both).
    pub transport: Option<Transport>,
    /// It is shown at most this many payload packets from each side.
    pub max_payload_packets: u16,
}

/// Facts a protocol exposes in clear text, kept per flow.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Facts {
    /// BitTorrent info-hash.
    pub info_hash: Option<[u8; 20]>,
    /// Per side (indexed by [`Direction::index`]): peer id or user hash.
    pub peer_id: [Option<String>; 2],
    /// Per side: client name and version as the client announces it.
    pub client: [Option<String>; 2],
}

/// Where a detector records [`Facts`] (the first value seen for a field
/// wins; storage is allocated only when a fact is found) and the P2P
/// endpoints the protocol announces, for the endpoint cache.
pub struct FactSink<'a> {
    facts: &'a mut Option<Box<Facts>>,
    direction: Direction,
    learnt: Option<&'a mut Vec<cache::Learnt>>,
}

impl<'a> FactSink<'a> {
    /// A sink writing into `facts` for the side `direction`; announced
    /// endpoints are dropped.
    pub fn new(facts: &'a mut Option<Box<Facts>>, direction: Direction) -> Self {
        FactSink {
            facts,
            direction,
            learnt: None,
        }
    }

    /// A sink that also collects announced endpoints into `learnt`.
    pub fn with_learnt(
        facts: &'a mut Option<Box<Facts>>,
        direction: Direction,
        learnt: &'a mut Vec<cache::Learnt>,
    ) -> Self {
        FactSink {
            facts,
            direction,
            learnt: Some(learnt),
        }
    }

    /// Records an endpoint the protocol announced as running `protocol`
    /// (a peer in a tracker reply, a DHT node, a listen port, ...).
    pub fn peer(
        &mut self,
        protocol: Protocol,
        ip: std::net::IpAddr,
        port: u16,
        transports: cache::Transports,
    ) {
        if let Some(learnt) = self.learnt.as_deref_mut()
            && learnt.len() < MAX_LEARNT_PER_PACKET
        {
            learnt.push(cache::Learnt {
                protocol,
                endpoint: Endpoint::new(ip, port),
                transports,
            });
        }
    }

    fn facts(&mut self) -> &mut Facts {
        self.facts.get_or_insert_with(Default::default)
    }

    /// Records the info-hash.
    pub fn info_hash(&mut self, hash: [u8; 20]) {
        let f = self.facts();
        f.info_hash.get_or_insert(hash);
    }

    /// Records the sender's peer id (raw bytes, escaped for display).
    pub fn peer_id(&mut self, raw: &[u8]) {
        let d = self.direction.index();
        let f = self.facts();
        if f.peer_id[d].is_none() {
            f.peer_id[d] = Some(escape_bytes(raw));
        }
    }

    /// Records the sender's client name, replacing a less precise one
    /// (e.g. one guessed from a peer id).
    pub fn replace_client(&mut self, name: &[u8]) {
        let d = self.direction.index();
        let trimmed = &name[..name.len().min(MAX_FACT_LEN)];
        self.facts().client[d] = Some(escape_bytes(trimmed));
    }

    /// Records the sender's client name.
    pub fn client(&mut self, name: &[u8]) {
        let d = self.direction.index();
        let f = self.facts();
        if f.client[d].is_none() {
            let trimmed = &name[..name.len().min(MAX_FACT_LEN)];
            f.client[d] = Some(escape_bytes(trimmed));
        }
    }
}

/// Longest client name kept.
const MAX_FACT_LEN: usize = 64;

/// Endpoints kept from one packet (a full DHT `nodes` reply holds 8, a
/// tracker reply rarely more than 200).
const MAX_LEARNT_PER_PACKET: usize = 256;

/// Printable ASCII as is, anything else as `\xHH`, so that facts taken from
/// the wire are safe to print and to put in JSON or CSV.
pub fn escape_bytes(raw: &[u8]) -> String {
    let mut out = String::with_capacity(raw.len());
    for &b in raw {
        if (0x20..0x7f).contains(&b) && b != b'\\' {
            out.push(b as char);
        } else {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

/// The common shape of every structural detector: it looks at one payload
/// packet of one flow, with its own small per-flow state, and answers
/// matched / need more / not mine.
pub trait Detector {
    /// Per-flow state: small, fixed-size, copied into every flow.
    type State: Default + Copy + fmt::Debug;

    /// The detector's name (and the prefix of its evidence names).
    const NAME: &'static str;

    /// Every evidence name it can report (each starting with a protocol
    /// name, e.g. `bittorrent.handshake`).
    const EVIDENCE: &'static [&'static str];

    /// Which packets it wants.
    fn interest(&self) -> Interest;

    /// Looks at one payload packet.
    fn inspect(
        &self,
        state: &mut Self::State,
        packet: &PacketView<'_>,
        facts: &mut FactSink<'_>,
    ) -> Probe;
}

/// What is known about a flow's protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// The protocol, if any evidence named one.
    pub protocol: Option<Protocol>,
    /// How sure; meaningless without a protocol.
    pub confidence: Confidence,
    /// Flow packets (both ways) seen when the protocol was first named.
    pub decided_at_packet: u32,
    /// Payload-carrying packets (both ways) seen when the protocol was
    /// first named: 0 for a flow named at its first packet from the
    /// endpoint cache or host behaviour.
    pub decided_at_payload_packet: u16,
}

impl Default for Verdict {
    fn default() -> Self {
        Verdict {
            protocol: None,
            confidence: Confidence::Heuristic,
            decided_at_packet: 0,
            decided_at_payload_packet: 0,
        }
    }
}
