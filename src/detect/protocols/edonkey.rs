//! eDonkey2000 / eMule and Kad (Kademlia): a structural detector.
//!
//! Three wire formats share the protocol name `edonkey`:
//!
//! - **eDonkey TCP**, client–server and client–client: a stream of messages,
//!   each `<marker 1><length u32 LE><opcode 1><payload>`, where the length
//!   counts the opcode and the payload. Markers: `0xE3` eDonkey, `0xC5` eMule
//!   extended, `0xD4` eMule zlib-packed (the opcode, then a zlib stream).
//! - **eDonkey UDP**: `<marker 1><opcode 1><payload>`, no length field:
//!   server UDP (`0xE3`) and eMule client UDP (`0xC5`).
//! - **Kad** (Kademlia, eMule 0.47+ and aMule), UDP: `<0xE4><opcode><payload>`
//!   or `<0xE5><opcode><zlib stream>`.
//!
//! The reference is the source of eMule (`Opcodes.h`, `UDPSocket.cpp`,
//! `ClientUDPSocket.cpp`, `ServerList.cpp`) and aMule
//! (`src/include/protocol/**`, `KademliaUDPListener.cpp`); every check below
//! names the opcode and layout it relies on.
//!
//! # What counts as evidence
//! - **TCP**: the first payload packet of each side must be whole messages,
//!   back to back, ending exactly at the end of the packet, each with a known
//!   opcode for its marker and a payload that fits that opcode's layout.
//!   The last message may run past the end of the packet only if the packet
//!   is full-sized (at least 536 bytes, RFC 879's default MSS, or cut by the
//!   snap length): a sender with more to send than one segment fills the
//!   segment. If that message is the first of the packet, its opcode must be
//!   one whose layout is checkable from its start (hello, file lists,
//!   strings, `OP_SENDINGPART` arithmetic, zlib header) and at least 64
//!   bytes of it must be visible, because then the length field itself
//!   proves nothing. One side matching is [`Confidence::Unidirectional`];
//!   both sides make the engine say bidirectional.
//! - **UDP**: one datagram is one message and its size must fit the opcode
//!   exactly (fixed sizes, counts times record sizes, walked tag lists).
//!   Datagrams with enough structure (at least a count, a tag list, a fixed
//!   challenge pattern, a checked type or file size) count alone as
//!   [`Confidence::Unidirectional`]. Those whose fields are only ids and
//!   ports at a fixed size (a non-restrictive keyword search, the second
//!   firewall check, Kad 1 hellos) fit random bytes of that size as well,
//!   and a flood of random UDP showed one in a million doing so: they
//!   count only when answered. Short ones with nothing to check
//!   (`KADEMLIA2_PING` = `E4 60`, `KADEMLIA2_BOOTSTRAP_REQ` = `E4 01`, a Kad
//!   `PONG`, `OP_QUEUEFULL` = `C5 93`, ...) are remembered as requests but
//!   are no evidence alone: two fixed bytes at a fixed size are hit by one
//!   flow in 65 536 of any protocol with random leading bytes. A reply from
//!   the other side that answers the remembered request (matching opcode
//!   pair, and the echoed challenge or target id where the protocol has
//!   one) is [`Confidence::Bidirectional`]. A datagram that is not a
//!   well-formed eDonkey or Kad message ends the look at the flow; so do
//!   plain datagrams to or from port 53, which eMule and aMule themselves
//!   refuse ("DNS protocol confusion"). Datagrams cut by the snap length are
//!   skipped: their size, the whole check, is unknown.
//!
//! # Out of scope
//! eMule's protocol obfuscation (TCP and UDP, random-looking from the first
//! byte) is not recognised; neither is a TCP flow whose capture starts in
//! the middle, since only a side's first payload packet is at a known
//! message boundary.

use std::fmt::Write as _;

use crate::decode::Transport;
use crate::detect::{
    Confidence, Detector, Evidence, FactSink, Interest, PacketView, Probe, Protocol,
};
use crate::flow::Direction;

/// Evidence: a side's first TCP packet opens with `OP_HELLO` or
/// `OP_HELLOANSWER` (client–client handshake, carrying the user hash).
const HELLO: &str = "edonkey.hello";
/// Evidence: a side's first TCP packet opens with `OP_LOGINREQUEST`
/// (client to server).
const LOGIN: &str = "edonkey.login";
/// Evidence: a side's first TCP packet is other well-formed eDonkey/eMule
/// messages.
const MESSAGE: &str = "edonkey.message";
/// Evidence: a Kad datagram whose layout fits its opcode exactly.
const KAD: &str = "edonkey.kad";
/// Evidence: a zlib-packed Kad datagram (`0xE5`, known opcode, zlib header).
const KAD_PACKED: &str = "edonkey.kad_packed";
/// Evidence: a Kad reply answering the other side's request.
const KAD_REPLY: &str = "edonkey.kad_reply";
/// Evidence: an eDonkey server UDP datagram whose layout fits its opcode.
const SERVER_UDP: &str = "edonkey.server_udp";
/// Evidence: an eDonkey server UDP reply answering the other side's request.
const SERVER_UDP_REPLY: &str = "edonkey.server_udp_reply";
/// Evidence: an eMule client UDP reply answering the other side's
/// `OP_REASKFILEPING`.
const CLIENT_UDP_REPLY: &str = "edonkey.client_udp_reply";

/// Payload packets looked at per side: TCP needs only the first; UDP a few,
/// to pair a request with its reply.
const PAYLOAD_PACKETS: u16 = 4;

/// Largest TCP message length accepted. Our own bound, far above what
/// clients send (file data travels in 10 KiB `OP_SENDINGPART` messages, long
/// lists are zlib-packed); it only keeps a random length field from passing
/// as "split across segments".
const MAX_MESSAGE_LEN: usize = 2 << 20;

/// A first TCP packet may end inside a message only if it is at least this
/// long: 536 bytes is the default MSS of RFC 879, no stack segments smaller.
const MIN_FULL_SEGMENT: usize = 536;

/// A first message split across segments must show at least this much of
/// its payload, so that its layout, not just its opcode, is checked.
const MIN_PARTIAL_BODY: usize = 64;

/// Most tags accepted in one tag list (hellos carry about ten).
const MAX_TAGS: usize = 128;

/// Longest tag name accepted (names are one-byte ids or short words such as
/// `"bitrate"`).
const MAX_TAG_NAME: usize = 64;

/// Smallest tag: type, one-byte name (new-style), one-byte value.
const MIN_TAG_LEN: usize = 3;

/// Most nodes accepted in one search expression (aMule refuses trees deeper
/// than 24).
const MAX_SEARCH_NODES: usize = 64;

/// Shortest zlib stream: 2-byte header, empty deflate block, Adler-32.
const ZLIB_MIN_LEN: usize = 8;

/// eMule and aMule drop unobfuscated Kad and eDonkey UDP from port 53 and
/// never send it there (`KademliaUDPListener.cpp`, "DNS protocol
/// confusion"), so plain datagrams on that port are DNS, not eDonkey.
const DNS_PORT: u16 = 53;

/// Byte offsets and sizes of the fixed parts of eDonkey and Kad messages.
mod field {
    use std::ops::Range;

    /// TCP message and UDP datagram: the protocol marker.
    pub const MARKER: usize = 0;
    /// TCP message: little-endian length of opcode plus payload.
    pub const LENGTH: Range<usize> = 1..5;
    /// TCP message: the opcode.
    pub const OPCODE: usize = 5;
    /// TCP message: the first payload byte (also the header length).
    pub const PAYLOAD: usize = 6;
    /// UDP datagram: the opcode.
    pub const UDP_OPCODE: usize = 1;
    /// UDP datagram: the first payload byte.
    pub const UDP_PAYLOAD: usize = 2;
    /// MD4 hash: user hash, file hash, Kad id.
    pub const HASH: usize = 16;
    /// Client id (or IPv4) and TCP port, as in eDonkey source lists.
    pub const SOURCE: usize = 4 + 2;
    /// Kad contact: id, IPv4, UDP port, TCP port, version.
    pub const KAD_CONTACT: usize = 16 + 4 + 2 + 2 + 1;
    /// Smallest file list entry: hash, client id, port, tag count.
    pub const FILE_ENTRY_MIN: usize = 16 + 4 + 2 + 4;
}

/// Protocol markers, the first byte of every message (`Opcodes.h`).
mod marker {
    /// `OP_EDONKEYPROT`.
    pub const EDONKEY: u8 = 0xE3;
    /// `OP_EMULEPROT`.
    pub const EMULE: u8 = 0xC5;
    /// `OP_PACKEDPROT`: eMule TCP message with a zlib-packed payload.
    pub const PACKED: u8 = 0xD4;
    /// `OP_KADEMLIAHEADER`.
    pub const KAD: u8 = 0xE4;
    /// `OP_KADEMLIAPACKEDPROT`: Kad datagram with a zlib-packed payload.
    pub const KAD_PACKED: u8 = 0xE5;
}

/// eDonkey server UDP opcodes (`0xE3`).
mod server_op {
    /// `OP_GLOBSEARCHREQ2`: `<search tree>`.
    pub const GLOBSEARCHREQ2: u8 = 0x92;
    /// `OP_GLOBGETSOURCES2`: `(<hash 16><size 4>)*` or, for large files,
    /// `<hash 16><0 u32><size u64>`.
    pub const GLOBGETSOURCES2: u8 = 0x94;
    /// `OP_GLOBSERVSTATREQ`: `<challenge 4>`.
    pub const GLOBSERVSTATREQ: u8 = 0x96;
    /// `OP_GLOBSERVSTATRES`: `<challenge 4><users 4><files 4>[...]`.
    pub const GLOBSERVSTATRES: u8 = 0x97;
    /// `OP_GLOBSEARCHREQ`: `<search tree>`.
    pub const GLOBSEARCHREQ: u8 = 0x98;
    /// `OP_GLOBGETSOURCES`: `<hash 16>*`.
    pub const GLOBGETSOURCES: u8 = 0x9A;
    /// `OP_GLOBFOUNDSOURCES`: `<hash 16><count 1>(<id 4><port 2>)*`,
    /// possibly several, each after its own `E3 9B`.
    pub const GLOBFOUNDSOURCES: u8 = 0x9B;
    /// `OP_SERVER_DESC_REQ`: empty or `<challenge 4>`.
    pub const SERVER_DESC_REQ: u8 = 0xA2;
    /// `OP_SERVER_DESC_RES`: `<name><description>` or
    /// `<challenge 4><tag count 4><tags>`.
    pub const SERVER_DESC_RES: u8 = 0xA3;
}

/// eMule client UDP opcodes (`0xC5`).
mod client_op {
    /// `OP_REASKFILEPING`: `<hash 16>[<part status>][<sources 2>]`.
    pub const REASKFILEPING: u8 = 0x90;
    /// `OP_REASKACK`: `[<part status>]<rank 2>`.
    pub const REASKACK: u8 = 0x91;
    /// `OP_FILENOTFOUND`: empty.
    pub const FILENOTFOUND: u8 = 0x92;
    /// `OP_QUEUEFULL`: empty.
    pub const QUEUEFULL: u8 = 0x93;
}

/// Kad opcodes (`0xE4`), Kad 2 and the deprecated Kad 1 ones whose sizes
/// aMule checks exactly.
mod kad_op {
    /// `KADEMLIA_BOOTSTRAP_RES_DEPRECATED`: `<count 2>(<contact 25>)*`.
    pub const BOOTSTRAP_RES_V1: u8 = 0x08;
    /// `KADEMLIA_HELLO_REQ_DEPRECATED`: `<contact 25>`.
    pub const HELLO_REQ_V1: u8 = 0x10;
    /// `KADEMLIA_HELLO_RES_DEPRECATED`: `<contact 25>`.
    pub const HELLO_RES_V1: u8 = 0x18;
    /// `KADEMLIA_REQ_DEPRECATED`: `<type 1><target 16><receiver 16>`.
    pub const REQ_V1: u8 = 0x20;
    /// `KADEMLIA_RES_DEPRECATED`: `<target 16><count 1>(<contact 25>)*`.
    pub const RES_V1: u8 = 0x28;
    /// `KADEMLIA2_BOOTSTRAP_REQ`: empty.
    pub const BOOTSTRAP_REQ: u8 = 0x01;
    /// `KADEMLIA2_BOOTSTRAP_RES`: `<id 16><port 2><version 1><count 2>(<contact 25>)*`.
    pub const BOOTSTRAP_RES: u8 = 0x09;
    /// `KADEMLIA2_HELLO_REQ`: `<id 16><port 2><version 1><tag count 1><tags>`.
    pub const HELLO_REQ: u8 = 0x11;
    /// `KADEMLIA2_HELLO_RES`: as `HELLO_REQ`.
    pub const HELLO_RES: u8 = 0x19;
    /// `KADEMLIA2_REQ`: `<type 1><target 16><receiver 16>`.
    pub const REQ: u8 = 0x21;
    /// `KADEMLIA2_HELLO_RES_ACK`: `<id 16><tag count 1><tags>`.
    pub const HELLO_RES_ACK: u8 = 0x22;
    /// `KADEMLIA2_RES`: `<target 16><count 1>(<contact 25>)*`.
    pub const RES: u8 = 0x29;
    /// `KADEMLIA2_SEARCH_KEY_REQ`: `<target 16><start 2>[<search tree>]`.
    pub const SEARCH_KEY_REQ: u8 = 0x33;
    /// `KADEMLIA2_SEARCH_SOURCE_REQ`: `<target 16><start 2><size 8>`.
    pub const SEARCH_SOURCE_REQ: u8 = 0x34;
    /// `KADEMLIA2_SEARCH_NOTES_REQ`: `<target 16><size 8>`.
    pub const SEARCH_NOTES_REQ: u8 = 0x35;
    /// `KADEMLIA2_SEARCH_RES`: `<sender 16><target 16><count 2>(<answer 16><tag list>)*`.
    pub const SEARCH_RES: u8 = 0x3B;
    /// `KADEMLIA2_PUBLISH_KEY_REQ`: `<key 16><count 2>(<target 16><tag list>)*`.
    pub const PUBLISH_KEY_REQ: u8 = 0x43;
    /// `KADEMLIA2_PUBLISH_SOURCE_REQ`: `<file 16><source 16><tag list>`.
    pub const PUBLISH_SOURCE_REQ: u8 = 0x44;
    /// `KADEMLIA2_PUBLISH_NOTES_REQ`: `<file 16><source 16><tag list>`.
    pub const PUBLISH_NOTES_REQ: u8 = 0x45;
    /// `KADEMLIA2_PUBLISH_RES`: `<file 16><load 1>[<options 1>]`.
    pub const PUBLISH_RES: u8 = 0x4B;
    /// `KADEMLIA_FIREWALLED_REQ`: `<TCP port 2>`.
    pub const FIREWALLED_REQ: u8 = 0x50;
    /// `KADEMLIA_FIREWALLED2_REQ`: `<TCP port 2><user hash 16><options 1>`.
    pub const FIREWALLED2_REQ: u8 = 0x53;
    /// `KADEMLIA_FIREWALLED_RES`: `<IPv4 4>`.
    pub const FIREWALLED_RES: u8 = 0x58;
    /// `KADEMLIA2_PING`: empty.
    pub const PING: u8 = 0x60;
    /// `KADEMLIA2_PONG`: `<UDP port 2>`.
    pub const PONG: u8 = 0x61;

