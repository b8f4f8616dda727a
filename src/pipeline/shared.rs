//! What flows teach about other flows: the endpoint cache and host
//! behaviour.
//!
//! Looking something up never changes this state, so any number of threads
//! can read it at once. What a packet teaches is a [`Write`], tagged with the
//! packet's place in the input and applied in that order: straight after
//! the packet by the single-threaded [`Pipeline`](super::Pipeline), at the
//! end of each chunk by the parallel engine (every thread reads the state as
//! it was when the chunk began). Because the order is the input's, not the
//! threads', the parallel engine's output does not depend on the number of
//! threads.
//!
//! Nearly every flow's start and end change nothing (host behaviour keeps
//! state only for flows of confirmed P2P hosts). So a flow none of whose
//! hosts is confirmed in the state it reads logs them apart, in no order;
//! at the chunk's end only those whose host the chunk itself confirmed go
//! in order with the rest ([`Shared::apply_chunk`]), which keeps what is
//! applied in order, on one thread, small, and the result exact.

use std::net::IpAddr;

use crate::detect::behaviour::{Behaviour, BehaviourStats, FlowFacts};
use crate::detect::cache::{CacheStats, EndpointCache, Learnt, Transports};
use crate::detect::{DetectConfig, Protocol};
use crate::flow::Endpoint;
use crate::timestamp::Timestamp;

use super::merge::Merge;

/// The cross-flow state.
#[derive(Debug)]
pub struct Shared {
    /// Endpoints known to run a P2P protocol.
    pub cache: EndpointCache,
    /// Host behaviour over a sliding window.
    pub behaviour: Behaviour,
    /// Flow starts and ends to apply late (a reused buffer; see
    /// [`Shared::apply_chunk`]).
    late: Vec<Keyed>,
}

/// One change to the cross-flow state.
#[derive(Clone, Copy, Debug)]
pub enum Write {
    /// A protocol announced a peer.
    Learn(Learnt),
    /// A structural match confirmed an endpoint.
    Confirm {
        /// The protocol.
        protocol: Protocol,
        /// The endpoint.
        endpoint: Endpoint,
        /// Over which transports.
        transports: Transports,
    },
    /// A host ran a P2P protocol (structural evidence).
    ConfirmHost {
        /// The host.
        ip: IpAddr,
        /// The protocol.
        protocol: Protocol,
    },
    /// A flow started.
    FlowStarted(FlowFacts),
    /// A flow ended.
    FlowEnded(FlowFacts),
}

/// A write and where it comes from: the input position of the packet (or
/// chunk end) that made it, and the flow. Writes apply in this order.
#[derive(Clone, Copy, Debug)]
pub struct Keyed {
    /// Input position.
    pub seq: u64,
    /// The flow's id.
    pub flow: u64,
    /// Packet time of the change.
    pub ts: Timestamp,
    /// The change.
    pub write: Write,
}

impl Keyed {
    /// Where the write goes in the input order: by position, ties (at a
    /// chunk's end) by flow id, and one packet's writes to one flow in the
    /// order they were made.
    pub fn order(&self) -> (u64, u64) {
        (self.seq, self.flow)
    }
}

/// One of 64 bits for an address (a one-word Bloom filter).
fn ip_bit(ip: IpAddr) -> u64 {
    let folded = match ip {
        IpAddr::V4(v4) => u64::from(u32::from(v4)),
        IpAddr::V6(v6) => {
            let v = u128::from(v6);
            (v as u64) ^ ((v >> 64) as u64)
        }
    };
    1 << (folded.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 58)
}

impl Shared {
    /// Empty state with the configured limits.
    pub fn new(detect: &DetectConfig) -> Shared {
        Shared {
            cache: EndpointCache::new(detect.cache.clone()),
            behaviour: Behaviour::new(detect.behaviour.clone()),
            late: Vec::new(),
        }
    }

    /// Applies one write.
    pub fn apply(&mut self, k: &Keyed) {
        let ts = k.ts;
        match k.write {
            Write::Learn(l) => self.cache.learn(l, ts),
            Write::Confirm {
                protocol,
                endpoint,
                transports,
            } => self.cache.confirm(protocol, endpoint, transports, ts),
            Write::ConfirmHost { ip, protocol } => self.behaviour.confirm_host(ip, protocol, ts),
            Write::FlowStarted(f) => self.behaviour.flow_started(&f, ts),
            Write::FlowEnded(f) => self.behaviour.flow_ended(&f, ts),
        }
    }

