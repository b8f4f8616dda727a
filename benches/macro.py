#!/usr/bin/env python3
"""The macro benchmark of `make bench`: p2pguard against nDPI and libpcap.

On one large capture (by default ``target/bench/mix.pcap``, written by the
``bench-capture`` example), in one run on one machine, this measures:

* ``baseline``: ``pcap-baseline FILE`` (``benches/pcap_baseline.rs``), a
  minimal libpcap loop that reads every packet and does nothing else: the
  ceiling for any libpcap-based reader, p2pguard included;
* ``baseline, 128 KiB buffer``: the same loop with ``--stdio-buffer 131072``,
  the stream buffer p2pguard gives libpcap for a regular file (the ceiling
  with that setting; its ratio is shown beside the target's);
* ``bare flow counter``: ``flow-count --stdio-buffer 131072 FILE``
  (``benches/flow_count.rs``): the same loop, with p2pguard's stream buffer,
  that also decodes every packet with p2pguard's decoder and counts it in a
  plain hash map of flows (hashbrown: first and last time, packets and bytes
  each way), and does nothing else: no timeouts, no detection, no report.
  It shows what a plain map of the flows costs on this capture before any
  inspection. It is not a floor under p2pguard: it never ends a flow (it
  holds every flow of the capture at once, where p2pguard's timeouts keep
  fewer), its map grows from empty (rehashing as it goes), and it does not
  fetch what a look-up reads ahead, as p2pguard's table does;
* ``p2pguard -t 1`` and ``p2pguard -t N``: ``p2pguard analyze -q -t T -o FILE
  CAPTURE`` (for N > 1 with ``P2PGUARD_THREAD_TIMES=1``, so that RESULTS.md
  says where each thread's time went in each round; it reads a clock a few
  times a chunk, an overhead not measured apart), its default report (the
  summary: totals, P2P flows by protocol, top hosts) written to a file, as
  ndpiReader is timed with its own report off; and once each with the full report, ``-f jsonl`` (one JSON line per
  flow), timed too and shown apart, for the verdict check;
* ``ndpiReader``: ``ndpiReader -i CAPTURE -q`` (Debian's libndpi-bin; one
  thread, its default for a file), output to /dev/null;
* ``N copies of p2pguard -t 1 at once``: N independent ``p2pguard analyze -q
  -t 1`` processes on the same capture, started together, timed until the
  last one ends: what N CPUs of this machine give for work that shares
  nothing (a virtual machine's CPUs may share a physical core, and CPUs
  share caches and memory bandwidth). Its throughput (N times the capture
  over that time) over one copy's is what the N-thread ratio can be weighed
  against (not a strict bound: N threads read the capture once, N copies
  N times); the N-thread ratio is also shown as a share of it. Its peak RSS
  is one copy's. Not run for N = 1.

How it measures:

* The capture is mapped and read before anything runs, and the script keeps
  it mapped until the last run (see ``hold_in_page_cache``), so every tool
  reads it from memory and no tool pays for the disk; RESULTS.md says how
  much of it was still in the page cache at the end, and the script warns if
  the file may not fit there.
* The tools run one after the other, never two at once (but for the N
  copies, which are one measurement). With ``--runs K`` the script makes K
  rounds (the two baselines, the bare flow counter, p2pguard -t 1, p2pguard
  -t N, the N copies, ndpiReader), so a slow drift of the machine touches
  every tool alike; each tool's time is the median of its K runs, with the
  fastest and slowest kept.
* Wall time is ``time.perf_counter`` around the run (start to reaped). Peak
  RSS is the tool's maximum resident set size as GNU time (``/usr/bin/time
  -f %M``, Debian's ``time``) reports it: its own small process forks the
  tool, so the figure is the tool's alone (``os.wait4`` from this script
  would report at least the script's own high-water RSS, which a child keeps
  across ``exec``). It adds about a millisecond to the wall time.
* Packets and bytes come from the baseline's own line ("N packets, B bytes";
  bytes are frame bytes, the pcap record's original length) and must be the
  same in every run; each p2pguard run's stats object, and the bare flow
  counter's line, must count the same packets, and each p2pguard summary
  (the N copies' too) must be there. packets/s = packets / median time;
  Gbit/s = bytes * 8 / median time (for the N copies, N times that).
* Ratios (on median times; a higher ratio is better for p2pguard):
  1 thread vs ndpiReader (target >= 4), 1 thread vs baseline (target >= 0.6),
  N threads vs 1 thread (target >= 1.7, set for N = 2). A ratio below its
  target prints MISS; it does not change the exit status. Also shown, with no
  target of their own: 1 thread vs the buffered baseline, the bare flow
  counter vs the baseline, 1 thread vs the bare flow counter, N threads vs
  both baselines, N copies at once vs 1 thread (what N CPUs give for
  independent work) and the N-thread ratio as a share of that. For N > 1 the
  N-thread ratio is also given round by round (a round's 1-thread time over
  its N-thread time), for the spread the medians hide.
* How far apart two CPUs are: before and after each N-thread run (outside
  its time), ``core-distance`` (``benches/core_distance.rs``) times a cache
  line passed back and forth between two threads pinned to CPUs 0 and 1, and
  RESULTS.md gives the round trips beside each round's N-thread ratio. The
  threads of one p2pguard hand each other every packet, so their gain
  depends on it, where N independent copies hardly do: on the virtual
  machine this was written on, the round trip is either about 30-100 ns or
  300-360 ns, as the host moves the two virtual CPUs (the README, "Speed and
  memory"). The probe measures CPUs 0 and 1 only (p2pguard's threads are not
  pinned), and not at all for N = 1. Rounds whose two round trips are both under ``NEAR_NS`` or both
  over ``FAR_NS`` get the median of their ratios apiece; rounds that changed
  in between are in neither.
* Verdicts: the flow lines of every p2pguard output (1 and N threads, every
  round) must be the same set of lines (each output's flow lines are hashed
  into an order-independent digest; equal digests mean the sorted lines are
  identical). On a difference the first differing flows are printed.

Writes ``benches/RESULTS.md`` (``--results``), replacing it: date, command,
machine, capture, the table, the ratios, p2pguard's stats, the verdict check.
It is written even when the verdicts differ (saying so), never when a tool
failed.

Exit status: 0 on success (whatever PASS/MISS says); 1 if a tool failed, the
packet counts disagree or the verdicts differ; 2 on a set-up error (a binary
or the capture missing, bad arguments).

Usage, from the repository root (``make bench`` does all of it):

    cargo build --release --locked && cargo build --release --locked --examples
    target/release/examples/bench-capture target/bench/mix.pcap
    python3 benches/macro.py
    python3 benches/macro.py --capture small.pcap --runs 1 --results /tmp/R.md

Python 3 standard library only.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import mmap
import os
import platform
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# The stream buffer p2pguard gives libpcap for a regular file
# (src/capture/file.rs, STDIO_BUFFER).
STDIO_BUFFER = 128 * 1024

# Targets of project issue 5, requirement 2: (ratio name, target).
TARGET_VS_NDPI = 4.0
TARGET_VS_BASELINE = 0.6
TARGET_SCALING = 1.7  # set for N = 2 threads

# Cache-line round trips (core-distance) under which two CPUs count as near,
# and over which as far, for the N-thread ratio by distance.
NEAR_NS = 150
FAR_NS = 250

# The fixed header of RESULTS.md.
RESULTS_HEADER = """\
# Macro benchmark results

