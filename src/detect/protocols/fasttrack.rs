//! FastTrack (KaZaA, Grokster, iMesh): its HTTP file transfers.
//!
//! FastTrack's supernode protocol is encrypted from the first byte (each
//! side sends a random seed and an encoded cipher type, then ciphertext), so
//! it has no plain structure to check and is not recognised here. Its file
//! transfers are plain HTTP/1.1 between peers, and these are checked:
//!
//! - `fasttrack.http_request`: a `GET`/`HEAD` request with a well-formed
//!   header block whose target is `/.hash=` and the 20-byte file hash in 40
//!   hex digits (optionally `/name` after it), or that carries a KaZaA header
//!   (`X-Kazaa-Username`, `X-Kazaa-Network`, `X-Kazaa-IP`,
//!   `X-Kazaa-SupernodeIP`, `X-Kazaa-XferId`, `X-Kazaa-XferUid`,
//!   `X-KazaaTag`) ([`Confidence::Unidirectional`]).
//! - `fasttrack.http_reply`: an HTTP response with a well-formed header
//!   block carrying a KaZaA header ([`Confidence::Unidirectional`]).
//! - `fasttrack.give`: `GIVE <number>\r\n`, all of the first packet of a
//!   connection that a firewalled peer opens to answer a push; the other
//!   side then sends its request on it. A short line, so only
//!   [`Confidence::Signature`].
//!
//! No browser or web server sends `X-Kazaa-*` headers or asks for
//! `/.hash=`; the HTTP grammar is checked so that a stray literal in binary
//! data does not count.
//!
//! Facts: the client from `User-Agent` (KaZaA also writes `UserAgent`) or
//! `Server`.
//!
//! Not recognised: the encrypted supernode and peer sessions and the UDP
//! supernode pings, whose layout could not be established from a reliable
//! source.
//!
//! References, cited by tag (facts only):
//! - \[GIFT-FT\]: giFT-FastTrack, `PROTOCOL` notes and `fst_http_*`
//!   (request target and headers).
//! - \[L7-FT\]: the l7-filter `fasttrack` pattern (request targets, header
//!   names, `GIVE`).
//! - \[RFC7230\] 3.1 and 3.2 for the HTTP grammar.

use super::http;
use crate::decode::Transport;
use crate::detect::{
    Confidence, Detector, Evidence, FactSink, Interest, PacketView, Probe, Protocol,
};
use crate::flow::Direction;

/// A transfer request.
const HTTP_REQUEST: &str = "fasttrack.http_request";
/// A transfer reply.
const HTTP_REPLY: &str = "fasttrack.http_reply";
/// `GIVE <n>` answering a push.
const GIVE: &str = "fasttrack.give";

/// Payload packets looked at per side: `GIVE` and the request after it.
const MAX_PACKETS: u16 = 2;

/// Hex digits of a FastTrack file hash (20 bytes) in a request target.
const HASH_HEX_LEN: usize = 40;
/// Longest push id after `GIVE` (a decimal `u32`).
const MAX_GIVE_DIGITS: usize = 10;

/// Header names only KaZaA-family clients send (\[L7-FT\], \[GIFT-FT\]).
const KAZAA_HEADERS: &[&[u8]] = &[
    b"X-Kazaa-Username",
    b"X-Kazaa-Network",
    b"X-Kazaa-IP",
    b"X-Kazaa-SupernodeIP",
    b"X-Kazaa-XferId",
    b"X-Kazaa-XferUid",
    b"X-KazaaTag",
];

/// Where the flow is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Phase {
    /// Nothing yet: the originator's request or `GIVE`.
    #[default]
    Start,
    /// After `GIVE`: the responder's request.
    AwaitRequest,
    /// A request was sent: the reply comes from this side.
    AwaitReply(Direction),
    /// Nothing more to check.
    Done,
}

/// Per-flow state: 1 byte.
#[derive(Clone, Copy, Debug, Default)]
pub struct State {
    phase: Phase,
}

/// The FastTrack detector.
#[derive(Debug, Default)]
pub struct Fasttrack;

