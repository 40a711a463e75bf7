#!/usr/bin/env bash
# Measures the host eBPF collector on a syscall-heavy workload (200k
# open/close plus 2k fork/exec by default) three ways in one run:
# unprofiled, profiled, and under `strace -f` (Debian's strace). Prints the
# ratios, the event rate, the events dropped, the collector's load time and
# the exit program's own run time per event (kernel BPF statistics). The
# opens open one file again and again, as the issue's benchmark asks; a
# second pass opens 256 files in turn, so that every open is a record
# (profiled and unprofiled only).
# Needs root, gcc with static glibc (libc6-dev) and strace.
#
#   OPENS=200000 EXECS=2000 REPS=5 scripts/bench-profiling.sh
set -euo pipefail

cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "bench-profiling: needs root" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
chmod 0755 "$work"
gcc -static -O2 -o "$work/tester" audit/testdata/tester.c
go build -o "$work/benchprofile" ./audit/internal/benchprofile
"$work/benchprofile" -tester "$work/tester" -opens "${OPENS:-200000}" -execs "${EXECS:-2000}" -reps "${REPS:-5}" -burst "${BURST:-2}"
# The same with opens of 256 files in turn, none of which the kernel's open
# cache counts: what the collector costs when every open is a record.
echo
"$work/benchprofile" -tester "$work/tester" -files churn -opens "${OPENS:-200000}" -execs "${EXECS:-2000}" -reps "${REPS:-5}" \
	-strace=false -burst 0 -loads 0 -exit-cost=false
