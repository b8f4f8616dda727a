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
    /// The stream's buffer, if [`tune_stdio`] gave it one: declared after
    /// `capture` so that it outlives the stream, closed when `capture` is
    /// dropped.
    _stdio_buffer: Option<Box<[u8]>>,
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
        let stdio_buffer = tune_stdio(&capture);
        Ok(CaptureFile {
            name: name.into(),
            capture,
            _stdio_buffer: stdio_buffer,
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

/// Bytes of the stream's buffer for a regular file: glibc's default is a
/// page (4 KiB), one `read` call for every nine packets of 450 bytes. At
/// 128 KiB the calls are 32 times fewer, and the buffer still fits in a
/// core's cache (1 MiB measured slower than 64-256 KiB).
const STDIO_BUFFER: usize = 128 * 1024;

/// Tunes the C stream libpcap reads the capture through (glibc only;
/// elsewhere nothing is done).
///
/// - No lock. libpcap reads a file with two `fread` calls a packet, and once
///   a process has a second thread glibc locks and unlocks the stream in
///   each (two atomic operations): with `--threads 2` that doubled the
///   reading thread's time in `fread`, a tenth of a second on the benchmark
///   capture. The lock only guards against two threads using one stream at
///   once, which a `CaptureFile` rules out: it reads only through
///   `&mut self`. For standard input (`-`) the stream is the process's
///   `stdin`, which stays so after the capture is closed: nothing else in
///   p2pguard reads it through C's stdio.
/// - For a regular file, a buffer of [`STDIO_BUFFER`] bytes, returned to be
///   kept until the capture is closed: 5% of the run time on the benchmark
///   capture went to `read` calls. libpcap has read the file's header by
///   then, so the stream is first flushed: for a seekable input POSIX
///   defines that as moving the file's offset back to the stream's position
///   and dropping what was buffered, and glibc's `setvbuf` then has no
///   buffered data to lose. A pipe or terminal (standard input) keeps its
///   buffer, which could not be given back that way.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn tune_stdio(capture: &Capture<Offline>) -> Option<Box<[u8]>> {
    use std::ffi::{c_int, c_void};
    unsafe extern "C" {
        /// libpcap: the stream of an offline capture.
        fn pcap_file(p: *mut c_void) -> *mut libc::FILE;
        /// glibc, `<stdio_ext.h>`.
        fn __fsetlocking(stream: *mut libc::FILE, kind: c_int) -> c_int;
    }
    const FSETLOCKING_BYCALLER: c_int = 2;
    // SAFETY: the handle is a live offline capture (it is only dropped with
    // `capture`); pcap_file returns its stream or null, and __fsetlocking
    // only sets a flag on a valid stream.
    let stream = unsafe { pcap_file(capture.as_ptr().cast()) };
    if stream.is_null() {
        return None;
    }
    // SAFETY: as above.
    unsafe { __fsetlocking(stream, FSETLOCKING_BYCALLER) };
    // SAFETY: `stream` is valid; fstat writes only into `st`.
    let regular = unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        libc::fstat(libc::fileno(stream), &mut st) == 0
            && st.st_mode & libc::S_IFMT == libc::S_IFREG
    };
    if !regular {
        return None;
    }
    let mut buffer = vec![0u8; STDIO_BUFFER].into_boxed_slice();
    // SAFETY: `stream` is valid and, once flushed, holds no buffered data;
    // the buffer is returned to the `CaptureFile`, which keeps it until
    // after the stream is closed, and is not touched by Rust meanwhile (a
    // boxed slice does not move its contents).
    let tuned = unsafe {
        libc::fflush(stream) == 0
            && libc::setvbuf(
                stream,
                buffer.as_mut_ptr().cast(),
                libc::_IOFBF,
                buffer.len(),
            ) == 0
    };
    tuned.then_some(buffer)
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn tune_stdio(_capture: &Capture<Offline>) -> Option<Box<[u8]>> {
    None
}

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

    /// A classic pcap file of `frames`, each frame's bytes given by
    /// `frame(i)`, its last record cut short by `cut` bytes.
    fn write_pcap(path: &Path, frames: usize, frame: impl Fn(usize) -> Vec<u8>, cut: usize) {
        let mut out = Vec::new();
        out.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
        out.extend_from_slice(&2u16.to_le_bytes());
        out.extend_from_slice(&4u16.to_le_bytes());
        out.extend_from_slice(&[0; 8]);
        out.extend_from_slice(&65535u32.to_le_bytes());
        out.extend_from_slice(&1u32.to_le_bytes()); // Ethernet
        for i in 0..frames {
            let data = frame(i);
            let len = data.len() as u32;
            out.extend_from_slice(&(i as u32).to_le_bytes());
            out.extend_from_slice(&0u32.to_le_bytes());
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(&data);
        }
        out.truncate(out.len() - cut);
        std::fs::write(path, out).unwrap();
    }

    fn frame_bytes(i: usize) -> Vec<u8> {
        // Sizes from 14 to 1,514 bytes, so that records straddle the
        // stream buffer's refills at every offset.
        let len = 14 + (i * 7919) % 1501;
        (0..len).map(|k| (i * 31 + k) as u8).collect()
    }

    /// With its larger stream buffer, installed after libpcap read the
    /// file's header, every frame of a file several buffers long reads
    /// back whole and in order, and a cut last record is an error after
    /// the frames before it.
    #[test]
    fn reads_every_frame_through_the_tuned_stream() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("frames.pcap");
        let frames = 2_000; // about 1.5 MB, a dozen buffers
        write_pcap(&path, frames, frame_bytes, 0);
        let mut file = CaptureFile::open(path.to_str().unwrap()).unwrap();
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        assert!(file._stdio_buffer.is_some(), "a regular file is tuned");
        for i in 0..frames {
            let f = file.next_frame().unwrap().expect("a frame");
            assert_eq!(f.data, frame_bytes(i).as_slice(), "frame {i}");
            assert_eq!(f.ts, Timestamp::from_parts(i as u64, 0));
        }
        assert!(file.next_frame().unwrap().is_none());

        write_pcap(&path, frames, frame_bytes, 5);
        let mut file = CaptureFile::open(path.to_str().unwrap()).unwrap();
        for i in 0..frames - 1 {
            let f = file.next_frame().unwrap().expect("a frame");
            assert_eq!(f.data, frame_bytes(i).as_slice(), "frame {i}");
        }
        let e = file.next_frame().unwrap_err().to_string();
        assert!(e.contains("after 1999 packets"), "{e}");
    }

    #[test]
    fn describes_text_files() {
        assert!(describe_magic(b"hell").contains("looks like text"));
        assert_eq!(describe_magic(&[0, 1]), "00 01");
    }
}
