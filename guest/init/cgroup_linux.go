//go:build linux

package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"glasshouse.dev/glasshouse/guest/transport"
)

// cgroup is the workload's cgroup2 directory in the guest.
type cgroup struct {
	dir string
	fd  int
	id  uint64
	// missing lists controllers the guest kernel would not enable.
	missing []string
	// base is the usage excluded from the run's (see excludeUsage).
	base transport.Exit
}

func setupCgroup() (*cgroup, error) {
	var missing []string
	for _, c := range []string{"memory", "pids", "cpu", "io"} {
		if err := os.WriteFile(filepath.Join(cgroupRoot, "cgroup.subtree_control"), []byte("+"+c), 0); err != nil {
			missing = append(missing, c)
		}
	}
	cg, err := newCgroup("workload")
	if err != nil {
		return nil, err
	}
	cg.missing = missing
	return cg, nil
}

// newCgroup creates (or opens) the cgroup name under the root.
func newCgroup(name string) (*cgroup, error) {
	dir := filepath.Join(cgroupRoot, name)
	if err := os.Mkdir(dir, 0o755); err != nil && !os.IsExist(err) {
		return nil, fmt.Errorf("create %s cgroup: %w", name, err)
	}
	fd, err := unix.Open(dir, unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s cgroup: %w", name, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("stat %s cgroup: %w", name, err)
	}
	return &cgroup{dir: dir, fd: fd, id: st.Ino}, nil
}

// remove kills what is left in the cgroup and removes it.
func (c *cgroup) remove() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := c.waitEmpty(ctx)
	unix.Close(c.fd)
	if rerr := unix.Rmdir(c.dir); err == nil {
		err = rerr
	}
	return err
}

// apply writes the run's limits and returns notes on those it could not
// enforce. Memory and pids limits are required.
func (c *cgroup) apply(r *transport.Run) ([]string, error) {
	var notes []string
	for _, m := range c.missing {
		notes = append(notes, "guest cgroup controller "+m+" unavailable")
	}
	write := func(file, value string) error {
		return os.WriteFile(filepath.Join(c.dir, file), []byte(value), 0)
	}
	if err := write("memory.max", strconv.FormatInt(r.MemoryBytes, 10)); err != nil {
		return notes, fmt.Errorf("set memory.max: %w", err)
	}
	_ = write("memory.swap.max", "0")
	// Keep the OOM killer's choice within the run: a group kill ends the
	// whole tree, as a host cgroup would.
	_ = write("memory.oom.group", "1")
	if err := write("pids.max", strconv.FormatInt(r.PIDs, 10)); err != nil {
		return notes, fmt.Errorf("set pids.max: %w", err)
	}
	if r.CPUMillis > 0 {
		const period = 100000
		quota := r.CPUMillis * period / 1000
		if err := write("cpu.max", fmt.Sprintf("%d %d", max(quota, 1000), period)); err != nil {
			notes = append(notes, "cpu limit not enforced: "+err.Error())
		}
	}
	return notes, nil
}

// kill ends every process in the cgroup.
func (c *cgroup) kill() {
	if err := os.WriteFile(filepath.Join(c.dir, "cgroup.kill"), []byte("1"), 0); err == nil {
		return
	}
	// Kernels before 5.14 have no cgroup.kill.
	for i := 0; i < 100; i++ {
		pids := c.pids()
		if len(pids) == 0 {
			return
		}
		for _, p := range pids {
			_ = unix.Kill(p, unix.SIGKILL)
		}
	}
}

func (c *cgroup) pids() []int {
	b, err := os.ReadFile(filepath.Join(c.dir, "cgroup.procs"))
	if err != nil {
		return nil
	}
	var out []int
	for _, f := range strings.Fields(string(b)) {
		if n, err := strconv.Atoi(f); err == nil {
			out = append(out, n)
		}
	}
	return out
}

// populated reports whether any process is left in the cgroup.
func (c *cgroup) populated() bool {
	v, ok := keyed(filepath.Join(c.dir, "cgroup.events"))["populated"]
	return !ok || v != 0
}

// waitEmpty kills and waits until the cgroup holds no process.
func (c *cgroup) waitEmpty(ctx context.Context) error {
	for c.populated() {
		c.kill()
		select {
		case <-ctx.Done():
			return fmt.Errorf("workload cgroup did not empty: %w", ctx.Err())
		case <-time.After(2 * time.Millisecond):
		}
	}
	return nil
}

func (c *cgroup) readInt(file string) int64 {
	b, err := os.ReadFile(filepath.Join(c.dir, file))
	if err != nil {
		return 0
	}
	n, _ := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	return n
}

// excludeUsage leaves the CPU time and I/O used so far out of what usage
// reports: a zygote's startup is not part of the run that resumes it.
// (Memory stays: the interpreter's pages are the run's too.)
func (c *cgroup) excludeUsage() {
	var e transport.Exit
	c.usage(&e)
	c.base = e
}

// usage fills the resource fields of e from the cgroup's statistics.
func (c *cgroup) usage(e *transport.Exit) {
	c.statistics(e)
	e.CPUUserUS -= c.base.CPUUserUS
	e.CPUSystemUS -= c.base.CPUSystemUS
	e.ReadBytes -= c.base.ReadBytes
	e.WriteBytes -= c.base.WriteBytes
}

// statistics fills the resource fields of e with the cgroup's counters as
// they stand.
func (c *cgroup) statistics(e *transport.Exit) {
	cpu := keyed(filepath.Join(c.dir, "cpu.stat"))
	e.CPUUserUS, e.CPUSystemUS = cpu["user_usec"], cpu["system_usec"]
	e.MemoryPeakBytes = c.readInt("memory.peak")
	if e.MemoryPeakBytes == 0 {
		e.MemoryPeakBytes = c.readInt("memory.max_usage_in_bytes")
	}
	if b, err := os.ReadFile(filepath.Join(c.dir, "io.stat")); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			for _, f := range strings.Fields(line) {
				k, v, _ := strings.Cut(f, "=")
				n, _ := strconv.ParseInt(v, 10, 64)
				switch k {
				case "rbytes":
					e.ReadBytes += n
				case "wbytes":
					e.WriteBytes += n
				}
			}
		}
	}
}

// oomKills is the number of processes the OOM killer ended in the cgroup.
func (c *cgroup) oomKills() int64 {
	return keyed(filepath.Join(c.dir, "memory.events"))["oom_kill"]
}

// keyed parses a cgroup "key value" file.
func keyed(path string) map[string]int64 {
	out := map[string]int64{}
	f, err := os.Open(path)
	if err != nil {
		return out
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		if n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64); err == nil {
			out[k] = n
		}
	}
	return out
}
