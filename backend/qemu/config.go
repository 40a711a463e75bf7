package qemu

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"glasshouse.dev/glasshouse/core/execution"
)

// Config configures the QEMU backend. New reads it from
// execution.Options.Settings ("qemu.<name>=<value>"):
//
//	qemu.pool=N              idle booted guests to keep (default 0: every run boots)
//	qemu.pool_boots=N        concurrent background boots (default 1)
//	qemu.pool_max_idle=DUR   recycle pooled guests idle longer (default 10m)
//	qemu.pool_collector=BOOL pooled guests load the eBPF collector before they are
//	                         ready (default true; false saves CPU when few runs are profiled)
//	qemu.max_boots=N         concurrent boots, pooled or not (default: CPU count)
//	qemu.accel=auto|kvm|tcg  accelerator (default auto: KVM only if a probe boot works)
//	qemu.binary=PATH         QEMU binary (default qemu-system-x86_64)
//	qemu.memory=SIZE         guest RAM of pooled guests (default 1GiB); a run whose
//	                         memory limit needs more gets a guest of its own, with
//	                         the first power-of-two multiple of it that fits
//	qemu.cpus=N              guest vCPUs (default 1)
//	qemu.tcg_tb=MiB          TCG translation cache size (default 0: QEMU's own)
//	qemu.workspace=SIZE      per-run workspace disk (default 1GiB, sparse)
//	qemu.boot_timeout=DUR    boot until the guest answers (default 60s)
//	qemu.kill_grace=DUR      how long a guest may take to report after a kill (default 10s)
//	qemu.kernel_args=ARGS    extra kernel command line words
//	qemu.log_dir=DIR         where console logs of failed VMs are kept
//	                         (default StateDir/glasshouse-qemu-logs)
//	qemu.max_logs=N          console logs kept (default 100)
//	qemu.snapshot=BOOL       restore guests from a snapshot of a booted template
//	                         instead of booting each one (default true)
//	qemu.snapshot_dir=DIR    where snapshots are kept
//	                         (default StateDir/glasshouse-snapshots)
//	qemu.pool_prewarm=BOOL   pooled guests restored from a snapshot run Python once
//	                         before they are ready, warming the emulator's code
//	                         cache (default true)
//	qemu.python_zygote=BOOL  snapshot templates start a Python interpreter that the
//	                         first `python3 SCRIPT` run of each restored guest
//	                         resumes, skipping the interpreter's startup (default true)
type Config struct {
	Binary      string
	Accel       string
	PoolSize    int
	PoolBoots   int
	PoolMaxIdle time.Duration
	// PoolCollector has pooled guests load the collector at boot.
	PoolCollector bool
	MaxBoots      int
	MemoryBytes   int64
	CPUs          int
	TBMiB         int
	Workspace     int64
	BootTimeout   time.Duration
	KillGrace     time.Duration
	KernelArgs    string
	LogDir        string
	MaxLogs       int
	// Snapshot restores guests from a saved template instead of booting.
	Snapshot bool
	// SnapshotDir holds the templates.
	SnapshotDir string
	// PoolPrewarm has restored pooled guests run Python once before they
	// report ready.
	PoolPrewarm bool
	// PythonZygote has templates start a Python zygote for their guests'
	// runs (see guest/init).
	PythonZygote bool
	// StateDir holds per-VM directories (sockets, workspace images).
	StateDir string
	// ArtifactsDir holds vmlinuz, initramfs.cpio and rootfs.ext4; empty
	// means the first of $GLASSHOUSE_ARTIFACTS, ./artifacts and
	// /var/lib/glasshouse/artifacts that holds them.
	ArtifactsDir string
}

// Bounds on Config values.
const (
	minMemory    = 128 << 20
	maxMemory    = 1 << 40
	maxCPUs      = 64
	minWorkspace = 16 << 20
	maxWorkspace = 1 << 40
	maxPool      = 256
	// maxSocketPath leaves room under the 108-byte sun_path limit.
	maxSocketPath = 100
)

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		Binary:        "qemu-system-x86_64",
		Accel:         "auto",
		PoolBoots:     1,
		PoolMaxIdle:   10 * time.Minute,
		PoolCollector: true,
		MaxBoots:      runtime.NumCPU(),
		MemoryBytes:   1 << 30,
		CPUs:          1,
		Workspace:     1 << 30,
		BootTimeout:   60 * time.Second,
		KillGrace:     10 * time.Second,
		MaxLogs:       100,
		Snapshot:      true,
		PoolPrewarm:   true,
		PythonZygote:  true,
	}
}

