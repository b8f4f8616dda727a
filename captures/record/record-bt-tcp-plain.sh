#!/bin/bash
# bt-tcp-plain.pcap: cleartext BitTorrent over TCP between two python3-libtorrent
# peers (encryption disabled, uTP/DHT/LSD/UPnP/NAT-PMP off) + HTTP announces to opentracker.
#   h1 100.64.0.1  libtorrent seeder     TCP 47001
#   h2 100.64.0.2  libtorrent downloader TCP 48002
#   h3 100.64.0.3  opentracker           HTTP 6969
NAME=bt-tcp-plain
. "$(dirname "$0")/lib.sh"
rec_init
lt_seed_leech 307200 101 "http://$(ip4 3):6969/announce" -- --enc plain --no-utp
cat >"$WORK/rules" <<R
tcp $(ip4 3) 6969  p2p tracker-http
tcp $(ip4 1) 47001 p2p bittorrent-tcp-plain
tcp $(ip4 2) 48002 p2p bittorrent-tcp-plain
R
finish_capture "$NAME" "$WORK/rules"
