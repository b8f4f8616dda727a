//! What the macro benchmark's libpcap loops (`pcap_baseline.rs`,
//! `flow_count.rs`) share: their command line, `[--stdio-buffer BYTES]
//! FILE`, and the stream buffer, set as p2pguard sets its own
//! (`src/capture/file.rs`).

/// A capture opened from the command line. The fields drop in order: the
/// capture (which closes its stream) before the buffer its stream reads into.
pub struct Input {
    pub cap: pcap::Capture<pcap::Offline>,
    pub path: String,
    _buffer: Option<Box<[u8]>>,
}

/// Opens the capture the command line names, with a stream buffer of
/// `--stdio-buffer BYTES` if given (else glibc's default); `usage` is the
/// message for a wrong command line.
pub fn open(usage: &str) -> Result<Input, Box<dyn std::error::Error>> {
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
    let cap = pcap::Capture::from_file(&path)?;
    let buffer = buffer_size.map(|n| stdio_buffer(&cap, n)).transpose()?;
    Ok(Input {
        cap,
        path,
        _buffer: buffer,
    })
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
