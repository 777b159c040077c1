#!/bin/bash
#
# float-test.sh - checks qnetd-ha's floating address on a real link: two
# network namespaces on a veth pair; the "client" side has a stale
# neighbour entry for the floating address pointing at a wrong link
# address; the "leader" side takes the address (ha/examples/float take),
# and the client's entry must now carry the leader's link address, for
# IPv4 (gratuitous ARP) and IPv6 (unsolicited neighbour advertisement).
# Then release must remove the address. Needs root and iproute2.
set -u
P=${HA_FLOAT_PREFIX:-hxf}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
TOOL=${FLOAT_TOOL:-$ROOT/target/debug/examples/float}
[ "$(id -u)" = 0 ] || { echo "float-test: must run as root" >&2; exit 1; }
[ -x "$TOOL" ] || { echo "float-test: $TOOL missing: cargo build -p qnetd-ha --examples" >&2; exit 1; }

cleanup() { ip netns del "$P-c" 2>/dev/null; ip netns del "$P-l" 2>/dev/null; }
trap cleanup EXIT
cleanup
ip netns add "$P-c" && ip netns add "$P-l" || exit 1
ip -n "$P-c" link add eth0 type veth peer name eth0 netns "$P-l"
for ns in "$P-c" "$P-l"; do ip -n "$ns" link set lo up; ip -n "$ns" link set eth0 up; done
ip -n "$P-c" addr add 192.0.2.1/24 dev eth0
ip -n "$P-c" addr add fd00:78::1/64 dev eth0 nodad
ip -n "$P-l" addr add 192.0.2.2/24 dev eth0
ip -n "$P-l" addr add fd00:78::2/64 dev eth0 nodad
mac=$(ip netns exec "$P-l" cat /sys/class/net/eth0/address)
fail=0
for fa in 192.0.2.100 fd00:78::100; do
    case $fa in *:*) pl=64; fam=-6;; *) pl=24; fam=-4;; esac
    ip -n "$P-c" $fam neigh replace "$fa" lladdr 02:00:00:00:00:99 dev eth0 nud stale
    sleep 1.2   # past the neighbour entry's locktime
    # control: the address alone (no announcement) leaves the entry wrong
    ip -n "$P-l" addr add "$fa/$pl" dev eth0 nodad 2>/dev/null || ip -n "$P-l" addr add "$fa/$pl" dev eth0
    sleep 0.5
    ip -n "$P-c" $fam neigh show "$fa" dev eth0 | grep -q 02:00:00:00:00:99 \
        || { echo "FAIL: control: $fa's entry changed without an announcement"; fail=1; }
    ip -n "$P-l" addr del "$fa/$pl" dev eth0
    ip netns exec "$P-l" "$TOOL" take "$fa/$pl" eth0 || { echo "FAIL: take $fa"; fail=1; continue; }
    got=""
    for _ in $(seq 1 20); do
        got=$(ip -n "$P-c" $fam neigh show "$fa" dev eth0 | awk '{for(i=1;i<NF;i++) if($i=="lladdr") print $(i+1)}')
        [ "$got" = "$mac" ] && break
        sleep 0.1
    done
    if [ "$got" = "$mac" ]; then echo "ok: $fa announced, client entry now $got"
    else echo "FAIL: $fa: client entry $got, leader $mac"; fail=1; fi
    ip netns exec "$P-l" "$TOOL" release "$fa/$pl" eth0 || { echo "FAIL: release $fa"; fail=1; }
    ip -n "$P-l" addr show dev eth0 | grep -q "$fa/" && { echo "FAIL: $fa still present"; fail=1; }
    ip netns exec "$P-l" "$TOOL" release "$fa/$pl" eth0 || { echo "FAIL: second release of $fa is an error"; fail=1; }
done
[ $fail = 0 ] && echo "float-test: 2 passed, 0 failed" || { echo "float-test: failed"; exit 1; }
