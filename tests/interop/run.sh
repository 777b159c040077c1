#!/bin/bash
#
# Interop test suite: real corosync + corosync-qdevice nodes (network
# namespaces, /work/shared/interop/cluster) against the reference
# corosync-qnetd and/or our qnetd. See tests/interop/README.md.
#
# usage: tests/interop/run.sh [--server ours|ref|both] [--qnetd-bin PATH] [scenario ...]
#
# This script never builds anything: build target/release/qnetd first.
#
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
PROG=tests/interop/run.sh

# shellcheck source=tests/interop/lib.sh
. "$HERE/lib.sh"
# shellcheck source=tests/interop/scenarios.sh
. "$HERE/scenarios.sh"

# ---------------------------------------------------------------------------
# settings (environment)
# ---------------------------------------------------------------------------
INTEROP_DIR=${INTEROP_DIR:-$REPO/../shared/interop}
INTEROP_TOKEN=${INTEROP_TOKEN-1000}            # corosync totem token, ms ("" = harness default 3000)
WAIT_TIMEOUT=${WAIT_TIMEOUT:-60}                # default bound of every wait, s
SCENARIO_TIMEOUT=${SCENARIO_TIMEOUT:-300}       # watchdog for one scenario run, s
SERVER_START_TIMEOUT=${SERVER_START_TIMEOUT:-15}
QNETD_DEBUG=${QNETD_DEBUG:-1}                   # start our server with -d
KEEP_WORK=${KEEP_WORK:-0}                       # 1 = keep the work dir (all runs' state and logs)
export CLUSTER_PREFIX=${CLUSTER_PREFIX:-qit}    # netns qit-n1.., bridge qit-br0, nft table qit_interop
export CLUSTER_NET=${CLUSTER_NET:-10.78.0}

usage() {
    cat <<EOF
usage: $PROG [--server ours|ref|both] [--qnetd-bin PATH] [scenario ...]

Runs each scenario against the reference corosync-qnetd (ref) and/or our
server (ours), each run with a fresh server on 127.0.0.1:<free port> and a
fresh cluster of real corosync + corosync-qdevice nodes.

options:
  --server ours|ref|both   which server(s) to test (default: both; ref first)
  --qnetd-bin PATH         our binary (default: \$REPO/target/release/qnetd;
                           this script does not build it)
  --list                   print the scenario names only
  -h, --help               this help

scenarios (default: all, in this order):
EOF
    local s
    for s in "${SCENARIOS[@]}"; do
        printf '  %-20s %s\n' "$s" "${SC_DESC[$s]}"
    done
    cat <<EOF

environment:
  INTEROP_DIR           harness dir with 'cluster' and 'qnetd-ref' (default \$REPO/../shared/interop)
  ARTIFACTS_DIR         where logs of failed runs are kept (default: <work dir>/artifacts)
  INTEROP_TOKEN         corosync totem token in ms (default 1000; empty = corosync default)
  WAIT_TIMEOUT          bound of each wait in s (default 60)
  SCENARIO_TIMEOUT      watchdog per scenario run in s (default 300)
  SERVER_START_TIMEOUT  bound for a server to accept TCP in s (default 15)
  QNETD_DEBUG           1 (default) = start our server with -d
  CLUSTER_PREFIX, CLUSTER_NET   passed to 'cluster' (default qit, 10.78.0)
  KEEP_WORK             1 = keep the work dir with every run's state and logs
EOF
}

die_usage() { echo "$PROG: $*" >&2; echo "try '$PROG --help'" >&2; exit 2; }

SERVER_SEL=both
QNETD_BIN=""
SELECTED=()
while [ $# -gt 0 ]; do
    case "$1" in
        --server) [ $# -ge 2 ] || die_usage "--server needs a value"; SERVER_SEL=$2; shift;;
        --server=*) SERVER_SEL=${1#*=};;
        --qnetd-bin) [ $# -ge 2 ] || die_usage "--qnetd-bin needs a value"; QNETD_BIN=$2; shift;;
        --qnetd-bin=*) QNETD_BIN=${1#*=};;
        --list) printf '%s\n' "${SCENARIOS[@]}"; exit 0;;
        -h|--help) usage; exit 0;;
        -*) die_usage "unknown option '$1'";;
        *)
            [ -n "${SC_FUNC[$1]:-}" ] || die_usage "unknown scenario '$1' (known: ${SCENARIOS[*]})"
            SELECTED+=("$1");;
    esac
    shift
