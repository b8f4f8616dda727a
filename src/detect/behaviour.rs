//! Host behaviour: what a host does across flows, over a sliding window of
//! packet time, as weak evidence for flows that no structure names (an
//! encrypted connection, a connection attempt that failed, a flow caught
//! mid-way).
//!
//! Signals:
//! - `behaviour.p2p_host`: the host already ran a P2P protocol, confirmed
//!   by a structural match, within the window;
//! - `behaviour.tcp_and_udp`: the flow's listening endpoint `{ip, port}`
//!   takes both TCP and UDP (a BitTorrent client listens for TCP and uTP
//!   on one port, a Gnutella servent for TCP and UDP) outside the
//!   well-known dual-transport services (DNS, SIP, STUN/TURN, QUIC and
//!   HTTPS, iperf3, ...: every service port of the endpoint cache);
//! - `behaviour.peer_ratio`: the endpoint is contacted by about as many
//!   distinct peer addresses as distinct peer ports (Karagiannis, Broido,
//!   Faloutsos, claffy: "Transport layer identification of P2P traffic",
//!   IMC 2004: a P2P peer is reached by many hosts, each from one port,
//!   while a server's clients open many connections each);
//! - `behaviour.failed_fanout`: the host tries many distinct peers on
//!   unprivileged ports and a large share of the attempts fail (P2P
//!   clients connect to peer lists full of gone or firewalled peers).
//!
//! A flow is named from behaviour only when one of its hosts is a
//! confirmed P2P host (which gives the protocol) **and** at least one of
//! the other signals holds for the flow, and neither port is a service
//! port. The confidence is then `heuristic`, the weakest: behaviour alone
//! never blocks anything a policy guards with a higher minimum.
//!
//! Since only flows of a confirmed host can be named, statistics are kept
//! only for them: the listening endpoints of flows that involve a confirmed
//! host, and the fan-out of confirmed hosts. Every other flow, most of a
//! busy link's, leaves no state and mostly costs a few bit tests: a filter
//! of the hosts ever confirmed answers most questions before the map of
//! hosts is looked up.

use std::net::IpAddr;

use super::Protocol;
use super::bounded::BoundedMap;
use super::cache::is_service_port;
use crate::decode::Transport;
use crate::flow::Endpoint;
use crate::timestamp::{Duration, Timestamp};

/// Whether host behaviour notes a flow's start or end, by the state when
/// it is asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Notes {
    /// A host of the flow is confirmed: it is noted.
    Now,
    /// No host of it is confirmed yet: noted only if one gets confirmed
    /// before it applies (either host for a start, the originator for an
    /// end).
    IfConfirmed,
    /// Never noted (an end that does not count for fan-out).
    Never,
}

/// Limits and thresholds of the behaviour signals.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BehaviourConfig {
    /// The sliding window, in packet time.
    pub window: Duration,
    /// Hosts tracked at most.
    pub max_hosts: usize,
    /// Listening endpoints tracked at most.
    pub max_endpoints: usize,
    /// Distinct peer addresses an endpoint needs for the peer-ratio signal.
    pub min_peers: u8,
    /// Distinct peers a host must have tried for the fan-out signal.
    pub min_fanout: u16,
    /// Share of failed attempts (percent) for the fan-out signal.
    pub min_failed_percent: u16,
}

impl Default for BehaviourConfig {
    fn default() -> Self {
        BehaviourConfig {
            window: Duration::from_secs(600),
            max_hosts: 65_536,
            max_endpoints: 131_072,
            min_peers: 4,
            min_fanout: 10,
            min_failed_percent: 30,
        }
    }
}

/// The signals, in evidence order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// A host of the flow is a confirmed P2P host.
    P2pHost,
    /// The listening endpoint takes TCP and UDP.
    TcpAndUdp,
    /// About as many distinct peer addresses as peer ports.
    PeerRatio,
    /// Many attempts to distinct peers, many failed.
    FailedFanout,
}

impl Signal {
    /// Every signal.
    pub const ALL: [Signal; 4] = [
        Signal::P2pHost,
        Signal::TcpAndUdp,
        Signal::PeerRatio,
        Signal::FailedFanout,
    ];

