//go:build linux

package qemu

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"glasshouse.dev/glasshouse/core/execution"
	"glasshouse.dev/glasshouse/core/execution/executiontest"
	"glasshouse.dev/glasshouse/core/profiling"
	"glasshouse.dev/glasshouse/core/receipt"
)

func python(code string) execution.Spec {
	return execution.Spec{Code: code, Language: execution.LanguagePython, Timeout: 90 * time.Second}
}

func wantFailure(t *testing.T, run *execution.Run, failures ...string) {
	t.Helper()
	o := run.Receipt.Outcome
	for _, f := range failures {
		if o.Failure == f {
			return
		}
	}
	t.Fatalf("failure = %q (error %q, exit %d, signal %q), want one of %v\nstdout %q\nstderr %q",
		o.Failure, o.Error, o.ExitCode, o.Signal, failures, run.Result.Stdout, run.Result.Stderr)
}

// TestGuestCannotReadHostFile plants a marker file on the host and checks
// that the guest sees no trace of it, nor of the host's environment.
func TestGuestCannotReadHostFile(t *testing.T) {
	b, _ := newTestBackend(t, nil)
	marker := filepath.Join(os.TempDir(), "glasshouse-host-marker-"+execution.NewID())
	secret := "host-secret-" + execution.NewID()
	if err := os.WriteFile(marker, []byte(secret), 0o644); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(marker)
	t.Setenv("GLASSHOUSE_HOST_ONLY", secret)
	code := fmt.Sprintf(`import os, subprocess
path = %q
print("exists" if os.path.exists(path) else "absent")
try:
    print(open(path).read())
except OSError as e:
    print("error", type(e).__name__)
# The secret is written reversed so that main.py itself does not hold it.
found = subprocess.run(["grep", "-rs", "-l", %q[::-1], "/tmp", "/workspace", "/etc", "/proc/self/environ"], capture_output=True, text=True).stdout
print("found:" + found.strip())
print("env:" + ",".join(sorted(os.environ)))
`, marker, reverse(secret))
	run := runSpec(t, b, python(code))
	wantFailure(t, run, receipt.FailureNone)
	out := string(run.Result.Stdout)
	if strings.Contains(out, secret) || !strings.Contains(out, "absent") || !strings.Contains(out, "error FileNotFoundError") || !strings.Contains(out, "found:\n") {
		t.Fatalf("the guest saw the host's marker:\n%s", out)
	}
	if strings.Contains(out, "GLASSHOUSE_HOST_ONLY") {
		t.Fatalf("host environment leaked: %s", out)
	}
}

// hostProcs counts the host processes descending from this test process:
// the only ones a run can add to the host (QEMU), whatever else runs on
// the machine.
func hostProcs(t *testing.T) int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	parent := map[int]int{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// The fields after the command, which is in parentheses.
		rest := string(b[strings.LastIndexByte(string(b), ')')+1:])
		f := strings.Fields(rest)
		if len(f) > 2 {
			parent[pid], _ = strconv.Atoi(f[1])
		}
	}
	self, n := os.Getpid(), 0
	for pid := range parent {
		for p, hops := parent[pid], 0; p > 1 && hops < 64; p, hops = parent[p], hops+1 {
			if p == self {
				n++
				break
			}
		}
	}
	return n
}

// qemuRSS returns the resident memory of QEMU processes under the backend's
// state directory.
func qemuRSS(state string) int64 {
	var total int64
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		cmd, err := os.ReadFile(filepath.Join("/proc", p.Name(), "cmdline"))
		if err != nil || !strings.Contains(string(cmd), state+"/") {
			continue
		}
		status, _ := os.ReadFile(filepath.Join("/proc", p.Name(), "status"))
		for _, line := range strings.Split(string(status), "\n") {
			if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
				kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
				total += kb << 10
			}
		}
	}
	return total
}

