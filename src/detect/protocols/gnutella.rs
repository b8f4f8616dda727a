//! Gnutella and Gnutella2: structural checks of the connection handshake,
//! of HTTP file transfers between servents, of the binary message framing
//! (UDP datagrams, and TCP after the handshake) and of the UDP transceiver
//! layer (`GND` for Gnutella2, `GTA` for gtk-gnutella's semi-reliable UDP).
//!
//! Evidence, each a structural match of one side
//! ([`Confidence::Unidirectional`]) unless said otherwise:
//! - `gnutella.handshake`: a step of the 0.4 or 0.6 handshake: the request
//!   line `GNUTELLA CONNECT/0.6`, a status line (`GNUTELLA/0.6 200 OK`, the
//!   responder's answer or the originator's confirmation) or the 0.4 lines,
//!   with a well-formed header block.
//! - `gnutella.http`: an HTTP request or response between servents: a HUGE
//!   `/uri-res/` request naming a URN, a THEX or push-proxy request, or a
//!   request or response carrying a header that only servents send.
//! - `gnutella.giv`: the `GIV index:guid/name` line of a pushed upload.
//! - `gnutella.message`: whole binary messages: a UDP datagram made of one
//!   or more messages whose declared lengths add up to its size exactly, or
//!   the first message of an uncompressed TCP stream after the handshake.
//! - `gnutella.reply`: a message carrying the GUID of a message the other
//!   side sent (pong to ping, Mojito response to request):
//!   [`Confidence::Bidirectional`].
//! - `gnutella.g2-udp`: a Gnutella2 UDP datagram whose first fragment holds
//!   a root packet of exactly the declared length, or a zlib stream.
//! - `gnutella.sr-udp`: a semi-reliable UDP datagram carrying a Gnutella
//!   message (or a zlib stream).
//! - `gnutella.udp-ack`: a transceiver acknowledgement of the sequence
//!   number the other side sent: [`Confidence::Bidirectional`].
//!
//! Every reader here is a checked view: a fixed-size header is taken with
//! `split_first_chunk` and then read by constant index (checked when
//! compiling), everything else goes through `get`, so no input can make the
//! detector panic.
//!
//! References, cited in the comments by their tag:
//! - \[HS\]: Bildson, Rohrs, "An Extensible Handshaking Protocol for the
//!   Gnutella Network" (0.6 handshake), sections 1 and 3.
//! - \[G06\]: RFC-Gnutella, "Gnutella Protocol Specification 0.6": 2.2
//!   (handshake), 2.3 (message header), 2.4 (messages), 3 (file transfer),
//!   3.3 (push, `GIV`).
//! - \[GGEP\]: "Gnutella Generic Extension Protocol" 0.51, section 3
//!   (extension block magic `0xC3`).
//! - \[HUGE\]: "HUGE: Hash/URN Gnutella Extensions" 0.94, sections 3 (URNs)
//!   and 4 (`/uri-res/N2R?` requests, `X-Gnutella-*` headers).
//! - \[THEX\]: "Tree Hash EXchange format" 02; \[PUSH\]: "Push Proxy" 0.1
//!   (`/gnutella/push-proxy`, `/gnet/push-proxy`); \[PFSP\]: partial file
//!   sharing (`X-Available-Ranges`); \[ALT\]: alternate locations (`X-Alt`).
//! - \[MOJITO\]: LimeWire, "The Mojito Message Format" (DHT over the
//!   Gnutella message header, function `0x44`).
//! - \[G2-UDP\]: Gnutella2 "UDP Transceiver", and gtk-gnutella's
//!   "Gnutella Semi-Reliable UDP" (`doc/gnutella/udp_transceiver`) sections
//!   2.1 (header, flags) and 2.8 (extended acknowledgements).
//! - \[G2-PKT\]: Gnutella2 "Packet Structure" (the control byte).
//! - \[RFC7230\]: 3.1 (start line), 3.2 (header fields), 3.2.4 (obs-fold).
//! - \[RFC1950\] 2.2 (zlib header), \[RFC1951\] 3.2.3 (block header).

use crate::decode::Transport;
use crate::detect::{
    Confidence, Detector, Evidence, FactSink, Interest, PacketView, Probe, Protocol,
};

/// A step of the 0.4 or 0.6 connection handshake.
const HANDSHAKE: &str = "gnutella.handshake";
/// An HTTP request or response between servents.
const HTTP: &str = "gnutella.http";
/// `GIV index:guid/name` from a servent answering a push.
const GIV: &str = "gnutella.giv";
/// Whole binary messages with consistent headers.
const MESSAGE: &str = "gnutella.message";
/// A message echoing the GUID of the other side's message.
const REPLY: &str = "gnutella.reply";
/// A Gnutella2 UDP transceiver datagram (`GND`).
const G2_UDP: &str = "gnutella.g2-udp";
/// A semi-reliable UDP datagram (`GTA`) carrying Gnutella messages.
const SR_UDP: &str = "gnutella.sr-udp";
/// A transceiver acknowledgement of the other side's sequence number.
const UDP_ACK: &str = "gnutella.udp-ack";

/// Payload packets looked at per side: a handshake step whose header block
/// spans two segments, the confirmation, then the first binary message.
const MAX_PACKETS: u16 = 4;

/// Byte offsets of the fixed-size headers read here.
mod field {
    /// Gnutella message header, 23 bytes (\[G06\] 2.3): GUID, function,
    /// TTL, hops, payload length (u32 little-endian).
    pub const GUID_LEN: usize = 16;
    /// Function (message type).
    pub const FUNCTION: usize = 16;
    /// Time to live (Mojito: major version).
    pub const TTL: usize = 17;
    /// Hops taken (Mojito: minor version).
    pub const HOPS: usize = 18;
    /// First byte of the payload length.
    pub const LENGTH: usize = 19;
    /// Size of the message header.
    pub const MESSAGE_LEN: usize = 23;

    /// UDP transceiver header, 8 bytes (\[G2-UDP\] 2.1): tag (3 bytes),
    /// flags, sequence (u16), part, count.
    pub const TAG: usize = 0;
    /// Flags.
    pub const FLAGS: usize = 3;
    /// First byte of the sequence number (byte order is opaque).
    pub const SEQUENCE: usize = 4;
    /// Fragment number, 1-based.
    pub const PART: usize = 6;
    /// Fragment count; zero for an acknowledgement.
    pub const COUNT: usize = 7;
    /// Size of the transceiver header.
    pub const TRANSCEIVER_LEN: usize = 8;

    /// Mojito header continued in the message payload (\[MOJITO\] "Message
    /// Header"): opcode, then the sender's contact.
    pub const MOJITO_OPCODE: usize = 0;
    /// Length byte of the contact's socket address: opcode (1), vendor
    /// (4), version (2), node id (20).
    pub const MOJITO_ADDR_LEN: usize = 27;
    /// Opcode, contact with an IPv4 address (33), instance id, flags and
    /// extended length (2).
    pub const MOJITO_MIN_PAYLOAD: usize = 38;
}

/// Message functions (\[G06\] 2.3 and the extensions named).
mod function {
    /// Ping (\[G06\] 2.4.1).
    pub const PING: u8 = 0x00;
    /// Pong (\[G06\] 2.4.2).
    pub const PONG: u8 = 0x01;
    /// Bye (Bye 0.1).
    pub const BYE: u8 = 0x02;
    /// Query routing table update (QRP).
    pub const QRP: u8 = 0x30;
    /// Vendor message.
    pub const VENDOR: u8 = 0x31;
    /// Standard vendor message.
    pub const STANDARD_VENDOR: u8 = 0x32;
    /// Push (\[G06\] 2.4.5).
    pub const PUSH: u8 = 0x40;
    /// LimeWire reliable UDP.
    pub const RUDP: u8 = 0x41;
    /// Mojito DHT (\[MOJITO\]).
    pub const MOJITO: u8 = 0x44;
    /// Query (\[G06\] 2.4.3).
    pub const QUERY: u8 = 0x80;
    /// Query hit (\[G06\] 2.4.4).
    pub const QUERY_HIT: u8 = 0x81;
}

/// The smallest payload a message of `function` can have, or `None` for a
/// function no servent sends.
fn min_payload(f: u8) -> Option<usize> {
    use function::*;
    match f {
        // Ping: empty, or a GGEP block.
        PING | RUDP => Some(0),
        // Pong: port (2), IP (4), shared files (4) and kilobytes (4).
        PONG => Some(14),
        // Bye: a 2-byte code; QRP: a variant byte and its body.
        BYE | QRP => Some(2),
        // Vendor messages: vendor (4), selector (2), version (2).
        VENDOR | STANDARD_VENDOR => Some(8),
        // Push: servent id (16), file index (4), IP (4), port (2).
        PUSH => Some(26),
        MOJITO => Some(field::MOJITO_MIN_PAYLOAD),
        // Query: flags (2) and a NUL-terminated criteria string.
        QUERY => Some(3),
        // Query hit: count, port, IP, speed (11) and the servent id (16).
        QUERY_HIT => Some(27),
        _ => None,
    }
}

/// GGEP extension blocks start with this magic byte (\[GGEP\] 3).
const GGEP_MAGIC: u8 = 0xC3;
/// Servents drop messages with a larger payload (\[G06\] 2.3 recommends
/// 4 KB for queries; no servent accepts more than 64 KiB).
const MAX_MESSAGE_PAYLOAD: usize = 64 * 1024;
/// TTL and hops are small: servents send TTL 7 at most and drop messages
/// whose TTL + hops exceeds their limit (\[G06\] 2.3); we allow twice that.
const MAX_TTL: u8 = 15;
/// Upper bound of TTL + hops.
const MAX_TTL_HOPS: u8 = 16;

/// A checked view of one Gnutella message: the 23-byte header and what of
/// the payload the buffer holds.
#[derive(Clone, Copy, Debug)]
struct Message<'a> {
    header: &'a [u8; field::MESSAGE_LEN],
    rest: &'a [u8],
}

