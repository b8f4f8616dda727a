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
use p2pguard::output::{CsvWriter, FlowRecord, FlowSink, JsonLinesWriter, RunStats, SummaryWriter};
use p2pguard::pipeline::VerdictEvent;
use p2pguard::policy::Policy;
use p2pguard::timestamp::Duration;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn options(
    inputs: &[PathBuf],
    threads: usize,
    flows: &FlowConfig,
    policy: Option<&Arc<Policy>>,
    pcap_out: Option<PathBuf>,
) -> AnalyzeOptions {
    AnalyzeOptions {
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
        policy: policy.cloned(),
    }
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
    let options = options(inputs, threads, flows, Some(policy), pcap_out);
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

/// The policy every run here applies, so that verdicts are compared too.
fn example_policy() -> Arc<Policy> {
    Arc::new(Policy::from_file(&root().join("rules/policy.example.yaml")).unwrap())
}

/// The project's captures, then the shared ones (if present).
fn all_captures() -> Vec<PathBuf> {
    let mut files = captures(&root().join("captures"));
    if let Some(corpus) = shared_corpus() {
        files.extend(captures(&corpus));
    }
    files
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
    let policy = example_policy();
    let flows = FlowConfig::default();
    let files = all_captures();
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
    let policy = example_policy();
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

#[test]
fn the_csv_report_does_not_depend_on_the_number_of_threads() {
    // Each thread formats the rows of the flows it ends (as for JSON
    // lines); the rows must still come out whole and in order.
    let policy = example_policy();
    let files = all_captures();
    let csv = |threads: usize| {
        let options = options(&files, threads, &FlowConfig::default(), Some(&policy), None);
        let mut out = Vec::new();
        let mut writer = CsvWriter::new(&mut out, false);
        writer.write_header().unwrap();
        analyze(&options, &mut writer, &mut |_| {}).unwrap();
        String::from_utf8(out).unwrap()
    };
    let one = csv(1);
    assert!(
        one.lines().count() > 1000,
        "too few rows: {}",
        one.lines().count()
    );
    for threads in [2, 3] {
        let many = csv(threads);
        let differ = one.lines().zip(many.lines()).position(|(a, b)| a != b);
        assert!(
            many == one,
            "{threads} threads: the CSV differs (first at line {differ:?}; {} against {} lines)",
            many.lines().count(),
            one.lines().count()
        );
    }
}

/// A sink that passes everything on but asks for every flow's record, as
/// a sink that lists all flows does.
struct AllRecords<S>(S);

impl<S: FlowSink> FlowSink for AllRecords<S> {
    fn flow(&mut self, record: &FlowRecord) -> std::io::Result<()> {
        self.0.flow(record)
    }
    fn verdict(&mut self, event: &VerdictEvent) -> std::io::Result<()> {
        self.0.verdict(event)
    }
    fn finish(&mut self, stats: &RunStats) -> std::io::Result<()> {
        self.0.finish(stats)
    }
}

#[test]
fn reports_of_p2p_flows_alone_are_the_same_when_the_others_are_only_counted() {
    // The summary and --p2p-only have the flows not named P2P counted
    // instead of reported; what they print must not change.
    let policy = example_policy();
    let files = all_captures();
    let run = |inputs: &[PathBuf],
               threads: usize,
               policy: Option<&Arc<Policy>>,
               sink: &mut dyn FlowSink| {
        let options = options(inputs, threads, &FlowConfig::default(), policy, None);
        analyze(&options, sink, &mut |_| {})
            .unwrap()
            .pipeline
            .unreported
            .flows
    };
    let mut counted = 0;
    for inputs in files.iter().map(std::slice::from_ref).chain([&files[..]]) {
        for (threads, policy) in [(1, None), (2, None), (2, Some(&policy))] {
            let (mut a, mut b) = (Vec::new(), Vec::new());
            counted += run(inputs, threads, policy, &mut SummaryWriter::new(&mut a, 10));
            assert_eq!(
                run(
                    inputs,
                    threads,
                    policy,
                    &mut AllRecords(SummaryWriter::new(&mut b, 10))
                ),
                0
            );
            assert_eq!(
                String::from_utf8_lossy(&a),
                String::from_utf8_lossy(&b),
                "{inputs:?}: summary"
            );
            let (mut a, mut b) = (Vec::new(), Vec::new());
            run(
                inputs,
                threads,
                policy,
                &mut JsonLinesWriter::new(&mut a, true),
            );
            run(
                inputs,
                threads,
                policy,
                &mut AllRecords(JsonLinesWriter::new(&mut b, true)),
            );
            assert_eq!(
                String::from_utf8_lossy(&a),
                String::from_utf8_lossy(&b),
                "{inputs:?}: --p2p-only"
            );
        }
    }
    // Most flows of these captures are not P2P: they were only counted.
    assert!(
        counted > 1000,
        "only {counted} flows were counted instead of reported"
    );
}

/// A source over recorded frames that goes idle now and then, as a live
/// interface does, and a sink that asks to stop after some chunks.
mod engine {
    use p2pguard::capture::CaptureFile;
    use p2pguard::decode::LinkType;
    use p2pguard::output::RenderRecord;
    use p2pguard::pipeline::parallel::{self, Control, EngineOptions, Frame, Next, Sink, Source};
    use p2pguard::pipeline::{Event, PipelineStats};
    use p2pguard::synth::L4;
    use p2pguard::timestamp::Timestamp;

    use super::*;

    struct Frames {
        frames: Vec<(Timestamp, LinkType, Vec<u8>, u32)>,
        at: usize,
        idle_every: usize,
        idled: bool,
    }

    impl Source for Frames {
        fn next(&mut self, give: &mut dyn FnMut(Frame<'_>)) -> Next {
            if self.at > 0 && self.at.is_multiple_of(self.idle_every) && !self.idled {
                self.idled = true;
                return Next::Idle;
            }
            self.idled = false;
            let Some((ts, link, data, wire_len)) = self.frames.get(self.at) else {
                return Next::End;
            };
            self.at += 1;
            give(Frame {
                ts: *ts,
                link: *link,
                data,
                wire_len: *wire_len,
            });
            Next::Frame
        }
    }

    /// Lists each event as its `Debug` text; with `format`, the worker
    /// threads make a record's text (as they format report lines), so a
    /// record handed over with another's text shows.
    #[derive(Default)]
    struct Collect {
        events: Vec<String>,
        chunks: usize,
        stop_after: Option<usize>,
        format: bool,
    }

    impl Sink for Collect {
        fn event(&mut self, event: Event) {
            self.events.push(match event {
                Event::FlowEnded(r) => format!("{:?}", r),
                Event::Verdict(v) => format!("{:?}", v),
            });
        }
        fn renderer(&self) -> Option<Arc<RenderRecord>> {
            let format = |r: &FlowRecord, out: &mut Vec<u8>| {
                out.extend_from_slice(format!("{r:?}").as_bytes());
                true
            };
            self.format.then(|| Arc::new(format) as Arc<RenderRecord>)
        }
        fn rendered(&mut self, event: Event, rendered: &[u8]) {
            assert!(
                matches!(event, Event::FlowEnded(_)),
                "a verdict was formatted"
            );
            self.events
                .push(String::from_utf8(rendered.to_vec()).unwrap());
        }
        fn chunk_done(&mut self, _stats: &dyn Fn() -> PipelineStats) -> Control {
            self.chunks += 1;
            match self.stop_after {
                Some(n) if self.chunks >= n => Control::Stop,
                _ => Control::Continue,
            }
        }
    }

    type Frames4 = Vec<(Timestamp, LinkType, Vec<u8>, u32)>;

    fn captured() -> Frames4 {
        let mut frames = Vec::new();
        for name in ["bt-mixed.pcap", "bt-mse-swarm.pcap"] {
            let path = root().join("captures").join(name);
            let mut cap = CaptureFile::open(path.to_str().unwrap()).unwrap();
            let link = cap.link_type();
            while let Some(f) = cap.next_frame().unwrap() {
                frames.push((f.ts, link, f.data.to_vec(), f.wire_len));
            }
        }
        frames
    }

    fn run(
        frames: &Frames4,
        flows: &FlowConfig,
        threads: usize,
        (idle_every, stop_after): (usize, Option<usize>),
        format: bool,
    ) -> (Vec<String>, u64) {
        let options = EngineOptions {
            threads,
            flows: flows.clone(),
            detect: DetectConfig::new(RuleSet::load_with(builtin_sources(), &[]).unwrap()),
            policy: None,
        };
        let mut source = Frames {
            frames: frames.clone(),
            at: 0,
            idle_every,
            idled: false,
        };
        let mut sink = Collect {
            stop_after,
            format,
            ..Collect::default()
        };
        let stats = parallel::run(&options, &mut source, &mut sink);
        (sink.events, stats.packets)
    }

    #[test]
    fn idle_sources_and_early_stops_give_the_same_events_on_any_thread_count() {
        let frames = captured();
        let flows = FlowConfig {
            max_flows: 100,
            tcp_opening_timeout: Duration::from_secs(1),
            udp_timeout: Duration::from_secs(2),
            ..FlowConfig::default()
        };
        for (idle_every, stop_after) in [(37, None), (500, None), (101, Some(5)), (1000, Some(2))] {
            let how = (idle_every, stop_after);
            let (one, packets) = run(&frames, &flows, 1, how, false);
            assert!(!one.is_empty() && packets > 0);
            for (threads, format) in [(2, false), (3, false), (2, true), (3, true)] {
                let (many, many_packets) = run(&frames, &flows, threads, how, format);
                let what = format!(
                    "idle every {idle_every}, stop after {stop_after:?}, {threads} threads, \
                     records formatted by the threads: {format}"
                );
                assert_eq!((many.len(), many_packets), (one.len(), packets), "{what}");
                assert!(many == one, "{what}: events differ");
            }
        }
    }

    /// Regression: with three threads or more, a worker's next batch of
    /// flows ended at the end of the input could come in while its last
    /// one was still being reported, and took the place of the last one's
    /// formatted records, so records were written twice or lost.
    #[test]
    fn end_of_input_batches_keep_their_formatted_records_on_3_and_4_threads() {
        // 120,000 flows all open at the end: a few batches a thread.
        let frames: Frames4 = (0..120_000u32)
            .map(|i| {
                let [_, a, b, c] = i.to_be_bytes();
                let src = format!("10.{a}.{b}.{c}:{}", 1024 + i % 1000);
                let data = p2pguard::synth::ethernet(&src, "192.0.2.1:4000", L4::Udp, b"x");
                let ts = Timestamp::from_parts(1_700_000_000, i * 10);
                let len = data.len() as u32;
                (ts, LinkType::ETHERNET, data, len)
            })
            .collect();
        let flows = FlowConfig::default();
        let (one, _) = run(&frames, &flows, 1, (usize::MAX, None), false);
        assert_eq!(one.len(), 120_000);
        for threads in [2, 3, 4] {
            for round in 0..3 {
                let (many, _) = run(&frames, &flows, threads, (usize::MAX, None), true);
                let first = one.iter().zip(&many).position(|(a, b)| a != b);
                assert!(
                    many == one,
                    "{threads} threads, round {round}: {} records, first difference at {first:?}",
                    many.len()
                );
            }
        }
    }
}