// TestBombs runs a fork bomb and a memory bomb: each must end as oom or
// timeout inside the guest, with the host's process count and QEMU's memory
// bounded.
func TestBombs(t *testing.T) {
	b, tr := newTestBackend(t, map[string]string{"qemu.memory": "512MiB"})
	tests := []struct {
		name     string
		code     string
		limits   execution.Limits
		failures []string
	}{
		{"fork", `import os
while True:
    try:
        os.fork()
    except OSError:
        pass`, execution.Limits{PIDs: 64}, []string{receipt.FailureTimeout, receipt.FailureOOM}},
		{"memory", `chunks = []
while True:
    chunks.append(bytearray(8 << 20))`, execution.Limits{MemoryBytes: 96 << 20}, []string{receipt.FailureOOM}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// A first run with these limits builds their snapshot
			// template (a template VM, its state written by a shell,
			// mkfs for the workspace): host processes that are the
			// backend's, not the bomb's, so outside the window.
			warm := python("pass")
			warm.Limits = tt.limits
			wantFailure(t, runSpec(t, b, warm), receipt.FailureNone)
			before := hostProcs(t)
			spec := python(tt.code)
			spec.Timeout = 15 * time.Second
			spec.Limits = tt.limits
			var peakProcs int
			var peakRSS int64
			done := make(chan struct{})
			go func() {
				tick := time.NewTicker(100 * time.Millisecond)
				defer tick.Stop()
				for {
					select {
					case <-done:
						return
					case <-tick.C:
						peakProcs = max(peakProcs, hostProcs(t))
						peakRSS = max(peakRSS, qemuRSS(tr.state))
					}
				}
			}()
			run := runSpec(t, b, spec)
			close(done)
			wantFailure(t, run, tt.failures...)
			if peakProcs > before+2 {
				t.Errorf("host processes went from %d to %d during the run", before, peakProcs)
			}
			if limit := int64(512<<20) + 512<<20; peakRSS > limit {
				t.Errorf("qemu RSS peaked at %d MiB, above guest RAM plus overhead (%d MiB)", peakRSS>>20, limit>>20)
			}
			t.Logf("%s: failure %s, host procs %d -> peak %d, qemu rss peak %d MiB, pids peak %d, mem peak %d MiB",
				tt.name, run.Receipt.Outcome.Failure, before, peakProcs, peakRSS>>20, run.Receipt.Resources.PIDsPeak, run.Receipt.Resources.MemoryPeakBytes>>20)
		})
	}
}

