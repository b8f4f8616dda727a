//! `--format jsonl`: one JSON object per flow, then one stats object.

use std::io::{self, Write};
use std::sync::Arc;

use super::{FlowRecord, FlowRow, FlowSink, RenderRecord, RunStats};
use crate::pipeline::VerdictEvent;

/// Writes flows as JSON lines.
pub struct JsonLinesWriter<W: Write> {
    out: W,
    p2p_only: bool,
    /// One line, built whole before it is written (serde writes a record
    /// in dozens of small pieces).
    line: Vec<u8>,
}

impl<W: Write> JsonLinesWriter<W> {
    /// A writer; with `p2p_only`, flows not named P2P are left out.
    pub fn new(out: W, p2p_only: bool) -> Self {
        JsonLinesWriter {
            out,
            p2p_only,
            line: Vec::with_capacity(1024),
        }
    }

    fn write_line(&mut self, value: &impl serde::Serialize) -> io::Result<()> {
        self.line.clear();
        serde_json::to_writer(&mut self.line, value)?;
        self.line.push(b'\n');
        self.out.write_all(&self.line)
    }
}

impl<W: Write> FlowSink for JsonLinesWriter<W> {
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

    fn verdict(&mut self, event: &VerdictEvent) -> io::Result<()> {
        self.write_line(&event.to_json())
    }

    fn finish(&mut self, stats: &RunStats) -> io::Result<()> {
        self.write_line(&stats.to_json())?;
        self.out.flush()
    }
}

/// Appends the line of one flow (nothing for a flow left out).
fn render(p2p_only: bool, record: &FlowRecord, out: &mut Vec<u8>) -> io::Result<()> {
    if p2p_only && !record.is_p2p() {
        return Ok(());
    }
    write_row(out, &record.row())?;
    out.push(b'\n');
    Ok(())
}

/// Writes one flow as a JSON object, field by field: the bytes serde_json
/// writes for [`FlowRow`] (a test holds the two equal), at a fraction of the
/// cost (a run reports every flow, a million and more).
fn write_row(out: &mut Vec<u8>, r: &FlowRow<'_>) -> io::Result<()> {
    let mut o = Object::new(out);
    o.text("event", r.event);
    o.number("id", r.id);
    o.text("transport", r.transport);
    o.display("src_ip", &r.src_ip);
    o.number("src_port", r.src_port.into());
    o.display("dst_ip", &r.dst_ip);
    o.number("dst_port", r.dst_port.into());
    o.text("first_seen", r.first_seen.as_str());
    o.text("last_seen", r.last_seen.as_str());
    o.number("src_packets", r.src_packets);
    o.number("dst_packets", r.dst_packets);
    o.number("src_bytes", r.src_bytes);
    o.number("dst_bytes", r.dst_bytes);
    o.optional_text("protocol", r.protocol)?;
    o.optional_text("confidence", r.confidence)?;
    o.key("evidence");
    if r.evidence.is_empty() {
        o.out.extend_from_slice(b"[]");
    } else {
        serde_json::to_writer(&mut *o.out, r.evidence)?;
    }
    o.optional_number("decided_at_packet", r.decided_at_packet.map(u64::from));
    o.optional_number(
        "decided_at_payload_packet",
        r.decided_at_payload_packet.map(u64::from),
    );
    o.optional_text("info_hash", r.info_hash.as_deref())?;
    o.optional_text("src_peer_id", r.src_peer_id)?;
    o.optional_text("dst_peer_id", r.dst_peer_id)?;
    o.optional_text("src_client", r.src_client)?;
    o.optional_text("dst_client", r.dst_client)?;
    o.text("end", r.end);
    o.optional_text("action", r.action)?;
    o.optional_text("rule", r.rule)?;
    o.number("dropped_packets", r.dropped_packets);
    o.number("dropped_bytes", r.dropped_bytes);
    o.number("delayed_packets", r.delayed_packets);
    o.number("delayed_bytes", r.delayed_bytes);
    o.out.push(b'}');
    Ok(())
}

/// A JSON object being written: keys in order, values as serde_json
/// writes them.
struct Object<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
}

impl<'a> Object<'a> {
    fn new(out: &'a mut Vec<u8>) -> Self {
        Object { out, first: true }
    }

    /// `"key":` (keys are plain ASCII names, nothing to escape).
    fn key(&mut self, key: &str) {
        self.out.push(if self.first { b'{' } else { b',' });
        self.first = false;
        self.out.push(b'"');
        self.out.extend_from_slice(key.as_bytes());
        self.out.extend_from_slice(b"\":");
    }

    fn number(&mut self, key: &str, v: u64) {
        self.key(key);
        self.out
            .extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
    }

    fn optional_number(&mut self, key: &str, v: Option<u64>) {
        match v {
            Some(v) => self.number(key, v),
            None => {
                self.key(key);
                self.out.extend_from_slice(b"null");
            }
        }
    }

    /// A string the program itself made (names, timestamps): no character
    /// that JSON escapes.
    fn text(&mut self, key: &str, v: &str) {
        debug_assert!(!v.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\'));
        self.key(key);
        self.out.push(b'"');
        self.out.extend_from_slice(v.as_bytes());
        self.out.push(b'"');
    }

    /// A string that may hold anything (peer ids, client names, rule
    /// names): escaped by serde_json.
    fn optional_text(&mut self, key: &str, v: Option<&str>) -> io::Result<()> {
        self.key(key);
        match v {
            None => self.out.extend_from_slice(b"null"),
            Some(v) => serde_json::to_writer(&mut *self.out, v)?,
        }
        Ok(())
    }

    /// An address: IPv4 digit by digit (most of them), IPv6 by `Display`.
    fn display(&mut self, key: &str, ip: &std::net::IpAddr) {
        use std::io::Write as _;
        self.key(key);
        self.out.push(b'"');
        match ip {
            std::net::IpAddr::V4(v4) => {
                for (i, octet) in v4.octets().iter().enumerate() {
                    if i > 0 {
                        self.out.push(b'.');
                    }
                    self.out
                        .extend_from_slice(itoa::Buffer::new().format(*octet).as_bytes());
                }
            }
            std::net::IpAddr::V6(v6) => {
                let _ = write!(self.out, "{v6}");
            }
        }
        self.out.push(b'"');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::Protocol;
    use crate::output::sample::record;

    #[test]
    fn a_flow_is_written_exactly_as_serde_json_writes_it() {
        let odd = "-UT3550-\u{0}\u{1f}\"\\/é\u{7f}\u{2028}";
        for (peer, client, rule) in [
            (None, None, None),
            (Some(odd), Some("µTorrent 3.5.5"), Some("default")),
            (Some("plain"), Some(odd), Some(odd)),
        ] {
            let mut r = record(peer, client, rule);
            for protocol in [None, Some(Protocol::Edonkey)] {
                r.protocol = protocol;
                let row = r.row();
                let mut ours = Vec::new();
                write_row(&mut ours, &row).unwrap();
                let theirs = serde_json::to_vec(&row).unwrap();
                assert_eq!(
                    String::from_utf8(ours).unwrap(),
                    String::from_utf8(theirs).unwrap()
                );
            }
        }
    }
}
