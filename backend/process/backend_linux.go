//go:build linux

package process

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"glasshouse.dev/glasshouse/core/execution"
	"glasshouse.dev/glasshouse/internal/cgroup"
)

// Backend runs workloads as host processes in per-run cgroups.
type Backend struct {
	cfg    Config
	root   bool
	layout *cgroup.Layout
	// layoutErr says why cgroups cannot be used (not root, no cgroup2).
	layoutErr error
	// stateErr says why the state directory cannot hold workspaces.
	stateErr error
	// modes holds, per network mode, the result of preparing the cgroup
	// parent that enforces it.
	modes sync.Map // execution.Network -> func() error

	// fork is the Python fork server (Config.PythonZygote), started by the
	// first run that fits it; forkErr says why it could not be, until
	// forkRetry.
	forkMu    sync.Mutex
	fork      *forkServer
	forkErr   error
	forkRetry time.Time
}

// forkServerRetry is how long runs start Python themselves after the fork
// server failed to start.
const forkServerRetry = time.Minute

// New returns a process backend.
func New(cfg Config) (*Backend, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.setDefaults()
	closeInheritedOnExec()
	b := &Backend{cfg: cfg, root: os.Geteuid() == 0}
	if b.root && !cfg.RunAsRoot {
		uid := cfg.UID
		if cfg.perRun() {
			uid = cfg.RunUIDs.Base
		}
		b.stateErr = reachable(cfg.StateDir, uid)
	}
	if !b.root {
		b.layoutErr = errors.New("not running as root")
	} else if b.layout, b.layoutErr = cgroup.Detect(); b.layoutErr != nil {
		cfg.Logger.Warn("cgroups unavailable; runs fall back to rlimits", "err", b.layoutErr)
	}
	return b, nil
}

// closeRangeCloexec is close_range(2)'s CLOSE_RANGE_CLOEXEC.
const closeRangeCloexec = 1 << 2

// closeInheritedOnExec marks every descriptor above stderr close-on-exec.
// Go opens its own that way, but descriptors this process inherited
// without the flag (a shell's, a supervisor's) would otherwise pass on to
// every workload it starts: os/exec closes nothing at exec. The process
// itself keeps using them; only its children no longer inherit them.
func closeInheritedOnExec() {
	if unix.CloseRange(3, ^uint(0), closeRangeCloexec) == nil {
		return
	}
	ents, _ := os.ReadDir("/proc/self/fd") // kernels before 5.11
	for _, e := range ents {
		if fd, err := strconv.Atoi(e.Name()); err == nil && fd > 2 {
			unix.CloseOnExec(fd)
		}
	}
}

// Available implements execution.Backend: the process backend runs on any
// Linux host, degraded without root, as long as its state directory can
// hold workspaces the workload's user can enter.
func (b *Backend) Available() error {
	if b.stateErr != nil {
		return fmt.Errorf("%w: %v", execution.ErrBackendUnavailable, b.stateErr)
	}
	return nil
}

// defaultStateDir prefers /dev/shm when it is a tmpfs.
func defaultStateDir() string {
	var st unix.Statfs_t
	if err := unix.Statfs("/dev/shm", &st); err == nil && st.Type == unix.TMPFS_MAGIC {
		return "/dev/shm"
	}
	return os.TempDir()
}

// reachable checks that uid can traverse every directory down to dir.
func reachable(dir string, uid uint32) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	for d := abs; ; d = filepath.Dir(d) {
		st, err := os.Stat(d)
		if err != nil {
			return fmt.Errorf("state directory: %w", err)
		}
		sys, _ := st.Sys().(*syscall.Stat_t)
		if st.Mode().Perm()&0o001 == 0 && (sys == nil || sys.Uid != uid) {
			return fmt.Errorf("state directory %s is unreachable for uid %d: %s has mode %s", abs, uid, d, st.Mode().Perm())
		}
		if d == "/" {
			return nil
		}
	}
}

// Prepare creates the run's workspace and cgroup and resolves the command.
// Nothing runs until Start.
func (b *Backend) Prepare(ctx context.Context, spec execution.Spec) (execution.Instance, error) {
	if err := b.Available(); err != nil {
		return nil, fmt.Errorf("%w: %v", execution.ErrInfrastructure, err)
	}
	i := &instance{b: b, spec: spec, done: make(chan struct{})}
	ok := false
	defer func() {
		if !ok {
			_ = i.Cleanup(ctx)
		}
	}()
	if err := i.assignIdentity(); err != nil {
		return nil, fmt.Errorf("%w: %v", execution.ErrInfrastructure, err)
	}
	if err := i.prepareWorkspace(); err != nil {
		return nil, fmt.Errorf("%w: %v", execution.ErrInfrastructure, err)
	}
	env := baseEnv(i.workspace)
	for k, v := range spec.Env {
		env[k] = v
	}
	argv := spec.Argv()
	exe, err := lookPath(argv[0], env["PATH"], i.workspace)
	if err != nil {
		return nil, err
	}
	i.exe, i.argv, i.env = exe, argv, flattenEnv(env)
	if err := i.prepareContainment(); err != nil {
		return nil, fmt.Errorf("%w: %v", execution.ErrInfrastructure, err)
	}
	i.fork = b.forkServerFor(i)
	ok = true
	return i, nil
}

