#!/bin/bash
#
# publish-experiment.sh - how fast does the real corosync-qdevice 3.0.x reach
# a second arbitrator when the one it is connected to goes away?  This
# decides how an active/standby qnetd group is published (docs/ha.md).
#
# Topology (all created here, prefix hx, net 10.78.0; override with
# HX_PREFIX / HX_NET):
#   a 2-node corosync cluster from ../shared/interop (netns hx-n1, hx-n2 on
#   bridge hx-br0), and two reference corosync-qnetd instances, each in a
#   netns of its own (hx-q1 = .201, hx-q2 = .202) attached to the same
#   bridge, so an instance can be cut off like a host.
#
# Publishing by name: the nodes' quorum.device.net.host is "qnetd-grp",
# resolved through a private /etc/hosts (bind mounted in a mount namespace
# around `cluster up`, so the daemons inherit it; the real /etc is never
# written) that lists both instances, in the order given by --order.
#
# Faults (applied to the instance the nodes are connected to):
#   kill      kill -9 of corosync-qnetd: the kernel closes its sockets and
#             later connects are refused (RST)
#   blackhole the harness's isolate-qnetd: a blackhole route in each node to
#             the instance's address
#   drop      the instance's host silently drops every IP packet (nft in its
#             netns, process still running): no RST, no ICMP, as a host cut
#             off by a firewall
#   linkdown  the instance's link is down (host powered off on the same L2:
#             ARP fails)
#   float     publishing through a floating address (10.78.0.200) instead of
#             a name: the instance holding it is cut off (link down), the
#             other takes the address and announces it with gratuitous ARP
#             (arping -U, or qnetd-ha's own with FLOAT_TOOL=target/debug/examples/float)
#   ha        end to end: the floating address driven by qnetd-ha's
#             controller (ha/examples/instance in each instance's netns,
#             TTL 5 s) on a 3-member etcd attached to the same bridge
#             (tests/ha/etcd-cluster.sh, members .21-.23); the leader's host
#             is cut off (link down: no clients, no etcd); measured from the
#             cut (etcd lease expiry + takeover wait + announcement +
#             qdevice reconnect). --policy wait|trust picks the takeover
#             policy.
#
# Usage: publish-experiment.sh FAULT [--order ab|ba] [--runs N] [--max S] [--policy wait|trust]
# Output: one line per run: "fault order run: connected_to_other=S ack=S".
# Needs root, corosync, corosync-qdevice, corosync-qnetd, nftables,
# iputils-arping and ../shared/interop (or INTEROP_DIR).
set -u
set -o pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
INTEROP=${INTEROP_DIR:-$HERE/../../../shared/interop}
[ -x "$INTEROP/cluster" ] || INTEROP=/work/shared/interop
P=${HX_PREFIX:-hx}
NET=${HX_NET:-10.78.0}
BASE=${HX_STATE:-/tmp/ha/publish}
PORT=5403
FLOAT="$NET.200"
export CLUSTER_PREFIX=$P CLUSTER_NET=$NET CLUSTER_STATE_DIR=$BASE/cluster INTEROP_STATE_DIR=$BASE

die() { echo "publish-experiment: error: $*" >&2; exit 1; }
log() { echo "publish-experiment: $*" >&2; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN{printf "%.2f", b-a}'; }

[ "$(id -u)" = 0 ] || die "must run as root"
for c in corosync corosync-qdevice corosync-qnetd nft arping ip unshare; do
    command -v "$c" >/dev/null || die "missing $c: apt-get install corosync corosync-qdevice corosync-qnetd nftables iputils-arping"
done
[ -x "$INTEROP/cluster" ] || die "interop harness not found (set INTEROP_DIR)"

FAULT=${1:-}; shift || true
ORDER=ab; RUNS=1; MAX=90; POLICY=wait
while [ $# -gt 0 ]; do
    case "$1" in
        --order) ORDER=$2; shift;;
        --runs) RUNS=$2; shift;;
        --max) MAX=$2; shift;;
        --policy) POLICY=$2; shift;;
        *) die "unknown option $1";;
    esac
    shift
done
case "$FAULT" in kill|blackhole|drop|linkdown|float|ha|setup|cleanup) ;; *) die "FAULT must be kill|blackhole|drop|linkdown|float|ha (or setup|cleanup)";; esac
ROOT=$(cd "$HERE/../.." && pwd)
INSTANCE=${INSTANCE_TOOL:-$ROOT/target/debug/examples/instance}
ETCD_SH="$HERE/etcd-cluster.sh"
etcd_env() { HA_ETCD_PREFIX=${P}p HA_ETCD_BRIDGE=$P-br0 HA_ETCD_NET=$NET HA_ETCD_HOSTBASE=20 HA_ETCD_DIR=$BASE-etcd "$@"; }
if [ "$FAULT" = ha ]; then
    [ -x "$INSTANCE" ] || die "$INSTANCE missing: cargo build -p qnetd-ha --examples"
    command -v etcd >/dev/null || die "etcd missing: apt-get install etcd-server etcd-client"
