#!/bin/bash
# bt-mse-aria2.pcap: MSE/PE (RC4) encrypted BitTorrent over TCP between a python3-libtorrent
# seeder (pe_forced, allowed_enc_level=rc4) and an aria2c downloader run with
# --bt-require-crypto=true --bt-min-crypto-level=arc4 (DHT, LPD, PEX off), + HTTP announces.
#   h1 100.64.0.1  libtorrent seeder  TCP 47001
#   h2 100.64.0.2  aria2c downloader  TCP 6891
#   h3 100.64.0.3  opentracker        HTTP 6969
NAME=bt-mse-aria2
. "$(dirname "$0")/lib.sh"
rec_init

IH=$(make_payload payload.bin 245760 108 "http://$(ip4 3):6969/announce")
SHA=$(sha256sum "$WORK/seed/payload.bin" | cut -d' ' -f1)
log "info-hash $IH"
start_opentracker 3 "$IH"
mkdir -p "$WORK/dl"

cap_start "$NAME.pcap"
inns 1 "$PY" "$REC_DIR/lt_node.py" --role seed --listen "$(ip4 1):47001" --torrent "$WORK/payload.bin.torrent" \
    --save "$WORK/seed" --stop-file "$WORK/stop" --timeout 120 --enc forced --no-utp >"$WORK/seed.log" 2>&1 &
SEEDPID=$!
sleep 3
# aria2c exits by itself after the download (--seed-time=0), sending the "stopped" announce
inns 2 timeout 60 aria2c --dir="$WORK/dl" --listen-port=6891 --bt-require-crypto=true --bt-min-crypto-level=arc4 \
    --enable-dht=false --enable-dht6=false --bt-enable-lpd=false --enable-peer-exchange=false \
    --disable-ipv6=true --seed-time=0 --check-certificate=false --console-log-level=notice \
    --summary-interval=0 --file-allocation=none "$WORK/payload.bin.torrent" >"$WORK/aria2.log" 2>&1 \
    || die "aria2c failed: $(tail -5 "$WORK/aria2.log")"
[ "$(sha256sum "$WORK/dl/payload.bin" | cut -d' ' -f1)" = "$SHA" ] || die "aria2c payload hash mismatch"
log "aria2c download complete and verified"
touch "$WORK/stop"
wait "$SEEDPID" || true
grep -q 'exit ok' "$WORK/seed.log" || die "seeder did not exit cleanly"

cat >"$WORK/rules" <<R
tcp $(ip4 3) 6969  p2p tracker-http
tcp $(ip4 1) 47001 p2p bittorrent-mse-tcp
tcp $(ip4 2) 6891  p2p bittorrent-mse-tcp
R
finish_capture "$NAME" "$WORK/rules"
