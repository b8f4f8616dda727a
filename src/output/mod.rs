//! Outputs: what p2pguard reports about the flows it saw.
//!
//! Every format consumes the same [`FlowRecord`]s, as flows end, and a final
//! [`RunStats`]. Records are written as flows end (idle timeout, eviction,
//! teardown, end of input), so output order depends only on the input.

mod csv;
mod jsonl;
mod pcap;
mod summary;

use std::io;
use std::sync::Arc;

use serde::Serialize;

pub use self::csv::CsvWriter;
pub use self::jsonl::JsonLinesWriter;
pub use self::pcap::{P2pPcapWriter, PcapWriterStats};
pub use self::summary::SummaryWriter;
use crate::decode::{Skip, Transport};
use crate::detect::{Confidence, Facts, Protocol};
use crate::flow::{EndReason, Endpoint};
use crate::pipeline::{PipelineStats, VerdictEvent};
use crate::policy::Action;
use crate::timestamp::{Rfc3339, Timestamp};

/// Serialises a value by its `Display` text, without building a string.
fn as_text<T: std::fmt::Display, S: serde::Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

/// Everything reported about one flow when it ends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlowRecord {
    /// Unique within the run, in order of creation.
    pub id: u64,
    /// TCP or UDP.
    pub transport: Transport,
    /// The originator (sender of the first packet).
    pub src: Endpoint,
    /// The responder.
    pub dst: Endpoint,
    /// First packet time.
    pub first_seen: Timestamp,
    /// Last packet time.
    pub last_seen: Timestamp,
    /// Packets from src, from dst.
    pub packets: [u64; 2],
    /// Bytes from src, from dst.
    pub bytes: [u64; 2],
    /// The protocol named, if any.
    pub protocol: Option<Protocol>,
    /// How sure (with a protocol only).
    pub confidence: Option<Confidence>,
    /// Names of the rules and detectors that fired.
    pub evidence: Vec<String>,
    /// Flow packets seen when the protocol was named.
    pub decided_at_packet: Option<u32>,
    /// Payload packets it took to name the protocol.
    pub decided_at_payload_packet: Option<u16>,
    /// Cleartext facts.
    pub facts: Facts,
    /// Why the flow ended.
    pub end: EndReason,
    /// The policy's action (with a policy only).
    pub action: Option<&'static str>,
    /// The rule that decided (`default` for the default action).
    pub rule: Option<String>,
    /// What enforcement did (or, offline, would have done).
    pub enforced: Enforced,
}

/// What enforcement did to a flow's packets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Enforced {
    /// Packets dropped (blocked, or over a full shaping queue).
    pub dropped_packets: u64,
    /// Their bytes.
    pub dropped_bytes: u64,
    /// Packets passed through a throttle's token bucket.
    pub delayed_packets: u64,
    /// Their bytes.
    pub delayed_bytes: u64,
}

impl FlowRecord {
    /// Whether the flow was named P2P.
    pub fn is_p2p(&self) -> bool {
        self.protocol.is_some()
    }

    /// Total bytes both ways.
    pub fn total_bytes(&self) -> u64 {
        self.bytes[0] + self.bytes[1]
    }

    /// The info-hash in lower-case hex.
    pub fn info_hash_hex(&self) -> Option<String> {
        self.facts
            .info_hash
            .map(|h| h.iter().map(|b| format!("{b:02x}")).collect())
    }

