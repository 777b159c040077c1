#!/bin/bash
# Scenario "lifecycle" (runs inside the test root, see ../run.sh): the
# package on a fresh Debian 12 (no corosync-qnetd before it):
#   install -> what is where, who runs it, under which name
#   crmsh / pvecm certificate sequence -> a real 2-node cluster with
#     tls required votes through our server
#   corosync-qnetd-tool vs the stock tool, byte for byte
#   the OCF agent of resource-agents (ocf-tester) and daemon mode
#   reinstall (upgrade path) keeps the CA and the cluster reconnects
#   purge leaves nothing of the package behind
. /qnetd-test/repo/tests/package/lib.sh
setup_root
MANIFEST_BEFORE=$(root_manifest)
USERS_BEFORE=$(getent passwd | cut -d: -f1)

# ---------------------------------------------------------------------------
say "install the package"
install_deb "dpkg -i qnetd.deb" || die "cannot install the package"
check_eq "package state" "install ok installed" "$(dpkg-query -W -f='${Status}' qnetd)"
check "system user coroqnetd exists" getent passwd coroqnetd
for name in corosync-qnetd corosync-qnetd-tool corosync-qnetd-certutil; do
    check_eq "/usr/bin/$name runs qnetd" /usr/bin/qnetd "$(readlink -f /usr/bin/$name)"
done
check "unit corosync-qnetd.service is installed" test -f /lib/systemd/system/corosync-qnetd.service
# systemd-analyze exits 0 on ignored directives: its output must be empty.
check_eq "... and valid for systemd (systemd-analyze verify: no complaint)" "" \
    "$(systemd-analyze verify /lib/systemd/system/corosync-qnetd.service 2>&1)"
check "/etc/qnetd/qnetd.toml is a conffile" sh -c "dpkg-query -W -f='\${Conffiles}' qnetd | grep -q /etc/qnetd/qnetd.toml"
check "/etc/default/corosync-qnetd has COROSYNC_QNETD_OPTIONS" grep -q '^COROSYNC_QNETD_OPTIONS=' /etc/default/corosync-qnetd
check "the NSS database pcs looks for is a real one (certutil -L)" certutil -L -d "sql:$NSSDB"
check_eq "... holding no certificate" 0 "$(certutil -L -d "sql:$NSSDB" | grep -cE '^.+ +[A-Za-z]*,[A-Za-z]*,[A-Za-z]*$')"
check_eq "... and no key" "" "$(certutil -K -d "sql:$NSSDB" 2>/dev/null | grep -E '^<')"
check_eq "the folder (postinst ran -i -G: no group write)" "750 root coroqnetd" "$(stat -c '%a %U %G' "$NSSDB")"
check_eq "... its NSS database files" "640 640 640" "$(stat -c '%a' "$NSSDB"/cert9.db "$NSSDB"/key4.db "$NSSDB"/pkcs11.txt | tr '\n' ' ' | sed 's/ $//')"
check_eq "CA key: root only" "600 root coroqnetd" "$(stat -c '%a %U %G' "$NSSDB/qnetd-ca-key.pem")"
check_eq "server key: readable by group coroqnetd" "640 root coroqnetd" "$(stat -c '%a %U %G' "$NSSDB/qnetd-server-key.pem")"
check_eq "qnetd-cacert.crt (what pcsd serves) is the CA" "$(ca_fingerprint)" \
    "$(openssl x509 -in "$NSSDB/qnetd-cacert.crt" -noout -fingerprint -sha256 | cut -d= -f2)"
check "service started by postinst" systemctl is-active corosync-qnetd.service
check "service enabled" systemctl is-enabled corosync-qnetd.service
PID=$(unit_pid corosync-qnetd.service)
check_eq "process name (/proc/PID/comm)" corosync-qnetd "$(proc_comm "$PID")"
check_eq "process user" coroqnetd "$(proc_user "$PID")"
check "killall finds it by name (killall -0 corosync-qnetd)" killall -0 corosync-qnetd
check "corosync-qnetd-tool -s answers" corosync-qnetd-tool -s

# ---------------------------------------------------------------------------
say "crmsh / pvecm certificate sequence"
check_fails "corosync-qnetd-certutil -i refuses: already initialised" corosync-qnetd-certutil -i
check_eq "... exit status 1" 1 "$(corosync-qnetd-certutil -i >/dev/null 2>&1; echo $?)"
N=/var/tmp/pk-node
mkdir -p "$N/etc" "$N/xfer"
cp "$NSSDB/qnetd-cacert.crt" "$N/xfer/"
run_logged "node: corosync-qdevice-net-certutil -i -c qnetd-cacert.crt" \
    with_etc "$N/etc" corosync-qdevice-net-certutil -i -c "$N/xfer/qnetd-cacert.crt"
