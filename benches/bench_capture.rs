//! Builds the macro benchmark's input (`make bench` runs it): a large mixed
//! capture, generated and never committed.
//!
//! ```text
//! cargo run --release --example bench-capture -- target/bench/mix.pcap
//! cargo run --release --example bench-capture -- --bytes 200000000 --min-flows 200000 small.pcap
//! cargo run --release --example bench-capture -- --mix long-flows long.pcap
//! ```
//!
//! What it holds, by design (the run prints the measured mix):
//! - **P2P** (about 20% of the packets, `--p2p-share`): the project's own
//!   real-client recordings (`captures/bt-*.pcap`: cleartext and MSE
//!   BitTorrent over TCP and uTP, DHT, HTTP and UDP trackers, LSD) replayed
//!   many times, each replay with its own addresses (a quarter of them moved
//!   to IPv6), its own unprivileged ports and its own start time. Addresses
//!   inside payloads (tracker and DHT peer lists) keep their recorded values.
//! - **Other traffic**, replayed (`captures/background.pcap`: DNS, HTTP,
//!   TLS, SSH, iperf3, WireGuard) and generated: web TCP sessions (TLS on
//!   443, HTTP on 80) with heavy-tailed sizes, DNS, QUIC, NTP, RTP media
//!   streams, SYN scans and one-packet UDP probes.
//! - Thousands of hosts, IPv4 and IPv6, TCP and UDP, from minimum-size
//!   frames to full 1514-byte segments, spread over `--seconds` of packet
//!   time, in time order.
//!
//! Deterministic: the same arguments give the same file.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use clap::{Parser, ValueEnum};
use etherparse::{NetSlice, PacketBuilder, SlicedPacket, TcpHeader, TransportSlice};
use pcap::{Capture, Linktype, Packet, PacketHeader};

#[derive(Parser)]
#[command(about = "Generate the macro benchmark's mixed capture")]
struct Args {
    /// The pcap file to write.
    out: PathBuf,
    /// Stop once the capture holds at least this many bytes of frames...
    #[arg(long, default_value_t = 1_100_000_000)]
    bytes: u64,
    /// ...and at least this many flows [default: 1000000 with the
    /// flow-heavy mix, 100000 with long-flows].
    #[arg(long)]
    min_flows: Option<u64>,
    /// Share of packets that are P2P.
    #[arg(long, default_value_t = 0.2)]
    p2p_share: f64,
    /// Packet time the capture spans.
    #[arg(long, default_value_t = 120)]
    seconds: u64,
    /// Random seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Which kinds of flow, in what shares, fill the rest of the capture.
    #[arg(long, value_enum, default_value_t = Mix::FlowHeavy)]
    mix: Mix,
    /// Where the project's own captures are.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/captures"))]
    captures: PathBuf,
}

/// The shares of generated flows by kind (the P2P share is `--p2p-share`,
/// in packets, and comes first).
#[derive(Clone, Copy, Debug, ValueEnum)]
enum Mix {
    /// Mostly one- and two-packet flows (DNS, SYN scans, UDP probes: 85% of
    /// the flows), so that 1,000,000 flows fit in about 1.7 GB: the flow
    /// table and per-flow work dominate (about 3.6 packets a flow).
    FlowHeavy,
    /// More web, QUIC and media flows, fewer scans and probes (about 15
    /// packets a flow, 700 B a packet). A million such flows would take
    /// about 10 GB, held in memory while written, so its default is
    /// 100,000 flows: with the default `--bytes`, 1.1 GB and 107,000 flows.
    LongFlows,
}

impl Mix {
    /// The mix's name on the command line.
    fn name(self) -> &'static str {
        match self {
            Mix::FlowHeavy => "flow-heavy",
            Mix::LongFlows => "long-flows",
        }
    }

    /// Flows at least, unless `--min-flows` says otherwise.
    fn default_min_flows(self) -> u64 {
        match self {
            Mix::FlowHeavy => 1_000_000,
            Mix::LongFlows => 100_000,
        }
    }

    /// Upper bounds of each kind's share of flows, cumulative, in the order
    /// dns, scan, web, ntp, probe, quic, rtp; the rest replays the
    /// background recording.
    fn bounds(self) -> [f64; 7] {
        match self {
            Mix::FlowHeavy => [0.45, 0.70, 0.77, 0.84, 0.9945, 0.9997, 0.99985],
            Mix::LongFlows => [0.35, 0.45, 0.80, 0.83, 0.90, 0.995, 0.9985],
        }
    }
}

