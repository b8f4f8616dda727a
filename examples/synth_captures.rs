//! Writes the synthetic edge-case captures (see `captures/README.md`):
//! `cargo run --example synth_captures -- captures/`.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "captures".into()));
    for c in p2pguard::synth::edge_case_captures() {
        let path = dir.join(c.name);
        p2pguard::synth::write_pcap(&path, c.link, &c.frames)?;
        println!("{}: {} frames, {}", path.display(), c.frames.len(), c.about);
    }
    Ok(())
}
