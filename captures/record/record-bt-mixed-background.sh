#!/bin/bash
# bt-mixed.pcap: four small BitTorrent swarms (python3-libtorrent) and ordinary non-P2P traffic
# between the SAME hosts, at the same time. Every BitTorrent session has one role, fixed by
# its listen port, so the truth stays exact from the configured ports:
#   A  cleartext TCP, trackerless: peers found through the Mainline DHT (private bootstrap node)
#        seed h1:47001, downloaders h2:47002 h4:47004 (TCP peer wire + UDP DHT on the same port,
#        uTP off); bare DHT bootstrap node h6:46006
#   B  MSE/RC4 TCP (pe_forced), UDP tracker udp://h3:6969: seed h2:48002, downloaders h1:48001 h5:48005
#   C  MSE/RC4 uTP (pe_forced, TCP off), HTTP tracker http://h3:6969: seed h4:49004, downloaders h1:49001 h2:49002
#   D  cleartext uTP (TCP off), UDP tracker: seed h5:45005, downloaders h4:45004 h6:45006
#   (DHT is on only in A; B, C and D have DHT off so that their UDP port carries only uTP /
#    tracker datagrams; LSD, PEX, UPnP/NAT-PMP off everywhere)
# Background, started with the first downloaders and running in parallel with them (5 jobs):
#   h1 100.64.0.1  python3 http.server :80 (v4+v6), openssl s_server -WWW :443, iperf3 -s :5201,
#                  wireguard-go (userspace WireGuard) wgp2pg1, UDP 51820, tunnel address 100.100.0.1
#                  (the same http.server answers inside the tunnel)
#   h2 100.64.0.2  curl (HTTP), wireguard-go wgp2pg2 UDP 51820 (100.100.0.2): two HTTP downloads
#                  through the tunnel (only the outer UDP is on the bridge)
#   h3 100.64.0.3  opentracker HTTP+UDP :6969, dnsmasq :53 (UDP+TCP, v4+v6), dropbear :22
#   h4 100.64.0.4  dig, dbclient (SSH)
#   h5 100.64.0.5  iperf3 client (TCP 200 KB, UDP 100 KB at 2 Mbit/s)
#   h6 100.64.0.6  dig, curl (HTTP, HTTPS)
NAME=bt-mixed
NHOSTS=6
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/swarm.sh"
for c in curl dig dnsmasq iperf3 openssl dropbear dbclient dropbearkey opentracker wireguard-go wg; do
    command -v $c >/dev/null || die "missing $c (apt-get install -y curl bind9-dnsutils dnsmasq-base iperf3 openssl dropbear-bin opentracker wireguard-go wireguard-tools)"
done
rec_init
H1=$(ip4 1); H2=$(ip4 2); H3=$(ip4 3); H16=$(ip6 1); H36=$(ip6 3)
WG1=100.100.0.1; WG2=100.100.0.2

# --- torrents (deterministic payloads, 96 KiB each)
mkdir -p "$WORK/seed"
mk() { # NAME SEED TRACKER -> hash
    "$PY" "$REC_DIR/lt_mktorrent.py" --file "$WORK/seed/$1" --size 98304 --seed "$2" --tracker "$3" \
        --torrent "$WORK/$1.torrent"
}
IHA=$(mk a.bin 121 -)
IHB=$(mk b.bin 122 "udp://$H3:6969/announce")
IHC=$(mk c.bin 123 "http://$H3:6969/announce")
IHD=$(mk d.bin 124 "udp://$H3:6969/announce")
log "info-hashes A $IHA (DHT) B $IHB C $IHC D $IHD"
start_opentracker 3 "$IHB
$IHC
$IHD"

# --- background server material (made before the capture starts)
mkdir -p "$WORK/www" "$WORK/ssh/srvroot/.ssh" "$WORK/ssh/cliroot" "$WORK/wg"
head -c 262144 /dev/urandom >"$WORK/www/big.bin"
head -c 49152 /dev/urandom >"$WORK/www/mid.bin"
head -c 12288 /dev/urandom >"$WORK/www/small.bin"
head -c 65536 /dev/urandom >"$WORK/www/tls.bin"
head -c 65536 /dev/urandom >"$WORK/www/wg.bin"
echo '<html><body>p2pguard mixed capture</body></html>' >"$WORK/www/index.html"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 -subj /CN=server.test \
    -keyout "$WORK/tls.key" -out "$WORK/tls.crt" 2>/dev/null