const NS: u64 = 1_000_000_000;
const MS: u64 = 1_000_000;
const US: u64 = 1_000;

/// One packet of a recorded capture, taken apart for rewriting.
struct TemplatePacket {
    ts: u64,
    src: IpAddr,
    dst: IpAddr,
    l4: L4,
    payload: Vec<u8>,
}

#[derive(Clone)]
enum L4 {
    Tcp(TcpHeader),
    Udp(u16, u16),
}

impl L4 {
    fn ports(&self) -> (u16, u16) {
        match self {
            L4::Tcp(h) => (h.source_port, h.destination_port),
            L4::Udp(s, d) => (*s, *d),
        }
    }
}

/// A recorded capture to replay.
struct Template {
    packets: Vec<TemplatePacket>,
    flows: u64,
    duration: u64,
    /// Multicast traffic (LSD) stays on IPv4.
    multicast: bool,
}

fn load_template(path: &std::path::Path) -> Template {
    let mut cap = Capture::from_file(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(cap.get_datalink(), Linktype::ETHERNET, "{}", path.display());
    let mut packets = Vec::new();
    let mut first = None;
    while let Ok(p) = cap.next_packet() {
        let ts = p.header.ts.tv_sec as u64 * NS + p.header.ts.tv_usec as u64 * US;
        let first = *first.get_or_insert(ts);
        let Ok(s) = SlicedPacket::from_ethernet(p.data) else {
            continue;
        };
        let (src, dst) = match &s.net {
            Some(NetSlice::Ipv4(v4)) => (
                IpAddr::V4(v4.header().source_addr()),
                IpAddr::V4(v4.header().destination_addr()),
            ),
            Some(NetSlice::Ipv6(v6)) => (
                IpAddr::V6(v6.header().source_addr()),
                IpAddr::V6(v6.header().destination_addr()),
            ),
            _ => continue,
        };
        let (l4, payload) = match &s.transport {
            Some(TransportSlice::Tcp(t)) => (L4::Tcp(t.to_header()), t.payload().to_vec()),
            Some(TransportSlice::Udp(u)) => (
                L4::Udp(u.source_port(), u.destination_port()),
                u.payload().to_vec(),
            ),
            _ => continue,
        };
        packets.push(TemplatePacket {
            ts: ts - first,
            src,
            dst,
            l4,
            payload,
        });
    }
    let mut flows = std::collections::HashSet::new();
    for p in &packets {
        let (sp, dp) = p.l4.ports();
        let a = (p.src, sp);
        let b = (p.dst, dp);
        flows.insert((matches!(p.l4, L4::Tcp(_)), a.min(b), a.max(b)));
    }
    Template {
        multicast: packets.iter().any(|p| p.dst.is_multicast()),
        duration: packets.last().map_or(0, |p| p.ts),
        flows: flows.len() as u64,
        packets,
    }
}

/// The packets written so far, in one arena, sorted by time at the end.
#[derive(Default)]
struct Out {
    data: Vec<u8>,
    index: Vec<(u64, u64, u32)>,
    bytes: u64,
    flows: u64,
    p2p_packets: u64,
    p2p_bytes: u64,
    p2p_flows: u64,
    v6_packets: u64,
    udp_packets: u64,
    kinds: HashMap<&'static str, (u64, u64)>,
    scratch: Vec<u8>,
}

impl Out {
    /// Writes one Ethernet frame.
    fn packet(
        &mut self,
        ts: u64,
        kind: &'static str,
        src: IpAddr,
        dst: IpAddr,
        l4: &L4,
        payload: &[u8],
    ) {
        self.scratch.clear();
        let eth = PacketBuilder::ethernet2(mac(src), mac(dst));
        let ip = match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => eth.ipv4(s.octets(), d.octets(), 64),
            (IpAddr::V6(s), IpAddr::V6(d)) => eth.ipv6(s.octets(), d.octets(), 64),
            _ => unreachable!("one family per flow"),
        };
        let written = match l4 {
            L4::Tcp(h) => ip.tcp_header(h.clone()).write(&mut self.scratch, payload),
            L4::Udp(s, d) => ip.udp(*s, *d).write(&mut self.scratch, payload),
        };
        written.expect("frame");
        let off = self.data.len() as u64;
        self.data.extend_from_slice(&self.scratch);
        let len = self.scratch.len() as u32;
        self.index.push((ts, off, len));
        self.bytes += u64::from(len);
        if src.is_ipv6() {
            self.v6_packets += 1;
        }
        if matches!(l4, L4::Udp(..)) {
            self.udp_packets += 1;
        }
        let k = self.kinds.entry(kind).or_default();
        k.0 += 1;
        k.1 += u64::from(len);
        if kind == "p2p replay" {
            self.p2p_packets += 1;
            self.p2p_bytes += u64::from(len);
        }
    }

    fn packets(&self) -> u64 {
        self.index.len() as u64
    }
}

