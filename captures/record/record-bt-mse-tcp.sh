#!/bin/bash
# bt-mse-tcp.pcap: MSE/PE (RC4) encrypted BitTorrent over TCP between two python3-libtorrent
# peers: in_enc_policy=out_enc_policy=pe_forced, allowed_enc_level=rc4, prefer_rc4;
# uTP/DHT/LSD/UPnP/NAT-PMP off; HTTP announces to opentracker (cleartext, as usual).
#   h1 100.64.0.1  libtorrent seeder     TCP 47001
#   h2 100.64.0.2  libtorrent downloader TCP 48002
#   h3 100.64.0.3  opentracker           HTTP 6969
NAME=bt-mse-tcp
. "$(dirname "$0")/lib.sh"
rec_init
lt_seed_leech 294912 104 "http://$(ip4 3):6969/announce" -- --enc forced --no-utp
cat >"$WORK/rules" <<R
tcp $(ip4 3) 6969  p2p tracker-http
tcp $(ip4 1) 47001 p2p bittorrent-mse-tcp
tcp $(ip4 2) 48002 p2p bittorrent-mse-tcp
R
finish_capture "$NAME" "$WORK/rules"