run_logged "node: corosync-qdevice-net-certutil -r -n pkcrm" \
    with_etc "$N/etc" corosync-qdevice-net-certutil -r -n pkcrm
cp "$N/etc/qdevice/net/nssdb/qdevice-net-node.crq" /tmp/qdevice-net-node.crq
out=$(corosync-qnetd-certutil -s -c /tmp/qdevice-net-node.crq -n pkcrm 2>&1)
check_eq "qnetd: corosync-qnetd-certutil -s -c /tmp/qdevice-net-node.crq -n pkcrm" 0 "$?"
printf '%s\n' "$out" | sed 's/^/      | /'
check_eq "... prints the line pcs and crmsh read" "Certificate stored in $NSSDB/cluster-pkcrm.crt" \
    "$(grep '^Certificate stored in' <<<"$out")"
check_eq "... the file is DER, subject CN=pkcrm" "subject=CN = pkcrm" \
    "$(openssl x509 -inform DER -in "$NSSDB/cluster-pkcrm.crt" -noout -subject 2>&1)"
check_eq "... issued by the CA" "issuer=CN = QNet CA" \
    "$(openssl x509 -inform DER -in "$NSSDB/cluster-pkcrm.crt" -noout -issuer 2>&1)"
# crmsh copies the request to nssdb/qdevice-net-node.crq.CLUSTER; signing
# again replaces cluster-CLUSTER.crt.
cp /tmp/qdevice-net-node.crq "$NSSDB/qdevice-net-node.crq.pkcrm"
check "crmsh path: -s -c nssdb/qdevice-net-node.crq.pkcrm -n pkcrm (replaces the .crt)" \
    corosync-qnetd-certutil -s -c "$NSSDB/qdevice-net-node.crq.pkcrm" -n pkcrm
check_eq "-s without -n: exit 2" 2 "$(corosync-qnetd-certutil -s -c /tmp/qdevice-net-node.crq >/dev/null 2>&1; echo $?)"
check_eq "-s with a missing request: exit 2" 2 "$(corosync-qnetd-certutil -s -c /nonexistent -n x >/dev/null 2>&1; echo $?)"
check_fails "-s for another cluster name than the request's CN is refused" \
    corosync-qnetd-certutil -s -c /tmp/qdevice-net-node.crq -n othercluster
cp "$NSSDB/cluster-pkcrm.crt" "$N/xfer/"
run_logged "node: corosync-qdevice-net-certutil -M -c cluster-pkcrm.crt" \
    with_etc "$N/etc" corosync-qdevice-net-certutil -M -c "$N/xfer/cluster-pkcrm.crt"
cp "$N/etc/qdevice/net/nssdb/qdevice-net-node.p12" "$N/xfer/"
say "a real 2-node cluster (tls required, nodes import with -i and -m) against the package's server"
run_logged "cluster up (corosync + corosync-qdevice, tls required)" \
    cluster up --nodes 2 --qnetd 127.0.0.1:5403 --tls required --certs "$N/xfer" \
    --cluster-name pkcrm --wait-timeout 60
check_cluster_tls_ack "both nodes vote ACK over TLS with their client certificate" 30
check "corosync-qnetd-tool -l lists cluster pkcrm" sh -c 'corosync-qnetd-tool -l | grep -q "^Cluster \"pkcrm\":"'

# ---------------------------------------------------------------------------
say "corosync-qnetd-tool: ours and the stock tool, same server, byte for byte"
STOCK=/tmp/stock-qnetd
dpkg-deb -x "$STOCK_DEB" "$STOCK" || die "cannot unpack $STOCK_DEB"
tool_run() { # DIR ARGS...: run DIR/corosync-qnetd-tool as ./corosync-qnetd-tool (same argv[0])
    local d=$1; shift
    (cd "$d" && ./corosync-qnetd-tool "$@" >/tmp/tool.out 2>/tmp/tool.err; echo "exit $?" >> /tmp/tool.err)
    { echo "--- stdout"; cat /tmp/tool.out; echo "--- stderr"; cat /tmp/tool.err; }
}
for args in "-s" "-s -v" "-sv" "-l" "-l -v" "-l -c pkcrm" "-lv -c pkcrm" "-l -c nosuch" \
    "-s -p /nonexistent.sock" "-l -p /tmp" "-h" "-x" "-c" "" "-v" "-l -c pkcrm extra-operand"; do
    # shellcheck disable=SC2086
    stock=$(tool_run "$STOCK/usr/bin" $args)
    # shellcheck disable=SC2086
    ours=$(tool_run /usr/bin $args)
    if [ "$stock" = "$ours" ]; then
        ok "corosync-qnetd-tool $args: same stdout, stderr and exit status ($(tail -1 <<<"$ours"))"
    else
        bad "corosync-qnetd-tool $args differs"
        diff <(echo "$stock") <(echo "$ours") | sed 's/^/      | /'
    fi