// forkServerFor returns the fork server to fork run i from, or nil when i
// starts its program itself: i is not Python code, does not fit the
// server, needs containment the cgroup does not give (a private network
// namespace), or has a user site directory in its workspace (the server
// started with none).
func (b *Backend) forkServerFor(i *instance) *forkServer {
	if !b.cfg.PythonZygote || i.group == nil || i.netErr != nil || i.spec.Code == "" || len(i.spec.Command) > 0 {
		return nil
	}
	for _, f := range i.spec.Files {
		if p := path.Clean(f.Path); p == ".local" || strings.HasPrefix(p, ".local/") {
			return nil
		}
	}
	b.forkMu.Lock()
	defer b.forkMu.Unlock()
	if b.fork != nil && b.fork.gone() != nil {
		b.cfg.Logger.Warn("python fork server died; starting another", "err", b.fork.gone())
		b.fork.close()
		b.fork = nil
	}
	if b.fork == nil && time.Now().After(b.forkRetry) {
		prog, err := lookPath("python3", defaultPath, "/")
		if err == nil {
			b.fork, err = startForkServer(prog, b.layout)
		}
		if err != nil {
			b.forkErr, b.forkRetry = err, time.Now().Add(forkServerRetry)
			b.cfg.Logger.Warn("python fork server unavailable; runs start python", "err", err, "retry_in", forkServerRetry)
		}
	}
	if b.fork == nil || !b.fork.fitsRun(i.exe, i.argv, i.env) {
		return nil
	}
	return b.fork
}

// Details implements execution.Detailer: the Python fork server's state.
func (b *Backend) Details() []string {
	if !b.cfg.PythonZygote {
		return []string{"python fork server: off"}
	}
	b.forkMu.Lock()
	defer b.forkMu.Unlock()
	switch {
	case b.fork != nil && b.fork.gone() == nil:
		return []string{fmt.Sprintf("python fork server: running %s as pid %d, %d runs so far", b.fork.prog, b.fork.cmd.Process.Pid, b.fork.forks())}
	case b.forkErr != nil && time.Now().Before(b.forkRetry):
		return []string{fmt.Sprintf("python fork server: unavailable until %s: %v", b.forkRetry.UTC().Format(time.RFC3339), b.forkErr)}
	}
	return []string{"python fork server: starts with the first Python run"}
}

// Close stops the Python fork server, if one runs; later runs that fit
// start a new one. Call it with no run in flight: a run forked from the
// stopped server loses its exit status and fails as an infrastructure
// error.
func (b *Backend) Close() error {
	b.forkMu.Lock()
	fs := b.fork
	b.fork = nil
	b.forkMu.Unlock()
	if fs != nil {
		fs.close()
	}
	return nil
}

// prepareWorkspace creates the workspace, owned by the workload's user, and
// fills it with the spec's files and code.
func (i *instance) prepareWorkspace() error {
	// The owner's pid in the name lets Reap tell a dead owner's leftovers
	// from a live process's runs.
	dir, err := os.MkdirTemp(i.b.cfg.StateDir, runPrefix+strconv.Itoa(os.Getpid())+"-")
	if err != nil {
		return fmt.Errorf("create workspace: %w", err)
	}
	i.workspace = dir
	i.onCleanup(func() error { return os.RemoveAll(dir) })
	files := i.spec.Files
	if i.spec.Code != "" {
		files = append(files[:len(files):len(files)], execution.File{Path: execution.CodeFile, Content: []byte(i.spec.Code)})
	}
	if err := i.chown(dir); err != nil {
		return err
	}
	if err := i.mkdirOwned(filepath.Join(dir, ".tmp")); err != nil {
		return err
	}
	for _, f := range files {
		p := filepath.Join(dir, filepath.FromSlash(path.Clean(f.Path)))
		if err := i.mkdirAllOwned(dir, filepath.Dir(p)); err != nil {
			return err
		}
		mode := os.FileMode(0o644)
		if f.Executable {
			mode = 0o755
		}
		if err := os.WriteFile(p, f.Content, mode); err != nil {
			return fmt.Errorf("write %s: %w", f.Path, err)
		}
		if err := i.chown(p); err != nil {
			return err
		}
	}
	return nil
}

func (i *instance) runsAsOther() bool { return i.b.root && !i.b.cfg.RunAsRoot }

func (i *instance) chown(p string) error {
	if !i.runsAsOther() {
		return nil
	}
	if err := os.Lchown(p, int(i.uid), int(i.gid)); err != nil {
		return fmt.Errorf("chown workspace: %w", err)
	}
	return nil
}

func (i *instance) mkdirOwned(p string) error {
	if err := os.Mkdir(p, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("create %s: %w", p, err)
	}
	return i.chown(p)
}

