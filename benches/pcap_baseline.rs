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
    let mut cap = pcap::Capture::from_file(&path)?;
    let _buffer = buffer_size.map(|n| stdio_buffer(&cap, n)).transpose()?;
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

/// Gives the capture's stream a buffer of `n` bytes (returned, to outlive
/// the stream), as p2pguard does: flushed first (for a seekable input that
/// moves the offset back to the stream's position), then `setvbuf`.
#[allow(unsafe_code)]
fn stdio_buffer(
    cap: &pcap::Capture<pcap::Offline>,
    n: usize,
) -> Result<Box<[u8]>, Box<dyn std::error::Error>> {
    unsafe extern "C" {
        fn pcap_file(p: *mut std::ffi::c_void) -> *mut libc::FILE;
    }
    let mut buffer = vec![0u8; n].into_boxed_slice();
    // SAFETY: the handle is a live offline capture; its stream is checked
    // for null; the buffer is kept by the caller until after the capture is
    // closed.
    let ok = unsafe {
        let stream = pcap_file(cap.as_ptr().cast());
        !stream.is_null()
            && libc::fflush(stream) == 0
            && libc::setvbuf(stream, buffer.as_mut_ptr().cast(), libc::_IOFBF, n) == 0
    };
    if !ok {
        return Err("cannot set the stream's buffer".into());
    }
    Ok(buffer)
}
