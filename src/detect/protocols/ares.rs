//! Ares Galaxy: the parts of its TCP traffic that can be checked without
//! false-positive risk. Most of Ares is obfuscated: its supernode sessions
//! are encrypted after the first exchange and its current file transfers
//! are binary requests encrypted with a rolling key, so only three things
//! are recognised here.
//!
//! - `ares.session`: the session opening with a supernode. The client's
//!   first packet is exactly one packet of the session framing (`u16`
//!   little-endian body length, `u8` type, body): length 3, type `0x5A`
//!   (SYN), two random bytes and the protocol marker `0x05`, six bytes in
//!   all. The supernode answers with packets of the same framing whose
//!   first has an acknowledgement type (`0x33` ACK, `0x38` ACK2, `0x3C` ACK
//!   without encryption: a body of at least 21 bytes holding the child
//!   count, the supernode's GUID and the cipher seeds; `0x3B` busy) and
//!   lies whole in the packet. The SYN alone is only four fixed bytes and
//!   gives no evidence; the SYN answered by such an ACK is
//!   [`Confidence::Bidirectional`].
//! - `ares.http_request`: the plain transfer request of older Ares
//!   clients, `GET sha1:<base64 of the 20-byte SHA-1> HTTP/1.1` (no web
//!   client asks for a target that is neither a path nor an absolute URI
//!   with `//`), or any `GET`/`HEAD` carrying one of the Ares headers below,
//!   with a well-formed header block ([`Confidence::Unidirectional`]).
//! - `ares.http_reply`: an HTTP response with a well-formed header block
//!   carrying one of Ares' own headers with a value of its exact form:
//!   `X-B6MI` (base64 of 12 bytes, 16 characters), `X-B6St` (base64 of 23
//!   bytes, 32 characters) or `X-MyLIP` (the local IPv4 address in 8 hex
//!   digits) ([`Confidence::Unidirectional`]).
//!
//! Facts: the client from the `Server` or `User-Agent` header.
//!
//! Not recognised: the encrypted binary transfer requests and replies of
//! Ares 2.x, the encrypted supernode traffic after the handshake, Ares UDP.
//!
//! References, cited by tag (facts only, read from their sources):
//! - \[GIFT-ARES\]: giFT-Ares (`as_session.c`: SYN body and handshake;
//!   `as_packet.h`: packet types; `as_download.c`, `as_upload.c`: the plain
//!   HTTP request and reply headers).
//! - \[L7-ARES\]: the l7-filter `ares` pattern (the SYN's bytes).
//! - \[RFC7230\] 3.1 and 3.2 for the HTTP grammar.

use super::http;
use crate::decode::Transport;
use crate::detect::{
    Confidence, Detector, Evidence, FactSink, Interest, PacketView, Probe, Protocol,
};
use crate::flow::Direction;

/// A supernode SYN answered by an ACK.
const SESSION: &str = "ares.session";
/// A plain `GET sha1:` transfer request.
const HTTP_REQUEST: &str = "ares.http_request";
/// An HTTP reply with Ares headers.
const HTTP_REPLY: &str = "ares.http_reply";

/// Payload packets looked at per side: the opening and a reply whose
/// header block may start in the second segment.
const MAX_PACKETS: u16 = 2;

/// Session framing (\[GIFT-ARES\] `as_session.c`, `as_packet.h`).
mod session {
    /// Size of the packet header: `u16` body length and `u8` type.
    pub const HEADER_LEN: usize = 3;
    /// The SYN: body length 3, type `0x5A`.
    pub const SYN_PREFIX: [u8; 3] = [0x03, 0x00, 0x5A];
    /// The SYN is exactly this long.
    pub const SYN_LEN: usize = 6;
    /// The last body byte of the SYN marks the current protocol.
    pub const SYN_MARKER: u8 = 0x05;
    /// Acknowledgement types.
    pub const ACK: u8 = 0x33;
    /// ACK of Ares 2962 and later.
    pub const ACK2: u8 = 0x38;
    /// The supernode is full.
    pub const ACK_BUSY: u8 = 0x3B;
    /// ACK for a session without encryption.
    pub const ACK_NOCRYPT: u8 = 0x3C;
    /// An ACK body holds at least the child count (2), the supernode GUID
    /// (16) and the cipher seeds (3).
    pub const MIN_ACK_BODY: usize = 0x15;
    /// Upper bound of an ACK body: the seeds plus a list of a few hundred
    /// supernode addresses.
    pub const MAX_ACK_BODY: usize = 4096;
}

