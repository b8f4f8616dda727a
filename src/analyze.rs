//! Offline analysis: capture files (or standard input) through the pipeline
//! into an output, one input after the other, with flows spanning inputs
//! (e.g. a capture rotated into several files) tracked as one.
//!
//! A problem with one input (missing, not a capture, truncated) is recorded
//! in its [`InputReport`] and the run goes on with the next input; nothing
//! already read is lost.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use crate::capture::CaptureFile;
use crate::decode::LinkType;
use crate::detect::DetectConfig;
use crate::flow::FlowConfig;
use crate::output::{FlowSink, InputReport, P2pPcapWriter, RenderRecord, RunStats};
use crate::pipeline::parallel::{self, EngineOptions, Frame, Next, Source};
use crate::pipeline::{Event, PacketOutcome, PipelineStats};
use crate::policy::Policy;
use crate::timestamp::Duration;

/// What to analyse and how.
#[derive(Clone, Debug)]
pub struct AnalyzeOptions {
    /// Capture files, `-` for standard input.
    pub inputs: Vec<String>,
    /// Threads (the reading one included); the output is the same for any.
    pub threads: usize,
    /// Flow table limits.
    pub flows: FlowConfig,
    /// Rules.
    pub detect: DetectConfig,
    /// Where to write the packets of P2P flows.
    pub pcap_out: Option<PathBuf>,
    /// Bytes of undecided packets the pcap writer may hold back.
    pub pcap_queue_bytes: usize,
    /// Packet time an undecided packet may be held back.
    pub pcap_queue_wait: Duration,
    /// A policy whose decisions to report (what it would have done).
    pub policy: Option<Arc<Policy>>,
}

/// A run that could not complete.
#[derive(Debug, thiserror::Error)]
pub enum AnalyzeError {
    /// Writing the report failed (a closed pipe included).
    #[error("cannot write the output: {0}")]
    Output(#[from] io::Error),
    /// The `-w` file could not be created or written.
    #[error("{path}: cannot write the P2P capture: {message}")]
    Pcap {
        /// The file.
        path: PathBuf,
        /// libpcap's message.
        message: String,
    },
}

/// Progress of a run, for a progress bar.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProgressInfo {
    /// Approximate bytes of input consumed (frame data plus record headers).
    pub bytes: u64,
    /// Frames read.
    pub packets: u64,
}

/// The inputs one after the other, each problem recorded in its report.
struct Inputs<'a> {
    names: std::slice::Iter<'a, String>,
    current: Option<(CaptureFile, LinkType)>,
    reports: Vec<InputReport>,
    info: ProgressInfo,
    progress: &'a mut dyn FnMut(ProgressInfo),
    /// The first input's link type, for the `-w` file.
    first_link: Option<LinkType>,
}

impl Inputs<'_> {
    /// Opens the next input that opens; false when there is none.
    fn open_next(&mut self) -> bool {
        for name in self.names.by_ref() {
            let mut report = InputReport {
                name: name.clone(),
                link_type: None,
                packets: 0,
                error: None,
            };
            match CaptureFile::open(name) {
                Ok(c) => {
                    let link = c.link_type();
                    report.link_type = Some(link.name());
                    if !link.is_supported() {
                        report.error = Some(format!(
                            "{name}: link type {} is not supported (supported: Ethernet, Linux cooked v1/v2, raw IP, BSD loopback); its packets are counted as skipped",
                            link.0
                        ));
                    }
                    self.first_link.get_or_insert(link);
                    self.reports.push(report);
                    self.current = Some((c, link));
                    return true;
                }
                Err(e) => {
                    report.error = Some(e.to_string());
                    self.reports.push(report);
                }
            }
        }
        false
    }

    fn close_current(&mut self, error: Option<String>) {
        if let (Some((c, _)), Some(report)) = (self.current.take(), self.reports.last_mut()) {
            report.packets = c.packets();
            if error.is_some() {
                report.error = error;
            }
        }
    }
}

impl Source for Inputs<'_> {
    fn next(&mut self, give: &mut dyn FnMut(Frame<'_>)) -> Next {
        loop {
            if self.current.is_none() && !self.open_next() {
                (self.progress)(self.info);
                return Next::End;
            }
            let Some((capture, link)) = self.current.as_mut() else {
                continue;
            };
            let error = match capture.next_frame() {
                Ok(Some(frame)) => {
                    give(Frame {
                        ts: frame.ts,
                        link: *link,
                        data: frame.data,
                        wire_len: frame.wire_len,
                    });
                    self.info.packets += 1;
                    self.info.bytes += frame.data.len() as u64 + 16;
                    if self.info.packets.is_multiple_of(4096) {
                        (self.progress)(self.info);
                    }
                    return Next::Frame;
                }
                Ok(None) => None,
                Err(e) => Some(e.to_string()),
            };
            // This input is over, cleanly or not; on to the next.
            self.close_current(error);
        }
    }
}

