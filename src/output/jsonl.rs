//! `--format jsonl`: one JSON object per flow, then one stats object.

use std::io::{self, Write};

use super::{FlowRecord, FlowSink, RunStats};
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
    fn flow(&mut self, record: &FlowRecord) -> io::Result<()> {
        if self.p2p_only && !record.is_p2p() {
            return Ok(());
        }
        self.write_line(&record.row())
    }

    fn verdict(&mut self, event: &VerdictEvent) -> io::Result<()> {
        self.write_line(&event.to_json())
    }

    fn finish(&mut self, stats: &RunStats) -> io::Result<()> {
        self.write_line(&stats.to_json())?;
        self.out.flush()
    }
}
