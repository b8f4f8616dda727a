//! The Vuze (Azureus) DHT over UDP: Vuze's own distributed hash table,
//! which its BitTorrent client uses to find peers.
//!
//! Layout (Vuze wiki "Distributed hash table", as implemented by Wireshark's
//! vuze-dht dissector); all integers big-endian:
//! - a request starts with an 8-byte connection id whose top bit is set,
//!   then the action (1024 ping, 1026 store, 1028 find node, 1030 find
//!   value, 1036 key block), a transaction id, the protocol version, the
//!   vendor id (version >= 14), the network id and the sender's highest
//!   version (version >= 9), the sender's address (a length byte of 4 or
//!   16, the address, a port), an instance id, the sender's clock in
//!   milliseconds since 1970, and one or two flag bytes (versions >= 51 and
//!   >= 53);
//! - a reply starts with the action (1025, 1027, 1029, 1031, 1032 error,
//!   1037), then the request's transaction id and connection id, the
//!   protocol version, vendor and network ids, an instance id and the flag
//!   bytes.
//!
//! The top bit tells the two apart: a request's first byte has it set, a
//! reply's action (about 1024) has it clear. A request alone is a
//! structural match: an action from a list of five 32-bit values, a known
//! address length, a clock within this century and a datagram long enough
//! for the layout. A reply is proven to answer the other side's request
//! when it repeats that request's transaction and connection ids; a reply
//! seen without its request only shows a few fixed fields (weak evidence).

use crate::decode::Transport;
use crate::detect::{
    Confidence, Detector, Evidence, FactSink, Interest, PacketView, Probe, Protocol,
};

/// Header fields at fixed offsets.
mod field {
    use std::ops::Range;
    /// Request: connection id, action, transaction id, protocol version.
    pub mod request {
        use super::Range;
        pub const CONNECTION_ID: Range<usize> = 0..8;
        pub const ACTION: Range<usize> = 8..12;
        pub const TRANSACTION_ID: Range<usize> = 12..16;
        pub const VERSION: usize = 16;
    }
    /// Reply: action, transaction id, connection id, protocol version.
    pub mod reply {
        use super::Range;
        pub const ACTION: Range<usize> = 0..4;
        pub const TRANSACTION_ID: Range<usize> = 4..8;
        pub const CONNECTION_ID: Range<usize> = 8..16;
        pub const VERSION: usize = 16;
    }
    /// Where the version-dependent fields start, in both headers.
    pub const VARIABLE: usize = 17;
}

/// Protocol versions that add fields (Wireshark's `PV_*` list).
mod version {
    /// Oldest version with a documented layout (`PV_DIV_AND_CONT`).
    pub const OLDEST: u8 = 6;
    /// Network id and the sender's highest version (`PV_NETWORKS`,
    /// `PV_FIX_ORIGINATOR`).
    pub const NETWORKS: u8 = 9;
    /// Vendor id (`PV_VENDOR_ID`).
    pub const VENDOR_ID: u8 = 14;
    /// First flag byte (`PV_PACKET_FLAGS`).
    pub const PACKET_FLAGS: u8 = 51;
    /// Second flag byte (`PV_PACKET_FLAGS2`).
    pub const PACKET_FLAGS2: u8 = 53;
    /// Highest version accepted: the last documented one (53) and some
    /// room for later releases.
    pub const NEWEST: u8 = 63;
}

/// Request actions (ping, store, find node, find value, key block); each
/// reply's action is its request's plus one, and 1032 is the error reply.
const REQUESTS: [u32; 5] = [1024, 1026, 1028, 1030, 1036];
const REPLIES: [u32; 6] = [1025, 1027, 1029, 1031, 1032, 1037];

/// The sender's clock (milliseconds since 1970) must fall between 2005 (the
/// DHT appeared in Azureus 2.3) and 2100.
const CLOCK_MS: std::ops::Range<u64> = 1_104_537_600_000..4_102_444_800_000;

/// The Vuze DHT detector.
#[derive(Debug, Default)]
pub struct VuzeDht;

