//! The one place that lists the structural detectors. Adding a protocol is
//! one new file in `protocols/` plus one line here.
//!
//! Each line names the detector, its type and which flows it looks at:
//! `tcp`, `udp` or `any`, which must agree with its
//! [`Interest::transport`](super::Interest). A flow is TCP or UDP for its
//! whole life, so the per-flow states of TCP-only and UDP-only detectors
//! never live at the same time: they share storage (an enum chosen at the
//! flow's first payload packet), and a flow costs the larger of the two
//! groups plus the detectors that look at both.

use super::cache::Learnt;
use super::protocols::{
    ares, bittorrent, dht, directconnect, edonkey, fasttrack, gnutella, lsd, mse, ppstream,
    soulseek, thunder, tracker, utp, vuze_dht, webseed,
};
use super::{Detector, Evidence, FactSink, Facts, PacketView, Probe};
use crate::decode::Transport;

macro_rules! registry {
    // Entry: the detectors in inspection order, each with its group.
    ($($field:ident: $ty:ty => $group:ident),+ $(,)?) => {
        registry!(@split [] [] [] ; $($field: $ty => $group,)+);

        /// The detectors.
        #[derive(Debug, Default)]
        pub struct Detectors {
            $($field: $ty,)+
        }

        /// The detectors' names, in registry order.
        pub const DETECTOR_NAMES: &[&str] = &[$(<$ty as Detector>::NAME,)+];

        impl Detectors {
            /// Every evidence name any detector can report.
            pub fn evidence_names() -> Vec<&'static str> {
                let mut names = Vec::new();
                $(names.extend_from_slice(<$ty as Detector>::EVIDENCE);)+
                names
            }

            /// Shows one payload packet to every detector that still wants
            /// it. A detector answering [`Probe::NotMine`] gets its bit set in
            /// `retired` and is not asked again for this flow; so does one
            /// that does not look at this flow's transport.
            pub fn inspect(
                &self,
                states: &mut DetectorStates,
                retired: &mut u32,
                view: &PacketView<'_>,
                facts: &mut Option<Box<Facts>>,
                learnt: &mut Vec<Learnt>,
                on_evidence: &mut impl FnMut(Evidence),
            ) {
                let mut bit = 1u32;
                $(
                    if *retired & bit == 0 {
                        let interest = self.$field.interest();
                        let group = states.$group(view.transport);
                        match group {
                            Some(group)
                                if interest.transport.is_none_or(|t| t == view.transport) =>
                            {
                                if view.index <= interest.max_payload_packets {
                                    let mut sink =
                                        FactSink::with_learnt(facts, view.direction, learnt);
                                    match self.$field.inspect(&mut group.$field, view, &mut sink) {
                                        Probe::Match(e) => on_evidence(e),
                                        Probe::NeedMore => {}
                                        Probe::NotMine => *retired |= bit,
                                    }
                                }
                            }
                            _ => *retired |= bit,
                        }
                    }
                    bit <<= 1;
                )+
                let _ = bit;
            }

            /// Whether no detector will look at another packet: each is
            /// retired or has seen its budget of payload packets from both
            /// sides.
            pub fn exhausted(&self, retired: u32, payload_packets: [u16; 2]) -> bool {
                let mut bit = 1u32;
                let mut done = true;
                $(
                    if retired & bit == 0 {
                        let max = self.$field.interest().max_payload_packets;
                        if payload_packets[0] < max || payload_packets[1] < max {
                            done = false;
                        }
                    }
                    bit <<= 1;
                )+
                let _ = bit;
                done
            }

            /// Each detector's group, to check it against its interest.
            #[cfg(test)]
            fn groups(&self) -> Vec<(&'static str, Option<Transport>, Option<Transport>)> {
                vec![$((
                    <$ty as Detector>::NAME,
                    registry!(@transport $group),
                    self.$field.interest().transport,
                ),)+]
            }
        }
    };

    // Sorts the entries into the three groups, keeping their order.
    (@split [$($t:tt)*] [$($u:tt)*] [$($a:tt)*] ; $f:ident: $ty:ty => tcp, $($rest:tt)*) => {
        registry!(@split [$($t)* $f: $ty,] [$($u)*] [$($a)*] ; $($rest)*);
    };
    (@split [$($t:tt)*] [$($u:tt)*] [$($a:tt)*] ; $f:ident: $ty:ty => udp, $($rest:tt)*) => {
        registry!(@split [$($t)*] [$($u)* $f: $ty,] [$($a)*] ; $($rest)*);
    };
    (@split [$($t:tt)*] [$($u:tt)*] [$($a:tt)*] ; $f:ident: $ty:ty => any, $($rest:tt)*) => {
        registry!(@split [$($t)*] [$($u)*] [$($a)* $f: $ty,] ; $($rest)*);
    };
    (@split [$($tf:ident: $tt:ty,)*] [$($uf:ident: $ut:ty,)*] [$($af:ident: $at:ty,)*] ;) => {
        /// Per-flow states of the TCP-only detectors.
        #[derive(Clone, Copy, Debug, Default)]
        pub struct TcpStates {
            $($tf: <$tt as Detector>::State,)*
        }

        /// Per-flow states of the UDP-only detectors.
        #[derive(Clone, Copy, Debug, Default)]
        pub struct UdpStates {
            $($uf: <$ut as Detector>::State,)*
        }

        /// Per-flow states of the detectors that look at both transports.
        #[derive(Clone, Copy, Debug, Default)]
        pub struct AnyStates {
            $($af: <$at as Detector>::State,)*
        }
    };

    (@transport tcp) => { Some(Transport::Tcp) };
    (@transport udp) => { Some(Transport::Udp) };
    (@transport any) => { None };
}

