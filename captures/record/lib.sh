# shellcheck shell=bash
# Common helpers for the capture recording scripts in this directory.
# Sourced (not executed) by record-*.sh. Everything runs in network namespaces
# named "p2pg-*"; nothing is routed outside them (no default route anywhere).
#
# Topology (N hosts, default 3):
#   netns p2pg-sw : Linux bridge br0 (no IP), ports veth1..vethN   <- tcpdump runs here on br0
#   netns p2pg-hI : eth0 = 100.64.0.I/24, fd00:6464::I/64, MAC 02:64:00:00:00:0I
set -euo pipefail

REC_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CAP_DIR=$(cd "$REC_DIR/.." && pwd)
PY=/usr/bin/python3           # Debian's python3-libtorrent only imports under /usr/bin/python3
NSP=p2pg
SW=$NSP-sw
: "${NAME:?NAME must be set before sourcing lib.sh}"
WORK=/tmp/p2pg-work/$NAME
TCPDUMP_PID=
NHOSTS=${NHOSTS:-3}

ip4() { echo "100.64.0.$1"; }
ip6() { echo "fd00:6464::$1"; }
hns() { echo "$NSP-h$1"; }
inns() { local n=$1; shift; ip netns exec "$(hns "$n")" "$@"; }
log() { echo "[$NAME $(date +%T)] $*" >&2; }
die() { log "FAIL: $*"; exit 1; }

# Kill every process living in one of our namespaces (by pid), then delete the namespaces.
topo_down() {
    local ns pids
    for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^$NSP-" || true); do
        pids=$(ip netns pids "$ns" 2>/dev/null || true)
        if [ -n "$pids" ]; then
            kill $pids 2>/dev/null || true
            sleep 0.5
            pids=$(ip netns pids "$ns" 2>/dev/null || true)
            [ -n "$pids" ] && kill -9 $pids 2>/dev/null || true
        fi
        ip netns del "$ns" 2>/dev/null || true
    done
}

offloads_off() { # ns dev
    ip netns exec "$1" ethtool -K "$2" tx off rx off tso off gso off gro off >/dev/null 2>&1 || \
        ip netns exec "$1" ethtool -K "$2" tx off rx off tso off gso off gro off 2>&1 | grep -v -i 'cannot change\|could not change\|fixed' >&2 || true
}

topo_up() {
    local i h
    topo_down
    ip netns add "$SW"
    ip netns exec "$SW" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
    ip netns exec "$SW" ip link set lo up
    ip netns exec "$SW" ip link add br0 type bridge stp_state 0 forward_delay 0 mcast_snooping 0
    ip netns exec "$SW" ip link set br0 address 02:64:00:00:00:fe
    for i in $(seq 1 "$NHOSTS"); do
        h=$(hns "$i")
        ip netns add "$h"
        ip netns exec "$h" sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0 \
            net.ipv6.conf.default.router_solicitations=0 net.ipv6.conf.all.router_solicitations=0
        ip netns exec "$SW" ip link add "veth$i" type veth peer name eth0 netns "$h"
        ip netns exec "$SW" ip link set "veth$i" master br0 up
        ip netns exec "$h" ip link set eth0 address "02:64:00:00:00:0$i"
        ip netns exec "$h" ip link set lo up
        ip netns exec "$h" ip addr add "$(ip4 "$i")/24" dev eth0
        ip netns exec "$h" ip -6 addr add "$(ip6 "$i")/64" dev eth0 nodad
        ip netns exec "$h" ip link set eth0 up
        offloads_off "$SW" "veth$i"
        offloads_off "$h" eth0
    done
    offloads_off "$SW" br0
    ip netns exec "$SW" ip link set br0 up
    # static neighbour entries (deterministic MACs): no ARP/ND noise in the captures
    local j
    for i in $(seq 1 "$NHOSTS"); do
        for j in $(seq 1 "$NHOSTS"); do
            [ "$i" = "$j" ] && continue
            inns "$i" ip neigh replace "$(ip4 "$j")" lladdr "02:64:00:00:00:0$j" dev eth0 nud permanent
            inns "$i" ip -6 neigh replace "$(ip6 "$j")" lladdr "02:64:00:00:00:0$j" dev eth0 nud permanent
        done
    done
    sleep 1
}

cap_start() { # file
    CAP_TMP=$WORK/$(basename "$1")
    ip netns exec "$SW" tcpdump -Z root -i br0 -s 0 -U -w "$CAP_TMP" >"$WORK/tcpdump.log" 2>&1 &
    TCPDUMP_PID=$!
    sleep 1.5
    kill -0 "$TCPDUMP_PID" || die "tcpdump did not start: $(cat "$WORK/tcpdump.log")"
}

cap_stop() {
    [ -n "$TCPDUMP_PID" ] || return 0
    sleep 1
    kill -INT "$TCPDUMP_PID" 2>/dev/null || true
    wait "$TCPDUMP_PID" 2>/dev/null || true
    TCPDUMP_PID=
    cat "$WORK/tcpdump.log" >&2 || true
}

cleanup() {
    local rc=$?
    set +e
    if [ -n "$TCPDUMP_PID" ]; then kill -INT "$TCPDUMP_PID" 2>/dev/null; wait "$TCPDUMP_PID" 2>/dev/null; fi
    topo_down
    [ $rc -eq 0 ] && log "done" || log "exit status $rc (namespaces removed)"
    exit $rc
}

