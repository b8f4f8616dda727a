#!/bin/bash
# bt-mse-utp.pcap: MSE/PE (RC4) encrypted BitTorrent over uTP between two python3-libtorrent
# peers: pe_forced both directions, allowed_enc_level=rc4, TCP peer connections disabled,
# DHT/LSD/UPnP/NAT-PMP off; HTTP announces to opentracker.
#   h1 100.64.0.1  libtorrent seeder     UDP 47001 (uTP)
#   h2 100.64.0.2  libtorrent downloader UDP 48002 (uTP)
#   h3 100.64.0.3  opentracker           HTTP 6969
NAME=bt-mse-utp
. "$(dirname "$0")/lib.sh"
rec_init
lt_seed_leech 253952 105 "http://$(ip4 3):6969/announce" -- --enc forced --no-tcp
cat >"$WORK/rules" <<R
tcp $(ip4 3) 6969  p2p tracker-http
udp $(ip4 1) 47001 p2p bittorrent-mse-utp
udp $(ip4 2) 48002 p2p bittorrent-mse-utp
R
finish_capture "$NAME" "$WORK/rules"