// TestKilledVM kills QEMU in the middle of a run: the run must end as an
// infrastructure failure that points at the kept console log.
func TestKilledVM(t *testing.T) {
	b, tr := newTestBackend(t, nil)
	spec := python("import time\nprint('up', flush=True)\ntime.sleep(600)").WithDefaults()
	spec.Env = map[string]string{executiontest.MarkerEnv: execution.NewID()}
	inst, err := b.Prepare(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	defer inst.Cleanup(context.Background())
	if err := inst.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	qemu := inst.(*instance).m.cmd.Process
	time.Sleep(500 * time.Millisecond)
	if err := qemu.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	res, err := inst.Wait(context.Background())
	if err != nil {
		t.Fatalf("Wait: %v", err)
	}
	if !errors.Is(res.Err, execution.ErrInfrastructure) {
		t.Fatalf("result error %v, want an infrastructure failure", res.Err)
	}
	if time.Since(start) > 10*time.Second {
		t.Errorf("noticing the dead VM took %s", time.Since(start))
	}
	assertConsoleKept(t, res.Err)
	if err := inst.Cleanup(context.Background()); err != nil {
		t.Fatal(err)
	}
	if left := tr.leftovers(spec.Env[executiontest.MarkerEnv]); len(left) > 0 {
		t.Fatalf("left behind: %v", left)
	}
}

func assertConsoleKept(t *testing.T, err error) {
	t.Helper()
	msg := err.Error()
	i := strings.Index(msg, "console log ")
	if i < 0 {
		t.Fatalf("error does not name the console log: %v", err)
	}
	path := strings.Fields(msg[i+len("console log "):])[0]
	path = strings.TrimSuffix(path, ";")
	b, rerr := os.ReadFile(path)
	if rerr != nil {
		t.Fatalf("console log %s: %v", path, rerr)
	}
	if !strings.Contains(string(b), "glasshouse init") && !strings.Contains(string(b), "Kernel panic") {
		t.Errorf("console log %s holds no guest output: %q", path, b)
	}
}

// TestSilentGuest freezes a booted guest: Start must give up within the
// run's timeout with an infrastructure failure.
func TestSilentGuest(t *testing.T) {
	b, _ := newTestBackend(t, nil)
	spec := python("print('never')").WithDefaults()
	spec.Timeout = 3 * time.Second
	inst, err := b.Prepare(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	defer inst.Cleanup(context.Background())
	qemu := inst.(*instance).m.cmd.Process
	if err := qemu.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err = inst.Start(context.Background())
	if !errors.Is(err, execution.ErrInfrastructure) {
		t.Fatalf("Start = %v, want an infrastructure failure", err)
	}
	if el := time.Since(start); el > spec.Timeout+2*time.Second {
		t.Errorf("detecting the silent guest took %s for a %s timeout", el, spec.Timeout)
	}
	if err := inst.Cleanup(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// TestPanickingGuest boots a guest whose init cannot start: the kernel
// panics, QEMU exits, and Prepare's infrastructure failure keeps the
// console with the panic.
func TestPanickingGuest(t *testing.T) {
	b, _ := newTestBackend(t, map[string]string{"qemu.kernel_args": "rdinit=/nonexistent"})
	e, err := execution.New(execution.Config{Backend: b})
	if err != nil {
		t.Fatal(err)
	}
	run, err := e.Run(context.Background(), python("print(1)"))
	if err != nil {
		t.Fatal(err)
	}
	if run.Receipt.Outcome.Failure != receipt.FailureInfrastructure {
		t.Fatalf("outcome %+v", run.Receipt.Outcome)
	}
	assertConsoleKept(t, errors.New(run.Receipt.Outcome.Error))
}

// TestPoolRuns runs 50 short runs, two at a time, through a warm pool and
// checks that every run had its own guest and that nothing is left behind.
func TestPoolRuns(t *testing.T) {
	const runs, workers = 50, 2
	b, tr := newTestBackend(t, map[string]string{"qemu.pool": "2", "qemu.pool_boots": "2", "qemu.pool_collector": "false"})
	fds := openFDs(t)
	e, err := execution.New(execution.Config{Backend: b})
	if err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	next := make(chan int)
	errs := make(chan error, runs)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				marker := execution.NewID()
				spec := python(fmt.Sprintf("print(%d)", i))
				spec.Env = map[string]string{executiontest.MarkerEnv: marker}
				run, err := e.Run(context.Background(), spec)
				switch {
				case err != nil:
					errs <- fmt.Errorf("run %d: %w", i, err)
				case run.Receipt.Outcome.Failure != receipt.FailureNone:
					errs <- fmt.Errorf("run %d: failure %s: %s", i, run.Receipt.Outcome.Failure, run.Receipt.Outcome.Error)
				case string(run.Result.Stdout) != fmt.Sprintf("%d\n", i):
					errs <- fmt.Errorf("run %d: stdout %q", i, run.Result.Stdout)
				}
				if left := tr.leftovers(marker); len(left) > 0 {
					errs <- fmt.Errorf("run %d left %v", i, left)
				}
			}
		}()
	}
	for i := 0; i < runs; i++ {
		if i%10 == 0 {
			t.Logf("run %d after %s: %+v", i, time.Since(began).Round(time.Millisecond), b.Stats())
		}
		next <- i
	}
	close(next)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	seen := map[string]bool{}
	tr.mu.Lock()
	n := 0
	for _, insts := range tr.runs {
		for _, i := range insts {
			n++
			if seen[i.m.id] {
				t.Errorf("vm %s served two runs", i.m.id)
			}
			seen[i.m.id] = true
		}
	}
	tr.mu.Unlock()
	if n != runs {
		t.Errorf("%d runs prepared, want %d", n, runs)
	}
	s := b.Stats()
	t.Logf("pool stats after %d runs in %s: %+v", runs, time.Since(began).Round(time.Millisecond), s)
	if s.Hits == 0 {
		t.Errorf("no run was served by the pool: %+v", s)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if left := tr.leftovers(executiontest.AllRuns); len(left) > 0 {
		t.Fatalf("left behind after %d runs: %v", runs, left)
	}
	if after := openFDs(t); after > fds+2 {
		t.Errorf("open file descriptors went from %d to %d", fds, after)
	}
}

func openFDs(t *testing.T) int {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(entries)
}

// TestGuestProfile runs with profiling required and checks that the
// receipt carries what the guest collector saw, with the paths the workload
// sees.
func TestGuestProfile(t *testing.T) {
	b, _ := newTestBackend(t, nil)
	spec := python("import subprocess\nopen('out.txt', 'w').write('x')\nsubprocess.run(['true'])")
	spec.Profile = profiling.Required
	run := runSpec(t, b, spec)
	wantFailure(t, run, receipt.FailureNone)
	r := run.Receipt
	if r.Profiling.Collector != receipt.CollectorEBPFGuest || r.Profiling.Status != receipt.StatusComplete {
		t.Fatalf("profiling %+v", r.Profiling)
	}
	var python, child bool
	for _, p := range r.Processes {
		python = python || strings.HasPrefix(p.Exe, "/usr/bin/python3")
		child = child || p.Exe == "/usr/bin/true"
	}
	var wrote bool
	for _, f := range r.Files {
		wrote = wrote || (f.Path == "/workspace/out.txt" && (f.Op == receipt.OpCreate || f.Op == receipt.OpWrite))
		if strings.HasPrefix(f.Path, rootDirPrefix) {
			t.Errorf("file path %q is the guest's, not the sandbox's", f.Path)
		}
	}
	if !python || !child || !wrote {
		t.Fatalf("receipt lacks the guest's activity (python %v, child %v, wrote %v):\nprocesses %+v\nfiles %+v", python, child, wrote, r.Processes, r.Files)
	}
}

// rootDirPrefix is guest/init's chroot; it must not show in receipts.
const rootDirPrefix = "/rootfs/"

// TestNetworkModes checks that "none" keeps even loopback down and
// "loopback" brings it up, both without a network device, and that "full"
// gives the guest a device through which it reaches a TCP listener on the
// host (QEMU user-mode networking: the host is 10.0.2.2).
func TestNetworkModes(t *testing.T) {
	b, _ := newTestBackend(t, map[string]string{"qemu.pool": "1", "qemu.pool_collector": "false"})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	greeting := "hello-from-host-" + execution.NewID()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			_, _ = c.Write([]byte(greeting))
			c.Close()
		}
	}()
	port := l.Addr().(*net.TCPAddr).Port
	code := fmt.Sprintf(`import os, socket
print("devices:" + ",".join(sorted(os.listdir("/sys/class/net"))))
try:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    c = socket.create_connection(s.getsockname(), timeout=5)
    print("loopback connected")
except OSError as e:
    print("loopback error", e.errno)
try:
    c = socket.create_connection(("10.0.2.2", %d), timeout=20)
    print("host said " + c.recv(100).decode())
except OSError as e:
    print("host error", e.errno)
`, port)
	for _, tt := range []struct {
		network execution.Network
		want    []string
	}{
		{execution.NetworkNone, []string{"devices:lo\n", "loopback error", "host error"}},
		{execution.NetworkLoopback, []string{"devices:lo\n", "loopback connected", "host error"}},
		{execution.NetworkFull, []string{"devices:eth0,lo\n", "loopback connected", "host said " + greeting}},
	} {
		spec := python(code)
		spec.Limits.Network = tt.network
		run := runSpec(t, b, spec)
		wantFailure(t, run, receipt.FailureNone)
		for _, w := range tt.want {
			if !strings.Contains(string(run.Result.Stdout), w) {
				t.Errorf("network %s: stdout %q lacks %q", tt.network, run.Result.Stdout, w)
			}
		}
	}
}

