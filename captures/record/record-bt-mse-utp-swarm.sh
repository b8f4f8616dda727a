#!/bin/bash
# bt-mse-utp-swarm.pcap: one torrent, one seeder and six downloaders, all python3-libtorrent
# with MSE/PE (RC4) forced (in/out pe_forced, allowed_enc_level=rc4, prefer_rc4) and peer
# connections over uTP only (enable_incoming/outgoing_tcp off), so that the downloaders also
# connect to each other. HTTP announces to opentracker (cleartext TCP, as usual). DHT, LSD,
# UPnP/NAT-PMP off. libtorrent sends uTP from its listen port, so each pair of peers is one
# UDP conversation (listen port <-> listen port), whichever side opened the uTP connection.
#   h1 100.64.0.1  libtorrent seeder      UDP 47001 (egress shaped to 1 Mbit/s)
#   h2..h7         libtorrent downloaders UDP 4800N on 100.64.0.N (egress shaped to 4 Mbit/s)
#   h8 100.64.0.8  opentracker            HTTP 6969
NAME=bt-mse-utp-swarm
NHOSTS=8
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/swarm.sh"
for c in opentracker tc; do command -v $c >/dev/null || die "missing $c"; done
rec_init

TRK=8
IH=$(make_payload payload.bin 163840 110 "http://$(ip4 $TRK):6969/announce")
SHA=$(sha256sum "$WORK/seed/payload.bin" | cut -d' ' -f1)
TOR=$WORK/payload.bin.torrent
log "info-hash $IH"
start_opentracker $TRK "$IH"
shape 1 1mbit
for i in 2 3 4 5 6 7; do shape $i 4mbit; done
LT=(--enc forced --no-tcp)

cap_start "$NAME.pcap"
lt_start 1 seed 47001 seed "$TOR" "${LT[@]}"
sleep 2
for i in 2 3 4 5 6 7; do
    lt_start $i leech 4800$i lt$i "$TOR" "${LT[@]}"
    sleep 0.5
done
FILES=("$WORK"/dl-lt{2,3,4,5,6,7}/payload.bin)
wait_for 90 all_done "$SHA" "${FILES[@]}" || {
    for f in "${FILES[@]}"; do sha_ok "$f" "$SHA" || log "incomplete: $f"; done
    die "not every downloader completed"
}
log "all 6 downloads complete and verified"
sleep 3
swarm_stop
grep -q 'exit ok' "$WORK/seed.log" || die "seeder did not exit cleanly"

{
    echo "tcp $(ip4 $TRK) 6969 p2p tracker-http"
    echo "udp $(ip4 1) 47001 p2p bittorrent-mse-utp"
    for i in 2 3 4 5 6 7; do echo "udp $(ip4 $i) 4800$i p2p bittorrent-mse-utp"; done
} >"$WORK/rules"
swarm_finish "$NAME" "$WORK/rules" bittorrent-mse-utp 8
