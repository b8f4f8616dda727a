//! The BitTorrent DHT (BEP 5): KRPC messages, one bencoded dictionary per
//! UDP datagram.
//!
//! A datagram counts only if the whole of it is one well-formed bencoded
//! dictionary with a transaction id `t` and a type `y`, and the keys that
//! type requires: a query (`y=q`) names its method `q` and carries its
//! arguments `a` with the sender's 20-byte node `id`; a response (`y=r`)
//! carries `r` with the responder's node `id`; an error (`y=e`) carries
//! `e`, a list of a code and a message. A substring such as `d1:ad2:id20:`
//! is not enough. A response or error whose transaction id answers a query
//! of the other side proves the exchange.

use super::peers;
use crate::decode::Transport;
use crate::detect::bencode::{self, Items, Value};
use crate::detect::cache::Transports;
use crate::detect::{
    Confidence, Detector, Evidence, FactSink, Interest, PacketView, Probe, Protocol,
};

/// Transaction ids are short (2 to 4 bytes in the common clients); the
/// first bytes of the latest query's id are kept per side.
const KEPT_TID: usize = 4;

/// Longest transaction id accepted.
const MAX_TID: usize = 32;

/// The DHT detector.
#[derive(Debug, Default)]
pub struct Dht;

/// Per-flow state: per side, the latest query's transaction id.
#[derive(Clone, Copy, Debug, Default)]
pub struct State {
    tid: [[u8; KEPT_TID]; 2],
    tid_len: [u8; 2],
}

/// A KRPC message's type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Query,
    Response,
    Error,
}

impl Detector for Dht {
    type State = State;
    const NAME: &'static str = "dht";
    const EVIDENCE: &'static [&'static str] = &[
        "bittorrent.dht.query",
        "bittorrent.dht.response",
        "bittorrent.dht.error",
    ];

    fn interest(&self) -> Interest {
        Interest {
            transport: Some(Transport::Udp),
            max_payload_packets: 4,
        }
    }

    fn inspect(
        &self,
        state: &mut State,
        packet: &PacketView<'_>,
        facts: &mut FactSink<'_>,
    ) -> Probe {
        let Some((kind, tid, dict)) = krpc(packet.payload) else {
            return Probe::NotMine;
        };
        let side = packet.direction.index();
        let other = 1 - side;
        let kept = tid.len().min(KEPT_TID);
        let strength = match kind {
            Kind::Query => {
                state.tid[side][..kept].copy_from_slice(&tid[..kept]);
                state.tid_len[side] = tid.len() as u8;
                Confidence::Unidirectional
            }
            Kind::Response | Kind::Error => {
                let asked = usize::from(state.tid_len[other]);
                let answers =
                    asked == tid.len() && state.tid[other][..asked.min(KEPT_TID)] == tid[..kept];
                if answers {
                    Confidence::Bidirectional
                } else {
                    Confidence::Unidirectional
                }
            }
        };
        record_facts(kind, dict, facts);
        learn_endpoints(kind, dict, packet, facts);
        let name = match kind {
            Kind::Query => "bittorrent.dht.query",
            Kind::Response => "bittorrent.dht.response",
            Kind::Error => "bittorrent.dht.error",
        };
        Probe::Match(Evidence {
            protocol: Protocol::Bittorrent,
            name,
            strength,
        })
    }
}

/// Parses a KRPC message: its type, transaction id and top dictionary.
fn krpc(payload: &[u8]) -> Option<(Kind, &[u8], Items<'_>)> {
    if payload.first() != Some(&b'd') {
        return None;
    }
    let dict = bencode::parse_exact(payload).ok()?.as_dict()?;
    let tid = dict
        .get(b"t")?
        .as_bytes()
        .filter(|t| !t.is_empty() && t.len() <= MAX_TID)?;
    let kind = match dict.get(b"y")?.as_bytes()? {
        b"q" => {
            let method = dict.get(b"q")?.as_bytes()?;
            if method.is_empty() || !method.iter().all(|b| b.is_ascii_graphic()) {
                return None;
            }
            node_id(dict.get(b"a")?)?;
            Kind::Query
        }
        b"r" => {
            node_id(dict.get(b"r")?)?;
            Kind::Response
        }
        b"e" => {
            let e = dict.get(b"e")?.as_list()?;
            let mut items = e.iter();
            items.next()?.as_int()?;
            items.next()?.as_bytes()?;
            Kind::Error
        }
        _ => return None,
    };
    Some((kind, tid, dict))
}

