//! Decode: a captured frame in, the transport-level view the flow table needs
//! out, or the reason it was skipped.
//!
//! Parsing is etherparse's lax slicing, so a packet cut short by the snap
//! length still yields its headers and whatever payload was captured; the
//! common case (plain Ethernet or raw IP, TCP or UDP, consistent lengths)
//! takes a [`fast`] path that gives the same result for less. Nothing
//! here panics on any input, and nothing is fatal: a frame that cannot be
//! read becomes a [`Skip`] that the caller counts.

mod fast;
pub mod link;

use std::net::IpAddr;

use etherparse::{LaxNetSlice, LaxSlicedPacket, TransportSlice, err::Layer};

pub use link::LinkType;
use link::{Inner, LinkError};

/// The transport protocols flows are tracked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Transport {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

impl Transport {
    /// Lower-case name as used in rules and output.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Udp => "udp",
        }
    }
}

/// The TCP flags the flow table acts on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpFlags(pub u8);

impl TcpFlags {
    /// FIN.
    pub const FIN: u8 = 0x01;
    /// SYN.
    pub const SYN: u8 = 0x02;
    /// RST.
    pub const RST: u8 = 0x04;
    /// ACK.
    pub const ACK: u8 = 0x10;

    /// Whether every bit of `flag` is set.
    pub fn has(self, flag: u8) -> bool {
        self.0 & flag == flag
    }
}

/// One decoded TCP or UDP packet, borrowing the captured bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packet<'a> {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// TCP or UDP.
    pub transport: Transport,
    /// TCP flags (zero for UDP).
    pub tcp_flags: TcpFlags,
    /// TCP sequence number (zero for UDP).
    pub tcp_seq: u32,
    /// The transport payload as captured.
    pub payload: &'a [u8],
    /// The payload was cut short (snap length): fewer bytes than were sent.
    pub truncated: bool,
}

/// Why a frame produced no [`Packet`]. Each reason is counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Skip {
    /// Not IP (ARP, LLDP, STP, unknown EtherType or loopback family).
    NotIp,
    /// IP, but neither TCP nor UDP (ICMP, IGMP, ESP, GRE, ...).
    OtherTransport,
    /// A non-first IP fragment (fragments are not reassembled).
    IpFragment,
    /// The capture's link type is not one the decoder knows.
    UnsupportedLinkType,
    /// The frame ends inside its link or VLAN header.
    TruncatedLink,
    /// The IP header is malformed or cut short.
    MalformedIp,
    /// The TCP header is malformed or cut short.
    MalformedTcp,
    /// The UDP header is cut short.
    MalformedUdp,
}

impl Skip {
    /// Every reason, in report order.
    pub const ALL: [Skip; 8] = [
        Skip::NotIp,
        Skip::OtherTransport,
        Skip::IpFragment,
        Skip::UnsupportedLinkType,
        Skip::TruncatedLink,
        Skip::MalformedIp,
        Skip::MalformedTcp,
        Skip::MalformedUdp,
    ];

    /// Stable snake_case name for output.
    pub fn as_str(self) -> &'static str {
        match self {
            Skip::NotIp => "not_ip",
            Skip::OtherTransport => "other_transport",
            Skip::IpFragment => "ip_fragment",
            Skip::UnsupportedLinkType => "unsupported_link_type",
            Skip::TruncatedLink => "truncated_link_header",
            Skip::MalformedIp => "malformed_ip",
            Skip::MalformedTcp => "malformed_tcp",
            Skip::MalformedUdp => "malformed_udp",
        }
    }

    /// Whether this is a decode error (malformed or unreadable input) rather
    /// than traffic p2pguard deliberately ignores.
    pub fn is_error(self) -> bool {
        !matches!(self, Skip::NotIp | Skip::OtherTransport | Skip::IpFragment)
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Counts of skipped frames by reason.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SkipCounts([u64; Skip::ALL.len()]);

impl SkipCounts {
    /// Counts one skipped frame.
    pub fn add(&mut self, skip: Skip) {
        self.0[skip.index()] += 1;
    }

    /// The count for one reason.
    pub fn get(&self, skip: Skip) -> u64 {
        self.0[skip.index()]
    }

    /// Sum of the reasons that are errors.
    pub fn errors(&self) -> u64 {
        Skip::ALL
            .iter()
            .filter(|s| s.is_error())
            .map(|s| self.get(*s))
            .sum()
    }

    /// Adds another set of counts to this one.
    pub fn merge(&mut self, other: &SkipCounts) {
        for (a, b) in self.0.iter_mut().zip(other.0.iter()) {
            *a += b;
        }
    }

    /// Reasons with a non-zero count, in report order.
    pub fn nonzero(&self) -> impl Iterator<Item = (Skip, u64)> + '_ {
        Skip::ALL
            .iter()
            .map(|s| (*s, self.get(*s)))
            .filter(|(_, n)| *n > 0)
    }
}

