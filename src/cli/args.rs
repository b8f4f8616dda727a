//! Command-line arguments, as parsed by clap. `run.rs` turns them into a
//! validated configuration before any packet is read.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Finds peer-to-peer file-sharing traffic (BitTorrent with DHT, uTP and
/// trackers; Gnutella; eDonkey/Kad) in packet captures.
#[derive(Debug, Parser)]
#[command(
    name = "p2pguard",
    version,
    about,
    long_about = "Finds peer-to-peer file-sharing traffic (BitTorrent with its DHT, uTP and \
trackers; Gnutella and Gnutella2; eDonkey/eMule and Kad) in packet captures, and \
reports every flow with the protocol, how sure the verdict is, and the evidence.",
    after_help = "Examples:
  p2pguard analyze capture.pcapng                 summary of P2P flows and hosts
  p2pguard analyze --format jsonl a.pcap b.pcap   one JSON object per flow
  p2pguard analyze -w p2p-only.pcap capture.pcap  save the packets of P2P flows
  tcpdump -i eth0 -w - | p2pguard analyze -       read from standard input
  p2pguard rules check rules/                     validate signature files

Exit status: 0 ok, 1 an input or output failed (the rest was still analysed),
2 bad usage or invalid rules."
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Analyse capture files and report the flows.
    #[command(
        long_about = "Reads pcap and pcapng files (told apart by their content, not their name) \
or standard input (`-`), tracks every TCP and UDP flow, and names the P2P ones. \
Several inputs are read in order as one capture, so flows spanning rotated files \
are tracked as one.",
        after_help = "Examples:
  p2pguard analyze capture.pcapng
      Summary: totals, P2P flows per protocol, top P2P hosts, decode errors.
  p2pguard analyze --format jsonl --p2p-only a.pcap b.pcap > flows.jsonl
      One JSON object per P2P flow, then one {\"event\":\"stats\"} object.
  p2pguard analyze --format csv -o flows.csv capture.pcap
      Every flow as a CSV row.
  p2pguard analyze -w p2p.pcap capture.pcap
      Also write every packet of the P2P flows (including those before the
      verdict) to p2p.pcap.
  tcpdump -i eth0 -w - 'tcp or udp' | p2pguard analyze -
      Analyse live traffic captured by tcpdump.
  p2pguard analyze --rules my-rules/ capture.pcap
      Add your own signature files to the built-in ones."
    )]
    Analyze(AnalyzeArgs),
    /// Capture on an interface and log P2P flows and policy decisions as
    /// they happen (nothing is enforced).
    #[command(after_help = "Examples:
  p2pguard live -i eth0
      Log P2P flows on eth0 to standard output, a stats line every 10 s.
  p2pguard live -i eth0 -f 'not port 22' --policy policy.yaml --log /var/log/p2pguard.jsonl
      Log what the policy decides, to a file (SIGHUP reopens it and reloads the policy).
Stop with SIGINT or SIGTERM: open flows are flushed to the log, exit status 0.")]
    Live(LiveArgs),
    /// Run as a transparent bridge between two interfaces, enforcing the
    /// policy: frames are forwarded unchanged unless blocked or throttled.
    #[command(after_help = "Example:
  p2pguard inline --in eth1 --out eth2 --policy policy.yaml --log /var/log/p2pguard.jsonl
Turn receive offloads off on both interfaces first, or frames larger than the MTU arrive
and cannot be forwarded: ethtool -K eth1 gro off gso off tso off lro off (same for eth2).")]
    Inline(InlineArgs),
    /// Enforce the policy on packets iptables/nft sends to a netfilter
    /// queue: accept, drop, or accept later (throttle).
    #[command(
        after_help = "Example (a router; see the README for a bridge and for nft):
  iptables -t mangle -A PREROUTING -j CONNMARK --restore-mark --mask 0x1
  iptables -A FORWARD -m mark --mark 0x1/0x1 -j ACCEPT
  iptables -A FORWARD -j NFQUEUE --queue-num 0 --queue-bypass
  iptables -t mangle -A POSTROUTING -m mark --mark 0x1/0x1 -j CONNMARK --save-mark --mask 0x1
  p2pguard nfqueue --queue 0 --policy policy.yaml --log /var/log/p2pguard.jsonl"
    )]
    Nfqueue(NfqueueArgs),
    /// Work with signature rule files.
    #[command(subcommand)]
    Rules(RulesCommand),
    /// Work with policy files.
    #[command(subcommand)]
    Policy(PolicyCommand),
}

/// Output formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Readable summary: totals, P2P flows by protocol, top P2P hosts.
    Summary,
    /// One JSON object per flow, then a stats object.
    Jsonl,
    /// One CSV row per flow, with a header row.
    Csv,
}

