//! Encrypted BitTorrent over TCP: the Message Stream Encryption / Protocol
//! Encryption handshake (MSE/PE, BEP 8 and the Azureus/uTorrent
//! specification it describes).
//!
//! Nothing of MSE is in clear text, but its handshake has a fixed shape,
//! four messages in strict alternation, starting with the initiator:
//! 1. A -> B: `Ya` (a 768-bit Diffie-Hellman public key, 96 bytes) and
//!    `PadA` (0 to 512 random bytes): 96 to 608 bytes, all random;
//! 2. B -> A: `Yb` and `PadB`: 96 to 608 bytes, all random;
//! 3. A -> B: `HASH('req1', S)` (20), `HASH('req2', SKEY) xor HASH('req3',
//!    S)` (20), then encrypted `VC` (8), `crypto_provide` (4), `len(PadC)`
//!    (2), `PadC` (0 to 512), `len(IA)` (2) and the initial payload: at
//!    least 56 bytes;
//! 4. B -> A: encrypted `VC` (8), `crypto_select` (4), `len(PadD)` (2),
//!    `PadD`: at least 14 bytes.
//!
//! The detector checks exactly that: the initiator speaks first; the first
//! two messages are 96 to 608 bytes of random-looking data (no known
//! plaintext opening, no length prefix, a byte distribution like random
//! bytes) each sent in at most two segments; the third and fourth have the
//! sizes the spec allows. Protocols that encrypt from the first byte
//! (Shadowsocks, VMess, obfs4) share some of this shape, so a match alone
//! is only `heuristic`; the endpoint cache and host behaviour raise it.

use crate::decode::Transport;
use crate::detect::{
    Confidence, Detector, Evidence, FactSink, Interest, PacketView, Probe, Protocol,
};
use crate::flow::Direction;

/// Size of the Diffie-Hellman public key (768-bit prime).
const KEY_LEN: usize = 96;
/// Longest padding of the first two messages.
const MAX_PAD: usize = 512;
/// Smallest third message: two hashes, VC, crypto_provide, len(PadC), len(IA).
const MIN_THIRD: usize = 20 + 20 + 8 + 4 + 2 + 2;
/// Largest third message worth accepting: the above, the largest PadC, and
/// an initial payload of a few messages.
const MAX_THIRD: usize = MIN_THIRD + MAX_PAD + 4096;
/// Smallest fourth message: VC, crypto_select, len(PadD).
const MIN_FOURTH: usize = 8 + 4 + 2;
/// Segments a message of the first two may be split into.
const MAX_SEGMENTS: u8 = 2;

/// Distinct byte values that 96 random bytes show at the least, with a
/// wide margin: the expected count is 80 (256 * (1 - (255/256)^96)) with a
/// standard deviation near 4; text and structured binary headers show far
/// fewer.
const MIN_DISTINCT: u32 = 64;

/// The MSE detector.
#[derive(Debug, Default)]
pub struct Mse;

/// Per-flow state: the message being received and the sizes so far.
#[derive(Clone, Copy, Debug, Default)]
pub struct State {
    /// Messages completed (0 to 3).
    done: u8,
    /// Side of the message in progress (0 originator, 1 responder).
    side: u8,
    /// Segments of the message in progress.
    segments: u8,
    /// Bytes of the message in progress.
    bytes: u16,
}

impl Detector for Mse {
    type State = State;
    const NAME: &'static str = "mse";
    const EVIDENCE: &'static [&'static str] = &["bittorrent.mse"];

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
        _facts: &mut FactSink<'_>,
    ) -> Probe {
        let side = packet.direction.index() as u8;
        let len = packet.payload.len();
        if state.done == 0 && state.segments == 0 {
            // The initiator opens; its first bytes must look random.
            if packet.direction != Direction::Originator || !random_opening(packet.payload) {
                return Probe::NotMine;
            }
            state.side = 0;
            state.segments = 1;
            state.bytes = len.min(usize::from(u16::MAX)) as u16;
            return Probe::NeedMore;
        }
        if side == state.side {
            // The message in progress goes on.
            state.segments = state.segments.saturating_add(1);
            state.bytes = state
                .bytes
                .saturating_add(len.min(usize::from(u16::MAX)) as u16);
            let limit = if state.done < 2 {
                KEY_LEN + MAX_PAD
            } else {
                MAX_THIRD
            };
            if usize::from(state.bytes) > limit || (state.done < 2 && state.segments > MAX_SEGMENTS)
            {
                return Probe::NotMine;
            }
            return Probe::NeedMore;
        }
        // The other side answers: the message in progress is complete.
        let size = usize::from(state.bytes);
        let complete_ok = match state.done {
            0 | 1 => (KEY_LEN..=KEY_LEN + MAX_PAD).contains(&size),
            _ => (MIN_THIRD..=MAX_THIRD).contains(&size),
        };
        if !complete_ok {
            return Probe::NotMine;
        }
        state.done += 1;
        match state.done {
            // The responder's key must look random too.
            1 if !random_opening(packet.payload) => Probe::NotMine,
            3 if len >= MIN_FOURTH => Probe::Match(Evidence {
                protocol: Protocol::Bittorrent,
                name: "bittorrent.mse",
                strength: Confidence::Heuristic,
            }),
            3 => Probe::NotMine,
            _ => {
                state.side = side;
                state.segments = 1;
                state.bytes = len.min(usize::from(u16::MAX)) as u16;
                Probe::NeedMore
            }
        }
    }
}

