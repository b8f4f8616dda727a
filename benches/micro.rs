//! Micro benchmarks of the detection core's parts, on packets and payloads
//! built in memory (decode and the whole pipeline over captures are in
//! `benches/pipeline.rs`). Every benchmark asserts the counts or outcomes it
//! measures, so a fast wrong answer fails instead of passing for a win.
//!
//! Groups:
//! - `flow_table`: [`FlowTable`] holding the pipeline's own per-flow state
//!   ([`FlowState`]).
//!   - `insert/100k`: 100,000 packets of distinct 5-tuples (half TCP, half
//!     UDP) tracked into an empty table; asserts 100,000 flows created and
//!     held, none ended.
//!   - `lookup/100k`: the answers to those packets (the other direction),
//!     in a scattered order, tracked into the full table; asserts each one
//!     found its flow from the responder side and nothing was created.
//! - `signature`: [`RuleSet::scan`] with the shipped rules
//!   (`rules/*.yaml`) over one payload each: BitTorrent handshakes and a
//!   DHT query that must match (the rule ids are checked), and a TLS
//!   ClientHello, a DNS query, an HTTP GET and 1,460 random bytes that must
//!   not.
//! - `detector`: [`Detector::inspect`] of every structural detector of the
//!   registry ([`DETECTOR_NAMES`]; the run fails if one is missing here),
//!   on a fresh per-flow state each iteration: `<name>/match` feeds the
//!   packets of an opening the detector recognises (most need one packet;
//!   uTP's handshake and MSE need the other side's answers) and checks
//!   every [`Probe`], evidence name and strength included; `<name>/no-match`
//!   feeds a look-alike (TLS ClientHello, DNS query, SSDP search, or a web
//!   GET and its answer) and checks the detector gives up (`NotMine`; the
//!   HTTP-transfer detectors wait for the answer first), or waits
//!   (`NeedMore`) where it never gives up on a UDP flow (uTP, Vuze DHT:
//!   their port also carries other BitTorrent protocols).
//!
//! Run:
//! - everything: `cargo bench --bench micro` (20 samples of 1 to 2 s per
//!   benchmark, about a minute and a half on two cores; no plots are drawn,
//!   see [`config`]);
//! - one group or benchmark, by name: `cargo bench --bench micro --
//!   flow_table`, `... -- detector/utp`;
//! - a quick pass through every assertion: `cargo bench --bench micro --
//!   --quick`.

use std::hint::black_box;
use std::net::IpAddr;
use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::{
    BatchSize, BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main,
};
use p2pguard::decode::{Packet, TcpFlags, Transport};
use p2pguard::detect::cache::Learnt;
use p2pguard::detect::protocols::{
    ares, bittorrent, dht, directconnect, edonkey, fasttrack, gnutella, lsd, mse, ppstream,
    soulseek, thunder, tracker, utp, vuze_dht, webseed,
};
use p2pguard::detect::rules::{RuleSet, builtin_sources};
use p2pguard::detect::{
    Confidence, DETECTOR_NAMES, Detector, Evidence, FactSink, Facts, FlowState, PacketView, Probe,
    Protocol,
};
use p2pguard::flow::{Direction, EndReason, Endpoint, Flow, FlowConfig, FlowTable};
use p2pguard::timestamp::Timestamp;

const O: Direction = Direction::Originator;
const R: Direction = Direction::Responder;

// --- flow table ---------------------------------------------------------

/// Distinct flows in the flow table benchmarks.
const FLOWS: usize = 100_000;

/// A stride coprime with [`FLOWS`]: `i * STRIDE % FLOWS` visits every flow
/// once, far from the order they were created in.
const STRIDE: usize = 7_919;

/// The first packet of flow `i`: a client of 10.0.0.0/8 to one of 256
/// servers, TCP for even `i`, UDP for odd. No two share a 5-tuple.
fn opening(i: usize) -> Packet<'static> {
    let n = i as u32;
    let client = IpAddr::from((10u32 << 24 | (n >> 4)).to_be_bytes());
    let server = IpAddr::from([198, 51, 100, (n % 256) as u8]);
    let tcp = i.is_multiple_of(2);
    Packet {
        src: client,
        dst: server,
        src_port: 20_000 + (n % 16) as u16,
        dst_port: 6881,
        transport: if tcp { Transport::Tcp } else { Transport::Udp },
        // TCP: ACK and PSH, a data segment of an established connection.
        tcp_flags: TcpFlags(if tcp { TcpFlags::ACK | 0x08 } else { 0 }),
        tcp_seq: if tcp { 1 } else { 0 },
        payload: &[],
        truncated: false,
    }
}

