//! Protocols known not to be P2P file sharing, recognised packet by packet
//! by their whole structure, so that detection (the signature rules and
//! the structural detectors) skips them.
//!
//! Only DNS so far. On a busy link it is most UDP flows (a query and its
//! answer each), and each such packet went through every UDP detector and
//! the signature scan to be found not P2P: about 1,600 instructions a
//! packet, about a seventh of all the work on the benchmark capture.
//!
//! The check is strict, so that a P2P datagram passes it only by a chance
//! far below one in a million: the DNS port on the server's side, opcode
//! QUERY with the reserved bit clear, exactly one question whose name is
//! printable labels, a known class, and every record after it parsing to
//! the datagram's last byte. It is made for each packet and ends nothing:
//! a packet of the flow that is not such a message is inspected as any
//! other, so one DNS message cannot shield the rest of a flow. Flows of
//! DNS end undecided (to an enforcer: not sealed, still looked at), as
//! they did when the detectors saw them and kept waiting. A signature rule
//! never sees a whole DNS message either: rules name P2P flows, and a DNS
//! lookup is not one.

use crate::decode::Transport;

use super::PacketView;

/// Ports of DNS, multicast DNS and LLMNR.
const DNS_PORTS: [u16; 3] = [53, 5353, 5355];

/// Header fields (RFC 1035, 4.1.1).
mod field {
    use std::ops::Range;
    pub const FLAGS: Range<usize> = 2..4;
    pub const QDCOUNT: Range<usize> = 4..6;
    pub const ANCOUNT: Range<usize> = 6..8;
    pub const NSCOUNT: Range<usize> = 8..10;
    pub const ARCOUNT: Range<usize> = 10..12;
    pub const HEADER_LEN: usize = 12;
}

const QR: u16 = 0x8000;
const OPCODE: u16 = 0x7800;
const Z: u16 = 0x0040;
/// The type of EDNS's OPT pseudo-record (RFC 6891).
const OPT: u16 = 41;
/// Records a message may hold before it is taken for something else.
const MAX_RECORDS: u16 = 64;

/// Whether `view` is a whole DNS message (not cut by the snap length): a
/// query to a DNS port or an answer from one.
pub fn is_dns(view: &PacketView<'_>) -> bool {
    if view.transport != Transport::Udp || view.truncated {
        return false;
    }
    let p = view.payload;
    let Some(flags) = u16_at(p, field::FLAGS.start) else {
        return false;
    };
    let server = if flags & QR == 0 { view.dst } else { view.src };
    if !DNS_PORTS.contains(&server.port()) {
        return false;
    }
    message(p, flags).is_some()
}

/// The whole message parses (`Some`), given its flags.
fn message(p: &[u8], flags: u16) -> Option<()> {
    if flags & (OPCODE | Z) != 0 || u16_at(p, field::QDCOUNT.start)? != 1 {
        return None;
    }
    let (an, ns, ar) = (
        u16_at(p, field::ANCOUNT.start)?,
        u16_at(p, field::NSCOUNT.start)?,
        u16_at(p, field::ARCOUNT.start)?,
    );
    let query = flags & QR == 0;
    // A query asks and at most carries EDNS's OPT record.
    if query && (an != 0 || ns != 0 || ar > 1) {
        return None;
    }
    if an.max(ns).max(ar) > MAX_RECORDS {
        return None;
    }
    let mut at = name(p, field::HEADER_LEN, false)?;
    let class = u16_at(p, at + 2)?;
    if !matches!(class & 0x7fff, 1 | 3 | 4 | 254 | 255) {
        return None;
    }
    at += 4;
    for _ in 0..an + ns + ar {
        at = name(p, at, true)?;
        let rtype = u16_at(p, at)?;
        if query && rtype != OPT {
            return None;
        }
        let rdlength = usize::from(u16_at(p, at + 8)?);
        at += 10 + rdlength;
        if at > p.len() {
            return None;
        }
    }
    (at == p.len()).then_some(())
}

/// The offset after the domain name at `at`: labels of 1 to 63 bytes,
/// ended by the root label or (`pointer` allowed) a compression pointer.
/// Question names must be printable ASCII; names in records may hold any
/// byte.
fn name(p: &[u8], mut at: usize, pointer: bool) -> Option<usize> {
    let mut total = 0usize;
    loop {
        let len = *p.get(at)?;
        match len {
            0 => return Some(at + 1),
            1..=63 => {
                let label = p.get(at + 1..at + 1 + usize::from(len))?;
                if !pointer && !label.iter().all(|b| (0x21..=0x7e).contains(b)) {
                    return None;
                }
                // With the root label's byte, at most 255 (RFC 1035, 3.1).
                total += usize::from(len) + 1;
                if total + 1 > 255 {
                    return None;
                }
                at += 1 + usize::from(len);
            }
            0xc0..=0xff if pointer => {
                p.get(at + 1)?;
                return Some(at + 2);
            }
            _ => return None,
        }
    }
}

