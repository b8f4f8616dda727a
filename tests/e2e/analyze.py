#!/usr/bin/python3
"""Acceptance checks of one e2e scenario (called by scenario.sh; standard library only).

Reads B's capture (tcpdump -w on B's eth0), the per-second byte samples of the torrent's TCP
traffic into B, the forwarder's JSON lines event log and the scenario's results, prints ONE
JSON line with the measurements and the verdict of the checks, and exits 1 if a check failed.

Torrent flows are the TCP flows with A's seeder port (SEED_PORT) or B's downloader port
(LEECH_PORT) as one endpoint; a flow's key is its unordered pair of endpoints.
"""
import argparse
import datetime as dt
import json
import re
import struct
import sys

ap = argparse.ArgumentParser()
ap.add_argument("--kind", required=True, choices=["block", "throttle", "log"])
ap.add_argument("--mode", required=True)
ap.add_argument("--enc", required=True)
ap.add_argument("--pcap", required=True, help="capture on B's eth0")
ap.add_argument("--pcap-a", default=None, help="capture on A's eth0 (block: payload reaching A after the verdict)")
ap.add_argument("--events", required=True)
ap.add_argument("--samples", required=True, help="lines 'SECONDS EPOCH BYTES': cumulative IP bytes A->B of the torrent flows, "
                "SECONDS on /proc/uptime's clock (as --leech-start and --http-start, which the "
                "time of day does not move), EPOCH the time of day (as the captures' timestamps)")
ap.add_argument("--ip-a", required=True)
ap.add_argument("--ip-b", required=True)
ap.add_argument("--seed-port", type=int, default=47001)
ap.add_argument("--leech-port", type=int, default=48002)
ap.add_argument("--payload-bytes", type=int, required=True)
ap.add_argument("--leech-start", type=float, required=True, help="when the downloader started (/proc/uptime's clock)")
ap.add_argument("--complete-after", type=float, default=None, help="downloader's seconds to completion (SHA-256 checked)")
ap.add_argument("--rtt-max-ms", type=float, required=True)
ap.add_argument("--slack-min-ms", type=float, default=20.0)
ap.add_argument("--http", required=True, help="file: 'TIME_TOTAL SIZE HTTP_CODE' written by curl -w")
ap.add_argument("--http-rc", type=int, required=True)
ap.add_argument("--http-sha-ok", type=int, required=True)
ap.add_argument("--http-bytes", type=int, required=True)
ap.add_argument("--http-start", type=float, required=True)
ap.add_argument("--http-base-s", type=float, default=None)
ap.add_argument("--http-max-s", type=float, default=10.0)
ap.add_argument("--rate-bps", type=float, default=1e6)
ap.add_argument("--rate-tol", type=float, default=0.15)
ap.add_argument("--warmup-s", type=float, default=3.0)
ap.add_argument("--window-s", type=float, default=25.0)
ap.add_argument("--min-window-s", type=float, default=20.0)
ap.add_argument("--fwd-rc", default="", help="forwarder exit status after SIGTERM ('' = no forwarder)")
ap.add_argument("--emulated", default="", help="policy emulation used by a kernel placeholder mode")
ap.add_argument("--tcpdump-log", default=None, help="B's tcpdump's stderr: its packet counts at exit")
ap.add_argument("--tcpdump-log-a", default=None, help="A's tcpdump's stderr")
ap.add_argument("--max-payload-no-ts", type=int, default=65536)
a = ap.parse_args()

failures = []
out = {"scenario": "e2e", "mode": a.mode, "kind": a.kind, "enc": a.enc}
if a.emulated:
    out["emulated_policy"] = a.emulated


