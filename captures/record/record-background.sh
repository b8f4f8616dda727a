#!/bin/bash
# background.pcap: ordinary (non-P2P) traffic between the same three hosts/addresses used
# by the BitTorrent captures, IPv4 and IPv6:
#   h1 100.64.0.1 / fd00:6464::1  python3 http.server :80, openssl s_server -WWW :443, iperf3 -s :5201
#   h2 100.64.0.2 / fd00:6464::2  client: curl, dig, iperf3 -c, dbclient
#   h3 100.64.0.3 / fd00:6464::3  dnsmasq :53 (UDP+TCP), dropbear sshd :22
NAME=background
. "$(dirname "$0")/lib.sh"
for c in curl dig dnsmasq iperf3 openssl dropbear dbclient dropbearkey; do
    command -v $c >/dev/null || die "missing $c (apt-get install -y curl bind9-dnsutils dnsmasq-base iperf3 openssl dropbear-bin)"
done
rec_init
H1=$(ip4 1); H3=$(ip4 3); H16=$(ip6 1); H36=$(ip6 3)

# --- server-side material (made before the capture starts)
mkdir -p "$WORK/www" "$WORK/ssh/srvroot/.ssh" "$WORK/ssh/cliroot"
head -c 204800 /dev/urandom >"$WORK/www/file.bin"
head -c 65536 /dev/urandom >"$WORK/www/tls.bin"
echo '<html><body>p2pguard background</body></html>' >"$WORK/www/index.html"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 -subj /CN=server.test \
    -keyout "$WORK/tls.key" -out "$WORK/tls.crt" 2>/dev/null
dropbearkey -t ed25519 -f "$WORK/ssh/hostkey" >/dev/null 2>&1
dropbearkey -t ed25519 -f "$WORK/ssh/clientkey" >/dev/null 2>&1
dropbearkey -y -f "$WORK/ssh/clientkey" | grep '^ssh-' >"$WORK/ssh/srvroot/.ssh/authorized_keys"
chmod 700 "$WORK/ssh/srvroot" "$WORK/ssh/srvroot/.ssh" "$WORK/ssh/cliroot"; chmod 600 "$WORK/ssh/srvroot/.ssh/authorized_keys"

# --- servers
(cd "$WORK/www" && exec ip netns exec "$(hns 1)" "$PY" -m http.server 80 --bind :: >"$WORK/http.log" 2>&1) &
(cd "$WORK/www" && exec ip netns exec "$(hns 1)" openssl s_server -quiet -accept 443 -WWW -cert "$WORK/tls.crt" \
    -key "$WORK/tls.key" >"$WORK/tls.log" 2>&1) &
inns 1 iperf3 -s -B "$H1" -p 5201 >"$WORK/iperf3.log" 2>&1 &
inns 3 dnsmasq -k --conf-file=/dev/null --no-resolv --no-hosts --bind-interfaces --port=53 \
    --listen-address="$H3" --listen-address="$H36" --user=nobody --group=nogroup --pid-file= \
    --host-record=www.example.test,"$H1","$H16" --host-record=ssh.example.test,"$H3","$H36" \
    --txt-record=example.test,"p2pguard background capture" --mx-host=example.test,mail.example.test,10 \
    --address=/server.test/"$H1" --log-queries >"$WORK/dns.log" 2>&1 &
# /root inside h3's private mount namespace only (ip netns exec unshares mounts): holds authorized_keys
inns 3 sh -c "mount --bind '$WORK/ssh/srvroot' /root && exec dropbear -F -E -s -p 22 -r '$WORK/ssh/hostkey' -P ''" \
    >"$WORK/ssh.log" 2>&1 &
wait_for 10 inns 1 sh -c "ss -ltn | grep -q ':443 ' && ss -ltn | grep -q ':80 ' && ss -ltn | grep -q ':5201 '" || die "h1 servers not up"
wait_for 10 inns 3 sh -c "ss -ltn | grep -q ':22 ' && ss -lun | grep -q ':53 '" || die "h3 servers not up"

cap_start "$NAME.pcap"
C() { inns 2 "$@"; }
# DNS over UDP (v4 and v6) and TCP
C dig +short @"$H3" www.example.test A >"$WORK/dig.out"
C dig +short @"$H3" www.example.test AAAA >>"$WORK/dig.out"
C dig +short @"$H3" example.test TXT >>"$WORK/dig.out"
C dig +short @"$H3" example.test MX >>"$WORK/dig.out"
C dig +short @"$H36" ssh.example.test AAAA >>"$WORK/dig.out"
C dig +short +tcp @"$H3" server.test A >>"$WORK/dig.out"
grep -q "$H16" "$WORK/dig.out" && grep -q "$H1" "$WORK/dig.out" || die "DNS answers wrong: $(cat "$WORK/dig.out")"
# HTTP (v4 200 KiB download, v6 small page)
C curl -sS -o "$WORK/dl-file.bin" "http://$H1/file.bin" || die "http download failed"
cmp -s "$WORK/dl-file.bin" "$WORK/www/file.bin" || die "http payload mismatch"
C curl -sS -o /dev/null "http://[$H16]/index.html" || die "http over v6 failed"
# TLS 1.3 (SNI server.test, self-signed), 64 KiB body
C curl -sS -k --resolve "server.test:443:$H1" -o "$WORK/dl-tls.bin" https://server.test/tls.bin || die "tls failed"
cmp -s "$WORK/dl-tls.bin" "$WORK/www/tls.bin" || die "tls payload mismatch"
# iperf3: 200 KB TCP, 100 KB UDP at 2 Mbit/s
C iperf3 -c "$H1" -p 5201 -n 200K >"$WORK/iperf3-tcp.out" || die "iperf3 tcp failed"
C iperf3 -c "$H1" -p 5201 -u -b 2M -l 1200 -n 100K >"$WORK/iperf3-udp.out" || die "iperf3 udp failed"
# SSH (dropbear server, dbclient with an ed25519 key): a command + 32 KiB upload
SSH=(dbclient -y -y -i "$WORK/ssh/clientkey" -p 22 "root@$H3")
C sh -c "mount --bind '$WORK/ssh/cliroot' /root && ${SSH[*]} 'uname -sr; echo ssh-ok'" >"$WORK/ssh.out" 2>&1 || true
C sh -c "mount --bind '$WORK/ssh/cliroot' /root && head -c 32768 /dev/urandom | ${SSH[*]} 'wc -c'" >>"$WORK/ssh.out" 2>&1 || true
grep -q ssh-ok "$WORK/ssh.out" && grep -q 32768 "$WORK/ssh.out" || die "ssh failed: $(cat "$WORK/ssh.out") $(cat "$WORK/ssh.log")"

cat >"$WORK/rules" <<R
udp $H3  53   not-p2p dns
tcp $H3  53   not-p2p dns
udp $H36 53   not-p2p dns
tcp $H1  80   not-p2p http
tcp $H16 80   not-p2p http
tcp $H1  443  not-p2p tls
tcp $H1  5201 not-p2p iperf3
udp $H1  5201 not-p2p iperf3
tcp $H3  22   not-p2p ssh
R
finish_capture "$NAME" "$WORK/rules"
