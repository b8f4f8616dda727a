//! The command line: exit codes (0 ok, 1 runtime failure, 2 usage or rule
//! error), the messages users see, and every output option.

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use predicates::prelude::*;

fn p2pguard() -> Command {
    let mut c = Command::cargo_bin("p2pguard").unwrap();
    c.current_dir(env!("CARGO_MANIFEST_DIR"));
    c
}

fn capture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("captures")
        .join(name)
}

#[test]
fn help_explains_with_examples() {
    p2pguard()
        .arg("--help")
        .assert()
        .success()
        .stdout(predicate::str::contains("Examples:"))
        .stdout(predicate::str::contains("Exit status"));
    p2pguard()
        .args(["analyze", "--help"])
        .assert()
        .success()
        .stdout(predicate::str::contains("--write-p2p"))
        .stdout(predicate::str::contains("tcpdump"));
    p2pguard()
        .args(["rules", "check", "--help"])
        .assert()
        .success();
}

#[test]
fn usage_errors_exit_2() {
    p2pguard().args(["analyze"]).assert().code(2);
    p2pguard()
        .args(["analyze", "--bogus", "x.pcap"])
        .assert()
        .code(2);
    p2pguard()
        .args(["analyze", "--max-flows", "0", "captures/bt-dht.pcap"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--max-flows"));
    p2pguard().args(["analyze", "-", "-"]).assert().code(2);
}

#[test]
fn summarises_a_capture() {
    p2pguard()
        .args(["analyze", "captures/bt-dht.pcap"])
        .assert()
        .success()
        .stdout(predicate::str::contains("By protocol"))
        .stdout(predicate::str::contains("bittorrent"))
        .stdout(predicate::str::contains("Top P2P hosts"))
        .stdout(predicate::str::contains("Decode errors: 0"));
}

#[test]
fn a_missing_file_is_named_and_the_rest_still_analysed() {
    p2pguard()
        .args([
            "analyze",
            "-f",
            "jsonl",
            "no-such.pcap",
            "captures/bt-dht.pcap",
        ])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("no-such.pcap: cannot open"))
        .stdout(predicate::str::contains("\"protocol\":\"bittorrent\""))
        .stdout(predicate::str::contains("\"event\":\"stats\""));
}

#[test]
fn a_text_file_is_not_a_capture() {
    p2pguard()
        .args(["analyze", "Cargo.toml"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "Cargo.toml: not a pcap or pcapng file",
        ));
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.pcap");
    std::fs::write(&empty, b"").unwrap();
    p2pguard()
        .arg("analyze")
        .arg(&empty)
        .assert()
        .code(1)
        .stderr(predicate::str::contains("empty file"));
}

#[test]
fn a_truncated_file_keeps_what_was_read() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(capture("bt-dht.pcap")).unwrap();
    let cut = dir.path().join("cut.pcap");
    std::fs::write(&cut, &bytes[..bytes.len() / 2 + 7]).unwrap();
    let out = p2pguard()
        .args(["analyze", "-f", "jsonl"])
        .arg(&cut)
        .assert()
        .code(1)
        .stderr(predicate::str::contains("truncated"))
        .get_output()
        .stdout
        .clone();
    let text = String::from_utf8(out).unwrap();
    let stats: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert!(stats["packets"].as_u64().unwrap() > 100, "{stats}");
    assert!(
        stats["inputs"][0]["error"]
            .as_str()
            .unwrap()
            .contains("truncated")
    );
    assert!(text.contains("\"protocol\":\"bittorrent\""));
}

#[test]
fn broken_rules_are_reported_with_file_and_line_and_nothing_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "rules:\n  - id: my.rule\n    protocol: bittorent\n    pattern: '\\xZZ'\n    description: x\n",
    )
    .unwrap();
    p2pguard()
        .args(["rules", "check"])
        .arg(&bad)
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "bad.yaml:3:5: protocol: unknown protocol `bittorent`; did you mean `bittorrent`?",
        ));
    p2pguard()
        .args(["analyze", "--rules"])
        .arg(&bad)
        .arg("captures/bt-dht.pcap")
        .assert()
        .code(2)
        .stdout(predicate::str::is_empty())
        .stderr(predicate::str::contains("invalid rules"));
    p2pguard()
        .args(["rules", "check", "rules/"])
        .assert()
        .success()
        .stdout(predicate::str::contains("rules OK"));
    p2pguard().args(["rules", "check"]).assert().success();
    p2pguard()
        .args(["rules", "list"])
        .assert()
        .success()
        .stdout(predicate::str::contains("bittorrent.handshake-prefix"));
}