impl<'a> Message<'a> {
    /// The message at the start of `buf`, if its header is plausible.
    fn new_checked(buf: &'a [u8]) -> Option<Message<'a>> {
        let (header, rest) = buf.split_first_chunk::<{ field::MESSAGE_LEN }>()?;
        let msg = Message { header, rest };
        msg.is_plausible().then_some(msg)
    }

    fn function(&self) -> u8 {
        self.header[field::FUNCTION]
    }

    fn payload_len(&self) -> usize {
        let h = self.header;
        let len = u32::from_le_bytes([
            h[field::LENGTH],
            h[field::LENGTH + 1],
            h[field::LENGTH + 2],
            h[field::LENGTH + 3],
        ]);
        usize::try_from(len).unwrap_or(usize::MAX)
    }

    /// Header plus payload.
    fn total_len(&self) -> usize {
        self.payload_len().saturating_add(field::MESSAGE_LEN)
    }

    /// A 31-bit fingerprint of the GUID, never zero, to match a reply to
    /// its request without keeping the 16 bytes.
    fn guid_key(&self) -> u32 {
        let hash = self
            .header
            .iter()
            .take(field::GUID_LEN)
            .fold(0x811c_9dc5u32, |h, &b| {
                (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
            });
        (hash & 0x7fff_ffff).max(1)
    }

    fn is_plausible(&self) -> bool {
        // A GUID is random (\[G06\] 2.3); all zeros is padding, not one.
        if self.header.iter().take(field::GUID_LEN).all(|&b| b == 0) {
            return false;
        }
        let f = self.function();
        let Some(min) = min_payload(f) else {
            return false;
        };
        let len = self.payload_len();
        if len < min || len > MAX_MESSAGE_PAYLOAD {
            return false;
        }
        let (ttl, hops) = (self.header[field::TTL], self.header[field::HOPS]);
        if ttl > MAX_TTL || hops > MAX_TTL || ttl + hops > MAX_TTL_HOPS {
            return false;
        }
        if f == function::MOJITO {
            // Mojito reuses TTL and hops as its version, 0.0 today; its
            // header goes on with an opcode (1..=10) and the sender's
            // contact, whose address is IPv4 (4) or IPv6 (16) (\[MOJITO\]).
            return self
                .rest
                .get(field::MOJITO_OPCODE)
                .is_none_or(|op| (0x01..=0x0a).contains(op))
                && self
                    .rest
                    .get(field::MOJITO_ADDR_LEN)
                    .is_none_or(|n| *n == 4 || *n == 16);
        }
        // A servent decrements the TTL and stops forwarding at 0, so no
        // message is ever sent with TTL 0 (\[G06\] 2.3).
        if ttl == 0 {
            return false;
        }
        // What follows the fixed part of a ping or pong is a GGEP block
        // (\[G06\] 2.4.1, 2.4.2; \[GGEP\] 3).
        let extension = match f {
            function::PING if len > 0 => self.rest.first(),
            function::PONG if len > 14 => self.rest.get(14),
            _ => None,
        };
        extension.is_none_or(|b| *b == GGEP_MAGIC)
    }
}

/// Records the servents that pongs in `buf` announce (\[G06\] 2.4.2: port,
/// little-endian, then the IPv4 address), for the endpoint cache. A
/// servent takes Gnutella connections on TCP and UDP at that port.
fn learn_pongs(buf: &[u8], facts: &mut FactSink<'_>) {
    let mut found = Vec::new();
    whole_messages(buf, |m| {
        if m.function() == function::PONG
            && let Some(p) = m.rest.get(..6)
        {
            let port = u16::from_le_bytes([p[0], p[1]]);
            found.push((std::net::IpAddr::from([p[2], p[3], p[4], p[5]]), port));
        }
    });
    for (ip, port) in found {
        facts.peer(
            Protocol::Gnutella,
            ip,
            port,
            crate::detect::cache::Transports::BOTH,
        );
    }
}

/// Checks that `buf` is one or more whole messages, the declared lengths
/// adding up to its size exactly (a UDP datagram, \[G06\] 2.3), and calls
/// `each` for every message.
fn whole_messages<'a>(buf: &'a [u8], mut each: impl FnMut(&Message<'a>)) -> bool {
    let mut rest = buf;
    if rest.is_empty() {
        return false;
    }
    while !rest.is_empty() {
        let Some(msg) = Message::new_checked(rest) else {
            return false;
        };
        // Every step consumes at least a header, so the loop ends.
        let Some(next) = rest.get(msg.total_len()..) else {
            return false;
        };
        each(&msg);
        rest = next;
    }
    true
}

/// Transceiver flag bits (\[G2-UDP\] 2.1, 2.8).
mod flag {
    /// The payload is a zlib stream.
    pub const DEFLATE: u8 = 0x01;
    /// The sender wants an acknowledgement.
    pub const ACK_ME: u8 = 0x02;
    /// The low nibble is for critical flags: a receiver drops a datagram
    /// with a critical flag it does not know. Only 0x01 and 0x02 exist;
    /// the high nibble is for flags that may be ignored.
    pub const CRITICAL: u8 = 0x0f;
    /// gtk-gnutella: an acknowledgement with a 4-byte payload.
    pub const EXTENDED_ACK: u8 = 0x20;
}

/// What a transceiver datagram carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Layer {
    /// `GND`: Gnutella2 packets.
    G2,
    /// `GTA`: Gnutella messages (gtk-gnutella's semi-reliable UDP).
    Gta,
}

/// A checked UDP transceiver datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Datagram {
    /// An acknowledgement (count 0) of the sequence `key`.
    Ack { layer: Layer, key: u32 },
    /// The first fragment, its content checked.
    First { layer: Layer, key: u32 },
    /// A later fragment: only the header could be checked.
    Fragment { layer: Layer, key: u32 },
}

impl Datagram {
    /// Checks a transceiver datagram.
    fn new_checked(buf: &[u8]) -> Option<Datagram> {
        let (h, body) = buf.split_first_chunk::<{ field::TRANSCEIVER_LEN }>()?;
        let layer = match [h[field::TAG], h[field::TAG + 1], h[field::TAG + 2]] {
            [b'G', b'N', b'D'] => Layer::G2,
            [b'G', b'T', b'A'] => Layer::Gta,
            _ => return None,
        };
        let flags = h[field::FLAGS];
        if flags & flag::CRITICAL & !(flag::DEFLATE | flag::ACK_ME) != 0 {
            return None;
        }
        let seq = u16::from_le_bytes([h[field::SEQUENCE], h[field::SEQUENCE + 1]]);
        // The key names the sender's sequence in its layer; the top bit
        // keeps it apart from message GUID keys.
        let key = 0x8000_0000 | (u32::from(layer == Layer::Gta) << 16) | u32::from(seq);
        let (part, count) = (h[field::PART], h[field::COUNT]);
        if count == 0 {
            // An acknowledgement names the part it acknowledges and has no
            // payload, except gtk-gnutella's 4-byte extended form
            // (\[G2-UDP\] 2.4, 2.8).
            let extra = if flags & flag::EXTENDED_ACK != 0 {
                4
            } else {
                0
            };
            let ok = part >= 1 && flags & flag::DEFLATE == 0 && body.len() == extra;
            return ok.then_some(Datagram::Ack { layer, key });
        }
        // 1 <= nPart <= nCount (\[G2-UDP\] 2.1).
        if part == 0 || part > count {
            return None;
        }
        if part > 1 {
            return (!body.is_empty()).then_some(Datagram::Fragment { layer, key });
        }
        // Fragments are deflated as one stream, not one by one, so only
        // the first starts with the zlib header or the packet header
        // (\[G2-UDP\] 2.1, deflate flag).
        let whole = count == 1;
        let ok = if flags & flag::DEFLATE != 0 {
            zlib_start(body)
        } else {
            match layer {
                Layer::G2 => g2_root_packet(body, whole),
                Layer::Gta if whole => whole_messages(body, |_| {}),
                Layer::Gta => {
                    Message::new_checked(body).is_some_and(|m| m.total_len() > body.len())
                }
            }
        };
        ok.then_some(Datagram::First { layer, key })
    }
}

/// Gnutella2 control-byte flags (\[G2-PKT\]).
mod g2 {
    /// Compound packet (has children).
    pub const COMPOUND: u8 = 0x04;
    /// The length field is big-endian.
    pub const BIG_ENDIAN: u8 = 0x02;
    /// Reserved, always clear.
    pub const RESERVED: u8 = 0x01;
}

/// Checks the root Gnutella2 packet at the start of `body`: control byte
/// (`len_len` in bits 7-6, `name_len - 1` in bits 5-3, flags in bits 2-0,
/// the reserved flag clear), a name of `[A-Z][A-Z0-9]*`, and a length that
/// ends exactly at the end of the datagram when it is `whole`, or beyond it
/// when later fragments follow (\[G2-PKT\]).
fn g2_root_packet(body: &[u8], whole: bool) -> bool {
    let Some((&control, rest)) = body.split_first() else {
        return false;
    };
    let len_len = usize::from(control >> 6);
    let name_len = usize::from((control >> 3) & 0x07) + 1;
    let flags = control & 0x07;
    if flags & g2::RESERVED != 0 {
        return false;
    }
    let (Some(len_bytes), Some(name)) =
        (rest.get(..len_len), rest.get(len_len..len_len + name_len))
    else {
        return false;
    };
    let len = if flags & g2::BIG_ENDIAN != 0 {
        len_bytes
            .iter()
            .fold(0usize, |n, &b| (n << 8) | usize::from(b))
    } else {
        len_bytes
            .iter()
            .rev()
            .fold(0usize, |n, &b| (n << 8) | usize::from(b))
    };
    let name_ok = name.first().is_some_and(u8::is_ascii_uppercase)
        && name
            .iter()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
    // A compound packet's payload starts with its children, so it cannot
    // be empty (\[G2-PKT\], compound flag).
    let size_ok = flags & g2::COMPOUND == 0 || len > 0;
    let total = 1 + len_len + name_len + len;
    let fits = if whole {
        total == body.len()
    } else {
        total > body.len()
    };
    name_ok && size_ok && fits
}

/// Whether `body` starts like a zlib stream: method 8 (deflate) with a
/// window of at most 32 KiB, the check bits right, no preset dictionary
/// (\[RFC1950\] 2.2), and a first block type that is not the reserved 3
/// (\[RFC1951\] 3.2.3).
fn zlib_start(body: &[u8]) -> bool {
    let (Some(&cmf), Some(&flg)) = (body.first(), body.get(1)) else {
        return false;
    };
    cmf & 0x0f == 8
        && cmf >> 4 <= 7
        && ((u16::from(cmf) << 8) | u16::from(flg)) % 31 == 0
        && flg & 0x20 == 0
        && body.get(2).is_none_or(|b| (b >> 1) & 0x03 != 0x03)
}

