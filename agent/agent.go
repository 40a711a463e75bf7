package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"glasshouse.dev/glasshouse/core/policy"
	"glasshouse.dev/glasshouse/core/profiling"
	"glasshouse.dev/glasshouse/core/receipt"
	"glasshouse.dev/glasshouse/core/version"
)

// Errors a caller may need to tell apart.
var (
	// ErrInvalidConfig wraps Config.Validate failures; the message names
	// the field and the limit.
	ErrInvalidConfig = errors.New("invalid agent config")
	// ErrNotSupported means the agent cannot run on this OS.
	ErrNotSupported = errors.New("agent not supported on this platform")
	// ErrAlreadyRunning is returned by a second call to Run.
	ErrAlreadyRunning = errors.New("agent already running")
	// ErrStopped is returned by Reload after Run returned.
	ErrStopped = errors.New("agent stopped")
)

// Defaults and bounds of Config.
const (
	DefaultRollInterval   = 5 * time.Minute
	MinRollInterval       = time.Second
	MaxRollInterval       = 24 * time.Hour
	DefaultPolicyInterval = 200 * time.Millisecond
	MinPolicyInterval     = 10 * time.Millisecond
	MaxPolicyInterval     = 10 * time.Second
	DefaultRescanInterval = 30 * time.Second
	MinRescanInterval     = 100 * time.Millisecond
	DefaultMaxWorkloads   = 4096
	MaxMaxWorkloads       = 65536
	DefaultMaxWatches     = 65536
	DefaultMaxCgroups     = 200000
	// MaxViolationKeys bounds, per workload, the violations remembered so
	// that each is reported once; beyond it, repeats are reported again.
	MaxViolationKeys = 4096
	// emitQueue bounds the windows waiting to be written.
	emitQueue = 1024
)

// Config configures an Agent.
type Config struct {
	// Controller is the loaded collector (audit.Open). Required; the
	// caller closes it after Run returns.
	Controller profiling.Controller
	// Stats returns the collector's host-wide counters for metrics and for
	// rolling receipts' drop accounting. Optional.
	Stats func() CollectorStats
	// CgroupRoot is the cgroup2 mount. Required (the daemon detects it
	// with internal/cgroup).
	CgroupRoot string
	// Selection picks the cgroups to observe. Required.
	Selection *Selection
	// Policy is evaluated live and on every receipt; nil evaluates none.
	Policy *policy.Policy
	// Sinks receive every receipt. At least one is required; the caller
	// closes them after Run returns.
	Sinks []Sink
	// RollInterval is how often a long-lived workload gets a rolling
	// receipt. Zero means DefaultRollInterval.
	RollInterval time.Duration
	// PolicyInterval is how often workloads with new events are evaluated
	// live. Zero means DefaultPolicyInterval.
	PolicyInterval time.Duration
	// RescanInterval is how often the cgroup tree is rescanned in full as
	// a safety net behind inotify. Zero means DefaultRescanInterval.
	RescanInterval time.Duration
	// Caps bound each receipt (and so the agent's memory per workload).
	// Zero fields take receipt.DefaultCaps.
	Caps receipt.Caps
	// MaxWorkloads bounds the workloads observed at once. Zero means
	// DefaultMaxWorkloads.
	MaxWorkloads int
	// MaxWatches bounds the cgroup directories watched with inotify. Zero
	// means DefaultMaxWatches.
	MaxWatches int
	// Logger receives logs; violations are logged at Warn. Nil discards.
	Logger *slog.Logger
	// Now is the clock; nil means time.Now. Tests set it.
	Now func() time.Time
}