#[test]
fn thread_times_go_to_standard_error_and_change_nothing_else() {
    let run = |times: Option<&str>| {
        let mut c = p2pguard();
        c.args([
            "analyze",
            "-q",
            "-t",
            "3",
            "-f",
            "jsonl",
            "captures/bt-mixed.pcap",
        ]);
        c.env_remove("P2PGUARD_THREAD_TIMES");
        if let Some(v) = times {
            c.env("P2PGUARD_THREAD_TIMES", v);
        }
        let o = c.output().unwrap();
        assert!(o.status.success());
        (o.stdout, String::from_utf8(o.stderr).unwrap())
    };
    let (plain, quiet) = run(None);
    let (timed, times) = run(Some("1"));
    assert_eq!(plain, timed, "the report changed");
    assert!(quiet.is_empty(), "{quiet}");
    // A line per thread, the reading one first.
    let lines: Vec<&str> = times.lines().collect();
    assert_eq!(lines.len(), 3, "{times}");
    assert!(
        lines[0].starts_with("P2PGUARD_THREAD_TIMES: thread 0 (reads): reading "),
        "{times}"
    );
    assert!(
        lines[1].starts_with("P2PGUARD_THREAD_TIMES: thread 1: "),
        "{times}"
    );
    assert!(
        lines[2].starts_with("P2PGUARD_THREAD_TIMES: thread 2: "),
        "{times}"
    );
    assert!(lines.iter().all(|l| l.contains(" s")), "{times}");
    assert!(lines[1].contains("flows "), "{times}");
    // "0" is off.
    let (_, off) = run(Some("0"));
    assert!(off.is_empty(), "{off}");
    // One thread has no threads to time.
    let one = p2pguard()
        .args(["analyze", "-q", "-t", "1", "captures/bt-mixed.pcap"])
        .env("P2PGUARD_THREAD_TIMES", "1")
        .output()
        .unwrap();
    assert!(one.status.success() && one.stderr.is_empty());
}