// TestSnapshotRestore restores guests from one template and checks that
// each got fresh randomness from the host (the template's kernel random
// state is shared until Wake reseeds it) and the host's clock, and that
// files written by one run are not seen by the next (each guest gets its
// own copy of the template's blank workspace).
func TestSnapshotRestore(t *testing.T) {
	b, _ := newTestBackend(t, map[string]string{"qemu.pool_collector": "false"})
	code := `import os, time
print(os.urandom(16).hex(), repr(time.time()), sorted(os.listdir(".")))
with open("left-behind", "w") as f:
    f.write("x")`
	seen := map[string]bool{}
	for i := 0; i < 3; i++ {
		spec := python(code).WithDefaults()
		inst, err := b.Prepare(context.Background(), spec)
		if err != nil {
			t.Fatal(err)
		}
		if err := inst.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		res, err := inst.Wait(context.Background())
		host := time.Now()
		ph := inst.(*instance).Phases()
		inst.Cleanup(context.Background())
		if err != nil || res.Err != nil || res.ExitCode != 0 {
			t.Fatalf("run %d: %v %v %q", i, err, res.Err, res.Stderr)
		}
		if !ph.Restored {
			t.Fatalf("run %d: guest was booted, not restored (phases %+v)", i, ph)
		}
		f := strings.Fields(string(res.Stdout))
		if len(f) < 3 {
			t.Fatalf("run %d: stdout %q", i, res.Stdout)
		}
		if seen[f[0]] {
			t.Fatalf("run %d: random bytes %s repeat an earlier guest's", i, f[0])
		}
		seen[f[0]] = true
		ts, err := strconv.ParseFloat(f[1], 64)
		if err != nil {
			t.Fatal(err)
		}
		if d := host.Sub(time.Unix(0, int64(ts*1e9))); d < 0 || d > 30*time.Second {
			t.Errorf("run %d: guest clock %s is %s away from the host's %s", i, time.Unix(0, int64(ts*1e9)), d, host)
		}
		if !strings.Contains(string(res.Stdout), "['lost+found', 'main.py']") {
			t.Errorf("run %d: workspace %q, want only lost+found and main.py", i, strings.Join(f[2:], " "))
		}
		t.Logf("run %d: restore %s, wake %s, python %s", i, ph.Boot, ph.Wake, ph.Run)
	}
}

