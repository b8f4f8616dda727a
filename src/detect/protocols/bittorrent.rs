//! BitTorrent peer wire protocol over TCP (BEP 3), with the extension
//! protocol's handshake (BEP 10).
//!
//! Each side opens with the 68-byte handshake: the length byte 19, the
//! string "BitTorrent protocol", 8 reserved bytes, the 20-byte info-hash and
//! the 20-byte peer id. Messages follow, each a 4-byte big-endian length
//! and (unless it is a keep-alive) a one-byte id. The detector checks the
//! handshake (possibly split over several segments), then follows the
//! message framing across packets for a few packets, reading the extension
//! handshake's client name (`v`) when it passes by.

use super::peer_id;
use crate::decode::Transport;
use crate::detect::bencode;
use crate::detect::cache::Transports;
use crate::detect::{
    Confidence, Detector, Evidence, FactSink, Interest, PacketView, Probe, Protocol,
};

/// Field layout of the handshake (BEP 3, "handshake"): [`PREFIX`], then 8
/// reserved bytes (extension bits, free-form), the info-hash, the peer id.
mod field {
    use std::ops::Range;
    pub const INFO_HASH: Range<usize> = 28..48;
    pub const PEER_ID: Range<usize> = 48..68;
    pub const LEN: usize = 68;
}

/// Bytes of a handshake up to the end of the info-hash: what every client
/// sends before waiting (BEP 3 lets a side hold its peer id back).
pub(crate) const HANDSHAKE_MIN: usize = field::INFO_HASH.end;

/// The protocol string, with its length byte (19).
pub(crate) const PREFIX: &[u8; 20] = b"\x13BitTorrent protocol";

/// Largest message a client sends: a 16 KiB block plus header is the norm;
/// bitfields of huge torrents and extension messages (metadata pieces of
/// 16 KiB) stay well under this.
const MAX_MESSAGE: u32 = 1 << 20;

/// Highest message id defined: 0-9 (BEP 3), 13-17 (fast extension, BEP 6),
/// 20 (extension protocol, BEP 10), 21-23 (hash transfer, BEP 52).
const MAX_MESSAGE_ID: u8 = 23;

/// Valid messages a side must show after its handshake to count as framing
/// evidence.
const FRAMING_EVIDENCE: u8 = 2;

/// The peer-wire detector.
#[derive(Debug, Default)]
pub struct PeerWire;

/// Where one side's byte stream stands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Phase {
    /// Nothing seen yet from this side.
    #[default]
    Start,
    /// Inside the handshake: this many bytes of it seen.
    Handshake(u8),
    /// Between or inside messages.
    Messages,
    /// Framing lost (e.g. a segment missing) or not BitTorrent.
    Off,
}

/// Per-side state.
#[derive(Clone, Copy, Debug, Default)]
struct Side {
    phase: Phase,
    /// Bytes of the current message still to come (header included while
    /// the 4-byte length is split over packets is not handled: framing is
    /// then given up).
    remaining: u32,
    /// Whole messages seen after the handshake.
    messages: u8,
    /// Evidence found, one bit per entry of `EVIDENCE`.
    found: u8,
    /// Evidence reported (one a packet, in the order of `EVIDENCE`).
    reported: u8,
}

const HANDSHAKE: u8 = 1;
const MESSAGES: u8 = 2;
const EXTENDED: u8 = 4;

/// Per-flow state: one [`Side`] per direction.
#[derive(Clone, Copy, Debug, Default)]
pub struct State([Side; 2]);

impl Detector for PeerWire {
    type State = State;
    const NAME: &'static str = "bittorrent";
    const EVIDENCE: &'static [&'static str] = &[
        "bittorrent.handshake",
        "bittorrent.messages",
        "bittorrent.extended_handshake",
    ];

    fn interest(&self) -> Interest {
        Interest {
            transport: Some(Transport::Tcp),
            max_payload_packets: 6,
        }
    }

    fn inspect(
        &self,
        state: &mut State,
        packet: &PacketView<'_>,
        facts: &mut FactSink<'_>,
    ) -> Probe {
        let side = &mut state.0[packet.direction.index()];
        let mut data = packet.payload;

        if side.phase == Phase::Start {
            side.phase = Phase::Handshake(0);
        }
        if let Phase::Handshake(seen) = side.phase {
            let seen = usize::from(seen);
            let Some(used) = handshake_part(data, seen) else {
                side.phase = Phase::Off;
                return if state.0.iter().all(|s| s.found == 0) {
                    Probe::NotMine
                } else {
                    Probe::NeedMore
                };
            };
            if seen == 0 {
                handshake_facts(data, facts);
            }
            let now = seen + used;
            // The info-hash completes the part of the handshake that every
            // client sends before waiting (BEP 3 allows holding the peer id
            // back until the info-hash is known).
            if now >= field::INFO_HASH.end {
                side.found |= HANDSHAKE;
            }
            side.phase = if now >= field::LEN {
                Phase::Messages
            } else {
                Phase::Handshake(now as u8)
            };
            data = data.get(used..).unwrap_or_default();
        }
        if side.phase == Phase::Messages {
            match follow_messages(side, data, facts) {
                Ok(seen) => {
                    if let Some(port) = seen.dht_port {
                        facts.peer(Protocol::Bittorrent, packet.src.ip(), port, Transports::UDP);
                    }
                    if seen.extended {
                        side.found |= EXTENDED;
                    }
                    if side.messages >= FRAMING_EVIDENCE {
                        side.found |= MESSAGES;
                    }
                }
                Err(()) => side.phase = Phase::Off,
            }
        }
        // One piece of evidence a packet, in the order of EVIDENCE.
        let new = side.found & !side.reported;
        if new == 0 {
            return Probe::NeedMore;
        }
        let bit = new.trailing_zeros() as usize;
        side.reported |= 1 << bit;
        Probe::Match(Evidence {
            protocol: Protocol::Bittorrent,
            name: Self::EVIDENCE[bit],
            strength: Confidence::Unidirectional,
        })
    }
}