    /// `KADEMLIA2_REQ` types eMule and aMule send: `KADEMLIA_FIND_VALUE`,
    /// `KADEMLIA_STORE`, `KADEMLIA_FIND_NODE` (contacts wanted).
    pub const REQ_TYPES: [u8; 3] = [0x02, 0x04, 0x0B];
}

/// Tag types and names (`Opcodes.h`, `TAGTYPE_*`, `CT_*`).
mod tag {
    /// Set on the type of a new-style tag, whose name is one id byte.
    pub const SHORT_NAME: u8 = 0x80;
    /// `TAGTYPE_HASH`: 16 bytes.
    pub const HASH: u8 = 0x01;
    /// `TAGTYPE_STRING`: `<len u16><bytes>`.
    pub const STRING: u8 = 0x02;
    /// `TAGTYPE_UINT32`.
    pub const UINT32: u8 = 0x03;
    /// `TAGTYPE_FLOAT32`.
    pub const FLOAT32: u8 = 0x04;
    /// `TAGTYPE_BLOB`: `<len u32><bytes>`.
    pub const BLOB: u8 = 0x07;
    /// `TAGTYPE_UINT16`.
    pub const UINT16: u8 = 0x08;
    /// `TAGTYPE_UINT8`.
    pub const UINT8: u8 = 0x09;
    /// `TAGTYPE_BSOB`: `<len u8><bytes>`.
    pub const BSOB: u8 = 0x0A;
    /// `TAGTYPE_UINT64`.
    pub const UINT64: u8 = 0x0B;
    /// `TAGTYPE_STR1`: a 1-byte string; up to `TAGTYPE_STR16`.
    pub const STR1: u8 = 0x11;
    /// `TAGTYPE_STR16`.
    pub const STR16: u8 = 0x20;
    /// `CT_NAME`: the name the user gave the client.
    pub const CT_NAME: u8 = 0x01;
}

/// `OP_HELLO` starts with the user hash's size.
const HELLO_HASH_SIZE: u8 = 16;
/// `EMULE_PROTOCOL`: the protocol version in `OP_EMULEINFO`.
const EMULE_PROTOCOL: u8 = 0x01;
/// eMule and aMule `OP_GLOBSERVSTATREQ` challenges are `0x55AA0000 +
/// random16` (`ServerList.cpp`): bytes 2 and 3 on the wire.
const STATUS_CHALLENGE_MARK: [u8; 2] = [0xAA, 0x55];
/// eMule `OP_SERVER_DESC_REQ` challenges are `random16 << 16 | 0xF0FF`, an
/// impossible string length: bytes 0 and 1 on the wire.
const DESC_CHALLENGE_MARK: [u8; 2] = [0xFF, 0xF0];
/// Most bytes after the challenge in `OP_GLOBSERVSTATRES` (the optional
/// fields add up to about 40).
const MAX_STATUS_REPLY: usize = 64;

/// The eDonkey / eMule / Kad detector.
#[derive(Debug, Default)]
pub struct Edonkey;

/// Per-flow state: 11 bytes, no allocation.
#[derive(Clone, Copy, Debug, Default)]
pub struct State {
    /// TCP: the sides whose first payload packet was checked, one bit each.
    checked: u8,
    /// UDP: per side, the request it made last, until the other side
    /// answers it.
    pending: [Pending; 2],
}

/// A request remembered so that a reply can be proven to answer it. The
/// bytes are the first four of the challenge or target id the reply must
/// echo.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Pending {
    /// Nothing asked.
    #[default]
    None,
    /// `KADEMLIA2_BOOTSTRAP_REQ`.
    KadBootstrap,
    /// `KADEMLIA2_HELLO_REQ`.
    KadHello,
    /// `KADEMLIA2_REQ` for a target.
    KadFind([u8; 4]),
    /// `KADEMLIA2_SEARCH_*_REQ` for a target.
    KadSearch([u8; 4]),
    /// `KADEMLIA2_PUBLISH_*_REQ` for a file or keyword.
    KadPublish([u8; 4]),
    /// `KADEMLIA_FIREWALLED_REQ` or `KADEMLIA_FIREWALLED2_REQ`.
    KadFirewalled,
    /// `KADEMLIA2_PING`.
    KadPing,
    /// `OP_GLOBSERVSTATREQ` with its challenge.
    ServerStatus([u8; 4]),
    /// `OP_SERVER_DESC_REQ` with its challenge (zeros: none).
    ServerDesc([u8; 4]),
    /// `OP_GLOBGETSOURCES` or `OP_GLOBGETSOURCES2`.
    GetSources,
    /// `OP_REASKFILEPING`.
    Reask,
}

impl Detector for Edonkey {
    type State = State;
    const NAME: &'static str = "edonkey";
    const EVIDENCE: &'static [&'static str] = &[
        HELLO,
        LOGIN,
        MESSAGE,
        KAD,
        KAD_PACKED,
        KAD_REPLY,
        SERVER_UDP,
        SERVER_UDP_REPLY,
        CLIENT_UDP_REPLY,
    ];

    fn interest(&self) -> Interest {
        Interest {
            transport: None,
            max_payload_packets: PAYLOAD_PACKETS,
        }
    }

    fn inspect(
        &self,
        state: &mut State,
        packet: &PacketView<'_>,
        facts: &mut FactSink<'_>,
    ) -> Probe {
        match packet.transport {
            Transport::Tcp => inspect_tcp(state, packet, facts),
            Transport::Udp => inspect_udp(state, packet, facts),
        }
    }
}

/// One evidence of this detector.
fn evidence(name: &'static str, strength: Confidence) -> Probe {
    Probe::Match(Evidence {
        protocol: Protocol::Edonkey,
        name,
        strength,
    })
}

/// The bit of a side in [`State::checked`].
fn side_bit(direction: Direction) -> u8 {
    match direction {
        Direction::Originator => 1,
        Direction::Responder => 2,
    }
}

/// TCP: checks a side's first payload packet; later packets are not at a
/// known message boundary.
fn inspect_tcp(state: &mut State, packet: &PacketView<'_>, facts: &mut FactSink<'_>) -> Probe {
    if packet.index != 1 {
        let other_done = state.checked & side_bit(packet.direction.reverse()) != 0;
        return if other_done {
            Probe::NotMine
        } else {
            Probe::NeedMore
        };
    }
    state.checked |= side_bit(packet.direction);
    let Some(opening) = tcp_opening(packet.payload, packet.truncated) else {
        return Probe::NotMine;
    };
    if let Some(hello) = opening.hello {
        facts.peer_id(hex(hello.user_hash).as_bytes());
        if let Some(name) = hello.name {
            facts.client(name);
        }
    }
    evidence(opening.evidence, Confidence::Unidirectional)
}

/// UDP: checks each datagram and pairs replies with remembered requests.
fn inspect_udp(state: &mut State, packet: &PacketView<'_>, facts: &mut FactSink<'_>) -> Probe {
    if packet.src.port() == DNS_PORT || packet.dst.port() == DNS_PORT {
        return Probe::NotMine;
    }
    if packet.truncated {
        // Sizes are the whole check; a cut datagram cannot be checked.
        return Probe::NeedMore;
    }
    let Some(d) = datagram(packet.payload) else {
        return Probe::NotMine;
    };
    learn_kad_contacts(packet.payload, facts);
    let mine = packet.direction.index();
    let theirs = packet.direction.reverse().index();
    let answered =
        d.answers != Pending::None && state.pending.get(theirs).copied() == Some(d.answers);
    if d.asks != Pending::None
        && let Some(slot) = state.pending.get_mut(mine)
    {
        *slot = d.asks;
    }
    if answered {
        evidence(d.reply, Confidence::Bidirectional)
    } else if let Some(name) = d.alone {
        evidence(name, Confidence::Unidirectional)
    } else {
        Probe::NeedMore
    }
}

/// Records the contacts of a well-formed Kad bootstrap or find-node reply
/// for the endpoint cache. A contact is id (16), IPv4 (4, little-endian as
/// eMule writes it), UDP port (2), TCP port (2), version (1); its Kad UDP
/// and eDonkey TCP ports are cached separately.
fn learn_kad_contacts(datagram: &[u8], facts: &mut FactSink<'_>) {
    use crate::detect::cache::Transports;
    let (Some(&marker), Some(&opcode)) = (datagram.first(), datagram.get(1)) else {
        return;
    };
    if marker != marker::KAD {
        return;
    }
    let payload = datagram.get(2..).unwrap_or_default();
    // Where the contact list starts, by opcode (the parser has already
    // checked that the count matches the datagram's size).
    let start = match opcode {
        kad_op::RES | kad_op::RES_V1 => 17,
        kad_op::BOOTSTRAP_RES => 21,
        kad_op::BOOTSTRAP_RES_V1 => 2,
        _ => return,
    };
    let Some(list) = payload.get(start..) else {
        return;
    };
    for c in list.chunks_exact(field::KAD_CONTACT) {
        let ip = std::net::IpAddr::from([c[19], c[18], c[17], c[16]]);
        let udp = u16::from_le_bytes([c[20], c[21]]);
        let tcp = u16::from_le_bytes([c[22], c[23]]);
        facts.peer(Protocol::Edonkey, ip, udp, Transports::UDP);
        facts.peer(Protocol::Edonkey, ip, tcp, Transports::TCP);
    }
}

/// Lower-case hex of raw bytes (the user hash, for display).
fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

// ---------------------------------------------------------------------------
// Checked reading
// ---------------------------------------------------------------------------

/// Why bytes do not parse.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Bad {
    /// The visible bytes end before the structure does (a prefix of a
    /// message split across TCP segments): consistent so far.
    Short,
    /// The bytes contradict the layout.
    Invalid,
    /// The opcode is not one this detector knows.
    Unknown,
}

/// Result of parsing.
type Parse<T> = Result<T, Bad>;

/// A bounds-checked little-endian cursor over a message payload, of which
/// `bytes` are visible and `limit` were declared (equal for a complete
/// message or datagram). A read past `limit` contradicts the layout; a read
/// past the visible bytes but within `limit` is [`Bad::Short`]. No read can
/// panic: every access goes through `get`.
#[derive(Clone, Copy, Debug)]
struct Reader<'a> {
    bytes: &'a [u8],
    limit: usize,
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader over complete bytes.
    fn new(bytes: &'a [u8]) -> Self {
        Reader {
            bytes,
            limit: bytes.len(),
            pos: 0,
        }
    }

    /// A reader over the visible start of `declared` bytes.
    fn prefix(bytes: &'a [u8], declared: usize) -> Self {
        Reader {
            bytes: bytes.get(..declared).unwrap_or(bytes),
            limit: declared,
            pos: 0,
        }
    }

    /// Declared bytes not read yet.
    fn remaining(&self) -> usize {
        self.limit.saturating_sub(self.pos)
    }

    fn take(&mut self, n: usize) -> Parse<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|end| *end <= self.limit)
            .ok_or(Bad::Invalid)?;
        let out = self.bytes.get(self.pos..end).ok_or(Bad::Short)?;
        self.pos = end;
        Ok(out)
    }

    fn skip(&mut self, n: usize) -> Parse<()> {
        self.take(n).map(|_| ())
    }

    fn array<const N: usize>(&mut self) -> Parse<[u8; N]> {
        self.take(N)?.try_into().map_err(|_| Bad::Invalid)
    }

    fn u8(&mut self) -> Parse<u8> {
        self.array().map(|[b]: [u8; 1]| b)
    }

    fn u16(&mut self) -> Parse<u16> {
        self.array().map(u16::from_le_bytes)
    }

    fn u32(&mut self) -> Parse<u32> {
        self.array().map(u32::from_le_bytes)
    }

    fn u64(&mut self) -> Parse<u64> {
        self.array().map(u64::from_le_bytes)
    }

    /// A `u16` count or length.
    fn len16(&mut self) -> Parse<usize> {
        self.u16().map(usize::from)
    }

    /// A `u32` count or length.
    fn len32(&mut self) -> Parse<usize> {
        usize::try_from(self.u32()?).map_err(|_| Bad::Invalid)
    }

    /// `<len u16><bytes>`.
    fn string(&mut self) -> Parse<&'a [u8]> {
        let n = self.len16()?;
        self.take(n)
    }

    /// The first four bytes of a 16-byte id (a request's token).
    fn token(&mut self) -> Parse<[u8; 4]> {
        let [a, b, c, d, ..] = self.array::<{ field::HASH }>()?;
        Ok([a, b, c, d])
    }

    /// Exactly `n` declared bytes are left (checked before reading them, so
    /// that a split message is held to its declared length too).
    fn expect_remaining(&self, n: usize) -> Parse<()> {
        if self.remaining() == n {
            Ok(())
        } else {
            Err(Bad::Invalid)
        }
    }

    /// Everything declared was read: no trailing bytes.
    fn finish(&self) -> Parse<()> {
        self.expect_remaining(0)
    }
}

/// A tag's one-byte name, if it has one, and its value if it is a string.
struct Tag<'a> {
    id: Option<u8>,
    text: Option<&'a [u8]>,
}

/// One tag: `<type 1><name><value>`. Old-style names are `<len u16><name>`;
/// new-style tags set [`tag::SHORT_NAME`] on the type and have a one-byte
/// name. The value's size follows from the type (`TAGTYPE_*`).
fn read_tag<'a>(r: &mut Reader<'a>) -> Parse<Tag<'a>> {
    let raw = r.u8()?;
    let kind = raw & !tag::SHORT_NAME;
    let id = if raw & tag::SHORT_NAME != 0 {
        Some(r.u8()?)
    } else {
        let len = r.len16()?;
        if len == 0 || len > MAX_TAG_NAME {
            return Err(Bad::Invalid);
        }
        match r.take(len)? {
            [id] => Some(*id),
            _ => None,
        }
    };
    let text = match kind {
        tag::HASH => r.skip(field::HASH).map(|_| None)?,
        tag::STRING => Some(r.string()?),
        tag::UINT32 | tag::FLOAT32 => r.skip(4).map(|_| None)?,
        tag::BLOB => {
            let n = r.len32()?;
            r.skip(n).map(|_| None)?
        }
        tag::UINT16 => r.skip(2).map(|_| None)?,
        tag::UINT8 => r.skip(1).map(|_| None)?,
        tag::BSOB => {
            let n = r.u8()?;
            r.skip(n.into()).map(|_| None)?
        }
        tag::UINT64 => r.skip(8).map(|_| None)?,
        tag::STR1..=tag::STR16 => Some(r.take(usize::from(kind - tag::STR1) + 1)?),
        _ => return Err(Bad::Invalid),
    };
    Ok(Tag { id, text })
}

