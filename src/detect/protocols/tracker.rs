//! BitTorrent trackers: the HTTP announce and scrape (BEP 3, BEP 23, BEP
//! 48) and the UDP tracker protocol (BEP 15).
//!
//! HTTP: the originator's request line must be a `GET` whose query carries
//! an `info_hash` that URL-decodes to exactly 20 bytes, with a 20-byte
//! `peer_id` for an announce; a scrape's path ends in `scrape`. The reply
//! counts when its body is a bencoded dictionary with a tracker's keys
//! (`interval`, `peers`, `failure reason`, `files`, ...).
//!
//! UDP: a connect request is exactly 16 bytes starting with the protocol's
//! 64-bit magic 0x41727101980 and action 0; the reply repeats the request's
//! transaction id. Announce and scrape requests have fixed layouts; their
//! replies repeat the transaction id and have the matching action and a
//! length the layout allows.

use super::{peer_id, peers};
use crate::decode::Transport;
use crate::detect::bencode;
use crate::detect::cache::Transports;
use crate::detect::{
    Confidence, Detector, Evidence, FactSink, Interest, PacketView, Probe, Protocol,
};
use crate::flow::Direction;

/// UDP tracker layout (BEP 15).
mod udp {
    use std::ops::Range;
    pub const MAGIC: [u8; 8] = 0x0417_2710_1980u64.to_be_bytes();
    pub const ACTION: Range<usize> = 8..12;
    pub const TXID: Range<usize> = 12..16;
    pub const REPLY_ACTION: Range<usize> = 0..4;
    pub const REPLY_TXID: Range<usize> = 4..8;
    pub const INFO_HASH: Range<usize> = 16..36;
    pub const PEER_ID: Range<usize> = 36..56;
    pub const EVENT: Range<usize> = 80..84;
    pub const CONNECT_LEN: usize = 16;
    pub const ANNOUNCE_LEN: usize = 98;
    pub const CONNECT: u32 = 0;
    pub const ANNOUNCE: u32 = 1;
    pub const SCRAPE: u32 = 2;
    pub const ERROR: u32 = 3;
    /// A scrape asks for at most about 74 hashes (BEP 15).
    pub const MAX_SCRAPE: usize = 74;
}

/// Keys a tracker's bencoded reply starts with or contains.
const REPLY_KEYS: &[&[u8]] = &[
    b"interval",
    b"min interval",
    b"peers",
    b"peers6",
    b"complete",
    b"incomplete",
    b"failure reason",
    b"warning message",
    b"tracker id",
    b"files",
];

/// The tracker detector.
#[derive(Debug, Default)]
pub struct Tracker;

/// Per-flow state.
#[derive(Clone, Copy, Debug, Default)]
pub struct State {
    /// The originator's request was recognised (and for UDP: which action).
    request: Option<u32>,
    /// Transaction id of the latest UDP request.
    txid: [u8; 4],
    /// The HTTP reply's headers ended without a body: look at the next packet.
    body_next: bool,
}

/// Marks an HTTP request (no UDP action).
const HTTP: u32 = u32::MAX;