    /// The evidence name.
    pub fn name(self) -> &'static str {
        match self {
            Signal::P2pHost => "behaviour.p2p_host",
            Signal::TcpAndUdp => "behaviour.tcp_and_udp",
            Signal::PeerRatio => "behaviour.peer_ratio",
            Signal::FailedFanout => "behaviour.failed_fanout",
        }
    }
}

/// A small set of 32-bit fingerprints, saturating at `N` members.
#[derive(Clone, Copy, Debug)]
struct SmallSet<const N: usize> {
    items: [u32; N],
    len: u8,
}

impl<const N: usize> Default for SmallSet<N> {
    fn default() -> Self {
        SmallSet {
            items: [0; N],
            len: 0,
        }
    }
}

impl<const N: usize> SmallSet<N> {
    fn insert(&mut self, x: u32) {
        let len = usize::from(self.len);
        if len < N && !self.items[..len].contains(&x) {
            self.items[len] = x;
            self.len += 1;
        }
    }

    fn len(&self) -> u8 {
        self.len
    }
}

fn fingerprint(ip: IpAddr) -> u32 {
    match ip {
        IpAddr::V4(v4) => u32::from(v4),
        IpAddr::V6(v6) => {
            let o = v6.octets();
            o.chunks(4).fold(0u32, |h, c| {
                h.rotate_left(7) ^ u32::from_be_bytes([c[0], c[1], c[2], c[3]])
            })
        }
    }
}

/// The hosts that may be confirmed: one bit per hash of an address, set
/// when a host is confirmed and cleared only when rebuilt from the hosts
/// held. A clear bit answers "not confirmed" at once; a set bit sends the
/// question on to the map. Most flows of a busy link are of hosts never
/// confirmed, and each asks up to seven times (start, end, two judgements),
/// each a look-up in a map that misses the cache.
#[derive(Debug)]
struct HostFilter {
    bits: Box<[u64]>,
    /// log2 of the bits' number.
    bits_log2: u32,
    /// Bits set.
    set: usize,
    /// Hosts confirmed since the last rebuild.
    added: usize,
}

impl HostFilter {
    /// A filter for at most `hosts` hosts: eight bits a host, at least
    /// 2^16 bits (the default 65,536 hosts take 2^19 bits, 64 KiB, of which
    /// a full map sets about one in eight).
    fn new(hosts: usize) -> HostFilter {
        let bits_log2 = (hosts.max(1) * 8)
            .next_power_of_two()
            .trailing_zeros()
            .clamp(16, 30);
        HostFilter {
            bits: vec![0; (1 << bits_log2) / 64].into_boxed_slice(),
            bits_log2,
            set: 0,
            added: 0,
        }
    }

    fn bit(&self, ip: IpAddr) -> (usize, u64) {
        let h = u64::from(fingerprint(ip)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let b = (h >> (64 - self.bits_log2)) as usize;
        (b / 64, 1 << (b % 64))
    }

    fn may_hold(&self, ip: IpAddr) -> bool {
        let (word, mask) = self.bit(ip);
        self.bits[word] & mask != 0
    }

    fn insert(&mut self, ip: IpAddr) {
        let (word, mask) = self.bit(ip);
        if self.bits[word] & mask == 0 {
            self.bits[word] |= mask;
            self.set += 1;
        }
        self.added += 1;
    }

    /// Over half full, with as many hosts confirmed since the last rebuild
    /// as an eighth of the bits (so that rebuilding stays rare when many
    /// hosts are confirmed at once): worth clearing what has left the map.
    fn wants_rebuild(&self) -> bool {
        let bits = 1 << self.bits_log2;
        self.set > bits / 2 && self.added > bits / 8
    }

    fn rebuild<'a>(&mut self, hosts: impl Iterator<Item = &'a IpAddr>) {
        self.bits.fill(0);
        self.set = 0;
        for ip in hosts {
            self.insert(*ip);
        }
        self.added = 0;
    }
}

/// What is known of one host.
#[derive(Clone, Copy, Debug)]
struct Host {
    /// Confirmed P2P protocol, and until when it counts.
    p2p: Option<(Protocol, Timestamp)>,
    /// Start of the fan-out window.
    since: Timestamp,
    /// Outgoing TCP attempts to unprivileged ports in the window.
    attempts: u16,
    /// Of which failed (no answer, or reset before any data).
    failed: u16,
    /// Distinct peers tried.
    peers: SmallSet<32>,
}

