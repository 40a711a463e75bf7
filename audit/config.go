package audit

import (
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"
)

// Errors a caller may need to tell apart.
var (
	// ErrNotSupported means the host cannot run the collector (wrong OS or
	// architecture, or a missing kernel feature). The message says what.
	ErrNotSupported = errors.New("host collector not supported")
	// ErrClosed is returned after Close.
	ErrClosed = errors.New("collector closed")
	// ErrInvalidTarget means a target without a cgroup id, or a nil sink.
	ErrInvalidTarget = errors.New("invalid profiling target")
	// ErrTargetBusy means the cgroup is already observed by a session.
	ErrTargetBusy = errors.New("cgroup already observed")
	// ErrTooManySessions means every session slot is in use.
	ErrTooManySessions = errors.New("too many profiling sessions")
	// ErrInvalidConfig wraps Config.Validate failures.
	ErrInvalidConfig = errors.New("invalid collector config")
)

// Limits of Config.
const (
	DefaultRingBytes = 16 << 20
	MinRingBytes     = 64 << 10
	MaxRingBytes     = 1 << 30
	// MaxSessions is the number of sessions that can be active at once.
	MaxSessions = 4096
)

// Config configures a Collector. The zero value is valid.
type Config struct {
	// Logger receives diagnostics; nil discards them.
	Logger *slog.Logger
	// RingBytes is the size of the ring buffer shared by all sessions: a
	// power of two between MinRingBytes and MaxRingBytes. Zero means
	// DefaultRingBytes.
	RingBytes int
	// CgroupRoot is the cgroup2 mount whose socket hooks give the kernel's
	// copy of socket addresses. Empty means the first cgroup2 mount in
	// /proc/self/mountinfo; "-" disables the hooks.
	CgroupRoot string
	// RawTracepoints loads the raw tracepoint build of the syscall exit
	// program even where the kernel could run the tp_btf build (Linux 6.2
	// and later), as older kernels do. For tests and benchmarks of that
	// build. See Collector.Build.
	RawTracepoints bool
	// DetachIdle attaches the syscall programs only while a session is
	// active, detaching them after a second without one. They run on
	// every syscall of every process on the host,
	// observed or not (~9% on syscall-heavy work here), so a long-lived
	// collector that often observes nothing (a server between runs)
	// should not leave them attached. Attaching patches kernel text, which
	// is why a microVM guest, whose every run would pay for it, keeps
	// them attached (the default).
	DetachIdle bool
}

// Validate checks c. Errors wrap ErrInvalidConfig and name the field.
func (c Config) Validate() error {
	if n := c.RingBytes; n != 0 && (n < MinRingBytes || n > MaxRingBytes || n&(n-1) != 0) {
		return fmt.Errorf("%w: ring_bytes %d: want a power of two in [%d, %d]", ErrInvalidConfig, n, MinRingBytes, MaxRingBytes)
	}
	if c.CgroupRoot != "" && c.CgroupRoot != "-" && !filepath.IsAbs(c.CgroupRoot) {
		return fmt.Errorf("%w: cgroup_root %q: want an absolute path", ErrInvalidConfig, c.CgroupRoot)
	}
	return nil
}

func (c Config) withDefaults() Config {
	if c.RingBytes == 0 {
		c.RingBytes = DefaultRingBytes
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Stats are counters for metrics. They only grow, except Sessions.
type Stats struct {
	// Events is the number of records read from the kernel.
	Events uint64
	// Dropped is the number of events lost because the kernel could not
	// queue their records, over all sessions. (A record can carry many
	// events: the repeats of an open the kernel counted.)
	Dropped uint64
	// Sessions is the number of active sessions.
	Sessions int
	// DecodeErrors counts records that could not be decoded.
	DecodeErrors uint64
	// RecursionMisses counts BPF program runs the kernel skipped because
	// the program was already running on that CPU.
	RecursionMisses uint64
	// ExitRunTime and ExitRuns are the syscall exit program's own run time
	// and number of runs (every syscall of every process while it is
	// attached). The kernel counts them only while its BPF statistics are
	// on (sysctl kernel.bpf_stats_enabled, or ebpf.EnableStats), which
	// costs every run two clock reads.
	ExitRunTime time.Duration
	ExitRuns    uint64
}