/// The same packet the other way.
fn answer(p: &Packet<'static>) -> Packet<'static> {
    Packet {
        src: p.dst,
        dst: p.src,
        src_port: p.dst_port,
        dst_port: p.src_port,
        ..p.clone()
    }
}

/// Tracks `packets` at time `ts`; returns (new flows, responder packets).
fn track_all(
    table: &mut FlowTable<FlowState>,
    packets: &[Packet<'static>],
    ts: Timestamp,
) -> (usize, usize) {
    let (mut new, mut responder) = (0, 0);
    let mut ended =
        |f: Flow<FlowState>, why: EndReason| panic!("flow {} ended ({})", f.id, why.as_str());
    for p in packets {
        let id = table.stats().created;
        let t = table.track(p, 60, ts, id, &mut ended);
        new += usize::from(t.is_new);
        responder += usize::from(t.direction == R);
    }
    (new, responder)
}

fn flow_table(c: &mut Criterion) {
    let config = FlowConfig::default();
    assert!(config.max_flows >= FLOWS, "the table must hold every flow");
    let openings: Vec<Packet<'static>> = (0..FLOWS).map(opening).collect();
    let answers: Vec<Packet<'static>> = (0..FLOWS)
        .map(|i| answer(&openings[i * STRIDE % FLOWS]))
        .collect();
    let ts = Timestamp::from_secs(1_700_000_000);

    let mut group = c.benchmark_group("flow_table");
    group.sample_size(20);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(2));
    group.throughput(Throughput::Elements(FLOWS as u64));

    group.bench_function("insert/100k", |b| {
        b.iter_batched(
            || FlowTable::<FlowState>::new(config.clone()),
            |mut table| {
                let (new, responder) = track_all(&mut table, &openings, ts);
                assert_eq!((new, responder), (FLOWS, 0));
                assert_eq!(table.len(), FLOWS);
                let stats = table.stats();
                assert_eq!(stats.created, FLOWS as u64);
                assert_eq!(stats.peak, FLOWS as u64);
                assert_eq!(stats.evicted + stats.timed_out + stats.reused, 0);
                // Dropped outside the measurement.
                table
            },
            BatchSize::PerIteration,
        )
    });

    let mut table = FlowTable::<FlowState>::new(config.clone());
    assert_eq!(track_all(&mut table, &openings, ts), (FLOWS, 0));
    group.bench_function("lookup/100k", |b| {
        b.iter(|| {
            let (new, responder) = track_all(&mut table, &answers, ts);
            assert_eq!((new, responder), (0, FLOWS));
            assert_eq!(table.len(), FLOWS);
            assert_eq!(table.stats().created, FLOWS as u64);
            responder
        })
    });
    group.finish();
    // Each pass of answers gave every flow one more responder packet: all
    // flows show the same counts, one packet from the originator.
    let mut counts = table.open_flows().map(|(_, r)| table.get(r).packets);
    let first = counts.next().expect("flows");
    assert_eq!(first[0], 1);
    assert!(
        counts.all(|c| c == first),
        "every flow saw the same packets"
    );
}

// --- signature scan -----------------------------------------------------

/// A 68-byte peer-wire handshake (BEP 3): length byte and protocol string,
/// reserved bytes (extension protocol and DHT bits), info-hash, peer id.
fn bt_handshake() -> Vec<u8> {
    let mut h = b"\x13BitTorrent protocol".to_vec();
    h.extend_from_slice(&[0, 0, 0, 0, 0, 0x10, 0, 0x05]);
    h.extend_from_slice(&[0xaa; 20]);
    h.extend_from_slice(b"-TR2940-k8hj0wgej6ch");
    h
}

/// A peer-wire message: length, id, payload.
fn bt_message(id: u8, payload: &[u8]) -> Vec<u8> {
    let mut m = ((payload.len() + 1) as u32).to_be_bytes().to_vec();
    m.push(id);
    m.extend_from_slice(payload);
    m
}

/// A handshake with the extension handshake (BEP 10) in the same segment.
fn bt_handshake_extended() -> Vec<u8> {
    let mut h = bt_handshake();
    h.extend(bt_message(
        20,
        b"\x00d1:md11:ut_metadatai2e6:ut_pexi1ee1:pi51413e1:v17:Transmission 2.94e",
    ));
    h
}

/// A mainline DHT `get_peers` query (BEP 5).
const DHT_QUERY: &[u8] = b"d1:ad2:id20:abcdefghij01234567899:info_hash20:mnopqrstuvwxyz123456e1:q9:get_peers1:t2:aa1:v4:LT\x01\x021:y1:qe";

/// A TLS 1.2 ClientHello record with an SNI extension.
const TLS_CLIENT_HELLO: &[u8] = b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\x5e\x0c\x2f\x11\x9a\x43\xbb\x7c\x60\x01\xd2\x41\x8e\x33\x7a\xf2\x09\x6c\x45\x2b\x31\x0e\x77\x12\x8a\x65\xc3\x10\x2d\xfe\x00\x00\x20\xcc\xa8\xcc\xa9\xc0\x2f\xc0\x30\xc0\x2b\xc0\x2c\xc0\x13\xc0\x09\xc0\x14\xc0\x0a\x00\x9c\x00\x9d\x00\x2f\x00\x35\xc0\x12\x00\x0a\x01\x00\x00\x58\x00\x00\x00\x18\x00\x16\x00\x00\x13www.example-tls.net";

/// A DNS query for example.com, type A.
const DNS_QUERY: &[u8] =
    b"\x5c\x21\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07example\x03com\x00\x00\x01\x00\x01";

/// A browser-style HTTP GET.
const HTTP_GET: &[u8] = b"GET /index.html HTTP/1.1\r\nHost: www.example.com\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n";

/// A web server's answer to [`HTTP_GET`].
const HTTP_RESPONSE: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 5\r\n\r\nhello";

/// An SSDP discovery request (HTTP over UDP multicast, as LSD is).
const SSDP_SEARCH: &[u8] = b"M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nMAN: \"ssdp:discover\"\r\nMX: 1\r\nST: ssdp:all\r\n\r\n";

/// Deterministic pseudo-random bytes (xorshift32).
fn noise(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 11) as u8
        })
        .collect()
}