fn mac(ip: IpAddr) -> [u8; 6] {
    let h = match ip {
        IpAddr::V4(a) => u64::from(u32::from(a)),
        IpAddr::V6(a) => {
            let v = u128::from(a);
            (v as u64) ^ ((v >> 64) as u64)
        }
    };
    let b = h.wrapping_mul(0x9E37_79B9_7F4A_7C15).to_be_bytes();
    [0x02, b[1], b[2], b[3], b[4], b[5]]
}

/// Address pools: clients inside, servers and peers outside.
struct Hosts {
    clients4: Vec<Ipv4Addr>,
    clients6: Vec<Ipv6Addr>,
    servers4: Vec<Ipv4Addr>,
    servers6: Vec<Ipv6Addr>,
}

fn public_v4(rng: &mut fastrand::Rng) -> Ipv4Addr {
    loop {
        let a = Ipv4Addr::from(rng.u32(..));
        let o = a.octets()[0];
        if (1..224).contains(&o) && ![10, 100, 127, 169, 172, 192].contains(&o) {
            return a;
        }
    }
}

fn v6_in(rng: &mut fastrand::Rng, prefix: u128) -> Ipv6Addr {
    Ipv6Addr::from(prefix | u128::from(rng.u64(1..)))
}

impl Hosts {
    fn new(rng: &mut fastrand::Rng) -> Hosts {
        Hosts {
            clients4: (0..8000)
                .map(|_| Ipv4Addr::from(0x0A00_0000 | rng.u32(1..0x00FF_FFFF)))
                .collect(),
            clients6: (0..2000)
                .map(|_| v6_in(rng, 0x2001_0db8_00a0_0000 << 64))
                .collect(),
            servers4: (0..20000).map(|_| public_v4(rng)).collect(),
            servers6: (0..5000)
                .map(|_| v6_in(rng, 0x2001_0db8_ff00_0000 << 64))
                .collect(),
        }
    }

    /// A client and a server of one family (a fifth of them IPv6).
    fn pair(&self, rng: &mut fastrand::Rng) -> (IpAddr, IpAddr) {
        if rng.f64() < 0.2 {
            (
                IpAddr::V6(self.clients6[rng.usize(..self.clients6.len())]),
                IpAddr::V6(self.servers6[rng.usize(..self.servers6.len())]),
            )
        } else {
            (
                IpAddr::V4(self.clients4[rng.usize(..self.clients4.len())]),
                IpAddr::V4(self.servers4[rng.usize(..self.servers4.len())]),
            )
        }
    }
}

fn ephemeral(rng: &mut fastrand::Rng) -> u16 {
    rng.u16(32768..61000)
}

/// A heavy-tailed count (Pareto, shape 1.2), at least `min`, at most `max`.
fn pareto(rng: &mut fastrand::Rng, min: f64, max: f64) -> usize {
    let u = rng.f64().max(1e-9);
    (min / u.powf(1.0 / 1.2)).min(max) as usize
}

fn random_bytes(rng: &mut fastrand::Rng, n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    rng.fill(&mut v);
    v
}

/// A TCP segment's header.
fn tcp(sport: u16, dport: u16, seq: u32, ack: Option<u32>, flags: &str) -> L4 {
    let mut h = TcpHeader::new(sport, dport, seq, 64240);
    if let Some(a) = ack {
        h.ack = true;
        h.acknowledgment_number = a;
    }
    h.syn = flags.contains('S');
    h.fin = flags.contains('F');
    h.rst = flags.contains('R');
    h.psh = flags.contains('P');
    L4::Tcp(h)
}

