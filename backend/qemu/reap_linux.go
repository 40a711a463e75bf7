//go:build linux

package qemu

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"glasshouse.dev/glasshouse/core/execution"
)

// Reap implements execution.Reaper: it kills the QEMU processes and
// removes the VM directories (sockets, workspace disks) and half-built
// snapshot templates of processes that no longer exist, such as a server
// killed with SIGKILL. Their names carry the owner's pid (vmDirPrefix,
// buildPrefix); those of live processes are left alone. It returns the
// number of directories removed.
func (b *Backend) Reap(ctx context.Context) (int, error) {
	var dirs []string
	var errs []error
	for _, d := range []struct{ parent, prefix string }{{b.cfg.StateDir, vmDirPrefix}, {b.cfg.SnapshotDir, buildPrefix}} {
		entries, err := os.ReadDir(d.parent)
		if err != nil {
			if !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, err)
			}
			continue
		}
		for _, e := range entries {
			if e.IsDir() && execution.OwnerDead(e.Name(), d.prefix) {
				dirs = append(dirs, filepath.Join(d.parent, e.Name()))
			}
		}
	}
	if len(dirs) == 0 {
		return 0, errors.Join(errs...)
	}
	// QEMU dies with its owner (Pdeathsig), but a process that outlived it
	// still holds the directory's sockets and disks.
	if err := killQEMUs(ctx, b.cfg.Binary, dirs); err != nil {
		errs = append(errs, err)
	}
	n := 0
	for _, d := range dirs {
		if err := os.RemoveAll(d); err != nil {
			errs = append(errs, fmt.Errorf("reap %s: %w", d, err))
			continue
		}
		n++
	}
	if n > 0 {
		b.log.Info("reaped the leftovers of dead processes", "dirs", n)
	}
	return n, errors.Join(errs...)
}

// reapWait bounds the wait for killed QEMU processes to exit.
const reapWait = 10 * time.Second

// killQEMUs kills the processes running the QEMU binary whose command line
// names one of dirs, and waits until they are gone.
func killQEMUs(ctx context.Context, binary string, dirs []string) error {
	bin, err := exec.LookPath(binary)
	if err != nil {
		return nil // no QEMU here, none to kill
	}
	if r, err := filepath.EvalSymlinks(bin); err == nil {
		bin = r
	}
	procs, err := os.ReadDir("/proc")
	if err != nil {
		return err
	}
	var pids []int
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil {
			continue
		}
		exe, err := os.Readlink(filepath.Join("/proc", p.Name(), "exe"))
		if err != nil || strings.TrimSuffix(exe, " (deleted)") != bin {
			continue
		}
		cmd, err := os.ReadFile(filepath.Join("/proc", p.Name(), "cmdline"))
		if err != nil {
			continue
		}
		for _, d := range dirs {
			if strings.Contains(string(cmd), d+"/") {
				pids = append(pids, pid)
				_ = unix.Kill(pid, unix.SIGKILL)
				break
			}
		}
	}
	deadline := time.After(reapWait)
	for _, pid := range pids {
		for unix.Kill(pid, 0) == nil && !zombie(pid) {
			select {
			case <-ctx.Done():
				return fmt.Errorf("reap: qemu %d: %w", pid, ctx.Err())
			case <-deadline:
				return fmt.Errorf("reap: qemu %d did not exit within %s of SIGKILL", pid, reapWait)
			case <-time.After(5 * time.Millisecond):
			}
		}
	}
	return nil
}

// zombie reports whether pid has exited and waits for its parent to reap
// it.
func zombie(pid int) bool {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return true
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && i+2 < len(s) && s[i+2] == 'Z'
}