/// Takes the info-hash, peer id and the client it names from a whole
/// handshake at the start of `data`.
pub(crate) fn handshake_facts(data: &[u8], facts: &mut FactSink<'_>) {
    if let Some(hash) = data.get(field::INFO_HASH) {
        let mut h = [0u8; 20];
        h.copy_from_slice(hash);
        facts.info_hash(h);
    }
    if let Some(id) = data.get(field::PEER_ID) {
        facts.peer_id(id);
        if let Some(client) = peer_id::client_name(id) {
            facts.client(client.as_bytes());
        }
    }
}

/// Checks the handshake bytes in `data`, which continue the `seen` bytes
/// already checked; returns how many bytes of `data` belong to it. Only the
/// prefix is fixed: the rest is extension bits and binary hashes.
fn handshake_part(data: &[u8], seen: usize) -> Option<usize> {
    let take = data.len().min(field::LEN.saturating_sub(seen));
    let part = data.get(..take).filter(|p| !p.is_empty())?;
    let prefix = PREFIX.get(seen..).unwrap_or_default();
    let overlap = part.len().min(prefix.len());
    (part[..overlap] == prefix[..overlap]).then_some(take)
}

/// What went by in the messages of a packet.
#[derive(Default)]
struct Seen {
    /// An extension handshake (BEP 10).
    extended: bool,
    /// The DHT port of a `port` message (BEP 5).
    dht_port: Option<u16>,
}

/// Follows message framing through `data`. Returns what went by, or `Err`
/// if the bytes do not frame.
fn follow_messages(side: &mut Side, mut data: &[u8], facts: &mut FactSink<'_>) -> Result<Seen, ()> {
    let mut seen = Seen::default();
    while !data.is_empty() {
        if side.remaining > 0 {
            let skip = data.len().min(side.remaining as usize);
            side.remaining -= skip as u32;
            data = &data[skip..];
            continue;
        }
        // A message header split across packets: stop following (rare; the
        // handshake evidence stands).
        let Some(len_bytes) = data.get(..4) else {
            return Err(());
        };
        let len = u32::from_be_bytes([len_bytes[0], len_bytes[1], len_bytes[2], len_bytes[3]]);
        if len > MAX_MESSAGE {
            return Err(());
        }
        if len > 0 {
            let id = *data.get(4).ok_or(())?;
            if id > MAX_MESSAGE_ID || !valid_length(id, len) {
                return Err(());
            }
            if id == 20 && data.get(5) == Some(&0) {
                let end = data.len().min(4 + len as usize);
                if let Some(dict) = data.get(6..end) {
                    seen.extended |= extension_handshake(dict, facts);
                }
            }
            if id == 9
                && let Some(port) = data.get(5..7)
            {
                seen.dht_port = Some(u16::from_be_bytes([port[0], port[1]]));
            }
        }
        side.messages = side.messages.saturating_add(1);
        let total = 4 + len as usize;
        if total <= data.len() {
            data = &data[total..];
        } else {
            side.remaining = (total - data.len()) as u32;
            data = &[];
        }
    }
    Ok(seen)
}

/// Length rules of the fixed-size messages (BEP 3, BEP 6).
fn valid_length(id: u8, len: u32) -> bool {
    match id {
        // choke, unchoke, interested, not interested, have all, have none
        0..=3 | 14 | 15 => len == 1,
        // have, suggest piece, allowed fast
        4 | 13 | 17 => len == 5,
        // request, cancel, reject request
        6 | 8 | 16 => len == 13,
        // port (DHT, BEP 5)
        9 => len == 3,
        // piece: index, begin, block
        7 => len > 9,
        // bitfield, extension messages, hash messages: variable
        5 | 20..=23 => len >= 2,
        _ => false,
    }
}

