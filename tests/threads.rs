//! `--threads`: the report is the same, byte for byte and in the same
//! order, whatever the number of threads: over every shared capture and
//! every capture of the project's own, with a policy (so decisions are
//! reported too), one file at a time and all in one run.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use p2pguard::analyze::{AnalyzeOptions, analyze};
use p2pguard::detect::DetectConfig;
use p2pguard::detect::rules::{RuleSet, builtin_sources};
use p2pguard::flow::FlowConfig;
use p2pguard::output::JsonLinesWriter;
use p2pguard::policy::Policy;
use p2pguard::timestamp::Duration;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn report(inputs: &[PathBuf], threads: usize, flows: &FlowConfig, policy: &Arc<Policy>) -> String {
    report_with_pcap(inputs, threads, flows, policy, None)
}

fn report_with_pcap(
    inputs: &[PathBuf],
    threads: usize,
    flows: &FlowConfig,
    policy: &Arc<Policy>,
    pcap_out: Option<PathBuf>,
) -> String {
    let options = AnalyzeOptions {
        inputs: inputs
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect(),
        threads,
        flows: flows.clone(),
        detect: DetectConfig::new(RuleSet::load_with(builtin_sources(), &[]).unwrap()),
        pcap_out,
        pcap_queue_bytes: 1 << 20,
        pcap_queue_wait: Duration::from_secs(1),
        policy: Some(Arc::clone(policy)),
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

fn captures(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.retain(|p| p.extension().is_some_and(|e| e == "pcap" || e == "pcapng"));
    files.sort();
    files
}

fn shared_corpus() -> Option<PathBuf> {
    let dir = std::env::var_os("P2PGUARD_SHARED_CAPTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("../shared/captures"));
    let corpus = dir.join("corpus");
    if corpus.is_dir() {
        Some(corpus)
    } else {
        eprintln!(
            "!! SKIPPED the shared captures: not at {} (set P2PGUARD_SHARED_CAPTURES)",
            corpus.display()
        );
        None
    }
}

fn assert_same(inputs: &[PathBuf], flows: &FlowConfig, policy: &Arc<Policy>) -> usize {
    let one = report(inputs, 1, flows, policy);
    for threads in [2, 3, 8] {
        let many = report(inputs, threads, flows, policy);
        if many != one {
            let line = one
                .lines()
                .zip(many.lines())
                .position(|(a, b)| a != b)
                .unwrap_or(one.lines().count().min(many.lines().count()));
            let what = match inputs {
                [one] => one.display().to_string(),
                all => format!("{} captures in one run", all.len()),
            };
            panic!(
                "{what}: {threads} threads differ from 1 at line {}:\n 1: {}\n {threads}: {}",
                line + 1,
                one.lines().nth(line).unwrap_or("<none>"),
                many.lines().nth(line).unwrap_or("<none>")
            );
        }
    }
    one.lines().count()
}

#[test]
fn the_report_does_not_depend_on_the_number_of_threads() {
    let policy = Arc::new(Policy::from_file(&root().join("rules/policy.example.yaml")).unwrap());
    let flows = FlowConfig::default();
    let mut files = captures(&root().join("captures"));
    if let Some(corpus) = shared_corpus() {
        files.extend(captures(&corpus));
    }
    let mut lines = 0;
    for f in &files {
        lines += assert_same(std::slice::from_ref(f), &flows, &policy);
    }
    // All in one run: flows and the endpoint cache span the inputs.
    lines += assert_same(&files, &flows, &policy);
    // A small flow table: eviction must not depend on the threads either.
    let small = FlowConfig {
        max_flows: 200,
        ..FlowConfig::default()
    };
    lines += assert_same(&files, &small, &policy);
    eprintln!(
        "{} captures: the same {lines} report lines with 1, 2, 3 and 8 threads",
        files.len()
    );
    assert!(files.len() >= 21, "the project's own captures are missing");
}

#[test]
fn the_p2p_capture_does_not_depend_on_the_number_of_threads() {
    let policy = Arc::new(Policy::from_file(&root().join("rules/policy.example.yaml")).unwrap());
    let files = captures(&root().join("captures"));
    let dir = tempfile::tempdir().unwrap();
    let mut written = Vec::new();
    for threads in [1, 2, 3] {
        let path = dir.path().join(format!("p2p-{threads}.pcap"));
        let flows = FlowConfig::default();
        let r = report_with_pcap(&files, threads, &flows, &policy, Some(path.clone()));
        written.push((threads, r, std::fs::read(&path).unwrap()));
    }
    let (_, report_one, pcap_one) = &written[0];
    assert!(pcap_one.len() > 100_000, "the P2P capture is nearly empty");
    for (threads, report, pcap) in &written[1..] {
        assert_eq!(report, report_one, "{threads} threads: the report differs");
        assert!(
            pcap == pcap_one,
            "{threads} threads: the -w capture differs"
        );
    }
}
