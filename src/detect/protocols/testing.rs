//! Test helpers shared by the detectors' table tests: a harness that drives
//! one detector the way the engine does, and look-alike payloads that no
//! detector may take for P2P.

use std::net::IpAddr;

use crate::decode::Transport;
use crate::detect::cache::Learnt;
use crate::detect::{Detector, FactSink, Facts, PacketView, Probe};
use crate::flow::{Direction, Endpoint};
use crate::timestamp::Timestamp;

/// Drives one detector over the packets of one flow.
pub struct Harness<D: Detector> {
    detector: D,
    state: D::State,
    facts: Option<Box<Facts>>,
    learnt: Vec<Learnt>,
    counts: [u16; 2],
    retired: bool,
    transport: Transport,
    /// Sender and receiver of originator packets (swapped for the responder).
    pub endpoints: (Endpoint, Endpoint),
}

impl<D: Detector> Harness<D> {
    /// A TCP flow.
    pub fn tcp(detector: D) -> Self {
        Self::new(detector, Transport::Tcp)
    }

    /// A UDP flow.
    pub fn udp(detector: D) -> Self {
        Self::new(detector, Transport::Udp)
    }

    fn new(detector: D, transport: Transport) -> Self {
        let a = Endpoint::new(IpAddr::from([192, 0, 2, 1]), 40000);
        let b = Endpoint::new(IpAddr::from([198, 51, 100, 2]), 50000);
        Harness {
            detector,
            state: D::State::default(),
            facts: None,
            learnt: Vec::new(),
            counts: [0; 2],
            retired: false,
            transport,
            endpoints: (a, b),
        }
    }

    /// Shows one payload packet, as the engine would: not at all once the
    /// detector said "not mine" or beyond its packet budget.
    pub fn feed(&mut self, direction: Direction, payload: &[u8]) -> Probe {
        let d = direction.index();
        self.counts[d] += 1;
        if self.retired {
            return Probe::NotMine;
        }
        if self.counts[d] > self.detector.interest().max_payload_packets {
            return Probe::NeedMore;
        }
        let (src, dst) = match direction {
            Direction::Originator => self.endpoints,
            Direction::Responder => (self.endpoints.1, self.endpoints.0),
        };
        let view = PacketView {
            payload,
            direction,
            index: self.counts[d],
            transport: self.transport,
            src,
            dst,
            ts: Timestamp::from_secs(1),
            truncated: false,
        };
        let mut sink = FactSink::with_learnt(&mut self.facts, direction, &mut self.learnt);
        let probe = self.detector.inspect(&mut self.state, &view, &mut sink);
        self.retired = probe == Probe::NotMine;
        probe
    }

    /// Feeds packets and returns, for each, the evidence name it gave.
    pub fn evidence(&mut self, packets: &[(Direction, &[u8])]) -> Vec<Option<&'static str>> {
        packets
            .iter()
            .map(|(d, p)| match self.feed(*d, p) {
                Probe::Match(e) => Some(e.name),
                _ => None,
            })
            .collect()
    }

    /// Feeds packets and returns each probe.
    pub fn probes(&mut self, packets: &[(Direction, &[u8])]) -> Vec<Probe> {
        packets.iter().map(|(d, p)| self.feed(*d, p)).collect()
    }

    /// The endpoints announced so far, as `ip:port` text.
    pub fn learnt(&self) -> Vec<String> {
        self.learnt.iter().map(|l| l.endpoint.to_string()).collect()
    }

    /// The facts found so far.
    pub fn facts(&self) -> Facts {
        self.facts.as_deref().cloned().unwrap_or_default()
    }
}

