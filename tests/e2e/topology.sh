# shellcheck shell=bash
# End-to-end test topology for p2pguard's enforcement modes. Sourced (not executed) by
# scenario.sh and bench.sh.
#
#   netns p2pge-a             netns p2pge-m                       netns p2pge-b
#   eth0 ---------- veth ---- to-a  [forwarder]  to-b ---- veth ---------- eth0
#
# Bridge modes (one subnet 100.64.10.0/24: A .1, B .2; M has no IP):
#   kernel-bridge  Linux bridge br0 in M (to-a, to-b enslaved)            placeholder for inline
#   kernel-tbf     kernel-bridge + tc shaping on to-b's egress (TBF_RATE, default 1mbit) of the
#                  torrent's ports only (htb + u32), or of everything with TBF_SCOPE=all (a
#                  plain root tbf): reference for the throttle measurement
#   inline         `p2pguard inline --in to-a --out to-b --policy P --log L` (no bridge)
# Routing modes (two subnets: A 100.64.11.1/24, M 100.64.11.254 and 100.64.12.254, B 100.64.12.2/24;
# A and B have a route to the other /24 via M and no default route):
#   kernel-route   ip_forward=1 in M                                   placeholder for nfqueue
#   py-nfqueue     kernel-route + the NFQUEUE rule + tests/e2e/nfq_accept.py (accepts all):
#                  checks the iptables NFQUEUE plumbing without p2pguard
#   nfqueue        kernel-route + `iptables -I FORWARD -j NFQUEUE --queue-num Q --queue-bypass`
#                  + `p2pguard nfqueue --queue Q --policy P --log L`
#
# Environment: P2PGUARD_MODE (default kernel-bridge), P2PGUARD_BIN (path of the p2pguard binary;
# needed by inline and nfqueue), NFQ_NUM (default 0), NFQ_BYPASS (1 = --queue-bypass, default 1),
# IPTABLES (iptables binary for M; default: iptables-legacy if present, else iptables).
#
# Reuses captures/record/lib.sh (log, die, wait_for, offloads_off, make_payload,
# start_opentracker) and swarm.sh (lt_start, sha_ok): host index 1 is A and 2 is B for those
# helpers (hns/ip4 are redefined below). Namespaces are "p2pge-*", so the recording scripts'
# cleanup ("p2pg-*") and this harness's ("p2pge-*") never delete each other's namespaces.
# e2e_up installs an EXIT trap that stops the forwarder and every process in the namespaces
# (by pid) and deletes the namespaces, also on failure or interrupt.

E2E_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$E2E_DIR/../.." && pwd)
NAME=${NAME:-e2e}
# shellcheck source=../../captures/record/lib.sh
. "$REPO_DIR/captures/record/lib.sh"
# shellcheck source=../../captures/record/swarm.sh
. "$REPO_DIR/captures/record/swarm.sh"

E2E_NSP=p2pge
NS_A=$E2E_NSP-a
NS_M=$E2E_NSP-m
NS_B=$E2E_NSP-b
MODE=${MODE:-${P2PGUARD_MODE:-kernel-bridge}}
NFQ_NUM=${NFQ_NUM:-0}
NFQ_BYPASS=${NFQ_BYPASS:-1}
FWD_PID=          # forwarder process (p2pguard or nfq_accept.py), if any
FWD_RC=           # its exit status once stopped ("" = not stopped yet)
E2E_PIDS=()       # other background processes started by the scripts (killed at teardown)
IPT=${IPTABLES:-}
if [ -z "$IPT" ]; then
    if command -v iptables-legacy >/dev/null; then IPT=iptables-legacy; else IPT=iptables; fi
fi

# lib.sh / swarm.sh helpers address hosts by index: 1 = A, 2 = B.
hns() { case $1 in 1 | a) echo "$NS_A" ;; 2 | b) echo "$NS_B" ;; m) echo "$NS_M" ;; *) die "hns $1" ;; esac; }
ip4() { case $1 in 1 | a) echo "$IP_A" ;; 2 | b) echo "$IP_B" ;; *) die "ip4 $1" ;; esac; }
in_a() { ip netns exec "$NS_A" "$@"; }
in_m() { ip netns exec "$NS_M" "$@"; }
in_b() { ip netns exec "$NS_B" "$@"; }

