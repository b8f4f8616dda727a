//! Builders of synthetic frames and capture files, for tests, benchmarks and
//! the generator of `captures/synthetic-edge-cases.pcap`. Nothing in the
//! detection path uses this module.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use etherparse::PacketBuilder;

use crate::decode::LinkType;
use crate::timestamp::Timestamp;

/// The transport header to build.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum L4 {
    /// TCP with these flags (see [`crate::decode::TcpFlags`]) and sequence
    /// number.
    Tcp {
        /// Flag bits.
        flags: u8,
        /// Sequence number.
        seq: u32,
    },
    /// UDP.
    Udp,
}

/// TCP with ACK and PSH set, as most data segments.
pub const TCP_DATA: L4 = L4::Tcp {
    flags: 0x18,
    seq: 1,
};

/// An IPv4 or IPv6 packet (by the addresses' family) from `src` to `dst`.
pub fn ip_packet(src: SocketAddr, dst: SocketAddr, l4: L4, payload: &[u8]) -> Vec<u8> {
    let ip = match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => PacketBuilder::ipv4(s.octets(), d.octets(), 64),
        (IpAddr::V6(s), IpAddr::V6(d)) => PacketBuilder::ipv6(s.octets(), d.octets(), 64),
        _ => panic!("synth::ip_packet: mixed address families"),
    };
    let mut out = Vec::new();
    match l4 {
        L4::Tcp { flags, seq } => {
            let mut b = ip.tcp(src.port(), dst.port(), seq, 65535);
            if flags & 0x01 != 0 {
                b = b.fin();
            }
            if flags & 0x02 != 0 {
                b = b.syn();
            }
            if flags & 0x04 != 0 {
                b = b.rst();
            }
            if flags & 0x08 != 0 {
                b = b.psh();
            }
            if flags & 0x10 != 0 {
                b = b.ack(1);
            }
            b.write(&mut out, payload).expect("write to a Vec");
        }
        L4::Udp => {
            ip.udp(src.port(), dst.port())
                .write(&mut out, payload)
                .expect("write to a Vec");
        }
    }
    out
}

/// Wraps an IP packet in the link header of `link`, with 802.1Q tags
/// (`vlans`, outermost first; Ethernet only).
pub fn frame(link: LinkType, ip: &[u8], vlans: &[u16]) -> Vec<u8> {
    let ether_type: u16 = if ip.first().is_some_and(|b| b >> 4 == 6) {
        0x86dd
    } else {
        0x0800
    };
    let mut out = Vec::with_capacity(ip.len() + 32);
    match link {
        LinkType::ETHERNET => {
            out.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01]);
            for (i, vlan) in vlans.iter().enumerate() {
                // QinQ: the outer tag is 802.1ad (0x88a8), inner ones 802.1Q.
                let tpid: u16 = if i == 0 && vlans.len() > 1 {
                    0x88a8
                } else {
                    0x8100
                };
                out.extend_from_slice(&tpid.to_be_bytes());
                out.extend_from_slice(&(vlan & 0x0fff).to_be_bytes());
            }
            out.extend_from_slice(&ether_type.to_be_bytes());
        }
        LinkType::LINUX_SLL => {
            out.extend_from_slice(&[0, 0, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0]);
            out.extend_from_slice(&ether_type.to_be_bytes());
        }
        LinkType::LINUX_SLL2 => {
            out.extend_from_slice(&ether_type.to_be_bytes());
            out.extend_from_slice(&[0, 0, 0, 0, 0, 2, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0]);
        }
        LinkType::NULL => {
            let family: u32 = if ether_type == 0x86dd { 30 } else { 2 };
            out.extend_from_slice(&family.to_le_bytes());
        }
        LinkType::LOOP => {
            let family: u32 = if ether_type == 0x86dd { 24 } else { 2 };
            out.extend_from_slice(&family.to_be_bytes());
        }
        _ => {}
    }
    out.extend_from_slice(ip);
    out
}

/// An Ethernet frame carrying a TCP or UDP packet: the common case in tests.
pub fn ethernet(src: &str, dst: &str, l4: L4, payload: &[u8]) -> Vec<u8> {
    let src: SocketAddr = src.parse().expect("synth: bad source address");
    let dst: SocketAddr = dst.parse().expect("synth: bad destination address");
    frame(LinkType::ETHERNET, &ip_packet(src, dst, l4, payload), &[])
}

/// One frame of a capture to write: time, captured bytes, length on the wire.
#[derive(Clone, Debug)]
pub struct CapturedFrame {
    /// Capture time.
    pub ts: Timestamp,
    /// Captured bytes.
    pub data: Vec<u8>,
    /// Length on the wire (at least `data.len()`).
    pub wire_len: u32,
}

/// Writes a nanosecond pcap file of `link` frames.
pub fn write_pcap(
    path: &Path,
    link: LinkType,
    frames: &[CapturedFrame],
) -> Result<(), pcap::Error> {
    let dead = pcap::Capture::dead_with_precision(pcap::Linktype(link.0), pcap::Precision::Nano)?;
    let mut file = dead.savefile(path)?;
    for f in frames {
        let nanos = f.ts.as_nanos();
        let header = pcap::PacketHeader {
            ts: libc::timeval {
                tv_sec: (nanos / 1_000_000_000) as libc::time_t,
                tv_usec: (nanos % 1_000_000_000) as libc::suseconds_t,
            },
            caplen: f.data.len() as u32,
            len: f.wire_len.max(f.data.len() as u32),
        };
        file.write(&pcap::Packet::new(&header, &f.data));
    }
    file.flush()
}
