//go:build linux

package qemu

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"testing"
	"time"

	"glasshouse.dev/glasshouse/core/execution"
)

// TestVMBench measures cold starts, warm-pool latency, boot phases and the
// memory of idle pooled guests, against host python3 as the baseline. It
// is run by scripts/bench-vm.sh (GLASSHOUSE_BENCH_VM=1), not by go test.
func TestVMBench(t *testing.T) {
	if os.Getenv("GLASSHOUSE_BENCH_VM") != "1" {
		t.Skip("benchmark: run scripts/bench-vm.sh")
	}
	cold := envInt("BENCH_COLD", 3)
	warm := envInt("BENCH_WARM", 20)
	pool := envInt("BENCH_POOL", 2)
	accel := os.Getenv("BENCH_ACCEL")
	if accel == "" {
		accel = "auto"
	}
	spec := execution.Spec{Code: "print(2+2)", Language: execution.LanguagePython, Timeout: 5 * time.Minute}

	// Baseline: the same program on the host, no sandbox.
	var host []time.Duration
	for i := 0; i < max(cold, 5); i++ {
		start := time.Now()
		if out, err := exec.Command("python3", "-c", "print(2+2)").Output(); err != nil || string(out) != "4\n" {
			t.Fatalf("host python3: %q %v", out, err)
		}
		host = append(host, time.Since(start))
	}
	report("host python3 (baseline)", host, 0)

	cb, _ := newTestBackend(t, map[string]string{"qemu.accel": accel})
	usedAccel, why := cb.Accel(context.Background())
	fmt.Printf("accelerator: %s (%s)\n", usedAccel, why)
	var coldTotal []time.Duration
	var phases []Phases
	for i := 0; i < cold; i++ {
		d, ph := benchRun(t, cb, spec)
		coldTotal = append(coldTotal, d)
		phases = append(phases, ph)
	}
	report("cold start to result ["+usedAccel+"]", coldTotal, median(host))
	phase := func(name string, f func(Phases) time.Duration) {
		var ds []time.Duration
		for _, p := range phases {
			ds = append(ds, f(p))
		}
		report("  phase: "+name, ds, 0)
	}
	phase("VMM start (spawn to QEMU sockets)", func(p Phases) time.Duration { return p.VMMStart })
	phase("kernel to init (guest uptime at init)", func(p Phases) time.Duration { return p.KernelToInit })
	phase("init to Python (init ready + exec)", func(p Phases) time.Duration { return p.InitToReady + p.GuestStart })
	phase("Python run (in the guest)", func(p Phases) time.Duration { return p.Run })
	phase("boot on the host clock", func(p Phases) time.Duration { return p.Boot })

	wb, tr := newTestBackend(t, map[string]string{"qemu.accel": accel, "qemu.pool": strconv.Itoa(pool)})
	wb.Warm()
	waitPool(t, wb, pool)
	time.Sleep(2 * time.Second)
	rss := qemuRSS(tr.state)
	fmt.Printf("%-48s %8.1f MiB per VM (%d idle VMs, %d MiB in all) [%s]\n", "host RSS of an idle pooled VM", float64(rss)/float64(pool)/(1<<20), pool, rss>>20, usedAccel)
	var warmTotal []time.Duration
	var misses int
	for i := 0; i < warm; i++ {
		waitPool(t, wb, pool)
		d, ph := benchRun(t, wb, spec)
		if !ph.Warm {
			misses++
		}
		warmTotal = append(warmTotal, d)
	}
	report(fmt.Sprintf("warm-pool run to result [%s] (%d misses)", usedAccel, misses), warmTotal, median(host))
	fmt.Printf("pool stats: %+v\n", wb.Stats())
}

func benchRun(t *testing.T, b *Backend, spec execution.Spec) (time.Duration, Phases) {
	t.Helper()
	ctx := context.Background()
	start := time.Now()
	inst, err := b.Prepare(ctx, spec.WithDefaults())
	if err != nil {
		t.Fatal(err)
	}
	defer inst.Cleanup(ctx)
	if err := inst.Start(ctx); err != nil {
		t.Fatal(err)
	}
	res, err := inst.Wait(ctx)
	d := time.Since(start)
	if err != nil || res.Err != nil || string(res.Stdout) != "4\n" {
		t.Fatalf("run: %v %v %q %q", err, res.Err, res.Stdout, res.Stderr)
	}
	return d, inst.(*instance).Phases()
}

func waitPool(t *testing.T, b *Backend, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Minute)
	for b.Stats().Idle < n {
		if time.Now().After(deadline) {
			t.Fatalf("pool did not fill: %+v", b.Stats())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func median(ds []time.Duration) time.Duration { return percentile(ds, 50) }

func percentile(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, (len(s)*p+99)/100-1)]
}

func report(name string, ds []time.Duration, baseline time.Duration) {
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	line := fmt.Sprintf("%-48s p50 %9.1f ms  p95 %9.1f ms  (n=%d)", name, ms(percentile(ds, 50)), ms(percentile(ds, 95)), len(ds))
	if baseline > 0 {
		line += fmt.Sprintf("  = %.1fx host python3", float64(percentile(ds, 50))/float64(baseline))
	}
	fmt.Println(line)
}

func envInt(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n > 0 {
		return n
	}
	return def
}
