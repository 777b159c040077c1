#!/bin/bash
# nss-certs.sh: prove that the certificates made by `qnetd certs` work with
# the stock node-side tools (corosync-qdevice-net-certutil, NSS certutil and
# pk12util) exactly as a cluster node uses them, and that an NSS TLS client
# with a node's database accepts the server certificate.
#
# Flow checked:
#   qnetd certs init
#   node A: certutil -i -c qnetd-cacert.crt ; -r -n CLUSTER
#   qnetd certs sign --csr qdevice-net-node.crq --cluster CLUSTER
#   node A: -M -c cluster-CLUSTER.crt        (writes qdevice-net-node.p12)
#   node B: -i ; -m -c A's qdevice-net-node.p12
#   qnetd certs client --cluster CLUSTER2 ; node C: -i ; -m -c its p12
#   certutil -V -u C (client) on every node db, -u V (server) for
#   qnetd-server.pem, a foreign CA's client cert refused, and a TLS 1.3
#   handshake selfserv (server cert, client cert required) <-> tstclnt
#   (node A's db, expecting "Qnetd Server").
#
# The corosync script hard-codes /etc/corosync/qdevice/net/nssdb, so each
# node runs in a private mount namespace with a scratch directory bind
# mounted over /etc/corosync. Needs root. Nothing outside a temporary
# directory is changed.
#
# Usage: tests/interop/nss-certs.sh
#   QNETD_BIN=path/to/qnetd (default target/release/qnetd, which must exist),
#   or QNETD_CERTS="path/to/qnetd certs" for a whole command line.
#   KEEP=1 keeps the scratch directory.
set -euo pipefail

PROG=$(basename "$0")
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
CLUSTER=nsscluster
CLUSTER2=ClientCluster
PASSED=0
FAILED=0

die() { echo "$PROG: FATAL: $*" >&2; exit 1; }
ok() { PASSED=$((PASSED + 1)); echo "ok:   $*"; }
bad() { FAILED=$((FAILED + 1)); echo "FAIL: $*"; }
check() { # description cmd...
    local what=$1; shift
    if "$@" >"$WORK/check.out" 2>&1; then ok "$what"; else bad "$what"; sed 's/^/      /' "$WORK/check.out"; fi
}
check_not() { # description cmd...   (the command must fail)
    local what=$1; shift
    if "$@" >"$WORK/check.out" 2>&1; then bad "$what"; sed 's/^/      /' "$WORK/check.out"; else ok "$what"; fi
}

for tool in certutil pk12util corosync-qdevice-net-certutil unshare mount openssl; do
    command -v "$tool" >/dev/null || die "$tool not found (install libnss3-tools, corosync-qdevice, openssl)"
done
[ "$(id -u)" = 0 ] || die "must run as root (unshare -m and bind mounts)"
[ -d /etc/corosync ] || die "/etc/corosync does not exist (is corosync installed?)"

