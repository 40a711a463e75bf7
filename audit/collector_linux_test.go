//go:build linux

package audit

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"glasshouse.dev/glasshouse/core/execution"
	"glasshouse.dev/glasshouse/core/profiling"
	"glasshouse.dev/glasshouse/core/receipt"
	"glasshouse.dev/glasshouse/ebpf/netguard"
	"glasshouse.dev/glasshouse/internal/cgroup"
	"glasshouse.dev/glasshouse/internal/testenv"
)

// recorder is a sink that keeps every event.
type recorder struct {
	mu     sync.Mutex
	events []*profiling.Event
}

func (r *recorder) Add(ev *profiling.Event) {
	r.mu.Lock()
	c := *ev
	r.events = append(r.events, &c)
	r.mu.Unlock()
}

func (r *recorder) count(f func(*profiling.Event) bool) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, ev := range r.events {
		if f(ev) {
			n += int(ev.Times())
		}
	}
	return n
}

var groupSeq atomic.Int64

// newGroup makes a cgroup2 directory (under parent, relative to the cgroup2
// root) that is killed and removed at cleanup.
func newGroup(t *testing.T, parent string) *cgroup.Group {
	t.Helper()
	layout, err := cgroup.Detect()
	if err != nil {
		testenv.Skip(t, "cgroup2: "+err.Error())
	}
	if parent == "" {
		parent = "glasshouse-test"
	}
	g, err := layout.Create(parent, fmt.Sprintf("audit-%d-%d", os.Getpid(), groupSeq.Add(1)), cgroup.Limits{})
	if err != nil {
		t.Fatalf("create cgroup: %v", err)
	}
	t.Cleanup(func() {
		g.Kill()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		g.WaitEmpty(ctx)
		if err := g.Remove(); err != nil {
			t.Errorf("remove cgroup: %v", err)
		}
		os.Remove(layout.Unified + "/glasshouse-test")
	})
	return g
}

// runIn starts cmd in g and waits for it and for the group to empty.
func runIn(t *testing.T, g *cgroup.Group, cmd *exec.Cmd) {
	t.Helper()
	if err := g.StartInGroup(cmd); err != nil {
		t.Fatalf("start %v: %v", cmd.Args, err)
	}
	cmd.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := g.WaitEmpty(ctx); err != nil {
		t.Fatalf("wait for the group to empty: %v", err)
	}
}

// observe runs the tester with args in a fresh cgroup under one session
// and returns what the session delivered.
func observe(t *testing.T, c *Collector, f *fixture, args ...string) (*recorder, profiling.Report) {
	t.Helper()
	rec, rep, _ := observeOutput(t, c, f, args...)
	return rec, rep
}

// observeOutput is observe that also returns what the tester printed.
func observeOutput(t *testing.T, c *Collector, f *fixture, args ...string) (*recorder, profiling.Report, string) {
	t.Helper()
	g := newGroup(t, "")
	rec := &recorder{}
	s, err := c.Start(context.Background(), profiling.Target{RunID: t.Name(), CgroupID: g.ID(), CgroupPath: g.Path()}, rec)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	var out strings.Builder
	cmd := exec.Command(f.tester, args...)
	cmd.Dir = t.TempDir()
	cmd.Stdout = &out
	runIn(t, g, cmd)
	rep, err := s.Stop(context.Background())
	if err != nil {
		t.Fatalf("Stop: %v", err)
	}
	return rec, rep, out.String()
}

func isOpen(ev *profiling.Event) bool { return ev.Kind == profiling.KindFile && ev.Path == "/dev/null" }

// A session delivers every event before Stop returns: the flush barrier is
// exact, so the count is too.
func TestStopDeliversEverything(t *testing.T) {
	f := setup(t)
	const n = 50000
	rec, rep := observe(t, f.coll, f, "spin", fmt.Sprint(n))
	if got := rec.count(isOpen); got != n {
		t.Errorf("delivered %d opens of /dev/null, want %d", got, n)
	}
	if rep.Dropped != 0 || len(rep.Blind) != 0 {
		t.Errorf("report %+v, want nothing dropped or blind", rep)
	}
	if all := rec.count(func(*profiling.Event) bool { return true }); rep.Events != int64(all) {
		t.Errorf("report says %d events, sink got %d", rep.Events, all)
	}
}

