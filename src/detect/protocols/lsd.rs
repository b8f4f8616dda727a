//! BitTorrent local service discovery (BEP 14): an HTTP-like announcement
//! multicast to 239.192.152.143:6771 or [ff15::efc0:988f]:6771.
//!
//! The datagram must be `BT-SEARCH * HTTP/1.1` followed by header lines
//! including `Host`, a numeric `Port` and at least one `Infohash` of 40 hex
//! digits. The group address is not required: the structure is specific
//! enough, and some clients also send the announcement by unicast.

use crate::decode::Transport;
use crate::detect::cache::Transports;
use crate::detect::{
    Confidence, Detector, Evidence, FactSink, Interest, PacketView, Probe, Protocol,
};

const REQUEST_LINE: &[u8] = b"BT-SEARCH * HTTP/1.1\r\n";

/// The local service discovery detector.
#[derive(Debug, Default)]
pub struct LocalDiscovery;

impl Detector for LocalDiscovery {
    type State = ();
    const NAME: &'static str = "lsd";
    const EVIDENCE: &'static [&'static str] = &["bittorrent.lsd"];

    fn interest(&self) -> Interest {
        Interest {
            transport: Some(Transport::Udp),
            max_payload_packets: 2,
        }
    }

    fn inspect(&self, _: &mut (), packet: &PacketView<'_>, facts: &mut FactSink<'_>) -> Probe {
        match announcement(packet.payload) {
            Some((hash, port)) => {
                facts.info_hash(hash);
                facts.peer(
                    Protocol::Bittorrent,
                    packet.src.ip(),
                    port,
                    Transports::BOTH,
                );
                Probe::Match(Evidence {
                    protocol: Protocol::Bittorrent,
                    name: "bittorrent.lsd",
                    strength: Confidence::Unidirectional,
                })
            }
            None => Probe::NotMine,
        }
    }
}

/// Checks an announcement; returns its first info-hash and the port.
fn announcement(payload: &[u8]) -> Option<([u8; 20], u16)> {
    let headers = payload.strip_prefix(REQUEST_LINE)?;
    let (mut host, mut port, mut hash) = (false, None, None);
    for line in headers.split(|b| *b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        let colon = line.iter().position(|b| *b == b':')?;
        let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
        if name.eq_ignore_ascii_case(b"host") {
            host = !value.is_empty();
        } else if name.eq_ignore_ascii_case(b"port") {
            port = std::str::from_utf8(value)
                .ok()
                .and_then(|v| v.parse::<u16>().ok());
        } else if name.eq_ignore_ascii_case(b"infohash") && hash.is_none() {
            hash = Some(parse_hex_20(value)?);
        }
    }
    match (host, hash, port) {
        (true, Some(hash), Some(port)) => Some((hash, port)),
        _ => None,
    }
}

fn parse_hex_20(hex: &[u8]) -> Option<[u8; 20]> {
    if hex.len() != 40 {
        return None;
    }
    let mut out = [0u8; 20];
    for (i, pair) in hex.chunks(2).enumerate() {
        out[i] = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::protocols::testing::{Harness, LOOK_ALIKES};
    use crate::flow::Direction::Originator;

    #[test]
    fn recognises_an_announcement_and_its_info_hash() {
        let msg = b"BT-SEARCH * HTTP/1.1\r\nHost: 239.192.152.143:6771\r\nPort: 6881\r\nInfohash: 0123456789ABCDEF0123456789abcdef01234567\r\ncookie: xyz\r\n\r\n\r\n";
        let mut h = Harness::udp(LocalDiscovery);
        assert_eq!(
            h.evidence(&[(Originator, msg)]),
            vec![Some("bittorrent.lsd")]
        );
        assert_eq!(h.facts().info_hash.map(|h| h[0]), Some(0x01));
    }

    #[test]
    fn the_announced_port_feeds_the_endpoint_cache() {
        let msg = b"BT-SEARCH * HTTP/1.1\r\nHost: 239.192.152.143:6771\r\nPort: 6881\r\nInfohash: 0123456789abcdef0123456789abcdef01234567\r\n\r\n\r\n";
        let mut h = Harness::udp(LocalDiscovery);
        h.feed(Originator, msg);
        assert_eq!(h.learnt(), vec!["192.0.2.1:6881"]);
    }

    #[test]
    fn rejects_incomplete_announcements_and_look_alikes() {
        let near: &[&[u8]] = &[
            b"BT-SEARCH * HTTP/1.1\r\nHost: 239.192.152.143:6771\r\nPort: 6881\r\n\r\n",
            b"BT-SEARCH * HTTP/1.1\r\nHost: h\r\nPort: x\r\nInfohash: 0123456789abcdef0123456789abcdef01234567\r\n\r\n",
            b"BT-SEARCH * HTTP/1.1\r\nHost: h\r\nPort: 1\r\nInfohash: 0123\r\n\r\n",
            b"NOTIFY * HTTP/1.1\r\nHost: h\r\nPort: 1\r\nInfohash: 0123456789abcdef0123456789abcdef01234567\r\n\r\n",
        ];
        for bytes in near.iter().chain(LOOK_ALIKES.iter().map(|(_, b)| b)) {
            let mut h = Harness::udp(LocalDiscovery);
            assert_eq!(
                h.feed(Originator, bytes),
                Probe::NotMine,
                "{}",
                String::from_utf8_lossy(bytes)
            );
        }
    }
}
