#!/bin/bash
# bench.sh : forwarding cost of p2pguard's enforcement modes against the kernel doing the same job.
# For each mode: iperf3 TCP A -> B for BENCH_SECONDS (default 10), `ping -c 20` A -> B (idle
# link), and the CPU time of the forwarder process over the iperf3 run (utime + stime from
# /proc/PID/stat; 100% = one core). p2pguard runs with an allow-all policy (`default: allow`, no
# rules). Prints a Markdown table on stdout (logs on stderr).
#
# Environment: BENCH_MODES (default "kernel-bridge inline kernel-route nfqueue"; py-nfqueue and
# kernel-tbf are accepted too), P2PGUARD_BIN (inline and nfqueue are reported as skipped without
# it), BENCH_SECONDS.
NAME=e2e-bench
. "$(dirname "$0")/topology.sh"
e2e_supervise "$0" "$@"
BENCH_MODES=${BENCH_MODES:-kernel-bridge inline kernel-route nfqueue}
BENCH_SECONDS=${BENCH_SECONDS:-10}
e2e_init
BASE=$WORK
POLICY=$BASE/allow.yaml
write_policy "$POLICY" allow
CLK_TCK=$(getconf CLK_TCK)
ROWS=()

# host_cpu : "BUSY TOTAL" jiffies of all CPUs from /proc/stat (busy = all but idle and iowait)
host_cpu() { awk '/^cpu / { t = 0; for (i = 2; i <= NF; i++) t += $i; print t - $5 - $6, t }' /proc/stat; }

bench_mode() {
    local mode=$1 rtt t0 t1 c0 c1 s0 s1 hcpu cpu="n/a (kernel)" mbit retr pid
    WORK=$BASE/$mode
    mkdir -p "$WORK"
    if mode_is_p2pguard "$mode" && { [ -z "${P2PGUARD_BIN:-}" ] || [ ! -x "$P2PGUARD_BIN" ]; }; then
        ROWS+=("| $mode | skipped: P2PGUARD_BIN not set | | | | | |")
        return
    fi
    e2e_up "$mode" "$POLICY" "$WORK/events.jsonl"
    ip netns exec "$NS_B" iperf3 -s -B "$IP_B" -1 >"$WORK/iperf3-server.log" 2>&1 &
    pid=$!
    E2E_PIDS+=("$pid")
    wait_for 10 bash -c "ip netns exec $NS_B ss -ltnH | grep -q ':5201 '" || die "iperf3 server did not start"
    rtt=$(in_a ping -c 20 -i 0.2 -q "$IP_B" | awk -F'[/ ]+' '/^rtt/ {printf "%s / %s / %s / %s", $7, $8, $9, $10}')
    c0=$(fwd_cpu_ticks)
    s0=$(host_cpu)
    t0=$(date +%s.%N)
    in_a iperf3 -c "$IP_B" -B "$IP_A" -t "$BENCH_SECONDS" -J >"$WORK/iperf3.json" || die "$mode: iperf3 failed: $(tail -5 "$WORK/iperf3.json")"
    t1=$(date +%s.%N)
    c1=$(fwd_cpu_ticks)
    s1=$(host_cpu)
    hcpu=$(awk -v a="$s0" -v b="$s1" -v n="$(nproc)" 'BEGIN { split(a, x); split(b, y); printf "%.0f%%", (y[1] - x[1]) / (y[2] - x[2]) * n * 100 }')
    wait "$pid" 2>/dev/null || true
    read -r mbit retr < <("$PY" -c 'import json,sys; d=json.load(open(sys.argv[1]))["end"]
print(round(d["sum_received"]["bits_per_second"] / 1e6, 1), d["sum_sent"].get("retransmits", "-"))' "$WORK/iperf3.json")
    if [ -n "$c0" ] && [ -n "$c1" ]; then
        cpu=$(awk -v a="$c0" -v b="$c1" -v t0="$t0" -v t1="$t1" -v hz="$CLK_TCK" 'BEGIN { printf "%.0f%%", (b - a) / hz / (t1 - t0) * 100 }')
    fi
    local fwd="kernel"
    [ -n "$FWD_PID" ] && { fwd_stop; fwd="pid, exit $FWD_RC on SIGTERM"; }
    case $mode in
    kernel-bridge) fwd="Linux bridge" ;;
    kernel-route) fwd="ip_forward" ;;
    kernel-tbf) fwd="Linux bridge + tc" ;;
    inline) fwd="p2pguard inline ($fwd)" ;;
    nfqueue) fwd="p2pguard nfqueue ($fwd)" ;;
    py-nfqueue) fwd="nfq_accept.py ($fwd)" ;;
    esac
    ROWS+=("| $mode | $fwd | $mbit | $retr | $rtt | $cpu | $hcpu |")
    log "$mode: $mbit Mbit/s, retransmits $retr, rtt min/avg/max/mdev $rtt ms, forwarder CPU $cpu, host CPU $hcpu"
    e2e_down
}

for m in $BENCH_MODES; do bench_mode "$m"; done
echo
echo "iperf3 TCP A -> B, ${BENCH_SECONDS} s; ping -c 20 -i 0.2 A -> B (idle); forwarder CPU (its utime + stime) and host CPU (all cores, iperf3 and kernel included) over the iperf3 run; 100% = one core, $(nproc) cores"
echo
echo "| mode | forwarder | TCP Mbit/s | retransmits | ping min / avg / max / mdev (ms) | forwarder CPU | host CPU |"
echo "| --- | --- | ---: | ---: | --- | ---: | ---: |"
printf '%s\n' "${ROWS[@]}"