    /// The serialisable shape of the record (the JSON and CSV schema).
    pub fn row(&self) -> FlowRow<'_> {
        FlowRow {
            event: "flow",
            id: self.id,
            transport: self.transport.as_str(),
            src_ip: self.src.ip(),
            src_port: self.src.port(),
            dst_ip: self.dst.ip(),
            dst_port: self.dst.port(),
            first_seen: self.first_seen.rfc3339(),
            last_seen: self.last_seen.rfc3339(),
            src_packets: self.packets[0],
            dst_packets: self.packets[1],
            src_bytes: self.bytes[0],
            dst_bytes: self.bytes[1],
            protocol: self.protocol.map(Protocol::as_str),
            confidence: self.confidence.map(Confidence::as_str),
            evidence: &self.evidence,
            decided_at_packet: self.decided_at_packet,
            decided_at_payload_packet: self.decided_at_payload_packet,
            info_hash: self.info_hash_hex(),
            src_peer_id: self.facts.peer_id[0].as_deref(),
            dst_peer_id: self.facts.peer_id[1].as_deref(),
            src_client: self.facts.client[0].as_deref(),
            dst_client: self.facts.client[1].as_deref(),
            end: self.end.as_str(),
            action: self.action,
            rule: self.rule.as_deref(),
            dropped_packets: self.enforced.dropped_packets,
            dropped_bytes: self.enforced.dropped_bytes,
            delayed_packets: self.enforced.delayed_packets,
            delayed_bytes: self.enforced.delayed_bytes,
        }
    }
}

/// One flow as written in JSON lines and CSV; field order is column order.
#[derive(Debug, Serialize)]
pub struct FlowRow<'a> {
    /// Always `"flow"`.
    pub event: &'static str,
    /// Flow id.
    pub id: u64,
    /// `tcp` or `udp`.
    pub transport: &'static str,
    /// Originator address.
    #[serde(serialize_with = "as_text")]
    pub src_ip: std::net::IpAddr,
    /// Originator port.
    pub src_port: u16,
    /// Responder address.
    #[serde(serialize_with = "as_text")]
    pub dst_ip: std::net::IpAddr,
    /// Responder port.
    pub dst_port: u16,
    /// RFC 3339 UTC.
    pub first_seen: Rfc3339,
    /// RFC 3339 UTC.
    pub last_seen: Rfc3339,
    /// Packets from the originator.
    pub src_packets: u64,
    /// Packets from the responder.
    pub dst_packets: u64,
    /// Bytes from the originator.
    pub src_bytes: u64,
    /// Bytes from the responder.
    pub dst_bytes: u64,
    /// Protocol name or null.
    pub protocol: Option<&'static str>,
    /// Confidence or null.
    pub confidence: Option<&'static str>,
    /// Evidence names.
    pub evidence: &'a [String],
    /// Packets it took to name the protocol.
    pub decided_at_packet: Option<u32>,
    /// Payload packets it took to name the protocol (0: before any payload).
    pub decided_at_payload_packet: Option<u16>,
    /// BitTorrent info-hash, hex.
    pub info_hash: Option<String>,
    /// Originator's peer id.
    pub src_peer_id: Option<&'a str>,
    /// Responder's peer id.
    pub dst_peer_id: Option<&'a str>,
    /// Originator's client.
    pub src_client: Option<&'a str>,
    /// Responder's client.
    pub dst_client: Option<&'a str>,
    /// Why the flow ended.
    pub end: &'static str,
    /// The policy's action, or null without a policy.
    pub action: Option<&'static str>,
    /// The deciding rule (`default`), or null.
    pub rule: Option<&'a str>,
    /// Packets dropped by enforcement (offline: that a block would drop).
    pub dropped_packets: u64,
    /// Their bytes.
    pub dropped_bytes: u64,
    /// Packets shaped by a throttle (offline: that it would shape).
    pub delayed_packets: u64,
    /// Their bytes.
    pub delayed_bytes: u64,
}

impl VerdictEvent {
    /// The event as written in JSON lines logs.
    pub fn to_json(&self) -> serde_json::Value {
        let mut v = serde_json::json!({
            "event": "verdict",
            "time": self.ts.to_rfc3339(),
            "id": self.flow,
            "transport": self.transport.as_str(),
            "src_ip": self.src.ip().to_string(),
            "src_port": self.src.port(),
            "dst_ip": self.dst.ip().to_string(),
            "dst_port": self.dst.port(),
            "protocol": self.protocol.as_str(),
            "confidence": self.confidence.as_str(),
            "evidence": self.evidence,
            "rule": self.rule,
            "action": self.action.name(),
        });
        match self.action {
            Action::Throttle(t) => {
                v["rate"] = crate::policy::format_rate(t.rate_bps).into();
                v["burst_bytes"] = t.burst_bytes.into();
                v["scope"] = t.scope.name().into();
            }
            Action::Block { reset } => v["reset"] = reset.into(),
            Action::Allow | Action::Log => {}
        }
        v
    }
}