// Validate checks c. Errors wrap ErrInvalidConfig.
func (c *Config) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidConfig, fmt.Sprintf(format, args...))
	}
	switch {
	case c.Controller == nil:
		return bad("controller is required")
	case c.Selection == nil:
		return bad("selection is required")
	case len(c.Sinks) == 0:
		return bad("sinks: at least one is required")
	case c.CgroupRoot == "" || !filepath.IsAbs(c.CgroupRoot):
		return bad("cgroup_root %q: want an absolute path", c.CgroupRoot)
	}
	for i, s := range c.Sinks {
		if s == nil {
			return bad("sinks[%d] is nil", i)
		}
	}
	if d := c.RollInterval; d != 0 && (d < MinRollInterval || d > MaxRollInterval) {
		return bad("roll_interval %v: want %v to %v", d, MinRollInterval, MaxRollInterval)
	}
	if d := c.PolicyInterval; d != 0 && (d < MinPolicyInterval || d > MaxPolicyInterval) {
		return bad("policy_interval %v: want %v to %v", d, MinPolicyInterval, MaxPolicyInterval)
	}
	if d := c.RescanInterval; d != 0 && d < MinRescanInterval {
		return bad("rescan_interval %v: want at least %v", d, MinRescanInterval)
	}
	if n := c.MaxWorkloads; n < 0 || n > MaxMaxWorkloads {
		return bad("max_workloads %d: want 0 to %d", n, MaxMaxWorkloads)
	}
	if n := c.MaxWatches; n < 0 {
		return bad("max_watches %d: want at least 0", n)
	}
	caps := c.Caps
	if caps.Processes < 0 || caps.Files < 0 || caps.Network < 0 || caps.Argv < 0 || caps.Arg < 0 {
		return bad("caps: negative cap %+v", caps)
	}
	return nil
}

