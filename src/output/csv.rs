//! `--format csv`: the flow fields of the JSON schema as columns; list
//! fields (evidence) joined with `;`.

use std::io::{self, Write};
use std::ops::Range;
use std::sync::Arc;

use super::{FlowRecord, FlowSink, RenderRecord, RunStats};

/// Writes flows as CSV with a header row.
pub struct CsvWriter<W: Write> {
    out: W,
    p2p_only: bool,
    /// One row, built whole before it is written.
    line: Vec<u8>,
}

impl<W: Write> CsvWriter<W> {
    /// A writer; with `p2p_only`, flows not named P2P are left out. Each
    /// row goes to `out` in one `write_all`: give it a buffered writer.
    pub fn new(out: W, p2p_only: bool) -> Self {
        CsvWriter {
            out,
            p2p_only,
            line: Vec::with_capacity(512),
        }
    }

    /// The header row, written first.
    pub fn write_header(&mut self) -> io::Result<()> {
        self.line.clear();
        write_fields(&mut self.line, COLUMNS)?;
        self.out.write_all(&self.line)
    }
}

/// Appends one CSV row (quoted where a field needs it, `\n` after it).
fn write_fields<I>(out: &mut Vec<u8>, fields: I) -> io::Result<()>
where
    I: IntoIterator,
    I::Item: AsRef<[u8]>,
{
    let mut row = csv::WriterBuilder::new()
        .has_headers(false)
        .buffer_capacity(512)
        .from_writer(out);
    row.write_record(fields).map_err(io::Error::other)?;
    row.flush()
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
        self.line.clear();
        render(self.p2p_only, record, &mut self.line)?;
        self.out.write_all(&self.line)
    }

    fn renderer(&self) -> Option<Arc<RenderRecord>> {
        Some(super::renderer_of(self.p2p_only, render))
    }

    fn rendered_flow(&mut self, _record: &FlowRecord, rendered: &[u8]) -> io::Result<()> {
        self.out.write_all(rendered)
    }

    fn finish(&mut self, _stats: &RunStats) -> io::Result<()> {
        self.out.flush()
    }
}

/// Appends the row of one flow (nothing for a flow left out). Numbers and
/// addresses are formatted on the stack: a report of every flow has a
/// million rows and more, and an allocation for each field cost more than
/// the formatting (most with several threads: 3.7 s of CPU against one
/// thread's 2.4 s on the benchmark capture).
fn render(p2p_only: bool, record: &FlowRecord, out: &mut Vec<u8>) -> io::Result<()> {
    if p2p_only && !record.is_p2p() {
        return Ok(());
    }
    let r = record.row();
    let mut n = Numbers::default();
    let id = n.push(Some(r.id));
    let src_port = n.push(Some(r.src_port.into()));
    let dst_port = n.push(Some(r.dst_port.into()));
    let src_packets = n.push(Some(r.src_packets));
    let dst_packets = n.push(Some(r.dst_packets));
    let src_bytes = n.push(Some(r.src_bytes));
    let dst_bytes = n.push(Some(r.dst_bytes));
    let decided_at = n.push(r.decided_at_packet.map(u64::from));
    let decided_at_payload = n.push(r.decided_at_payload_packet.map(u64::from));
    let dropped_packets = n.push(Some(r.dropped_packets));
    let dropped_bytes = n.push(Some(r.dropped_bytes));
    let delayed_packets = n.push(Some(r.delayed_packets));
    let delayed_bytes = n.push(Some(r.delayed_bytes));
    let num = |range: Range<usize>| &n.text[range];
    let (src, dst) = (IpText::new(r.src_ip), IpText::new(r.dst_ip));
    let evidence = r.evidence.join(";");
    fn text(s: Option<&str>) -> &[u8] {
        s.unwrap_or("").as_bytes()
    }
    let fields: [&[u8]; COLUMNS.len()] = [
        num(id),
        r.transport.as_bytes(),
        src.as_bytes(),
        num(src_port),
        dst.as_bytes(),
        num(dst_port),
        r.first_seen.as_str().as_bytes(),
        r.last_seen.as_str().as_bytes(),
        num(src_packets),
        num(dst_packets),
        num(src_bytes),
        num(dst_bytes),
        text(r.protocol),
        text(r.confidence),
        evidence.as_bytes(),
        num(decided_at),
        num(decided_at_payload),
        text(r.info_hash.as_deref()),
        text(r.src_peer_id),
        text(r.dst_peer_id),
        text(r.src_client),
        text(r.dst_client),
        r.end.as_bytes(),
        text(r.action),
        text(r.rule),
        num(dropped_packets),
        num(dropped_bytes),
        num(delayed_packets),
        num(delayed_bytes),
    ];
    write_fields(out, fields)
}

