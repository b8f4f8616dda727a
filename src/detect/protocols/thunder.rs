//! Thunder (Xunlei): the binary messages its clients exchange over UDP and
//! TCP, and the same messages carried in HTTP `POST` bodies.
//!
//! What is known in clear text (no public specification exists):
//! - a message opens with its protocol version as a 32-bit little-endian
//!   integer: 0x29, or 0x30 to 0x3f (nDPI `thunder.c` requires a first
//!   byte in 0x30..0x3f followed by three zero bytes; libprotoident's
//!   `lpi_xunlei` also lists 0x29);
//! - a 4-byte sequence number and a 4-byte little-endian length of the rest
//!   of the message follow, then the (AES-encrypted) body (HiPPIE's Xunlei
//!   notes: "data length field at bytes 8-11, little endian"; Hao Guan,
//!   "Reverse Engineering on Xunlei", 2010: packet type, sequence number,
//!   packet length, 4 bytes each). HiPPIE saw one variant, version 0x38,
//!   with the length at bytes 4-7 instead;
//! - the client also tunnels these messages through `POST / HTTP/1.1` with
//!   `Content-Type: application/octet-stream` (nDPI `thunder.c`).
//!
//! A message counts when its version is one of those and its length field
//! accounts exactly for the datagram (or, over TCP, for the first message
//! of the stream, possibly followed by the next one's header; in HTTP, for
//! the `Content-Length`). Three zero bytes and a length that fits are
//! header arithmetic no common protocol reproduces by chance (DNS, QUIC,
//! STUN, RTP and TLS all differ in their first bytes), so one such message
//! is a structural match of its side.

use crate::decode::Transport;
use crate::detect::{
    Confidence, Detector, Evidence, FactSink, Interest, PacketView, Probe, Protocol,
};

/// Message header (little-endian 32-bit fields).
mod field {
    use std::ops::Range;
    pub const VERSION: Range<usize> = 0..4;
    pub const LENGTH: Range<usize> = 8..12;
    pub const HEADER_LEN: usize = 12;
    /// HiPPIE's variant for version 0x38: the length right after the
    /// version.
    pub const SHORT_LENGTH: Range<usize> = 4..8;
    pub const SHORT_HEADER_LEN: usize = 8;
}

/// Version whose length field sits at bytes 4-7 (HiPPIE).
const SHORT_VERSION: u32 = 0x38;

/// Longest message accepted (a UDP datagram's worth and then some).
const MAX_BODY: u32 = 1 << 16;

/// The HTTP tunnel's request line and content type (nDPI `thunder.c`).
const POST_LINE: &[u8] = b"POST / HTTP/1.1\r\n";
const OCTET_STREAM: &[u8] = b"application/octet-stream";

/// The Thunder detector.
#[derive(Debug, Default)]
pub struct Thunder;

impl Detector for Thunder {
    type State = ();
    const NAME: &'static str = "thunder";
    const EVIDENCE: &'static [&'static str] = &["thunder.message", "thunder.http_post"];

    fn interest(&self) -> Interest {
        Interest {
            transport: None,
            max_payload_packets: 2,
        }
    }

    fn inspect(&self, _: &mut (), packet: &PacketView<'_>, _: &mut FactSink<'_>) -> Probe {
        let p = packet.payload;
        match packet.transport {
            Transport::Udp => match message_len(p) {
                Some(n) if n == p.len() => found("thunder.message"),
                _ => Probe::NotMine,
            },
            // Only the first segment of each side starts at a message.
            Transport::Tcp if packet.index > 1 => Probe::NeedMore,
            Transport::Tcp => {
                if stream_start(p) {
                    found("thunder.message")
                } else if http_post(p) {
                    found("thunder.http_post")
                } else {
                    Probe::NotMine
                }
            }
        }
    }
}

fn found(name: &'static str) -> Probe {
    Probe::Match(Evidence {
        protocol: Protocol::Thunder,
        name,
        strength: Confidence::Unidirectional,
    })
}

fn le32(b: &[u8], r: std::ops::Range<usize>) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(r)?.try_into().ok()?))
}

/// The version, if `p` opens with a known one.
fn version(p: &[u8]) -> Option<u32> {
    let v = le32(p, field::VERSION)?;
    (v == 0x29 || (0x30..=0x3f).contains(&v)).then_some(v)
}

/// The length of the message that opens `p` (header included), from its
/// length field; `None` if the header is not Thunder's. The message may
/// extend past `p`.
fn message_len(p: &[u8]) -> Option<usize> {
    let v = version(p)?;
    let (len, header) = if v == SHORT_VERSION {
        (le32(p, field::SHORT_LENGTH)?, field::SHORT_HEADER_LEN)
    } else {
        (le32(p, field::LENGTH)?, field::HEADER_LEN)
    };
    if len == 0 || len > MAX_BODY {
        return None;
    }
    Some(header + len as usize)
}

/// The first segment of a TCP stream: one whole message, or a whole
/// message followed by the start of the next one (same version).
fn stream_start(p: &[u8]) -> bool {
    let Some(n) = message_len(p) else {
        return false;
    };
    match p.get(n..) {
        Some([]) => true,
        Some(next) => next.len() >= 4 && next.get(..4) == p.get(..4),
        None => false,
    }
}

