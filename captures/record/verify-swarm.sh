#!/bin/bash
# tshark checks of the multi-peer captures (bt-mse-swarm, bt-mse-utp-swarm, bt-mixed), in the
# style of verify.sh, plus checktruth.py over every truth row. Prints one line per check;
# exits 1 if any check fails.
cd "$(dirname "$0")/.."
fail=0
n() { # CAPTURE FILTER [tshark args]: number of matching frames, or "error" (fails any check)
    local o
    o=$(tshark -n -r "$1" "${@:3}" -Y "$2" -T fields -e frame.number 2>"$TMPE") || { echo error; return; }
    [ -z "$o" ] && echo 0 || echo "$o" | wc -l
}
TMPE=$(mktemp); trap 'rm -f "$TMPE"' EXIT
rows() { awk -F'\t' -v w="$2" '$5==w' "$1.truth.tsv" | wc -l; }
check() { # desc value op expected
    if [ "$2" != error ] && [ "$2" "$3" "$4" ]; then echo "ok   $1 ($2)"; else echo "FAIL $1 ($2, want $3 $4)"; fail=1; fi
}
BTSTR='frame contains "BitTorrent protocol"'
for b in bt-mse-swarm bt-mse-utp-swarm bt-mixed; do
    f=$b.pcap
    [ -f "$f" ] || { echo "FAIL $f missing"; fail=1; continue; }
    echo "== $f: $(stat -c %s "$f") bytes, $(capinfos -T -c -E "$f" 2>/dev/null | tail -1 | cut -f2,3), $(($(wc -l <"$b.truth.tsv") - 1)) truth rows"
    check "$b: size < 2.5 MB" "$(stat -c %s "$f")" -lt 2500000
    if out=$(python3 record/checktruth.py "$f" "$b.truth.tsv" 2>&1); then r=0; else r=1; echo "$out" | grep BAD; fi
    check "$b: checktruth.py ($(echo "$out" | tail -1))" "$r" -eq 0
    case $b in
    bt-mse-swarm)
        check "$b: NO cleartext BitTorrent handshake" "$(n "$f" "$BTSTR")" -eq 0
        check "$b: bittorrent-mse-tcp conversations" "$(rows "$b" bittorrent-mse-tcp)" -ge 15
        check "$b: distinct host pairs with MSE TCP" "$(awk -F'\t' '$5=="bittorrent-mse-tcp"{split($2,x,":");split($3,y,":");print (x[1]<y[1]?x[1]" "y[1]:y[1]" "x[1])}' "$b.truth.tsv" | sort -u | wc -l)" -ge 15
        check "$b: no UDP" "$(n "$f" udp)" -eq 0
        for i in 1 2 3 4 5 6 7; do
            check "$b: peer-wire segments with payload to/from 100.64.0.$i" "$(n "$f" "ip.addr==100.64.0.$i and tcp.len>0 and not tcp.port==6969")" -gt 20
        done
        # (tshark decodes TCP 6881-6889 as BitTorrent by port, so aria2's ports show "bittorrent"
        # frames of encrypted bytes: look for decoded handshakes instead)
        check "$b: tshark decodes no BitTorrent handshake" "$(n "$f" bittorrent.protocol.name)" -eq 0
        check "$b: HTTP tracker announces" "$(n "$f" 'http.request.uri contains "/announce?info_hash="')" -ge 14 ;;
    bt-mse-utp-swarm)
        UTP=(-d udp.port==47001,bt-utp); for i in 2 3 4 5 6 7; do UTP+=(-d "udp.port==4800$i,bt-utp"); done
        check "$b: NO cleartext BitTorrent handshake" "$(n "$f" "$BTSTR")" -eq 0
        check "$b: bittorrent-mse-utp conversations" "$(rows "$b" bittorrent-mse-utp)" -ge 8
        check "$b: bt-utp frames" "$(n "$f" bt-utp "${UTP[@]}")" -gt 500
        # tshark 4.0 rejects uTP packets with libtorrent's close-reason extension (type 3, on
        # ST_FIN/ST_STATE): byte 1 of the uTP header is 3 on those
        check "$b: every UDP frame is uTP" "$(n "$f" 'udp and not bt-utp and not udp.payload[1]==03' "${UTP[@]}")" -eq 0
        check "$b: uTP frames with payload" "$(n "$f" 'bt-utp and udp.length > 28' "${UTP[@]}")" -gt 100
        check "$b: tshark decodes no BitTorrent handshake inside uTP" "$(n "$f" bittorrent.protocol.name "${UTP[@]}")" -eq 0
        check "$b: no TCP peer-wire" "$(n "$f" 'tcp and not tcp.port==6969')" -eq 0
        check "$b: HTTP tracker announces" "$(n "$f" 'http.request.uri contains "/announce?info_hash="')" -ge 14 ;;
    bt-mixed)
        UTP=(); for p in 49001 49002 49004 45004 45005 45006; do UTP+=(-d "udp.port==$p,bt-utp"); done
        MSEP='tcp.port in {48001,48002,48005} or udp.port in {49001,49002,49004}'
        for w in bittorrent-tcp-plain bittorrent-mse-tcp bittorrent-mse-utp bittorrent-utp-plain; do
            check "$b: $w conversations" "$(rows "$b" $w)" -ge 2
        done
        check "$b: NO cleartext handshake on the MSE ports" "$(n "$f" "$BTSTR and ($MSEP)")" -eq 0
        check "$b: cleartext handshakes on the plain TCP ports" "$(n "$f" "$BTSTR and tcp.port in {47001,47002,47004}")" -ge 4
        check "$b: cleartext handshakes in plain uTP" "$(n "$f" "$BTSTR and udp.port in {45004,45005,45006}")" -ge 4
        check "$b: cleartext handshakes nowhere else" "$(n "$f" "$BTSTR and not (tcp.port in {47001,47002,47004} or udp.port in {45004,45005,45006})")" -eq 0
        check "$b: bt-utp frames (MSE and plain uTP ports)" "$(n "$f" bt-utp "${UTP[@]}")" -gt 100
        check "$b: decoded BitTorrent handshakes inside plain uTP" "$(n "$f" 'bittorrent.protocol.name and udp' "${UTP[@]}")" -ge 4
        check "$b: decoded BitTorrent handshakes inside MSE uTP" "$(n "$f" 'bittorrent.protocol.name and udp.port in {49001,49002,49004}' "${UTP[@]}")" -eq 0
        check "$b: bt-dht frames" "$(n "$f" bt-dht)" -gt 10
        check "$b: get_peers queries" "$(n "$f" 'frame contains "9:get_peers"')" -gt 0
        check "$b: BEP15 connect requests" "$(n "$f" 'udp.dstport==6969 and udp.payload[0:12]==00:00:04:17:27:10:19:80:00:00:00:00')" -ge 4
        check "$b: HTTP tracker announces" "$(n "$f" 'http.request.uri contains "/announce?info_hash="')" -ge 2
        check "$b: DNS queries" "$(n "$f" 'dns.flags.response==0')" -ge 20
        for p in http tls ssh wg; do check "$b: $p frames" "$(n "$f" $p)" -gt 0; done
        check "$b: WireGuard handshake initiation" "$(n "$f" 'wg.type==1')" -ge 1
        check "$b: background overlaps the BitTorrent peer-wire window (windows.py)" "$(python3 record/windows.py --check-overlap "$f" "$b.truth.tsv" >/dev/null 2>&1; echo $?)" -eq 0
        check "$b: iperf3 frames" "$(n "$f" 'tcp.port==5201 or udp.port==5201')" -gt 100 ;;
    esac
    # every conversation happens between two of the same hosts (100.64.0.1-8 / fd00:6464::1-8)
    check "$b: only the namespace hosts" "$(n "$f" 'not (ip.src==100.64.0.0/24 and ip.dst==100.64.0.0/24) and not ipv6.src==fd00:6464::/64')" -eq 0
done
exit $fail
