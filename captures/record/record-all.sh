#!/bin/bash
# Re-record every capture in ../ (each script is independent; ~3 minutes in total).
set -u
cd "$(dirname "$0")"
rc=0
for s in record-bt-tcp-plain.sh record-bt-utp-plain.sh record-bt-udp-tracker.sh record-bt-dht.sh \
         record-bt-mse-tcp.sh record-bt-mse-utp.sh record-bt-mse-transmission.sh record-bt-mse-aria2.sh \
         record-bt-lsd.sh record-bt-tcp-ipv6.sh record-background.sh; do
    if ./"$s"; then echo "OK   $s"; else echo "FAIL $s"; rc=1; fi
done
exit $rc
