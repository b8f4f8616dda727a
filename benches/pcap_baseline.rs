//! The read-only baseline of `make bench`: a minimal libpcap loop (through
//! the same `pcap` crate p2pguard uses) that reads every packet of a capture
//! and does nothing else. No libpcap-based reader can be faster.
//!
//! `cargo run --release --example pcap-baseline -- FILE`

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args().nth(1).ok_or("usage: pcap-baseline FILE")?;
    let mut cap = pcap::Capture::from_file(&path)?;
    let (mut packets, mut bytes) = (0u64, 0u64);
    loop {
        match cap.next_packet() {
            Ok(p) => {
                packets += 1;
                bytes += u64::from(p.header.len);
            }
            Err(pcap::Error::NoMorePackets) => break,
            Err(e) => return Err(format!("{path}: {e}").into()),
        }
    }
    println!("{packets} packets, {bytes} bytes");
    Ok(())
}