/// `p2pguard analyze`.
#[derive(Debug, Args)]
pub struct AnalyzeArgs {
    /// Capture files (pcap or pcapng); `-` reads standard input.
    #[arg(required = true, value_name = "CAPTURE")]
    pub inputs: Vec<String>,

    /// Report format.
    #[arg(short, long, value_enum, default_value_t = Format::Summary)]
    pub format: Format,

    /// Write the report to FILE instead of standard output (`-`: standard
    /// output).
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// Write every packet of the flows named P2P to FILE (pcap), packets
    /// before the verdict included, in capture order.
    #[arg(short = 'w', long = "write-p2p", value_name = "FILE")]
    pub write_p2p: Option<PathBuf>,

    /// Apply this policy (YAML; see rules/policy.example.yaml) and report
    /// what it would have done: a verdict event per decision (jsonl), and
    /// per flow its action, rule, and the packets a block would drop or a
    /// throttle would shape.
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,

    /// With jsonl or csv: report only flows named P2P.
    #[arg(long)]
    pub p2p_only: bool,

    /// With the summary: how many top P2P hosts to list.
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub top: usize,

    /// Threads to use, the one reading the input included (default: one
    /// per CPU). Flows are split between threads by their endpoints; the
    /// report is the same for any number.
    #[arg(short = 't', long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=64))]
    pub threads: Option<u16>,

    /// Rules, flow table and endpoint cache.
    #[command(flatten)]
    pub detect: DetectArgs,

    /// Never show a progress bar (it is shown only on a terminal, for
    /// inputs over 4 MB).
    #[arg(short, long)]
    pub quiet: bool,
}

/// Detection settings shared by every command that reads packets.
#[derive(Debug, Args)]
pub struct DetectArgs {
    /// Extra rule file or directory of *.yaml files, added to the built-in
    /// rules (repeatable).
    #[arg(short, long = "rules", value_name = "PATH")]
    pub rules: Vec<PathBuf>,

    /// Do not load the built-in rules (use only --rules).
    #[arg(long)]
    pub no_builtin_rules: bool,

    /// Most flows tracked at once (at least 64); beyond it the
    /// longest-idle flow is evicted (and counted).
    #[arg(long, value_name = "N", default_value_t = 1_000_000)]
    pub max_flows: usize,

    /// Endpoints the endpoint cache holds at most (0 turns the cache off).
    /// Flows to or from an endpoint confirmed or announced as P2P are
    /// named at their first packet, with confidence `cache`.
    #[arg(long, value_name = "N", default_value_t = 262_144)]
    pub cache_size: usize,

    /// Hosts whose behaviour is tracked at most (confirmed P2P hosts and
    /// the peers they talk to), and twice as many listening endpoints;
    /// beyond, the least recently updated entry is dropped (and counted).
    #[arg(long, value_name = "N", default_value_t = 65_536)]
    pub behaviour_hosts: usize,

    /// How long a cached endpoint stays known after it was last confirmed
    /// by a structural match, in seconds of packet time (announced
    /// endpoints live half as long).
    #[arg(long, value_name = "SECS", default_value_t = 3600)]
    pub cache_ttl: u64,

    /// Idle timeout of established TCP flows, in seconds of packet time.
    #[arg(long, value_name = "SECS", default_value_t = 300)]
    pub tcp_timeout: u64,

    /// Idle timeout of TCP flows whose handshake did not complete.
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    pub tcp_opening_timeout: u64,

    /// Idle timeout of TCP flows after FIN both ways or RST.
    #[arg(long, value_name = "SECS", default_value_t = 15)]
    pub tcp_closing_timeout: u64,

    /// Idle timeout of UDP flows.
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    pub udp_timeout: u64,

    /// Seed of the hash that splits flows between the 64 flow tables, each
    /// holding a 64th of --max-flows: a sender who knows it can pick flows
    /// that all land in the table of one flow and evict it with a 64th of
    /// the flood it would take otherwise. By default `live`, `inline` and
    /// `nfqueue` draw a random one, and `analyze` takes it from the first
    /// packet (its exact time and bytes), so that the same input gives the
    /// same report: hard to guess for a distant sender, but not secret
    /// (not from one who sees or sends that packet, nor with coarse or
    /// rewritten timestamps). For a secret one offline, give a random
    /// number, e.g. `--flow-hash-seed $(od -An -N8 -tu8 /dev/urandom)`.
    #[arg(long, value_name = "N")]
    pub flow_hash_seed: Option<u64>,
}