fi

qaddr() { echo "$NET.20$1"; }
qdir() { echo "$BASE/q$1"; }
qref() { local i=$1; shift; QNETD_REF_DIR=$(qdir "$i") "$INTEROP/qnetd-ref" "$@"; }

q_up() { # i
    local i=$1 ns="$P-q$1"
    ip netns add "$ns" || die "netns $ns exists (run with 'cleanup' first)"
    ip link add "$P-qv$i" type veth peer name eth0 netns "$ns"
    ip link set "$P-qv$i" master "$P-br0" up
    ip -n "$ns" link set lo up
    ip -n "$ns" addr add "$(qaddr "$i")/24" dev eth0
    ip -n "$ns" link set eth0 up
}
q_start() { # i [listen]
    local listen=${2:-$(qaddr "$1")}
    ip netns exec "$P-q$1" env QNETD_REF_DIR="$(qdir "$1")" \
        "$INTEROP/qnetd-ref" start --listen "$listen" --port $PORT --tls off >/dev/null 2>&1 \
        || die "qnetd $1 did not start (see $(qdir "$1"))"
}
q_pid() { local p s; read -r p s < "$(qdir "$1")/qnetd.pidinfo" && echo "$p"; }
# number of nodes of our cluster that instance i lists, and how many vote ACK
q_nodes() { qref "$1" tool -l -v 2>/dev/null | grep -c 'Node ID'; }
q_acks() { qref "$1" tool -l -v 2>/dev/null | grep -c 'Vote:.*(ACK)'; }
which_q() { local i; for i in 1 2; do [ "$(q_nodes $i)" = 2 ] && { echo "$i"; return; }; done; echo 0; }

cleanup() {
    local i pid
    for i in 1 2; do
        if [ -s "$BASE/inst$i.pid" ]; then
            read -r pid < "$BASE/inst$i.pid"
            [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = instance ] && kill -9 "$pid" 2>/dev/null
        fi
    done
    [ -e "$BASE-etcd/created" ] && etcd_env "$ETCD_SH" stop >/dev/null 2>&1
    for i in 1 2; do
        [ -f "$(qdir $i)/qnetd.pidinfo" ] && qref $i stop >/dev/null 2>&1
        ip netns del "$P-q$i" 2>/dev/null
        ip link del "$P-qv$i" 2>/dev/null
    done
    [ -f "$CLUSTER_STATE_DIR/config" ] && "$INTEROP/cluster" down >/dev/null 2>&1
    rm -rf "$BASE"
}
[ "$FAULT" = cleanup ] && { cleanup; exit 0; }

