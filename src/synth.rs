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

/// An Ethernet ARP request (not IP: no flow) from `sender` asking for
/// `target`.
pub fn arp_request(sender: std::net::Ipv4Addr, target: std::net::Ipv4Addr) -> Vec<u8> {
    let mac = [2, 0, 0, 0, 0, 1];
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&mac);
    // EtherType ARP; Ethernet, IPv4, 6- and 4-byte addresses, request.
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1]);
    f.extend_from_slice(&mac);
    f.extend_from_slice(&sender.octets());
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&target.octets());
    f
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

/// A synthetic capture: file name, link type and frames.
#[derive(Clone, Debug)]
pub struct SyntheticCapture {
    /// File name under `captures/`.
    pub name: &'static str,
    /// What it exercises, for the README.
    pub about: &'static str,
    /// Link type of every frame.
    pub link: LinkType,
    /// The frames.
    pub frames: Vec<CapturedFrame>,
}

/// A short conversation: a cleartext BitTorrent TCP connection (three-way
/// handshake, peer-wire handshakes both ways, a bitfield), a DHT ping and
/// its answer, and a DNS query and answer (not P2P), between two hosts.
/// `big_piece` adds a `piece` message of that many bytes in one segment.
fn conversation(a: IpAddr, b: IpAddr, big_piece: usize) -> Vec<(Vec<u8>, Timestamp)> {
    let sa = |port| SocketAddr::new(a, port);
    let sb = |port| SocketAddr::new(b, port);
    let mut hs = b"\x13BitTorrent protocol\0\0\0\0\0\x10\0\x05".to_vec();
    hs.extend_from_slice(&[0x5a; 20]);
    let mut hs_a = hs.clone();
    hs_a.extend_from_slice(b"-LT2080-synthetic-a1");
    let mut hs_b = hs;
    hs_b.extend_from_slice(b"-TR3000-synthetic-b2");
    hs_b.extend_from_slice(&[0, 0, 0, 3, 5, 0xff, 0xf0]);
    let mut piece = Vec::new();
    if big_piece > 0 {
        piece.extend_from_slice(&((big_piece as u32) + 9).to_be_bytes());
        piece.extend_from_slice(&[7, 0, 0, 0, 0, 0, 0, 0, 0]);
        piece.extend((0..big_piece).map(|i| (i * 7 % 251) as u8));
    }
    let ping = b"d1:ad2:id20:synthetic-node-id-01e1:q4:ping1:t2:aa1:y1:qe".to_vec();
    let pong = b"d1:rd2:id20:synthetic-node-id-02e1:t2:aa1:y1:re".to_vec();
    let dns_q =
        b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07example\x03com\x00\x00\x01\x00\x01"
            .to_vec();
    let mut dns_r = dns_q.clone();
    dns_r[2] = 0x81;
    dns_r[3] = 0x80;
    dns_r[7] = 1;
    dns_r.extend_from_slice(b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x0e\x10\x00\x04\xc0\x00\x02\x01");
    let (c, s) = (sa(51000), sb(6881));
    let tcp = |flags, seq| L4::Tcp { flags, seq };
    let steps: Vec<(SocketAddr, SocketAddr, L4, Vec<u8>)> = vec![
        (c, s, tcp(0x02, 0), vec![]),
        (s, c, tcp(0x12, 0), vec![]),
        (c, s, tcp(0x10, 1), vec![]),
        (c, s, tcp(0x18, 1), hs_a),
        (s, c, tcp(0x18, 1), hs_b),
        (s, c, tcp(0x18, 76), piece),
        (c, s, tcp(0x11, 69), vec![]),
        (s, c, tcp(0x11, 76), vec![]),
        (sa(6881), sb(6882), L4::Udp, ping),
        (sb(6882), sa(6881), L4::Udp, pong),
        (sa(53000), sb(53), L4::Udp, dns_q),
        (sb(53), sa(53000), L4::Udp, dns_r),
    ];
    steps
        .into_iter()
        .filter(|(_, _, l4, p)| {
            !(p.is_empty()
                && *l4
                    == L4::Tcp {
                        flags: 0x18,
                        seq: 76,
                    })
        })
        .enumerate()
        .map(|(i, (src, dst, l4, payload))| {
            (
                ip_packet(src, dst, l4, &payload),
                Timestamp::from_parts(1_700_000_000, i as u32 * 1_000_000),
            )
        })
        .collect()
}

/// The synthetic edge-case captures in `captures/`: every link type the
/// decoder supports, VLAN and QinQ tags, IPv6, frames far larger than the
/// MTU, and frames cut short by the snap length. Deterministic: the same
/// bytes every time (a test checks the committed files against this).
pub fn edge_case_captures() -> Vec<SyntheticCapture> {
    let v4 = |a: [u8; 4]| IpAddr::from(a);
    let v6 = |last: u16| IpAddr::from([0x2001, 0xdb8, 0, 0, 0, 0, 0, last]);
    let wrap = |link, convo: Vec<(Vec<u8>, Timestamp)>, vlans: &[u16], snap: Option<usize>| {
        convo
            .into_iter()
            .map(|(ip, ts)| {
                let f = frame(link, &ip, vlans);
                let wire_len = f.len() as u32;
                let data = match snap {
                    Some(n) => f[..f.len().min(n)].to_vec(),
                    None => f,
                };
                CapturedFrame { ts, data, wire_len }
            })
            .collect::<Vec<_>>()
    };
    let mut vlan = wrap(
        LinkType::ETHERNET,
        conversation(v4([192, 0, 2, 1]), v4([192, 0, 2, 2]), 0),
        &[100],
        None,
    );
    vlan.extend(wrap(
        LinkType::ETHERNET,
        conversation(v4([192, 0, 2, 3]), v4([192, 0, 2, 4]), 0),
        &[200, 300],
        None,
    ));
    let mut raw = wrap(
        LinkType::RAW,
        conversation(v4([198, 51, 100, 1]), v4([198, 51, 100, 2]), 0),
        &[],
        None,
    );
    raw.extend(wrap(
        LinkType::RAW,
        conversation(v6(1), v6(2), 0),
        &[],
        None,
    ));
    let mut null = wrap(
        LinkType::NULL,
        conversation(v4([127, 0, 0, 1]), v4([127, 0, 0, 2]), 0),
        &[],
        None,
    );
    null.extend(wrap(
        LinkType::NULL,
        conversation(v6(3), v6(4), 0),
        &[],
        None,
    ));
    vec![
        SyntheticCapture {
            name: "synthetic-vlan.pcap",
            about: "Ethernet with one 802.1Q tag (VLAN 100) and with QinQ (802.1ad 200 outside 802.1Q 300)",
            link: LinkType::ETHERNET,
            frames: vlan,
        },
        SyntheticCapture {
            name: "synthetic-sll.pcap",
            about: "Linux cooked capture v1 (tcpdump -i any), IPv4",
            link: LinkType::LINUX_SLL,
            frames: wrap(
                LinkType::LINUX_SLL,
                conversation(v4([203, 0, 113, 1]), v4([203, 0, 113, 2]), 0),
                &[],
                None,
            ),
        },
        SyntheticCapture {
            name: "synthetic-sll2.pcap",
            about: "Linux cooked capture v2, IPv6",
            link: LinkType::LINUX_SLL2,
            frames: wrap(
                LinkType::LINUX_SLL2,
                conversation(v6(5), v6(6), 0),
                &[],
                None,
            ),
        },
        SyntheticCapture {
            name: "synthetic-raw.pcap",
            about: "raw IP (no link header), IPv4 and IPv6 in one file",
            link: LinkType::RAW,
            frames: raw,
        },
        SyntheticCapture {
            name: "synthetic-null.pcap",
            about: "BSD loopback (4-byte address family), IPv4 and IPv6",
            link: LinkType::NULL,
            frames: null,
        },
        SyntheticCapture {
            name: "synthetic-jumbo.pcap",
            about: "a 60,000-byte TCP segment in one Ethernet frame, as captured with GRO/TSO on",
            link: LinkType::ETHERNET,
            frames: wrap(
                LinkType::ETHERNET,
                conversation(v4([192, 0, 2, 9]), v4([192, 0, 2, 10]), 60_000),
                &[],
                None,
            ),
        },
        SyntheticCapture {
            name: "synthetic-snaplen.pcap",
            about: "frames cut to 128 bytes (snap length); the handshakes still fit, the piece does not",
            link: LinkType::ETHERNET,
            frames: wrap(
                LinkType::ETHERNET,
                conversation(v4([192, 0, 2, 11]), v4([192, 0, 2, 12]), 1_000),
                &[],
                Some(128),
            ),
        },
    ]
}