dropbearkey -t ed25519 -f "$WORK/ssh/hostkey" >/dev/null 2>&1
dropbearkey -t ed25519 -f "$WORK/ssh/clientkey" >/dev/null 2>&1
dropbearkey -y -f "$WORK/ssh/clientkey" | grep '^ssh-' >"$WORK/ssh/srvroot/.ssh/authorized_keys"
chmod 700 "$WORK/ssh/srvroot" "$WORK/ssh/srvroot/.ssh" "$WORK/ssh/cliroot"; chmod 600 "$WORK/ssh/srvroot/.ssh/authorized_keys"
(umask 077; wg genkey >"$WORK/wg/k1"; wg genkey >"$WORK/wg/k2")
wg pubkey <"$WORK/wg/k1" >"$WORK/wg/p1"; wg pubkey <"$WORK/wg/k2" >"$WORK/wg/p2"

# --- servers
(cd "$WORK/www" && exec ip netns exec "$(hns 1)" "$PY" -m http.server 80 --bind :: >"$WORK/http.log" 2>&1) &
(cd "$WORK/www" && exec ip netns exec "$(hns 1)" openssl s_server -quiet -accept 443 -WWW -cert "$WORK/tls.crt" \
    -key "$WORK/tls.key" >"$WORK/tls.log" 2>&1) &
inns 1 iperf3 -s -B "$H1" -p 5201 >"$WORK/iperf3.log" 2>&1 &
inns 3 dnsmasq -k --conf-file=/dev/null --no-resolv --no-hosts --bind-interfaces --port=53 \
    --listen-address="$H3" --listen-address="$H36" --user=nobody --group=nogroup --pid-file= \
    --host-record=www.example.test,"$H1","$H16" --host-record=ssh.example.test,"$H3","$H36" \
    --host-record=tracker.example.test,"$H3" --txt-record=example.test,"p2pguard mixed capture" \
    --mx-host=example.test,mail.example.test,10 --address=/server.test/"$H1" --log-queries >"$WORK/dns.log" 2>&1 &
inns 3 sh -c "mount --bind '$WORK/ssh/srvroot' /root && exec dropbear -F -E -s -p 22 -r '$WORK/ssh/hostkey' -P ''" \
    >"$WORK/ssh.log" 2>&1 &
# userspace WireGuard (TUN device inside the namespace); unique interface names because
# wireguard-go's control socket /var/run/wireguard/IFNAME.sock is shared by all namespaces
wg_up() { # N PEER
    local n=$1 p=$2 ifc=wgp2pg$1
    rm -f "/var/run/wireguard/$ifc.sock"
    WG_PROCESS_FOREGROUND=1 ip netns exec "$(hns "$n")" wireguard-go "$ifc" >"$WORK/wg/$ifc.log" 2>&1 &
    wait_for 10 test -S "/var/run/wireguard/$ifc.sock" || die "wireguard-go $ifc did not start: $(cat "$WORK/wg/$ifc.log")"
    inns "$n" wg set "$ifc" listen-port 51820 private-key "$WORK/wg/k$n" \
        peer "$(cat "$WORK/wg/p$p")" endpoint "$(ip4 "$p"):51820" allowed-ips "100.100.0.$p/32"
    inns "$n" ip addr add "100.100.0.$n/24" dev "$ifc"
    inns "$n" ip link set "$ifc" up
}
wg_up 1 2
wg_up 2 1
wait_for 10 inns 1 sh -c "ss -ltn | grep -q ':443 ' && ss -ltn | grep -q ':80 ' && ss -ltn | grep -q ':5201 '" || die "h1 servers not up"
wait_for 10 inns 3 sh -c "ss -ltn | grep -q ':22 ' && ss -lun | grep -q ':53 '" || die "h3 servers not up"

