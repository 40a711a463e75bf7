//go:build linux

package process_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"glasshouse.dev/glasshouse/backend/process"
	"glasshouse.dev/glasshouse/core/execution"
	"glasshouse.dev/glasshouse/core/execution/executiontest"
	"glasshouse.dev/glasshouse/core/receipt"
	"glasshouse.dev/glasshouse/internal/cgroup"
	"glasshouse.dev/glasshouse/internal/testenv"
)

// newBackend returns a backend with its own state directory and cgroup
// parent, so leftovers can be attributed to this test.
func newBackend(t testing.TB, opts ...func(*process.Config)) (*process.Backend, string, string) {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.RequireBinary(t, "python3")
	state := t.TempDir()
	for _, d := range []string{state, filepath.Dir(state)} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	parent := "glasshouse-test-" + strconv.Itoa(os.Getpid())
	cfg := process.Config{StateDir: state, CgroupParent: parent}
	for _, o := range opts {
		o(&cfg)
	}
	b, err := process.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		b.Close()
		removeParent(parent)
	})
	return b, state, parent
}

func removeParent(parent string) {
	l, err := cgroup.Detect()
	if err != nil {
		return
	}
	roots := []string{l.Unified}
	for _, mnt := range l.V1 {
		roots = append(roots, mnt)
	}
	for _, r := range roots {
		modes, _ := filepath.Glob(filepath.Join(r, parent, "net-*"))
		for _, m := range modes {
			_ = os.Remove(m)
		}
		_ = os.Remove(filepath.Join(r, parent))
	}
}

// leftovers reports processes carrying marker, and anything left in the
// state directory or under the cgroup parent.
func leftovers(state, parent string) func(string) []string {
	return func(marker string) []string {
		var out []string
		needle := []byte(executiontest.MarkerEnv + "=" + marker)
		procs, _ := filepath.Glob("/proc/[0-9]*/environ")
		for _, p := range procs {
			env, err := os.ReadFile(p)
			if err != nil || !bytes.Contains(env, needle) {
				continue
			}
			stat, _ := os.ReadFile(filepath.Join(filepath.Dir(p), "stat"))
			if fields := strings.Fields(string(stat)); len(fields) > 2 && fields[2] == "Z" {
				continue // reaped momentarily by its parent, which is gone
			}
			out = append(out, "process "+filepath.Base(filepath.Dir(p))+": "+strings.TrimSpace(string(stat)))
		}
		ents, _ := os.ReadDir(state)
		for _, e := range ents {
			if e.Name() != ".glasshouse-uids" { // the shared identity registry
				out = append(out, "workspace "+filepath.Join(state, e.Name()))
			}
		}
		l, err := cgroup.Detect()
		if err != nil {
			return append(out, err.Error())
		}
		roots := []string{l.Unified}
		for _, mnt := range l.V1 {
			roots = append(roots, mnt)
		}
		for _, r := range roots {
			top := filepath.Join(r, parent)
			_ = filepath.WalkDir(top, func(p string, d os.DirEntry, err error) error {
				if err == nil && p != top && d.IsDir() && strings.HasPrefix(d.Name(), "glasshouse-") {
					out = append(out, "cgroup "+p)
				}
				return nil
			})
		}
		return out
	}
}

func TestConformance(t *testing.T) {
	b, state, parent := newBackend(t)
	executiontest.Run(t, executiontest.Harness{
		Backend:   b,
		Leftovers: leftovers(state, parent),
		Timeout:   20 * time.Second,
	})
}

// TestConformanceForked runs the suite's Python workloads forked from the
// fork server.
func TestConformanceForked(t *testing.T) {
	b, state, parent := newBackend(t, withZygote)
	executiontest.Run(t, executiontest.Harness{
		Backend:   b,
		Leftovers: leftovers(state, parent),
		Timeout:   20 * time.Second,
	})
}

