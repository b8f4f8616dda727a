//! Stub.

use crate::detect::{Detector, FactSink, Interest, PacketView, Probe};

/// Stub.
#[derive(Debug, Default)]
pub struct LocalDiscovery;

impl Detector for LocalDiscovery {
    type State = ();
    const NAME: &'static str = "lsd";
    const EVIDENCE: &'static [&'static str] = &[];

    fn interest(&self) -> Interest {
        Interest {
            transport: None,
            max_payload_packets: 0,
        }
    }

    fn inspect(&self, _: &mut (), _: &PacketView<'_>, _: &mut FactSink<'_>) -> Probe {
        Probe::NotMine
    }
}