/// Payloads of common non-P2P protocols, plus random bytes.
pub const LOOK_ALIKES: &[(&str, &[u8])] = &[
    (
        "dns query",
        b"\x41\x00\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07example\x03com\x00\x00\x01\x00\x01",
    ),
    (
        "dns response",
        b"\x41\x00\x81\x80\x00\x01\x00\x01\x00\x00\x00\x00\x07example\x03com\x00\x00\x01\x00\x01\xc0\x0c\x00\x01\x00\x01\x00\x00\x0e\x10\x00\x04\x5d\xb8\xd8\x22",
    ),
    ("dns query, 20 bytes", b"\x41\x00\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x02ab\x00\x00\x01\x00\x01"),
    (
        "stun binding request",
        b"\x00\x01\x00\x08\x21\x12\xa4\x42\x8a\x3b\x1c\x4d\x55\x66\x77\x88\x99\xaa\xbb\xcc\x80\x28\x00\x04\x12\x34\x56\x78",
    ),
    (
        "quic initial",
        b"\xc3\x00\x00\x00\x01\x08\x83\x94\xc8\xf0\x3e\x51\x57\x08\x00\x00\x44\x9e\x7b\x9a\xec\x34\xd1\xb1\xc9\x8d\xd7\x68\x9f\xb8\xec\x11\xd2\x42\xb1\x23\xdc\x9b\xd8\xba\xb9\x36\xb4\x7d\x92\xec\x35\x6c\x0b\xab\x7d\xf5\x97\x6d\x27\xcd\x44\x9f\x63\x30\x00\x99\xf3\x99\x1c\x26\x0e\xc4\xc6\x0d\x17\xb3\x1f\x84\x29\x15\x7b\xb3\x5a\x12\x82\xa6\x43\xa8\xd2\x26\x2c\xad\x67\x50\x0c\xad\xb8\xe7\x37\x8c\x8e\xb7\x53\x9e\xc4",
    ),
    (
        "quic short header",
        b"\x47\x4e\x44\x8f\x11\xaa\x3c\x62\x55\x01\x9f\xe1\x42\x77\x8d\x31\x0b\xc4\x6e\x2a\x99\x13\x5d\xf0\x88\x21",
    ),
    (
        "tls client hello",
        b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\x5e\x0c\x2f\x11\x9a\x43\xbb\x7c\x60\x01\xd2\x41\x8e\x33\x7a\xf2\x09\x6c\x45\x2b\x31\x0e\x77\x12\x8a\x65\xc3\x10\x2d\xfe\x00\x00\x20\xcc\xa8\xcc\xa9\xc0\x2f\xc0\x30\xc0\x2b\xc0\x2c\xc0\x13\xc0\x09\xc0\x14\xc0\x0a\x00\x9c\x00\x9d\x00\x2f\x00\x35\xc0\x12\x00\x0a\x01\x00\x00\x58\x00\x00\x00\x18\x00\x16\x00\x00\x13\x65\x78\x61\x6d\x70\x6c\x65\x2e\x75\x6c\x66\x68\x65\x69\x6d\x2e\x6e\x65\x74",
    ),
    (
        "http get",
        b"GET /index.html HTTP/1.1\r\nHost: www.example.com\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\n\r\n",
    ),
    (
        "http response",
        b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 5\r\n\r\nhello",
    ),
    (
        "ssdp m-search",
        b"M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nMAN: \"ssdp:discover\"\r\nMX: 1\r\nST: ssdp:all\r\n\r\n",
    ),
    ("ssh banner", b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n"),
    (
        "rtp",
        b"\x80\x60\x12\x34\x00\x01\xe2\x40\xde\xad\xbe\xef\x11\x22\x33\x44\x55\x66\x77\x88\x99\xaa\xbb\xcc\xdd\xee\xff\x00",
    ),
    (
        "random",
        b"\x9f\x1c\x88\x03\x7e\x44\xd2\x19\xab\xcd\x01\x77\x3a\x5b\x6c\x7d\x8e\x9f\xa0\xb1\xc2\xd3\xe4\xf5\x06\x17\x28\x39\x4a\x5b\x6c\x7d\x8e\x9f\xa0\xb1\xc2\xd3\xe4\xf5\x11\x22\x33\x44",
    ),
];