/// A TCP session: handshake, a request, a heavy-tailed response with
/// delayed ACKs, and (mostly) a FIN exchange.
#[allow(clippy::too_many_arguments)]
fn tcp_session(
    out: &mut Out,
    rng: &mut fastrand::Rng,
    kind: &'static str,
    t0: u64,
    c: IpAddr,
    s: IpAddr,
    dport: u16,
    request: &[u8],
    first_reply: &[u8],
    segments: usize,
) {
    let sport = ephemeral(rng);
    let rtt = rng.u64(2 * MS..80 * MS);
    let (mut cs, mut ss) = (rng.u32(..), rng.u32(..));
    let mut t = t0;
    out.packet(t, kind, c, s, &tcp(sport, dport, cs, None, "S"), &[]);
    t += rtt / 2;
    out.packet(
        t,
        kind,
        s,
        c,
        &tcp(dport, sport, ss, Some(cs + 1), "S"),
        &[],
    );
    cs += 1;
    ss += 1;
    t += rtt / 2;
    out.packet(t, kind, c, s, &tcp(sport, dport, cs, Some(ss), ""), &[]);
    out.packet(
        t + 20 * US,
        kind,
        c,
        s,
        &tcp(sport, dport, cs, Some(ss), "P"),
        request,
    );
    cs = cs.wrapping_add(request.len() as u32);
    t += rtt;
    let mut sent = 0usize;
    let total = first_reply.len() + segments * 1448;
    let mut body = Vec::new();
    let mut n = 0;
    while sent < total {
        let len = (total - sent).min(1448);
        let payload: &[u8] = if sent == 0 && !first_reply.is_empty() {
            &first_reply[..first_reply.len().min(1448)]
        } else {
            body.resize(len, 0);
            rng.fill(&mut body);
            &body
        };
        let len = payload.len();
        out.packet(
            t,
            kind,
            s,
            c,
            &tcp(dport, sport, ss, Some(cs), "P"),
            payload,
        );
        ss = ss.wrapping_add(len as u32);
        sent += len;
        n += 1;
        t += rng.u64(50 * US..400 * US);
        if n % 2 == 0 || sent >= total {
            out.packet(
                t + rtt / 2,
                kind,
                c,
                s,
                &tcp(sport, dport, cs, Some(ss), ""),
                &[],
            );
        }
    }
    if rng.f64() < 0.85 {
        t += rtt;
        out.packet(t, kind, c, s, &tcp(sport, dport, cs, Some(ss), "F"), &[]);
        t += rtt / 2;
        out.packet(
            t,
            kind,
            s,
            c,
            &tcp(dport, sport, ss, Some(cs + 1), "F"),
            &[],
        );
        t += rtt / 2;
        out.packet(
            t,
            kind,
            c,
            s,
            &tcp(sport, dport, cs + 1, Some(ss + 1), ""),
            &[],
        );
    }
}

fn web(out: &mut Out, rng: &mut fastrand::Rng, hosts: &Hosts, t0: u64) {
    let (c, s) = hosts.pair(rng);
    let segments = pareto(rng, 1.0, 3000.0);
    if rng.f64() < 0.8 {
        // TLS: a ClientHello-shaped record, a ServerHello-shaped reply.
        let mut hello = {
            let n = rng.usize(200..600);
            random_bytes(rng, n)
        };
        let n = hello.len() - 5;
        hello[..6].copy_from_slice(&[0x16, 0x03, 0x01, (n >> 8) as u8, n as u8, 0x01]);
        let mut reply = random_bytes(rng, 1448);
        reply[..6].copy_from_slice(&[0x16, 0x03, 0x03, 0x00, 0x7a, 0x02]);
        tcp_session(out, rng, "web tls", t0, c, s, 443, &hello, &reply, segments);
    } else {
        let req = format!(
            "GET /static/{}.js HTTP/1.1\r\nHost: www{}.example.com\r\nUser-Agent: Mozilla/5.0\r\nAccept: */*\r\n\r\n",
            rng.u32(..),
            rng.u16(..)
        );
        let reply = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/javascript\r\nContent-Length: {}\r\n\r\n",
            segments * 1448
        );
        tcp_session(
            out,
            rng,
            "web http",
            t0,
            c,
            s,
            80,
            req.as_bytes(),
            reply.as_bytes(),
            segments,
        );
    }
}

