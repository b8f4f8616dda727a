//! Capture files (pcap or pcapng, told apart by their magic number, never by
//! their name) and standard input, read through libpcap.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use pcap::{Capture, Offline, Precision};

use crate::decode::LinkType;
use crate::timestamp::Timestamp;

/// Why a capture could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// The file does not exist or cannot be opened.
    #[error("{name}: cannot open: {source}")]
    Open {
        /// The path.
        name: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is empty.
    #[error("{name}: empty file, not a pcap or pcapng capture")]
    Empty {
        /// The path.
        name: String,
    },
    /// The file does not start with a pcap or pcapng magic number.
    #[error("{name}: not a pcap or pcapng file (it starts with {magic})")]
    NotACapture {
        /// The path.
        name: String,
        /// The first bytes, described.
        magic: String,
    },
    /// libpcap refused the file or stream.
    #[error("{name}: {message}")]
    Pcap {
        /// The path.
        name: String,
        /// libpcap's message, explained where it is cryptic.
        message: String,
    },
}

/// The capture file formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Classic pcap, microsecond timestamps.
    Pcap,
    /// Classic pcap, nanosecond timestamps.
    PcapNano,
    /// pcapng.
    Pcapng,
}

/// Tells the format from the first four bytes of a file.
pub fn sniff_format(magic: [u8; 4]) -> Option<Format> {
    match magic {
        [0xd4, 0xc3, 0xb2, 0xa1] | [0xa1, 0xb2, 0xc3, 0xd4] => Some(Format::Pcap),
        [0x4d, 0x3c, 0xb2, 0xa1] | [0xa1, 0xb2, 0x3c, 0x4d] => Some(Format::PcapNano),
        [0x0a, 0x0d, 0x0d, 0x0a] => Some(Format::Pcapng),
        _ => None,
    }
}

/// One frame read from a capture.
#[derive(Clone, Copy, Debug)]
pub struct Frame<'a> {
    /// Capture timestamp.
    pub ts: Timestamp,
    /// The captured bytes (possibly fewer than were on the wire).
    pub data: &'a [u8],
    /// The frame's length on the wire.
    pub wire_len: u32,
}

/// An open capture file or standard input.
pub struct CaptureFile {
    name: String,
    capture: Capture<Offline>,
    link: LinkType,
    size: Option<u64>,
    packets: u64,
}

impl CaptureFile {
    /// Opens `name`, or standard input for `-`.
    pub fn open(name: &str) -> Result<CaptureFile, CaptureError> {
        let mut size = None;
        if name != "-" {
            let path = Path::new(name);
            let mut file = File::open(path).map_err(|source| CaptureError::Open {
                name: name.into(),
                source,
            })?;
            size = file.metadata().ok().map(|m| m.len());
            let mut magic = [0u8; 4];
            let mut got = 0;
            while got < 4 {
                match file.read(&mut magic[got..]) {
                    Ok(0) => break,
                    Ok(n) => got += n,
                    Err(source) => {
                        return Err(CaptureError::Open {
                            name: name.into(),
                            source,
                        });
                    }
                }
            }
            if got == 0 {
                return Err(CaptureError::Empty { name: name.into() });
            }
            if got < 4 || sniff_format(magic).is_none() {
                return Err(CaptureError::NotACapture {
                    name: name.into(),
                    magic: describe_magic(&magic[..got]),
                });
            }
        }
        // libpcap reads both formats (and "-" as standard input); ask it for
        // nanosecond timestamps whatever the file holds.
        let capture = Capture::from_file_with_precision(name, Precision::Nano).map_err(|e| {
            CaptureError::Pcap {
                name: name.into(),
                message: explain(&e.to_string()),
            }
        })?;
        let link = LinkType(capture.get_datalink().0);
        unlocked_stdio(&capture);
        Ok(CaptureFile {
            name: name.into(),
            capture,
            link,
            size,
            packets: 0,
        })
    }

    /// The name as given.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The link type of the frames.
    pub fn link_type(&self) -> LinkType {
        self.link
    }

    /// File size in bytes (`None` for standard input).
    pub fn size(&self) -> Option<u64> {
        self.size
    }

    /// Frames read so far.
    pub fn packets(&self) -> u64 {
        self.packets
    }

