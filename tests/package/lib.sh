# lib.sh: helpers for the scenarios of tests/package, sourced INSIDE the
# throw-away test root (a snapshot of a Debian 12 root with its own mount,
# PID, network, UTS and IPC namespaces; see run.sh). Nothing here may run
# on a real host: it replaces systemctl and listens on /dev/log.
#
# The repository's files are at /qnetd-test (read-only): the package
# /qnetd-test/deb/qnetd.deb, the interop harness /qnetd-test/interop, this
# folder /qnetd-test/repo/tests/package.

set -uo pipefail

T=/qnetd-test
PKG_DIR=$T/repo/tests/package
DEB=$T/deb/qnetd.deb
STOCK_DEB=$(ls /opt/qnetd-test-debs/corosync-qnetd_*.deb 2>/dev/null | head -1)
NSSDB=/etc/corosync/qnetd/nssdb
SCENARIO=${SCENARIO:-$(basename "$0" .sh)}
PASSED=0
FAILED=0
T0=$EPOCHREALTIME

# The interop harness, with names and addresses of this test only (its
# network namespaces live inside the test root's namespace anyway).
export CLUSTER_PREFIX=pk CLUSTER_NET=10.79.0
export INTEROP_STATE_DIR=/var/tmp/pk-interop
export CLUSTER_STATE_DIR=/var/tmp/pk-interop/cluster
cluster() { "$T/interop/cluster" "$@"; }

elapsed() { # seconds since the scenario started, "12.3"
    local now=$EPOCHREALTIME
    awk -v a="$T0" -v b="$now" 'BEGIN { printf "%.1f", b - a }'
}
say() { printf '\n[%s +%ss] == %s\n' "$SCENARIO" "$(elapsed)" "$*"; }
info() { printf '      %s\n' "$*"; }
ok() { PASSED=$((PASSED + 1)); printf 'ok:   %s\n' "$*"; }
bad() { FAILED=$((FAILED + 1)); printf 'FAIL: %s\n' "$*"; }
die() { printf 'FATAL [%s]: %s\n' "$SCENARIO" "$*"; finish; }

# check DESC CMD...: CMD must succeed; its output is shown on failure.
check() {
    local what=$1 out rc=0; shift
    out=$("$@" 2>&1) || rc=$?
    if [ "$rc" = 0 ]; then ok "$what"; else bad "$what (exit $rc)"; printf '%s\n' "$out" | sed 's/^/      | /' | tail -40; fi
    return "$rc"
}
# check_fails DESC CMD...: CMD must fail.
check_fails() {
    local what=$1 out rc=0; shift
    out=$("$@" 2>&1) || rc=$?
    if [ "$rc" != 0 ]; then ok "$what"; else bad "$what (succeeded)"; printf '%s\n' "$out" | sed 's/^/      | /' | tail -40; fi
    [ "$rc" != 0 ]
}
# check_eq DESC EXPECTED ACTUAL
check_eq() {
    if [ "$2" = "$3" ]; then ok "$1"; else bad "$1: expected '$2', got '$3'"; fi
    [ "$2" = "$3" ]
}
# run_logged DESC CMD...: run CMD, its output indented in the log; fail on error.
run_logged() {
    local what=$1 out rc=0; shift
    out=$("$@" 2>&1) || rc=$?
    [ -n "$out" ] && printf '%s\n' "$out" | sed 's/^/      | /'
    if [ "$rc" = 0 ]; then ok "$what"; else bad "$what (exit $rc)"; fi
    return "$rc"
}
# wait_until SECONDS CMD...: poll CMD every 0.2 s, at most SECONDS.
wait_until() {
    local limit=$1 start=$SECONDS; shift
    while ! "$@" >/dev/null 2>&1; do
        [ $((SECONDS - start)) -ge "$limit" ] && return 1
        sleep 0.2
    done
}

finish() {
    cluster down >/dev/null 2>&1 || true
    printf '\n[%s] %d passed, %d failed, %ss\n' "$SCENARIO" "$PASSED" "$FAILED" "$(elapsed)"
    [ "$FAILED" = 0 ] && [ "$PASSED" -gt 0 ] && exit 0
    exit 1
}

