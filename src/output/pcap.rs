//! `-w FILE`: a pcap of every packet of the flows named P2P, including the
//! packets seen before the verdict, in capture order.
//!
//! A packet whose flow is still undecided waits in a queue (in capture
//! order). The head of the queue is written once its flow is named P2P and
//! dropped once its flow is known not to be; so the file stays in capture
//! order. The queue is bounded in bytes and in packet time: when either
//! bound is hit, the head flow's waiting packets are dropped and counted
//! (`unresolved_dropped`), and its later packets are still written if it
//! turns out P2P.

use std::collections::{HashMap, VecDeque};
use std::path::Path;

use pcap::{Capture, Linktype, PacketHeader, Precision, Savefile};

use crate::decode::LinkType;
use crate::pipeline::FlowStatus;
use crate::timestamp::{Duration, Timestamp};

/// Counters of the `-w` writer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PcapWriterStats {
    /// Packets written.
    pub written: u64,
    /// Packets of undecided flows dropped because the queue bound was hit.
    pub unresolved_dropped: u64,
    /// Packets of P2P flows not written because their input's link type
    /// differs from the output file's.
    pub link_type_mismatch: u64,
}

struct Waiting {
    flow: u64,
    ts: Timestamp,
    wire_len: u32,
    data: Vec<u8>,
}

/// What the writer knows of a flow with packets waiting.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Known {
    Undecided,
    Write,
    Drop,
}

/// The `-w` writer; see the module documentation.
pub struct P2pPcapWriter {
    file: Savefile,
    link: LinkType,
    queue: VecDeque<Waiting>,
    queued_bytes: usize,
    /// Flows with packets in the queue: what is known, and how many wait.
    flows: HashMap<u64, (Known, usize)>,
    max_bytes: usize,
    max_wait: Duration,
    newest: Timestamp,
    stats: PcapWriterStats,
}

impl P2pPcapWriter {
    /// Creates `path` for packets of link type `link`. Undecided packets
    /// wait for at most `max_wait` of packet time and `max_bytes` in all.
    pub fn create(
        path: &Path,
        link: LinkType,
        max_bytes: usize,
        max_wait: Duration,
    ) -> Result<P2pPcapWriter, pcap::Error> {
        let dead = Capture::dead_with_precision(Linktype(link.0), Precision::Nano)?;
        let file = dead.savefile(path)?;
        Ok(P2pPcapWriter {
            file,
            link,
            queue: VecDeque::new(),
            queued_bytes: 0,
            flows: HashMap::new(),
            max_bytes,
            max_wait,
            newest: Timestamp(0),
            stats: PcapWriterStats::default(),
        })
    }

    /// Counters so far.
    pub fn stats(&self) -> &PcapWriterStats {
        &self.stats
    }

    /// Offers one packet of flow `flow`, whose status after the packet is
    /// `status`.
    pub fn packet(
        &mut self,
        flow: u64,
        status: FlowStatus,
        link: LinkType,
        ts: Timestamp,
        data: &[u8],
        wire_len: u32,
    ) {
        self.newest = self.newest.max(ts);
        let known = match status {
            FlowStatus::P2p(_) => Known::Write,
            FlowStatus::NotP2p => Known::Drop,
            FlowStatus::Undecided => Known::Undecided,
        };
        if let Some(entry) = self.flows.get_mut(&flow) {
            entry.0 = known;
        }
        let mismatch = link != self.link;
        match known {
            Known::Drop => {}
            Known::Write if self.queue.is_empty() => {
                if mismatch {
                    self.stats.link_type_mismatch += 1;
                } else {
                    self.write(ts, data, wire_len);
                }
            }
            _ if mismatch => {
                if known == Known::Write {
                    self.stats.link_type_mismatch += 1;
                }
            }
            _ => {
                self.queue.push_back(Waiting {
                    flow,
                    ts,
                    wire_len,
                    data: data.to_vec(),
                });
                self.queued_bytes += data.len();
                self.flows.entry(flow).or_insert((known, 0)).1 += 1;
            }
        }
        self.drain(false);
    }

    /// A flow ended: its waiting packets are written if it was named P2P,
    /// else dropped.
    pub fn flow_ended(&mut self, flow: u64, p2p: bool) {
        if let Some(entry) = self.flows.get_mut(&flow) {
            entry.0 = if p2p { Known::Write } else { Known::Drop };
        }
        self.drain(false);
    }

    /// Writes what is decided, drops the rest, and flushes the file.
    pub fn finish(&mut self) -> Result<PcapWriterStats, pcap::Error> {
        self.drain(true);
        self.file.flush()?;
        Ok(self.stats.clone())
    }

    fn drain(&mut self, all: bool) {
        while let Some(head) = self.queue.front() {
            let known = self.flows.get(&head.flow).map_or(Known::Drop, |e| e.0);
            let overdue =
                self.queued_bytes > self.max_bytes || self.newest.since(head.ts) > self.max_wait;
            let verdict = match known {
                Known::Undecided if all || overdue => {
                    self.stats.unresolved_dropped += 1;
                    Known::Drop
                }
                Known::Undecided => break,
                k => k,
            };
            let Some(w) = self.queue.pop_front() else {
                break;
            };
            self.queued_bytes -= w.data.len();
            if verdict == Known::Write {
                self.write(w.ts, &w.data, w.wire_len);
            }
            if let Some(entry) = self.flows.get_mut(&w.flow) {
                entry.1 -= 1;
                if entry.1 == 0 {
                    self.flows.remove(&w.flow);
                }
            }
        }
    }

    fn write(&mut self, ts: Timestamp, data: &[u8], wire_len: u32) {
        let nanos = ts.as_nanos();
        let header = PacketHeader {
            ts: libc::timeval {
                tv_sec: (nanos / 1_000_000_000) as libc::time_t,
                tv_usec: (nanos % 1_000_000_000) as libc::suseconds_t,
            },
            caplen: data.len() as u32,
            len: wire_len.max(data.len() as u32),
        };
        self.file.write(&pcap::Packet::new(&header, data));
        self.stats.written += 1;
    }
}
