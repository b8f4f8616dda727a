//! Structural detectors, one file per protocol (listed in `registry.rs`).

pub mod ares;
pub mod bittorrent;
pub mod dht;
pub mod directconnect;
pub mod edonkey;
pub mod fasttrack;
pub mod gnutella;
mod http;
pub mod lsd;
pub mod mse;
mod peer_id;
mod peers;
pub mod ppstream;
pub mod soulseek;
pub mod thunder;
pub mod tracker;
pub mod utp;
pub mod vuze_dht;
pub mod webseed;

#[cfg(test)]
pub(crate) mod testing;