fn endpoints(direction: Direction) -> (Endpoint, Endpoint) {
    let a = Endpoint::new(IpAddr::from([192, 0, 2, 1]), 40_000);
    let b = Endpoint::new(IpAddr::from([198, 51, 100, 2]), 50_000);
    match direction {
        Direction::Originator => (a, b),
        Direction::Responder => (b, a),
    }
}

/// A view of a side's `index`-th payload packet.
fn view(transport: Transport, direction: Direction, index: u16, payload: &[u8]) -> PacketView<'_> {
    let (src, dst) = endpoints(direction);
    PacketView {
        payload,
        direction,
        index,
        transport,
        src,
        dst,
        ts: Timestamp::from_secs(1_700_000_000),
        truncated: false,
    }
}

fn signature(c: &mut Criterion) {
    let rules = RuleSet::load_with(builtin_sources(), &[]).expect("the shipped rules load");
    let rule_index = |id: &str| {
        rules
            .rules()
            .iter()
            .position(|r| r.id == id)
            .unwrap_or_else(|| panic!("no rule {id}"))
    };
    let cases: Vec<(&str, Transport, Vec<u8>, Vec<&str>)> = vec![
        (
            "bt-handshake",
            Transport::Tcp,
            bt_handshake(),
            vec!["bittorrent.handshake-prefix"],
        ),
        (
            "bt-handshake-extended",
            Transport::Tcp,
            bt_handshake_extended(),
            vec![
                "bittorrent.handshake-prefix",
                "bittorrent.ut-metadata-key",
                "bittorrent.ut-pex-key",
            ],
        ),
        (
            "dht-query",
            Transport::Udp,
            DHT_QUERY.to_vec(),
            vec!["bittorrent.dht-query-prefix"],
        ),
        (
            "tls-client-hello",
            Transport::Tcp,
            TLS_CLIENT_HELLO.to_vec(),
            vec![],
        ),
        ("dns-query", Transport::Udp, DNS_QUERY.to_vec(), vec![]),
        ("http-get", Transport::Tcp, HTTP_GET.to_vec(), vec![]),
        ("random-1460", Transport::Tcp, noise(1460, 7), vec![]),
    ];

    let mut group = c.benchmark_group("signature");
    group.sample_size(20);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(1));
    for (name, transport, payload, want) in &cases {
        let want: Vec<usize> = want.iter().map(|id| rule_index(id)).collect();
        let packet = view(*transport, O, 1, payload);
        group.throughput(Throughput::Bytes(payload.len() as u64));
        group.bench_function(*name, |b| {
            b.iter(|| {
                let mut matched = 0;
                rules.scan(black_box(&packet), |i, _| {
                    assert!(want.contains(&i), "{name}: rule {i} matched");
                    matched += 1;
                });
                assert_eq!(matched, want.len(), "{name}");
                matched
            })
        });
    }
    group.finish();
}

