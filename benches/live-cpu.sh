#!/bin/bash
# live-cpu.sh : the CPU that `p2pguard live` uses on a quiet or busy link, by number of threads.
#
# Two network namespaces joined by a veth pair (10.77.0.1 <-> 10.77.0.2, no default route, so
# no packet leaves them); p2pguard captures on B's end while A pings B. For each number of
# threads and each load, prints the CPU time the p2pguard process used over LIVE_CPU_SECONDS
# (utime + stime from /proc/PID/stat) as a share of one CPU, in a Markdown table.
#
# Loads: idle (no traffic), one ping every 1 ms, five pings each every 1 ms (5,000 echo requests
# a second: iputils' ping floods when asked for an interval below 1 ms), and `ping -f` (as fast as
# the replies come: about 100,000 echo requests a second here).
#
# Usage (root): benches/live-cpu.sh [BINARY]   (default target/release/p2pguard)
# Environment: LIVE_CPU_THREADS (default "1 2"), LIVE_CPU_SECONDS (default 5).
set -euo pipefail
BIN=$(realpath "${1:-target/release/p2pguard}")
THREADS=${LIVE_CPU_THREADS:-1 2}
SECONDS_EACH=${LIVE_CPU_SECONDS:-5}
A=p2pgc-a
B=p2pgc-b
CLK_TCK=$(getconf CLK_TCK)
[ -x "$BIN" ] || { echo "live-cpu.sh: no binary at $BIN (make build first)" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "live-cpu.sh: needs root (network namespaces)" >&2; exit 2; }

ERR=$(mktemp)
cleanup() {
    for ns in $A $B; do
        ip netns pids $ns 2>/dev/null | xargs -r kill 2>/dev/null || true
        ip netns del $ns 2>/dev/null || true
    done
    # Left in the root namespace if the script stopped before moving it.
    ip link del p2pgc-va 2>/dev/null || true
}
trap 'cleanup; rm -f "$ERR"' EXIT
cleanup
ip netns add $A
ip netns add $B
ip link add p2pgc-va type veth peer name p2pgc-vb
ip link set p2pgc-va netns $A
ip link set p2pgc-vb netns $B
ip -n $A addr add 10.77.0.1/24 dev p2pgc-va
ip -n $B addr add 10.77.0.2/24 dev p2pgc-vb
for ns in $A $B; do
    ip -n $ns link set lo up
    ip netns exec $ns ethtool -K "p2pgc-v${ns: -1}" tx off rx off tso off gso off gro off \
        >/dev/null 2>&1 || true
done
ip -n $A link set p2pgc-va up
ip -n $B link set p2pgc-vb up

ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

load() {
    case $1 in
        idle) sleep "$SECONDS_EACH" ;;
        flood) ip netns exec $A ping -q -f -w "$SECONDS_EACH" 10.77.0.2 >/dev/null 2>&1 || true ;;
        *)
            local i pings=()
            for ((i = 0; i < $1; i++)); do
                ip netns exec $A ping -q -i 0.001 -c "$((SECONDS_EACH * 1000))" 10.77.0.2 \
                    >/dev/null 2>&1 &
                pings+=($!)
            done
            wait "${pings[@]}" || true
            ;;
    esac
}

echo "| threads | idle | 1 ping every 1 ms | 5 pings every 1 ms | ping -f |"
echo "|---:|---:|---:|---:|---:|"
for t in $THREADS; do
    row="| $t |"
    for l in idle 1 5 flood; do
        ip netns exec $B "$BIN" live -i p2pgc-vb -t "$t" >/dev/null 2>"$ERR" &
        pid=$!
        sleep 1
        if ! kill -0 $pid 2>/dev/null; then
            echo "live-cpu.sh: p2pguard live did not start:" >&2
            cat "$ERR" >&2
            exit 1
        fi
        c0=$(ticks $pid)
        s0=$(date +%s.%N)
        load $l
        c1=$(ticks $pid)
        s1=$(date +%s.%N)
        kill -INT $pid
        wait $pid || true
        row+=" $(awk -v c="$((c1 - c0))" -v hz="$CLK_TCK" -v a="$s0" -v b="$s1" \
            'BEGIN { printf "%.1f%%", 100 * c / hz / (b - a) }') |"
    done
    echo "$row"
done
