//! p2pguard finds peer-to-peer file-sharing traffic in packet captures and
//! on live links.
//!
//! The library is the pipeline, packets flowing one way:
//! [`capture`] (files, standard input) -> [`decode`] (any link type, never
//! panics) -> [`flow`] (bidirectional flows, timeouts in packet time) ->
//! [`detect`] (signature rules and structural detectors, giving a verdict)
//! -> [`output`] (summary, JSON lines, CSV, pcap of P2P flows).
//! [`pipeline`] ties decode, flow and detect together; it sees bytes, a
//! link type and a timestamp, never a file, a socket or the clock.

#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod analyze;
pub mod capture;
pub mod config;
pub mod decode;
pub mod detect;
pub mod enforce;
pub mod flow;
pub mod output;
pub mod pipeline;
pub mod policy;
mod prefetch;
pub mod synth;
pub mod timestamp;

pub use timestamp::{Duration, Timestamp};