// --- structural detectors -----------------------------------------------

/// The packets of one detector benchmark and the probe expected for each.
struct Script {
    transport: Transport,
    packets: Vec<(Direction, Vec<u8>, Probe)>,
}

impl Script {
    fn new(transport: Transport) -> Self {
        Script {
            transport,
            packets: Vec::new(),
        }
    }

    fn then(mut self, direction: Direction, payload: impl Into<Vec<u8>>, want: Probe) -> Self {
        self.packets.push((direction, payload.into(), want));
        self
    }

    fn bytes(&self) -> u64 {
        self.packets.iter().map(|p| p.1.len() as u64).sum()
    }
}

/// A browser's GET and the web server's answer, for the detectors of
/// HTTP-based transfers: the request alone could open a transfer (the
/// detector waits), the answer shows it does not.
fn web_exchange() -> Script {
    Script::new(Transport::Tcp)
        .then(O, HTTP_GET, Probe::NeedMore)
        .then(R, HTTP_RESPONSE, Probe::NotMine)
}

fn found(protocol: Protocol, name: &'static str, strength: Confidence) -> Probe {
    Probe::Match(Evidence {
        protocol,
        name,
        strength,
    })
}

fn bt(name: &'static str, strength: Confidence) -> Probe {
    found(Protocol::Bittorrent, name, strength)
}

const UNI: Confidence = Confidence::Unidirectional;
const BI: Confidence = Confidence::Bidirectional;
const SIG: Confidence = Confidence::Signature;

/// Feeds the script's packets to `detector` on a fresh state, numbering
/// each side's payload packets as the engine does, and checks each probe.
fn play<D: Detector>(detector: &D, script: &Script, learnt: &mut Vec<Learnt>) -> usize {
    let mut state = D::State::default();
    let mut facts: Option<Box<Facts>> = None;
    let mut index = [0u16; 2];
    learnt.clear();
    let mut matches = 0;
    for (step, (direction, payload, want)) in script.packets.iter().enumerate() {
        let side = direction.index();
        index[side] += 1;
        let packet = view(script.transport, *direction, index[side], payload);
        let mut sink = FactSink::with_learnt(&mut facts, *direction, learnt);
        let probe = detector.inspect(&mut state, black_box(&packet), &mut sink);
        assert_eq!(probe, *want, "{}: packet {}", D::NAME, step + 1);
        matches += usize::from(matches!(probe, Probe::Match(_)));
    }
    black_box(facts);
    matches
}