done
case "$SERVER_SEL" in
    ref) SERVERS=(ref);;
    ours) SERVERS=(ours);;
    both) SERVERS=(ref ours);;
    *) die_usage "--server must be ours, ref or both (got '$SERVER_SEL')";;
esac
[ ${#SELECTED[@]} -gt 0 ] || SELECTED=("${SCENARIOS[@]}")
QNETD_BIN=${QNETD_BIN:-$REPO/target/release/qnetd}
case "$QNETD_BIN" in /*) ;; *) QNETD_BIN=$PWD/$QNETD_BIN;; esac

# ---------------------------------------------------------------------------
# prerequisites: missing anything is a failure, never a skip
# ---------------------------------------------------------------------------
check_prereqs() {
    local problems=() pkgs=() c pkg
    if [ "$(id -u)" != 0 ]; then
        problems+=("not running as root (needs network namespaces, bind mounts, nft): run it as root, e.g. 'sudo $PROG ...'")
    fi
    # command -> Debian package
    local -A pkg_of=(
        [corosync]=corosync [corosync-quorumtool]=corosync [corosync-qdevice]=corosync-qdevice
        [corosync-qdevice-tool]=corosync-qdevice [corosync-qnetd]=corosync-qnetd
        [corosync-qnetd-tool]=corosync-qnetd [nft]=nftables [ip]=iproute2 [ss]=iproute2
        [unshare]=util-linux [setsid]=util-linux [jq]=jq [timeout]=coreutils
    )
    for c in corosync corosync-quorumtool corosync-qdevice corosync-qdevice-tool corosync-qnetd \
             corosync-qnetd-tool nft ip ss unshare setsid jq timeout; do
        if ! PATH="$PATH:/usr/sbin:/sbin" command -v "$c" >/dev/null 2>&1; then
            pkg=${pkg_of[$c]}
            problems+=("command '$c' not found (Debian package '$pkg')")
            [[ " ${pkgs[*]:-} " == *" $pkg "* ]] || pkgs+=("$pkg")
        fi
    done
    if [ ! -x "$INTEROP_DIR/cluster" ] || [ ! -x "$INTEROP_DIR/qnetd-ref" ]; then
        problems+=("interop harness not found: '$INTEROP_DIR' must contain the executable scripts 'cluster' and 'qnetd-ref' (set INTEROP_DIR=/path/to/shared/interop)")
    fi
    local s
    for s in "${SERVERS[@]}"; do
        if [ "$s" = ours ] && [ ! -x "$QNETD_BIN" ]; then
            problems+=("our server binary '$QNETD_BIN' does not exist or is not executable: build it with 'cargo build --release' in $REPO (this script does not build), or pass --qnetd-bin PATH, or use --server ref")
        fi
    done
    if [ ${#problems[@]} -gt 0 ]; then
        echo "$PROG: prerequisites missing:" >&2
        local p
        for p in "${problems[@]}"; do echo "  - $p" >&2; done
        if [ ${#pkgs[@]} -gt 0 ]; then
            echo "install with: apt-get update && apt-get install -y ${pkgs[*]}" >&2
            echo "(all of them: apt-get install -y corosync corosync-qdevice corosync-qnetd nftables libnss3-tools jq iproute2 util-linux)" >&2
        fi
        exit 1
    fi
    PATH="$PATH:/usr/sbin:/sbin"
    INTEROP_DIR=$(cd "$INTEROP_DIR" && pwd)
    CLUSTER=$INTEROP_DIR/cluster
    QNETD_REF=$INTEROP_DIR/qnetd-ref
}
check_prereqs

WORK=$(mktemp -d /tmp/qnetd-interop.XXXXXX)
chmod 0755 "$WORK"
ARTIFACTS_DIR=${ARTIFACTS_DIR:-$WORK/artifacts}
case "$ARTIFACTS_DIR" in /*) ;; *) ARTIFACTS_DIR=$PWD/$ARTIFACTS_DIR;; esac

# ---------------------------------------------------------------------------
# server start / stop
# ---------------------------------------------------------------------------
# current run (for the cleanup trap)
CUR_NAME=""; CUR_DIR=""; CUR_CLUSTER=0; CUR_SC_PID=""; CUR_WD_PID=""; CUR_TAIL_PID=""
SERVER_KIND=""; SERVER_PID=""; SERVER_LOG=""; SERVER_SOCK=""; QNETD_ADDR=""

pick_port() {
    local p i
    for i in $(seq 1 100); do
        p=$((20000 + RANDOM % 40000))
        if [ -z "$(ss -Htan "( sport = :$p )" 2>/dev/null)" ]; then
            echo "$p"; return 0
        fi
    done
    return 1
}

proc_alive() { # pid: running (not a zombie, not gone)
    # One read of the status file decides: a process that is reaped between
    # two checks must count as gone, not alive.
    local st
    [ -n "$1" ] || return 1
    st=$(awk '/^State:/{print $2}' "/proc/$1/status" 2>/dev/null) || return 1
    [ -n "$st" ] && [ "$st" != Z ] && [ "$st" != X ]
}

wait_tcp() { # port pid timeout -> 0 when the port accepts TCP
    local port=$1 pid=$2 timeout=$3 start=$SECONDS
    while :; do
        proc_alive "$pid" || { say "server process $pid exited before accepting TCP"; return 1; }
        if timeout 2 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1"' tcp-probe "$port" 2>/dev/null; then
            return 0
        fi
        [ $((SECONDS - start)) -ge "$timeout" ] && { say "port $port not accepting TCP after ${timeout}s"; return 1; }
        sleep 0.2
    done
}

# The cluster name the scenarios use (cluster's default).
INTEROP_CLUSTER_NAME=interop

start_server() { # kind tls
    local kind=$1 tls=$2 port
    SERVER_CERTS=
    port=$(pick_port) || { say "no free port found"; return 1; }
    SERVER_KIND=$kind
    QNETD_ADDR=127.0.0.1:$port
    case "$kind" in
        ref)
            export QNETD_REF_DIR=$CUR_DIR/state/qnetd-ref
            SERVER_LOG=$QNETD_REF_DIR/qnetd.log
            SERVER_SOCK=$QNETD_REF_DIR/run/corosync-qnetd.sock
            local ref_tls=$tls
            if [ "$tls" = required ]; then
                # Harness defect: qnetd-ref passes `-s required`, which
                # corosync-qnetd refuses (it wants `req`), and qnetd-ref
                # itself refuses `req`. Run the reference with TLS offered;
                # the nodes still require TLS, so the session is the same.
                ref_tls=on
                say "note: qnetd-ref cannot start corosync-qnetd with -s req (it passes 'required'); using --tls on for the reference"
            fi
            REF_TLS=$ref_tls
            say "starting reference corosync-qnetd on $QNETD_ADDR (tls $ref_tls, state $QNETD_REF_DIR)"
            local rc=0
            "$QNETD_REF" start --listen 127.0.0.1 --port "$port" --tls "$ref_tls" 2>&1 | sed 's/^/    | /' || rc=$?
            local pid st
            if [ -s "$QNETD_REF_DIR/qnetd.pidinfo" ]; then
                read -r pid st < "$QNETD_REF_DIR/qnetd.pidinfo" || true
                SERVER_PID=$pid
            fi
            [ "$rc" -eq 0 ] && [ -n "$SERVER_PID" ] || { say "qnetd-ref start failed (rc=$rc)"; return 1; }
            ;;
        ours)
            local d=$CUR_DIR/state/ours
            mkdir -p "$d"
            SERVER_LOG=$d/qnetd.log
            SERVER_SOCK=$d/qnetd.sock
            local settings="lock_file=$d/qnetd.pid,local_socket_file=$SERVER_SOCK,metrics_listen=off,state_dir=$d/state"
            SERVER_CERTS=
            if [ "$tls" != off ]; then
                # Certificates made only by our own tooling: the server's CA
                # and certificate, and the cluster's bundle for the nodes,
                # which `cluster up --certs` imports with the stock
                # corosync-qdevice-net-certutil -i / -m.
                "$QNETD_BIN" certs init --dir "$d/tls" 2>&1 | sed 's/^/    | /' ||
                    { say "qnetd certs init failed"; return 1; }
                "$QNETD_BIN" certs client --dir "$d/tls" --cluster "$INTEROP_CLUSTER_NAME" \
                    --out "$d/node-certs" 2>&1 | sed 's/^/    | /' ||
                    { say "qnetd certs client failed"; return 1; }
                SERVER_CERTS=$d/node-certs
                settings+=",tls_dir=$d/tls"
            fi
            local args=(serve -f -s "$tls" -l 127.0.0.1 -p "$port" -S "$settings")
            [ "$QNETD_DEBUG" = 1 ] && args+=(-d)
            OUR_ARGS=("${args[@]}")
            say "starting our qnetd: $QNETD_BIN ${args[*]} (log $SERVER_LOG)"
            "$QNETD_BIN" "${args[@]}" < /dev/null >> "$SERVER_LOG" 2>&1 &
            SERVER_PID=$!
            ;;
    esac
    if ! wait_tcp "$port" "$SERVER_PID" "$SERVER_START_TIMEOUT"; then
        return 1
    fi
    say "server $kind pid $SERVER_PID accepts TCP on $QNETD_ADDR"
}

# restart_server: called from a scenario (a subshell of this script): stops
# the server under test and starts it again on the same port with the same
# settings and state directory. The new PID goes to $CUR_DIR/server.pid,
# which stop_server prefers.
restart_server() {
    local port=${QNETD_ADDR##*:} i pid st
    say "restarting the $SERVER_KIND server on $QNETD_ADDR"
    case "$SERVER_KIND" in
        ref)
            timeout 30 "$QNETD_REF" stop 2>&1 | sed 's/^/    | /' || true
            timeout 60 "$QNETD_REF" start --listen 127.0.0.1 --port "$port" --tls "$REF_TLS" 2>&1 | sed 's/^/    | /' ||
                { say "qnetd-ref start failed"; return 1; }
            read -r pid st < "$QNETD_REF_DIR/qnetd.pidinfo" || { say "no pid from qnetd-ref"; return 1; }
            ;;
        ours)
            kill -TERM "$SERVER_PID" 2>/dev/null || true
            for i in $(seq 1 100); do
                proc_alive "$SERVER_PID" || break
                sleep 0.1
            done
            proc_alive "$SERVER_PID" && { say "our qnetd pid $SERVER_PID did not stop within 10s"; return 1; }
            "$QNETD_BIN" "${OUR_ARGS[@]}" < /dev/null >> "$SERVER_LOG" 2>&1 &
            pid=$!
            ;;
    esac
    SERVER_PID=$pid
    echo "$pid" > "$CUR_DIR/server.pid"
    wait_tcp "$port" "$SERVER_PID" "$SERVER_START_TIMEOUT" || return 1
    say "server $SERVER_KIND restarted: pid $SERVER_PID accepts TCP on $QNETD_ADDR"
}

stop_server() {
    # A scenario that restarted the server left the new PID here.
    if [ -n "$CUR_DIR" ] && [ -s "$CUR_DIR/server.pid" ]; then
        SERVER_PID=$(cat "$CUR_DIR/server.pid")
        rm -f "$CUR_DIR/server.pid"
    fi
    [ -n "$SERVER_PID" ] || return 0
    local i rc=0
    case "$SERVER_KIND" in
        ref)
            # qnetd-ref stops exactly the PID it recorded when it started it
            timeout 30 "$QNETD_REF" stop 2>&1 | sed 's/^/    | /' || true
            if proc_alive "$SERVER_PID"; then
                say "reference qnetd pid $SERVER_PID still alive, SIGKILL"
                kill -KILL "$SERVER_PID" 2>/dev/null || true
            fi
            ;;
        ours)
            if proc_alive "$SERVER_PID"; then
                kill -TERM "$SERVER_PID" 2>/dev/null || true
                for i in $(seq 1 100); do
                    proc_alive "$SERVER_PID" || break
                    sleep 0.1
                done
                if proc_alive "$SERVER_PID"; then
                    say "our qnetd pid $SERVER_PID did not stop within 10s of SIGTERM, SIGKILL"
                    kill -KILL "$SERVER_PID" 2>/dev/null || true
                fi
                wait "$SERVER_PID" 2>/dev/null || rc=$?
                say "our qnetd pid $SERVER_PID stopped (exit status $rc)"
            else
                wait "$SERVER_PID" 2>/dev/null || rc=$?
                say "our qnetd pid $SERVER_PID had already exited (exit status $rc)"
            fi
            ;;
    esac
    SERVER_PID=""
}

# ---------------------------------------------------------------------------
# one scenario run, cleanup, artifacts
# ---------------------------------------------------------------------------
kill_scenario() {
    if [ -n "$CUR_SC_PID" ] && proc_alive "$CUR_SC_PID"; then
        local c
        for c in $(ps -o pid= --ppid "$CUR_SC_PID" 2>/dev/null); do kill -TERM "$c" 2>/dev/null || true; done
        kill -TERM "$CUR_SC_PID" 2>/dev/null || true
        wait "$CUR_SC_PID" 2>/dev/null || true
    fi
    CUR_SC_PID=""
    if [ -n "$CUR_TAIL_PID" ]; then
        kill -TERM "$CUR_TAIL_PID" 2>/dev/null || true
        wait "$CUR_TAIL_PID" 2>/dev/null || true
        CUR_TAIL_PID=""
    fi
    if [ -n "$CUR_WD_PID" ]; then
        kill -TERM "$CUR_WD_PID" 2>/dev/null || true
        wait "$CUR_WD_PID" 2>/dev/null || true
        CUR_WD_PID=""
    fi
}

print_tail() { # file lines label
    [ -s "$1" ] || return 0
    echo "---- $3 (last $2 lines of $1)"
    tail -n "$2" "$1" | sed 's/^/    /'
}

cleanup_current() { # failed(0|1)
    [ -n "$CUR_DIR" ] || return 0
    local failed=$1 art=""
    kill_scenario
    if [ "$failed" = 1 ]; then
        art=$ARTIFACTS_DIR/$CUR_NAME
        mkdir -p "$art"
    fi
    if [ "$CUR_CLUSTER" = 1 ]; then
        if [ -n "$art" ]; then
            timeout 60 "$CLUSTER" status > "$art/cluster-status-at-failure.txt" 2>&1 || true
            timeout 120 "$CLUSTER" down --keep-logs "$art/cluster" 2>&1 | sed 's/^/    | /' || true
        else
            timeout 120 "$CLUSTER" down 2>&1 | sed 's/^/    | /' || true
        fi
        CUR_CLUSTER=0
    fi
    stop_server
    if [ -n "$art" ]; then
        cp -p "$CUR_DIR/scenario.log" "$art/" 2>/dev/null || true
        [ -n "$SERVER_LOG" ] && cp -p "$SERVER_LOG" "$art/server-$SERVER_KIND.log" 2>/dev/null || true
        cp -p "$CUR_DIR"/status.jsonl "$CUR_DIR"/observe.*.out "$art/" 2>/dev/null || true
        echo "==== FAILED $CUR_NAME: artifacts in $art"
        print_tail "$art/server-$SERVER_KIND.log" 60 "server log ($SERVER_KIND)"
        local n
        for n in "$art"/cluster/n*; do
            [ -d "$n" ] || continue
            print_tail "$n/qdevice.log" 40 "$(basename "$n") qdevice log"
            print_tail "$n/corosync.log" 15 "$(basename "$n") corosync log"
        done
    fi
    CUR_DIR=""
}

on_exit() {
    local rc=$?
    trap - EXIT INT TERM
    if [ -n "$CUR_DIR" ]; then
        echo "$PROG: interrupted; cleaning up $CUR_NAME"
        cleanup_current 1 || true
    fi
    if [ "$rc" -eq 0 ] && [ "$KEEP_WORK" != 1 ] && [ "${FAILED:-0}" -eq 0 ]; then
        rm -rf "$WORK"
    fi
    exit "$rc"
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

PASSED=0; FAILED=0; RESULTS=()

run_one() { # server scenario
    local server=$1 sc=$2 start=$SECONDS ok=1
    CUR_NAME=$server-$sc
    CUR_DIR=$WORK/$CUR_NAME
    mkdir -p "$CUR_DIR/state"
    export INTEROP_STATE_DIR=$CUR_DIR/state
    export CLUSTER_STATE_DIR=$CUR_DIR/state/cluster
    export QNETD_REF_DIR=$CUR_DIR/state/qnetd-ref
    SC_DIR=$CUR_DIR
    SC_FAILS=$CUR_DIR/failures
    SERVER_KIND=$server; SERVER_PID=""; SERVER_LOG=""; SERVER_SOCK=""; QNETD_ADDR=""
    STATUS_JSON=""; OBSERVE_OUT=""
    : > "$SC_FAILS"
    echo
    echo "======== $sc against $server ========"
    if ! start_server "$server" "${SC_TLS[$sc]}"; then
        echo "  FAIL: server $server did not start"
        echo "server $server did not start" >> "$SC_FAILS"
        ok=0
    else
        CUR_CLUSTER=1
        local log=$CUR_DIR/scenario.log
        : > "$log"
        (
            trap - EXIT INT TERM
            set -e
            "${SC_FUNC[$sc]}"
        ) >> "$log" 2>&1 < /dev/null &
        CUR_SC_PID=$!
        (
            trap - EXIT INT TERM
            for ((i = 0; i < SCENARIO_TIMEOUT; i++)); do
                sleep 1
                kill -0 "$CUR_SC_PID" 2>/dev/null || exit 0
            done
            echo "  FAIL: watchdog: scenario still running after ${SCENARIO_TIMEOUT}s, killing it" >> "$log"
            echo "watchdog timeout" >> "$SC_FAILS"
            for c in $(ps -o pid= --ppid "$CUR_SC_PID" 2>/dev/null); do kill -TERM "$c" 2>/dev/null || true; done
            kill -TERM "$CUR_SC_PID" 2>/dev/null || true
        ) &
        CUR_WD_PID=$!
        # show the scenario output live; tail ends once the scenario has
        # exited. It runs in the background so that `wait` (unlike a
        # foreground child) lets the INT/TERM traps run at once.
        tail -n +1 -s 0.2 -F --pid="$CUR_SC_PID" "$log" 2>/dev/null &
        CUR_TAIL_PID=$!
        wait "$CUR_TAIL_PID" || true
        CUR_TAIL_PID=""
        local rc=0
        wait "$CUR_SC_PID" || rc=$?
        CUR_SC_PID=""
        if [ "$rc" -ne 0 ]; then
            ok=0
            [ -s "$SC_FAILS" ] || echo "scenario exited $rc" >> "$SC_FAILS"
            echo "  scenario aborted (exit status $rc)"
        fi
        [ -s "$SC_FAILS" ] && ok=0
    fi
    local nfail; nfail=$(wc -l < "$SC_FAILS")
    cleanup_current $((1 - ok))
    local dur=$((SECONDS - start))
    if [ "$ok" = 1 ]; then
        PASSED=$((PASSED + 1))
        RESULTS+=("PASS  $server  $sc  (${dur}s)")
        echo "==== PASS $sc against $server (${dur}s)"
        [ "$KEEP_WORK" = 1 ] || rm -rf "${WORK:?}/$server-$sc"
    else
        FAILED=$((FAILED + 1))
        RESULTS+=("FAIL  $server  $sc  (${dur}s, $nfail failed checks)")
        echo "==== FAIL $sc against $server (${dur}s, $nfail failed checks)"
    fi
}

echo "interop suite: servers: ${SERVERS[*]}; scenarios: ${SELECTED[*]}"
echo "harness: $INTEROP_DIR; work dir: $WORK; token: ${INTEROP_TOKEN:-default} ms"
[ " ${SERVERS[*]} " = " ref " ] || echo "our server: $QNETD_BIN"
T0=$SECONDS
for server in "${SERVERS[@]}"; do
    for sc in "${SELECTED[@]}"; do
        run_one "$server" "$sc"
    done
done

echo
echo "======== results ($((SECONDS - T0))s) ========"
for r in "${RESULTS[@]}"; do echo "  $r"; done
[ "$FAILED" -gt 0 ] && echo "artifacts of failed runs: $ARTIFACTS_DIR"
echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