/// What is known of one listening endpoint.
#[derive(Clone, Copy, Debug, Default)]
struct Listener {
    since: Timestamp,
    tcp: bool,
    udp: bool,
    peer_ips: SmallSet<16>,
    peer_ports: SmallSet<16>,
}

/// Counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BehaviourStats {
    /// Flows named from behaviour (counted by the pipeline).
    pub named: u64,
    /// Hosts tracked now.
    pub hosts: u64,
    /// Endpoints tracked now.
    pub endpoints: u64,
    /// Hosts and endpoints dropped because their map was full.
    pub evicted: u64,
}

/// The facts of a flow that behaviour looks at.
#[derive(Clone, Copy, Debug)]
pub struct FlowFacts {
    /// TCP or UDP.
    pub transport: Transport,
    /// The originator.
    pub originator: Endpoint,
    /// The responder.
    pub responder: Endpoint,
    /// The responder sent nothing, or reset before any data (TCP).
    pub failed: bool,
}

/// The behaviour tracker; see the module documentation.
#[derive(Debug)]
pub struct Behaviour {
    config: BehaviourConfig,
    hosts: BoundedMap<IpAddr, Host>,
    /// Every host in `hosts` (and some that were).
    confirmed_filter: HostFilter,
    listeners: BoundedMap<Endpoint, Listener>,
}

impl Behaviour {
    /// An empty tracker.
    pub fn new(config: BehaviourConfig) -> Behaviour {
        Behaviour {
            hosts: BoundedMap::new(config.max_hosts),
            confirmed_filter: HostFilter::new(config.max_hosts),
            listeners: BoundedMap::new(config.max_endpoints),
            config,
        }
    }

    /// Counters.
    pub fn stats(&self) -> BehaviourStats {
        BehaviourStats {
            named: 0,
            hosts: self.hosts.len() as u64,
            endpoints: self.listeners.len() as u64,
            evicted: self.hosts.evicted() + self.listeners.evicted(),
        }
    }

    /// The P2P protocol `ip` was confirmed as running within the window.
    fn confirmed(&self, ip: IpAddr, now: Timestamp) -> Option<Protocol> {
        if !self.confirmed_filter.may_hold(ip) {
            return None;
        }
        self.hosts
            .get(&ip)
            .and_then(|h| h.p2p)
            .filter(|(_, until)| *until >= now)
            .map(|(p, _)| p)
    }

    /// Whether [`Behaviour::flow_started`] notes this flow, by the state
    /// now: at once if a host of it is confirmed, else only if one is by
    /// the time the start applies.
    pub fn notes_start(&self, f: &FlowFacts, now: Timestamp) -> Notes {
        if self.confirmed(f.originator.ip(), now).is_some()
            || self.confirmed(f.responder.ip(), now).is_some()
        {
            Notes::Now
        } else {
            Notes::IfConfirmed
        }
    }

    /// Whether [`Behaviour::flow_ended`] notes this flow, by the state now
    /// (see [`Behaviour::notes_start`]).
    pub fn notes_end(&self, f: &FlowFacts, now: Timestamp) -> Notes {
        if !counts_for_fanout(f) {
            Notes::Never
        } else if self.confirmed(f.originator.ip(), now).is_some() {
            Notes::Now
        } else {
            Notes::IfConfirmed
        }
    }

    /// A new flow: if it involves a confirmed host, its listening endpoints
    /// gain a peer and a transport.
    pub fn flow_started(&mut self, f: &FlowFacts, now: Timestamp) {
        if self.confirmed(f.originator.ip(), now).is_none()
            && self.confirmed(f.responder.ip(), now).is_none()
        {
            return;
        }
        let window = self.config.window;
        for (listener, peer) in listeners(f) {
            if let Some(l) = self.listeners.write(listener, Listener::default) {
                l.note(f.transport, peer, now, window);
            }
        }
    }

