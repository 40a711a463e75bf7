//go:build linux

package qemu

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"

	"glasshouse.dev/glasshouse/backend/vmpool"
	"glasshouse.dev/glasshouse/core/execution"
	"glasshouse.dev/glasshouse/core/profiling"
)

// guestOverhead is guest RAM beyond the workload's memory limit: kernel,
// init, page cache for the rootfs.
const guestOverhead = 160 << 20

// Backend is the QEMU microVM backend.
type Backend struct {
	cfg  Config
	log  *slog.Logger
	pool *vmpool.Pool[*machine]
	// boots is a semaphore bounding concurrent boots.
	boots chan struct{}

	accelOnce sync.Once
	accel     string
	accelWhy  string

	versionOnce sync.Once
	version     string

	// live are the machines that exist, by id; pooled ones are not yet
	// assigned to a run.
	liveMu sync.Mutex
	live   map[string]*machine

	// onPrepare, when set by tests, sees every prepared instance.
	onPrepare func(spec *execution.Spec, i *instance)
}

func init() {
	execution.Register(Name, func(opts execution.Options) (execution.Backend, error) {
		cfg, err := configFrom(opts)
		if err != nil {
			return nil, err
		}
		return New(cfg, opts.Logger)
	})
}

// New returns a QEMU backend. It starts nothing: the pool fills on Warm or
// on the first Prepare.
func New(cfg Config, log *slog.Logger) (*Backend, error) {
	if cfg.StateDir == "" {
		cfg.StateDir = os.TempDir()
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	b := &Backend{cfg: cfg, log: log.With("backend", Name), boots: make(chan struct{}, cfg.MaxBoots),
		live: map[string]*machine{}}
	pool, err := vmpool.New(vmpool.Config{
		Size: cfg.PoolSize, MaxBoots: cfg.PoolBoots, MaxIdle: cfg.PoolMaxIdle,
		BootTimeout: cfg.BootTimeout + probeTimeout, Logger: b.log,
	}, func(ctx context.Context) (*machine, error) {
		return b.bootVM(ctx, vmSpec{accel: b.accelFor(ctx), memoryBytes: cfg.MemoryBytes, timeout: cfg.BootTimeout,
			prewarm: true, eagerCollector: cfg.PoolCollector})
	})
	if err != nil {
		return nil, err
	}
	b.pool = pool
	return b, nil
}

// Name implements execution.Backend.
func (b *Backend) Name() string { return Name }

// Capabilities implements execution.Backend.
func (b *Backend) Capabilities() execution.Capabilities {
	return execution.Capabilities{
		Isolation: execution.IsolationMicroVM,
		Profiling: execution.ProfilingGuest,
		Requirements: execution.Requirements{
			Binaries: []string{b.cfg.Binary, "mkfs.ext4"},
		},
	}
}

// Available implements execution.Backend: it needs QEMU, mkfs.ext4 and the
// guest artifacts. Errors wrap execution.ErrBackendUnavailable.
func (b *Backend) Available() error {
	for _, bin := range []string{b.cfg.Binary, "mkfs.ext4"} {
		if _, err := exec.LookPath(bin); err != nil {
			pkg := "qemu-system-x86"
			if bin == "mkfs.ext4" {
				pkg = "e2fsprogs"
			}
			return fmt.Errorf("%w: %s not found (apt-get install %s)", execution.ErrBackendUnavailable, bin, pkg)
		}
	}
	_, err := findArtifacts(b.cfg.ArtifactsDir)
	return err
}

// Version implements execution.Versioned: QEMU's version.
func (b *Backend) Version() string {
	b.versionOnce.Do(func() {
		out, err := exec.Command(b.cfg.Binary, "--version").Output()
		if err != nil {
			b.version = "unknown"
			return
		}
		line, _, _ := bytes.Cut(out, []byte("\n"))
		b.version = strings.TrimSpace(strings.TrimPrefix(string(line), "QEMU emulator version "))
	})
	return b.version
}

// Warm starts filling the warm pool (when qemu.pool > 0).
func (b *Backend) Warm() { b.pool.Warm() }

// Stats returns the warm pool's counters (see vmpool.Stats), for metrics.
func (b *Backend) Stats() vmpool.Stats { return b.pool.Stats() }

// Close stops the warm pool and destroys its idle guests. Instances
// already prepared stay valid and must still be cleaned up.
func (b *Backend) Close() error { return b.pool.Close() }

// Prepare implements execution.Backend: it takes a booted guest from the
// pool or boots one. Errors wrap execution.ErrInvalidSpec (a network the
// guest cannot offer), execution.ErrBackendUnavailable or
// execution.ErrInfrastructure.
func (b *Backend) Prepare(ctx context.Context, spec execution.Spec) (execution.Instance, error) {
	spec = spec.WithDefaults()
	if spec.Limits.Network == execution.NetworkFull {
		return nil, fmt.Errorf("%w: limits.network: %q is not supported by the qemu backend (its guests have no network device); use none or loopback",
			execution.ErrInvalidSpec, spec.Limits.Network)
	}
	if err := b.Available(); err != nil {
		return nil, err
	}
	begin := time.Now()
	need := spec.Limits.MemoryBytes + guestOverhead
	var (
		m    *machine
		warm bool
		err  error
	)
	if need <= b.cfg.MemoryBytes {
		m, warm, err = b.pool.TryGet(ctx)
	}
	if err == nil && !warm {
		// A cold start: no Python prewarm (the run itself loads it), and
		// the collector only when the run will be observed, loaded before
		// the guest reports ready so that it does not eat into the run's
		// timeout.
		m, err = b.bootVM(ctx, vmSpec{accel: b.accelFor(ctx), memoryBytes: max(need, b.cfg.MemoryBytes),
			timeout: b.cfg.BootTimeout, eagerCollector: spec.Profile != profiling.Off})
	}
	if err != nil {
		return nil, fmt.Errorf("prepare vm: %w", err)
	}
	m.assigned.Store(true)
	i := newInstance(b, spec, m, warm)
	i.phases.Prepare = time.Since(begin)
	if b.onPrepare != nil {
		b.onPrepare(&spec, i)
	}
	return i, nil
}

func (b *Backend) untrack(m *machine) {
	b.liveMu.Lock()
	delete(b.live, m.id)
	b.liveMu.Unlock()
}

// pooled returns the ids of machines that exist but serve no run yet:
// idle or booting pool guests.
func (b *Backend) pooled() map[string]bool {
	b.liveMu.Lock()
	defer b.liveMu.Unlock()
	out := map[string]bool{}
	for id, m := range b.live {
		if !m.assigned.Load() {
			out[id] = true
		}
	}
	return out
}