#[test]
fn thread_times_to_a_closed_standard_error_still_leave_the_report() {
    use std::process::Stdio;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("report.jsonl");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_p2pguard"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["analyze", "-q", "-t", "2", "-f", "jsonl", "-o"])
        .arg(&out)
        .arg("captures/bt-mixed.pcap")
        .env("P2PGUARD_THREAD_TIMES", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Nothing reads standard error: the times are written to a closed pipe.
    drop(child.stderr.take());
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
    let plain = p2pguard()
        .args([
            "analyze",
            "-q",
            "-t",
            "2",
            "-f",
            "jsonl",
            "captures/bt-mixed.pcap",
        ])
        .env_remove("P2PGUARD_THREAD_TIMES")
        .output()
        .unwrap();
    assert!(!plain.stdout.is_empty());
    assert_eq!(std::fs::read(&out).unwrap(), plain.stdout);
}

#[test]
fn reads_standard_input_like_a_file() {
    let from_file = p2pguard()
        .args(["analyze", "-f", "jsonl", "captures/bt-dht.pcap"])
        .output()
        .unwrap();
    let from_stdin = p2pguard()
        .args(["analyze", "-f", "jsonl", "-"])
        .pipe_stdin(capture("bt-dht.pcap"))
        .unwrap()
        .output()
        .unwrap();
    assert!(from_stdin.status.success());
    let flows = |o: &[u8]| {
        String::from_utf8_lossy(o)
            .lines()
            .filter(|l| l.contains("\"event\":\"flow\""))
            .map(String::from)
            .collect::<Vec<_>>()
    };
    assert_eq!(flows(&from_file.stdout), flows(&from_stdin.stdout));
    assert!(!flows(&from_stdin.stdout).is_empty());
    // And `-o -` is standard output, not a file named `-`.
    let dir = tempfile::tempdir().unwrap();
    let to_dash = p2pguard()
        .current_dir(dir.path())
        .args(["analyze", "-f", "jsonl", "-o", "-"])
        .arg(capture("bt-dht.pcap"))
        .output()
        .unwrap();
    assert!(to_dash.status.success());
    assert_eq!(flows(&to_dash.stdout), flows(&from_file.stdout));
    assert!(!dir.path().join("-").exists());
}

#[test]
fn tells_pcapng_by_its_magic_number_not_its_name() {
    // A minimal pcapng file (section header, interface, one enhanced packet)
    // named .pcap, carrying a BitTorrent handshake.
    let frame = {
        let mut hs = b"\x13BitTorrent protocol".to_vec();
        hs.extend_from_slice(&[0; 48]);
        p2pguard::synth::ethernet(
            "10.0.0.1:5000",
            "10.0.0.2:6881",
            p2pguard::synth::TCP_DATA,
            &hs,
        )
    };
    let block = |kind: u32, body: &[u8]| {
        let len = (12 + body.len()) as u32;
        let mut b = kind.to_le_bytes().to_vec();
        b.extend_from_slice(&len.to_le_bytes());
        b.extend_from_slice(body);
        b.extend_from_slice(&len.to_le_bytes());
        b
    };
    let mut shb = 0x1a2b_3c4du32.to_le_bytes().to_vec();
    shb.extend_from_slice(&[1, 0, 0, 0]);
    shb.extend_from_slice(&u64::MAX.to_le_bytes());
    let mut idb = vec![1, 0, 0, 0];
    idb.extend_from_slice(&65535u32.to_le_bytes());
    let mut epb = vec![0u8; 4];
    epb.extend_from_slice(&[0; 8]);
    epb.extend_from_slice(&(frame.len() as u32).to_le_bytes());
    epb.extend_from_slice(&(frame.len() as u32).to_le_bytes());
    epb.extend_from_slice(&frame);
    while !epb.len().is_multiple_of(4) {
        epb.push(0);
    }
    let mut file = block(0x0a0d_0d0a, &shb);
    file.extend(block(1, &idb));
    file.extend(block(6, &epb));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("really-pcapng.pcap");
    std::fs::write(&path, file).unwrap();
    p2pguard()
        .args(["analyze", "-f", "jsonl"])
        .arg(&path)
        .assert()
        .success()
        .stdout(predicate::str::contains("bittorrent.handshake"));
}

#[test]
fn writes_csv_with_a_header() {
    let out = p2pguard()
        .args(["analyze", "-f", "csv", "captures/bt-udp-tracker.pcap"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let mut rows = csv::Reader::from_reader(text.as_bytes());
    let header = rows.headers().unwrap().clone();
    assert_eq!(&header[0], "id");
    assert!(header.iter().any(|h| h == "protocol"));
    let records: Vec<_> = rows.records().map(|r| r.unwrap()).collect();
    assert_eq!(records.len(), 3);
    let proto = header.iter().position(|h| h == "protocol").unwrap();
    assert!(records.iter().all(|r| &r[proto] == "bittorrent"));
    p2pguard()
        .args([
            "analyze",
            "-f",
            "summary",
            "--p2p-only",
            "captures/bt-dht.pcap",
        ])
        .assert()
        .code(2);
}

#[test]
fn writes_every_packet_of_the_p2p_flows_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("p2p.pcap");
    p2pguard()
        .args(["analyze", "-q", "-w"])
        .arg(&out)
        .arg("captures/synthetic-vlan.pcap")
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "Packets written to the P2P pcap: 18",
        ));
    // 22 frames: two conversations of 7 TCP + 2 DHT (P2P) + 2 DNS (not).
    // The output must be exactly the P2P frames, in input order.
    let frames = |path: &str| {
        let mut cap = p2pguard::capture::CaptureFile::open(path).unwrap();
        let link = cap.link_type();
        let mut out = Vec::new();
        while let Some(f) = cap.next_frame().unwrap() {
            let p = p2pguard::decode::decode(link, f.data).unwrap();
            out.push((f.ts, f.data.to_vec(), p.src_port == 53 || p.dst_port == 53));
        }
        out
    };
    let input = frames(capture("synthetic-vlan.pcap").to_str().unwrap());
    let written = frames(out.to_str().unwrap());
    let expected: Vec<_> = input.into_iter().filter(|f| !f.2).collect();
    assert_eq!(written.len(), 18);
    assert_eq!(written, expected);
}

