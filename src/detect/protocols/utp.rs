//! uTP, the Micro Transport Protocol (BEP 29): BitTorrent's congestion-
//! friendly transport over UDP.
//!
//! Version 1 (BEP 29) starts every datagram with a 20-byte header: type and
//! version, the first extension, a 16-bit connection id, two timestamps,
//! the window, and the sequence and acknowledgement numbers; an extension
//! chain may follow. Version 0, the original header of libutp used by early
//! uTorrent releases, is 23 bytes: a 32-bit connection id, the send time in
//! seconds and microseconds, the timestamp difference, a one-byte window,
//! the first extension, the type (called `flags` there), and the sequence
//! and acknowledgement numbers.
//!
//! One valid header proves little: a 20-byte DNS query can look like a
//! version 1 SYN, and a 33-byte DNS query with an EDNS record like a version
//! 0 DATA packet. So the detector names a flow only from the relation
//! between the two sides, which no other protocol reproduces by chance (the
//! same rules hold for both versions, libutp's `UTP_Connect` and
//! `UTP_IsIncomingUTP`):
//! - handshake: the responder answers a SYN (connection id `c`, sequence
//!   `s`) with a packet carrying connection id `c` and acknowledging `s`;
//! - stream (a flow caught after its SYN): the two sides' connection ids
//!   differ by exactly one, and each side acknowledges close to what the
//!   other sends.

use super::bittorrent;
use crate::decode::Transport;
use crate::detect::{
    Confidence, Detector, Evidence, FactSink, Interest, PacketView, Probe, Protocol,
};

/// Header layouts.
mod field {
    use std::ops::Range;
    /// Version 1 (BEP 29, "header format").
    pub mod v1 {
        use super::Range;
        pub const TYPE_VER: usize = 0;
        pub const EXTENSION: usize = 1;
        pub const CONNECTION_ID: Range<usize> = 2..4;
        pub const TS_DIFF: Range<usize> = 8..12;
        pub const WINDOW: Range<usize> = 12..16;
        pub const SEQ_NR: Range<usize> = 16..18;
        pub const ACK_NR: Range<usize> = 18..20;
        pub const HEADER_LEN: usize = 20;
    }
    /// Version 0 (libutp's `PacketFormat`; Wireshark's bt-utp dissector):
    /// connection id, `tv_sec`, `tv_usec`, `reply_micro` (32 bits each),
    /// window (in 350-byte units), first extension, type, sequence and
    /// acknowledgement numbers; all big-endian.
    pub mod v0 {
        use super::Range;
        pub const CONNECTION_ID: Range<usize> = 0..4;
        pub const TV_USEC: Range<usize> = 8..12;
        pub const EXTENSION: usize = 17;
        pub const FLAGS: usize = 18;
        pub const SEQ_NR: Range<usize> = 19..21;
        pub const ACK_NR: Range<usize> = 21..23;
        pub const HEADER_LEN: usize = 23;
    }
}

const ST_DATA: u8 = 0;
const ST_STATE: u8 = 2;
const ST_RESET: u8 = 3;
const ST_SYN: u8 = 4;
const VERSION: u8 = 1;

/// Receive windows larger than this are not sent by real stacks.
const MAX_WINDOW: u32 = 64 << 20;

/// Version 0 splits the send time into seconds and microseconds, so the
/// microseconds are below one million (libutp, `send_data`).
const USEC_PER_SEC: u32 = 1_000_000;

/// How far apart one side's acknowledgement and the other side's sequence
/// number may be (packets in flight, reordering).
const MAX_SEQ_GAP: u16 = 2048;

/// Longest extension chain accepted.
const MAX_EXTENSIONS: usize = 4;

/// A checked uTP header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Header version: 1 (BEP 29) or 0 (original libutp).
    pub version: u8,
    /// Packet type (`ST_DATA` ... `ST_SYN`).
    pub kind: u8,
    /// Connection id (16 bits in version 1, 32 bits in version 0).
    pub connection_id: u32,
    /// Sequence number.
    pub seq_nr: u16,
    /// Acknowledgement number.
    pub ack_nr: u16,
    /// Offset of the payload (after the extension chain).
    pub payload_offset: usize,
}

fn be16(b: &[u8], r: std::ops::Range<usize>) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(r)?.try_into().ok()?))
}

fn be32(b: &[u8], r: std::ops::Range<usize>) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(r)?.try_into().ok()?))
}