    /// A flow of `ip` was named with structural evidence.
    pub fn confirm_host(&mut self, ip: IpAddr, protocol: Protocol, now: Timestamp) {
        let until = now.plus(self.config.window);
        if let Some(h) = self.hosts.write(ip, || Host::new(now)) {
            h.p2p = Some((protocol, until));
            // Hosts enter the map only here (fan-out needs a confirmed
            // host), so the filter holds every host of the map.
            self.confirmed_filter.insert(ip);
            if self.confirmed_filter.wants_rebuild() {
                self.confirmed_filter.rebuild(self.hosts.keys());
            }
        }
    }

    /// A flow ended: an outgoing TCP attempt of a confirmed host counts for
    /// its fan-out.
    pub fn flow_ended(&mut self, f: &FlowFacts, now: Timestamp) {
        if !counts_for_fanout(f) || self.confirmed(f.originator.ip(), now).is_none() {
            return;
        }
        let window = self.config.window;
        if let Some(h) = self.hosts.write(f.originator.ip(), || Host::new(now)) {
            h.attempt(f, now, window);
        }
    }

    /// The protocol and signals that name a flow from behaviour, if they
    /// do (see the module documentation). The flow itself counts as if
    /// [`Behaviour::flow_started`] (and, `at_end`, [`Behaviour::flow_ended`])
    /// had been given it already: this only reads, so that threads can judge
    /// their flows at once while what flows teach is applied in a fixed
    /// order later.
    pub fn judge(
        &self,
        f: &FlowFacts,
        now: Timestamp,
        at_end: bool,
    ) -> Option<(Protocol, Vec<Signal>)> {
        if is_service_port(f.originator.port())
            || is_service_port(f.responder.port())
            || !is_unicast(f.responder.ip())
        {
            return None;
        }
        let (host, protocol) = [f.originator.ip(), f.responder.ip()]
            .into_iter()
            .find_map(|ip| self.confirmed(ip, now).map(|p| (ip, p)))?;
        let mut signals = vec![Signal::P2pHost];
        let window = self.config.window;
        let mut seen = [None; 2];
        for (slot, (listener, peer)) in seen.iter_mut().zip(listeners(f)) {
            let mut l = self.listeners.get(&listener).copied().unwrap_or_default();
            l.note(f.transport, peer, now, window);
            *slot = Some(l);
        }
        let seen = seen.iter().flatten();
        if seen.clone().any(|l| l.tcp && l.udp) {
            signals.push(Signal::TcpAndUdp);
        }
        let min = self.config.min_peers;
        if seen
            .clone()
            .any(|l| l.peer_ips.len() >= min && l.peer_ips.len().abs_diff(l.peer_ports.len()) <= 2)
        {
            signals.push(Signal::PeerRatio);
        }
        // Only the host's own TCP attempts count, as the fan-out does.
        if f.transport == Transport::Tcp && host == f.originator.ip() {
            let mut h = self.hosts.get(&host).copied().unwrap_or(Host::new(now));
            if at_end && counts_for_fanout(f) {
                h.attempt(f, now, window);
            }
            if h.peers.len() as u16 >= self.config.min_fanout
                && u32::from(h.failed) * 100
                    >= u32::from(self.config.min_failed_percent) * u32::from(h.attempts)
            {
                signals.push(Signal::FailedFanout);
            }
        }
        if signals.len() < 2 {
            return None;
        }
        Some((protocol, signals))
    }
}

/// The listening endpoints of a flow, each with its peer: the responder;
/// for UDP also the originator (P2P UDP sockets listen on both sides).
/// Service ports are never listeners of interest.
fn listeners(f: &FlowFacts) -> impl Iterator<Item = (Endpoint, Endpoint)> {
    let udp = f.transport == Transport::Udp;
    [
        Some((f.responder, f.originator)),
        udp.then_some((f.originator, f.responder)),
    ]
    .into_iter()
    .flatten()
    .filter(|(l, _)| !is_service_port(l.port()))
}

/// Outgoing TCP attempts to unprivileged ports make a host's fan-out.
fn counts_for_fanout(f: &FlowFacts) -> bool {
    f.transport == Transport::Tcp && !is_service_port(f.responder.port())
}

