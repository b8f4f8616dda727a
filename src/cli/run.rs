//! Runs a parsed command: arguments become a validated configuration (rules
//! compiled, options checked) before any packet is read.

use std::fs::File;
use std::io::{self, BufWriter, IsTerminal, Write};
use std::path::PathBuf;

use indicatif::{ProgressBar, ProgressStyle};
use p2pguard::analyze::{AnalyzeError, AnalyzeOptions, ProgressInfo, analyze};
use p2pguard::detect::behaviour::BehaviourConfig;
use p2pguard::detect::cache::CacheConfig;
use p2pguard::detect::rules::{RuleSet, builtin_sources};
use p2pguard::detect::{DETECTOR_NAMES, DetectConfig};
use p2pguard::flow::FlowConfig;
use p2pguard::output::{CsvWriter, FlowSink, JsonLinesWriter, SummaryWriter};
use p2pguard::policy::Policy;
use p2pguard::timestamp::Duration;
use std::sync::Arc;

use super::args::{AnalyzeArgs, DetectArgs, Format, InlineArgs, LiveArgs, NfqueueArgs, RunArgs};
use p2pguard::enforce::eventlog::EventLog;
use p2pguard::enforce::inline::{self, InlineOptions};
use p2pguard::enforce::live::{self, LiveOptions};
use p2pguard::enforce::nfqueue::{self, NfqueueOptions};
use p2pguard::enforce::{Reloader, Runtime, RuntimeOptions};

/// How a command failed, which decides the exit status.
#[derive(Debug)]
pub enum Failure {
    /// Bad usage or configuration (exit 2); the message says what to fix.
    Config(String),
    /// Something failed at run time (exit 1).
    Runtime(String),
    /// Output went to a closed pipe (e.g. `| head`): not an error.
    BrokenPipe,
}

const PROGRESS_MIN_BYTES: u64 = 4_000_000;

/// The report's write buffer: a million flow records are hundreds of MB.
const OUTPUT_BUFFER: usize = 1 << 20;

/// A seed no one outside this process can know: std's `RandomState` is
/// keyed from the operating system's random source.
fn random_seed() -> u64 {
    use std::hash::BuildHasher;
    std::collections::hash_map::RandomState::new().hash_one(0u8)
}

/// Turns the shared detection options into a validated configuration:
/// rules compiled, limits checked.
fn detect_config(args: &DetectArgs) -> Result<(FlowConfig, DetectConfig), Failure> {
    let rules = load_rules(!args.no_builtin_rules, &args.rules)?;
    if args.max_flows < p2pguard::pipeline::SHARDS {
        return Err(Failure::Config(format!(
            "--max-flows must be at least {} (the flow table is split into that many shards, each holding at least one flow)",
            p2pguard::pipeline::SHARDS
        )));
    }
    let secs = |name: &str, v: u64| {
        if v == 0 {
            Err(Failure::Config(format!(
                "--{name} must be at least 1 second"
            )))
        } else {
            Ok(Duration::from_secs(v))
        }
    };
    let flows = FlowConfig {
        max_flows: args.max_flows,
        tcp_opening_timeout: secs("tcp-opening-timeout", args.tcp_opening_timeout)?,
        tcp_established_timeout: secs("tcp-timeout", args.tcp_timeout)?,
        tcp_closing_timeout: secs("tcp-closing-timeout", args.tcp_closing_timeout)?,
        udp_timeout: secs("udp-timeout", args.udp_timeout)?,
        hash_seed: args.flow_hash_seed,
    };
    let ttl = secs("cache-ttl", args.cache_ttl)?;
    let detect = DetectConfig {
        rules,
        cache: CacheConfig {
            capacity: args.cache_size,
            ttl_confirmed: ttl,
            ttl_learnt: Duration(ttl.0 / 2),
        },
        behaviour: BehaviourConfig {
            max_hosts: args.behaviour_hosts,
            max_endpoints: args.behaviour_hosts.saturating_mul(2),
            ..BehaviourConfig::default()
        },
    };
    Ok((flows, detect))
}