/// Benchmarks `<name>/match` and `<name>/no-match` of one detector.
fn bench_detector<D: Detector + Default>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    covered: &mut Vec<&'static str>,
    matching: Script,
    other: Script,
) {
    let detector = D::default();
    let interest = detector.interest();
    for script in [&matching, &other] {
        assert!(
            interest.transport.is_none_or(|t| t == script.transport),
            "{}: wrong transport",
            D::NAME
        );
        // The engine shows a detector at most its budget of packets from
        // each side, and none after it said "not mine".
        for side in [O, R] {
            let sent = script.packets.iter().filter(|p| p.0 == side).count();
            assert!(
                sent <= usize::from(interest.max_payload_packets),
                "{}: more packets than the detector looks at",
                D::NAME
            );
        }
        let last = script.packets.len().saturating_sub(1);
        assert!(
            script.packets[..last].iter().all(|p| p.2 != Probe::NotMine),
            "{}: packets after NotMine",
            D::NAME
        );
    }
    let want_matches = |s: &Script| {
        s.packets
            .iter()
            .filter(|p| matches!(p.2, Probe::Match(_)))
            .count()
    };
    let (m, n) = (want_matches(&matching), want_matches(&other));
    assert!(m > 0, "{}: the matching script must match", D::NAME);
    assert_eq!(n, 0, "{}: the other script must not match", D::NAME);
    let mut learnt = Vec::new();
    for (label, script, want) in [("match", &matching, m), ("no-match", &other, 0)] {
        group.throughput(Throughput::Bytes(script.bytes()));
        group.bench_function(format!("{}/{label}", D::NAME), |b| {
            b.iter(|| {
                let got = play(&detector, script, &mut learnt);
                assert_eq!(got, want);
                got
            })
        });
    }
    covered.push(D::NAME);
}

/// uTP packet types (BEP 29).
const ST_STATE: u8 = 2;
const ST_SYN: u8 = 4;

/// A uTP version 1 header (BEP 29) with an optional extension.
fn utp_packet(
    kind: u8,
    extension: Option<(u8, &[u8])>,
    connection_id: u16,
    ts_diff: u32,
    seq: u16,
    ack: u16,
) -> Vec<u8> {
    let mut p = vec![kind << 4 | 1, extension.map_or(0, |e| e.0)];
    p.extend_from_slice(&connection_id.to_be_bytes());
    p.extend_from_slice(&0x2a31_0c57u32.to_be_bytes()); // timestamp, microseconds
    p.extend_from_slice(&ts_diff.to_be_bytes());
    p.extend_from_slice(&0x0010_0000u32.to_be_bytes()); // window
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&ack.to_be_bytes());
    if let Some((_, data)) = extension {
        p.push(0); // no further extension
        p.push(data.len() as u8);
        p.extend_from_slice(data);
    }
    p
}

/// An HTTP tracker announce (BEP 3).
const ANNOUNCE: &[u8] = b"GET /announce?info_hash=%aa7i%c4S%0d%de%06%24%18s%da%d4%3a%b5%cc%ec%2c%e6%22&peer_id=-TR2940-chho92c56pul&port=51413&uploaded=0&downloaded=0&left=282050560&compact=1&event=started HTTP/1.1\r\nHost: tracker.example\r\nUser-Agent: Transmission/2.94\r\n\r\n";

/// A local service discovery announcement (BEP 14).
const LSD: &[u8] = b"BT-SEARCH * HTTP/1.1\r\nHost: 239.192.152.143:6771\r\nPort: 6881\r\nInfohash: 0123456789abcdef0123456789abcdef01234567\r\ncookie: 5f2a\r\n\r\n\r\n";

/// A Gnutella 0.6 connection request.
const GNUTELLA_CONNECT: &[u8] = b"GNUTELLA CONNECT/0.6\r\nUser-Agent: LimeWire/5.5.16\r\nX-Ultrapeer: False\r\nX-Query-Routing: 0.2\r\nAccept-Encoding: deflate\r\n\r\n";

