//! `--format csv`: the flow fields of the JSON schema as columns; list
//! fields (evidence) joined with `;`.

use std::io::{self, Write};

use super::{FlowRecord, FlowSink, RunStats};

/// Writes flows as CSV with a header row.
pub struct CsvWriter<W: Write> {
    out: csv::Writer<W>,
    p2p_only: bool,
}

impl<W: Write> CsvWriter<W> {
    /// A writer; with `p2p_only`, flows not named P2P are left out.
    pub fn new(out: W, p2p_only: bool) -> Self {
        CsvWriter {
            out: csv::WriterBuilder::new()
                .has_headers(false)
                .from_writer(out),
            p2p_only,
        }
    }

    /// The header row, written first.
    pub fn write_header(&mut self) -> io::Result<()> {
        self.out.write_record(COLUMNS).map_err(io::Error::other)
    }
}

/// Column names, in order: the JSON flow fields without `event`.
pub const COLUMNS: [&str; 29] = [
    "id",
    "transport",
    "src_ip",
    "src_port",
    "dst_ip",
    "dst_port",
    "first_seen",
    "last_seen",
    "src_packets",
    "dst_packets",
    "src_bytes",
    "dst_bytes",
    "protocol",
    "confidence",
    "evidence",
    "decided_at_packet",
    "decided_at_payload_packet",
    "info_hash",
    "src_peer_id",
    "dst_peer_id",
    "src_client",
    "dst_client",
    "end",
    "action",
    "rule",
    "dropped_packets",
    "dropped_bytes",
    "delayed_packets",
    "delayed_bytes",
];

impl<W: Write> FlowSink for CsvWriter<W> {
    fn p2p_only(&self) -> bool {
        self.p2p_only
    }

    fn flow(&mut self, record: &FlowRecord) -> io::Result<()> {
        if self.p2p_only && !record.is_p2p() {
            return Ok(());
        }
        let r = record.row();
        let opt = |s: Option<&str>| s.unwrap_or("").to_string();
        let fields = [
            r.id.to_string(),
            r.transport.to_string(),
            r.src_ip.to_string(),
            r.src_port.to_string(),
            r.dst_ip.to_string(),
            r.dst_port.to_string(),
            r.first_seen.to_string(),
            r.last_seen.to_string(),
            r.src_packets.to_string(),
            r.dst_packets.to_string(),
            r.src_bytes.to_string(),
            r.dst_bytes.to_string(),
            opt(r.protocol),
            opt(r.confidence),
            r.evidence.join(";"),
            r.decided_at_packet
                .map(|n| n.to_string())
                .unwrap_or_default(),
            r.decided_at_payload_packet
                .map(|n| n.to_string())
                .unwrap_or_default(),
            r.info_hash.unwrap_or_default(),
            opt(r.src_peer_id),
            opt(r.dst_peer_id),
            opt(r.src_client),
            opt(r.dst_client),
            r.end.to_string(),
            opt(r.action),
            opt(r.rule),
            r.dropped_packets.to_string(),
            r.dropped_bytes.to_string(),
            r.delayed_packets.to_string(),
            r.delayed_bytes.to_string(),
        ];
        self.out.write_record(&fields).map_err(io::Error::other)
    }

    fn finish(&mut self, _stats: &RunStats) -> io::Result<()> {
        self.out.flush()
    }
}