/// `count` tags; returns the `CT_NAME` string, if any.
fn tag_list<'a>(r: &mut Reader<'a>, count: usize) -> Parse<Option<&'a [u8]>> {
    if count > MAX_TAGS || count.saturating_mul(MIN_TAG_LEN) > r.remaining() {
        return Err(Bad::Invalid);
    }
    let mut name = None;
    for _ in 0..count {
        let t = read_tag(r)?;
        if name.is_none() && t.id == Some(tag::CT_NAME) {
            name = t.text;
        }
    }
    Ok(name)
}

/// A Kad tag list: `<count u8><tags>`.
fn kad_tags(r: &mut Reader<'_>) -> Parse<()> {
    let count = r.u8()?;
    tag_list(r, count.into()).map(|_| ())
}

/// One search expression, as sent to servers (`OP_SEARCHREQUEST`,
/// `OP_GLOBSEARCHREQ`) and in Kad keyword searches (aMule
/// `CreateSearchExpressionTree`): `00 <op 0..2>` and two operands (AND, OR,
/// NOT); `01 <string>`; `02 <value string><name string>`; `03 <u32><op
/// 0..5><name string>`; `08 <u64><op 0..5><name string>`.
fn search_tree(r: &mut Reader<'_>) -> Parse<()> {
    let mut open = 1usize;
    let mut nodes = 0usize;
    while open > 0 {
        nodes += 1;
        if nodes > MAX_SEARCH_NODES {
            return Err(Bad::Invalid);
        }
        open -= 1;
        match r.u8()? {
            0x00 => {
                if r.u8()? > 0x02 {
                    return Err(Bad::Invalid);
                }
                open += 2;
            }
            0x01 => {
                r.string()?;
            }
            0x02 => {
                r.string()?;
                r.string()?;
            }
            op @ (0x03 | 0x08) => {
                r.skip(if op == 0x03 { 4 } else { 8 })?;
                if r.u8()? > 0x05 {
                    return Err(Bad::Invalid);
                }
                r.string()?;
            }
            _ => return Err(Bad::Invalid),
        }
    }
    Ok(())
}

/// A zlib stream's header (RFC 1950): deflate with a 32 KiB window (`0x78`,
/// what zlib's `compress` writes), no preset dictionary, and the header
/// check (`CMF*256 + FLG` divisible by 31). The rest is not inflated.
fn zlib_stream(r: &mut Reader<'_>) -> Parse<()> {
    if r.remaining() < ZLIB_MIN_LEN {
        return Err(Bad::Invalid);
    }
    let [cmf, flg] = r.array()?;
    let check = (u16::from(cmf) << 8 | u16::from(flg)) % 31;
    if cmf != 0x78 || flg & 0x20 != 0 || check != 0 {
        return Err(Bad::Invalid);
    }
    Ok(())
}

/// eMule part status: `<parts u16><bit field, (parts + 7) / 8 bytes>`.
fn part_status(r: &mut Reader<'_>) -> Parse<()> {
    let parts = r.len16()?;
    r.skip(parts.div_ceil(8))
}

// ---------------------------------------------------------------------------
// TCP
// ---------------------------------------------------------------------------

/// What a side's first TCP packet showed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Opening<'a> {
    /// The evidence it is worth.
    evidence: &'static str,
    /// The sender's hello, if the packet opens with one.
    hello: Option<Hello<'a>>,
}

/// The sender details of `OP_HELLO`, `OP_HELLOANSWER` and
/// `OP_LOGINREQUEST`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Hello<'a> {
    user_hash: &'a [u8],
    name: Option<&'a [u8]>,
}

/// What kind of message a TCP message is, for the evidence name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Hello,
    Login,
    Other,
}

/// A checked TCP message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Msg<'a> {
    kind: Kind,
    hello: Option<Hello<'a>>,
}

impl Msg<'_> {
    const OTHER: Msg<'static> = Msg {
        kind: Kind::Other,
        hello: None,
    };
}

/// A checked view of one TCP message header, `<marker><length u32 LE>
/// <opcode>`, and of the visible part of its payload. Built only by
/// [`Frame::new_checked`]; its fields need no further checks.
#[derive(Clone, Copy, Debug)]
struct Frame<'a> {
    marker: u8,
    opcode: u8,
    /// Declared length: opcode plus payload, `1..=MAX_MESSAGE_LEN`.
    declared: usize,
    /// The payload bytes present in the packet.
    body: &'a [u8],
}

impl<'a> Frame<'a> {
    /// Reads a header at the start of `bytes`: a known marker, a length of at
    /// least one (the opcode) and at most [`MAX_MESSAGE_LEN`].
    fn new_checked(bytes: &'a [u8]) -> Option<Self> {
        let marker = *bytes.get(field::MARKER)?;
        if !matches!(marker, marker::EDONKEY | marker::EMULE | marker::PACKED) {
            return None;
        }
        let length = u32::from_le_bytes(bytes.get(field::LENGTH)?.try_into().ok()?);
        let declared = usize::try_from(length)
            .ok()
            .filter(|n| (1..=MAX_MESSAGE_LEN).contains(n))?;
        let opcode = *bytes.get(field::OPCODE)?;
        let end = field::OPCODE + declared;
        let body = bytes.get(field::PAYLOAD..end.min(bytes.len()))?;
        Some(Frame {
            marker,
            opcode,
            declared,
            body,
        })
    }

    /// Declared payload length (after the opcode).
    fn payload_len(&self) -> usize {
        self.declared - 1
    }

    /// Header plus payload.
    fn total_len(&self) -> usize {
        field::OPCODE + self.declared
    }

    /// The whole message is in the packet.
    fn complete(&self) -> bool {
        self.body.len() == self.payload_len()
    }
}

/// Checks the first payload packet of one side of a TCP flow: whole
/// messages back to back, the last one possibly split if the packet is
/// full-sized (see the module documentation).
fn tcp_opening(payload: &[u8], truncated: bool) -> Option<Opening<'_>> {
    let full_sized = truncated || payload.len() >= MIN_FULL_SEGMENT;
    let mut first: Option<Opening<'_>> = None;
    let mut rest = payload;
    while !rest.is_empty() {
        if rest.len() < field::PAYLOAD {
            // The next header itself is split across segments: fine after
            // whole messages in a full-sized packet, if it starts right.
            let starts_right = rest
                .first()
                .is_some_and(|m| matches!(*m, marker::EDONKEY | marker::EMULE | marker::PACKED));
            return if full_sized && starts_right {
                first
            } else {
                None
            };
        }
        let frame = Frame::new_checked(rest)?;
        let mut r = Reader::prefix(frame.body, frame.payload_len());
        let checked = check_message(frame.marker, frame.opcode, &mut r);
        if frame.complete() {
            let msg = checked.ok()?;
            first.get_or_insert(Opening {
                evidence: match msg.kind {
                    Kind::Hello => HELLO,
                    Kind::Login => LOGIN,
                    Kind::Other => MESSAGE,
                },
                hello: msg.hello,
            });
            rest = rest.get(frame.total_len()..)?;
            continue;
        }
        // The packet ends inside this message.
        if !full_sized || matches!(checked, Err(Bad::Invalid | Bad::Unknown)) {
            return None;
        }
        if first.is_none() {
            if !strong_prefix(frame.marker, frame.opcode) || frame.body.len() < MIN_PARTIAL_BODY {
                return None;
            }
            first = Some(Opening {
                evidence: MESSAGE,
                hello: None,
            });
        }
        return first;
    }
    first
}

/// Checks one TCP message payload against its opcode's layout.
fn check_message<'a>(marker: u8, opcode: u8, r: &mut Reader<'a>) -> Parse<Msg<'a>> {
    match marker {
        marker::EDONKEY => check_rule(ed2k_tcp_rule(opcode).ok_or(Bad::Unknown)?, r),
        marker::EMULE => check_rule(emule_tcp_rule(opcode).ok_or(Bad::Unknown)?, r),
        marker::PACKED => {
            // OP_PACKEDPROT: the opcode of an eDonkey or eMule message, then
            // its payload as a zlib stream.
            if ed2k_tcp_rule(opcode).or(emule_tcp_rule(opcode)).is_none() {
                return Err(Bad::Unknown);
            }
            zlib_stream(r)?;
            Ok(Msg::OTHER)
        }
        _ => Err(Bad::Unknown),
    }
}

/// Whether a message split across segments can be the first of a packet:
/// its layout must be checkable from its start.
fn strong_prefix(marker: u8, opcode: u8) -> bool {
    let rule = match marker {
        marker::EDONKEY => ed2k_tcp_rule(opcode),
        marker::EMULE => emule_tcp_rule(opcode),
        marker::PACKED => return true,
        _ => None,
    };
    rule.is_some_and(|rule| {
        matches!(
            rule,
            Rule::HelloOrLogin
                | Rule::HelloAnswer
                | Rule::ServerIdent
                | Rule::FileList { .. }
                | Rule::String
                | Rule::SendingPart { .. }
                | Rule::MuleInfo
                | Rule::SharedFilesDir
        )
    })
}

/// The payload layout of a TCP opcode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Rule {
    /// Exactly this many bytes.
    Exact(usize),
    /// At least this many bytes; the layout is not checked further.
    AtLeast(usize),
    /// One of these lengths.
    OneOf(&'static [usize]),
    /// Opcode `0x01`: `OP_HELLO` (`0x10<hash 16><id 4><port 2><tags>
    /// <server IP 4><server port 2>`) or `OP_LOGINREQUEST` (`<hash 16><id 4>
    /// <port 2><tags>`).
    HelloOrLogin,
    /// `OP_HELLOANSWER`: `<hash 16><id 4><port 2><tags><server IP 4><server
    /// port 2>`.
    HelloAnswer,
    /// `OP_SERVERIDENT`: `<hash 16><IP 4><port 2>[<tags>]`.
    ServerIdent,
    /// `<count u32>(<hash 16><id 4><port 2><tags>)*`, then up to
    /// `trailing` bytes (`OP_SEARCHRESULT` may end with a "more results"
    /// byte).
    FileList { trailing: usize },
    /// `<len u16><bytes>`, exactly.
    String,
    /// `OP_SERVERLIST`: `<count 1>(<IP 4><port 2>)*`.
    ServerList,
    /// `OP_FOUNDSOURCES`: `<hash 16><count 1>(<id 4><port 2>)*`.
    FoundSources,
    /// `OP_FOUNDSOURCES_OBFU`: `<hash 16><count 1>(<id 4><port 2><obf 1>
    /// [<user hash 16> if obf & 0x08])*`.
    FoundSourcesObfu,
    /// `OP_SENDINGPART`(`_I64`): `<hash 16><start><end><end - start bytes>`,
    /// offsets of 4 or (`wide`) 8 bytes.
    SendingPart { wide: bool },
    /// `OP_FILESTATUS`: `<hash 16><part status>`.
    FileStatus,
    /// A search expression.
    SearchTree,
    /// `OP_EMULEINFO`(`ANSWER`): `<version 1><protocol 1 = 0x01><tags>`.
    MuleInfo,
    /// `OP_PUBLICKEY`: `<len 1><key>`.
    PublicKey,
    /// `OP_SIGNATURE`: `<len 1><signature>[<IP kind 1>]`.
    Signature,
    /// `OP_ASKSHAREDDIRSANS`: `<count u32>(<len u16><directory>)*`.
    SharedDirs,
    /// `OP_ASKSHAREDFILESDIRANS`: `<len u16><directory>` and a file list.
    SharedFilesDir,
}

/// eDonkey (`0xE3`) TCP opcodes, client–server and client–client
/// (`Opcodes.h`).
fn ed2k_tcp_rule(opcode: u8) -> Option<Rule> {
    Some(match opcode {
        0x01 => Rule::HelloOrLogin,                // OP_HELLO / OP_LOGINREQUEST
        0x05 => Rule::Exact(0),                    // OP_REJECT
        0x14 => Rule::Exact(0),                    // OP_GETSERVERLIST
        0x15 => Rule::FileList { trailing: 0 },    // OP_OFFERFILES
        0x16 => Rule::SearchTree,                  // OP_SEARCHREQUEST
        0x19 => Rule::OneOf(&[16, 20, 28]), // OP_GETSOURCES: hash [size 4 | 0 u32 + size u64]
        0x1A => Rule::SearchTree,           // OP_SEARCH_USER
        0x1C => Rule::Exact(4),             // OP_CALLBACKREQUEST: <id 4>
        0x21 => Rule::Exact(0),             // OP_QUERY_MORE_RESULT
        0x32 => Rule::ServerList,           // OP_SERVERLIST
        0x33 => Rule::FileList { trailing: 1 }, // OP_SEARCHRESULT
        0x34 => Rule::Exact(8),             // OP_SERVERSTATUS: <users 4><files 4>
        0x35 => Rule::AtLeast(6),           // OP_CALLBACKREQUESTED: <IP 4><port 2>[...]
        0x36 => Rule::Exact(0),             // OP_CALLBACK_FAIL
        0x38 => Rule::String,               // OP_SERVERMESSAGE
        0x40 => Rule::OneOf(&[4, 8, 12, 16]), // OP_IDCHANGE: <id 4>[<flags 4>[<port 4>[<IP 4>]]]
        0x41 => Rule::ServerIdent,          // OP_SERVERIDENT
        0x42 => Rule::FoundSources,         // OP_FOUNDSOURCES
        0x43 => Rule::FileList { trailing: 0 }, // OP_USERS_LIST
        0x44 => Rule::FoundSourcesObfu,     // OP_FOUNDSOURCES_OBFU
        0x46 => Rule::SendingPart { wide: false }, // OP_SENDINGPART
        0x47 => Rule::Exact(16 + 3 * 4 + 3 * 4), // OP_REQUESTPARTS
        0x48 => Rule::Exact(16),            // OP_FILEREQANSNOFIL
        0x49 => Rule::Exact(16),            // OP_END_OF_DOWNLOAD
        0x4A => Rule::Exact(0),             // OP_ASKSHAREDFILES
        0x4B => Rule::FileList { trailing: 0 }, // OP_ASKSHAREDFILESANSWER
        0x4C => Rule::HelloAnswer,          // OP_HELLOANSWER
        0x4D => Rule::Exact(8),             // OP_CHANGE_CLIENT_ID: <old 4><new 4>
        0x4E => Rule::String,               // OP_MESSAGE
        0x4F => Rule::Exact(16),            // OP_SETREQFILEID
        0x50 => Rule::FileStatus,           // OP_FILESTATUS
        0x51 => Rule::Exact(16),            // OP_HASHSETREQUEST
        0x52 => Rule::AtLeast(18),          // OP_HASHSETANSWER: hash, count, hashes
        0x54 => Rule::OneOf(&[0, 16]),      // OP_STARTUPLOADREQ: [<hash 16>]
        0x55 => Rule::Exact(0),             // OP_ACCEPTUPLOADREQ
        0x56 => Rule::Exact(0),             // OP_CANCELTRANSFER
        0x57 => Rule::Exact(0),             // OP_OUTOFPARTREQS
        0x58 => Rule::AtLeast(16),          // OP_REQUESTFILENAME: <hash 16>[extended]
        0x59 => Rule::AtLeast(18),          // OP_REQFILENAMEANSWER: <hash 16><name>
        0x5B => Rule::Exact(16),            // OP_CHANGE_SLOT
        0x5C => Rule::Exact(4),             // OP_QUEUERANK
        0x5D => Rule::Exact(0),             // OP_ASKSHAREDDIRS
        0x5E => Rule::String,               // OP_ASKSHAREDFILESDIR
        0x5F => Rule::SharedDirs,           // OP_ASKSHAREDDIRSANS
        0x60 => Rule::SharedFilesDir,       // OP_ASKSHAREDFILESDIRANS
        0x61 => Rule::Exact(0),             // OP_ASKSHAREDDENIEDANS
        _ => return None,
    })
}