/// An eDonkey `OP_HELLO` (marker 0xE3, opcode 0x01): user hash, client id
/// and port, a tag list (name, version, eMule version, a short string),
/// then the server's address.
fn edonkey_hello() -> Vec<u8> {
    // An old-style string tag: type, name length 1, name id, value.
    let string_tag = |id: u8, s: &[u8]| {
        let mut t = vec![0x02, 1, 0, id];
        t.extend_from_slice(&(s.len() as u16).to_le_bytes());
        t.extend_from_slice(s);
        t
    };
    let mut body = vec![16]; // user hash size
    body.extend((0..16u8).map(|i| 0x31u8.wrapping_add(i * 7))); // user hash
    body.extend_from_slice(&[10, 0, 0, 7, 0x36, 0x12]); // client id, port 4662
    body.extend_from_slice(&4u32.to_le_bytes()); // tag count
    body.extend(string_tag(0x01, b"alice")); // CT_NAME, old style
    body.extend_from_slice(&[0x03, 1, 0, 0x11]); // uint32 CT_VERSION, old style
    body.extend_from_slice(&60u32.to_le_bytes());
    body.extend_from_slice(&[0x83, 0xfb]); // uint32 eMule version, new style
    body.extend_from_slice(&0x0005_0000u32.to_le_bytes());
    body.extend_from_slice(&[0x95, 0x55]); // 5-byte string (TAGTYPE_STR5)
    body.extend_from_slice(b"mod 1");
    body.extend_from_slice(&[198, 51, 100, 9, 0x11, 0x10]); // server, port 4113
    let mut m = vec![0xe3];
    m.extend_from_slice(&(body.len() as u32 + 1).to_le_bytes());
    m.push(0x01);
    m.extend(body);
    m
}

/// An NMDC hub's greeting: `$Lock` with the EXTENDEDPROTOCOL prefix.
const NMDC_LOCK: &[u8] = b"$Lock EXTENDEDPROTOCOL_verlihub Pk=version0.9.8e|$HubName Example hub|<Hub-Security> Welcome|";

/// A Soulseek server login (code 1): user, password, version, hash, minor.
fn soulseek_login() -> Vec<u8> {
    let string = |s: &[u8]| {
        let mut v = (s.len() as u32).to_le_bytes().to_vec();
        v.extend_from_slice(s);
        v
    };
    let mut rest = 1u32.to_le_bytes().to_vec();
    rest.extend(string(b"alice"));
    rest.extend(string(b"password"));
    rest.extend_from_slice(&160u32.to_le_bytes());
    rest.extend(string(b"d51c9a7e9353746a6020f9602d452929"));
    rest.extend_from_slice(&1u32.to_le_bytes());
    let mut m = (rest.len() as u32).to_le_bytes().to_vec();
    m.extend(rest);
    m
}

/// An Ares Galaxy transfer request by SHA-1.
const ARES_GET: &[u8] = b"GET sha1:qUqP5cyxm6YcTAhz05Hph5gvu9M= HTTP/1.1\r\nHost: 192.0.2.1:4810\r\nRange: bytes=0-1048575\r\nX-My-Nick: alice\r\nX-B6MI: h8jP5STyCN7vvT6y\r\nX-MyLIP: C0A80002\r\nConnection: Keep-Alive\r\n\r\n";

/// A FastTrack (KaZaA) transfer request by hash.
const KAZAA_GET: &[u8] = b"GET /.hash=1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e HTTP/1.1\r\nHost: 192.0.2.1:1214\r\nUserAgent: KazaaClient Jul 12 2002 15:49:49\r\nX-Kazaa-Username: alice\r\nX-Kazaa-Network: KaZaA\r\nX-Kazaa-IP: 192.0.2.1:1214\r\nX-Kazaa-SupernodeIP: 198.51.100.9:1214\r\nConnection: close\r\nRange: bytes=0-\r\n\r\n";

/// A Vuze DHT ping request (action 1024) of protocol version 51.
fn vuze_ping(tid: u32, connection_id: u64) -> Vec<u8> {
    let mut p = connection_id.to_be_bytes().to_vec();
    p.extend_from_slice(&1024u32.to_be_bytes());
    p.extend_from_slice(&tid.to_be_bytes());
    p.push(51); // version
    p.push(0); // vendor
    p.extend_from_slice(&0u32.to_be_bytes()); // network
    p.push(51); // highest version
    p.extend_from_slice(&[4, 198, 51, 100, 7, 0x2c, 0x09]); // address
    p.extend_from_slice(&0x1122_3344u32.to_be_bytes()); // instance
    p.extend_from_slice(&1_704_067_200_000u64.to_be_bytes()); // clock, ms
    p.push(0); // flags
    p
}

