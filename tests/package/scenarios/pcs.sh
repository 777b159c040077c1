#!/bin/bash
# Scenario "pcs" (runs inside the test root, see ../run.sh): pcs 0.11.5 and
# pcsd of Debian 12, unchanged, manage the package's qnetd:
#   pcs host auth; pcs qdevice setup (refused: the package initialised the
#   CA on install, as Debian's corosync-qnetd does), destroy, setup
#   --enable --start; the certificate exchange through pcsd's endpoints
#   (pcs quorum device setup_local_qnetd_certs / check_local_qnetd_certs,
#   the calls of `pcs quorum device add`); a real cluster connected with the
#   certificates pcs made; pcs qdevice status net --full; destroy refused
#   while a cluster is connected and done with --force; setup again; pcs
#   qdevice kill net really kills it.
. /qnetd-test/repo/tests/package/lib.sh
setup_root
HOST=pk-qnetd
CLUSTER=pkpcs

say "install the package, start pcsd"
# A qnetd host is no cluster node: without this, Debian's example
# corosync.conf (cluster "debian") makes pcsd sync known-hosts to node1.
rm -f /etc/corosync/corosync.conf
install_deb "dpkg -i qnetd.deb" || die "cannot install the package"
echo "hacluster:pk-secret" | chpasswd || die "cannot set the hacluster password"
getent group haclient >/dev/null && usermod -a -G haclient hacluster
run_logged "systemctl start pcsd-ruby.service" systemctl start pcsd-ruby.service
run_logged "systemctl start pcsd.service" systemctl start pcsd.service
check "pcs host auth $HOST addr=127.0.0.1" wait_until 60 \
    pcs host auth "$HOST" addr=127.0.0.1 -u hacluster -p pk-secret

# ---------------------------------------------------------------------------
say "pcs qdevice setup / destroy / setup --enable --start"
out=$(pcs qdevice setup model net 2>&1)
rc=$?
check "setup refused on the initialised package, as with Debian's corosync-qnetd" \
    test "$rc" != 0 -a -n "$(grep -i 'already initialized' <<<"$out")"
run_logged "pcs qdevice destroy net" pcs qdevice destroy net
check_fails "... the folder is gone (pcs: not initialised)" test -e "$NSSDB"
check_fails "... the service is stopped" systemctl is-active corosync-qnetd.service
check_fails "... and disabled" systemctl is-enabled corosync-qnetd.service
run_logged "pcs qdevice setup model net --enable --start" pcs qdevice setup model net --enable --start
check "... a real NSS database where pcs looks (certutil -L)" certutil -L -d "sql:$NSSDB"
check "... the CA certificate pcsd serves" test -s "$NSSDB/qnetd-cacert.crt"
check "... service active" systemctl is-active corosync-qnetd.service
check "... service enabled" systemctl is-enabled corosync-qnetd.service
PID=$(unit_pid corosync-qnetd.service)
check_eq "... process name" corosync-qnetd "$(proc_comm "$PID")"
check_eq "... process user" coroqnetd "$(proc_user "$PID")"
FP1=$(ca_fingerprint)

# ---------------------------------------------------------------------------
say "certificate exchange through pcsd (what pcs quorum device add does)"
check_eq "check_local_qnetd_certs before" "certificate missing" \
    "$(pcs quorum device check_local_qnetd_certs "$HOST" "$CLUSTER" 2>&1)"
run_logged "pcs quorum device setup_local_qnetd_certs $HOST $CLUSTER" \
    pcs quorum device setup_local_qnetd_certs "$HOST" "$CLUSTER"
check_eq "check_local_qnetd_certs after" "certificate present" \
    "$(pcs quorum device check_local_qnetd_certs "$HOST" "$CLUSTER" 2>&1)"
check "the qnetd host signed cluster-$CLUSTER.crt" test -s "$NSSDB/cluster-$CLUSTER.crt"
CC=$(certutil -L -d sql:/etc/corosync/qdevice/net/nssdb -n 'Cluster Cert' 2>&1)
check "the node's Cluster Cert: subject CN=$CLUSTER" grep -q "Subject: \"CN=$CLUSTER\"" <<<"$CC"
check "... issued by QNet CA" grep -q 'Issuer: "CN=QNet CA"' <<<"$CC"

say "a real cluster with the certificates pcs made"
CERTS=/var/tmp/pk-pcs-certs
mkdir -p "$CERTS"
cp /etc/corosync/qdevice/net/nssdb/qnetd-cacert.crt /etc/corosync/qdevice/net/nssdb/qdevice-net-node.p12 "$CERTS/"
run_logged "cluster up (2 nodes, tls required, cluster $CLUSTER)" \
    cluster up --nodes 2 --qnetd 127.0.0.1:5403 --tls required --certs "$CERTS" \
    --cluster-name "$CLUSTER" --wait-timeout 60
check_cluster_tls_ack "both nodes vote ACK over TLS" 30
out=$(pcs qdevice status net --full 2>&1)
check_eq "pcs qdevice status net --full: exit 0" 0 "$?"
printf '%s\n' "$out" | sed 's/^/      | /'
check "... lists cluster $CLUSTER" grep -q "^Cluster \"$CLUSTER\":" <<<"$out"
check_eq "... two nodes with vote ACK" 2 "$(grep -c 'Vote:.*ACK' <<<"$out")"
check_eq "... is corosync-qnetd-tool -s -v then -l -v" "$(corosync-qnetd-tool -s -v; corosync-qnetd-tool -l -v)" "$out"

# ---------------------------------------------------------------------------
say "destroy while a cluster is connected, then --force"
out=$(pcs qdevice destroy net 2>&1)
rc=$?
printf '%s\n' "$out" | sed 's/^/      | /'
check "pcs qdevice destroy net is refused" test "$rc" != 0
check "... naming the connected cluster" grep -q "$CLUSTER" <<<"$out"
check "... nothing destroyed" test -s "$NSSDB/qnetd-ca.pem"
check "... service still active" systemctl is-active corosync-qnetd.service
run_logged "pcs qdevice destroy net --force" pcs qdevice destroy net --force
check_fails "... service stopped" systemctl is-active corosync-qnetd.service
check_fails "... the folder (and the CA) gone" test -e "$NSSDB"
cluster down >/dev/null 2>&1

say "setup again, then pcs qdevice kill net"
run_logged "pcs qdevice setup model net --enable --start" pcs qdevice setup model net --enable --start
check "... a new CA" test -n "$(ca_fingerprint)" -a "$(ca_fingerprint)" != "$FP1"
PID=$(unit_pid corosync-qnetd.service)
check "... running" alive "$PID"
run_logged "pcs qdevice kill net" pcs qdevice kill net
check "... the process is gone" wait_until 5 sh -c "! test -e /proc/$PID || grep -q '^State:.*Z' /proc/$PID/status"
check_fails "... killall finds no corosync-qnetd" killall -0 corosync-qnetd
check_fails "... pcs qdevice status net: not running" pcs qdevice status net

finish
