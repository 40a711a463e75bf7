//go:build linux

package process_test

import (
	"context"
	"os"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"glasshouse.dev/glasshouse/audit"
	"glasshouse.dev/glasshouse/backend/process"
	"glasshouse.dev/glasshouse/core/execution"
	"glasshouse.dev/glasshouse/core/profiling"
	"glasshouse.dev/glasshouse/internal/testenv"
)

// BenchmarkEngineCPU reports the CPU time this process (the engine, the
// backend, the collector's reader: everything but the workload) spends per
// run of `python3 -c pass`, with profiling off and on. CPU time is far less
// sensitive than wall time to other load on the machine, so compare trees
// by running this benchmark in each, in the same window:
//
//	go test ./backend/process -run '^$' -bench BenchmarkEngineCPU -benchtime 200x
func BenchmarkEngineCPU(b *testing.B) {
	backend := newBenchBackend(b)
	for _, mode := range []profiling.Mode{profiling.Off, profiling.BestEffort} {
		b.Run("profile="+string(mode), func(b *testing.B) {
			cfg := execution.Config{Backend: backend}
			if mode != profiling.Off {
				c, err := audit.Open(audit.Config{})
				if err != nil {
					testenv.Skip(b, "host eBPF collector: "+err.Error())
				}
				defer c.Close()
				cfg.Profiler = c
			}
			e, err := execution.New(cfg)
			if err != nil {
				b.Fatal(err)
			}
			spec := execution.Spec{Command: []string{"python3", "-c", "pass"}, Profile: mode}
			run := func() {
				r, err := e.Run(context.Background(), spec)
				if err != nil || r.Receipt.Outcome.Failure != "none" {
					b.Fatalf("run: %v %+v", err, r)
				}
				if mode != profiling.Off && r.Receipt.Profiling.Status != "complete" {
					b.Fatalf("profiling %s: %s", r.Receipt.Profiling.Status, r.Receipt.Profiling.Reason)
				}
			}
			for range 3 {
				run() // warm up: the spawner thread, the network parent, caches
			}
			self0, kids0 := cpuTimes(b)
			start := time.Now()
			b.ResetTimer()
			for b.Loop() {
				run()
			}
			b.StopTimer()
			self1, kids1 := cpuTimes(b)
			n := float64(b.N)
			b.ReportMetric(float64((self1-self0).Microseconds())/1000/n, "host-cpu-ms/run")
			b.ReportMetric(float64((kids1-kids0).Microseconds())/1000/n, "workload-cpu-ms/run")
			b.ReportMetric(float64(time.Since(start).Microseconds())/1000/n, "wall-ms/run")
		})
	}
}

// newBenchBackend returns a backend as a server has it: with the default
// state directory (/dev/shm when it is a tmpfs; workspaces on a disk
// filesystem cost far more) and a cgroup parent of its own.
func newBenchBackend(b *testing.B, opts ...func(*process.Config)) *process.Backend {
	b.Helper()
	testenv.RequireRoot(b)
	testenv.RequireBinary(b, "python3")
	parent := "glasshouse-test-" + strconv.Itoa(os.Getpid())
	cfg := process.Config{CgroupParent: parent}
	for _, o := range opts {
		o(&cfg)
	}
	backend, err := process.New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		backend.Close()
		removeParent(parent)
	})
	return backend
}

// cpuTimes returns the user+system time of this process and of its reaped
// children.
func cpuTimes(tb testing.TB) (self, children time.Duration) {
	var s, c unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &s); err != nil {
		tb.Fatal(err)
	}
	if err := unix.Getrusage(unix.RUSAGE_CHILDREN, &c); err != nil {
		tb.Fatal(err)
	}
	tv := func(t unix.Timeval) time.Duration { return time.Duration(t.Nano()) }
	return tv(s.Utime) + tv(s.Stime), tv(c.Utime) + tv(c.Stime)
}