/// Builds the shared state of `live`, `inline` and `nfqueue`: every
/// setting is checked and the policy and rules loaded before any packet.
fn runtime(args: &RunArgs) -> Result<Runtime, Failure> {
    let (mut flows, detect) = detect_config(&args.detect)?;
    // Live traffic is never read twice, so nothing is lost by a seed no
    // one can learn, where a flood would be sent at the sensor as it runs.
    flows.hash_seed.get_or_insert_with(random_seed);
    let policy = match &args.policy {
        Some(path) => Some(Arc::new(load_policy(path)?)),
        None => None,
    };
    let log = EventLog::open(args.log.as_deref()).map_err(|e| {
        Failure::Runtime(format!(
            "{}: cannot open the log: {e}",
            args.log
                .as_deref()
                .unwrap_or(std::path::Path::new("-"))
                .display()
        ))
    })?;
    let reloader = Reloader {
        policy: args.policy.clone(),
        builtin_rules: !args.detect.no_builtin_rules,
        rules: args.detect.rules.clone(),
    };
    Runtime::new(RuntimeOptions {
        flows,
        detect,
        policy,
        reloader,
        log,
        stats_every: std::time::Duration::from_secs(args.stats_every),
        log_flows: args.log_all_flows,
    })
    .map_err(|e| Failure::Runtime(format!("cannot install signal handlers: {e}")))
}

/// `p2pguard live`.
pub fn live_command(args: LiveArgs) -> Result<bool, Failure> {
    let mut rt = runtime(&args.run)?;
    let options = LiveOptions {
        interface: args.interface,
        filter: args.filter,
        snaplen: args.snaplen,
        promiscuous: !args.no_promisc,
        threads: usize::from(args.threads),
    };
    live::run(&options, &mut rt).map_err(|e| Failure::Runtime(e.to_string()))?;
    Ok(true)
}

/// `p2pguard inline`.
pub fn inline_command(args: InlineArgs) -> Result<bool, Failure> {
    if args.input == args.output {
        return Err(Failure::Config(
            "--in and --out must be two different interfaces".into(),
        ));
    }
    let mut rt = runtime(&args.run)?;
    let options = InlineOptions {
        a: args.input,
        b: args.output,
        fail_open: !args.fail_closed,
        max_delay: std::time::Duration::from_millis(args.max_delay),
    };
    inline::run(&options, &mut rt).map_err(|e| Failure::Runtime(e.to_string()))?;
    Ok(true)
}

/// `p2pguard nfqueue`.
pub fn nfqueue_command(args: NfqueueArgs) -> Result<bool, Failure> {
    let mut rt = runtime(&args.run)?;
    let options = NfqueueOptions {
        queue: args.queue,
        mark: args.mark,
        max_delay: std::time::Duration::from_millis(args.max_delay),
        fail_open: args.fail_open,
    };
    nfqueue::run(&options, &mut rt).map_err(|e| Failure::Runtime(e.to_string()))?;
    Ok(true)
}

/// `--threads`, or one thread per CPU.
fn threads(given: Option<u16>) -> usize {
    given.map_or_else(
        || std::thread::available_parallelism().map_or(1, |n| n.get().min(64)),
        usize::from,
    )
}

/// `p2pguard analyze`. Returns whether every input was read cleanly.
pub fn analyze_command(args: AnalyzeArgs) -> Result<bool, Failure> {
    let (flows, detect) = detect_config(&args.detect)?;
    if args.p2p_only && args.format == Format::Summary {
        return Err(Failure::Config(
            "--p2p-only applies to --format jsonl or csv (the summary already shows only P2P)"
                .into(),
        ));
    }
    let stdin_count = args.inputs.iter().filter(|i| *i == "-").count();
    if stdin_count > 1 {
        return Err(Failure::Config(
            "standard input (-) can be given only once".into(),
        ));
    }
    let options = AnalyzeOptions {
        inputs: args.inputs.clone(),
        threads: threads(args.threads),
        flows,
        detect,
        pcap_out: args.write_p2p.clone(),
        pcap_queue_bytes: 64 << 20,
        pcap_queue_wait: Duration::from_secs(120),
        policy: match &args.policy {
            Some(path) => Some(Arc::new(load_policy(path)?)),
            None => None,
        },
    };

    // `-o -` is standard output, as `-` is standard input.
    let out: Box<dyn Write> = match args.output.as_ref().filter(|p| p.as_os_str() != "-") {
        Some(path) => Box::new(BufWriter::with_capacity(
            OUTPUT_BUFFER,
            File::create(path).map_err(|e| {
                Failure::Runtime(format!("{}: cannot create the report: {e}", path.display()))
            })?,
        )),
        None => Box::new(BufWriter::with_capacity(OUTPUT_BUFFER, io::stdout().lock())),
    };
    let mut sink: Box<dyn FlowSink> = match args.format {
        Format::Summary => Box::new(SummaryWriter::new(out, args.top)),
        Format::Jsonl => Box::new(JsonLinesWriter::new(out, args.p2p_only)),
        Format::Csv => {
            let mut w = CsvWriter::new(out, args.p2p_only);
            w.write_header().map_err(output_failure)?;
            Box::new(w)
        }
    };

    let total: u64 = args
        .inputs
        .iter()
        .filter(|i| *i != "-")
        .filter_map(|i| std::fs::metadata(i).ok().map(|m| m.len()))
        .sum();
    let bar = (!args.quiet && io::stderr().is_terminal() && total >= PROGRESS_MIN_BYTES).then(|| {
        let bar = ProgressBar::new(total);
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} ({bytes_per_sec}, {eta}) {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar
    });
    let mut progress = |info: ProgressInfo| {
        if let Some(bar) = &bar {
            bar.set_position(info.bytes.min(total));
            bar.set_message(format!("{} packets", info.packets));
        }
    };

    let result = analyze(&options, sink.as_mut(), &mut progress);
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    let stats = match result {
        Ok(stats) => stats,
        Err(AnalyzeError::Output(e)) => return Err(output_failure(e)),
        Err(e) => return Err(Failure::Runtime(e.to_string())),
    };
    let mut clean = true;
    for input in &stats.inputs {
        if let Some(e) = &input.error {
            eprintln!("p2pguard: {e}");
            clean = false;
        }
    }
    Ok(clean)
}

