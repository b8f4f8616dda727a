#!/usr/bin/python3
"""Write the ground-truth TSV for a capture.

usage: mktruth.py CAPTURE.pcap RULES

Lists every TCP/UDP conversation in the capture with tshark (ICMP/ICMPv6
error payloads, ARP, ND, IGMP/MLD are ignored) and classifies each one with
the RULES file written by the recording script from the addresses and ports
it configured.  RULES lines: "transport ip port expected what" where transport
is tcp|udp|*, ip is an address or *, port a number or *.  A conversation
matches a rule if either endpoint matches; the first matching rule wins.
Exits 1 if any conversation is left unclassified.
Output columns: transport, a, b (a = endpoint that sent the first packet), expected, what.
"""
import subprocess
import sys


def ep(ip, port):
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def main():
    cap, rules_path = sys.argv[1], sys.argv[2]
    rules = []
    for line in open(rules_path):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        t, ip, port, exp, what = line.split()
        assert exp in ("p2p", "not-p2p"), line
        rules.append((t, ip, port, exp, what))

    out = subprocess.run(
        ["tshark", "-n", "-r", cap, "-Y", "(tcp or udp) and not icmp and not icmpv6",
         "-T", "fields", "-E", "occurrence=f", "-e", "ip.src", "-e", "ip.dst",
         "-e", "ipv6.src", "-e", "ipv6.dst", "-e", "tcp.srcport", "-e", "tcp.dstport",
         "-e", "udp.srcport", "-e", "udp.dstport"],
        check=True, capture_output=True, text=True).stdout
    convs = {}  # key -> (transport, a_ip, a_port, b_ip, b_port)
    order = []
    for line in out.splitlines():
        f = line.split("\t")
        s4, d4, s6, d6, ts, td, us, ud = (f + [""] * 8)[:8]
        src, dst = (s4, d4) if s4 else (s6, d6)
        if ts:
            t, sp, dp = "tcp", ts, td
        elif us:
            t, sp, dp = "udp", us, ud
        else:
            continue
        key = (t,) + tuple(sorted([(src, sp), (dst, dp)]))
        if key not in convs:
            convs[key] = (t, src, sp, dst, dp)
            order.append(key)

    def match(t, ip, port, r):
        rt, rip, rport = r[:3]
        return rt in ("*", t) and rip in ("*", ip) and rport in ("*", port)

    print("transport\ta\tb\texpected\twhat")
    bad = 0
    for key in order:
        t, aip, ap, bip, bp = convs[key]
        for r in rules:
            if match(t, aip, ap, r) or match(t, bip, bp, r):
                print(f"{t}\t{ep(aip, ap)}\t{ep(bip, bp)}\t{r[3]}\t{r[4]}")
                break
        else:
            bad += 1
            print(f"UNCLASSIFIED {t} {ep(aip, ap)} {ep(bip, bp)}", file=sys.stderr)
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
