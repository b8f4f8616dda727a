//! `p2pguard live`: libpcap on an interface, detection and (with a policy)
//! decisions logged as they happen; nothing is enforced.
//!
//! It runs the same engine as offline analysis ([`parallel`]), with as many
//! threads as asked: a capture of what live saw, analysed later, gives the
//! same flows (chunks close early when the interface is idle, which only
//! makes what one flow teaches about others usable sooner).

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use pcap::{Active, Capture, Precision};

use super::runtime::Runtime;
use crate::decode::LinkType;
use crate::pipeline::parallel::{self, Control, EngineOptions, Frame, Next, Source};
use crate::pipeline::{Event, PipelineStats};
use crate::timestamp::Timestamp;

/// Capture settings.
#[derive(Clone, Debug)]
pub struct LiveOptions {
    /// The interface.
    pub interface: String,
    /// A BPF filter.
    pub filter: Option<String>,
    /// Bytes captured per packet.
    pub snaplen: i32,
    /// Promiscuous mode.
    pub promiscuous: bool,
    /// Threads, the capturing one included.
    pub threads: usize,
}

/// Why live capture could not start or went wrong.
#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    /// libpcap refused the interface or the filter.
    #[error("{0}")]
    Pcap(String),
}

/// The interface as a frame source.
struct LiveSource {
    cap: Capture<Active>,
    link: LinkType,
    /// Kernel counters (received, dropped), read once a second.
    kernel: Rc<Cell<(u32, u32)>>,
    kernel_read: Instant,
    /// What ended the capture, if not a signal.
    error: Option<String>,
}

impl LiveSource {
    fn read_kernel(&mut self) {
        if let Ok(s) = self.cap.stats() {
            self.kernel.set((s.received, s.dropped + s.if_dropped));
        }
        self.kernel_read = Instant::now();
    }
}

impl Source for LiveSource {
    fn next(&mut self, give: &mut dyn FnMut(Frame<'_>)) -> Next {
        if self.kernel_read.elapsed() >= Duration::from_secs(1) {
            self.read_kernel();
        }
        match self.cap.next_packet() {
            Ok(p) => {
                let secs = u64::try_from(p.header.ts.tv_sec).unwrap_or(0);
                let nanos = u32::try_from(p.header.ts.tv_usec).unwrap_or(0);
                give(Frame {
                    ts: Timestamp::from_parts(secs, nanos),
                    link: self.link,
                    data: p.data,
                    wire_len: p.header.len.max(p.header.caplen),
                });
                Next::Frame
            }
            // libpcap's read timeout does not always fire on an idle Linux
            // interface; the capture is non-blocking and pauses when idle, so
            // that signals and stats lines are served.
            Err(pcap::Error::TimeoutExpired) => {
                std::thread::sleep(Duration::from_millis(2));
                Next::Idle
            }
            Err(e) => {
                self.error = Some(e.to_string());
                Next::End
            }
        }
    }
}

/// Events to the log; stats lines, reloads and stopping between chunks.
struct LiveSink<'a> {
    rt: &'a mut Runtime,
    kernel: Rc<Cell<(u32, u32)>>,
}

impl parallel::Sink for LiveSink<'_> {
    fn event(&mut self, event: Event) {
        self.rt.log_event(event);
    }

    fn chunk_done(&mut self, stats: &dyn Fn() -> PipelineStats) -> Control {
        let mut control = Control::Continue;
        if self.rt.signals().take_reload() {
            let (rules, policy) = self.rt.reload();
            control = Control::Reload {
                rules: rules.map(Box::new),
                policy,
            };
        }
        if self.rt.stats_due() {
            let (received, dropped) = self.kernel.get();
            self.rt.stats_line(&stats(), &mut || {
                vec![
                    ("kernel_received", serde_json::Value::from(received)),
                    ("kernel_dropped", serde_json::Value::from(dropped)),
                ]
            });
        }
        if self.rt.signals().stop_requested() {
            control = Control::Stop;
        }
        control
    }
}

/// Captures until SIGINT/SIGTERM, then ends every open flow.
pub fn run(options: &LiveOptions, rt: &mut Runtime) -> Result<(), LiveError> {
    let err =
        |what: &str, e: pcap::Error| LiveError::Pcap(format!("{}: {what}: {e}", options.interface));
    let mut cap = Capture::from_device(options.interface.as_str())
        .map_err(|e| err("no such interface", e))?
        .promisc(options.promiscuous)
        .snaplen(options.snaplen)
        .timeout(200)
        .immediate_mode(true)
        .precision(Precision::Nano)
        .open()
        .map_err(|e| err("cannot capture (are you root?)", e))?
        .setnonblock()
        .map_err(|e| err("cannot set non-blocking mode", e))?;
    if let Some(f) = &options.filter {
        cap.filter(f, true)
            .map_err(|e| err(&format!("bad filter `{f}`"), e))?;
    }
    let link = LinkType(cap.get_datalink().0);
    rt.note(serde_json::json!({
        "event": "start", "mode": "live", "interface": options.interface,
        "link_type": link.name(), "threads": options.threads,
    }));
    let kernel = Rc::new(Cell::new((0, 0)));
    let mut source = LiveSource {
        cap,
        link,
        kernel: Rc::clone(&kernel),
        kernel_read: Instant::now(),
        error: None,
    };
    let engine = EngineOptions {
        threads: options.threads,
        flows: rt.flows.clone(),
        detect: crate::detect::DetectConfig {
            rules: rt.pipeline.detection().rules().clone(),
            ..rt.detect.clone()
        },
        policy: rt.pipeline.policy().cloned(),
    };
    let mut sink = LiveSink { rt, kernel };
    parallel::run(&engine, &mut source, &mut sink);
    if let Some(e) = &source.error {
        eprintln!("p2pguard: capture error on {}: {e}", options.interface);
        sink.rt.note(
            serde_json::json!({"event": "error", "interface": options.interface, "error": e}),
        );
    }
    source.read_kernel();
    let (received, dropped) = source.kernel.get();
    sink.rt.note(serde_json::json!({"event": "stop", "mode": "live", "kernel_received": received, "kernel_dropped": dropped}));
    Ok(())
}
