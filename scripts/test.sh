#!/usr/bin/env bash
# Sets up everything the tests need, then runs every test.
#
# Tests that need root, BPF, KVM or a binary skip with the reason when run
# by hand without them; under CI=true they fail instead, so a capability the
# machine has is always exercised. Run as root to exercise everything.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH="/usr/local/go/bin:$PATH"

scripts/setup.sh --guest

echo "== gofmt, go vet" >&2
unformatted=$(gofmt -l $(git ls-files '*.go' | grep -v '_bpfel\.go$'))
if [ -n "$unformatted" ]; then
	echo "gofmt would change:" >&2
	echo "$unformatted" >&2
	exit 1
fi
go vet ./...
go vet -tags lean ./cmd/glasshouse

echo "== generated eBPF code is up to date" >&2
# Kernel types are regenerated too when this is the kernel they came from;
# on another kernel the committed vmlinux.h is kept and only the objects
# and their Go bindings are regenerated and compared.
if [ "$(uname -r)" = "$(cat ebpf/include/vmlinux.h.kernel 2>/dev/null)" ]; then
	scripts/build-ebpf.sh
else
	SKIP_VMLINUX=1 scripts/build-ebpf.sh
fi
if ! git diff --exit-code --stat -- ebpf/; then
	echo "test.sh: scripts/build-ebpf.sh changed the committed eBPF output; commit the regenerated files" >&2
	exit 1
fi

echo "== go test" >&2
go test -timeout 45m -count=1 ./...

echo "== go test -race (everything but the VM suite, which TCG makes too slow for it)" >&2
go test -race -timeout 20m -count=1 $(go list ./... | grep -v '/backend/qemu$')
