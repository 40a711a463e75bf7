//go:build linux

package process_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"glasshouse.dev/glasshouse/audit"
	"glasshouse.dev/glasshouse/backend/process"
	"glasshouse.dev/glasshouse/core/execution"
	"glasshouse.dev/glasshouse/core/profiling"
	"glasshouse.dev/glasshouse/internal/testenv"
)

func withZygote(c *process.Config) { c.PythonZygote = true }

// forkedNote is how a forked run's notes begin.
const forkedNote = "python: forked from a resident interpreter"

func forked(r *execution.Run) bool {
	for _, n := range r.Receipt.Backend.Notes {
		if strings.HasPrefix(n, forkedNote) {
			return true
		}
	}
	return false
}

// TestForkedMatchesFresh runs the same code forked from the fork server
// and as a fresh interpreter and wants the same exit status, signal and
// output, workspace paths aside: a forked run must look to its code like
// `python3 main.py` started with the run's environment, identity and
// cgroups.
func TestForkedMatchesFresh(t *testing.T) {
	fresh, _, _ := newBackend(t)
	zyg, _, _ := newBackend(t, withZygote)
	files := []execution.File{{Path: "helper.py", Content: []byte("X = 42\n")}}
	cases := []struct {
		name, code string
		stdin      string
		env        map[string]string
	}{
		{"globals argv env stdin", "import os, sys\nprint(__name__, __file__, sys.argv, sys.path[0], sys.orig_argv[1:])\n" +
			"print(sorted(globals()), __loader__.name, __spec__, __cached__, __package__, __doc__)\n" +
			"print(sorted(os.environ.items()), os.getcwd(), sys.stdin.read())\n" +
			"print(sorted(sys.modules))\nimport helper; print(helper.X)\n", "input\n", map[string]string{"RUN": "yes"}},
		{"identity and cgroups", "import os\nprint(os.getuid() == os.geteuid() == os.getgid() == os.getegid() > 0, os.getgroups(), os.getpgrp() == os.getpid())\n" +
			"print(os.path.basename(os.getcwd()) in open('/proc/self/cgroup').read(), open('/proc/self/cgroup').read().count('glasshouse-test'))\n" +
			"import resource; print(resource.getrlimit(resource.RLIMIT_NOFILE)[0] > 0, sorted(os.listdir('/proc/self/fd')))\n", "", nil},
		{"site", "import site, sys\nprint(site.USER_BASE, site.USER_SITE, site.ENABLE_USER_SITE, [p for p in sys.path if 'glasshouse' in p])\n", "", nil},
		{"chained traceback", "def f():\n    return {}['missing']\ntry:\n    f()\nexcept KeyError as e:\n    raise ValueError('from f') from e\n", "", nil},
		{"syntax error", "def (:\n", "", nil},
		{"sys.exit(3)", "import sys\nprint('before', flush=True)\nsys.exit(3)\n", "", nil},
		{"sys.exit(message)", "import sys\nsys.exit('goodbye')\n", "", nil},
		{"atexit and threads", "import atexit, threading\natexit.register(print, 'atexit ran')\nthreading.Thread(target=print, args=('thread ran',)).start()\nprint('main done')\n", "", nil},
		{"KeyboardInterrupt", "import atexit\natexit.register(print, 'atexit ran')\nprint('before')\nraise KeyboardInterrupt\n", "", nil},
		{"killed by a signal", "import os, signal\nprint('x', flush=True)\nos.kill(os.getpid(), signal.SIGTERM)\n", "", nil},
		{"subprocess", "import subprocess\nprint(subprocess.run(['sh', '-c', 'echo child $PPID'], capture_output=True, text=True).stdout.split()[0])\n", "", nil},
	}
	workspace := regexp.MustCompile(`/[^\s'"]*/glasshouse-[0-9]+-[0-9]+`)
	norm := func(r *execution.Run) string {
		return workspace.ReplaceAllString(string(r.Result.Stdout)+"\x00"+string(r.Result.Stderr), "WORKSPACE")
	}
	outcome := func(r *execution.Run) string {
		o := r.Receipt.Outcome
		return fmt.Sprintf("exit %d signal %q failure %s %s", o.ExitCode, o.Signal, o.Failure, o.Error)
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			spec := execution.Spec{Code: c.code, Language: execution.LanguagePython, Files: files, Stdin: []byte(c.stdin), Env: c.env}
			want := run(t, fresh, spec)
			got := run(t, zyg, spec)
			if !forked(got) || forked(want) {
				t.Fatalf("forked: %v, fresh run forked: %v; notes %q", forked(got), forked(want), got.Receipt.Backend.Notes)
			}
			if outcome(got) != outcome(want) || norm(got) != norm(want) {
				t.Errorf("forked run differs from a fresh one\nforked: %s %q\nfresh:  %s %q", outcome(got), norm(got), outcome(want), norm(want))
			}
		})
	}
}