/// One input of a run and how reading it went.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct InputReport {
    /// The path as given (`-` for standard input).
    pub name: String,
    /// Link type name.
    pub link_type: Option<&'static str>,
    /// Frames read.
    pub packets: u64,
    /// What went wrong, if anything (the run carries on with the next input).
    pub error: Option<String>,
}

/// Everything counted in a run, for the summary and the stats record.
#[derive(Clone, Debug, Default)]
pub struct RunStats {
    /// Inputs in order.
    pub inputs: Vec<InputReport>,
    /// Pipeline counters.
    pub pipeline: PipelineStats,
    /// Flows ended: reported, or (for a sink that wants P2P flows alone)
    /// counted in [`PipelineStats::unreported`](crate::pipeline::PipelineStats).
    pub flows: u64,
    /// Flows named P2P, by protocol (in [`Protocol::ALL`] order).
    pub p2p_flows: [u64; Protocol::ALL.len()],
    /// The `-w` writer's counters, when one was used.
    pub pcap: Option<PcapWriterStats>,
}

impl RunStats {
    /// Counts one reported flow.
    pub fn count(&mut self, record: &FlowRecord) {
        self.flows += 1;
        if let Some(p) = record.protocol {
            let i = Protocol::ALL.iter().position(|x| *x == p).unwrap_or(0);
            self.p2p_flows[i] += 1;
        }
    }

    /// The stats record of the JSON lines output.
    pub fn to_json(&self) -> serde_json::Value {
        let p = &self.pipeline;
        let decode: serde_json::Map<String, serde_json::Value> = Skip::ALL
            .iter()
            .map(|s| (s.as_str().to_string(), p.skipped.get(*s).into()))
            .collect();
        let by_protocol: serde_json::Map<String, serde_json::Value> = Protocol::ALL
            .iter()
            .zip(self.p2p_flows)
            .map(|(proto, n)| (proto.as_str().to_string(), n.into()))
            .collect();
        serde_json::json!({
            "event": "stats",
            "inputs": self.inputs,
            "packets": p.packets,
            "bytes": p.bytes,
            "tracked_packets": p.tracked,
            "truncated_payloads": p.truncated_payloads,
            "skipped": decode,
            "decode_errors": p.skipped.errors(),
            "first_seen": p.first_ts.map(Timestamp::to_rfc3339),
            "last_seen": p.last_ts.map(Timestamp::to_rfc3339),
            "flows": self.flows,
            "decisions": p.decisions,
            "p2p_flows": self.p2p_flows.iter().sum::<u64>(),
            "p2p_flows_by_protocol": by_protocol,
            "flow_table": {
                "created": p.flows.created,
                "timed_out": p.flows.timed_out,
                "evicted": p.flows.evicted,
                "reused": p.flows.reused,
                "peak": p.flows.peak,
                "open_at_end": p.flows_open_at_end,
                "bytes_per_flow": p.bytes_per_flow,
            },
            "endpoint_cache": {
                "size": p.cache.size,
                "confirmed": p.cache.confirmed,
                "learnt": p.cache.learnt,
                "refused": p.cache.refused,
                "hits": p.cache.hits,
                "evicted": p.cache.evicted,
                "expired": p.cache.expired,
            },
            "behaviour": {
                "named": p.behaviour.named,
                "hosts": p.behaviour.hosts,
                "endpoints": p.behaviour.endpoints,
                "evicted": p.behaviour.evicted,
            },
            "pcap_output": self.pcap.as_ref().map(|w| serde_json::json!({
                "written": w.written,
                "unresolved_dropped": w.unresolved_dropped,
                "link_type_mismatch": w.link_type_mismatch,
            })),
        })
    }
}