/// Reads an extension handshake (BEP 10): a bencoded dictionary holding
/// `m` (the extensions) and usually `v` (client name and version). Returns
/// whether it is one.
fn extension_handshake(bytes: &[u8], facts: &mut FactSink<'_>) -> bool {
    // The dictionary may be cut by the packet end; only a whole one counts.
    let Ok((value, _)) = bencode::parse(bytes) else {
        return false;
    };
    let Some(dict) = value.as_dict() else {
        return false;
    };
    if dict.get(b"m").and_then(|m| m.as_dict()).is_none() {
        return false;
    }
    if let Some(v) = dict.get(b"v").and_then(|v| v.as_bytes()) {
        facts.replace_client(v);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::protocols::testing::{Harness, LOOK_ALIKES};
    use crate::flow::Direction::{Originator, Responder};

    fn handshake(peer_id: &[u8; 20]) -> Vec<u8> {
        let mut h = PREFIX.to_vec();
        h.extend_from_slice(&[0, 0, 0, 0, 0, 0x10, 0, 0x05]);
        h.extend_from_slice(&[0xaa; 20]);
        h.extend_from_slice(peer_id);
        h
    }

    fn message(id: u8, payload: &[u8]) -> Vec<u8> {
        let mut m = ((payload.len() + 1) as u32).to_be_bytes().to_vec();
        m.push(id);
        m.extend_from_slice(payload);
        m
    }

    #[test]
    fn matches_a_handshake_from_each_side() {
        let mut h = Harness::tcp(PeerWire);
        let a = handshake(b"-TR2940-abcdefghijkl");
        let b = handshake(b"-qB4250-mnopqrstuvwx");
        let got = h.evidence(&[(Originator, &a), (Responder, &b)]);
        assert_eq!(
            got,
            vec![Some("bittorrent.handshake"), Some("bittorrent.handshake")]
        );
        let f = h.facts();
        assert_eq!(f.info_hash, Some([0xaa; 20]));
        assert_eq!(f.peer_id[0].as_deref(), Some("-TR2940-abcdefghijkl"));
        assert_eq!(f.client[0].as_deref(), Some("Transmission 2940"));
        assert_eq!(f.client[1].as_deref(), Some("qBittorrent 4250"));
    }

    #[test]
    fn follows_a_handshake_split_over_segments_and_the_messages_after_it() {
        let mut h = Harness::tcp(PeerWire);
        let hs = handshake(b"-UT3550-abcdefghijkl");
        let mut rest = hs[30..].to_vec();
        rest.extend(message(20, b"\x00d1:md6:ut_pexi1ee1:v12:uTorrent 3.5e"));
        rest.extend(message(5, &[0xff, 0xff]));
        rest.extend(message(2, &[]));
        let piece = message(7, &[0u8; 200]);
        let got = h.evidence(&[
            (Originator, &hs[..10]),
            (Originator, &hs[10..30]),
            (Originator, &rest),
            (Originator, &piece[..50]),
            (Originator, &piece[50..]),
        ]);
        assert_eq!(
            got,
            vec![
                None,
                None,
                Some("bittorrent.handshake"),
                Some("bittorrent.messages"),
                Some("bittorrent.extended_handshake"),
            ]
        );
        assert_eq!(h.facts().client[0].as_deref(), Some("uTorrent 3.5"));
    }

    #[test]
    fn the_extension_handshake_names_the_client_over_the_peer_id() {
        let mut h = Harness::tcp(PeerWire);
        let mut first = handshake(b"-TR2940-abcdefghijkl");
        first.extend(message(
            20,
            b"\x00d1:md11:ut_metadatai2ee1:v17:Transmission 2.94e",
        ));
        assert_eq!(
            h.evidence(&[(Originator, &first)]),
            vec![Some("bittorrent.handshake")]
        );
        assert_eq!(h.facts().client[0].as_deref(), Some("Transmission 2.94"));
    }

    #[test]
    fn ignores_look_alikes() {
        for (name, bytes) in LOOK_ALIKES {
            let mut h = Harness::tcp(PeerWire);
            assert_eq!(h.feed(Originator, bytes), Probe::NotMine, "{name}");
        }
        let mut hs = handshake(b"-TR2940-abcdefghijkl");
        hs[5] = b'x';
        let mut h = Harness::tcp(PeerWire);
        assert_eq!(h.feed(Originator, &hs), Probe::NotMine);
    }

    #[test]
    fn stops_following_framing_that_breaks() {
        let mut side = Side {
            phase: Phase::Messages,
            ..Side::default()
        };
        let mut facts = None;
        let mut sink = FactSink::new(&mut facts, Originator);
        assert!(follow_messages(&mut side, &message(2, &[]), &mut sink).is_ok());
        assert!(follow_messages(&mut side, &message(99, &[]), &mut sink).is_err());
        assert!(
            follow_messages(&mut side, &message(6, &[0; 3]), &mut sink).is_err(),
            "request must be 13 bytes"
        );
        assert!(follow_messages(&mut side, &[0xff, 0xff, 0xff, 0xff, 7], &mut sink).is_err());
        assert!(
            follow_messages(&mut side, &[0, 0], &mut sink).is_err(),
            "split header"
        );
    }
}
