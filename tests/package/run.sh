#!/bin/bash
# tests/package/run.sh: the acceptance tests of the Debian package (issue 12)
# in throw-away Debian 12 roots, so the machine running them is left as it
# was found: nothing is installed on it, no unit, user, file under /etc or
# /usr, network namespace or mount of the test outlives the run.
#
#   tests/package/run.sh [--root DIR] [--keep] [SCENARIO...]
#
# --root DIR: make the base root in DIR once and reuse it in later runs
# (development); --keep: keep the work directory (logs) in /var/tmp.
#
# Scenarios (default: all), each in a fresh snapshot of the base root:
#   lifecycle  install, crmsh/pvecm certificate sequence + a real TLS
#              cluster, corosync-qnetd-tool vs the stock tool byte for byte,
#              the OCF agent (ocf-tester), daemon mode, reinstall keeps the
#              CA, purge leaves nothing
#   pcs        pcs 0.11.5 with pcsd: host auth, qdevice setup/status/
#              destroy/kill, the certificate exchange through pcsd, a
#              cluster connected with the certificates pcs made
#   migrate    the stock corosync-qnetd serves a TLS-required cluster; the
#              package is installed over it; the untouched nodes reconnect
#              and get ACK
#   container  deploy/Containerfile built and run with podman (vfs
#              storage): non-root, material and state on volumes, health
#              check, a real TLS cluster against the container
#
# How: the base root is made once per run with mmdebstrap (Debian 12 with
# pcs, corosync, corosync-qdevice, resource-agents, the NSS tools and podman,
# ~1 min); each scenario runs in an overlayfs snapshot of it, entered with
# unshare (new mount, PID, network, UTS, IPC and cgroup namespaces) and
# pivot_root. The PID namespace matters: `pcs qdevice kill net` runs
# `killall -9 corosync-qnetd`, which there can only reach the test's own
# processes. systemctl is a
# stand-in (systemctl-standin, in this folder) that starts the installed
# unit's command. The interop harness (../shared/interop, or INTEROP_DIR)
# runs the real clusters inside the same namespaces.
#
# Needs: root, mmdebstrap, util-linux (unshare), the Debian mirror (for the
# base roots), target/release/qnetd (cargo build --release). Exit 0 only if
# every scenario passed and the host checks agree.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
PROG=tests/package/run.sh
die() { echo "$PROG: error: $*" >&2; exit 1; }

ROOT_BASE=""
KEEP=0
SCENARIOS=()
while [ $# -gt 0 ]; do
    case "$1" in
        --root) ROOT_BASE=$2; shift ;;
        --keep) KEEP=1 ;;
        -h|--help) sed -n '2,40p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        lifecycle|pcs|migrate|container) SCENARIOS+=("$1") ;;
        *) die "unknown argument '$1' (see --help)" ;;
    esac
    shift