impl Detector for Fasttrack {
    type State = State;
    const NAME: &'static str = "fasttrack";
    const EVIDENCE: &'static [&'static str] = &[HTTP_REQUEST, HTTP_REPLY, GIVE];

    fn interest(&self) -> Interest {
        Interest {
            transport: Some(Transport::Tcp),
            max_payload_packets: MAX_PACKETS,
        }
    }

    fn inspect(
        &self,
        state: &mut State,
        packet: &PacketView<'_>,
        facts: &mut FactSink<'_>,
    ) -> Probe {
        let buf = packet.payload;
        if buf.is_empty() {
            return Probe::NeedMore;
        }
        let from = packet.direction;
        match state.phase {
            Phase::Start if from == Direction::Originator && packet.index == 1 => {
                if is_give(buf) {
                    state.phase = Phase::AwaitRequest;
                    found(GIVE, Confidence::Signature)
                } else if http::request_line(buf).is_some() {
                    state.phase = Phase::AwaitReply(Direction::Responder);
                    if request(buf, facts) {
                        found(HTTP_REQUEST, Confidence::Unidirectional)
                    } else {
                        // Plain HTTP: the reply may still be KaZaA's.
                        Probe::NeedMore
                    }
                } else {
                    state.phase = Phase::Done;
                    Probe::NotMine
                }
            }
            Phase::AwaitRequest if from == Direction::Responder => {
                if packet.index == 1 && request(buf, facts) {
                    state.phase = Phase::AwaitReply(Direction::Originator);
                    found(HTTP_REQUEST, Confidence::Unidirectional)
                } else {
                    state.phase = Phase::Done;
                    Probe::NotMine
                }
            }
            Phase::AwaitReply(side) if from == side => {
                state.phase = Phase::Done;
                if reply(buf, facts) {
                    found(HTTP_REPLY, Confidence::Unidirectional)
                } else {
                    Probe::NotMine
                }
            }
            // The responder spoke first (a server banner), or the flow is
            // decided.
            Phase::Start | Phase::Done => {
                state.phase = Phase::Done;
                Probe::NotMine
            }
            // The side that just spoke sends more before the awaited one.
            _ => Probe::NeedMore,
        }
    }
}

fn found(name: &'static str, strength: Confidence) -> Probe {
    Probe::Match(Evidence {
        protocol: Protocol::Fasttrack,
        name,
        strength,
    })
}

/// `GIVE <digits>\r\n` and nothing else (\[L7-FT\]).
fn is_give(buf: &[u8]) -> bool {
    let Some(digits) = buf
        .strip_prefix(b"GIVE ")
        .and_then(|r| r.strip_suffix(b"\r\n"))
    else {
        return false;
    };
    (1..=MAX_GIVE_DIGITS).contains(&digits.len()) && digits.iter().all(u8::is_ascii_digit)
}

/// `/.hash=` and 40 hex digits, optionally `/name` after them (\[GIFT-FT\],
/// \[L7-FT\]).
fn hash_target(target: &[u8]) -> bool {
    let Some(rest) = target.strip_prefix(b"/.hash=") else {
        return false;
    };
    let (hash, after) = rest.split_at_checked(HASH_HEX_LEN).unwrap_or((rest, &[]));
    hash.len() == HASH_HEX_LEN
        && hash.iter().all(u8::is_ascii_hexdigit)
        && (after.is_empty() || after.starts_with(b"/"))
}

fn is_kazaa_header(name: &[u8]) -> bool {
    KAZAA_HEADERS.iter().any(|h| name.eq_ignore_ascii_case(h))
}

/// A transfer request: a request line, a well-formed header block, and a
/// `/.hash=` target or a KaZaA header.
fn request(buf: &[u8], facts: &mut FactSink<'_>) -> bool {
    let Some((line, rest)) = http::request_line(buf) else {
        return false;
    };
    let mut kazaa = false;
    let mut client = None;
    let end = http::header_fields(rest, |name, value| {
        kazaa |= is_kazaa_header(name);
        if name.eq_ignore_ascii_case(b"User-Agent") || name.eq_ignore_ascii_case(b"UserAgent") {
            client.get_or_insert(value);
        }
    });
    let ok = end.is_some() && (kazaa || hash_target(line.target));
    if ok && let Some(c) = client {
        facts.client(c);
    }
    ok
}

