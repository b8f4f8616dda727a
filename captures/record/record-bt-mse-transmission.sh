#!/bin/bash
# bt-mse-transmission.pcap: MSE/PE (RC4) encrypted BitTorrent over TCP between a
# python3-libtorrent seeder (pe_forced, allowed_enc_level=rc4) and a transmission-cli
# downloader run with -er (encryption required; settings.json: DHT, LPD, uTP, PEX and
# port forwarding off), + HTTP announces to opentracker.
#   h1 100.64.0.1  libtorrent seeder           TCP 47001
#   h2 100.64.0.2  transmission-cli downloader TCP 51413
#   h3 100.64.0.3  opentracker                 HTTP 6969
NAME=bt-mse-transmission
. "$(dirname "$0")/lib.sh"
rec_init

IH=$(make_payload payload.bin 270336 107 "http://$(ip4 3):6969/announce")
SHA=$(sha256sum "$WORK/seed/payload.bin" | cut -d' ' -f1)
log "info-hash $IH"
start_opentracker 3 "$IH"
mkdir -p "$WORK/dl" "$WORK/trconf"
cat >"$WORK/trconf/settings.json" <<J
{
  "bind-address-ipv4": "$(ip4 2)",
  "blocklist-enabled": false,
  "dht-enabled": false,
  "download-dir": "$WORK/dl",
  "encryption": 2,
  "incomplete-dir-enabled": false,
  "lpd-enabled": false,
  "peer-port": 51413,
  "peer-port-random-on-start": false,
  "pex-enabled": false,
  "port-forwarding-enabled": false,
  "rename-partial-files": true,
  "rpc-enabled": false,
  "utp-enabled": false
}
J
dl_done() { [ -f "$WORK/dl/payload.bin" ] && [ "$(sha256sum "$WORK/dl/payload.bin" | cut -d' ' -f1)" = "$SHA" ]; }

cap_start "$NAME.pcap"
inns 1 "$PY" "$REC_DIR/lt_node.py" --role seed --listen "$(ip4 1):47001" --torrent "$WORK/payload.bin.torrent" \
    --save "$WORK/seed" --stop-file "$WORK/stop" --timeout 120 --enc forced --no-utp >"$WORK/seed.log" 2>&1 &
SEEDPID=$!
sleep 3
# (no shell function wrapper: $! must be transmission-cli itself so that SIGINT reaches it)
ip netns exec "$(hns 2)" transmission-cli -g "$WORK/trconf" -w "$WORK/dl" -er -M -p 51413 "$WORK/payload.bin.torrent" \
    >"$WORK/transmission.log" 2>&1 &
TRPID=$!
wait_for 60 dl_done || die "transmission download did not complete: $(tail -c 600 "$WORK/transmission.log")"
log "transmission download complete and verified"
sleep 2
kill -INT "$TRPID"   # transmission-cli stops the torrent (tracker "stopped" announce) and exits
wait_for 20 bash -c "! kill -0 $TRPID" || log "warning: transmission-cli still running, killed at teardown"
touch "$WORK/stop"
wait "$SEEDPID" || true
grep -q 'exit ok' "$WORK/seed.log" || die "seeder did not exit cleanly"

cat >"$WORK/rules" <<R
tcp $(ip4 3) 6969  p2p tracker-http
tcp $(ip4 1) 47001 p2p bittorrent-mse-tcp
tcp $(ip4 2) 51413 p2p bittorrent-mse-tcp
R
finish_capture "$NAME" "$WORK/rules"
