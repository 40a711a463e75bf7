// Package cgroup creates, limits, observes, kills and removes the per-run
// cgroups that contain workloads on the host.
//
// It supports both layouts Linux hosts use: unified (cgroup2 only, limits
// set through cgroup2 controllers) and hybrid (cgroup2 mounted at
// /sys/fs/cgroup/unified without controllers, v1 controllers beside it).
// On both, every run gets a cgroup2 directory: its id scopes eBPF
// collection, the child is cloned straight into it (CLONE_INTO_CGROUP) and
// cgroup.kill ends the whole tree. On hybrid hosts the v1 memory, pids and
// cpu controllers carry the limits; see StartInGroup for how the child
// enters them without a window.
//
// A Layout is safe for concurrent use; a Group belongs to one run.
package cgroup

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// ErrUnsupported means the host has no usable cgroup2 hierarchy.
var ErrUnsupported = errors.New("cgroup2 is not available")

// Layout is where the host mounts its cgroup hierarchies.
type Layout struct {
	// Unified is the cgroup2 mount point.
	Unified string
	// V1 maps a v1 controller ("memory", "pids", "cpu", "cpuacct") to its
	// mount point. It is empty on unified hosts.
	V1 map[string]string
}

// v1Controllers are the v1 controllers Detect reports on hybrid hosts.
var v1Controllers = []string{"memory", "pids", "cpu", "cpuacct"}

// joinedControllers are the v1 controllers a run gets directories in on
// hybrid hosts: the ones that carry its limits and CPU share. cpuacct is
// not among them: a run's CPU time comes from its cgroup2 cpu.stat, which
// the kernel keeps without any controller, so a cpuacct directory would
// cost every run a mkdir, two migrations and an rmdir for nothing.
var joinedControllers = []string{"memory", "pids", "cpu"}

// Detect reads /proc/self/mountinfo and returns the host's layout.
func Detect() (*Layout, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("detect cgroups: %w", err)
	}
	defer f.Close()
	return parseMountinfo(bufio.NewScanner(f))
}

func parseMountinfo(sc *bufio.Scanner) (*Layout, error) {
	l := &Layout{V1: map[string]string{}}
	for sc.Scan() {
		// id parent major:minor root mountpoint opts [optional...] - fstype source superopts
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		fields, tail := strings.Fields(pre), strings.Fields(post)
		if len(fields) < 5 || len(tail) < 3 {
			continue
		}
		mnt := unescapeMount(fields[4])
		switch tail[0] {
		case "cgroup2":
			if l.Unified == "" {
				l.Unified = mnt
			}
		case "cgroup":
			for _, opt := range strings.Split(tail[2], ",") {
				for _, c := range v1Controllers {
					if opt == c {
						if _, dup := l.V1[c]; !dup {
							l.V1[c] = mnt
						}
					}
				}
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read mountinfo: %w", err)
	}
	if l.Unified == "" {
		return nil, ErrUnsupported
	}
	return l, nil
}

// unescapeMount undoes the octal escapes mountinfo uses for spaces and the
// like.
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// Hybrid reports whether limits are set through v1 controllers.
func (l *Layout) Hybrid() bool { return len(l.V1) > 0 }

// Limits are applied to a new group. Zero fields are not limited.
type Limits struct {
	MemoryBytes int64
	PIDs        int64
	// CPUMillis is CPU bandwidth in thousandths of a core.
	CPUMillis int64
}