/// Its reply (action 1025), repeating the transaction and connection ids.
fn vuze_pong(tid: u32, connection_id: u64) -> Vec<u8> {
    let mut p = 1025u32.to_be_bytes().to_vec();
    p.extend_from_slice(&tid.to_be_bytes());
    p.extend_from_slice(&connection_id.to_be_bytes());
    p.push(51); // version
    p.push(0); // vendor
    p.extend_from_slice(&0u32.to_be_bytes()); // network
    p.extend_from_slice(&0x5566_7788u32.to_be_bytes()); // instance
    p.push(0); // flags
    p
}

/// A web seed range request of a BitTorrent client (BEP 19).
const WEBSEED_GET: &[u8] = b"GET /pub/debian-12.iso HTTP/1.1\r\nHost: mirror.example.org\r\nUser-Agent: libtorrent/2.0.9.0\r\nRange: bytes=262144-524287\r\nConnection: keep-alive\r\n\r\n";

/// A Thunder message of version 0x36: version, sequence, body length, body.
fn thunder_message() -> Vec<u8> {
    let body = [0x5au8; 48];
    let mut p = 0x36u32.to_le_bytes().to_vec();
    p.extend_from_slice(&7u32.to_le_bytes());
    p.extend_from_slice(&(body.len() as u32).to_le_bytes());
    p.extend_from_slice(&body);
    p
}

/// A PPStream class 0x43 packet: length of the datagram, class and
/// sub-type, the fixed bytes at offsets 5 to 14, padding.
fn ppstream_header() -> Vec<u8> {
    let mut p = 60u16.to_le_bytes().to_vec();
    p.extend_from_slice(&[0x43, 0x32, 0x01]);
    p.extend_from_slice(&[0xff, 0, 0x01, 0, 0, 0, 0, 0, 0, 0]);
    p.resize(60, 0x6b);
    p
}

