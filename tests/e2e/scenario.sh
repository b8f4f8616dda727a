#!/bin/bash
# scenario.sh MODE POLICY_KIND : one end-to-end scenario of p2pguard's enforcement.
#   MODE        inline | nfqueue (p2pguard; needs P2PGUARD_BIN), or a placeholder:
#               kernel-bridge | kernel-route | kernel-tbf | py-nfqueue (see topology.sh).
#               Default: $P2PGUARD_MODE, else kernel-bridge.
#   POLICY_KIND block | throttle | log
# Environment: ENC=plain|mse (libtorrent encryption disabled / MSE-RC4 forced on both peers),
#   PAYLOAD_MB (torrent size, default 96), HTTP_MB (default 8), BLOCK_WAIT (s, default 20),
#   WARMUP (s, 3), WINDOW (s, 25), THROTTLE_RATE (1mbit), HTTP_MAX_S (10), SLACK_MIN_MS (20),
#   EMULATE (kernel-bridge/kernel-route only: 1 = emulate block/log verdicts, default;
#   events-only = write the verdict events but drop nothing; 0 = off).
#
# A (seeder, opentracker, HTTP server) <-> M (forwarder) <-> B (downloader, curl).
# The downloader is told the seeder's address (connect_peer) as well as the tracker, so the
# peer-wire connection happens even if the tracker announce is blocked. uTP is off on both
# peers: the torrent is TCP only.
# Prints one JSON line on stdout (analyze.py); everything else goes to stderr and $WORK.
# Exit status 0 = the scenario's acceptance check passed.
MODE=${1:-${P2PGUARD_MODE:-kernel-bridge}}
KIND=${2:?usage: scenario.sh MODE block|throttle|log}
ENC=${ENC:-plain}
NAME=e2e-$MODE-$KIND-$ENC
. "$(dirname "$0")/topology.sh"
e2e_supervise "$0" "$@"
case $KIND in block | throttle | log) ;; *) die "POLICY_KIND must be block, throttle or log" ;; esac
case $ENC in plain) LTENC=plain ;; mse) LTENC=forced ;; *) die "ENC must be plain or mse" ;; esac
PAYLOAD_MB=${PAYLOAD_MB:-96}
HTTP_MB=${HTTP_MB:-8}
BLOCK_WAIT=${BLOCK_WAIT:-20}
WARMUP=${WARMUP:-3}
WINDOW=${WINDOW:-25}
LEECH_TIMEOUT=${LEECH_TIMEOUT:-120}
SEED_PORT=47001
LEECH_PORT=48002
HTTP_PORT=8080
EMULATE=${EMULATE:-1}
case $MODE in kernel-bridge | kernel-route) ;; *) EMULATE=0 ;; esac

e2e_init
POLICY=$WORK/policy.yaml
EVENTS=$WORK/events.jsonl
write_policy "$POLICY" "$KIND"
: >"$EVENTS"
e2e_up "$MODE" "$POLICY" "$EVENTS"
T_START=$(mono_s)

# --- payloads: torrent (256 KiB pieces) and the HTTP file
IH=$(make_payload payload.bin $((PAYLOAD_MB * 1048576)) 4242 "http://$IP_A:6969/announce" 262144)
TOR=$WORK/payload.bin.torrent
SHA=$(sha256sum "$WORK/seed/payload.bin" | cut -d' ' -f1)
mkdir -p "$WORK/www"
head -c $((HTTP_MB * 1048576)) /dev/urandom >"$WORK/www/http.bin"
HTTP_SHA=$(sha256sum "$WORK/www/http.bin" | cut -d' ' -f1)
log "torrent $IH ($PAYLOAD_MB MiB, enc $ENC), HTTP file $HTTP_MB MiB, policy $KIND"

# --- one RTT through M (max of 10 pings): the slack of the block check
RTT_MAX=$(in_a ping -c 10 -i 0.2 -q "$IP_B" | awk -F'[/ ]+' '/^rtt/ {print $9}')
[ -n "$RTT_MAX" ] || die "ping A -> B failed"

# --- servers in A
start_opentracker 1 "$IH"
ip netns exec "$NS_A" "$PY" -m http.server "$HTTP_PORT" --bind "$IP_A" --directory "$WORK/www" \
    >"$WORK/http-server.log" 2>&1 &
E2E_PIDS+=($!)
wait_for 10 bash -c "ip netns exec $NS_A ss -ltnH | grep -q ':$HTTP_PORT '" || die "http.server did not start"

# curl_get OUT PREFIX : B downloads the HTTP file; writes PREFIX.out ('time size code'), PREFIX.rc
curl_get() {
    local rc=0
    in_b curl -sS --max-time 120 -o "$1" -w '%{time_total} %{size_download} %{http_code}\n' \
        "http://$IP_A:$HTTP_PORT/http.bin" >"$2.out" 2>"$2.err" || rc=$?
    echo "$rc" >"$2.rc"
}
# unthrottled baseline, before any torrent traffic
curl_get "$WORK/http-base.bin" "$WORK/http-base"
HTTP_BASE_S=$(awk '{print $1}' "$WORK/http-base.out")
log "HTTP baseline: $HTTP_BASE_S s (rc $(cat "$WORK/http-base.rc"))"
rm -f "$WORK/http-base.bin"

