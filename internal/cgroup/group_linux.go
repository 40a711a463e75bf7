//go:build linux

package cgroup

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Group is one run's cgroup: a cgroup2 directory and, on hybrid hosts, a
// directory in each v1 controller. Release it with Remove.
type Group struct {
	layout *Layout
	dir    string
	fd     *os.File
	id     uint64
	// v1 maps a controller to the run's directory in it.
	v1 map[string]string
	// spawnPIDsPeak is the v1 pids peak right after the spawning thread
	// left the group (see Stats).
	spawnPIDsPeak int64
	limits        Limits
	// created lists directories in creation order, removed in reverse.
	created []string
}

var enableOnce sync.Map // cgroup2 dir -> error from enabling controllers

// Create makes the group parent/name (parent is created if needed) with
// the given limits. On failure nothing is left behind.
func (l *Layout) Create(parent, name string, lim Limits) (g *Group, err error) {
	if strings.Contains(name, "/") || name == "" || name == "." || name == ".." {
		return nil, fmt.Errorf("create cgroup: invalid name %q", name)
	}
	g = &Group{layout: l, v1: map[string]string{}, limits: lim}
	defer func() {
		if err != nil {
			err = errors.Join(err, g.Remove())
			g = nil
		}
	}()
	parentDir := filepath.Join(l.Unified, parent)
	if err := os.MkdirAll(parentDir, 0o755); err != nil {
		return nil, fmt.Errorf("create cgroup parent: %w", err)
	}
	if !l.Hybrid() && (lim.MemoryBytes > 0 || lim.PIDs > 0 || lim.CPUMillis > 0) {
		if err := enableControllers(l.Unified, parent); err != nil {
			return nil, err
		}
	}
	g.dir = filepath.Join(parentDir, name)
	if err := g.mkdir(g.dir); err != nil {
		return nil, err
	}
	fd, err := os.OpenFile(g.dir, os.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open cgroup: %w", err)
	}
	g.fd = fd
	var st unix.Stat_t
	if err := unix.Fstat(int(fd.Fd()), &st); err != nil {
		return nil, fmt.Errorf("stat cgroup: %w", err)
	}
	g.id = st.Ino
	if l.Hybrid() {
		return g, g.createV1(parent, name, lim)
	}
	return g, g.limitV2(lim)
}

func enableControllers(unified, parent string) error {
	key := filepath.Join(unified, parent)
	v, _ := enableOnce.LoadOrStore(key, sync.OnceValue(func() error {
		dir := unified
		for _, part := range append([]string{""}, strings.Split(parent, "/")...) {
			dir = filepath.Join(dir, part)
			avail, err := os.ReadFile(filepath.Join(dir, "cgroup.controllers"))
			if err != nil {
				return fmt.Errorf("enable cgroup controllers: %w", err)
			}
			var want []string
			for _, c := range []string{"memory", "pids", "cpu"} {
				if strings.Contains(" "+strings.TrimSpace(string(avail))+" ", " "+c+" ") {
					want = append(want, "+"+c)
				}
			}
			if len(want) > 0 {
				if err := writeFile(dir, "cgroup.subtree_control", strings.Join(want, " ")); err != nil {
					return fmt.Errorf("enable cgroup controllers in %s: %w", dir, err)
				}
			}
		}
		return nil
	}))
	return v.(func() error)()
}

func (g *Group) mkdir(dir string) error {
	if err := os.Mkdir(dir, 0o755); err != nil {
		return fmt.Errorf("create cgroup: %w", err)
	}
	g.created = append(g.created, dir)
	return nil
}

func (g *Group) createV1(parent, name string, lim Limits) error {
	done := map[string]string{}
	for _, c := range joinedControllers {
		mnt, ok := g.layout.V1[c]
		if !ok {
			continue
		}
		dir := filepath.Join(mnt, parent, name)
		if prev, shared := done[mnt]; shared {
			g.v1[c] = prev // co-mounted controllers, e.g. cpu,cpuacct
			continue
		}
		if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
			return fmt.Errorf("create %s cgroup parent: %w", c, err)
		}
		if err := g.mkdir(dir); err != nil {
			return err
		}
		g.v1[c], done[mnt] = dir, dir
	}
	if dir, ok := g.v1["memory"]; ok && lim.MemoryBytes > 0 {
		v := strconv.FormatInt(lim.MemoryBytes, 10)
		if err := writeFile(dir, "memory.limit_in_bytes", v); err != nil {
			return err
		}
		// Without swap accounting the file is absent; with it, swap must
		// not extend the limit.
		if err := writeFile(dir, "memory.memsw.limit_in_bytes", v); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	if dir, ok := g.v1["pids"]; ok && lim.PIDs > 0 {
		// One more task than the workload may have: the spawning thread is
		// counted while it forks (see StartInGroup).
		if err := writeFile(dir, "pids.max", strconv.FormatInt(lim.PIDs+1, 10)); err != nil {
			return err
		}
	}
	if dir, ok := g.v1["cpu"]; ok && lim.CPUMillis > 0 {
		if err := writeFile(dir, "cpu.cfs_period_us", "100000"); err != nil {
			return err
		}
		if err := writeFile(dir, "cpu.cfs_quota_us", strconv.FormatInt(lim.CPUMillis*100, 10)); err != nil {
			return err
		}
	}
	return nil
}