/// Per-flow state: a 24-bit digest of the latest request's transaction and
/// connection ids (a reply repeating other ids matches it by chance once in
/// 16 million), and which side sent it.
#[derive(Clone, Copy, Debug, Default)]
pub struct State {
    digest: [u8; 3],
    /// 0: no request yet; else 1 + the requester's side index.
    requester: u8,
}

/// A checked message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Message {
    /// A request, with the digest of its ids.
    Request([u8; 3]),
    /// A reply, with the digest of the ids it repeats.
    Reply([u8; 3]),
}

impl Detector for VuzeDht {
    type State = State;
    const NAME: &'static str = "vuze_dht";
    const EVIDENCE: &'static [&'static str] =
        &["bittorrent.vuze_dht.request", "bittorrent.vuze_dht.reply"];

    fn interest(&self) -> Interest {
        Interest {
            transport: Some(Transport::Udp),
            max_payload_packets: 4,
        }
    }

    fn inspect(&self, state: &mut State, packet: &PacketView<'_>, _: &mut FactSink<'_>) -> Probe {
        let side = packet.direction.index() as u8;
        match parse(packet.payload) {
            Some(Message::Request(digest)) => {
                state.digest = digest;
                state.requester = 1 + side;
                found("bittorrent.vuze_dht.request", Confidence::Unidirectional)
            }
            Some(Message::Reply(digest)) => {
                let answers = state.requester == 1 + (1 - side) && state.digest == digest;
                let strength = if answers {
                    Confidence::Bidirectional
                } else {
                    Confidence::Signature
                };
                found("bittorrent.vuze_dht.reply", strength)
            }
            // A Vuze UDP port also carries other protocols (uTP, the UDP
            // tracker protocol): keep looking while the budget lasts.
            None => Probe::NeedMore,
        }
    }
}

fn found(name: &'static str, strength: Confidence) -> Probe {
    Probe::Match(Evidence {
        protocol: Protocol::Bittorrent,
        name,
        strength,
    })
}

fn be32(b: &[u8], r: std::ops::Range<usize>) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(r)?.try_into().ok()?))
}

fn be64(b: &[u8], r: std::ops::Range<usize>) -> Option<u64> {
    Some(u64::from_be_bytes(b.get(r)?.try_into().ok()?))
}

/// Folds a transaction id and a connection id into 24 bits.
fn digest(transaction_id: u32, connection_id: u64) -> [u8; 3] {
    let folded = transaction_id ^ (connection_id >> 32) as u32 ^ connection_id as u32;
    let [a, b, c, d] = folded.to_be_bytes();
    [a ^ d, b, c]
}

/// Parses a request or reply header.
fn parse(p: &[u8]) -> Option<Message> {
    if *p.first()? & 0x80 != 0 {
        request(p).map(Message::Request)
    } else {
        reply(p).map(Message::Reply)
    }
}

/// Checks a request header; returns the digest of its ids.
fn request(p: &[u8]) -> Option<[u8; 3]> {
    use field::request as f;
    let connection_id = be64(p, f::CONNECTION_ID)?;
    if !REQUESTS.contains(&be32(p, f::ACTION)?) {
        return None;
    }
    let transaction_id = be32(p, f::TRANSACTION_ID)?;
    let v = *p.get(f::VERSION)?;
    if !(version::OLDEST..=version::NEWEST).contains(&v) {
        return None;
    }
    let mut at = field::VARIABLE;
    if v >= version::VENDOR_ID {
        at += 1;
    }
    if v >= version::NETWORKS {
        at += 4 + 1; // network id, sender's highest version
    }
    // The sender's address: a length byte (IPv4 or IPv6), the address, a
    // port.
    let address_len = usize::from(*p.get(at)?);
    if address_len != 4 && address_len != 16 {
        return None;
    }
    at += 1 + address_len + 2;
    at += 4; // instance id
    let clock = be64(p, at..at + 8)?;
    if !CLOCK_MS.contains(&clock) {
        return None;
    }
    at += 8 + flag_bytes(v);
    (at <= p.len()).then(|| digest(transaction_id, connection_id))
}

