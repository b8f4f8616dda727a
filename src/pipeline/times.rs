//! Where each thread of the parallel engine spends its time, for tuning
//! `--threads`: with `P2PGUARD_THREAD_TIMES` set (to anything but empty or
//! `0`), the engine prints one line per thread to standard error when it is
//! done. Off by default (it then reads no clock); the report itself never
//! depends on it. The times are wall-clock time between marks, so a thread
//! the system did not run counts as doing what it was doing.

use std::fmt;
use std::time::{Duration, Instant};

/// The environment variable that turns the times on.
pub const ENV: &str = "P2PGUARD_THREAD_TIMES";

/// What a thread was doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activity {
    /// Reading frames into a chunk (libpcap, the copy, decoding); in live
    /// capture this includes waiting for packets.
    Reading,
    /// Tracking and inspecting flows: a chunk's shards.
    Flows,
    /// Waiting for another thread.
    Waiting,
    /// Applying a chunk's cross-flow writes, or new rules or a new policy.
    Applying,
    /// Gathering a chunk's results and handing out the next chunk; this
    /// includes the sink's end-of-chunk work (in live capture a statistics
    /// line, which first applies the chunk's writes, and reloads).
    Handing,
    /// Handing the finished chunk's events to the report.
    Reporting,
    /// Ending the flows still open at the end of the input (for the
    /// reading thread, with waiting for the others' batches and reporting
    /// them).
    Ending,
}

const ACTIVITIES: [Activity; 7] = [
    Activity::Reading,
    Activity::Flows,
    Activity::Waiting,
    Activity::Applying,
    Activity::Handing,
    Activity::Reporting,
    Activity::Ending,
];

impl Activity {
    fn name(self) -> &'static str {
        match self {
            Activity::Reading => "reading",
            Activity::Flows => "flows",
            Activity::Waiting => "waiting",
            Activity::Applying => "applying",
            Activity::Handing => "handing",
            Activity::Reporting => "reporting",
            Activity::Ending => "ending",
        }
    }
}

/// One thread's time, by activity.
#[derive(Clone, Debug, Default)]
pub struct Times {
    /// The time of the last mark; `None`: off.
    last: Option<Instant>,
    spent: [Duration; ACTIVITIES.len()],
}

impl Times {
    /// Times that count if `on`, from now.
    pub fn new(on: bool) -> Times {
        Times {
            last: on.then(Instant::now),
            spent: Default::default(),
        }
    }

    /// Whether [`ENV`] asks for the times.
    pub fn wanted() -> bool {
        std::env::var_os(ENV).is_some_and(|v| !v.is_empty() && v != "0")
    }

    /// The time since the last mark went to `what`.
    #[inline]
    pub fn mark(&mut self, what: Activity) {
        if let Some(last) = self.last {
            let now = Instant::now();
            self.spent[what as usize] += now - last;
            self.last = Some(now);
        }
    }

    /// Whether the times count.
    pub fn on(&self) -> bool {
        self.last.is_some()
    }

    /// The time that went to `what`.
    pub fn spent(&self, what: Activity) -> Duration {
        self.spent[what as usize]
    }
}

impl fmt::Display for Times {
    /// "reading 0.352 s, flows 0.016 s, ..." (activities with no time left
    /// out).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for a in ACTIVITIES {
            let d = self.spent(a);
            if d.is_zero() {
                continue;
            }
            if !first {
                f.write_str(", ")?;
            }
            first = false;
            write!(f, "{} {:.3} s", a.name(), d.as_secs_f64())?;
        }
        if first {
            f.write_str("nothing timed")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_counts_nothing() {
        let mut t = Times::new(false);
        std::thread::sleep(Duration::from_millis(2));
        t.mark(Activity::Reading);
        assert!(!t.on());
        assert!(t.spent(Activity::Reading).is_zero());
        assert_eq!(t.to_string(), "nothing timed");
    }

    #[test]
    fn each_mark_gives_the_time_since_the_last_to_its_activity() {
        let mut t = Times::new(true);
        std::thread::sleep(Duration::from_millis(20));
        t.mark(Activity::Reading);
        t.mark(Activity::Flows);
        std::thread::sleep(Duration::from_millis(10));
        t.mark(Activity::Waiting);
        // Sleeping takes at least as long as asked (and may take longer, so
        // only lower bounds are checked).
        assert!(t.spent(Activity::Reading) >= Duration::from_millis(20));
        assert!(t.spent(Activity::Waiting) >= Duration::from_millis(10));
        assert!(t.spent(Activity::Ending).is_zero());
        let shown = t.to_string();
        assert!(shown.starts_with("reading "), "{shown}");
        assert!(shown.contains(", waiting "), "{shown}");
        assert!(!shown.contains("ending"), "{shown}");
    }
}