rec_init() {
    command -v tcpdump >/dev/null && command -v tshark >/dev/null || die "need tcpdump and tshark"
    [ "$(id -u)" = 0 ] || die "must run as root"
    trap cleanup EXIT
    trap 'exit 130' INT TERM
    rm -rf "$WORK"; mkdir -p "$WORK"; chmod 755 /tmp/p2pg-work "$WORK"
    topo_up
}

# mono_now : seconds since boot, to 1/100 s (/proc/uptime). Setting the time of day does not
# move this clock; it moves bash's $SECONDS and `date`, and a virtual machine's wall clock has
# been seen to jump 44 s forward in the middle of a test (a wait then ended 44 s early).
mono_now() { local up _; read -r up _ </proc/uptime; echo "$up"; }
# mono_s : the same, in whole seconds
mono_s() { local up; up=$(mono_now); echo "${up%.*}"; }

# wait_for SECONDS CMD... : poll until CMD succeeds
wait_for() {
    local t=$1; shift
    local end=$(($(mono_s) + t))
    while ! "$@" >/dev/null 2>&1; do
        [ "$(mono_s)" -lt $end ] || return 1
        sleep 0.5
    done
}

# make_payload NAME SIZE_BYTES SEED TRACKER_URL(or -) PIECE_SIZE -> $WORK/seed/NAME and $WORK/NAME.torrent ; prints info-hash
make_payload() {
    mkdir -p "$WORK/seed"
    "$PY" "$REC_DIR/lt_mktorrent.py" --file "$WORK/seed/$1" --size "$2" --seed "$3" \
        --tracker "$4" --piece-size "${5:-16384}" --torrent "$WORK/$1.torrent"
}

# start_opentracker HOSTIDX INFOHASH : HTTP+UDP tracker on port 6969, whitelist = that hash
start_opentracker() {
    local n=$1 ih=$2
    mkdir -p "$WORK/tracker"
    echo "$ih" >"$WORK/tracker/whitelist.txt"
    chmod 755 "$WORK/tracker"; chmod 644 "$WORK/tracker/whitelist.txt"
    # opentracker chroots to -d and drops to -u before reading the whitelist: path is relative to the chroot
    inns "$n" opentracker -i "$(ip4 "$n")" -p 6969 -P 6969 -d "$WORK/tracker" -u nobody -w /whitelist.txt \
        >"$WORK/tracker.log" 2>&1 &
    sleep 1
    inns "$n" ss -ltnu | grep -q ':6969' || die "opentracker not listening: $(cat "$WORK/tracker.log")"
}

# finish_capture OUTNAME RULESFILE : stop tcpdump, copy pcap, write truth tsv
finish_capture() {
    local out=$1 rules=$2
    cap_stop
    "$PY" "$REC_DIR/mktruth.py" "$CAP_TMP" "$rules" >"$WORK/$out.truth.tsv" \
        || die "truth generation failed (unclassified conversation?)"
    cp "$CAP_TMP" "$CAP_DIR/$out.pcap"
    cp "$WORK/$out.truth.tsv" "$CAP_DIR/$out.truth.tsv"
    log "wrote $CAP_DIR/$out.pcap ($(stat -c %s "$CAP_DIR/$out.pcap") bytes), $(($(wc -l <"$CAP_DIR/$out.truth.tsv") - 1)) conversations"
    cut -f1,4,5 "$CAP_DIR/$out.truth.tsv" | tail -n +2 | sort | uniq -c >&2
}

# lt_seed_leech SIZE SEED TRACKER_URL -- EXTRA_LT_ARGS...
# python3-libtorrent seeder on h1:47001 and downloader on h2:48002, opentracker on h3:6969
# (HTTP and UDP). Starts the capture just before the seeder. Fails if the
# download does not complete with the right SHA-256 within 60 s.
lt_seed_leech() {
    local size=$1 seed=$2 trk=$3; shift 4
    local ih sha
    ih=$(make_payload payload.bin "$size" "$seed" "$trk")
    sha=$(sha256sum "$WORK/seed/payload.bin" | cut -d' ' -f1)
    log "info-hash $ih, lt args: $*"
    start_opentracker 3 "$ih"
    mkdir -p "$WORK/dl"
    cap_start "$NAME.pcap"
    inns 1 "$PY" "$REC_DIR/lt_node.py" --role seed --listen "$(ip4 1):47001" --torrent "$WORK/payload.bin.torrent" \
        --save "$WORK/seed" --stop-file "$WORK/stop" --timeout 120 "$@" >"$WORK/seed.log" 2>&1 &
    local seedpid=$!
    sleep 3
    inns 2 "$PY" "$REC_DIR/lt_node.py" --role leech --listen "$(ip4 2):48002" --torrent "$WORK/payload.bin.torrent" \
        --save "$WORK/dl" --expect-sha256 "$sha" --timeout 60 "$@" >"$WORK/leech.log" 2>&1 \
        || die "download failed: $(tail -5 "$WORK/leech.log")"
    touch "$WORK/stop"
    wait "$seedpid" || true
    grep -q 'exit ok' "$WORK/seed.log" || die "seeder did not exit cleanly"
}
