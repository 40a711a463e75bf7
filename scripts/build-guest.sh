#!/usr/bin/env bash
# Build the microVM guest boot artifacts:
#   $GLASSHOUSE_ARTIFACTS/vmlinuz         Debian's cloud kernel
#   $GLASSHOUSE_ARTIFACTS/initramfs.cpio  guest/init as /init, plus the
#                                         virtio/vsock modules it loads
# and, unless --no-rootfs is given, the root filesystem
# (scripts/build-minimal-rootfs.sh).
#
# The kernel comes from the linux-image-cloud-amd64 package, fetched with
# apt-get download and unpacked with dpkg-deb -x into a cache directory, so
# nothing is installed into the host's /boot. Each artifact is rebuilt only
# when its inputs change (see scripts/lib-artifacts.sh).
#
# Needs: go, apt-get/dpkg-deb (Debian), cpio; root for the rootfs.
# Environment: GLASSHOUSE_ARTIFACTS, GLASSHOUSE_GUEST_KERNEL_PKG (a
# linux-image-* package; default: what linux-image-cloud-amd64 depends on),
# FORCE=1 to rebuild.
source "$(dirname "${BASH_SOURCE[0]}")/lib-artifacts.sh"

BUILD_ROOTFS=1
for arg in "$@"; do
	case "$arg" in
	--no-rootfs) BUILD_ROOTFS=0 ;;
	*) die "unknown argument $arg (want --no-rootfs)" ;;
	esac
done

need go:golang cpio:cpio dpkg-deb:dpkg apt-get:apt

# Modules the guest loads, in load order: virtio core, the MMIO transport
# (QEMU microvm and Firecracker), block and console drivers; then, tagged,
# what guest/init loads only when needed: vsock (glasshouse.vsock=, for
# Firecracker and vhost-vsock) and virtio-net ("net", for a future guest
# network). Untagged modules always load.
MODULES=(
	kernel/drivers/virtio/virtio_ring.ko
	kernel/drivers/virtio/virtio.ko
	kernel/drivers/virtio/virtio_mmio.ko
	kernel/drivers/block/virtio_blk.ko
	kernel/drivers/char/virtio_console.ko
	vsock:kernel/net/vmw_vsock/vsock.ko
	vsock:kernel/net/vmw_vsock/vmw_vsock_virtio_transport_common.ko
	vsock:kernel/net/vmw_vsock/vmw_vsock_virtio_transport.ko
	net:kernel/net/core/failover.ko
	net:kernel/drivers/net/net_failover.ko
	net:kernel/drivers/net/virtio_net.ko
)

# --- kernel -----------------------------------------------------------------
KPKG="${GLASSHOUSE_GUEST_KERNEL_PKG:-}"
if [[ -z "$KPKG" ]]; then
	KPKG="$(apt-cache depends linux-image-cloud-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/{print $2; exit}')"
	if [[ -z "$KPKG" ]]; then
		log "apt-get update (to resolve linux-image-cloud-amd64)"
		apt-get update -qq >/dev/null
		KPKG="$(apt-cache depends linux-image-cloud-amd64 | awk '/Depends: linux-image-[0-9]/{print $2; exit}')"
	fi