/// Base64 length of the 20-byte SHA-1 in a request target.
const SHA1_BASE64_LEN: usize = 28;

/// What the flow has shown.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Kind {
    /// Nothing yet.
    #[default]
    Unknown,
    /// The originator sent a session SYN.
    Syn,
    /// The originator sent an HTTP request (`ares` or not): the reply is
    /// checked for Ares headers.
    Http,
    /// Nothing more to check.
    Done,
}

/// Per-flow state: 1 byte.
#[derive(Clone, Copy, Debug, Default)]
pub struct State {
    kind: Kind,
}

/// The Ares detector.
#[derive(Debug, Default)]
pub struct Ares;

impl Detector for Ares {
    type State = State;
    const NAME: &'static str = "ares";
    const EVIDENCE: &'static [&'static str] = &[SESSION, HTTP_REQUEST, HTTP_REPLY];

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
        match (state.kind, packet.direction) {
            (Kind::Unknown, Direction::Originator) if packet.index == 1 => {
                if is_syn(buf) {
                    state.kind = Kind::Syn;
                    return Probe::NeedMore;
                }
                match http::request_line(buf) {
                    Some((line, rest)) => {
                        state.kind = Kind::Http;
                        let mut client = None;
                        let mut ares = false;
                        let end = http::header_fields(rest, |name, value| {
                            ares |= ares_header(name, value);
                            if name.eq_ignore_ascii_case(b"User-Agent") {
                                client.get_or_insert(value);
                            }
                        });
                        if end.is_some() && (sha1_target(line.target) || ares) {
                            if let Some(c) = client {
                                facts.client(c);
                            }
                            return found(HTTP_REQUEST, Confidence::Unidirectional);
                        }
                        // Another HTTP request: its reply may still carry
                        // Ares headers.
                        Probe::NeedMore
                    }
                    None => {
                        state.kind = Kind::Done;
                        Probe::NotMine
                    }
                }
            }
            (Kind::Syn, Direction::Responder) => {
                state.kind = Kind::Done;
                if is_ack(buf) {
                    found(SESSION, Confidence::Bidirectional)
                } else {
                    Probe::NotMine
                }
            }
            (Kind::Http, Direction::Responder) if packet.index == 1 => {
                state.kind = Kind::Done;
                match reply(buf, facts) {
                    true => found(HTTP_REPLY, Confidence::Unidirectional),
                    false => Probe::NotMine,
                }
            }
            (Kind::Syn | Kind::Http, Direction::Originator) => Probe::NeedMore,
            _ => Probe::NotMine,
        }
    }
}

fn found(name: &'static str, strength: Confidence) -> Probe {
    Probe::Match(Evidence {
        protocol: Protocol::Ares,
        name,
        strength,
    })
}

/// The session SYN (\[GIFT-ARES\] `session_connected`, \[L7-ARES\]).
fn is_syn(buf: &[u8]) -> bool {
    buf.len() == session::SYN_LEN
        && buf.starts_with(&session::SYN_PREFIX)
        && buf.last() == Some(&session::SYN_MARKER)
}

/// The supernode's answer to a SYN (\[GIFT-ARES\] `session_dispatch_packet`
/// and `session_handshake`): an acknowledgement packet lying whole in the
/// segment, then nothing or the header of a next session packet.
fn is_ack(buf: &[u8]) -> bool {
    let Some((header, rest)) = buf.split_first_chunk::<{ session::HEADER_LEN }>() else {
        return false;
    };
    let [lo, hi, kind] = *header;
    let len = usize::from(u16::from_le_bytes([lo, hi]));
    let size_ok = match kind {
        session::ACK | session::ACK2 | session::ACK_NOCRYPT => {
            (session::MIN_ACK_BODY..=session::MAX_ACK_BODY).contains(&len)
        }
        session::ACK_BUSY => len <= session::MAX_ACK_BODY,
        _ => false,
    };
    if !size_ok {
        return false;
    }
    let Some(after) = rest.get(len..) else {
        return false;
    };
    // A further packet in the same segment must have a plausible header.
    match after {
        [] => true,
        [lo, hi, _, ..] => usize::from(u16::from_le_bytes([*lo, *hi])) <= session::MAX_ACK_BODY,
        _ => false,
    }
}

/// `sha1:` and the base64 of 20 bytes: 27 base64 digits and one `=`
/// (\[GIFT-ARES\] `as_download.c`).
fn sha1_target(target: &[u8]) -> bool {
    let Some(b64) = target.strip_prefix(b"sha1:") else {
        return false;
    };
    let Some((pad, digits)) = b64.split_last() else {
        return false;
    };
    b64.len() == SHA1_BASE64_LEN && *pad == b'=' && digits.iter().all(|&b| is_base64(b))
}