done
[ ${#SCENARIOS[@]} -gt 0 ] || SCENARIOS=(lifecycle pcs migrate container)

[ "$(id -u)" = 0 ] || die "must run as root (namespaces, mounts, chroot)"
for tool in unshare mount chroot; do
    command -v "$tool" >/dev/null || die "$tool not found (apt-get install util-linux mount coreutils)"
done
INTEROP_DIR=${INTEROP_DIR:-$REPO/../shared/interop}
[ -x "$INTEROP_DIR/cluster" ] || die "interop harness not found at $INTEROP_DIR (set INTEROP_DIR)"
INTEROP_DIR=$(cd "$INTEROP_DIR" && pwd)
grep -qw overlay /proc/filesystems || modprobe overlay 2>/dev/null || true
grep -qw overlay /proc/filesystems || die "the kernel has no overlayfs (modprobe overlay)"

WORK=$(mktemp -d /var/tmp/qnetd-pkgtest.XXXXXX)
cleanup() {
    # Every mount of the test lives in the unshare'd namespaces and is gone
    # with them; only the work directory is left to remove.
    if [ "$KEEP" = 1 ]; then echo "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
START=$SECONDS

# --- what the test may touch on this host, before --------------------------------
host_state() {
    {
        echo "packages:"; dpkg-query -W -f='${Package} ${Status}\n' qnetd corosync-qnetd pcs 2>/dev/null || true
        echo "files:"
        for f in /usr/bin/qnetd /usr/bin/corosync-qnetd /usr/bin/corosync-qnetd-tool \
            /usr/bin/corosync-qnetd-certutil /lib/systemd/system/corosync-qnetd.service \
            /etc/default/corosync-qnetd /etc/qnetd /usr/bin/systemctl /dev/log; do
            if [ -e "$f" ] || [ -L "$f" ]; then
                echo "$f $(stat -c '%F %a %U:%G %s %Y' "$f") $( [ -f "$f" ] && md5sum < "$f" | cut -c1-32 )"
            else
                echo "$f absent"
            fi
        done
        echo "/etc/corosync:"; find /etc/corosync -printf '%p %y %m %u %g %s\n' 2>/dev/null | sort
        echo "users:"; getent passwd coroqnetd hacluster || true
        echo "netns:"; ip netns list 2>/dev/null | grep -E '^pk-' || true
        echo "mounts:"; grep -F "$WORK" /proc/self/mounts || true
    } 2>&1
}
host_state > "$WORK/host-before.txt"

# --- the package ---------------------------------------------------------------
echo "== building the package (deploy/debian/build-deb.sh --no-build)"
DEB=$("$REPO/deploy/debian/build-deb.sh" --no-build) || die "building the package failed"
mkdir -p "$WORK/deb"
cp "$DEB" "$WORK/deb/qnetd.deb"
echo "   $DEB ($(du -h "$DEB" | cut -f1))"

# --- the base roots -------------------------------------------------------------------
# The test root (Debian 12 with pcs, corosync, corosync-qdevice, the OCF
# agents, the NSS tools and podman) and, for the container scenario, a
# minimal Debian 12 image root (what debian:bookworm-slim holds: no
# registry is reachable here). Both are made with mmdebstrap, in parallel.
PACKAGES=pcs,corosync,mount,systemd,corosync-qdevice,resource-agents,libxml2-utils,libnss3-tools,psmisc,iproute2,nftables,procps,adduser,libssl3,openssl,ca-certificates,podman,crun
mkdir -p "$WORK/image"
IMAGE_PID=
if [[ " ${SCENARIOS[*]} " == *" container "* ]]; then
    command -v mmdebstrap >/dev/null || die "mmdebstrap not found (apt-get install --no-install-recommends mmdebstrap)"
    echo "== container base image: mmdebstrap --variant=minbase bookworm (in the background)"
    mmdebstrap --quiet --variant=minbase --include=libssl3 bookworm "$WORK/image/base.tar" \
        http://deb.debian.org/debian > "$WORK/mmdebstrap-image.log" 2>&1 &
    IMAGE_PID=$!
fi
if [ -n "$ROOT_BASE" ] && [ -x "$ROOT_BASE/usr/sbin/pcs" ]; then
    BASE=$ROOT_BASE
    echo "== base root: $BASE (given)"
else
    command -v mmdebstrap >/dev/null || die "mmdebstrap not found (apt-get install --no-install-recommends mmdebstrap)"
    BASE=${ROOT_BASE:-$WORK/base}
    echo "== base root: mmdebstrap bookworm -> $BASE"
    t=$SECONDS
    # The stock corosync-qnetd is only downloaded (/opt/qnetd-test-debs): the
    # scenarios install it themselves when they need it.
    mmdebstrap --quiet --variant=apt --include="$PACKAGES" \
        --customize-hook='mkdir -p "$1/opt/qnetd-test-debs" && chroot "$1" sh -c "cd /opt/qnetd-test-debs && apt-get download -q corosync-qnetd"' \
        bookworm "$BASE" http://deb.debian.org/debian > "$WORK/mmdebstrap.log" 2>&1 \
        || { tail -20 "$WORK/mmdebstrap.log"; die "mmdebstrap failed (log above)"; }
    echo "   done in $((SECONDS - t)) s ($(du -sh "$BASE" | cut -f1))"
fi
if [ -n "$IMAGE_PID" ]; then
    wait "$IMAGE_PID" || { tail -20 "$WORK/mmdebstrap-image.log"; die "mmdebstrap of the image base failed (log above)"; }
    echo "   container base image: $(du -h "$WORK/image/base.tar" | cut -f1)"
fi

# --- one scenario in one snapshot ------------------------------------------------------
# The snapshot's /dev is a small tmpfs with the usual nodes bound in (so
# /dev/log and /dev/shm are the test's own), /run and /tmp are fresh
# tmpfs, and the repository, the package and the harness are bound
# read-only under /qnetd-test.
ENTER='set -e
base=$1 snap=$2 repo=$3 deb=$4 interop=$5 image=$6 scenario=$7
m=$snap/merged
mount -t overlay overlay -o "lowerdir=$base,upperdir=$snap/upper,workdir=$snap/work" "$m"
mount -t proc proc "$m/proc"
mount -t sysfs sysfs "$m/sys"
mount -t cgroup2 cgroup2 "$m/sys/fs/cgroup"
mount -t tmpfs -o mode=755,size=64m tmpfs "$m/dev"
for n in null zero full random urandom tty; do touch "$m/dev/$n"; mount --bind "/dev/$n" "$m/dev/$n"; done
mkdir -p "$m/dev/pts" "$m/dev/shm" "$m/dev/net"
mount -t devpts -o newinstance,ptmxmode=0666 devpts "$m/dev/pts"
ln -s pts/ptmx "$m/dev/ptmx"
mount -t tmpfs -o mode=1777 tmpfs "$m/dev/shm"
ln -s /proc/self/fd "$m/dev/fd"
mount -t tmpfs -o mode=755 tmpfs "$m/run"
mount -t tmpfs -o mode=1777 tmpfs "$m/tmp"
mkdir -p "$m/qnetd-test/repo" "$m/qnetd-test/deb" "$m/qnetd-test/interop" "$m/qnetd-test/image"
mount --bind -o ro "$repo" "$m/qnetd-test/repo"
mount --bind -o ro "$deb" "$m/qnetd-test/deb"
mount --bind -o ro "$interop" "$m/qnetd-test/interop"
mount --bind -o ro "$image" "$m/qnetd-test/image"
hostname pk-qnetd
ip link set lo up
# The snapshot becomes the root (pivot_root, not chroot: container
# runtimes join mount namespaces, which a chroot does not survive).
cd "$m"
mkdir -p .oldroot
pivot_root . .oldroot
cd /
umount -l /.oldroot
rmdir /.oldroot
exec /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    HOME=/root LANG=C.UTF-8 TERM=dumb SCENARIO="$scenario" \
    /bin/bash "/qnetd-test/repo/tests/package/scenarios/$scenario.sh"'

declare -A RESULT TIME
for s in "${SCENARIOS[@]}"; do
    snap=$WORK/snap-$s
    mkdir -p "$snap/upper" "$snap/work" "$snap/merged"
    echo
    echo "================ scenario $s ================"
    t=$SECONDS
    rc=0
    timeout --signal=KILL 600 unshare --kill-child --mount --pid --net --uts --ipc --cgroup --fork \
        --propagation private \
        bash -c "$ENTER" enter "$BASE" "$snap" "$REPO" "$WORK/deb" "$INTEROP_DIR" "$WORK/image" "$s" \
        2>&1 | tee "$WORK/$s.log" || rc=${PIPESTATUS[0]}
    RESULT[$s]=$rc
    TIME[$s]=$((SECONDS - t))
    rm -rf "$snap"
done

# --- and after: the host as it was --------------------------------------------------------
host_state > "$WORK/host-after.txt"
HOST_OK=1
if ! diff -u "$WORK/host-before.txt" "$WORK/host-after.txt" > "$WORK/host.diff"; then
    HOST_OK=0
fi

echo
echo "================ summary ================"
FAIL=0
for s in "${SCENARIOS[@]}"; do
    if [ "${RESULT[$s]}" = 0 ]; then st=passed; else st="FAILED (exit ${RESULT[$s]})"; FAIL=1; fi
    printf '%-10s %-20s %4ss\n' "$s" "$st" "${TIME[$s]}"
done
if [ "$HOST_OK" = 1 ]; then
    echo "host       unchanged (packages, corosync-qnetd files, /etc/corosync, users, netns, mounts)"
else
    echo "host       CHANGED:"; cat "$WORK/host.diff"; FAIL=1
fi
echo "total      $((SECONDS - START)) s"
[ "$FAIL" = 0 ] || { KEEP=1; echo "$PROG: FAILED; logs kept in $WORK"; exit 1; }
echo "$PROG: all passed"
