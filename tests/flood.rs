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
            let at = start_s * 1_000_000_000 + f.ts.as_nanos().saturating_sub(t0);
            frames.push((at, f.data.to_vec(), f.wire_len));
        }
    }
    frames.sort_by_key(|f| f.0);
    frames
}

/// Writes the recordings, with the flood mixed in if `flood`, in time
/// order; returns the frames written.
fn write_capture(path: &Path, flood: bool) -> u64 {
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
    for i in 0..if flood { FLOOD_FLOWS } else { 0 } {
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

/// Whether a flow record is one of the flood's (10.0.0.0/8 to
/// 198.18.0.0/15).
fn is_flood(flow: &serde_json::Value) -> bool {
    let ip = |k: &str| flow[k].as_str().and_then(|s| s.parse::<IpAddr>().ok());
    let src = matches!(ip("src_ip"), Some(IpAddr::V4(a)) if a.octets()[0] == 10);
    let dst = matches!(ip("dst_ip"), Some(IpAddr::V4(a)) if a.octets()[..2] == [198, 18] || a.octets()[..2] == [198, 19]);
    src || dst
}

/// Per P2P conversation (unordered endpoint pair), the evidence of the
/// protocol itself (the endpoint cache and host behaviour left out) over
/// all its flow records.
fn structural_evidence(
    lines: &[serde_json::Value],
) -> std::collections::HashMap<(String, String, String), HashSet<String>> {
    let mut by_pair: std::collections::HashMap<_, HashSet<String>> = Default::default();
    for flow in lines.iter().filter(|l| l["event"] == "flow") {
        if flow["protocol"].is_null() || is_flood(flow) {
            continue;
        }
        let key = pair(
            flow["transport"].as_str().unwrap(),
            &endpoint(
                flow["src_ip"].as_str().unwrap(),
                flow["src_port"].as_u64().unwrap(),
            ),
            &endpoint(
                flow["dst_ip"].as_str().unwrap(),
                flow["dst_port"].as_u64().unwrap(),
            ),
        );
        let found = by_pair.entry(key).or_default();
        for e in flow["evidence"].as_array().unwrap() {
            let e = e.as_str().unwrap();
            if !e.starts_with("cache.") && !e.starts_with("behaviour.") {
                found.insert(e.to_string());
            }
        }
    }
    by_pair
}

fn parse(report: &str) -> Vec<serde_json::Value> {
    report
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
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
    let flood_path = dir.path().join("flood.pcap");
    let alone_path = dir.path().join("recordings.pcap");
    let started = std::time::Instant::now();
    let frames = write_capture(&flood_path, true);
    write_capture(&alone_path, false);
    eprintln!("flood: captures written in {:?}", started.elapsed());
    let max = MAX_FLOWS.to_string();

    // The recordings alone, at the same times: the footprint of the binary
    // without the flood, and what detection finds in them undisturbed.
    let (report, idle_kib) = run_measured(
        &[
            "--max-flows",
            &max,
            "--p2p-only",
            alone_path.to_str().unwrap(),
        ],
        &dir.path().join("alone.jsonl"),
    );
    let undisturbed = structural_evidence(&parse(&report));
    let want = p2p_truth();
    let named_alone: HashSet<_> = undisturbed.keys().cloned().collect();
    eprintln!(
        "flood: without it, {} P2P conversations named, with {} pieces of the protocols' own evidence",
        undisturbed.len(),
        undisturbed.values().map(HashSet::len).sum::<usize>()
    );
    assert!(
        want.is_subset(&named_alone),
        "not every P2P conversation is named even without the flood: {:?}",
        want.difference(&named_alone).collect::<Vec<_>>()
    );

    for threads in ["1", "2"] {
        let started = std::time::Instant::now();
        // Only the flows named P2P are written (the stats line counts all).
        let (report, peak_kib) = run_measured(
            &[
                "--max-flows",
                &max,
                "--threads",
                threads,
                "--p2p-only",
                flood_path.to_str().unwrap(),
            ],
            &dir.path().join(format!("flood-{threads}.jsonl")),
        );
        eprintln!(
            "flood: {threads} thread(s), analysed in {:?}",
            started.elapsed()
        );
        let lines = parse(&report);
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

        // Memory: the footprint without the flood plus the flow cap's worth
        // of flows at the table's own bytes per flow (with room for the
        // allocator), far below the 2 million flows' worth an unbounded
        // table would hold.
        let per_flow = table["bytes_per_flow"].as_u64().unwrap();
        assert!(per_flow <= 256, "{per_flow} bytes per flow");
        let bound_kib = idle_kib + MAX_FLOWS * per_flow * 2 / 1024 + 16 * 1024;
        let unbounded_kib = FLOOD_FLOWS * per_flow / 1024;
        eprintln!(
            "flood: {threads} thread(s): {frames} packets, peak {peak} flows, {evicted} evicted; \
             peak RSS {} MiB (without the flood {} MiB, bound {} MiB, an unbounded table alone {} MiB)",
            peak_kib / 1024,
            idle_kib / 1024,
            bound_kib / 1024,
            unbounded_kib / 1024
        );
        assert!(
            peak_kib <= bound_kib,
            "peak RSS {peak_kib} KiB over the bound {bound_kib} KiB"
        );

        // Detection: every P2P conversation is still found by the protocol's
        // own evidence, all that was found without the flood (not merely
        // named from the endpoint cache), and nothing of the flood is named.
        let flooded = structural_evidence(&lines);
        for (conversation, evidence) in &undisturbed {
            let under_flood = flooded.get(conversation).cloned().unwrap_or_default();
            assert!(
                evidence.is_subset(&under_flood),
                "{threads} thread(s): {conversation:?}: {evidence:?} without the flood, \
                 {under_flood:?} with it"
            );
        }
        let flood_named = lines
            .iter()
            .filter(|l| l["event"] == "flow" && is_flood(l))
            .count();
        assert_eq!(flood_named, 0, "flood flows named P2P");
    }
}

/// Runs `p2pguard analyze -f jsonl` with `args`; returns its report and its
/// standard error.
fn run_jsonl(args: &[&str]) -> (Vec<serde_json::Value>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_p2pguard"))
        .args(["analyze", "-q", "-f", "jsonl"])
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "p2pguard {args:?}: {}", out.status);
    let report = String::from_utf8(out.stdout).unwrap();
    (parse(&report), String::from_utf8(out.stderr).unwrap())
}

/// The flow records of the TCP conversation between `a` and `b`.
fn records_of(
    lines: &[serde_json::Value],
    (a, b): (SocketAddr, SocketAddr),
) -> Vec<&serde_json::Value> {
    let want = pair("tcp", &a.to_string(), &b.to_string());
    lines
        .iter()
        .filter(|l| l["event"] == "flow" && l["transport"] == "tcp")
        .filter(|l| {
            let ep =
                |ip: &str, port: &str| endpoint(l[ip].as_str().unwrap(), l[port].as_u64().unwrap());
            pair("tcp", &ep("src_ip", "src_port"), &ep("dst_ip", "dst_port")) == want
        })
        .collect()
}

/// A flood made of flows picked to land in the flow table of one
/// encrypted BitTorrent connection, as a sender could pick them if it knew
/// the hash that splits flows between the 64 tables: with that hash's seed
/// it evicts the connection after 1/64 of the flood the flow cap needs,
/// and by default (the seed taken from the input's first packet, which the
/// sender does not know) it spreads and evicts nothing.
#[test]
fn a_flood_aimed_at_the_table_of_one_flow_evicts_it_only_under_a_known_seed() {
    use p2pguard::decode::{self, Transport};
    use p2pguard::flow::{Endpoint, FlowKey};
    use p2pguard::pipeline::SHARDS;

    const KNOWN_SEED: u64 = 0x5eed;
    const MAX: u64 = 6_400; // 100 flows a table
    const AIMED: u64 = 400;
    let dir = tempfile::tempdir().unwrap();
    let recording = root().join("captures/bt-mse-tcp.pcap");

    // The encrypted connection: the one the protocol's own evidence names
    // as MSE in the recording alone.
    let (alone, _) = run_jsonl(&[recording.to_str().unwrap()]);
    let mse = alone
        .iter()
        .find(|l| {
            l["event"] == "flow"
                && l["evidence"]
                    .as_array()
                    .is_some_and(|e| e.iter().any(|e| e == "bittorrent.mse"))
        })
        .expect("an MSE connection in the recording");
    let addr = |ip: &str, port: &str| {
        SocketAddr::new(
            mse[ip].as_str().unwrap().parse().unwrap(),
            mse[port].as_u64().unwrap() as u16,
        )
    };
    let conn = (addr("src_ip", "src_port"), addr("dst_ip", "dst_port"));
    let ep = |a: SocketAddr| Endpoint::new(a.ip(), a.port());
    let table = |seed: u64, transport, a, b| {
        FlowKey::shard_hash(seed, transport, ep(a), ep(b)) % SHARDS as u64
    };
    let target = table(KNOWN_SEED, Transport::Tcp, conn.0, conn.1);

    // UDP flows from 10.0.0.0/8 to 198.18.0.0/15, kept if they land in the
    // connection's table under the known seed.
    let mut aimed = Vec::new();
    for i in 0u32.. {
        let src = SocketAddr::new(
            Ipv4Addr::from(0x0a00_0000 | (i >> 8)).into(),
            1024 + (i & 0xff) as u16,
        );
        let dst = SocketAddr::new(Ipv4Addr::new(198, 18, 0, 1).into(), 53_000);
        if table(KNOWN_SEED, Transport::Udp, src, dst) == target {
            let ip = synth::ip_packet(src, dst, L4::Udp, &[0x42; 32]);
            aimed.push(synth::frame(LinkType::ETHERNET, &ip, &[]));
            if aimed.len() as u64 == AIMED {
                break;
            }
        }
    }

    // The recording with the aimed flood right after the connection's
    // first payload packet, before the other side's answer.
    let mut frames = Vec::new();
    let mut cap = CaptureFile::open(recording.to_str().unwrap()).unwrap();
    while let Some(f) = cap.next_frame().unwrap() {
        frames.push(synth::CapturedFrame {
            ts: f.ts,
            data: f.data.to_vec(),
            wire_len: f.wire_len,
        });
    }
    let at = frames
        .iter()
        .position(|f| {
            decode::decode(LinkType::ETHERNET, &f.data).is_ok_and(|p| {
                let (s, d) = (
                    SocketAddr::new(p.src, p.src_port),
                    SocketAddr::new(p.dst, p.dst_port),
                );
                !p.payload.is_empty() && ((s, d) == conn || (d, s) == conn)
            })
        })
        .expect("the connection's first payload packet");
    let after = frames[at].ts.0;
    let flood = aimed
        .into_iter()
        .enumerate()
        .map(|(k, data)| synth::CapturedFrame {
            ts: Timestamp(after + 1 + k as u64),
            wire_len: data.len() as u32,
            data,
        });
    frames.splice(at + 1..at + 1, flood);
    let path = dir.path().join("aimed.pcap");
    synth::write_pcap(&path, LinkType::ETHERNET, &frames).unwrap();

    let max = MAX.to_string();
    let path = path.to_str().unwrap();
    let evicted = |lines: &[serde_json::Value]| {
        lines.last().unwrap()["flow_table"]["evicted"]
            .as_u64()
            .unwrap()
    };
    // How each of the connection's records ended, and its evidence.
    let shown = |records: &[&serde_json::Value]| {
        let shown = records
            .iter()
            .map(|r| format!("{} {}", r["end"], r["evidence"]));
        shown.collect::<Vec<_>>().join("; ")
    };
    let seed = KNOWN_SEED.to_string();
    for threads in ["1", "2"] {
        // The seed the flood was made for: the connection is evicted.
        let known_seed = [
            "--flow-hash-seed",
            &seed,
            "-t",
            threads,
            "--max-flows",
            &max,
            path,
        ];
        let (known, _) = run_jsonl(&known_seed);
        let records = records_of(&known, conn);
        let ends: Vec<&str> = records.iter().map(|r| r["end"].as_str().unwrap()).collect();
        eprintln!(
            "aimed flood, {threads} thread(s), the seed it was made for: {} flows evicted, \
             the connection's records: {}",
            evicted(&known),
            shown(&records)
        );
        assert!(
            ends.contains(&"evicted"),
            "{threads} thread(s): the aimed flood did not evict the connection: {ends:?}"
        );

        // The seed taken from the first packet: the same flood spreads over
        // the tables.
        let (own, stderr) = run_jsonl(&["-t", threads, "--max-flows", &max, path]);
        let records = records_of(&own, conn);
        eprintln!(
            "aimed flood, {threads} thread(s), the seed taken from the input: {} flows evicted, \
             the connection's records: {}",
            evicted(&own),
            shown(&records)
        );
        assert_eq!(evicted(&own), 0, "{stderr}");
        assert_eq!(records.len(), 1, "the connection was split: {records:?}");
        assert!(
            records[0]["evidence"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e == "bittorrent.mse"),
            "{:?}",
            records[0]
        );
    }
}
