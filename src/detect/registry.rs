//! The one place that lists the structural detectors. Adding a protocol is
//! one new file in `protocols/` plus one line here.

use super::cache::Learnt;
use super::protocols::{
    bittorrent, dht, edonkey, gnutella, lsd, mse, ppstream, thunder, tracker, utp, vuze_dht,
    webseed,
};
use super::{Detector, Evidence, FactSink, Facts, PacketView, Probe};

macro_rules! registry {
    ($($field:ident: $ty:ty),+ $(,)?) => {
        /// Every detector's per-flow state, side by side: fixed size, no
        /// allocation.
        #[derive(Clone, Copy, Debug, Default)]
        pub struct DetectorStates {
            $($field: <$ty as Detector>::State,)+
        }

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
            /// `retired` and is not asked again for this flow.
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
                        if interest.transport.is_some_and(|t| t != view.transport) {
                            *retired |= bit;
                        } else if view.index <= interest.max_payload_packets {
                            let mut sink = FactSink::with_learnt(facts, view.direction, learnt);
                            match self.$field.inspect(&mut states.$field, view, &mut sink) {
                                Probe::Match(e) => on_evidence(e),
                                Probe::NeedMore => {}
                                Probe::NotMine => *retired |= bit,
                            }
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
        }
    };
}

registry! {
    bittorrent: bittorrent::PeerWire,
    dht: dht::Dht,
    utp: utp::Utp,
    tracker: tracker::Tracker,
    lsd: lsd::LocalDiscovery,
    gnutella: gnutella::Gnutella,
    edonkey: edonkey::Edonkey,
    mse: mse::Mse,
    vuze_dht: vuze_dht::VuzeDht,
    webseed: webseed::WebSeed,
    thunder: thunder::Thunder,
    ppstream: ppstream::Ppstream,
}
