//go:build linux

package qemu

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"glasshouse.dev/glasshouse/core/execution"
)

// TestVMBench measures cold starts, warm-pool latency, boot phases and the
// memory of idle pooled guests, with snapshot restore and, as the
// baselines in the same run, without the Python zygote
// (qemu.python_zygote=false) and with plain boots (qemu.snapshot=false), and
// against host python3. It is run by scripts/bench-vm.sh
// (GLASSHOUSE_BENCH_VM=1), not by go test.
func TestVMBench(t *testing.T) {
	if os.Getenv("GLASSHOUSE_BENCH_VM") != "1" {
		t.Skip("benchmark: run scripts/bench-vm.sh")
	}
	cold := envInt("BENCH_COLD", 3)
	warm := envInt("BENCH_WARM", 20)
	pool := envInt("BENCH_POOL", 2)
	boots := os.Getenv("BENCH_BOOTS") != "0"
	accel := os.Getenv("BENCH_ACCEL")
	if accel == "" {
		accel = "auto"
	}
	spec := execution.Spec{Code: "print(2+2)", Language: execution.LanguagePython, Timeout: 5 * time.Minute}

	// Baseline: the same program on the host, no sandbox.
	var host []time.Duration
	for i := 0; i < max(cold, 5); i++ {
		start := time.Now()
		if out, err := exec.Command(hostPython(), "-c", "print(2+2)").Output(); err != nil || string(out) != "4\n" {
			t.Fatalf("host python3: %q %v", out, err)
		}
		host = append(host, time.Since(start))
	}
	report("host "+hostPython()+" (baseline)", host, 0)

	snapDir := t.TempDir()
	settings := func(snapshot bool, extra ...string) map[string]string {
		m := map[string]string{"qemu.accel": accel, "qemu.snapshot": strconv.FormatBool(snapshot), "qemu.snapshot_dir": snapDir}
		for i := 0; i+1 < len(extra); i += 2 {
			m[extra[i]] = extra[i+1]
		}
		return m
	}
	cb, _ := newTestBackend(t, settings(true))
	usedAccel, why := cb.Accel(context.Background())
	fmt.Printf("accelerator: %s (%s)\n", usedAccel, why)
	fmt.Printf("load average before: %s\n", loadavg())

	// The first cold start builds the snapshot template.
	d, _ := benchRun(t, cb, spec)
	fmt.Printf("%-52s %9.1f ms (includes booting and saving the template) [%s]\n", "first cold start", ms(d), usedAccel)
	coldRuns(t, "cold start, restored from snapshot", cb, spec, cold, usedAccel, median(host))
	nz, _ := newTestBackend(t, settings(true, "qemu.python_zygote", "false"))
	benchRun(t, nz, spec) // builds its template
	coldRuns(t, "cold start, restored, qemu.python_zygote=false", nz, spec, cold, usedAccel, median(host))
	if boots {
		bb, _ := newTestBackend(t, settings(false))
		coldRuns(t, "cold start, booted (qemu.snapshot=false)", bb, spec, cold, usedAccel, median(host))
	}

	poolOf := func(snapshot bool, extra ...string) map[string]string {
		return settings(snapshot, append([]string{"qemu.pool", strconv.Itoa(pool)}, extra...)...)
	}
	variants := []warmVariant{
		{"restored guests", poolOf(true)},
		{"restored, qemu.python_zygote=false", poolOf(true, "qemu.python_zygote", "false")},
	}
	if boots {
		variants = append(variants, warmVariant{"booted guests (qemu.snapshot=false)", poolOf(false)})
	}
	warmRuns(t, variants, spec, pool, warm, usedAccel, median(host))
	fmt.Printf("load average after: %s\n", loadavg())
}

func coldRuns(t *testing.T, name string, b *Backend, spec execution.Spec, n int, accel string, host time.Duration) {
	var total []time.Duration
	var phases []Phases
	for i := 0; i < n; i++ {
		d, ph := benchRun(t, b, spec)
		total = append(total, d)
		phases = append(phases, ph)
	}
	report(name+" ["+accel+"]", total, host)
	phase := func(name string, f func(Phases) time.Duration) {
		var ds []time.Duration
		for _, p := range phases {
			ds = append(ds, f(p))
		}
		report("  phase: "+name, ds, 0)
	}
	phase("VMM start (spawn to QEMU sockets)", func(p Phases) time.Duration { return p.VMMStart })
	if phases[0].Restored {
		phase("restore (spawn to guest awake)", func(p Phases) time.Duration { return p.Boot })
		phase("wake in the guest (reseed, clock)", func(p Phases) time.Duration { return p.Wake })
		phase("run received to exec (in the guest)", func(p Phases) time.Duration { return p.GuestStart })
	} else {
		phase("kernel to init (guest uptime at init)", func(p Phases) time.Duration { return p.KernelToInit })
		phase("init to Python (init ready + exec)", func(p Phases) time.Duration { return p.InitToReady + p.GuestStart })
		phase("boot on the host clock", func(p Phases) time.Duration { return p.Boot })
	}
	phase("send run to Started (host)", func(p Phases) time.Duration { return p.Started })
	phase("Python run (in the guest)", func(p Phases) time.Duration { return p.Run })
	phase("QEMU teardown after Done (host)", func(p Phases) time.Duration { return p.Teardown })
	phase("Start to result (host)", func(p Phases) time.Duration { return p.Total })
}

