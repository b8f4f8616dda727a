//! Live operation: the long-running modes (`live`, `inline`, `nfqueue`)
//! and what they share. This is the only part of p2pguard, with capture,
//! that reads the clock, opens sockets and reacts to signals; the pipeline
//! it drives stays pure.

mod afpacket;
pub mod eventlog;
pub mod inline;
pub mod live;
pub mod nfqueue;
mod runtime;
pub mod shaper;
pub mod signals;

pub use runtime::{Reloader, Runtime, RuntimeOptions, wall_clock};
