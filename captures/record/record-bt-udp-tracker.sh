#!/bin/bash
# bt-udp-tracker.pcap: BEP 15 UDP tracker (opentracker, connect + announce) used by two
# python3-libtorrent peers, then a cleartext BitTorrent transfer over TCP (uTP, encryption,
# DHT/LSD/UPnP/NAT-PMP off). libtorrent sends its UDP tracker packets from its listen port.
#   h1 100.64.0.1  libtorrent seeder     TCP+UDP 47001
#   h2 100.64.0.2  libtorrent downloader TCP+UDP 48002
#   h3 100.64.0.3  opentracker           UDP 6969
NAME=bt-udp-tracker
. "$(dirname "$0")/lib.sh"
rec_init
lt_seed_leech 229376 103 "udp://$(ip4 3):6969/announce" -- --enc plain --no-utp
cat >"$WORK/rules" <<R
udp $(ip4 3) 6969  p2p tracker-udp
tcp $(ip4 1) 47001 p2p bittorrent-tcp-plain
tcp $(ip4 2) 48002 p2p bittorrent-tcp-plain
R
finish_capture "$NAME" "$WORK/rules"
