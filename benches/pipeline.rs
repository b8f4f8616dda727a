//! Micro benchmarks of the detection core on packets held in memory: decode
//! alone, and the whole pipeline (decode, flow table, detection) over the
//! project's own captures. Each benchmark asserts the counts it produces,
//! so a fast wrong answer cannot pass for a win.
//!
//! `cargo bench --bench pipeline`

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use p2pguard::capture::CaptureFile;
use p2pguard::decode::{LinkType, decode};
use p2pguard::detect::DetectConfig;
use p2pguard::detect::rules::{RuleSet, builtin_sources};
use p2pguard::flow::FlowConfig;
use p2pguard::pipeline::Pipeline;
use p2pguard::timestamp::Timestamp;

struct Loaded {
    link: LinkType,
    frames: Vec<(Timestamp, Vec<u8>, u32)>,
}

fn load(name: &str) -> Loaded {
    let path = format!("{}/captures/{name}", env!("CARGO_MANIFEST_DIR"));
    let mut cap = CaptureFile::open(&path).expect("capture");
    let link = cap.link_type();
    let mut frames = Vec::new();
    while let Some(f) = cap.next_frame().expect("readable") {
        frames.push((f.ts, f.data.to_vec(), f.wire_len));
    }
    Loaded { link, frames }
}

fn benches(c: &mut Criterion) {
    let rules = RuleSet::load_with(builtin_sources(), &[]).unwrap();
    let mut group = c.benchmark_group("pipeline");
    for (name, want_p2p, want_flows) in [
        ("bt-tcp-plain.pcap", 6, 6),
        ("bt-dht.pcap", 4, 4),
        ("background.pcap", 0, 15),
    ] {
        let cap = load(name);
        let bytes: u64 = cap.frames.iter().map(|f| f.1.len() as u64).sum();
        group.throughput(Throughput::Bytes(bytes));
        group.bench_function(format!("decode/{name}"), |b| {
            b.iter(|| {
                let ok = cap
                    .frames
                    .iter()
                    .filter(|f| decode(cap.link, &f.1).is_ok())
                    .count();
                assert_eq!(ok, cap.frames.len());
                ok
            })
        });
        group.bench_function(format!("whole/{name}"), |b| {
            b.iter(|| {
                let mut p = Pipeline::new(FlowConfig::default(), DetectConfig::new(rules.clone()));
                let (mut flows, mut p2p) = (0, 0);
                let mut count = |e: p2pguard::pipeline::Event| {
                    if let p2pguard::pipeline::Event::FlowEnded(r) = e {
                        flows += 1;
                        p2p += usize::from(r.is_p2p());
                    }
                };
                for (ts, data, len) in &cap.frames {
                    p.process(*ts, cap.link, data, *len, &mut count);
                }
                p.finish(&mut count);
                assert_eq!((p2p, flows), (want_p2p, want_flows), "{name}");
                flows
            })
        });
    }
    group.finish();
}

criterion_group!(pipeline, benches);
criterion_main!(pipeline);
