//! Flow keys: both endpoints and the transport, the same whichever way a
//! packet travels.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::decode::Transport;

/// An IP address and port, stored compactly (IPv4 as an IPv4-mapped IPv6
/// address) so that every key has the same fixed size.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Endpoint {
    addr: [u8; 16],
    port: u16,
}

// Ordered and hashed as whole words: every packet's flow key orders its
// two endpoints and is hashed (the derived forms went byte by byte, with a
// length prefix for the address as a slice).
impl Ord for Endpoint {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        // The bytes' order, as the address is big-endian.
        (u128::from_be_bytes(self.addr), self.port)
            .cmp(&(u128::from_be_bytes(other.addr), other.port))
    }
}

impl PartialOrd for Endpoint {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl std::hash::Hash for Endpoint {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u128(u128::from_ne_bytes(self.addr));
        state.write_u16(self.port);
    }
}

impl Endpoint {
    /// An endpoint from an address and port.
    pub fn new(ip: IpAddr, port: u16) -> Self {
        // Whole words: taking the octets of each variant made the compiler
        // assemble the address a byte at a time (about 190 instructions a
        // packet for the shard hash alone, which builds two endpoints).
        let addr = match ip {
            IpAddr::V4(v4) => 0xffff_0000_0000 | u128::from(u32::from(v4)),
            IpAddr::V6(v6) => u128::from(v6),
        };
        Endpoint {
            addr: addr.to_be_bytes(),
            port,
        }
    }

    /// The address (IPv4 again if it was stored mapped).
    pub fn ip(&self) -> IpAddr {
        let bits = u128::from_be_bytes(self.addr);
        if bits >> 32 == 0xffff {
            IpAddr::V4(Ipv4Addr::from(bits as u32))
        } else {
            IpAddr::V6(Ipv6Addr::from(bits))
        }
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.ip() {
            IpAddr::V4(v4) => write!(f, "{v4}:{}", self.port),
            IpAddr::V6(v6) => write!(f, "[{v6}]:{}", self.port),
        }
    }
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Which way a packet travels relative to the flow's originator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// From the originator (the sender of the flow's first packet).
    Originator = 0,
    /// From the responder.
    Responder = 1,
}

impl Direction {
    /// 0 for the originator, 1 for the responder: an index into per-side arrays.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The other side.
    pub fn reverse(self) -> Direction {
        match self {
            Direction::Originator => Direction::Responder,
            Direction::Responder => Direction::Originator,
        }
    }
}

/// A bidirectional flow key: the lower endpoint first, so both directions of
/// a conversation give the same key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowKey {
    /// The lower of the two endpoints.
    pub lo: Endpoint,
    /// The higher of the two endpoints.
    pub hi: Endpoint,
    /// TCP or UDP.
    pub transport: Transport,
}

impl FlowKey {
    /// A hash of the conversation between `a` and `b`, the same whichever
    /// is given first, keyed by `seed`: it decides which shard, and so
    /// which thread, owns a flow. Each side is hashed alone (foldhash, with
    /// the transport) and the two are added, so it needs no comparison of
    /// the endpoints (whose outcome, on mixed traffic, the CPU mispredicts
    /// half the time).
    ///
    /// Keyed because each shard's table holds only its share of the flow
    /// cap: with a hash anyone can compute, a flood made of flows picked to
    /// land in the shard of one flow evicts that flow with a 64th of the
    /// flows it takes otherwise. With a seed the sender does not know, a
    /// flood spreads over the shards whatever flows it is made of. foldhash
    /// is fast and only minimally resistant to an attacker who can watch
    /// its effects (inline, a sender can see a flow lose its verdict).
    pub fn shard_hash(seed: u64, transport: Transport, a: Endpoint, b: Endpoint) -> u64 {
        use std::hash::BuildHasher;
        let state = foldhash::quality::FixedState::with_seed(seed);
        let side =
            |e: Endpoint| state.hash_one((u128::from_be_bytes(e.addr), e.port, transport as u8));
        // MurmurHash3's finaliser, so that the shard (the low bits) depends
        // on every bit of both sides, not only on their own low bits.
        let mut h = side(a).wrapping_add(side(b));
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^ (h >> 33)
    }