# The test root pretends to run systemd: the maintainer scripts and pcs call
# systemctl, which is the stand-in (tests/package/systemctl-standin); a
# syslog socket collects what the daemons log in daemon mode.
setup_root() {
    [ "$$" = 1 ] || die "not inside the test root (PID namespace); run tests/package/run.sh"
    install -m 0755 "$PKG_DIR/systemctl-standin" /usr/bin/systemctl
    echo "127.0.0.1 $(hostname)" >> /etc/hosts
    mkdir -p /run/systemd/system /var/log/standin
    python3 - <<'EOF' &
import os, socket
p = "/dev/log"
if os.path.exists(p):
    os.unlink(p)
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(p)
os.chmod(p, 0o666)
with open("/var/log/standin/syslog.log", "ab", buffering=0) as f:
    while True:
        f.write(s.recv(65536) + b"\n")
EOF
    wait_until 10 test -S /dev/log || die "the syslog catcher did not start"
}

# The main pid of a unit started by the stand-in.
unit_pid() { systemctl show -p MainPID "$1" | sed -n 's/^MainPID=//p'; }
# proc_field PID FIELD: user, comm of a process
proc_user() { ps -o user= -p "$1" 2>/dev/null | tr -d ' '; }
proc_comm() { cat "/proc/$1/comm" 2>/dev/null; }
# running (not a zombie, not gone); one read of the status file decides, so a
# process reaped between two checks counts as gone
alive() {
    local st
    [ -n "${1:-}" ] || return 1
    st=$(awk '/^State:/{print $2}' "/proc/$1/status" 2>/dev/null) || return 1
    [ -n "$st" ] && [ "$st" != Z ] && [ "$st" != X ]
}

# install_deb DESC: install the package (dpkg, as `apt-get install ./qnetd.deb`
# would once the dependencies are there; they are in the base root).
install_deb() {
    run_logged "$1" dpkg -i "$DEB"
}

ca_fingerprint() { openssl x509 -in "$NSSDB/qnetd-ca.pem" -noout -fingerprint -sha256 2>/dev/null | cut -d= -f2; }

# node_tls NAME CLUSTER OUTDIR: a cluster node's stock certificate steps
# (crmsh / pvecm), with a scratch /etc/corosync; leaves the signed
# certificate request flow's files in OUTDIR: qnetd-cacert.crt,
# qdevice-net-node.p12 (what the harness's --certs takes).
with_etc() { # DIR CMD...: CMD with DIR mounted over /etc/corosync
    local d=$1; shift
    unshare -m --propagation private bash -c 'mount --bind "$1" /etc/corosync && shift && exec "$@"' with-etc "$d" "$@"
}

# File list of the root (paths, type, mode, owner; not contents), minus
# what changes by itself. For "purge leaves nothing behind".
root_manifest() {
    find / -xdev \( -path /proc -o -path /sys -o -path /dev -o -path /run -o -path /tmp \
        -o -path /var/tmp -o -path /var/log -o -path /var/cache -o -path /var/lib/dpkg \
        -o -path /var/lib/apt -o -path /qnetd-test -o -path /opt/qnetd-test-debs \
        -o -path /var/lib/systemd/deb-systemd-helper-enabled -o -path /var/lib/systemd/deb-systemd-user-helper-enabled \
        -o -name '__pycache__' \) -prune -o -printf '%p %y %m %u %g\n' | sort
}

# cluster_tls_ack: every node of the harness cluster votes ACK over TLS with
# its client certificate sent (prints the brief status on failure).
cluster_tls_ack() {
    cluster status --json | python3 -c '
import json, sys
d = json.load(sys.stdin)
bad = [n["node"] for n in d["node_status"]
       if not (n.get("qdevice_vote") == "ACK" and n.get("tls_active") and n.get("client_cert_sent"))]
sys.exit(1 if bad or not d["node_status"] else 0)'
}
# check_cluster_tls_ack DESC SECONDS: wait for cluster_tls_ack.
check_cluster_tls_ack() {
    if wait_until "$2" cluster_tls_ack; then ok "$1"; else bad "$1"; cluster status --brief 2>&1 | sed 's/^/      | /'; fi
}