impl Detector for Tracker {
    type State = State;
    const NAME: &'static str = "tracker";
    const EVIDENCE: &'static [&'static str] = &[
        "bittorrent.tracker.announce",
        "bittorrent.tracker.scrape",
        "bittorrent.tracker.reply",
        "bittorrent.tracker.udp_connect",
        "bittorrent.tracker.udp_announce",
        "bittorrent.tracker.udp_scrape",
        "bittorrent.tracker.udp_reply",
    ];

    fn interest(&self) -> Interest {
        Interest {
            transport: None,
            max_payload_packets: 3,
        }
    }

    fn inspect(
        &self,
        state: &mut State,
        packet: &PacketView<'_>,
        facts: &mut FactSink<'_>,
    ) -> Probe {
        match (packet.transport, packet.direction) {
            (Transport::Tcp, Direction::Originator) if packet.index == 1 => {
                match http_request(packet, facts) {
                    Some(name) => {
                        state.request = Some(HTTP);
                        found(name, Confidence::Unidirectional)
                    }
                    None => Probe::NotMine,
                }
            }
            (Transport::Tcp, Direction::Responder) if state.request == Some(HTTP) => {
                let body = if state.body_next {
                    Some(packet.payload)
                } else {
                    http_reply_body(packet.payload)
                };
                match body {
                    Some([]) => {
                        state.body_next = true;
                        Probe::NeedMore
                    }
                    Some(body) if tracker_dict(body) => {
                        learn_reply_peers(body, facts);
                        found("bittorrent.tracker.reply", Confidence::Unidirectional)
                    }
                    _ => Probe::NotMine,
                }
            }
            (Transport::Tcp, _) => Probe::NeedMore,
            (Transport::Udp, Direction::Originator) => match udp_request(packet.payload, facts) {
                Some((action, txid, name, strength)) => {
                    state.request = Some(action);
                    state.txid = txid;
                    found(name, strength)
                }
                None if state.request.is_none() => Probe::NotMine,
                None => Probe::NeedMore,
            },
            (Transport::Udp, Direction::Responder) => match state.request {
                Some(action) if udp_reply(packet.payload, action, state.txid) => {
                    if action == udp::ANNOUNCE {
                        learn_udp_peers(packet, facts);
                    }
                    found("bittorrent.tracker.udp_reply", Confidence::Bidirectional)
                }
                Some(_) => Probe::NeedMore,
                None => Probe::NotMine,
            },
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

/// Checks an HTTP announce or scrape request line; records its facts and
/// the requester's listen port.
fn http_request(packet: &PacketView<'_>, facts: &mut FactSink<'_>) -> Option<&'static str> {
    // The method first: searching a TLS record or any other binary
    // opening for a line end cost thousands of instructions a flow.
    let payload = packet.payload.strip_prefix(b"GET ")?;
    let line_end = payload.windows(2).position(|w| w == b"\r\n")?;
    let rest = payload.get(..line_end)?;
    let space = rest.iter().rposition(|b| *b == b' ')?;
    let (target, version) = rest.split_at(space);
    if !version.starts_with(b" HTTP/1.") {
        return None;
    }
    let q = target.iter().position(|b| *b == b'?')?;
    let (path, query) = (&target[..q], &target[q + 1..]);
    let mut info_hash = None;
    let mut peer = None;
    let mut port = None;
    for pair in query.split(|b| *b == b'&') {
        let (key, value) = match pair.iter().position(|b| *b == b'=') {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, &b""[..]),
        };
        match key {
            b"info_hash" => info_hash = percent_decode_20(value),
            b"peer_id" => peer = percent_decode_20(value),
            b"port" => {
                port = std::str::from_utf8(value)
                    .ok()
                    .and_then(|v| v.parse::<u16>().ok())
            }
            _ => {}
        }
    }
    let info_hash = info_hash?;
    facts.info_hash(info_hash);
    if let Some(id) = peer {
        if let Some(port) = port {
            facts.peer(
                Protocol::Bittorrent,
                packet.src.ip(),
                port,
                Transports::BOTH,
            );
        }
        facts.peer_id(&id);
        if let Some(client) = peer_id::client_name(&id) {
            facts.client(client.as_bytes());
        }
        return Some("bittorrent.tracker.announce");
    }
    path.ends_with(b"scrape")
        .then_some("bittorrent.tracker.scrape")
}

/// URL-decodes a value that must be exactly 20 bytes.
fn percent_decode_20(value: &[u8]) -> Option<[u8; 20]> {
    let mut out = [0u8; 20];
    let mut n = 0;
    let mut i = 0;
    while i < value.len() {
        let b = match value[i] {
            b'%' => {
                let hex = value.get(i + 1..i + 3)?;
                i += 3;
                u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?
            }
            b'+' => {
                i += 1;
                b' '
            }
            b => {
                i += 1;
                b
            }
        };
        *out.get_mut(n)? = b;
        n += 1;
    }
    (n == 20).then_some(out)
}

