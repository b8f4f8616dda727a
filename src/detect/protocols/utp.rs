//! uTP, the Micro Transport Protocol (BEP 29): BitTorrent's congestion-
//! friendly transport over UDP.
//!
//! Every datagram starts with a 20-byte header: type and version, the first
//! extension, a connection id, two timestamps, the window, and the sequence
//! and acknowledgement numbers; an extension chain may follow. One valid
//! header proves little: a 20-byte DNS query can look like a SYN. So the
//! detector names a flow only from the relation between the two sides,
//! which no other protocol reproduces by chance:
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

/// Header layout (BEP 29, "header format").
mod field {
    use std::ops::Range;
    pub const TYPE_VER: usize = 0;
    pub const EXTENSION: usize = 1;
    pub const CONNECTION_ID: Range<usize> = 2..4;
    pub const TS_DIFF: Range<usize> = 8..12;
    pub const WINDOW: Range<usize> = 12..16;
    pub const SEQ_NR: Range<usize> = 16..18;
    pub const ACK_NR: Range<usize> = 18..20;
    pub const HEADER_LEN: usize = 20;
}

const ST_DATA: u8 = 0;
const ST_STATE: u8 = 2;
const ST_RESET: u8 = 3;
const ST_SYN: u8 = 4;
const VERSION: u8 = 1;

/// Receive windows larger than this are not sent by real stacks.
const MAX_WINDOW: u32 = 64 << 20;

/// How far apart one side's acknowledgement and the other side's sequence
/// number may be (packets in flight, reordering).
const MAX_SEQ_GAP: u16 = 2048;

/// Longest extension chain accepted.
const MAX_EXTENSIONS: usize = 4;

/// A checked uTP header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Packet type (`ST_DATA` ... `ST_SYN`).
    pub kind: u8,
    /// Connection id.
    pub connection_id: u16,
    /// Sequence number.
    pub seq_nr: u16,
    /// Acknowledgement number.
    pub ack_nr: u16,
    /// Offset of the payload (after the extension chain).
    pub payload_offset: usize,
}

/// Parses and checks a uTP header: known type, version 1, a well-formed
/// extension chain of known extensions, a sane window, and a payload only
/// where the type allows one.
pub fn parse(datagram: &[u8]) -> Option<Header> {
    let header = datagram.get(..field::HEADER_LEN)?;
    let type_ver = header[field::TYPE_VER];
    let (kind, version) = (type_ver >> 4, type_ver & 0x0f);
    if version != VERSION || kind > ST_SYN {
        return None;
    }
    let be16 =
        |r: std::ops::Range<usize>| u16::from_be_bytes([header[r.start], header[r.start + 1]]);
    let be32 = |r: std::ops::Range<usize>| {
        u32::from_be_bytes([
            header[r.start],
            header[r.start + 1],
            header[r.start + 2],
            header[r.start + 3],
        ])
    };
    if be32(field::WINDOW) > MAX_WINDOW {
        return None;
    }
    // A SYN is the first packet: nothing has been received to time yet.
    if kind == ST_SYN && be32(field::TS_DIFF) != 0 {
        return None;
    }
    // Extension chain: (next extension, length, data) until next is 0.
    let mut next = header[field::EXTENSION];
    let mut at = field::HEADER_LEN;
    for _ in 0..=MAX_EXTENSIONS {
        if next == 0 {
            break;
        }
        let this = next;
        next = *datagram.get(at)?;
        let len = usize::from(*datagram.get(at + 1)?);
        let ok = match this {
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
    if next != 0 {
        return None;
    }
    let payload = datagram.len() - at;
    let payload_ok = match kind {
        ST_DATA => payload > 0,
        ST_STATE | ST_SYN | ST_RESET => payload == 0,
        _ => true, // ST_FIN (1) may carry data or not
    };
    if !payload_ok {
        return None;
    }
    Some(Header {
        kind,
        connection_id: be16(field::CONNECTION_ID),
        seq_nr: be16(field::SEQ_NR),
        ack_nr: be16(field::ACK_NR),
        payload_offset: at,
    })
}

/// The uTP detector.
#[derive(Debug, Default)]
pub struct Utp;

/// What is kept of one side's latest valid packet.
#[derive(Clone, Copy, Debug, Default)]
struct Side {
    seen: bool,
    syn: bool,
    connection_id: u16,
    seq_nr: u16,
    ack_nr: u16,
}

/// Per-flow state.
#[derive(Clone, Copy, Debug, Default)]
pub struct State {
    sides: [Side; 2],
    /// The relation between the sides was reported.
    related: bool,
    /// A peer-wire handshake inside a DATA packet was reported.
    handshake: bool,
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
        let other = state.sides[1 - me];
        let side = &mut state.sides[me];
        side.seen = true;
        if h.kind == ST_SYN {
            side.syn = true;
            side.connection_id = h.connection_id;
            side.seq_nr = h.seq_nr;
        } else if !side.syn {
            // After a SYN, its id and sequence number are what the other
            // side's answer refers to; keep them.
            side.connection_id = h.connection_id;
            side.seq_nr = h.seq_nr;
        }
        side.ack_nr = h.ack_nr;
        if !state.related
            && let Some(name) = relation(&h, &other)
        {
            state.related = true;
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
            if !state.handshake {
                state.handshake = true;
                return found("bittorrent.handshake", Confidence::Unidirectional);
            }
        }
        Probe::NeedMore
    }
}

/// The evidence `h` gives of a relation with the other side's latest
/// packet, if any.
fn relation(h: &Header, other: &Side) -> Option<&'static str> {
    if !other.seen || h.kind == ST_SYN {
        return None;
    }
    // The SYN's receiver answers with the SYN's connection id and
    // acknowledges its sequence number.
    if other.syn {
        return (h.connection_id == other.connection_id && h.ack_nr == other.seq_nr)
            .then_some("bittorrent.utp.handshake");
    }
    // Mid-stream: the initiator sends with id+1, the other with id; and
    // each acknowledges close to what the other sends.
    let ids_pair = h.connection_id.wrapping_sub(other.connection_id) == 1
        || other.connection_id.wrapping_sub(h.connection_id) == 1;
    let close = |ack: u16, seq: u16| {
        seq.wrapping_sub(ack) <= MAX_SEQ_GAP || ack.wrapping_sub(seq) <= MAX_SEQ_GAP
    };
    (ids_pair && close(h.ack_nr, other.seq_nr) && close(other.ack_nr, h.seq_nr))
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
}