/// Decodes one captured frame of the given link type.
pub fn decode(link: LinkType, frame: &[u8]) -> Result<Packet<'_>, Skip> {
    let (inner, rest) = link::strip(link, frame).map_err(|e| match e {
        LinkError::Truncated => Skip::TruncatedLink,
        LinkError::Unsupported => Skip::UnsupportedLinkType,
    })?;
    if let Some(packet) = fast::decode(inner, rest) {
        return Ok(packet);
    }
    decode_lax(inner, rest)
}

/// Decodes what follows the link header with etherparse's lax slicing.
fn decode_lax(inner: Inner, rest: &[u8]) -> Result<Packet<'_>, Skip> {
    let sliced = match inner {
        // PPPoE sessions (DSL access networks) carry IP after a PPP header,
        // which etherparse does not know.
        Inner::Ethernet => match link::pppoe_session(rest) {
            Some(ip) => LaxSlicedPacket::from_ip(ip).map_err(|_| Skip::MalformedIp)?,
            None => LaxSlicedPacket::from_ethernet(rest).map_err(|_| Skip::TruncatedLink)?,
        },
        Inner::EtherType(ether_type) => LaxSlicedPacket::from_ether_type(ether_type.into(), rest),
        Inner::Ip => LaxSlicedPacket::from_ip(rest).map_err(|_| Skip::MalformedIp)?,
        Inner::NotIp => return Err(Skip::NotIp),
    };
    from_sliced(&sliced)
}

fn from_sliced<'a>(sliced: &LaxSlicedPacket<'a>) -> Result<Packet<'a>, Skip> {
    let (src, dst, ip_payload) = match &sliced.net {
        Some(LaxNetSlice::Ipv4(v4)) => {
            let h = v4.header();
            (
                IpAddr::from(h.source_addr()),
                IpAddr::from(h.destination_addr()),
                v4.payload(),
            )
        }
        Some(LaxNetSlice::Ipv6(v6)) => {
            let h = v6.header();
            (
                IpAddr::from(h.source_addr()),
                IpAddr::from(h.destination_addr()),
                v6.payload(),
            )
        }
        Some(LaxNetSlice::Arp(_)) => return Err(Skip::NotIp),
        None => return Err(stop_reason(sliced).unwrap_or(Skip::NotIp)),
    };
    let truncated = ip_payload.incomplete;
    match &sliced.transport {
        Some(TransportSlice::Tcp(tcp)) => {
            let mut flags = 0;
            for (set, bit) in [
                (tcp.fin(), TcpFlags::FIN),
                (tcp.syn(), TcpFlags::SYN),
                (tcp.rst(), TcpFlags::RST),
                (tcp.ack(), TcpFlags::ACK),
            ] {
                if set {
                    flags |= bit;
                }
            }
            Ok(Packet {
                src,
                dst,
                src_port: tcp.source_port(),
                dst_port: tcp.destination_port(),
                transport: Transport::Tcp,
                tcp_flags: TcpFlags(flags),
                tcp_seq: tcp.sequence_number(),
                payload: tcp.payload(),
                truncated,
            })
        }
        Some(TransportSlice::Udp(udp)) => Ok(Packet {
            src,
            dst,
            src_port: udp.source_port(),
            dst_port: udp.destination_port(),
            transport: Transport::Udp,
            tcp_flags: TcpFlags(0),
            tcp_seq: 0,
            payload: udp.payload(),
            truncated,
        }),
        Some(_) => Err(Skip::OtherTransport),
        None => {
            if ip_payload.fragmented {
                Err(Skip::IpFragment)
            } else if let Some(reason) = stop_reason(sliced) {
                Err(reason)
            } else {
                Err(Skip::OtherTransport)
            }
        }
    }
}

/// Maps where etherparse stopped to a skip reason.
fn stop_reason(sliced: &LaxSlicedPacket<'_>) -> Option<Skip> {
    let (_, layer) = sliced.stop_err.as_ref()?;
    Some(match layer {
        Layer::TcpHeader => Skip::MalformedTcp,
        Layer::UdpHeader | Layer::UdpPayload => Skip::MalformedUdp,
        Layer::LinuxSllHeader | Layer::Ethernet2Header | Layer::VlanHeader => Skip::TruncatedLink,
        Layer::MacsecHeader | Layer::MacsecPacket | Layer::EtherPayload | Layer::Arp => Skip::NotIp,
        Layer::Icmpv4
        | Layer::Icmpv4Timestamp
        | Layer::Icmpv4TimestampReply
        | Layer::Icmpv6
        | Layer::Igmp => Skip::OtherTransport,
        _ => Skip::MalformedIp,
    })
}

#[cfg(test)]
pub(crate) mod tests;