// Validate checks every field; errors name the setting and the limit.
func (c *Config) Validate() error {
	switch {
	case c.Binary == "":
		return fmt.Errorf("qemu.binary is empty")
	case !slices.Contains([]string{"auto", "kvm", "tcg"}, c.Accel):
		return fmt.Errorf("qemu.accel %q: want auto, kvm or tcg", c.Accel)
	case c.PoolSize < 0 || c.PoolSize > maxPool:
		return fmt.Errorf("qemu.pool %d is outside [0, %d]", c.PoolSize, maxPool)
	case c.PoolBoots < 1 || c.PoolBoots > 64:
		return fmt.Errorf("qemu.pool_boots %d is outside [1, 64]", c.PoolBoots)
	case c.MaxBoots < 1 || c.MaxBoots > 256:
		return fmt.Errorf("qemu.max_boots %d is outside [1, 256]", c.MaxBoots)
	case c.PoolMaxIdle < 0:
		return fmt.Errorf("qemu.pool_max_idle %s is negative", c.PoolMaxIdle)
	case c.MemoryBytes < minMemory || c.MemoryBytes > maxMemory:
		return fmt.Errorf("qemu.memory %d is outside [%d, %d]", c.MemoryBytes, minMemory, int64(maxMemory))
	case c.TBMiB < 0 || c.TBMiB > 4096:
		return fmt.Errorf("qemu.tcg_tb %d is outside [0, 4096]", c.TBMiB)
	case c.CPUs < 1 || c.CPUs > maxCPUs:
		return fmt.Errorf("qemu.cpus %d is outside [1, %d]", c.CPUs, maxCPUs)
	case c.Workspace < minWorkspace || c.Workspace > maxWorkspace:
		return fmt.Errorf("qemu.workspace %d is outside [%d, %d]", c.Workspace, minWorkspace, int64(maxWorkspace))
	case c.BootTimeout <= 0 || c.BootTimeout > time.Hour:
		return fmt.Errorf("qemu.boot_timeout %s is outside (0, 1h]", c.BootTimeout)
	case c.KillGrace <= 0 || c.KillGrace > 10*time.Minute:
		return fmt.Errorf("qemu.kill_grace %s is outside (0, 10m]", c.KillGrace)
	case len(c.KernelArgs) > 1024 || strings.ContainsAny(c.KernelArgs, "\x00\n"):
		return fmt.Errorf("qemu.kernel_args must be at most 1024 bytes on one line")
	case c.MaxLogs < 0 || c.MaxLogs > 100000:
		return fmt.Errorf("qemu.max_logs %d is outside [0, 100000]", c.MaxLogs)
	case strings.ContainsAny(c.SnapshotDir+c.StateDir, "'\x00\n"):
		return fmt.Errorf("qemu.snapshot_dir and the state directory must not contain quotes, NUL or newlines")
	}
	return nil
}

// configFrom reads Config from registry options.
func configFrom(opts execution.Options) (Config, error) {
	c := DefaultConfig()
	c.StateDir, c.ArtifactsDir = opts.StateDir, opts.ArtifactsDir
	for k, v := range opts.Settings {
		name, ok := strings.CutPrefix(k, "qemu.")
		if !ok {
			continue
		}
		var err error
		switch name {
		case "pool":
			c.PoolSize, err = strconv.Atoi(v)
		case "pool_boots":
			c.PoolBoots, err = strconv.Atoi(v)
		case "pool_collector":
			c.PoolCollector, err = strconv.ParseBool(v)
		case "max_boots":
			c.MaxBoots, err = strconv.Atoi(v)
		case "pool_max_idle":
			c.PoolMaxIdle, err = time.ParseDuration(v)
		case "accel":
			c.Accel = v
		case "binary":
			c.Binary = v
		case "memory":
			c.MemoryBytes, err = parseSize(v)
		case "tcg_tb":
			c.TBMiB, err = strconv.Atoi(v)
		case "cpus":
			c.CPUs, err = strconv.Atoi(v)
		case "workspace":
			c.Workspace, err = parseSize(v)
		case "boot_timeout":
			c.BootTimeout, err = time.ParseDuration(v)
		case "kill_grace":
			c.KillGrace, err = time.ParseDuration(v)
		case "kernel_args":
			c.KernelArgs = v
		case "log_dir":
			c.LogDir = v
		case "max_logs":
			c.MaxLogs, err = strconv.Atoi(v)
		case "snapshot":
			c.Snapshot, err = strconv.ParseBool(v)
		case "snapshot_dir":
			c.SnapshotDir = v
		case "pool_prewarm":
			c.PoolPrewarm, err = strconv.ParseBool(v)
		case "python_zygote":
			c.PythonZygote, err = strconv.ParseBool(v)
		default:
			return c, fmt.Errorf("unknown setting %s", k)
		}
		if err != nil {
			return c, fmt.Errorf("setting %s=%q: %w", k, v, err)
		}
	}
	if c.StateDir == "" {
		c.StateDir = os.TempDir()
	}
	if c.LogDir == "" {
		c.LogDir = filepath.Join(c.StateDir, "glasshouse-vm-logs")
	}
	if c.SnapshotDir == "" {
		c.SnapshotDir = filepath.Join(c.StateDir, "glasshouse-snapshots")
	}
	return c, c.Validate()
}

// parseSize parses a byte count with an optional KiB/MiB/GiB (or K/M/G)
// suffix.
func parseSize(s string) (int64, error) {
	units := []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}}
	mult := int64(1)
	for _, u := range units {
		if n, ok := strings.CutSuffix(s, u.suffix); ok {
			s, mult = n, u.mult
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("size %q: want a non-negative number with an optional K, M or G suffix", s)
	}
	return n * mult, nil
}
