// Command benchprofile measures what the host collector costs a
// syscall-heavy workload, against the same workload unprofiled and under
// strace -f, all in one run. scripts/bench-profiling.sh builds and runs it.
//
// The workload is the static tester (audit/testdata/tester.c): "spin N"
// (N open/close pairs of one file, whose repeats the kernel counts without
// a record) or, with -files churn, "churn N" (N opens of 256 files in
// turn, a record each), followed by "forkexec M" (M fork+exec), run in a
// fresh cgroup each time. Variants are interleaved and each is repeated;
// the median wall time is reported, and each ratio twice: of the medians,
// and as the median of the rounds' own ratios (a round runs every variant
// back to back, so load that drifts between rounds cancels out of it).
// Unprofiled runs have no collector loaded: a loaded collector's programs
// run on every syscall of every process, observed or not, so the "idle"
// variant (collector loaded, run not observed) measures that floor. The profiled variant runs with the
// collector build this kernel gets and, where that is the tp_btf build,
// also with the raw tracepoint build older kernels get, one collector
// loaded at a time. Two bursts (several processes opening at once, of one
// file and of many) give the event and record rates the collector
// sustains. A last profiled run, with the kernel's BPF statistics on,
// gives the exit program's own run time per event.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"glasshouse.dev/glasshouse/audit"
	"glasshouse.dev/glasshouse/core/profiling"
	"glasshouse.dev/glasshouse/internal/cgroup"
)

type counter struct{ n atomic.Int64 }

func (c *counter) Add(*profiling.Event) { c.n.Add(1) }

// options are the command line's.
type options struct {
	tester       string
	opens, execs int
	// files is the tester command that makes the opens: "spin" (one
	// file, again and again: the kernel counts the repeats) or "churn"
	// (256 files in turn: every open is a record).
	files            string
	reps, loads      int
	burst            int
	strace, exitCost bool
}

func main() {
	var o options
	flag.StringVar(&o.tester, "tester", "", "path of the static tester binary")
	flag.IntVar(&o.opens, "opens", 200000, "open/close pairs per run")
	flag.IntVar(&o.execs, "execs", 2000, "fork+exec pairs per run")
	flag.StringVar(&o.files, "files", "spin", `what the opens open: "spin" (one file; the kernel counts repeats) or "churn" (256 files in turn; a record each)`)
	flag.IntVar(&o.reps, "reps", 5, "repetitions of each variant")
	flag.IntVar(&o.loads, "loads", 5, "collector loads to time (0: none)")
	flag.IntVar(&o.burst, "burst", 2, "processes opening files at once in the burst tests (0: no bursts)")
	flag.BoolVar(&o.strace, "strace", true, "also run the workload under strace -f, if installed")
	flag.BoolVar(&o.exitCost, "exit-cost", true, "time the exit program with the kernel's BPF statistics")
	flag.Parse()
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "benchprofile:", err)
		os.Exit(1)
	}
}

