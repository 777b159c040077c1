#!/bin/bash
# bench/compare.sh: side-by-side benchmark of qnetd (release build) and the
# Debian corosync-qnetd, with the same load from `qnetd-bench`, in one run.
#
# For each workload it starts our server, runs the bench against it, stops
# it, then does the same with corosync-qnetd (both on loopback, TLS on with
# client certificates required, the same listen backlog and heartbeat
# limits). The server certificate and CA come from `qnetd certs init`; for
# the reference they are put into an NSS database (as tests/interop/nss-certs.sh
# shows). Writes OUTDIR/results.md (machine, versions, command, ratio
# table) plus the JSON and text report of every run.
#
# Usage: bench/compare.sh [OUTDIR]          (default: bench/results/DATE)
# Scale and settings (environment):
#   CLUSTERS=9980 NODES=2      connect-storm, steady and reconnect load
#                              (19,960 clients: the most a process may hold
#                              when the hard open-files limit is 20,000)
#   SPLIT_CLUSTERS=5000        mass-split load
#   RECONNECT_CLUSTERS=$CLUSTERS  reconnect load
#   STEADY_S=60                steady duration (s)
#   TLS=on                     on or off
#   HEARTBEAT_MS=8000          client heartbeat
#   TIMEOUT=300                bound of every wait for votes (s)
#   CONNECT_TIMEOUT=60         bound of one connection attempt (s); qdevice's
#                              default of 8 s makes a 20,000-client TLS storm
#                              collapse into retries on 2 cores (BENCHMARKS.md)
#   MAX_CONNECTING=200         first connections in flight while setting up
#                              steady, mass-split and reconnect (0: storm)
#   SETTLE=3                   pause after the set-up, before the phase (s)
#   BACKLOG=4096               listen_backlog of both servers
#   WORKLOADS="connect-storm steady mass-split reconnect"
#   BUILD=1                    0: use the existing target/release/qnetd
#   OUR_PORT=25403 REF_PORT=25404 OUR_METRICS_PORT=OUR_PORT+2
# Needs: cargo, corosync-qnetd, certutil and pk12util (libnss3-tools),
# openssl. Root is needed above ~20,000 open files (the bench raises the
# limit for itself and the servers it starts).
set -euo pipefail

PROG=$(basename "$0")
ROOT=$(cd "$(dirname "$0")/.." && pwd)
die() { echo "$PROG: $*" >&2; exit 1; }

CLUSTERS=${CLUSTERS:-9980}
NODES=${NODES:-2}
SPLIT_CLUSTERS=${SPLIT_CLUSTERS:-5000}
RECONNECT_CLUSTERS=${RECONNECT_CLUSTERS:-$CLUSTERS}
STEADY_S=${STEADY_S:-60}
TLS=${TLS:-on}
HEARTBEAT_MS=${HEARTBEAT_MS:-8000}
TIMEOUT=${TIMEOUT:-300}
CONNECT_TIMEOUT=${CONNECT_TIMEOUT:-60}
MAX_CONNECTING=${MAX_CONNECTING:-200}
SETTLE=${SETTLE:-3}
BACKLOG=${BACKLOG:-4096}
WORKLOADS=${WORKLOADS:-connect-storm steady mass-split reconnect}
BUILD=${BUILD:-1}
OUR_PORT=${OUR_PORT:-25403}
OUR_METRICS_PORT=${OUR_METRICS_PORT:-$((OUR_PORT + 2))}
REF_PORT=${REF_PORT:-25404}
OUT=${1:-$ROOT/bench/results/$(date -u +%Y%m%d-%H%M%S)}

REF_BIN=$(command -v corosync-qnetd || true)
[ -n "$REF_BIN" ] || REF_BIN=/usr/bin/corosync-qnetd
[ -x "$REF_BIN" ] || die "corosync-qnetd not found: apt-get install -y corosync-qnetd"
for t in certutil pk12util openssl; do
    command -v "$t" >/dev/null || die "$t not found: apt-get install -y libnss3-tools openssl"
done

if [ "$BUILD" = 1 ]; then
    (cd "$ROOT" && cargo build --release) || die "cargo build --release failed"
fi
Q=$ROOT/target/release/qnetd
QB=$ROOT/target/release/qnetd-bench
[ -x "$Q" ] || die "$Q not found: run cargo build --release (or BUILD=1)"
[ -x "$QB" ] || die "$QB not found: run cargo build --release (or BUILD=1)"

mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
WORK=$(mktemp -d /tmp/qnetd-compare.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

# --- certificates: ours as PEM, the reference's in an NSS database -----------
"$Q" certs init --dir "$WORK/tls" >/dev/null
NSSDB=$WORK/nssdb
mkdir -p "$NSSDB"
certutil -N -d "$NSSDB" --empty-password
certutil -A -d "$NSSDB" -t "CT,," -n "QNet CA" -i "$WORK/tls/qnetd-ca.pem"
openssl pkcs12 -export -in "$WORK/tls/qnetd-server.pem" -inkey "$WORK/tls/qnetd-server-key.pem" \
    -name "QNetd Cert" -passout pass: -out "$WORK/server.p12"
pk12util -i "$WORK/server.p12" -d "$NSSDB" -W "" >/dev/null

OURS_CMD="$Q serve -f -l 127.0.0.1 -p $OUR_PORT -s $TLS -S tls_dir=$WORK/tls,lock_file=$WORK/ours.pid,local_socket_file=$WORK/ours.sock,listen_backlog=$BACKLOG,state_dir=$WORK/ours-state --metrics-listen 127.0.0.1:$OUR_METRICS_PORT"
REF_CMD="$REF_BIN -f -l 127.0.0.1 -p $REF_PORT -s $TLS -S nss_db_dir=$NSSDB,lock_file=$WORK/ref.pid,local_socket_file=$WORK/ref.sock,listen_backlog=$BACKLOG"

OUR_VERSION="qnetd $("$Q" --version | awk '{print $2}') ($(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$ROOT" diff --quiet 2>/dev/null || echo ', modified'))"
REF_VERSION=$("$REF_BIN" -v 2>&1 | head -1 || true)

