#!/bin/bash
# bt-mse-swarm.pcap: one torrent, one seeder and six downloaders of three different clients,
# every one of them with MSE/PE (RC4) required, TCP only, so that the downloaders also connect
# to each other: many distinct MSE TCP peer connections. HTTP announces to opentracker
# (cleartext, as usual). uTP, DHT, LSD, PEX, UPnP/NAT-PMP off everywhere.
#   h1 100.64.0.1  libtorrent seeder        TCP 47001 (pe_forced, rc4; egress shaped to 1 Mbit/s)
#   h2 100.64.0.2  libtorrent downloader    TCP 48002 (pe_forced, rc4)
#   h3 100.64.0.3  libtorrent downloader    TCP 48003 (pe_forced, rc4)
#   h4 100.64.0.4  transmission-cli -er     TCP 51404
#   h5 100.64.0.5  transmission-cli -er     TCP 51405
#   h6 100.64.0.6  aria2c require-crypto    TCP 6886
#   h7 100.64.0.7  aria2c require-crypto    TCP 6887
#   h8 100.64.0.8  opentracker              HTTP 6969
# The payload is 144 KiB (9 pieces of 16 KiB). The downloaders' egress is shaped to 4 Mbit/s,
# the seeder's to 1 Mbit/s (tc tbf): the seeder alone needs >1 s to send the file once, so the
# downloaders start while others are still downloading and pieces also flow between them.
NAME=bt-mse-swarm
NHOSTS=8
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/swarm.sh"
for c in transmission-cli aria2c opentracker tc; do command -v $c >/dev/null || die "missing $c"; done
rec_init

TRK=8
IH=$(make_payload payload.bin 147456 109 "http://$(ip4 $TRK):6969/announce")
SHA=$(sha256sum "$WORK/seed/payload.bin" | cut -d' ' -f1)
TOR=$WORK/payload.bin.torrent
log "info-hash $IH"
start_opentracker $TRK "$IH"
shape 1 1mbit
for i in 2 3 4 5 6 7; do shape $i 4mbit; done
LT=(--enc forced --no-utp)

cap_start "$NAME.pcap"
lt_start 1 seed 47001 seed "$TOR" "${LT[@]}"
sleep 2
lt_start 2 leech 48002 lt2 "$TOR" "${LT[@]}"; sleep 0.5
tr_start 4 51404 tr4 "$TOR"; sleep 0.5
aria_start 6 6886 ar6 "$TOR"; sleep 0.5
lt_start 3 leech 48003 lt3 "$TOR" "${LT[@]}"; sleep 0.5
tr_start 5 51405 tr5 "$TOR"; sleep 0.5
aria_start 7 6887 ar7 "$TOR"
FILES=("$WORK"/dl-{lt2,lt3,tr4,tr5,ar6,ar7}/payload.bin)
wait_for 90 all_done "$SHA" "${FILES[@]}" || {
    for f in "${FILES[@]}"; do sha_ok "$f" "$SHA" || log "incomplete: $f"; done
    die "not every downloader completed"
}
log "all 6 downloads complete and verified"
sleep 4   # late connections (transmission connects ~6 s after start) and bitfield exchange
swarm_stop
grep -q 'exit ok' "$WORK/seed.log" || die "seeder did not exit cleanly"

cat >"$WORK/rules" <<R
tcp $(ip4 $TRK) 6969 p2p tracker-http
tcp $(ip4 1) 47001 p2p bittorrent-mse-tcp
tcp $(ip4 2) 48002 p2p bittorrent-mse-tcp
tcp $(ip4 3) 48003 p2p bittorrent-mse-tcp
tcp $(ip4 4) 51404 p2p bittorrent-mse-tcp
tcp $(ip4 5) 51405 p2p bittorrent-mse-tcp
tcp $(ip4 6) 6886  p2p bittorrent-mse-tcp
tcp $(ip4 7) 6887  p2p bittorrent-mse-tcp
R
swarm_finish "$NAME" "$WORK/rules" bittorrent-mse-tcp 15