mode_kind() { # bridge | route
    case $1 in
    inline | kernel-bridge | kernel-tbf) echo bridge ;;
    nfqueue | kernel-route | py-nfqueue) echo route ;;
    *) die "unknown MODE '$1' (inline, nfqueue, kernel-bridge, kernel-route, kernel-tbf, py-nfqueue)" ;;
    esac
}
mode_is_p2pguard() { [ "$1" = inline ] || [ "$1" = nfqueue ]; }

# Commands the scripts need and the Debian package of each (README: "Packages").
E2E_DEPS=(ip:iproute2 ss:iproute2 tc:iproute2 ethtool:ethtool tcpdump:tcpdump curl:curl
    opentracker:opentracker iperf3:iperf3 ping:iputils-ping iptables:iptables
    iptables-legacy:iptables ebtables:iptables /usr/bin/python3:python3)

# e2e_missing_cmds : prints the missing commands (empty = all there)
e2e_missing_cmds() {
    local d missing=()
    for d in "${E2E_DEPS[@]}"; do command -v "${d%%:*}" >/dev/null 2>&1 || missing+=("${d%%:*}"); done
    /usr/bin/python3 -c 'import libtorrent' 2>/dev/null || missing+=("python3-libtorrent")
    echo "${missing[*]}"
}

# e2e_deps : install the Debian packages of missing commands with apt-get (unless
# E2E_NO_INSTALL=1), then fail if anything is still missing.
e2e_deps() {
    local miss d c pkgs=()
    miss=$(e2e_missing_cmds)
    [ -z "$miss" ] && return 0
    if [ "${E2E_NO_INSTALL:-0}" != 1 ] && command -v apt-get >/dev/null; then
        for c in $miss; do
            [ "$c" = python3-libtorrent ] && { pkgs+=(python3-libtorrent); continue; }
            for d in "${E2E_DEPS[@]}"; do [ "${d%%:*}" = "$c" ] && pkgs+=("${d#*:}"); done
        done
        log "installing missing packages: ${pkgs[*]}"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}" >&2 || true
        miss=$(e2e_missing_cmds)
    fi
    [ -z "$miss" ] || die "missing commands/packages: $miss (see tests/e2e/README.md)"
}

e2e_down() {
    local ns pids
    if [ -n "$FWD_PID" ] && kill -0 "$FWD_PID" 2>/dev/null; then fwd_stop; fi
    for p in "${E2E_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^$E2E_NSP-" || true); do
        pids=$(ip netns pids "$ns" 2>/dev/null || true)
        if [ -n "$pids" ]; then
            # shellcheck disable=SC2086
            kill $pids 2>/dev/null || true
            sleep 0.5
            pids=$(ip netns pids "$ns" 2>/dev/null || true)
            # shellcheck disable=SC2086
            [ -n "$pids" ] && kill -9 $pids 2>/dev/null || true
        fi
        ip netns del "$ns" 2>/dev/null || true
    done
    for p in "${E2E_PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    E2E_PIDS=()
}

e2e_cleanup() {
    local rc=$?
    set +e
    e2e_down
    if ip netns list 2>/dev/null | grep -q "^$E2E_NSP-"; then log "WARNING: namespaces left: $(ip netns list | grep "^$E2E_NSP-")"; fi
    [ $rc -eq 0 ] || log "exit status $rc (namespaces removed; logs in $WORK)"
    exit $rc
}

