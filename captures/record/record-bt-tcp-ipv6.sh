#!/bin/bash
# bt-tcp-ipv6.pcap: cleartext BitTorrent over TCP/IPv6 between two python3-libtorrent peers
# (encryption, uTP, DHT, LSD, UPnP, NAT-PMP off). No tracker (the Debian opentracker build
# is IPv4-only): the downloader is pointed at the seeder with connect_peer().
#   h1 fd00:6464::1  libtorrent seeder     TCP 47001
#   h2 fd00:6464::2  libtorrent downloader TCP 48002
NAME=bt-tcp-ipv6
NHOSTS=2
. "$(dirname "$0")/lib.sh"
rec_init

IH=$(make_payload payload.bin 249856 110 -)
SHA=$(sha256sum "$WORK/seed/payload.bin" | cut -d' ' -f1)
log "info-hash $IH (trackerless, direct connect)"
mkdir -p "$WORK/dl"

cap_start "$NAME.pcap"
inns 1 "$PY" "$REC_DIR/lt_node.py" --role seed --listen "[$(ip6 1)]:47001" --torrent "$WORK/payload.bin.torrent" \
    --save "$WORK/seed" --stop-file "$WORK/stop" --timeout 120 --enc plain --no-utp >"$WORK/seed.log" 2>&1 &
SEEDPID=$!
sleep 2
inns 2 "$PY" "$REC_DIR/lt_node.py" --role leech --listen "[$(ip6 2)]:48002" --torrent "$WORK/payload.bin.torrent" \
    --save "$WORK/dl" --expect-sha256 "$SHA" --timeout 60 --enc plain --no-utp --connect "[$(ip6 1)]:47001" \
    >"$WORK/leech.log" 2>&1 || die "download failed: $(tail -5 "$WORK/leech.log")"
touch "$WORK/stop"
wait "$SEEDPID" || true
grep -q 'exit ok' "$WORK/seed.log" || die "seeder did not exit cleanly"

cat >"$WORK/rules" <<R
tcp $(ip6 1) 47001 p2p bittorrent-tcp-plain
tcp $(ip6 2) 48002 p2p bittorrent-tcp-plain
R
finish_capture "$NAME" "$WORK/rules"