func run(o options) error {
	tester, opens, execs, reps, loads, burst := o.tester, o.opens, o.execs, o.reps, o.loads, o.burst
	switch {
	case tester == "":
		return errors.New("-tester is required")
	case o.files != "spin" && o.files != "churn":
		return fmt.Errorf(`-files is %q: want "spin" or "churn"`, o.files)
	case reps < 1:
		return fmt.Errorf("-reps is %d: want at least 1", reps)
	}
	layout, err := cgroup.Detect()
	if err != nil {
		return err
	}
	var strace string
	if o.strace {
		strace, _ = exec.LookPath("strace")
	}

	var loadTimes []time.Duration
	for range loads {
		start := time.Now()
		c, err := audit.Open(audit.Config{})
		if err != nil {
			return fmt.Errorf("load collector: %w", err)
		}
		loadTimes = append(loadTimes, time.Since(start))
		c.Close()
	}
	probe, err := audit.Open(audit.Config{})
	if err != nil {
		return err
	}
	build := probe.Build()
	probe.Close()
	builds := []audit.Config{{}}
	if build != "raw_tracepoint" {
		builds = append(builds, audit.Config{RawTracepoints: true})
	}

	workload := [][]string{{tester, o.files, strconv.Itoa(opens)}, {tester, "forkexec", strconv.Itoa(execs)}}
	dir, err := os.MkdirTemp("", "glasshouse-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	var plain, idle, straced []time.Duration
	profiled := make([][]time.Duration, len(builds))
	var plainCPU, profiledCPU []time.Duration
	var events, dropped int64
	seq := 0
	// once runs the workload and returns its wall time, the CPU time its
	// processes used (user + system, BPF programs included: they run in
	// the workload's context) and, when coll observed it, the session's
	// report.
	once := func(coll *audit.Collector, wrap []string) (time.Duration, time.Duration, profiling.Report, error) {
		var rep profiling.Report
		seq++
		g, err := layout.Create("glasshouse-bench", fmt.Sprintf("run-%d-%d", os.Getpid(), seq), cgroup.Limits{})
		if err != nil {
			return 0, 0, rep, err
		}
		defer g.Remove()
		var sess profiling.Session
		sink := &counter{}
		if coll != nil {
			if sess, err = coll.Start(context.Background(), profiling.Target{CgroupID: g.ID()}, sink); err != nil {
				return 0, 0, rep, err
			}
		}
		start := time.Now()
		var cpu time.Duration
		for _, argv := range workload {
			argv = append(slices.Clone(wrap), argv...)
			cmd := exec.Command(argv[0], argv[1:]...)
			cmd.Dir = dir
			if err := g.StartInGroup(cmd); err != nil {
				return 0, 0, rep, err
			}
			if err := cmd.Wait(); err != nil {
				return 0, 0, rep, fmt.Errorf("%v: %w", argv, err)
			}
			cpu += cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
		}
		elapsed := time.Since(start)
		if sess != nil {
			if rep, err = sess.Stop(context.Background()); err != nil {
				return 0, 0, rep, err
			}
		}
		return elapsed, cpu, rep, nil
	}
	unprofiled := func() error {
		d, cpu, _, err := once(nil, nil)
		plain, plainCPU = append(plain, d), append(plainCPU, cpu)
		return err
	}
	for round := range reps {
		// The unprofiled run comes first in even rounds and last in odd
		// ones, so that neither side always runs right after a collector
		// load or a strace run.
		if round%2 == 0 {
			if err := unprofiled(); err != nil {
				return err
			}
		}
		for i, cfg := range builds {
			coll, err := audit.Open(cfg)
			if err != nil {
				return err
			}
			if i == 0 {
				d, _, _, err := once(nil, nil)
				if err != nil {
					coll.Close()
					return err
				}
				idle = append(idle, d)
			}
			d, cpu, rep, err := once(coll, nil)
			coll.Close()
			if err != nil {
				return err
			}
			events += rep.Events
			dropped += rep.Dropped
			profiled[i] = append(profiled[i], d)
			if i == 0 {
				profiledCPU = append(profiledCPU, cpu)
			}
		}
		if round%2 == 1 {
			if err := unprofiled(); err != nil {
				return err
			}
		}
		if strace != "" {
			d, _, _, err := once(nil, []string{strace, "-f", "-qq", "-o", "/dev/null"})
			if err != nil {
				return err
			}
			straced = append(straced, d)
		}
	}
	// Bursts: several processes open files as fast as they can, to see the
	// event rate the collector sustains and whether it drops anything:
	// opens of one file, which the kernel counts, and opens of distinct
	// files ("churn"), each of which is a record in the ring buffer.
	var bursts []burstResult
	for _, cmd := range []string{"spin", "churn"} {
		if burst == 0 {
			break
		}
		b, err := runBurst(layout, tester, cmd, opens, burst)
		if err != nil {
			return err
		}
		bursts = append(bursts, b)
	}
	// The exit program's own run time per event, from the kernel's BPF
	// statistics: the BPF side alone, steadier than wall time on a shared
	// machine. The statistics are on only for this one profiled run (they
	// add two clock reads to every program run).
	var exitPerEvent float64
	if o.exitCost {
		exitPerEvent, err = exitCost(func(coll *audit.Collector) (int64, error) {
			_, _, rep, err := once(coll, nil)
			return rep.Events, err
		})
		if err != nil {
			return err
		}
	}
	os.Remove(layout.Unified + "/glasshouse-bench")

	mp, mf := median(plain), median(profiled[0])
	perRun := float64(events) / float64(reps*len(builds))
	what := "one file again and again: the kernel counts the repeats"
	if o.files == "churn" {
		what = "256 files in turn: a record each"
	}
	fmt.Printf("workload: %d open/close (%s) + %d fork/exec, %d runs of each variant (median wall time)\n", opens, what, execs, reps)
	var load [3]float64
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		fmt.Sscan(string(b), &load[0], &load[1], &load[2])
	}
	fmt.Printf("  host: %d CPUs, load average %.2f (others' load skews wall times)\n", runtime.NumCPU(), load[0])
	fmt.Printf("  ratios: of the medians, and [the median of each round's own ratio, the variants of a round running back to back]\n")
	fmt.Printf("  unprofiled          %9.1f ms   (no collector loaded)\n", ms(mp))
	mi := median(idle)
	fmt.Printf("  idle collector      %9.1f ms   ratio %.3f [%.3f] (loaded, this run not observed: the hooks' cost to every process)\n", ms(mi), float64(mi)/float64(mp), pairedRatio(idle, plain))
	fmt.Printf("  profiled            %9.1f ms   ratio %.3f [%.3f] (goal <= 1.10; %s build); %.3f [%.3f] of the idle collector's\n", ms(mf), float64(mf)/float64(mp), pairedRatio(profiled[0], plain), build, float64(mf)/float64(mi), pairedRatio(profiled[0], idle))
	if len(builds) > 1 {
		mr := median(profiled[1])
		fmt.Printf("  profiled, raw build %9.1f ms   ratio %.3f [%.3f] (the raw_tracepoint build, as kernels before 6.2 run)\n", ms(mr), float64(mr)/float64(mp), pairedRatio(profiled[1], plain))
	}
	pc, fc := median(plainCPU), median(profiledCPU)
	fmt.Printf("  workload CPU time   %9.1f ms unprofiled, %.1f ms profiled: ratio %.3f [%.3f] (less sensitive to other load)\n", ms(pc), ms(fc), float64(fc)/float64(pc), pairedRatio(profiledCPU, plainCPU))
	switch {
	case len(straced) > 0:
		st := median(straced)
		fmt.Printf("  strace -f           %9.1f ms   ratio %.3f; profiled is %.1fx faster than strace -f (goal >= 10)\n", ms(st), float64(st)/float64(mp), float64(st)/float64(mf))
	case o.strace:
		fmt.Printf("  strace -f           not installed\n")
	}
	fmt.Printf("  events per run      %9.0f   rate %.0f events/s during the profiled runs\n", perRun, perRun/mf.Seconds())
	fmt.Printf("  dropped             %9d   (goal 0)\n", dropped)
	for i, b := range bursts {
		what := []string{"of one file, counted in the kernel", "of 256 files in turn, a record each"}[i]
		fmt.Printf("  burst               %d processes x %d opens %s: %.0f events/s (%.0f records/s), %d delivered, %d dropped (goal 0 dropped at >= 200k events/s)\n", burst, opens, what, b.rate, b.recordRate, b.events, b.dropped)
	}
	if loads > 0 {
		fmt.Printf("  collector load      %9.1f ms median of %d (goal <= 150 ms)\n", ms(median(loadTimes)), loads)
	}
	if o.exitCost {
		fmt.Printf("  exit program        %9.0f ns of its own run time per event (kernel BPF statistics, one profiled run; all its runs counted, observed or not)\n", exitPerEvent)
	}
	return nil
}

