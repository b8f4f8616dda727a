# shellcheck shell=bash
# Helpers for the multi-peer captures (record-bt-mse-swarm.sh, record-bt-mse-utp-swarm.sh,
# record-bt-mixed-background.sh). Sourced after lib.sh (same topology, capture and cleanup).
# Every long-running client is started with `ip netns exec` directly (not through the inns
# shell function), so that $! is the client's own pid and SIGINT reaches it.

SWARM_PIDS=()   # every client started below
KILL_INT=()     # the ones that stop on SIGINT (transmission-cli, aria2c)

# shape N RATE : token-bucket rate limit on hN's eth0 egress (e.g. 1mbit), so that a
# small torrent takes a few seconds and the downloaders overlap and trade pieces.
shape() { inns "$1" tc qdisc replace dev eth0 root tbf rate "$2" burst 32kb latency 400ms; }

# lt_start N ROLE PORT TAG TORRENT [lt_node.py args...] : libtorrent node in the background.
# Seeds run from $WORK/seed, downloaders save to $WORK/dl-TAG; all stop on $WORK/stop.
lt_start() {
    local n=$1 role=$2 port=$3 tag=$4 tor=$5; shift 5
    local save=$WORK/seed targs=()
    [ "$role" = leech ] && { save=$WORK/dl-$tag; mkdir -p "$save"; }
    [ "$tor" != - ] && targs=(--torrent "$tor" --save "$save")
    # a downloader lingers until the stop file too (--linger), so that later peers can reach it
    ip netns exec "$(hns "$n")" "$PY" "$REC_DIR/lt_node.py" --role "$role" --listen "$(ip4 "$n"):$port" \
        "${targs[@]}" --stop-file "$WORK/stop" --linger 1000 --timeout 150 "$@" >"$WORK/$tag.log" 2>&1 &
    SWARM_PIDS+=($!)
}

# tr_start N PORT TAG TORRENT : transmission-cli downloader, encryption required (-er),
# DHT, LPD, PEX, uTP and port forwarding off. Saves to $WORK/dl-TAG.
tr_start() {
    local n=$1 port=$2 tag=$3 tor=$4
    mkdir -p "$WORK/dl-$tag" "$WORK/conf-$tag"
    cat >"$WORK/conf-$tag/settings.json" <<J
{
  "bind-address-ipv4": "$(ip4 "$n")",
  "blocklist-enabled": false,
  "dht-enabled": false,
  "download-dir": "$WORK/dl-$tag",
  "encryption": 2,
  "incomplete-dir-enabled": false,
  "lpd-enabled": false,
  "peer-port": $port,
  "peer-port-random-on-start": false,
  "pex-enabled": false,
  "port-forwarding-enabled": false,
  "rename-partial-files": true,
  "rpc-enabled": false,
  "utp-enabled": false
}
J
    ip netns exec "$(hns "$n")" transmission-cli -g "$WORK/conf-$tag" -w "$WORK/dl-$tag" -er -M -p "$port" "$tor" \
        >"$WORK/$tag.log" 2>&1 &
    SWARM_PIDS+=($!)
    KILL_INT+=($!)
}

# aria_start N PORT TAG TORRENT : aria2c downloader, MSE required with RC4 (arc4), DHT, LPD,
# PEX and IPv6 off; it keeps seeding until SIGINT (then sends its "stopped" announce).
aria_start() {
    local n=$1 port=$2 tag=$3 tor=$4
    mkdir -p "$WORK/dl-$tag"
    ip netns exec "$(hns "$n")" aria2c --dir="$WORK/dl-$tag" --listen-port="$port" \
        --bt-require-crypto=true --bt-min-crypto-level=arc4 \
        --enable-dht=false --enable-dht6=false --bt-enable-lpd=false --enable-peer-exchange=false \
        --disable-ipv6=true --seed-time=60 --seed-ratio=0.0 --check-certificate=false \
        --console-log-level=notice --summary-interval=0 --file-allocation=none "$tor" >"$WORK/$tag.log" 2>&1 &
    SWARM_PIDS+=($!)
    KILL_INT+=($!)
}

# sha_ok FILE SHA
sha_ok() { [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$2" ]; }

# all_done SHA FILE... : every file exists with that SHA-256
all_done() { local s=$1 f; shift; for f in "$@"; do sha_ok "$f" "$s" || return 1; done; }

# swarm_stop : touch the stop file (libtorrent nodes exit and send "stopped"), SIGINT to
# transmission-cli and aria2c, then wait (at most 20 s) for all of them.
swarm_stop() {
    local p
    touch "$WORK/stop"
    for p in "${KILL_INT[@]}"; do kill -INT "$p" 2>/dev/null || true; done
    local end=$(($(mono_s) + 20))
    for p in "${SWARM_PIDS[@]}"; do
        while kill -0 "$p" 2>/dev/null && [ "$(mono_s)" -lt $end ]; do sleep 0.3; done
        kill -0 "$p" 2>/dev/null && log "warning: pid $p still running, killed at teardown"
    done
    return 0
}

# swarm_finish OUTNAME RULESFILE [WHAT MIN]... : like finish_capture, but the capture and truth
# are copied to captures/ only if checktruth.py accepts every row and each WHAT label has at
# least MIN rows.
swarm_finish() {
    local out=$1 rules=$2; shift 2
    cap_stop
    "$PY" "$REC_DIR/mktruth.py" "$CAP_TMP" "$rules" >"$WORK/$out.truth.tsv" \
        || die "truth generation failed (unclassified conversation?)"
    "$PY" "$REC_DIR/checktruth.py" "$CAP_TMP" "$WORK/$out.truth.tsv" >"$WORK/checktruth.out" \
        || die "checktruth: $(cat "$WORK/checktruth.out")"
    local n
    if ! grep -q -- '-plain$' "$WORK/$out.truth.tsv"; then
        n=$(tshark -n -r "$CAP_TMP" -Y 'frame contains "BitTorrent protocol"' 2>/dev/null | wc -l)
        [ "$n" = 0 ] || die "$n frames with a cleartext BitTorrent handshake in an MSE-only capture"
    fi
    if [ -n "${EXTRA_CHECK:-}" ]; then
        $EXTRA_CHECK "$CAP_TMP" "$WORK/$out.truth.tsv" >"$WORK/extracheck.out" 2>&1 \
            || die "$EXTRA_CHECK: $(cat "$WORK/extracheck.out")"
        cat "$WORK/extracheck.out" >&2
    fi
    while [ $# -ge 2 ]; do
        n=$(awk -F'\t' -v w="$1" '$5==w' "$WORK/$out.truth.tsv" | wc -l)
        [ "$n" -ge "$2" ] || die "only $n $1 conversations (want >= $2)"
        shift 2
    done
    cp "$CAP_TMP" "$CAP_DIR/$out.pcap"
    cp "$WORK/$out.truth.tsv" "$CAP_DIR/$out.truth.tsv"
    log "wrote $CAP_DIR/$out.pcap ($(stat -c %s "$CAP_DIR/$out.pcap") bytes), $(($(wc -l <"$CAP_DIR/$out.truth.tsv") - 1)) conversations"
    cut -f1,4,5 "$CAP_DIR/$out.truth.tsv" | tail -n +2 | sort | uniq -c >&2
}