fn detectors(c: &mut Criterion) {
    use Transport::{Tcp, Udp};
    let mut group = c.benchmark_group("detector");
    group.sample_size(20);
    group.warm_up_time(Duration::from_millis(300));
    group.measurement_time(Duration::from_secs(1));
    let g = &mut group;
    let mut covered = Vec::new();
    let cov = &mut covered;
    let not_mine = Probe::NotMine;
    let need_more = Probe::NeedMore;

    bench_detector::<bittorrent::PeerWire>(
        g,
        cov,
        Script::new(Tcp).then(O, bt_handshake(), bt("bittorrent.handshake", UNI)),
        Script::new(Tcp).then(O, TLS_CLIENT_HELLO, not_mine),
    );
    bench_detector::<dht::Dht>(
        g,
        cov,
        Script::new(Udp).then(O, DHT_QUERY, bt("bittorrent.dht.query", UNI)),
        Script::new(Udp).then(O, DNS_QUERY, not_mine),
    );
    // A SYN (connection id, sequence number) and the answer that carries
    // the same id and acknowledges it, with the extension bits.
    let syn = utp_packet(ST_SYN, None, 0x5302, 0, 0xe7f5, 0);
    let syn_ack = utp_packet(
        ST_STATE,
        Some((2, &[0; 8])),
        0x5302,
        0x0001_2f40,
        0x49c7,
        0xe7f5,
    );
    bench_detector::<utp::Utp>(
        g,
        cov,
        Script::new(Udp).then(O, syn, need_more).then(
            R,
            syn_ack,
            bt("bittorrent.utp.handshake", BI),
        ),
        // BitTorrent shares the uTP socket with the DHT: it keeps looking.
        Script::new(Udp).then(O, DNS_QUERY, need_more),
    );
    bench_detector::<tracker::Tracker>(
        g,
        cov,
        Script::new(Tcp).then(O, ANNOUNCE, bt("bittorrent.tracker.announce", UNI)),
        Script::new(Tcp).then(O, HTTP_GET, not_mine),
    );
    bench_detector::<lsd::LocalDiscovery>(
        g,
        cov,
        Script::new(Udp).then(O, LSD, bt("bittorrent.lsd", UNI)),
        Script::new(Udp).then(O, SSDP_SEARCH, not_mine),
    );
    bench_detector::<gnutella::Gnutella>(
        g,
        cov,
        Script::new(Tcp).then(
            O,
            GNUTELLA_CONNECT,
            found(Protocol::Gnutella, "gnutella.handshake", UNI),
        ),
        web_exchange(),
    );
    bench_detector::<edonkey::Edonkey>(
        g,
        cov,
        Script::new(Tcp).then(
            O,
            edonkey_hello(),
            found(Protocol::Edonkey, "edonkey.hello", UNI),
        ),
        Script::new(Tcp).then(O, TLS_CLIENT_HELLO, not_mine),
    );
    bench_detector::<directconnect::DirectConnect>(
        g,
        cov,
        Script::new(Tcp).then(
            R,
            NMDC_LOCK,
            found(Protocol::Directconnect, "directconnect.nmdc_lock", UNI),
        ),
        Script::new(Tcp).then(O, TLS_CLIENT_HELLO, not_mine),
    );
    bench_detector::<soulseek::Soulseek>(
        g,
        cov,
        Script::new(Tcp).then(
            O,
            soulseek_login(),
            found(Protocol::Soulseek, "soulseek.login", UNI),
        ),
        Script::new(Tcp).then(O, TLS_CLIENT_HELLO, not_mine),
    );
    bench_detector::<ares::Ares>(
        g,
        cov,
        Script::new(Tcp).then(O, ARES_GET, found(Protocol::Ares, "ares.http_request", UNI)),
        web_exchange(),
    );
    bench_detector::<fasttrack::Fasttrack>(
        g,
        cov,
        Script::new(Tcp).then(
            O,
            KAZAA_GET,
            found(Protocol::Fasttrack, "fasttrack.http_request", UNI),
        ),
        web_exchange(),
    );
    // MSE/PE: four messages of random-looking bytes whose sizes fit the
    // handshake (key and padding, then the answers).
    bench_detector::<mse::Mse>(
        g,
        cov,
        Script::new(Tcp)
            .then(O, noise(96, 1), need_more)
            .then(R, noise(96, 2), need_more)
            .then(O, noise(56, 3), need_more)
            .then(R, noise(14, 4), bt("bittorrent.mse", Confidence::Heuristic)),
        Script::new(Tcp).then(O, TLS_CLIENT_HELLO, not_mine),
    );
    let connection_id = 0x9f12_3456_789a_bcde;
    bench_detector::<vuze_dht::VuzeDht>(
        g,
        cov,
        Script::new(Udp)
            .then(
                O,
                vuze_ping(0x0102_0304, connection_id),
                bt("bittorrent.vuze_dht.request", UNI),
            )
            .then(
                R,
                vuze_pong(0x0102_0304, connection_id),
                bt("bittorrent.vuze_dht.reply", BI),
            ),
        // A Vuze port also carries uTP and tracker traffic: it keeps looking.
        Script::new(Udp).then(O, DNS_QUERY, need_more),
    );
    bench_detector::<webseed::WebSeed>(
        g,
        cov,
        Script::new(Tcp).then(O, WEBSEED_GET, bt("bittorrent.webseed.request", SIG)),
        Script::new(Tcp).then(O, HTTP_GET, not_mine),
    );
    bench_detector::<thunder::Thunder>(
        g,
        cov,
        Script::new(Udp).then(
            O,
            thunder_message(),
            found(Protocol::Thunder, "thunder.message", UNI),
        ),
        Script::new(Udp).then(O, DNS_QUERY, not_mine),
    );
    bench_detector::<ppstream::Ppstream>(
        g,
        cov,
        Script::new(Udp).then(
            O,
            ppstream_header(),
            found(Protocol::Ppstream, "ppstream.header", UNI),
        ),
        Script::new(Udp).then(O, DNS_QUERY, not_mine),
    );
    group.finish();

    let mut registry = DETECTOR_NAMES.to_vec();
    registry.sort_unstable();
    covered.sort_unstable();
    assert_eq!(
        covered, registry,
        "every registered detector is benchmarked"
    );
}

/// Criterion's plots would take longer to draw than the measurements take
/// on a small machine; the figures are in the terminal and in
/// `target/criterion/*/new/estimates.json`.
fn config() -> Criterion {
    Criterion::default().without_plots()
}

criterion_group! {
    name = micro;
    config = config();
    targets = flow_table, signature, detectors
}
criterion_main!(micro);
