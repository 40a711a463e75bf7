#!/usr/bin/env bash
# Boots a throwaway QEMU VM (TCG) on Debian's 6.1 cloud kernel with an
# initramfs whose /init is audit/internal/guestcheck, to check that the
# collector and the network guard load and work on the kernel a microVM
# guest runs. Prints the guest's checks; exits 0 on GUESTCHECK PASS.
#
#   KERNEL=/boot/vmlinuz-6.1.0-56-cloud-amd64 scripts/check-ebpf-guest.sh
# Needs qemu-system-x86, cpio, gcc with static glibc and linux-image-cloud-amd64.
set -euo pipefail

cd "$(dirname "$0")/.."
kernel=${KERNEL:-$(ls /boot/vmlinuz-6.1.*-cloud-amd64 2>/dev/null | sort -V | tail -1)}
[ -n "$kernel" ] && [ -r "$kernel" ] || { echo "check-ebpf-guest: no 6.1 cloud kernel in /boot (apt-get install -y linux-image-cloud-amd64)" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/root"
gcc -static -O2 -o "$work/root/tester" audit/testdata/tester.c
CGO_ENABLED=0 go build -o "$work/root/init" ./audit/internal/guestcheck
(cd "$work/root" && find . | cpio -o -H newc --quiet) >"$work/initramfs.cpio"
# microvm has no PIT or HPET to calibrate the TSC against: pass the host's.
khz=$(awk -F: '/^cpu MHz/ {printf "%d", $2 * 1000; exit}' /proc/cpuinfo)
timeout "${TIMEOUT:-300}" qemu-system-x86_64 -M microvm,acpi=on,rtc=on -accel tcg -cpu max -m 1024 -smp 1 \
	-nodefaults -no-user-config -nographic -no-reboot -serial stdio \
	-kernel "$kernel" -initrd "$work/initramfs.cpio" \
	-append "console=ttyS0 quiet panic=-1 rdinit=/init tsc=reliable no_timer_check tsc_early_khz=$khz" \
	>"$work/console.log" 2>&1 || true
grep -E '^(ok|FAIL|kernel|capabilities|receipt|GUESTCHECK)' "$work/console.log" || tail -20 "$work/console.log"
grep -q 'GUESTCHECK PASS' "$work/console.log"
