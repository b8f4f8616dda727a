//! `p2pguard inline`: a transparent bridge between two interfaces.
//!
//! Two reader threads take frames off the interfaces (pnet `AF_PACKET`
//! channels that ignore the frames the bridge itself sends) and hand them
//! to one worker, which owns the pipeline, the shaper and both senders.
//! Every frame is forwarded unchanged to the other interface except what
//! the policy drops (with optional TCP resets to both ends) or delays (a
//! token bucket per throttle scope, with a bounded delay queue that drops
//! only when full). Frames that are not IP (ARP, STP, ...) always pass.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use etherparse::{NetSlice, PacketBuilder, SlicedPacket, TransportSlice};
use pnet_datalink::{self, Channel, Config, DataLinkReceiver, DataLinkSender};

use super::afpacket;
use super::runtime::{Runtime, wall_clock};
use super::shaper::{Shaped, Shaper};
use crate::decode::LinkType;
use crate::pipeline::{PacketAction, PacketOutcome};
use crate::timestamp::Timestamp;

/// Bridge settings.
#[derive(Clone, Debug)]
pub struct InlineOptions {
    /// First interface.
    pub a: String,
    /// Second interface.
    pub b: String,
    /// On an internal error with a frame, forward it (`true`) or drop it.
    pub fail_open: bool,
    /// Longest a throttled frame may wait.
    pub max_delay: Duration,
}

/// Why the bridge could not start.
#[derive(Debug, thiserror::Error)]
pub enum InlineError {
    /// An interface does not exist.
    #[error("no interface named `{0}` (see `ip link`)")]
    NoInterface(String),
    /// An interface could not be opened.
    #[error("{0}: cannot open a packet socket (are you root?): {1}")]
    Open(String, std::io::Error),
    /// The interface is not Ethernet-like.
    #[error("{0}: not an Ethernet interface")]
    NotEthernet(String),
}

struct Frame {
    side: usize,
    ts: Timestamp,
    data: Vec<u8>,
}

/// Counters shown in the stats line.
#[derive(Default)]
struct Counts {
    forwarded: u64,
    dropped: u64,
    shaped: u64,
    shaper_dropped: u64,
    resets: u64,
    send_errors: u64,
    oversize: u64,
    internal_errors: u64,
}