Written by `make bench` (`benches/macro.py`) and replaced by every run: do not
edit by hand. It holds the last run only: p2pguard `analyze` with 1 thread and
with N threads, nDPI's `ndpiReader`, and a read-only libpcap loop (the ceiling
for any libpcap-based reader), as is and with the stream buffer p2pguard gives
libpcap, and the same loop counting packets in a plain hash map of flows,
on the same generated capture, on the same machine, one after the other, the
capture in the page cache; and N copies of p2pguard with 1 thread at once,
for what N CPUs of this machine give. How it measures:
the docstring of `benches/macro.py`.
"""


class SetupError(Exception):
    """Something missing before any measurement: exit status 2."""


class BenchError(Exception):
    """A tool failed or the tools disagree: exit status 1."""


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# Running one tool


@dataclass
class Run:
    seconds: float
    maxrss_kib: int


def run_measured(label: str, argv: list[str], stdout: Path | None, workdir: Path,
                 gnu_time: str, env: dict[str, str] | None = None) -> Run:
    """Run argv to completion, timed, and return its wall time and peak RSS.

    argv runs under GNU time, which writes "MAXRSS_KIB EXIT_STATUS" to a file
    (after a "Command terminated by signal N" line if a signal ended it).
    stdout goes to the file `stdout` (or /dev/null); stderr to a file
    (workdir/stderr.txt, kept until the next run), shown if the tool fails.
    `env`: variables added to the environment (from which THREAD_TIMES is
    taken out otherwise, so that only the runs that ask for it are timed
    per thread). A non-zero exit or a signal is a BenchError.
    """
    err_path = workdir / "stderr.txt"
    usage_path = workdir / "usage.txt"
    usage_path.unlink(missing_ok=True)
    with open(stdout if stdout else os.devnull, "wb") as out, open(err_path, "wb") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen([gnu_time, "-f", "%M %x", "-o", str(usage_path)] + argv,
                                stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                env={**{k: v for k, v in os.environ.items() if k != THREAD_TIMES},
                                     **(env or {})})
        # Reaped with os.wait4 rather than Popen.wait only to stop the clock
        # at the exact moment; tell Popen it is done so it never waits again.
        _, status, _ = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
    maxrss_kib = check_usage(label, argv, usage_path, err_path, proc.returncode)
    return Run(seconds, maxrss_kib)


def check_usage(label: str, argv: list[str], usage_path: Path, err_path: Path,
                returncode: int) -> int:
    """The peak RSS (KiB) GNU time wrote to `usage_path` ("MAXRSS_KIB
    EXIT_STATUS", after a "Command terminated by signal N" line if a signal
    ended the tool); a BenchError, with the tail of `err_path`, if the tool
    failed. `returncode` (GNU time's own) stands in when GNU time wrote
    nothing (it could not run the tool)."""
    try:
        lines = usage_path.read_text().strip().splitlines()
        maxrss_kib, code = map(int, lines[-1].split())
        killed = re.search(r"terminated by signal (\d+)", "\n".join(lines))
        if killed:
            code = -int(killed.group(1))
    except (OSError, ValueError, IndexError):
        # GNU time could not run the tool (its message is in stderr).
        maxrss_kib, code = 0, returncode
    if code != 0:
        if code < 0:
            how = f"was killed by {signal.Signals(-code).name}"
        else:
            how = f"exited with status {code}"
        tail = err_path.read_text(errors="replace").strip().splitlines()[-15:]
        raise BenchError(
            f"{label} {how}\n  command: {shlex.join(argv)}\n  stderr (last lines):\n"
            + "\n".join("    " + line for line in tail or ["(empty)"])
        )
    return maxrss_kib


def run_concurrent(label: str, argvs: list[list[str]], workdir: Path, gnu_time: str) -> Run:
    """Run every argv at once, each under GNU time with stdout to /dev/null;
    return the wall time from the start until the last one is reaped, and the
    highest peak RSS of them (one copy's, not their sum). A failure of any is
    a BenchError, once all are reaped (if one cannot be started, those
    started are killed first)."""
    started = []
    t0 = time.perf_counter()
    try:
        for i, argv in enumerate(argvs):
            usage, err_path = workdir / f"usage-{i}.txt", workdir / f"stderr-{i}.txt"
            usage.unlink(missing_ok=True)
            with open(err_path, "wb") as err:
                proc = subprocess.Popen([gnu_time, "-f", "%M %x", "-o", str(usage)] + argv,
                                        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=err)
            started.append((proc, usage, err_path, argv))
    except OSError as e:
        for proc, _, _, _ in started:
            proc.kill()
            proc.wait()
        raise BenchError(f"{label}: cannot start a copy: {e}") from e
    # Each reaped with os.wait4 (see run_measured); the clock stops when the
    # last one is.
    for proc, _, _, _ in started:
        _, status, _ = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - t0
    peak = 0
    for i, (proc, usage, err_path, argv) in enumerate(started):
        rss = check_usage(f"{label} (copy {i})", argv, usage, err_path, proc.returncode)
        peak = max(peak, rss)
    return Run(seconds, peak)


# --------------------------------------------------------------------------
# Reading the tools' output


BASELINE_LINE = re.compile(r"^(\d+) packets, (\d+) bytes$")


def parse_baseline(path: Path) -> tuple[int, int]:
    """(packets, frame bytes) from pcap-baseline's one output line."""
    text = path.read_text().strip()
    m = BASELINE_LINE.match(text)
    if not m:
        raise BenchError(f"pcap-baseline printed {text!r}, not 'N packets, B bytes'")
    return int(m.group(1)), int(m.group(2))


FLOW_MARK = b'"event":"flow"'
STATS_MARK = b'"event":"stats"'


@dataclass
class Report:
    """What the script keeps of one p2pguard jsonl output."""

    path: Path
    stats: dict
    flow_lines: int
    digest: int  # order-independent: sum of the lines' hashes, mod 2**128


COUNT_LINE = re.compile(r"^(\d+) packets, \d+ flows, \d+ packets in flows, longest [\d.]+ s$")


def parse_count(path: Path) -> int:
    """The packets from flow-count's one output line."""
    text = path.read_text().strip()
    m = COUNT_LINE.match(text)
    if not m:
        raise BenchError(f"flow-count printed {text!r}, not 'N packets, F flows, ...'")
    return int(m.group(1))


def line_hash(line: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(line.rstrip(b"\r\n"), digest_size=16).digest(), "big")


def read_report(path: Path) -> Report:
    """Stats object, flow-line count and multiset digest of a jsonl output.

    The sum of per-line hashes does not depend on the order of the lines, so
    two outputs with equal digests hold the same sorted flow lines (up to a
    2**-128 collision), without holding a million lines in memory.
    """
    stats = None
    count = 0
    digest = 0
    with open(path, "rb") as f:
        for line in f:
            if FLOW_MARK in line:
                count += 1
                digest += line_hash(line)
            elif STATS_MARK in line:
                stats = json.loads(line)
    if stats is None:
        raise BenchError(f"{path}: no stats object (\"event\":\"stats\") in p2pguard's output")
    if stats.get("flows") != count:
        raise BenchError(
            f"{path}: {count} flow lines but the stats object says {stats.get('flows')} flows"
        )
    return Report(path, stats, count, digest % (1 << 128))


def flow_key(flow: dict) -> tuple:
    """Which flow a line is about: its id (the flow's position in the input,
    the same for any thread count), else its transport, endpoints and start."""
    if isinstance(flow.get("id"), int):
        return (0, flow["id"])
    return (1, repr((flow.get("transport"), flow.get("src_ip"), flow.get("src_port"),
                     flow.get("dst_ip"), flow.get("dst_port"), flow.get("first_seen"))))


def flow_name(flow: dict) -> str:
    def endpoint(ip, port):
        return f"[{ip}]:{port}" if ":" in str(ip) else f"{ip}:{port}"

    return (f"id {flow.get('id')}: {flow.get('transport')} "
            f"{endpoint(flow.get('src_ip'), flow.get('src_port'))} -> "
            f"{endpoint(flow.get('dst_ip'), flow.get('dst_port'))}, first seen {flow.get('first_seen')}")


def describe_differences(a: Report, a_name: str, b: Report, b_name: str, limit: int = 10) -> list[str]:
    """The first differing flows of two outputs, as readable lines.

    A flow (same id) in both outputs with other fields is shown field by
    field; a flow only in one output is shown whole.
    """
    # Which line hashes are in one output more often than in the other.
    counts: dict[int, int] = {}
    for report, sign in ((a, 1), (b, -1)):
        with open(report.path, "rb") as f:
            for line in f:
                if FLOW_MARK in line:
                    h = line_hash(line)
                    counts[h] = counts.get(h, 0) + sign
    extra = {h for h, n in counts.items() if n != 0}
    del counts
    only: dict[str, dict[tuple, dict]] = {}
    for report, name in ((a, a_name), (b, b_name)):
        found = only.setdefault(name, {})
        with open(report.path, "rb") as f:
            for line in f:
                if FLOW_MARK in line and line_hash(line) in extra:
                    flow = json.loads(line)
                    found[flow_key(flow)] = flow
    in_a, in_b = only[a_name], only[b_name]
    out = [f"{len(in_a)} flow lines only in {a_name}, {len(in_b)} only in {b_name}"]
    printed = 0
    for key in sorted(set(in_a) | set(in_b)):
        if printed == limit:
            out.append("  ...")
            break
        printed += 1
        if key in in_a and key in in_b:
            fa, fb = in_a[key], in_b[key]
            fields = sorted(k for k in set(fa) | set(fb) if fa.get(k) != fb.get(k))
            out.append(f"  flow {flow_name(fa)}:")
            for k in fields:
                out.append(f"    {k}: {json.dumps(fa.get(k))} ({a_name}) vs {json.dumps(fb.get(k))} ({b_name})")
        else:
            name, flow = (a_name, in_a[key]) if key in in_a else (b_name, in_b[key])
            out.append(f"  only in {name}: {json.dumps(flow, separators=(',', ':'))}")
    return out


# --------------------------------------------------------------------------
# Machine and versions


def command_output(argv: list[str]) -> str | None:
    """stdout+stderr of a short command, or None if it cannot run."""
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return (r.stdout + r.stderr).strip()


def machine_info(ndpi: str, p2pguard: str) -> dict[str, str]:
    info: dict[str, str] = {}
    cpuinfo = Path("/proc/cpuinfo").read_text()
    models = re.findall(r"^model name\s*:\s*(.+)$", cpuinfo, re.M)
    info["CPU"] = f"{models[0]} ({len(models)} logical CPUs)" if models else platform.processor() or "?"
    info["nproc"] = command_output(["nproc"]) or str(len(os.sched_getaffinity(0)))
    meminfo = Path("/proc/meminfo").read_text()
    m = re.search(r"^MemTotal:\s*(\d+) kB", meminfo, re.M)
    info["MemTotal"] = f"{int(m.group(1)) / 1048576:.1f} GiB ({m.group(1)} kB)" if m else "?"
    info["kernel"] = os.uname().release
    # libpcap: the version from pcap-config (libpcap-dev) if there, and the
    # shared library the dynamic linker finds, which is what the tools load.
    pcap_version = command_output(["pcap-config", "--version"]) if shutil.which("pcap-config") else None
    ldconfig = command_output(["ldconfig", "-p"]) or ""
    libs = sorted({re.sub(r"\s+", " ", line.strip()) for line in ldconfig.splitlines()
                   if "libpcap.so" in line})
    parts = [f"{pcap_version} (pcap-config --version)"] if pcap_version else []
    if libs:
        parts.append("ldconfig -p: " + "; ".join(libs))
    info["libpcap"] = ", ".join(parts) or "?"
    help_text = command_output([ndpi, "-h"]) or ""
    m = re.search(r"Welcome to nDPI\s+(\S+)", help_text)
    info["ndpiReader"] = f"nDPI {m.group(1)} (banner of `ndpiReader -h`)" if m else "?"
    deb = command_output(["dpkg-query", "-W", "-f=${Version}", "libndpi-bin"])
    if deb and "no packages" not in deb:
        info["ndpiReader"] += f", Debian libndpi-bin {deb}"
    git = ["git", "-C", str(ROOT)]
    commit = command_output(git + ["rev-parse", "--short=12", "HEAD"])
    # Results of an earlier run (two benches in a row) do not make the build differ.
    dirty = command_output(git + ["status", "--porcelain", "--untracked-files=no", "--",
                                  ".", ":(exclude,glob)benches/RESULTS*.md"])
    built = datetime.datetime.fromtimestamp(os.stat(p2pguard).st_mtime, datetime.timezone.utc)
    info["p2pguard"] = (f"`{shown(p2pguard)}` built {built.strftime('%Y-%m-%d %H:%M')} UTC, "
                        f"work tree at commit {commit or '?'}"
                        + (" with uncommitted changes" if dirty else ""))
    info["rustc"] = command_output(["rustc", "-V"]) or "?"
    info["Python"] = platform.python_version()
    return info


# --------------------------------------------------------------------------
# Formatting


def shown(path) -> str:
    """A path as RESULTS.md shows it: relative to the repository if inside it."""
    p = Path(path).resolve()
    return str(p.relative_to(ROOT)) if p.is_relative_to(ROOT) else str(path)


def mib(kib: int) -> str:
    return f"{kib / 1024:.1f}"


def group(n: float) -> str:
    return f"{n:,.0f}"


def markdown_table(header: list[str], rows: list[list[str]], right: set[int]) -> list[str]:
    """A Markdown table padded to be read as plain text too."""
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]

    def fmt(row):
        cells = [str(c).rjust(w) if i in right else str(c).ljust(w)
                 for i, (c, w) in enumerate(zip(row, widths))]
        return "| " + " | ".join(cells) + " |"

    rule = "|" + "|".join(("-" * (w + 1) + ":") if i in right else ("-" * (w + 2))
                          for i, w in enumerate(widths)) + "|"
    return [fmt(header), rule] + [fmt(r) for r in rows]


def read_generator_summary(path: Path, packets: int) -> list[str] | None:
    """bench-capture's printed summary, kept beside the capture by `make bench`,
    if it describes this capture (same packet count); else None."""
    try:
        lines = path.read_text().strip().splitlines()
    except OSError:
        return None
    m = re.search(r": (\d+) packets, ", lines[0]) if lines else None
    if not m or int(m.group(1)) != packets:
        log(f"note: {path} does not describe this capture (packet count differs); left out")
        return None
    return lines


# --------------------------------------------------------------------------


@dataclass
class Tool:
    key: str
    label: str
    runs: list[Run] = field(default_factory=list)

    def median(self) -> float:
        return statistics.median(r.seconds for r in self.runs)

    def peak_rss(self) -> int:
        return max(r.maxrss_kib for r in self.runs)


# p2pguard's switch for the time each thread spent (src/pipeline/times.rs).
THREAD_TIMES = "P2PGUARD_THREAD_TIMES"


def read_thread_times(path: Path, threads: int) -> list[str]:
    """The lines p2pguard printed for THREAD_TIMES ("thread 0 (reads):
    reading 0.352 s, ..."), one per thread in order, its prefix taken off; a
    BenchError if they are not all there (the bench would silently lose
    them)."""
    prefix = THREAD_TIMES + ": "
    lines = [line[len(prefix):] for line in path.read_text(errors="replace").splitlines()
             if line.startswith(prefix)]
    expected = ["thread 0 (reads): "] + [f"thread {t}: " for t in range(1, threads)]
    if len(lines) != threads or not all(l.startswith(e) for l, e in zip(lines, expected)):
        raise BenchError(f"p2pguard printed {len(lines)} {THREAD_TIMES} lines to {path}, "
                         f"not one per thread of {threads} in order: {lines}")
    return lines


def hold_in_page_cache(path: Path) -> tuple[mmap.mmap, float]:
    """Map the whole file and fault every page in; return the mapping (keep it
    for as long as the file must stay in memory) and the seconds it took.

    Reading the file once is not enough on every machine: a kernel may page
    out page cache that has not been touched for a while (this benchmark's
    virtual machine runs DAMON with a `pageout` scheme for unmapped file
    pages idle for about a minute, and ndpiReader takes half a minute a
    run), and a tool would then be timed reading the disk. Pages mapped by a
    process are not unmapped file pages."""
    t0 = time.perf_counter()
    with open(path, "rb") as f:
        flags = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)
        m = mmap.mmap(f.fileno(), 0, flags=flags, prot=mmap.PROT_READ)
    if not getattr(mmap, "MAP_POPULATE", 0):
        for off in range(0, len(m), mmap.PAGESIZE):
            m[off]
    return m, time.perf_counter() - t0


