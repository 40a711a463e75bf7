//go:build linux

package qemu

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
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

	// snaps are the snapshot templates by variant; hashes caches the
	// artifacts' content hashes that key them.
	snapMu sync.Mutex
	snaps  map[variant]*snapState
	hashes hashCache
	// bg runs template builds; Close cancels and waits for them.
	bgCtx    context.Context
	bgCancel context.CancelFunc
	bg       sync.WaitGroup

	// orphanQEMU, set by tests of Reap, lets QEMU outlive its owner.
	orphanQEMU bool

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
	if cfg.SnapshotDir == "" {
		cfg.SnapshotDir = filepath.Join(cfg.StateDir, "glasshouse-snapshots")
	}
	b := &Backend{cfg: cfg, log: log.With("backend", Name), boots: make(chan struct{}, cfg.MaxBoots),
		live: map[string]*machine{}, snaps: map[variant]*snapState{},
		hashes: hashCache{path: filepath.Join(cfg.SnapshotDir, "artifact-hashes.json")}}
	b.bgCtx, b.bgCancel = context.WithCancel(context.Background())
	pool, err := vmpool.New(vmpool.Config{
		Size: cfg.PoolSize, MaxBoots: cfg.PoolBoots, MaxIdle: cfg.PoolMaxIdle,
		// A pooled boot may first wait for the template build.
		BootTimeout: 2*cfg.BootTimeout + probeTimeout + time.Minute, Logger: b.log,
	}, func(ctx context.Context) (*machine, error) {
		return b.startVM(ctx, variant{memory: cfg.MemoryBytes, collector: cfg.PoolCollector}, true, cfg.PoolCollector)
	})
	if err != nil {
		return nil, err
	}
	b.pool = pool
	return b, nil
}

// startVM readies a guest of variant v: restored from a snapshot when
// snapshots are on, booted otherwise (loading the collector first if
// bootCollector). Pooled guests warm up before they are ready; cold ones
// leave it to the run.
func (b *Backend) startVM(ctx context.Context, v variant, pooled, bootCollector bool) (*machine, error) {
	accel := b.accelFor(ctx)
	memory := v.memory
	if b.cfg.Snapshot {
		s, err := b.snapshotFor(ctx, accel, v)
		if err == nil {
			m, err := b.bootVM(ctx, vmSpec{accel: accel, memoryBytes: memory, timeout: b.cfg.BootTimeout,
				net: v.net, restore: s, wakePrewarm: pooled && b.cfg.PoolPrewarm})
			if err == nil || ctx.Err() != nil {
				return m, err
			}
			b.log.Warn("restore from snapshot failed; dropping the template and booting instead", "variant", v, "err", err)
			b.dropSnapshot(v, s, err)
		} else if ctx.Err() != nil {
			return nil, fmt.Errorf("%w: %v", execution.ErrInfrastructure, err)
		}
		// A build failure was logged where it happened; boot instead.
	}
	return b.bootVM(ctx, vmSpec{accel: accel, memoryBytes: memory, timeout: b.cfg.BootTimeout,
		prewarm: pooled, eagerCollector: bootCollector, net: v.net})
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

// Warm starts filling the warm pool (when qemu.pool > 0) and, with
// snapshots on, building the snapshot template in the background.
func (b *Backend) Warm() {
	if b.cfg.Snapshot && b.cfg.PoolSize == 0 {
		b.bg.Add(1)
		go func() {
			defer b.bg.Done()
			_, _ = b.snapshotFor(b.bgCtx, b.accelFor(b.bgCtx), variant{memory: b.cfg.MemoryBytes, collector: b.cfg.PoolCollector})
		}()
	}
	b.pool.Warm()
}

// Stats returns the warm pool's counters (see vmpool.Stats), for metrics.
func (b *Backend) Stats() vmpool.Stats { return b.pool.Stats() }

// Close stops the warm pool, destroys its idle guests and stops template
// builds. Instances already prepared stay valid and must still be cleaned
// up. Templates stay on disk for the next backend.
func (b *Backend) Close() error {
	err := b.pool.Close()
	b.bgCancel()
	b.bg.Wait()
	return err
}

// Prepare implements execution.Backend: it takes a ready guest from the
// pool, or restores or boots one. Runs with network "full" get a guest
// with a network device (never a pooled one). Errors wrap
// execution.ErrBackendUnavailable or execution.ErrInfrastructure.
func (b *Backend) Prepare(ctx context.Context, spec execution.Spec) (execution.Instance, error) {
	spec = spec.WithDefaults()
	if err := b.Available(); err != nil {
		return nil, err
	}
	begin := time.Now()
	need := spec.Limits.MemoryBytes + guestOverhead
	full := spec.Limits.Network == execution.NetworkFull
	var (
		m    *machine
		warm bool
		err  error
	)
	if need <= b.cfg.MemoryBytes && !full {
		// Pooled guests have no network device.
		m, warm, err = b.pool.TryGet(ctx)
	}
	if err == nil && !warm {
		// A cold start: no Python prewarm (the run itself loads it), and
		// the collector when the run will be observed (or when pooled
		// guests have it, whose template is then shared), loaded before
		// the guest reports ready so that it does not eat into the run's
		// timeout.
		profiled := spec.Profile != profiling.Off
		v := variant{memory: b.memoryClass(need), net: full, collector: profiled || b.cfg.PoolCollector}
		m, err = b.startVM(ctx, v, false, profiled)
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
