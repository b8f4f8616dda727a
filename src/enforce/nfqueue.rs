//! `p2pguard nfqueue`: enforcement through a netfilter queue.
//!
//! iptables (or nft) sends packets to the queue; p2pguard answers each with
//! a verdict: accept, drop, or, for a throttled flow, accept later (the
//! verdict waits in the shaper's delay queue). Flows whose fate is sealed
//! (detection finished without naming P2P, or a P2P flow the policy allows
//! on the strongest evidence) get the packet mark `--mark` with their
//! accept, so that a connmark rule can keep the rest of such flows out of
//! the queue (see the README for the rules).

use std::time::{Duration, Instant};

use nfq::{Message, Queue, Verdict};

use super::runtime::{Runtime, wall_clock};
use super::shaper::{Shaped, Shaper};
use crate::decode::LinkType;
use crate::pipeline::{PacketAction, PacketOutcome};

/// Queue settings.
#[derive(Clone, Debug)]
pub struct NfqueueOptions {
    /// The queue number (iptables `--queue-num`).
    pub queue: u16,
    /// The mark bits set on packets of flows whose fate is sealed (0: none).
    pub mark: u32,
    /// Longest a throttled packet's verdict may wait.
    pub max_delay: Duration,
    /// Ask the kernel to accept packets itself when the queue is full
    /// (instead of dropping them).
    pub fail_open: bool,
}

/// Why the queue could not be used.
#[derive(Debug, thiserror::Error)]
pub enum NfqueueError {
    /// Opening or binding the queue failed.
    #[error(
        "netfilter queue {queue}: {what}: {error} (are you root, and is the nfnetlink_queue support in the kernel?)"
    )]
    Setup {
        /// The queue number.
        queue: u16,
        /// What failed.
        what: &'static str,
        /// The error.
        error: std::io::Error,
    },
}

#[derive(Default)]
struct Counts {
    accepted: u64,
    marked: u64,
    dropped: u64,
    shaped: u64,
    shaper_dropped: u64,
    verdict_errors: u64,
    recv_errors: u64,
}

/// Answers the queue until SIGINT/SIGTERM, then accepts what it holds,
/// unbinds and ends every open flow.
pub fn run(options: &NfqueueOptions, rt: &mut Runtime) -> Result<(), NfqueueError> {
    let setup = |what, error| NfqueueError::Setup {
        queue: options.queue,
        what,
        error,
    };
    let mut queue = Queue::open().map_err(|e| setup("cannot open", e))?;
    queue
        .bind(options.queue)
        .map_err(|e| setup("cannot bind", e))?;
    if options.fail_open {
        queue
            .set_fail_open(options.queue, true)
            .map_err(|e| setup("cannot set fail-open", e))?;
    }
    let _ = queue.set_queue_max_len(options.queue, 32_768);
    // Large GSO/GRO packets come as they are; the decoder copes with them.
    let _ = queue.set_recv_gso(options.queue, true);
    queue.set_nonblocking(true);
    rt.note(serde_json::json!({"event": "start", "mode": "nfqueue", "queue": options.queue, "mark": options.mark}));

    let mut shaper: Shaper<(u64, Message)> = Shaper::new(options.max_delay, 100_000);
    let mut counts = Counts::default();
    let verdict =
        |queue: &mut Queue, mut msg: Message, v: Verdict, mark: u32, counts: &mut Counts| {
            if mark != 0 {
                msg.set_nfmark(msg.get_nfmark() | mark);
            }
            msg.set_verdict(v);
            if queue.verdict(msg).is_err() {
                counts.verdict_errors += 1;
            }
        };
    loop {
        let now = Instant::now();
        while let Some((_, msg)) = shaper.due(now) {
            verdict(&mut queue, msg, Verdict::Accept, 0, &mut counts);
            counts.accepted += 1;
        }
        match queue.recv() {
            Ok(msg) => {
                let len = msg.get_original_len() as u32;
                let outcome = rt.process(wall_clock(), LinkType::RAW, msg.get_payload(), len);
                match outcome {
                    PacketOutcome::Skipped(_) => {
                        counts.accepted += 1;
                        verdict(&mut queue, msg, Verdict::Accept, 0, &mut counts);
                    }
                    PacketOutcome::Tracked {
                        action,
                        sealed,
                        flow,
                        ..
                    } => match action {
                        PacketAction::Forward => {
                            let mark = if sealed { options.mark } else { 0 };
                            counts.accepted += 1;
                            counts.marked += u64::from(mark != 0);
                            verdict(&mut queue, msg, Verdict::Accept, mark, &mut counts);
                        }
                        PacketAction::Drop { .. } => {
                            counts.dropped += 1;
                            verdict(&mut queue, msg, Verdict::Drop, 0, &mut counts);
                        }
                        PacketAction::Shape { bucket, throttle } => {
                            counts.shaped += 1;
                            match shaper.offer(
                                bucket,
                                &throttle,
                                len as usize,
                                Instant::now(),
                                (flow, msg),
                            ) {
                                Shaped::Now((_, m)) => {
                                    counts.accepted += 1;
                                    verdict(&mut queue, m, Verdict::Accept, 0, &mut counts);
                                }
                                Shaped::Held => {}
                                Shaped::Dropped((flow, m)) => {
                                    counts.shaper_dropped += 1;
                                    rt.pipeline.shaper_dropped(flow, len);
                                    verdict(&mut queue, m, Verdict::Drop, 0, &mut counts);
                                }
                            }
                        }
                    },
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                // Idle: sleep until the next held verdict, at most 1 ms.
                let wait = shaper
                    .next_due()
                    .map_or(Duration::from_millis(1), |t| {
                        t.saturating_duration_since(Instant::now())
                    })
                    .min(Duration::from_millis(1));
                std::thread::sleep(wait);
            }
            // The socket overflowed (ENOBUFS): packets were lost to the
            // kernel's queue policy; count it and read on at once.
            Err(e) => {
                if counts.recv_errors == 0 {
                    rt.note(serde_json::json!({"event": "error", "error": e.to_string()}));
                }
                counts.recv_errors += 1;
            }
        }
        let held = shaper.held();
        let mut extra = || {
            vec![
                ("accepted", counts.accepted.into()),
                ("marked", counts.marked.into()),
                ("dropped", counts.dropped.into()),
                ("shaped", counts.shaped.into()),
                ("held", (held as u64).into()),
                ("shaper_dropped", counts.shaper_dropped.into()),
                ("verdict_errors", counts.verdict_errors.into()),
                ("recv_errors", counts.recv_errors.into()),
            ]
        };
        if rt.tick(&mut extra) {
            break;
        }
    }
    for (_, msg) in shaper.drain() {
        verdict(&mut queue, msg, Verdict::Accept, 0, &mut counts);
    }
    let _ = queue.unbind(options.queue);
    rt.finish();
    rt.note(serde_json::json!({
        "event": "stop", "mode": "nfqueue", "accepted": counts.accepted, "marked": counts.marked,
        "dropped": counts.dropped, "shaped": counts.shaped, "shaper_dropped": counts.shaper_dropped,
    }));
    Ok(())
}