// Repeated opens of one file are counted in the kernel: the sink gets the
// exact count in a few events. (Each rename or mount change on the host
// while the workload runs costs one more event.)
func TestRepeatsCountedInKernel(t *testing.T) {
	forEachBuild(t, func(t *testing.T, f *fixture) {
		const n = 50000
		rec, rep := observe(t, f.coll, f, "spin", fmt.Sprint(n))
		if got := rec.count(isOpen); got != n {
			t.Errorf("delivered %d opens of /dev/null, want %d", got, n)
		}
		var records int
		for _, ev := range rec.events {
			if isOpen(ev) {
				records++
			}
		}
		if records > n/100 {
			t.Errorf("%d events carried %d opens of one file: the kernel did not count the repeats", records, n)
		}
		if rep.Dropped != 0 || len(rep.Blind) != 0 {
			t.Errorf("report %+v, want nothing dropped or blind", rep)
		}
	})
}

// A session that syncs or stops while its threads still live gets what
// their caches counted, once.
func TestStopCountsLiveThreads(t *testing.T) {
	forEachBuild(t, func(t *testing.T, f *fixture) {
		g := newGroup(t, "")
		rec := &recorder{}
		s, err := f.coll.Start(context.Background(), profiling.Target{CgroupID: g.ID()}, rec)
		if err != nil {
			t.Fatalf("Start: %v", err)
		}
		const n = 1000
		cmd := exec.Command(f.tester, "holdopen", fmt.Sprint(n))
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := g.StartInGroup(cmd); err != nil {
			t.Fatalf("start: %v", err)
		}
		defer func() {
			g.Kill()
			cmd.Wait()
		}()
		line, err := bufio.NewReader(out).ReadString('\n')
		if line != "ready\n" {
			t.Fatalf("tester said %q (%v), want ready", line, err)
		}
		// Sync delivers them while the session goes on, Stop adds
		// nothing twice.
		if err := s.(profiling.Syncer).Sync(context.Background()); err != nil {
			t.Fatalf("Sync: %v", err)
		}
		if got := rec.count(isOpen); got != n {
			t.Errorf("after Sync, delivered %d opens of /dev/null by a live process, want %d", got, n)
		}
		rep, err := s.Stop(context.Background())
		if err != nil {
			t.Fatalf("Stop: %v", err)
		}
		if got := rec.count(isOpen); got != n {
			t.Errorf("after Stop, delivered %d opens of /dev/null by a live process, want %d", got, n)
		}
		if rep.Dropped != 0 {
			t.Errorf("report %+v, want nothing dropped", rep)
		}
	})
}

// Process events carry the kernel's time, converted to wall-clock time
// within the run; file and network events carry none (the collector saves
// the clock read on its hottest path), as profiling.Event documents.
func TestEventTimes(t *testing.T) {
	f := setup(t)
	before := time.Now()
	rec, _ := observe(t, f.coll, f, "chain", "2")
	opens, _ := observe(t, f.coll, f, "open")
	failed, _ := observe(t, f.coll, f, "execfail")
	after := time.Now()
	kinds := map[profiling.Kind]int{}
	for _, ev := range slices.Concat(rec.events, opens.events, failed.events) {
		kinds[ev.Kind]++
		switch ev.Kind {
		case profiling.KindFork, profiling.KindExec, profiling.KindExecFailed, profiling.KindExit:
			// The clocks are calibrated once; allow for their drift.
			if ev.Time.Before(before.Add(-time.Second)) || ev.Time.After(after.Add(time.Second)) {
				t.Errorf("%s event at %v, outside the run (%v to %v)", ev.Kind, ev.Time, before, after)
			}
		case profiling.KindFile, profiling.KindNet:
			if !ev.Time.IsZero() {
				t.Errorf("%s event of %q has time %v", ev.Kind, ev.Path, ev.Time)
			}
		}
	}
	if kinds[profiling.KindExec] != 5 || kinds[profiling.KindExecFailed] != 2 || kinds[profiling.KindFile] < 5 {
		t.Errorf("events by kind %v, want 5 execs, 2 failed and 5 or more file events", kinds)
	}
}

