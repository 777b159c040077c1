#!/bin/bash
#
# etcd-cluster.sh - a 3-member etcd (Debian etcd-server 3.4) for the HA
# tests, one network namespace per member on a bridge of its own, so that a
# member can be killed, paused or cut off like a host.
#
#   bridge ${P}-eb0 10.78.5.1/24 in the root namespace (the tests' side)
#   netns  ${P}-e1..3, eth0 10.78.5.11..13, client port 2379, peer port 2380
#
# Usage:
#   etcd-cluster.sh start [--tls] [--auth]   start all three, wait until healthy
#   etcd-cluster.sh stop                     stop our members, remove everything
#   etcd-cluster.sh status                   etcdctl endpoint status
#   etcd-cluster.sh endpoints                client URLs, comma-separated
#   etcd-cluster.sh env                      shell exports for the tests
#   etcd-cluster.sh leader                   number of the member that leads etcd
#   etcd-cluster.sh kill N | start-member N  kill -9 member N / start it again
#   etcd-cluster.sh pause N | resume N       SIGSTOP / SIGCONT member N
#   etcd-cluster.sh partition N | heal N     cut member N's link / restore it
#   etcd-cluster.sh wait-healthy [S]         wait until a quorum answers
#
# --tls: client URLs are https (CA, server and client certificates made
# with openssl in the state dir; etcd requires a client certificate).
# --auth: auth enabled, root user "root", test user "qnetd" (password
# "qnetd-pw") with readwrite on /qnetd/.
#
# Environment: HA_ETCD_PREFIX (hx), HA_ETCD_NET (10.78.5), HA_ETCD_DIR
# (/tmp/ha-etcd), HA_ETCD_HOSTBASE (10: members are NET.11-13),
# HA_ETCD_BRIDGE (an existing bridge to use instead of our own). Only processes recorded in the state dir are signalled.
set -u
set -o pipefail

P=${HA_ETCD_PREFIX:-hx}
NET=${HA_ETCD_NET:-10.78.5}
DIR=${HA_ETCD_DIR:-/tmp/ha-etcd}
# HA_ETCD_BRIDGE: attach the members to an existing bridge (created and
# removed by someone else, e.g. the interop harness) instead of our own
BR=${HA_ETCD_BRIDGE:-${P}-eb0}
OWN_BRIDGE=$([ -n "${HA_ETCD_BRIDGE:-}" ] && echo no || echo yes)
BASE_HOST=${HA_ETCD_HOSTBASE:-10}
N=3
PROG=$(basename "$0")

die() { echo "$PROG: error: $*" >&2; exit 1; }
info() { echo "$PROG: $*" >&2; }

ip_of() { echo "$NET.$((BASE_HOST + $1))"; }
ns_of() { echo "$P-e$1"; }
scheme() { [ -f "$DIR/tls" ] && echo https || echo http; }
url_of() { echo "$(scheme)://$(ip_of "$1"):2379"; }
endpoints() { local i out=""; for i in $(seq 1 $N); do out="$out${out:+,}$(url_of "$i")"; done; echo "$out"; }

need() {
    [ "$(id -u)" = 0 ] || die "must run as root (network namespaces)"
    command -v etcd >/dev/null && command -v etcdctl >/dev/null \
        || die "etcd is not installed: apt-get install etcd-server etcd-client"
}

ctl() { # etcdctl against every member, with TLS/auth as configured
    local args=(--endpoints "${CTL_EPS:-$(endpoints)}" --command-timeout=3s --dial-timeout=2s)
    if [ -f "$DIR/tls" ]; then
        args+=(--cacert "$DIR/pki/ca.pem" --cert "$DIR/pki/client.pem" --key "$DIR/pki/client-key.pem")
    fi
    [ -f "$DIR/auth" ] && [ -z "${NO_AUTH:-}" ] && args+=(--user root:root-pw)
    ETCDCTL_API=3 etcdctl "${args[@]}" "$@"
}

pid_alive() { # pidfile
    local pid st cur
    [ -s "$1" ] || return 1
    read -r pid st < "$1" || return 1
    cur=$(awk '{print $22}' "/proc/$pid/stat" 2>/dev/null) || return 1
    [ "$cur" = "$st" ] && echo "$pid"
}