# ---------------------------------------------------------------- capture
def read_pcap(path):
    """Yield (epoch_seconds, src, sport, dst, dport, ip_len, tcp_payload_len) for IPv4/TCP frames."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 24:
        return
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        e = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        e = ">"
    else:
        raise SystemExit(f"{path}: not a pcap file")
    nano = magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
    linktype = struct.unpack_from(e + "I", data, 20)[0]
    if linktype != 1:
        raise SystemExit(f"{path}: link type {linktype}, want Ethernet")
    off = 24
    while off + 16 <= len(data):
        sec, frac, incl, _orig = struct.unpack_from(e + "IIII", data, off)
        off += 16
        pkt = data[off:off + incl]
        off += incl
        ts = sec + frac / (1e9 if nano else 1e6)
        if len(pkt) < 14 + 20:
            continue
        eth = struct.unpack_from("!H", pkt, 12)[0]
        p = 14
        while eth in (0x8100, 0x88A8) and len(pkt) >= p + 4:
            eth = struct.unpack_from("!H", pkt, p + 2)[0]
            p += 4
        if eth != 0x0800:
            continue
        vihl = pkt[p]
        ihl = (vihl & 0x0F) * 4
        ip_len = struct.unpack_from("!H", pkt, p + 2)[0]
        if pkt[p + 9] != 6 or len(pkt) < p + ihl + 14:
            continue
        src = ".".join(str(b) for b in pkt[p + 12:p + 16])
        dst = ".".join(str(b) for b in pkt[p + 16:p + 20])
        t = p + ihl
        sport, dport = struct.unpack_from("!HH", pkt, t)
        doff = (pkt[t + 12] >> 4) * 4
        yield ts, src, sport, dst, dport, ip_len, max(0, ip_len - ihl - doff)


def key(ip1, p1, ip2, p2):
    return tuple(sorted([(ip1, int(p1)), (ip2, int(p2))]))


def is_torrent(k):
    return (a.ip_a, a.seed_port) in k or (a.ip_b, a.leech_port) in k


def flow_stats(pkts, dst_ip):
    """key -> payload packets [(ts, len)] and bytes towards dst_ip"""
    fl = {}
    for ts, src, sport, dst, dport, ip_len, pl in pkts:
        st = fl.setdefault(key(src, sport, dst, dport), {"payload": 0, "payload_pkts": []})
        if dst == dst_ip and pl > 0:
            st["payload"] += pl
            st["payload_pkts"].append((ts, pl))
    return fl


def capture_stats(pkts, log):
    cap = {"frames": len(pkts)}
    if log:
        try:
            txt = open(log).read()
            for what, rx in (("captured", r"(\d+) packets captured"), ("received_by_filter", r"(\d+) packets received by filter"),
                             ("dropped_by_kernel", r"(\d+) packets dropped by kernel")):
                m = re.search(rx, txt)
                cap[what] = int(m.group(1)) if m else None
        except OSError:
            pass
    # complete = tcpdump lost nothing (kernel drops, or packets it received but did not write)
    cap["complete"] = cap.get("dropped_by_kernel") == 0 and cap.get("captured") == cap.get("received_by_filter")
    return cap


packets = list(read_pcap(a.pcap))
flows = flow_stats(packets, a.ip_b)  # B's view: payload arriving at B
torrent_flows = {k: v for k, v in flows.items() if is_torrent(k)}
cap = capture_stats(packets, a.tcpdump_log)
out["capture"] = {"b": cap}
flows_a, cap_a = None, None
if a.pcap_a:
    packets_a = list(read_pcap(a.pcap_a))
    flows_a = flow_stats(packets_a, a.ip_a)  # A's view: payload arriving at A
    cap_a = capture_stats(packets_a, a.tcpdump_log_a)
    out["capture"]["a"] = cap_a
fmt = lambda k: f"{k[0][0]}:{k[0][1]}-{k[1][0]}:{k[1][1]}"  # noqa: E731


# ---------------------------------------------------------------- events
TS_KEYS = ("ts", "time", "timestamp", "at", "decided_at", "when")


def parse_ts(v):
    if isinstance(v, (int, float)):
        v = float(v)
        for div in (1.0, 1e3, 1e6, 1e9):  # s, ms, us, ns since the epoch
            if v / div < 1e11:
                return v / div
        return None
    if isinstance(v, str):
        m = re.match(r"^(\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:?\d\d)?$", v.strip())
        if not m:
            return None
        base, frac, tz = m.groups()
        tz = tz or "Z"
        tz = "+00:00" if tz == "Z" else (tz if ":" in tz else tz[:3] + ":" + tz[3:])
        t = dt.datetime.fromisoformat(base.replace(" ", "T") + tz).timestamp()
        return t + (float("0." + frac) if frac else 0.0)
    return None


events, bad_lines = [], 0
flow_events, stop_event = [], None
try:
    with open(a.events) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                ev = json.loads(line)
            except ValueError:
                bad_lines += 1
                continue
            if isinstance(ev, dict) and ev.get("event") == "verdict":
                events.append(ev)
            elif isinstance(ev, dict) and ev.get("event") == "flow":
                flow_events.append(ev)
            elif isinstance(ev, dict) and ev.get("event") == "stop":
                stop_event = ev
except FileNotFoundError:
    pass
verdicts = {}  # key -> list of (ts or None, action, protocol, rule)
for ev in events:
    try:
        k = key(ev["src_ip"], ev["src_port"], ev["dst_ip"], ev["dst_port"])
    except (KeyError, TypeError, ValueError):
        bad_lines += 1
        continue
    ts = None
    for tk in TS_KEYS:
        if tk in ev:
            ts = parse_ts(ev[tk])
            if ts is not None:
                break
    verdicts.setdefault(k, []).append((ts, str(ev.get("action", "")).lower(), ev.get("protocol"), ev.get("rule")))
out["events"] = {"verdict_events": len(events), "unparsable_lines": bad_lines,
                 "actions": sorted({v[1] for vs in verdicts.values() for v in vs})}
torrent_verdicts = {k: v for k, v in verdicts.items() if is_torrent(k)}
# optional extras of the log: per-flow "flow" events with dropped_packets, a final "stop" event
dropped_by_flows = sum(int(ev.get("dropped_packets") or 0) for ev in flow_events)
if flow_events:
    out["events"]["flow_events"] = len(flow_events)
    out["events"]["dropped_packets_in_flow_events"] = dropped_by_flows
if stop_event is not None:
    out["events"]["stop"] = {k: v for k, v in stop_event.items() if k != "event"}
out["events"]["torrent_flows_named"] = sorted(fmt(k) for k in torrent_verdicts)

# ---------------------------------------------------------------- torrent progress
samples = []  # (seconds, bytes), the seconds on /proc/uptime's clock
epoch_at = {}  # seconds -> the time of day then, to find a window in the captures
with open(a.samples) as f:
    for line in f:
        parts = line.split()
        if len(parts) == 3:
            samples.append((float(parts[0]), int(parts[2])))
            epoch_at[float(parts[0])] = float(parts[1])
rx_total = samples[-1][1] if samples else 0
torrent = {
    "payload_bytes": a.payload_bytes,
    "complete": a.complete_after is not None,
    "complete_after_s": a.complete_after,
    "rx_ip_bytes_total": rx_total,
    "rx_payload_bytes_pcap": sum(v["payload"] for v in torrent_flows.values()),
    "flows": len(torrent_flows),
    # cumulative IP bytes into B, 1 s apart, seconds since the downloader started
    "samples": [[round(t - a.leech_start, 2), b] for t, b in samples],
}
if a.complete_after is not None:
    # did the HTTP download start before the torrent was complete (both ran at the same time)?
    torrent["http_started_before_complete"] = a.http_start < a.leech_start + a.complete_after
if a.complete_after:
    torrent["avg_rate_mbit"] = round(a.payload_bytes * 8 / a.complete_after / 1e6, 2)
out["torrent"] = torrent

# ---------------------------------------------------------------- HTTP
http = {"rc": a.http_rc, "sha256_ok": bool(a.http_sha_ok), "bytes": a.http_bytes,
        "started_after_leech_s": round(a.http_start - a.leech_start, 2), "baseline_s": a.http_base_s}
try:
    tt, size, code = open(a.http).read().split()[:3]
    http.update(duration_s=float(tt), size=int(size), code=int(code))
except (OSError, ValueError):
    http.update(duration_s=None, size=0, code=0)
http_ok = a.http_rc == 0 and a.http_sha_ok == 1 and http.get("code") == 200
http["complete"] = http_ok
out["http"] = http
if not http_ok:
    failures.append(f"HTTP download failed (curl rc {a.http_rc}, code {http.get('code')}, sha256 ok {bool(a.http_sha_ok)})")

# ---------------------------------------------------------------- per kind
slack = max(a.rtt_max_ms, a.slack_min_ms) / 1000.0
if a.kind == "block":
    BLOCK = {"block", "drop", "deny", "reject"}
    blocked = {}
    for k, vs in torrent_verdicts.items():
        bl = [v for v in vs if v[1] in BLOCK]
        if bl:
            tss = [v[0] for v in bl if v[0] is not None]
            blocked[k] = min(tss) if tss else None
    viol, per_flow = [], []
    sides = [("b", flows)] + ([("a", flows_a)] if flows_a is not None else [])
    for k, vts in blocked.items():
        row = {"flow": fmt(k), "verdict_ts": round(vts, 6) if vts is not None else None}
        for side, fl in sides:
            st = fl.get(k, {"payload_pkts": [], "payload": 0})
            if vts is None:
                # no timestamp in the event: bound the bytes the flow delivered in all
                row[f"payload_to_{side}"] = st["payload"]
                if st["payload"] > a.max_payload_no_ts:
                    viol.append(f"{fmt(k)}: no timestamp in its verdict event and {st['payload']} payload bytes reached "
                                f"{side.upper()} (> {a.max_payload_no_ts})")
                continue
            late = [(t, pl) for t, pl in st["payload_pkts"] if t > vts + slack]
            row[f"payload_to_{side}_before"] = sum(pl for t, pl in st["payload_pkts"] if t <= vts)
            row[f"payload_to_{side}_in_slack"] = sum(pl for t, pl in st["payload_pkts"] if vts < t <= vts + slack)
            row[f"late_payload_to_{side}"] = sum(pl for _, pl in late)
            if late:
                row[f"last_late_to_{side}_after_verdict_ms"] = round((late[-1][0] - vts) * 1000, 3)
                viol.append(f"{fmt(k)}: {len(late)} payload packets ({sum(pl for _, pl in late)} bytes) reached "
                            f"{side.upper()} more than {slack * 1000:.1f} ms after the verdict")
        per_flow.append(row)
    unblocked = {fmt(k): v["payload"] for k, v in torrent_flows.items() if k not in blocked and v["payload"]}
    out["block"] = {"slack_ms": round(slack * 1000, 3), "rtt_max_ms": a.rtt_max_ms, "blocked_torrent_flows": len(blocked),
                    "flows": per_flow, "unblocked_torrent_flows_payload_to_b": unblocked,
                    "no_payload_after_verdict": not viol and len(blocked) > 0}
    if torrent["complete"]:
        failures.append("torrent completed although the policy blocks it")
    if not blocked:
        failures.append("no block verdict names a torrent flow")
    failures.extend(viol)
    for side, c in (("B", cap), ("A", cap_a)):
        if c is not None and not c["complete"]:
            failures.append(f"{side}'s capture is incomplete ({c}): cannot prove that no payload arrived after the verdict")
elif a.kind == "throttle":
    thr = {"target_bps": a.rate_bps, "tolerance": a.rate_tol}
    live = [(t, b) for t, b in samples if b > 0]
    if not live:
        failures.append("no torrent bytes reached B")
    else:
        t_first = live[0][0]
        win = [(t, b) for t, b in samples if t >= t_first + a.warmup_s]
        win = [(t, b) for t, b in win if t <= win[0][0] + a.window_s + 0.5] if win else []
        if len(win) >= 2:
            (t0, b0), (t1, b1) = win[0], win[-1]
            rate = (b1 - b0) * 8 / (t1 - t0)
            # the same window from the capture (IP bytes of the torrent flows into B), by
            # the time of day, as the capture's timestamps are
            e0, e1 = epoch_at[t0], epoch_at[t1]
            pc = sum(ip_len for ts, src, sp, dst, dp, ip_len, pl in packets
                     if dst == a.ip_b and e0 < ts <= e1 and is_torrent(key(src, sp, dst, dp)))
            thr.update(window_start_s=round(t0 - a.leech_start, 2), window_s=round(t1 - t0, 2),
                       rate_bps=round(rate), rate_bps_pcap=round(pc * 8 / (t1 - t0)),
                       deviation=round(rate / a.rate_bps - 1, 4))
            if t1 - t0 < a.min_window_s:
                failures.append(f"rate window only {t1 - t0:.1f} s (want >= {a.min_window_s} s)")
            if abs(rate / a.rate_bps - 1) > a.rate_tol:
                failures.append(f"torrent rate {rate / 1e6:.3f} Mbit/s not within {a.rate_tol:.0%} of {a.rate_bps / 1e6:g} Mbit/s")
        else:
            failures.append("not enough samples for the rate window")
    thr["throttle_verdicts_on_torrent_flows"] = sum(1 for vs in torrent_verdicts.values() for v in vs if v[1] == "throttle")
    # HTTP must not share the throttle: at the throttled rate the file would need bytes*8/rate seconds
    thr["http_max_s"] = a.http_max_s
    thr["http_s_if_throttled"] = round(a.http_bytes * 8 / a.rate_bps, 1)
    out["throttle"] = thr
    if http_ok and http.get("duration_s") is not None and http["duration_s"] > a.http_max_s:
        failures.append(f"HTTP took {http['duration_s']:.2f} s (> {a.http_max_s} s): slowed by the throttle")
elif a.kind == "log":
    named = {k for k in torrent_verdicts}
    with_payload = {k for k, v in torrent_flows.items() if v["payload"] > 0}
    missing = sorted(fmt(k) for k in with_payload - named)
    acts = {v[1] for vs in verdicts.values() for v in vs}
    out["log"] = {"torrent_flows_with_payload": len(with_payload), "named": len(with_payload & named),
                  "unnamed": missing, "actions": sorted(acts)}
    if not torrent["complete"]:
        failures.append("torrent did not complete")
    if not with_payload:
        failures.append("no torrent flow carried payload to B")
    if missing:
        failures.append(f"torrent flows without a verdict event: {', '.join(missing)}")
    if dropped_by_flows or (stop_event and int(stop_event.get("dropped") or 0)):
        failures.append(f"log policy but the forwarder dropped packets (flow events: {dropped_by_flows}, "
                        f"stop event: {stop_event and stop_event.get('dropped')})")
    if acts & {"block", "drop", "deny", "reject", "throttle"}:
        failures.append(f"log policy but verdict actions {sorted(acts)}")
    if not any(v[1] == "log" for k in named for v in torrent_verdicts[k]):
        failures.append("no verdict with action 'log' on a torrent flow")

if a.fwd_rc != "":
    out["forwarder_exit"] = int(a.fwd_rc)
    if int(a.fwd_rc) != 0:
        failures.append(f"forwarder exited {a.fwd_rc} on SIGTERM (want 0)")

out["failures"] = failures
out["pass"] = not failures
print(json.dumps(out, separators=(",", ":")))
sys.exit(0 if not failures else 1)