done

# ---------------------------------------------------------------------------
say "OCF agent ocf:heartbeat:corosync-qnetd (resource-agents), daemon mode"
run_logged "stop the systemd service (one arbitrator at a time on port 5403)" systemctl stop corosync-qnetd.service
OCF=/usr/lib/ocf/resource.d/heartbeat/corosync-qnetd
out=$(ocf-tester -n pkqnetd "$OCF" 2>&1)
rc=$?
printf '%s\n' "$out" | sed 's/^/      | /'
check_eq "ocf-tester: start, monitor, stop, start twice, stop twice" 0 "$rc"
check "... every test passed" grep -q "passed all tests" <<<"$out"
export OCF_ROOT=/usr/lib/ocf OCF_RESOURCE_INSTANCE=pkqnetd
run_logged "agent start (by hand)" "$OCF" start
OPID=$(cat /var/run/corosync-qnetd/corosync-qnetd-pkqnetd.pid 2>/dev/null)
check "pid file names the running daemon" alive "$OPID"
check_eq "daemon's name" corosync-qnetd "$(proc_comm "$OPID")"
check_eq "daemon's user" coroqnetd "$(proc_user "$OPID")"
check_eq "daemon detached (its own session)" "$OPID" "$(ps -o sid= -p "$OPID" | tr -d ' ')"
check "agent monitor" "$OCF" monitor
check "the clusters reconnect to the agent's instance" wait_until 30 cluster_tls_ack
out=$(corosync-qnetd -S lock_file=/run/pk2.pid,local_socket_file=/run/pk2.sock,metrics_listen=off 2>&1)
rc=$?
check_eq "a second daemon on the busy port: exit status 4 from the detaching parent" 4 "$rc"
check "... with the cause on stderr" grep -q "in use" <<<"$out"
run_logged "agent stop" "$OCF" stop
check_fails "daemon gone after stop" alive "$OPID"
check_eq "agent monitor after stop: 7 (not running)" 7 "$("$OCF" monitor >/dev/null 2>&1; echo $?)"
check "daemon mode logged to syslog" grep -q "corosync-qnetd\[$OPID\]: .*qnetd listening" /var/log/standin/syslog.log
unset OCF_ROOT OCF_RESOURCE_INSTANCE
run_logged "start the systemd service again" systemctl start corosync-qnetd.service

# ---------------------------------------------------------------------------
say "reinstall (the upgrade path) keeps the CA"
FP=$(ca_fingerprint)
OLD_PID=$(unit_pid corosync-qnetd.service)
install_deb "dpkg -i qnetd.deb again"
check_eq "the CA is unchanged" "$FP" "$(ca_fingerprint)"
NEW_PID=$(unit_pid corosync-qnetd.service)
check "the service was restarted" test -n "$NEW_PID" -a "$NEW_PID" != "$OLD_PID"
check_cluster_tls_ack "the cluster reconnects over TLS with its certificates and gets ACK" 60

# ---------------------------------------------------------------------------
say "purge"
cluster down >/dev/null 2>&1
run_logged "dpkg --purge qnetd" dpkg --purge qnetd
check_fails "no corosync-qnetd process left" killall -0 corosync-qnetd
check_eq "package state" "" "$(dpkg-query -W -f='${Status}' qnetd 2>/dev/null)"
MANIFEST_AFTER=$(root_manifest)
d=$(diff <(echo "$MANIFEST_BEFORE") <(echo "$MANIFEST_AFTER"))
if [ -z "$d" ]; then
    ok "no file or folder of the package left (all of / compared, logs and caches aside)"
else
    bad "files left behind or changed by install+purge:"; printf '%s\n' "$d" | sed 's/^/      | /'
fi
info "users added and kept (Debian practice, as corosync-qnetd's purge): $(getent passwd | cut -d: -f1 | grep -vxF -f <(echo "$USERS_BEFORE") | tr '\n' ' ')"

finish