make_pki() {
    command -v openssl >/dev/null || die "openssl is needed for --tls: apt-get install openssl"
    local d="$DIR/pki" i san=""
    mkdir -p "$d"
    san="IP:127.0.0.1"   # the tests reach members through proxies on loopback
    for i in $(seq 1 $N); do san="${san},IP:$(ip_of "$i")"; done
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
        -subj "/CN=hx test etcd CA" -keyout "$d/ca-key.pem" -out "$d/ca.pem" 2>/dev/null || die "CA"
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=etcd" \
        -keyout "$d/server-key.pem" -out "$d/server.csr" 2>/dev/null || die "server key"
    printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth,clientAuth\n' "$san" > "$d/server.ext"
    openssl x509 -req -in "$d/server.csr" -CA "$d/ca.pem" -CAkey "$d/ca-key.pem" -CAcreateserial \
        -days 2 -extfile "$d/server.ext" -out "$d/server.pem" 2>/dev/null || die "server cert"
    # no CommonName: etcd's gateway refuses client certificates with a CN
    # when auth is on (the CN would be a user name it cannot pass on)
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/O=qnetd test client" \
        -keyout "$d/client-key.pem" -out "$d/client.csr" 2>/dev/null || die "client key"
    printf 'extendedKeyUsage=clientAuth\n' > "$d/client.ext"
    openssl x509 -req -in "$d/client.csr" -CA "$d/ca.pem" -CAkey "$d/ca-key.pem" -CAcreateserial \
        -days 2 -extfile "$d/client.ext" -out "$d/client.pem" 2>/dev/null || die "client cert"
}

start_member() { # i [new|existing]
    local i=$1 state=${2:-existing} cluster="" j
    pid_alive "$DIR/e$i.pid" >/dev/null && { info "member $i already runs"; return 0; }
    for j in $(seq 1 $N); do cluster="${cluster}${cluster:+,}e$j=http://$(ip_of "$j"):2380"; done
    local tlsargs=()
    if [ -f "$DIR/tls" ]; then
        tlsargs=(--cert-file "$DIR/pki/server.pem" --key-file "$DIR/pki/server-key.pem"
                 --trusted-ca-file "$DIR/pki/ca.pem" --client-cert-auth)
    fi
    echo "=== $(date '+%F %T') start ($state)" >> "$DIR/e$i.log"
    setsid ip netns exec "$(ns_of "$i")" etcd --name "e$i" --data-dir "$DIR/e$i.data" \
        --listen-client-urls "$(url_of "$i")" --advertise-client-urls "$(url_of "$i")" \
        --listen-peer-urls "http://$(ip_of "$i"):2380" \
        --initial-advertise-peer-urls "http://$(ip_of "$i"):2380" \
        --initial-cluster "$cluster" --initial-cluster-state "$state" \
        --initial-cluster-token "$P-etcd-test" "${tlsargs[@]}" \
        < /dev/null >> "$DIR/e$i.log" 2>&1 &
    local pid=$!
    sleep 0.1
    echo "$pid $(awk '{print $22}' "/proc/$pid/stat" 2>/dev/null)" > "$DIR/e$i.pid"
}

wait_healthy() { # seconds
    local t=0 max=$((${1:-30} * 5))
    while [ $t -lt $max ]; do
        ctl put /hx-health ok >/dev/null 2>&1 && return 0
        sleep 0.2; t=$((t + 1))
    done
    return 1
}

cmd_start() {
    need
    local tls=no auth=no
    while [ $# -gt 0 ]; do
        case "$1" in --tls) tls=yes;; --auth) auth=yes;; *) die "unknown option $1";; esac
        shift
    done
    [ -e "$DIR/created" ] && die "already started (state in $DIR); run '$PROG stop' first"
    if [ $OWN_BRIDGE = yes ]; then
        ip link show "$BR" >/dev/null 2>&1 && die "bridge $BR exists; run '$PROG stop' first"
    else
        ip link show "$BR" >/dev/null 2>&1 || die "bridge $BR (HA_ETCD_BRIDGE) does not exist"
    fi
    mkdir -p "$DIR"; : > "$DIR/created"
    [ $tls = yes ] && { touch "$DIR/tls"; make_pki; }
    if [ $OWN_BRIDGE = yes ]; then
        ip link add "$BR" type bridge || die "cannot create bridge $BR"
        ip addr add "$NET.1/24" dev "$BR"; ip link set "$BR" up
    fi
    local i
    for i in $(seq 1 $N); do
        ip netns add "$(ns_of "$i")" || die "netns $(ns_of "$i") exists"
        ip link add "$P-ev$i" type veth peer name eth0 netns "$(ns_of "$i")"
        ip link set "$P-ev$i" master "$BR" up
        ip -n "$(ns_of "$i")" link set lo up
        ip -n "$(ns_of "$i")" addr add "$(ip_of "$i")/24" dev eth0
        ip -n "$(ns_of "$i")" link set eth0 up
    done
    for i in $(seq 1 $N); do start_member "$i" new; done
    wait_healthy 30 || die "etcd did not become healthy within 30 s (logs: $DIR/e*.log)"
    ctl del /hx-health >/dev/null 2>&1
    if [ $auth = yes ]; then
        ctl user add root:root-pw >/dev/null && ctl role add root >/dev/null \
            && ctl user grant-role root root >/dev/null && ctl user add qnetd:qnetd-pw >/dev/null \
            && ctl role add qnetd >/dev/null \
            && ctl role grant-permission qnetd --prefix=true readwrite /qnetd/ >/dev/null \
            && ctl user grant-role qnetd qnetd >/dev/null && ctl auth enable >/dev/null \
            || die "enabling auth failed"
        touch "$DIR/auth"
    fi
    info "3 members up: $(endpoints)$( [ $tls = yes ] && echo " (TLS)")$( [ $auth = yes ] && echo " (auth)")"
}

