//! Link layers: which header sits in front of the network layer, and how to
//! step over it.
//!
//! The numbers are libpcap's `DLT_*` values as `pcap_datalink()` reports them
//! (which for raw IP differ between platforms, hence the several aliases).

/// A capture's link type, as libpcap reports it (`DLT_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LinkType(pub i32);

impl LinkType {
    /// BSD loopback: a 4-byte address family in the capturing host's byte order.
    pub const NULL: LinkType = LinkType(0);
    /// Ethernet II, with optional 802.1Q / 802.1ad (QinQ) tags.
    pub const ETHERNET: LinkType = LinkType(1);
    /// Raw IP as `DLT_RAW` on most platforms.
    pub const RAW: LinkType = LinkType(12);
    /// Raw IP as `DLT_RAW` on OpenBSD.
    pub const RAW_OPENBSD: LinkType = LinkType(14);
    /// Raw IP as the file format's `LINKTYPE_RAW`.
    pub const LINKTYPE_RAW: LinkType = LinkType(101);
    /// OpenBSD loopback: a 4-byte address family in network byte order.
    pub const LOOP: LinkType = LinkType(108);
    /// Linux cooked capture v1 (`any` interface), 16-byte header.
    pub const LINUX_SLL: LinkType = LinkType(113);
    /// Raw IPv4 only.
    pub const IPV4: LinkType = LinkType(228);
    /// Raw IPv6 only.
    pub const IPV6: LinkType = LinkType(229);
    /// Linux cooked capture v2, 20-byte header.
    pub const LINUX_SLL2: LinkType = LinkType(276);

    /// A short name for messages and the stats record.
    pub fn name(self) -> &'static str {
        match self {
            Self::NULL => "null",
            Self::ETHERNET => "ethernet",
            Self::RAW | Self::RAW_OPENBSD | Self::LINKTYPE_RAW => "raw",
            Self::LOOP => "loop",
            Self::LINUX_SLL => "linux-sll",
            Self::IPV4 => "ipv4",
            Self::IPV6 => "ipv6",
            Self::LINUX_SLL2 => "linux-sll2",
            _ => "unsupported",
        }
    }

    /// Whether the decoder understands this link type.
    pub fn is_supported(self) -> bool {
        self.name() != "unsupported"
    }
}

/// What follows the link header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Inner {
    /// A full Ethernet II frame (the decoder handles VLAN tags).
    Ethernet,
    /// A payload of the given EtherType.
    EtherType(u16),
    /// An IPv4 or IPv6 packet, told apart by its version nibble.
    Ip,
    /// Something that is not IP (e.g. an unknown loopback family).
    NotIp,
}

/// Why a link header could not be stepped over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkError {
    /// The frame is shorter than its link header.
    Truncated,
    /// libpcap reported a link type the decoder does not know.
    Unsupported,
}

const SLL_LEN: usize = 16;
const SLL2_LEN: usize = 20;
const NULL_LEN: usize = 4;

/// Address families seen in BSD loopback headers (they differ between BSDs).
const AF_INET: u32 = 2;
const AF_INET6_VALUES: [u32; 4] = [10, 24, 28, 30];

/// Splits `frame` into what follows the link header and its kind.
pub fn strip(link: LinkType, frame: &[u8]) -> Result<(Inner, &[u8]), LinkError> {
    match link {
        LinkType::ETHERNET => Ok((Inner::Ethernet, frame)),
        LinkType::RAW | LinkType::RAW_OPENBSD | LinkType::LINKTYPE_RAW => Ok((Inner::Ip, frame)),
        LinkType::IPV4 | LinkType::IPV6 => Ok((Inner::Ip, frame)),
        LinkType::LINUX_SLL => {
            let header = frame.get(..SLL_LEN).ok_or(LinkError::Truncated)?;
            let protocol = u16::from_be_bytes([header[14], header[15]]);
            Ok((sll_protocol(protocol), &frame[SLL_LEN..]))
        }
        LinkType::LINUX_SLL2 => {
            let header = frame.get(..SLL2_LEN).ok_or(LinkError::Truncated)?;
            let protocol = u16::from_be_bytes([header[0], header[1]]);
            Ok((sll_protocol(protocol), &frame[SLL2_LEN..]))
        }
        LinkType::NULL | LinkType::LOOP => {
            let header = frame.get(..NULL_LEN).ok_or(LinkError::Truncated)?;
            let raw = [header[0], header[1], header[2], header[3]];
            // DLT_NULL is in the capturing host's byte order, which the file
            // does not record; the family is small, so try both orders.
            let family = if link == LinkType::LOOP {
                u32::from_be_bytes(raw)
            } else {
                let le = u32::from_le_bytes(raw);
                if le <= 0xffff {
                    le
                } else {
                    u32::from_be_bytes(raw)
                }
            };
            let inner = if family == AF_INET || AF_INET6_VALUES.contains(&family) {
                Inner::Ip
            } else {
                Inner::NotIp
            };
            Ok((inner, &frame[NULL_LEN..]))
        }
        _ => Err(LinkError::Unsupported),
    }
}