#[test]
fn policies_are_checked_and_applied_offline() {
    p2pguard()
        .args(["policy", "check", "rules/policy.example.yaml"])
        .assert()
        .success()
        .stdout(predicate::str::contains("OK, 4 rule(s)"));
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "default: log\nrules:\n  - name: a\n    match:\n      src: [10.0.0.0/33]\n    action: block\n").unwrap();
    p2pguard()
        .args(["policy", "check"])
        .arg(&bad)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("bad.yaml:5:"))
        .stderr(predicate::str::contains(
            "bad address or CIDR `10.0.0.0/33`",
        ));
    // Nothing is analysed with a broken policy.
    p2pguard()
        .args(["analyze", "--policy"])
        .arg(&bad)
        .arg("captures/bt-dht.pcap")
        .assert()
        .code(2)
        .stdout(predicate::str::is_empty());

    let policy = dir.path().join("p.yaml");
    std::fs::write(
        &policy,
        "default: log\nrules:\n  - name: throttle-dht\n    match: { transport: udp }\n    action: throttle\n    rate: 1mbit\n  - name: block-peers\n    match: { min_confidence: unidirectional }\n    action: block\n",
    )
    .unwrap();
    let out = p2pguard()
        .args(["analyze", "-f", "jsonl", "--policy"])
        .arg(&policy)
        .arg("captures/bt-dht.pcap")
        .output()
        .unwrap();
    assert!(out.status.success());
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let verdicts: Vec<&serde_json::Value> =
        lines.iter().filter(|l| l["event"] == "verdict").collect();
    let flows: Vec<&serde_json::Value> = lines.iter().filter(|l| l["event"] == "flow").collect();
    // Each decision is reported once, when it is made or changes (a flow
    // first named by host behaviour is logged, then blocked once its
    // handshake is seen); a flow's record carries the last one.
    assert!(verdicts.len() >= flows.len());
    for f in &flows {
        let want = if f["transport"] == "udp" {
            "throttle"
        } else {
            "block"
        };
        assert_eq!(f["action"], want, "{f}");
        let decision = verdicts.iter().rev().find(|v| v["id"] == f["id"]).unwrap();
        assert_eq!(decision["action"], want);
        if want == "block" {
            assert!(f["dropped_packets"].as_u64().unwrap() > 0, "{f}");
        } else {
            assert_eq!(decision["rate"], "1mbit");
            assert!(f["delayed_packets"].as_u64().unwrap() > 0, "{f}");
        }
    }
}

#[test]
fn long_running_modes_explain_what_is_wrong() {
    p2pguard()
        .args([
            "inline",
            "--in",
            "nosuch0",
            "--out",
            "nosuch1",
            "--stats-every",
            "0",
        ])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("no interface named `nosuch0`"));
    p2pguard()
        .args(["inline", "--in", "lo", "--out", "lo"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("two different interfaces"));
    p2pguard()
        .args(["live", "-i", "nosuch0", "--stats-every", "0"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("nosuch0"));
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "rules:\n  - name: x\n    action: throttle\n").unwrap();
    // A broken policy stops every mode before it touches the network.
    for mode in [
        &["nfqueue", "--queue", "7"][..],
        &["inline", "--in", "a", "--out", "b"],
        &["live", "-i", "lo"],
    ] {
        p2pguard()
            .args(mode)
            .arg("--policy")
            .arg(&bad)
            .assert()
            .code(2)
            .stderr(predicate::str::contains("needs a `rate`"));
    }
    p2pguard()
        .args(["nfqueue", "--mark", "banana"])
        .assert()
        .code(2);
}