    /// The next frame, `Ok(None)` at the end. An error (a truncated or
    /// corrupt file) ends this input; frames already read stand.
    pub fn next_frame(&mut self) -> Result<Option<Frame<'_>>, CaptureError> {
        match self.capture.next_packet() {
            Ok(p) => {
                self.packets += 1;
                let secs = u64::try_from(p.header.ts.tv_sec).unwrap_or(0);
                let nanos = u32::try_from(p.header.ts.tv_usec).unwrap_or(0);
                Ok(Some(Frame {
                    ts: Timestamp::from_parts(secs, nanos),
                    data: p.data,
                    wire_len: p.header.len.max(p.header.caplen),
                }))
            }
            Err(pcap::Error::NoMorePackets) => Ok(None),
            Err(e) => Err(CaptureError::Pcap {
                name: self.name.clone(),
                message: format!(
                    "{} (after {} packets; those were analysed)",
                    explain(&e.to_string()),
                    self.packets
                ),
            }),
        }
    }
}

/// Tells glibc that the stream libpcap reads the capture through needs no
/// lock of its own. libpcap reads a file with two `fread` calls a packet,
/// and once a process has a second thread glibc locks and unlocks the
/// stream in each (two atomic operations): with `--threads 2` that doubled
/// the reading thread's time in `fread`, a tenth of a second on the
/// benchmark capture. The lock only guards against two threads using one
/// stream at once, which a `CaptureFile` rules out: it reads only through
/// `&mut self`. For standard input (`-`) the stream is the process's
/// `stdin`, which stays so after the capture is closed: nothing else in
/// p2pguard reads it through C's stdio. Elsewhere than glibc, nothing is
/// done.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn unlocked_stdio(capture: &Capture<Offline>) {
    use std::ffi::{c_int, c_void};
    unsafe extern "C" {
        /// libpcap: the stream of an offline capture.
        fn pcap_file(p: *mut c_void) -> *mut c_void;
        /// glibc, `<stdio_ext.h>`.
        fn __fsetlocking(stream: *mut c_void, kind: c_int) -> c_int;
    }
    const FSETLOCKING_BYCALLER: c_int = 2;
    // SAFETY: the handle is a live offline capture (it is only dropped with
    // `capture`); pcap_file returns its stream or null, and __fsetlocking
    // only sets a flag on a valid stream.
    unsafe {
        let stream = pcap_file(capture.as_ptr().cast());
        if !stream.is_null() {
            __fsetlocking(stream, FSETLOCKING_BYCALLER);
        }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn unlocked_stdio(_capture: &Capture<Offline>) {}

fn describe_magic(bytes: &[u8]) -> String {
    let hex: Vec<String> = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let text = bytes.iter().all(|b| b.is_ascii_graphic() || *b == b' ');
    if text {
        format!(
            "{} = {:?}, which looks like text",
            hex.join(" "),
            String::from_utf8_lossy(bytes)
        )
    } else {
        hex.join(" ")
    }
}

/// Turns libpcap's terse messages into ones that say what is wrong.
fn explain(message: &str) -> String {
    let m = message.trim_start_matches("libpcap error: ");
    if m.contains("truncated dump file") || m.contains("truncated pcapng dump file") {
        format!("truncated capture file: {m}")
    } else if m.contains("unknown file format") {
        "not a pcap or pcapng file (unknown file format)".to_string()
    } else {
        m.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffs_every_magic_number() {
        assert_eq!(sniff_format([0xd4, 0xc3, 0xb2, 0xa1]), Some(Format::Pcap));
        assert_eq!(sniff_format([0xa1, 0xb2, 0xc3, 0xd4]), Some(Format::Pcap));
        assert_eq!(
            sniff_format([0x4d, 0x3c, 0xb2, 0xa1]),
            Some(Format::PcapNano)
        );
        assert_eq!(
            sniff_format([0xa1, 0xb2, 0x3c, 0x4d]),
            Some(Format::PcapNano)
        );
        assert_eq!(sniff_format([0x0a, 0x0d, 0x0d, 0x0a]), Some(Format::Pcapng));
        assert_eq!(sniff_format(*b"GET "), None);
    }

    #[test]
    fn describes_text_files() {
        assert!(describe_magic(b"hell").contains("looks like text"));
        assert_eq!(describe_magic(&[0, 1]), "00 01");
    }
}
