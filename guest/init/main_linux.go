//go:build linux

// Command init is the PID 1 of Glasshouse microVM guests, for QEMU and
// Firecracker alike. Built static (CGO_ENABLED=0) and packed into the guest
// initramfs with the kernel modules it loads, it:
//
//  1. mounts /dev, /proc, /sys and cgroup2, and loads the modules listed in
//     /lib/modules/load.order (virtio transports and drivers, in order);
//  2. mounts the read-only Python rootfs (virtio-blk serial "ghroot") and the
//     writable per-run workspace (serial "ghwork") under /rootfs;
//  3. opens the transport named on the kernel command line
//     (glasshouse.port=NAME for a virtio-serial port, glasshouse.vsock=PORT
//     for AF_VSOCK), sends Hello and waits for the host's Welcome;
//  4. in a snapshot template, starts a Python zygote (zygote_linux.go) and
//     waits for the host to save the VM and wake a copy of it;
//  5. receives input files and one Run request, runs it chrooted in /rootfs
//     as the unprivileged sandbox user inside a cgroup carrying the run's
//     limits, streams stdout, stderr and profiling events back, reports the
//     exit status and resource use, returns collected files;
//  6. syncs and powers the VM off.
//
// Any failure of init itself ends the VM (the kernel panics when PID 1
// exits, and panic=-1 reboots, which QEMU's -no-reboot turns into an exit),
// so the host sees an infrastructure failure rather than a hang.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"glasshouse.dev/glasshouse/guest/transport"
)

func main() {
	initStart := boottime()
	if os.Getpid() == 1 {
		reexecWithProc(initStart)
		if v, ok := os.LookupEnv(startEnv); ok {
			if n, err := strconv.ParseInt(v, 10, 64); err == nil {
				initStart = n
			}
		}
	}
	console := openConsole()
	opts := parseCmdline(readCmdline())
	level := slog.LevelInfo
	if opts.debug {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(console, &slog.HandlerOptions{Level: level}))
	if os.Getpid() != 1 {
		log.Error("glasshouse init must run as PID 1")
		os.Exit(2)
	}
	err := run(log, opts, initStart)
	if err != nil {
		log.Error("glasshouse init failed", "err", err)
	}
	powerOff(log)
}

// startEnv carries init's start time across its re-exec.
const startEnv = "GLASSHOUSE_INIT_START_NS"

// reexecWithProc mounts /proc and re-executes init when /proc was missing.
// Package initializers (cilium/ebpf's probes of the kernel among them) read
// /proc before main runs; PID 1 starts without it, so they must run again
// once it is there.
func reexecWithProc(initStart int64) {
	if _, err := os.Stat("/proc/self/exe"); err == nil {
		return
	}
	_ = os.MkdirAll("/proc", 0o555)
	if err := unix.Mount("proc", "/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return
	}
	env := []string{startEnv + "=" + strconv.FormatInt(initStart, 10)}
	// On failure init goes on without the re-exec; the collector reports
	// what it misses.
	_ = unix.Exec("/proc/self/exe", os.Args, env)
}

