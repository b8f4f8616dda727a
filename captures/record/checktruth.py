#!/usr/bin/python3
"""Check every row of a truth TSV against the bytes of its conversation.

usage: checktruth.py CAPTURE.pcap TRUTH.tsv

mktruth.py labels conversations from the ports a script configured; this script checks
afterwards that each labelled conversation looks like its label, so that a client that
fell back to cleartext, a refused connection or a stray packet cannot slip into the truth:

  bittorrent-mse-tcp   payload both ways; the first payload of each side is 96..608 bytes
                       (MSE: 96-byte DH key + 0..512 bytes of padding); no "BitTorrent protocol"
  bittorrent-tcp-plain the initiator's first payload is the "\\x13BitTorrent protocol" handshake
  bittorrent-mse-utp   every datagram is uTP v1 with data both ways; no "BitTorrent protocol"
  bittorrent-utp-plain every datagram is uTP v1; a data packet starts with the handshake
  dht                  every datagram is a bencoded KRPC message (d...1:y1:q/r/e)
  tracker-udp          BEP 15: a connect request with the magic 0x41727101980
  tracker-http         the initiator's first payload is "GET /announce?"
  http / tls / ssh     "GET " / TLS handshake record / "SSH-2.0-" banner
  wireguard            every datagram is a WireGuard message (type 1..4, 3 zero bytes)
  every row except the plain BitTorrent ones: no "BitTorrent protocol" anywhere
Prints the number of rows per label; exits 1 (listing the rows) if any check fails.
"""
import collections
import subprocess
import sys

HS = b"\x13BitTorrent protocol"
BT = b"BitTorrent protocol"
BEP15_MAGIC = bytes.fromhex("0000041727101980")


def ep(ip, port):
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def utp_parse(p):
    """(type, payload) of a uTP v1 packet, or None."""
    if len(p) < 20 or p[0] & 0x0F != 1 or p[0] >> 4 > 4:
        return None
    ext, off = p[1], 20
    while ext:
        if off + 2 > len(p):
            return None
        ext, ln = p[off], p[off + 1]
        off += 2 + ln
    if off > len(p):
        return None
    return p[0] >> 4, p[off:]


def main():
    cap, truth = sys.argv[1], sys.argv[2]
    out = subprocess.run(
        ["tshark", "-n", "-r", cap, "-Y", "(tcp or udp) and not icmp and not icmpv6", "-T", "fields",
         "-E", "occurrence=f", "-e", "ip.src", "-e", "ip.dst", "-e", "ipv6.src", "-e", "ipv6.dst",
         "-e", "tcp.srcport", "-e", "tcp.dstport", "-e", "udp.srcport", "-e", "udp.dstport",
         "-e", "tcp.payload", "-e", "udp.payload"],
        check=True, capture_output=True, text=True).stdout
    pkts = collections.defaultdict(list)  # (t, ep, ep) sorted -> [(src_ep, payload)]
    for line in out.splitlines():
        s4, d4, s6, d6, ts, td, us, ud, tp, up = (line.split("\t") + [""] * 10)[:10]
        src, dst = (s4, d4) if s4 else (s6, d6)
        t, sp, dp, pl = ("tcp", ts, td, tp) if ts else ("udp", us, ud, up)
        a, b = ep(src, sp), ep(dst, dp)
        pkts[(t,) + tuple(sorted([a, b]))].append((a, bytes.fromhex(pl.replace(":", ""))))

    bad, counts = [], collections.Counter()
    rows = [ln.rstrip("\n").split("\t") for ln in open(truth)][1:]
    for t, a, b, _exp, what in rows:
        counts[what] += 1
        conv = pkts.get((t,) + tuple(sorted([a, b])))
        if not conv:
            bad.append((t, a, b, what, "no packets"))
            continue
        data = [(s, p) for s, p in conv if p]
        by = {a: [p for s, p in data if s == a], b: [p for s, p in data if s == b]}
        first = {k: (v[0] if v else b"") for k, v in by.items()}
        anybt = any(BT in p for _, p in data)
        why = None
        if what == "bittorrent-mse-tcp":
            lens = [len(first[a]), len(first[b])]
            if not all(96 <= n <= 608 for n in lens):
                why = f"first payloads {lens} bytes, not an MSE key exchange"
        elif what == "bittorrent-tcp-plain":
            if not first[a].startswith(HS):
                why = "initiator did not send the BitTorrent handshake"
        elif what in ("bittorrent-mse-utp", "bittorrent-utp-plain"):
            parsed = [(s, utp_parse(p)) for s, p in data]
            if any(u is None for _, u in parsed):
                why = "datagram that is not uTP v1"
            else:
                dat = {k: [u[1] for s, u in parsed if s == k and u[0] == 0 and u[1]] for k in (a, b)}
                if not (dat[a] and dat[b]):
                    why = "no uTP data both ways"
                elif what == "bittorrent-utp-plain" and not any(p.startswith(HS) for p in dat[a] + dat[b]):
                    why = "no BitTorrent handshake in the uTP data"
        elif what == "dht":
            if not data or not all(p[:1] == b"d" and (b"1:y1:q" in p or b"1:y1:r" in p or b"1:y1:e" in p)
                                   for _, p in data):
                why = "datagram that is not a KRPC message"
        elif what == "tracker-udp":
            if not any(p.startswith(BEP15_MAGIC) for _, p in data):
                why = "no BEP 15 connect request"
        elif what == "tracker-http":
            if not first[a].startswith(b"GET /announce?"):
                why = "no announce request"
        elif what == "http":
            if not first[a].startswith(b"GET "):
                why = "no HTTP request"
        elif what == "tls":
            if not first[a][:2] == b"\x16\x03":
                why = "no TLS ClientHello record"
        elif what == "ssh":
            if not (first[a].startswith(b"SSH-2.0-") or first[b].startswith(b"SSH-2.0-")):
                why = "no SSH banner"
        elif what == "wireguard":
            if not data or not all(len(p) >= 32 and 1 <= p[0] <= 4 and p[1:4] == b"\0\0\0" for _, p in data):
                why = "datagram that is not a WireGuard message"
        if why is None and anybt and what not in ("bittorrent-tcp-plain", "bittorrent-utp-plain"):
            why = 'cleartext "BitTorrent protocol" in the conversation'
        if why:
            bad.append((t, a, b, what, why))
    for what, n in sorted(counts.items()):
        print(f"{n:4d} {what}")
    for r in bad:
        print("BAD", *r, file=sys.stderr)
    print(f"checked {len(rows)} rows: {len(rows) - len(bad)} ok, {len(bad)} bad")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