/// Turns the engine's results into the report, the counters and the `-w`
/// file.
struct Collect<'a> {
    sink: &'a mut dyn FlowSink,
    stats: RunStats,
    writer: Option<P2pPcapWriter>,
    out_error: Option<io::Error>,
}

impl Collect<'_> {
    /// One event, with its record as the sink's formatter made it (if it
    /// was formatted).
    fn deliver(&mut self, event: Event, rendered: Option<&[u8]>) {
        let written = match event {
            Event::FlowEnded(record) => {
                self.stats.count(&record);
                if let Some(w) = self.writer.as_mut() {
                    w.flow_ended(record.id, record.is_p2p());
                }
                match rendered {
                    Some(bytes) => self.sink.rendered_flow(&record, bytes),
                    None => self.sink.flow(&record),
                }
            }
            Event::Verdict(v) => self.sink.verdict(&v),
        };
        if let (None, Err(e)) = (&self.out_error, written) {
            self.out_error = Some(e);
        }
    }
}

impl parallel::Sink for Collect<'_> {
    fn event(&mut self, event: Event) {
        self.deliver(event, None);
    }

    fn renderer(&self) -> Option<Arc<RenderRecord>> {
        self.sink.renderer()
    }

    fn rendered(&mut self, event: Event, rendered: &[u8]) {
        self.deliver(event, Some(rendered));
    }

    fn wants_packets(&self) -> bool {
        self.writer.is_some()
    }

    /// The `-w` writer needs every flow's end (to let its packets go).
    fn p2p_records_only(&self) -> bool {
        self.writer.is_none() && self.sink.p2p_only()
    }

    fn packet(&mut self, frame: Frame<'_>, outcome: PacketOutcome) {
        if let (Some(w), PacketOutcome::Tracked { flow, status, .. }) =
            (self.writer.as_mut(), outcome)
        {
            w.packet(
                flow,
                status,
                frame.link,
                frame.ts,
                frame.data,
                frame.wire_len,
            );
        }
    }

    fn chunk_done(&mut self, _stats: &dyn Fn() -> PipelineStats) -> parallel::Control {
        // A closed output (e.g. `| head`) ends the run.
        if self.out_error.is_some() {
            parallel::Control::Stop
        } else {
            parallel::Control::Continue
        }
    }
}

/// Runs the analysis, sending each flow to `sink` as it ends, and returns
/// the counters (also given to `sink.finish`). `progress` is called every
/// few thousand packets.
pub fn analyze(
    options: &AnalyzeOptions,
    sink: &mut dyn FlowSink,
    progress: &mut dyn FnMut(ProgressInfo),
) -> Result<RunStats, AnalyzeError> {
    let pcap_error = |path: &PathBuf, e: pcap::Error| AnalyzeError::Pcap {
        path: path.clone(),
        message: e.to_string(),
    };
    let mut inputs = Inputs {
        names: options.inputs.iter(),
        current: None,
        reports: Vec::new(),
        info: ProgressInfo::default(),
        progress,
        first_link: None,
    };
    // The `-w` file takes the first input's link type, so open it first.
    let writer = match &options.pcap_out {
        Some(path) => {
            let mut link = None;
            if inputs.open_next() {
                link = inputs.first_link;
            }
            let link = link.unwrap_or(LinkType::ETHERNET);
            Some(
                P2pPcapWriter::create(
                    path,
                    link,
                    options.pcap_queue_bytes,
                    options.pcap_queue_wait,
                )
                .map_err(|e| pcap_error(path, e))?,
            )
        }
        None => None,
    };
    let mut collect = Collect {
        sink,
        stats: RunStats::default(),
        writer,
        out_error: None,
    };
    let engine = EngineOptions {
        threads: options.threads,
        flows: options.flows.clone(),
        detect: options.detect.clone(),
        policy: options.policy.clone(),
    };
    let pipeline = parallel::run(&engine, &mut inputs, &mut collect);
    inputs.close_current(None);
    if let Some(e) = collect.out_error.take() {
        return Err(AnalyzeError::Output(e));
    }
    let mut stats = collect.stats;
    stats.inputs = std::mem::take(&mut inputs.reports);
    if let (Some(w), Some(path)) = (collect.writer.as_mut(), &options.pcap_out) {
        stats.pcap = Some(w.finish().map_err(|e| pcap_error(path, e))?);
    }
    stats.flows += pipeline.unreported.flows;
    stats.pipeline = pipeline;
    collect.sink.finish(&stats)?;
    Ok(stats)
}
