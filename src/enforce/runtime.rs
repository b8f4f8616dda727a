//! What every long-running mode shares: the pipeline, the event log, the
//! periodic stats line, and reloading on SIGHUP.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::eventlog::EventLog;
use super::signals::Signals;
use crate::decode::LinkType;
use crate::detect::DetectConfig;
use crate::detect::rules::{RuleSet, builtin_sources};
use crate::flow::FlowConfig;
use crate::pipeline::{Event, PacketOutcome, Pipeline, PipelineStats};
use crate::policy::Policy;
use crate::timestamp::Timestamp;

/// Where the policy and rules come from, to load them again on SIGHUP.
#[derive(Clone, Debug, Default)]
pub struct Reloader {
    /// The policy file, if any.
    pub policy: Option<PathBuf>,
    /// Whether the built-in rules are loaded.
    pub builtin_rules: bool,
    /// Extra rule files or directories.
    pub rules: Vec<PathBuf>,
}

impl Reloader {
    /// Loads the rules.
    pub fn load_rules(&self) -> Result<RuleSet, String> {
        let sources = if self.builtin_rules {
            builtin_sources()
        } else {
            Vec::new()
        };
        RuleSet::load_with(sources, &self.rules).map_err(|e| e.to_string())
    }

    /// Loads the policy (`None` without a policy file).
    pub fn load_policy(&self) -> Result<Option<Arc<Policy>>, String> {
        match &self.policy {
            Some(p) => Policy::from_file(p)
                .map(|p| Some(Arc::new(p)))
                .map_err(|e| e.to_string()),
            None => Ok(None),
        }
    }
}

/// Settings of a long-running mode.
pub struct RuntimeOptions {
    /// Flow table limits.
    pub flows: FlowConfig,
    /// Detection settings (the rules in it are the initial ones).
    pub detect: DetectConfig,
    /// The initial policy.
    pub policy: Option<Arc<Policy>>,
    /// How to reload.
    pub reloader: Reloader,
    /// Where events go.
    pub log: EventLog,
    /// Seconds between stats lines (0: none).
    pub stats_every: Duration,
    /// Write flow records to the log as flows end (not only decisions).
    pub log_flows: bool,
}

/// The shared state of a long-running mode.
pub struct Runtime {
    /// The pipeline.
    pub pipeline: Pipeline,
    /// Flow limits and detection settings, for the parallel engine (live
    /// capture with several threads).
    pub flows: FlowConfig,
    /// See `flows`.
    pub detect: DetectConfig,
    log: EventLog,
    reloader: Reloader,
    signals: Signals,
    stats_every: Duration,
    last_stats: Instant,
    log_flows: bool,
    /// Flows named P2P so far (ended).
    p2p_flows: u64,
    /// Log write failures (counted; the mode goes on).
    log_errors: u64,
}

/// The current wall-clock time as a packet timestamp.
pub fn wall_clock() -> Timestamp {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    Timestamp::from_parts(d.as_secs(), d.subsec_nanos())
}

impl Runtime {
    /// Builds the pipeline and installs the signal handlers.
    pub fn new(options: RuntimeOptions) -> std::io::Result<Runtime> {
        let mut pipeline = Pipeline::new(options.flows.clone(), options.detect.clone());
        pipeline.set_policy(options.policy);
        Ok(Runtime {
            pipeline,
            flows: options.flows,
            detect: options.detect,
            log: options.log,
            reloader: options.reloader,
            signals: Signals::install()?,
            stats_every: options.stats_every,
            last_stats: Instant::now(),
            log_flows: options.log_flows,
            p2p_flows: 0,
            log_errors: 0,
        })
    }

    /// The signal flags.
    pub fn signals(&self) -> &Signals {
        &self.signals
    }

    /// Runs one frame through the pipeline, logging what it reports.
    pub fn process(
        &mut self,
        ts: Timestamp,
        link: LinkType,
        frame: &[u8],
        wire_len: u32,
    ) -> PacketOutcome {
        let (log, log_flows, p2p, errors) = (
            &mut self.log,
            self.log_flows,
            &mut self.p2p_flows,
            &mut self.log_errors,
        );
        self.pipeline.process(ts, link, frame, wire_len, &mut |e| {
            write_event(log, log_flows, p2p, errors, e)
        })
    }

    /// Writes a free-form event (errors, start, stop).
    pub fn note(&mut self, event: serde_json::Value) {
        if self.log.write(&event).is_err() {
            self.log_errors += 1;
        }
    }

