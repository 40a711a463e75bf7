package server

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"time"

	"glasshouse.dev/glasshouse/core/execution"
	"glasshouse.dev/glasshouse/core/profiling"
	"glasshouse.dev/glasshouse/core/receipt"
	"glasshouse.dev/glasshouse/store"
)

// Limits bound what one request may ask for. Each must be positive and
// within execution.Bounds; zero fields take DefaultLimits.
type Limits struct {
	// MaxBodyBytes bounds a POST /run body; larger bodies get 413.
	MaxBodyBytes int64
	// MaxBatchBodyBytes bounds a POST /runs body.
	MaxBatchBodyBytes int64
	// MaxBatch bounds the number of runs in one batch.
	MaxBatch int

	MaxCodeBytes  int
	MaxFiles      int
	MaxFileBytes  int64
	MaxFilesBytes int64
	MaxEnv        int
	MaxEnvBytes   int
	MaxStdinBytes int

	// MaxTimeout caps timeout_ms; DefaultTimeout applies when it is 0.
	MaxTimeout     time.Duration
	DefaultTimeout time.Duration

	MaxMemoryBytes int64
	MaxPIDs        int64
	MaxCPUMillis   int64
	MaxOutputBytes int64

	// MaxPolicyBytes bounds the policy field (a pack name or inline YAML).
	MaxPolicyBytes int
	// MaxExpectBytes bounds expect.stdout.
	MaxExpectBytes int
}

// DefaultLimits are the limits of a server started without overrides.
var DefaultLimits = Limits{
	MaxBodyBytes:      8 << 20,
	MaxBatchBodyBytes: 32 << 20,
	MaxBatch:          256,
	MaxCodeBytes:      1 << 20,
	MaxFiles:          64,
	MaxFileBytes:      4 << 20,
	MaxFilesBytes:     6 << 20,
	MaxEnv:            64,
	MaxEnvBytes:       32 << 10,
	MaxStdinBytes:     1 << 20,
	MaxTimeout:        5 * time.Minute,
	DefaultTimeout:    30 * time.Second,
	MaxMemoryBytes:    4 << 30,
	MaxPIDs:           4096,
	MaxCPUMillis:      64000,
	MaxOutputBytes:    16 << 20,
	MaxPolicyBytes:    64 << 10,
	MaxExpectBytes:    1 << 20,
}

func (l *Limits) setDefaults() {
	d := DefaultLimits
	def := func(v *int64, dv int64) {
		if *v == 0 {
			*v = dv
		}
	}
	defInt := func(v *int, dv int) {
		if *v == 0 {
			*v = dv
		}
	}
	def(&l.MaxBodyBytes, d.MaxBodyBytes)
	def(&l.MaxBatchBodyBytes, d.MaxBatchBodyBytes)
	defInt(&l.MaxBatch, d.MaxBatch)
	defInt(&l.MaxCodeBytes, d.MaxCodeBytes)
	defInt(&l.MaxFiles, d.MaxFiles)
	def(&l.MaxFileBytes, d.MaxFileBytes)
	def(&l.MaxFilesBytes, d.MaxFilesBytes)
	defInt(&l.MaxEnv, d.MaxEnv)
	defInt(&l.MaxEnvBytes, d.MaxEnvBytes)
	defInt(&l.MaxStdinBytes, d.MaxStdinBytes)
	if l.MaxTimeout == 0 {
		l.MaxTimeout = d.MaxTimeout
	}
	if l.DefaultTimeout == 0 {
		l.DefaultTimeout = min(d.DefaultTimeout, l.MaxTimeout)
	}
	def(&l.MaxMemoryBytes, d.MaxMemoryBytes)
	def(&l.MaxPIDs, d.MaxPIDs)
	def(&l.MaxCPUMillis, d.MaxCPUMillis)
	def(&l.MaxOutputBytes, d.MaxOutputBytes)
	defInt(&l.MaxPolicyBytes, d.MaxPolicyBytes)
	defInt(&l.MaxExpectBytes, d.MaxExpectBytes)
}

func (l *Limits) validate() error {
	b := execution.Bounds
	checks := []struct {
		name   string
		v, max int64
	}{
		{"max body bytes", l.MaxBodyBytes, 1 << 30},
		{"max batch body bytes", l.MaxBatchBodyBytes, 4 << 30},
		{"max batch", int64(l.MaxBatch), 100000},
		{"max code bytes", int64(l.MaxCodeBytes), int64(b.MaxCodeBytes)},
		{"max files", int64(l.MaxFiles), int64(b.MaxFiles)},
		{"max file bytes", l.MaxFileBytes, b.MaxFileBytes},
		{"max files bytes", l.MaxFilesBytes, b.MaxFilesBytes},
		{"max env", int64(l.MaxEnv), int64(b.MaxEnv)},
		{"max env bytes", int64(l.MaxEnvBytes), int64(b.MaxEnvBytes)},
		{"max stdin bytes", int64(l.MaxStdinBytes), int64(b.MaxStdinBytes)},
		{"max timeout", int64(l.MaxTimeout), int64(b.Timeout)},
		{"default timeout", int64(l.DefaultTimeout), int64(l.MaxTimeout)},
		{"max memory bytes", l.MaxMemoryBytes, b.MaxMemoryBytes},
		{"max pids", l.MaxPIDs, b.MaxPIDs},
		{"max cpu millis", l.MaxCPUMillis, b.MaxCPUMillis},
		{"max output bytes", l.MaxOutputBytes, b.MaxOutputBytes},
		{"max policy bytes", int64(l.MaxPolicyBytes), 16 << 20},
		{"max expect bytes", int64(l.MaxExpectBytes), b.MaxOutputBytes},
	}
	for _, c := range checks {
		if c.v <= 0 || c.v > c.max {
			return fmt.Errorf("server limits: %s %d is outside [1, %d]", c.name, c.v, c.max)
		}
	}
	if l.MaxMemoryBytes < b.MinMemoryBytes {
		return fmt.Errorf("server limits: max memory bytes %d is below %d", l.MaxMemoryBytes, b.MinMemoryBytes)
	}
	return nil
}