/// Settings of the long-running commands (`live`, `inline`, `nfqueue`).
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The policy (YAML; see rules/policy.example.yaml). Without one,
    /// flows are only detected and logged, never blocked or throttled.
    /// SIGHUP reloads it (and the rules); a policy that fails to load is
    /// reported and the old one kept.
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,

    /// Append JSON lines events (verdicts, P2P flows as they end, stats) to
    /// FILE instead of standard output. SIGHUP reopens it (logrotate).
    #[arg(long, value_name = "FILE")]
    pub log: Option<PathBuf>,

    /// Also log the flows not named P2P as they end.
    #[arg(long)]
    pub log_all_flows: bool,

    /// Seconds between stats lines on stderr (and stats events in the log);
    /// 0 for none.
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    pub stats_every: u64,

    /// Rules, flow table and endpoint cache.
    #[command(flatten)]
    pub detect: DetectArgs,
}

/// `p2pguard live`.
#[derive(Debug, Args)]
pub struct LiveArgs {
    /// The interface to capture on.
    #[arg(short, long, value_name = "IFACE")]
    pub interface: String,

    /// A BPF filter, as for tcpdump.
    #[arg(short, long, value_name = "EXPR")]
    pub filter: Option<String>,

    /// Bytes captured per packet.
    #[arg(long, value_name = "BYTES", default_value_t = 65535)]
    pub snaplen: i32,

    /// Do not put the interface in promiscuous mode.
    #[arg(long)]
    pub no_promisc: bool,

    /// Threads to use, the capturing one included (default: 1). Flows are
    /// split between threads by their endpoints.
    #[arg(short = 't', long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub threads: u16,

    /// Policy, log, stats and detection settings.
    #[command(flatten)]
    pub run: RunArgs,
}

/// `p2pguard inline`.
#[derive(Debug, Args)]
pub struct InlineArgs {
    /// One side of the bridge.
    #[arg(long = "in", value_name = "IFACE")]
    pub input: String,

    /// The other side of the bridge.
    #[arg(long = "out", value_name = "IFACE")]
    pub output: String,

    /// On an internal error with a frame, drop it (default: forward it).
    #[arg(long)]
    pub fail_closed: bool,

    /// Longest a throttled frame may wait, in milliseconds; frames that
    /// would wait longer are dropped.
    #[arg(long, value_name = "MS", default_value_t = 500)]
    pub max_delay: u64,

    /// Policy, log, stats and detection settings.
    #[command(flatten)]
    pub run: RunArgs,
}

/// `p2pguard nfqueue`.
#[derive(Debug, Args)]
pub struct NfqueueArgs {
    /// The netfilter queue number (iptables `--queue-num`).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub queue: u16,

    /// Mark bits set on the accepted packets of flows whose fate is sealed,
    /// for a connmark rule that keeps the rest of them out of the queue
    /// (see the README); 0 sets none.
    #[arg(long, value_name = "BITS", default_value = "0x1", value_parser = parse_mark)]
    pub mark: u32,

    /// Longest a throttled packet's verdict may wait, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 500)]
    pub max_delay: u64,

    /// Let the kernel accept the packets it cannot hand to p2pguard in time
    /// (queue or socket full, e.g. in a burst) instead of dropping them.
    /// Keeps traffic flowing under overload, but such packets are not
    /// inspected: a blocked flow can slip a packet through.
    #[arg(long)]
    pub fail_open: bool,

    /// Policy, log, stats and detection settings.
    #[command(flatten)]
    pub run: RunArgs,
}

fn parse_mark(s: &str) -> Result<u32, String> {
    let parsed = match s.strip_prefix("0x") {
        Some(hex) => u32::from_str_radix(hex, 16),
        None => s.parse(),
    };
    parsed.map_err(|_| format!("`{s}` is not a mark (e.g. 0x1 or 16)"))
}

/// `p2pguard policy ...`.
#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Validate a policy file; every error is reported as FILE:LINE:COLUMN.
    #[command(after_help = "Example:
  p2pguard policy check rules/policy.example.yaml")]
    Check {
        /// The policy file.
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
}

/// `p2pguard rules ...`.
#[derive(Debug, Subcommand)]
pub enum RulesCommand {
    /// Validate rule files; every error is reported as FILE:LINE:COLUMN.
    #[command(after_help = "Examples:
  p2pguard rules check                 check the built-in rules
  p2pguard rules check rules/          check every *.yaml file in rules/
  p2pguard rules check my.yaml         check one file on its own")]
    Check {
        /// Rule files or directories (default: the built-in rules).
        #[arg(value_name = "PATH")]
        paths: Vec<PathBuf>,
    },
    /// List the rules and detectors: ids, protocol, what each matches.
    List {
        /// Extra rule files or directories.
        #[arg(value_name = "PATH")]
        paths: Vec<PathBuf>,
    },
}