    /// The key for a packet from `src` to `dst`, and whether `src` is the
    /// lower endpoint.
    pub fn new(transport: Transport, src: Endpoint, dst: Endpoint) -> (FlowKey, bool) {
        if src <= dst {
            (
                FlowKey {
                    lo: src,
                    hi: dst,
                    transport,
                },
                true,
            )
        } else {
            (
                FlowKey {
                    lo: dst,
                    hi: src,
                    transport,
                },
                false,
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_directions_give_one_key() {
        let a = Endpoint::new("10.0.0.1".parse().unwrap(), 6881);
        let b = Endpoint::new("10.0.0.2".parse().unwrap(), 51413);
        let (k1, a_is_lo) = FlowKey::new(Transport::Tcp, a, b);
        let (k2, b_is_lo) = FlowKey::new(Transport::Tcp, b, a);
        assert_eq!(k1, k2);
        assert!(a_is_lo);
        assert!(!b_is_lo);
        let (k3, _) = FlowKey::new(Transport::Udp, a, b);
        assert_ne!(k1, k3);
    }

    #[test]
    fn endpoints_order_by_mapped_address_bytes_then_port() {
        let eps: Vec<Endpoint> = [
            ("0.0.0.0", 1),
            ("10.0.0.1", 6881),
            ("10.0.0.1", 6882),
            ("10.0.1.0", 80),
            ("192.0.2.255", 65535),
            ("::1", 9),
            ("2001:db8::1", 443),
            ("2001:db8::100", 2),
            ("fe80::1", 0),
            ("ffff::", 1),
        ]
        .iter()
        .map(|(ip, port)| Endpoint::new(ip.parse().unwrap(), *port))
        .collect();
        for a in &eps {
            for b in &eps {
                let bytes = |e: &Endpoint| (e.addr, e.port);
                assert_eq!(a.cmp(b), bytes(a).cmp(&bytes(b)), "{a} vs {b}");
                assert_eq!(a == b, bytes(a) == bytes(b));
            }
        }
    }

    #[test]
    fn the_shard_hash_is_symmetric_keyed_and_spreads_flows() {
        let a = Endpoint::new("10.0.0.1".parse().unwrap(), 6881);
        let b = Endpoint::new("2001:db8::2".parse().unwrap(), 51413);
        let h = FlowKey::shard_hash(7, Transport::Tcp, a, b);
        assert_eq!(h, FlowKey::shard_hash(7, Transport::Tcp, b, a));
        assert_ne!(h, FlowKey::shard_hash(7, Transport::Udp, a, b));
        // The same seed gives the same number on every run of a build.
        assert_eq!(h, FlowKey::shard_hash(7, Transport::Tcp, a, b));
        // Flows that differ in one port or address byte fill 64 shards
        // about evenly, whatever the seed; and flows picked to share a shard
        // under one seed spread over the shards under another.
        for seed in [0, 7, u64::MAX] {
            let mut shards = [0u32; 64];
            let mut picked = [0u32; 64];
            for i in 0..64_000u32 {
                let src = Endpoint::new(
                    std::net::Ipv4Addr::from(0x0a00_0000 | (i / 1000)).into(),
                    (i % 1000) as u16 + 1024,
                );
                let s = (FlowKey::shard_hash(seed, Transport::Udp, src, a) % 64) as usize;
                shards[s] += 1;
                if FlowKey::shard_hash(seed ^ 1, Transport::Udp, src, a) % 64 == 5 {
                    picked[s] += 1;
                }
            }
            assert!(
                shards.iter().all(|&n| (800..1200).contains(&n)),
                "seed {seed}: {shards:?}"
            );
            assert!(
                picked.iter().all(|&n| n < 40),
                "seed {seed}: flows of one shard under another seed: {picked:?}"
            );
        }
    }

    #[test]
    fn endpoints_round_trip_and_print() {
        let v4 = Endpoint::new("192.0.2.7".parse().unwrap(), 80);
        assert_eq!(v4.to_string(), "192.0.2.7:80");
        assert!(v4.ip().is_ipv4());
        let v6 = Endpoint::new("2001:db8::1".parse().unwrap(), 6881);
        assert_eq!(v6.to_string(), "[2001:db8::1]:6881");
        assert!(v6.ip().is_ipv6());
    }
}
