#!/bin/bash
#
# run.sh - the HA crate's second-tier tests against a real 3-member etcd:
# first a plain cluster (every test but the TLS/auth one), then one with
# TLS (client certificates) and auth (the TLS/auth test and the election
# and store tests again through TLS and tokens). Needs root and Debian's
# etcd-server and etcd-client (apt-get install etcd-server etcd-client
# openssl). Exit 0 only if every run passed.
set -u
set -o pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
ETCD="$HERE/etcd-cluster.sh"

[ "$(id -u)" = 0 ] || { echo "run.sh: must run as root" >&2; exit 1; }
command -v etcd >/dev/null || { echo "run.sh: etcd missing: apt-get install etcd-server etcd-client" >&2; exit 1; }

"$ETCD" stop >/dev/null 2>&1
trap '"$ETCD" stop >/dev/null 2>&1' EXIT
rc=0
cd "$ROOT" || exit 1
{ cargo build -p qnetd-ha --examples && cargo test -p qnetd-ha --test etcd --no-run; } >/dev/null 2>&1 \
    || { echo "run.sh: build failed" >&2; exit 1; }

"$ETCD" start || exit 1
eval "$("$ETCD" env)"
cargo test -p qnetd-ha --test etcd -- --test-threads=1 --skip tls_and_auth || rc=1
"$ETCD" stop

"$HERE/float-test.sh" || rc=1

"$ETCD" start --tls --auth || exit 1
eval "$("$ETCD" env)"
cargo test -p qnetd-ha --test etcd -- --test-threads=1 \
    tls_and_auth election_ resign_ vote_store another_ca cut_off || rc=1
exit $rc
