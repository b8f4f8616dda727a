#!/usr/bin/python3
"""Print the time window (first..last packet, seconds from the capture start) of each truth
label of a capture.

usage: windows.py [--check-overlap] CAPTURE.pcap TRUTH.tsv

With --check-overlap, exit 1 unless the window of every not-p2p label overlaps the window of
the BitTorrent peer-wire conversations (labels bittorrent-*), i.e. the background traffic
really ran while peers were exchanging data.
"""
import collections
import subprocess
import sys


def ep(ip, port):
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def main():
    args = [a for a in sys.argv[1:] if a != "--check-overlap"]
    check = len(args) < len(sys.argv) - 1
    cap, truth = args
    label, expected = {}, {}
    for line in list(open(truth))[1:]:
        t, a, b, exp, what = line.split()
        label[(t,) + tuple(sorted([a, b]))] = what
        expected[what] = exp
    out = subprocess.run(
        ["tshark", "-n", "-r", cap, "-Y", "(tcp or udp) and not icmp and not icmpv6", "-T", "fields",
         "-E", "occurrence=f", "-e", "frame.time_relative", "-e", "ip.src", "-e", "ip.dst",
         "-e", "ipv6.src", "-e", "ipv6.dst", "-e", "tcp.srcport", "-e", "tcp.dstport",
         "-e", "udp.srcport", "-e", "udp.dstport"],
        check=True, capture_output=True, text=True).stdout
    win = collections.defaultdict(lambda: [float("inf"), 0.0, 0])
    bt = [float("inf"), 0.0]
    for line in out.splitlines():
        f = (line.split("\t") + [""] * 9)[:9]
        ts = float(f[0])
        s, d = (f[1], f[2]) if f[1] else (f[3], f[4])
        t, sp, dp = ("tcp", f[5], f[6]) if f[5] else ("udp", f[7], f[8])
        what = label[(t,) + tuple(sorted([ep(s, sp), ep(d, dp)]))]
        w = win[what]
        w[0], w[1], w[2] = min(w[0], ts), max(w[1], ts), w[2] + 1
        if what.startswith("bittorrent-"):
            bt[0], bt[1] = min(bt[0], ts), max(bt[1], ts)
    bad = []
    for what, (a, b, n) in sorted(win.items(), key=lambda kv: kv[1][0]):
        ok = not (expected[what] == "not-p2p" and (b < bt[0] or a > bt[1]))
        if not ok:
            bad.append(what)
        print(f"{what:22s} {a:7.2f} .. {b:7.2f}  {n:5d} packets{'' if ok else '  (no overlap with peer-wire)'}")
    if check:
        print(f"BitTorrent peer-wire  {bt[0]:7.2f} .. {bt[1]:7.2f}; background labels outside it: {len(bad)}")
        sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
