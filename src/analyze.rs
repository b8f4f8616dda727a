//! Offline analysis: capture files (or standard input) through the pipeline
//! into an output, one input after the other, with flows spanning inputs
//! (e.g. a capture rotated into several files) tracked as one.
//!
//! A problem with one input (missing, not a capture, truncated) is recorded
//! in its [`InputReport`] and the run goes on with the next input; nothing
//! already read is lost.

use std::io;
use std::path::PathBuf;

use crate::capture::CaptureFile;
use crate::detect::DetectConfig;
use crate::flow::FlowConfig;
use std::sync::Arc;

use crate::output::{FlowSink, InputReport, P2pPcapWriter, RunStats};
use crate::pipeline::{Event, PacketOutcome, Pipeline};
use crate::policy::Policy;
use crate::timestamp::Duration;

/// What to analyse and how.
#[derive(Clone, Debug)]
pub struct AnalyzeOptions {
    /// Capture files, `-` for standard input.
    pub inputs: Vec<String>,
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

/// Runs the analysis, sending each flow to `sink` as it ends, and returns
/// the counters (also given to `sink.finish`). `progress` is called every
/// few thousand packets.
pub fn analyze(
    options: &AnalyzeOptions,
    sink: &mut dyn FlowSink,
    progress: &mut dyn FnMut(ProgressInfo),
) -> Result<RunStats, AnalyzeError> {
    let mut pipeline = Pipeline::new(options.flows.clone(), options.detect.clone());
    pipeline.set_policy(options.policy.clone());
    let mut stats = RunStats::default();
    let mut writer: Option<P2pPcapWriter> = None;
    let mut out_error: Option<io::Error> = None;
    let mut info = ProgressInfo::default();
    let pcap_error = |path: &PathBuf, e: pcap::Error| AnalyzeError::Pcap {
        path: path.clone(),
        message: e.to_string(),
    };

    let mut on_event = |event: Event,
                        stats: &mut RunStats,
                        writer: &mut Option<P2pPcapWriter>,
                        out_error: &mut Option<io::Error>| {
        let written = match event {
            Event::FlowEnded(record) => {
                stats.count(&record);
                if let Some(w) = writer.as_mut() {
                    w.flow_ended(record.id, record.is_p2p());
                }
                sink.flow(&record)
            }
            Event::Verdict(v) => sink.verdict(&v),
        };
        if let (None, Err(e)) = (&out_error, written) {
            *out_error = Some(e);
        }
    };

    'inputs: for name in &options.inputs {
        let mut report = InputReport {
            name: name.clone(),
            link_type: None,
            packets: 0,
            error: None,
        };
        let mut capture = match CaptureFile::open(name) {
            Ok(c) => c,
            Err(e) => {
                report.error = Some(e.to_string());
                stats.inputs.push(report);
                continue;
            }
        };
        let link = capture.link_type();
        report.link_type = Some(link.name());
        if !link.is_supported() {
            report.error = Some(format!(
                "{name}: link type {} is not supported (supported: Ethernet, Linux cooked v1/v2, raw IP, BSD loopback); its packets are counted as skipped",
                link.0
            ));
        }
        if let (Some(path), None) = (&options.pcap_out, &writer) {
            let w = P2pPcapWriter::create(
                path,
                link,
                options.pcap_queue_bytes,
                options.pcap_queue_wait,
            )
            .map_err(|e| pcap_error(path, e))?;
            writer = Some(w);
        }
        loop {
            let frame = match capture.next_frame() {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => {
                    report.error = Some(e.to_string());
                    break;
                }
            };
            let outcome = pipeline.process(frame.ts, link, frame.data, frame.wire_len, &mut |r| {
                on_event(r, &mut stats, &mut writer, &mut out_error)
            });
            if let (Some(w), PacketOutcome::Tracked { flow, status, .. }) =
                (writer.as_mut(), outcome)
            {
                w.packet(flow, status, link, frame.ts, frame.data, frame.wire_len);
            }
            info.packets += 1;
            info.bytes += frame.data.len() as u64 + 16;
            if info.packets % 4096 == 0 {
                progress(info);
            }
            if out_error.is_some() {
                report.packets = capture.packets();
                stats.inputs.push(report);
                break 'inputs;
            }
        }
        report.packets = capture.packets();
        stats.inputs.push(report);
    }
    if let Some(e) = out_error.take() {
        return Err(AnalyzeError::Output(e));
    }
    pipeline.finish(&mut |r| on_event(r, &mut stats, &mut writer, &mut out_error));
    if let Some(e) = out_error {
        return Err(AnalyzeError::Output(e));
    }
    progress(info);
    if let (Some(w), Some(path)) = (writer.as_mut(), &options.pcap_out) {
        stats.pcap = Some(w.finish().map_err(|e| pcap_error(path, e))?);
    }
    stats.pipeline = pipeline.stats();
    sink.finish(&stats)?;
    Ok(stats)
}