/// The line that opens what one side sends on a TCP connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Opening {
    /// `GNUTELLA CONNECT/d.d` CRLF, headers follow (\[HS\] 3 step 2).
    Connect,
    /// `GNUTELLA CONNECT/0.4` LF LF (\[HS\] 1).
    Connect04,
    /// `GNUTELLA/d.d ddd text` CRLF, headers follow (\[HS\] 3 steps 4, 6).
    Status { ok: bool },
    /// `GNUTELLA OK` LF LF (\[HS\] 1).
    Ok04,
    /// An HTTP `GET` or `HEAD` request line (\[RFC7230\] 3.1.1);
    /// `servent`: its target alone shows a servent.
    Request { servent: bool },
    /// An HTTP status line (\[RFC7230\] 3.1.2).
    Response,
    /// `GIV index:guid/name` LF LF (\[G06\] 3.3).
    Giv,
}

/// Reads the opening line of `buf`; returns it and the bytes after it.
fn opening(buf: &[u8]) -> Option<(Opening, &[u8])> {
    if let Some(rest) = buf.strip_prefix(b"GNUTELLA CONNECT/") {
        if let Some(after) = rest.strip_prefix(b"0.4\n\n") {
            return Some((Opening::Connect04, after));
        }
        let (version, after) = crlf_line(rest)?;
        return is_version(version).then_some((Opening::Connect, after));
    }
    if let Some(after) = buf.strip_prefix(b"GNUTELLA OK\n\n") {
        return Some((Opening::Ok04, after));
    }
    if let Some(rest) = buf.strip_prefix(b"GNUTELLA/") {
        let (line, after) = crlf_line(rest)?;
        let (version, status) = line.split_at_checked(3)?;
        let code = status_code(status)?;
        return is_version(version).then_some((Opening::Status { ok: code == 200 }, after));
    }
    if let Some(rest) = buf.strip_prefix(b"HTTP/1.") {
        let (line, after) = crlf_line(rest)?;
        let (minor, status) = line.split_first()?;
        status_code(status)?;
        return minor.is_ascii_digit().then_some((Opening::Response, after));
    }
    if buf.starts_with(b"GET ") || buf.starts_with(b"HEAD ") {
        let (line, after) = crlf_line(buf)?;
        let target = request_target(line)?;
        let servent = servent_target(target);
        return Some((Opening::Request { servent }, after));
    }
    if let Some(rest) = buf.strip_prefix(b"GIV ") {
        return giv(rest).map(|after| (Opening::Giv, after));
    }
    None
}

/// Splits `buf` after its first CRLF: the line without it, and the rest.
fn crlf_line(buf: &[u8]) -> Option<(&[u8], &[u8])> {
    let i = buf.windows(2).position(|w| w == b"\r\n")?;
    Some((buf.get(..i)?, buf.get(i + 2..)?))
}

/// `d.d`, a protocol version (\[HS\] 3).
fn is_version(v: &[u8]) -> bool {
    matches!(v, [major, b'.', minor] if major.is_ascii_digit() && minor.is_ascii_digit())
}

/// ` ddd` or ` ddd text` after a protocol version (\[RFC7230\] 3.1.2):
/// the code, 100 to 599.
fn status_code(s: &[u8]) -> Option<u16> {
    let s = s.strip_prefix(b" ")?;
    let (code, text) = s.split_at_checked(3)?;
    let [a, b, c] = *code else {
        return None;
    };
    if !matches!(a, b'1'..=b'5') || !b.is_ascii_digit() || !c.is_ascii_digit() {
        return None;
    }
    let text_ok =
        text.is_empty() || (text.starts_with(b" ") && text.iter().all(|&t| field_char(t)));
    text_ok.then(|| u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0'))
}

/// The target of `GET target HTTP/1.x` (\[RFC7230\] 3.1.1). The version is
/// the last word: old servents put unescaped spaces in file names.
fn request_target(line: &[u8]) -> Option<&[u8]> {
    let rest = line
        .strip_prefix(b"GET ")
        .or_else(|| line.strip_prefix(b"HEAD "))?;
    let space = rest.iter().rposition(|&b| b == b' ')?;
    let (target, version) = rest.split_at_checked(space)?;
    let minor = version.strip_prefix(b" HTTP/1.")?;
    let ok = matches!(minor, [d] if d.is_ascii_digit())
        && target.starts_with(b"/")
        && target.iter().all(|&b| b != b'\t' && field_char(b));
    ok.then_some(target)
}

/// Request targets only servents ask for: a HUGE resolver naming a URN
/// (\[HUGE\] 4), a THEX tree (\[THEX\]), a push proxy (\[PUSH\]).
fn servent_target(target: &[u8]) -> bool {
    if let Some(rest) = target.strip_prefix(b"/uri-res/") {
        return uri_res(rest);
    }
    [
        &b"/gnutella/thex/"[..],
        b"/gnutella/push-proxy?",
        b"/gnet/push-proxy?",
    ]
    .iter()
    .any(|p| target.len() > p.len() && target.starts_with(p))
}

/// `N2R?urn:...` after `/uri-res/`: a resolver service (`N2R`, `N2X`,
/// ...) and a URN (\[HUGE\] 4).
fn uri_res(rest: &[u8]) -> bool {
    let Some(q) = rest.iter().position(|&b| b == b'?') else {
        return false;
    };
    let (Some(service), Some(urn)) = (rest.get(..q), rest.get(q + 1..)) else {
        return false;
    };
    let service_ok = service.len() <= 6
        && service.starts_with(b"N2")
        && service.iter().all(u8::is_ascii_alphanumeric);
    service_ok && hash_urn(urn)
}

/// A URN naming a file by hash, nothing after it (\[HUGE\] 3, \[THEX\]):
/// `urn:sha1:` 32 base32 digits, `urn:bitprint:` 32 `.` 39, or
/// `urn:tree:tiger/:` 39 (also without the slash).
fn hash_urn(urn: &[u8]) -> bool {
    let Some(nss) = strip_prefix_nocase(urn, b"urn:") else {
        return false;
    };
    if let Some(h) = strip_prefix_nocase(nss, b"sha1:") {
        return base32_len(h) == Some(32);
    }
    if let Some(h) = strip_prefix_nocase(nss, b"bitprint:") {
        return match h.split_at_checked(32) {
            Some((sha1, tiger)) => {
                base32_len(sha1) == Some(32)
                    && tiger.strip_prefix(b".").and_then(base32_len) == Some(39)
            }
            None => false,
        };
    }
    let tiger = strip_prefix_nocase(nss, b"tree:tiger/:")
        .or_else(|| strip_prefix_nocase(nss, b"tree:tiger:"));
    tiger.and_then(base32_len) == Some(39)
}

/// The length of `s` if it is all base32 digits (RFC 4648: `A-Z2-7`, any
/// case).
fn base32_len(s: &[u8]) -> Option<usize> {
    s.iter()
        .all(|b| b.is_ascii_alphabetic() || (b'2'..=b'7').contains(b))
        .then_some(s.len())
}

/// `index:guid/name` LF LF after `GIV ` (\[G06\] 3.3): a decimal file
/// index, the servent's GUID in 32 hex digits, a file name (possibly
/// empty). Returns the bytes after the blank line.
fn giv(rest: &[u8]) -> Option<&[u8]> {
    let colon = rest.iter().position(|&b| b == b':')?;
    let (index, rest) = rest.split_at_checked(colon)?;
    if index.is_empty() || index.len() > 10 || !index.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let (guid, rest) = rest.get(1..)?.split_at_checked(32)?;
    if !guid.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    let rest = rest.strip_prefix(b"/")?;
    let lf = rest.iter().position(|&b| b == b'\n')?;
    let (name, rest) = rest.split_at_checked(lf)?;
    let name = name.strip_suffix(b"\r").unwrap_or(name);
    if !name.iter().all(|&b| b != b'\t' && field_char(b)) {
        return None;
    }
    rest.strip_prefix(b"\n\n")
        .or_else(|| rest.strip_prefix(b"\n\r\n"))
}

/// A byte allowed in a header value: tab, visible ASCII, space, or any
/// byte >= 0x80 (\[RFC7230\] 3.2 `field-content`, `obs-text`).
fn field_char(b: u8) -> bool {
    b == b'\t' || (0x20..0x7f).contains(&b) || b >= 0x80
}

/// A byte allowed in a header name (\[RFC7230\] 3.2.6 `tchar`).
fn token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn strip_prefix_nocase<'a>(s: &'a [u8], prefix: &[u8]) -> Option<&'a [u8]> {
    let (head, tail) = s.split_at_checked(prefix.len())?;
    head.eq_ignore_ascii_case(prefix).then_some(tail)
}

fn contains_nocase(s: &[u8], needle: &[u8]) -> bool {
    s.windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle))
}

/// Where a packet stopped inside a header block.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Tail {
    /// At the start of a line.
    #[default]
    Boundary,
    /// Inside a line.
    MidLine,
    /// After a lone CR at the start of a line: the LF that ends the block
    /// comes next.
    Cr,
}

/// What a header block (or the part of it in one packet) showed.
#[derive(Clone, Copy, Debug, Default)]
struct Headers<'a> {
    /// Offset just past the blank line that ends the block, if it is here.
    end: Option<usize>,
    /// Where the packet stopped, if the block goes on.
    tail: Tail,
    /// `User-Agent` value.
    user_agent: Option<&'a [u8]>,
    /// `Server` value.
    server: Option<&'a [u8]>,
    /// A header only a downloading servent sends.
    request_marker: bool,
    /// A header only an uploading servent sends.
    response_marker: bool,
    /// `Content-Encoding: deflate`: the sender's stream is compressed.
    deflate: bool,
    /// `Connection: Upgrade`: TLS follows the handshake.
    upgrade: bool,
}

