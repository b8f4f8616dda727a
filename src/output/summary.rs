//! The default output: a readable summary of the P2P traffic found.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{self, Write};
use std::net::IpAddr;

use super::{FlowRecord, FlowSink, RunStats, human_bytes};
use crate::detect::{Confidence, Protocol};
use crate::pipeline::VerdictEvent;
use crate::timestamp::Timestamp;

#[derive(Default)]
struct ProtocolTotals {
    flows: u64,
    bytes: u64,
    hosts: BTreeSet<IpAddr>,
    by_confidence: [u64; Confidence::ALL.len()],
}

struct HostTotals {
    protocols: BTreeSet<Protocol>,
    flows: u64,
    bytes: u64,
    first_seen: Timestamp,
    last_seen: Timestamp,
}

/// Collects flows and prints the summary when the run ends.
pub struct SummaryWriter<W: Write> {
    out: W,
    /// Policy decisions by action name.
    decisions: BTreeMap<&'static str, u64>,
    dropped_bytes: u64,
    delayed_bytes: u64,
    top: usize,
    total_bytes: u64,
    protocols: BTreeMap<Protocol, ProtocolTotals>,
    hosts: HashMap<IpAddr, HostTotals>,
}

impl<W: Write> SummaryWriter<W> {
    /// A summary listing at most `top` hosts.
    pub fn new(out: W, top: usize) -> Self {
        SummaryWriter {
            out,
            decisions: BTreeMap::new(),
            dropped_bytes: 0,
            delayed_bytes: 0,
            top,
            total_bytes: 0,
            protocols: BTreeMap::new(),
            hosts: HashMap::new(),
        }
    }
}

impl<W: Write> FlowSink for SummaryWriter<W> {
    /// The summary lists P2P flows; of the others it needs only totals.
    fn p2p_only(&self) -> bool {
        true
    }

    fn verdict(&mut self, event: &VerdictEvent) -> io::Result<()> {
        *self.decisions.entry(event.action.name()).or_default() += 1;
        Ok(())
    }

    fn flow(&mut self, r: &FlowRecord) -> io::Result<()> {
        self.total_bytes += r.total_bytes();
        self.dropped_bytes += r.enforced.dropped_bytes;
        self.delayed_bytes += r.enforced.delayed_bytes;
        let (Some(protocol), Some(confidence)) = (r.protocol, r.confidence) else {
            return Ok(());
        };
        let p = self.protocols.entry(protocol).or_default();
        p.flows += 1;
        p.bytes += r.total_bytes();
        p.hosts.insert(r.src.ip());
        p.hosts.insert(r.dst.ip());
        let c = Confidence::ALL
            .iter()
            .position(|x| *x == confidence)
            .unwrap_or(0);
        p.by_confidence[c] += 1;
        for ip in [r.src.ip(), r.dst.ip()] {
            let h = self.hosts.entry(ip).or_insert(HostTotals {
                protocols: BTreeSet::new(),
                flows: 0,
                bytes: 0,
                first_seen: r.first_seen,
                last_seen: r.last_seen,
            });
            h.protocols.insert(protocol);
            h.flows += 1;
            h.bytes += r.total_bytes();
            h.first_seen = h.first_seen.min(r.first_seen);
            h.last_seen = h.last_seen.max(r.last_seen);
        }
        Ok(())
    }

