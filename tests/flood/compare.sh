#!/bin/bash
#
# The hardening suite, side by side: starts our release build and the
# Debian corosync-qnetd on loopback with equivalent settings (TLS off, the
# same heartbeat limits), runs `qnetd-flood` against each in turn (the other
# server idle), and writes both per-phase tables with the machine, the
# versions and the command to $OUT/flood-results.md (JSON beside it).
#
# Usage: tests/flood/compare.sh [OUT_DIR]      (default target/flood)
# Env:   SOCKETS (2000), PHASE_SECS (10), LEGIT (20), PHASES (all)
# Needs: root is not required; corosync-qnetd (apt-get install corosync-qnetd).
# Exit status: 0 if every phase passed against our server (the reference's
# result is reported, not judged).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
REPO=$(pwd)
OUT=${1:-$REPO/target/flood}
SOCKETS=${SOCKETS:-2000}
PHASE_SECS=${PHASE_SECS:-10}
LEGIT=${LEGIT:-20}
PHASES=${PHASES:-idle,slow,garbage,churn,no-read,oversize}
OUR_PORT=${OUR_PORT:-15431}
REF_PORT=${REF_PORT:-15432}

command -v corosync-qnetd >/dev/null ||
    { echo "corosync-qnetd not found: apt-get install corosync-qnetd" >&2; exit 2; }
cargo build --release --quiet
BIN=$REPO/target/release/qnetd
FLOOD=$REPO/target/release/qnetd-flood
rm -rf "$OUT"; mkdir -p "$OUT/ours" "$OUT/ref"

PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

wait_port() {
    local port=$1 i
    for i in $(seq 1 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "nothing listens on 127.0.0.1:$port after 10 s" >&2
    return 1
}

"$BIN" serve -s off -l 127.0.0.1 -p "$OUR_PORT" --metrics-listen off \
    -S "lock_file=$OUT/ours/pid,local_socket_file=$OUT/ours/sock,state_dir=off" \
    >"$OUT/ours/server.log" 2>&1 &
OUR_PID=$!; PIDS+=("$OUR_PID")
corosync-qnetd -f -s off -l 127.0.0.1 -p "$REF_PORT" \
    -S "lock_file=$OUT/ref/pid,local_socket_file=$OUT/ref/sock" \
    >"$OUT/ref/server.log" 2>&1 &
REF_PID=$!; PIDS+=("$REF_PID")
wait_port "$OUR_PORT"; wait_port "$REF_PORT"

run_flood() { # label port pid
    local rc=0
    "$FLOOD" --server "127.0.0.1:$2" --server-pid "$3" --label "$1" \
        --legit-clusters "$LEGIT" --sockets "$SOCKETS" --phase-secs "$PHASE_SECS" \
        --phases "$PHASES" --json "$OUT/$1.json" >"$OUT/$1.md" || rc=$?
    cat "$OUT/$1.md"
    return $rc
}
OURS_RC=0; run_flood qnetd "$OUR_PORT" "$OUR_PID" || OURS_RC=$?
REF_RC=0; run_flood corosync-qnetd "$REF_PORT" "$REF_PID" || REF_RC=$?

{
    echo "# Flood suite: qnetd and corosync-qnetd, same run"
    echo
    echo "- date: $(date -u '+%F %T UTC')"
    echo "- machine: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) cores, $(free -g | awk '/^Mem:/{print $2}') GiB, kernel $(uname -r)"
    echo "- qnetd: $("$BIN" --version) ($(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?'))"
    echo "- corosync-qnetd: $(corosync-qnetd -v 2>&1 | head -1)"
    echo "- command: SOCKETS=$SOCKETS PHASE_SECS=$PHASE_SECS LEGIT=$LEGIT PHASES=$PHASES tests/flood/compare.sh"
    echo "- load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo
    cat "$OUT/qnetd.md"
    echo
    cat "$OUT/corosync-qnetd.md"
    echo
    echo "Exit status of the flood tool: qnetd $OURS_RC, corosync-qnetd $REF_RC."
} >"$OUT/flood-results.md"
echo "written: $OUT/flood-results.md"
exit "$OURS_RC"
