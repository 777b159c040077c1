#!/bin/bash
# Scenario "migrate" (runs inside the test root, see ../run.sh): a live
# corosync-qnetd host moves to the package.
#   Debian's corosync-qnetd 3.0.3, its own NSS database (made by its
#   postinst), serves a real 2-node cluster with tls required and the
#   operator's option "-s req" in /etc/default/corosync-qnetd;
#   the package is installed over it (dpkg -i: Conflicts + Replaces);
#   the nodes, untouched, reconnect over TLS with their certificates and
#   get ACK; corosync-qnetd-tool -l (ours) lists them; the imported CA
#   signs new node certificates; the documented rollback brings the stock
#   daemon back and the nodes reconnect to it.
. /qnetd-test/repo/tests/package/lib.sh
setup_root
CLUSTER=pkmig

say "the stock corosync-qnetd with its NSS database"
[ -n "$STOCK_DEB" ] || die "no corosync-qnetd .deb in /opt/qnetd-test-debs"
run_logged "dpkg -i corosync-qnetd (Debian)" dpkg -i "$STOCK_DEB" || die "cannot install corosync-qnetd"
sed -i 's/^COROSYNC_QNETD_OPTIONS=.*/COROSYNC_QNETD_OPTIONS="-s req"/' /etc/default/corosync-qnetd
run_logged "systemctl restart corosync-qnetd (with -s req)" systemctl restart corosync-qnetd.service
PID=$(unit_pid corosync-qnetd.service)
check_eq "the stock daemon runs" /usr/bin/corosync-qnetd "$(readlink "/proc/$PID/exe")"
check "its NSS database holds QNet CA and QNetd Cert" sh -c \
    "certutil -L -d sql:$NSSDB | grep -q '^QNet CA' && certutil -L -d sql:$NSSDB | grep -q '^QNetd Cert'"
STOCK_FP=$(certutil -L -d "sql:$NSSDB" -n "QNet CA" -a | openssl x509 -noout -fingerprint -sha256 | cut -d= -f2)

say "node certificates by the stock flow, a cluster with tls required"
N=/var/tmp/pk-node
mkdir -p "$N/etc" "$N/xfer"
cp "$NSSDB/qnetd-cacert.crt" "$N/xfer/"
run_logged "node: -i -c qnetd-cacert.crt" with_etc "$N/etc" corosync-qdevice-net-certutil -i -c "$N/xfer/qnetd-cacert.crt"
run_logged "node: -r -n $CLUSTER" with_etc "$N/etc" corosync-qdevice-net-certutil -r -n "$CLUSTER"
cp "$N/etc/qdevice/net/nssdb/qdevice-net-node.crq" /tmp/
run_logged "qnetd: stock corosync-qnetd-certutil -s" corosync-qnetd-certutil -s -c /tmp/qdevice-net-node.crq -n "$CLUSTER"
cp "$NSSDB/cluster-$CLUSTER.crt" "$N/xfer/"
run_logged "node: -M -c cluster-$CLUSTER.crt" with_etc "$N/etc" corosync-qdevice-net-certutil -M -c "$N/xfer/cluster-$CLUSTER.crt"
cp "$N/etc/qdevice/net/nssdb/qdevice-net-node.p12" "$N/xfer/"
run_logged "cluster up (2 nodes, tls required) against the stock daemon" \
    cluster up --nodes 2 --qnetd 127.0.0.1:5403 --tls required --certs "$N/xfer" \
    --cluster-name "$CLUSTER" --wait-timeout 60
check_cluster_tls_ack "both nodes vote ACK over TLS (stock server)" 30
node_db_sums() { (cd "$CLUSTER_STATE_DIR" && find n*/etc/qdevice -type f -print0 | sort -z | xargs -0 md5sum); }
NODES_BEFORE=$(node_db_sums)
DB_MODE=$(stat -c '%a %U %G' "$NSSDB")

# ---------------------------------------------------------------------------
say "install the package over it"
t_install=$EPOCHREALTIME
run_logged "dpkg -i qnetd.deb (Conflicts/Replaces corosync-qnetd)" dpkg -i "$DEB"
t_dpkg=$EPOCHREALTIME
info "dpkg -i took $(awk -v a="$t_install" -v b="$t_dpkg" 'BEGIN { printf "%.1f s", b - a }') (stop the stock daemon, import, start qnetd)"
check_eq "qnetd installed" "install ok installed" "$(dpkg-query -W -f='${Status}' qnetd)"
check_eq "corosync-qnetd removed (its config files kept)" "config-files" \
    "$(dpkg-query -W -f='${db:Status-Status}' corosync-qnetd)"
