//! How far apart two CPUs are, as the threads of one program feel it: the
//! time for a cache line to go from one CPU to the other and back.
//!
//! Two threads, pinned to CPU A and CPU B, pass one cache line back and forth
//! (each waits for the other's write, then writes), in batches of 2,000 round
//! trips, and the median of the batches' mean round trips is printed (so that
//! the host pausing a virtual CPU for a moment does not move it). On one chip the line goes through a shared cache, in some tens of
//! nanoseconds; between chips, or between the parts of a chip that do not
//! share a cache, it takes several times that. A virtual machine's CPUs can
//! be either, and can change while it runs, as the host moves them: the
//! macro benchmark runs this before and after each multi-thread run, since
//! p2pguard's threads hand each other every packet (see the README, "Speed
//! and memory").
//!
//! Usage: `core-distance [--cpus A,B] [--trips N]`; prints
//! `round trip NS ns (CPUs A and B, N trips)`. The figure includes the spin
//! loop's pause in each wait, so it compares machines only roughly.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// Round trips a batch.
const BATCH: u64 = 2_000;

/// One cache line, so that nothing else shares it.
#[repr(align(64))]
struct Line(AtomicU64);

fn main() -> ExitCode {
    match parse(std::env::args().skip(1).collect()) {
        Ok((a, b, trips)) => match measure(a, b, trips) {
            Ok(ns) => {
                println!("round trip {ns:.0} ns (CPUs {a} and {b}, {trips} trips)");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("core-distance: {e}");
                ExitCode::FAILURE
            }
        },
        Err(e) => {
            eprintln!("core-distance: {e}\nusage: core-distance [--cpus A,B] [--trips N]");
            ExitCode::from(2)
        }
    }
}

fn parse(args: Vec<String>) -> Result<(usize, usize, u64), String> {
    let (mut a, mut b, mut trips) = (0, 1, 200_000);
    let mut it = args.into_iter();
    while let Some(arg) = it.next() {
        let value = it.next().ok_or(format!("{arg} needs a value"))?;
        match arg.as_str() {
            "--cpus" => {
                let (x, y) = value.split_once(',').ok_or("--cpus wants A,B")?;
                let cpu = |v: &str| match v.parse::<usize>() {
                    Ok(n) if n < libc::CPU_SETSIZE as usize => Ok(n),
                    _ => Err(format!(
                        "not a CPU number (0 to {}): {v}",
                        libc::CPU_SETSIZE - 1
                    )),
                };
                (a, b) = (cpu(x)?, cpu(y)?);
            }
            "--trips" => {
                trips = match value.parse::<u64>() {
                    Ok(n) if (BATCH..=1 << 40).contains(&n) => n,
                    _ => return Err(format!("--trips wants {BATCH} to 2^40: {value}")),
                };
            }
            _ => return Err(format!("unknown argument: {arg}")),
        }
    }
    if a == b {
        return Err("the two CPUs must differ".into());
    }
    Ok((a, b, trips))
}

/// Pins the calling thread to `cpu`.
#[allow(unsafe_code)]
fn pin(cpu: usize) -> Result<(), String> {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET and
    // sched_setaffinity only read and write the set given.
    let rc = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(format!(
            "cannot run on CPU {cpu}: {}",
            std::io::Error::last_os_error()
        ))
    }
}

/// The median over batches of the mean round trip, in nanoseconds.
fn measure(a: usize, b: usize, trips: u64) -> Result<f64, String> {
    let line = Arc::new(Line(AtomicU64::new(0)));
    let other = Arc::clone(&line);
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let echo = std::thread::spawn(move || {
        let pinned = pin(b);
        let ok = pinned.is_ok();
        let _ = ready_tx.send(pinned);
        if !ok {
            return;
        }
        for i in 0..trips {
            while other.0.load(Ordering::Acquire) != 2 * i + 1 {
                std::hint::spin_loop();
            }
            other.0.store(2 * i + 2, Ordering::Release);
        }
    });
    let pinned = ready_rx
        .recv()
        .map_err(|_| "the echo thread died".to_string())?;
    pinned?;
    pin(a)?;
    let mut batches = Vec::new();
    let mut i = 0;
    while i < trips {
        let start = Instant::now();
        let end = (i + BATCH).min(trips);
        let n = end - i;
        while i < end {
            line.0.store(2 * i + 1, Ordering::Release);
            while line.0.load(Ordering::Acquire) != 2 * i + 2 {
                std::hint::spin_loop();
            }
            i += 1;
        }
        batches.push(start.elapsed().as_nanos() as f64 / n as f64);
    }
    echo.join()
        .map_err(|_| "the echo thread panicked".to_string())?;
    batches.sort_by(f64::total_cmp);
    Ok(batches[batches.len() / 2])
}