WORK=$(mktemp -d /tmp/nss-certs.XXXXXX)
SRV_PID=
cleanup() {
    if [ -n "$SRV_PID" ]; then kill "$SRV_PID" 2>/dev/null || true; wait "$SRV_PID" 2>/dev/null || true; fi
    if [ "${KEEP:-0}" = 1 ]; then echo "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

# --- the qnetd certs command ------------------------------------------------
# QNETD_BIN (default: target/release/qnetd, built by the caller) or
# QNETD_CERTS (a whole command line) selects the binary; nothing is built here.
if [ -n "${QNETD_CERTS:-}" ]; then
    read -r -a QCMD <<<"$QNETD_CERTS"
else
    QBIN=${QNETD_BIN:-$ROOT/target/release/qnetd}
    [ -x "$QBIN" ] || die "$QBIN not found: run 'cargo build --release' first (or set QNETD_BIN)"
    QCMD=("$QBIN" certs)
fi
echo "using: ${QCMD[*]}"
qcerts() { "${QCMD[@]}" "$@"; }

# --- helpers -----------------------------------------------------------------
# on_node NAME cmd...: run cmd with $WORK/NAME mounted over /etc/corosync.
on_node() {
    local d="$WORK/$1"; shift
    mkdir -p "$d"
    unshare -m --propagation private /bin/bash -c \
        'd=$1; shift; mount --bind "$d" /etc/corosync || exit 121; exec "$@"' on-node "$d" "$@"
}
nodedb() { echo "$WORK/$1/qdevice/net/nssdb"; }
# subject of an NSS db's certificate, via openssl
nss_subject() { certutil -L -d "$1" -n "$2" -a | openssl x509 -noout -subject -nameopt RFC2253; }
nss_trust() { certutil -L -d "$1" | awk -v n="$2" '{t=$NF; $NF=""; sub(/ +$/,""); if ($0==n) print t}'; }

# --- qnetd side ----------------------------------------------------------------
echo "== qnetd certs init"
qcerts init --dir "$WORK/tls" >"$WORK/init.out" || { cat "$WORK/init.out"; die "init failed"; }
check "init wrote the five files" test -s "$WORK/tls/qnetd-ca.pem" -a -s "$WORK/tls/qnetd-ca-key.pem" \
    -a -s "$WORK/tls/qnetd-server.pem" -a -s "$WORK/tls/qnetd-server-key.pem" -a -s "$WORK/tls/qnetd-cacert.crt"
check "CA key is 0600" test "$(stat -c %a "$WORK/tls/qnetd-ca-key.pem")" = 600
check_not "second init refuses" qcerts init --dir "$WORK/tls"

# --- node A: stock CSR flow ------------------------------------------------------
echo "== node A: stock flow (-i, -r, qnetd certs sign, -M)"
check "A: corosync-qdevice-net-certutil -i -c qnetd-cacert.crt" \
    on_node A corosync-qdevice-net-certutil -i -c "$WORK/tls/qnetd-cacert.crt"
check "A: CA imported as 'QNet CA' with trust CT,c,c" test "$(nss_trust "$(nodedb A)" "QNet CA")" = "CT,c,c"
check "A: corosync-qdevice-net-certutil -r -n $CLUSTER" on_node A corosync-qdevice-net-certutil -r -n "$CLUSTER"
CRQ="$(nodedb A)/qdevice-net-node.crq"
check "A: CSR written" test -s "$CRQ"
check_not "sign refuses a CSR for another cluster name" \
    qcerts sign --dir "$WORK/tls" --csr "$CRQ" --cluster other --out "$WORK/other.crt"
mkdir -p "$WORK/xfer"
check "qnetd certs sign (default output in the current directory)" \
    bash -c 'cd "$1" && shift && "$@"' sign "$WORK/xfer" "${QCMD[@]}" sign --dir "$WORK/tls" --csr "$CRQ" --cluster "$CLUSTER"
CRT="$WORK/xfer/cluster-$CLUSTER.crt"
check "cluster-$CLUSTER.crt is DER" openssl x509 -inform DER -in "$CRT" -noout
check "A: corosync-qdevice-net-certutil -M -c cluster-$CLUSTER.crt" \
    on_node A corosync-qdevice-net-certutil -M -c "$CRT"
P12A="$(nodedb A)/qdevice-net-node.p12"
check "A: qdevice-net-node.p12 exported" test -s "$P12A"

# --- node B: import A's p12 ------------------------------------------------------
echo "== node B: -i, -m with node A's p12"
check "B: -i -c qnetd-cacert.crt" on_node B corosync-qdevice-net-certutil -i -c "$WORK/tls/qnetd-cacert.crt"
check "B: -m -c qdevice-net-node.p12 (from A)" on_node B corosync-qdevice-net-certutil -m -c "$P12A"

# --- node C: qnetd certs client bundle -------------------------------------------
echo "== node C: qnetd certs client, -i, -m"
check "qnetd certs client --cluster $CLUSTER2" qcerts client --dir "$WORK/tls" --cluster "$CLUSTER2" --out "$WORK/client"
check "client p12 is 0600" test "$(stat -c %a "$WORK/client/qdevice-net-node.p12")" = 600
check "C: -i -c qnetd-cacert.crt (from client output)" \
    on_node C corosync-qdevice-net-certutil -i -c "$WORK/client/qnetd-cacert.crt"
check "C: -m -c qdevice-net-node.p12 (qnetd certs client)" \
    on_node C corosync-qdevice-net-certutil -m -c "$WORK/client/qdevice-net-node.p12"
check "openssl reads the client p12 with an empty password" \
    openssl pkcs12 -in "$WORK/client/qdevice-net-node.p12" -passin pass: -noout

# --- what NSS sees on the nodes ---------------------------------------------------
echo "== NSS view of the node databases"
for n in A B C; do
    db=$(nodedb "$n")
    want=$CLUSTER; [ "$n" = C ] && want=$CLUSTER2
    check "$n: 'Cluster Cert' present with trust u,u,u" test "$(nss_trust "$db" "Cluster Cert")" = "u,u,u"
    check "$n: 'Cluster Cert' subject is CN=$want" test "$(nss_subject "$db" "Cluster Cert")" = "subject=CN=$want"
    check "$n: private key of 'Cluster Cert' present" bash -c "certutil -K -d '$db' -f '$db/pwdfile.txt' | grep -q 'Cluster Cert'"
    check "$n: certutil -V -u C (SSL client) 'Cluster Cert'" certutil -V -d "$db" -n "Cluster Cert" -u C
done

echo "== server certificate as a node's NSS sees it"
SDB="$WORK/scratchdb"
mkdir -p "$SDB"
certutil -N -d "$SDB" --empty-password
certutil -A -d "$SDB" -t "CT,c,c" -n "QNet CA" -i "$WORK/tls/qnetd-cacert.crt"
certutil -A -d "$SDB" -t ",," -n "Qnetd Server" -i "$WORK/tls/qnetd-server.pem"
check "certutil -V -u V (SSL server) qnetd-server.pem" certutil -V -d "$SDB" -n "Qnetd Server" -u V
check_not "server cert is NOT valid as SSL client (EKU serverAuth only)" certutil -V -d "$SDB" -n "Qnetd Server" -u C

echo "== a foreign CA's client certificate is refused"
qcerts init --dir "$WORK/tls-other" >/dev/null
qcerts client --dir "$WORK/tls-other" --cluster "$CLUSTER" --out "$WORK/client-other" >/dev/null
certutil -A -d "$SDB" -t ",," -n "Foreign" -i "$WORK/client-other/cluster-$CLUSTER.crt"
check_not "certutil -V -u C of a foreign CA's certificate fails" certutil -V -d "$SDB" -n "Foreign" -u C

# --- optional: a real NSS TLS handshake ------------------------------------------
if command -v selfserv >/dev/null && command -v tstclnt >/dev/null; then
    echo "== NSS TLS handshake: selfserv (qnetd server cert, client cert required) <- tstclnt (node A db)"
    SRVDB="$WORK/srvdb"
    mkdir -p "$SRVDB"
    certutil -N -d "$SRVDB" --empty-password
    # As on the reference server: CA trusted for client auth (T).
    certutil -A -d "$SRVDB" -t "CT,," -n "QNet CA" -i "$WORK/tls/qnetd-ca.pem"
    openssl pkcs12 -export -in "$WORK/tls/qnetd-server.pem" -inkey "$WORK/tls/qnetd-server-key.pem" \
        -name "QNetd Cert" -passout pass: -out "$WORK/server.p12"
    pk12util -i "$WORK/server.p12" -d "$SRVDB" -W "" >/dev/null
    PORT=$(( (RANDOM % 20000) + 30000 ))
    selfserv -d "$SRVDB" -n "QNetd Cert" -p "$PORT" -r -r -V tls1.2:tls1.3 >"$WORK/selfserv.log" 2>&1 &
    SRV_PID=$!
    for _ in $(seq 50); do
        (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
        sleep 0.1
    done
    # -a sets the name the server certificate is checked against, as
    # corosync-qdevice does with "Qnetd Server".
    tstclnt_run() { # dbdir nickname expected-name
        echo "GET / HTTP/1.0" | timeout 20 tstclnt -h 127.0.0.1 -p "$PORT" -d "$1" -n "$2" -a "$3" \
            -V tls1.2:tls1.3 -C -Q 2>&1
    }
    if tstclnt_run "$(nodedb A)" "Cluster Cert" "Qnetd Server" >"$WORK/tstclnt.out" 2>&1 &&
        ! grep -qi "error\|failure" "$WORK/tstclnt.out"; then
        ok "TLS handshake with node A's db, server name 'Qnetd Server', client cert sent"
        grep -i "TLS\|cipher\|subject" "$WORK/tstclnt.out" | head -5 | sed 's/^/      /'
    else
        bad "TLS handshake with node A's db"; sed 's/^/      /' "$WORK/tstclnt.out" | head -20
    fi
    if tstclnt_run "$(nodedb A)" "Cluster Cert" "Wrong Name" >"$WORK/tstclnt2.out" 2>&1 &&
        ! grep -qi "error\|failure" "$WORK/tstclnt2.out"; then
        bad "handshake expecting a wrong server name was accepted"
    else
        ok "handshake expecting a wrong server name is refused"
    fi
    kill "$SRV_PID" 2>/dev/null || true; wait "$SRV_PID" 2>/dev/null || true; SRV_PID=
else
    echo "(selfserv/tstclnt not found: TLS handshake check skipped)"
fi

echo
echo "nss-certs: $PASSED passed, $FAILED failed"
[ "$FAILED" = 0 ]