impl Listener {
    fn note(&mut self, transport: Transport, peer: Endpoint, now: Timestamp, window: Duration) {
        if now.since(self.since) > window {
            *self = Listener {
                since: now,
                ..Listener::default()
            };
        }
        match transport {
            Transport::Tcp => self.tcp = true,
            Transport::Udp => self.udp = true,
        }
        self.peer_ips.insert(fingerprint(peer.ip()));
        self.peer_ports.insert(u32::from(peer.port()));
    }
}

fn is_unicast(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => !(v4.is_multicast() || v4.is_broadcast() || v4.is_unspecified()),
        IpAddr::V6(v6) => !(v6.is_multicast() || v6.is_unspecified()),
    }
}

impl Host {
    fn new(now: Timestamp) -> Host {
        Host {
            p2p: None,
            since: now,
            attempts: 0,
            failed: 0,
            peers: SmallSet::default(),
        }
    }

    fn attempt(&mut self, f: &FlowFacts, now: Timestamp, window: Duration) {
        if now.since(self.since) > window {
            *self = Host {
                p2p: self.p2p,
                ..Host::new(now)
            };
        }
        self.attempts = self.attempts.saturating_add(1);
        self.failed = self.failed.saturating_add(u16::from(f.failed));
        self.peers.insert(fingerprint(f.responder.ip()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(s: &str) -> Endpoint {
        let a: std::net::SocketAddr = s.parse().unwrap();
        Endpoint::new(a.ip(), a.port())
    }

    fn flow(t: Transport, o: &str, r: &str, failed: bool) -> FlowFacts {
        FlowFacts {
            transport: t,
            originator: ep(o),
            responder: ep(r),
            failed,
        }
    }

    const T0: Timestamp = Timestamp::from_secs(1000);

    #[test]
    fn needs_a_confirmed_host_and_another_signal() {
        let mut b = Behaviour::new(BehaviourConfig::default());
        // 10.0.0.5:51413 takes TCP and UDP.
        let tcp = flow(Transport::Tcp, "10.0.0.1:40000", "10.0.0.5:51413", false);
        let udp = flow(Transport::Udp, "10.0.0.1:6881", "10.0.0.5:51413", false);
        b.flow_started(&tcp, T0);
        b.flow_started(&udp, T0);
        assert_eq!(b.judge(&tcp, T0, false), None, "no confirmed host");
        assert_eq!(b.stats().endpoints, 0, "no state for unconfirmed hosts");
        b.confirm_host("10.0.0.1".parse().unwrap(), Protocol::Bittorrent, T0);
        assert_eq!(b.judge(&tcp, T0, false), None, "no signal yet");
        // The flow judged counts itself: the UDP flow, not yet started,
        // makes the endpoint's TCP and UDP.
        b.flow_started(&tcp, T0);
        assert_eq!(
            b.judge(&udp, T0, false).map(|(_, s)| s),
            Some(vec![Signal::P2pHost, Signal::TcpAndUdp])
        );
        b.flow_started(&udp, T0);
        let (p, signals) = b.judge(&tcp, T0, false).unwrap();
        assert_eq!(p, Protocol::Bittorrent);
        assert_eq!(signals, vec![Signal::P2pHost, Signal::TcpAndUdp]);
        // A flow of the confirmed host with no other signal stays unnamed.
        let other = flow(Transport::Tcp, "10.0.0.1:40001", "10.0.0.9:7000", false);
        b.flow_started(&other, T0);
        assert_eq!(b.judge(&other, T0, false), None);
        // Confirmation expires with the window.
        assert_eq!(
            b.judge(&tcp, T0.plus(Duration::from_secs(601)), false),
            None
        );
    }

    fn host(i: u32) -> IpAddr {
        if i.is_multiple_of(4) {
            IpAddr::V6(std::net::Ipv6Addr::from(u128::from(i) << 64 | 0x2001))
        } else {
            IpAddr::V4(std::net::Ipv4Addr::from(0x6440_0000 + i))
        }
    }

    #[test]
    fn the_filter_keeps_every_held_host_through_rebuilds() {
        for max_hosts in [1_000, 65_536] {
            let mut b = Behaviour::new(BehaviourConfig {
                max_hosts,
                ..BehaviourConfig::default()
            });
            // Enough hosts to fill over half the filter's bits, so that it
            // rebuilds (with the small map, from far fewer hosts than it
            // was given).
            let n = 60_000;
            for i in 0..n {
                b.confirm_host(host(i), Protocol::Bittorrent, T0);
            }
            let held = (0..n).filter(|&i| b.hosts.get(&host(i)).is_some());
            let mut count = 0;
            for i in held {
                count += 1;
                assert_eq!(
                    b.confirmed(host(i), T0),
                    Some(Protocol::Bittorrent),
                    "host {i} of {max_hosts}"
                );
            }
            assert_eq!(count, max_hosts.min(n as usize), "held");
            if max_hosts == 1_000 {
                // Never rebuilt, 60,000 hosts would set about 39,000 bits.
                assert!(b.confirmed_filter.set <= 1 << 15, "rebuilt from the map");
            }
        }
        // A host never confirmed is turned away by the filter itself.
        let mut b = Behaviour::new(BehaviourConfig::default());
        b.confirm_host(host(1), Protocol::Gnutella, T0);
        let strangers = (2..1_000).filter(|&i| !b.confirmed_filter.may_hold(host(i)));
        assert!(strangers.count() > 990);
        assert_eq!(b.confirmed(host(2), T0), None);
    }

    #[test]
    fn never_on_service_ports() {
        let mut b = Behaviour::new(BehaviourConfig::default());
        b.confirm_host("10.0.0.1".parse().unwrap(), Protocol::Bittorrent, T0);
        for (o, r) in [
            ("10.0.0.1:40000", "10.0.0.5:443"),
            ("10.0.0.1:40000", "10.0.0.5:3478"),
            ("10.0.0.1:53", "10.0.0.5:40000"),
        ] {
            let tcp = flow(Transport::Tcp, o, r, false);
            let udp = flow(Transport::Udp, o, r, false);
            b.flow_started(&tcp, T0);
            b.flow_started(&udp, T0);
            assert_eq!(b.judge(&tcp, T0, false), None, "{r}");
            assert_eq!(b.judge(&udp, T0, false), None, "{r}");
        }
    }

    #[test]
    fn peer_ratio_tells_a_peer_from_a_server() {
        let mut b = Behaviour::new(BehaviourConfig::default());
        b.confirm_host("10.0.0.9".parse().unwrap(), Protocol::Gnutella, T0);
        // A peer: five hosts, one port each.
        for i in 1..=5 {
            b.flow_started(
                &flow(
                    Transport::Tcp,
                    &format!("10.0.1.{i}:{}", 40000 + i),
                    "10.0.0.9:6346",
                    false,
                ),
                T0,
            );
        }
        let f = flow(Transport::Tcp, "10.0.1.1:40001", "10.0.0.9:6346", false);
        assert_eq!(
            b.judge(&f, T0, false).map(|(_, s)| s),
            Some(vec![Signal::P2pHost, Signal::PeerRatio])
        );
        // A server: two clients, many connections each.
        for i in 0..12 {
            b.flow_started(
                &flow(
                    Transport::Tcp,
                    &format!("10.0.2.{}:{}", i % 2, 50000 + i),
                    "10.0.0.9:8000",
                    false,
                ),
                T0,
            );
        }
        let f = flow(Transport::Tcp, "10.0.2.0:50000", "10.0.0.9:8000", false);
        assert_eq!(b.judge(&f, T0, false), None);
    }

    #[test]
    fn failed_fanout_of_a_confirmed_host() {
        let mut b = Behaviour::new(BehaviourConfig::default());
        b.confirm_host("10.0.0.1".parse().unwrap(), Protocol::Bittorrent, T0);
        for i in 0..12 {
            b.flow_ended(
                &flow(
                    Transport::Tcp,
                    "10.0.0.1:40000",
                    &format!("10.9.0.{i}:{}", 20000 + i),
                    i % 2 == 0,
                ),
                T0,
            );
        }
        let attempt = flow(Transport::Tcp, "10.0.0.1:40100", "10.9.1.1:30000", true);
        assert_eq!(
            b.judge(&attempt, T0, false).map(|(_, s)| s),
            Some(vec![Signal::P2pHost, Signal::FailedFanout])
        );
    }
}
