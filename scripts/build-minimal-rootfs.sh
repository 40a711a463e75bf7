#!/usr/bin/env bash
# Build the microVM guest root filesystem: Debian bookworm (minbase) with
# python3 and its full standard library, as a read-only ext4 image, without
# mounting anything (debootstrap into a directory, then mkfs.ext4 -d).
#
#   sudo scripts/build-minimal-rootfs.sh        # -> $GLASSHOUSE_ARTIFACTS/rootfs.ext4
#
# Needs root (debootstrap) and: debootstrap e2fsprogs. The image is rebuilt
# only when this script, the suite, the mirror or the package list change.
# guest/rootfs/Dockerfile builds the same content with Docker.
#
# Environment: GLASSHOUSE_ARTIFACTS, GLASSHOUSE_DEBIAN_MIRROR,
# GLASSHOUSE_ROOTFS_SUITE (default bookworm), FORCE=1 to rebuild.
source "$(dirname "${BASH_SOURCE[0]}")/lib-artifacts.sh"

SUITE="${GLASSHOUSE_ROOTFS_SUITE:-bookworm}"
MIRROR="$(debian_mirror)"
# Keep in sync with guest/rootfs/Dockerfile.
PACKAGES="python3,python3-venv,python3-distutils,python3-lib2to3,ca-certificates"
# The unprivileged user the workload runs as (guest/init uses uid/gid 1000).
SANDBOX_UID=1000

OUT="$ARTIFACTS/rootfs.ext4"
HASH="$( {
	cat "$0"
	echo "$SUITE $MIRROR $PACKAGES $SANDBOX_UID"
} | inputs_hash)"

if [[ "${FORCE:-}" != 1 ]] && up_to_date "$OUT" "$HASH"; then
	log "rootfs up to date: $OUT"
	exit 0
fi
[[ "$(id -u)" == 0 ]] || die "debootstrap needs root"
need debootstrap mkfs.ext4:e2fsprogs

WORK="$(mktemp -d "$ARTIFACTS/.rootfs-build.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
ROOT="$WORK/root"

log "debootstrap $SUITE from $MIRROR (about a minute)"
debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$ROOT" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 || {
	tail -n 30 "$WORK/debootstrap.log" >&2
	die "debootstrap failed"
}

# Byte-compile the standard library: the image is read-only, so Python could
# never cache it at run time and every start would recompile what it imports.
chroot "$ROOT" /usr/bin/python3 -m compileall -q -j 0 /usr/lib/python3 /usr/lib/python3.11 >/dev/null 2>&1 || true

# The sandbox user and the guest's mount points.
echo "sandbox:x:$SANDBOX_UID:$SANDBOX_UID:Glasshouse sandbox:/workspace:/bin/sh" >>"$ROOT/etc/passwd"
echo "sandbox:x:$SANDBOX_UID:" >>"$ROOT/etc/group"
echo "sandbox:*:19000:0:99999:7:::" >>"$ROOT/etc/shadow"
mkdir -p "$ROOT/workspace" "$ROOT/glasshouse"
echo sandbox >"$ROOT/etc/hostname"
printf '127.0.0.1\tlocalhost sandbox\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$ROOT/etc/hosts"
# QEMU user-mode networking's DNS, used only when a run asks for the network.
echo "nameserver 10.0.2.3" >"$ROOT/etc/resolv.conf"

# Drop what a sandbox never needs.
rm -rf "$ROOT"/var/cache/apt/* "$ROOT"/var/lib/apt/lists/* "$ROOT"/usr/share/doc/* \
	"$ROOT"/usr/share/man/* "$ROOT"/usr/share/info/* "$ROOT"/var/log/* "$ROOT"/tmp/*
find "$ROOT/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name 'C.*' -exec rm -rf {} + 2>/dev/null || true

# Size: content plus 15% and 64 MiB of slack; no journal (mounted read-only).
KB="$(du -sk "$ROOT" | cut -f1)"
SIZE_MB=$((KB * 115 / 100 / 1024 + 64))
log "mkfs.ext4 ${SIZE_MB}MiB from $KB KiB of content"
rm -f "$OUT.tmp"
mkfs.ext4 -q -F -L ghroot -O ^has_journal -E root_owner=0:0 -d "$ROOT" "$OUT.tmp" "${SIZE_MB}M"
mv -f "$OUT.tmp" "$OUT"
stamp "$OUT" "$HASH"
log "built $OUT"