impl<'a> Headers<'a> {
    /// Notes one header field.
    fn field(&mut self, name: &[u8], value: &'a [u8]) {
        let is = |n: &[u8]| name.eq_ignore_ascii_case(n);
        if is(b"User-Agent") {
            self.user_agent.get_or_insert(value);
        } else if is(b"Server") {
            self.server.get_or_insert(value);
        } else if is(b"Content-Encoding") {
            self.deflate |= contains_nocase(value, b"deflate");
        } else if is(b"Connection") {
            self.upgrade |= contains_nocase(value, b"upgrade");
        }
        // Headers defined by Gnutella extensions and sent by no browser or
        // web server: HUGE URNs and alternate locations (\[HUGE\] 4,
        // \[ALT\]), servent addresses, PARQ queueing, THEX, PFSP.
        let gnutella = strip_prefix_nocase(name, b"X-Gnutella-").is_some()
            || [&b"X-Alt"[..], b"X-NAlt", b"X-Falt", b"X-NFalt"]
                .iter()
                .any(|n| is(n));
        let browse = is(b"Accept") && contains_nocase(value, b"application/x-gnutella");
        self.request_marker |= gnutella
            || browse
            || [
                &b"X-Node"[..],
                b"X-Node-IPv6",
                b"X-FW-Node-Info",
                b"X-Queue",
            ]
            .iter()
            .any(|n| is(n));
        let content_urn = is(b"X-Content-URN") && strip_prefix_nocase(value, b"urn:").is_some();
        self.response_marker |= gnutella
            || content_urn
            || [
                &b"X-Thex-URI"[..],
                b"X-Available-Ranges",
                b"X-Push-Proxy",
                b"X-Push-Proxies",
            ]
            .iter()
            .any(|n| is(n));
    }
}

/// Scans header lines (\[RFC7230\] 3.2) from `buf`, resuming where the
/// previous packet of the block stopped. `None` if a line breaks the
/// grammar.
fn scan_headers(buf: &[u8], start: Tail) -> Option<Headers<'_>> {
    let mut h = Headers::default();
    let mut pos = 0;
    match start {
        Tail::Boundary => {}
        Tail::Cr => {
            // The CR LF of the blank line, split between two packets.
            return buf
                .starts_with(b"\n")
                .then_some(Headers { end: Some(1), ..h });
        }
        Tail::MidLine => {
            // The rest of a line we could not see whole.
            let lf = buf.iter().position(|&b| b == b'\n');
            let line = buf.get(..lf.unwrap_or(buf.len()))?;
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if !line.iter().all(|&b| field_char(b)) {
                return None;
            }
            match lf {
                Some(i) => pos = i + 1,
                None => {
                    h.tail = Tail::MidLine;
                    return Some(h);
                }
            }
        }
    }
    loop {
        let rest = buf.get(pos..)?;
        if rest.is_empty() {
            h.tail = Tail::Boundary;
            return Some(h);
        }
        let Some((line, _)) = crlf_line(rest) else {
            // The packet ends inside a line: check what is there.
            if rest == b"\r" {
                h.tail = Tail::Cr;
                return Some(h);
            }
            let part = rest.strip_suffix(b"\r").unwrap_or(rest);
            let ok = match part.iter().position(|&b| b == b':') {
                _ if part.starts_with(b" ") || part.starts_with(b"\t") => {
                    part.iter().all(|&b| field_char(b))
                }
                Some(colon) => split_field(part, colon).is_some(),
                None => part.iter().all(|&b| token_char(b)),
            };
            h.tail = Tail::MidLine;
            return ok.then_some(h);
        };
        pos += line.len() + 2;
        if line.is_empty() {
            h.end = Some(pos);
            return Some(h);
        }
        if line.starts_with(b" ") || line.starts_with(b"\t") {
            // A folded continuation of the previous value (\[RFC7230\]
            // 3.2.4), as gtk-gnutella sends long X-Try-Ultrapeers lists.
            if !line.iter().all(|&b| field_char(b)) {
                return None;
            }
            continue;
        }
        let colon = line.iter().position(|&b| b == b':')?;
        let (name, value) = split_field(line, colon)?;
        h.field(name, value);
    }
}

/// `name: value` split at `colon`: a non-empty token, then field bytes;
/// the value without surrounding blanks.
fn split_field(line: &[u8], colon: usize) -> Option<(&[u8], &[u8])> {
    let name = line.get(..colon)?;
    let value = line.get(colon + 1..)?;
    if name.is_empty() || !name.iter().all(|&b| token_char(b)) {
        return None;
    }
    if !value.iter().all(|&b| field_char(b)) {
        return None;
    }
    let blank = |b: &u8| *b == b' ' || *b == b'\t';
    let start = value.iter().position(|b| !blank(b)).unwrap_or(value.len());
    let end = value
        .iter()
        .rposition(|b| !blank(b))
        .map_or(start, |i| i + 1);
    Some((name, value.get(start..end).unwrap_or_default()))
}

/// What a side of a TCP flow is expected to send next.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Phase {
    /// Nothing yet: an opening line.
    #[default]
    Start,
    /// The header block after `GNUTELLA CONNECT`.
    ConnectHeaders,
    /// The originator's status line confirming the handshake (step 3).
    AwaitStatus,
    /// The header block after a `200` status: binary messages follow.
    AcceptHeaders,
    /// The header block after a refusal: nothing follows.
    RefuseHeaders,
    /// An HTTP request's header block.
    RequestHeaders,
    /// An HTTP response's header block.
    ResponseHeaders,
    /// The first binary message after the handshake.
    Binary,
    /// Nothing more to check on this side.
    Done,
}

/// What a TCP flow has shown so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Kind {
    /// Nothing recognised yet.
    #[default]
    Unknown,
    /// A Gnutella connection handshake.
    Handshake,
    /// HTTP (or `GIV`) between servents.
    Http,
}

/// Flag bits of [`State`]; per-side flags have the originator's bit and,
/// shifted left by one, the responder's.
mod bit {
    /// Some evidence was found in this flow.
    pub const MATCHED: u16 = 1 << 0;
    /// The handshake upgrades the connection to TLS.
    pub const UPGRADE: u16 = 1 << 1;
    /// The side's last packet ended inside a header line.
    pub const MID_LINE: u16 = 1 << 2;
    /// The side's last packet ended with a lone CR at the start of a line.
    pub const MID_CR: u16 = 1 << 4;
    /// The side's stream is deflated after the handshake.
    pub const DEFLATE: u16 = 1 << 6;
    /// The side's HTTP header block still needs a servent-only header.
    pub const WANT_MARKER: u16 = 1 << 8;
}

/// Per-flow state: 16 bytes.
#[derive(Clone, Copy, Debug, Default)]
pub struct State {
    kind: Kind,
    phase: [Phase; 2],
    flags: u16,
    /// Per side: what the side last sent that the other may answer: a GUID
    /// fingerprint (top bit clear) or a transceiver sequence (top bit set).
    /// Zero when none.
    last: [u32; 2],
}

impl State {
    fn has(&self, base: u16, side: usize) -> bool {
        self.flags & (base << side) != 0
    }

    fn set(&mut self, base: u16, side: usize, on: bool) {
        if on {
            self.flags |= base << side;
        } else {
            self.flags &= !(base << side);
        }
    }

    /// Looks at a TCP payload packet of `side`.
    fn tcp(&mut self, side: usize, buf: &[u8], facts: &mut FactSink<'_>) -> Option<Evidence> {
        match self.phase.get(side).copied().unwrap_or(Phase::Done) {
            Phase::Start => self.open(side, buf, facts),
            Phase::AwaitStatus => match opening(buf) {
                Some((Opening::Status { ok }, rest)) => self.status(side, ok, rest, facts),
                _ => self.done(side),
            },
            Phase::Binary => self.binary(side, buf),
            Phase::Done => None,
            phase => {
                let tail = if self.has(bit::MID_CR, side) {
                    Tail::Cr
                } else if self.has(bit::MID_LINE, side) {
                    Tail::MidLine
                } else {
                    Tail::Boundary
                };
                self.headers(side, phase, buf, tail, false, facts)
            }
        }
    }

    fn done(&mut self, side: usize) -> Option<Evidence> {
        if let Some(p) = self.phase.get_mut(side) {
            *p = Phase::Done;
        }
        None
    }

    fn enter(&mut self, side: usize, phase: Phase) {
        if let Some(p) = self.phase.get_mut(side) {
            *p = phase;
        }
    }

    /// The first payload packet of a side.
    fn open(&mut self, side: usize, buf: &[u8], facts: &mut FactSink<'_>) -> Option<Evidence> {
        let Some((line, rest)) = opening(buf) else {
            return self.done(side);
        };
        match line {
            Opening::Connect => {
                self.kind = Kind::Handshake;
                self.headers(
                    side,
                    Phase::ConnectHeaders,
                    rest,
                    Tail::Boundary,
                    true,
                    facts,
                )
            }
            Opening::Status { ok } => {
                self.kind = Kind::Handshake;
                self.status(side, ok, rest, facts)
            }
            Opening::Connect04 | Opening::Ok04 => {
                // 0.4 has no headers: binary messages follow at once.
                self.kind = Kind::Handshake;
                self.enter(side, Phase::Binary);
                if rest.is_empty() {
                    Some(found(HANDSHAKE))
                } else {
                    self.binary(side, rest).or(Some(found(HANDSHAKE)))
                }
            }
            Opening::Request { servent } => {
                self.kind = Kind::Http;
                self.set(bit::WANT_MARKER, side, !servent);
                self.headers(
                    side,
                    Phase::RequestHeaders,
                    rest,
                    Tail::Boundary,
                    true,
                    facts,
                )
            }
            Opening::Response => {
                self.kind = Kind::Http;
                self.set(bit::WANT_MARKER, side, true);
                self.headers(
                    side,
                    Phase::ResponseHeaders,
                    rest,
                    Tail::Boundary,
                    true,
                    facts,
                )
            }
            Opening::Giv => {
                // The pushing servent now serves the file: its next packet
                // is an HTTP response, so this side starts over.
                self.kind = Kind::Http;
                Some(found(GIV))
            }
        }
    }

    /// A handshake status line from `side`, then its headers.
    fn status(
        &mut self,
        side: usize,
        ok: bool,
        rest: &[u8],
        facts: &mut FactSink<'_>,
    ) -> Option<Evidence> {
        let phase = if ok {
            Phase::AcceptHeaders
        } else {
            Phase::RefuseHeaders
        };
        self.headers(side, phase, rest, Tail::Boundary, true, facts)
    }