# --- byte counters in B (IP bytes A -> B of the torrent's TCP flows) and capture on B's eth0
in_b "$IPT" -N E2E
in_b "$IPT" -I INPUT -j E2E
in_b "$IPT" -A E2E -s "$IP_A" -p tcp --sport $SEED_PORT
in_b "$IPT" -A E2E -s "$IP_A" -p tcp --dport $LEECH_PORT
torrent_rx() { in_b "$IPT" -nvxL E2E | awk 'NR > 2 {s += $2} END {print s + 0}'; }
ip netns exec "$NS_B" tcpdump -Z root -i eth0 -s 128 -U -B 32768 --immediate-mode --time-stamp-precision=nano -w "$WORK/b.pcap" \
    >"$WORK/tcpdump.log" 2>&1 &
TCPDUMP=$!
E2E_PIDS+=("$TCPDUMP")
TCPDUMP_A=
if [ "$KIND" = block ]; then  # A's side too: the downloader speaks first, so B -> A is blocked first
    ip netns exec "$NS_A" tcpdump -Z root -i eth0 -s 128 -U -B 32768 --immediate-mode --time-stamp-precision=nano \
        -w "$WORK/a.pcap" >"$WORK/tcpdump-a.log" 2>&1 &
    TCPDUMP_A=$!
    E2E_PIDS+=("$TCPDUMP_A")
fi
sleep 1.5
kill -0 $TCPDUMP || die "tcpdump did not start: $(cat "$WORK/tcpdump.log")"
[ -z "$TCPDUMP_A" ] || kill -0 $TCPDUMP_A || die "tcpdump in A did not start: $(cat "$WORK/tcpdump-a.log")"

# --- policy emulation for the kernel placeholders: watch B's connections of the torrent (ss),
# and for each new one write a verdict event; for block, first drop the flow in M (ebtables on
# the bridge, iptables when routing), then write the event (its time = enforcement start).
emulate_policy() {
    local action=$KIND seen=" " _rq _sq loc peer lip lport pip pport src ts
    while kill -0 $$ 2>/dev/null; do
        while read -r _rq _sq loc peer; do
            lip=${loc%:*} lport=${loc##*:} pip=${peer%:*} pport=${peer##*:}
            [ "$pip" = "$IP_A" ] && { [ "$pport" = $SEED_PORT ] || [ "$lport" = $LEECH_PORT ]; } || continue
            case $seen in *" $loc-$peer "*) continue ;; esac
            seen="$seen$loc-$peer "
            if [ "$KIND" = block ] && [ "$EMULATE" = 1 ]; then
                if [ "$(mode_kind "$MODE")" = bridge ]; then
                    in_m ebtables -I FORWARD -p IPv4 --ip-src "$pip" --ip-dst "$lip" --ip-proto tcp --ip-sport "$pport" --ip-dport "$lport" -j DROP
                    in_m ebtables -I FORWARD -p IPv4 --ip-src "$lip" --ip-dst "$pip" --ip-proto tcp --ip-sport "$lport" --ip-dport "$pport" -j DROP
                else
                    in_m "$IPT" -I FORWARD -p tcp -s "$pip" --sport "$pport" -d "$lip" --dport "$lport" -j DROP
                    in_m "$IPT" -I FORWARD -p tcp -s "$lip" --sport "$lport" -d "$pip" --dport "$pport" -j DROP
                fi
            fi
            ts=$(date -u +%Y-%m-%dT%H:%M:%S.%6NZ)
            if [ "$lport" = $LEECH_PORT ]; then src="\"$pip\",\"src_port\":$pport,\"dst_ip\":\"$lip\",\"dst_port\":$lport"
            else src="\"$lip\",\"src_port\":$lport,\"dst_ip\":\"$pip\",\"dst_port\":$pport"; fi
            echo "{\"event\":\"verdict\",\"ts\":\"$ts\",\"src_ip\":$src,\"transport\":\"tcp\",\"protocol\":\"bittorrent\",\"confidence\":\"emulated\",\"rule\":\"$KIND-bittorrent\",\"action\":\"$action\",\"emulated\":\"$EMULATE\"}" >>"$EVENTS"
        done < <(in_b ss -tnH state established 2>/dev/null)
        sleep 0.05
    done
}

# --- the torrent
lt_start 1 seed $SEED_PORT seed "$TOR" --enc "$LTENC" --no-utp --timeout 600
wait_for 10 bash -c "ip netns exec $NS_A ss -ltnH | grep -q ':$SEED_PORT '" || die "seeder not listening: $(tail -5 "$WORK/seed.log")"
EMU_PID=
if [ "$EMULATE" != 0 ]; then
    emulate_policy &
    EMU_PID=$!
    E2E_PIDS+=("$EMU_PID")
