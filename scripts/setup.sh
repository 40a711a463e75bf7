#!/usr/bin/env bash
# Installs what Glasshouse needs on a Debian 12 machine and builds it.
#
#   scripts/setup.sh            apt packages + bin/glasshouse, bin/glasshouse-server, ...
#   scripts/setup.sh --guest    also the microVM guest (kernel, initramfs, rootfs)
#
# Safe to re-run: packages already present are not reinstalled, artifacts are
# rebuilt only when their inputs change.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH="/usr/local/go/bin:$PATH"

GUEST=0
for arg in "$@"; do
	case "$arg" in
	--guest) GUEST=1 ;;
	*) echo "setup.sh: unknown argument $arg (want --guest)" >&2; exit 2 ;;
	esac
done

# Everything the build, the tests and the benchmarks use, by purpose:
#   eBPF objects:        clang-14 llvm-14 libbpf-dev bpftool
#   microVM guest:       qemu-system-x86 debootstrap cpio e2fsprogs squashfs-tools busybox-static
#   benchmarks and peers: strace
#   test programs:       gcc libc6-dev (static C testers)
#   workloads:           python3
#   unit file checks:    systemd (systemd-analyze)
PACKAGES=(
	clang-14 llvm-14 libbpf-dev bpftool
	qemu-system-x86 debootstrap cpio e2fsprogs squashfs-tools busybox-static
	strace python3 ca-certificates systemd gcc libc6-dev
)

missing=()
for p in "${PACKAGES[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
	SUDO=""
	[ "$(id -u)" -eq 0 ] || SUDO="sudo"
	echo "setup.sh: installing ${missing[*]}" >&2
	$SUDO apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

command -v go >/dev/null || { echo "setup.sh: Go is not installed (expected /usr/local/go)" >&2; exit 1; }
mkdir -p bin
# Static binaries: without the dynamic loader every invocation starts
# ~0.7 ms sooner (cmd/glasshouse BenchmarkStartup); nothing here needs cgo.
export CGO_ENABLED=0
go build -o bin/ $(go list ./cmd/... | grep -v '/cmd/glasshouse$')
# bin/glasshouse is the lean CLI; it hands policy, signing and signals to
# the full build beside it (see cmd/glasshouse/main.go).
go build -o bin/glasshouse-full ./cmd/glasshouse
go build -tags lean -o bin/glasshouse ./cmd/glasshouse
echo "setup.sh: built $(ls bin | tr '\n' ' ')" >&2

if ((GUEST)); then
	scripts/build-guest.sh
fi