/// The 20-byte node id of an arguments or response dictionary.
fn node_id(v: Value<'_>) -> Option<&[u8]> {
    v.as_dict()?
        .get(b"id")?
        .as_bytes()
        .filter(|id| id.len() == 20)
}

/// Node id, client version (`v`, BEP 20: two letters and two version
/// bytes) and, for `get_peers` / `announce_peer`, the info-hash.
fn record_facts(kind: Kind, dict: Items<'_>, facts: &mut FactSink<'_>) {
    let body = match kind {
        Kind::Query => dict.get(b"a"),
        Kind::Response => dict.get(b"r"),
        Kind::Error => None,
    };
    if let Some(body) = body.and_then(|b| b.as_dict()) {
        if let Some(id) = body.get(b"id").and_then(|v| v.as_bytes()) {
            facts.peer_id(hex(id).as_bytes());
        }
        if let Some(hash) = body.get(b"info_hash").and_then(|v| v.as_bytes())
            && let Ok(h) = <[u8; 20]>::try_from(hash)
        {
            facts.info_hash(h);
        }
    }
    if let Some(v) = dict.get(b"v").and_then(|v| v.as_bytes())
        && v.len() == 4
        && v[..2].iter().all(u8::is_ascii_alphabetic)
    {
        let name = format!("{}{} {:02x}{:02x}", v[0] as char, v[1] as char, v[2], v[3]);
        facts.client(name.as_bytes());
    }
}