# --- background jobs (each one a subshell; it writes $WORK/bg-NAME.ok when everything worked)
bg_dns() {
    local i n=0 q
    for i in 1 2 3 4; do
        for q in "www.example.test A" "www.example.test AAAA" "example.test TXT" "example.test MX" \
                 "ssh.example.test A" "tracker.example.test A"; do
            n=$((n + 1))
            inns $((n % 2 ? 4 : 6)) dig +short +tries=1 @"$H3" $q >>"$WORK/dig.out"
            sleep 0.25
        done
    done
    inns 4 dig +short +tries=1 @"$H36" ssh.example.test AAAA >>"$WORK/dig.out"
    inns 6 dig +short +tcp @"$H3" server.test A >>"$WORK/dig.out"
    inns 4 dig +short +tcp @"$H3" www.example.test A >>"$WORK/dig.out"
    [ "$(grep -c "^$H1\$" "$WORK/dig.out")" -ge 6 ] && grep -q "^$H16\$" "$WORK/dig.out" && touch "$WORK/bg-dns.ok"
}
bg_http() {
    sleep 0.5
    inns 2 curl -sS -o "$WORK/got-big.bin" "http://$H1/big.bin"
    sleep 0.8
    inns 6 curl -sS -o "$WORK/got-mid.bin" "http://$H1/mid.bin"
    sleep 0.5
    inns 2 curl -sS -o /dev/null "http://$H1/index.html"
    sleep 0.5
    inns 6 curl -sS -k --resolve "server.test:443:$H1" -o "$WORK/got-tls.bin" https://server.test/tls.bin
    sleep 0.5
    inns 6 curl -sS -o "$WORK/got-small.bin" "http://[$H16]/small.bin"
    sleep 0.5
    inns 6 curl -sS -k --resolve "server.test:443:$H1" -o /dev/null https://server.test/index.html
    cmp -s "$WORK/got-big.bin" "$WORK/www/big.bin" && cmp -s "$WORK/got-mid.bin" "$WORK/www/mid.bin" &&
        cmp -s "$WORK/got-small.bin" "$WORK/www/small.bin" && cmp -s "$WORK/got-tls.bin" "$WORK/www/tls.bin" &&
        touch "$WORK/bg-http.ok"
}
bg_iperf() {
    sleep 1
    inns 5 iperf3 -c "$H1" -p 5201 -n 200K >"$WORK/iperf3-tcp.out"
    sleep 1
    inns 5 iperf3 -c "$H1" -p 5201 -u -b 2M -l 1200 -n 100K >"$WORK/iperf3-udp.out"
    touch "$WORK/bg-iperf.ok"
}
bg_ssh() {
    local SSH="dbclient -y -y -i '$WORK/ssh/clientkey' -p 22 root@$H3"
    sleep 1.5
    inns 4 sh -c "mount --bind '$WORK/ssh/cliroot' /root && $SSH 'uname -sr; echo ssh-ok'" >"$WORK/ssh.out" 2>&1
    sleep 1
    inns 4 sh -c "mount --bind '$WORK/ssh/cliroot' /root && head -c 32768 /dev/urandom | $SSH 'wc -c'" >>"$WORK/ssh.out" 2>&1
    grep -q ssh-ok "$WORK/ssh.out" && grep -q 32768 "$WORK/ssh.out" && touch "$WORK/bg-ssh.ok"
}
bg_wg() {
    sleep 1
    inns 2 curl -sS -o /dev/null "http://$WG1/index.html"
    sleep 1.5
    inns 2 curl -sS -o "$WORK/got-wg.bin" "http://$WG1/wg.bin"
    cmp -s "$WORK/got-wg.bin" "$WORK/www/wg.bin" && touch "$WORK/bg-wg.ok"
}

cap_start "$NAME.pcap"
LTN=(--enc plain --no-utp --dht --dht-bootstrap "$(ip4 6):46006")   # A
LTB=(--enc forced --no-utp)                                        # B
LTC=(--enc forced --no-tcp)                                        # C
LTD=(--enc plain --no-tcp)                                         # D
lt_start 6 node 46006 dhtboot - --dht --no-utp
sleep 0.5
lt_start 1 seed 47001 seedA "$WORK/a.bin.torrent" "${LTN[@]}"
lt_start 2 seed 48002 seedB "$WORK/b.bin.torrent" "${LTB[@]}"
lt_start 4 seed 49004 seedC "$WORK/c.bin.torrent" "${LTC[@]}"
lt_start 5 seed 45005 seedD "$WORK/d.bin.torrent" "${LTD[@]}"
sleep 2
# downloaders in three batches 1.5 s apart; the background jobs start with the first batch
lt_start 1 leech 48001 dlB1 "$WORK/b.bin.torrent" "${LTB[@]}"
lt_start 2 leech 47002 dlA2 "$WORK/a.bin.torrent" "${LTN[@]}"
lt_start 4 leech 45004 dlD4 "$WORK/d.bin.torrent" "${LTD[@]}"
BGPIDS=()
for j in dns http iperf ssh wg; do "bg_$j" >"$WORK/bg-$j.log" 2>&1 & BGPIDS+=($!); done
sleep 1.5
lt_start 1 leech 49001 dlC1 "$WORK/c.bin.torrent" "${LTC[@]}"
lt_start 5 leech 48005 dlB5 "$WORK/b.bin.torrent" "${LTB[@]}"
lt_start 4 leech 47004 dlA4 "$WORK/a.bin.torrent" "${LTN[@]}"
sleep 1.5
lt_start 2 leech 49002 dlC2 "$WORK/c.bin.torrent" "${LTC[@]}"
lt_start 6 leech 45006 dlD6 "$WORK/d.bin.torrent" "${LTD[@]}"

