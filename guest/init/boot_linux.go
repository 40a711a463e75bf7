//go:build linux

package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Paths inside the guest.
const (
	rootDir      = "/rootfs"
	workspaceDir = "/workspace" // inside rootDir
	cgroupRoot   = "/sys/fs/cgroup"
	rootSerial   = "ghroot"
	workSerial   = "ghwork"
)

func readCmdline() string {
	b, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		// /proc is not mounted yet this early; mount it just for this.
		_ = os.MkdirAll("/proc", 0o555)
		if unix.Mount("proc", "/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "") == nil {
			b, _ = os.ReadFile("/proc/cmdline")
		}
	}
	return string(b)
}

// openConsole makes /dev/console init's stdio. The initramfs carries no
// device nodes, so devtmpfs is mounted first.
func openConsole() io.Writer {
	_ = os.MkdirAll("/dev", 0o755)
	_ = unix.Mount("devtmpfs", "/dev", "devtmpfs", unix.MS_NOSUID, "mode=0755")
	f, err := os.OpenFile("/dev/console", os.O_RDWR, 0)
	if err != nil {
		return io.Discard
	}
	for fd := 0; fd <= 2; fd++ {
		_ = unix.Dup2(int(f.Fd()), fd)
	}
	return f
}

type mountPoint struct {
	source, target, fstype string
	flags                  uintptr
	data                   string
}

func mountAll(ms []mountPoint) error {
	for _, m := range ms {
		if err := os.MkdirAll(m.target, 0o755); err != nil && !errors.Is(err, unix.EROFS) {
			return fmt.Errorf("mkdir %s: %w", m.target, err)
		}
		if err := unix.Mount(m.source, m.target, m.fstype, m.flags, m.data); err != nil && !errors.Is(err, unix.EBUSY) {
			return fmt.Errorf("mount %s on %s: %w", m.fstype, m.target, err)
		}
	}
	return nil
}

const nosuidNodevNoexec = unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC

func mountEarly() error {
	return mountAll([]mountPoint{
		{"proc", "/proc", "proc", nosuidNodevNoexec, ""},
		{"sysfs", "/sys", "sysfs", nosuidNodevNoexec, ""},
		{"cgroup2", cgroupRoot, "cgroup2", nosuidNodevNoexec, ""},
	})
}

// loadModules loads the modules listed in order, one path (relative to the
// list's directory) a line, optionally prefixed "tag:" to load it only when
// tags[tag] is set. Modules already loaded are fine; failures are logged
// and the boot goes on, since the device wait that follows reports what is
// really missing.
func loadModules(log *slog.Logger, list string, tags map[string]bool) {
	f, err := os.Open(list)
	if err != nil {
		log.Debug("no module list", "err", err)
		return
	}
	defer f.Close()
	dir := filepath.Dir(list)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		name := strings.TrimSpace(sc.Text())
		if name == "" || strings.HasPrefix(name, "#") {
			continue
		}
		if tag, rest, ok := strings.Cut(name, ":"); ok {
			if !tags[tag] {
				continue
			}
			name = rest
		}
		if err := loadModule(filepath.Join(dir, name)); err != nil {
			log.Warn("load module", "module", name, "err", err)
		}
	}
}

func loadModule(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := unix.FinitModule(int(f.Fd()), "", 0); err != nil && !errors.Is(err, unix.EEXIST) {
		return err
	}
	return nil
}

// findDisk returns the block device whose virtio serial is serial.
func findDisk(serial string) (string, error) {
	entries, err := os.ReadDir("/sys/block")
	if err != nil {
		return "", err
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join("/sys/block", e.Name(), "serial"))
		if err == nil && strings.TrimSpace(string(b)) == serial {
			return "/dev/" + e.Name(), nil
		}
	}
	return "", os.ErrNotExist
}

func waitDisk(ctx context.Context, serial string) (string, error) {
	for {
		dev, err := findDisk(serial)
		if err == nil {
			if _, err = os.Stat(dev); err == nil {
				return dev, nil
			}
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("no disk with serial %q: %w", serial, ctx.Err())
		case <-time.After(2 * time.Millisecond):
		}
	}
}

func waitPath(ctx context.Context, p string) error {
	for {
		if _, err := os.Stat(p); err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("no disk %s: %w", p, ctx.Err())
		case <-time.After(2 * time.Millisecond):
		}
	}
}

// findDisks returns the rootfs and workspace block devices: the ones named
// on the command line, or those whose virtio serials are rootSerial and
// workSerial.
func findDisks(ctx context.Context, rootDev, workDev string) (string, string, error) {
	var err error
	if rootDev == "" {
		if rootDev, err = waitDisk(ctx, rootSerial); err != nil {
			return "", "", err
		}
	} else if err = waitPath(ctx, rootDev); err != nil {
		return "", "", err
	}
	if workDev == "" {
		if workDev, err = waitDisk(ctx, workSerial); err != nil {
			return "", "", err
		}
	} else if err = waitPath(ctx, workDev); err != nil {
		return "", "", err
	}
	return rootDev, workDev, nil
}

// mountRootfs mounts the read-only rootfs on rootDir, with a minimal /dev,
// /proc, /sys and /tmp for the workload.
func mountRootfs(rootDev string) error {
	if err := mountAll([]mountPoint{
		{rootDev, rootDir, "ext4", unix.MS_RDONLY | unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOATIME, "noload"},
		{"proc", rootDir + "/proc", "proc", nosuidNodevNoexec, "hidepid=2"},
		{"sysfs", rootDir + "/sys", "sysfs", nosuidNodevNoexec | unix.MS_RDONLY, ""},
		{"tmpfs", rootDir + "/dev", "tmpfs", unix.MS_NOSUID | unix.MS_NOEXEC, "mode=0755,size=64k"},
		{"tmpfs", rootDir + "/tmp", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=1777"},
	}); err != nil {
		return err
	}
	if err := populateDev(rootDir + "/dev"); err != nil {
		return err
	}
	return mountAll([]mountPoint{
		{"tmpfs", rootDir + "/dev/shm", "tmpfs", nosuidNodevNoexec, "mode=1777"},
		{"devpts", rootDir + "/dev/pts", "devpts", unix.MS_NOSUID | unix.MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620"},
	})
}

// mountWorkspace mounts the per-run workspace disk on the rootfs's
// /workspace.
func mountWorkspace(workDev string) error {
	return mountAll([]mountPoint{
		{workDev, rootDir + workspaceDir, "ext4", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOATIME, "noinit_itable"},
	})
}

// populateDev creates the device nodes a workload may use, and nothing
// else: the guest's disks and console stay out of its reach.
func populateDev(dir string) error {
	nodes := []struct {
		name         string
		major, minor uint32
	}{{"null", 1, 3}, {"zero", 1, 5}, {"full", 1, 7}, {"random", 1, 8}, {"urandom", 1, 9}, {"tty", 5, 0}}
	old := unix.Umask(0)
	defer unix.Umask(old)
	for _, n := range nodes {
		if err := unix.Mknod(filepath.Join(dir, n.name), unix.S_IFCHR|0o666, int(unix.Mkdev(n.major, n.minor))); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("mknod /dev/%s: %w", n.name, err)
		}
	}
	for name, target := range map[string]string{"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0",
		"stdout": "/proc/self/fd/1", "stderr": "/proc/self/fd/2", "ptmx": "pts/ptmx"} {
		if err := os.Symlink(target, filepath.Join(dir, name)); err != nil && !errors.Is(err, os.ErrExist) {
			return fmt.Errorf("symlink /dev/%s: %w", name, err)
		}
	}
	return nil
}