func (c Config) withDefaults() Config {
	if c.RollInterval == 0 {
		c.RollInterval = DefaultRollInterval
	}
	if c.PolicyInterval == 0 {
		c.PolicyInterval = DefaultPolicyInterval
	}
	if c.RescanInterval == 0 {
		c.RescanInterval = DefaultRescanInterval
	}
	if c.MaxWorkloads == 0 {
		c.MaxWorkloads = DefaultMaxWorkloads
	}
	if c.MaxWatches == 0 {
		c.MaxWatches = DefaultMaxWatches
	}
	d := receipt.DefaultCaps
	if c.Caps.Processes == 0 {
		c.Caps.Processes = d.Processes
	}
	if c.Caps.Files == 0 {
		c.Caps.Files = d.Files
	}
	if c.Caps.Network == 0 {
		c.Caps.Network = d.Network
	}
	if c.Caps.Argv == 0 {
		c.Caps.Argv = d.Argv
	}
	if c.Caps.Arg == 0 {
		c.Caps.Arg = d.Arg
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Agent observes selected cgroups. See the package documentation.
type Agent struct {
	cfg     Config
	log     *slog.Logger
	m       *metrics
	host    receipt.Host
	running atomic.Bool

	sel     atomic.Pointer[Selection]
	pol     atomic.Pointer[policy.Policy]
	reload  chan reloadReq
	stopped chan struct{} // closed when Run stops taking reloads

	// mu guards workloads, which the run loop changes and the live
	// evaluator and HTTP handlers read.
	mu        sync.Mutex
	workloads map[string]*workload

	statsMu    sync.Mutex
	lastEvents uint64
	lastAt     time.Time
	healthy    atomic.Bool
	lastReload atomic.Pointer[reloadStatus]
}

type reloadReq struct {
	sel  *Selection
	pol  *policy.Policy
	done chan struct{}
}

type reloadStatus struct {
	At     time.Time `json:"at"`
	Policy string    `json:"policy"`
	Select []string  `json:"select"`
}

// New returns an agent for cfg. Nothing runs until Run.
func New(cfg Config) (*Agent, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	a := &Agent{
		cfg:       cfg,
		log:       cfg.Logger,
		m:         newMetrics(cfg.Stats),
		host:      receipt.Host{Kernel: kernelRelease(), Arch: runtime.GOARCH, GlasshouseVersion: version.Version},
		reload:    make(chan reloadReq),
		stopped:   make(chan struct{}),
		workloads: map[string]*workload{},
	}
	a.sel.Store(cfg.Selection)
	a.pol.Store(cfg.Policy)
	return a, nil
}

// Reload swaps the selection and the policy (nil pol evaluates none). It
// returns once the running agent has applied them (rescanning the cgroup
// tree: workloads no longer selected get their final receipt, newly
// selected ones are observed). Before Run, it only sets them.
func (a *Agent) Reload(sel *Selection, pol *policy.Policy) error {
	if sel == nil {
		return fmt.Errorf("%w: reload with no selection", ErrInvalidConfig)
	}
	if !a.running.Load() {
		a.sel.Store(sel)
		a.pol.Store(pol)
		return nil
	}
	req := reloadReq{sel: sel, pol: pol, done: make(chan struct{})}
	select {
	case a.reload <- req:
		<-req.done
		return nil
	case <-a.stopped:
		return ErrStopped
	}
}

// ReloadFailed records a reload that could not be applied (for metrics).
func (a *Agent) ReloadFailed() { a.m.reloads.WithLabelValues("error").Inc() }

// WorkloadInfo describes a tracked workload for /workloads.
type WorkloadInfo struct {
	ID        string    `json:"id"`
	Cgroup    string    `json:"cgroup"`
	CgroupID  uint64    `json:"cgroup_id"`
	PodUID    string    `json:"pod_uid,omitempty"`
	Container string    `json:"container_id,omitempty"`
	Since     time.Time `json:"since"`
	Events    int64     `json:"events"`
	Receipts  int       `json:"receipts"`
}

// Workloads lists the tracked workloads, sorted by cgroup path.
func (a *Agent) Workloads() []WorkloadInfo {
	a.mu.Lock()
	ws := make([]*workload, 0, len(a.workloads))
	for _, w := range a.workloads {
		ws = append(ws, w)
	}
	a.mu.Unlock()
	out := make([]WorkloadInfo, 0, len(ws))
	for _, w := range ws {
		w.mu.Lock()
		info := WorkloadInfo{ID: w.id, Cgroup: w.path, CgroupID: w.cgroupID, PodUID: w.kube.PodUID,
			Container: w.kube.ContainerID, Since: w.since, Events: w.sink.total.Load(), Receipts: w.seq}
		w.mu.Unlock()
		out = append(out, info)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Cgroup < out[j].Cgroup })
	return out
}

// Handler serves GET /health (JSON; 503 until the agent has done its first
// scan, and after it stopped), GET /metrics (Prometheus) and GET
// /workloads (JSON list of tracked workloads).
func (a *Agent) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(a.m.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, r *http.Request) {
		status := http.StatusOK
		body := map[string]any{
			"status":    "ok",
			"version":   version.Version,
			"collector": a.cfg.Controller.Collector(),
			"workloads": a.trackedCount(),
			"select":    a.sel.Load().Strings(),
		}
		if p := a.pol.Load(); p != nil {
			body["policy"] = p.Name()
		}
		if err := a.cfg.Controller.Available(); err != nil {
			status, body["status"], body["error"] = http.StatusServiceUnavailable, "unavailable", err.Error()
		} else if !a.healthy.Load() {
			status, body["status"] = http.StatusServiceUnavailable, "starting"
		}
		if a.cfg.Stats != nil {
			st := a.cfg.Stats()
			body["events"], body["dropped"] = st.Events, st.Dropped
		}
		if rs := a.lastReload.Load(); rs != nil {
			body["last_reload"] = rs
		}
		writeJSON(w, status, body)
	})
	mux.HandleFunc("GET /workloads", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, a.Workloads())
	})
	return mux
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func (a *Agent) trackedCount() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.workloads)
}

// sampleRate updates the events-per-second gauge from the collector's
// counter.
func (a *Agent) sampleRate(now time.Time) {
	if a.cfg.Stats == nil {
		return
	}
	ev := a.cfg.Stats().Events
	a.statsMu.Lock()
	defer a.statsMu.Unlock()
	if !a.lastAt.IsZero() {
		if dt := now.Sub(a.lastAt).Seconds(); dt > 0 && ev >= a.lastEvents {
			a.m.eventsPerSecond.Set(float64(ev-a.lastEvents) / dt)
		}
	}
	a.lastEvents, a.lastAt = ev, now
}