/// Whether the first bytes of a message can be a Diffie-Hellman key: no
/// plaintext opening of a known protocol, no length prefix describing the
/// segment, and 96 bytes distributed like random bytes.
fn random_opening(payload: &[u8]) -> bool {
    // The key alone is 96 bytes, and every client sends it in one piece.
    let Some(head) = payload.get(..KEY_LEN) else {
        return false;
    };
    // Records and frames that announce their own length (TLS records,
    // OpenVPN over TCP, length-prefixed RPCs) are not random.
    let len = payload.len();
    let be16 = usize::from(u16::from_be_bytes([head[0], head[1]]));
    let be32 = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
    let le32 = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
    let tls = matches!(head[0], 0x14..=0x17) && head[1] == 0x03;
    if tls || be16 + 2 == len || be32 + 4 == len || le32 + 4 == len || be16 == len || le32 == len {
        return false;
    }
    let mut seen = [false; 256];
    let mut distinct = 0u32;
    for &b in head {
        if !seen[usize::from(b)] {
            seen[usize::from(b)] = true;
            distinct += 1;
        }
    }
    distinct >= MIN_DISTINCT
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::protocols::testing::{Harness, LOOK_ALIKES};
    use crate::flow::Direction::{Originator, Responder};

    /// Deterministic pseudo-random bytes.
    fn random(n: usize, seed: u32) -> Vec<u8> {
        let mut x = seed.wrapping_mul(2_654_435_761).max(1);
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                (x >> 8) as u8
            })
            .collect()
    }

    fn run(messages: &[(crate::flow::Direction, Vec<u8>)]) -> Vec<Option<&'static str>> {
        let mut h = Harness::tcp(Mse);
        let packets: Vec<(crate::flow::Direction, &[u8])> =
            messages.iter().map(|(d, p)| (*d, p.as_slice())).collect();
        h.evidence(&packets)
    }

    #[test]
    fn matches_the_four_message_handshake() {
        // Sizes as libtorrent, Transmission and aria2 sent them in the
        // project's captures.
        for (a1, b1, a2, b2) in [
            (359, 367, 75, 318),
            (154, 590, 124, 302),
            (414, 367, 263, 432),
            (96, 96, 56, 14),
        ] {
            let got = run(&[
                (Originator, random(a1, 1)),
                (Responder, random(b1, 2)),
                (Originator, random(a2, 3)),
                (Responder, random(b2, 4)),
            ]);
            assert_eq!(
                got,
                vec![None, None, None, Some("bittorrent.mse")],
                "{a1} {b1} {a2} {b2}"
            );
        }
        // A first message split over two segments.
        let got = run(&[
            (Originator, random(96, 1)),
            (Originator, random(200, 5)),
            (Responder, random(300, 2)),
            (Originator, random(80, 3)),
            (Responder, random(20, 4)),
        ]);
        assert_eq!(got.last(), Some(&Some("bittorrent.mse")));
    }

    #[test]
    fn rejects_shapes_the_spec_does_not_allow() {
        let cases: &[(&str, [usize; 4])] = &[
            ("first message too short", [95, 300, 80, 20]),
            ("first message too long", [609, 300, 80, 20]),
            ("answer too long", [300, 700, 80, 20]),
            ("third message too short", [300, 300, 55, 20]),
            ("fourth message too short", [300, 300, 80, 13]),
        ];
        for (name, [a1, b1, a2, b2]) in cases {
            let got = run(&[
                (Originator, random(*a1, 1)),
                (Responder, random(*b1, 2)),
                (Originator, random(*a2, 3)),
                (Responder, random(*b2, 4)),
            ]);
            assert!(!got.contains(&Some("bittorrent.mse")), "{name}");
        }
        // The responder speaking first (a server banner) is not MSE.
        let got = run(&[(Responder, random(300, 2)), (Originator, random(300, 1))]);
        assert_eq!(got, vec![None, None]);
        // Nor is a large answer sent in many segments (a proxied download).
        let got = run(&[
            (Originator, random(300, 1)),
            (Responder, random(200, 2)),
            (Responder, random(200, 3)),
            (Responder, random(200, 4)),
            (Originator, random(80, 5)),
            (Responder, random(20, 6)),
        ]);
        assert!(!got.contains(&Some("bittorrent.mse")));
    }

    #[test]
    fn rejects_plaintext_and_length_prefixed_openings() {
        // Random payloads (a QUIC initial, random bytes) cannot be told
        // from a key by one packet: the shape tests above cover them.
        for (name, bytes) in LOOK_ALIKES
            .iter()
            .filter(|(n, _)| !matches!(*n, "quic initial" | "random"))
        {
            let mut h = Harness::tcp(Mse);
            assert_eq!(h.feed(Originator, bytes), Probe::NotMine, "{name}");
        }
        // A 300-byte TLS record, and OpenVPN's length-prefixed packet.
        let mut tls = random(300, 9);
        tls[..3].copy_from_slice(&[0x16, 0x03, 0x01]);
        let mut ovpn = random(300, 10);
        ovpn[..2].copy_from_slice(&298u16.to_be_bytes());
        let text = b"EHLO mail.example.com\r\n".repeat(8);
        for bytes in [tls, ovpn, text] {
            let mut h = Harness::tcp(Mse);
            assert_eq!(h.feed(Originator, &bytes), Probe::NotMine);
        }
    }
}
