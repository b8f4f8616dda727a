#!/usr/bin/env python3
"""Compare p2pguard with nDPI's ndpiReader, flow by flow, against ground truth.

Both tools are run on the same captures:

* the shared reference captures, ``../shared/captures/corpus/*``, labelled by
  ``../shared/captures/labels.tsv`` (``file group transport a b reference
  expected``) and corrected by ``tests/label-corrections.tsv``;
* the project's own captures, ``captures/*.pcap``, labelled by
  ``captures/NAME.truth.tsv`` (``transport a b expected what``).

A labelled flow is keyed by transport and its unordered endpoint pair. A tool
names a labelled pair if it names any of its flows with that key (a tool may
split a pair in several flows, for example after an idle timeout). For each
capture and each tool the script counts:

* p2p found: labelled ``p2p`` pairs named;
* FP: labelled ``not-p2p`` pairs named, plus every other pair named in a
  capture whose group is ``non-p2p`` or ``p2p-legit`` (own captures without a
  ``p2p`` row count as ``non-p2p``);
* either named: labelled ``either`` pairs named (counted neither way).

nDPI names a flow P2P if its master or app protocol is a file-sharing P2P
protocol of the installed version (``--ndpi-p2p``). Detections whose
confidence is ``Match by port`` or ``Match by IP`` (nDPI's guesses, given at
the end of a flow that DPI could not classify) are reported apart, as
"guess"; everything else (``DPI``, ``DPI (cache)``) counts as a detection.

Output: a Markdown report on stdout (versions, command lines, per-capture rows
where something is non-zero, totals, the own captures by ``what``, notes), or
with ``--json`` one JSON document with everything, flow by flow.

Exit status: 0 on success; 1 if a tool failed on some capture (the report is
still printed, with the failure in the notes); 2 on a set-up error (a tool or
the captures missing, bad arguments).

Usage, from the repository root:

    cargo build --release
    scripts/compare-ndpi.py --p2pguard target/release/p2pguard
    scripts/compare-ndpi.py --json > comparison.json
    scripts/compare-ndpi.py --ndpi-isolate    # also: which nDPI verdicts need other flows

ndpiReader is run as `ndpiReader -t -i CAPTURE -v 2` (per-flow lines; GTP
tunnels decoded, as in nDPI's own tests). Its IPv6 text can be mangled
(ndpi_patchIPv6Address); such addresses are read back (ndpi_ip_candidates).
nDPI 4.2 reads a pcap file without idle timeouts, so it has one flow per
5-tuple; p2pguard can split a pair in several flows: pairs are compared.

Python 3 standard library only.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import fnmatch
import hashlib
import ipaddress
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# File-sharing P2P protocols, as nDPI has called them over its versions. Only
# the ones the installed ndpiReader knows (its protocol table in `-h`) are
# used; the others are listed as absent in the report.
NDPI_P2P_CANDIDATES = [
    "BitTorrent", "Gnutella", "eDonkey", "DirectConnect", "FastTrack", "Kazaa",
    "Ares", "Soulseek", "Thunder", "PPStream", "PPLive", "AppleJuice", "iMESH",
    "OpenFT", "WinMX", "Stealthnet", "Aimini", "Filetopia", "Manolito",
]
# Peer-to-peer streaming or CDN protocols that are not counted as P2P file
# sharing; flows named so are only listed in the notes.
NDPI_P2P_OTHER = ["Sopcast", "QQLive", "TVUplayer", "Kontiki", "TVAnts", "PPLive"]

EXPECTED_VALUES = ("p2p", "not-p2p", "either")
NDPI_TIMEOUT = 900


def ndpi_args(capture: str, bpf: str | None = None) -> list:
    # -v 2: one line per flow with both endpoints, protocol and confidence.
    # -t: decode GTP/TZSP tunnels, as nDPI's own test suite does (some corpus
    # flows are inside GTP-U). Protocol guessing stays on (the default), and
    # guesses are told apart by their confidence.
    return ["-t", "-i", capture, "-v", "2"] + (["-f", bpf] if bpf else [])


P2PGUARD_TIMEOUT = 900

# `\t<n>\t<L4> <src>:<port> <-> <dst>:<port> [...]` (`->` when one-way).
NDPI_FLOW_RE = re.compile(
    r"^\t(\d+)\t([A-Za-z0-9_]+) (\[[0-9A-Fa-f:.%a-z]+\]|[0-9.]+):(\d+) (<->|->) "
    r"(\[[0-9A-Fa-f:.%a-z]+\]|[0-9.]+):(\d+) (.*)$"
)
NDPI_PROTO_RE = re.compile(r"\[proto: (?:([A-Za-z0-9_]+):)?([0-9.]+)/([^\]]*)\]")
NDPI_CONF_RE = re.compile(r"\[Confidence: ([^\]]*)\]")
NDPI_TABLE_RE = re.compile(r"^\s*(\d+)\s+(\S+)\s")


def die(message: str):
    """A set-up error: message on stderr, exit status 2."""
    sys.stderr.write(f"compare-ndpi: error: {message}\n")
    sys.exit(2)


# --------------------------------------------------------------------------
# Keys and labels


def parse_endpoint(text: str):
    """`ip:port` or `[ipv6]:port` -> (canonical ip, port); ValueError if bad."""
    host, sep, port = text.strip().rpartition(":")
    if not sep:
        raise ValueError(f"no port in {text!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"IPv6 address without brackets in {text!r}")
    ip = ipaddress.ip_address(host)
    p = int(port)
    if not 0 <= p <= 65535:
        raise ValueError(f"port out of range in {text!r}")
    return (ip.version, ip.packed, p, ip.compressed)


def ndpi_ip_candidates(host: str):
    """Addresses an IPv6 string printed by ndpiReader can stand for.

    ndpiReader 4.2 passes inet_ntop's text through ndpi_patchIPv6Address,
    which turns every ":0:" into "::". Where inet_ntop had already written a
    "::", the result has two of them and is not a valid address (for example
    2600:1900:4160:5999:0:19:: becomes 2600:1900:4160:5999::19::). At most one
    "::" is inet_ntop's run of zero groups; every other one is a single zero
    group. Returns every address consistent with that (one for valid text).
    """
    parts = host.split("::")
    if len(parts) <= 2:
        try:
            return [ipaddress.ip_address(host)]
        except ValueError:
            return []
    explicit = sum(len([g for g in part.split(":") if g]) for part in parts)
    gaps = len(parts) - 1
    out = []
    for genuine in [None] + list(range(gaps)):
        fill = []
        for i in range(gaps):
            if i == genuine:
                n = 8 - explicit - (gaps - 1)
                if n < 1:
                    break
                fill.append(n)
            else:
                fill.append(1)
        else:
            if sum(fill) + explicit != 8:
                continue
            groups = []
            for i, part in enumerate(parts):
                groups += [g for g in part.split(":") if g]
                if i < gaps:
                    groups += ["0"] * fill[i]
            try:
                ip = ipaddress.IPv6Address(":".join(groups))
            except ValueError:
                continue
            if ip not in out:
                out.append(ip)
    return out


def parse_ndpi_endpoint(host: str, port: str, known: set):
    """An endpoint as printed by ndpiReader; repairs patched IPv6 text,
    choosing among the candidates the one address known from the labels.
    Returns (endpoint, note or None)."""
    if not host.startswith("["):
        return parse_endpoint(f"{host}:{port}"), None
    text = host[1:-1]
    cands = ndpi_ip_candidates(text)
    if not cands:
        raise ValueError(f"unreadable IPv6 address {text!r}")
    if text.count("::") <= 1:
        return parse_endpoint(f"[{cands[0].compressed}]:{port}"), None
    hits = [c for c in cands if c.compressed in known]
    if len(cands) == 1:
        chosen, how = cands[0], "the only reading"
    elif len(hits) == 1:
        chosen, how = hits[0], "the one in the labels"
    else:
        chosen, how = cands[0], "ambiguous, took the first"
    return (parse_endpoint(f"[{chosen.compressed}]:{port}"),
            f"ndpiReader printed the invalid IPv6 address {text} (its \":0:\" -> \"::\" patch); "
            f"read as {chosen.compressed} ({how}; candidates {', '.join(c.compressed for c in cands)})")


def make_key(transport: str, a, b):
    """Transport and unordered endpoint pair (from parse_endpoint)."""
    t = transport.lower()
    ea, eb = a[:3], b[:3]
    return (t,) + ((ea, eb) if ea <= eb else (eb, ea))


def fmt_endpoint(e) -> str:
    return f"[{e[3]}]:{e[2]}" if e[0] == 6 else f"{e[3]}:{e[2]}"


@dataclass
class Label:
    transport: str
    a: str
    b: str
    expected: str
    what: str | None = None  # own captures
    reference: str | None = None  # shared captures: nDPI's (newer) label


@dataclass
class Capture:
    name: str
    path: Path
    source: str  # "shared" or "own"
    group: str
    labels: dict = field(default_factory=dict)  # key -> Label


def read_tsv(path: Path):
    with open(path, encoding="utf-8") as f:
        lines = [line.rstrip("\n").rstrip("\r") for line in f]
    rows = []
    header = None
    for n, line in enumerate(lines, 1):
        if not line.strip() or line.startswith("#"):
            continue
        cols = line.split("\t")
        if header is None:
            header = cols
            continue
        rows.append((n, cols))
    return header or [], rows


def load_shared(shared: Path, corrections: Path | None, notes: list[str]):
    header, rows = read_tsv(shared / "labels.tsv")
    want = ["file", "group", "transport", "a", "b", "reference", "expected"]
    if header != want:
        die(f"{shared / 'labels.tsv'}: header {header}, expected {want}")
    captures: dict[str, Capture] = {}
    for n, cols in rows:
        where = f"labels.tsv:{n}"
        if len(cols) != 7:
            notes.append(f"{where}: skipped, {len(cols)} columns instead of 7")
            continue
        file, group, transport, a, b, reference, expected = cols
        if transport not in ("tcp", "udp") or expected not in EXPECTED_VALUES:
            notes.append(f"{where}: skipped, transport {transport!r} / expected {expected!r}")
            continue
        try:
            ea, eb = parse_endpoint(a), parse_endpoint(b)
        except ValueError as e:
            notes.append(f"{where}: skipped, invalid address ({e}): {file} {transport} {a} {b}")
            continue
        cap = captures.get(file)
        if cap is None:
            cap = captures[file] = Capture(file, shared / "corpus" / file, "shared", group)
        elif cap.group != group:
            notes.append(f"{where}: group {group} differs from {cap.group} earlier in {file}")
        key = make_key(transport, ea, eb)
        if key in cap.labels:
            notes.append(f"{where}: duplicate pair in {file}, kept the first row")
            continue
        cap.labels[key] = Label(transport, a, b, expected, reference=reference)

    if corrections is not None:
        header, rows = read_tsv(corrections)
        for n, cols in rows:
            where = f"{corrections.name}:{n}"
            if len(cols) != 6:
                notes.append(f"{where}: skipped, {len(cols)} columns instead of 6")
                continue
            file, transport, a, b, expected, reason = cols
            try:
                key = make_key(transport, parse_endpoint(a), parse_endpoint(b))
            except ValueError as e:
                notes.append(f"{where}: skipped, invalid address ({e})")
                continue
            label = captures.get(file, Capture("", Path(), "", "")).labels.get(key)
            if label is None or expected not in EXPECTED_VALUES:
                notes.append(f"{where}: NOT applied, no such label or bad value: {file} {transport} {a} {b} -> {expected}")
                continue
            short = reason if len(reason) <= 90 else reason[:87] + "..."
            notes.append(f"label corrected ({where}): {file} {transport} {a} {b}: "
                         f"{label.expected} -> {expected} ({short})")
            label.expected = expected

    present = {p.name for p in (shared / "corpus").iterdir() if p.is_file()}
    for file in sorted(set(captures) - present):
        notes.append(f"shared: {file} is labelled but not in corpus/; left out")
        del captures[file]
    for file in sorted(present - set(captures)):
        notes.append(f"shared: corpus/{file} has no labels; left out")
    return [captures[k] for k in sorted(captures)]


def load_own(directory: Path, notes: list[str]):
    out = []
    skipped = []
    for path in sorted(directory.glob("*.pcap")) + sorted(directory.glob("*.pcapng")):
        stem = path.name.rsplit(".", 1)[0]
        truth = directory / f"{stem}.truth.tsv"
        if not truth.is_file():
            skipped.append(path.name)
            continue
        header, rows = read_tsv(truth)
        want = ["transport", "a", "b", "expected", "what"]
        if header != want:
            notes.append(f"{truth.name}: header {header}, expected {want}; capture left out")
            continue
        cap = Capture(path.name, path, "own", "")
        for n, cols in rows:
            where = f"{truth.name}:{n}"
            if len(cols) != 5:
                notes.append(f"{where}: skipped, {len(cols)} columns instead of 5")
                continue
            transport, a, b, expected, what = cols
            if transport not in ("tcp", "udp") or expected not in EXPECTED_VALUES:
                notes.append(f"{where}: skipped, transport {transport!r} / expected {expected!r}")
                continue
            try:
                key = make_key(transport, parse_endpoint(a), parse_endpoint(b))
            except ValueError as e:
                notes.append(f"{where}: skipped, invalid address ({e})")
                continue
            if key in cap.labels:
                notes.append(f"{where}: duplicate pair, kept the first row")
                continue
            cap.labels[key] = Label(transport, a, b, expected, what=what)
        cap.group = "p2p" if any(l.expected == "p2p" for l in cap.labels.values()) else "non-p2p"
        out.append(cap)
    if skipped:
        notes.append("own captures without a NAME.truth.tsv, left out: " + ", ".join(skipped))
    return out


# --------------------------------------------------------------------------
# Running the tools


@dataclass
class ToolFlow:
    key: tuple
    src: str
    dst: str
    name: str | None  # protocol as the tool prints it
    kind: str | None  # None (not P2P), "p2p", or for nDPI "dpi" / "guess"
    confidence: str | None = None
    other_p2p: str | None = None  # nDPI: P2P streaming name, not counted
    isolated: str | None = None  # nDPI, --ndpi-isolate: the verdict on this flow alone


@dataclass
class ToolRun:
    flows: list = field(default_factory=list)
    error: str | None = None
    warnings: list = field(default_factory=list)
    version: str | None = None
    skipped: dict = field(default_factory=dict)  # packets not tracked, by reason


def run(cmd, timeout):
    return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)


def run_p2pguard(binary: str, path: Path) -> ToolRun:
    out = ToolRun()
    try:
        proc = run([binary, "analyze", "-f", "jsonl", str(path)], P2PGUARD_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired) as e:
        out.error = f"p2pguard could not run: {e}"
        return out
    stats = None
    for n, line in enumerate(proc.stdout.decode("utf-8", "replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            out.warnings.append(f"p2pguard output line {n} is not JSON: {e}")
            continue
        if obj.get("event") == "stats":
            stats = obj
            continue
        if obj.get("event") != "flow":
            continue
        try:
            a = parse_endpoint(f"[{obj['src_ip']}]:{obj['src_port']}" if ":" in obj["src_ip"]
                               else f"{obj['src_ip']}:{obj['src_port']}")
            b = parse_endpoint(f"[{obj['dst_ip']}]:{obj['dst_port']}" if ":" in obj["dst_ip"]
                               else f"{obj['dst_ip']}:{obj['dst_port']}")
        except (KeyError, ValueError) as e:
            out.warnings.append(f"p2pguard flow {obj.get('id')}: unreadable endpoint ({e})")
            continue
        proto = obj.get("protocol")
        out.flows.append(ToolFlow(make_key(obj["transport"], a, b), fmt_endpoint(a), fmt_endpoint(b),
                                  proto, "p2p" if proto else None, obj.get("confidence")))
    out.skipped = {k: v for k, v in ((stats or {}).get("skipped") or {}).items() if v}
    errs = [i.get("error") for i in (stats or {}).get("inputs", []) if i.get("error")]
    if proc.returncode != 0 or stats is None or errs:
        msg = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        detail = "; ".join(errs) or (msg[-1] if msg else "no stats object")
        out.error = f"p2pguard exited {proc.returncode}: {detail}"
    return out


def ndpi_isolate(binary, path, flow: ToolFlow, p2p_names, other_names, table, known_ips) -> str:
    """Run ndpiReader again on this flow's packets alone (a BPF filter on
    its 5-tuple, also under one VLAN tag) and say what it calls it then:
    "named" (P2P by DPI), "guess", "not named", or "not seen" (the filter
    did not catch it, e.g. inside a GTP tunnel). A flow named in the full
    capture but not alone was named with the help of other flows (nDPI's
    BitTorrent endpoint cache, looked up when nDPI gives up on a flow at the
    end of the capture)."""
    hosts = [e.rpartition(":") for e in (flow.src, flow.dst)]
    (ha, _, pa), (hb, _, pb) = [(h.strip("[]"), s, p) for h, s, p in hosts]
    f = f"{flow.key[0]} and host {ha} and host {hb} and port {pa} and port {pb}"
    r = run_ndpi(binary, path, p2p_names, other_names, table, known_ips, f"({f}) or (vlan and ({f}))")
    same = [g for g in r.flows if g.key == flow.key]
    if r.error or not same:
        return "not seen"
    kind = best_kind(same)
    return {"dpi": "named", "guess": "guess"}.get(kind, "not named")


def ndpi_protocol_table(binary: str):
    """(banner version, {id: name}) from `ndpiReader -h`."""
    try:
        proc = run([binary, "-h"], 60)
    except (OSError, subprocess.TimeoutExpired) as e:
        die(f"{binary} -h failed: {e}")
    text = proc.stdout.decode("utf-8", "replace") + proc.stderr.decode("utf-8", "replace")
    m = re.search(r"Welcome to nDPI ([^\s]+)", text)
    version = m.group(1) if m else None
    table = {}
    in_table = False
    for line in text.splitlines():
        if "supported protocols" in line:
            in_table = True
            continue
        if in_table:
            m = NDPI_TABLE_RE.match(line)
            if m:
                table[int(m.group(1))] = m.group(2)
            elif line.strip() and table and not line.strip().startswith("Id"):
                break
    return version, table


def run_ndpi(binary: str, path: Path, p2p_names: set, other_names: set, table: dict,
             known_ips: set, bpf: str | None = None) -> ToolRun:
    out = ToolRun()
    tmpdir = None
    target = path
    if "," in str(path):  # -i takes a comma-separated list
        tmpdir = tempfile.mkdtemp(prefix="compare-ndpi-")
        target = Path(tmpdir) / "capture"
        os.symlink(path.resolve(), target)
    try:
        proc = run([binary] + ndpi_args(str(target), bpf), NDPI_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired) as e:
        out.error = f"ndpiReader could not run: {e}"
        return out
    finally:
        if tmpdir:
            shutil.rmtree(tmpdir, ignore_errors=True)
    text = proc.stdout.decode("utf-8", "replace")
    err = proc.stderr.decode("utf-8", "replace")
    m = re.search(r"Using nDPI \(([^)]+)\)", text)
    out.version = m.group(1) if m else None
    unique = re.search(r"Unique flows:\s+(\d+)", text)
    heads = 0
    for line in text.splitlines():
        m = NDPI_FLOW_RE.match(line)
        if not m:
            continue
        heads += 1
        l4 = m.group(2).lower()
        if l4 not in ("tcp", "udp"):
            continue
        rest = m.group(8)
        pm = NDPI_PROTO_RE.search(rest)
        cm = NDPI_CONF_RE.search(rest)
        try:
            a, note_a = parse_ndpi_endpoint(m.group(3), m.group(4), known_ips)
            b, note_b = parse_ndpi_endpoint(m.group(6), m.group(7), known_ips)
            out.warnings += [n for n in (note_a, note_b) if n]
        except ValueError as e:
            out.warnings.append(f"ndpiReader flow {m.group(1)}: unreadable endpoint ({e})")
            continue
        if not pm:
            out.warnings.append(f"ndpiReader flow line without [proto: ...]: {line[:120]}")
            continue
        ids = [int(x) for x in pm.group(2).split(".") if x]
        names = [table.get(i) for i in ids]
        if None in names:  # not in the table: fall back to the printed names
            names = pm.group(3).split(".")
        confidence = cm.group(1) if cm else None
        kind = None
        if any(n.lower() in p2p_names for n in names):
            kind = "guess" if (confidence or "").startswith("Match by") else "dpi"
        other = next((n for n in names if n.lower() in other_names), None)
        name = pm.group(3) + (f" [{pm.group(1)}]" if pm.group(1) else "")
        out.flows.append(ToolFlow(make_key(l4, a, b), fmt_endpoint(a), fmt_endpoint(b),
                                  name, kind, confidence, other))
    if "Unsupported datalink" in text or "Unsupported datalink" in err:
        m = re.search(r"Unsupported datalink[^\n]*", text + err)
        out.error = f"ndpiReader: {m.group(0).strip()}"
    elif proc.returncode != 0:
        out.error = f"ndpiReader exited {proc.returncode}: {(err.strip().splitlines() or [''])[-1]}"
    elif unique is None:
        out.error = "ndpiReader printed no traffic statistics (could it read the file?)"
    elif int(unique.group(1)) != heads:
        out.warnings.append(f"ndpiReader reports {unique.group(1)} unique flows but {heads} flow lines were parsed")
    return out


# --------------------------------------------------------------------------
# Scoring


TOOLS = ("p2pguard", "ndpi")


def empty_metrics():
    return {"found": 0, "fp": 0, "fp_labelled": 0, "fp_unlabelled": 0, "either_named": 0,
            "guess_found": 0, "guess_fp": 0, "guess_either": 0,
            "unlabelled_named_in_p2p_capture": 0, "labelled_unseen": 0, "named_flows": 0}


def best_kind(flows):
    kinds = {f.kind for f in flows}
    for k in ("p2p", "dpi", "guess"):
        if k in kinds:
            return k
    return None


def score(cap: Capture, runs: dict):
    counts = {"p2p": 0, "not-p2p": 0, "either": 0}
    for label in cap.labels.values():
        counts[label.expected] += 1
    result = {"file": cap.name, "source": cap.source, "group": cap.group,
              "labelled": counts, "tools": {}, "errors": {}, "flows": []}
    by_tool = {}
    for tool in TOOLS:
        r = runs[tool]
        if r.error:
            result["errors"][tool] = r.error
        m = empty_metrics()
        flows: dict = {}
        for f in r.flows:
            flows.setdefault(f.key, []).append(f)
        by_tool[tool] = flows
        for key, fl in flows.items():
            kind = best_kind(fl)
            if kind:
                m["named_flows"] += 1
            label = cap.labels.get(key)
            if label is None:
                if kind in ("p2p", "dpi"):
                    if cap.group == "p2p":
                        m["unlabelled_named_in_p2p_capture"] += 1
                    else:
                        m["fp"] += 1
                        m["fp_unlabelled"] += 1
                elif kind == "guess" and cap.group != "p2p":
                    m["guess_fp"] += 1
                continue
            if kind in ("p2p", "dpi"):
                if label.expected == "p2p":
                    m["found"] += 1
                elif label.expected == "either":
                    m["either_named"] += 1
                else:
                    m["fp"] += 1
                    m["fp_labelled"] += 1
            elif kind == "guess":
                m[{"p2p": "guess_found", "either": "guess_either", "not-p2p": "guess_fp"}[label.expected]] += 1
        m["labelled_unseen"] = sum(1 for k in cap.labels if k not in flows)
        if tool == "p2pguard":
            for k in ("guess_found", "guess_fp", "guess_either"):
                del m[k]
        result["tools"][tool] = m

    # Flow by flow: every labelled pair, then pairs named by a tool that
    # have no label.
    def describe(tool, key):
        fl = by_tool[tool].get(key)
        if not fl:
            return None
        return [dict({"protocol": f.name, "confidence": f.confidence, "p2p": f.kind},
                     **({"alone": f.isolated} if f.isolated else {})) for f in fl]

    for key, label in cap.labels.items():
        row = {"transport": label.transport, "a": label.a, "b": label.b, "expected": label.expected}
        if label.what is not None:
            row["what"] = label.what
        if label.reference is not None:
            row["reference"] = label.reference
        for tool in TOOLS:
            row[tool] = describe(tool, key)
        result["flows"].append(row)
    extra = set()
    for tool in TOOLS:
        extra |= {k for k, fl in by_tool[tool].items() if best_kind(fl) and k not in cap.labels}
    for key in sorted(extra):
        any_flow = next(f for t in TOOLS for f in by_tool[t].get(key, []))
        row = {"transport": key[0], "a": any_flow.src, "b": any_flow.dst, "expected": None}
        for tool in TOOLS:
            row[tool] = describe(tool, key)
        result["flows"].append(row)
    if runs["p2pguard"].skipped:
        result["p2pguard_skipped_packets"] = runs["p2pguard"].skipped
    others = sorted({f.other_p2p for f in runs["ndpi"].flows if f.other_p2p})
    if others:
        result["ndpi_other_p2p_names"] = others
    return result


def add(total, m):
    for k, v in m.items():
        total[k] = total.get(k, 0) + v


def totals(results):
    t = {"captures": len(results), "labelled": {"p2p": 0, "not-p2p": 0, "either": 0},
         "tools": {tool: {} for tool in TOOLS}, "confounder_captures": 0,
         "confounder_captures_clean": {tool: 0 for tool in TOOLS}}
    for r in results:
        add(t["labelled"], r["labelled"])
        for tool in TOOLS:
            add(t["tools"][tool], r["tools"][tool])
        if r["group"] != "p2p":
            t["confounder_captures"] += 1
            for tool in TOOLS:
                if r["tools"][tool]["fp"] == 0:
                    t["confounder_captures_clean"][tool] += 1
    return t


def by_what(results):
    """Own captures: flows and flows named by each tool, by `what`."""
    out: dict = {}
    for r in results:
        if r["source"] != "own":
            continue
        for row in r["flows"]:
            what = row.get("what")
            if what is None:
                continue
            w = out.setdefault(what, {"expected": set(), "flows": 0, "p2pguard": 0, "ndpi": 0, "ndpi_guess": 0})
            w["expected"].add(row["expected"])
            w["flows"] += 1
            pg = best_kind([ToolFlow((), "", "", d["protocol"], d["p2p"]) for d in row["p2pguard"] or []])
            nd = best_kind([ToolFlow((), "", "", d["protocol"], d["p2p"]) for d in row["ndpi"] or []])
            w["p2pguard"] += pg == "p2p"
            w["ndpi"] += nd == "dpi"
            w["ndpi_guess"] += nd == "guess"
    for w in out.values():
        w["expected"] = "/".join(sorted(w["expected"]))
    return dict(sorted(out.items(), key=lambda kv: (kv[1]["expected"] != "p2p", kv[0])))


# --------------------------------------------------------------------------
# Report


def cell_found(m, p2p, tool):
    s = f"{m['found']}/{p2p}"
    if tool == "ndpi" and m["guess_found"]:
        s += f" (+{m['guess_found']} guess)"
    return s


def cell_fp(m, tool):
    s = str(m["fp"])
    if tool == "ndpi" and m["guess_fp"]:
        s += f" (+{m['guess_fp']} guess)"
    return s


def cell_either(m, either, tool):
    s = f"{m['either_named']}/{either}"
    if tool == "ndpi" and m["guess_either"]:
        s += f" (+{m['guess_either']} guess)"
    return s


def nonzero(r):
    if any(r["labelled"][k] for k in ("p2p", "either")):
        return True
    for tool in TOOLS:
        m = r["tools"][tool]
        if any(m.get(k, 0) for k in ("found", "fp", "either_named", "guess_found", "guess_fp", "guess_either")):
            return True
    return bool(r["errors"])


def pct(a, b):
    return f"{100.0 * a / b:.1f}%" if b else "-"


def markdown(doc) -> str:
    lines = []
    v = doc["versions"]
    lines.append(f"### p2pguard vs nDPI {v['ndpi']}, flow by flow")
    lines.append("")
    lines.append(f"- p2pguard: `{v['p2pguard']}` (binary built {v['p2pguard_built']}, "
                 f"sha256 {v['p2pguard_sha256'][:12]}); nDPI: `ndpiReader` {v['ndpi']}"
                 + (f" (Debian package libndpi-bin {v['ndpi_package']})" if v.get("ndpi_package") else ""))
    lines.append(f"- Commands, per capture: `{doc['commands']['p2pguard']}` and `{doc['commands']['ndpi']}`")
    lines.append("- nDPI names a flow P2P if its master or app protocol is one of: "
                 + ", ".join(doc["ndpi_p2p_names"])
                 + (f" (not in this version: {', '.join(doc['ndpi_p2p_absent'])})" if doc["ndpi_p2p_absent"] else "")
                 + ". \"guess\" = named only by nDPI's port or IP guess (`Match by port`/`Match by IP`), "
                   "counted apart; `DPI` and `DPI (cache)` count as detections.")
    lines.append("- A labelled pair (transport + unordered endpoints) is named if any of the tool's flows "
                 "with that key is. FP = labelled `not-p2p` pairs named + any pair named in a `non-p2p` or "
                 "`p2p-legit` capture. `either` pairs are counted neither way.")
    lines.append("")
    head = ("| capture | group | p2p found: p2pguard | p2p found: nDPI | FP: p2pguard | FP: nDPI "
            "| either named: p2pguard | either named: nDPI |")
    lines.append(head)
    lines.append("|---|---|---|---|---|---|---|---|")
    hidden = 0
    for r in doc["captures"]:
        if not nonzero(r):
            hidden += 1
            continue
        lab = r["labelled"]
        pg, nd = r["tools"]["p2pguard"], r["tools"]["ndpi"]
        name = r["file"] if r["source"] == "shared" else f"captures/{r['file']}"
        if r["errors"]:
            name += " (" + "; ".join(f"{t} failed" for t in r["errors"]) + ")"
        lines.append(f"| {name} | {r['group']} | {cell_found(pg, lab['p2p'], 'p2pguard')} "
                     f"| {cell_found(nd, lab['p2p'], 'ndpi')} | {cell_fp(pg, 'p2pguard')} | {cell_fp(nd, 'ndpi')} "
                     f"| {cell_either(pg, lab['either'], 'p2pguard')} | {cell_either(nd, lab['either'], 'ndpi')} |")
    for label, t in (("shared corpus", doc["totals"]["shared"]), ("own captures", doc["totals"]["own"]),
                     ("all", doc["totals"]["all"])):
        if not t["captures"]:
            continue
        lab = t["labelled"]
        pg, nd = t["tools"]["p2pguard"], t["tools"]["ndpi"]
        lines.append(f"| **total {label}** ({t['captures']} captures) | "
                     f"| **{cell_found(pg, lab['p2p'], 'p2pguard')}** ({pct(pg['found'], lab['p2p'])}) "
                     f"| **{cell_found(nd, lab['p2p'], 'ndpi')}** ({pct(nd['found'], lab['p2p'])}) "
                     f"| **{cell_fp(pg, 'p2pguard')}** | **{cell_fp(nd, 'ndpi')}** "
                     f"| {cell_either(pg, lab['either'], 'p2pguard')} | {cell_either(nd, lab['either'], 'ndpi')} |")
    lines.append("")
    if hidden:
        lines.append(f"{hidden} captures with no `p2p` or `either` flow and nothing named by either tool "
                     "are not listed (all are in `--json`).")
    a = doc["totals"]["all"]
    if a["confounder_captures"]:
        c = a["confounder_captures_clean"]
        lines.append(f"Confounder captures (`non-p2p`, `p2p-legit`) without a false positive: "
                     f"p2pguard {c['p2pguard']}/{a['confounder_captures']}, "
                     f"nDPI {c['ndpi']}/{a['confounder_captures']} (guesses not counted).")
    lines.append("")

    if doc["own_by_what"]:
        lines.append("Own captures (`captures/`) by `what`:")
        lines.append("")
        lines.append("| what | expected | flows | p2pguard | nDPI |")
        lines.append("|---|---|---|---|---|")
        for what, w in doc["own_by_what"].items():
            nd = f"{w['ndpi']}/{w['flows']}" + (f" (+{w['ndpi_guess']} guess)" if w["ndpi_guess"] else "")
            lines.append(f"| {what} | {w['expected']} | {w['flows']} | {w['p2pguard']}/{w['flows']} | {nd} |")
        lines.append("")
        lines.append("(named / flows: for `p2p` rows the flows found, for `not-p2p` rows false positives)")
        lines.append("")

    conf = doc["ndpi_named_by_confidence"]
    if conf:
        lines.append("nDPI flows named P2P, by nDPI confidence (all captures): "
                     + ", ".join(f"{k}: {v}" for k, v in conf.items()) + ".")
        lines.append("")
    iso = doc.get("ndpi_isolation")
    if iso:
        lines.append("nDPI flows named P2P, analysed again alone (`--ndpi-isolate`, BPF filter on the "
                     "5-tuple): " + ", ".join(f"{k}: {v}" for k, v in sorted(iso["by_result"].items())) + ".")
        if iso["not_named_alone"]:
            by: dict = {}
            for f in iso["not_named_alone"]:
                k = (f["file"], f["expected"], f["what"] or "", f["alone"])
                by[k] = by.get(k, 0) + 1
            lines.append("Named in the full capture but not alone (nDPI's BitTorrent endpoint cache, filled by "
                         "other flows and looked up when nDPI gives up on a flow at the end of the capture), or "
                         "not caught by the filter: "
                         + "; ".join(f"{file} {n}× {exp}" + (f" {what}" if what else "") + f" ({alone})"
                                     for (file, exp, what, alone), n in sorted(by.items())) + ".")
        lines.append("")
    if doc["notes"]:
        lines.append("Notes:")
        lines.append("")
        for n in doc["notes"]:
            lines.append(f"- {n}")
        lines.append("")
    return "\n".join(lines)


# --------------------------------------------------------------------------


def resolve_tool(given: str | None, default: str, what: str, hint: str) -> str:
    if given:
        p = Path(given)
        if os.sep in given or p.exists():
            if not (p.is_file() and os.access(p, os.X_OK)):
                die(f"{what} not found or not executable at {given}. {hint}")
            return str(p.resolve())
        found = shutil.which(given)
        if not found:
            die(f"{what} ({given}) is not on PATH. {hint}")
        return found
    if os.sep not in default:
        p = shutil.which(default)
        if not p:
            die(f"{what} is not installed: no {default} on PATH. {hint}")
    else:
        p = default if os.path.isfile(default) and os.access(default, os.X_OK) else None
        if not p:
            die(f"{what} not found at {default}. {hint}")
    return p


def main(argv=None):
    ap = argparse.ArgumentParser(
        description="Measure p2pguard and nDPI's ndpiReader side by side, flow by flow, on the shared "
                    "reference captures and the project's own captures.",
        epilog="Run from anywhere; default paths are relative to the repository root.")
    ap.add_argument("--p2pguard", help="p2pguard binary (default: target/release/p2pguard in the repository)")
    ap.add_argument("--ndpireader", default=None, help="ndpiReader binary (default: ndpiReader on PATH)")
    ap.add_argument("--shared", type=Path,
                    default=Path(os.environ.get("P2PGUARD_SHARED_CAPTURES", ROOT / ".." / "shared" / "captures")),
                    help="shared captures folder with corpus/ and labels.tsv "
                         "(default: $P2PGUARD_SHARED_CAPTURES or ../shared/captures)")
    ap.add_argument("--corrections", type=Path, default=ROOT / "tests" / "label-corrections.tsv",
                    help="label corrections (default: tests/label-corrections.tsv)")
    ap.add_argument("--captures", type=Path, default=ROOT / "captures",
                    help="own captures with NAME.truth.tsv (default: captures/)")
    ap.add_argument("--no-shared", action="store_true", help="leave out the shared captures")
    ap.add_argument("--no-own", action="store_true", help="leave out the own captures")
    ap.add_argument("--only", action="append", metavar="GLOB",
                    help="only captures whose file name matches GLOB (repeatable)")
    ap.add_argument("--ndpi-p2p", metavar="NAMES",
                    help="comma-separated nDPI protocol names counted as P2P file sharing "
                         "(default: those of " + ", ".join(NDPI_P2P_CANDIDATES) + " that ndpiReader knows)")
    ap.add_argument("--ndpi-isolate", action="store_true",
                    help="re-run ndpiReader on each flow it names P2P alone (BPF filter on the 5-tuple) to "
                         "count the flows it names only with the help of other flows (its endpoint cache); "
                         "one more ndpiReader run per such flow")
    ap.add_argument("--json", action="store_true", help="print one JSON document instead of Markdown")
    ap.add_argument("-j", "--jobs", type=int, default=os.cpu_count() or 1, help="captures analysed in parallel")
    args = ap.parse_args(argv)

    ndpi = resolve_tool(args.ndpireader, "ndpiReader", "ndpiReader (nDPI)",
                        "Install Debian's package: apt-get install libndpi-bin (or pass --ndpireader PATH).")
    p2pguard = resolve_tool(args.p2pguard, str(ROOT / "target" / "release" / "p2pguard"), "p2pguard",
                            "Build it with `cargo build --release` (or pass --p2pguard PATH).")

    notes: list[str] = []
    captures: list[Capture] = []
    if not args.no_shared:
        if not (args.shared / "corpus").is_dir() or not (args.shared / "labels.tsv").is_file():
            die(f"the shared captures are not at {args.shared} (need corpus/ and labels.tsv); "
                             "pass --shared DIR or --no-shared")
        corrections = args.corrections if args.corrections and args.corrections.is_file() else None
        if corrections is None:
            notes.append(f"no label corrections read ({args.corrections} is missing)")
        captures += load_shared(args.shared, corrections, notes)
    if not args.no_own:
        if not args.captures.is_dir():
            die(f"no own captures folder at {args.captures}; pass --captures DIR or --no-own")
        captures += load_own(args.captures, notes)
    if args.only:
        captures = [c for c in captures if any(fnmatch.fnmatch(c.name, g) for g in args.only)]
    if not captures:
        die("no capture to analyse")

    banner_version, table = ndpi_protocol_table(ndpi)
    known = {n.lower(): n for n in table.values()}
    if args.ndpi_p2p:
        wanted = [n.strip() for n in args.ndpi_p2p.split(",") if n.strip()]
    else:
        wanted = NDPI_P2P_CANDIDATES
    p2p_names = [known.get(n.lower(), n) for n in wanted if n.lower() in known or not table]
    absent = [n for n in wanted if table and n.lower() not in known]
    if args.ndpi_p2p and absent:
        notes.append("--ndpi-p2p names unknown to this ndpiReader: " + ", ".join(absent))
    p2p_set = {n.lower() for n in p2p_names}
    other_set = {n.lower() for n in NDPI_P2P_OTHER if n.lower() not in p2p_set}
    if not table:
        notes.append("could not read ndpiReader's protocol table (-h); protocol names are taken as printed")

    try:
        p2pguard_version = run([p2pguard, "--version"], 60).stdout.decode().strip() or "unknown"
    except (OSError, subprocess.TimeoutExpired) as e:
        die(f"{p2pguard} --version failed: {e}")
    # The binary may be rebuilt between runs: identify the one measured.
    with open(p2pguard, "rb") as f:
        p2pguard_sha = hashlib.sha256(f.read()).hexdigest()
    p2pguard_mtime = datetime.datetime.fromtimestamp(os.path.getmtime(p2pguard), datetime.timezone.utc)
    p2pguard_built = p2pguard_mtime.strftime("%Y-%m-%d %H:%M:%S UTC")
    package = None
    if shutil.which("dpkg-query"):
        try:
            q = run(["dpkg-query", "-W", "-f=${Version}", "libndpi-bin"], 30)
            if q.returncode == 0:
                package = q.stdout.decode().strip() or None
        except (OSError, subprocess.TimeoutExpired):
            pass

    def work(cap: Capture):
        # Addresses known to be in the capture: to read ndpiReader's
        # mangled IPv6 text (see ndpi_ip_candidates).
        known = set()
        for label in cap.labels.values():
            for e in (label.a, label.b):
                known.add(parse_endpoint(e)[3])
        pg = run_p2pguard(p2pguard, cap.path)
        for f in pg.flows:
            known.update(ipaddress.ip_address(e.rpartition(":")[0].strip("[]")).compressed for e in (f.src, f.dst))
        nd = run_ndpi(ndpi, cap.path, p2p_set, other_set, table, known)
        if args.ndpi_isolate and not nd.error:
            for f in nd.flows:
                if f.kind == "dpi":
                    f.isolated = ndpi_isolate(ndpi, cap.path, f, p2p_set, other_set, table, known)
        return cap, pg, nd

    results = []
    failed = False
    run_versions = set()
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        for cap, pg, nd in pool.map(work, captures):
            runs = {"p2pguard": pg, "ndpi": nd}
            for tool, r in runs.items():
                for w in r.warnings:
                    notes.append(f"{cap.name}: {w}")
                if r.error:
                    failed = True
                    notes.append(f"{cap.name}: {tool} FAILED: {r.error}")
            if nd.version:
                run_versions.add(nd.version)
            scored = score(cap, runs)
            if cap.source == "own":
                scored["by_what"] = by_what([scored])
            results.append(scored)

    for r in results:
        for tool in TOOLS:
            unseen = r["tools"][tool]["labelled_unseen"]
            if unseen and not r["errors"].get(tool):
                why = ""
                if tool == "p2pguard" and r.get("p2pguard_skipped_packets"):
                    why = " (packets it did not track: " + ", ".join(
                        f"{k} {v}" for k, v in r["p2pguard_skipped_packets"].items()) + ")"
                notes.append(f"{r['file']}: {unseen} labelled pair(s) not in {tool}'s output at all{why}")
            un = r["tools"][tool]["unlabelled_named_in_p2p_capture"]
            if un:
                notes.append(f"{r['file']}: {tool} named {un} unlabelled pair(s) in this p2p capture (not counted)")
        if r.get("ndpi_other_p2p_names"):
            notes.append(f"{r['file']}: nDPI named P2P-streaming protocol(s) not counted as file sharing: "
                         + ", ".join(r["ndpi_other_p2p_names"]))

    ndpi_version = banner_version or (sorted(run_versions)[0] if run_versions else "unknown")
    if run_versions and banner_version and run_versions != {banner_version}:
        notes.append(f"ndpiReader banner says {banner_version}, the runs said {', '.join(sorted(run_versions))}")

    conf_counts: dict = {}
    pg_conf_counts: dict = {}
    for r in results:
        for row in r["flows"]:
            for tool, counts in (("ndpi", conf_counts), ("p2pguard", pg_conf_counts)):
                for d in row[tool] or []:
                    if d["p2p"]:
                        c = d["confidence"] or "none"
                        counts[c] = counts.get(c, 0) + 1

    # --ndpi-isolate: nDPI's named flows by their verdict when alone.
    isolation = None
    if args.ndpi_isolate:
        isolation = {"by_result": {}, "not_named_alone": []}
        for r in results:
            for row in r["flows"]:
                for d in row["ndpi"] or []:
                    if d.get("alone"):
                        isolation["by_result"][d["alone"]] = isolation["by_result"].get(d["alone"], 0) + 1
                        if d["alone"] != "named":
                            isolation["not_named_alone"].append(
                                {"file": r["file"], "transport": row["transport"], "a": row["a"], "b": row["b"],
                                 "expected": row["expected"], "what": row.get("what") or row.get("reference"),
                                 "alone": d["alone"]})

    def display(p: str) -> str:
        """Inside the repository: relative to its root; else as found."""
        try:
            return str(Path(p).resolve().relative_to(ROOT))
        except ValueError:
            return p

    doc = {
        "versions": {"p2pguard": p2pguard_version, "p2pguard_binary": p2pguard,
                     "p2pguard_sha256": p2pguard_sha, "p2pguard_built": p2pguard_built, "ndpi": ndpi_version,
                     "ndpi_package": package, "ndpireader_binary": ndpi},
        "commands": {"p2pguard": f"{display(p2pguard)} analyze -f jsonl CAPTURE",
                     "ndpi": " ".join([ndpi if shutil.which("ndpiReader") != ndpi else "ndpiReader"]
                                      + ndpi_args("CAPTURE"))},
        "ndpi_p2p_names": p2p_names,
        "ndpi_p2p_absent": absent,
        "ndpi_named_by_confidence": dict(sorted(conf_counts.items())),
        "p2pguard_named_by_confidence": dict(sorted(pg_conf_counts.items())),
        "ndpi_isolation": isolation,
        "captures": results,
        "totals": {"shared": totals([r for r in results if r["source"] == "shared"]),
                   "own": totals([r for r in results if r["source"] == "own"]),
                   "all": totals(results)},
        "own_by_what": by_what(results),
        "notes": notes,
    }
    if args.json:
        json.dump(doc, sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(markdown(doc) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