fn dns(out: &mut Out, rng: &mut fastrand::Rng, hosts: &Hosts, t0: u64) {
    let (c, s) = hosts.pair(rng);
    let sport = ephemeral(rng);
    let id = rng.u16(..);
    let mut q = vec![
        (id >> 8) as u8,
        id as u8,
        0x01,
        0x00,
        0,
        1,
        0,
        0,
        0,
        0,
        0,
        0,
    ];
    for label in [rng.usize(3..12), rng.usize(4..10), 3] {
        q.push(label as u8);
        q.extend((0..label).map(|_| rng.alphanumeric().to_ascii_lowercase() as u8));
    }
    q.extend_from_slice(&[0, 0, if rng.bool() { 1 } else { 28 }, 0, 1]);
    out.packet(t0, "dns", c, s, &L4::Udp(sport, 53), &q);
    if rng.f64() < 0.95 {
        let mut r = q.clone();
        r[2] = 0x81;
        r[3] = 0x80;
        let answers = rng.u8(1..5);
        r[7] = answers;
        for _ in 0..answers {
            r.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0x0e, 0x10, 0, 4]);
            r.extend(random_bytes(rng, 4));
        }
        out.packet(
            t0 + rng.u64(MS..60 * MS),
            "dns",
            s,
            c,
            &L4::Udp(53, sport),
            &r,
        );
    }
}

fn quic(out: &mut Out, rng: &mut fastrand::Rng, hosts: &Hosts, t0: u64) {
    let (c, s) = hosts.pair(rng);
    let sport = ephemeral(rng);
    let rtt = rng.u64(5 * MS..60 * MS);
    let long = |rng: &mut fastrand::Rng, first: u8| {
        let mut p = {
            let n = 1200 + rng.usize(..52);
            random_bytes(rng, n)
        };
        p[..6].copy_from_slice(&[first, 0, 0, 0, 1, 8]);
        p
    };
    let mut t = t0;
    let initial = long(rng, 0xc3);
    out.packet(t, "quic", c, s, &L4::Udp(sport, 443), &initial);
    t += rtt;
    for _ in 0..2 {
        let p = long(rng, 0xc1);
        out.packet(t, "quic", s, c, &L4::Udp(443, sport), &p);
        t += 100 * US;
    }
    let n = pareto(rng, 4.0, 2000.0);
    for i in 0..n {
        let down = i % 5 != 4;
        let len = if down {
            1200 + rng.usize(..52)
        } else {
            rng.usize(30..60)
        };
        let mut p = random_bytes(rng, len);
        p[0] = 0x40 | (p[0] & 0x3f);
        let (a, b, pa, pb) = if down {
            (s, c, 443, sport)
        } else {
            (c, s, sport, 443)
        };
        out.packet(t, "quic", a, b, &L4::Udp(pa, pb), &p);
        t += rng.u64(100 * US..2 * MS);
    }
}

fn ntp(out: &mut Out, rng: &mut fastrand::Rng, hosts: &Hosts, t0: u64) {
    let (c, s) = hosts.pair(rng);
    let sport = ephemeral(rng);
    let mut q = random_bytes(rng, 48);
    q[0] = 0x23;
    out.packet(t0, "ntp", c, s, &L4::Udp(sport, 123), &q);
    let mut r = random_bytes(rng, 48);
    r[0] = 0x24;
    out.packet(
        t0 + rng.u64(5 * MS..50 * MS),
        "ntp",
        s,
        c,
        &L4::Udp(123, sport),
        &r,
    );
}