/// The body of an HTTP reply (possibly empty, when the headers end at the
/// packet's end), or `None` if this is not an HTTP reply.
fn http_reply_body(payload: &[u8]) -> Option<&[u8]> {
    if !payload.starts_with(b"HTTP/1.") {
        return None;
    }
    let end = payload.windows(4).position(|w| w == b"\r\n\r\n")?;
    payload.get(end + 4..)
}

/// Whether `body` starts a bencoded dictionary whose keys include a
/// tracker's. The body may continue in later packets, so the first key is
/// read with a checked parse of the key alone.
fn tracker_dict(body: &[u8]) -> bool {
    if body.first() != Some(&b'd') {
        return false;
    }
    if let Ok((value, _)) = bencode::parse(body) {
        return value
            .as_dict()
            .is_some_and(|d| d.entries().any(|(k, _)| REPLY_KEYS.contains(&k)));
    }
    // Cut by the packet end: check the first key only.
    match bencode::parse(&body[1..]) {
        Ok((bencode::Value::Bytes(key), _)) => REPLY_KEYS.contains(&key),
        _ => false,
    }
}

/// Records the peers of a whole bencoded reply (`peers`, `peers6`).
fn learn_reply_peers(body: &[u8], facts: &mut FactSink<'_>) {
    let Some(dict) = bencode::parse(body).ok().and_then(|(v, _)| v.as_dict()) else {
        return;
    };
    let mut found = dict
        .get(b"peers")
        .map(peers::tracker_peers)
        .unwrap_or_default();
    if let Some(six) = dict.get(b"peers6").and_then(|v| v.as_bytes()) {
        found.extend(peers::compact_v6(six));
    }
    for (ip, port) in found {
        facts.peer(Protocol::Bittorrent, ip, port, Transports::BOTH);
    }
}

/// Records the peers of a UDP announce reply: 6-byte entries over IPv4,
/// 18-byte ones over IPv6 (BEP 15).
fn learn_udp_peers(packet: &PacketView<'_>, facts: &mut FactSink<'_>) {
    let list = packet.payload.get(20..).unwrap_or_default();
    let found: Vec<_> = if packet.src.ip().is_ipv4() {
        peers::compact_v4(list).collect()
    } else {
        peers::compact_v6(list).collect()
    };
    for (ip, port) in found {
        facts.peer(Protocol::Bittorrent, ip, port, Transports::BOTH);
    }
}

fn be32(bytes: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(bytes.get(..4)?.try_into().ok()?))
}

/// Checks a UDP tracker request: its action, transaction id, evidence name
/// and strength.
fn udp_request(
    p: &[u8],
    facts: &mut FactSink<'_>,
) -> Option<(u32, [u8; 4], &'static str, Confidence)> {
    let action = be32(p.get(udp::ACTION)?)?;
    let txid: [u8; 4] = p.get(udp::TXID)?.try_into().ok()?;
    match action {
        // The 64-bit magic makes a connect request unmistakable.
        udp::CONNECT if p.len() == udp::CONNECT_LEN && p[..8] == udp::MAGIC => Some((
            action,
            txid,
            "bittorrent.tracker.udp_connect",
            Confidence::Unidirectional,
        )),
        udp::ANNOUNCE if p.len() >= udp::ANNOUNCE_LEN && be32(p.get(udp::EVENT)?)? <= 3 => {
            if let Some(h) = p
                .get(udp::INFO_HASH)
                .and_then(|h| <[u8; 20]>::try_from(h).ok())
            {
                facts.info_hash(h);
            }
            if let Some(id) = p.get(udp::PEER_ID) {
                facts.peer_id(id);
                if let Some(client) = peer_id::client_name(id) {
                    facts.client(client.as_bytes());
                }
            }
            Some((
                action,
                txid,
                "bittorrent.tracker.udp_announce",
                Confidence::Signature,
            ))
        }
        udp::SCRAPE
            if p.len() > 16
                && (p.len() - 16).is_multiple_of(20)
                && (p.len() - 16) / 20 <= udp::MAX_SCRAPE =>
        {
            Some((
                action,
                txid,
                "bittorrent.tracker.udp_scrape",
                Confidence::Signature,
            ))
        }
        _ => None,
    }
}

