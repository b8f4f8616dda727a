//! The bare flow counter of `make bench`: libpcap reads every packet (as in
//! `pcap_baseline.rs`), p2pguard's decoder decodes it, and a plain hash map
//! (hashbrown) keyed by p2pguard's flow key (the endpoint pair both
//! directions share, and the transport) keeps the least a flow record
//! holds: first and last time, packets and bytes each way. Nothing else: no
//! timeouts, no detection, no report. On a capture with many flows it shows
//! what a plain map of the flows costs by itself, before any inspection. It
//! is not a floor under p2pguard: it never ends a flow (it holds every flow
//! of the capture at once), its map grows from empty, rehashing as it goes,
//! and it fetches nothing ahead, where p2pguard's table fetches what a
//! look-up reads at once.
//!
//! `cargo run --release --example flow-count -- [--stdio-buffer BYTES] FILE`
//!
//! Prints "N packets, F flows, P packets in flows, longest S s" (F:
//! distinct flows, so a flow that ends and comes back is one here, two in
//! p2pguard's report; P: the packets decoded).

#[path = "libpcap_loop.rs"]
mod libpcap_loop;

use p2pguard::decode::{self, LinkType};
use p2pguard::flow::{Endpoint, FlowKey};

/// What each flow keeps (48 bytes, besides its key).
#[derive(Clone, Copy, Debug, Default)]
struct Counts {
    first_us: u64,
    last_us: u64,
    packets: [u64; 2],
    bytes: [u64; 2],
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut input = libpcap_loop::open("usage: flow-count [--stdio-buffer BYTES] FILE")?;
    let (cap, path) = (&mut input.cap, &input.path);
    let link = LinkType(cap.get_datalink().0);
    let mut flows: hashbrown::HashMap<FlowKey, Counts> = hashbrown::HashMap::new();
    let mut packets = 0u64;
    loop {
        let p = match cap.next_packet() {
            Ok(p) => p,
            Err(pcap::Error::NoMorePackets) => break,
            Err(e) => return Err(format!("{path}: {e}").into()),
        };
        packets += 1;
        let Ok(d) = decode::decode(link, p.data) else {
            continue;
        };
        let us = (p.header.ts.tv_sec as u64).wrapping_mul(1_000_000) + p.header.ts.tv_usec as u64;
        // p2pguard's flow key: the endpoint pair both directions share.
        let src = Endpoint::new(d.src, d.src_port);
        let dst = Endpoint::new(d.dst, d.dst_port);
        let (key, src_is_lo) = FlowKey::new(d.transport, src, dst);
        let side = usize::from(!src_is_lo);
        let c = flows.entry(key).or_insert(Counts {
            first_us: us,
            ..Counts::default()
        });
        c.last_us = us;
        c.packets[side] += 1;
        c.bytes[side] += u64::from(p.header.len);
    }
    // Read back, so that the counts are the work's result.
    let in_flows: u64 = flows.values().map(|c| c.packets[0] + c.packets[1]).sum();
    let longest = flows
        .values()
        .map(|c| c.last_us.saturating_sub(c.first_us))
        .max();
    println!(
        "{packets} packets, {} flows, {in_flows} packets in flows, longest {:.3} s",
        flows.len(),
        longest.unwrap_or(0) as f64 / 1e6
    );
    Ok(())
}
