//! Golden files: the JSON lines output over every capture in `captures/`
//! must match `tests/golden/<capture>.jsonl` exactly, so any change in what
//! is detected, how fast (decided_at_packet) or what is counted shows as a
//! diff. Regenerate on purpose with `UPDATE_GOLDEN=1 cargo test --test
//! golden` and review the diff.

use std::path::{Path, PathBuf};

use p2pguard::analyze::{AnalyzeOptions, analyze};
use p2pguard::detect::DetectConfig;
use p2pguard::detect::rules::{RuleSet, builtin_sources};
use p2pguard::flow::FlowConfig;
use p2pguard::output::JsonLinesWriter;
use p2pguard::timestamp::Duration;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn jsonl(capture: &str) -> String {
    let options = AnalyzeOptions {
        inputs: vec![capture.to_string()],
        threads: 2,
        flows: FlowConfig::default(),
        detect: DetectConfig::new(RuleSet::load_with(builtin_sources(), &[]).unwrap()),
        pcap_out: None,
        pcap_queue_bytes: 0,
        pcap_queue_wait: Duration::from_secs(1),
        policy: None,
    };
    let mut out = Vec::new();
    analyze(
        &options,
        &mut JsonLinesWriter::new(&mut out, false),
        &mut |_| {},
    )
    .unwrap();
    String::from_utf8(out).unwrap()
}

#[test]
fn output_matches_the_golden_files() {
    std::env::set_current_dir(root()).unwrap();
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut captures: Vec<PathBuf> = std::fs::read_dir("captures")
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "pcap"))
        .collect();
    captures.sort();
    assert!(captures.len() >= 10, "the project's captures are missing");
    let mut failed = Vec::new();
    for capture in &captures {
        let name = capture.file_name().unwrap().to_string_lossy().into_owned();
        let got = jsonl(&format!("captures/{name}"));
        let golden = Path::new("tests/golden").join(format!("{name}.jsonl"));
        if update {
            std::fs::write(&golden, &got).unwrap();
            continue;
        }
        let want = std::fs::read_to_string(&golden)
            .unwrap_or_else(|_| panic!("{} is missing: run UPDATE_GOLDEN=1", golden.display()));
        if got != want {
            for (i, (g, w)) in got.lines().zip(want.lines()).enumerate() {
                if g != w {
                    eprintln!("{name} line {}:\n  golden: {w}\n  now:    {g}", i + 1);
                    break;
                }
            }
            if got.lines().count() != want.lines().count() {
                eprintln!(
                    "{name}: {} lines, golden has {}",
                    got.lines().count(),
                    want.lines().count()
                );
            }
            failed.push(name);
        }
    }
    assert!(
        failed.is_empty(),
        "output differs from the golden files for {failed:?}"
    );
}

#[test]
fn output_is_the_same_on_every_run() {
    std::env::set_current_dir(root()).unwrap();
    let a = jsonl("captures/bt-dht.pcap");
    let b = jsonl("captures/bt-dht.pcap");
    assert_eq!(a, b);
}

#[test]
fn the_synthetic_captures_are_what_the_generator_writes() {
    let dir = tempfile::tempdir().unwrap();
    for c in p2pguard::synth::edge_case_captures() {
        let fresh = dir.path().join(c.name);
        p2pguard::synth::write_pcap(&fresh, c.link, &c.frames).unwrap();
        let committed = std::fs::read(root().join("captures").join(c.name)).unwrap_or_else(|_| {
            panic!(
                "captures/{} is missing: cargo run --example synth_captures",
                c.name
            )
        });
        assert!(
            std::fs::read(&fresh).unwrap() == committed,
            "captures/{} differs from the generator: cargo run --example synth_captures",
            c.name
        );
    }
}
