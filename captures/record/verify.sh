#!/bin/bash
# Check that every capture in ../ contains what its name says (tshark 4.0 dissectors
# plus byte-pattern checks). Prints one line per check; exits 1 if any check fails.
cd "$(dirname "$0")/.."
fail=0
n() { tshark -n -r "$1" "${@:3}" -Y "$2" 2>/dev/null | wc -l; }
check() { # desc value op expected
    if [ "$2" "$3" "$4" ]; then echo "ok   $1 ($2)"; else echo "FAIL $1 ($2, want $3 $4)"; fail=1; fi
}
UTP=(-d udp.port==47001,bt-utp -d udp.port==48002,bt-utp)
for f in *.pcap; do
    b=${f%.pcap}
    # Synthetic captures have no truth file; the swarm captures have their
    # own checks (verify-swarm.sh).
    case $b in synthetic-*|bt-mse-swarm|bt-mse-utp-swarm|bt-mixed) continue ;; esac
    echo "== $f: $(stat -c %s "$f") bytes, $(capinfos -T -c -E "$f" 2>/dev/null | tail -1 | cut -f2,3), $(($(wc -l <"$b.truth.tsv") - 1)) truth rows"
    check "$b: size < 1 MB" "$(stat -c %s "$f")" -lt 1000000
    cleartext=$(n "$f" 'frame contains "BitTorrent protocol"')
    case $b in
    bt-tcp-plain|bt-tcp-ipv6|bt-udp-tracker|bt-dht|bt-lsd)
        check "$b: cleartext BitTorrent handshakes" "$cleartext" -ge 2
        check "$b: bittorrent (TCP) frames" "$(n "$f" 'bittorrent and tcp')" -gt 10 ;;
    bt-utp-plain)
        check "$b: cleartext BitTorrent handshakes" "$cleartext" -ge 2
        check "$b: bt-utp frames" "$(n "$f" bt-utp "${UTP[@]}")" -gt 50
        check "$b: bittorrent-over-uTP frames" "$(n "$f" 'bittorrent and udp' "${UTP[@]}")" -gt 10
        check "$b: no TCP peer-wire" "$(n "$f" 'tcp.port==47001 or tcp.port==48002')" -eq 0 ;;
    bt-mse-utp)
        check "$b: NO cleartext BitTorrent handshake" "$cleartext" -eq 0
        check "$b: bt-utp frames" "$(n "$f" bt-utp "${UTP[@]}")" -gt 50
        check "$b: uTP frames with payload" "$(n "$f" 'bt-utp and udp.length > 28' "${UTP[@]}")" -gt 10
        check "$b: no TCP peer-wire" "$(n "$f" 'tcp.port==47001 or tcp.port==48002')" -eq 0 ;;
    bt-mse-*)
        check "$b: NO cleartext BitTorrent handshake" "$cleartext" -eq 0
        check "$b: peer-wire TCP segments with payload" "$(n "$f" 'tcp.port==47001 and tcp.len>0')" -gt 20 ;;
    background)
        check "$b: no BitTorrent string" "$(n "$f" 'frame contains "BitTorrent" or frame contains "d1:ad2:id20"')" -eq 0
        for p in dns http tls ssh; do check "$b: $p frames" "$(n "$f" $p)" -gt 0; done
        check "$b: iperf3 frames" "$(n "$f" 'tcp.port==5201 or udp.port==5201')" -gt 0 ;;
    esac
    case $b in
    bt-tcp-plain|bt-utp-plain|bt-mse-*)
        check "$b: HTTP tracker announces" "$(n "$f" 'http.request.uri contains "/announce?info_hash="')" -ge 3 ;;
    bt-udp-tracker)
        check "$b: BEP15 connect requests (magic 0x41727101980)" "$(n "$f" 'udp.dstport==6969 and udp.payload[0:12]==00:00:04:17:27:10:19:80:00:00:00:00')" -ge 2
        check "$b: BEP15 announce requests (action 1)" "$(n "$f" 'udp.dstport==6969 and udp.length>=106 and udp.payload[8:4]==00:00:00:01')" -ge 2
        check "$b: no HTTP" "$(n "$f" http)" -eq 0 ;;
    bt-dht)
        check "$b: bt-dht frames" "$(n "$f" bt-dht)" -gt 10
        check "$b: get_peers queries" "$(n "$f" 'frame contains "9:get_peers"')" -gt 0
        check "$b: announce_peer queries" "$(n "$f" 'frame contains "13:announce_peer"')" -gt 0
        check "$b: no tracker / HTTP" "$(n "$f" 'http or tcp.port==6969 or udp.port==6969')" -eq 0 ;;
    bt-lsd)
        check "$b: LSD BT-SEARCH datagrams to 239.192.152.143:6771" "$(n "$f" 'ip.dst==239.192.152.143 and udp.dstport==6771 and frame contains "BT-SEARCH * HTTP/1.1"')" -ge 2
        check "$b: no tracker / DHT" "$(n "$f" 'http or bt-dht or udp.port==6969')" -eq 0 ;;
    esac
done
exit $fail