    fn finish(&mut self, stats: &RunStats) -> io::Result<()> {
        let p = &stats.pipeline;
        let o = &mut self.out;
        let span = match (p.first_ts, p.last_ts) {
            (Some(a), Some(b)) => format!(", {:.1} s of traffic", b.since(a).as_secs_f64()),
            _ => String::new(),
        };
        writeln!(
            o,
            "Read {} input(s): {} packets, {}, {} flows{span}",
            stats.inputs.len(),
            p.packets,
            human_bytes(p.bytes),
            stats.flows
        )?;
        let p2p_flows: u64 = self.protocols.values().map(|t| t.flows).sum();
        let p2p_bytes: u64 = self.protocols.values().map(|t| t.bytes).sum();
        let total_bytes = self.total_bytes + p.unreported.bytes;
        let share = if total_bytes > 0 {
            100.0 * p2p_bytes as f64 / total_bytes as f64
        } else {
            0.0
        };
        writeln!(
            o,
            "P2P: {p2p_flows} flows, {} ({share:.1}% of flow bytes), {} hosts",
            human_bytes(p2p_bytes),
            self.hosts.len()
        )?;
        if !self.protocols.is_empty() {
            writeln!(o)?;
            writeln!(o, "By protocol")?;
            writeln!(
                o,
                "  {:<12} {:>7} {:>10} {:>6}  confidence",
                "protocol", "flows", "bytes", "hosts"
            )?;
            for (proto, t) in &self.protocols {
                let conf: Vec<String> = Confidence::ALL
                    .iter()
                    .zip(t.by_confidence)
                    .rev()
                    .filter(|(_, n)| *n > 0)
                    .map(|(c, n)| format!("{n} {c}"))
                    .collect();
                writeln!(
                    o,
                    "  {:<12} {:>7} {:>10} {:>6}  {}",
                    proto.as_str(),
                    t.flows,
                    human_bytes(t.bytes),
                    t.hosts.len(),
                    conf.join(", ")
                )?;
            }
            let mut hosts: Vec<(&IpAddr, &HostTotals)> = self.hosts.iter().collect();
            hosts.sort_by(|a, b| b.1.bytes.cmp(&a.1.bytes).then(a.0.cmp(b.0)));
            let shown = &hosts[..hosts.len().min(self.top)];
            let width = shown
                .iter()
                .map(|(ip, _)| ip.to_string().len())
                .max()
                .unwrap_or(4)
                .max(4);
            writeln!(o)?;
            writeln!(o, "Top P2P hosts by bytes")?;
            writeln!(
                o,
                "  {:<width$} {:<22} {:>6} {:>10}  {:<23}  last seen",
                "host", "protocols", "flows", "bytes", "first seen"
            )?;
            for (ip, h) in shown {
                let protos: Vec<&str> = h.protocols.iter().map(|p| p.as_str()).collect();
                writeln!(
                    o,
                    "  {:<width$} {:<22} {:>6} {:>10}  {:<23}  {}",
                    ip.to_string(),
                    protos.join(","),
                    h.flows,
                    human_bytes(h.bytes),
                    short_time(h.first_seen),
                    short_time(h.last_seen)
                )?;
            }
            if hosts.len() > self.top {
                writeln!(
                    o,
                    "  ... and {} more (--top N to see more)",
                    hosts.len() - self.top
                )?;
            }
        }
        if !self.decisions.is_empty() {
            let by: Vec<String> = self
                .decisions
                .iter()
                .map(|(a, n)| format!("{n} {a}"))
                .collect();
            writeln!(o)?;
            writeln!(
                o,
                "Policy decisions: {}; a block would drop {}, a throttle would shape {}",
                by.join(", "),
                human_bytes(self.dropped_bytes),
                human_bytes(self.delayed_bytes)
            )?;
        }
        writeln!(o)?;
        let skipped: Vec<String> = p
            .skipped
            .nonzero()
            .map(|(s, n)| format!("{} {n}", s.as_str()))
            .collect();
        writeln!(
            o,
            "Packets not tracked: {}",
            if skipped.is_empty() {
                "none".to_string()
            } else {
                skipped.join(", ")
            }
        )?;
        writeln!(o, "Decode errors: {}", p.skipped.errors())?;
        if p.flows.evicted > 0 {
            writeln!(
                o,
                "Flow table full: {} flows evicted (raise --max-flows)",
                p.flows.evicted
            )?;
        }
        if let Some(w) = &stats.pcap {
            writeln!(o, "Packets written to the P2P pcap: {}", w.written)?;
        }
        for input in &stats.inputs {
            if let Some(e) = &input.error {
                writeln!(o, "Input {}: {e}", input.name)?;
            }
        }
        o.flush()
    }
}

/// `2024-05-01 12:00:00.123` (UTC, milliseconds) for tables.
fn short_time(ts: Timestamp) -> String {
    let s = ts.to_rfc3339();
    // 2024-05-01T12:00:00.123456789Z -> 2024-05-01 12:00:00.123
    s.get(..23).map(|t| t.replacen('T', " ", 1)).unwrap_or(s)
}