run_one() { # who workload clusters
    local who=$1 w=$2 clusters=$3 port cmd name label
    local extra=()
    if [ "$who" = ours ]; then
        port=$OUR_PORT cmd=$OURS_CMD name=qnetd label=$OUR_VERSION
        # our decision-latency histogram (the reference has none)
        extra=(--metrics "127.0.0.1:$OUR_METRICS_PORT")
    else
        port=$REF_PORT cmd=$REF_CMD name=corosync-qnetd label=$REF_VERSION
    fi
    local ramp=$MAX_CONNECTING
    [ "$w" = connect-storm ] && ramp=0
    echo "== $w against $name ($clusters clusters x $NODES nodes, TLS $TLS)"
    local rc=0
    "$QB" "$w" --server "127.0.0.1:$port" --clusters "$clusters" --nodes "$NODES" \
        --tls "$TLS" --tls-dir "$WORK/tls" --heartbeat-ms "$HEARTBEAT_MS" \
        --duration "$STEADY_S" --timeout "$TIMEOUT" \
        --connect-timeout "$CONNECT_TIMEOUT" --max-connecting "$ramp" --settle "$SETTLE" \
        --spawn "$cmd" --server-log "$OUT/$who-$w.server.log" \
        --server-name "$name" --server-label "$label" \
        "${extra[@]}" --json "$OUT/$who-$w.json" | tee "$OUT/$who-$w.txt" || rc=$?
    [ "$rc" = 0 ] || echo "($name: $w did not complete, exit status $rc; its figures are in the table)"
    sleep 2 # let TIME_WAIT sockets and the previous server's memory go
}

OURS_JSON=() REF_JSON=()
for w in $WORKLOADS; do
    clusters=$CLUSTERS
    [ "$w" = mass-split ] && clusters=$SPLIT_CLUSTERS
    [ "$w" = reconnect ] && clusters=$RECONNECT_CLUSTERS
    run_one ours "$w" "$clusters"
    run_one ref "$w" "$clusters"
    if [ -s "$OUT/ours-$w.json" ] && [ -s "$OUT/ref-$w.json" ]; then
        OURS_JSON+=("$OUT/ours-$w.json") REF_JSON+=("$OUT/ref-$w.json")
    fi
done

# --- results.md ---------------------------------------------------------------
{
    echo "# qnetd vs corosync-qnetd, $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo
    echo "## Machine"
    echo
    echo "- CPU: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) cores"
    echo "- RAM: $(free -g | awk '/^Mem:/ {print $2}') GiB"
    echo "- kernel: $(uname -r)"
    echo "- load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "- other busy processes at the end: $(ps -eo pcpu=,comm= --sort=-pcpu | awk '$1 > 5 {printf "%s (%s%%) ", $2, $1}')"
    echo
    echo "## Versions"
    echo
    echo "- ours: $OUR_VERSION"
    echo "- reference: $REF_VERSION (Debian package $(dpkg-query -W -f='${Version}' corosync-qnetd 2>/dev/null || echo '?'))"
    echo
    echo "## Command"
    echo
    echo '```sh'
    echo "CLUSTERS=$CLUSTERS NODES=$NODES SPLIT_CLUSTERS=$SPLIT_CLUSTERS RECONNECT_CLUSTERS=$RECONNECT_CLUSTERS \\"
    echo "  STEADY_S=$STEADY_S TLS=$TLS \\"
    echo "  HEARTBEAT_MS=$HEARTBEAT_MS TIMEOUT=$TIMEOUT CONNECT_TIMEOUT=$CONNECT_TIMEOUT \\"
    echo "  MAX_CONNECTING=$MAX_CONNECTING SETTLE=$SETTLE BACKLOG=$BACKLOG WORKLOADS=\"$WORKLOADS\" bench/compare.sh"
    echo '```'
    echo
    echo "Servers (ports and paths differ only):"
    echo
    echo '```'
    echo "$OURS_CMD" | sed "s|$WORK|\$WORK|g; s|$ROOT/||g"
    echo "$REF_CMD" | sed "s|$WORK|\$WORK|g"
    echo '```'
    echo
    echo "## Ratio table (qnetd / corosync-qnetd; below 1 is better for times, CPU and memory)"
    echo
    if [ ${#OURS_JSON[@]} -gt 0 ]; then
        "$QB" ratio --ours "${OURS_JSON[@]}" --reference "${REF_JSON[@]}"
    else
        echo "(no workload completed on both servers)"
    fi
    echo
    echo "## Reports"
    for w in $WORKLOADS; do
        for who in ours ref; do
            [ -s "$OUT/$who-$w.txt" ] || continue
            echo
            echo '```'
            cat "$OUT/$who-$w.txt"
            echo '```'
        done
    done
} >"$OUT/results.md"
echo
echo "results: $OUT/results.md"