// With the kernel's BPF statistics on, Stats reports the exit program's
// runs and run time: at least one run per call of an observed workload.
func TestExitStats(t *testing.T) {
	f := setup(t)
	on, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	if err != nil {
		t.Fatalf("enable BPF statistics: %v", err)
	}
	defer on.Close()
	before := f.coll.Stats()
	const n = 5000
	rec, _ := observe(t, f.coll, f, "spin", fmt.Sprint(n))
	after := f.coll.Stats()
	if got := rec.count(isOpen); got != n {
		t.Fatalf("delivered %d opens, want %d", got, n)
	}
	if runs := after.ExitRuns - before.ExitRuns; runs < 2*n {
		t.Errorf("exit program ran %d times, want at least %d (an open and a close per step)", runs, 2*n)
	}
	if after.ExitRunTime <= before.ExitRunTime {
		t.Errorf("exit run time went from %v to %v", before.ExitRunTime, after.ExitRunTime)
	}
}

// With a tiny ring buffer and a sink that stalls, the kernel cannot queue
// everything: what it drops is counted, so that delivered + dropped is
// exactly what the workload did.
func TestDropsAreCounted(t *testing.T) {
	f := setup(t)
	c, err := Open(Config{RingBytes: MinRingBytes, CgroupRoot: "-"})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer c.Close()
	g := newGroup(t, "")
	release := make(chan struct{})
	rec := &recorder{}
	stall := sinkFunc(func(ev *profiling.Event) {
		<-release
		rec.Add(ev)
	})
	s, err := c.Start(context.Background(), profiling.Target{CgroupID: g.ID()}, stall)
	if err != nil {
		t.Fatal(err)
	}
	// Opens of distinct files: every one is a record.
	const n = 20000
	cmd := exec.Command(f.tester, "churn", fmt.Sprint(n))
	cmd.Dir = t.TempDir()
	runIn(t, g, cmd)
	close(release)
	rep, err := s.Stop(context.Background())
	if err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if rep.Dropped == 0 {
		t.Fatalf("nothing dropped with a %d-byte ring and a stalled reader", MinRingBytes)
	}
	// fork + exec + 256 creates + n opens + exit.
	if got := rep.Events + rep.Dropped; got != n+259 {
		t.Errorf("delivered %d + dropped %d = %d, want %d", rep.Events, rep.Dropped, got, n+259)
	}
	if st := c.Stats(); st.Dropped < uint64(rep.Dropped) {
		t.Errorf("Stats().Dropped = %d, want at least %d", st.Dropped, rep.Dropped)
	}
}

type sinkFunc func(*profiling.Event)

func (f sinkFunc) Add(ev *profiling.Event) { f(ev) }

// Concurrent sessions each see exactly their own workload.
func TestConcurrentSessions(t *testing.T) {
	f := setup(t)
	var wg sync.WaitGroup
	counts := []int{1000, 2000, 3000, 4000}
	got := make([]int, len(counts))
	reps := make([]profiling.Report, len(counts))
	groups := make([]*cgroup.Group, len(counts))
	for i := range counts {
		groups[i] = newGroup(t, "")
	}
	for i, n := range counts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rec := &recorder{}
			s, err := f.coll.Start(context.Background(), profiling.Target{CgroupID: groups[i].ID()}, rec)
			if err != nil {
				t.Error(err)
				return
			}
			cmd := exec.Command(f.tester, "spin", fmt.Sprint(n))
			if err := groups[i].StartInGroup(cmd); err != nil {
				t.Error(err)
				return
			}
			cmd.Wait()
			reps[i], err = s.Stop(context.Background())
			if err != nil {
				t.Error(err)
			}
			got[i] = rec.count(isOpen)
		}()
	}
	wg.Wait()
	for i, n := range counts {
		if got[i] != n || reps[i].Dropped != 0 {
			t.Errorf("session %d: %d opens, %d dropped; want %d and 0", i, got[i], reps[i].Dropped, n)
		}
	}
}