// warmVariant is one pool configuration measured by warmRuns.
type warmVariant struct {
	name     string
	settings map[string]string
}

// warmRuns measures warm-pool latency of each variant, taking runs from
// the variants in turn (the machine's load drifts over minutes, and an
// interleaved comparison shares the drift), with every pool full before
// each run so that no refill competes with it.
func warmRuns(t *testing.T, variants []warmVariant, spec execution.Spec, pool, n int, accel string, host time.Duration) {
	type result struct {
		b                                         *Backend
		total, prepare, started, python, teardown []time.Duration
		misses                                    int
	}
	results := make([]*result, len(variants))
	for i, v := range variants {
		wb, tr := newTestBackend(t, v.settings)
		wb.Warm()
		waitPool(t, wb, pool)
		time.Sleep(2 * time.Second)
		mem := qemuMemory(tr.state)
		fmt.Printf("%-52s RSS %6.1f MiB, PSS %6.1f MiB, private %6.1f MiB per VM (%d idle VMs) [%s]\n", "idle pooled VM, host memory: "+v.name,
			mib(mem.rss)/float64(pool), mib(mem.pss)/float64(pool), mib(mem.private)/float64(pool), pool, accel)
		results[i] = &result{b: wb}
	}
	for range n {
		for _, r := range results {
			for _, o := range results {
				waitPool(t, o.b, pool)
			}
			d, ph := benchRun(t, r.b, spec)
			if !ph.Warm {
				r.misses++
			}
			r.total = append(r.total, d)
			r.prepare = append(r.prepare, ph.Prepare)
			r.started = append(r.started, ph.Started)
			r.python = append(r.python, ph.Run)
			r.teardown = append(r.teardown, ph.Teardown)
		}
	}
	for i, r := range results {
		report(fmt.Sprintf("warm pool, %s, run to result [%s] (%d misses)", variants[i].name, accel, r.misses), r.total, host)
		report("  phase: Prepare (take a pooled guest)", r.prepare, 0)
		report("  phase: send run to Started (host)", r.started, 0)
		report("  phase: Python run (in the guest)", r.python, 0)
		report("  phase: QEMU teardown after Done (host)", r.teardown, 0)
		s := r.b.Stats()
		fmt.Printf("  pool: booted %d, last boot %.0f ms, boot failures %d\n", s.Booted, ms(s.LastBoot), s.BootFailures)
		if err := r.b.Close(); err != nil {
			t.Error(err)
		}
	}
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

// memory is the host memory of QEMU processes: resident, proportional
// (shared pages divided among their users) and private.
type memory struct{ rss, pss, private int64 }

// qemuMemory sums the memory of the QEMU processes under a state directory.
func qemuMemory(state string) memory {
	var m memory
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		cmd, err := os.ReadFile(filepath.Join("/proc", p.Name(), "cmdline"))
		if err != nil || !strings.Contains(string(cmd), state+"/") {
			continue
		}
		rollup, _ := os.ReadFile(filepath.Join("/proc", p.Name(), "smaps_rollup"))
		for _, line := range strings.Split(string(rollup), "\n") {
			k, v, ok := strings.Cut(line, ":")
			if !ok {
				continue
			}
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			switch k {
			case "Rss":
				m.rss += kb << 10
			case "Pss":
				m.pss += kb << 10
			case "Private_Clean", "Private_Dirty":
				m.private += kb << 10
			}
		}
	}
	return m
}

func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
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

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func mib(b int64) float64 { return float64(b) / (1 << 20) }

func report(name string, ds []time.Duration, baseline time.Duration) {
	line := fmt.Sprintf("%-52s p50 %9.1f ms  p95 %9.1f ms  (n=%d)", name, ms(percentile(ds, 50)), ms(percentile(ds, 95)), len(ds))
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

// hostPython is the host's Debian python3, the interpreter the guest runs,
// rather than whatever shim PATH finds first.
func hostPython() string {
	if _, err := os.Stat("/usr/bin/python3"); err == nil {
		return "/usr/bin/python3"
	}
	return "python3"
}