/// A transfer reply: a status line and a well-formed header block with a
/// KaZaA header.
fn reply(buf: &[u8], facts: &mut FactSink<'_>) -> bool {
    let Some((_, rest)) = http::status_line(buf) else {
        return false;
    };
    let mut kazaa = false;
    let mut server = None;
    let end = http::header_fields(rest, |name, value| {
        kazaa |= is_kazaa_header(name);
        if name.eq_ignore_ascii_case(b"Server") {
            server.get_or_insert(value);
        }
    });
    let ok = end.is_some() && kazaa;
    if ok && let Some(s) = server {
        facts.client(s);
    }
    ok
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::detect::protocols::testing::{Harness, LOOK_ALIKES};
    use crate::flow::Direction::{Originator as O, Responder as R};

    const REQUEST: &[u8] = b"GET /.hash=1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e HTTP/1.1\r\nHost: 192.0.2.1:1214\r\nUserAgent: KazaaClient Jul 12 2002 15:49:49\r\nX-Kazaa-Username: alice\r\nX-Kazaa-Network: KaZaA\r\nX-Kazaa-IP: 192.0.2.1:1214\r\nX-Kazaa-SupernodeIP: 198.51.100.9:1214\r\nConnection: close\r\nRange: bytes=0-\r\n\r\n";
    const REPLY: &[u8] = b"HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 0-4095/4096\r\nContent-Length: 4096\r\nAccept-Ranges: bytes\r\nServer: KazaaClient Nov 3 2002 20:29:03\r\nConnection: close\r\nX-Kazaa-Username: bob\r\nX-Kazaa-Network: KaZaA\r\nX-Kazaa-IP: 198.51.100.2:1214\r\nX-Kazaa-SupernodeIP: 203.0.113.5:1214\r\nX-KazaaTag: 5=Title\r\n\r\n";

    #[test]
    fn a_transfer_and_its_reply() {
        let mut h = Harness::tcp(Fasttrack);
        assert_eq!(
            h.evidence(&[(O, REQUEST), (R, REPLY)]),
            vec![Some(HTTP_REQUEST), Some(HTTP_REPLY)]
        );
        let f = h.facts();
        assert_eq!(
            f.client[0].as_deref(),
            Some("KazaaClient Jul 12 2002 15:49:49")
        );
        assert_eq!(
            f.client[1].as_deref(),
            Some("KazaaClient Nov 3 2002 20:29:03")
        );
        // The hash target alone, headers cut by the segment end.
        let mut h = Harness::tcp(Fasttrack);
        let line = b"GET /.hash=1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e HTTP/1.1\r\nHost: 192.0";
        assert_eq!(h.evidence(&[(O, line)]), vec![Some(HTTP_REQUEST)]);
        // Any path with a KaZaA header.
        let mut h = Harness::tcp(Fasttrack);
        let other = b"GET /.files HTTP/1.1\r\nX-Kazaa-Username: carol\r\n\r\n";
        assert_eq!(h.evidence(&[(O, other)]), vec![Some(HTTP_REQUEST)]);
    }

    #[test]
    fn a_pushed_transfer_starts_with_give() {
        let mut h = Harness::tcp(Fasttrack);
        let got = h.probes(&[(O, b"GIVE 123456\r\n"), (R, REQUEST), (O, REPLY)]);
        assert!(matches!(got[0], Probe::Match(e) if e.name == GIVE
            && e.strength == Confidence::Signature));
        assert!(matches!(got[1], Probe::Match(e) if e.name == HTTP_REQUEST));
        assert!(matches!(got[2], Probe::Match(e) if e.name == HTTP_REPLY));
        // GIVE followed by something else.
        let mut h = Harness::tcp(Fasttrack);
        let got = h.probes(&[(O, b"GIVE 123456\r\n"), (R, b"hello\r\n")]);
        assert_eq!(got[1], Probe::NotMine);
    }

    #[test]
    fn web_traffic_is_not_named() {
        let near: &[&[u8]] = &[
            b"GET /.hash=1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4 HTTP/1.1\r\n\r\n",
            b"GET /.hash=1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4ef HTTP/1.1\r\n\r\n",
            b"GET /.hash=1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4g HTTP/1.1\r\n\r\n",
            b"GET /.hash=1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e HTTP/1.1\r\nbad\r\n\r\n",
            b"POST /.hash=1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e HTTP/1.1\r\n\r\n",
            b"GET /index.html?x-kazaa-username=1 HTTP/1.1\r\n\r\n",
            b"GIVE 12a\r\n",
            b"GIVE \r\n",
            b"GIVE 12345678901\r\n",
            b"GIVE 1\r\nmore",
            b"GIVE ME THE MONEY\r\n",
        ];
        for bytes in near
            .iter()
            .copied()
            .chain(LOOK_ALIKES.iter().map(|(_, b)| *b))
        {
            let mut h = Harness::tcp(Fasttrack);
            assert!(
                !matches!(h.feed(O, bytes), Probe::Match(_)),
                "{}",
                String::from_utf8_lossy(bytes)
            );
        }
        // A browser and a web server.
        let mut h = Harness::tcp(Fasttrack);
        let got = h.probes(&[(O, LOOK_ALIKES[7].1), (R, LOOK_ALIKES[8].1)]);
        assert_eq!(got, vec![Probe::NeedMore, Probe::NotMine]);
        // The responder speaking first (a server banner) is not ours.
        let mut h = Harness::tcp(Fasttrack);
        assert_eq!(h.feed(R, b"220 ftp.example.com ready\r\n"), Probe::NotMine);
    }

    /// xorshift64*: deterministic noise.
    fn noise(seed: u64) -> impl FnMut() -> u8 {
        let mut x = seed;
        move || {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8
        }
    }

    #[test]
    fn random_bytes_never_match() {
        let mut next = noise(0xFEED_FACE_CAFE_BEEF);
        for len in (0..=64).chain([100, 536, 1460]) {
            for prefix in [&b""[..], b"GET /.hash=", b"GIVE "] {
                for _ in 0..16 {
                    let mut bytes = prefix.to_vec();
                    bytes.extend((0..len).map(|_| next()));
                    let mut h = Harness::tcp(Fasttrack);
                    assert!(!matches!(h.feed(O, &bytes), Probe::Match(_)), "{bytes:?}");
                }
            }
        }
    }

    proptest! {
        #[test]
        fn never_panics(packets in proptest::collection::vec(
            (any::<bool>(), proptest::collection::vec(any::<u8>(), 0..300)), 0..5)
        ) {
            let mut h = Harness::tcp(Fasttrack);
            for (orig, bytes) in &packets {
                h.feed(if *orig { O } else { R }, bytes);
            }
        }
    }
}
