#!/bin/bash
# build-deb.sh: build the Debian package of qnetd, the drop-in replacement of
# corosync-qnetd, from this repository, with nothing but cargo and dpkg-deb:
#
#   deploy/debian/build-deb.sh            # cargo build --release, then the .deb
#   deploy/debian/build-deb.sh --no-build # package the existing target/release/qnetd
#
# Prints the path of the package: target/debian/qnetd_VERSION-REV_ARCH.deb
# (VERSION from Cargo.toml, REV from DEB_REVISION, default 1).
#
# The package Provides, Conflicts with and Replaces corosync-qnetd, and ships
# /usr/bin/qnetd with the stock names corosync-qnetd, corosync-qnetd-tool and
# corosync-qnetd-certutil as links to it, the unit corosync-qnetd.service,
# /etc/qnetd/qnetd.toml and the maintainer scripts of this folder.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
PROG=$(basename "$0")
die() { echo "$PROG: error: $*" >&2; exit 1; }

BUILD=1
while [ $# -gt 0 ]; do
    case "$1" in
        --no-build) BUILD=0 ;;
        -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown option '$1' (see --help)" ;;
    esac
    shift
done

for tool in dpkg-deb dpkg strip objdump readelf gzip; do
    command -v "$tool" >/dev/null || die "$tool not found (apt-get install dpkg binutils gzip)"
done
cd "$REPO"
if [ "$BUILD" = 1 ]; then
    cargo build --release --locked >&2 || die "cargo build --release failed"
fi
BIN=target/release/qnetd
[ -x "$BIN" ] || die "$BIN not found: run 'cargo build --release' (or drop --no-build)"

# The version of the root package (the first `version =` of [package]).
VERSION=$(awk '/^\[package\]/{p=1; next} /^\[/{p=0} p && /^version *=/{gsub(/[" ]/, "", $0); sub(/version=/, ""); print; exit}' Cargo.toml)
[ -n "$VERSION" ] || die "cannot read the package version from Cargo.toml"
REVISION=${DEB_REVISION:-1}
ARCH=$(dpkg --print-architecture)
NAME="qnetd_${VERSION}-${REVISION}_${ARCH}"
OUT="$REPO/target/debian"
STAGE="$OUT/$NAME"
rm -rf "$STAGE"
mkdir -p "$STAGE/DEBIAN" "$STAGE/usr/bin" "$STAGE/lib/systemd/system" \
    "$STAGE/etc/qnetd" "$STAGE/usr/share/doc/qnetd" "$STAGE/usr/share/qnetd"

# --- files -------------------------------------------------------------------
install -m 0755 "$BIN" "$STAGE/usr/bin/qnetd"
strip --strip-unneeded --remove-section=.comment --remove-section=.note "$STAGE/usr/bin/qnetd"
for name in corosync-qnetd corosync-qnetd-tool corosync-qnetd-certutil; do
    ln -s qnetd "$STAGE/usr/bin/$name"
done
install -m 0644 deploy/corosync-qnetd.service "$STAGE/lib/systemd/system/corosync-qnetd.service"
install -m 0644 "$HERE/qnetd.toml" "$STAGE/etc/qnetd/qnetd.toml"
install -m 0644 "$HERE/default-corosync-qnetd" "$STAGE/usr/share/qnetd/default-corosync-qnetd"
install -m 0644 README.md "$STAGE/usr/share/doc/qnetd/README.md"
install -m 0644 config/qnetd.toml "$STAGE/usr/share/doc/qnetd/qnetd.toml.example"
install -m 0644 "$HERE/copyright" "$STAGE/usr/share/doc/qnetd/copyright"
{
    echo "qnetd (${VERSION}-${REVISION}) unstable; urgency=medium"
    echo
    echo "  * Built from the qnetd repository (commit $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown))."
    echo
    echo " -- qnetd maintainers <qnetd@localhost>  $(date -R -d "@${SOURCE_DATE_EPOCH:-$(date +%s)}")"
} | gzip -9n > "$STAGE/usr/share/doc/qnetd/changelog.Debian.gz"
for script in postinst prerm postrm; do
    install -m 0755 "$HERE/$script" "$STAGE/DEBIAN/$script"
done
echo /etc/qnetd/qnetd.toml > "$STAGE/DEBIAN/conffiles"

# --- Depends from the libraries the binary links --------------------------------
# glibc: the newest symbol version used; OpenSSL 3 (server TLS); libgcc_s
# (unwinding).
GLIBC=$(objdump -T "$STAGE/usr/bin/qnetd" | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -1)
DEPENDS="libc6 (>= ${GLIBC:-2.34})"
for lib in $(readelf -d "$STAGE/usr/bin/qnetd" | sed -n 's/.*Shared library: \[\(.*\)\]/\1/p'); do
    case "$lib" in
        libc.so.6|libm.so.6|libdl.so.2|libpthread.so.0|librt.so.1|ld-linux*) ;;
        libssl.so.3|libcrypto.so.3) dep="libssl3 (>= 3.0.0)" ;;
        libgcc_s.so.1) dep="libgcc-s1 (>= 3.0)" ;;
        *) die "the binary links $lib: add its Debian package to $PROG" ;;
    esac
    case ", $DEPENDS, " in *", ${dep:-}, "*) ;; *) [ -n "${dep:-}" ] && DEPENDS="$DEPENDS, $dep" ;; esac
    dep=
done
# adduser: the coroqnetd user; libnss3-tools: certutil and pk12util for the
# NSS database pcs looks for and for importing corosync-qnetd's.
DEPENDS="$DEPENDS, adduser, libnss3-tools"

SIZE=$(du -sk --exclude=DEBIAN "$STAGE" | cut -f1)
cat > "$STAGE/DEBIAN/control" <<EOF
Package: qnetd
Version: ${VERSION}-${REVISION}
Architecture: ${ARCH}
Maintainer: qnetd maintainers <qnetd@localhost>
Installed-Size: ${SIZE}
Depends: ${DEPENDS}
Provides: corosync-qnetd
Conflicts: corosync-qnetd
Replaces: corosync-qnetd
Section: admin
Priority: optional
Description: quorum device network arbitrator for corosync, drop-in for corosync-qnetd
 qnetd gives the vote of a corosync-qdevice model "net" quorum device to
 one partition of each cluster that connects to it, wire-compatible with
 corosync-qnetd: the nodes keep their stock corosync-qdevice and NSS setup.
 .
 This package replaces corosync-qnetd on a live host: the same unit
 (corosync-qnetd.service), user (coroqnetd), options file and programs
 (corosync-qnetd, corosync-qnetd-tool, corosync-qnetd-certutil), so pcs,
 crmsh, Proxmox and the OCF agent keep working. On install it imports the
 CA and server certificate of an existing corosync-qnetd, so clusters
 reconnect with their node certificates unchanged.
EOF
(cd "$STAGE" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z | xargs -0 md5sum) > "$STAGE/DEBIAN/md5sums"

dpkg-deb --root-owner-group -Zxz --build "$STAGE" "$OUT/$NAME.deb" >&2
echo "$OUT/$NAME.deb"
