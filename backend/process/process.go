// Package process is the backend that runs workloads as host processes. It
// gives no isolation — the workload shares the host's kernel, filesystem
// and network namespace — so callers must opt into it explicitly. What it
// does give is containment and accounting: each run gets its own cgroup,
// created per run, that the child is started straight into (no window
// before it is contained), that carries the memory, pids and CPU limits,
// that is killed as a whole at timeout (double-forked daemons included) and
// whose counters become the receipt's resources. Its cgroup id is the
// profiling target of the host eBPF collector.
//
// Without root it falls back to a process group and rlimits, and says so in
// the receipt's backend notes.
//
// With Config.PythonZygote, Python code runs are forked from a resident
// interpreter that has done its startup (a fork server that clones each
// child straight into its run's cgroups; see forkServer), which takes most
// of a short run's CPU time away. The run's notes say when a run was.
//
// A Backend is safe for concurrent use. Each Instance belongs to one run.
package process

import (
	"fmt"
	"log/slog"
	"strconv"
	"strings"

	"glasshouse.dev/glasshouse/core/execution"
)

// Name is the registry name of the process backend.
const Name = "process"

// Config configures the backend.
type Config struct {
	// StateDir holds per-run workspaces. Empty means /dev/shm when it is a
	// tmpfs — workspace files are then charged to the run's memory cgroup,
	// and creating and removing them costs microseconds instead of the
	// milliseconds a journaling filesystem takes — else os.TempDir().
	StateDir string
	// CgroupParent is the cgroup, relative to each hierarchy's root, under
	// which run cgroups are created. Default "glasshouse".
	CgroupParent string
	// UID and GID, when set, run every workload under that one identity
	// when Glasshouse runs as root. By default each run gets its own uid and
	// gid from RunUIDs instead, so that concurrent runs cannot signal,
	// trace or read each other. RunAsRoot keeps root (dangerous).
	UID, GID  uint32
	RunAsRoot bool
	// RunUIDs is the range per-run identities are taken from; default
	// 1000000000 and 65536 ids, far from system and subordinate ranges.
	RunUIDs UIDRange
	// PythonZygote forks Python code runs (Spec.Code) from a resident
	// interpreter that has done its startup, instead of starting Python,
	// when the run fits it (see forkServer): a long-lived owner such as the
	// server sets it. It needs root and cgroups; runs that do not fit, or
	// any run when the interpreter cannot be started, start Python.
	PythonZygote bool
	Logger       *slog.Logger
}

// UIDRange is a range of user and group ids: Base to Base+Count-1.
type UIDRange struct{ Base, Count uint32 }

// perRun reports whether each run gets its own identity.
func (c *Config) perRun() bool { return !c.RunAsRoot && c.UID == 0 && c.GID == 0 }

// Validate checks the configuration.
func (c *Config) Validate() error {
	if r := c.RunUIDs; r.Count > 0 && (r.Base == 0 || uint64(r.Base)+uint64(r.Count) > 1<<32-2) {
		return fmt.Errorf("run uid range %d+%d must lie within [1, 4294967294)", r.Base, r.Count)
	}
	if strings.Contains(c.CgroupParent, "..") || strings.HasPrefix(c.CgroupParent, "/") {
		return fmt.Errorf("cgroup parent %q must be a relative path without ..", c.CgroupParent)
	}
	return nil
}

func (c *Config) setDefaults() {
	if c.StateDir == "" {
		c.StateDir = defaultStateDir()
	}
	if c.CgroupParent == "" {
		c.CgroupParent = "glasshouse"
	}
	if c.RunUIDs.Count == 0 {
		c.RunUIDs = UIDRange{Base: 1_000_000_000, Count: 65536}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

func init() {
	execution.Register(Name, func(o execution.Options) (execution.Backend, error) {
		cfg := Config{StateDir: o.StateDir, Logger: o.Logger}
		if v := o.Settings["process.cgroup-parent"]; v != "" {
			cfg.CgroupParent = v
		}
		switch user := o.Settings["process.user"]; user {
		case "", "per-run":
		case "nobody":
			cfg.UID, cfg.GID = 65534, 65534
		case "root":
			cfg.RunAsRoot = true
		default:
			uid, gid, ok := strings.Cut(user, ":")
			u, err1 := strconv.ParseUint(uid, 10, 32)
			g, err2 := strconv.ParseUint(gid, 10, 32)
			if !ok || err1 != nil || err2 != nil || u == 0 {
				return nil, fmt.Errorf("setting process.user %q: want per-run, nobody, root or UID:GID", user)
			}
			cfg.UID, cfg.GID = uint32(u), uint32(g)
		}
		switch z := o.Settings["process.python-zygote"]; z {
		case "", "off":
		case "on":
			cfg.PythonZygote = true
		default:
			return nil, fmt.Errorf("setting process.python-zygote %q: want on or off", z)
		}
		return New(cfg)
	})
}

// Name implements execution.Backend.
func (b *Backend) Name() string { return Name }

// Capabilities implements execution.Backend.
func (b *Backend) Capabilities() execution.Capabilities {
	return execution.Capabilities{
		Isolation: execution.IsolationNone,
		Profiling: execution.ProfilingHostCgroup,
		Requirements: execution.Requirements{
			// Root gives cgroup containment and BPF network enforcement;
			// without it the backend degrades, and says so.
			Root: false,
		},
	}
}

// defaultPath is the sandbox's PATH.
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// baseEnv is the environment every workload starts from; the spec's env is
// added on top. Nothing else from the host is passed on.
func baseEnv(workspace string) map[string]string {
	return map[string]string{
		"PATH":   defaultPath,
		"HOME":   workspace,
		"TMPDIR": workspace + "/.tmp",
		"LANG":   "C.UTF-8",
	}
}