/// Parses and checks a uTP header of either version. A first byte that
/// reads as version 1 with a known type is taken as version 1 (libutp's
/// `UTP_IsV1`); anything else is tried as version 0.
pub fn parse(datagram: &[u8]) -> Option<Header> {
    let type_ver = *datagram.first()?;
    if type_ver & 0x0f == VERSION && type_ver >> 4 <= ST_SYN {
        parse_v1(datagram)
    } else {
        parse_v0(datagram)
    }
}

/// Version 1: known type, version 1, a well-formed extension chain of known
/// extensions, a sane window, and a payload only where the type allows one.
fn parse_v1(datagram: &[u8]) -> Option<Header> {
    use field::v1;
    let header = datagram.get(..v1::HEADER_LEN)?;
    let type_ver = *header.get(v1::TYPE_VER)?;
    let (kind, version) = (type_ver >> 4, type_ver & 0x0f);
    if version != VERSION || kind > ST_SYN {
        return None;
    }
    if be32(header, v1::WINDOW)? > MAX_WINDOW {
        return None;
    }
    // A SYN is the first packet: nothing has been received to time yet.
    if kind == ST_SYN && be32(header, v1::TS_DIFF)? != 0 {
        return None;
    }
    // libtorrent's close reason (3) exists only in version 1.
    let at = extension_chain(datagram, *header.get(v1::EXTENSION)?, v1::HEADER_LEN, 3)?;
    payload_fits(kind, datagram.len() - at)?;
    Some(Header {
        version: 1,
        kind,
        connection_id: u32::from(be16(header, v1::CONNECTION_ID)?),
        seq_nr: be16(header, v1::SEQ_NR)?,
        ack_nr: be16(header, v1::ACK_NR)?,
        payload_offset: at,
    })
}

/// Version 0: known type, microseconds below one million, a well-formed
/// chain of the two extensions libutp knew (selective ACK, extension bits),
/// and a payload only where the type allows one.
fn parse_v0(datagram: &[u8]) -> Option<Header> {
    use field::v0;
    let header = datagram.get(..v0::HEADER_LEN)?;
    let kind = *header.get(v0::FLAGS)?;
    if kind > ST_SYN || be32(header, v0::TV_USEC)? >= USEC_PER_SEC {
        return None;
    }
    let at = extension_chain(datagram, *header.get(v0::EXTENSION)?, v0::HEADER_LEN, 2)?;
    payload_fits(kind, datagram.len() - at)?;
    Some(Header {
        version: 0,
        kind,
        connection_id: be32(header, v0::CONNECTION_ID)?,
        seq_nr: be16(header, v0::SEQ_NR)?,
        ack_nr: be16(header, v0::ACK_NR)?,
        payload_offset: at,
    })
}

/// Walks the extension chain (next extension, length, data; BEP 29
/// "extension") from `at`, accepting extensions 1 to `last_known`; returns
/// the offset after it.
fn extension_chain(datagram: &[u8], first: u8, mut at: usize, last_known: u8) -> Option<usize> {
    let mut next = first;
    for _ in 0..=MAX_EXTENSIONS {
        if next == 0 {
            return Some(at);
        }
        let this = next;
        next = *datagram.get(at)?;
        let len = usize::from(*datagram.get(at + 1)?);
        let ok = this <= last_known
            && match this {
                // Selective ACK: a bitmask of at least 32 bits, in 32-bit units.
                1 => len >= 4 && len.is_multiple_of(4) && len <= 32,
                // Extension bits.
                2 => len == 8,
                // libtorrent's close reason.
                3 => len == 4,
                _ => false,
            };
        if !ok {
            return None;
        }
        at = at
            .checked_add(2 + len)
            .filter(|end| *end <= datagram.len())?;
    }
    (next == 0).then_some(at)
}

/// Whether a packet of type `kind` may carry `payload` bytes.
fn payload_fits(kind: u8, payload: usize) -> Option<()> {
    let ok = match kind {
        ST_DATA => payload > 0,
        ST_STATE | ST_SYN | ST_RESET => payload == 0,
        _ => true, // ST_FIN (1) may carry data or not
    };
    ok.then_some(())
}

/// The uTP detector.
#[derive(Debug, Default)]
pub struct Utp;

/// What is kept of one side's latest valid packet. A version 0 connection
/// id has 32 bits; to keep the flow's state small, its low 16 bits are kept
/// whole and its high 16 bits folded into one byte (`id_fold`), so version
/// 0 ids are compared on 24 bits. Version 1 ids have 16 bits (fold 0).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Side {
    id16: u16,
    id_fold: u8,
    seq_nr: u16,
    ack_nr: u16,
}

