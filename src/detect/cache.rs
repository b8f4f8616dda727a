//! The endpoint cache: `{ip, port}` endpoints known to run a P2P protocol,
//! so that a new flow to or from one is named at its first packet (with
//! confidence `cache`), before any payload, and encrypted or otherwise
//! unrecognisable flows of a known peer are still named.
//!
//! Endpoints enter the cache two ways:
//! - **confirmed**: a flow on the endpoint was named with structural
//!   evidence (confidence `unidirectional` or better);
//! - **learnt**: the protocol itself announced it: peers in tracker replies
//!   and DHT `values`, DHT `nodes`, the listen port of a tracker request, of
//!   a local discovery announcement or of a peer-wire `port` message,
//!   Gnutella pongs and eDonkey/Kad contact lists.
//!
//! Admission rules, so that the cache can never turn ordinary services
//! into P2P:
//! - an endpoint on a **service port** (every port below 1024, and the
//!   well-known higher ones in [`SERVICE_PORTS`]: STUN/TURN, SIP, mDNS,
//!   SSDP, OpenVPN, WireGuard, proxies, databases, ...) is never cached, by
//!   either way: P2P clients do not listen there, and a web or STUN server
//!   named in a peer list (by mistake or on purpose) must not make its other
//!   users' flows look like P2P;
//! - multicast, broadcast and unspecified addresses are never cached;
//! - entries expire (`ttl_confirmed`, `ttl_learnt`, in packet time) and the
//!   cache holds at most `capacity` entries, dropping the oldest first.
//!
//! Entries are per transport: a BitTorrent peer's listen port takes TCP
//! and uTP, a DHT node only UDP, a Kad contact its UDP and TCP ports
//! separately.

use std::net::IpAddr;

use super::Protocol;
use super::bounded::BoundedMap;
use crate::decode::Transport;
use crate::flow::Endpoint;
use crate::timestamp::{Duration, Timestamp};

/// Well-known ports at or above 1024 that the cache never admits (every
/// port below 1024 is refused too).
pub const SERVICE_PORTS: &[u16] = &[
    1080, 1194, 1433, 1521, 1701, 1723, 1812, 1813, 1900, 2049, 3074, 3128, 3260, 3306, 3389, 3478,
    3479, 3544, 3702, 4500, 5004, 5005, 5060, 5061, 5201, 5222, 5223, 5228, 5349, 5350, 5351, 5353,
    5355, 5432, 5900, 6379, 8000, 8008, 8080, 8081, 8443, 8888, 9000, 9001, 9030, 9050, 9150,
    10000, 11211, 19302, 19305, 27015, 27017, 51820,
];

/// One bit per port, set for the ports below 1024 and [`SERVICE_PORTS`]
/// (asked for every new flow, so a look-up rather than a search).
const SERVICE_PORT_BITS: [u64; 1024] = {
    let mut bits = [0u64; 1024];
    let mut i = 0;
    while i < 16 {
        bits[i] = u64::MAX;
        i += 1;
    }
    let mut j = 0;
    while j < SERVICE_PORTS.len() {
        let p = SERVICE_PORTS[j] as usize;
        bits[p / 64] |= 1 << (p % 64);
        j += 1;
    }
    bits
};

/// Whether the cache refuses endpoints on `port`.
pub fn is_service_port(port: u16) -> bool {
    (SERVICE_PORT_BITS[usize::from(port / 64)] >> (port % 64)) & 1 == 1
}

/// Which transports an entry covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transports(u8);

impl Transports {
    /// TCP only.
    pub const TCP: Transports = Transports(1);
    /// UDP only.
    pub const UDP: Transports = Transports(2);
    /// Both (a BitTorrent listen port: TCP and uTP).
    pub const BOTH: Transports = Transports(3);

    fn has(self, t: Transport) -> bool {
        let bit = match t {
            Transport::Tcp => 1,
            Transport::Udp => 2,
        };
        self.0 & bit != 0
    }
}

impl From<Transport> for Transports {
    fn from(t: Transport) -> Self {
        match t {
            Transport::Tcp => Transports::TCP,
            Transport::Udp => Transports::UDP,
        }
    }
}

/// An endpoint a detector learnt from the protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Learnt {
    /// The protocol the endpoint runs.
    pub protocol: Protocol,
    /// The endpoint.
    pub endpoint: Endpoint,
    /// The transports it listens on.
    pub transports: Transports,
}