type burstResult struct {
	rate, recordRate float64
	events, dropped  int64
}

// runBurst runs n processes of "tester cmd opens" at once in one cgroup
// under a fresh collector, each in a directory of its own.
func runBurst(layout *cgroup.Layout, tester, cmd string, opens, n int) (burstResult, error) {
	var res burstResult
	g, err := layout.Create("glasshouse-bench", fmt.Sprintf("burst-%d-%s", os.Getpid(), cmd), cgroup.Limits{})
	if err != nil {
		return res, err
	}
	defer g.Remove()
	coll, err := audit.Open(audit.Config{})
	if err != nil {
		return res, err
	}
	defer coll.Close()
	sess, err := coll.Start(context.Background(), profiling.Target{CgroupID: g.ID()}, &counter{})
	if err != nil {
		return res, err
	}
	records0 := coll.Stats().Events
	start := time.Now()
	var cmds []*exec.Cmd
	for range n {
		c := exec.Command(tester, cmd, strconv.Itoa(opens))
		dir, err := os.MkdirTemp("", "glasshouse-burst-")
		if err != nil {
			return res, err
		}
		defer os.RemoveAll(dir)
		c.Dir = dir
		if err := g.StartInGroup(c); err != nil {
			return res, err
		}
		cmds = append(cmds, c)
	}
	for _, c := range cmds {
		c.Wait()
	}
	elapsed := time.Since(start)
	rep, err := sess.Stop(context.Background())
	if err != nil {
		return res, err
	}
	res.events, res.dropped = rep.Events, rep.Dropped
	res.rate = float64(rep.Events+rep.Dropped) / elapsed.Seconds()
	res.recordRate = float64(coll.Stats().Events-records0) / elapsed.Seconds()
	return res, nil
}

// exitCost loads a collector, turns the kernel's BPF statistics on, runs
// one profiled workload with run (which returns the events it delivered)
// and returns the syscall exit program's run time per event in ns.
func exitCost(run func(*audit.Collector) (int64, error)) (float64, error) {
	coll, err := audit.Open(audit.Config{})
	if err != nil {
		return 0, err
	}
	defer coll.Close()
	on, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	if err != nil {
		return 0, fmt.Errorf("enable BPF statistics: %w", err)
	}
	defer on.Close()
	before := coll.Stats()
	n, err := run(coll)
	if err != nil {
		return 0, err
	}
	if n == 0 {
		return 0, errors.New("the profiled run delivered no events")
	}
	after := coll.Stats()
	return float64(after.ExitRunTime-before.ExitRunTime) / float64(n), nil
}

func ms(d time.Duration) float64 { return float64(d) / 1e6 }

// pairedRatio is the median over rounds of a[i]/b[i]: load that drifts
// between rounds cancels out of each round's ratio.
func pairedRatio(a, b []time.Duration) float64 {
	rs := make([]float64, min(len(a), len(b)))
	for i := range rs {
		rs[i] = float64(a[i]) / float64(b[i])
	}
	slices.Sort(rs)
	return rs[len(rs)/2]
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}