// TestReap kills a process that owns a VM (as kill -9 of a server would)
// and checks that Reap kills its QEMU and removes its directory, and
// leaves alone the VM of a live owner.
func TestReap(t *testing.T) {
	if os.Getenv("GLASSHOUSE_REAP_CHILD") != "" {
		reapChild(t)
		return
	}
	b, tr := newTestBackend(t, map[string]string{"qemu.snapshot": "false"})
	// A VM of a live owner (this process).
	spec := python("print('alive')").WithDefaults()
	spec.Env = map[string]string{executiontest.MarkerEnv: execution.NewID()}
	mine, err := b.Prepare(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	defer mine.Cleanup(context.Background())

	cmd := exec.Command(os.Args[0], "-test.run=^TestReap$", "-test.v")
	cmd.Env = append(os.Environ(), "GLASSHOUSE_REAP_CHILD="+tr.state, "GLASSHOUSE_ARTIFACTS="+testArtifacts(t))
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var dir string
	var pid int
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if _, err := fmt.Sscanf(sc.Text(), "reap-child-ready %s %d", &dir, &pid); err == nil {
			break
		}
	}
	if dir == "" {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatal("the child never reported its VM")
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	time.Sleep(200 * time.Millisecond)
	if syscall.Kill(pid, 0) != nil {
		t.Fatalf("the orphaned qemu %d is already gone: the test proves nothing", pid)
	}
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("the dead owner's vm directory is already gone: %v", err)
	}

	n, err := b.Reap(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Errorf("Reap removed %d directories, want 1", n)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("vm directory %s left: %v", dir, err)
	}
	if syscall.Kill(pid, 0) == nil && !zombie(pid) {
		t.Errorf("qemu %d still runs", pid)
	}
	// The live owner's VM is untouched and still runs.
	if err := mine.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	res, err := mine.Wait(context.Background())
	if err != nil || res.Err != nil || string(res.Stdout) != "alive\n" {
		t.Fatalf("the live VM: %v %v %q", err, res.Err, res.Stdout)
	}
}

// reapChild prepares a VM whose QEMU outlives this process, reports it and
// waits to be killed.
func reapChild(t *testing.T) {
	opts := execution.Options{StateDir: os.Getenv("GLASSHOUSE_REAP_CHILD"), ArtifactsDir: os.Getenv("GLASSHOUSE_ARTIFACTS"),
		Settings: map[string]string{"qemu.accel": "tcg", "qemu.snapshot": "false"}}
	cfg, err := configFrom(opts)
	if err != nil {
		t.Fatal(err)
	}
	b, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	b.orphanQEMU = true
	inst, err := b.Prepare(context.Background(), python("print(1)").WithDefaults())
	if err != nil {
		t.Fatal(err)
	}
	m := inst.(*instance).m
	fmt.Printf("reap-child-ready %s %d\n", m.dir, m.cmd.Process.Pid)
	time.Sleep(time.Hour)
}

func reverse(s string) string {
	r := []rune(s)
	slices.Reverse(r)
	return string(r)
}

// TestBrokenSnapshotFallsBack breaks a template's saved state: the next
// guest cannot be restored, so the template is dropped and the run boots a
// guest instead, and succeeds.
func TestBrokenSnapshotFallsBack(t *testing.T) {
	b, _ := newTestBackend(t, map[string]string{"qemu.snapshot_dir": filepath.Join(t.TempDir(), "snaps"), "qemu.pool_collector": "false"})
	b.Warm() // builds the template in the background
	s, err := b.snapshotFor(context.Background(), "tcg", variant{memory: b.cfg.MemoryBytes})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(s.path(snapStateFile), []byte("QEVM garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	spec := python("print('booted')").WithDefaults()
	inst, err := b.Prepare(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	defer inst.Cleanup(context.Background())
	if ph := inst.(*instance).m.phases; ph.Restored {
		t.Fatal("the guest was restored from a broken template")
	}
	if err := inst.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	res, err := inst.Wait(context.Background())
	if err != nil || res.Err != nil || string(res.Stdout) != "booted\n" {
		t.Fatalf("run: %v %v %q", err, res.Err, res.Stdout)
	}
	if _, err := os.Stat(s.dir); !os.IsNotExist(err) {
		t.Errorf("the broken template %s was kept: %v", s.dir, err)
	}
}