dl_ok() { sha_ok "$WORK/dl-$1/$2" "$(sha256sum "$WORK/seed/$2" | cut -d' ' -f1)"; }
bt_done() {
    dl_ok dlA2 a.bin && dl_ok dlA4 a.bin && dl_ok dlB1 b.bin && dl_ok dlB5 b.bin &&
        dl_ok dlC1 c.bin && dl_ok dlC2 c.bin && dl_ok dlD4 d.bin && dl_ok dlD6 d.bin
}
wait_for 90 bt_done || {
    for d in dlA2:a dlA4:a dlB1:b dlB5:b dlC1:c dlC2:c dlD4:d dlD6:d; do
        dl_ok "${d%:*}" "${d#*:}.bin" || log "incomplete: ${d%:*}"
    done
    die "not every BitTorrent download completed"
}
log "all 8 BitTorrent downloads complete and verified"
for p in "${BGPIDS[@]}"; do wait "$p" || true; done
for j in dns http iperf ssh wg; do
    [ -f "$WORK/bg-$j.ok" ] || die "background job $j failed: $(tail -5 "$WORK/bg-$j.log")"
done
log "background jobs ok"
sleep 2
swarm_stop

cat >"$WORK/rules" <<R
tcp $H3   6969  p2p     tracker-http
udp $H3   6969  p2p     tracker-udp
udp $H3   53    not-p2p dns
tcp $H3   53    not-p2p dns
udp $H36  53    not-p2p dns
tcp $H3   22    not-p2p ssh
tcp $H1   80    not-p2p http
tcp $H16  80    not-p2p http
tcp $H1   443   not-p2p tls
tcp $H1   5201  not-p2p iperf3
udp $H1   5201  not-p2p iperf3
udp $H1   51820 not-p2p wireguard
tcp $H1   47001 p2p     bittorrent-tcp-plain
tcp $H2   47002 p2p     bittorrent-tcp-plain
tcp $(ip4 4) 47004 p2p  bittorrent-tcp-plain
udp $H1   47001 p2p     dht
udp $H2   47002 p2p     dht
udp $(ip4 4) 47004 p2p  dht
udp $(ip4 6) 46006 p2p  dht
tcp $H2   48002 p2p     bittorrent-mse-tcp
tcp $H1   48001 p2p     bittorrent-mse-tcp
tcp $(ip4 5) 48005 p2p  bittorrent-mse-tcp
udp $(ip4 4) 49004 p2p  bittorrent-mse-utp
udp $H1   49001 p2p     bittorrent-mse-utp
udp $H2   49002 p2p     bittorrent-mse-utp
udp $(ip4 5) 45005 p2p  bittorrent-utp-plain
udp $(ip4 4) 45004 p2p  bittorrent-utp-plain
udp $(ip4 6) 45006 p2p  bittorrent-utp-plain
R
# the background labels must overlap the BitTorrent peer-wire window
EXTRA_CHECK="$PY $REC_DIR/windows.py --check-overlap"
swarm_finish "$NAME" "$WORK/rules" bittorrent-tcp-plain 2 bittorrent-mse-tcp 2 bittorrent-mse-utp 2 \
    bittorrent-utp-plain 2 dht 3 tracker-udp 4 tracker-http 2 dns 20 http 4 tls 2 ssh 2 iperf3 4 wireguard 1