/// Numbers written side by side on the stack, each then read by its range.
struct Numbers {
    text: [u8; 13 * 20],
    len: usize,
}

impl Default for Numbers {
    fn default() -> Self {
        Numbers {
            text: [0; 13 * 20],
            len: 0,
        }
    }
}

impl Numbers {
    /// Writes `v` (nothing for `None`) and says where.
    fn push(&mut self, v: Option<u64>) -> Range<usize> {
        let start = self.len;
        if let Some(v) = v {
            let mut digits = itoa::Buffer::new();
            let digits = digits.format(v).as_bytes();
            // 13 numbers of at most 20 digits fit; more would be a bug here.
            debug_assert!(start + digits.len() <= self.text.len(), "Numbers is full");
            if let Some(to) = self.text.get_mut(start..start + digits.len()) {
                to.copy_from_slice(digits);
                self.len += digits.len();
            }
        }
        start..self.len
    }
}

/// An address's text, written on the stack.
struct IpText {
    text: [u8; 48],
    len: usize,
}

impl IpText {
    fn new(ip: std::net::IpAddr) -> Self {
        let mut text = [0; 48];
        let mut rest = &mut text[..];
        // Rust writes an address in at most 39 bytes; 45 is the longest
        // text form there is (RFC 4291, 2.2).
        let _ = write!(rest, "{ip}");
        let len = 48 - rest.len();
        IpText { text, len }
    }

    fn as_bytes(&self) -> &[u8] {
        &self.text[..self.len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::Protocol;
    use crate::output::sample::record;

    /// The row as the `csv` crate writes the fields made into text one by
    /// one (how this format was written before it was made on the stack).
    fn as_text_fields(record: &FlowRecord) -> Vec<u8> {
        let r = record.row();
        let opt = |s: Option<&str>| s.unwrap_or("").to_string();
        let num = |n: Option<u32>| n.map(|n| n.to_string()).unwrap_or_default();
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
            num(r.decided_at_packet),
            num(r.decided_at_payload_packet.map(u32::from)),
            r.info_hash.clone().unwrap_or_default(),
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
        let mut w = csv::WriterBuilder::new()
            .has_headers(false)
            .from_writer(Vec::new());
        w.write_record(&fields).unwrap();
        w.into_inner().unwrap()
    }

    #[test]
    fn a_flow_is_written_as_the_csv_crate_writes_its_fields_as_text() {
        let odd = "a,b \"c\"\nd;é";
        for (peer, client, rule) in [
            (None, None, None),
            (Some(odd), Some("µTorrent 3.5.5"), Some("default")),
            (Some("plain"), Some(odd), Some(odd)),
        ] {
            let mut r = record(peer, client, rule);
            for (protocol, decided) in [(None, None), (Some(Protocol::Edonkey), Some(u32::MAX))] {
                r.protocol = protocol;
                r.decided_at_packet = decided;
                r.decided_at_payload_packet = decided.map(|_| u16::MAX);
                let mut ours = Vec::new();
                render(false, &r, &mut ours).unwrap();
                assert_eq!(
                    String::from_utf8(ours).unwrap(),
                    String::from_utf8(as_text_fields(&r)).unwrap()
                );
            }
        }
    }

    #[test]
    fn the_longest_numbers_and_addresses_are_written_whole() {
        let mut r = record(None, None, None);
        // Written as eight groups of four digits, 39 bytes.
        r.src = crate::flow::Endpoint::new(
            "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255"
                .parse()
                .unwrap(),
            u16::MAX,
        );
        r.id = u64::MAX;
        r.packets = [u64::MAX; 2];
        r.bytes = [u64::MAX; 2];
        r.enforced.dropped_bytes = u64::MAX;
        let mut ours = Vec::new();
        render(false, &r, &mut ours).unwrap();
        assert_eq!(ours, as_text_fields(&r));
        let row = String::from_utf8(ours).unwrap();
        assert!(row.contains(&u64::MAX.to_string()), "{row}");
        assert!(
            row.contains("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff,65535,"),
            "{row}"
        );
    }

    #[test]
    fn with_p2p_only_other_flows_make_no_row() {
        let mut r = record(None, None, None);
        r.protocol = None;
        let mut out = Vec::new();
        render(true, &r, &mut out).unwrap();
        assert!(out.is_empty());
        r.protocol = Some(Protocol::Bittorrent);
        render(true, &r, &mut out).unwrap();
        assert_eq!(out, as_text_fields(&r));
    }
}
