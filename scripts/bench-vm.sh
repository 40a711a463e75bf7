#!/usr/bin/env bash
# Measure the qemu backend in one run: cold start to result, warm-pool
# latency (p50, p95), each boot phase (VMM start, kernel to init, init to
# Python, Python run) and the host RSS of an idle pooled VM, with host
# python3 measured in the same run as the baseline. Each figure names the
# accelerator it came from.
#
#   scripts/bench-vm.sh                      # auto: KVM if a probe boot works, else TCG
#   BENCH_ACCEL=tcg BENCH_WARM=50 scripts/bench-vm.sh
#
# Needs the guest artifacts (scripts/build-guest.sh) and qemu-system-x86.
# Environment: BENCH_ACCEL (auto|kvm|tcg), BENCH_COLD (default 3),
# BENCH_WARM (default 20), BENCH_POOL (default 2), GLASSHOUSE_ARTIFACTS.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
echo "host: $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg), $(qemu-system-x86_64 --version | head -n1)"
GLASSHOUSE_BENCH_VM=1 go test -count=1 -timeout 60m -run '^TestVMBench$' -v ./backend/qemu/ |
	grep -vE '^(=== RUN|--- PASS|PASS|ok )'