impl Side {
    fn pack(self) -> Packed {
        Packed {
            id16: self.id16.to_be_bytes(),
            id_fold: self.id_fold,
            seq_nr: self.seq_nr.to_be_bytes(),
            ack_nr: self.ack_nr.to_be_bytes(),
        }
    }
}

/// [`Side`] stored in 7 bytes (byte arrays: no alignment padding).
#[derive(Clone, Copy, Debug, Default)]
struct Packed {
    id16: [u8; 2],
    id_fold: u8,
    seq_nr: [u8; 2],
    ack_nr: [u8; 2],
}

impl Packed {
    fn unpack(self) -> Side {
        Side {
            id16: u16::from_be_bytes(self.id16),
            id_fold: self.id_fold,
            seq_nr: u16::from_be_bytes(self.seq_nr),
            ack_nr: u16::from_be_bytes(self.ack_nr),
        }
    }
}

/// The high 16 bits of a connection id folded into 8.
fn fold(connection_id: u32) -> u8 {
    let [a, b, _, _] = connection_id.to_be_bytes();
    a ^ b
}

/// Per-flow state: 14 bytes of sides and one byte of flags.
#[derive(Clone, Copy, Debug, Default)]
pub struct State {
    sides: [Packed; 2],
    /// Bits: `SEEN << side`, `SYN << side`, `V0 << side`, `RELATED`,
    /// `HANDSHAKE`.
    flags: u8,
}

/// A valid packet was seen from the side (shifted by the side's index).
const SEEN: u8 = 1 << 0;
/// The side's kept id and sequence number are its SYN's.
const SYN: u8 = 1 << 2;
/// The side speaks version 0.
const V0: u8 = 1 << 4;
/// The relation between the sides was reported.
const RELATED: u8 = 1 << 6;
/// A peer-wire handshake inside a DATA packet was reported.
const HANDSHAKE: u8 = 1 << 7;

/// What the other side's kept packet says, for [`relation`].
#[derive(Clone, Copy, Debug)]
struct Kept {
    seen: bool,
    syn: bool,
    v0: bool,
    side: Side,
}

impl State {
    fn kept(&self, side: usize) -> Kept {
        let bit = |flag: u8| self.flags & (flag << side) != 0;
        Kept {
            seen: bit(SEEN),
            syn: bit(SYN),
            v0: bit(V0),
            side: self.sides.get(side).map(|p| p.unpack()).unwrap_or_default(),
        }
    }
}

impl Detector for Utp {
    type State = State;
    const NAME: &'static str = "utp";
    const EVIDENCE: &'static [&'static str] = &[
        "bittorrent.utp.handshake",
        "bittorrent.utp.stream",
        "bittorrent.handshake",
    ];

    fn interest(&self) -> Interest {
        Interest {
            transport: Some(Transport::Udp),
            max_payload_packets: 6,
        }
    }

    fn inspect(
        &self,
        state: &mut State,
        packet: &PacketView<'_>,
        facts: &mut FactSink<'_>,
    ) -> Probe {
        let Some(h) = parse(packet.payload) else {
            // BitTorrent clients share one UDP socket between uTP and the
            // DHT, so a flow may mix both: wait for uTP while the budget lasts.
            return Probe::NeedMore;
        };
        let me = packet.direction.index();
        let other = state.kept(1 - me);
        let mine = state.kept(me);
        let mut side = mine.side;
        if h.kind == ST_SYN || !mine.syn {
            // After a SYN, its id and sequence number are what the other
            // side's answer refers to; keep them.
            side.id16 = h.connection_id as u16;
            side.id_fold = fold(h.connection_id);
            side.seq_nr = h.seq_nr;
        }
        if h.kind == ST_SYN {
            state.flags |= SYN << me;
        }
        side.ack_nr = h.ack_nr;
        if let Some(s) = state.sides.get_mut(me) {
            *s = side.pack();
        }
        state.flags |= SEEN << me;
        if h.version == 0 {
            state.flags |= V0 << me;
        } else {
            state.flags &= !(V0 << me);
        }
        if state.flags & RELATED == 0
            && let Some(name) = relation(&h, &other)
        {
            state.flags |= RELATED;
            return found(name, Confidence::Bidirectional);
        }
        // Cleartext BitTorrent over uTP: the peer-wire handshake opens the
        // first DATA packet of each side.
        let data = packet.payload.get(h.payload_offset..).unwrap_or_default();
        if h.kind == ST_DATA
            && data.starts_with(bittorrent::PREFIX)
            && data.len() >= bittorrent::HANDSHAKE_MIN
        {
            bittorrent::handshake_facts(data, facts);
            if state.flags & HANDSHAKE == 0 {
                state.flags |= HANDSHAKE;
                return found("bittorrent.handshake", Confidence::Unidirectional);
            }
        }
        Probe::NeedMore
    }
}