/// Whether `p` answers a request with this action and transaction id.
fn udp_reply(p: &[u8], action: u32, txid: [u8; 4]) -> bool {
    let (Some(got), Some(t)) = (
        p.get(udp::REPLY_ACTION).and_then(be32),
        p.get(udp::REPLY_TXID),
    ) else {
        return false;
    };
    if t != txid {
        return false;
    }
    match got {
        udp::CONNECT => action == udp::CONNECT && p.len() == 16,
        // interval, leechers, seeders, then 6-byte (IPv4) or 18-byte (IPv6) peers.
        udp::ANNOUNCE => {
            action == udp::ANNOUNCE
                && p.len() >= 20
                && ((p.len() - 20).is_multiple_of(6) || (p.len() - 20).is_multiple_of(18))
        }
        // seeders, completed, leechers per hash.
        udp::SCRAPE => action == udp::SCRAPE && p.len() > 8 && (p.len() - 8).is_multiple_of(12),
        // An error message in text.
        udp::ERROR => p.len() > 8,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::protocols::testing::{Harness, LOOK_ALIKES};
    use crate::flow::Direction::{Originator, Responder};

    const ANNOUNCE: &[u8] = b"GET /announce?info_hash=%aa7i%c4S%0d%de%06%24%18s%da%d4%3a%b5%cc%ec%2c%e6%22&peer_id=-TR2940-chho92c56pul&port=51413&uploaded=0&downloaded=0&left=282050560&compact=1&event=started HTTP/1.1\r\nHost: tracker.example\r\nUser-Agent: Transmission/2.94\r\n\r\n";

    #[test]
    fn an_http_announce_and_its_reply() {
        let mut h = Harness::tcp(Tracker);
        let reply = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 44\r\n\r\nd8:completei5e10:incompletei1e8:intervali1800e5:peers0:e";
        let got = h.evidence(&[(Originator, ANNOUNCE), (Responder, reply)]);
        assert_eq!(
            got,
            vec![
                Some("bittorrent.tracker.announce"),
                Some("bittorrent.tracker.reply")
            ]
        );
        let f = h.facts();
        assert_eq!(
            f.info_hash.map(|h| h[..3].to_vec()),
            Some(vec![0xaa, b'7', b'i'])
        );
        assert_eq!(f.peer_id[0].as_deref(), Some("-TR2940-chho92c56pul"));
    }

    #[test]
    fn a_reply_body_in_the_next_segment_and_a_scrape() {
        let mut h = Harness::tcp(Tracker);
        let scrape = b"GET /scrape?info_hash=aaaaaaaaaaaaaaaaaaaa HTTP/1.0\r\n\r\n";
        let got = h.evidence(&[
            (Originator, scrape),
            (Responder, b"HTTP/1.0 200 OK\r\n\r\n"),
            (
                Responder,
                b"d5:filesd20:aaaaaaaaaaaaaaaaaaaad8:completei1eeee",
            ),
        ]);
        assert_eq!(
            got,
            vec![
                Some("bittorrent.tracker.scrape"),
                None,
                Some("bittorrent.tracker.reply")
            ]
        );
    }

    #[test]
    fn announces_and_replies_feed_the_endpoint_cache() {
        let mut h = Harness::tcp(Tracker);
        let mut reply = b"HTTP/1.1 200 OK\r\n\r\nd8:intervali1800e5:peers12:".to_vec();
        reply.extend_from_slice(&[100, 64, 0, 1, 0x1a, 0xe1, 100, 64, 0, 2, 0xc8, 0xd5]);
        reply.extend_from_slice(b"e");
        h.evidence(&[(Originator, ANNOUNCE), (Responder, &reply)]);
        assert_eq!(
            h.learnt(),
            vec!["192.0.2.1:51413", "100.64.0.1:6881", "100.64.0.2:51413"]
        );
    }

    #[test]
    fn http_that_is_not_a_tracker_is_not_named() {
        let near: &[&[u8]] = &[
            b"GET /announce?info_hash=short&peer_id=-TR2940-chho92c56pul HTTP/1.1\r\n\r\n",
            b"GET /search?q=info_hash%3D HTTP/1.1\r\n\r\n",
            b"POST /announce?info_hash=aaaaaaaaaaaaaaaaaaaa&peer_id=bbbbbbbbbbbbbbbbbbbb HTTP/1.1\r\n\r\n",
            b"GET /index.php?info_hash=aaaaaaaaaaaaaaaaaaaa HTTP/1.1\r\n\r\n",
        ];
        for bytes in near.iter().chain(LOOK_ALIKES.iter().map(|(_, b)| b)) {
            let mut h = Harness::tcp(Tracker);
            assert_eq!(
                h.feed(Originator, bytes),
                Probe::NotMine,
                "{}",
                String::from_utf8_lossy(bytes)
            );
        }
        // A web server's reply to an announce-like request is not a tracker reply.
        let mut h = Harness::tcp(Tracker);
        let got = h.evidence(&[
            (Originator, ANNOUNCE),
            (Responder, b"HTTP/1.1 404 Not Found\r\n\r\n<html>"),
        ]);
        assert_eq!(got, vec![Some("bittorrent.tracker.announce"), None]);
    }

    fn udp_connect(txid: u32) -> Vec<u8> {
        let mut p = udp::MAGIC.to_vec();
        p.extend_from_slice(&0u32.to_be_bytes());
        p.extend_from_slice(&txid.to_be_bytes());
        p
    }

    #[test]
    fn a_udp_connect_announce_and_replies() {
        let mut h = Harness::udp(Tracker);
        let mut connect_reply = 0u32.to_be_bytes().to_vec();
        connect_reply.extend_from_slice(&7u32.to_be_bytes());
        connect_reply.extend_from_slice(&[0x11; 8]);
        let mut announce = vec![0x11; 8];
        announce.extend_from_slice(&1u32.to_be_bytes());
        announce.extend_from_slice(&8u32.to_be_bytes());
        announce.extend_from_slice(&[0xcc; 20]);
        announce.extend_from_slice(b"-LT1208-abcdefghijkl");
        announce.extend_from_slice(&[0; 24]);
        announce.extend_from_slice(&2u32.to_be_bytes());
        announce.extend_from_slice(&[0; 12]);
        announce.extend_from_slice(&6881u16.to_be_bytes());
        assert_eq!(announce.len(), 98);
        let mut announce_reply = 1u32.to_be_bytes().to_vec();
        announce_reply.extend_from_slice(&8u32.to_be_bytes());
        announce_reply.extend_from_slice(&[0; 12]);
        announce_reply.extend_from_slice(&[100, 64, 0, 1, 0x1a, 0xe1]);
        let got = h.evidence(&[
            (Originator, &udp_connect(7)),
            (Responder, &connect_reply),
            (Originator, &announce),
            (Responder, &announce_reply),
        ]);
        assert_eq!(
            got,
            vec![
                Some("bittorrent.tracker.udp_connect"),
                Some("bittorrent.tracker.udp_reply"),
                Some("bittorrent.tracker.udp_announce"),
                Some("bittorrent.tracker.udp_reply"),
            ]
        );
        assert_eq!(h.facts().info_hash, Some([0xcc; 20]));
        // A reply with another transaction id does not count.
        let mut h = Harness::udp(Tracker);
        let mut wrong = connect_reply.clone();
        wrong[7] = 8;
        assert_eq!(
            h.evidence(&[(Originator, &udp_connect(7)), (Responder, &wrong)])[1],
            None
        );
    }

    #[test]
    fn udp_look_alikes_are_not_named() {
        let mut bad_magic = udp_connect(1);
        bad_magic[3] = 0;
        let mut long = udp_connect(1);
        long.push(0);
        for bytes in [&bad_magic[..], &long[..]]
            .into_iter()
            .chain(LOOK_ALIKES.iter().map(|(_, b)| *b))
        {
            let mut h = Harness::udp(Tracker);
            assert_eq!(h.feed(Originator, bytes), Probe::NotMine, "{bytes:?}");
        }
    }
}
