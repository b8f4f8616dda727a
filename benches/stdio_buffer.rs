//! The stream buffer of the macro benchmark's libpcap loops
//! (`pcap_baseline.rs`, `flow_count.rs`), set as p2pguard sets its own
//! (`src/capture/file.rs`).

/// Gives the capture's stream a buffer of `n` bytes (returned, to outlive
/// the stream), as p2pguard does: flushed first (for a seekable input that
/// moves the offset back to the stream's position), then `setvbuf`.
#[allow(unsafe_code)]
pub fn stdio_buffer(
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