check "the operator's options file is kept" grep -q '^COROSYNC_QNETD_OPTIONS="-s req"' /etc/default/corosync-qnetd
check_eq "the imported CA is corosync-qnetd's" "$STOCK_FP" "$(ca_fingerprint)"
check "the old database is kept as nssdb.pre-qnetd" test -s /etc/corosync/qnetd/nssdb.pre-qnetd/cert9.db
check_eq "... with its owner and mode ($DB_MODE)" "$DB_MODE" "$(stat -c '%a %U %G' /etc/corosync/qnetd/nssdb.pre-qnetd)"
check_eq "the new folder has them too" "$DB_MODE" "$(stat -c '%a %U %G' "$NSSDB")"
check_eq "the folder's NSS database holds no certificate now" 0 \
    "$(certutil -L -d "sql:$NSSDB" | grep -cE '^.+ +[A-Za-z]*,[A-Za-z]*,[A-Za-z]*$')"
check "the nodes' cluster certificate was carried over" test -s "$NSSDB/cluster-$CLUSTER.crt"
PID=$(unit_pid corosync-qnetd.service)
check_eq "qnetd runs in its place" /usr/bin/qnetd "$(readlink "/proc/$PID/exe")"
check_eq "... named corosync-qnetd" corosync-qnetd "$(proc_comm "$PID")"
check_eq "... as coroqnetd" coroqnetd "$(proc_user "$PID")"
check "... with the operator's -s req" sh -c 'corosync-qnetd-tool -s | grep -q "^TLS:.*Required"'
if wait_until 90 cluster_tls_ack; then
    ok "the untouched nodes reconnect over TLS and get ACK"
    info "from dpkg -i to every node ACK again: $(awk -v a="$t_install" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f s", b - a }'), of which $(awk -v a="$t_dpkg" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f s", b - a }') after dpkg returned (the nodes' reconnect interval)"
else
    bad "the untouched nodes reconnect over TLS and get ACK"; cluster status --brief | sed 's/^/      | /'
fi
out=$(corosync-qnetd-tool -l)
printf '%s\n' "$out" | sed 's/^/      | /'
check "corosync-qnetd-tool -l (ours) lists cluster $CLUSTER" grep -q "^Cluster \"$CLUSTER\":" <<<"$out"
check_eq "... with both nodes" 2 "$(grep -c 'Node ID' <<<"$out")"
check_eq "the nodes' certificate databases are untouched" "$NODES_BEFORE" "$(node_db_sums)"

say "the imported CA signs new node certificates"
M=/var/tmp/pk-node2
mkdir -p "$M/etc"
run_logged "node: -i, -r -n pkmig2" bash -c "$(declare -f with_etc); with_etc $M/etc corosync-qdevice-net-certutil -i -c $N/xfer/qnetd-cacert.crt && with_etc $M/etc corosync-qdevice-net-certutil -r -n pkmig2"
run_logged "corosync-qnetd-certutil -s (ours, with the CA key from NSS)" \
    corosync-qnetd-certutil -s -c "$M/etc/qdevice/net/nssdb/qdevice-net-node.crq" -n pkmig2
check "the certificate verifies against the imported CA" sh -c \
    "openssl x509 -inform DER -in $NSSDB/cluster-pkmig2.crt -out /tmp/c.pem && openssl verify -CAfile $NSSDB/qnetd-ca.pem /tmp/c.pem"
cp "$NSSDB/cluster-pkmig2.crt" /tmp/
run_logged "node: -M imports it" bash -c "$(declare -f with_etc); with_etc $M/etc corosync-qdevice-net-certutil -M -c /tmp/cluster-pkmig2.crt"

# ---------------------------------------------------------------------------
say "and back: the rollback of README (\"Replacing corosync-qnetd on a live host\")"
run_logged "stop qnetd, put the original database back" bash -c \
    "systemctl stop corosync-qnetd.service && mv $NSSDB $NSSDB.qnetd && mv $NSSDB.pre-qnetd $NSSDB"
# apt-get install corosync-qnetd does these two steps (offline here).
run_logged "remove qnetd" dpkg --remove qnetd
run_logged "install corosync-qnetd again" dpkg -i "$STOCK_DEB"
PID=$(unit_pid corosync-qnetd.service)
check_eq "the stock daemon runs again" /usr/bin/corosync-qnetd "$(readlink "/proc/$PID/exe")"
check_cluster_tls_ack "the nodes, still untouched, reconnect to it over TLS and get ACK" 90

finish