func (g *Group) limitV2(lim Limits) error {
	if lim.MemoryBytes > 0 {
		if err := writeFile(g.dir, "memory.max", strconv.FormatInt(lim.MemoryBytes, 10)); err != nil {
			return err
		}
		if err := writeFile(g.dir, "memory.swap.max", "0"); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		// An OOM ends the whole run, not just the largest process.
		if err := writeFile(g.dir, "memory.oom.group", "1"); err != nil {
			return err
		}
	}
	if lim.PIDs > 0 {
		if err := writeFile(g.dir, "pids.max", strconv.FormatInt(lim.PIDs, 10)); err != nil {
			return err
		}
	}
	if lim.CPUMillis > 0 {
		if err := writeFile(g.dir, "cpu.max", fmt.Sprintf("%d 100000", lim.CPUMillis*100)); err != nil {
			return err
		}
	}
	return nil
}

// ID is the cgroup2 id (the directory's inode number), the value
// bpf_get_current_cgroup_id returns for tasks in the group.
func (g *Group) ID() uint64 { return g.id }

// Path is the group's cgroup2 directory.
func (g *Group) Path() string { return g.dir }

// StartInGroup starts cmd inside the group, so that its first instruction
// already runs contained. The child is cloned straight into the cgroup2
// directory (CLONE_INTO_CGROUP). On hybrid hosts, v1 controllers have no
// such flag, so the child is forked from an OS thread that first moved
// itself into the group's v1 directories — a child inherits the cgroups of
// the thread that forks it — and moved itself back afterwards. That thread
// is dedicated to it (see spawner): locked for its life, with its home
// directories' tasks files kept open.
//
// The thread moves itself by writing "0" to the tasks files: the kernel
// then migrates just the calling thread without taking the global
// threadgroup lock, whose RCU grace period would otherwise cost every run
// milliseconds. If moving back fails the thread is retired rather than
// reused from inside the run's cgroups.
//
// cmd's I/O must be *os.File values or nil, so that Start spawns no
// goroutines of its own.
func (g *Group) StartInGroup(cmd *exec.Cmd) error {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.UseCgroupFD = true
	cmd.SysProcAttr.CgroupFD = int(g.fd.Fd())
	if len(g.v1) == 0 {
		return cmd.Start()
	}
	if err := spawnInV1(g, cmd); err != nil {
		return err
	}
	return g.spawned()
}

// spawned makes the v1 pids limit exact once the spawning thread has left,
// and notes the peak it left behind.
func (g *Group) spawned() error {
	if dir, ok := g.v1["pids"]; ok {
		g.spawnPIDsPeak, _ = readInt(filepath.Join(dir, "pids.peak"))
		if g.limits.PIDs > 0 {
			// The thread has left: the workload gets exactly its limit.
			if err := writeFile(dir, "pids.max", strconv.FormatInt(g.limits.PIDs, 10)); err != nil {
				return err
			}
		}
	}
	return nil
}

// ForkTarget describes the group to a process that forks a child into it
// itself, as StartInGroup does for Go commands (a fork server): the v1
// tasks files its forking thread writes "0" to before the fork (and its
// home's, from V1Home, after), and the cgroup2 directory for clone3's
// CLONE_INTO_CGROUP. Call Forked once the child exists.
func (g *Group) ForkTarget() (tasks []string, cgroupFD int) {
	for _, h := range g.hierarchies() {
		tasks = append(tasks, filepath.Join(h.dir, "tasks"))
	}
	return tasks, int(g.fd.Fd())
}

// v1Dir is the group's directory in one v1 hierarchy, and a controller of
// that hierarchy.
type v1Dir struct{ controller, dir string }

// hierarchies lists the group's v1 directories, one per hierarchy
// (co-mounted controllers share one), in joinedControllers order.
func (g *Group) hierarchies() []v1Dir {
	var out []v1Dir
	seen := map[string]bool{}
	for _, c := range joinedControllers {
		if dir, ok := g.v1[c]; ok && !seen[dir] {
			seen[dir] = true
			out = append(out, v1Dir{c, dir})
		}
	}
	return out
}