/// The TCP-only or UDP-only states, chosen by the first payload packet.
#[derive(Clone, Copy, Debug, Default)]
enum ByTransport {
    /// No payload packet seen yet.
    #[default]
    Unset,
    /// A TCP flow.
    Tcp(TcpStates),
    /// A UDP flow.
    Udp(UdpStates),
}

/// Every detector's per-flow state: fixed size, no allocation.
#[derive(Clone, Copy, Debug, Default)]
pub struct DetectorStates {
    by_transport: ByTransport,
    any: AnyStates,
}

impl DetectorStates {
    /// Sets the transport-specific states up at the first packet.
    fn init(&mut self, transport: Transport) {
        if let ByTransport::Unset = self.by_transport {
            self.by_transport = match transport {
                Transport::Tcp => ByTransport::Tcp(TcpStates::default()),
                Transport::Udp => ByTransport::Udp(UdpStates::default()),
            };
        }
    }

    /// The TCP-only states, if this is a TCP flow.
    fn tcp(&mut self, transport: Transport) -> Option<&mut TcpStates> {
        self.init(transport);
        match &mut self.by_transport {
            ByTransport::Tcp(s) => Some(s),
            _ => None,
        }
    }

    /// The UDP-only states, if this is a UDP flow.
    fn udp(&mut self, transport: Transport) -> Option<&mut UdpStates> {
        self.init(transport);
        match &mut self.by_transport {
            ByTransport::Udp(s) => Some(s),
            _ => None,
        }
    }

    /// The states of the detectors that look at both transports.
    fn any(&mut self, _transport: Transport) -> Option<&mut AnyStates> {
        Some(&mut self.any)
    }
}

registry! {
    bittorrent: bittorrent::PeerWire => tcp,
    dht: dht::Dht => udp,
    utp: utp::Utp => udp,
    tracker: tracker::Tracker => any,
    lsd: lsd::LocalDiscovery => udp,
    gnutella: gnutella::Gnutella => any,
    edonkey: edonkey::Edonkey => any,
    directconnect: directconnect::DirectConnect => tcp,
    soulseek: soulseek::Soulseek => tcp,
    ares: ares::Ares => tcp,
    fasttrack: fasttrack::Fasttrack => tcp,
    mse: mse::Mse => tcp,
    vuze_dht: vuze_dht::VuzeDht => udp,
    webseed: webseed::WebSeed => tcp,
    thunder: thunder::Thunder => any,
    ppstream: ppstream::Ppstream => udp,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_group_matches_its_detectors_interest() {
        for (name, group, interest) in Detectors::default().groups() {
            assert_eq!(
                group, interest,
                "{name}: registry group and interest differ"
            );
        }
    }

    #[test]
    fn the_retired_mask_has_a_bit_for_every_detector() {
        assert!(DETECTOR_NAMES.len() <= 32);
    }

    #[test]
    fn tcp_and_udp_states_share_storage() {
        use std::mem::size_of;
        let both = size_of::<TcpStates>().max(size_of::<UdpStates>());
        assert!(size_of::<DetectorStates>() <= both + size_of::<AnyStates>() + 8);
    }
}