func run(t *testing.T, b execution.Backend, spec execution.Spec) *execution.Run {
	t.Helper()
	e, err := execution.New(execution.Config{Backend: b})
	if err != nil {
		t.Fatal(err)
	}
	if spec.Timeout == 0 {
		spec.Timeout = 30 * time.Second
	}
	r, err := e.Run(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestContainedFromFirstInstruction checks that the workload's very first
// process is already in the run's cgroups, v1 controllers included.
func TestContainedFromFirstInstruction(t *testing.T) {
	b, _, parent := newBackend(t)
	r := run(t, b, execution.Spec{Command: []string{"cat", "/proc/self/cgroup"}})
	if r.Receipt.Outcome.Failure != receipt.FailureNone {
		t.Fatalf("failure %q: %s", r.Receipt.Outcome.Failure, r.Result.Stderr)
	}
	l, err := cgroup.Detect()
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(r.Result.Stdout)), "\n")
	want := map[string]string{"": "/" + parent + "/"}
	if l.Hybrid() {
		// cpuacct is not joined: CPU time comes from cgroup2 cpu.stat.
		for _, c := range []string{"memory", "pids", "cpu"} {
			if _, ok := l.V1[c]; ok {
				want[c] = "/" + parent + "/"
			}
		}
	}
	for _, line := range lines {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		for ctrl, prefix := range want {
			if parts[1] == ctrl || (ctrl != "" && strings.Contains(","+parts[1]+",", ","+ctrl+",")) {
				if !strings.HasPrefix(parts[2], prefix) {
					t.Errorf("controller %q: cgroup %q, want under %q", ctrl, parts[2], prefix)
				}
				delete(want, ctrl)
			}
		}
	}
	if len(want) > 0 {
		t.Errorf("controllers not found in /proc/self/cgroup: %v\n%s", want, r.Result.Stdout)
	}
	if r.Receipt.Backend.Containment != "cgroup" {
		t.Errorf("containment = %q, want cgroup", r.Receipt.Backend.Containment)
	}
}

func TestMemoryLimitEndsAsOOM(t *testing.T) {
	b, _, _ := newBackend(t)
	spec := execution.Spec{
		Code:     "x = bytearray(512 << 20)\nprint(len(x))",
		Language: execution.LanguagePython,
		Limits:   execution.Limits{MemoryBytes: 64 << 20},
	}
	r := run(t, b, spec)
	o := r.Receipt.Outcome
	if o.Failure != receipt.FailureOOM || !o.OOMKilled {
		t.Fatalf("outcome %+v, want oom", o)
	}
	if peak := r.Receipt.Resources.MemoryPeakBytes; peak > 64<<20 || peak < 16<<20 {
		t.Errorf("memory peak %d outside (16MiB, 64MiB]", peak)
	}
}

func TestPIDsLimit(t *testing.T) {
	b, _, _ := newBackend(t)
	code := `import os, sys
n = 0
for _ in range(64):
    try:
        pid = os.fork()
    except OSError:
        break
    if pid == 0:
        import time; time.sleep(30); os._exit(0)
    n += 1
print(n)`
	r := run(t, b, execution.Spec{Code: code, Language: execution.LanguagePython, Limits: execution.Limits{PIDs: 8}})
	if r.Receipt.Outcome.Failure != receipt.FailureNone {
		t.Fatalf("failure %q: %s", r.Receipt.Outcome.Failure, r.Result.Stderr)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(r.Result.Stdout)))
	if err != nil || n != 7 {
		t.Fatalf("forked %q children under a limit of 8 tasks, want 7", r.Result.Stdout)
	}
	if peak := r.Receipt.Resources.PIDsPeak; peak != 8 {
		t.Errorf("pids peak %d, want 8", peak)
	}
}