#[test]
fn every_cross_flow_table_is_bounded_by_its_option_and_counts_what_it_drops() {
    let out = p2pguard()
        .args([
            "analyze",
            "-q",
            "-f",
            "jsonl",
            "--max-flows",
            "64",
            "--cache-size",
            "2",
            "--behaviour-hosts",
            "1",
        ])
        .arg(capture("bt-mixed.pcap"))
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let text = String::from_utf8(out).unwrap();
    let stats: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    let table = &stats["flow_table"];
    assert!(table["peak"].as_u64().unwrap() <= 64, "{table}");
    assert!(table["evicted"].as_u64().unwrap() > 0, "{table}");
    let cache = &stats["endpoint_cache"];
    assert!(cache["size"].as_u64().unwrap() <= 2, "{cache}");
    assert!(cache["evicted"].as_u64().unwrap() > 0, "{cache}");
    let behaviour = &stats["behaviour"];
    assert!(behaviour["hosts"].as_u64().unwrap() <= 1, "{behaviour}");
    assert!(behaviour["endpoints"].as_u64().unwrap() <= 2, "{behaviour}");
    assert!(behaviour["evicted"].as_u64().unwrap() > 0, "{behaviour}");
}

/// Writes a pcap of one ARP request (not IP, so no flow) for 10.0.0.`last`.
fn arp_capture(path: &Path, last: u8) {
    use p2pguard::synth::{CapturedFrame, arp_request, write_pcap};
    let data = arp_request([10, 0, 0, 1].into(), [10, 0, 0, last].into());
    let frame = CapturedFrame {
        ts: p2pguard::Timestamp::from_secs(1_600_000_000),
        wire_len: data.len() as u32,
        data,
    };
    write_pcap(path, p2pguard::decode::LinkType::ETHERNET, &[frame]).unwrap();
}

/// `analyze` takes the seed of the hash that splits flows between the flow
/// tables from the input's first frame (unless given), so a run that
/// evicts flows, over inputs whose packet times go backwards between files,
/// gives the same report every time and on any number of threads, also
/// when that frame is not IP; another first frame, or another seed given,
/// changes which flows share a table, so which are evicted.
#[test]
fn the_same_input_gives_the_same_report_evictions_included() {
    let dir = tempfile::tempdir().unwrap();
    let mut inputs: Vec<PathBuf> =
        std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("captures"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "pcap"))
            .collect();
    inputs.sort();
    assert!(inputs.len() >= 20, "the project's captures are missing");
    let report = |first: Option<&Path>, extra: &[&str]| {
        let out = p2pguard()
            .args(["analyze", "-q", "-f", "jsonl", "--max-flows", "64"])
            .args(extra)
            .args(first)
            .args(&inputs)
            .assert()
            .success()
            .get_output()
            .stdout
            .clone();
        String::from_utf8(out).unwrap()
    };
    let one = report(None, &["-t", "1"]);
    let stats: serde_json::Value = serde_json::from_str(one.lines().last().unwrap()).unwrap();
    let evicted = stats["flow_table"]["evicted"].as_u64().unwrap();
    assert!(evicted > 100, "too few evictions to tell: {evicted}");
    for threads in ["1", "2", "3"] {
        assert!(
            report(None, &["-t", threads]) == one,
            "{threads} thread(s): another report"
        );
    }
    // A first frame that is not IP still gives one seed on any thread count;
    // a byte more or less in it gives another.
    // (One file, rewritten: the report names its inputs.)
    let arp = dir.path().join("arp.pcap");
    arp_capture(&arp, 1);
    let arp_one = report(Some(&arp), &["-t", "1"]);
    assert!(report(Some(&arp), &["-t", "2"]) == arp_one);
    arp_capture(&arp, 2);
    let arp_two = report(Some(&arp), &["-t", "2"]);
    assert!(arp_two != arp_one, "the first frame made no difference");
    // A seed given.
    let seeded: Vec<String> = ["1", "2"]
        .iter()
        .map(|s| report(None, &["-t", "2", "--flow-hash-seed", s]))
        .collect();
    assert!(seeded[0] != seeded[1], "two seeds evicted the same flows");
    assert!(seeded[0] == report(None, &["-t", "1", "--flow-hash-seed", "1"]));
}
