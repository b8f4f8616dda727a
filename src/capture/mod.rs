//! Capture sources: where frames come from. Only this layer (and the
//! outputs that write files) touches libpcap; the pipeline sees bytes, a
//! link type and a timestamp.

mod file;

pub use file::{CaptureError, CaptureFile, Frame, sniff_format};