/// The EtherTypes of VLAN tags: 802.1Q, 802.1ad (QinQ) and the older
/// QinQ value.
pub const VLAN_TPIDS: [u16; 3] = [0x8100, 0x88a8, 0x9100];

/// An Ethernet frame's PPPoE session payload (EtherType 0x8864, after any
/// VLAN tags): the IP packet inside, if the PPP protocol is IPv4 (0x0021)
/// or IPv6 (0x0057). Frames of any other kind give `None`.
pub fn pppoe_session(frame: &[u8]) -> Option<&[u8]> {
    const PPPOE_SESSION: u16 = 0x8864;
    const PPPOE_HEADER: usize = 6;
    let mut at = 12;
    loop {
        let ether_type = u16::from_be_bytes([*frame.get(at)?, *frame.get(at + 1)?]);
        match ether_type {
            t if VLAN_TPIDS.contains(&t) => at += 4,
            PPPOE_SESSION => break,
            _ => return None,
        }
    }
    let pppoe = frame.get(at + 2..)?;
    // Version 1, type 1, code 0 (session data).
    if pppoe.first() != Some(&0x11) || pppoe.get(1) != Some(&0) {
        return None;
    }
    let protocol = u16::from_be_bytes([*pppoe.get(PPPOE_HEADER)?, *pppoe.get(PPPOE_HEADER + 1)?]);
    match protocol {
        0x0021 | 0x0057 => pppoe.get(PPPOE_HEADER + 2..),
        _ => None,
    }
}

/// Linux cooked headers carry an EtherType, or one of a few small values
/// for non-Ethernet framing (802.2 LLC, Novell 802.3, CAN, ...).
fn sll_protocol(protocol: u16) -> Inner {
    if protocol >= 0x0600 {
        Inner::EtherType(protocol)
    } else {
        Inner::NotIp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_each_link_header() {
        let ip = [0x45u8, 0, 0, 20];
        let mut sll = vec![0u8; 14];
        sll.extend_from_slice(&[0x08, 0x00]);
        sll.extend_from_slice(&ip);
        let mut sll2 = vec![0x86, 0xdd];
        sll2.extend_from_slice(&[0u8; 18]);
        sll2.extend_from_slice(&ip);
        let null_le = [2u8, 0, 0, 0, 0x45];
        let null_be = [0u8, 0, 0, 2, 0x45];
        let null_v6_darwin = [30u8, 0, 0, 0, 0x60];
        let loop_be = [0u8, 0, 0, 24, 0x60];
        let cases: &[(LinkType, &[u8], Inner, usize)] = &[
            (LinkType::ETHERNET, &ip, Inner::Ethernet, 4),
            (LinkType::RAW, &ip, Inner::Ip, 4),
            (LinkType::RAW_OPENBSD, &ip, Inner::Ip, 4),
            (LinkType::LINKTYPE_RAW, &ip, Inner::Ip, 4),
            (LinkType::IPV4, &ip, Inner::Ip, 4),
            (LinkType::IPV6, &ip, Inner::Ip, 4),
            (LinkType::LINUX_SLL, &sll, Inner::EtherType(0x0800), 4),
            (LinkType::LINUX_SLL2, &sll2, Inner::EtherType(0x86dd), 4),
            (LinkType::NULL, &null_le, Inner::Ip, 1),
            (LinkType::NULL, &null_be, Inner::Ip, 1),
            (LinkType::NULL, &null_v6_darwin, Inner::Ip, 1),
            (LinkType::LOOP, &loop_be, Inner::Ip, 1),
        ];
        for (link, frame, inner, rest) in cases {
            let (got, payload) = strip(*link, frame).unwrap();
            assert_eq!(got, *inner, "{link:?}");
            assert_eq!(payload.len(), *rest, "{link:?}");
        }
    }

    #[test]
    fn rejects_short_and_unknown_headers() {
        assert_eq!(
            strip(LinkType::LINUX_SLL, &[0; 15]),
            Err(LinkError::Truncated)
        );
        assert_eq!(
            strip(LinkType::LINUX_SLL2, &[0; 19]),
            Err(LinkError::Truncated)
        );
        assert_eq!(strip(LinkType::NULL, &[2, 0]), Err(LinkError::Truncated));
        assert_eq!(strip(LinkType(147), &[0; 64]), Err(LinkError::Unsupported));
        let (inner, _) = strip(LinkType::NULL, &[7, 0, 0, 0, 0]).unwrap();
        assert_eq!(inner, Inner::NotIp);
        let mut llc = vec![0u8; 14];
        llc.extend_from_slice(&[0x00, 0x04, 0xaa]);
        assert_eq!(strip(LinkType::LINUX_SLL, &llc).unwrap().0, Inner::NotIp);
    }
}