one_run() { # run-number
    local r=$1 hosts="$BASE/hosts" host=qnetd-grp
    cleanup; mkdir -p "$BASE"
    {
        grep -v qnetd-grp /etc/hosts
        if [ "$ORDER" = ab ]; then echo "$(qaddr 1) qnetd-grp"; echo "$(qaddr 2) qnetd-grp"
        else echo "$(qaddr 2) qnetd-grp"; echo "$(qaddr 1) qnetd-grp"; fi
    } > "$hosts"
    case "$FAULT" in float|ha) host=$FLOAT;; esac
    # The nodes' qdevices run in a mount namespace where the private hosts
    # file is bind mounted over /etc/hosts (the real /etc is never written).
    # `cluster up` itself must run outside it: the netns it creates are bind
    # mounts under /run/netns that must stay visible to the root namespace.
    "$INTEROP/cluster" up --nodes 2 --qnetd "$NET.1:$PORT" --net-opt "host=$host" \
        --tls off --no-wait-qdevice >"$BASE/up.log" 2>&1 || die "cluster up failed (see $BASE/up.log)"
    q_up 1; q_up 2
    if [ "$FAULT" = float ]; then
        # instance 1 is the leader and holds the floating address; both listen
        # on the wildcard so the one that takes the address serves on it
        ip -n "$P-q1" addr add "$FLOAT/24" dev eth0
        q_start 1 0.0.0.0; q_start 2 0.0.0.0
    elif [ "$FAULT" = ha ]; then
        etcd_env "$ETCD_SH" start >"$BASE/etcd.log" 2>&1 || die "etcd did not start (see $BASE/etcd.log)"
        local eps; eps=$(etcd_env "$ETCD_SH" endpoints)
        q_start 1 0.0.0.0; q_start 2 0.0.0.0
        local grp="exp-$$-$r" i t
        for i in 1 2; do
            setsid ip netns exec "$P-q$i" "$INSTANCE" "$eps" "$grp" "q$i" 5 "$POLICY" "$FLOAT/24" eth0 \
                > "$BASE/inst$i.out" 2> "$BASE/inst$i.log" < /dev/null &
            echo $! > "$BASE/inst$i.pid"
            disown
            if [ $i = 1 ]; then
                t=0
                until ip -n "$P-q1" addr show dev eth0 | grep -q "$FLOAT/"; do
                    [ $t -lt 75 ] || die "instance 1 did not take $FLOAT (see $BASE/inst1.log)"
                    sleep 0.2; t=$((t + 1))
                done
            fi
        done
    else
        q_start 1; q_start 2
    fi
    "$INTEROP/cluster" stop-qdevice 1,2 >/dev/null 2>&1
    unshare -m --propagation private /bin/bash -c \
        'mount --bind "$1" /etc/hosts && shift && exec "$@"' up "$hosts" \
        "$INTEROP/cluster" start-qdevice 1,2 >>"$BASE/up.log" 2>&1 || die "qdevice start failed"
    "$INTEROP/cluster" wait-ack 1,2 --timeout 60 >/dev/null 2>&1 || die "nodes did not reach ACK"
    local t=0 x
    while x=$(which_q); [ "$x" = 0 ] && [ $t -lt 50 ]; do sleep 0.2; t=$((t + 1)); done
    [ "$x" != 0 ] || die "no instance lists both nodes"
    local y=$((3 - x))
    case "$FAULT" in float|ha) [ "$x" != 1 ] && die "$FAULT: nodes not on instance 1";; esac
    if [ $r = 1 ]; then
        ip netns exec "$P-n1" getent ahosts qnetd-grp >/dev/null 2>&1 || true
        log "resolver order in the node (getent ahostsv4 via the private hosts):"
        unshare -m --propagation private /bin/bash -c 'mount --bind "$1" /etc/hosts && getent ahostsv4 qnetd-grp' r "$hosts" | awk '{print "  " $1}' | uniq >&2
    fi
    [ "$FAULT" = setup ] && { log "set up; nodes on q$x; '$0 cleanup' removes it"; exit 0; }
    sleep 2
    local t0; t0=$(now)
    case "$FAULT" in
        kill) kill -9 "$(q_pid "$x")" ;;
        blackhole) for n in 1 2; do ip -n "$P-n$n" route replace blackhole "$(qaddr "$x")/32"; done ;;
        drop) ip netns exec "$P-q$x" nft -f - <<EOF
table inet hx_drop {
  chain in { type filter hook input priority 0; policy drop; }
  chain out { type filter hook output priority 0; policy drop; }
}
EOF
            ;;
        linkdown|ha) ip link set "$P-qv$x" down ;;
        float)
            ip link set "$P-qv1" down
            if [ -n "${FLOAT_TOOL:-}" ]; then
                # qnetd-ha's own: ip addr replace + one gratuitous ARP
                ip netns exec "$P-q2" "$FLOAT_TOOL" take "$FLOAT/24" eth0 || die "float tool failed"
            else
                ip -n "$P-q2" addr add "$FLOAT/24" dev eth0
                ip netns exec "$P-q2" arping -q -U -c 2 -w 2 -I eth0 "$FLOAT" >/dev/null 2>&1 &
            fi
            ;;
    esac
    local tc="" ta="" deadline
    deadline=$(awk -v a="$t0" -v m="$MAX" 'BEGIN{printf "%.3f", a+m}')
    while awk -v d="$deadline" -v n="$(now)" 'BEGIN{exit !(n<d)}'; do
        [ -z "$tc" ] && [ "$(q_nodes $y)" = 2 ] && tc=$(since "$t0")
        [ -n "$tc" ] && [ "$(q_acks $y)" = 2 ] && { ta=$(since "$t0"); break; }
        sleep 0.2
    done
    local extra=""
    if [ "$FAULT" = ha ]; then
        extra=" policy=$POLICY; q2 took the address at +$(awk -v t0="$t0" '/took/{printf "%.2f", $1/1000 - t0; exit}' "$BASE/inst2.log")s, q1 released it at +$(awk -v t0="$t0" '/released/{printf "%.2f", $1/1000 - t0; exit}' "$BASE/inst1.log")s;"
    fi
    echo "$FAULT$extra order=$ORDER run=$r first=q$x: both nodes on the other instance after ${tc:-never (>${MAX}s)}s, both ACK after ${ta:-never (>${MAX}s)}s"
    [ "$FAULT" = float ] && wait
    "$INTEROP/cluster" down --keep-logs "$BASE-logs/$FAULT-$ORDER-$r" >/dev/null 2>&1
}

for r in $(seq 1 "$RUNS"); do one_run "$r"; done
cleanup