fn u16_at(p: &[u8], at: usize) -> Option<u16> {
    let b = p.get(at..at + 2)?;
    Some(u16::from_be_bytes([b[0], b[1]]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::{Direction, Endpoint};
    use crate::timestamp::Timestamp;

    fn view_udp(payload: &[u8], direction: Direction, sport: u16, dport: u16) -> PacketView<'_> {
        PacketView {
            payload,
            direction,
            index: 1,
            transport: Transport::Udp,
            src: Endpoint::new([192, 0, 2, 1].into(), sport),
            dst: Endpoint::new([198, 51, 100, 2].into(), dport),
            ts: Timestamp(0),
            truncated: false,
        }
    }

    /// A query for `labels` (type A, class IN), with an OPT record if `edns`.
    fn query(labels: &[&[u8]], edns: bool) -> Vec<u8> {
        let mut p = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, u8::from(edns)];
        for l in labels {
            p.push(l.len() as u8);
            p.extend_from_slice(l);
        }
        p.extend_from_slice(&[0, 0, 1, 0, 1]);
        if edns {
            p.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0]);
        }
        p
    }

    /// The answer to `query(labels, false)`: one A record by pointer.
    fn answer(labels: &[&[u8]]) -> Vec<u8> {
        let mut p = query(labels, false);
        p[2] = 0x81;
        p[3] = 0x80;
        p[7] = 1;
        p.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0x0e, 0x10, 0, 4, 192, 0, 2, 1]);
        p
    }

    fn to_port(payload: &[u8], dport: u16) -> bool {
        is_dns(&view_udp(payload, Direction::Originator, 40000, dport))
    }

    fn from_port(payload: &[u8], sport: u16) -> bool {
        is_dns(&view_udp(payload, Direction::Responder, sport, 40000))
    }

    const NAME: &[&[u8]] = &[b"www", b"example", b"com"];

    #[test]
    fn queries_and_answers_on_dns_ports() {
        assert!(to_port(&query(NAME, false), 53));
        assert!(to_port(&query(NAME, true), 53));
        assert!(to_port(&query(&[], false), 53), "the root");
        assert!(to_port(&query(NAME, false), 5353));
        assert!(from_port(&answer(NAME), 53));
    }

    #[test]
    fn not_dns() {
        // The right message on the wrong port, or the wrong way.
        assert!(!to_port(&query(NAME, false), 6881));
        assert!(!from_port(&query(NAME, false), 53), "a query from port 53");
        assert!(!to_port(&answer(NAME), 53), "an answer to port 53");
        // Broken structure.
        let q = query(NAME, false);
        assert!(!to_port(&q[..q.len() - 1], 53), "cut short");
        let mut long = q.clone();
        long.push(0);
        assert!(!to_port(&long, 53), "a byte after the question");
        let mut two = q.clone();
        two[5] = 2;
        assert!(!to_port(&two, 53), "two questions");
        let mut opcode = q.clone();
        opcode[2] |= 0x28;
        assert!(!to_port(&opcode, 53), "opcode 5");
        let mut z = q.clone();
        z[3] |= 0x40;
        assert!(!to_port(&z, 53), "reserved bit");
        let mut class = q.clone();
        let n = class.len();
        class[n - 1] = 9;
        assert!(!to_port(&class, 53), "class 9");
        assert!(
            !to_port(&query(&[b"a b"], false), 53),
            "a space in the name"
        );
        assert!(
            !to_port(&query(&[&[b'a'; 64]], false), 53),
            "a 64-byte label"
        );
        let mut answer_cut = answer(NAME);
        answer_cut.pop();
        assert!(!from_port(&answer_cut, 53), "rdata cut short");
        // What P2P sends, even on port 53.
        let dht = b"d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t2:aa1:y1:qe";
        assert!(!to_port(dht, 53));
        let utp_syn = [
            0x41, 0, 0x12, 0x34, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0x10, 0, 0, 0, 1, 0, 0,
        ];
        assert!(!to_port(&utp_syn, 53));
        assert!(!to_port(&[], 53));
        assert!(!to_port(&[0; 12], 53));
    }

    #[test]
    fn only_udp_and_whole_payloads() {
        let q = query(NAME, false);
        let mut v = view_udp(&q, Direction::Originator, 40000, 53);
        v.truncated = true;
        assert!(!is_dns(&v));
        v.truncated = false;
        v.transport = Transport::Tcp;
        assert!(!is_dns(&v));
    }
}