/// Endpoints a KRPC message announces: the peers of a `get_peers` reply
/// (`values`, which listen on TCP and uTP), the DHT nodes of `nodes` (26
/// bytes each: id and compact IPv4) and `nodes6` (38 bytes), the sender
/// itself (its DHT port), and the port an `announce_peer` announces.
fn learn_endpoints(kind: Kind, dict: Items<'_>, packet: &PacketView<'_>, facts: &mut FactSink<'_>) {
    let p = Protocol::Bittorrent;
    let sender = packet.src;
    facts.peer(p, sender.ip(), sender.port(), Transports::UDP);
    let body = match kind {
        Kind::Query => dict.get(b"a"),
        Kind::Response => dict.get(b"r"),
        Kind::Error => None,
    };
    let Some(body) = body.and_then(|b| b.as_dict()) else {
        return;
    };
    if let Some(values) = body.get(b"values").and_then(|v| v.as_list()) {
        for v in values.iter().filter_map(|v| v.as_bytes()) {
            let peer = match v.len() {
                6 => peers::compact_v4(v).next(),
                18 => peers::compact_v6(v).next(),
                _ => None,
            };
            if let Some((ip, port)) = peer {
                facts.peer(p, ip, port, Transports::BOTH);
            }
        }
    }
    if let Some(nodes) = body.get(b"nodes").and_then(|v| v.as_bytes()) {
        for node in nodes.chunks_exact(26) {
            for (ip, port) in peers::compact_v4(&node[20..]) {
                facts.peer(p, ip, port, Transports::UDP);
            }
        }
    }
    if let Some(nodes) = body.get(b"nodes6").and_then(|v| v.as_bytes()) {
        for node in nodes.chunks_exact(38) {
            for (ip, port) in peers::compact_v6(&node[20..]) {
                facts.peer(p, ip, port, Transports::UDP);
            }
        }
    }
    if kind == Kind::Query && dict.get(b"q").and_then(|q| q.as_bytes()) == Some(b"announce_peer") {
        let implied = body.get(b"implied_port").and_then(|v| v.as_int()) == Some(1);
        let port = if implied {
            Some(sender.port())
        } else {
            body.get(b"port")
                .and_then(|v| v.as_int())
                .and_then(|p| u16::try_from(p).ok())
        };
        if let Some(port) = port {
            facts.peer(p, sender.ip(), port, Transports::BOTH);
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::protocols::testing::{Harness, LOOK_ALIKES};
    use crate::flow::Direction::{Originator, Responder};

    const ID: &str = "abcdefghij0123456789";

    fn query(tid: &str) -> Vec<u8> {
        format!("d1:ad2:id20:{ID}9:info_hash20:mnopqrstuvwxyz123456e1:q9:get_peers1:t{}:{tid}1:v4:LT\x01\x021:y1:qe", tid.len()).into_bytes()
    }

    fn response(tid: &str) -> Vec<u8> {
        format!(
            "d1:rd2:id20:{ID}5:token8:abcdefghe1:t{}:{tid}1:y1:re",
            tid.len()
        )
        .into_bytes()
    }

    #[test]
    fn a_query_and_its_answer_are_bidirectional() {
        let mut h = Harness::udp(Dht);
        let got = h.probes(&[(Originator, &query("aa")), (Responder, &response("aa"))]);
        assert_eq!(
            got[0],
            Probe::Match(Evidence {
                protocol: Protocol::Bittorrent,
                name: "bittorrent.dht.query",
                strength: Confidence::Unidirectional
            })
        );
        assert!(matches!(got[1], Probe::Match(e) if e.strength == Confidence::Bidirectional));
        let f = h.facts();
        assert_eq!(f.info_hash, Some(*b"mnopqrstuvwxyz123456"));
        assert_eq!(f.client[0].as_deref(), Some("LT 0102"));
        assert_eq!(f.peer_id[1].as_deref(), Some(hex(ID.as_bytes()).as_str()));
    }

    #[test]
    fn an_answer_to_another_query_is_one_sided() {
        let mut h = Harness::udp(Dht);
        let got = h.probes(&[(Originator, &query("aa")), (Responder, &response("ab"))]);
        assert!(matches!(got[1], Probe::Match(e) if e.strength == Confidence::Unidirectional));
        let mut h = Harness::udp(Dht);
        let got = h.probes(&[(Originator, &response("aa"))]);
        assert!(matches!(got[0], Probe::Match(e) if e.name == "bittorrent.dht.response"));
    }

    #[test]
    fn accepts_errors_and_extra_keys() {
        let err = b"d1:eli201e23:A Generic Error Ocurrede1:t2:aa1:y1:ee";
        let mut h = Harness::udp(Dht);
        assert!(
            matches!(h.feed(Originator, err), Probe::Match(e) if e.name == "bittorrent.dht.error")
        );
        // Some clients echo the method in responses.
        let r = format!("d1:q9:find_node1:rd2:id20:{ID}e1:t4:abcd1:y1:re");
        let mut h = Harness::udp(Dht);
        assert!(matches!(h.feed(Originator, r.as_bytes()), Probe::Match(_)));
    }

    #[test]
    fn replies_feed_the_endpoint_cache() {
        let mut r = format!("d1:rd2:id20:{ID}5:nodes26:abcdefghij0123456789").into_bytes();
        r.extend_from_slice(&[10, 0, 0, 9, 0x1a, 0xe2]);
        r.extend_from_slice(b"6:valuesl6:");
        r.extend_from_slice(&[10, 0, 0, 7, 0x1a, 0xe1]);
        r.extend_from_slice(b"ee1:t2:aa1:y1:re");
        let mut h = Harness::udp(Dht);
        assert!(matches!(h.feed(Responder, &r), Probe::Match(_)));
        assert_eq!(
            h.learnt(),
            vec!["198.51.100.2:50000", "10.0.0.7:6881", "10.0.0.9:6882"]
        );
    }

    #[test]
    fn rejects_near_misses_and_look_alikes() {
        let near: &[&[u8]] = &[
            // The prefix alone, then garbage.
            b"d1:ad2:id20:abcdefghij0123456789e1:q4:ping",
            // Short node id.
            b"d1:ad2:id19:abcdefghij012345678e1:q4:ping1:t2:aa1:y1:qe",
            // No transaction id.
            b"d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:y1:qe",
            // Unknown type.
            b"d1:t2:aa1:y1:xe",
            // Trailing bytes after the dictionary.
            b"d1:rd2:id20:abcdefghij0123456789e1:t2:aa1:y1:rexx",
            // A bencoded dictionary that is not KRPC (a torrent file).
            b"d8:announce20:http://tracker/annou4:infod4:name1:xee",
        ];
        for bytes in near.iter().chain(LOOK_ALIKES.iter().map(|(_, b)| b)) {
            let mut h = Harness::udp(Dht);
            assert_eq!(
                h.feed(Originator, bytes),
                Probe::NotMine,
                "{}",
                String::from_utf8_lossy(bytes)
            );
        }
    }
}
