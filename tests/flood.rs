//! A flood of distinct 5-tuples (a SYN scan and random UDP probes, two
//! million flows in 20 s of packet time) with real BitTorrent traffic mixed
//! in: p2pguard must hold no more flows than `--max-flows`, stay within the
//! memory that bound implies, count what it evicted, and still name every
//! P2P flow of the recordings.
//!
//! Peak RSS is measured by GNU time (`/usr/bin/time`, Debian's `time`,
//! which `make test` installs), on the release binary.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;

use p2pguard::capture::CaptureFile;
use p2pguard::decode::LinkType;
use p2pguard::synth::{self, L4};
use p2pguard::timestamp::Timestamp;

const FLOOD_FLOWS: u64 = 2_000_000;
const FLOOD_SPAN_NS: u64 = 20_000_000_000;
const MAX_FLOWS: u64 = 50_000;
/// Recordings replayed into the flood, and where in it each starts.
const RECORDINGS: [(&str, u64); 4] = [
    ("bt-tcp-plain.pcap", 2),
    ("bt-dht.pcap", 6),
    ("bt-mse-tcp.pcap", 10),
    ("bt-utp-plain.pcap", 13),
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A frame of the flood: a SYN or a UDP datagram of 20-200 random bytes,
/// from a random address in 10.0.0.0/8 to one in 198.18.0.0/15 (the
/// benchmarking range), every one a new 5-tuple.
fn flood_frame(i: u64, rng: &mut u64) -> Vec<u8> {
    let mut next = || {
        *rng ^= *rng << 13;
        *rng ^= *rng >> 7;
        *rng ^= *rng << 17;
        *rng
    };
    let r = next();
    // The index makes the tuple unique; the random part spreads it.
    let src = Ipv4Addr::from(0x0a00_0000 | ((i as u32) & 0x00ff_ffff));
    let dst = Ipv4Addr::from(0xc612_0000 | ((r as u32) & 0x0001_ffff));
    let sport = 1024 + ((r >> 40) % 60_000) as u16;
    let dport = (r >> 17) as u16 | 1;
    let (src, dst) = (
        SocketAddr::new(IpAddr::V4(src), sport),
        SocketAddr::new(IpAddr::V4(dst), dport),
    );
    let ip = if i.is_multiple_of(2) {
        synth::ip_packet(
            src,
            dst,
            L4::Tcp {
                flags: 0x02,
                seq: r as u32,
            },
            &[],
        )
    } else {
        let len = 20 + (r % 181) as usize;
        let payload: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        synth::ip_packet(src, dst, L4::Udp, &payload)
    };
    synth::frame(LinkType::ETHERNET, &ip, &[])
}

/// The recordings' frames, moved to their start times in the flood.
fn recorded_frames() -> Vec<(u64, Vec<u8>, u32)> {
    let mut frames = Vec::new();
    for (name, start_s) in RECORDINGS {
        let path = root().join("captures").join(name);
        let mut cap = CaptureFile::open(path.to_str().unwrap()).unwrap();
        assert_eq!(cap.link_type(), LinkType::ETHERNET, "{name}");
        let mut first = None;
        while let Some(f) = cap.next_frame().unwrap() {
            let t0 = *first.get_or_insert(f.ts.as_nanos());
            let at = start_s * 1_000_000_000 + (f.ts.as_nanos() - t0);
            frames.push((at, f.data.to_vec(), f.wire_len));
        }
    }
    frames.sort_by_key(|f| f.0);
    frames
}

/// Writes the flood with the recordings mixed in, in time order.
fn write_capture(path: &Path) -> u64 {
    let dead = pcap::Capture::dead_with_precision(pcap::Linktype::ETHERNET, pcap::Precision::Nano)
        .unwrap();
    let mut file = dead.savefile(path).unwrap();
    let mut write = |ns: u64, data: &[u8], len: u32| {
        let ts = Timestamp::from_secs(1_700_000_000).as_nanos() + ns;
        let header = pcap::PacketHeader {
            ts: libc::timeval {
                tv_sec: (ts / 1_000_000_000) as libc::time_t,
                tv_usec: (ts % 1_000_000_000) as libc::suseconds_t,
            },
            caplen: data.len() as u32,
            len,
        };
        file.write(&pcap::Packet::new(&header, data));
    };
    let recorded = recorded_frames();
    let mut recorded = recorded.iter().peekable();
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut written = 0;
    for i in 0..FLOOD_FLOWS {
        let at = i * FLOOD_SPAN_NS / FLOOD_FLOWS;
        while let Some((t, data, len)) = recorded.next_if(|r| r.0 <= at) {
            write(*t, data, *len);
            written += 1;
        }
        let f = flood_frame(i, &mut rng);
        write(at, &f, f.len() as u32);
        written += 1;
    }
    for (t, data, len) in recorded {
        write(*t, data, *len);
        written += 1;
    }
    file.flush().unwrap();
    written
}

/// The P2P conversations of the recordings, as unordered endpoint pairs.
fn p2p_truth() -> HashSet<(String, String, String)> {
    let mut want = HashSet::new();
    for (name, _) in RECORDINGS {
        let truth = root()
            .join("captures")
            .join(name.replace(".pcap", ".truth.tsv"));
        for line in std::fs::read_to_string(truth).unwrap().lines().skip(1) {
            let f: Vec<&str> = line.split('\t').collect();
            if f[3] == "p2p" {
                want.insert(pair(f[0], f[1], f[2]));
            }
        }
    }
    want
}

fn pair(transport: &str, a: &str, b: &str) -> (String, String, String) {
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    (transport.to_string(), lo.to_string(), hi.to_string())
}

fn endpoint(ip: &str, port: u64) -> String {
    if ip.contains(':') {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    }
}

/// Runs p2pguard under GNU time; returns its jsonl report and peak RSS (KiB).
fn run_measured(args: &[&str], out: &Path) -> (String, u64) {
    let usage = out.with_extension("rss");
    let status = Command::new("/usr/bin/time")
        .args(["-f", "%M", "-o"])
        .arg(&usage)
        .arg(env!("CARGO_BIN_EXE_p2pguard"))
        .args(["analyze", "-q", "-f", "jsonl", "-o"])
        .arg(out)
        .args(args)
        .status()
        .expect("GNU time (/usr/bin/time, Debian's `time`) runs p2pguard");
    assert!(status.success(), "p2pguard {args:?}: {status}");
    let rss = std::fs::read_to_string(&usage).unwrap();
    let rss: u64 = rss.trim().lines().last().unwrap().parse().unwrap();
    (std::fs::read_to_string(out).unwrap(), rss)
}

#[test]
fn a_flood_of_new_flows_stays_within_the_flow_cap_and_p2p_is_still_named() {
    if !Path::new("/usr/bin/time").exists() {
        assert!(
            std::env::var_os("P2PGUARD_E2E_REQUIRED").is_none_or(|v| v != "1"),
            "GNU time (/usr/bin/time) is missing; `make test` installs it"
        );
        eprintln!("\n!!! SKIPPED the flood test: /usr/bin/time (Debian's `time`) is missing !!!\n");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let capture = dir.path().join("flood.pcap");
    let started = std::time::Instant::now();
    let frames = write_capture(&capture);
    eprintln!("flood: capture written in {:?}", started.elapsed());
    let capture = capture.to_str().unwrap();

    // The same binary on a small capture: its footprint without the flood.
    let small = root().join("captures/bt-dht.pcap");
    let (_, idle_kib) = run_measured(&[small.to_str().unwrap()], &dir.path().join("small.jsonl"));

    let max = MAX_FLOWS.to_string();
    let started = std::time::Instant::now();
    // Only the flows named P2P are written (the stats line counts all).
    let (report, peak_kib) = run_measured(
        &["--max-flows", &max, "--threads", "2", "--p2p-only", capture],
        &dir.path().join("flood.jsonl"),
    );
    eprintln!("flood: analysed in {:?}", started.elapsed());
    let lines: Vec<serde_json::Value> = report
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let stats = lines.last().unwrap();
    assert_eq!(stats["event"], "stats");
    assert_eq!(stats["packets"].as_u64(), Some(frames));
    let table = &stats["flow_table"];
    let (peak, evicted) = (
        table["peak"].as_u64().unwrap(),
        table["evicted"].as_u64().unwrap(),
    );
    assert!(peak <= MAX_FLOWS, "{peak} flows held, cap {MAX_FLOWS}");
    assert!(
        evicted >= FLOOD_FLOWS - MAX_FLOWS,
        "only {evicted} flows evicted: {table}"
    );

    // Memory: the idle footprint plus the flow cap's worth of flows at the
    // table's own bytes per flow (with room for the allocator), far below
    // the 2 million flows' worth an unbounded table would hold.
    let per_flow = table["bytes_per_flow"].as_u64().unwrap();
    assert!(per_flow <= 256, "{per_flow} bytes per flow");
    let bound_kib = idle_kib + MAX_FLOWS * per_flow * 2 / 1024 + 16 * 1024;
    let unbounded_kib = FLOOD_FLOWS * per_flow / 1024;
    eprintln!(
        "flood: {frames} packets, peak {peak} flows, {evicted} evicted; peak RSS {} MiB \
         (idle {} MiB, bound {} MiB, an unbounded table alone {} MiB)",
        peak_kib / 1024,
        idle_kib / 1024,
        bound_kib / 1024,
        unbounded_kib / 1024
    );
    assert!(
        peak_kib <= bound_kib,
        "peak RSS {peak_kib} KiB over the bound {bound_kib} KiB"
    );

    // Detection: every P2P conversation of the recordings is named in at
    // least one of its flow records, and nothing of the flood is.
    let mut named = HashSet::new();
    let mut flood_named = 0;
    for flow in lines.iter().filter(|l| l["event"] == "flow") {
        if flow["protocol"].is_null() {
            continue;
        }
        let src_ip = flow["src_ip"].as_str().unwrap();
        if src_ip.starts_with("10.") || src_ip.starts_with("198.1") {
            flood_named += 1;
        }
        named.insert(pair(
            flow["transport"].as_str().unwrap(),
            &endpoint(src_ip, flow["src_port"].as_u64().unwrap()),
            &endpoint(
                flow["dst_ip"].as_str().unwrap(),
                flow["dst_port"].as_u64().unwrap(),
            ),
        ));
    }
    let want = p2p_truth();
    let missed: Vec<_> = want.difference(&named).collect();
    assert!(
        missed.is_empty(),
        "{} of {} P2P conversations not named under the flood: {missed:?}",
        missed.len(),
        want.len()
    );
    assert_eq!(flood_named, 0, "flood flows named P2P");
}
