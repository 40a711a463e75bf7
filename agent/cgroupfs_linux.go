//go:build linux

package agent

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"glasshouse.dev/glasshouse/core/receipt"
)

// cgroupDir is one cgroup directory found under the cgroup2 mount.
type cgroupDir struct {
	// Path is relative to the mount, "/" for the root.
	Path string
	// ID is the cgroup2 id: the directory's inode number.
	ID uint64
}

// abs returns the absolute directory of a cgroup path.
func abs(mount, rel string) string {
	if rel == "/" {
		return mount
	}
	return mount + rel
}

// cgroupID returns the cgroup2 id of dir.
func cgroupID(dir string) (uint64, error) {
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return 0, err
	}
	return st.Ino, nil
}

// scanTree lists the cgroup directories at and below each root (relative
// paths), at most max in all. Roots that do not exist are skipped. When
// the tree holds more than max directories, the list is cut and truncated
// is true.
func scanTree(mount string, roots []string, max int) (dirs []cgroupDir, truncated bool, err error) {
	seen := map[string]bool{}
	for _, root := range roots {
		start := abs(mount, root)
		werr := filepath.WalkDir(start, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				if p == start && errors.Is(err, fs.ErrNotExist) {
					return fs.SkipAll
				}
				// A directory removed while we walk is not an error.
				if errors.Is(err, fs.ErrNotExist) {
					return nil
				}
				return err
			}
			if !d.IsDir() {
				return nil
			}
			rel := "/" + p[len(mount):]
			if p == mount {
				rel = "/"
			} else {
				rel = filepath.Clean(rel)
			}
			if seen[rel] {
				return fs.SkipDir
			}
			if len(dirs) >= max {
				truncated = true
				return fs.SkipAll
			}
			info, err := d.Info()
			if err != nil {
				return nil
			}
			st, ok := info.Sys().(*syscall.Stat_t)
			if !ok {
				return fmt.Errorf("stat %s: no inode", p)
			}
			seen[rel] = true
			dirs = append(dirs, cgroupDir{Path: rel, ID: st.Ino})
			return nil
		})
		if werr != nil {
			return dirs, truncated, fmt.Errorf("scan cgroups under %s: %w", root, werr)
		}
	}
	return dirs, truncated, nil
}

// readPopulated reads cgroup.events' populated field. The root cgroup has
// no cgroup.events and is always populated.
func readPopulated(dir string, root bool) (bool, error) {
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.events"))
	if root && errors.Is(err, fs.ErrNotExist) {
		if _, serr := os.Stat(dir); serr != nil {
			return false, serr
		}
		return true, nil
	}
	if err != nil {
		return false, err
	}
	m, err := parseKeyed(b)
	if err != nil {
		return false, err
	}
	v, ok := m["populated"]
	if !ok {
		return false, fmt.Errorf("cgroup.events: %w: no populated field", errParse)
	}
	return v != 0, nil
}

// cpuUsage reads cpu.stat's user and system time in microseconds. It
// returns zeros when the file is missing.
func cpuUsage(dir string) (user, system int64) {
	b, err := os.ReadFile(filepath.Join(dir, "cpu.stat"))
	if err != nil {
		return 0, 0
	}
	m, err := parseKeyed(b)
	if err != nil {
		return 0, 0
	}
	return m["user_usec"], m["system_usec"]
}

// treeProcs lists the processes in dir and its descendant cgroups, at
// most max.
func treeProcs(dir string, max int) []int {
	var pids []int
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return nil
		}
		b, err := os.ReadFile(filepath.Join(p, "cgroup.procs"))
		if err != nil {
			return nil
		}
		got, err := parseProcs(b, max-len(pids))
		if err != nil {
			return nil
		}
		pids = append(pids, got...)
		if len(pids) >= max {
			return fs.SkipAll
		}
		return nil
	})
	return pids
}

// bootTime is the wall-clock time of boot, for /proc start times.
func bootTime() time.Time {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		return time.Time{}
	}
	return time.Now().Add(-time.Duration(ts.Nano()))
}

// clockTicks is USER_HZ, the unit of /proc/PID/stat times (100 on every
// Linux architecture Glasshouse runs on).
const clockTicks = 100

// readProc describes a running process from /proc for seeding an
// aggregator. caps bounds argv. start is its start time.
func readProc(pid int, caps receipt.Caps, boot time.Time) (p receipt.Process, start time.Time, err error) {
	dir := "/proc/" + strconv.Itoa(pid)
	statb, err := os.ReadFile(dir + "/stat")
	if err != nil {
		return p, start, err
	}
	st, err := parseProcStat(statb)
	if err != nil {
		return p, start, err
	}
	p.PID, p.PPID = int64(pid), st.PPID
	start = boot.Add(time.Duration(st.StartTicks) * time.Second / clockTicks)
	if b, err := os.ReadFile(dir + "/status"); err == nil {
		if uid, err := parseStatusUID(b); err == nil {
			p.UID = uid
		}
	}
	// A kernel thread or a process that exited has no exe; keep what we have.
	p.Exe, _ = os.Readlink(dir + "/exe")
	p.Cwd, _ = os.Readlink(dir + "/cwd")
	if b, err := readBounded(dir+"/cmdline", 1<<20); err == nil {
		p.Argv = splitCmdline(b, caps.Argv)
	}
	return p, start, nil
}

// readBounded reads at most max bytes of a file.
func readBounded(path string, max int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, max))
}