/// Checks a reply header; returns the digest of the ids it repeats.
fn reply(p: &[u8]) -> Option<[u8; 3]> {
    use field::reply as f;
    if !REPLIES.contains(&be32(p, f::ACTION)?) {
        return None;
    }
    let transaction_id = be32(p, f::TRANSACTION_ID)?;
    // The request's connection id, top bit set.
    let connection_id = be64(p, f::CONNECTION_ID)?;
    if connection_id >> 63 == 0 {
        return None;
    }
    let v = *p.get(f::VERSION)?;
    if !(version::OLDEST..=version::NEWEST).contains(&v) {
        return None;
    }
    let mut at = field::VARIABLE;
    if v >= version::VENDOR_ID {
        at += 1;
    }
    if v >= version::NETWORKS {
        at += 4; // network id
    }
    at += 4 + flag_bytes(v); // instance id, flags
    (at <= p.len()).then(|| digest(transaction_id, connection_id))
}

/// The flag bytes that end a header of version `v`.
fn flag_bytes(v: u8) -> usize {
    usize::from(v >= version::PACKET_FLAGS) + usize::from(v >= version::PACKET_FLAGS2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::protocols::testing::{Harness, LOOK_ALIKES};
    use crate::flow::Direction::{Originator, Responder};

    const CONN: u64 = 0x9f12_3456_789a_bcde;
    /// 2024-01-01 in milliseconds since 1970.
    const NOW_MS: u64 = 1_704_067_200_000;

    /// A request header of version `v` (IPv4 sender) and a body.
    fn request(action: u32, tid: u32, v: u8, body: &[u8]) -> Vec<u8> {
        let mut p = CONN.to_be_bytes().to_vec();
        p.extend_from_slice(&action.to_be_bytes());
        p.extend_from_slice(&tid.to_be_bytes());
        p.push(v);
        if v >= 14 {
            p.push(0); // vendor: Azureus
        }
        if v >= 9 {
            p.extend_from_slice(&0u32.to_be_bytes()); // network: main
            p.push(v); // highest version
        }
        p.extend_from_slice(&[4, 198, 51, 100, 7, 0x2c, 0x09]); // address
        p.extend_from_slice(&0x1122_3344u32.to_be_bytes()); // instance
        p.extend_from_slice(&NOW_MS.to_be_bytes());
        if v >= 51 {
            p.push(0);
        }
        if v >= 53 {
            p.push(0);
        }
        p.extend_from_slice(body);
        p
    }

    /// A reply header of version `v` repeating `tid` and `conn`, and a body.
    fn reply(action: u32, tid: u32, conn: u64, v: u8, body: &[u8]) -> Vec<u8> {
        let mut p = action.to_be_bytes().to_vec();
        p.extend_from_slice(&tid.to_be_bytes());
        p.extend_from_slice(&conn.to_be_bytes());
        p.push(v);
        if v >= 14 {
            p.push(0);
        }
        if v >= 9 {
            p.extend_from_slice(&0u32.to_be_bytes());
        }
        p.extend_from_slice(&0x5566_7788u32.to_be_bytes()); // instance
        if v >= 51 {
            p.push(0);
        }
        if v >= 53 {
            p.push(0);
        }
        p.extend_from_slice(body);
        p
    }

    /// A find-node request body: a 20-byte id, node status and DHT size.
    fn find_node_body() -> Vec<u8> {
        let mut b = vec![20];
        b.extend_from_slice(&[0x77; 20]);
        b.extend_from_slice(&[0, 0, 0, 1, 0, 0x10, 0, 0]);
        b
    }

    fn strengths(
        h: &mut Harness<VuzeDht>,
        packets: &[(crate::flow::Direction, &[u8])],
    ) -> Vec<Option<(&'static str, Confidence)>> {
        h.probes(packets)
            .into_iter()
            .map(|p| match p {
                Probe::Match(e) => Some((e.name, e.strength)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_reply_repeating_the_request_ids_is_bidirectional() {
        for v in [6, 9, 14, 22, 50, 51, 53] {
            let ping = request(1024, 0x0102_0304, v, b"");
            let pong = reply(1025, 0x0102_0304, CONN, v, b"");
            let mut h = Harness::udp(VuzeDht);
            assert_eq!(
                strengths(&mut h, &[(Originator, &ping), (Responder, &pong)]),
                vec![
                    Some(("bittorrent.vuze_dht.request", Confidence::Unidirectional)),
                    Some(("bittorrent.vuze_dht.reply", Confidence::Bidirectional)),
                ],
                "version {v}"
            );
        }
        // Requests go both ways between two nodes.
        let find = request(1028, 77, 51, &find_node_body());
        let found = reply(1029, 77, CONN, 51, &[0, 0, 0, 0, 0, 1]);
        let mut h = Harness::udp(VuzeDht);
        let got = strengths(&mut h, &[(Responder, &find), (Originator, &found)]);
        assert_eq!(
            got[1],
            Some(("bittorrent.vuze_dht.reply", Confidence::Bidirectional))
        );
    }

    #[test]
    fn a_reply_to_another_request_is_weak() {
        let ping = request(1024, 5, 51, b"");
        for pong in [
            reply(1025, 6, CONN, 51, b""),
            reply(1025, 5, CONN ^ 1, 51, b""),
        ] {
            let mut h = Harness::udp(VuzeDht);
            let got = strengths(&mut h, &[(Originator, &ping), (Responder, &pong)]);
            assert_eq!(
                got[1],
                Some(("bittorrent.vuze_dht.reply", Confidence::Signature))
            );
        }
        // A reply from the side that asked does not answer its own request.
        let mut h = Harness::udp(VuzeDht);
        let got = strengths(
            &mut h,
            &[
                (Originator, &ping),
                (Originator, &reply(1025, 5, CONN, 51, b"")),
            ],
        );
        assert_eq!(
            got[1],
            Some(("bittorrent.vuze_dht.reply", Confidence::Signature))
        );
    }

    #[test]
    fn rejects_broken_headers() {
        let ok = request(1030, 9, 51, b"\x14key-key-key-key-key-\x00\x10");
        assert!(parse(&ok).is_some());
        let mut bad: Vec<(&str, Vec<u8>)> = vec![
            ("reply action in a request", request(1025, 9, 51, b"")),
            ("unknown action", request(1034, 9, 51, b"")),
            ("version 5", request(1024, 9, 5, b"")),
            ("version 64", request(1024, 9, 64, b"")),
            ("request action in a reply", reply(1024, 9, CONN, 51, b"")),
            (
                "reply without the top bit",
                reply(1025, 9, CONN >> 1, 51, b""),
            ),
        ];
        let full = request(1024, 9, 53, b"");
        bad.push(("request cut short", full[..full.len() - 1].to_vec()));
        let full = reply(1025, 9, CONN, 53, b"");
        bad.push(("reply cut short", full[..full.len() - 1].to_vec()));
        let mut p = request(1024, 9, 51, b"");
        p[17 + 1 + 5] = 6; // address length
        bad.push(("address length 6", p));
        let mut p = request(1024, 9, 51, b"");
        let clock = 17 + 1 + 5 + 7 + 4;
        p[clock..clock + 8].copy_from_slice(&1_000_000u64.to_be_bytes());
        bad.push(("clock in 1970", p));
        for (name, bytes) in &bad {
            assert_eq!(parse(bytes), None, "{name}");
        }
    }

    #[test]
    fn look_alikes_are_never_named() {
        for (name, bytes) in LOOK_ALIKES {
            let mut h = Harness::udp(VuzeDht);
            let got = h.evidence(&[(Originator, bytes), (Responder, bytes)]);
            assert_eq!(got, vec![None, None], "{name}");
        }
        // The UDP tracker protocol's connect request shares the port and
        // starts with a 64-bit magic whose top bit is clear.
        let connect = b"\x00\x00\x04\x17\x27\x10\x19\x80\x00\x00\x00\x00\x12\x34\x56\x78";
        assert_eq!(parse(connect), None);
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        for len in 0..200 {
            let p: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            assert_eq!(parse(&p), None, "{p:02x?}");
        }
    }
}
