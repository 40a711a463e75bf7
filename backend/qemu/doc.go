// Package qemu is the "qemu" execution backend: one fresh QEMU microVM
// (-M microvm) per run, booting Debian's cloud kernel with guest/init as PID
// 1, a read-only Python rootfs and a per-run workspace disk, talking to the
// host over virtio-serial (see guest/transport). It isolates at the
// "microvm" level and observes runs from inside the guest
// (execution.ProfilingGuest): instances implement execution.SelfProfiled
// when the guest reports a collector.
//
// KVM is used only when a probe boot actually reaches guest/init on this
// host; the result is cached per host (kernel, QEMU binary, guest
// artifacts) in the user cache directory. Everywhere else the backend runs
// under TCG emulation. Receipts say which in backend.accel.
//
// Guests are restored from a snapshot of a booted template rather than
// booted (snapshot_linux.go): the template's RAM is a file each guest maps
// copy-on-write, and each restored guest gets fresh entropy and the host's
// clock before it serves a run. Templates are built at first use and keyed
// by the content of the artifacts and QEMU and by the machine's
// configuration.
//
// A warm pool (backend/vmpool, setting qemu.pool=N) keeps N guests ready
// and waiting on their transport; a run takes one and a replacement is
// restored in the background. A guest serves exactly one run. Backend.Stats
// exposes the pool's counters; Backend.Close shuts the pool down.
// Backend.Reap removes what VMs of crashed processes left behind.
//
// Guest artifacts (vmlinuz, initramfs.cpio, rootfs.ext4) are built by
// scripts/build-guest.sh and scripts/build-minimal-rootfs.sh into
// $GLASSHOUSE_ARTIFACTS; see Config for where they are looked up and for
// every setting. The backend is safe for concurrent use; every instance must
// be cleaned up by its caller.
package qemu

// Name is the registry name of the backend.
const Name = "qemu"