fn output_failure(e: io::Error) -> Failure {
    if e.kind() == io::ErrorKind::BrokenPipe {
        Failure::BrokenPipe
    } else {
        Failure::Runtime(format!("cannot write the report: {e}"))
    }
}

/// Loads a policy, or explains every error.
pub fn load_policy(path: &std::path::Path) -> Result<Policy, Failure> {
    Policy::from_file(path).map_err(|e| Failure::Config(format!("invalid policy:\n{e}")))
}

/// `p2pguard policy check`.
pub fn policy_check(file: PathBuf) -> Result<bool, Failure> {
    let policy = load_policy(&file)?;
    println!(
        "{}: OK, {} rule(s), default {}",
        file.display(),
        policy.rules.len(),
        policy.default
    );
    for r in &policy.rules {
        println!("  {:<28} {}", r.name, r.action);
    }
    Ok(true)
}

fn load_rules(builtin: bool, extra: &[PathBuf]) -> Result<RuleSet, Failure> {
    let sources = if builtin {
        builtin_sources()
    } else {
        Vec::new()
    };
    if !builtin && extra.is_empty() {
        return Err(Failure::Config(
            "--no-builtin-rules needs at least one --rules PATH".into(),
        ));
    }
    RuleSet::load_with(sources, extra).map_err(|e| Failure::Config(format!("invalid rules:\n{e}")))
}

/// `p2pguard rules check`.
pub fn rules_check(paths: Vec<PathBuf>) -> Result<bool, Failure> {
    let set = if paths.is_empty() {
        RuleSet::load_with(builtin_sources(), &[])
    } else {
        RuleSet::load(&paths)
    };
    match set {
        Ok(set) => {
            let what = if paths.is_empty() {
                "built-in rules".to_string()
            } else {
                paths
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            println!("{what}: {} rules OK", set.rules().len());
            Ok(true)
        }
        Err(errors) => {
            for e in &errors.0 {
                eprintln!("{e}");
            }
            Err(Failure::Config(format!(
                "{} error(s) in the rules",
                errors.0.len()
            )))
        }
    }
}

/// `p2pguard rules list`.
pub fn rules_list(paths: Vec<PathBuf>) -> Result<bool, Failure> {
    let set = load_rules(true, &paths)?;
    let mut out = io::stdout().lock();
    let mut print = || -> io::Result<()> {
        writeln!(out, "Signature rules ({}):", set.rules().len())?;
        for r in set.rules() {
            writeln!(
                out,
                "  {:<36} {:<11} {:<15} {}:{}",
                r.id,
                r.protocol.as_str(),
                r.confidence.as_str(),
                r.origin.file.display(),
                r.origin.line
            )?;
        }
        writeln!(out, "Structural detectors ({}):", DETECTOR_NAMES.len())?;
        for name in DETECTOR_NAMES {
            writeln!(out, "  {name}")?;
        }
        Ok(())
    };
    print().map_err(output_failure)?;
    Ok(true)
}