/// `POST / HTTP/1.1` with an octet-stream body that opens with a message
/// whose length is the request's `Content-Length`.
fn http_post(p: &[u8]) -> bool {
    let Some(rest) = p.strip_prefix(POST_LINE) else {
        return false;
    };
    let Some(end) = rest.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let (Some(headers), Some(body)) = (rest.get(..end), rest.get(end + 4..)) else {
        return false;
    };
    let (mut octets, mut length) = (false, None);
    for line in headers.split(|b| *b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let (name, value) = line.split_at(colon);
        let value = value.get(1..).unwrap_or_default().trim_ascii();
        if name.eq_ignore_ascii_case(b"content-type") {
            octets = value.eq_ignore_ascii_case(OCTET_STREAM);
        } else if name.eq_ignore_ascii_case(b"content-length") {
            length = std::str::from_utf8(value)
                .ok()
                .and_then(|s| s.parse::<usize>().ok());
        }
    }
    octets && length.is_some() && message_len(body) == length
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::protocols::testing::{Harness, LOOK_ALIKES};
    use crate::flow::Direction::{Originator, Responder};

    /// A message of `version` with `body` (length at bytes 8-11).
    fn message(version: u32, seq: u32, body: &[u8]) -> Vec<u8> {
        let mut p = version.to_le_bytes().to_vec();
        if version == SHORT_VERSION {
            p.extend_from_slice(&(body.len() as u32).to_le_bytes());
        } else {
            p.extend_from_slice(&seq.to_le_bytes());
            p.extend_from_slice(&(body.len() as u32).to_le_bytes());
        }
        p.extend_from_slice(body);
        p
    }

    #[test]
    fn messages_whose_length_fits_match() {
        let body = [0x5au8; 48];
        for v in [0x29, 0x30, 0x32, 0x36, 0x38, 0x3c, 0x3f] {
            let mut h = Harness::udp(Thunder);
            let m = message(v, 7, &body);
            assert_eq!(
                h.evidence(&[(Originator, &m), (Responder, &m)]),
                vec![Some("thunder.message"); 2],
                "version {v:#x}"
            );
        }
        // Over TCP: the first segment, whole or followed by the next header.
        let mut two = message(0x36, 1, &body);
        two.extend_from_slice(&message(0x36, 2, &body)[..10]);
        for seg in [message(0x36, 1, &body), two] {
            let mut h = Harness::tcp(Thunder);
            assert_eq!(
                h.evidence(&[(Originator, &seg)]),
                vec![Some("thunder.message")]
            );
        }
    }

    #[test]
    fn the_http_tunnel_matches_by_content_length() {
        let m = message(0x32, 9, &[0x11; 32]);
        let post = |len: usize, ty: &str| {
            let mut p = format!(
                "POST / HTTP/1.1\r\nHost: 198.51.100.7\r\nContent-Type: {ty}\r\nContent-Length: {len}\r\n\r\n"
            )
            .into_bytes();
            p.extend_from_slice(&m[..20]); // the body may continue in the next segment
            p
        };
        let mut h = Harness::tcp(Thunder);
        assert_eq!(
            h.evidence(&[(Originator, &post(m.len(), "application/octet-stream"))]),
            vec![Some("thunder.http_post")]
        );
        for bad in [
            post(m.len() + 1, "application/octet-stream"),
            post(m.len(), "text/plain"),
        ] {
            let mut h = Harness::tcp(Thunder);
            assert_eq!(h.evidence(&[(Originator, &bad)]), vec![None]);
        }
    }

    #[test]
    fn near_misses_and_look_alikes_do_not_match() {
        let body = [0x5au8; 48];
        let mut near: Vec<(&str, Vec<u8>)> = vec![
            ("version 0x2f", message(0x2f, 1, &body)),
            ("version 0x40", message(0x40, 1, &body)),
            ("version 0x132", message(0x132, 1, &body)),
            ("empty body", message(0x32, 1, b"")),
        ];
        let mut long = message(0x32, 1, &body);
        long.push(0);
        near.push(("one byte too many", long));
        let short = message(0x32, 1, &body);
        near.push(("one byte short", short[..short.len() - 1].to_vec()));
        // Version 0x38 has its length at bytes 4-7, not 8-11.
        let mut v38 = message(0x32, 1, &body);
        v38[0] = 0x38;
        near.push(("0x38 with the long layout", v38));
        // A DNS query with id 0x3000 and no flags: its counts are no length.
        near.push((
            "dns id 0x3000",
            b"\x30\x00\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07example\x03com\x00\x00\x01\x00\x01"
                .to_vec(),
        ));
        // WireGuard: type 1-4 and three zero bytes.
        let mut wg = vec![1, 0, 0, 0];
        wg.extend_from_slice(&[0x42; 144]);
        near.push(("wireguard initiation", wg));
        for (name, bytes) in near
            .iter()
            .map(|(n, b)| (*n, b.as_slice()))
            .chain(LOOK_ALIKES.iter().copied())
        {
            let mut h = Harness::udp(Thunder);
            assert_eq!(h.evidence(&[(Originator, bytes)]), vec![None], "udp {name}");
            let mut h = Harness::tcp(Thunder);
            assert_eq!(h.evidence(&[(Originator, bytes)]), vec![None], "tcp {name}");
        }
        let mut x: u64 = 0x1234_5678_9abc_def1;
        for len in 0..300 {
            let p: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            assert_eq!(message_len(&p).filter(|n| *n == p.len()), None);
        }
    }
}
