#!/usr/bin/env bash
# Regenerates the BPF artifacts committed under ebpf/:
#   ebpf/include/vmlinux.h           kernel types, from the running kernel's BTF
#   ebpf/include/vmlinux.h.kernel    the release of that kernel
#   ebpf/collector/collector_bpfel.* the host collector (bpf2go)
#   ebpf/netguard/netguard_bpfel.*   the network guard (bpf2go)
#
# Needs Debian's clang-14, llvm-14 (llvm-strip-14), libbpf-dev and bpftool,
# and Go with access to the module proxy (bpf2go is github.com/cilium/ebpf
# v0.22.0). The output is reproducible byte for byte on the same kernel and
# toolchain; CI runs this script and then `git diff --exit-code`.
#
#   VMLINUX_BTF=/path/to/btf   take kernel types from another BTF file
#   SKIP_VMLINUX=1             keep the committed vmlinux.h (other kernels)
set -euo pipefail

cd "$(dirname "$0")/.."
btf=${VMLINUX_BTF:-/sys/kernel/btf/vmlinux}

for tool in clang-14 llvm-strip-14 bpftool go; do
	command -v "$tool" >/dev/null || { echo "build-ebpf: $tool not found (apt-get install -y clang-14 llvm-14 libbpf-dev bpftool)" >&2; exit 1; }
done
[ -f /usr/include/bpf/bpf_helpers.h ] || { echo "build-ebpf: libbpf headers not found (apt-get install -y libbpf-dev)" >&2; exit 1; }

if [ -z "${SKIP_VMLINUX:-}" ]; then
	[ -r "$btf" ] || { echo "build-ebpf: no kernel BTF at $btf" >&2; exit 1; }
	tmp=$(mktemp)
	trap 'rm -f "$tmp"' EXIT
	bpftool btf dump file "$btf" format c >"$tmp"
	mv "$tmp" ebpf/include/vmlinux.h
	chmod 0644 ebpf/include/vmlinux.h
	# Which kernel the types came from, so CI knows whether regenerating
	# them here must reproduce the committed file.
	uname -r >ebpf/include/vmlinux.h.kernel
fi

# go generate runs bpf2go in each package directory.
go generate ./ebpf/collector ./ebpf/netguard
echo "build-ebpf: regenerated ebpf/include/vmlinux.h, ebpf/collector and ebpf/netguard"