    /// Applies a chunk's writes from several threads, each list in input
    /// order (see [`Keyed::order`]), in the order of the input; with them,
    /// the flow starts and ends logged as
    /// [`Notes::IfConfirmed`](crate::detect::behaviour::Notes) (in any
    /// order) whose host the chunk confirms: the others would change
    /// nothing, and are dropped without a look-up.
    pub fn apply_chunk<'a>(
        &mut self,
        lists: impl IntoIterator<Item = &'a mut Vec<Keyed>>,
        unconfirmed: impl IntoIterator<Item = &'a mut Vec<Keyed>>,
    ) {
        let mut lists: Vec<&mut Vec<Keyed>> = lists.into_iter().collect();
        let mut hosts: Vec<IpAddr> = lists
            .iter()
            .flat_map(|l| l.iter())
            .filter_map(|k| match k.write {
                Write::ConfirmHost { ip, .. } => Some(ip),
                _ => None,
            })
            .collect();
        hosts.sort_unstable();
        hosts.dedup();
        // Most addresses are not among them: a one-word filter says so
        // before the search.
        let mask = hosts.iter().fold(0u64, |m, ip| m | ip_bit(*ip));
        let confirmed = |ip: IpAddr| mask & ip_bit(ip) != 0 && hosts.binary_search(&ip).is_ok();
        let mut late = std::mem::take(&mut self.late);
        for list in unconfirmed {
            if !hosts.is_empty() {
                late.extend(list.iter().filter(|k| match &k.write {
                    Write::FlowStarted(f) => {
                        confirmed(f.originator.ip()) || confirmed(f.responder.ip())
                    }
                    Write::FlowEnded(f) => confirmed(f.originator.ip()),
                    _ => true,
                }));
            }
            list.clear();
        }
        // A flow's start goes before what its packet taught (its list first).
        late.sort_by_key(Keyed::order);
        lists.insert(0, &mut late);
        for k in Merge::new(lists, Keyed::order) {
            self.apply(&k);
        }
        self.late = late;
    }

    /// The cache's and behaviour's own counters (hits and flows named are
    /// counted by the pipeline).
    pub fn stats(&self) -> (CacheStats, BehaviourStats) {
        (self.cache.stats(), self.behaviour.stats())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::Transport;
    use crate::detect::rules::RuleSet;

    fn start(seq: u64, flow: u64, originator: &str, responder: &str) -> Keyed {
        let ep = |s: &str| {
            let a: std::net::SocketAddr = s.parse().expect("address");
            Endpoint::new(a.ip(), a.port())
        };
        Keyed {
            seq,
            flow,
            ts: Timestamp(seq),
            write: Write::FlowStarted(FlowFacts {
                transport: Transport::Tcp,
                originator: ep(originator),
                responder: ep(responder),
                failed: false,
            }),
        }
    }

    fn confirm(seq: u64, ip: &str) -> Keyed {
        Keyed {
            seq,
            flow: 1,
            ts: Timestamp(seq),
            write: Write::ConfirmHost {
                ip: ip.parse().expect("address"),
                protocol: Protocol::Bittorrent,
            },
        }
    }

    /// The listening endpoints host behaviour tracks after one chunk.
    fn endpoints_after(writes: Vec<Keyed>, unconfirmed: Vec<Keyed>) -> u64 {
        let rules = RuleSet::load(&[]);
        let mut shared = Shared::new(&DetectConfig::new(rules.expect("built-in rules")));
        let (mut w, mut u) = (writes, unconfirmed);
        shared.apply_chunk([&mut w], [&mut u]);
        assert!(u.is_empty(), "the unconfirmed list is emptied");
        shared.stats().1.endpoints
    }

    #[test]
    fn unconfirmed_starts_count_only_after_their_host_is_confirmed_in_the_chunk() {
        let host = "100.64.0.1";
        // Confirmed at packet 10: a start at packet 20 counts, one at
        // packet 5 does not (the host was not confirmed yet), nor one of
        // other hosts.
        let writes = vec![confirm(10, host)];
        let later = start(20, 20, "100.64.0.1:40000", "100.64.0.9:6881");
        let earlier = start(5, 5, "100.64.0.1:40001", "100.64.0.8:6881");
        let other = start(30, 30, "100.64.0.7:40002", "100.64.0.6:6881");
        assert_eq!(endpoints_after(writes.clone(), vec![later]), 1);
        assert_eq!(endpoints_after(writes.clone(), vec![earlier]), 0);
        assert_eq!(endpoints_after(writes, vec![other, earlier]), 0);
        // Nothing confirmed in the chunk: nothing counts.
        assert_eq!(endpoints_after(Vec::new(), vec![later]), 0);
    }
}