/// Bridges until SIGINT/SIGTERM, then sends what the shaper holds and ends
/// every open flow.
pub fn run(options: &InlineOptions, rt: &mut Runtime) -> Result<(), InlineError> {
    let names = [options.a.clone(), options.b.clone()];
    let mut senders: Vec<Box<dyn DataLinkSender>> = Vec::new();
    let mut receivers: Vec<Box<dyn DataLinkReceiver>> = Vec::new();
    let mut mtus = Vec::new();
    for name in &names {
        let iface = pnet_datalink::interfaces()
            .into_iter()
            .find(|i| &i.name == name)
            .ok_or_else(|| InlineError::NoInterface(name.clone()))?;
        let fd =
            afpacket::socket_ignoring_outgoing().map_err(|e| InlineError::Open(name.clone(), e))?;
        let config = Config {
            socket_fd: Some(fd),
            read_timeout: Some(Duration::from_millis(100)),
            promiscuous: true,
            read_buffer_size: 1 << 17,
            write_buffer_size: 1 << 17,
            ..Config::default()
        };
        match pnet_datalink::channel(&iface, config) {
            Ok(Channel::Ethernet(tx, rx)) => {
                senders.push(tx);
                receivers.push(rx);
            }
            Ok(_) => return Err(InlineError::NotEthernet(name.clone())),
            Err(e) => return Err(InlineError::Open(name.clone(), e)),
        }
        mtus.push(mtu(name));
        warn_about_offloads(name);
    }
    rt.note(serde_json::json!({"event": "start", "mode": "inline", "interfaces": names, "fail_open": options.fail_open}));

    let (queue, incoming) = mpsc::sync_channel::<Frame>(8192);
    let mut readers = Vec::new();
    for (side, mut rx) in receivers.into_iter().enumerate() {
        let queue = queue.clone();
        let signals = rt.signals().clone();
        readers.push(thread::spawn(move || {
            while !signals.stop_requested() {
                match rx.next() {
                    Ok(frame) => {
                        let frame = Frame {
                            side,
                            ts: wall_clock(),
                            data: frame.to_vec(),
                        };
                        if queue.send(frame).is_err() {
                            break;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                    Err(_) => thread::sleep(Duration::from_millis(10)),
                }
            }
        }));
    }
    drop(queue);

    let mut shaper: Shaper<(usize, u64, Vec<u8>)> = Shaper::new(options.max_delay, 200_000);
    let mut counts = Counts::default();
    let mut warned_oversize = false;
    let mut send = |out: usize, frame: &[u8], counts: &mut Counts| match senders[out]
        .send_to(frame, None)
    {
        Some(Ok(())) => counts.forwarded += 1,
        other => {
            if counts.send_errors == 0 {
                let why = match other {
                    Some(Err(e)) => e.to_string(),
                    _ => "no sender".to_string(),
                };
                eprintln!("p2pguard: cannot send on {}: {why}", names[out]);
            }
            counts.send_errors += 1;
            if frame.len() > mtus[out] + 18 {
                counts.oversize += 1;
                if !warned_oversize {
                    warned_oversize = true;
                    eprintln!(
                        "p2pguard: a {}-byte frame does not fit {} (MTU {}): turn receive offloads off on both interfaces: ethtool -K {} gro off gso off tso off lro off",
                        frame.len(),
                        names[out],
                        mtus[out],
                        names[1 - out]
                    );
                }
            }
        }
    };
    loop {
        let now = Instant::now();
        while let Some((out, _, frame)) = shaper.due(now) {
            send(out, &frame, &mut counts);
        }
        let wait = shaper
            .next_due()
            .map_or(Duration::from_millis(100), |t| {
                t.saturating_duration_since(now)
            })
            .min(Duration::from_millis(100));
        match incoming.recv_timeout(wait) {
            Ok(frame) => {
                let out = 1 - frame.side;
                let len = frame.data.len() as u32;
                let outcome = catch_unwind(AssertUnwindSafe(|| {
                    rt.process(frame.ts, LinkType::ETHERNET, &frame.data, len)
                }));
                match outcome {
                    Err(_) => {
                        counts.internal_errors += 1;
                        if options.fail_open {
                            send(out, &frame.data, &mut counts);
                        }
                    }
                    Ok(PacketOutcome::Skipped(_)) => send(out, &frame.data, &mut counts),
                    Ok(PacketOutcome::Tracked { action, flow, .. }) => match action {
                        PacketAction::Forward => send(out, &frame.data, &mut counts),
                        PacketAction::Drop { reset } => {
                            counts.dropped += 1;
                            if reset && let Some([back, forth]) = tcp_resets(&frame.data) {
                                for (side, rst) in [(frame.side, back), (out, forth)] {
                                    send(side, &rst, &mut counts);
                                    counts.resets += 1;
                                }
                            }
                        }
                        PacketAction::Shape { bucket, throttle } => {
                            counts.shaped += 1;
                            let item = (out, flow, frame.data);
                            match shaper.offer(
                                bucket,
                                &throttle,
                                item.2.len(),
                                Instant::now(),
                                item,
                            ) {
                                Shaped::Now((o, _, f)) => send(o, &f, &mut counts),
                                Shaped::Held => {}
                                Shaped::Dropped((_, flow, f)) => {
                                    counts.shaper_dropped += 1;
                                    rt.pipeline.shaper_dropped(flow, f.len() as u32);
                                }
                            }
                        }
                    },
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        let held = shaper.held();
        let mut extra = || {
            vec![
                ("forwarded", counts.forwarded.into()),
                ("dropped", counts.dropped.into()),
                ("shaped", counts.shaped.into()),
                ("held", (held as u64).into()),
                ("shaper_dropped", counts.shaper_dropped.into()),
                ("resets", counts.resets.into()),
                ("send_errors", counts.send_errors.into()),
                ("oversize", counts.oversize.into()),
                ("internal_errors", counts.internal_errors.into()),
            ]
        };
        if rt.tick(&mut extra) {
            break;
        }
    }
    rt.signals().request_stop();
    for (out, _, frame) in shaper.drain() {
        send(out, &frame, &mut counts);
    }
    for r in readers {
        let _ = r.join();
    }
    rt.finish();
    rt.note(serde_json::json!({
        "event": "stop", "mode": "inline", "forwarded": counts.forwarded, "dropped": counts.dropped,
        "shaped": counts.shaped, "shaper_dropped": counts.shaper_dropped, "resets": counts.resets,
        "send_errors": counts.send_errors, "internal_errors": counts.internal_errors,
    }));
    Ok(())
}

/// The interface's MTU (1500 if unknown).
fn mtu(name: &str) -> usize {
    std::fs::read_to_string(format!("/sys/class/net/{name}/mtu"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(1500)
}

/// Warns when receive offloads will hand the bridge frames larger than the
/// MTU, which it cannot send on.
fn warn_about_offloads(name: &str) {
    let Ok(out) = std::process::Command::new("ethtool")
        .args(["-k", name])
        .output()
    else {
        return;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let on: Vec<&str> = ["generic-receive-offload", "large-receive-offload"]
        .into_iter()
        .filter(|f| text.lines().any(|l| l.starts_with(&format!("{f}: on"))))
        .collect();
    if !on.is_empty() {
        eprintln!(
            "p2pguard: warning: {name} has {} on: frames larger than the MTU will arrive and cannot be forwarded; run: ethtool -K {name} gro off lro off tso off gso off",
            on.join(" and ")
        );
    }
}

/// TCP resets for a blocked TCP segment: one back to its sender (sequence
/// number = the segment's acknowledgement) and one on to its receiver
/// (sequence number = the segment's). Untagged Ethernet only.
fn tcp_resets(frame: &[u8]) -> Option<[Vec<u8>; 2]> {
    let p = SlicedPacket::from_ethernet(frame).ok()?;
    let Some(etherparse::LinkSlice::Ethernet2(eth)) = &p.link else {
        return None;
    };
    if !p.link_exts.is_empty() {
        return None;
    }
    let Some(TransportSlice::Tcp(tcp)) = &p.transport else {
        return None;
    };
    if tcp.rst() {
        return None;
    }
    let len = tcp.payload().len() as u32 + u32::from(tcp.syn()) + u32::from(tcp.fin());
    let (src_mac, dst_mac) = (eth.source(), eth.destination());
    let build = |to_sender: bool| -> Option<Vec<u8>> {
        let (smac, dmac) = if to_sender {
            (dst_mac, src_mac)
        } else {
            (src_mac, dst_mac)
        };
        let eth = PacketBuilder::ethernet2(smac, dmac);
        let ip = match &p.net {
            Some(NetSlice::Ipv4(v4)) => {
                let h = v4.header();
                let (s, d) = (h.source(), h.destination());
                if to_sender {
                    eth.ipv4(d, s, 64)
                } else {
                    eth.ipv4(s, d, 64)
                }
            }
            Some(NetSlice::Ipv6(v6)) => {
                let h = v6.header();
                let (s, d) = (h.source(), h.destination());
                if to_sender {
                    eth.ipv6(d, s, 64)
                } else {
                    eth.ipv6(s, d, 64)
                }
            }
            _ => return None,
        };
        let (sport, dport) = (tcp.source_port(), tcp.destination_port());
        let b = if to_sender {
            ip.tcp(dport, sport, tcp.acknowledgment_number(), 0)
                .rst()
                .ack(tcp.sequence_number().wrapping_add(len))
        } else {
            ip.tcp(sport, dport, tcp.sequence_number(), 0).rst()
        };
        let mut out = Vec::new();
        b.write(&mut out, &[]).ok()?;
        Some(out)
    };
    Some([build(true)?, build(false)?])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::{TcpFlags, decode};
    use crate::synth;

    #[test]
    fn resets_go_both_ways_with_the_right_sequence_numbers() {
        let frame = synth::ethernet(
            "10.0.0.1:40000",
            "10.0.0.2:6881",
            synth::L4::Tcp {
                flags: 0x18,
                seq: 1000,
            },
            &[7u8; 68],
        );
        let [back, forth] = tcp_resets(&frame).unwrap();
        let b = decode(LinkType::ETHERNET, &back).unwrap();
        assert_eq!(
            (b.src.to_string(), b.src_port, b.dst_port),
            ("10.0.0.2".into(), 6881, 40000)
        );
        assert!(b.tcp_flags.has(TcpFlags::RST));
        let f = decode(LinkType::ETHERNET, &forth).unwrap();
        assert_eq!(
            (f.src.to_string(), f.src_port, f.tcp_seq),
            ("10.0.0.1".into(), 40000, 1000)
        );
        assert!(f.tcp_flags.has(TcpFlags::RST));
        // Not for UDP, and never in answer to a reset.
        let udp = synth::ethernet("10.0.0.1:1", "10.0.0.2:2", synth::L4::Udp, b"x");
        assert!(tcp_resets(&udp).is_none());
        let rst = synth::ethernet(
            "10.0.0.1:1",
            "10.0.0.2:2",
            synth::L4::Tcp {
                flags: 0x04,
                seq: 1,
            },
            b"",
        );
        assert!(tcp_resets(&rst).is_none());
    }
}
