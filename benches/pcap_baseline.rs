//! The read-only baseline of `make bench`: a minimal libpcap loop (through
//! the same `pcap` crate p2pguard uses) that reads every packet of a capture
//! and does nothing else. No libpcap-based reader can be faster with the
//! same stream buffer.
//!
//! `cargo run --release --example pcap-baseline -- [--stdio-buffer BYTES] FILE`
//!
//! By default libpcap reads through glibc's stream with its default buffer
//! (a page). p2pguard gives the stream a larger one for a regular file
//! (`src/capture/file.rs`); `--stdio-buffer BYTES` does the same here, so
//! that the benchmark can show the ceiling for that setting too.

#[path = "libpcap_loop.rs"]
mod libpcap_loop;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut input = libpcap_loop::open("usage: pcap-baseline [--stdio-buffer BYTES] FILE")?;
    let (cap, path) = (&mut input.cap, &input.path);
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