/// eMule extended (`0xC5`) TCP opcodes (`Opcodes.h`).
fn emule_tcp_rule(opcode: u8) -> Option<Rule> {
    Some(match opcode {
        0x01 | 0x02 => Rule::MuleInfo, // OP_EMULEINFO / OP_EMULEINFOANSWER
        0x40 => Rule::AtLeast(24),     // OP_COMPRESSEDPART: <hash 16><start 4><size 4><data>
        0x60 => Rule::AtLeast(2),      // OP_QUEUERANKING: <rank 2>[padding]
        0x61 => Rule::AtLeast(1),      // OP_FILEDESC
        0x81 => Rule::Exact(16),       // OP_REQUESTSOURCES
        0x82 => Rule::AtLeast(18),     // OP_ANSWERSOURCES: <hash 16><count 2>...
        0x83 => Rule::Exact(19),       // OP_REQUESTSOURCES2: <hash 16><version 1><options 2>
        0x84 => Rule::AtLeast(1),      // OP_ANSWERSOURCES2
        0x85 => Rule::PublicKey,       // OP_PUBLICKEY
        0x86 => Rule::Signature,       // OP_SIGNATURE
        0x87 => Rule::Exact(5),        // OP_SECIDENTSTATE: <state 1><challenge 4>
        0x90 => Rule::Exact(16),       // OP_REQUESTPREVIEW
        0x91 => Rule::AtLeast(17),     // OP_PREVIEWANSWER: <hash 16><frames 1>...
        0x92 | 0x93 | 0xA4 | 0xA9 | 0xB0 => Rule::AtLeast(16), // OP_MULTIPACKET* (file id first)
        0x97 => Rule::Exact(0),        // OP_PUBLICIP_REQ
        0x98 => Rule::Exact(4),        // OP_PUBLICIP_ANSWER: <IP 4>
        0x99 => Rule::AtLeast(34),     // OP_CALLBACK: <hash 16><hash 16><port 2>...
        0x9A => Rule::AtLeast(6),      // OP_REASKCALLBACKTCP
        0x9B | 0x9C => Rule::AtLeast(18), // OP_AICHREQUEST / OP_AICHANSWER: <hash 16><part 2>...
        0x9D | 0x9E => Rule::AtLeast(16), // OP_AICHFILEHASHANS / REQ
        0x9F | 0xA0 => Rule::Exact(0), // OP_BUDDYPING / OP_BUDDYPONG
        0xA1 => Rule::AtLeast(28),     // OP_COMPRESSEDPART_I64: <hash 16><start 8><size 4><data>
        0xA2 => Rule::SendingPart { wide: true }, // OP_SENDINGPART_I64
        0xA3 => Rule::Exact(16 + 3 * 8 + 3 * 8), // OP_REQUESTPARTS_I64
        0xA5 => Rule::AtLeast(1),      // OP_CHATCAPTCHAREQ
        0xA6 => Rule::Exact(1),        // OP_CHATCAPTCHARES: <status 1>
        0xA7 => Rule::Exact(8),        // OP_FWCHECKUDPREQ: <port 2><port 2><key 4>
        0xA8 => Rule::Exact(0),        // OP_KAD_FWTCPCHECK_ACK
        0xB1 | 0xB2 => Rule::AtLeast(17), // OP_HASHSETREQUEST2 / ANSWER2: <file id><options 1>
        _ => return None,
    })
}

/// Checks a TCP message payload against a layout.
fn check_rule<'a>(rule: Rule, r: &mut Reader<'a>) -> Parse<Msg<'a>> {
    match rule {
        Rule::Exact(n) => r.expect_remaining(n)?,
        Rule::AtLeast(n) => {
            if r.remaining() < n {
                return Err(Bad::Invalid);
            }
        }
        Rule::OneOf(lens) => {
            if !lens.contains(&r.remaining()) {
                return Err(Bad::Invalid);
            }
        }
        Rule::HelloOrLogin => {
            let mut as_hello = *r;
            return match hello(&mut as_hello) {
                Ok(h) => Ok(Msg {
                    kind: Kind::Hello,
                    hello: Some(h),
                }),
                Err(Bad::Short) => Err(Bad::Short),
                Err(_) => {
                    let h = hello_fields(r)?;
                    r.finish()?;
                    Ok(Msg {
                        kind: Kind::Login,
                        hello: Some(h),
                    })
                }
            };
        }
        Rule::HelloAnswer => {
            let h = hello_fields(r)?;
            r.skip(4 + 2)?; // server IP, server port
            r.finish()?;
            return Ok(Msg {
                kind: Kind::Hello,
                hello: Some(h),
            });
        }
        Rule::ServerIdent => {
            r.skip(field::HASH + 4 + 2)?;
            if r.remaining() > 0 {
                let n = r.len32()?;
                tag_list(r, n)?;
                r.finish()?;
            }
        }
        Rule::FileList { trailing } => {
            file_list(r)?;
            if r.remaining() > trailing {
                return Err(Bad::Invalid);
            }
        }
        Rule::String => {
            let n = r.len16()?;
            r.expect_remaining(n)?;
        }
        Rule::ServerList => {
            let n = usize::from(r.u8()?);
            r.expect_remaining(n * field::SOURCE)?;
        }
        Rule::FoundSources => {
            r.skip(field::HASH)?;
            let n = usize::from(r.u8()?);
            r.expect_remaining(n * field::SOURCE)?;
        }
        Rule::FoundSourcesObfu => {
            r.skip(field::HASH)?;
            for _ in 0..r.u8()? {
                r.skip(field::SOURCE)?;
                if r.u8()? & 0x08 != 0 {
                    r.skip(field::HASH)?;
                }
            }
            r.finish()?;
        }
        Rule::SendingPart { wide } => {
            r.skip(field::HASH)?;
            let (start, end) = if wide {
                (r.u64()?, r.u64()?)
            } else {
                (u64::from(r.u32()?), u64::from(r.u32()?))
            };
            let len = end
                .checked_sub(start)
                .filter(|n| *n > 0)
                .ok_or(Bad::Invalid)?;
            r.expect_remaining(usize::try_from(len).map_err(|_| Bad::Invalid)?)?;
        }
        Rule::FileStatus => {
            r.skip(field::HASH)?;
            let parts = r.len16()?;
            r.expect_remaining(parts.div_ceil(8))?;
        }
        Rule::SearchTree => {
            search_tree(r)?;
            r.finish()?;
        }
        Rule::MuleInfo => {
            r.skip(1)?; // client version
            if r.u8()? != EMULE_PROTOCOL {
                return Err(Bad::Invalid);
            }
            let n = r.len32()?;
            tag_list(r, n)?;
            r.finish()?;
        }
        Rule::PublicKey => {
            let n = usize::from(r.u8()?);
            r.expect_remaining(n)?;
        }
        Rule::Signature => {
            let n = usize::from(r.u8()?);
            if !(n..=n + 1).contains(&r.remaining()) {
                return Err(Bad::Invalid);
            }
        }
        Rule::SharedDirs => {
            let n = r.len32()?;
            if n.saturating_mul(2) > r.remaining() {
                return Err(Bad::Invalid);
            }
            for _ in 0..n {
                r.string()?;
            }
            r.finish()?;
        }
        Rule::SharedFilesDir => {
            r.string()?;
            file_list(r)?;
            r.finish()?;
        }
    }
    Ok(Msg::OTHER)
}

/// `OP_HELLO`: `0x10`, the shared hello fields, server IP and port.
fn hello<'a>(r: &mut Reader<'a>) -> Parse<Hello<'a>> {
    if r.u8()? != HELLO_HASH_SIZE {
        return Err(Bad::Invalid);
    }
    let h = hello_fields(r)?;
    r.skip(4 + 2)?;
    r.finish()?;
    Ok(h)
}

/// `<user hash 16><client id 4><TCP port 2><tag count u32><tags>`: the part
/// `OP_HELLO`, `OP_HELLOANSWER` and `OP_LOGINREQUEST` share.
fn hello_fields<'a>(r: &mut Reader<'a>) -> Parse<Hello<'a>> {
    let user_hash = r.take(field::HASH)?;
    r.skip(4 + 2)?;
    let count = r.len32()?;
    let name = tag_list(r, count)?;
    Ok(Hello { user_hash, name })
}