// PolicyLoader turns the request's policy field into an evaluator. core/policy
// provides one; a server without it refuses requests that name a policy.
type PolicyLoader interface {
	// Load loads a built-in pack by name (a comma-separated list allowed).
	Load(ref string) (execution.Evaluator, error)
	// Parse compiles inline YAML.
	Parse(name string, src []byte) (execution.Evaluator, error)
}

// SignalsFunc derives the response's training signals from a receipt, the
// run's stdout and the request's expected stdout (nil when none was given).
type SignalsFunc func(r *receipt.Receipt, stdout []byte, expectStdout *string) (any, error)

// SignFunc signs a receipt into a DSSE envelope.
type SignFunc func(r *receipt.Receipt) ([]byte, error)

// Config configures a Server.
type Config struct {
	// Backends are the candidate backends, usually one of each registered.
	Backends []execution.Backend
	// Backend is "auto" (default: the strongest usable isolating backend,
	// or any usable one with AllowUnisolated) or a backend's name.
	Backend string
	// AllowUnisolated permits backends with isolation "none" (process).
	AllowUnisolated bool

	// Profiler is the shared host profiler, loaded once; nil when there is
	// none, with ProfilerErr saying why.
	Profiler    profiling.Controller
	ProfilerErr error
	// ProfilerDropped, when set, reports the profiler's total lost events
	// for /metrics.
	ProfilerDropped func() uint64
	// DefaultProfile applies when a request gives no profile; default
	// best-effort.
	DefaultProfile profiling.Mode

	// Store keeps receipts. Required.
	Store store.Store
	// Node names this server in the store; default the hostname.
	Node string
	// Retention prunes old receipts every RetentionEvery (default 1m).
	Retention      store.Retention
	RetentionEvery time.Duration

	// Tokens authenticates requests; nil admits everyone as tenant
	// LocalTenant (only sensible on loopback).
	Tokens *Tokens

	// MaxConcurrency is the number of runs executing at once; default
	// DefaultMaxConcurrency. MaxQueue is how many more may wait; default 64.
	MaxConcurrency int
	MaxQueue       int
	Limits         Limits

	// Policies resolves the request's policy field; nil refuses it.
	Policies PolicyLoader
	// Signals derives training signals; nil leaves them null.
	Signals SignalsFunc
	// Sign produces ?format=dsse envelopes; nil when there is no key.
	Sign SignFunc

	// ShutdownGrace is how long Serve lets in-flight runs finish after its
	// context ends before killing them; default 30s.
	ShutdownGrace time.Duration

	// Logger receives structured logs. Nil discards.
	Logger *slog.Logger
}

// DefaultMaxConcurrency is MaxConcurrency's default: two runs per CPU. A
// run holds its slot while off the CPU too (process start and exit, cgroup
// teardown, flushing its profile, storing its receipt): with one slot per
// CPU, scripts/loadtest.sh left the CPUs idle 14% of the time; with two,
// 2%, and throughput rose 10%.
func DefaultMaxConcurrency() int { return 2 * runtime.NumCPU() }

// LocalTenant is the only tenant of a server without tokens.
const LocalTenant = "local"

// Validate checks c and fills its defaults.
func (c *Config) Validate() error {
	if c.Store == nil {
		return errors.New("server config: no store")
	}
	if c.Backend == "" {
		c.Backend = "auto"
	}
	if c.MaxConcurrency == 0 {
		c.MaxConcurrency = DefaultMaxConcurrency()
	}
	if c.MaxConcurrency < 1 || c.MaxConcurrency > 4096 {
		return fmt.Errorf("server config: max concurrency %d is outside [1, 4096]", c.MaxConcurrency)
	}
	if c.MaxQueue == 0 {
		c.MaxQueue = 64
	}
	if c.MaxQueue < 0 || c.MaxQueue > 1<<20 {
		return fmt.Errorf("server config: max queue %d is outside [0, %d]", c.MaxQueue, 1<<20)
	}
	c.Limits.setDefaults()
	if err := c.Limits.validate(); err != nil {
		return err
	}
	if c.DefaultProfile == "" {
		c.DefaultProfile = profiling.BestEffort
	}
	if _, err := profiling.ParseMode(string(c.DefaultProfile)); err != nil {
		return fmt.Errorf("server config: default profile: %w", err)
	}
	if c.Node == "" {
		c.Node, _ = os.Hostname()
		if c.Node == "" {
			c.Node = "glasshouse"
		}
	}
	if c.RetentionEvery == 0 {
		c.RetentionEvery = time.Minute
	}
	if c.Retention.MaxAge < 0 || c.Retention.MaxCount < 0 || c.RetentionEvery < 0 {
		return errors.New("server config: retention must not be negative")
	}
	if c.ShutdownGrace == 0 {
		c.ShutdownGrace = 30 * time.Second
	}
	if c.ShutdownGrace < 0 {
		return errors.New("server config: shutdown grace must not be negative")
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}
