//! PPStream's UDP packets (PPLive's fixed openings are signature rules in
//! `rules/ppstream.yaml`).
//!
//! No public specification exists; the facts come from two classifiers:
//! - every packet starts with a little-endian 16-bit length that counts the
//!   whole datagram, or the datagram less 4 or 6 bytes (nDPI `ppstream.c`;
//!   libprotoident `lpi_ppstream` sees the first two forms);
//! - the third byte is a message class: 0x43, 0x44 or 0x55, and the fourth
//!   byte takes a few values per class (libprotoident's list);
//! - the class 0x43 packet nDPI matches carries the fixed bytes
//!   `ff 00 01 00 00 00 00 00 00 00` at offsets 5 to 14.
//!
//! A length field that accounts for the datagram together with the ten
//! fixed bytes is a structural match of its side (`ppstream.header`). The
//! length with only the class bytes is two fixed bytes more than chance
//! allows for, so it is weak evidence (`ppstream.packet`).

use crate::decode::Transport;
use crate::detect::{
    Confidence, Detector, Evidence, FactSink, Interest, PacketView, Probe, Protocol,
};
use crate::flow::Direction;

/// Packet layout.
mod field {
    use std::ops::Range;
    pub const LENGTH: Range<usize> = 0..2;
    pub const CLASS: usize = 2;
    pub const SUBTYPE: usize = 3;
    /// nDPI's fixed bytes of a class 0x43 packet.
    pub const FIXED: Range<usize> = 5..15;
}

/// The bytes at [`field::FIXED`] (nDPI `ppstream.c`).
const FIXED: [u8; 10] = [0xff, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00];

/// Class and sub-type pairs (libprotoident `lpi_ppstream`).
const CLASSES: &[(u8, &[u8])] = &[
    (
        0x43,
        &[0x00, 0x22, 0x23, 0x32, 0x46, 0x47, 0x49, 0x4c, 0x4d],
    ),
    (0x44, &[0x73, 0xb2, 0xb5]),
    (0x55, &[0x72, 0x75, 0xb3]),
];

/// The PPStream detector.
#[derive(Debug, Default)]
pub struct Ppstream;

impl Detector for Ppstream {
    type State = ();
    const NAME: &'static str = "ppstream";
    const EVIDENCE: &'static [&'static str] = &["ppstream.header", "ppstream.packet"];

    fn interest(&self) -> Interest {
        Interest {
            transport: Some(Transport::Udp),
            max_payload_packets: 3,
        }
    }

    fn inspect(&self, _: &mut (), packet: &PacketView<'_>, _: &mut FactSink<'_>) -> Probe {
        let (name, strength) = match classify(packet.payload) {
            Some(Kind::Header) => ("ppstream.header", Confidence::Unidirectional),
            Some(Kind::Packet) => ("ppstream.packet", Confidence::Signature),
            // A PPStream flow opens with a PPStream packet.
            None if packet.direction == Direction::Originator && packet.index == 1 => {
                return Probe::NotMine;
            }
            None => return Probe::NeedMore,
        };
        Probe::Match(Evidence {
            protocol: Protocol::Ppstream,
            name,
            strength,
        })
    }
}

/// What a datagram shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// Length field and nDPI's ten fixed bytes.
    Header,
    /// Length field and a known class and sub-type.
    Packet,
}

fn classify(p: &[u8]) -> Option<Kind> {
    let len = usize::from(u16::from_le_bytes(p.get(field::LENGTH)?.try_into().ok()?));
    let class = *p.get(field::CLASS)?;
    // nDPI accepts len, len - 4 and len - 6; libprotoident the first two.
    let fits = |slack: &[usize]| slack.iter().any(|s| p.len().checked_sub(*s) == Some(len));
    if class == 0x43 && p.get(field::FIXED) == Some(&FIXED[..]) && fits(&[0, 4, 6]) {
        return Some(Kind::Header);
    }
    let subtype = *p.get(field::SUBTYPE)?;
    let known = CLASSES
        .iter()
        .any(|(c, subs)| *c == class && subs.contains(&subtype));
    (known && fits(&[0, 4])).then_some(Kind::Packet)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::protocols::testing::{Harness, LOOK_ALIKES};
    use crate::flow::Direction::{Originator, Responder};

    /// A class 0x43 packet with nDPI's fixed bytes, its length field `slack`
    /// bytes short of the datagram.
    fn header(total: usize, slack: usize) -> Vec<u8> {
        let mut p = ((total - slack) as u16).to_le_bytes().to_vec();
        p.extend_from_slice(&[0x43, 0x32, 0x01]);
        p.extend_from_slice(&FIXED);
        p.resize(total, 0x6b);
        p
    }

    fn packet(total: usize, class: u8, sub: u8) -> Vec<u8> {
        let mut p = (total as u16).to_le_bytes().to_vec();
        p.extend_from_slice(&[class, sub]);
        p.resize(total, 0x6b);
        p
    }

    #[test]
    fn length_and_fixed_bytes_match() {
        for slack in [0, 4, 6] {
            let p = header(60, slack);
            let mut h = Harness::udp(Ppstream);
            assert_eq!(
                h.probes(&[(Originator, &p)]),
                vec![Probe::Match(Evidence {
                    protocol: Protocol::Ppstream,
                    name: "ppstream.header",
                    strength: Confidence::Unidirectional,
                })],
                "slack {slack}"
            );
        }
        for (class, sub) in [(0x43, 0x4c), (0x44, 0xb2), (0x55, 0x72)] {
            let mut h = Harness::udp(Ppstream);
            let p = packet(40, class, sub);
            let q = packet(80, class, sub);
            assert_eq!(
                h.evidence(&[(Originator, &p), (Responder, &q)]),
                vec![Some("ppstream.packet"); 2]
            );
        }
    }

    #[test]
    fn near_misses_and_look_alikes_do_not_match() {
        let mut near = vec![
            ("length off by one", header(60, 1)),
            ("class 0x44 with the 0x43 fixed bytes", {
                let mut p = header(60, 0);
                p[2] = 0x44;
                p
            }),
            ("unknown sub-type", packet(40, 0x43, 0x01)),
            ("slack 6 without the fixed bytes", packet(40, 0x55, 0x75)),
        ];
        if let Some(p) = near.last_mut() {
            p.1[0] = 34; // 40 - 6
        }
        near.push(("too short", vec![0x03, 0x00, 0x43]));
        for (name, bytes) in near
            .iter()
            .map(|(n, b)| (*n, b.as_slice()))
            .chain(LOOK_ALIKES.iter().copied())
        {
            assert_eq!(classify(bytes), None, "{name}");
            let mut h = Harness::udp(Ppstream);
            assert_eq!(h.feed(Originator, bytes), Probe::NotMine, "{name}");
        }
        let mut x: u64 = 0x0bad_5eed_dead_beef;
        let mut hits = 0;
        for len in 0..400 {
            for _ in 0..50 {
                let p: Vec<u8> = (0..len)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        x as u8
                    })
                    .collect();
                hits += usize::from(classify(&p).is_some());
            }
        }
        assert_eq!(hits, 0);
    }
}