    /// Header bytes of a block in `phase`; `first`: the packet that opened
    /// the block (its line was already checked).
    fn headers(
        &mut self,
        side: usize,
        phase: Phase,
        buf: &[u8],
        tail: Tail,
        first: bool,
        facts: &mut FactSink<'_>,
    ) -> Option<Evidence> {
        self.enter(side, phase);
        let Some(h) = scan_headers(buf, tail) else {
            self.set(bit::WANT_MARKER, side, false);
            return self.done(side);
        };
        self.set(
            bit::MID_LINE,
            side,
            h.end.is_none() && h.tail == Tail::MidLine,
        );
        self.set(bit::MID_CR, side, h.end.is_none() && h.tail == Tail::Cr);
        if h.deflate {
            self.set(bit::DEFLATE, side, true);
        }
        if h.upgrade {
            self.flags |= bit::UPGRADE;
        }
        let http = matches!(phase, Phase::RequestHeaders | Phase::ResponseHeaders);
        let mut evidence = None;
        if http {
            let marker = if phase == Phase::RequestHeaders {
                h.request_marker
            } else {
                h.response_marker
            };
            let wanted = self.has(bit::WANT_MARKER, side);
            if (first && !wanted) || (wanted && marker) {
                self.set(bit::WANT_MARKER, side, false);
                evidence = Some(found(HTTP));
            }
        } else if first {
            evidence = Some(found(HANDSHAKE));
        }
        if evidence.is_some() {
            let client = if phase == Phase::ResponseHeaders {
                h.server.or(h.user_agent)
            } else {
                h.user_agent.or(h.server)
            };
            if let Some(name) = client {
                facts.client(name);
            }
        }
        let Some(end) = h.end else {
            return evidence;
        };
        // The block is complete.
        match phase {
            Phase::ConnectHeaders => self.enter(side, Phase::AwaitStatus),
            Phase::AcceptHeaders => {
                self.enter(side, Phase::Binary);
                let rest = buf.get(end..).unwrap_or_default();
                if !rest.is_empty() {
                    // Binary messages in the same segment as the headers.
                    evidence = self.binary(side, rest).or(evidence);
                }
            }
            Phase::RefuseHeaders => {
                // A refusal ends the connection, whichever side sent it.
                self.phase = [Phase::Done; 2];
            }
            _ => {
                self.set(bit::WANT_MARKER, side, false);
                self.enter(side, Phase::Done);
            }
        }
        evidence
    }

    /// The first bytes of a side's stream after the handshake: binary
    /// messages, unless compressed or upgraded to TLS (\[HS\] 3, step 6).
    fn binary(&mut self, side: usize, buf: &[u8]) -> Option<Evidence> {
        self.done(side);
        if self.flags & bit::UPGRADE != 0 || self.has(bit::DEFLATE, side) {
            return None;
        }
        let msg = Message::new_checked(buf)?;
        // When the segment holds the next header too, it must be valid.
        if let Some(next) = buf.get(msg.total_len()..)
            && next.len() >= field::MESSAGE_LEN
            && Message::new_checked(next).is_none()
        {
            return None;
        }
        Some(self.answer(side, msg.guid_key(), MESSAGE, REPLY))
    }

    /// Records what `side` sent and names it: `reply` if it answers what
    /// the other side sent last, `plain` otherwise.
    fn answer(
        &mut self,
        side: usize,
        key: u32,
        plain: &'static str,
        reply: &'static str,
    ) -> Evidence {
        let other = self.last.get(side ^ 1).copied().unwrap_or(0);
        if let Some(own) = self.last.get_mut(side) {
            *own = key;
        }
        if other == key {
            Evidence {
                strength: Confidence::Bidirectional,
                ..found(reply)
            }
        } else {
            found(plain)
        }
    }

    /// Looks at a UDP datagram of `side`.
    fn udp(&mut self, side: usize, buf: &[u8]) -> UdpVerdict {
        if let Some(d) = Datagram::new_checked(buf) {
            let name = |layer| match layer {
                Layer::G2 => G2_UDP,
                Layer::Gta => SR_UDP,
            };
            return match d {
                Datagram::Ack { layer, key } => {
                    UdpVerdict::Proven(self.answer(side, key, name(layer), UDP_ACK))
                }
                Datagram::First { layer, key } => {
                    if let Some(own) = self.last.get_mut(side) {
                        *own = key;
                    }
                    UdpVerdict::Proven(found(name(layer)))
                }
                // A later fragment proves nothing alone, but does after a
                // valid first fragment of the same sequence.
                Datagram::Fragment { layer, key } if self.last.get(side) == Some(&key) => {
                    UdpVerdict::Proven(found(name(layer)))
                }
                Datagram::Fragment { .. } => UdpVerdict::Plausible,
            };
        }
        let mut first_key = None;
        let mut reply = false;
        let other = self.last.get(side ^ 1).copied().unwrap_or(0);
        let whole = whole_messages(buf, |m| {
            let key = m.guid_key();
            first_key.get_or_insert(key);
            reply |= key == other;
        });
        if !whole {
            return UdpVerdict::Foreign;
        }
        if let (Some(own), Some(key)) = (self.last.get_mut(side), first_key) {
            *own = key;
        }
        UdpVerdict::Proven(if reply {
            Evidence {
                strength: Confidence::Bidirectional,
                ..found(REPLY)
            }
        } else {
            found(MESSAGE)
        })
    }
}

/// What one UDP datagram showed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum UdpVerdict {
    /// Evidence.
    Proven(Evidence),
    /// It may be ours but proves nothing alone (a later fragment).
    Plausible,
    /// It cannot be Gnutella.
    Foreign,
}

/// Unidirectional evidence named `name`.
fn found(name: &'static str) -> Evidence {
    Evidence {
        protocol: Protocol::Gnutella,
        name,
        strength: Confidence::Unidirectional,
    }
}

/// The Gnutella / Gnutella2 detector.
#[derive(Debug, Default)]
pub struct Gnutella;