/// Limits of the cache.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheConfig {
    /// Entries at most (0 disables the cache).
    pub capacity: usize,
    /// Lifetime of an endpoint confirmed by a structural match.
    pub ttl_confirmed: Duration,
    /// Lifetime of an endpoint learnt from a peer list.
    pub ttl_learnt: Duration,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            capacity: 262_144,
            ttl_confirmed: Duration::from_secs(3600),
            ttl_learnt: Duration::from_secs(1800),
        }
    }
}

/// Counters of the cache.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Entries now.
    pub size: u64,
    /// Endpoints admitted (new or refreshed) from structural matches.
    pub confirmed: u64,
    /// Endpoints admitted (new or refreshed) from peer lists.
    pub learnt: u64,
    /// Endpoints refused (service port or non-unicast address).
    pub refused: u64,
    /// Flows named from the cache.
    pub hits: u64,
    /// Entries dropped because the cache was full.
    pub evicted: u64,
    /// Look-ups that found an entry past its time.
    pub expired: u64,
}

/// The outcome of [`EndpointCache::lookup`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lookup {
    /// A live entry for the transport.
    Hit(Protocol),
    /// An entry whose time is up.
    Expired,
    /// Nothing for this endpoint and transport.
    Miss,
}

impl Lookup {
    /// The protocol of a hit.
    pub fn hit(self) -> Option<Protocol> {
        match self {
            Lookup::Hit(p) => Some(p),
            _ => None,
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    protocol: Protocol,
    transports: Transports,
    expires: Timestamp,
}

/// The cache; see the module documentation.
#[derive(Debug)]
pub struct EndpointCache {
    config: CacheConfig,
    entries: BoundedMap<Endpoint, Entry>,
    stats: CacheStats,
}

impl EndpointCache {
    /// An empty cache.
    pub fn new(config: CacheConfig) -> EndpointCache {
        EndpointCache {
            entries: BoundedMap::new(config.capacity),
            config,
            stats: CacheStats::default(),
        }
    }

    /// Counters.
    pub fn stats(&self) -> CacheStats {
        CacheStats {
            size: self.entries.len() as u64,
            evicted: self.entries.evicted(),
            ..self.stats.clone()
        }
    }

    /// What the cache holds for `endpoint` over `transport` at `now`. It
    /// changes nothing (threads look up concurrently); the caller counts
    /// hits and expired entries, which stay until replaced or evicted.
    pub fn lookup(&self, endpoint: Endpoint, transport: Transport, now: Timestamp) -> Lookup {
        let Some(entry) = self.entries.get(&endpoint) else {
            return Lookup::Miss;
        };
        if entry.expires < now {
            Lookup::Expired
        } else if entry.transports.has(transport) {
            Lookup::Hit(entry.protocol)
        } else {
            Lookup::Miss
        }
    }

    /// Admits an endpoint seen carrying `protocol` with structural evidence.
    pub fn confirm(
        &mut self,
        protocol: Protocol,
        endpoint: Endpoint,
        transports: Transports,
        now: Timestamp,
    ) {
        let ttl = self.config.ttl_confirmed;
        if self.admit(protocol, endpoint, transports, now.plus(ttl)) {
            self.stats.confirmed += 1;
        }
    }

    /// Admits an endpoint the protocol announced.
    pub fn learn(&mut self, learnt: Learnt, now: Timestamp) {
        let ttl = self.config.ttl_learnt;
        if self.admit(
            learnt.protocol,
            learnt.endpoint,
            learnt.transports,
            now.plus(ttl),
        ) {
            self.stats.learnt += 1;
        }
    }

    fn admit(
        &mut self,
        protocol: Protocol,
        endpoint: Endpoint,
        transports: Transports,
        expires: Timestamp,
    ) -> bool {
        if self.config.capacity == 0 {
            return false;
        }
        if is_service_port(endpoint.port()) || !is_unicast(endpoint.ip()) {
            self.stats.refused += 1;
            return false;
        }
        let fresh = Entry {
            protocol,
            transports,
            expires,
        };
        let Some(e) = self.entries.write(endpoint, || fresh) else {
            return false;
        };
        // A refresh keeps the longer life and widens the transports.
        e.expires = e.expires.max(expires);
        e.transports = Transports(e.transports.0 | transports.0);
        e.protocol = protocol;
        true
    }
}

fn is_unicast(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => !(v4.is_multicast() || v4.is_broadcast() || v4.is_unspecified()),
        IpAddr::V6(v6) => !(v6.is_multicast() || v6.is_unspecified()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(s: &str) -> Endpoint {
        let a: std::net::SocketAddr = s.parse().unwrap();
        Endpoint::new(a.ip(), a.port())
    }

    fn t(secs: u64) -> Timestamp {
        Timestamp::from_secs(secs)
    }

    #[test]
    fn names_known_endpoints_per_transport_until_they_expire() {
        let mut c = EndpointCache::new(CacheConfig::default());
        c.learn(
            Learnt {
                protocol: Protocol::Bittorrent,
                endpoint: ep("100.64.0.1:51413"),
                transports: Transports::BOTH,
            },
            t(0),
        );
        c.confirm(
            Protocol::Bittorrent,
            ep("100.64.0.2:6881"),
            Transports::UDP,
            t(0),
        );
        assert_eq!(
            c.lookup(ep("100.64.0.1:51413"), Transport::Tcp, t(10)),
            Lookup::Hit(Protocol::Bittorrent)
        );
        assert_eq!(
            c.lookup(ep("100.64.0.1:51413"), Transport::Udp, t(10)),
            Lookup::Hit(Protocol::Bittorrent)
        );
        assert_eq!(
            c.lookup(ep("100.64.0.2:6881"), Transport::Tcp, t(10)),
            Lookup::Miss,
            "UDP only"
        );
        assert_eq!(
            c.lookup(ep("100.64.0.1:51414"), Transport::Tcp, t(10)),
            Lookup::Miss
        );
        assert_eq!(
            c.lookup(ep("100.64.0.1:51413"), Transport::Tcp, t(1801)),
            Lookup::Expired,
            "learnt entries expire"
        );
        assert_eq!(
            c.lookup(ep("100.64.0.2:6881"), Transport::Udp, t(3600)),
            Lookup::Hit(Protocol::Bittorrent)
        );
        let s = c.stats();
        assert_eq!((s.learnt, s.confirmed, s.size), (1, 1, 2));
    }

    #[test]
    fn service_ports_are_those_below_1024_and_the_listed_ones() {
        for port in 0..=u16::MAX {
            let want = port < 1024 || SERVICE_PORTS.contains(&port);
            assert_eq!(is_service_port(port), want, "port {port}");
        }
    }

    #[test]
    fn never_admits_service_ports_or_group_addresses() {
        let mut c = EndpointCache::new(CacheConfig::default());
        for e in [
            "192.0.2.1:443",
            "192.0.2.1:80",
            "192.0.2.1:53",
            "192.0.2.1:123",
            "192.0.2.1:3478",
            "192.0.2.1:19302",
            "239.192.152.143:6771",
            "0.0.0.0:6881",
            "[ff02::1]:6881",
        ] {
            c.confirm(Protocol::Bittorrent, ep(e), Transports::BOTH, t(0));
            c.learn(
                Learnt {
                    protocol: Protocol::Gnutella,
                    endpoint: ep(e),
                    transports: Transports::BOTH,
                },
                t(0),
            );
            assert_eq!(c.lookup(ep(e), Transport::Tcp, t(1)), Lookup::Miss, "{e}");
        }
        assert_eq!(c.stats().refused, 18);
        assert_eq!(c.stats().size, 0);
    }

    #[test]
    fn drops_the_oldest_entry_when_full() {
        let mut c = EndpointCache::new(CacheConfig {
            capacity: 2,
            ..CacheConfig::default()
        });
        c.confirm(
            Protocol::Bittorrent,
            ep("10.0.0.1:2000"),
            Transports::TCP,
            t(0),
        );
        c.confirm(
            Protocol::Bittorrent,
            ep("10.0.0.2:2000"),
            Transports::TCP,
            t(1),
        );
        // Refreshing the first makes the second the oldest.
        c.confirm(
            Protocol::Bittorrent,
            ep("10.0.0.1:2000"),
            Transports::TCP,
            t(2),
        );
        c.confirm(
            Protocol::Bittorrent,
            ep("10.0.0.3:2000"),
            Transports::TCP,
            t(3),
        );
        assert!(
            c.lookup(ep("10.0.0.1:2000"), Transport::Tcp, t(4))
                .hit()
                .is_some()
        );
        assert!(
            c.lookup(ep("10.0.0.2:2000"), Transport::Tcp, t(4))
                .hit()
                .is_none()
        );
        assert!(
            c.lookup(ep("10.0.0.3:2000"), Transport::Tcp, t(4))
                .hit()
                .is_some()
        );
        assert_eq!(c.stats().evicted, 1);
    }
}