fn is_base64(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'+' || b == b'/'
}

/// `n` base64 characters, the last `pad` of them `=`.
fn base64_of(value: &[u8], n: usize, pad: usize) -> bool {
    value.len() == n
        && value.iter().enumerate().all(|(i, &b)| {
            if i >= n - pad {
                b == b'='
            } else {
                is_base64(b)
            }
        })
}

/// Whether a header is one of Ares' own with a value of its exact form
/// (\[GIFT-ARES\] `as_upload.c`, `as_download_conn.c`): `X-B6MI` is base64
/// of 12 bytes, `X-B6St` base64 of 23 bytes, `X-MyLIP` eight hex digits.
fn ares_header(name: &[u8], value: &[u8]) -> bool {
    let is = |n: &[u8]| name.eq_ignore_ascii_case(n);
    if is(b"X-B6MI") {
        base64_of(value, 16, 0)
    } else if is(b"X-B6St") {
        base64_of(value, 32, 1)
    } else if is(b"X-MyLIP") {
        value.len() == 8 && value.iter().all(u8::is_ascii_hexdigit)
    } else {
        false
    }
}

/// An HTTP response with a well-formed header block carrying an Ares
/// header (see [`ares_header`]).
fn reply(buf: &[u8], facts: &mut FactSink<'_>) -> bool {
    let Some((_, rest)) = http::status_line(buf) else {
        return false;
    };
    let mut ares = false;
    let mut server = None;
    let end = http::header_fields(rest, |name, value| {
        ares |= ares_header(name, value);
        if name.eq_ignore_ascii_case(b"Server") {
            server.get_or_insert(value);
        }
    });
    let ok = ares && end.is_some();
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

    const SYN: &[u8] = b"\x03\x00\x5a\x06\x06\x05";

    fn ack(kind: u8, body_len: usize) -> Vec<u8> {
        let mut v = (body_len as u16).to_le_bytes().to_vec();
        v.push(kind);
        v.extend((0..body_len).map(|i| (i * 37 + 11) as u8));
        v
    }

    #[test]
    fn a_session_syn_answered_by_an_ack() {
        for kind in [session::ACK, session::ACK2, session::ACK_NOCRYPT] {
            let mut h = Harness::tcp(Ares);
            let got = h.probes(&[(O, SYN), (R, &ack(kind, 0x15 + 6 * 4))]);
            assert_eq!(got[0], Probe::NeedMore);
            assert!(matches!(got[1], Probe::Match(e) if e.name == SESSION
                && e.strength == Confidence::Bidirectional));
        }
        // A busy supernode, and an ACK followed by another packet.
        let mut two = ack(session::ACK2, 30);
        two.extend(ack(0x01, 10));
        for reply in [ack(session::ACK_BUSY, 0), two] {
            let mut h = Harness::tcp(Ares);
            assert_eq!(h.evidence(&[(O, SYN), (R, &reply)])[1], Some(SESSION));
        }
    }

    #[test]
    fn a_syn_alone_or_badly_answered_is_nothing() {
        let too_short = ack(session::ACK, 0x14);
        let mut cut = ack(session::ACK, 40);
        cut.truncate(30);
        let wrong_type = ack(0x34, 40);
        let web: &[u8] = b"HTTP/1.1 400 Bad Request\r\n\r\n";
        for reply in [&too_short[..], &cut, &wrong_type, web] {
            let mut h = Harness::tcp(Ares);
            assert_eq!(
                h.probes(&[(O, SYN), (R, reply)]),
                vec![Probe::NeedMore, Probe::NotMine]
            );
        }
        // Six bytes of almost the SYN.
        for syn in [
            &b"\x03\x00\x5a\x06\x06\x04"[..],
            b"\x03\x00\x5b\x06\x06\x05",
            b"\x03\x00\x5a\x06\x06\x05\x00",
            b"\x04\x00\x5a\x06\x06\x05",
        ] {
            let mut h = Harness::tcp(Ares);
            assert_eq!(h.feed(O, syn), Probe::NotMine, "{syn:?}");
        }
    }

    const GET: &[u8] = b"GET sha1:qUqP5cyxm6YcTAhz05Hph5gvu9M= HTTP/1.1\r\nHost: 192.0.2.1:4810\r\nRange: bytes=0-1048575\r\nX-My-Nick: alice\r\nX-B6MI: h8jP5STyCN7vvT6y\r\nX-MyLIP: C0A80002\r\nConnection: Keep-Alive\r\n\r\n";

    #[test]
    fn a_plain_transfer_and_its_reply() {
        let reply: &[u8] = b"HTTP/1.1 206 OK\r\nServer: Ares 1.8.1.2945\r\nX-My-Nick: bob\r\nX-B6MI: h8jP5STyCN7vvT6y\r\nX-MyLIP: 3EB25D9C\r\nConnection: Keep-Alive\r\nContent-range: bytes=0-1048575/4000000\r\n\r\n";
        let mut h = Harness::tcp(Ares);
        assert_eq!(
            h.evidence(&[(O, GET), (R, reply)]),
            vec![Some(HTTP_REQUEST), Some(HTTP_REPLY)]
        );
        assert_eq!(h.facts().client[1].as_deref(), Some("Ares 1.8.1.2945"));
        // The request line alone (headers in the next segment) suffices.
        let mut h = Harness::tcp(Ares);
        let line = b"GET sha1:qUqP5cyxm6YcTAhz05Hph5gvu9M= HTTP/1.1\r\n";
        assert_eq!(h.evidence(&[(O, line)]), vec![Some(HTTP_REQUEST)]);
    }

    #[test]
    fn web_traffic_is_not_named() {
        let near: &[&[u8]] = &[
            b"GET sha1:qUqP5cyxm6YcTAhz05Hph5gvu9M HTTP/1.1\r\n\r\n",
            b"GET sha1:qUqP5cyxm6YcTAhz05Hph5gvu9M=x HTTP/1.1\r\n\r\n",
            b"GET /sha1:qUqP5cyxm6YcTAhz05Hph5gvu9M= HTTP/1.1\r\n\r\n",
            b"GET sha1:qUqP5cyxm6YcTAhz05Hph5g!u9M= HTTP/1.1\r\n\r\n",
            b"GET sha1:qUqP5cyxm6YcTAhz05Hph5gvu9M= HTTP/1.1\r\nBad header\r\n\r\n",
            b"GET / HTTP/1.1\r\nX-MyLIP: 3EB25D9\r\n\r\n",
            b"GET / HTTP/1.1\r\nX-B6MI: not base64 at all!\r\n\r\n",
        ];
        for bytes in near
            .iter()
            .copied()
            .chain(LOOK_ALIKES.iter().map(|(_, b)| *b))
        {
            let mut h = Harness::tcp(Ares);
            assert!(
                !matches!(h.feed(O, bytes), Probe::Match(_)),
                "{}",
                String::from_utf8_lossy(bytes)
            );
        }
        // A web server's reply to a web request.
        let mut h = Harness::tcp(Ares);
        let got = h.probes(&[
            (O, LOOK_ALIKES[7].1),
            (
                R,
                b"HTTP/1.1 200 OK\r\nServer: nginx\r\nX-MyLIP: nothex!!\r\n\r\n",
            ),
        ]);
        assert_eq!(got, vec![Probe::NeedMore, Probe::NotMine]);
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
        let mut next = noise(0x0123_4567_89AB_CDEF);
        for len in (0..=64).chain([100, 536, 1460]) {
            for _ in 0..16 {
                let bytes: Vec<u8> = (0..len).map(|_| next()).collect();
                let mut h = Harness::tcp(Ares);
                let got = h.probes(&[(O, SYN), (R, &bytes)]);
                // A random reply passes only with a consistent length and
                // one of four types: allowed, but rare (checked below).
                let _ = got;
                let mut h = Harness::tcp(Ares);
                assert!(!matches!(h.feed(O, &bytes), Probe::Match(_)), "{bytes:?}");
            }
        }
        // Random replies to a SYN: a match needs a length equal to the
        // rest (or a further plausible header) and an ACK type.
        let mut matches = 0;
        for _ in 0..20_000 {
            let len = 3 + usize::from(next()) * 4;
            let bytes: Vec<u8> = (0..len).map(|_| next()).collect();
            let mut h = Harness::tcp(Ares);
            h.feed(O, SYN);
            if matches!(h.feed(R, &bytes), Probe::Match(_)) {
                matches += 1;
            }
        }
        assert_eq!(matches, 0);
    }

    proptest! {
        #[test]
        fn never_panics(packets in proptest::collection::vec(
            (any::<bool>(), proptest::collection::vec(any::<u8>(), 0..300)), 0..5)
        ) {
            let mut h = Harness::tcp(Ares);
            for (orig, bytes) in &packets {
                h.feed(if *orig { O } else { R }, bytes);
            }
        }
    }
}