impl Detector for Gnutella {
    type State = State;
    const NAME: &'static str = "gnutella";
    const EVIDENCE: &'static [&'static str] = &[
        HANDSHAKE, HTTP, GIV, MESSAGE, REPLY, G2_UDP, SR_UDP, UDP_ACK,
    ];

    fn interest(&self) -> Interest {
        Interest {
            transport: None,
            max_payload_packets: MAX_PACKETS,
        }
    }

    fn inspect(
        &self,
        state: &mut State,
        packet: &PacketView<'_>,
        facts: &mut FactSink<'_>,
    ) -> Probe {
        let side = packet.direction.index();
        let buf = packet.payload;
        if buf.is_empty() {
            return Probe::NeedMore;
        }
        let evidence = match packet.transport {
            Transport::Udp => {
                // Lengths are checked exactly: a datagram cut short by the
                // snap length can be neither proven nor refuted.
                if packet.truncated {
                    return Probe::NeedMore;
                }
                match state.udp(side, buf) {
                    UdpVerdict::Proven(e) => {
                        learn_pongs(buf, facts);
                        Some(e)
                    }
                    UdpVerdict::Plausible => None,
                    // The first datagram decides whether to keep looking.
                    UdpVerdict::Foreign if state.flags & bit::MATCHED == 0 => {
                        return Probe::NotMine;
                    }
                    UdpVerdict::Foreign => None,
                }
            }
            Transport::Tcp => {
                let e = state.tcp(side, buf, facts);
                // A connection whose first payload is no opening we know is
                // not ours; nor one where neither side has more to show.
                if e.is_none() && (state.kind == Kind::Unknown || state.phase == [Phase::Done; 2]) {
                    return Probe::NotMine;
                }
                e
            }
        };
        match evidence {
            Some(e) => {
                state.flags |= bit::MATCHED;
                Probe::Match(e)
            }
            None => Probe::NeedMore,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use proptest::prelude::*;

    use super::*;
    use crate::detect::Facts;
    use crate::flow::{Direction, Endpoint};
    use crate::timestamp::Timestamp;

    const O: Direction = Direction::Originator;
    const R: Direction = Direction::Responder;
    const TCP: Transport = Transport::Tcp;
    const UDP: Transport = Transport::Udp;

    /// Drives the detector over one flow the way the engine does: packets
    /// numbered per side, at most [`MAX_PACKETS`] per side, nothing after
    /// `NotMine`.
    #[derive(Default)]
    struct Flow {
        state: State,
        facts: Option<Box<Facts>>,
        index: [u16; 2],
        retired: bool,
    }

    impl Flow {
        fn packet(&mut self, direction: Direction, transport: Transport, payload: &[u8]) -> Probe {
            self.send(direction, transport, payload, false)
        }

        fn send(
            &mut self,
            direction: Direction,
            transport: Transport,
            payload: &[u8],
            truncated: bool,
        ) -> Probe {
            if self.retired {
                return Probe::NotMine;
            }
            let side = direction.index();
            self.index[side] += 1;
            let index = self.index[side];
            if index > Gnutella.interest().max_payload_packets {
                return Probe::NeedMore;
            }
            let ep = Endpoint::new(IpAddr::from([192, 0, 2, 1]), 6346);
            let view = PacketView {
                payload,
                direction,
                index,
                transport,
                src: ep,
                dst: ep,
                ts: Timestamp(0),
                truncated,
            };
            let mut sink = FactSink::new(&mut self.facts, direction);
            let probe = Gnutella.inspect(&mut self.state, &view, &mut sink);
            self.retired = probe == Probe::NotMine;
            probe
        }

        fn client(&self, direction: Direction) -> Option<&str> {
            self.facts.as_ref()?.client[direction.index()].as_deref()
        }
    }

    fn uni(name: &'static str) -> Probe {
        Probe::Match(found(name))
    }

    fn bi(name: &'static str) -> Probe {
        Probe::Match(Evidence {
            strength: Confidence::Bidirectional,
            ..found(name)
        })
    }

    /// One Gnutella message: header (\[G06\] 2.3) and payload.
    fn message(guid: u8, function: u8, ttl: u8, hops: u8, payload: &[u8]) -> Vec<u8> {
        let mut m: Vec<u8> = (0..16u8)
            .map(|i| guid.wrapping_mul(31).wrapping_add(i * 7))
            .collect();
        m[8] = 0xff;
        m.extend_from_slice(&[function, ttl, hops]);
        m.extend_from_slice(&u32::try_from(payload.len()).unwrap().to_le_bytes());
        m.extend_from_slice(payload);
        m
    }

    /// A pong payload: port, IP, files, kilobytes, then a GGEP block.
    const PONG: &[u8] = b"\xca\x18\x0a\x00\x00\x01\x10\x00\x00\x00\x00\x20\x00\x00\xc3\x82DU\x41";
    /// A GUESS ping payload: a GGEP block asking for a query key.
    const PING_GGEP: &[u8] = b"\xc3\x82QK\x40";

    /// A Mojito payload: opcode, contact (vendor, version, KUID, IPv4
    /// socket address), instance id, flags, extended length.
    fn mojito(opcode: u8) -> Vec<u8> {
        let mut p = vec![opcode];
        p.extend_from_slice(b"GTKG\x00\x00");
        p.extend_from_slice(&[0x5a; 20]);
        p.extend_from_slice(&[4, 192, 0, 2, 7, 0x1a, 0x0a]);
        p.extend_from_slice(&[1, 0, 0, 0]);
        p
    }

    /// A transceiver header (\[G2-UDP\] 2.1).
    fn transceiver(
        tag: &[u8; 3],
        flags: u8,
        seq: u16,
        part: u8,
        count: u8,
        body: &[u8],
    ) -> Vec<u8> {
        let mut d = tag.to_vec();
        d.push(flags);
        d.extend_from_slice(&seq.to_le_bytes());
        d.extend_from_slice(&[part, count]);
        d.extend_from_slice(body);
        d
    }

    /// `/QKR` with one child `/RNA` (a 6-byte address), as a Gnutella2
    /// servent asks a hub for a query key (\[G2-PKT\]).
    const QKR: &[u8] = b"\x54\x0bQKR\x50\x06RNA\xc0\x00\x02\x07\x1a\x0a";

    const CONNECT: &[u8] = b"GNUTELLA CONNECT/0.6\r\n\
        User-Agent: LimeWire/5.5.16\r\n\
        X-Ultrapeer: False\r\n\
        X-Query-Routing: 0.2\r\n\
        Accept-Encoding: deflate\r\n\r\n";
    const ACCEPT: &[u8] = b"GNUTELLA/0.6 200 OK\r\n\
        User-Agent: BearShare 5.2.5\r\n\
        X-Ultrapeer: True\r\n\
        X-Try-Ultrapeers: 192.0.2.4:6346,\r\n\t198.51.100.8:6346\r\n\r\n";
    const CONFIRM: &[u8] = b"GNUTELLA/0.6 200 OK\r\n\r\n";

    #[test]
    fn handshake_06_each_step_and_user_agents() {
        let mut f = Flow::default();
        assert_eq!(f.packet(O, TCP, CONNECT), uni(HANDSHAKE));
        assert_eq!(f.packet(R, TCP, ACCEPT), uni(HANDSHAKE));
        assert_eq!(f.packet(O, TCP, CONFIRM), uni(HANDSHAKE));
        assert_eq!(f.client(O), Some("LimeWire/5.5.16"));
        assert_eq!(f.client(R), Some("BearShare 5.2.5"));
    }

    #[test]
    fn handshake_refused_with_folded_headers() {
        let refusal = b"GNUTELLA/0.6 503 Too many leaf connections (300 max)\r\n\
            user-agent: gtk-gnutella/1.2.2 (2022-02-25; GTK2; Linux x86_64)\r\n\
            X-Try-Ultrapeers: 192.0.2.1:6346, 192.0.2.2:6346,\r\n\
            \t192.0.2.3:6346\r\n\r\n";
        let mut f = Flow::default();
        assert_eq!(f.packet(O, TCP, CONNECT), uni(HANDSHAKE));
        assert_eq!(f.packet(R, TCP, refusal), uni(HANDSHAKE));
        assert_eq!(
            f.client(R),
            Some("gtk-gnutella/1.2.2 (2022-02-25; GTK2; Linux x86_64)")
        );
        // Nothing follows a refusal.
        assert_eq!(f.packet(O, TCP, b"anything"), Probe::NotMine);
    }

    #[test]
    fn handshake_header_block_split_across_segments() {
        // Split inside a header line, then between the CR and LF of the
        // blank line.
        let (a, rest) = CONNECT.split_at(40);
        let (b, c) = rest.split_at(rest.len() - 1);
        assert!(b.ends_with(b"\r\n\r"));
        let mut f = Flow::default();
        assert_eq!(f.packet(O, TCP, a), uni(HANDSHAKE));
        assert_eq!(f.packet(O, TCP, b), Probe::NeedMore);
        assert_eq!(f.packet(O, TCP, c), Probe::NeedMore);
        assert_eq!(f.state.phase[0], Phase::AwaitStatus);
        assert_eq!(f.packet(R, TCP, ACCEPT), uni(HANDSHAKE));
        assert_eq!(f.packet(O, TCP, CONFIRM), uni(HANDSHAKE));
    }

    #[test]
    fn handshake_04_then_ping_and_pong() {
        let ping = message(7, function::PING, 7, 0, b"");
        let pong = message(7, function::PONG, 7, 0, PONG);
        let mut f = Flow::default();
        assert_eq!(
            f.packet(O, TCP, b"GNUTELLA CONNECT/0.4\n\n"),
            uni(HANDSHAKE)
        );
        assert_eq!(f.packet(R, TCP, b"GNUTELLA OK\n\n"), uni(HANDSHAKE));
        assert_eq!(f.packet(O, TCP, &ping), uni(MESSAGE));
        assert_eq!(f.packet(R, TCP, &pong), bi(REPLY));
    }

    #[test]
    fn tcp_messages_checked_only_when_not_deflated() {
        let ping = message(9, function::PING, 1, 0, b"");
        let plain = b"GNUTELLA/0.6 200 OK\r\nUser-Agent: Phex 3.4\r\n\r\n";
        let deflated = b"GNUTELLA/0.6 200 OK\r\nContent-Encoding: deflate\r\n\r\n";
        let mut f = Flow::default();
        f.packet(O, TCP, CONNECT);
        f.packet(R, TCP, plain);
        assert_eq!(f.packet(O, TCP, deflated), uni(HANDSHAKE));
        // The originator's stream is deflated: its bytes are not messages.
        assert_eq!(f.packet(O, TCP, &ping), Probe::NeedMore);
        assert_eq!(f.packet(R, TCP, &ping), uni(MESSAGE));

        // Messages in the same segment as the confirmation.
        let mut f = Flow::default();
        f.packet(O, TCP, CONNECT);
        f.packet(R, TCP, plain);
        let mut confirm = CONFIRM.to_vec();
        confirm.extend_from_slice(&ping);
        assert_eq!(f.packet(O, TCP, &confirm), uni(MESSAGE));

        // A TLS upgrade: what follows is TLS, not messages.
        let mut f = Flow::default();
        f.packet(O, TCP, CONNECT);
        f.packet(R, TCP, plain);
        f.packet(
            O,
            TCP,
            b"GNUTELLA/0.6 200 OK\r\nConnection: Upgrade\r\n\r\n",
        );
        assert_eq!(f.packet(R, TCP, &ping), Probe::NeedMore);
    }

    #[test]
    fn handshake_grammar_is_checked() {
        let bad: &[&[u8]] = &[
            b"GNUTELLA CONNECT/0.6\r\nno colon here\r\n\r\n",
            b"GNUTELLA CONNECT/0.6\r\nBad Name: x\r\n\r\n",
            b"GNUTELLA CONNECT/0.6\r\nUser-Agent: a\x01b\r\n\r\n",
            b"GNUTELLA CONNECT/x.y\r\n\r\n",
            b"GNUTELLA CONNECT/0.6 \r\n\r\n",
            b"GNUTELLA CONNECT/0.4\n",
            b"GNUTELLA/0.6 2000 OK\r\n\r\n",
            b"GNUTELLA/0.6 700 OK\r\n\r\n",
            b"GNUTELLA/0.6 200OK\r\n\r\n",
            b"GNUTELLA CONNECT/0.6",
        ];
        for payload in bad {
            let mut f = Flow::default();
            let probe = f.packet(O, TCP, payload);
            assert!(
                !matches!(probe, Probe::Match(_)),
                "{:?}",
                String::from_utf8_lossy(payload)
            );
        }
    }

    /// A download request as gtk-gnutella sends it (HUGE, \[HUGE\] 4).
    const URI_RES: &[u8] =
        b"GET /uri-res/N2R?urn:sha1:PLSTHIPQGSSZTS5FJUPAKUZWUGYQYPFB HTTP/1.1\r\n\
        User-Agent: gtk-gnutella/1.2.2\r\n\
        Host: 192.0.2.9:6346\r\n\
        Range: bytes=0-1023\r\n\r\n";
    /// An upload answer as Shareaza sends it.
    const UPLOAD: &[u8] = b"HTTP/1.1 206 OK\r\n\
        Server: Shareaza 2.7.10.2\r\n\
        Content-Range: bytes 0-1023/4096\r\n\
        X-Content-URN: urn:sha1:PLSTHIPQGSSZTS5FJUPAKUZWUGYQYPFB\r\n\
        X-Thex-URI: /gnutella/thex/v1?urn:tree:tiger/:QSGTPJ7DSMZJKUOVJGQWYZJ3RBSPOCK6IR3DABI&depth=9\r\n\r\n\
        \x00\x01binary";

    #[test]
    fn http_download_between_servents() {
        let mut f = Flow::default();
        assert_eq!(f.packet(O, TCP, URI_RES), uni(HTTP));
        assert_eq!(f.packet(R, TCP, UPLOAD), uni(HTTP));
        assert_eq!(f.client(O), Some("gtk-gnutella/1.2.2"));
        assert_eq!(f.client(R), Some("Shareaza 2.7.10.2"));
    }

    #[test]
    fn http_requests_by_target_and_by_header() {
        let matching: &[&[u8]] = &[
            b"GET /uri-res/N2R?urn:bitprint:PLSTHIPQGSSZTS5FJUPAKUZWUGYQYPFB.QSGTPJ7DSMZJKUOVJGQWYZJ3RBSPOCK6IR3DABI HTTP/1.0\r\n\r\n",
            b"HEAD /uri-res/N2R?urn:sha1:PLSTHIPQGSSZTS5FJUPAKUZWUGYQYPFB HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET /gnutella/thex/v1?urn:tree:tiger/:QSGTPJ7DSMZJKUOVJGQWYZJ3RBSPOCK6IR3DABI&depth=9 HTTP/1.1\r\n\r\n",
            b"GET /gnutella/push-proxy?ServerId=ABCDEFGHIJKLMNOPQRSTUV HTTP/1.1\r\n\r\n",
            b"GET /gnet/push-proxy?guid=0123456789ABCDEF0123456789ABCDEF HTTP/1.1\r\n\r\n",
            b"GET /get/12/My Song.mp3 HTTP/1.1\r\nUser-Agent: BearShare\r\nX-Alt: 192.0.2.1:6346\r\n\r\n",
            b"GET /get/3/a.ogg HTTP/1.1\r\nx-gnutella-content-urn: urn:sha1:PLSTHIPQGSSZTS5FJUPAKUZWUGYQYPFB\r\n\r\n",
            b"GET / HTTP/1.1\r\nAccept: text/html, application/x-gnutella-packets\r\n\r\n",
        ];
        for payload in matching {
            let mut f = Flow::default();
            assert_eq!(
                f.packet(O, TCP, payload),
                uni(HTTP),
                "{:?}",
                String::from_utf8_lossy(payload)
            );
        }
        let plain: &[&[u8]] = &[
            // /get/ without a servent header is any web server's path.
            b"GET /get/12/file.zip HTTP/1.1\r\nHost: example.com\r\nUser-Agent: Mozilla/5.0\r\n\r\n",
            b"GET /uri-res/N2R?urn:sha1:TOOSHORT HTTP/1.1\r\n\r\n",
            b"GET /uri-res/N2R?urn:sha1:PLSTHIPQGSSZTS5FJUPAKUZWUGYQYPFB&x=1 HTTP/1.1\r\n\r\n",
            b"GET /uri-res/N2R?urn:md5:PLSTHIPQGSSZTS5FJUPAKUZWUGYQYPFB HTTP/1.1\r\n\r\n",
            b"GET /gnutella/thex/ HTTP/1.1\r\n\r\n",
            b"POST /uri-res/N2R?urn:sha1:PLSTHIPQGSSZTS5FJUPAKUZWUGYQYPFB HTTP/1.1\r\n\r\n",
            b"GET /index.html HTTP/1.1\r\nX-Forwarded-For: 192.0.2.1\r\nX-Real-IP: 192.0.2.1\r\n\r\n",
        ];
        for payload in plain {
            let mut f = Flow::default();
            assert!(
                !matches!(f.packet(O, TCP, payload), Probe::Match(_)),
                "{:?}",
                String::from_utf8_lossy(payload)
            );
        }
    }

    #[test]
    fn http_servent_header_in_a_later_segment() {
        let mut f = Flow::default();
        assert_eq!(
            f.packet(
                O,
                TCP,
                b"GET /get/12/song.mp3 HTTP/1.1\r\nHost: 192.0.2.9\r\nUser-Ag"
            ),
            Probe::NeedMore
        );
        assert_eq!(
            f.packet(O, TCP, b"ent: LimeWire\r\nX-Queue: 0.1\r\n\r\n"),
            uni(HTTP)
        );
    }

    #[test]
    fn giv_then_the_upload() {
        let mut f = Flow::default();
        let giv = b"GIV 36:6f2d9e4c1e9b11d8a5b0c2d3e4f50617/Some File.mp3\n\n";
        assert_eq!(f.packet(O, TCP, giv), uni(GIV));
        // The servent that pushed now answers the download request.
        assert_eq!(f.packet(R, TCP, URI_RES), uni(HTTP));
        assert_eq!(f.packet(O, TCP, UPLOAD), uni(HTTP));

        let bad: &[&[u8]] = &[
            b"GIV 36:6f2d9e4c1e9b11d8a5b0c2d3e4f5061/x\n\n",
            b"GIV x:6f2d9e4c1e9b11d8a5b0c2d3e4f50617/x\n\n",
            b"GIV 36:6f2d9e4c1e9b11d8a5b0c2d3e4f50617/x\n",
            b"GIV 36:6f2d9e4c1e9b11d8a5b0c2d3e4f5061z/x\n\n",
        ];
        for payload in bad {
            assert_eq!(Flow::default().packet(O, TCP, payload), Probe::NotMine);
        }
    }

    #[test]
    fn pongs_feed_the_endpoint_cache() {
        let pong = message(7, function::PONG, 1, 0, PONG);
        let (mut facts, mut learnt) = (None, Vec::new());
        learn_pongs(
            &pong,
            &mut FactSink::with_learnt(&mut facts, Direction::Responder, &mut learnt),
        );
        let got: Vec<String> = learnt.iter().map(|l| l.endpoint.to_string()).collect();
        // PONG's first bytes: port 0x18ca little-endian, then 10.0.0.1.
        assert_eq!(got, vec!["10.0.0.1:6346"]);
    }

    #[test]
    fn udp_ping_answered_by_pong() {
        let mut f = Flow::default();
        let ping = message(1, function::PING, 1, 0, PING_GGEP);
        assert_eq!(f.packet(O, UDP, &ping), uni(MESSAGE));
        let unrelated = message(2, function::PONG, 1, 0, PONG);
        assert_eq!(f.packet(R, UDP, &unrelated), uni(MESSAGE));
        let pong = message(1, function::PONG, 1, 0, PONG);
        assert_eq!(f.packet(R, UDP, &pong), bi(REPLY));
    }

    #[test]
    fn udp_mojito_request_and_response() {
        let mut f = Flow::default();
        // Mojito reuses TTL and hops as its version, 0.0.
        assert_eq!(
            f.packet(O, UDP, &message(3, function::MOJITO, 0, 0, &mojito(0x05))),
            uni(MESSAGE)
        );
        assert_eq!(
            f.packet(R, UDP, &message(3, function::MOJITO, 0, 0, &mojito(0x06))),
            bi(REPLY)
        );
        // An unknown opcode or address length is not Mojito.
        let mut bad = mojito(0x0b);
        assert_eq!(
            Flow::default().packet(O, UDP, &message(3, 0x44, 0, 0, &bad)),
            Probe::NotMine
        );
        bad[0] = 1;
        bad[field::MOJITO_ADDR_LEN] = 5;
        assert_eq!(
            Flow::default().packet(O, UDP, &message(3, 0x44, 0, 0, &bad)),
            Probe::NotMine
        );
    }

    #[test]
    fn udp_datagram_of_several_messages() {
        let mut d = message(4, function::PING, 1, 0, b"");
        d.extend(message(5, function::QUERY, 2, 1, b"\x00\x00linux\x00"));
        assert_eq!(Flow::default().packet(O, UDP, &d), uni(MESSAGE));
        // One byte too many or too few breaks the sum.
        d.push(0);
        assert_eq!(Flow::default().packet(O, UDP, &d), Probe::NotMine);
        d.truncate(d.len() - 2);
        assert_eq!(Flow::default().packet(O, UDP, &d), Probe::NotMine);
    }

    #[test]
    fn udp_message_header_checks() {
        let good = message(6, function::PING, 1, 0, b"");
        assert_eq!(Flow::default().packet(O, UDP, &good), uni(MESSAGE));
        let bad: Vec<Vec<u8>> = vec![
            message(6, 0x05, 1, 0, b""),                   // unknown function
            message(6, function::PING, 0, 0, b""),         // TTL 0
            message(6, function::PING, 16, 0, b""),        // TTL too large
            message(6, function::PING, 9, 8, b""),         // TTL + hops too large
            message(6, function::PING, 1, 0, b"\x01\x02"), // not GGEP
            message(6, function::PONG, 1, 0, &PONG[..10]), // pong too short
            message(6, function::PUSH, 1, 0, &[1; 20]),    // push too short
            vec![0; 23],                                   // zero GUID
            vec![0; 46],
        ];
        for d in &bad {
            assert_eq!(
                Flow::default().packet(O, UDP, d),
                Probe::NotMine,
                "{d:02x?}"
            );
        }
        // A datagram cut by the snap length is left undecided.
        let mut f = Flow::default();
        assert_eq!(f.send(O, UDP, &good[..20], true), Probe::NeedMore);
        assert_eq!(f.packet(O, UDP, &good), uni(MESSAGE));
    }

    #[test]
    fn g2_udp_datagrams() {
        let qkr = transceiver(b"GND", 0x02, 0x1234, 1, 1, QKR);
        let mut f = Flow::default();
        assert_eq!(f.packet(O, UDP, &qkr), uni(G2_UDP));
        // The hub acknowledges that sequence.
        assert_eq!(
            f.packet(R, UDP, &transceiver(b"GND", 0, 0x1234, 1, 0, b"")),
            bi(UDP_ACK)
        );

        let good: Vec<Vec<u8>> = vec![
            // gtk-gnutella sets the non-critical 0x10.
            transceiver(b"GND", 0x10, 7, 1, 1, QKR),
            // /PI, empty; /PO with big-endian length.
            transceiver(b"GND", 0, 7, 1, 1, b"\x08PI"),
            transceiver(b"GND", 0, 7, 1, 1, b"\x8a\x00\x02POab"),
            // The first of three fragments: the packet goes on.
            transceiver(b"GND", 0, 7, 1, 3, b"\x54\xffQH2rest"),
            // Deflated.
            transceiver(b"GND", 0x01, 7, 1, 1, b"\x78\x9c\xeb\x29\x67\x0c"),
            // An acknowledgement, plain and extended.
            transceiver(b"GND", 0, 7, 1, 0, b""),
            transceiver(b"GND", 0x30, 7, 2, 0, b"\x02\x00\x00\x01"),
        ];
        for d in &good {
            assert_eq!(Flow::default().packet(O, UDP, d), uni(G2_UDP), "{d:02x?}");
        }
        let bad: Vec<Vec<u8>> = vec![
            transceiver(b"GND", 0x04, 7, 1, 1, QKR), // unknown critical flag
            transceiver(b"GND", 0, 7, 0, 1, QKR),    // part 0
            transceiver(b"GND", 0, 7, 3, 2, QKR),    // part > count
            transceiver(b"GND", 0, 7, 1, 1, &QKR[..QKR.len() - 1]), // length short
            transceiver(b"GND", 0, 7, 1, 1, b"\x08pi"), // lower-case name
            transceiver(b"GND", 0, 7, 1, 1, b"\x092I"), // reserved control flag
            transceiver(b"GND", 0, 7, 1, 1, b"\x0cPI"), // compound but empty
            transceiver(b"GND", 0x01, 7, 1, 1, b"\x78\x9d\xeb"), // bad zlib check bits
            transceiver(b"GND", 0x01, 7, 1, 1, b"\x78\x9c\x07"), // reserved block type
            transceiver(b"GND", 0, 7, 1, 0, b"x"),   // ack with payload
            transceiver(b"GND", 0x01, 7, 1, 0, b""), // deflated ack
            transceiver(b"GND", 0, 7, 1, 1, b""),    // no packet
            b"GND".to_vec(),
        ];
        for d in &bad {
            assert_eq!(
                Flow::default().packet(O, UDP, d),
                Probe::NotMine,
                "{d:02x?}"
            );
        }
    }

    #[test]
    fn g2_later_fragments_need_the_first() {
        let mut f = Flow::default();
        assert_eq!(
            f.packet(O, UDP, &transceiver(b"GND", 0, 9, 2, 2, b"tail")),
            Probe::NeedMore
        );
        assert_eq!(
            f.packet(O, UDP, &transceiver(b"GND", 0, 9, 1, 2, b"\x54\xffQH2rest")),
            uni(G2_UDP)
        );
        assert_eq!(
            f.packet(O, UDP, &transceiver(b"GND", 0, 9, 2, 2, b"tail")),
            uni(G2_UDP)
        );
    }

    #[test]
    fn semi_reliable_udp_carries_messages() {
        let ping = message(8, function::PING, 1, 0, b"");
        let mut f = Flow::default();
        assert_eq!(
            f.packet(O, UDP, &transceiver(b"GTA", 0x02, 5, 1, 1, &ping)),
            uni(SR_UDP)
        );
        assert_eq!(
            f.packet(R, UDP, &transceiver(b"GTA", 0x10, 5, 1, 0, b"")),
            bi(UDP_ACK)
        );
        // A G2 packet inside GTA, or a GTA ack of a GND sequence, is not.
        assert_eq!(
            Flow::default().packet(O, UDP, &transceiver(b"GTA", 0, 5, 1, 1, QKR)),
            Probe::NotMine
        );
        let mut f = Flow::default();
        f.packet(O, UDP, &transceiver(b"GND", 0x02, 5, 1, 1, QKR));
        assert_eq!(
            f.packet(R, UDP, &transceiver(b"GTA", 0, 5, 1, 0, b"")),
            uni(SR_UDP)
        );
    }

    /// A small deterministic generator (xorshift64*) for random payloads.
    fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
        let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        (0..len)
            .map(|_| {
                x ^= x >> 12;
                x ^= x << 25;
                x ^= x >> 27;
                (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8
            })
            .collect()
    }

    /// Look-alikes that must never be named Gnutella.
    fn look_alikes() -> Vec<(&'static str, Transport, Vec<u8>)> {
        let mut dns_query = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00".to_vec();
        dns_query.extend_from_slice(b"\x07example\x03com\x00\x00\x01\x00\x01");
        let mut dns_answer = dns_query.clone();
        dns_answer[2..4].copy_from_slice(b"\x81\x80");
        dns_answer[7] = 1;
        dns_answer
            .extend_from_slice(b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x0e\x10\x00\x04\xc0\x00\x02\x01");
        let mut stun = b"\x00\x01\x00\x08\x21\x12\xa4\x42".to_vec();
        stun.extend(random_bytes(1, 12));
        stun.extend_from_slice(b"\x80\x22\x00\x04test");
        let mut quic_initial = b"\xc3\x00\x00\x00\x01\x08".to_vec();
        quic_initial.extend(random_bytes(2, 8));
        quic_initial.extend_from_slice(b"\x00\x00\x44\xd0");
        quic_initial.extend(random_bytes(3, 1180));
        let mut quic_short = vec![0x47];
        quic_short.extend(random_bytes(4, 60));
        let mut quic_short_gnd = b"GND".to_vec();
        quic_short_gnd.extend(random_bytes(5, 45));
        let mut tls = b"\x16\x03\x01\x00\xc8\x01\x00\x00\xc4\x03\x03".to_vec();
        tls.extend(random_bytes(6, 190));
        // A 23-byte-aligned datagram shaped like a message whose length
        // field does not match.
        let mut aligned = message(9, function::PING, 1, 0, b"");
        aligned[field::LENGTH] = 5;
        aligned.extend(random_bytes(7, 23));
        let mut aligned_random = random_bytes(8, 46);
        aligned_random[field::FUNCTION] = function::PING;
        aligned_random[field::TTL] = 1;
        aligned_random[field::HOPS] = 0;
        vec![
            ("dns query", UDP, dns_query),
            ("dns answer", UDP, dns_answer),
            ("stun binding request", UDP, stun),
            ("quic initial", UDP, quic_initial),
            ("quic short header", UDP, quic_short),
            ("quic short header starting GND", UDP, quic_short_gnd),
            ("tls client hello", TCP, tls),
            ("misaligned message", UDP, aligned),
            ("aligned random", UDP, aligned_random),
            (
                "browser request",
                TCP,
                b"GET /index.html HTTP/1.1\r\nHost: example.com\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64)\r\n\
                  Accept: text/html\r\nX-Forwarded-For: 192.0.2.1\r\n\r\n"
                    .to_vec(),
            ),
            (
                "web server response",
                TCP,
                b"HTTP/1.1 200 OK\r\nServer: nginx/1.24.0\r\nContent-Type: text/html\r\nX-Node: web-3\r\n\
                  X-Queue-Time: 1\r\nContent-Length: 5\r\n\r\nhello"
                    .to_vec(),
            ),
            (
                "ssdp search",
                UDP,
                b"M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nMAN: \"ssdp:discover\"\r\nMX: 1\r\nST: ssdp:all\r\n\r\n"
                    .to_vec(),
            ),
            (
                "ssdp answer",
                UDP,
                b"HTTP/1.1 200 OK\r\nCACHE-CONTROL: max-age=1800\r\nST: upnp:rootdevice\r\nUSN: uuid:1::upnp:rootdevice\r\n\r\n"
                    .to_vec(),
            ),
        ]
    }

    #[test]
    fn look_alikes_never_match() {
        for (what, transport, payload) in look_alikes() {
            for first in [O, R] {
                let mut f = Flow::default();
                let probe = f.packet(first, transport, &payload);
                assert!(
                    !matches!(probe, Probe::Match(_)),
                    "{what} matched: {probe:?}"
                );
                // Even as an answer to a real Gnutella packet.
                let mut f = Flow::default();
                let opener = match transport {
                    Transport::Tcp => CONNECT.to_vec(),
                    Transport::Udp => message(1, function::PING, 1, 0, b""),
                };
                f.packet(first, transport, &opener);
                let probe = f.packet(first.reverse(), transport, &payload);
                assert!(
                    !matches!(probe, Probe::Match(_)),
                    "{what} matched as an answer: {probe:?}"
                );
            }
        }
        // A browser download: request then response.
        let mut f = Flow::default();
        assert_eq!(
            f.packet(
                O,
                TCP,
                b"GET /downloads/file.iso HTTP/1.1\r\nHost: example.com\r\nRange: bytes=0-\r\n\r\n"
            ),
            Probe::NeedMore
        );
        assert_eq!(
            f.packet(R, TCP, b"HTTP/1.1 206 Partial Content\r\nAccept-Ranges: bytes\r\nContent-Range: bytes 0-9/10\r\n\r\n0123456789"),
            Probe::NotMine
        );
    }

    #[test]
    fn random_bytes_never_match() {
        for seed in 0..400u64 {
            for transport in [TCP, UDP] {
                let len = usize::try_from(seed * 37 % 1500).unwrap();
                let payload = random_bytes(seed, len);
                let mut f = Flow::default();
                for direction in [O, R, O, R] {
                    let probe = f.packet(direction, transport, &payload);
                    assert!(
                        !matches!(probe, Probe::Match(_)),
                        "seed {seed} {transport:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn empty_payloads_prove_nothing() {
        for transport in [TCP, UDP] {
            let mut f = Flow::default();
            assert_eq!(f.packet(O, transport, b""), Probe::NeedMore);
            assert_eq!(f.packet(R, transport, b""), Probe::NeedMore);
        }
    }

    #[test]
    fn state_is_small() {
        assert!(
            std::mem::size_of::<State>() <= 16,
            "{}",
            std::mem::size_of::<State>()
        );
    }

    #[test]
    fn evidence_is_declared() {
        assert!(
            Gnutella::EVIDENCE
                .iter()
                .all(|e| e.starts_with("gnutella."))
        );
        let mut names = Gnutella::EVIDENCE.to_vec();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Gnutella::EVIDENCE.len());
    }

    /// Every valid sample above, for the prefix and mutation tests.
    fn samples() -> Vec<(Transport, Vec<u8>)> {
        let mut out: Vec<(Transport, Vec<u8>)> = [CONNECT, ACCEPT, CONFIRM, URI_RES, UPLOAD]
            .iter()
            .map(|s| (TCP, s.to_vec()))
            .collect();
        out.push((
            TCP,
            b"GIV 1:6f2d9e4c1e9b11d8a5b0c2d3e4f50617/x\n\n".to_vec(),
        ));
        out.push((UDP, message(1, function::PONG, 1, 0, PONG)));
        out.push((UDP, message(1, function::MOJITO, 0, 0, &mojito(1))));
        out.push((UDP, transceiver(b"GND", 2, 1, 1, 1, QKR)));
        out.push((
            UDP,
            transceiver(b"GTA", 2, 1, 1, 1, &message(1, 0, 1, 0, b"")),
        ));
        out
    }

    #[test]
    fn prefixes_of_valid_packets_never_panic() {
        for (transport, sample) in samples() {
            for cut in 0..=sample.len() {
                let mut f = Flow::default();
                f.packet(O, transport, &sample[..cut]);
                f.packet(O, transport, &sample[cut..]);
                f.packet(R, transport, &sample[..cut]);
                f.send(R, transport, &sample[cut..], true);
            }
        }
    }

    proptest! {
        #[test]
        fn never_panics(
            packets in proptest::collection::vec(
                (any::<bool>(), any::<bool>(), any::<bool>(), proptest::collection::vec(any::<u8>(), 0..200)),
                1..8,
            ),
            sample in 0usize..10,
            flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..4),
        ) {
            // Random packets after a valid one, and a valid one mutated.
            let (transport, mut valid) = samples().swap_remove(sample);
            let mut f = Flow::default();
            f.packet(O, transport, &valid);
            for (resp, udp, truncated, payload) in &packets {
                let t = if *udp { UDP } else { TCP };
                f.send(if *resp { R } else { O }, t, payload, *truncated);
            }
            for (at, byte) in flips {
                if !valid.is_empty() {
                    let i = at % valid.len();
                    valid[i] ^= byte;
                }
            }
            let mut f = Flow::default();
            f.packet(O, transport, &valid);
            f.packet(R, transport, &valid);
        }
    }
}