fi
[[ -n "$KPKG" ]] || die "cannot resolve the cloud kernel package"
KVER_PKG="$(apt-cache policy "$KPKG" | awk '/Candidate:/{print $2}')"
KCACHE="$ARTIFACTS/.cache/kernel/$KPKG-$KVER_PKG"
KREL="${KPKG#linux-image-}"
if [[ ! -f "$KCACHE/boot/vmlinuz-$KREL" ]]; then
	log "fetching $KPKG $KVER_PKG"
	rm -rf "$KCACHE" && mkdir -p "$KCACHE/deb"
	(cd "$KCACHE/deb" && apt-get download -q -o APT::Sandbox::User=root "$KPKG=$KVER_PKG" >/dev/null) || die "apt-get download $KPKG failed"
	dpkg-deb -x "$KCACHE"/deb/*.deb "$KCACHE"
	rm -rf "$KCACHE/deb"
fi
[[ -f "$KCACHE/boot/vmlinuz-$KREL" ]] || die "$KPKG has no boot/vmlinuz-$KREL"
KERNEL_OUT="$ARTIFACTS/vmlinuz"
KHASH="$(sha256sum "$KCACHE/boot/vmlinuz-$KREL" | cut -d' ' -f1)"
if ! up_to_date "$KERNEL_OUT" "$KHASH"; then
	cp "$KCACHE/boot/vmlinuz-$KREL" "$KERNEL_OUT.tmp" && mv -f "$KERNEL_OUT.tmp" "$KERNEL_OUT"
	stamp "$KERNEL_OUT" "$KHASH"
	log "kernel $KREL -> $KERNEL_OUT"
else
	log "kernel up to date: $KERNEL_OUT ($KREL)"
fi
echo "$KREL" >"$ARTIFACTS/kernel.release"

# --- initramfs --------------------------------------------------------------
# strip_signature FILE drops a module's appended signature: checking it
# costs a large share of module loading under emulation, and the modules
# come from the same signed package as the kernel anyway.
strip_signature() {
	local f="$1" magic size siglen
	magic="$(tail -c 28 "$f")"
	[[ "$magic" == "~Module signature appended~" ]] || return 0
	size="$(stat -c %s "$f")"
	# struct module_signature (12 bytes) ends with the signature's length.
	siglen="$(tail -c 32 "$f" | head -c 4 | od -An -tu4 --endian=big | tr -d ' ')"
	truncate -s $((size - 28 - 12 - siglen)) "$f"
}

WORK="$(mktemp -d "$ARTIFACTS/.initramfs-build.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
(cd "$REPO_ROOT" && CGO_ENABLED=0 GOOS=linux GOARCH=amd64 go build -trimpath -ldflags='-s -w' -o "$WORK/init" ./guest/init) ||
	die "building guest/init failed"
MODDIR="$KCACHE/lib/modules/$KREL"
IHASH="$( {
	cat "$0"
	sha256sum "$WORK/init" | cut -d' ' -f1
	for m in "${MODULES[@]}"; do echo "$m"; sha256sum "$MODDIR/${m#*:}"; done
} | inputs_hash)"
INITRAMFS_OUT="$ARTIFACTS/initramfs.cpio"
if ! up_to_date "$INITRAMFS_OUT" "$IHASH"; then
	STAGE="$WORK/stage"
	mkdir -p "$STAGE/lib/modules" "$STAGE/dev" "$STAGE/proc" "$STAGE/sys" "$STAGE/rootfs" "$STAGE/tmp"
	cp "$WORK/init" "$STAGE/init"
	: >"$STAGE/lib/modules/load.order"
	for m in "${MODULES[@]}"; do
		tag=""
		[[ "$m" == *:* ]] && tag="${m%%:*}:"
		f="${m#*:}"
		[[ -f "$MODDIR/$f" ]] || die "module $f missing from $KPKG"
		cp "$MODDIR/$f" "$STAGE/lib/modules/"
		strip_signature "$STAGE/lib/modules/$(basename "$f")"
		echo "$tag$(basename "$f")" >>"$STAGE/lib/modules/load.order"
	done
	# Uncompressed: unpacking is faster than decompressing under emulation.
	(cd "$STAGE" && find . -mindepth 1 | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0 --reproducible >"$INITRAMFS_OUT.tmp")
	mv -f "$INITRAMFS_OUT.tmp" "$INITRAMFS_OUT"
	stamp "$INITRAMFS_OUT" "$IHASH"
	log "initramfs -> $INITRAMFS_OUT ($(du -h "$INITRAMFS_OUT" | cut -f1))"
else
	log "initramfs up to date: $INITRAMFS_OUT"
fi

if [[ "$BUILD_ROOTFS" == 1 ]]; then
	"$REPO_ROOT/scripts/build-minimal-rootfs.sh"
fi