# e2e_supervise SCRIPT ARGS... : call first thing in a script. Reruns the script as a child and
# waits for it; when the child is done (or killed, even by SIGKILL), or when this process gets
# SIGINT/SIGTERM (forwarded to the child, which gets 20 s to clean up), it deletes whatever is
# left of the namespaces and their processes. The child's own EXIT trap normally does that
# already; this is the safety net for a child that could not run its trap.
e2e_supervise() {
    [ -n "${E2E_SUPERVISED:-}" ] && return 0
    local child rc=0 sig=""
    E2E_SUPERVISED=1 bash "$@" &
    child=$!
    trap 'sig=143; kill -TERM $child 2>/dev/null' TERM
    trap 'sig=130; kill -INT $child 2>/dev/null' INT
    while :; do
        rc=0
        wait "$child" || rc=$?
        kill -0 "$child" 2>/dev/null || break
        # wait returned early because of a signal: give the child 20 s to clean up
        local end=$(($(mono_s) + 20))
        while kill -0 "$child" 2>/dev/null && [ "$(mono_s)" -lt $end ]; do sleep 0.2; done
        kill -0 "$child" 2>/dev/null && kill -9 "$child" 2>/dev/null
        rc=0
        wait "$child" 2>/dev/null || rc=$?
        break
    done
    trap - INT TERM
    set +e
    if ip netns list 2>/dev/null | grep -q "^$E2E_NSP-"; then
        log "child exited $rc and left namespaces behind: removing them"
        e2e_down
    fi
    [ "$rc" = 0 ] && [ -n "$sig" ] && rc=$sig
    exit "$rc"
}

# e2e_init : root check, traps, fresh $WORK. Call once per script.
e2e_init() {
    [ "$(id -u)" = 0 ] || die "must run as root"
    e2e_deps
    trap e2e_cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    e2e_down
    rm -rf "$WORK"
    mkdir -p "$WORK"
    chmod 755 /tmp/p2pg-work "$WORK"
}

# write_policy FILE KIND : block | throttle | log | allow
write_policy() {
    case $2 in
    block) cat >"$1" <<'Y' ;;
default: allow
rules:
  - name: block-bittorrent
    match: { protocols: [bittorrent] }
    action: block
Y
    throttle) cat >"$1" <<Y ;;
default: allow
rules:
  - name: throttle-bittorrent
    match: { protocols: [bittorrent] }
    action: throttle
    rate: ${THROTTLE_RATE:-1mbit}
    scope: rule
Y
    log) cat >"$1" <<'Y' ;;
default: allow
rules:
  - name: log-bittorrent
    match: { protocols: [bittorrent] }
    action: log
Y
    allow) printf 'default: allow\nrules: []\n' >"$1" ;;
    *) die "policy kind $2" ;;
    esac
}

_ns_common() { # ns
    ip netns add "$1"
    ip netns exec "$1" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
    ip netns exec "$1" ip link set lo up
}