// Forked finishes a start from outside (see ForkTarget) as StartInGroup
// does its own: the forking thread has left.
func (g *Group) Forked() error { return g.spawned() }

// Kill sends SIGKILL to every process in the group, including daemons that
// left their parent's session, and returns once the kernel accepted it.
func (g *Group) Kill() error {
	if err := writeFile(g.dir, "cgroup.kill", "1"); err == nil {
		return nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return err
	}
	// Kernels before 5.14 have no cgroup.kill: kill what is listed until
	// nothing is left; forks in between are caught by the next pass.
	for i := 0; i < 100; i++ {
		pids, err := g.procs()
		if err != nil || len(pids) == 0 {
			return err
		}
		for _, pid := range pids {
			_ = unix.Kill(pid, unix.SIGKILL)
		}
	}
	return errors.New("kill cgroup: processes keep appearing")
}

func (g *Group) procs() ([]int, error) {
	b, err := os.ReadFile(filepath.Join(g.dir, "cgroup.procs"))
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, f := range strings.Fields(string(b)) {
		if pid, err := strconv.Atoi(f); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// Populated reports whether any process is left in the group.
func (g *Group) Populated() (bool, error) {
	m, err := readKeyed(filepath.Join(g.dir, "cgroup.events"))
	if err != nil {
		return false, fmt.Errorf("read cgroup.events: %w", err)
	}
	return m["populated"] != 0, nil
}

// WaitEmpty waits until no process is left in the group.
func (g *Group) WaitEmpty(ctx context.Context) error {
	delay := 50 * time.Microsecond
	for {
		pop, err := g.Populated()
		if err != nil || !pop {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for cgroup to empty: %w", ctx.Err())
		case <-time.After(delay):
		}
		if delay < 10*time.Millisecond {
			delay *= 2
		}
	}
}

// Stats are what the group's processes consumed.
type Stats struct {
	CPUUser, CPUSystem time.Duration
	MemoryPeakBytes    int64
	PIDsPeak           int64
	OOMKills           int64
}

// Stats reads the group's accounting. Counters a kernel lacks stay zero.
func (g *Group) Stats() (Stats, error) {
	var s Stats
	cpu, err := readKeyed(filepath.Join(g.dir, "cpu.stat"))
	if err != nil {
		return s, fmt.Errorf("read cpu.stat: %w", err)
	}
	s.CPUUser = time.Duration(cpu["user_usec"]) * time.Microsecond
	s.CPUSystem = time.Duration(cpu["system_usec"]) * time.Microsecond
	if !g.layout.Hybrid() {
		s.MemoryPeakBytes, _ = readInt(filepath.Join(g.dir, "memory.peak"))
		s.PIDsPeak, _ = readInt(filepath.Join(g.dir, "pids.peak"))
		if ev, err := readKeyed(filepath.Join(g.dir, "memory.events")); err == nil {
			s.OOMKills = ev["oom_kill"]
		}
		return s, nil
	}
	if dir, ok := g.v1["memory"]; ok {
		s.MemoryPeakBytes, _ = readInt(filepath.Join(dir, "memory.max_usage_in_bytes"))
		if oc, err := readKeyed(filepath.Join(dir, "memory.oom_control")); err == nil {
			s.OOMKills = oc["oom_kill"]
		}
	}
	if dir, ok := g.v1["pids"]; ok {
		s.PIDsPeak, _ = readInt(filepath.Join(dir, "pids.peak"))
		// The spawning thread was counted while it forked: a peak no higher
		// than the count at that moment was reached then, and includes it.
		// (A workload that later reaches exactly that count again is
		// reported one lower.)
		if s.PIDsPeak <= g.spawnPIDsPeak && s.PIDsPeak > 1 {
			s.PIDsPeak--
		}
	}
	return s, nil
}

// Remove deletes the group's directories in reverse order of creation. The
// group must be empty (see Kill and WaitEmpty). It is idempotent.
func (g *Group) Remove() error {
	var errs []error
	if g.fd != nil {
		errs = append(errs, g.fd.Close())
		g.fd = nil
	}
	for i := len(g.created) - 1; i >= 0; i-- {
		dir := g.created[i]
		err := rmdirRetry(dir)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("remove cgroup %s: %w", dir, err))
		}
	}
	g.created = nil
	return errors.Join(errs...)
}

// rmdirRetry removes a cgroup directory, retrying briefly while the kernel
// finishes releasing exited tasks (EBUSY).
func rmdirRetry(dir string) error {
	var err error
	for i := 0; i < 50; i++ {
		err = unix.Rmdir(dir)
		if err == nil || !errors.Is(err, unix.EBUSY) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	if err == nil {
		return nil
	}
	return &os.PathError{Op: "rmdir", Path: dir, Err: err}
}