    /// Periodic work: the stats line and SIGHUP. `extra` adds mode-specific
    /// counters to the stats line and event. Returns whether to stop.
    pub fn tick(
        &mut self,
        extra: &mut dyn FnMut() -> Vec<(&'static str, serde_json::Value)>,
    ) -> bool {
        if self.signals.take_reload() {
            let (rules, policy) = self.reload();
            if let Some(rules) = rules {
                self.pipeline.reload_rules(rules);
            }
            if let Some(policy) = policy {
                self.pipeline.set_policy(policy);
            }
        }
        if self.stats_due() {
            let s = self.pipeline.stats();
            self.stats_line(&s, extra);
        }
        self.signals.stop_requested()
    }

    /// Whether a stats line is due (and, if so, the clock restarts).
    pub fn stats_due(&mut self) -> bool {
        if self.stats_every.is_zero() || self.last_stats.elapsed() < self.stats_every {
            return false;
        }
        self.last_stats = Instant::now();
        true
    }

    /// Writes a stats line (stderr) and event (log) from these counters.
    pub fn stats_line(
        &mut self,
        s: &PipelineStats,
        extra: &mut dyn FnMut() -> Vec<(&'static str, serde_json::Value)>,
    ) {
        let mut event = serde_json::json!({
            "event": "stats",
            "time": wall_clock().to_rfc3339(),
            "packets": s.packets,
            "bytes": s.bytes,
            "flows_open": s.flows.created - s.flows.timed_out - s.flows.evicted - s.flows.reused,
            "flows_created": s.flows.created,
            "p2p_flows_ended": self.p2p_flows,
            "decisions": s.decisions,
            "decode_errors": s.skipped.errors(),
            "log_errors": self.log_errors,
        });
        let mut line = format!(
            "p2pguard: {} packets, {} flows ({} open), {} P2P flows ended, {} decisions",
            s.packets, s.flows.created, event["flows_open"], self.p2p_flows, s.decisions
        );
        for (k, v) in extra() {
            line.push_str(&format!(", {k} {v}"));
            event[k] = v;
        }
        eprintln!("{line}");
        self.note(event);
    }

    /// Reopens the log, then loads rules and policy again and returns the
    /// parts that loaded (for the caller to put in force); a part that fails
    /// to load is reported and left out, so the old one stays.
    #[allow(clippy::type_complexity)]
    pub fn reload(&mut self) -> (Option<RuleSet>, Option<Option<Arc<Policy>>>) {
        if let Err(e) = self.log.reopen() {
            eprintln!("p2pguard: cannot reopen the log: {e}");
        }
        let rules = match self.reloader.load_rules() {
            Ok(rules) => {
                self.note(serde_json::json!({"event": "reload", "what": "rules", "ok": true}));
                Some(rules)
            }
            Err(e) => {
                eprintln!("p2pguard: rules not reloaded, keeping the old ones:\n{e}");
                self.note(serde_json::json!({"event": "reload", "what": "rules", "ok": false, "error": e}));
                None
            }
        };
        let policy = match self.reloader.load_policy() {
            Ok(policy) => {
                self.note(serde_json::json!({"event": "reload", "what": "policy", "ok": true}));
                Some(policy)
            }
            Err(e) => {
                eprintln!("p2pguard: policy not reloaded, keeping the old one:\n{e}");
                self.note(serde_json::json!({"event": "reload", "what": "policy", "ok": false, "error": e}));
                None
            }
        };
        (rules, policy)
    }

    /// Logs what the pipeline reports (decisions; flow records of P2P
    /// flows, or of every flow with `--log-all-flows`).
    pub fn log_event(&mut self, event: Event) {
        write_event(
            &mut self.log,
            self.log_flows,
            &mut self.p2p_flows,
            &mut self.log_errors,
            event,
        );
    }

    /// Ends every open flow (their records go to the log) and flushes.
    pub fn finish(&mut self) {
        let (log, log_flows, p2p, errors) = (
            &mut self.log,
            self.log_flows,
            &mut self.p2p_flows,
            &mut self.log_errors,
        );
        self.pipeline
            .finish(&mut |e| write_event(log, log_flows, p2p, errors, e));
    }
}

fn write_event(log: &mut EventLog, log_flows: bool, p2p: &mut u64, errors: &mut u64, event: Event) {
    let value = match event {
        Event::Verdict(v) => v.to_json(),
        Event::FlowEnded(r) => {
            if r.is_p2p() {
                *p2p += 1;
            }
            if !log_flows && !r.is_p2p() {
                return;
            }
            match serde_json::to_value(r.row()) {
                Ok(v) => v,
                Err(_) => return,
            }
        }
    };
    if log.write(&value).is_err() {
        *errors += 1;
    }
}