// A session on a parent cgroup sees its descendants; a session on the root
// cgroup sees everything; both coexist with the child's own session.
func TestNestedAndRootSessions(t *testing.T) {
	f := setup(t)
	parent := newGroup(t, "")
	layout, _ := cgroup.Detect()
	rel := strings.TrimPrefix(parent.Path(), layout.Unified+"/")
	child := newGroup(t, rel)
	recs := map[string]*recorder{"parent": {}, "child": {}, "root": {}}
	ids := map[string]uint64{"parent": parent.ID(), "child": child.ID(), "root": inode(t, layout.Unified)}
	sessions := map[string]profiling.Session{}
	for name, rec := range recs {
		s, err := f.coll.Start(context.Background(), profiling.Target{RunID: name, CgroupID: ids[name]}, rec)
		if err != nil {
			t.Fatalf("Start %s: %v", name, err)
		}
		sessions[name] = s
	}
	const n = 500
	cmd := exec.Command(f.tester, "spin", fmt.Sprint(n))
	runIn(t, child, cmd)
	pid := int64(cmd.Process.Pid)
	for name, s := range sessions {
		rep, err := s.Stop(context.Background())
		if err != nil {
			t.Fatalf("Stop %s: %v", name, err)
		}
		got := recs[name].count(func(ev *profiling.Event) bool { return isOpen(ev) && ev.PID == pid })
		if got != n {
			t.Errorf("session %s saw %d of the child's opens, want %d (report %+v)", name, got, n, rep)
		}
	}
}

// The kernel caches each cgroup's sessions (per cgroup, per build); a
// change of targets must reach a cgroup whose processes the collector
// already ruled out or matched. One cgroup runs the tester while sessions
// come and go on it and on its parent: unobserved first (the cache says
// "none"), then observed by itself, by its parent, by both, and by its
// parent again.
func TestMatchFollowsTargetChanges(t *testing.T) {
	forEachBuild(t, func(t *testing.T, f *fixture) {
		parent := newGroup(t, "")
		layout, _ := cgroup.Detect()
		child := newGroup(t, strings.TrimPrefix(parent.Path(), layout.Unified+"/"))
		const n = 200
		for _, step := range []struct {
			name    string
			targets []*cgroup.Group
		}{
			{"none", nil},
			{"child", []*cgroup.Group{child}},
			{"parent", []*cgroup.Group{parent}},
			{"both", []*cgroup.Group{parent, child}},
			{"parent again", []*cgroup.Group{parent}},
		} {
			var recs []*recorder
			var sessions []profiling.Session
			for _, g := range step.targets {
				rec := &recorder{}
				s, err := f.coll.Start(context.Background(), profiling.Target{RunID: step.name, CgroupID: g.ID()}, rec)
				if err != nil {
					t.Fatalf("%s: Start: %v", step.name, err)
				}
				recs, sessions = append(recs, rec), append(sessions, s)
			}
			cmd := exec.Command(f.tester, "spin", fmt.Sprint(n))
			runIn(t, child, cmd)
			pid := int64(cmd.Process.Pid)
			for i, s := range sessions {
				if _, err := s.Stop(context.Background()); err != nil {
					t.Fatalf("%s: Stop: %v", step.name, err)
				}
				got := recs[i].count(func(ev *profiling.Event) bool { return isOpen(ev) && ev.PID == pid })
				if got != n {
					t.Errorf("%s: session %d of %d saw %d opens, want %d", step.name, i+1, len(sessions), got, n)
				}
			}
		}
	})
}

func inode(t *testing.T, path string) uint64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Ino
}

