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
//! A flow's start and end are logged for host behaviour only if one of its
//! hosts is a confirmed P2P host in the state the packet reads (for the
//! engine, as the chunk began): behaviour keeps nothing for other flows, so
//! nearly every flow logs nothing, which keeps what is applied in order,
//! on one thread, small.

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

impl Shared {
    /// Empty state with the configured limits.
    pub fn new(detect: &DetectConfig) -> Shared {
        Shared {
            cache: EndpointCache::new(detect.cache.clone()),
            behaviour: Behaviour::new(detect.behaviour.clone()),
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

    /// Applies writes from several threads, each list in input order (see
    /// [`Keyed::order`]), in the order of the input.
    pub fn apply_merged<'a>(&mut self, lists: impl IntoIterator<Item = &'a mut Vec<Keyed>>) {
        for k in Merge::new(lists, Keyed::order) {
            self.apply(&k);
        }
    }

    /// The cache's and behaviour's own counters (hits and flows named are
    /// counted by the pipeline).
    pub fn stats(&self) -> (CacheStats, BehaviourStats) {
        (self.cache.stats(), self.behaviour.stats())
    }
}
