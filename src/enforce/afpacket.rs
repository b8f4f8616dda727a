//! The one place p2pguard calls the OS directly: an `AF_PACKET` socket for
//! the inline bridge that does not see the frames the bridge itself sends.
//!
//! A packet socket bound to an interface receives that interface's outgoing
//! frames too; a bridge would read back every frame it forwarded and loop.
//! Linux (4.20 and later) drops them for a socket with
//! `PACKET_IGNORE_OUTGOING` set. Neither pnet nor libc wrappers offer that
//! option, hence this module's `unsafe`: two plain system calls on a file
//! descriptor this module creates and hands to pnet.

#![allow(unsafe_code)]

use std::io;

/// `SOL_PACKET` option number of `PACKET_IGNORE_OUTGOING`.
const PACKET_IGNORE_OUTGOING: libc::c_int = 23;

/// Socket buffer size asked for: bursts at line rate must not overflow
/// the queue between the kernel and the reader thread.
const BUFFER_BYTES: libc::c_int = 8 << 20;

/// A new `AF_PACKET` raw socket for every protocol that ignores outgoing
/// frames, with large buffers. pnet binds it to the interface and owns (and
/// closes) it.
pub fn socket_ignoring_outgoing() -> io::Result<i32> {
    let protocol = (libc::ETH_P_ALL as u16).to_be() as libc::c_int;
    // SAFETY: socket(2) with constant arguments; the result is checked.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, protocol) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let one: libc::c_int = 1;
    // SAFETY: setsockopt(2) on the descriptor just created, with a pointer
    // to a live c_int and its exact size.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_PACKET,
            PACKET_IGNORE_OUTGOING,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    // Larger buffers are a help, not a requirement: errors are ignored (the
    // kernel caps them at net.core.rmem_max / wmem_max).
    for option in [libc::SO_RCVBUF, libc::SO_SNDBUF] {
        // SAFETY: setsockopt(2) on the descriptor just created, with a
        // pointer to a live c_int and its exact size.
        unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                option,
                (&BUFFER_BYTES as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
    }
    if rc != 0 {
        let err = io::Error::last_os_error();
        // SAFETY: closing the descriptor this function created and owns.
        unsafe { libc::close(fd) };
        return Err(err);
    }
    Ok(fd)
}