// run boots the guest, serves one run and returns when the VM may power off.
func run(log *slog.Logger, opts cmdline, initStart int64) error {
	if err := mountEarly(); err != nil {
		return err
	}
	log.Info("glasshouse init started", "uptime_ms", initStart/1e6)
	loadModules(log, "/lib/modules/load.order", map[string]bool{"vsock": opts.vsockPort != 0, "net": opts.net})
	log.Debug("modules loaded", "uptime_ms", boottime()/1e6)

	ctx, cancel := context.WithTimeout(context.Background(), opts.deviceWait)
	defer cancel()
	conn, err := openTransport(ctx, opts)
	if err != nil {
		return err
	}
	defer conn.Close()
	log.Debug("transport open", "uptime_ms", boottime()/1e6)
	rootDev, workDev, err := findDisks(ctx, opts.rootDev, opts.workDev)
	if err == nil {
		log.Debug("disks found", "root", rootDev, "workspace", workDev)
		err = mountRootfs(rootDev)
	}
	if err == nil {
		// A snapshot template mounts its blank workspace too: each guest
		// restored from it gets a copy of that disk as the template left
		// it, which matches what the restored kernel has cached.
		err = mountWorkspace(workDev)
	}
	if err != nil {
		sendError(conn, transport.CodeInternal, err)
		return err
	}
	log.Debug("disks mounted", "uptime_ms", boottime()/1e6)
	cg, err := setupCgroup()
	if err != nil {
		sendError(conn, transport.CodeInternal, err)
		return err
	}
	log.Debug("cgroup ready", "uptime_ms", boottime()/1e6)
	if opts.prewarm {
		prewarm(log)
		log.Debug("python prewarmed", "uptime_ms", boottime()/1e6)
	}
	clock := &guestClock{}
	collector := &lazyCollector{log: log, clock: clock}
	hello := transport.Hello{Kernel: kernelRelease(), InitStartNS: initStart, Collector: collectorName}
	var collectorErr error
	if opts.eagerCollector {
		_, collectorErr = collector.get()
	} else {
		collectorErr = collector.precheck()
	}
	if collectorErr != nil {
		hello.Collector, hello.CollectorError = "", collectorErr.Error()
	}
	hello.ReadyNS = boottime()
	hctx, hcancel := context.WithTimeout(context.Background(), opts.helloWait)
	defer hcancel()
	welcome, err := transport.GuestHandshake(hctx, conn, hello)
	if err != nil {
		return err
	}
	log.Info("glasshouse init ready", "uptime_ms", boottime()/1e6)
	s := &session{log: log, conn: conn, cg: cg, collector: collector, clock: clock, net: opts.net}
	if opts.snapshot {
		if opts.zygote {
			// Started after the handshake, which bounds the boot, and
			// before the host saves the VM.
			s.zygote = startZygote(log)
			log.Debug("python zygote", "ready", s.zygote != nil, "uptime_ms", boottime()/1e6)
		}
		if welcome.Version < 2 {
			return fmt.Errorf("snapshot boot: the host speaks transport version %d, waking needs 2", welcome.Version)
		}
		// The host saves the VM here; every guest restored from it goes on
		// from this point, with the Wake frame as its first input.
		if err := awaitWake(log, conn, clock, s.warmup); err != nil {
			return err
		}
	}
	return s.serve()
}

func openTransport(ctx context.Context, opts cmdline) (*transport.Conn, error) {
	switch {
	case opts.port != "":
		rw, err := transport.OpenVirtioSerial(ctx, opts.port)
		if err != nil {
			return nil, err
		}
		return transport.NewConn(rw, opts.maxFrame), nil
	case opts.vsockPort != 0:
		l, err := transport.ListenVsock(opts.vsockPort)
		if err != nil {
			return nil, err
		}
		defer l.Close()
		// The host connects in once the VM runs; it may take as long as a
		// pool keeps the guest waiting, so no deadline but the host's.
		c, err := transport.AcceptOne(context.Background(), l)
		if err != nil {
			return nil, err
		}
		return transport.NewConn(c, opts.maxFrame), nil
	}
	return nil, fmt.Errorf("no transport on the kernel command line (glasshouse.port= or glasshouse.vsock=)")
}

func sendError(conn *transport.Conn, code string, err error) {
	msg := err.Error()
	if len(msg) > transport.MaxMessageLen {
		msg = msg[:transport.MaxMessageLen]
	}
	_ = conn.Send(&transport.Error{Code: code, Message: msg})
}

// boottime is CLOCK_BOOTTIME in nanoseconds: time since the kernel started.
func boottime() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		return 0
	}
	return ts.Nano()
}

func kernelRelease() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return ""
	}
	return unix.ByteSliceToString(u.Release[:])
}

// powerOff syncs and turns the VM off. If the VMM ignores the request, a
// reboot follows, which -no-reboot turns into an exit; if that fails too,
// init exits and the kernel panics, which panic=-1 turns into a reboot.
func powerOff(log *slog.Logger) {
	unix.Sync()
	if err := unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF); err != nil {
		log.Error("power off", "err", err)
	}
	time.Sleep(time.Second)
	_ = unix.Reboot(unix.LINUX_REBOOT_CMD_RESTART)
	os.Exit(1)
}

// prewarm runs the interpreter once, as the sandbox user in the read-only
// rootfs, to load it and the common standard library into the page cache.
// It writes nothing: the rootfs is read-only and its cwd is /.
func prewarm(log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/usr/bin/python3", "-c", "import encodings.utf_8, json, os, re, sys")
	cmd.Env = []string{"PATH=" + defaultPath, "LANG=C.UTF-8"}
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Chroot:     rootDir,
		Credential: &syscall.Credential{Uid: sandboxUID, Gid: sandboxUID, Groups: []uint32{}},
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		log.Warn("prewarm python", "err", err, "output", string(out))
	}
}