fn rtp(out: &mut Out, rng: &mut fastrand::Rng, hosts: &Hosts, t0: u64) {
    let (c, s) = hosts.pair(rng);
    let (pc, ps) = (rng.u16(16384..32768) & !1, rng.u16(16384..32768) & !1);
    let n = rng.usize(100..800);
    let (ssrc_c, ssrc_s) = (rng.u32(..), rng.u32(..));
    let mut t = t0;
    for i in 0..n {
        for (a, b, pa, pb, ssrc) in [(c, s, pc, ps, ssrc_c), (s, c, ps, pc, ssrc_s)] {
            let mut p = {
                let n = rng.usize(160..1100);
                random_bytes(rng, n)
            };
            p[0] = 0x80;
            p[1] = 96 | if i % 30 == 0 { 0x80 } else { 0 };
            p[2..4].copy_from_slice(&(i as u16).to_be_bytes());
            p[4..8].copy_from_slice(&((i as u32) * 3000).to_be_bytes());
            p[8..12].copy_from_slice(&ssrc.to_be_bytes());
            out.packet(t, "rtp", a, b, &L4::Udp(pa, pb), &p);
        }
        t += 20 * MS;
    }
}

fn scan(out: &mut Out, rng: &mut fastrand::Rng, hosts: &Hosts, scanners: &[IpAddr], t0: u64) {
    let (_, target) = hosts.pair(rng);
    let scanner = if target.is_ipv4() {
        scanners[0]
    } else {
        scanners[1]
    };
    let (sport, dport) = (ephemeral(rng), rng.u16(1..65535));
    out.packet(
        t0,
        "syn scan",
        scanner,
        target,
        &tcp(sport, dport, rng.u32(..), None, "S"),
        &[],
    );
    if rng.f64() < 0.3 {
        let t = t0 + rng.u64(MS..100 * MS);
        out.packet(
            t,
            "syn scan",
            target,
            scanner,
            &tcp(dport, sport, 0, Some(1), "R"),
            &[],
        );
    }
}

fn probe(out: &mut Out, rng: &mut fastrand::Rng, hosts: &Hosts, t0: u64) {
    let (c, s) = hosts.pair(rng);
    let p = {
        let n = rng.usize(20..200);
        random_bytes(rng, n)
    };
    out.packet(
        t0,
        "udp probe",
        c,
        s,
        &L4::Udp(ephemeral(rng), rng.u16(1024..65535)),
        &p,
    );
}