# e2e_up MODE POLICY_FILE EVENTS_FILE : build A <-> M <-> B for MODE and start its forwarder.
e2e_up() {
    local mode=$1 policy=$2 events=$3 kind
    kind=$(mode_kind "$mode")
    MODE=$mode
    e2e_down
    FWD_PID="" FWD_RC=""
    _ns_common "$NS_A"; _ns_common "$NS_M"; _ns_common "$NS_B"
    ip netns exec "$NS_M" ip link add to-a type veth peer name eth0 netns "$NS_A"
    ip netns exec "$NS_M" ip link add to-b type veth peer name eth0 netns "$NS_B"
    in_a ip link set eth0 address 02:64:01:00:00:01
    in_b ip link set eth0 address 02:64:01:00:00:02
    in_m ip link set to-a address 02:64:01:00:00:fa
    in_m ip link set to-b address 02:64:01:00:00:fb
    offloads_off "$NS_A" eth0; offloads_off "$NS_B" eth0
    offloads_off "$NS_M" to-a; offloads_off "$NS_M" to-b
    if [ "$kind" = bridge ]; then
        IP_A=100.64.10.1 IP_B=100.64.10.2
        in_a ip addr add $IP_A/24 dev eth0
        in_b ip addr add $IP_B/24 dev eth0
    else
        IP_A=100.64.11.1 IP_B=100.64.12.2
        in_a ip addr add $IP_A/24 dev eth0
        in_b ip addr add $IP_B/24 dev eth0
        in_m ip addr add 100.64.11.254/24 dev to-a
        in_m ip addr add 100.64.12.254/24 dev to-b
        in_m sysctl -qw net.ipv4.ip_forward=1
    fi
    in_a ip link set eth0 up; in_b ip link set eth0 up
    in_m ip link set to-a up; in_m ip link set to-b up
    [ "$kind" = route ] && { in_a ip route add 100.64.12.0/24 via 100.64.11.254; in_b ip route add 100.64.11.0/24 via 100.64.12.254; }

    case $mode in
    kernel-bridge | kernel-tbf)
        in_m ip link add br0 type bridge stp_state 0 forward_delay 0 mcast_snooping 0
        offloads_off "$NS_M" br0
        in_m ip link set to-a master br0
        in_m ip link set to-b master br0
        in_m ip link set br0 up
        [ "$mode" = kernel-tbf ] && shape_torrent to-b
        ;;
    inline)
        # pnet opens both ports promiscuous; set it anyway so the frames for A's and B's MACs
        # reach the raw sockets whatever the forwarder does.
        in_m ip link set to-a promisc on
        in_m ip link set to-b promisc on
        fwd_start "$P2PGUARD_BIN" inline --in to-a --out to-b --policy "$policy" --log "$events"
        ;;
    kernel-route) ;;
    nfqueue | py-nfqueue)
        local bypass=()
        [ "$NFQ_BYPASS" = 1 ] && bypass=(--queue-bypass)
        in_m "$IPT" -A FORWARD -j NFQUEUE --queue-num "$NFQ_NUM" "${bypass[@]}" ||
            die "$IPT cannot add the NFQUEUE rule"
        if [ "$mode" = nfqueue ]; then
            # The README's router rules: flows p2pguard has sealed (mark 0x1) skip the queue.
            in_m "$IPT" -t mangle -A PREROUTING -j CONNMARK --restore-mark --mask 0x1 &&
                in_m "$IPT" -I FORWARD -m mark --mark 0x1/0x1 -j ACCEPT &&
                in_m "$IPT" -t mangle -A POSTROUTING -m mark --mark 0x1/0x1 -j CONNMARK --save-mark --mask 0x1 ||
                die "$IPT cannot add the connmark rules"
        fi
        if [ "$mode" = nfqueue ]; then
            fwd_start "$P2PGUARD_BIN" nfqueue --queue "$NFQ_NUM" --policy "$policy" --log "$events"
        else
            fwd_start "$PY" "$E2E_DIR/nfq_accept.py" "$NFQ_NUM" --count-file "$WORK/nfq_accept.count"
        fi
        # the queue is bound when it shows in M's /proc/net/netfilter/nfnetlink_queue
        wait_for 15 nfq_bound "$NFQ_NUM" || die "nobody bound NFQUEUE $NFQ_NUM in $NS_M: $(tail -5 "$WORK/forwarder.log")"
        ;;
    esac
    if ! wait_for 20 in_a ping -c 1 -W 1 "$IP_B"; then
        [ -n "$FWD_PID" ] && log "forwarder log: $(tail -20 "$WORK/forwarder.log" 2>/dev/null)"
        die "$mode: A cannot reach B through M"
    fi
    log "topology up: mode $mode ($kind), A $IP_A, B $IP_B${FWD_PID:+, forwarder pid $FWD_PID}"
}

# rate_bps RATE : tc-style rate (bit, kbit, mbit, gbit; decimal) in bit/s
rate_bps() {
    awk -v r="$1" 'BEGIN { n = r + 0; u = tolower(r); sub(/^[0-9.]+/, "", u)
        m = (u == "kbit") ? 1e3 : (u == "mbit") ? 1e6 : (u == "gbit") ? 1e9 : (u == "bit" || u == "") ? 1 : -1
        if (m < 0) exit 1; printf "%d\n", n * m }'
}