/// Formats a flow record as a report's bytes, appending them to the buffer
/// (never touching what is there already); false if it cannot. See
/// [`FlowSink::renderer`].
pub type RenderRecord = dyn Fn(&FlowRecord, &mut Vec<u8>) -> bool + Send + Sync;

/// A [`RenderRecord`] from a format's function that appends a record's
/// bytes (nothing for a record left out with `p2p_only`).
fn renderer_of(
    p2p_only: bool,
    render: fn(bool, &FlowRecord, &mut Vec<u8>) -> io::Result<()>,
) -> Arc<RenderRecord> {
    Arc::new(move |record: &FlowRecord, out: &mut Vec<u8>| render(p2p_only, record, out).is_ok())
}

/// A consumer of flow records and policy decisions.
pub trait FlowSink {
    /// One flow ended.
    fn flow(&mut self, record: &FlowRecord) -> io::Result<()>;
    /// A formatter of flow records that any thread may run. With one, the
    /// engine's threads (when there are several) each format the records
    /// of the flows they end, and [`FlowSink::rendered_flow`] gets each
    /// record with its bytes: formatting a report of every flow is then
    /// shared between the threads instead of left to the one that reports.
    fn renderer(&self) -> Option<Arc<RenderRecord>> {
        None
    }
    /// One flow ended, with the bytes [`FlowSink::renderer`]'s formatter
    /// made of its record.
    fn rendered_flow(&mut self, record: &FlowRecord, _rendered: &[u8]) -> io::Result<()> {
        self.flow(record)
    }
    /// The policy decided for a flow (with a policy only).
    fn verdict(&mut self, _event: &VerdictEvent) -> io::Result<()> {
        Ok(())
    }
    /// The run ended.
    fn finish(&mut self, stats: &RunStats) -> io::Result<()>;
    /// Whether only the records of flows named P2P are wanted (the others
    /// are then counted in [`RunStats::flows`] and
    /// [`PipelineStats::unreported`](crate::pipeline::PipelineStats) alone).
    fn p2p_only(&self) -> bool {
        false
    }
}

/// Human-readable byte count (1000-based, like ifconfig and most network
/// tools).
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1000.0 && unit < UNITS.len() - 1 {
        v /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// A record with every field set, some to text that needs escaping, for
/// the formats' tests.
#[cfg(test)]
pub(crate) mod sample {
    use super::{Enforced, FlowRecord};
    use crate::decode::Transport;
    use crate::detect::{Confidence, Facts, Protocol};
    use crate::flow::{EndReason, Endpoint};
    use crate::timestamp::Timestamp;

    pub fn record(peer_id: Option<&str>, client: Option<&str>, rule: Option<&str>) -> FlowRecord {
        FlowRecord {
            id: 42,
            transport: Transport::Udp,
            src: Endpoint::new("2001:db8::1".parse().unwrap(), 6881),
            dst: Endpoint::new("192.0.2.7".parse().unwrap(), 51413),
            first_seen: Timestamp::from_parts(1_700_000_000, 5),
            last_seen: Timestamp::from_parts(1_700_000_123, 999_999_999),
            packets: [3, u64::MAX],
            bytes: [0, 1 << 40],
            protocol: Some(Protocol::Bittorrent),
            confidence: Some(Confidence::Unidirectional),
            evidence: vec!["dht.query".into(), "odd \"name\"\n".into()],
            decided_at_packet: Some(7),
            decided_at_payload_packet: None,
            facts: Facts {
                info_hash: Some([0xab; 20]),
                peer_id: [peer_id.map(String::from), None],
                client: [None, client.map(String::from)],
            },
            end: EndReason::Evicted,
            action: Some("block"),
            rule: rule.map(String::from),
            enforced: Enforced {
                dropped_packets: 1,
                dropped_bytes: 2,
                delayed_packets: 3,
                delayed_bytes: 4,
            },
        }
    }
}