func TestResourcesAccounted(t *testing.T) {
	b, _, _ := newBackend(t)
	code := "import time\nx = bytearray(40 << 20)\nt = time.process_time()\nwhile time.process_time() - t < 0.2:\n    pass\nprint('done')"
	r := run(t, b, execution.Spec{Code: code, Language: execution.LanguagePython})
	res := r.Receipt.Resources
	if res.CPUUserMS+res.CPUSystemMS < 150 {
		t.Errorf("cpu %d+%d ms for a 200 ms busy loop", res.CPUUserMS, res.CPUSystemMS)
	}
	if res.MemoryPeakBytes < 40<<20 {
		t.Errorf("memory peak %d below the 40 MiB allocated", res.MemoryPeakBytes)
	}
	if res.PIDsPeak != 1 {
		t.Errorf("pids peak %d, want 1", res.PIDsPeak)
	}
}

func TestRunsAsUnprivilegedUser(t *testing.T) {
	b, _, _ := newBackend(t)
	r := run(t, b, execution.Spec{Command: []string{"id", "-u"}})
	uid, err := strconv.Atoi(strings.TrimSpace(string(r.Result.Stdout)))
	if err != nil || uid < 1_000_000_000 || uid >= 1_000_000_000+65536 {
		t.Fatalf("uid %q, want one from the per-run range", r.Result.Stdout)
	}
}

// TestRunsCannotSignalEachOther runs a workload that kills every process it
// is allowed to signal next to a long-running one: with a per-run identity
// the other run survives.
func TestRunsCannotSignalEachOther(t *testing.T) {
	b, _, _ := newBackend(t)
	done := make(chan *execution.Run)
	go func() {
		done <- run(t, b, execution.Spec{Command: []string{"sh", "-c", "sleep 1; echo survived"}})
	}()
	time.Sleep(300 * time.Millisecond)
	run(t, b, execution.Spec{Command: []string{"sh", "-c", "kill -9 -1; sleep 1"}})
	victim := <-done
	if o := victim.Receipt.Outcome; o.Failure != receipt.FailureNone || string(victim.Result.Stdout) != "survived\n" {
		t.Fatalf("the other run was killed: %+v stdout %q", o, victim.Result.Stdout)
	}
}

// TestCollectDoesNotFollowSymlinks plants a symlink to a host file where an
// output is expected; collection must not read through it.
func TestCollectDoesNotFollowSymlinks(t *testing.T) {
	b, _, _ := newBackend(t)
	secret := filepath.Join(t.TempDir(), "host-secret")
	if err := os.WriteFile(secret, []byte("host secret"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := run(t, b, execution.Spec{
		Command: []string{"ln", "-s", secret, "out.txt"},
		Collect: []string{"out.txt"},
	})
	for _, f := range r.Result.Files {
		if strings.Contains(string(f.Content), "secret") {
			t.Fatalf("collected %s through a symlink: %q", f.Path, f.Content)
		}
	}
	if !strings.Contains(strings.Join(r.Receipt.Backend.Notes, "\n"), "collect out.txt") {
		t.Errorf("refused collection not noted: %q", r.Receipt.Backend.Notes)
	}
}

func TestLookPathErrors(t *testing.T) {
	b, _, _ := newBackend(t)
	e, err := execution.New(execution.Config{Backend: b})
	if err != nil {
		t.Fatal(err)
	}
	for _, argv := range [][]string{{"/nonexistent/tool"}, {"./missing.sh"}, {"/etc"}, {"/etc/hostname"}} {
		_, err := e.Run(context.Background(), execution.Spec{Command: argv, Timeout: time.Second})
		if err == nil || !strings.Contains(err.Error(), argv[0]) {
			t.Errorf("%v: err = %v, want a command-not-found error naming it", argv, err)
		}
	}
}

func ExampleBackend() {
	b, err := process.New(process.Config{})
	if err != nil {
		panic(err)
	}
	e, _ := execution.New(execution.Config{Backend: b})
	r, err := e.Run(context.Background(), execution.Spec{Code: "print(2+2)", Language: "python"})
	if err != nil {
		panic(err)
	}
	fmt.Print(string(r.Result.Stdout))
}

// TestReapRemovesDeadOwnersRuns plants the remains of a run whose owner
// died (a cgroup with a live daemon, a workspace) beside a live owner's, and
// checks that Reap removes exactly the dead owner's.
func TestReapRemovesDeadOwnersRuns(t *testing.T) {
	b, state, parent := newBackend(t)
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	l, err := cgroup.Detect()
	if err != nil {
		t.Fatal(err)
	}
	deadName := fmt.Sprintf("glasshouse-%d-1", dead.Process.Pid)
	liveName := fmt.Sprintf("glasshouse-%d-1", os.Getpid())
	var daemon *exec.Cmd
	for _, name := range []string{deadName, liveName} {
		g, err := l.Create(parent, name, cgroup.Limits{})
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Mkdir(filepath.Join(state, name), 0o700); err != nil {
			t.Fatal(err)
		}
		if name == deadName {
			daemon = exec.Command("sleep", "100")
			if err := g.StartInGroup(daemon); err != nil {
				t.Fatal(err)
			}
		} else {
			t.Cleanup(func() { _ = g.Remove() })
		}
	}
	n, err := b.Reap(context.Background())
	if err != nil || n != 1 {
		t.Fatalf("Reap = %d, %v; want 1 run removed", n, err)
	}
	if err := daemon.Wait(); err == nil {
		t.Error("the dead owner's daemon exited cleanly instead of being killed")
	}
	if _, err := os.Stat(filepath.Join(l.Unified, parent, deadName)); !os.IsNotExist(err) {
		t.Errorf("dead owner's cgroup still there: %v", err)
	}
	if _, err := os.Stat(filepath.Join(state, deadName)); !os.IsNotExist(err) {
		t.Errorf("dead owner's workspace still there: %v", err)
	}
	for _, p := range []string{filepath.Join(l.Unified, parent, liveName), filepath.Join(state, liveName)} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("live owner's %s was reaped: %v", p, err)
		}
	}
	_ = os.Remove(filepath.Join(state, liveName))
}