func TestStartRejects(t *testing.T) {
	f := setup(t)
	g := newGroup(t, "")
	if _, err := f.coll.Start(context.Background(), profiling.Target{}, &recorder{}); !errors.Is(err, ErrInvalidTarget) {
		t.Errorf("zero cgroup id: got %v, want ErrInvalidTarget", err)
	}
	if _, err := f.coll.Start(context.Background(), profiling.Target{CgroupID: g.ID()}, nil); !errors.Is(err, ErrInvalidTarget) {
		t.Errorf("nil sink: got %v, want ErrInvalidTarget", err)
	}
	s, err := f.coll.Start(context.Background(), profiling.Target{CgroupID: g.ID()}, &recorder{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.coll.Start(context.Background(), profiling.Target{CgroupID: g.ID()}, &recorder{}); !errors.Is(err, ErrTargetBusy) {
		t.Errorf("second session on a cgroup: got %v, want ErrTargetBusy", err)
	}
	r1, err1 := s.Stop(context.Background())
	r2, err2 := s.Stop(context.Background())
	if err1 != nil || err2 != nil || r1.Events != r2.Events {
		t.Errorf("Stop twice: %v %v %+v %+v", err1, err2, r1, r2)
	}
	// The cgroup can be observed again once stopped.
	s, err = f.coll.Start(context.Background(), profiling.Target{CgroupID: g.ID()}, &recorder{})
	if err != nil {
		t.Fatalf("restart after Stop: %v", err)
	}
	s.Stop(context.Background())
	if st := f.coll.Stats(); st.Sessions != 0 {
		t.Errorf("Stats().Sessions = %d after every session stopped", st.Sessions)
	}
}

func TestCloseIsIdempotentAndFinal(t *testing.T) {
	testenv.RequireRoot(t)
	c, err := Open(Config{CgroupRoot: "-"})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if c.LoadTime() <= 0 {
		t.Errorf("LoadTime = %v", c.LoadTime())
	}
	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := c.Available(); !errors.Is(err, ErrClosed) {
		t.Errorf("Available after Close: %v", err)
	}
	if _, err := c.Start(context.Background(), profiling.Target{CgroupID: 1}, &recorder{}); !errors.Is(err, ErrClosed) {
		t.Errorf("Start after Close: %v", err)
	}
}

// What the collector cannot see is reported, never silently missing.
func TestBlindSpots(t *testing.T) {
	f := setup(t)
	cases := []struct{ args, want string }{
		{"iouring", "io_uring_setup by pid"},
		{"int80", "32-bit syscalls (int 0x80) by pid"},
		{"mountns", "mount by pid"},
	}
	for _, c := range cases {
		t.Run(c.args, func(t *testing.T) {
			_, rep := observe(t, f.coll, f, c.args)
			if len(rep.Blind) != 1 || !strings.Contains(rep.Blind[0], c.want) {
				t.Errorf("blind = %q, want one line containing %q", rep.Blind, c.want)
			}
		})
	}
}

func TestCapabilities(t *testing.T) {
	f := setup(t)
	caps := f.coll.Capabilities()
	if !caps.Usable() || !caps.BTF {
		t.Errorf("capabilities of a loaded collector: %+v", caps)
	}
	if !strings.Contains(strings.Join(caps.ProgramTypes, ","), "raw_tracepoint") {
		t.Errorf("program types %v lack raw_tracepoint", caps.ProgramTypes)
	}
	if f.coll.SocketHooks() == "" {
		t.Errorf("socket hooks not attached on a host with cgroup2")
	}
}

// With DetachIdle the syscall programs, which cost every process on the
// host, are attached only while something is observed (and detached a
// moment after the last session); without, always.
func TestDetachIdle(t *testing.T) {
	if c := setup(t).coll; c.sysLinks == nil {
		t.Error("syscall programs detached without DetachIdle")
	}
	c, err := Open(Config{DetachIdle: true, CgroupRoot: "-"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	attached := func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.sysLinks != nil
	}
	if attached() {
		t.Fatal("syscall programs attached with no session")
	}
	a, b := newGroup(t, ""), newGroup(t, "")
	s1, err := c.Start(context.Background(), profiling.Target{CgroupID: a.ID()}, &recorder{})
	if err != nil {
		t.Fatal(err)
	}
	s2, err := c.Start(context.Background(), profiling.Target{CgroupID: b.ID()}, &recorder{})
	if err != nil {
		t.Fatal(err)
	}
	if !attached() {
		t.Fatal("syscall programs not attached during a session")
	}
	if _, err := s1.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !attached() {
		t.Fatal("syscall programs detached while a session is still active")
	}
	if _, err := s2.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !attached() {
		t.Fatal("syscall programs detached at once: the next run would pay to attach them again")
	}
	deadline := time.Now().Add(idleDetachDelay + 5*time.Second)
	for attached() {
		if time.Now().After(deadline) {
			t.Fatalf("syscall programs still attached %v after the last session", idleDetachDelay+5*time.Second)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// A session while idle attaches them again, before its workload
	// starts: every open is seen.
	const n = 1000
	rec, rep := observe(t, c, setup(t), "spin", fmt.Sprint(n))
	if got := rec.count(isOpen); got != n || rep.Dropped != 0 {
		t.Errorf("after an idle detach: %d opens of /dev/null delivered (%d dropped), want %d", got, rep.Dropped, n)
	}
}

// Kernels from 6.2 (bpf_rdonly_cast) run the tp_btf build of the exit
// program; Config.RawTracepoints selects the raw tracepoint build.
func TestBuild(t *testing.T) {
	want := "raw_tracepoint"
	var u syscall.Utsname
	if err := syscall.Uname(&u); err != nil {
		t.Fatal(err)
	}
	var release []byte
	for _, c := range u.Release {
		release = append(release, byte(c))
	}
	var major, minor int
	fmt.Sscanf(string(release), "%d.%d", &major, &minor)
	if major > 6 || major == 6 && minor >= 2 {
		want = "tp_btf"
	}
	if got := setup(t).coll.Build(); got != want {
		t.Errorf("kernel %d.%d: build %q, want %q", major, minor, got, want)
	}
	if got := setupBuild(t, true).coll.Build(); got != "raw_tracepoint" {
		t.Errorf("RawTracepoints: build %q, want raw_tracepoint", got)
	}
}

// The enforcement test of issue 4: in a network-none sandbox Python's
// create_connection to a listener outside fails with EPERM, the listener
// sees nothing, and the receipt records the denied connect.
func TestNetworkNoneDeniesAndRecords(t *testing.T) {
	f := setup(t)
	testenv.RequireBinary(t, "python3")
	python := "/usr/bin/python3"
	ln := testenv.Listen(t, "tcp4", "127.0.0.1:0")
	port := ln.Port()
	g := newGroup(t, "")
	guard, err := netguard.Attach(g.Path(), execution.NetworkNone)
	if err != nil {
		t.Fatalf("netguard: %v", err)
	}
	defer guard.Close()
	agg := receipt.NewAggregator(time.Now(), receipt.Caps{})
	s, err := f.coll.Start(context.Background(), profiling.Target{CgroupID: g.ID()}, agg)
	if err != nil {
		t.Fatal(err)
	}
	code := fmt.Sprintf(`
import socket
try:
    socket.create_connection(("127.0.0.1", %d), timeout=5)
    print("connected")
except PermissionError as e:
    print("EPERM", e.errno)
`, port)
	var out strings.Builder
	cmd := exec.Command(python, "-c", code)
	cmd.Stdout = &out
	runIn(t, g, cmd)
	rep, err := s.Stop(context.Background())
	if err != nil || rep.Dropped != 0 {
		t.Fatalf("Stop: %+v %v", rep, err)
	}
	if strings.TrimSpace(out.String()) != "EPERM 1" {
		t.Errorf("python printed %q, want EPERM 1", out.String())
	}
	if n := ln.Accepted(1, 200*time.Millisecond); n != 0 {
		t.Errorf("the listener outside accepted %d connections", n)
	}
	_, _, nets, _ := agg.Sections()
	want := receipt.Net{Op: receipt.NetConnect, Family: receipt.FamilyInet, Protocol: receipt.ProtoTCP, Address: "127.0.0.1", Port: int64(port), OK: false, Errno: "EPERM"}
	found := false
	for _, n := range nets {
		n.PID, n.Count = 0, 0
		if n == want {
			found = true
		}
	}
	if !found {
		t.Errorf("network section %+v lacks the denied connect %+v", nets, want)
	}
}

// A non-blocking connect returns EINPROGRESS; the receipt records how the
// handshake ended instead.
// A connect's record names the address the kernel connected to (the
// cgroup hook's copy), not what the caller's memory holds by the time the
// call returns: another thread flips the port between a listening and a
// closed one all along, so a record read from memory would often pair a
// port with the other one's outcome.
func TestConnectAddressIsTheKernels(t *testing.T) {
	f := setup(t)
	if f.coll.SocketHooks() == "" {
		t.Fatal("socket hooks not attached")
	}
	open := testenv.Listen(t, "tcp4", "127.0.0.1:0").Port()
	closed := freePort(t, "tcp")
	rec, rep, out := observeOutput(t, f.coll, f, "flipconnect", fmt.Sprint(open), fmt.Sprint(closed), "300")
	if rep.Dropped != 0 {
		t.Fatalf("dropped %d", rep.Dropped)
	}
	var connected, refused int
	if _, err := fmt.Sscanf(out, "connected %d refused %d", &connected, &refused); err != nil {
		t.Fatalf("tester printed %q: %v", out, err)
	}
	want := map[int64]string{int64(open): "", int64(closed): "ECONNREFUSED"}
	seen := map[int64]int{}
	for _, ev := range rec.events {
		if ev.Kind != profiling.KindNet || ev.Op != receipt.NetConnect {
			continue
		}
		errno, ok := want[ev.Port]
		if !ok || ev.Errno != errno {
			t.Errorf("connect to %s:%d reported %q, want the outcome of that port (%d open, %d closed)", ev.Address, ev.Port, ev.Errno, open, closed)
			continue
		}
		seen[ev.Port]++
	}
	if seen[int64(open)] != connected || seen[int64(closed)] != refused {
		t.Errorf("connects per port %v, want %d to %d (open) and %d to %d (closed), as the tester saw them", seen, connected, open, refused, closed)
	}
}

// A second connect on a socket whose handshake is still in progress
// (EALREADY) reports itself and leaves the first connect's record, deferred
// until the handshake ends, alone: here it ends when the socket is closed.
func TestConnectAgainWhileInProgress(t *testing.T) {
	f := setup(t)
	rec, rep := observe(t, f.coll, f, "reconnect")
	if rep.Dropped != 0 {
		t.Fatalf("dropped %d", rep.Dropped)
	}
	var got []string
	for _, ev := range rec.events {
		if ev.Kind == profiling.KindNet && ev.Op == receipt.NetConnect {
			got = append(got, ev.Errno)
		}
	}
	slices.Sort(got)
	if want := []string{"", "EALREADY", "ECONNABORTED"}; !slices.Equal(got, want) {
		t.Errorf("connect outcomes %q, want %q (the queue filler, the second call, the first when closed)", got, want)
	}
}

func TestNonBlockingConnectOutcome(t *testing.T) {
	f := setup(t)
	open := testenv.Listen(t, "tcp4", "127.0.0.1:0").Port()
	closed := freePort(t, "tcp")
	rec, rep := observe(t, f.coll, f, "nbconnect", fmt.Sprint(open), fmt.Sprint(closed))
	if rep.Dropped != 0 {
		t.Fatalf("dropped %d", rep.Dropped)
	}
	want := map[int64]string{int64(open): "", int64(closed): "ECONNREFUSED"}
	got := map[int64]string{}
	for _, ev := range rec.events {
		if ev.Kind == profiling.KindNet && ev.Op == receipt.NetConnect {
			if _, dup := got[ev.Port]; dup {
				t.Errorf("connect to port %d reported twice", ev.Port)
			}
			got[ev.Port] = ev.Errno
		}
	}
	for port, errno := range want {
		if e, ok := got[port]; !ok || e != errno {
			t.Errorf("connect to port %d: errno %q (reported %v), want %q", port, e, ok, errno)
		}
	}
}