/// Replays a recorded capture with new addresses, ports and start time.
fn replay(out: &mut Out, rng: &mut fastrand::Rng, t: &Template, kind: &'static str, t0: u64) {
    let v6 = !t.multicast && rng.f64() < 0.25;
    let mut addrs: HashMap<IpAddr, IpAddr> = HashMap::new();
    let mut ports: HashMap<u16, u16> = HashMap::new();
    let mut map_addr = |a: IpAddr, rng: &mut fastrand::Rng| {
        if a.is_multicast() {
            return a;
        }
        *addrs
            .entry(a)
            .or_insert_with(|| match (v6 || a.is_ipv6(), t.multicast) {
                (true, false) => IpAddr::V6(v6_in(rng, 0x2001_0db8_00b0_0000 << 64)),
                _ => IpAddr::V4(public_v4(rng)),
            })
    };
    for p in &t.packets {
        let (src, dst) = (map_addr(p.src, rng), map_addr(p.dst, rng));
        let mut map_port = |port: u16| {
            if port < 1024 || p.dst.is_multicast() {
                port
            } else {
                *ports.entry(port).or_insert_with(|| rng.u16(1024..65535))
            }
        };
        let l4 = match &p.l4 {
            L4::Tcp(h) => {
                let mut h = h.clone();
                h.source_port = map_port(h.source_port);
                h.destination_port = map_port(h.destination_port);
                L4::Tcp(h)
            }
            L4::Udp(s, d) => L4::Udp(map_port(*s), map_port(*d)),
        };
        out.packet(t0 + p.ts, kind, src, dst, &l4, &p.payload);
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let mut rng = fastrand::Rng::with_seed(args.seed);
    let mut p2p = Vec::new();
    let mut background = Vec::new();
    let mut names: Vec<_> = std::fs::read_dir(&args.captures)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "pcap"))
        .collect();
    names.sort();
    for path in names {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("bt-") {
            p2p.push(load_template(&path));
        } else if name == "background.pcap" {
            background.push(load_template(&path));
        }
    }
    assert!(
        !p2p.is_empty(),
        "no captures/bt-*.pcap in {}",
        args.captures.display()
    );
    let span = args.seconds * NS;
    let hosts = Hosts::new(&mut rng);
    let scanners = [
        IpAddr::V4(public_v4(&mut rng)),
        IpAddr::V6(v6_in(&mut rng, 0x2001_0db8_5ca0_0000 << 64)),
    ];
    let mut out = Out::default();
    out.data
        .reserve(args.bytes as usize + (args.bytes as usize >> 2));
    let mut replays = 0u64;
    let bounds = args.mix.bounds();
    let min_flows = args.min_flows.unwrap_or(args.mix.default_min_flows());
    while out.bytes < args.bytes || out.flows < min_flows {
        let start =
            |rng: &mut fastrand::Rng, length: u64| rng.u64(..span.saturating_sub(length).max(1));
        if (out.p2p_packets as f64) < args.p2p_share * out.packets() as f64 {
            let t = &p2p[rng.usize(..p2p.len())];
            let t0 = start(&mut rng, t.duration);
            replay(&mut out, &mut rng, t, "p2p replay", t0);
            out.flows += t.flows;
            out.p2p_flows += t.flows;
            replays += 1;
            continue;
        }
        let t0 = start(&mut rng, 30 * NS);
        let roll = rng.f64();
        let [dns_, scan_, web_, ntp_, probe_, quic_, rtp_] = bounds;
        match roll {
            r if r < dns_ => dns(&mut out, &mut rng, &hosts, t0),
            r if r < scan_ => scan(&mut out, &mut rng, &hosts, &scanners, t0),
            r if r < web_ => web(&mut out, &mut rng, &hosts, t0),
            r if r < ntp_ => ntp(&mut out, &mut rng, &hosts, t0),
            r if r < probe_ => probe(&mut out, &mut rng, &hosts, t0),
            r if r < quic_ => quic(&mut out, &mut rng, &hosts, t0),
            r if r < rtp_ || background.is_empty() => rtp(&mut out, &mut rng, &hosts, t0),
            _ => {
                let t = &background[0];
                let t0 = start(&mut rng, t.duration);
                replay(&mut out, &mut rng, t, "background replay", t0);
                out.flows += t.flows - 1;
            }
        }
        out.flows += 1;
    }
    out.index.sort_unstable_by_key(|&(ts, off, _)| (ts, off));
    if let Some(dir) = args.out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let dead = Capture::dead(Linktype::ETHERNET)?;
    let mut file = dead.savefile(&args.out)?;
    for &(ts, off, len) in &out.index {
        let header = PacketHeader {
            ts: libc::timeval {
                tv_sec: (1_700_000_000 + ts / NS) as libc::time_t,
                tv_usec: ((ts % NS) / US) as libc::suseconds_t,
            },
            caplen: len,
            len,
        };
        let data = &out.data[off as usize..(off + u64::from(len)) as usize];
        file.write(&Packet::new(&header, data));
    }
    file.flush()?;
    let packets = out.packets();
    println!(
        "{}: {} packets, {} bytes of frames ({:.0} B mean), {} flows, over {} s, mix {}",
        args.out.display(),
        packets,
        out.bytes,
        out.bytes as f64 / packets as f64,
        out.flows,
        args.seconds,
        args.mix.name()
    );
    println!(
        "P2P: {} packets ({:.1}%), {} bytes ({:.1}%), {} flows from {} replays of {} recordings",
        out.p2p_packets,
        100.0 * out.p2p_packets as f64 / packets as f64,
        out.p2p_bytes,
        100.0 * out.p2p_bytes as f64 / out.bytes as f64,
        out.p2p_flows,
        replays,
        p2p.len()
    );
    println!(
        "IPv6 {:.1}% of packets, UDP {:.1}%",
        100.0 * out.v6_packets as f64 / packets as f64,
        100.0 * out.udp_packets as f64 / packets as f64
    );
    let mut kinds: Vec<_> = out.kinds.iter().collect();
    kinds.sort();
    for (kind, (n, b)) in kinds {
        println!("  {kind:<18} {n:>10} packets {b:>14} bytes");
    }
    println!(
        "arguments: --bytes {} --min-flows {} --p2p-share {} --seconds {} --seed {} --mix {}",
        args.bytes,
        min_flows,
        args.p2p_share,
        args.seconds,
        args.seed,
        args.mix.name()
    );
    Ok(())
}
