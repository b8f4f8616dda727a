//! `--format jsonl`: one JSON object per flow, then one stats object.

use std::io::{self, Write};

use super::{FlowRecord, FlowSink, RunStats};
use crate::pipeline::VerdictEvent;

/// Writes flows as JSON lines.
pub struct JsonLinesWriter<W: Write> {
    out: W,
    p2p_only: bool,
}

impl<W: Write> JsonLinesWriter<W> {
    /// A writer; with `p2p_only`, flows not named P2P are left out.
    pub fn new(out: W, p2p_only: bool) -> Self {
        JsonLinesWriter { out, p2p_only }
    }
}

impl<W: Write> FlowSink for JsonLinesWriter<W> {
    fn flow(&mut self, record: &FlowRecord) -> io::Result<()> {
        if self.p2p_only && !record.is_p2p() {
            return Ok(());
        }
        serde_json::to_writer(&mut self.out, &record.row())?;
        self.out.write_all(b"\n")
    }

    fn verdict(&mut self, event: &VerdictEvent) -> io::Result<()> {
        serde_json::to_writer(&mut self.out, &event.to_json())?;
        self.out.write_all(b"\n")
    }

    fn finish(&mut self, stats: &RunStats) -> io::Result<()> {
        serde_json::to_writer(&mut self.out, &stats.to_json())?;
        self.out.write_all(b"\n")?;
        self.out.flush()
    }
}