// TestNetworkModes connects from the sandbox to a listener outside it: mode
// none must refuse it with EPERM inside the sandbox before anything reaches
// the listener; loopback must allow loopback and refuse other addresses.
func TestNetworkModes(t *testing.T) {
	b, _, _ := newBackend(t)
	ln := testenv.Listen(t, "tcp4", "127.0.0.1:0")
	port := ln.Port()
	code := `import errno, socket, sys
host, port = sys.argv[1], int(sys.argv[2])
try:
    socket.create_connection((host, port), timeout=2).close()
    print("connected")
except OSError as e:
    print(errno.errorcode.get(e.errno, str(e)))`
	tests := []struct {
		mode     execution.Network
		host     string
		want     string
		accepted bool
	}{
		{execution.NetworkNone, "127.0.0.1", "EPERM", false},
		{execution.NetworkLoopback, "127.0.0.1", "connected", true},
		{execution.NetworkLoopback, "10.255.255.1", "EPERM", false},
		{execution.NetworkFull, "127.0.0.1", "connected", true},
	}
	for _, tt := range tests {
		t.Run(string(tt.mode)+"-"+tt.host, func(t *testing.T) {
			before := ln.Accepted(0, 0)
			r := run(t, b, execution.Spec{
				Command: []string{"python3", "-c", code, tt.host, strconv.Itoa(port)},
				Limits:  execution.Limits{Network: tt.mode},
			})
			if got := strings.TrimSpace(string(r.Result.Stdout)); got != tt.want {
				t.Fatalf("connect: %q (stderr %q), want %q", got, r.Result.Stderr, tt.want)
			}
			switch n := ln.Accepted(before+1, 200*time.Millisecond) - before; {
			case n > 0 && !tt.accepted:
				t.Fatal("the listener accepted a connection the mode forbids")
			case n == 0 && tt.accepted:
				t.Fatal("the listener saw no connection")
			}
			if strings.Contains(strings.Join(r.Receipt.Backend.Notes, " "), "network") {
				t.Errorf("enforcement degraded: %q", r.Receipt.Backend.Notes)
			}
		})
	}
}