cmd_stop() {
    local i pid
    for i in $(seq 1 $N); do
        pid=$(pid_alive "$DIR/e$i.pid") || continue
        kill -CONT "$pid" 2>/dev/null; kill "$pid" 2>/dev/null
    done
    for i in $(seq 1 $N); do
        local t=0
        while pid=$(pid_alive "$DIR/e$i.pid") && [ $t -lt 50 ]; do sleep 0.1; t=$((t + 1)); done
        pid=$(pid_alive "$DIR/e$i.pid") && kill -9 "$pid" 2>/dev/null
    done
    for i in $(seq 1 $N); do
        ip netns del "$(ns_of "$i")" 2>/dev/null
        ip link del "$P-ev$i" 2>/dev/null
    done
    [ $OWN_BRIDGE = yes ] && ip link del "$BR" 2>/dev/null
    case "$DIR" in /tmp/?*) rm -rf "$DIR";; *) info "left $DIR in place";; esac
    info "stopped"
}

leader_member() { # prints the number of the member that is the etcd leader
    local i f m l
    for i in $(seq 1 $N); do
        f=$(CTL_EPS=$(url_of "$i") ctl endpoint status -w fields 2>/dev/null) || continue
        m=$(awk -F' : ' '/"MemberID"/{print $2}' <<< "$f")
        l=$(awk -F' : ' '/"Leader"/{print $2}' <<< "$f")
        [ -n "$m" ] && [ "$m" = "$l" ] && { echo "$i"; return 0; }
    done
    return 1
}

member_arg() { [[ "${1:-}" =~ ^[1-3]$ ]] || die "member must be 1, 2 or 3"; }

case "${1:-}" in
    start) shift; cmd_start "$@";;
    stop) cmd_stop;;
    status) ctl endpoint status -w table;;
    endpoints) endpoints;;
    env)
        echo "export QNETD_HA_ETCD=$(endpoints)"
        [ -f "$DIR/tls" ] && echo "export QNETD_HA_ETCD_CA=$DIR/pki/ca.pem QNETD_HA_ETCD_CERT=$DIR/pki/client.pem QNETD_HA_ETCD_KEY=$DIR/pki/client-key.pem"
        [ -f "$DIR/auth" ] && echo "export QNETD_HA_ETCD_USER=qnetd QNETD_HA_ETCD_PASSWORD=qnetd-pw"
        echo "export QNETD_HA_ETCD_SCRIPT=$(cd "$(dirname "$0")" && pwd)/$PROG"
        ;;
    leader) leader_member || die "no member is the etcd leader";;
    kill) member_arg "${2:-}"; pid=$(pid_alive "$DIR/e$2.pid") && kill -9 "$pid"; info "member $2 killed";;
    start-member) member_arg "${2:-}"; start_member "$2" existing;;
    pause) member_arg "${2:-}"; pid=$(pid_alive "$DIR/e$2.pid") && kill -STOP "$pid";;
    resume) member_arg "${2:-}"; pid=$(pid_alive "$DIR/e$2.pid") && kill -CONT "$pid";;
    partition) member_arg "${2:-}"; ip -n "$(ns_of "$2")" link set eth0 down;;
    heal) member_arg "${2:-}"; ip -n "$(ns_of "$2")" link set eth0 up;;
    wait-healthy) wait_healthy "${2:-30}" || die "no healthy quorum";;
    *) sed -n '2,30p' "$0" >&2; exit 2;;
esac
