#!/bin/bash
#
# storm.sh - the reconnect storm after a failover (issue 14, item 7): two
# qnetd instances of one HA group on one host, sharing the client address
# 127.0.0.1:$PORT (only the leader binds it) and one CA, and N two-node TLS
# clusters of simulated qdevice nodes (ha/examples/storm.rs). The leader is
# stopped (SIGTERM: it resigns, the standby takes over at once; or kill -9:
# the standby waits for the lease), every node reconnects 2386 ms after it
# lost its connection (as corosync-qdevice does, all at the same moment),
# and the tool reports the time until all vote again and the heartbeat
# round trips of the nodes already back during the storm.
#
# A measurement, not a CI test (it needs minutes and most of the machine):
#   tests/ha/storm.sh [--clusters N] [--kill term|9] [--heartbeat-ms MS]
# Needs root (to raise the open-files limit), etcd (tests/ha/etcd-cluster.sh
# is started if no QNETD_HA_ETCD is given), a release build of qnetd and
# of the example (cargo build --release --bin qnetd -p qnetd-ha --example storm).
set -u
set -o pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
QNETD=${QNETD:-$ROOT/target/release/qnetd}
STORM=${STORM:-$ROOT/target/release/examples/storm}
D=${HX_STATE:-/tmp/ha/storm}
PORT=${PORT:-15603}
CLUSTERS=5000
KILL=term
HB=8000
while [ $# -gt 0 ]; do
    case "$1" in
        --clusters) CLUSTERS=$2; shift;;
        --kill) KILL=$2; shift;;
        --heartbeat-ms) HB=$2; shift;;
        *) echo "storm.sh: unknown option $1" >&2; exit 2;;
    esac
    shift
done
[ -x "$QNETD" ] && [ -x "$STORM" ] || { echo "storm.sh: build first: cargo build --release --bin qnetd -p qnetd-ha --example storm" >&2; exit 1; }
OWN_ETCD=no
if [ -z "${QNETD_HA_ETCD:-}" ]; then
    "$HERE/etcd-cluster.sh" stop >/dev/null 2>&1
    "$HERE/etcd-cluster.sh" start >/dev/null || { echo "storm.sh: etcd did not start" >&2; exit 1; }
    QNETD_HA_ETCD=$("$HERE/etcd-cluster.sh" endpoints)
    OWN_ETCD=yes
fi
rm -rf "$D"; mkdir -p "$D/a" "$D/b"
"$QNETD" certs init --dir "$D/tls" >/dev/null || exit 1
ulimit -n 1048576
GROUP=storm-$$
start() { # name
    env QNETD_LOG=info setsid "$QNETD" serve -s on -l 127.0.0.1 -p "$PORT" --metrics-listen off \
        -S "lock_file=$D/$1/lock,local_socket_file=$D/$1/sock,state_dir=off,tls_dir=$D/tls,max_clients_per_address=0" \
        --ha "endpoints=$QNETD_HA_ETCD" --ha group=$GROUP --ha "name=$1" --ha lease_ttl=5 \
        >> "$D/$1/log" 2>&1 < /dev/null &
    echo $! > "$D/$1/pid"
}
serving() { [ "$("$QNETD" status --socket "$D/$1/sock" --json 2>/dev/null | jq -r '.ha.serving')" = true ]; }
cleanup() {
    local n
    for n in a b; do [ -s "$D/$n/pid" ] && kill -9 "$(cat "$D/$n/pid")" 2>/dev/null; done
    [ $OWN_ETCD = yes ] && "$HERE/etcd-cluster.sh" stop >/dev/null 2>&1
}
trap cleanup EXIT
start a
t=0; until serving a; do sleep 0.2; t=$((t + 1)); [ $t -lt 100 ] || { echo "storm.sh: a does not serve" >&2; exit 1; }; done
start b
sleep 1
SIG=-TERM; [ "$KILL" = 9 ] && SIG=-9
"$STORM" --server "127.0.0.1:$PORT" --clusters "$CLUSTERS" --tls-dir "$D/tls" --heartbeat-ms "$HB" \
    --failover "kill $SIG \$(cat $D/a/pid)" --timeout 300
rc=$?
echo "storm.sh: failover by kill $SIG; b's log: $(grep -c 'failover: this instance now serves' "$D/b/log") takeover(s)"
grep 'failover: this instance now serves' "$D/b/log" | sed 's/^/  /' | cut -c1-200
exit $rc
