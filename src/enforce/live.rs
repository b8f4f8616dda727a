//! `p2pguard live`: libpcap on an interface, detection and (with a policy)
//! decisions logged as they happen; nothing is enforced.

use pcap::{Capture, Precision};

use super::runtime::Runtime;
use crate::decode::LinkType;
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
}

/// Why live capture could not start or went wrong.
#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    /// libpcap refused the interface or the filter.
    #[error("{0}")]
    Pcap(String),
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
        // libpcap's read timeout does not always fire on an idle Linux
        // interface; read without blocking and pause when idle instead, so
        // that signals and stats lines are served.
        .setnonblock()
        .map_err(|e| err("cannot set non-blocking mode", e))?;
    if let Some(f) = &options.filter {
        cap.filter(f, true)
            .map_err(|e| err(&format!("bad filter `{f}`"), e))?;
    }
    let link = LinkType(cap.get_datalink().0);
    rt.note(serde_json::json!({
        "event": "start", "mode": "live", "interface": options.interface, "link_type": link.name(),
    }));
    let mut kernel = (0u32, 0u32);
    loop {
        match cap.next_packet() {
            Ok(p) => {
                let secs = u64::try_from(p.header.ts.tv_sec).unwrap_or(0);
                let nanos = u32::try_from(p.header.ts.tv_usec).unwrap_or(0);
                let ts = Timestamp::from_parts(secs, nanos);
                rt.process(ts, link, p.data, p.header.len.max(p.header.caplen));
            }
            Err(pcap::Error::TimeoutExpired) => {
                std::thread::sleep(std::time::Duration::from_millis(2))
            }
            Err(e) => {
                rt.note(serde_json::json!({"event": "error", "error": e.to_string()}));
                eprintln!("p2pguard: capture error on {}: {e}", options.interface);
                break;
            }
        }
        // Kernel counters are read only when a stats line is due.
        let mut extra = || {
            if let Ok(s) = cap.stats() {
                kernel = (s.received, s.dropped + s.if_dropped);
            }
            vec![
                ("kernel_received", serde_json::Value::from(kernel.0)),
                ("kernel_dropped", serde_json::Value::from(kernel.1)),
            ]
        };
        if rt.tick(&mut extra) {
            break;
        }
    }
    if let Ok(s) = cap.stats() {
        kernel = (s.received, s.dropped + s.if_dropped);
    }
    rt.finish();
    rt.note(serde_json::json!({"event": "stop", "mode": "live", "kernel_received": kernel.0, "kernel_dropped": kernel.1}));
    Ok(())
}
