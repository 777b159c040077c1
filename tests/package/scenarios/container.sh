#!/bin/bash
# Scenario "container" (runs inside the test root, see ../run.sh): the image
# of deploy/Containerfile, built and run with Debian 12's podman (rootful,
# vfs storage, no registry: the base image is imported from the minimal
# Debian root run.sh made; cgroups off, as the test root has no systemd):
#   build with the repository as context (.containerignore: only the
#   binary); the server runs as a non-root user; the TLS material is created
#   in its volume and survives a restart; the health check (qnetd status)
#   passes; a real 2-node cluster with tls required votes through the
#   container, with certificates from `qnetd certs client` in the container.
. /qnetd-test/repo/tests/package/lib.sh
setup_root
P="podman --storage-driver vfs --cgroup-manager cgroupfs --events-backend file"
IMG=localhost/qnetd:pk-test
CLUSTER=pkctr

say "the image"
run_logged "podman import the Debian 12 base (no registry here)" \
    $P import -q /qnetd-test/image/base.tar localhost/qnetd-base:bookworm || die "no base image"
# --isolation chroot: RUN steps without a runtime cgroup; --layers=false:
# one commit (vfs copies the whole tree per layer).
run_logged "podman build --format docker -f deploy/Containerfile (context: the repository)" \
    $P build -q --format docker --layers=false --isolation chroot \
    --build-arg BASE=localhost/qnetd-base:bookworm -f deploy/Containerfile -t "$IMG" /qnetd-test/repo \
    || die "the image did not build"
check_eq "image user" qnetd "$($P image inspect --format '{{.Config.User}}' "$IMG")"
check_eq "image health check" '["CMD","/usr/bin/qnetd","status","--socket","/var/lib/qnetd/qnetd.sock"]' \
    "$($P image inspect --format '{{json .HealthCheck.Test}}' "$IMG" 2>/dev/null || $P inspect --format '{{json .Config.Healthcheck.Test}}' "$IMG")"
check_eq "image volumes" "map[/etc/qnetd/tls:{} /var/lib/qnetd:{}]" "$($P image inspect --format '{{.Config.Volumes}}' "$IMG")"

say "run it"
run_logged "podman run -d (volumes qnetd-tls, qnetd-state)" \
    $P run -d --name pkq --cgroups disabled --network host \
    -v qnetd-tls:/etc/qnetd/tls -v qnetd-state:/var/lib/qnetd "$IMG" || die "the container did not start"
check "the server answers in the container (qnetd status)" wait_until 20 \
    $P exec pkq /usr/bin/qnetd status --socket /var/lib/qnetd/qnetd.sock
check "podman healthcheck run: healthy" $P healthcheck run pkq
check_eq "the server process runs as uid 5403 (not root)" 5403 "$($P exec pkq sh -c 'stat -c %u /proc/1')"
check_eq "TLS material created in the volume, keys 0600" "600 600" \
    "$($P exec pkq stat -c %a /etc/qnetd/tls/qnetd-ca-key.pem /etc/qnetd/tls/qnetd-server-key.pem | tr '\n' ' ' | sed 's/ $//')"
FP=$($P exec pkq sh -c 'cat /etc/qnetd/tls/qnetd-ca.pem' | openssl x509 -noout -fingerprint -sha256)
run_logged "podman restart" $P restart pkq
check "healthy again" wait_until 20 $P healthcheck run pkq
check_eq "the CA survived the restart (volume)" "$FP" \
    "$($P exec pkq sh -c 'cat /etc/qnetd/tls/qnetd-ca.pem' | openssl x509 -noout -fingerprint -sha256)"

say "a real cluster with tls required against the container"
run_logged "qnetd certs client --cluster $CLUSTER (in the container)" \
    $P exec pkq /usr/bin/qnetd certs client --cluster "$CLUSTER" --out "/var/lib/qnetd/$CLUSTER"
CERTS=/var/tmp/pk-ctr-certs
mkdir -p "$CERTS"
$P cp "pkq:/var/lib/qnetd/$CLUSTER/qnetd-cacert.crt" "$CERTS/" &&
    $P cp "pkq:/var/lib/qnetd/$CLUSTER/qdevice-net-node.p12" "$CERTS/"
run_logged "cluster up (2 nodes, tls required)" \
    cluster up --nodes 2 --qnetd 127.0.0.1:5403 --tls required --certs "$CERTS" \
    --cluster-name "$CLUSTER" --wait-timeout 60
check_cluster_tls_ack "both nodes vote ACK over TLS through the container" 30
out=$($P exec pkq /usr/bin/qnetd status --socket /var/lib/qnetd/qnetd.sock)
printf '%s\n' "$out" | sed 's/^/      | /'
check "qnetd status in the container shows cluster $CLUSTER" grep -q "$CLUSTER" <<<"$out"
cluster down >/dev/null 2>&1
run_logged "podman stop" $P stop -t 10 pkq

finish