// TestForkedRunsAreFresh wants each forked run to draw its own random
// numbers, and a run that sets a variable the interpreter's startup reads
// (PYTHONHASHSEED) to start Python instead.
func TestForkedRunsAreFresh(t *testing.T) {
	b, _, _ := newBackend(t, withZygote)
	spec := execution.Spec{Language: execution.LanguagePython, Code: "import os, random\nprint(random.random(), os.urandom(8).hex(), hash('x'))\n"}
	a, c := run(t, b, spec), run(t, b, spec)
	if !forked(a) || !forked(c) || string(a.Result.Stdout) == string(c.Result.Stdout) {
		t.Errorf("two forked runs: %q and %q (forked %v %v)", a.Result.Stdout, c.Result.Stdout, forked(a), forked(c))
	}
	seeded := execution.Spec{Language: execution.LanguagePython, Code: "print(hash('x'))\n", Env: map[string]string{"PYTHONHASHSEED": "0"}}
	fresh, _, _ := newBackend(t)
	h, want := run(t, b, seeded), run(t, fresh, seeded)
	if forked(h) || string(h.Result.Stdout) != string(want.Result.Stdout) {
		t.Errorf("PYTHONHASHSEED=0 run forked %v, printed %q, a fresh interpreter %q", forked(h), h.Result.Stdout, want.Result.Stdout)
	}
}

// TestNoInheritedDescriptors opens a descriptor without close-on-exec, as
// a shell or supervisor may leave one to this process, and wants no run to
// inherit it, forked or not.
func TestNoInheritedDescriptors(t *testing.T) {
	fd, err := syscall.Open(os.DevNull, syscall.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fd)
	b, _, _ := newBackend(t, withZygote)
	code := "import os\nprint(sorted(os.listdir('/proc/self/fd')))\n"
	for _, spec := range []execution.Spec{
		{Language: execution.LanguagePython, Code: code},
		{Command: []string{"python3", "-c", code}},
	} {
		if r := run(t, b, spec); string(r.Result.Stdout) != "['0', '1', '2', '3']\n" {
			t.Errorf("%v (forked %v): descriptors %q", spec.Command, forked(r), r.Result.Stdout)
		}
	}
}

// TestForkedLimits wants a forked run's cgroup limits and timeout to hold
// as a fresh run's do.
func TestForkedLimits(t *testing.T) {
	b, state, parent := newBackend(t, withZygote)
	oom := run(t, b, execution.Spec{Language: execution.LanguagePython, Code: "b = bytearray(300 << 20)\nfor i in range(0, len(b), 4096): b[i] = 1\n",
		Limits: execution.Limits{MemoryBytes: 64 << 20}})
	if !forked(oom) || oom.Receipt.Outcome.Failure != "oom" {
		t.Errorf("memory limit: forked %v, outcome %+v", forked(oom), oom.Receipt.Outcome)
	}
	spin := run(t, b, execution.Spec{Language: execution.LanguagePython, Timeout: time.Second,
		Code: "import os, time\nif os.fork() == 0:\n    os.setsid()\n    time.sleep(600)\nwhile True: pass\n"})
	if !forked(spin) || spin.Receipt.Outcome.Failure != "timeout" {
		t.Errorf("timeout: forked %v, outcome %+v", forked(spin), spin.Receipt.Outcome)
	}
	if l := leftovers(state, parent)(""); len(l) > 0 {
		t.Errorf("left behind: %q", l)
	}
}