/// The evidence `h` gives of a relation with the other side's latest
/// packet, if any. Both sides must speak the same version.
fn relation(h: &Header, other: &Kept) -> Option<&'static str> {
    if !other.seen || h.kind == ST_SYN || other.v0 != (h.version == 0) {
        return None;
    }
    let (id16, id_fold) = (h.connection_id as u16, fold(h.connection_id));
    let theirs = other.side;
    // The SYN's receiver answers with the SYN's connection id and
    // acknowledges its sequence number.
    if other.syn {
        return (id16 == theirs.id16 && id_fold == theirs.id_fold && h.ack_nr == theirs.seq_nr)
            .then_some("bittorrent.utp.handshake");
    }
    // Mid-stream: the initiator sends with id+1, the other with id; and
    // each acknowledges close to what the other sends. The high bits agree
    // unless the low 16 bits wrapped between the two ids.
    let one_apart = |a: u16, a_fold: u8, b: u16, b_fold: u8| {
        a.wrapping_sub(b) == 1 && (a == 0 || a_fold == b_fold)
    };
    let ids_pair = one_apart(id16, id_fold, theirs.id16, theirs.id_fold)
        || one_apart(theirs.id16, theirs.id_fold, id16, id_fold);
    let close = |ack: u16, seq: u16| {
        seq.wrapping_sub(ack) <= MAX_SEQ_GAP || ack.wrapping_sub(seq) <= MAX_SEQ_GAP
    };
    (ids_pair && close(h.ack_nr, theirs.seq_nr) && close(theirs.ack_nr, h.seq_nr))
        .then_some("bittorrent.utp.stream")
}

