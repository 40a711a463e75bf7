#!/usr/bin/env bash
# Measure the qemu backend in one run: cold start to result (restored from
# a snapshot template, and booted as the baseline), warm-pool latency (p50,
# p95) with restored and with booted guests, each phase (VMM start, kernel
# to init or restore, init to Python, Python run, teardown) and the host
# memory (RSS, PSS, private) of an idle pooled VM, with host
# /usr/bin/python3 measured in the same run. Each figure names the
# accelerator it came from, and the load average is printed before and
# after (the machine may be shared).
#
#   scripts/bench-vm.sh                      # auto: KVM if a probe boot works, else TCG
#   BENCH_ACCEL=tcg BENCH_WARM=50 scripts/bench-vm.sh
#
# Needs the guest artifacts (scripts/build-guest.sh) and qemu-system-x86.
# Environment: BENCH_ACCEL (auto|kvm|tcg), BENCH_COLD (default 3),
# BENCH_WARM (default 20), BENCH_POOL (default 2), BENCH_BOOTS=0 to skip
# the booted baselines, GLASSHOUSE_ARTIFACTS.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
echo "host: $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg), $(qemu-system-x86_64 --version | head -n1)"
GLASSHOUSE_BENCH_VM=1 go test -count=1 -timeout 60m -run '^TestVMBench$' -v ./backend/qemu/ |
	grep -vE '^(=== RUN|--- PASS|PASS|ok )'