/// `<count u32>(<hash 16><id 4><port 2><tag count u32><tags>)*`.
fn file_list(r: &mut Reader<'_>) -> Parse<()> {
    let n = r.len32()?;
    if n.saturating_mul(field::FILE_ENTRY_MIN) > r.remaining() {
        return Err(Bad::Invalid);
    }
    for _ in 0..n {
        r.skip(field::HASH + 4 + 2)?;
        let tags = r.len32()?;
        tag_list(r, tags)?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// UDP
// ---------------------------------------------------------------------------

/// What one UDP datagram is worth.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Datagram {
    /// The evidence it is alone, if it has enough structure.
    alone: Option<&'static str>,
    /// The request it makes, remembered for the other side's reply.
    asks: Pending,
    /// The request of the other side it answers.
    answers: Pending,
    /// The evidence of a proven answer.
    reply: &'static str,
}

impl Datagram {
    /// Well-formed, but too little structure to count alone.
    const WEAK: Datagram = Datagram {
        alone: None,
        asks: Pending::None,
        answers: Pending::None,
        reply: "",
    };

    /// Well-formed with enough structure to count alone.
    fn strong(name: &'static str) -> Self {
        Datagram {
            alone: Some(name),
            ..Self::WEAK
        }
    }

    /// Counts alone only if `strong`.
    fn strong_if(strong: bool, name: &'static str) -> Self {
        if strong {
            Self::strong(name)
        } else {
            Self::WEAK
        }
    }

    fn asking(self, request: Pending) -> Self {
        Datagram {
            asks: request,
            ..self
        }
    }

    fn answering(self, request: Pending, reply: &'static str) -> Self {
        Datagram {
            answers: request,
            reply,
            ..self
        }
    }
}

/// Checks one UDP datagram: `<marker><opcode><payload>`.
fn datagram(payload: &[u8]) -> Option<Datagram> {
    let marker = *payload.get(field::MARKER)?;
    let opcode = *payload.get(field::UDP_OPCODE)?;
    let mut r = Reader::new(payload.get(field::UDP_PAYLOAD..)?);
    let checked = match marker {
        marker::EDONKEY => server_udp(opcode, &mut r),
        marker::EMULE => client_udp(opcode, &mut r),
        marker::KAD => kad(opcode, &mut r),
        marker::KAD_PACKED => kad_packed(opcode, &mut r),
        _ => return None,
    };
    checked.ok()
}

/// eDonkey server UDP (`0xE3`): eMule `UDPSocket.cpp`, `ServerList.cpp`.
fn server_udp(opcode: u8, r: &mut Reader<'_>) -> Parse<Datagram> {
    Ok(match opcode {
        server_op::GLOBSERVSTATREQ => {
            // <challenge 4>; eMule and aMule challenges end in AA 55.
            let challenge: [u8; 4] = r.array()?;
            r.finish()?;
            let [_, _, hi @ ..] = challenge;
            Datagram::strong_if(hi == STATUS_CHALLENGE_MARK, SERVER_UDP)
                .asking(Pending::ServerStatus(challenge))
        }
        server_op::GLOBSERVSTATRES => {
            // <challenge 4><users 4><files 4>[optional fields]: the reply
            // echoes the request's challenge.
            let challenge: [u8; 4] = r.array()?;
            if !(8..=MAX_STATUS_REPLY).contains(&r.remaining()) {
                return Err(Bad::Invalid);
            }
            let [_, _, hi @ ..] = challenge;
            Datagram::strong_if(hi == STATUS_CHALLENGE_MARK, SERVER_UDP)
                .answering(Pending::ServerStatus(challenge), SERVER_UDP_REPLY)
        }
        server_op::SERVER_DESC_REQ => {
            // Empty (old clients) or <challenge 4> whose low half is F0FF.
            if r.remaining() == 0 {
                Datagram::WEAK.asking(Pending::ServerDesc([0; 4]))
            } else {
                let challenge: [u8; 4] = r.array()?;
                r.finish()?;
                let [lo @ .., _, _] = challenge;
                Datagram::strong_if(lo == DESC_CHALLENGE_MARK, SERVER_UDP)
                    .asking(Pending::ServerDesc(challenge))
            }
        }
        server_op::SERVER_DESC_RES => {
            let mut probe = *r;
            let first: [u8; 2] = probe.array()?;
            if first == DESC_CHALLENGE_MARK {
                // New answer: <challenge 4><tag count u32><tags>.
                let challenge: [u8; 4] = r.array()?;
                let n = r.len32()?;
                tag_list(r, n)?;
                r.finish()?;
                Datagram::strong(SERVER_UDP)
                    .answering(Pending::ServerDesc(challenge), SERVER_UDP_REPLY)
            } else {
                // Old answer: <name><description>, two u16-length strings.
                let name = r.string()?;
                r.string()?;
                r.finish()?;
                Datagram::strong_if(!name.is_empty(), SERVER_UDP)
                    .answering(Pending::ServerDesc([0; 4]), SERVER_UDP_REPLY)
            }
        }
        server_op::GLOBGETSOURCES => {
            // <hash 16>*: random-looking hashes, nothing to check but the
            // size, so only the server's answer makes it count.
            let n = r.remaining();
            if n == 0 || !n.is_multiple_of(field::HASH) {
                return Err(Bad::Invalid);
            }
            Datagram::WEAK.asking(Pending::GetSources)
        }
        server_op::GLOBGETSOURCES2 => {
            // (<hash 16><size u32>)*, or <hash 16><0 u32><size u64> for files
            // of 4 GiB and more. Sizes are never zero.
            loop {
                r.skip(field::HASH)?;
                if r.u32()? == 0 && r.u64()? <= u64::from(u32::MAX) {
                    return Err(Bad::Invalid);
                }
                if r.remaining() == 0 {
                    break;
                }
            }
            Datagram::WEAK.asking(Pending::GetSources)
        }
        server_op::GLOBFOUNDSOURCES => {
            // <hash 16><count 1>(<id 4><port 2>)*, repeated after E3 9B.
            loop {
                r.skip(field::HASH)?;
                let n = usize::from(r.u8()?);
                r.skip(n * field::SOURCE)?;
                if r.remaining() == 0 {
                    break;
                }
                if r.array()? != [marker::EDONKEY, server_op::GLOBFOUNDSOURCES] {
                    return Err(Bad::Invalid);
                }
            }
            Datagram::strong(SERVER_UDP).answering(Pending::GetSources, SERVER_UDP_REPLY)
        }
        server_op::GLOBSEARCHREQ | server_op::GLOBSEARCHREQ2 => {
            search_tree(r)?;
            r.finish()?;
            Datagram::strong(SERVER_UDP)
        }
        _ => return Err(Bad::Unknown),
    })
}

/// eMule client UDP (`0xC5`): source reasks (`ClientUDPSocket.cpp`).
fn client_udp(opcode: u8, r: &mut Reader<'_>) -> Parse<Datagram> {
    Ok(match opcode {
        client_op::REASKFILEPING => {
            // <hash 16>, then by UDP version: nothing (v1-2), <sources 2>
            // (v3), or <part status><sources 2> (v4).
            r.skip(field::HASH)?;
            if !matches!(r.remaining(), 0 | 2) {
                part_status(r)?;
                r.skip(2)?;
                r.finish()?;
            }
            Datagram::WEAK.asking(Pending::Reask)
        }
        client_op::REASKACK => {
            // [<part status> (v4)]<queue rank 2>.
            if r.remaining() != 2 {
                part_status(r)?;
            }
            r.skip(2)?;
            r.finish()?;
            Datagram::WEAK.answering(Pending::Reask, CLIENT_UDP_REPLY)
        }
        client_op::FILENOTFOUND | client_op::QUEUEFULL => {
            r.finish()?;
            Datagram::WEAK.answering(Pending::Reask, CLIENT_UDP_REPLY)
        }
        _ => return Err(Bad::Unknown),
    })
}

/// Kad (`0xE4`): aMule `KademliaUDPListener.cpp` (what senders write and
/// what receivers check).
fn kad(opcode: u8, r: &mut Reader<'_>) -> Parse<Datagram> {
    let strong = Datagram::strong(KAD);
    Ok(match opcode {
        kad_op::BOOTSTRAP_REQ => {
            r.finish()?;
            Datagram::WEAK.asking(Pending::KadBootstrap)
        }
        kad_op::BOOTSTRAP_RES => {
            r.skip(field::HASH + 2)?; // sender id, TCP port
            kad_version(r)?;
            let n = r.len16()?;
            r.expect_remaining(n * field::KAD_CONTACT)?;
            strong.answering(Pending::KadBootstrap, KAD_REPLY)
        }
        kad_op::HELLO_REQ => {
            kad_hello(r)?;
            strong.asking(Pending::KadHello)
        }
        kad_op::HELLO_RES => {
            kad_hello(r)?;
            strong.answering(Pending::KadHello, KAD_REPLY)
        }
        kad_op::HELLO_RES_ACK => {
            r.skip(field::HASH)?;
            kad_tags(r)?;
            r.finish()?;
            strong
        }
        kad_op::REQ => {
            kad_req_type(r)?;
            let target = r.token()?;
            r.skip(field::HASH)?; // receiver id
            r.finish()?;
            strong.asking(Pending::KadFind(target))
        }
        kad_op::RES => {
            let target = r.token()?;
            let n = usize::from(r.u8()?);
            r.expect_remaining(n * field::KAD_CONTACT)?;
            // No contacts: an id and a zero, no arithmetic to check.
            Datagram::strong_if(n > 0, KAD).answering(Pending::KadFind(target), KAD_REPLY)
        }
        kad_op::SEARCH_KEY_REQ => {
            let target = r.token()?;
            // Restrictive: a search expression follows. Without one the
            // datagram is 16 bytes of id and 2 of position, which any
            // random datagram of that size fits as well.
            let restrictive = r.u16()? & 0x8000 != 0;
            if restrictive {
                search_tree(r)?;
            }
            r.finish()?;
            Datagram::strong_if(restrictive, KAD).asking(Pending::KadSearch(target))
        }
        kad_op::SEARCH_SOURCE_REQ => {
            let target = r.token()?;
            r.skip(2)?; // start position
            file_size(r)?;
            r.finish()?;
            strong.asking(Pending::KadSearch(target))
        }
        kad_op::SEARCH_NOTES_REQ => {
            let target = r.token()?;
            file_size(r)?;
            r.finish()?;
            strong.asking(Pending::KadSearch(target))
        }
        kad_op::SEARCH_RES => {
            r.skip(field::HASH)?; // sender
            let target = r.token()?;
            let n = r.len16()?;
            if n.saturating_mul(field::HASH + 1) > r.remaining() {
                return Err(Bad::Invalid);
            }
            for _ in 0..n {
                r.skip(field::HASH)?;
                kad_tags(r)?;
            }
            r.finish()?;
            strong.answering(Pending::KadSearch(target), KAD_REPLY)
        }
        kad_op::PUBLISH_KEY_REQ => {
            let key = r.token()?;
            let n = r.len16()?;
            if n == 0 || n.saturating_mul(field::HASH + 1) > r.remaining() {
                return Err(Bad::Invalid);
            }
            for _ in 0..n {
                r.skip(field::HASH)?;
                kad_tags(r)?;
            }
            r.finish()?;
            strong.asking(Pending::KadPublish(key))
        }
        kad_op::PUBLISH_SOURCE_REQ | kad_op::PUBLISH_NOTES_REQ => {
            let file = r.token()?;
            r.skip(field::HASH)?;
            kad_tags(r)?;
            r.finish()?;
            strong.asking(Pending::KadPublish(file))
        }
        kad_op::PUBLISH_RES => {
            let file = r.token()?;
            r.skip(1)?; // load
            if r.remaining() > 1 {
                return Err(Bad::Invalid); // only an options byte may follow
            }
            Datagram::WEAK.answering(Pending::KadPublish(file), KAD_REPLY)
        }
        kad_op::FIREWALLED_REQ => {
            r.expect_remaining(2)?;
            Datagram::WEAK.asking(Pending::KadFirewalled)
        }
        kad_op::FIREWALLED2_REQ => {
            // Port, hash and options: nothing random bytes do not fit.
            r.expect_remaining(2 + field::HASH + 1)?;
            Datagram::WEAK.asking(Pending::KadFirewalled)
        }
        kad_op::FIREWALLED_RES => {
            r.expect_remaining(4)?;
            Datagram::WEAK.answering(Pending::KadFirewalled, KAD_REPLY)
        }
        kad_op::PING => {
            r.finish()?;
            Datagram::WEAK.asking(Pending::KadPing)
        }
        kad_op::PONG => {
            r.expect_remaining(2)?;
            Datagram::WEAK.answering(Pending::KadPing, KAD_REPLY)
        }
        kad_op::BOOTSTRAP_RES_V1 => {
            let n = r.len16()?;
            if n == 0 {
                return Err(Bad::Invalid); // the sender always counts itself
            }
            r.expect_remaining(n * field::KAD_CONTACT)?;
            strong
        }
        // One contact: a fixed size and nothing else to check.
        kad_op::HELLO_REQ_V1 => {
            r.expect_remaining(field::KAD_CONTACT)?;
            Datagram::WEAK.asking(Pending::KadHello)
        }
        kad_op::HELLO_RES_V1 => {
            r.expect_remaining(field::KAD_CONTACT)?;
            Datagram::WEAK.answering(Pending::KadHello, KAD_REPLY)
        }
        kad_op::REQ_V1 => {
            kad_req_type(r)?;
            r.expect_remaining(2 * field::HASH)?;
            strong
        }
        kad_op::RES_V1 => {
            r.skip(field::HASH)?;
            let n = usize::from(r.u8()?);
            r.expect_remaining(n * field::KAD_CONTACT)?;
            Datagram::strong_if(n > 0, KAD)
        }
        _ => return Err(Bad::Unknown),
    })
}

/// Zlib-packed Kad (`0xE5`): a known Kad opcode, then a zlib stream.
fn kad_packed(opcode: u8, r: &mut Reader<'_>) -> Parse<Datagram> {
    if kad(opcode, &mut Reader::new(&[])) == Err(Bad::Unknown) {
        return Err(Bad::Unknown);
    }
    zlib_stream(r)?;
    Ok(Datagram::strong(KAD_PACKED))
}

/// `KADEMLIA2_HELLO_REQ` / `_RES`: `<id 16><TCP port 2><version 1><tag
/// list>`.
fn kad_hello(r: &mut Reader<'_>) -> Parse<()> {
    r.skip(field::HASH + 2)?;
    kad_version(r)?;
    kad_tags(r)?;
    r.finish()
}

/// A Kad version byte: aMule refuses version 0.
fn kad_version(r: &mut Reader<'_>) -> Parse<()> {
    if r.u8()? == 0 {
        return Err(Bad::Invalid);
    }
    Ok(())
}

/// The type byte of `KADEMLIA(2)_REQ`: one of [`kad_op::REQ_TYPES`].
fn kad_req_type(r: &mut Reader<'_>) -> Parse<()> {
    if !kad_op::REQ_TYPES.contains(&r.u8()?) {
        return Err(Bad::Invalid);
    }
    Ok(())
}

/// The largest file eMule and aMule share (`MAX_EMULE_FILE_SIZE`, 256 GiB).
const MAX_FILE_SIZE: u64 = 0x40_0000_0000;

/// A file size (`u64`): never zero, never over [`MAX_FILE_SIZE`].
fn file_size(r: &mut Reader<'_>) -> Parse<()> {
    if !(1..=MAX_FILE_SIZE).contains(&r.u64()?) {
        return Err(Bad::Invalid);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::*;
    use crate::detect::Facts;
    use crate::flow::Endpoint;
    use crate::timestamp::Timestamp;

    const A: Direction = Direction::Originator;
    const B: Direction = Direction::Responder;

    /// One flow as the engine drives it: payload packets numbered per side.
    struct Flow {
        transport: Transport,
        ports: [u16; 2],
        state: State,
        facts: Option<Box<Facts>>,
        sent: [u16; 2],
    }

    impl Flow {
        fn new(transport: Transport) -> Flow {
            Flow::with_ports(transport, [50_000, 4662])
        }

        fn with_ports(transport: Transport, ports: [u16; 2]) -> Flow {
            Flow {
                transport,
                ports,
                state: State::default(),
                facts: None,
                sent: [0; 2],
            }
        }

        fn send(&mut self, dir: Direction, payload: &[u8]) -> Probe {
            self.send_cut(dir, payload, false)
        }

        fn send_cut(&mut self, dir: Direction, payload: &[u8], truncated: bool) -> Probe {
            let i = dir.index();
            self.sent[i] += 1;
            let ep = |port| Endpoint::new(IpAddr::from([192, 0, 2, 1]), port);
            let (src, dst) = match dir {
                Direction::Originator => (ep(self.ports[0]), ep(self.ports[1])),
                Direction::Responder => (ep(self.ports[1]), ep(self.ports[0])),
            };
            let view = PacketView {
                payload,
                direction: dir,
                index: self.sent[i],
                transport: self.transport,
                src,
                dst,
                ts: Timestamp(0),
                truncated,
            };
            let mut sink = FactSink::new(&mut self.facts, dir);
            Edonkey.inspect(&mut self.state, &view, &mut sink)
        }
    }

    fn one_way(name: &'static str) -> Probe {
        evidence(name, Confidence::Unidirectional)
    }

    fn proven(name: &'static str) -> Probe {
        evidence(name, Confidence::Bidirectional)
    }

    // --- byte builders -----------------------------------------------------

    fn tcp(marker: u8, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut m = vec![marker];
        m.extend_from_slice(&(payload.len() as u32 + 1).to_le_bytes());
        m.push(opcode);
        m.extend_from_slice(payload);
        m
    }

    fn udp(marker: u8, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut m = vec![marker, opcode];
        m.extend_from_slice(payload);
        m
    }

    fn cat(parts: &[&[u8]]) -> Vec<u8> {
        parts.concat()
    }

    fn hash(seed: u8) -> [u8; 16] {
        std::array::from_fn(|i| seed.wrapping_mul(31).wrapping_add(i as u8 * 7))
    }

    fn string(s: &[u8]) -> Vec<u8> {
        cat(&[&(s.len() as u16).to_le_bytes(), s])
    }

    /// Old-style tag with a one-byte name: `<type><01 00><id><value>`.
    fn old_tag(kind: u8, id: u8, value: &[u8]) -> Vec<u8> {
        cat(&[&[kind, 1, 0, id], value])
    }

    /// New-style tag: `<type | 0x80><id><value>`.
    fn new_tag(kind: u8, id: u8, value: &[u8]) -> Vec<u8> {
        cat(&[&[kind | 0x80, id], value])
    }

    /// Client tags of a hello: name, version, an eMule version, a mod
    /// string in a short-string tag.
    fn client_tags(name: &[u8]) -> Vec<u8> {
        cat(&[
            &4u32.to_le_bytes(),
            &old_tag(tag::STRING, tag::CT_NAME, &string(name)),
            &old_tag(tag::UINT32, 0x11, &60u32.to_le_bytes()),
            &new_tag(tag::UINT32, 0xFB, &0x0005_0000u32.to_le_bytes()),
            &new_tag(tag::STR1 + 4, 0x55, b"mod 1"),
        ])
    }

    fn hello(user: [u8; 16], name: &[u8]) -> Vec<u8> {
        let body = cat(&[
            &[HELLO_HASH_SIZE],
            &user,
            &[10, 0, 0, 7, 0x36, 0x12],
            &client_tags(name),
            &[198, 51, 100, 9, 0x11, 0x10],
        ]);
        tcp(marker::EDONKEY, 0x01, &body)
    }

    fn hello_answer(user: [u8; 16], name: &[u8]) -> Vec<u8> {
        let body = cat(&[
            &user,
            &[10, 0, 0, 8, 0x36, 0x12],
            &client_tags(name),
            &[0, 0, 0, 0, 0, 0],
        ]);
        tcp(marker::EDONKEY, 0x4C, &body)
    }

    fn login(user: [u8; 16]) -> Vec<u8> {
        let body = cat(&[&user, &[0, 0, 0, 0, 0x36, 0x12], &client_tags(b"me")]);
        tcp(marker::EDONKEY, 0x01, &body)
    }

    fn emule_info() -> Vec<u8> {
        let tags = cat(&[
            &2u32.to_le_bytes(),
            &old_tag(tag::UINT32, 0x20, &1u32.to_le_bytes()),
            &old_tag(tag::UINT32, 0x21, &4672u32.to_le_bytes()),
        ]);
        tcp(marker::EMULE, 0x01, &cat(&[&[0x30, EMULE_PROTOCOL], &tags]))
    }

    fn file_entry(seed: u8) -> Vec<u8> {
        cat(&[
            &hash(seed),
            &[0, 0, 0, 0, 0, 0],
            &2u32.to_le_bytes(),
            &new_tag(tag::STRING, 0x01, &string(b"some file name.avi")),
            &new_tag(tag::UINT32, 0x02, &700_000_000u32.to_le_bytes()),
        ])
    }

    fn offer_files(count: u8) -> Vec<u8> {
        let mut body = u32::from(count).to_le_bytes().to_vec();
        for i in 0..count {
            body.extend(file_entry(i));
        }
        tcp(marker::EDONKEY, 0x15, &body)
    }

    fn sending_part(data_len: u32) -> Vec<u8> {
        let start = 9_728_000u32;
        let body = cat(&[
            &hash(3),
            &start.to_le_bytes(),
            &(start + data_len).to_le_bytes(),
            &vec![0x5A; data_len as usize],
        ]);
        tcp(marker::EDONKEY, 0x46, &body)
    }

    fn kad_hello(opcode: u8) -> Vec<u8> {
        let tags = cat(&[
            &[2],
            &old_tag(tag::UINT16, 0xFC, &4672u16.to_le_bytes()),
            &old_tag(tag::UINT8, 0xF2, &[0x04]),
        ]);
        udp(
            marker::KAD,
            opcode,
            &cat(&[&hash(1), &[0x36, 0x12, 0x0A], &tags]),
        )
    }

    fn contacts(n: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for i in 0..n {
            out.extend(hash(i as u8));
            out.extend([203, 0, 113, i as u8, 0x40, 0x12, 0x36, 0x12, 0x08]);
        }
        out
    }

    fn kad_req(target: [u8; 16]) -> Vec<u8> {
        udp(
            marker::KAD,
            kad_op::REQ,
            &cat(&[&[0x0B], &target, &hash(9)]),
        )
    }

    fn kad_res(target: [u8; 16], n: usize) -> Vec<u8> {
        udp(
            marker::KAD,
            kad_op::RES,
            &cat(&[&target, &[n as u8], &contacts(n)]),
        )
    }

    /// `AND("linux", size > 1000)`.
    fn search_expr() -> Vec<u8> {
        cat(&[
            &[0x00, 0x00],
            &[0x01],
            &string(b"linux"),
            &[0x03],
            &1000u32.to_le_bytes(),
            &[0x01],
            &string(&[0x02]),
        ])
    }

    fn zlib_body() -> Vec<u8> {
        vec![0x78, 0x9C, 0x63, 0x60, 0x00, 0x00, 0x00, 0x02, 0x00, 0x01]
    }

    // --- TCP -------------------------------------------------------------

    #[test]
    fn tcp_hello_and_answer_match_both_sides_and_give_facts() {
        let mut f = Flow::new(Transport::Tcp);
        assert_eq!(f.send(A, &hello(hash(1), b"alice")), one_way(HELLO));
        // Responder: OP_HELLOANSWER, OP_EMULEINFO, OP_SECIDENTSTATE coalesced.
        let secident = tcp(marker::EMULE, 0x87, &[1, 9, 9, 9, 9]);
        let answer = cat(&[&hello_answer(hash(2), b"bob"), &emule_info(), &secident]);
        assert_eq!(f.send(B, &answer), one_way(HELLO));
        let facts = f.facts.as_deref().unwrap();
        assert_eq!(facts.peer_id[0].as_deref(), Some(hex(&hash(1)).as_str()));
        assert_eq!(facts.peer_id[1].as_deref(), Some(hex(&hash(2)).as_str()));
        assert_eq!(facts.client[0].as_deref(), Some("alice"));
        assert_eq!(facts.client[1].as_deref(), Some("bob"));
        assert_eq!(hex(&[0x00, 0xAB, 0x1F]), "00ab1f");
        // Both first packets checked: nothing more to learn.
        assert_eq!(f.send(A, &[0x42; 10]), Probe::NotMine);
    }

    #[test]
    fn tcp_later_packets_wait_for_the_other_side() {
        let mut f = Flow::new(Transport::Tcp);
        assert_eq!(f.send(A, &hello(hash(1), b"a")), one_way(HELLO));
        assert_eq!(f.send(A, &[0x42; 100]), Probe::NeedMore);
        assert_eq!(f.send(B, &hello_answer(hash(2), b"b")), one_way(HELLO));
        assert_eq!(f.send(A, &[0x42; 100]), Probe::NotMine);
    }

    #[test]
    fn tcp_server_session_matches() {
        let mut f = Flow::new(Transport::Tcp);
        assert_eq!(f.send(A, &login(hash(4))), one_way(LOGIN));
        let greeting = cat(&[
            &tcp(marker::EDONKEY, 0x38, &string(b"Welcome to this server")),
            &tcp(marker::EDONKEY, 0x40, &[1, 2, 3, 4, 0x19, 0x05, 0, 0]),
            &tcp(marker::EDONKEY, 0x34, &[0; 8]),
            &tcp(marker::EDONKEY, 0x32, &[1, 198, 51, 100, 1, 0x36, 0x12]),
            &tcp(
                marker::EDONKEY,
                0x41,
                &cat(&[
                    &hash(5),
                    &[198, 51, 100, 1, 0x36, 0x12],
                    &1u32.to_le_bytes(),
                    &old_tag(tag::STRING, 0x01, &string(b"srv")),
                ]),
            ),
        ]);
        assert_eq!(f.send(B, &greeting), one_way(MESSAGE));
        assert_eq!(
            f.facts.as_deref().unwrap().peer_id[0].as_deref(),
            Some(hex(&hash(4)).as_str())
        );
    }

    #[test]
    fn tcp_other_openings_match() {
        let openings: Vec<(&str, Vec<u8>)> = vec![
            ("offer files", offer_files(3)),
            (
                "packed offer files",
                tcp(marker::PACKED, 0x15, &zlib_body()),
            ),
            (
                "packed eMule answer sources",
                tcp(marker::PACKED, 0x82, &zlib_body()),
            ),
            ("sending part", sending_part(100)),
            ("search request", tcp(marker::EDONKEY, 0x16, &search_expr())),
            (
                "get sources (large file)",
                tcp(
                    marker::EDONKEY,
                    0x19,
                    &cat(&[&hash(6), &[0; 4], &(5u64 << 32).to_le_bytes()]),
                ),
            ),
            (
                "file status",
                tcp(
                    marker::EDONKEY,
                    0x50,
                    &cat(&[&hash(6), &9u16.to_le_bytes(), &[0xFF, 0x01]]),
                ),
            ),
            (
                "found sources",
                tcp(marker::EDONKEY, 0x42, &cat(&[&hash(6), &[2], &[7; 12]])),
            ),
            (
                "found sources obfu",
                tcp(
                    marker::EDONKEY,
                    0x44,
                    &cat(&[&hash(6), &[2], &[7; 6], &[0x08], &hash(8), &[7; 6], &[0x00]]),
                ),
            ),
            (
                "public key",
                tcp(marker::EMULE, 0x85, &cat(&[&[4], &[1, 2, 3, 4]])),
            ),
            (
                "signature v2",
                tcp(marker::EMULE, 0x86, &cat(&[&[3], &[1, 2, 3], &[1]])),
            ),
            ("request parts i64", tcp(marker::EMULE, 0xA3, &[0; 64])),
            (
                "shared dirs",
                tcp(
                    marker::EDONKEY,
                    0x5F,
                    &cat(&[&2u32.to_le_bytes(), &string(b"a"), &string(b"bc")]),
                ),
            ),
            ("accept upload", tcp(marker::EDONKEY, 0x55, &[])),
        ];
        for (name, bytes) in openings {
            let mut f = Flow::new(Transport::Tcp);
            assert_eq!(f.send(A, &bytes), one_way(MESSAGE), "{name}");
        }
    }

    #[test]
    fn tcp_first_message_split_across_segments() {
        // A large OP_OFFERFILES: the first segment is full-sized and its
        // visible entries parse.
        let offer = offer_files(40);
        assert!(offer.len() > 1460);
        let mut f = Flow::new(Transport::Tcp);
        assert_eq!(f.send(A, &offer[..1460]), one_way(MESSAGE));
        // Not full-sized: a short packet must end on a message boundary.
        let mut f = Flow::new(Transport::Tcp);
        assert_eq!(f.send(A, &offer[..500]), Probe::NotMine);
        // Corrupt a tag type inside the visible part.
        let mut bad = offer[..1460].to_vec();
        bad[10 + 16 + 6 + 4] = 0x66;
        let mut f = Flow::new(Transport::Tcp);
        assert_eq!(f.send(A, &bad), Probe::NotMine);
        // OP_SENDINGPART: the offsets must add up to the declared length.
        let part = sending_part(10_240);
        let mut f = Flow::new(Transport::Tcp);
        assert_eq!(f.send(A, &part[..1448]), one_way(MESSAGE));
        let mut wrong = part[..1448].to_vec();
        wrong[1] ^= 0x01;
        let mut f = Flow::new(Transport::Tcp);
        assert_eq!(f.send(A, &wrong), Probe::NotMine);
        // An opcode whose start says nothing (OP_COMPRESSEDPART) cannot open
        // a packet split.
        let compressed = tcp(marker::EMULE, 0x40, &[0x11; 3000]);
        let mut f = Flow::new(Transport::Tcp);
        assert_eq!(f.send(A, &compressed[..1460]), Probe::NotMine);
        // ... but may follow whole messages in a full-sized packet.
        let mut f = Flow::new(Transport::Tcp);
        let hello = hello(hash(1), b"x");
        let coalesced = cat(&[&hello, &compressed]);
        assert_eq!(f.send(A, &coalesced[..1460]), one_way(HELLO));
        // A header split after whole messages.
        let mut f = Flow::new(Transport::Tcp);
        let filler = tcp(marker::EMULE, 0x40, &vec![0x11; 1460 - hello.len() - 3 - 6]);
        let header_cut = cat(&[&hello, &filler, &[marker::EDONKEY, 0x10, 0x00]]);
        assert_eq!(header_cut.len(), 1460);
        assert_eq!(f.send(A, &header_cut), one_way(HELLO));
    }

    #[test]
    fn tcp_cut_by_snap_length() {
        let hello = hello(hash(1), b"a long enough nickname for a long hello");
        let mut f = Flow::new(Transport::Tcp);
        assert_eq!(f.send_cut(A, &hello[..96], true), one_way(MESSAGE));
        // Too little visible to check the layout.
        let mut f = Flow::new(Transport::Tcp);
        assert_eq!(f.send_cut(A, &hello[..40], true), Probe::NotMine);
    }

    #[test]
    fn tcp_rejects_broken_framing_and_layouts() {
        let good = hello(hash(1), b"a");
        let mut longer = good.clone();
        longer[1] += 1;
        let mut shorter = good.clone();
        shorter[1] -= 1;
        let mut hash_size = good.clone();
        hash_size[6] = 0x11;
        let mut info_v2 = emule_info();
        info_v2[7] = 2;
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("length one too long", longer),
            ("length one too short", shorter),
            ("trailing byte", cat(&[&good, &[0x00]])),
            ("trailing garbage", cat(&[&good, &[0xE3, 0x01]])),
            ("hash size byte", hash_size),
            ("zero length", vec![0xE3, 0, 0, 0, 0, 0x01]),
            ("unknown eDonkey opcode", tcp(marker::EDONKEY, 0x02, &[])),
            ("unknown eMule opcode", tcp(marker::EMULE, 0x03, &[])),
            (
                "packed without zlib",
                tcp(marker::PACKED, 0x15, &[0x11; 20]),
            ),
            (
                "packed unknown opcode",
                tcp(marker::PACKED, 0x03, &zlib_body()),
            ),
            (
                "server message length",
                tcp(marker::EDONKEY, 0x38, &cat(&[&5u16.to_le_bytes(), b"abcd"])),
            ),
            ("server status size", tcp(marker::EDONKEY, 0x34, &[0; 7])),
            ("eMule protocol version", info_v2),
            (
                "sending part backwards",
                tcp(
                    marker::EDONKEY,
                    0x46,
                    &cat(&[&hash(1), &8u32.to_le_bytes(), &4u32.to_le_bytes(), &[0; 4]]),
                ),
            ),
            (
                "search tree op",
                tcp(
                    marker::EDONKEY,
                    0x16,
                    &[0x00, 0x07, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00],
                ),
            ),
            (
                "file list count",
                tcp(
                    marker::EDONKEY,
                    0x15,
                    &cat(&[&9u32.to_le_bytes(), &file_entry(1)]),
                ),
            ),
            ("header only", vec![0xE3, 0x10, 0, 0]),
        ];
        for (name, bytes) in cases {
            let mut f = Flow::new(Transport::Tcp);
            assert_eq!(f.send(A, &bytes), Probe::NotMine, "{name}");
        }
    }

    // --- Kad -------------------------------------------------------------

    #[test]
    fn kad_bootstrap_request_is_weak_until_answered() {
        let mut f = Flow::new(Transport::Udp);
        assert_eq!(
            f.send(A, &[marker::KAD, kad_op::BOOTSTRAP_REQ]),
            Probe::NeedMore
        );
        let res = udp(
            marker::KAD,
            kad_op::BOOTSTRAP_RES,
            &cat(&[
                &hash(2),
                &[0x36, 0x12, 0x0A],
                &2u16.to_le_bytes(),
                &contacts(2),
            ]),
        );
        assert_eq!(f.send(B, &res), proven(KAD_REPLY));
        // Alone, the response's arithmetic is structure enough.
        let mut f = Flow::new(Transport::Udp);
        assert_eq!(f.send(B, &res), one_way(KAD));
        // Version zero is refused.
        let mut bad = res.clone();
        bad[2 + 18] = 0;
        let mut f = Flow::new(Transport::Udp);
        assert_eq!(f.send(B, &bad), Probe::NotMine);
    }

    #[test]
    fn kad_hello_pair() {
        let mut f = Flow::new(Transport::Udp);
        assert_eq!(f.send(A, &kad_hello(kad_op::HELLO_REQ)), one_way(KAD));
        assert_eq!(f.send(B, &kad_hello(kad_op::HELLO_RES)), proven(KAD_REPLY));
        // A response without a request is only one-way.
        let mut f = Flow::new(Transport::Udp);
        assert_eq!(f.send(B, &kad_hello(kad_op::HELLO_RES)), one_way(KAD));
        // The tag count must match the tags.
        let mut bad = kad_hello(kad_op::HELLO_REQ);
        bad[2 + 19] = 3;
        assert_eq!(Flow::new(Transport::Udp).send(A, &bad), Probe::NotMine);
    }

    #[test]
    fn kad_replies_feed_the_endpoint_cache() {
        let mut contact = vec![0x11u8; 16];
        contact.extend_from_slice(&[4, 3, 2, 1]); // 1.2.3.4, little-endian
        contact.extend_from_slice(&4672u16.to_le_bytes());
        contact.extend_from_slice(&4662u16.to_le_bytes());
        contact.push(8);
        let mut res = vec![marker::KAD, kad_op::RES];
        res.extend_from_slice(&[0x22; 16]);
        res.push(1);
        res.extend_from_slice(&contact);
        let (mut facts, mut learnt) = (None, Vec::new());
        learn_kad_contacts(
            &res,
            &mut FactSink::with_learnt(&mut facts, Direction::Responder, &mut learnt),
        );
        let got: Vec<String> = learnt.iter().map(|l| l.endpoint.to_string()).collect();
        assert_eq!(got, vec!["1.2.3.4:4672", "1.2.3.4:4662"]);
    }

    #[test]
    fn kad_find_node_reply_must_echo_the_target() {
        let mut f = Flow::new(Transport::Udp);
        assert_eq!(f.send(A, &kad_req(hash(7))), one_way(KAD));
        assert_eq!(f.send(B, &kad_res(hash(7), 3)), proven(KAD_REPLY));
        let mut f = Flow::new(Transport::Udp);
        assert_eq!(f.send(A, &kad_req(hash(7))), one_way(KAD));
        assert_eq!(f.send(B, &kad_res(hash(8), 3)), one_way(KAD));
        // Sizes are exact.
        let mut long = kad_req(hash(7));
        long.push(0);
        assert_eq!(Flow::new(Transport::Udp).send(A, &long), Probe::NotMine);
        let mut res = kad_res(hash(7), 3);
        res[2 + 16] = 4;
        assert_eq!(Flow::new(Transport::Udp).send(B, &res), Probe::NotMine);
        let mut req = kad_req(hash(7));
        req[2] = 0x01; // not a request type eMule sends
        assert_eq!(Flow::new(Transport::Udp).send(A, &req), Probe::NotMine);
        // A reply with no contacts is an id and a zero: evidence only as
        // the answer to its request.
        let empty = kad_res(hash(7), 0);
        assert_eq!(Flow::new(Transport::Udp).send(B, &empty), Probe::NeedMore);
        let mut f = Flow::new(Transport::Udp);
        assert_eq!(f.send(A, &kad_req(hash(7))), one_way(KAD));
        assert_eq!(f.send(B, &empty), proven(KAD_REPLY));
    }

    #[test]
    fn kad_ping_pong_counts_only_as_a_pair() {
        let ping = [marker::KAD, kad_op::PING];
        let pong = [marker::KAD, kad_op::PONG, 0x40, 0x12];
        let mut f = Flow::new(Transport::Udp);
        assert_eq!(f.send(A, &ping), Probe::NeedMore);
        assert_eq!(f.send(B, &pong), proven(KAD_REPLY));
        let mut f = Flow::new(Transport::Udp);
        assert_eq!(f.send(B, &pong), Probe::NeedMore);
        assert_eq!(f.send(B, &ping), Probe::NeedMore);
        // A pong from the side that pinged answers nothing.
        let mut f = Flow::new(Transport::Udp);
        assert_eq!(f.send(A, &ping), Probe::NeedMore);
        assert_eq!(f.send(A, &pong), Probe::NeedMore);
        assert_eq!(
            Flow::new(Transport::Udp).send(A, &[marker::KAD, kad_op::PING, 0]),
            Probe::NotMine
        );
        assert_eq!(
            Flow::new(Transport::Udp).send(A, &[marker::KAD, kad_op::PONG, 1]),
            Probe::NotMine
        );
    }

    #[test]
    fn kad_searches_and_publishes() {
        let key_plain = udp(
            marker::KAD,
            kad_op::SEARCH_KEY_REQ,
            &cat(&[&hash(3), &[0, 0]]),
        );
        let key_tree = udp(
            marker::KAD,
            kad_op::SEARCH_KEY_REQ,
            &cat(&[&hash(3), &[0, 0x80], &search_expr()]),
        );
        let source = udp(
            marker::KAD,
            kad_op::SEARCH_SOURCE_REQ,
            &cat(&[&hash(3), &[0, 0], &700u64.to_le_bytes()]),
        );
        let notes = udp(
            marker::KAD,
            kad_op::SEARCH_NOTES_REQ,
            &cat(&[&hash(3), &700u64.to_le_bytes()]),
        );
        let result = cat(&[
            &hash(4),
            &[1],
            &old_tag(tag::STRING, 0x01, &string(b"file.iso")),
        ]);
        let res = udp(
            marker::KAD,
            kad_op::SEARCH_RES,
            &cat(&[&hash(9), &hash(3), &2u16.to_le_bytes(), &result, &result]),
        );
        // A keyword search without an expression is ids and a position:
        // no evidence until answered.
        for (req, alone) in [
            (&key_plain, Probe::NeedMore),
            (&key_tree, one_way(KAD)),
            (&source, one_way(KAD)),
            (&notes, one_way(KAD)),
        ] {
            let mut f = Flow::new(Transport::Udp);
            assert_eq!(f.send(A, req), alone);
            assert_eq!(f.send(B, &res), proven(KAD_REPLY));
        }
        let publish_key = udp(
            marker::KAD,
            kad_op::PUBLISH_KEY_REQ,
            &cat(&[&hash(5), &1u16.to_le_bytes(), &result]),
        );
        let publish_source = udp(
            marker::KAD,
            kad_op::PUBLISH_SOURCE_REQ,
            &cat(&[
                &hash(5),
                &hash(6),
                &[2],
                &old_tag(tag::UINT8, 0xFF, &[1]),
                &old_tag(tag::UINT16, 0xFD, &[0x36, 0x12]),
            ]),
        );
        let publish_res = udp(marker::KAD, kad_op::PUBLISH_RES, &cat(&[&hash(5), &[3]]));
        for req in [&publish_key, &publish_source] {
            let mut f = Flow::new(Transport::Udp);
            assert_eq!(f.send(A, req), one_way(KAD));
            assert_eq!(f.send(B, &publish_res), proven(KAD_REPLY));
        }
        assert_eq!(
            Flow::new(Transport::Udp).send(B, &publish_res),
            Probe::NeedMore
        );
        // Source searches give a file size, never zero.
        let zero = udp(
            marker::KAD,
            kad_op::SEARCH_SOURCE_REQ,
            &cat(&[&hash(3), &[0, 0], &0u64.to_le_bytes()]),
        );
        assert_eq!(Flow::new(Transport::Udp).send(A, &zero), Probe::NotMine);
        // ... nor over eMule's largest (random bytes mostly are).
        let huge = udp(
            marker::KAD,
            kad_op::SEARCH_NOTES_REQ,
            &cat(&[&hash(3), &(MAX_FILE_SIZE + 1).to_le_bytes()]),
        );
        assert_eq!(Flow::new(Transport::Udp).send(A, &huge), Probe::NotMine);
    }

    #[test]
    fn kad_firewall_check_and_ack() {
        let req2 = udp(
            marker::KAD,
            kad_op::FIREWALLED2_REQ,
            &cat(&[&[0x36, 0x12], &hash(2), &[0x01]]),
        );
        let res = udp(marker::KAD, kad_op::FIREWALLED_RES, &[198, 51, 100, 7]);
        // Port, hash and options fit any 21 bytes: evidence only answered.
        let mut f = Flow::new(Transport::Udp);
        assert_eq!(f.send(A, &req2), Probe::NeedMore);
        assert_eq!(f.send(B, &res), proven(KAD_REPLY));
        let mut f = Flow::new(Transport::Udp);
        assert_eq!(
            f.send(A, &udp(marker::KAD, kad_op::FIREWALLED_REQ, &[0x36, 0x12])),
            Probe::NeedMore
        );
        assert_eq!(f.send(B, &res), proven(KAD_REPLY));
        let ack = udp(marker::KAD, kad_op::HELLO_RES_ACK, &cat(&[&hash(2), &[0]]));
        assert_eq!(Flow::new(Transport::Udp).send(A, &ack), one_way(KAD));
    }

    #[test]
    fn kad_version_1_and_packed() {
        // One contact at a fixed size: well-formed, but no evidence alone.
        let hello_v1 = udp(marker::KAD, kad_op::HELLO_REQ_V1, &contacts(1));
        let mut f = Flow::new(Transport::Udp);
        assert_eq!(f.send(A, &hello_v1), Probe::NeedMore);
        let hello_res_v1 = udp(marker::KAD, kad_op::HELLO_RES_V1, &contacts(1));
        assert_eq!(f.send(B, &hello_res_v1), proven(KAD_REPLY));
        let res_v1 = udp(
            marker::KAD,
            kad_op::RES_V1,
            &cat(&[&hash(1), &[2], &contacts(2)]),
        );
        assert_eq!(Flow::new(Transport::Udp).send(A, &res_v1), one_way(KAD));
        let boot_v1 = udp(
            marker::KAD,
            kad_op::BOOTSTRAP_RES_V1,
            &cat(&[&1u16.to_le_bytes(), &contacts(1)]),
        );
        assert_eq!(Flow::new(Transport::Udp).send(A, &boot_v1), one_way(KAD));
        let packed = udp(marker::KAD_PACKED, kad_op::SEARCH_RES, &zlib_body());
        assert_eq!(
            Flow::new(Transport::Udp).send(A, &packed),
            one_way(KAD_PACKED)
        );
        for bad in [
            udp(marker::KAD_PACKED, 0x77, &zlib_body()),
            udp(
                marker::KAD_PACKED,
                kad_op::SEARCH_RES,
                &[0x78, 0x9D, 1, 2, 3, 4, 5, 6],
            ),
            udp(marker::KAD_PACKED, kad_op::SEARCH_RES, &[0x78, 0x9C, 1]),
            udp(
                marker::KAD_PACKED,
                kad_op::SEARCH_RES,
                &[0x58, 0x85, 1, 2, 3, 4, 5, 6],
            ),
        ] {
            assert_eq!(
                Flow::new(Transport::Udp).send(A, &bad),
                Probe::NotMine,
                "{bad:x?}"
            );
        }
    }

    #[test]
    fn plain_datagrams_on_the_dns_port_are_not_kad() {
        let req = kad_req(hash(7));
        assert_eq!(
            Flow::with_ports(Transport::Udp, [50_000, 4672]).send(A, &req),
            one_way(KAD)
        );
        assert_eq!(
            Flow::with_ports(Transport::Udp, [50_000, 53]).send(A, &req),
            Probe::NotMine
        );
        assert_eq!(
            Flow::with_ports(Transport::Udp, [53, 4672]).send(B, &req),
            Probe::NotMine
        );
    }

    #[test]
    fn cut_datagrams_are_not_judged() {
        let req = kad_req(hash(7));
        let mut f = Flow::new(Transport::Udp);
        assert_eq!(f.send_cut(A, &req[..20], true), Probe::NeedMore);
        assert_eq!(f.send(A, &req), one_way(KAD));
    }

    // --- eDonkey UDP -----------------------------------------------------

    #[test]
    fn server_status_reply_echoes_the_challenge() {
        let req = udp(
            marker::EDONKEY,
            server_op::GLOBSERVSTATREQ,
            &[0x34, 0x12, 0xAA, 0x55],
        );
        let res = udp(
            marker::EDONKEY,
            server_op::GLOBSERVSTATRES,
            &cat(&[&[0x34, 0x12, 0xAA, 0x55], &[7; 20]]),
        );
        let mut f = Flow::new(Transport::Udp);
        assert_eq!(f.send(A, &req), one_way(SERVER_UDP));
        assert_eq!(f.send(B, &res), proven(SERVER_UDP_REPLY));
        // Another challenge: neither counts alone, the echo still proves it.
        let req = udp(marker::EDONKEY, server_op::GLOBSERVSTATREQ, &[1, 2, 3, 4]);
        let res = udp(
            marker::EDONKEY,
            server_op::GLOBSERVSTATRES,
            &cat(&[&[1, 2, 3, 4], &[7; 8]]),
        );
        let other = udp(
            marker::EDONKEY,
            server_op::GLOBSERVSTATRES,
            &cat(&[&[1, 2, 3, 5], &[7; 8]]),
        );
        let mut f = Flow::new(Transport::Udp);
        assert_eq!(f.send(A, &req), Probe::NeedMore);
        assert_eq!(f.send(B, &other), Probe::NeedMore);
        assert_eq!(f.send(B, &res), proven(SERVER_UDP_REPLY));
        let short = udp(
            marker::EDONKEY,
            server_op::GLOBSERVSTATRES,
            &[1, 2, 3, 4, 0, 0, 0],
        );
        assert_eq!(Flow::new(Transport::Udp).send(B, &short), Probe::NotMine);
        let long_req = udp(
            marker::EDONKEY,
            server_op::GLOBSERVSTATREQ,
            &[0x34, 0x12, 0xAA, 0x55, 0],
        );
        assert_eq!(Flow::new(Transport::Udp).send(A, &long_req), Probe::NotMine);
    }

    #[test]
    fn server_description() {
        let req = udp(
            marker::EDONKEY,
            server_op::SERVER_DESC_REQ,
            &[0xFF, 0xF0, 0x21, 0x43],
        );
        let new = udp(
            marker::EDONKEY,
            server_op::SERVER_DESC_RES,
            &cat(&[
                &[0xFF, 0xF0, 0x21, 0x43],
                &2u32.to_le_bytes(),
                &old_tag(tag::STRING, 0x01, &string(b"srv")),
                &old_tag(tag::STRING, 0x0B, &string(b"desc")),
            ]),
        );
        let mut f = Flow::new(Transport::Udp);
        assert_eq!(f.send(A, &req), one_way(SERVER_UDP));
        assert_eq!(f.send(B, &new), proven(SERVER_UDP_REPLY));
        let old = udp(
            marker::EDONKEY,
            server_op::SERVER_DESC_RES,
            &cat(&[&string(b"Some server"), &string(b"the description")]),
        );
        let mut f = Flow::new(Transport::Udp);
        assert_eq!(
            f.send(A, &[marker::EDONKEY, server_op::SERVER_DESC_REQ]),
            Probe::NeedMore
        );
        assert_eq!(f.send(B, &old), proven(SERVER_UDP_REPLY));
        assert_eq!(Flow::new(Transport::Udp).send(B, &old), one_way(SERVER_UDP));
        let mut broken = old.clone();
        broken[2] += 1;
        assert_eq!(Flow::new(Transport::Udp).send(B, &broken), Probe::NotMine);
    }

    #[test]
    fn server_sources() {
        let get = udp(
            marker::EDONKEY,
            server_op::GLOBGETSOURCES,
            &cat(&[&hash(1), &hash(2)]),
        );
        let get2 = udp(
            marker::EDONKEY,
            server_op::GLOBGETSOURCES2,
            &cat(&[
                &hash(1),
                &700u32.to_le_bytes(),
                &hash(2),
                &[0; 4],
                &(6u64 << 32).to_le_bytes(),
            ]),
        );
        let found = cat(&[
            &udp(
                marker::EDONKEY,
                server_op::GLOBFOUNDSOURCES,
                &cat(&[&hash(1), &[2], &[9; 12]]),
            ),
            &udp(
                marker::EDONKEY,
                server_op::GLOBFOUNDSOURCES,
                &cat(&[&hash(2), &[1], &[9; 6]]),
            ),
        ]);
        for req in [&get, &get2] {
            let mut f = Flow::new(Transport::Udp);
            assert_eq!(f.send(A, req), Probe::NeedMore);
            assert_eq!(f.send(B, &found), proven(SERVER_UDP_REPLY));
        }
        assert_eq!(
            Flow::new(Transport::Udp).send(B, &found),
            one_way(SERVER_UDP)
        );
        for bad in [
            udp(marker::EDONKEY, server_op::GLOBGETSOURCES, &[1; 17]),
            udp(marker::EDONKEY, server_op::GLOBGETSOURCES, &[]),
            udp(
                marker::EDONKEY,
                server_op::GLOBGETSOURCES2,
                &cat(&[&hash(1), &[0; 4], &700u64.to_le_bytes()]),
            ),
            udp(marker::EDONKEY, server_op::GLOBGETSOURCES2, &[1; 21]),
            udp(
                marker::EDONKEY,
                server_op::GLOBFOUNDSOURCES,
                &cat(&[&hash(1), &[2], &[9; 13]]),
            ),
            cat(&[&found, &[0xE3, 0x9A]]),
        ] {
            assert_eq!(
                Flow::new(Transport::Udp).send(A, &bad),
                Probe::NotMine,
                "{bad:x?}"
            );
        }
        let search = udp(marker::EDONKEY, server_op::GLOBSEARCHREQ, &search_expr());
        assert_eq!(
            Flow::new(Transport::Udp).send(A, &search),
            one_way(SERVER_UDP)
        );
    }

    #[test]
    fn client_reask_answered() {
        let v4 = udp(
            marker::EMULE,
            client_op::REASKFILEPING,
            &cat(&[
                &hash(1),
                &10u16.to_le_bytes(),
                &[0xFF, 0x03],
                &5u16.to_le_bytes(),
            ]),
        );
        let ack = udp(
            marker::EMULE,
            client_op::REASKACK,
            &cat(&[&10u16.to_le_bytes(), &[0xFF, 0x03], &17u16.to_le_bytes()]),
        );
        let mut f = Flow::new(Transport::Udp);
        assert_eq!(f.send(A, &v4), Probe::NeedMore);
        assert_eq!(f.send(B, &ack), proven(CLIENT_UDP_REPLY));
        for answer in [
            [marker::EMULE, client_op::QUEUEFULL],
            [marker::EMULE, client_op::FILENOTFOUND],
        ] {
            let mut f = Flow::new(Transport::Udp);
            assert_eq!(
                f.send(A, &udp(marker::EMULE, client_op::REASKFILEPING, &hash(1))),
                Probe::NeedMore
            );
            assert_eq!(f.send(B, &answer), proven(CLIENT_UDP_REPLY));
            // Alone, two bytes are nothing.
            assert_eq!(Flow::new(Transport::Udp).send(B, &answer), Probe::NeedMore);
        }
        let mut bad = v4.clone();
        bad[2 + 16] = 17; // part count no longer fits the bit field
        assert_eq!(Flow::new(Transport::Udp).send(A, &bad), Probe::NotMine);
    }

    // --- look-alikes -------------------------------------------------------

    /// A DNS query for `name` (labels) with the given id.
    fn dns_query(id: [u8; 2], labels: &[&[u8]]) -> Vec<u8> {
        let mut m = cat(&[&id, &[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]]);
        for l in labels {
            m.push(l.len() as u8);
            m.extend_from_slice(l);
        }
        m.extend([0, 0, 1, 0, 1]);
        m
    }

    fn dns_response(id: [u8; 2]) -> Vec<u8> {
        let mut m = cat(&[&id, &[0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0]]);
        m.extend(&dns_query(id, &[b"example", b"com"])[12..]);
        m.extend([
            0xC0, 0x0C, 0, 1, 0, 1, 0, 0, 0x0E, 0x10, 0, 4, 93, 184, 216, 34,
        ]);
        m
    }

    fn lookalikes() -> Vec<(&'static str, Transport, Vec<u8>)> {
        let mut quic_initial = vec![0xC5, 0, 0, 0, 1, 8];
        quic_initial.extend([0x11; 8]);
        quic_initial.extend([8]);
        quic_initial.extend([0x22; 8]);
        quic_initial.resize(1200, 0x33);
        let mut quic_handshake = vec![0xE4, 0, 0, 0, 1, 8];
        quic_handshake.resize(80, 0x44);
        let mut quic_handshake_e5 = quic_handshake.clone();
        quic_handshake_e5[0] = 0xE5;
        let mut gquic = b"\xE4Q046".to_vec();
        gquic.resize(1350, 0x55);
        let mut quic_short = vec![0x43];
        quic_short.extend([0x66; 40]);
        let mut stun = vec![0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xA4, 0x42];
        stun.extend([0x77; 12]);
        let mut tls = vec![
            0x16, 0x03, 0x01, 0x00, 0xC8, 0x01, 0x00, 0x00, 0xC4, 0x03, 0x03,
        ];
        tls.resize(205, 0x11);
        let mut rtp = vec![
            0x80, 0x60, 0x12, 0x34, 0, 0, 0x10, 0, 0xDE, 0xAD, 0xBE, 0xEF,
        ];
        rtp.resize(172, 0xD5);
        let mut wireguard = vec![1, 0, 0, 0];
        wireguard.resize(148, 0xE3);
        // NTPv4 client request: LI 3, version 4, mode 3 is 0xE3.
        let mut ntp = vec![0xE3, 0x00, 0x06, 0xEC];
        ntp.resize(48, 0);
        let mut bt = vec![19];
        bt.extend(b"BitTorrent protocol");
        bt.extend([0; 8]);
        bt.extend([0xE3; 40]);
        vec![
            (
                "DNS query id E421",
                Transport::Udp,
                dns_query([0xE4, 0x21], &[b"www", b"example", b"com"]),
            ),
            (
                "DNS query id E401",
                Transport::Udp,
                dns_query([0xE4, 0x01], &[b"example", b"com"]),
            ),
            (
                "DNS query id C590",
                Transport::Udp,
                dns_query([0xC5, 0x90], &[b"a", b"b"]),
            ),
            (
                "DNS query id E396",
                Transport::Udp,
                dns_query([0xE3, 0x96], &[b"x"]),
            ),
            (
                "DNS response id E429",
                Transport::Udp,
                dns_response([0xE4, 0x29]),
            ),
            (
                "DNS response id E39B",
                Transport::Udp,
                dns_response([0xE3, 0x9B]),
            ),
            ("STUN binding request", Transport::Udp, stun.clone()),
            ("STUN over TCP", Transport::Tcp, stun),
            ("QUIC initial C5", Transport::Udp, quic_initial),
            ("QUIC handshake E4", Transport::Udp, quic_handshake),
            ("QUIC handshake E5", Transport::Udp, quic_handshake_e5),
            ("gQUIC Q046", Transport::Udp, gquic),
            ("QUIC short header", Transport::Udp, quic_short),
            ("TLS ClientHello", Transport::Tcp, tls),
            ("RTP", Transport::Udp, rtp),
            ("NTP client request", Transport::Udp, ntp),
            ("WireGuard initiation", Transport::Udp, wireguard),
            ("BitTorrent handshake", Transport::Tcp, bt),
            (
                "HTTP request",
                Transport::Tcp,
                b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n".to_vec(),
            ),
            (
                "SSH banner",
                Transport::Tcp,
                b"SSH-2.0-OpenSSH_9.6\r\n".to_vec(),
            ),
            ("empty UDP", Transport::Udp, vec![]),
            ("empty TCP", Transport::Tcp, vec![]),
            ("one byte E4", Transport::Udp, vec![0xE4]),
            (
                "E3 header, length mismatch",
                Transport::Tcp,
                vec![0xE3, 0x20, 0, 0, 0, 0x01, 0x10, 0x00],
            ),
            (
                "C5 header, length mismatch",
                Transport::Tcp,
                vec![0xC5, 0x06, 0, 0, 0, 0x87, 1, 2, 3, 4],
            ),
        ]
    }

    #[test]
    fn lookalikes_do_not_match() {
        for (name, transport, bytes) in lookalikes() {
            for dir in [A, B] {
                let mut f = Flow::with_ports(transport, [40_000, 3478]);
                assert_eq!(f.send(dir, &bytes), Probe::NotMine, "{name}");
            }
        }
    }

    /// xorshift64*: deterministic noise for the random-bytes tests.
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
        let mut next = noise(0x9E37_79B9_7F4A_7C15);
        let mut lens: Vec<usize> = (0..=64).collect();
        lens.extend([
            100, 148, 200, 512, 535, 536, 600, 1024, 1200, 1400, 1448, 1460, 1500,
        ]);
        for len in lens {
            for first in [
                None,
                Some(0xE3),
                Some(0xE4),
                Some(0xE5),
                Some(0xC5),
                Some(0xD4),
            ] {
                for round in 0..8 {
                    let mut bytes: Vec<u8> = (0..len).map(|_| next()).collect();
                    if let (Some(b), Some(slot)) = (first, bytes.first_mut()) {
                        *slot = b;
                    }
                    for transport in [Transport::Tcp, Transport::Udp] {
                        for truncated in [false, true] {
                            let mut f = Flow::new(transport);
                            let p = f.send_cut(A, &bytes, truncated);
                            assert!(
                                !matches!(p, Probe::Match(_)),
                                "len {len} first {first:?} round {round} {transport:?}: {p:?} {bytes:x?}"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn wrong_length_fields_do_not_match() {
        // Valid messages whose length field is off by a little or a lot.
        let mut next = noise(7);
        for msg in [
            hello(hash(1), b"a"),
            login(hash(2)),
            emule_info(),
            offer_files(2),
        ] {
            for delta in [1u32, 2, 5, 16, 255, 0x0100_0000] {
                for sign in [true, false] {
                    let mut bad = msg.clone();
                    let len = u32::from_le_bytes(bad[1..5].try_into().unwrap());
                    let wrong = if sign {
                        len.wrapping_add(delta)
                    } else {
                        len.wrapping_sub(delta)
                    };
                    bad[1..5].copy_from_slice(&wrong.to_le_bytes());
                    assert_eq!(
                        Flow::new(Transport::Tcp).send(A, &bad),
                        Probe::NotMine,
                        "{delta} {sign}"
                    );
                }
            }
            // Random bytes behind a valid-looking header.
            let mut noisy = msg.clone();
            for b in noisy.iter_mut().skip(7) {
                *b = next();
            }
            assert_eq!(Flow::new(Transport::Tcp).send(A, &noisy), Probe::NotMine);
        }
    }

    #[test]
    fn no_prefix_or_cut_panics() {
        let samples = [
            hello(hash(1), b"name"),
            hello_answer(hash(2), b"name"),
            login(hash(3)),
            emule_info(),
            offer_files(4),
            sending_part(700),
            tcp(marker::PACKED, 0x15, &zlib_body()),
            kad_hello(kad_op::HELLO_REQ),
            kad_req(hash(1)),
            kad_res(hash(1), 4),
            udp(
                marker::KAD,
                kad_op::SEARCH_KEY_REQ,
                &cat(&[&hash(3), &[0, 0x80], &search_expr()]),
            ),
            udp(marker::EDONKEY, server_op::GLOBSEARCHREQ, &search_expr()),
            udp(
                marker::EMULE,
                client_op::REASKFILEPING,
                &cat(&[
                    &hash(1),
                    &10u16.to_le_bytes(),
                    &[0xFF, 0x03],
                    &5u16.to_le_bytes(),
                ]),
            ),
        ];
        for s in &samples {
            for n in 0..=s.len() {
                for transport in [Transport::Tcp, Transport::Udp] {
                    for truncated in [false, true] {
                        for dir in [A, B] {
                            let _ = Flow::new(transport).send_cut(dir, &s[..n], truncated);
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn every_evidence_is_declared_and_named_for_the_protocol() {
        for name in [
            HELLO,
            LOGIN,
            MESSAGE,
            KAD,
            KAD_PACKED,
            KAD_REPLY,
            SERVER_UDP,
            SERVER_UDP_REPLY,
            CLIENT_UDP_REPLY,
        ] {
            assert!(Edonkey::EVIDENCE.contains(&name), "{name}");
        }
        for name in Edonkey::EVIDENCE {
            assert!(name.starts_with("edonkey."), "{name}");
        }
        assert_eq!(Edonkey.interest().transport, None);
    }

    #[test]
    fn state_is_small() {
        assert_eq!(std::mem::size_of::<State>(), 11);
    }
}
