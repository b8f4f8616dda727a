#!/bin/bash
# bt-dht.pcap: three python3-libtorrent nodes that find each other ONLY through the
# Mainline DHT (BEP 5): no tracker in the .torrent, no LSD/PEX-bootstrap/UPnP/NAT-PMP.
# h1 is a bare DHT node used as the private bootstrap node (dht_bootstrap_nodes of h2/h3);
# h2 seeds and announce_peer's the info-hash, h3 get_peers's it and downloads over
# cleartext TCP (uTP disabled so every UDP packet here is DHT).
#   h1 100.64.0.1  libtorrent DHT node (bootstrap) UDP 46001
#   h2 100.64.0.2  libtorrent seeder     DHT UDP 47001, BitTorrent TCP 47001
#   h3 100.64.0.3  libtorrent downloader DHT UDP 48002, BitTorrent TCP 48002
NAME=bt-dht
. "$(dirname "$0")/lib.sh"
rec_init

IH=$(make_payload payload.bin 262144 106 -)
SHA=$(sha256sum "$WORK/seed/payload.bin" | cut -d' ' -f1)
log "info-hash $IH (trackerless)"
mkdir -p "$WORK/dl"
BOOT="$(ip4 1):46001"
COMMON=(--enc plain --no-utp --dht --dht-bootstrap "$BOOT")

cap_start "$NAME.pcap"
inns 1 "$PY" "$REC_DIR/lt_node.py" --role node --listen "$(ip4 1):46001" --dht --no-utp \
    --stop-file "$WORK/stop" --timeout 150 >"$WORK/boot.log" 2>&1 &
BOOTPID=$!
sleep 1
inns 2 "$PY" "$REC_DIR/lt_node.py" --role seed --listen "$(ip4 2):47001" --torrent "$WORK/payload.bin.torrent" \
    --save "$WORK/seed" --stop-file "$WORK/stop" --timeout 150 "${COMMON[@]}" >"$WORK/seed.log" 2>&1 &
SEEDPID=$!
sleep 4
inns 3 "$PY" "$REC_DIR/lt_node.py" --role leech --listen "$(ip4 3):48002" --torrent "$WORK/payload.bin.torrent" \
    --save "$WORK/dl" --expect-sha256 "$SHA" --timeout 90 "${COMMON[@]}" >"$WORK/leech.log" 2>&1 \
    || die "download failed: $(tail -5 "$WORK/leech.log")"
touch "$WORK/stop"
wait "$SEEDPID" "$BOOTPID" || true
grep -q 'exit ok' "$WORK/seed.log" || die "seeder did not exit cleanly"
grep -q 'dht_get_peers\|get_peers' "$WORK/leech.log" || log "warning: no get_peers alert logged"

cat >"$WORK/rules" <<R
udp $(ip4 1) 46001 p2p dht
udp $(ip4 2) 47001 p2p dht
udp $(ip4 3) 48002 p2p dht
tcp $(ip4 2) 47001 p2p bittorrent-tcp-plain
tcp $(ip4 3) 48002 p2p bittorrent-tcp-plain
R
finish_capture "$NAME" "$WORK/rules"