nfq_bound() { in_m awk -v q="$1" '$1 == q { f = 1 } END { exit !f }' /proc/net/netfilter/nfnetlink_queue; }

# fwd_start CMD... : the forwarder in M, in the background; its pid in FWD_PID.
fwd_start() {
    if [ "$1" = "" ] || [ ! -x "$1" ]; then
        die "mode $MODE needs P2PGUARD_BIN=path of the p2pguard binary (got '${1:-}')"
    fi
    log "forwarder: $*"
    # `ip netns exec` execs the command: $! is the forwarder's own pid
    ip netns exec "$NS_M" "$@" >"$WORK/forwarder.log" 2>&1 &
    FWD_PID=$!
    sleep 0.5
    kill -0 "$FWD_PID" 2>/dev/null || { FWD_RC=0; wait "$FWD_PID" || FWD_RC=$?; die "forwarder exited at once (status $FWD_RC): $(tail -20 "$WORK/forwarder.log")"; }
}

# fwd_stop : SIGTERM to the forwarder, wait up to 10 s; FWD_RC = its exit status (137 = had to be
# killed with SIGKILL).
fwd_stop() {
    [ -n "$FWD_PID" ] || return 0
    local end=$(($(mono_s) + 10))
    kill -TERM "$FWD_PID" 2>/dev/null || true
    while kill -0 "$FWD_PID" 2>/dev/null && [ "$(mono_s)" -lt $end ]; do sleep 0.2; done
    if kill -0 "$FWD_PID" 2>/dev/null; then
        log "forwarder $FWD_PID ignored SIGTERM for 10 s: SIGKILL"
        kill -9 "$FWD_PID" 2>/dev/null || true
    fi
    FWD_RC=0
    wait "$FWD_PID" 2>/dev/null || FWD_RC=$?
    FWD_PID=
    log "forwarder stopped, exit status $FWD_RC"
}

# fwd_cpu_ticks : utime + stime of the forwarder so far (clock ticks), "" if no forwarder
fwd_cpu_ticks() {
    [ -n "$FWD_PID" ] && [ -r "/proc/$FWD_PID/stat" ] || return 0
    # fields after the ")" of comm: state is $1, utime $12, stime $13
    sed 's/^.*) //' "/proc/$FWD_PID/stat" | awk '{print $12 + $13}'
}

# shape_torrent DEV : kernel-tbf's reference shaper on M's egress port DEV (towards B).
# TBF_SCOPE=torrent (default): only TCP from A's torrent port 47001 or to B's 48002 goes through
# a TBF_RATE class (htb + u32), everything else is unshaped, like a per-rule throttle.
# TBF_SCOPE=all: `tc qdisc add dev DEV root tbf rate TBF_RATE burst 32kbit latency 400ms`.
shape_torrent() {
    local dev=$1 rate=${TBF_RATE:-1mbit}
    if [ "${TBF_SCOPE:-torrent}" = all ]; then
        in_m tc qdisc add dev "$dev" root tbf rate "$rate" burst 32kbit latency 400ms
        return
    fi
    in_m tc qdisc add dev "$dev" root handle 1: htb default 20
    in_m tc class add dev "$dev" parent 1: classid 1:10 htb rate "$rate" ceil "$rate" burst 4kb cburst 4kb
    in_m tc class add dev "$dev" parent 1: classid 1:20 htb rate 10gbit quantum 200000
    in_m tc qdisc add dev "$dev" parent 1:10 handle 10: pfifo limit 1000
    in_m tc filter add dev "$dev" parent 1: protocol ip prio 1 u32 \
        match ip protocol 6 0xff match ip sport "${SEED_PORT:-47001}" 0xffff flowid 1:10
    in_m tc filter add dev "$dev" parent 1: protocol ip prio 2 u32 \
        match ip protocol 6 0xff match ip dport "${LEECH_PORT:-48002}" 0xffff flowid 1:10
}