def resident_share(path: Path) -> float | None:
    """The share of the file in the page cache now (util-linux's fincore),
    or None if it cannot be told."""
    try:
        out = subprocess.run(["fincore", "--bytes", "--noheadings", "--output", "RES,SIZE",
                              str(path)], capture_output=True, text=True, check=True).stdout
        res, size = (int(v) for v in out.split())
        return res / size if size else None
    except (OSError, subprocess.CalledProcessError, ValueError):
        return None


def check_cache_fit(size: int) -> None:
    m = re.search(r"^MemAvailable:\s*(\d+) kB", Path("/proc/meminfo").read_text(), re.M)
    if m and size > 0.7 * int(m.group(1)) * 1024:
        log(f"WARNING: the capture ({size / 2**30:.1f} GiB) is over 70% of the available memory "
            f"({int(m.group(1)) / 2**20:.1f} GiB): it may not stay in the page cache, and the "
            "tools would then be timed reading the disk")


def core_distance(binary: str) -> float | None:
    """The cache-line round trip between CPUs 0 and 1, in ns (see
    benches/core_distance.rs); None, with a warning, if it cannot be
    measured (one CPU, say): the bench goes on without it."""
    try:
        out = subprocess.run([binary, "--cpus", "0,1"], capture_output=True, text=True,
                             timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        log(f"WARNING: core-distance did not run, no CPU round trip for this round: {e}")
        return None
    m = re.match(r"round trip ([0-9.]+) ns", out.stdout)
    if out.returncode != 0 or not m:
        log(f"WARNING: core-distance failed, no CPU round trip for this round: "
            f"{out.stderr.strip() or out.stdout.strip() or f'exit status {out.returncode}'}")
        return None
    return float(m.group(1))


def round_trips(before: float | None, after: float | None) -> str:
    """A round's CPU round trips for RESULTS.md: '61/65 ns'."""
    if before is None or after is None:
        return "round trip not measured"
    return f"{before:.0f}/{after:.0f} ns"


def median_of(ratios: list[float]) -> str:
    """', median 1.23x' of some ratios, or '' for none."""
    return f", median {statistics.median(ratios):.2f}x" if ratios else ""


def executable(path: str, what: str) -> str:
    found = shutil.which(path)
    if not found:
        raise SetupError(f"{what} not found or not executable: {path}")
    return found


def main() -> int:
    ap = argparse.ArgumentParser(
        description="Macro benchmark: p2pguard (1 and N threads), ndpiReader and a libpcap "
        "read-only loop on one capture; writes RESULTS.md.")
    ap.add_argument("--capture", type=Path, default=ROOT / "target/bench/mix.pcap",
                    help="the capture (default: target/bench/mix.pcap)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                    help="N, the threads of the parallel p2pguard run (default: os.cpu_count())")
    ap.add_argument("--runs", type=int, default=3,
                    help="runs per tool; the median is reported, with min and max (default 3)")
    ap.add_argument("--results", type=Path, default=ROOT / "benches/RESULTS.md",
                    help="Markdown file to write (replaced; default benches/RESULTS.md)")
    ap.add_argument("--p2pguard", default=str(ROOT / "target/release/p2pguard"),
                    help="p2pguard binary (default: target/release/p2pguard)")
    ap.add_argument("--baseline", default=str(ROOT / "target/release/examples/pcap-baseline"),
                    help="read-only libpcap loop (default: target/release/examples/pcap-baseline)")
    ap.add_argument("--flow-count", default=str(ROOT / "target/release/examples/flow-count"),
                    help="bare flow counter (default: target/release/examples/flow-count)")
    ap.add_argument("--core-distance",
                    default=str(ROOT / "target/release/examples/core-distance"),
                    help="cache-line round trip between CPUs 0 and 1, run around each N-thread "
                    "run (default: target/release/examples/core-distance)")
    ap.add_argument("--ndpi", default="ndpiReader", help="ndpiReader binary (default: ndpiReader)")
    ap.add_argument("--time", default="/usr/bin/time",
                    help="GNU time, for the peak RSS (default: /usr/bin/time; Debian's `time`)")
    ap.add_argument("--generator-summary", type=Path, default=None,
                    help="bench-capture's printed summary, put in RESULTS.md if it matches the "
                    "capture (default: CAPTURE.txt)")
    ap.add_argument("--command", default=None,
                    help="the command to record in RESULTS.md (make bench passes `make bench`; "
                    "default: this script's own command line)")
    ap.add_argument("--tmpdir", type=Path, default=None,
                    help="where p2pguard's reports go (default: /dev/shm if writable, so that "
                    "the disk's write-back does not time the tools; else the system's temp dir)")
    args = ap.parse_args()
    if args.runs < 1 or args.threads < 1:
        raise SetupError("--runs and --threads must be at least 1")

    capture = args.capture
    if not capture.is_file():
        raise SetupError(f"capture not found: {capture} (make bench generates target/bench/mix.pcap)")
    p2pguard = executable(args.p2pguard, "p2pguard")
    baseline = executable(args.baseline, "pcap-baseline (cargo build --release --locked --examples)")
    counter = executable(args.flow_count, "flow-count (cargo build --release --locked --examples)")
    ndpi = executable(args.ndpi, "ndpiReader (apt-get install libndpi-bin)")
    gnu_time = executable(args.time, "GNU time (apt-get install time)")
    n = args.threads
    distance = (executable(args.core_distance,
                           "core-distance (cargo build --release --locked --examples)")
                if n > 1 else None)
    # This script's command line, less --command (recorded apart).
    own_args, skip = [], False
    for a in sys.argv[1:]:
        if skip or a.startswith("--command="):
            skip = False
        elif a == "--command":
            skip = True
        else:
            own_args.append(a)
    script_command = shlex.join(["python3", os.path.relpath(__file__)] + own_args)
    command = args.command or script_command
    started = datetime.datetime.now(datetime.timezone.utc)
    load_before = os.getloadavg()
    if load_before[0] > 0.5:
        log(f"WARNING: load average {load_before[0]:.2f} at the start: other work on this machine "
            "can slow any tool down and skew the ratios")

    size = capture.stat().st_size
    if size == 0:
        raise SetupError(f"the capture is empty: {capture}")
    check_cache_fit(size)
    log(f"holding the capture in the page cache: mapping {capture} ({size / 1e6:.0f} MB) ...")
    held, cold = hold_in_page_cache(capture)
    log(f"  mapped and read in {cold:.2f} s ({size / cold / 1e9:.2f} GB/s)")

    tools = {
        "baseline": Tool("baseline", "baseline (libpcap read-only loop)"),
        "baseline_buf": Tool("baseline_buf", "baseline, 128 KiB stream buffer"),
        "count": Tool("count", "bare flow counter (libpcap, decode, map)"),
        "t1": Tool("t1", "p2pguard analyze -t 1"),
        "tn": Tool("tn", f"p2pguard analyze -t {n}"),
        "copies": Tool("copies", f"{n} copies of p2pguard -t 1 at once"),
        "ndpi": Tool("ndpi", "ndpiReader (nDPI, 1 thread)"),
        # The full report, for the verdict check (round 1 only).
        "t1j": Tool("t1j", "p2pguard analyze -t 1 -f jsonl"),
        "tnj": Tool("tnj", f"p2pguard analyze -t {n} -f jsonl"),
    }
    if n == 1:
        del tools["copies"]  # one copy is the 1-thread run
    cap = str(capture)
    reports: dict[tuple[str, int], Report] = {}  # (tool key, round) -> report
    thread_times: list[list[str]] = []  # per N-thread run, a line per thread
    # Per N-thread run: the CPU round trips before and after it, in ns
    # (None where the probe failed).
    distances: list[tuple[float | None, float | None]] = []
    packets = frame_bytes = None

    if args.tmpdir is None and os.access("/dev/shm", os.W_OK):
        args.tmpdir = Path("/dev/shm")
    # The mapping is closed when the runs end, however they end.
    with held, tempfile.TemporaryDirectory(prefix="p2pguard-bench-", dir=args.tmpdir) as tmp:
        work = Path(tmp)
        for r in range(1, args.runs + 1):
            for key, tool in tools.items():
                out = None
                if key in ("t1j", "tnj") and r > 1:
                    continue
                if key in ("baseline", "baseline_buf"):
                    out = work / f"{key}.txt"
                    argv = [baseline, cap]
                    if key == "baseline_buf":
                        argv = [baseline, "--stdio-buffer", str(STDIO_BUFFER), cap]
                elif key == "count":
                    out = work / "count.txt"
                    argv = [counter, "--stdio-buffer", str(STDIO_BUFFER), cap]
                elif key in ("t1", "tn", "t1j", "tnj"):
                    jsonl = key.endswith("j")
                    out = work / f"p2pguard-{key}-run{r}.{'jsonl' if jsonl else 'txt'}"
                    threads = 1 if key.startswith("t1") else n
                    # -q: never a progress bar. The report goes to -o FILE;
                    # p2pguard's stdout (then empty) to /dev/null.
                    argv = [p2pguard, "analyze", "-q", "-t", str(threads)]
                    argv += ["-f", "jsonl"] if jsonl else []
                    argv += ["-o", str(out), cap]
                elif key == "ndpi":
                    argv = [ndpi, "-i", cap, "-q"]
                if key == "copies":
                    argvs = [[p2pguard, "analyze", "-q", "-t", "1", "-o",
                              str(work / f"copy-{i}-run{r}.txt"), cap] for i in range(n)]
                    run = run_concurrent(tool.label, argvs, work, gnu_time)
                else:
                    p2p = key in ("t1", "tn", "t1j", "tnj")
                    # N threads say where each thread's time went (on
                    # standard error; it reads a clock a few times a chunk).
                    several = key == "tn" and n > 1
                    env = {THREAD_TIMES: "1"} if several else None
                    before = core_distance(distance) if several else None
                    run = run_measured(tool.label, argv, None if p2p else out, work, gnu_time,
                                       env)
                    if several:
                        thread_times.append(read_thread_times(work / "stderr.txt", n))
                        distances.append((before, core_distance(distance)))
                tool.runs.append(run)
                log(f"[round {r}/{args.runs}] {tool.label}: {run.seconds:.3f} s, "
                    f"peak RSS {mib(run.maxrss_kib)} MiB")

                # Check each run's counts as soon as it ends.
                if key in ("baseline", "baseline_buf"):
                    counts = parse_baseline(out)
                    if packets is not None and counts != (packets, frame_bytes):
                        raise BenchError(f"pcap-baseline counted {counts} in round {r}, "
                                         f"{(packets, frame_bytes)} before")
                    packets, frame_bytes = counts
                elif key in ("t1", "tn"):
                    if "P2P" not in out.read_text(errors="replace"):
                        raise BenchError(f"{tool.label} (round {r}): no summary in {out}")
                elif key == "count":
                    counted = parse_count(out)
                    if counted != packets:
                        raise BenchError(f"flow-count counted {counted} packets in round {r}, "
                                         f"the baseline {packets}")
                elif key == "copies":
                    for i in range(n):
                        if "P2P" not in (work / f"copy-{i}-run{r}.txt").read_text(errors="replace"):
                            raise BenchError(f"{tool.label} (round {r}): no summary from copy {i}")
                elif key in ("t1j", "tnj"):
                    report = read_report(out)
                    if report.stats.get("packets") != packets:
                        raise BenchError(
                            f"{tool.label} (round {r}) counted {report.stats.get('packets')} "
                            f"packets, the baseline {packets}")
                    reports[(key, r)] = report

        share = resident_share(capture)
        held_share = ("residency at the end not known" if share is None
                      else f"{min(share, 1.0):.1%} of it resident at the end, by fincore")
        log(f"capture in the page cache at the end: {held_share}")

        # ---- verdicts: the N-thread output against the 1-thread one
        ref = reports[("t1j", 1)]
        ref_name = "1 thread"
        verdict_lines: list[str] = []
        same = True
        for (key, r), report in reports.items():
            if report is ref or report.digest == ref.digest:
                continue
            same = False
            name = f"{n} threads"
            verdict_lines += [f"verdicts identical: NO: {ref_name} vs {name}"]
            verdict_lines += describe_differences(ref, ref_name, report, name)
        if same:
            verdict_lines = [f"verdicts identical: yes ({ref.flow_lines} flows; "
                             f"sorted flow lines of the jsonl reports of 1 and {n} threads)"]
        if n == 1:
            verdict_lines.append("note: N = 1, so the N-thread run is a second 1-thread run")
        stats_t1 = ref.stats
        stats_tn = reports[("tnj", 1)].stats

    # ---- the table
    rows = []
    for tool in tools.values():
        if tool.key in ("t1j", "tnj"):
            continue
        t = tool.median()
        secs = [run.seconds for run in tool.runs]
        # The N copies each read the whole capture.
        times = n if tool.key == "copies" else 1
        rows.append([tool.label, f"{t:.3f}", f"{min(secs):.3f}-{max(secs):.3f}",
                     group(times * packets / t), f"{times * frame_bytes * 8 / t / 1e9:.2f}",
                     mib(tool.peak_rss())])
    table = markdown_table(
        ["tool", "median s", "min-max s", "packets/s", "Gbit/s", "peak RSS MiB"],
        rows, right={1, 2, 3, 4, 5})
    # The runs with the full report (one run each).
    full_rows = []
    for key in ("t1j", "tnj"):
        run = tools[key].runs[0]
        full_rows.append([tools[key].label, f"{run.seconds:.3f}", group(packets / run.seconds),
                          f"{frame_bytes * 8 / run.seconds / 1e9:.2f}", mib(run.maxrss_kib)])
    full_table = markdown_table(["with the full report", "s", "packets/s", "Gbit/s",
                                 "peak RSS MiB"], full_rows, right={1, 2, 3, 4})

    # ---- ratios: throughput of the first over the second, on median times
    t_base, t_buf, t_count, t1, tn, t_ndpi = (
        tools[k].median() for k in ("baseline", "baseline_buf", "count", "t1", "tn", "ndpi"))

    def verdict(value: float, target: float) -> str:
        return "PASS" if value >= target else "MISS"

    ratio_rows = [
        ["p2pguard 1 thread vs ndpiReader", f"{t_ndpi / t1:.2f}x", f">= {TARGET_VS_NDPI:g}x",
         verdict(t_ndpi / t1, TARGET_VS_NDPI)],
        ["p2pguard 1 thread vs baseline", f"{t_base / t1:.2f}", f">= {TARGET_VS_BASELINE:g}",
         verdict(t_base / t1, TARGET_VS_BASELINE)],
        ["p2pguard 1 thread vs baseline, 128 KiB buffer", f"{t_buf / t1:.2f}", "(shown)", ""],
        ["bare flow counter vs baseline", f"{t_base / t_count:.2f}", "(shown)", ""],
        ["p2pguard 1 thread vs bare flow counter", f"{t_count / t1:.2f}", "(shown)", ""],
        [f"p2pguard {n} threads vs baseline", f"{t_base / tn:.2f}", "(shown)", ""],
        [f"p2pguard {n} threads vs baseline, 128 KiB buffer", f"{t_buf / tn:.2f}", "(shown)", ""],
    ]
    if n == 1:
        ratio_rows.append(["p2pguard 1 thread vs 1 thread", f"{t1 / tn:.2f}x", "n/a (N = 1)", "n/a"])
    else:
        target = f">= {TARGET_SCALING:g}x" + ("" if n == 2 else " (set for N = 2)")
        # What N CPUs give for N independent copies, over one copy alone.
        independent = n * t1 / tools["copies"].median()
        ratio_rows.append([f"p2pguard {n} threads vs 1 thread", f"{t1 / tn:.2f}x", target,
                           verdict(t1 / tn, TARGET_SCALING)])
        ratio_rows.append([f"{n} copies of p2pguard -t 1 at once vs 1 thread (what {n} CPUs "
                           "give for independent work)", f"{independent:.2f}x", "(shown)", ""])
        ratio_rows.append([f"p2pguard {n} threads vs 1 thread, as a share of that",
                           f"{t1 / tn / independent:.2f}", "(shown)", ""])
    ratios = markdown_table(["ratio of packets/s", "value", "target", ""],
                            ratio_rows, right={1})
    # The spread of the N-thread ratio, which the medians hide.
    by_round: list[str] = []
    if n > 1:
        per = [a.seconds / b.seconds for a, b in zip(tools["t1"].runs, tools["tn"].runs)]
        by_round = [f"Round by round, p2pguard {n} threads vs 1 thread (a round's 1-thread time "
                    f"over its {n}-thread time), with the cache-line round trip between CPUs 0 "
                    f"and 1 before and after the {n}-thread run (`core-distance`): "
                    + ", ".join(f"{x:.2f}x ({round_trips(a, b)})"
                                for x, (a, b) in zip(per, distances, strict=True))
                    + (f"; from {min(per):.2f}x to {max(per):.2f}x." if len(per) > 1 else ".")]
        measured = [(x, a, b) for x, (a, b) in zip(per, distances, strict=True)
                    if a is not None and b is not None]
        near = [x for x, a, b in measured if a < NEAR_NS and b < NEAR_NS]
        far = [x for x, a, b in measured if a > FAR_NS and b > FAR_NS]
        by_round += [f"By distance: CPUs near (both round trips under {NEAR_NS} ns) in "
                     f"{len(near)} round(s){median_of(near)}; far (both over {FAR_NS} ns) in "
                     f"{len(far)} round(s){median_of(far)}; the other {len(per) - len(near) - len(far)} "
                     "changed in between, lay between the two or were not measured."]

    # ---- p2pguard's own stats
    def stat_row(name, get):
        a, b = get(stats_t1), get(stats_tn)
        return [name, group(a), group(b)]

    stat_rows = [
        stat_row("flows", lambda s: s["flows"]),
        stat_row("P2P flows", lambda s: s["p2p_flows"]),
        stat_row("peak flows (flow table)", lambda s: s["flow_table"]["peak"]),
        stat_row("flows evicted (table full)", lambda s: s["flow_table"]["evicted"]),
        stat_row("bytes_per_flow (flow table entry)", lambda s: s["flow_table"]["bytes_per_flow"]),
    ]
    stats_table = markdown_table(["p2pguard stats", "1 thread", f"{n} threads"], stat_rows,
                                 right={1, 2})

    # ---- print
    print()
    print(f"capture: {capture}: {size / 1e6:.1f} MB, {group(packets)} packets, "
          f"{group(frame_bytes)} bytes of frames, {group(stats_t1['flows'])} flows "
          f"({group(stats_t1['p2p_flows'])} P2P)")
    print(f"median of {args.runs} run(s) per tool, tools one at a time, capture in the page cache")
    print()
    print("\n".join(table))
    print()
    print("\n".join(full_table))
    print()
    print("\n".join(ratios + by_round))
    for r, lines in enumerate(thread_times, 1):
        print(f"round {r}, {n} threads: " + "; ".join(lines))
    print()
    print("\n".join(stats_table))
    print()
    print("\n".join(verdict_lines))

    # ---- RESULTS.md
    machine = machine_info(ndpi, p2pguard)
    summary_path = args.generator_summary or Path(str(capture) + ".txt")
    generator = read_generator_summary(summary_path, packets)
    md = [RESULTS_HEADER]
    md += ["## Run", "",
           f"- Date (UTC): {started.strftime('%Y-%m-%d %H:%M:%S')}",
           f"- Command: `{command}`"]
    if command != script_command:
        md.append(f"- Which ran: `{script_command}`")
    load_after = os.getloadavg()
    md += [f"- Load average (1 min) of the machine: {load_before[0]:.2f} at the start, "
           f"{load_after[0]:.2f} at the end (which includes the benchmark's own load)"]
    copies = f", {n} copies of 1 thread at once" if n > 1 else ""
    md += [f"- Runs: {args.runs} per tool, in rounds (the two baselines, the bare flow counter, "
           f"1 thread, {n} threads{copies}, ndpiReader); times are medians, min-max is the "
           "spread", ""]
    md += ["## Machine", ""] + [f"- {k}: {v}" for k, v in machine.items()] + [""]
    md += ["## Capture", "",
           f"- File: `{shown(capture)}`, "
           f"{size:,} bytes ({size / 1e9:.2f} GB); mapped and read in {cold:.2f} s, and held "
           f"mapped in the page cache throughout ({held_share})",
           f"- {packets:,} packets, {frame_bytes:,} bytes of frames "
           f"({frame_bytes / packets:.0f} B mean), counted by the baseline",
           f"- {stats_t1['flows']:,} flows, {stats_t1['p2p_flows']:,} named P2P, by p2pguard", ""]
    if generator:
        md += ["Generated by `bench-capture`, which printed:", "", "```text"] + generator + ["```", ""]
    md += ["## Results", ""] + table + [""]
    md += ["packets/s and Gbit/s: the capture's packets and frame bytes over the median time. "
           "Peak RSS: the highest maximum resident set size of the tool's runs (GNU time's %M). "
           "p2pguard's time includes writing its default report (the summary) to a file "
           f"(in {args.tmpdir or tempfile.gettempdir()}); "
           "ndpiReader runs with its report off (-q)."
           + (f" The {n} copies of p2pguard -t 1 each read the whole capture: their packets/s "
              f"counts {n} times the capture." if n > 1 else ""), ""]
    md += ["The same p2pguard runs with the full report, one JSON line per flow "
           "(`-f jsonl`, used for the verdict check), one run each:", ""] + full_table + [""]
    md += ["## Ratios", ""] + ratios + [""]
    md += ["Each ratio is the first tool's packets/s over the second's, on median times "
           "(so `2x` means twice as fast); PASS when it reaches the target of project issue 5.", ""]
    md += [part for line in by_round for part in (line, "")]
    if thread_times:
        md += [f"Where each thread's time went in the {n}-thread runs (`{THREAD_TIMES}=1`, "
               "see the README's \"How analysis runs\"; thread 0 reads the capture):", ""]
        for r, lines in enumerate(thread_times, 1):
            md += [f"- round {r} ({tools['tn'].runs[r - 1].seconds:.3f} s): " + "; ".join(lines)]
        md += [""]
    md += ["## p2pguard's stats", ""] + stats_table + [""]
    md += ["## Verdicts", ""] + ["```text"] + verdict_lines + ["```", ""]
    # The tools' command lines, as run (TMP: the temporary directory).
    pg, capture_shown = shown(p2pguard), shown(capture)
    md += ["## Commands", "",
           f"Each under `{gnu_time} -f '%M %x' -o TMP/usage.txt COMMAND...` (GNU time), "
           "which measures the peak RSS.", "", "```text",
           shlex.join([shown(baseline), capture_shown]) + "  > TMP/baseline.txt",
           shlex.join([shown(baseline), "--stdio-buffer", str(STDIO_BUFFER), capture_shown])
           + "  > TMP/baseline_buf.txt",
           shlex.join([shown(counter), "--stdio-buffer", str(STDIO_BUFFER), capture_shown])
           + "  > TMP/count.txt",
           shlex.join([pg, "analyze", "-q", "-t", "1", "-o", "TMP/t1.txt", capture_shown]),
           (f"{THREAD_TIMES}=1 " if n > 1 else "")
           + shlex.join([pg, "analyze", "-q", "-t", str(n), "-o", "TMP/tn.txt", capture_shown]),
           shlex.join([pg, "analyze", "-q", "-t", "1", "-f", "jsonl", "-o", "TMP/t1.jsonl", capture_shown]),
           shlex.join([pg, "analyze", "-q", "-t", str(n), "-f", "jsonl", "-o", "TMP/tn.jsonl", capture_shown]),
           shlex.join([ndpi, "-i", capture_shown, "-q"]) + "  > /dev/null"]
    if n > 1:
        md += [f"# {n} at once, i = 0..{n - 1}:",
               shlex.join([pg, "analyze", "-q", "-t", "1", "-o", "TMP/copy-i.txt", capture_shown])]
    md += ["```", ""]
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text("\n".join(md))
    print(f"\nwritten: {args.results}")
    return 0 if same else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except SetupError as e:
        log(f"ERROR (set-up): {e}")
        sys.exit(2)
    except BenchError as e:
        log(f"ERROR: {e}")
        sys.exit(1)
