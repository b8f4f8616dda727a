#!/bin/bash
# bt-lsd.pcap: two python3-libtorrent peers that find each other ONLY through Local Service
# Discovery (BEP 14: "BT-SEARCH * HTTP/1.1" to 239.192.152.143:6771), no tracker, no DHT,
# then a cleartext BitTorrent transfer over TCP (uTP off). The bridge floods multicast
# (mcast_snooping 0) and each host has a 224.0.0.0/4 route on eth0 (there is no default route).
#   h1 100.64.0.1  libtorrent seeder     TCP 47001, LSD UDP 6771
#   h2 100.64.0.2  libtorrent downloader TCP 48002, LSD UDP 6771
NAME=bt-lsd
NHOSTS=2
. "$(dirname "$0")/lib.sh"
rec_init
for i in 1 2; do inns $i ip route add 224.0.0.0/4 dev eth0; done

IH=$(make_payload payload.bin 221184 109 -)
SHA=$(sha256sum "$WORK/seed/payload.bin" | cut -d' ' -f1)
log "info-hash $IH (trackerless)"
mkdir -p "$WORK/dl"

cap_start "$NAME.pcap"
inns 1 "$PY" "$REC_DIR/lt_node.py" --role seed --listen "$(ip4 1):47001" --torrent "$WORK/payload.bin.torrent" \
    --save "$WORK/seed" --stop-file "$WORK/stop" --timeout 150 --enc plain --no-utp --lsd >"$WORK/seed.log" 2>&1 &
SEEDPID=$!
sleep 2
inns 2 "$PY" "$REC_DIR/lt_node.py" --role leech --listen "$(ip4 2):48002" --torrent "$WORK/payload.bin.torrent" \
    --save "$WORK/dl" --expect-sha256 "$SHA" --timeout 90 --enc plain --no-utp --lsd >"$WORK/leech.log" 2>&1 \
    || die "download failed: $(tail -5 "$WORK/leech.log")"
touch "$WORK/stop"
wait "$SEEDPID" || true
grep -q 'exit ok' "$WORK/seed.log" || die "seeder did not exit cleanly"

cat >"$WORK/rules" <<R
udp 239.192.152.143 6771 p2p lsd
udp * 6771 p2p lsd
tcp $(ip4 1) 47001 p2p bittorrent-tcp-plain
tcp $(ip4 2) 48002 p2p bittorrent-tcp-plain
R
finish_capture "$NAME" "$WORK/rules"
