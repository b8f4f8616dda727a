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

#[path = "stdio_buffer.rs"]
mod stdio_buffer;
use stdio_buffer::stdio_buffer;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let usage = "usage: pcap-baseline [--stdio-buffer BYTES] FILE";
    let mut args = std::env::args().skip(1);
    let mut buffer_size = None;
    let mut path = None;
    while let Some(a) = args.next() {
        if a == "--stdio-buffer" {
            let n: usize = args.next().ok_or(usage)?.parse()?;
            buffer_size = Some(n);
        } else if path.is_none() {
            path = Some(a);
        } else {
            return Err(usage.into());
        }
    }
    let path = path.ok_or(usage)?;
    // Declared first, so that it is dropped after the capture (whose
    // stream may read into it until it is closed): not a needless late
    // initialisation, whatever clippy says.
    #[allow(clippy::needless_late_init)]
    let _buffer;
    let mut cap = pcap::Capture::from_file(&path)?;
    _buffer = buffer_size.map(|n| stdio_buffer(&cap, n)).transpose()?;
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
