#!/bin/bash
# bt-utp-plain.pcap: cleartext BitTorrent over uTP (BEP 29) between two python3-libtorrent
# peers (TCP peer connections disabled, encryption disabled, DHT/LSD/UPnP/NAT-PMP off)
# + HTTP announces to opentracker (the announces themselves are TCP).
#   h1 100.64.0.1  libtorrent seeder     UDP 47001 (uTP)
#   h2 100.64.0.2  libtorrent downloader UDP 48002 (uTP)
#   h3 100.64.0.3  opentracker           HTTP 6969
NAME=bt-utp-plain
. "$(dirname "$0")/lib.sh"
rec_init
lt_seed_leech 262144 102 "http://$(ip4 3):6969/announce" -- --enc plain --no-tcp
cat >"$WORK/rules" <<R
tcp $(ip4 3) 6969  p2p tracker-http
udp $(ip4 1) 47001 p2p bittorrent-utp-plain
udp $(ip4 2) 48002 p2p bittorrent-utp-plain
R
finish_capture "$NAME" "$WORK/rules"