fn found(name: &'static str, strength: Confidence) -> Probe {
    Probe::Match(Evidence {
        protocol: Protocol::Bittorrent,
        name,
        strength,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::protocols::testing::{Harness, LOOK_ALIKES};
    use crate::flow::Direction::{Originator, Responder};

    fn packet(
        kind: u8,
        ext: &[(u8, &[u8])],
        conn: u16,
        ts_diff: u32,
        seq: u16,
        ack: u16,
        payload: &[u8],
    ) -> Vec<u8> {
        let mut p = vec![kind << 4 | 1, ext.first().map_or(0, |e| e.0)];
        p.extend_from_slice(&conn.to_be_bytes());
        p.extend_from_slice(&0x10ee_b2f0u32.to_be_bytes());
        p.extend_from_slice(&ts_diff.to_be_bytes());
        p.extend_from_slice(&0x0010_0000u32.to_be_bytes());
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&ack.to_be_bytes());
        for (i, (_, data)) in ext.iter().enumerate() {
            p.push(ext.get(i + 1).map_or(0, |e| e.0));
            p.push(data.len() as u8);
            p.extend_from_slice(data);
        }
        p.extend_from_slice(payload);
        p
    }

    #[test]
    fn parses_valid_headers_and_rejects_broken_ones() {
        let syn = packet(ST_SYN, &[], 0x5302, 0, 0xe7f5, 0, b"");
        assert_eq!(
            parse(&syn).map(|h| (h.kind, h.connection_id, h.seq_nr)),
            Some((ST_SYN, 0x5302, 0xe7f5))
        );
        let state = packet(
            ST_STATE,
            &[(2, &[0; 8])],
            0x5302,
            0x7fff_ffff,
            0x49c7,
            0xe7f5,
            b"",
        );
        assert_eq!(parse(&state).map(|h| h.payload_offset), Some(30));
        let sack = packet(ST_STATE, &[(1, &[0xff; 4]), (2, &[0; 8])], 1, 5, 2, 3, b"");
        assert!(parse(&sack).is_some());
        let data = packet(ST_DATA, &[], 1, 5, 2, 3, b"\x13BitTorrent protocol");
        assert_eq!(parse(&data).map(|h| h.payload_offset), Some(20));

        let bad: &[(&str, Vec<u8>)] = &[
            ("syn with payload", packet(ST_SYN, &[], 1, 0, 2, 0, b"x")),
            (
                "syn with timestamp difference",
                packet(ST_SYN, &[], 1, 9, 2, 0, b""),
            ),
            (
                "state with payload",
                packet(ST_STATE, &[], 1, 0, 2, 0, b"x"),
            ),
            (
                "data without payload",
                packet(ST_DATA, &[], 1, 0, 2, 0, b""),
            ),
            (
                "unknown extension",
                packet(ST_STATE, &[(7, &[0; 4])], 1, 0, 2, 0, b""),
            ),
            (
                "bad sack length",
                packet(ST_STATE, &[(1, &[0; 3])], 1, 0, 2, 0, b""),
            ),
            (
                "extension past the end",
                packet(ST_STATE, &[], 1, 0, 2, 0, b"")[..20]
                    .iter()
                    .copied()
                    .chain([0u8])
                    .collect(),
            ),
            ("type 5", {
                let mut p = packet(ST_STATE, &[], 1, 0, 2, 0, b"");
                p[0] = 0x51;
                p
            }),
            ("version 0", {
                let mut p = packet(ST_STATE, &[], 1, 0, 2, 0, b"");
                p[0] = 0x20;
                p
            }),
            ("huge window", {
                let mut p = packet(ST_STATE, &[], 1, 0, 2, 0, b"");
                p[12] = 0xff;
                p
            }),
            ("short", vec![0x41, 0, 1, 2]),
        ];
        for (name, bytes) in bad {
            assert_eq!(parse(bytes), None, "{name}");
        }
    }

    #[test]
    fn a_syn_and_its_answer_make_a_handshake() {
        let mut h = Harness::udp(Utp);
        let syn = packet(ST_SYN, &[], 0x5302, 0, 0xe7f5, 0, b"");
        let state = packet(
            ST_STATE,
            &[(2, &[0; 8])],
            0x5302,
            0x7fff_ffff,
            0x49c7,
            0xe7f5,
            b"",
        );
        let got = h.evidence(&[(Originator, &syn), (Originator, &syn), (Responder, &state)]);
        assert_eq!(got, vec![None, None, Some("bittorrent.utp.handshake")]);
        // An answer with the wrong connection id or acknowledgement is not.
        for (conn, ack) in [(0x5303, 0xe7f5), (0x5302, 0xe7f4)] {
            let mut h = Harness::udp(Utp);
            let wrong = packet(ST_STATE, &[], conn, 1, 0x49c7, ack, b"");
            assert_eq!(
                h.evidence(&[(Originator, &syn), (Responder, &wrong)]),
                vec![None, None]
            );
        }
    }

    #[test]
    fn a_stream_caught_midway_is_recognised_by_its_ids() {
        let mut h = Harness::udp(Utp);
        let a = packet(ST_DATA, &[], 0x5303, 100, 0xe7f6, 0x49c6, b"piece data");
        let b = packet(ST_STATE, &[], 0x5302, 100, 0x49c7, 0xe7f6, b"");
        assert_eq!(
            h.evidence(&[(Originator, &a), (Responder, &b)]),
            vec![None, Some("bittorrent.utp.stream")]
        );
        let mut h = Harness::udp(Utp);
        let far = packet(ST_STATE, &[], 0x5302, 100, 0x1000, 0x9000, b"");
        assert_eq!(
            h.evidence(&[(Originator, &a), (Responder, &far)]),
            vec![None, None]
        );
    }

    #[test]
    fn a_peer_wire_handshake_inside_utp_gives_its_facts() {
        let mut h = Harness::udp(Utp);
        let syn = packet(ST_SYN, &[], 7, 0, 100, 0, b"");
        let state = packet(ST_STATE, &[], 7, 5, 900, 100, b"");
        let mut hs = b"\x13BitTorrent protocol".to_vec();
        hs.extend_from_slice(&[0; 8]);
        hs.extend_from_slice(&[0x42; 20]);
        hs.extend_from_slice(b"-LT2080-abcdefghijkl");
        let data = packet(ST_DATA, &[], 8, 5, 101, 900, &hs);
        let got = h.evidence(&[(Originator, &syn), (Responder, &state), (Originator, &data)]);
        assert_eq!(
            got,
            vec![
                None,
                Some("bittorrent.utp.handshake"),
                Some("bittorrent.handshake")
            ]
        );
        assert_eq!(h.facts().info_hash, Some([0x42; 20]));
        assert_eq!(
            h.facts().client[0].as_deref(),
            Some("libtorrent (Rasterbar) 2080")
        );
    }

    #[test]
    fn dns_that_parses_as_a_syn_is_never_named() {
        // A 20-byte DNS query whose bytes also form a valid uTP SYN header,
        // and its answer (same transaction id, so the same first byte).
        let query: &[u8] =
            b"\x41\x00\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x02ab\x00\x00\x01\x00\x01";
        assert!(parse(query).is_some(), "the look-alike is real");
        let answer: &[u8] =
            b"\x41\x00\x81\x80\x00\x01\x00\x01\x00\x00\x00\x00\x02ab\x00\x00\x01\x00\x01\xc0\x0c\x00\x01\x00\x01\x00\x00\x0e\x10\x00\x04\x5d\xb8\xd8\x22";
        let mut h = Harness::udp(Utp);
        let got = h.evidence(&[
            (Originator, query),
            (Responder, answer),
            (Originator, query),
        ]);
        assert_eq!(got, vec![None, None, None]);
        for (name, bytes) in LOOK_ALIKES {
            let mut h = Harness::udp(Utp);
            let got = h.evidence(&[(Originator, bytes), (Responder, bytes)]);
            assert_eq!(got, vec![None, None], "{name}");
        }
    }

    /// A version 0 packet (libutp's `PacketFormat`).
    #[allow(clippy::too_many_arguments)]
    fn packet_v0(
        kind: u8,
        ext: &[(u8, &[u8])],
        conn: u32,
        usec: u32,
        seq: u16,
        ack: u16,
        payload: &[u8],
    ) -> Vec<u8> {
        let mut p = conn.to_be_bytes().to_vec();
        p.extend_from_slice(&0x0001_2345u32.to_be_bytes()); // tv_sec
        p.extend_from_slice(&usec.to_be_bytes());
        p.extend_from_slice(&0x7fff_ffffu32.to_be_bytes()); // reply_micro
        p.push(12); // window, in 350-byte units
        p.push(ext.first().map_or(0, |e| e.0));
        p.push(kind);
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&ack.to_be_bytes());
        for (i, (_, data)) in ext.iter().enumerate() {
            p.push(ext.get(i + 1).map_or(0, |e| e.0));
            p.push(data.len() as u8);
            p.extend_from_slice(data);
        }
        p.extend_from_slice(payload);
        p
    }

    /// libutp's version 0 SYN: extension bits (8 zero bytes), no payload.
    fn syn_v0(conn: u32, seq: u16) -> Vec<u8> {
        packet_v0(ST_SYN, &[(2, &[0; 8])], conn, 1234, seq, 0, b"")
    }

    #[test]
    fn parses_version_0_headers_and_rejects_broken_ones() {
        let syn = syn_v0(0x9a3c_5302, 0xe7f5);
        assert_eq!(syn.len(), 33);
        assert_eq!(
            parse(&syn).map(|h| (
                h.version,
                h.kind,
                h.connection_id,
                h.seq_nr,
                h.payload_offset
            )),
            Some((0, ST_SYN, 0x9a3c_5302, 0xe7f5, 33))
        );
        let state = packet_v0(ST_STATE, &[], 0x9a3c_5302, 999_999, 0x49c7, 0xe7f5, b"");
        assert_eq!(
            parse(&state).map(|h| (h.version, h.ack_nr)),
            Some((0, 0xe7f5))
        );
        let sack = packet_v0(ST_STATE, &[(1, &[0xff; 4])], 7, 5, 2, 3, b"");
        assert_eq!(parse(&sack).map(|h| h.payload_offset), Some(29));
        let data = packet_v0(ST_DATA, &[], 7, 5, 2, 3, b"x");
        assert_eq!(parse(&data).map(|h| h.payload_offset), Some(23));

        let bad: &[(&str, Vec<u8>)] = &[
            ("microseconds of a full second", {
                packet_v0(ST_STATE, &[], 7, 1_000_000, 2, 3, b"")
            }),
            ("type 5", packet_v0(5, &[], 7, 5, 2, 3, b"")),
            (
                "close reason is a version 1 extension",
                packet_v0(ST_STATE, &[(3, &[0; 4])], 7, 5, 2, 3, b""),
            ),
            (
                "extension bits of the wrong length",
                packet_v0(ST_SYN, &[(2, &[0; 4])], 7, 5, 2, 0, b""),
            ),
            ("syn with payload", packet_v0(ST_SYN, &[], 7, 5, 2, 0, b"x")),
            (
                "state with payload",
                packet_v0(ST_STATE, &[], 7, 5, 2, 0, b"x"),
            ),
            (
                "data without payload",
                packet_v0(ST_DATA, &[], 7, 5, 2, 0, b""),
            ),
            (
                "short",
                packet_v0(ST_STATE, &[], 7, 5, 2, 0, b"")[..22].to_vec(),
            ),
        ];
        for (name, bytes) in bad {
            assert_eq!(parse(bytes), None, "{name}");
        }
        // A first byte that reads as version 1 is version 1 (libutp's
        // `UTP_IsV1`), even if the rest would make a version 0 header.
        let mut v1_first = packet_v0(ST_STATE, &[], 0x2100_0000, 5, 2, 3, b"");
        v1_first[1] = 0;
        assert_eq!(parse(&v1_first).map(|h| h.version), None);
    }

    #[test]
    fn a_version_0_syn_and_its_answer_make_a_handshake() {
        let syn = syn_v0(0x9a3c_5302, 0xe7f5);
        // libutp's SYN-ACK: the SYN's id, acknowledging its sequence number,
        // with extension bits.
        let ack = packet_v0(
            ST_STATE,
            &[(2, &[0; 8])],
            0x9a3c_5302,
            41,
            0x1000,
            0xe7f5,
            b"",
        );
        let mut h = Harness::udp(Utp);
        let got = h.evidence(&[(Originator, &syn), (Responder, &ack)]);
        assert_eq!(got, vec![None, Some("bittorrent.utp.handshake")]);
        for wrong in [
            // Another id, or another acknowledgement.
            packet_v0(ST_STATE, &[], 0x9a3c_5303, 41, 0x1000, 0xe7f5, b""),
            packet_v0(ST_STATE, &[], 0x9a3c_5302, 41, 0x1000, 0xe7f4, b""),
            // Same low 16 bits, other high bits.
            packet_v0(ST_STATE, &[], 0x9a3d_5302, 41, 0x1000, 0xe7f5, b""),
            // A version 1 answer to a version 0 SYN.
            packet(ST_STATE, &[], 0x5302, 1, 0x1000, 0xe7f5, b""),
        ] {
            let mut h = Harness::udp(Utp);
            assert_eq!(
                h.evidence(&[(Originator, &syn), (Responder, &wrong)]),
                vec![None, None]
            );
        }
    }

    #[test]
    fn a_version_0_stream_and_its_peer_wire_handshake() {
        // Caught midway: initiator sends with id+1, the other side with id.
        let mut h = Harness::udp(Utp);
        let a = packet_v0(ST_DATA, &[], 0x0001_0001, 10, 0xe7f6, 0x49c6, b"piece");
        let b = packet_v0(ST_STATE, &[], 0x0001_0000, 20, 0x49c7, 0xe7f6, b"");
        assert_eq!(
            h.evidence(&[(Originator, &a), (Responder, &b)]),
            vec![None, Some("bittorrent.utp.stream")]
        );
        // Ids one apart across the 16-bit boundary; ids one apart in their
        // low 16 bits only are not.
        let mut h = Harness::udp(Utp);
        let a = packet_v0(ST_DATA, &[], 0x0002_0000, 10, 0xe7f6, 0x49c6, b"piece");
        let b = packet_v0(ST_STATE, &[], 0x0001_ffff, 20, 0x49c7, 0xe7f6, b"");
        assert_eq!(
            h.evidence(&[(Originator, &a), (Responder, &b)]),
            vec![None, Some("bittorrent.utp.stream")]
        );
        let mut h = Harness::udp(Utp);
        let b = packet_v0(ST_STATE, &[], 0x0301_0000, 20, 0x49c7, 0xe7f6, b"");
        let a = packet_v0(ST_DATA, &[], 0x0001_0001, 10, 0xe7f6, 0x49c6, b"piece");
        assert_eq!(
            h.evidence(&[(Originator, &a), (Responder, &b)]),
            vec![None, None]
        );
        // The peer-wire handshake inside the first DATA packet.
        let mut hs = b"\x13BitTorrent protocol".to_vec();
        hs.extend_from_slice(&[0; 8]);
        hs.extend_from_slice(&[0x42; 20]);
        hs.extend_from_slice(b"-UT1800-abcdefghijkl");
        let mut h = Harness::udp(Utp);
        let got = h.evidence(&[
            (Originator, &syn_v0(90, 100)),
            (Responder, &packet_v0(ST_STATE, &[], 90, 5, 900, 100, b"")),
            (Originator, &packet_v0(ST_DATA, &[], 91, 6, 101, 900, &hs)),
        ]);
        assert_eq!(
            got,
            vec![
                None,
                Some("bittorrent.utp.handshake"),
                Some("bittorrent.handshake")
            ]
        );
        assert_eq!(h.facts().info_hash, Some([0x42; 20]));
    }

    /// A DNS message: id, flags, one question for `name`, `additional`
    /// EDNS OPT records.
    fn dns(id: u16, flags: u16, name: &[u8], qtype: u16, additional: u16) -> Vec<u8> {
        let mut p = id.to_be_bytes().to_vec();
        p.extend_from_slice(&flags.to_be_bytes());
        p.extend_from_slice(&[0, 1, 0, 0, 0, 0]);
        p.extend_from_slice(&additional.to_be_bytes());
        p.extend_from_slice(name);
        p.extend_from_slice(&qtype.to_be_bytes());
        p.extend_from_slice(&[0, 1]);
        for _ in 0..additional {
            p.extend_from_slice(&[0, 0, 0x29, 0x04, 0xd0, 0, 0, 0, 0, 0, 0]);
        }
        p
    }

    #[test]
    fn version_0_look_alikes_are_never_named() {
        // 23-byte DNS query: its type byte is the name's final zero (DATA),
        // and DATA without payload is refused.
        let q23 = dns(0x1234, 0x0100, b"\x05abcde\x00", 1, 0);
        assert_eq!(q23.len(), 23);
        assert_eq!(parse(&q23), None);
        // A DNS query with an EDNS record reads as a version 0 DATA packet,
        // and so does its answer; the answer's flags (QR set) never give
        // the query's id, nor an id one apart.
        let q = dns(0x1234, 0x0100, b"\x04abcd\x00", 1, 1);
        let r = dns(0x1234, 0x8180, b"\x04abcd\x00", 1, 1);
        assert!(
            parse(&q).is_some_and(|h| h.version == 0),
            "the look-alike is real"
        );
        assert!(
            parse(&r).is_some_and(|h| h.version == 0),
            "the look-alike is real"
        );
        let mut h = Harness::udp(Utp);
        assert_eq!(
            h.evidence(&[
                (Originator, &q),
                (Responder, &r),
                (Originator, &q),
                (Responder, &r)
            ]),
            vec![None; 4]
        );
        // A 23-byte QUIC short-header packet whose random bytes happen to
        // form a version 0 SYN, and the server's next packets.
        let quic: &[u8] = b"\x47\x4e\x44\x8f\x11\xaa\x3c\x62\x00\x01\x9f\xe1\x42\x77\x8d\x31\x0b\x00\x04\x2a\x99\x13\x5d";
        assert!(
            parse(quic).is_some_and(|h| h.kind == ST_SYN),
            "the look-alike is real"
        );
        let mut h = Harness::udp(Utp);
        let server: &[u8] = b"\x5c\x19\xa2\x0b\x31\x77\xc8\x02\x00\x0c\x11\x42\x9e\xd0\x6b\x2f\x80\x00\x02\x4e\x21\x5d\x99\x13";
        assert_eq!(
            h.evidence(&[(Originator, quic), (Responder, server), (Responder, quic)]),
            vec![None; 3]
        );
    }

    #[test]
    fn vuze_dht_shares_the_port_and_is_not_utp() {
        // A Vuze DHT ping reads as a version 0 DATA packet (its action is a
        // small number where version 0 has microseconds); its reply and a
        // ping from the other side never relate to it.
        let ping: &[u8] = b"\x9f\x12\x34\x56\x78\x9a\xbc\xde\x00\x00\x04\x00\x01\x02\x03\x04\x33\x00\x00\x00\x00\x00\x33\x04\xc6\x33\x64\x07\x2c\x09\x11\x22\x33\x44\x00\x00\x01\x8c\xc2\x51\xf4\x00\x00";
        let pong: &[u8] = b"\x00\x00\x04\x01\x01\x02\x03\x04\x9f\x12\x34\x56\x78\x9a\xbc\xde\x33\x00\x00\x00\x00\x00\x55\x66\x77\x88\x00";
        assert!(parse(ping).is_some_and(|h| h.version == 0 && h.kind == ST_DATA));
        let mut h = Harness::udp(Utp);
        assert_eq!(
            h.evidence(&[(Originator, ping), (Responder, pong), (Responder, ping)]),
            vec![None; 3]
        );
    }

    #[test]
    fn random_datagrams_of_every_length_are_never_named() {
        // A small deterministic generator (xorshift).
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        };
        for len in 0..160 {
            for _ in 0..20 {
                let mut h = Harness::udp(Utp);
                let a: Vec<u8> = (0..len).map(|_| next()).collect();
                let b: Vec<u8> = (0..len).map(|_| next()).collect();
                let got = h.evidence(&[(Originator, &a), (Responder, &b), (Originator, &b)]);
                assert_eq!(got, vec![None; 3], "{a:02x?} {b:02x?}");
            }
        }
    }
}
