#!/bin/sh
# Builds the canh-agent Debian package with dpkg-deb.
#
# Usage: scripts/build-agent-deb.sh [--binary PATH] [--out DIR] [--version VERSION] [--arch ARCH]
#   --binary   an already built canh-agent (default: build it with `cargo build --release`)
#   --out      output directory (default: target/debian)
#   --version  package version (default: the crate version)
#   --arch     Debian architecture (default: dpkg --print-architecture)
# Prints the path of the .deb on success.
set -eu

here=$(cd "$(dirname "$0")/.." && pwd)
pkgdir="$here/crates/canh-agent/packaging"
binary=""
out="$here/target/debian"
version=""
arch=""

while [ $# -gt 0 ]; do
    case "$1" in
        --binary) binary=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        --version) version=$2; shift 2 ;;
        --arch) arch=$2; shift 2 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done

command -v dpkg-deb >/dev/null 2>&1 || { echo "dpkg-deb not found (apt-get install dpkg)" >&2; exit 3; }

if [ -z "$version" ]; then
    version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$here/Cargo.toml" | head -n 1)
fi
[ -n "$version" ] || { echo "cannot read the version from Cargo.toml" >&2; exit 2; }
if [ -z "$arch" ]; then
    arch=$(dpkg --print-architecture 2>/dev/null || echo amd64)
fi
if [ -z "$binary" ]; then
    (cd "$here" && cargo build -p canh-agent --release)
    binary="${CARGO_TARGET_DIR:-$here/target}/release/canh-agent"
fi
[ -x "$binary" ] || { echo "no executable at $binary" >&2; exit 2; }

mkdir -p "$out"
stage=$(mktemp -d "${TMPDIR:-/tmp}/canh-agent-deb.XXXXXX")
trap 'rm -rf "$stage"' EXIT INT TERM

install -d -m 0755 "$stage/DEBIAN" "$stage/usr/lib/canh-agent" "$stage/usr/sbin" "$stage/lib/systemd/system" \
    "$stage/etc/canh" "$stage/usr/share/canh-agent/policy" "$stage/usr/share/doc/canh-agent"
# The binary lives in a directory of its own, the only one the unit lets the agent write to
# outside its state (self-upgrades swap it there); /usr/sbin holds a link for the command line.
install -m 0755 "$binary" "$stage/usr/lib/canh-agent/canh-agent"
if command -v strip >/dev/null 2>&1; then
    strip --strip-unneeded "$stage/usr/lib/canh-agent/canh-agent" 2>/dev/null || true
fi
ln -s ../lib/canh-agent/canh-agent "$stage/usr/sbin/canh-agent"
install -m 0644 "$pkgdir/canh-agent.service" "$stage/lib/systemd/system/canh-agent.service"
install -m 0640 "$pkgdir/canh-agent.toml" "$stage/etc/canh/canh-agent.toml"
install -m 0644 "$here/crates/canh-agent/policy/canh-linux-baseline.toml" \
    "$stage/usr/share/canh-agent/policy/canh-linux-baseline.toml"
for s in postinst prerm postrm; do
    install -m 0755 "$pkgdir/debian/$s" "$stage/DEBIAN/$s"
done
printf '%s\n' /etc/canh/canh-agent.toml > "$stage/DEBIAN/conffiles"
cat > "$stage/usr/share/doc/canh-agent/copyright" <<EOF
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: canh
Files: *
License: Apache-2.0
EOF
chmod 0644 "$stage/usr/share/doc/canh-agent/copyright"

size=$(du -sk "$stage" | cut -f1)
cat > "$stage/DEBIAN/control" <<EOF
Package: canh-agent
Version: $version
Architecture: $arch
Maintainer: Canh maintainers <canh@localhost>
Installed-Size: $size
Depends: libc6
Recommends: nftables
Section: admin
Priority: optional
Homepage: https://github.com/canh-soc/canh
Description: Canh endpoint agent (EDR)
 Process, file, network, login, device and inventory telemetry for the Canh
 SOC platform, kept in a no-loss on-disk spool and sent over mutual TLS.
 Tac tu dau cuoi Canh: giam sat tien trinh, tep, mang, dang nhap, thiet bi
 va kiem ke, gui ve may chu Canh qua TLS hai chieu.
EOF

deb="$out/canh-agent_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Zxz --build "$stage" "$deb" >/dev/null
echo "$deb"