// TestForkServerDeath kills the fork server under a running run: the run
// is an infrastructure failure, not the code's, and the next run is
// forked from a new server.
func TestForkServerDeath(t *testing.T) {
	b, _, _ := newBackend(t, withZygote)
	spec := execution.Spec{Language: execution.LanguagePython, Code: "print('ok')\n"}
	if d := b.Details(); len(d) != 1 || d[0] != "python fork server: starts with the first Python run" {
		t.Errorf("details before the first run: %q", d)
	}
	if r := run(t, b, spec); !forked(r) {
		t.Fatalf("first run not forked: %q", r.Receipt.Backend.Notes)
	}
	server := forkServerPID(t)
	if d := b.Details(); len(d) != 1 || !strings.HasSuffix(d[0], fmt.Sprintf(" as pid %d, 1 runs so far", server)) {
		t.Errorf("details after the first run (fork server %d): %q", server, d)
	}
	done := make(chan *execution.Run)
	go func() {
		done <- run(t, b, execution.Spec{Language: execution.LanguagePython, Code: "import time\ntime.sleep(60)\n"})
	}()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		kids, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", server, server))
		if len(strings.TrimSpace(string(kids))) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the sleeping run never appeared under the fork server")
		}
	}
	if err := syscall.Kill(server, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-done:
		if o := r.Receipt.Outcome; o.Failure != "infrastructure" || !strings.Contains(o.Error, "fork server") {
			t.Errorf("run under a dead fork server: %+v", o)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the run outlived its fork server by 30 s")
	}
	if r := run(t, b, spec); !forked(r) || string(r.Result.Stdout) != "ok\n" || forkServerPID(t) == server {
		t.Errorf("run after the death: forked %v, stdout %q", forked(r), r.Result.Stdout)
	}
}

// forkServerPID finds this process's fork server.
func forkServerPID(t *testing.T) int {
	t.Helper()
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		cmd, err := os.ReadFile(p)
		if err != nil || !strings.Contains(string(cmd), "def _glasshouse_forkserver") {
			continue
		}
		// pid (comm) state ppid ...; comm may hold spaces and parentheses.
		stat, _ := os.ReadFile(filepath.Join(filepath.Dir(p), "stat"))
		i := strings.LastIndexByte(string(stat), ')')
		if f := strings.Fields(string(stat[i+1:])); i > 0 && len(f) > 1 && f[1] == strconv.Itoa(os.Getpid()) {
			pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(p)))
			return pid
		}
	}
	t.Fatal("no fork server among this process's children")
	return 0
}

// TestForkedRunProfiled wants the receipt of an observed forked run to
// hold the interpreter as its root process, with what the code did: its
// child and its files.
func TestForkedRunProfiled(t *testing.T) {
	b, _, _ := newBackend(t, withZygote)
	col, err := audit.Open(audit.Config{})
	if err != nil {
		testenv.Skip(t, "host eBPF collector: "+err.Error())
	}
	t.Cleanup(func() { col.Close() })
	e, err := execution.New(execution.Config{Backend: b, Profiler: col})
	if err != nil {
		t.Fatal(err)
	}
	r, err := e.Run(context.Background(), execution.Spec{Language: execution.LanguagePython, Profile: profiling.Required, Timeout: 30 * time.Second,
		Code: "import subprocess\nsubprocess.run(['true'])\nopen('out.txt', 'w').write('x')\n"})
	if err != nil {
		t.Fatal(err)
	}
	rc := r.Receipt
	if !forked(r) || rc.Outcome.Failure != "none" || rc.Profiling.Status != "complete" {
		t.Fatalf("forked %v outcome %+v profiling %+v", forked(r), rc.Outcome, rc.Profiling)
	}
	if len(rc.Processes) < 2 {
		t.Fatalf("processes %+v", rc.Processes)
	}
	root := rc.Processes[0]
	if !strings.HasSuffix(root.Exe, "/python3") || strings.Join(root.Argv, " ") != "python3 main.py" || !strings.Contains(root.Cwd, "glasshouse-") {
		t.Errorf("root process %+v", root)
	}
	child := false
	for _, p := range rc.Processes[1:] {
		child = child || strings.HasSuffix(p.Exe, "/true") && p.PPID == root.PID
	}
	wrote := false
	for _, f := range rc.Files {
		wrote = wrote || strings.HasSuffix(f.Path, "/out.txt") && f.Op == "create"
	}
	if !child || !wrote {
		t.Errorf("child true of the root: %v; out.txt written: %v\nprocesses %+v\nfiles %+v", child, wrote, rc.Processes, rc.Files)
	}
}