fi
# ($$ is this script: the loops end by themselves if it dies without its EXIT trap)
# Each sample: seconds on /proc/uptime's clock (which setting the time of day does not move),
# the time of day (for the captures' timestamps), the torrent's bytes into B so far.
(while kill -0 $$ 2>/dev/null; do echo "$(mono_now) $(date +%s.%N) $(torrent_rx)"; sleep 1; done) >"$WORK/samples.txt" &
SAMPLER=$!
E2E_PIDS+=("$SAMPLER")
LEECH_START=$(mono_now)
lt_start 2 leech $LEECH_PORT leech "$TOR" --enc "$LTENC" --no-utp --connect "$IP_A:$SEED_PORT" --expect-sha256 "$SHA" --timeout 600

# --- the HTTP download, during the torrent: as soon as torrent bytes reach B (at most 15 s)
for _ in $(seq 150); do [ "$(torrent_rx)" -gt 0 ] && break; sleep 0.1; done
sleep "${HTTP_DELAY:-0.2}"
HTTP_START=$(mono_now)
curl_get "$WORK/http.bin" "$WORK/http" &
CURL=$!

torrent_done() { grep -q '^complete after' "$WORK/leech.log"; }
case $KIND in
log) wait_for "$LEECH_TIMEOUT" torrent_done || log "torrent did not complete in $LEECH_TIMEOUT s" ;;
block) wait_for "$BLOCK_WAIT" torrent_done && log "torrent completed although blocked" ;;
throttle)
    wait_for 30 bash -c "[ \$(tail -1 '$WORK/samples.txt' | cut -d' ' -f3) -gt 0 ]" || log "no torrent bytes after 30 s"
    wait_for $((WARMUP + WINDOW + 2)) torrent_done && log "torrent completed during the rate window"
    ;;
esac
wait $CURL || true
grep -q 'SHA-256 MISMATCH' "$WORK/leech.log" && die "downloaded torrent has a wrong SHA-256"
log "stopping (scenario ran $(($(mono_s) - T_START)) s)"

# --- stop everything but the namespaces, then check
kill $SAMPLER $EMU_PID 2>/dev/null || true
echo "$(mono_now) $(date +%s.%N) $(torrent_rx)" >>"$WORK/samples.txt"
swarm_stop
kill -INT $TCPDUMP $TCPDUMP_A 2>/dev/null; wait $TCPDUMP $TCPDUMP_A 2>/dev/null || true
HAD_FWD=${FWD_PID:+1}
RC=0
fwd_stop

COMPLETE_AFTER=()
torrent_done && COMPLETE_AFTER=(--complete-after "$(awk '/^complete after/ {sub("s", "", $3); print $3; exit}' "$WORK/leech.log")")
HTTP_SHA_OK=0
[ -f "$WORK/http.bin" ] && [ "$(sha256sum "$WORK/http.bin" | cut -d' ' -f1)" = "$HTTP_SHA" ] && HTTP_SHA_OK=1
PCAP_A=()
[ -n "$TCPDUMP_A" ] && PCAP_A=(--pcap-a "$WORK/a.pcap" --tcpdump-log-a "$WORK/tcpdump-a.log")
EMU=""
[ "$EMULATE" != 0 ] && EMU="$MODE:$EMULATE"
"$PY" "$E2E_DIR/analyze.py" --kind "$KIND" --mode "$MODE" --enc "$ENC" --pcap "$WORK/b.pcap" \
    --events "$EVENTS" --samples "$WORK/samples.txt" --ip-a "$IP_A" --ip-b "$IP_B" \
    --seed-port $SEED_PORT --leech-port $LEECH_PORT --payload-bytes $((PAYLOAD_MB * 1048576)) \
    --leech-start "$LEECH_START" "${COMPLETE_AFTER[@]}" --rtt-max-ms "$RTT_MAX" \
    --slack-min-ms "${SLACK_MIN_MS:-20}" --http "$WORK/http.out" --http-rc "$(cat "$WORK/http.rc")" \
    --http-sha-ok $HTTP_SHA_OK --http-bytes $((HTTP_MB * 1048576)) --http-start "$HTTP_START" \
    --http-base-s "$HTTP_BASE_S" --http-max-s "${HTTP_MAX_S:-10}" \
    --rate-bps "$(rate_bps "${THROTTLE_RATE:-1mbit}")" --warmup-s "$WARMUP" --window-s "$WINDOW" \
    --fwd-rc "${HAD_FWD:+$FWD_RC}" --emulated "$EMU" --tcpdump-log "$WORK/tcpdump.log" "${PCAP_A[@]}" \
    >"$WORK/result.json" || RC=$?
cat "$WORK/result.json"
log "result: $([ "$RC" = 0 ] && echo PASS || echo FAIL) ($(($(mono_s) - T_START)) s; logs in $WORK)"
exit "$RC"