// mkdirAllOwned creates the directories from root down to p.
func (i *instance) mkdirAllOwned(root, p string) error {
	rel, err := filepath.Rel(root, p)
	if err != nil || rel == "." {
		return err
	}
	cur := root
	for _, part := range strings.Split(rel, string(filepath.Separator)) {
		cur = filepath.Join(cur, part)
		if err := i.mkdirOwned(cur); err != nil {
			return err
		}
	}
	return nil
}

// prepareContainment creates the run's cgroup and network guard, or notes
// the fallback when that is impossible.
func (i *instance) prepareContainment() error {
	if i.b.layoutErr != nil {
		i.containment = "rlimit"
		i.notes = append(i.notes, fmt.Sprintf("no per-run cgroup (%v): contained by a process group and rlimits; pids and CPU limits are not enforced, and processes that leave the process group are not killed at the end", i.b.layoutErr))
		return i.prepareNetworkUnprivileged()
	}
	parent, err := i.b.modeParent(i.spec.Limits.Network)
	if err != nil {
		i.netErr = err
		parent = i.b.cfg.CgroupParent
	}
	g, err := i.b.layout.Create(parent, filepath.Base(i.workspace), cgroup.Limits{
		MemoryBytes: i.spec.Limits.MemoryBytes,
		PIDs:        i.spec.Limits.PIDs,
		CPUMillis:   i.spec.Limits.CPUMillis,
	})
	if err != nil {
		return err
	}
	i.group = g
	i.containment = "cgroup"
	i.onCleanup(func() error {
		// Nothing may outlive the run: kill whatever is left before the
		// cgroup is removed.
		if pop, _ := g.Populated(); pop {
			_ = g.Kill()
			_ = g.WaitEmpty(context.Background())
		}
		return g.Remove()
	})
	return i.prepareNetwork()
}

// collect reads the spec's Collect paths from the workspace without
// following symlinks out of it and without reading anything but regular
// files, within Bounds.MaxCollectBytes in all.
func (i *instance) collect() ([]execution.File, []string) {
	if len(i.spec.Collect) == 0 {
		return nil, nil
	}
	root, err := os.Open(i.workspace)
	if err != nil {
		return nil, []string{"collect: " + err.Error()}
	}
	defer root.Close()
	var out []execution.File
	var notes []string
	budget := execution.Bounds.MaxCollectBytes
	for _, p := range i.spec.Collect {
		b, err := readBeneath(root, path.Clean(p), budget)
		switch {
		case errors.Is(err, os.ErrNotExist):
			continue
		case err != nil:
			notes = append(notes, fmt.Sprintf("collect %s: %v", p, err))
			continue
		}
		budget -= int64(len(b))
		out = append(out, execution.File{Path: p, Content: b})
	}
	sort.Slice(out, func(a, b int) bool { return out[a].Path < out[b].Path })
	return out, notes
}

func readBeneath(root *os.File, p string, max int64) ([]byte, error) {
	fd, err := unix.Openat2(int(root.Fd()), p, &unix.OpenHow{
		Flags:   unix.O_RDONLY | unix.O_NONBLOCK | unix.O_CLOEXEC | unix.O_NOFOLLOW,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_MAGICLINKS | unix.RESOLVE_NO_SYMLINKS,
	})
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil, os.ErrNotExist
		}
		return nil, err
	}
	f := os.NewFile(uintptr(fd), p)
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("not a regular file")
	}
	if st.Size() > max {
		return nil, fmt.Errorf("%d bytes exceeds the remaining collection budget of %d", st.Size(), max)
	}
	return io.ReadAll(io.LimitReader(f, max))
}

// lookPath resolves a command the way execvp would inside the sandbox: by
// the sandbox's PATH, or relative to the workspace when it has a slash.
func lookPath(name, pathEnv, workspace string) (string, error) {
	check := func(p string) error {
		st, err := os.Stat(p)
		switch {
		case errors.Is(err, os.ErrNotExist):
			return errors.New("no such file")
		case err != nil:
			return errors.Unwrap(err)
		case st.IsDir():
			return errors.New("is a directory")
		case st.Mode()&0o111 == 0:
			return errors.New("not executable")
		}
		return nil
	}
	if strings.Contains(name, "/") {
		p := name
		if !filepath.IsAbs(p) {
			p = filepath.Join(workspace, p)
		}
		if err := check(p); err != nil {
			return "", fmt.Errorf("%w: %s: %v", execution.ErrCommandNotFound, name, err)
		}
		return p, nil
	}
	for _, dir := range filepath.SplitList(pathEnv) {
		if dir == "" || !filepath.IsAbs(dir) {
			continue
		}
		p := filepath.Join(dir, name)
		if check(p) == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("%w: %s (searched PATH=%s)", execution.ErrCommandNotFound, name, pathEnv)
}

func flattenEnv(env map[string]string) []string {
	out := make([]string, 0, len(env))
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}
