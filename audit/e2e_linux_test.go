//go:build linux

package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
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

	"glasshouse.dev/glasshouse/backend/process"
	"glasshouse.dev/glasshouse/core/execution"
	"glasshouse.dev/glasshouse/core/profiling"
	"glasshouse.dev/glasshouse/core/receipt"
	"glasshouse.dev/glasshouse/internal/testenv"
)

var update = flag.Bool("update", false, "rewrite the golden receipts in testdata/golden")

// fixture is shared by the end-to-end tests: one loaded collector serves
// them all, as it serves a server's runs.
type fixture struct {
	coll   *Collector
	engine *execution.Engine
	dir    string // world-readable: runs have their own uid
	tester string
}

// shared holds a fixture per build of the syscall exit program: [0] the one
// Open picks, [1] the raw tracepoint build (Config.RawTracepoints).
var shared [2]struct {
	once sync.Once
	f    *fixture
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	for i := range shared {
		if f := shared[i].f; f != nil {
			f.coll.Close()
			os.RemoveAll(f.dir)
		}
	}
	os.Exit(code)
}

// buildTester compiles testdata/tester.c statically into dir.
func buildTester(dir string) (string, error) {
	out := filepath.Join(dir, "tester")
	cmd := exec.Command("gcc", "-static", "-O2", "-Wall", "-o", out, "testdata/tester.c")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build tester: %v\n%s", err, b)
	}
	return out, nil
}

func setup(t *testing.T) *fixture {
	t.Helper()
	return setupBuild(t, false)
}

// forEachBuild runs test as a subtest on each build of the syscall exit
// program: the one Open picks, and the raw tracepoint build.
func forEachBuild(t *testing.T, test func(t *testing.T, f *fixture)) {
	for _, build := range []struct {
		name string
		raw  bool
	}{{"default", false}, {"raw_tracepoint", true}} {
		t.Run(build.name, func(t *testing.T) { test(t, setupBuild(t, build.raw)) })
	}
}

// setupBuild returns the fixture whose collector loads the raw tracepoint
// build of the syscall exit program if raw, else the build Open picks.
func setupBuild(t *testing.T, raw bool) *fixture {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.RequireBinary(t, "gcc")
	testenv.RequireFile(t, "/usr/lib/x86_64-linux-gnu/libc.a", "static glibc from libc6-dev, to build the tester")
	s := &shared[0]
	if raw {
		s = &shared[1]
	}
	s.once.Do(func() {
		f := &fixture{}
		var err error
		if f.dir, err = os.MkdirTemp("", "glasshouse-audit-"); err != nil {
			s.err = err
			return
		}
		if err = os.Chmod(f.dir, 0o755); err == nil {
			f.tester, err = buildTester(f.dir)
		}
		if err == nil {
			f.coll, err = Open(Config{RawTracepoints: raw})
		}
		var b *process.Backend
		if err == nil {
			b, err = process.New(process.Config{})
		}
		if err == nil {
			f.engine, err = execution.New(execution.Config{Backend: b, Profiler: f.coll})
		}
		if err != nil {
			if f.coll != nil {
				f.coll.Close()
			}
			os.RemoveAll(f.dir)
			s.err = err
			return
		}
		s.f = f
	})
	if s.err != nil {
		t.Fatalf("set up: %v", s.err)
	}
	return s.f
}

// noise runs the tester's noise loop outside every target for the test's
// duration: none of it may appear in a receipt.
func noise(t *testing.T, f *fixture) string {
	t.Helper()
	dir := t.TempDir()
	cmd := exec.Command(f.tester, "noise", dir)
	if err := cmd.Start(); err != nil {
		t.Fatalf("start noise: %v", err)
	}
	t.Cleanup(func() {
		// It must have been running the whole time for "nothing from
		// outside" to mean anything.
		if err := cmd.Process.Signal(syscall.Signal(0)); err != nil {
			t.Errorf("the noise process ended early: %v", err)
		}
		cmd.Process.Kill()
		cmd.Wait()
	})
	return dir
}

func (f *fixture) run(t *testing.T, network execution.Network, args ...string) *receipt.Receipt {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	spec := execution.Spec{
		Command: append([]string{f.tester}, args...),
		Profile: profiling.Required,
		Timeout: 30 * time.Second,
		Limits:  execution.Limits{Network: network},
	}
	run, err := f.engine.Run(ctx, spec)
	if err != nil {
		t.Fatalf("run %v: %v", args, err)
	}
	return run.Receipt
}

// golden is a receipt normalised for comparison: pids, uids and times
// stripped, the workspace and tester directories replaced by $WS and
// $BIN, the scenario's port by $PORT, entries that differ only in pid
// merged with their counts added, and every list sorted.
type golden struct {
	ExitCode  int          `json:"exit_code"`
	Failure   string       `json:"failure"`
	Status    string       `json:"status"`
	Reason    string       `json:"reason"`
	Dropped   int64        `json:"dropped"`
	Processes []goldenProc `json:"processes"`
	Files     []goldenFile `json:"files"`
	Network   []goldenNet  `json:"network"`
}

type goldenProc struct {
	Depth      int      `json:"depth"`
	Exe        string   `json:"exe"`
	Argv       []string `json:"argv"`
	Cwd        string   `json:"cwd"`
	ExitCode   int64    `json:"exit_code"`
	Signal     string   `json:"signal"`
	Ended      bool     `json:"ended"`
	ExecFailed []string `json:"exec_failed,omitempty"`
	Count      int      `json:"count"`
}

type goldenFile struct {
	Path   string `json:"path"`
	Op     string `json:"op"`
	Target string `json:"target,omitempty"`
	OK     bool   `json:"ok"`
	Errno  string `json:"errno,omitempty"`
	Count  int64  `json:"count"`
}

type goldenNet struct {
	Op       string `json:"op"`
	Family   string `json:"family"`
	Protocol string `json:"protocol"`
	Address  string `json:"address"`
	Port     string `json:"port"`
	OK       bool   `json:"ok"`
	Errno    string `json:"errno,omitempty"`
	Count    int64  `json:"count"`
}

func normalize(r *receipt.Receipt, bin string, port int) golden {
	g := golden{
		ExitCode: r.Outcome.ExitCode, Failure: r.Outcome.Failure,
		Status: r.Profiling.Status, Reason: r.Profiling.Reason, Dropped: r.Profiling.Dropped,
		Processes: []goldenProc{}, Files: []goldenFile{}, Network: []goldenNet{},
	}
	ppid := map[int64]int64{}
	for _, p := range r.Processes {
		if _, ok := ppid[p.PID]; !ok {
			ppid[p.PID] = p.PPID
		}
	}
	depth := func(pid int64) int {
		d := 0
		for ; d < 64; d++ {
			parent, ok := ppid[pid]
			if !ok {
				break
			}
			if _, inRun := ppid[parent]; !inRun {
				break
			}
			pid = parent
		}
		return d
	}
	ws := ""
	for _, p := range r.Processes {
		if depth(p.PID) == 0 && p.Cwd != "" {
			ws = p.Cwd
			break
		}
	}
	repl := func(s string) string {
		if ws != "" {
			s = strings.ReplaceAll(s, ws, "$WS")
		}
		return strings.ReplaceAll(s, filepath.Dir(bin), "$BIN")
	}
	procs := map[string]*goldenProc{}
	for _, p := range r.Processes {
		gp := goldenProc{Depth: depth(p.PID), Exe: repl(p.Exe), Cwd: repl(p.Cwd), ExitCode: p.ExitCode, Signal: p.Signal, Ended: p.EndOffsetMS >= 0, ExecFailed: p.ExecFailed}
		for _, a := range p.Argv {
			if port != 0 && a == strconv.Itoa(port) {
				a = "$PORT"
			}
			gp.Argv = append(gp.Argv, repl(a))
		}
		k := key(gp)
		if e, ok := procs[k]; ok {
			e.Count++
			continue
		}
		gp.Count = 1
		procs[k] = &gp
	}
	for _, p := range procs {
		g.Processes = append(g.Processes, *p)
	}
	files := map[string]*goldenFile{}
	for _, f := range r.Files {
		gf := goldenFile{Path: repl(f.Path), Op: f.Op, Target: repl(f.Target), OK: f.OK, Errno: f.Errno}
		k := key(gf)
		if e, ok := files[k]; ok {
			e.Count += f.Count
			continue
		}
		gf.Count = f.Count
		files[k] = &gf
	}
	for _, f := range files {
		g.Files = append(g.Files, *f)
	}
	nets := map[string]*goldenNet{}
	for _, n := range r.Network {
		p := strconv.FormatInt(n.Port, 10)
		if port != 0 && n.Port == int64(port) {
			p = "$PORT"
		}
		gn := goldenNet{Op: n.Op, Family: n.Family, Protocol: n.Protocol, Address: repl(n.Address), Port: p, OK: n.OK, Errno: n.Errno}
		k := key(gn)
		if e, ok := nets[k]; ok {
			e.Count += n.Count
			continue
		}
		gn.Count = n.Count
		nets[k] = &gn
	}
	for _, n := range nets {
		g.Network = append(g.Network, *n)
	}
	slices.SortFunc(g.Processes, func(a, b goldenProc) int { return strings.Compare(key(a), key(b)) })
	slices.SortFunc(g.Files, func(a, b goldenFile) int { return strings.Compare(key(a), key(b)) })
	slices.SortFunc(g.Network, func(a, b goldenNet) int { return strings.Compare(key(a), key(b)) })
	return g
}

func key(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// checkGolden compares the normalised receipt with testdata/golden/NAME.json.
func checkGolden(t *testing.T, name string, g golden) {
	t.Helper()
	got, err := json.MarshalIndent(g, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, '\n')
	path := filepath.Join("testdata", "golden", name+".json")
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden (run with -update to create it): %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("normalised receipt differs from %s (run with -update after checking):\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

// checkClean asserts what every golden run must satisfy whatever the
// golden says: nothing lost, nothing blind, nothing from outside.
func checkClean(t *testing.T, r *receipt.Receipt, noiseDir string) {
	t.Helper()
	if r.Profiling.Dropped != 0 {
		t.Errorf("dropped = %d, want 0", r.Profiling.Dropped)
	}
	if r.Profiling.Status != receipt.StatusComplete {
		t.Errorf("profiling status %q (%s), want complete", r.Profiling.Status, r.Profiling.Reason)
	}
	b, _ := json.Marshal(r)
	if bytes.Contains(b, []byte(noiseDir)) || bytes.Contains(b, []byte(`"noise"`)) {
		t.Errorf("the receipt contains the noise process's activity")
	}
}

func freePort(t *testing.T, network string) int {
	t.Helper()
	switch network {
	case "udp":
		c, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.LocalAddr().(*net.UDPAddr).Port
	default:
		l, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		return l.Addr().(*net.TCPAddr).Port
	}
}

// Both builds of the syscall exit program must give the same receipts.
func TestGoldenReceipts(t *testing.T) {
	forEachBuild(t, testGoldenReceipts)
}

func testGoldenReceipts(t *testing.T, f *fixture) {
	cases := []struct {
		name    string
		args    []string
		network execution.Network
		port    string // "tcp" or "udp": append a free port to args
	}{
		{name: "exec_chain", args: []string{"chain", "3"}},
		{name: "fork_100", args: []string{"fork", "100"}},
		{name: "open_relative", args: []string{"open"}},
		{name: "fs_ops", args: []string{"fsops"}},
		{name: "tcp_loopback", args: []string{"tcp"}, network: execution.NetworkLoopback, port: "tcp"},
		{name: "udp_sendto", args: []string{"udp"}, network: execution.NetworkLoopback, port: "udp"},
		{name: "exec_failed", args: []string{"execfail"}},
		{name: "daemon", args: []string{"daemon"}},
		{name: "repeats", args: []string{"repeats"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			noiseDir := noise(t, f)
			network := c.network
			if network == "" {
				network = execution.NetworkNone
			}
			args, port := c.args, 0
			if c.port != "" {
				port = freePort(t, c.port)
				args = append(slices.Clone(args), strconv.Itoa(port))
			}
			r := f.run(t, network, args...)
			checkClean(t, r, noiseDir)
			checkGolden(t, c.name, normalize(r, f.tester, port))
		})
	}
}

// The path walk on both builds: names around the length a dentry keeps
// inline come out exactly; a path deeper than the walk goes, or longer than
// a record holds, keeps its deepest components and is reported as cut.
func TestPathWalk(t *testing.T) {
	forEachBuild(t, func(t *testing.T, f *fixture) {
		r := f.run(t, execution.NetworkNone, "paths")
		if r.Outcome.ExitCode != 0 || len(r.Processes) == 0 {
			t.Fatalf("tester paths: exit %d, %d processes", r.Outcome.ExitCode, len(r.Processes))
		}
		created := map[string]bool{}
		for _, fl := range r.Files {
			if fl.Op == receipt.OpCreate && fl.OK {
				created[fl.Path] = true
			}
		}
		var want []string
		dir := r.Processes[0].Cwd
		for i, n := range []int{31, 32, 39, 40, 41, 255} {
			dir += "/" + strings.Repeat(string(rune('a'+i)), n)
			want = append(want, dir+"/f")
		}
		want = append(want,
			strings.Repeat("/d", 95)+"/deep",                         // 96 components
			strings.Repeat("/"+strings.Repeat("L", 250), 16)+"/long") // 16 * 251 + 5 bytes
		for _, p := range want {
			if !created[p] {
				t.Errorf("no create of %.120q... (%d bytes)", p, len(p))
			}
		}
		if t.Failed() {
			for p := range created {
				t.Logf("created %.120q... (%d bytes)", p, len(p))
			}
		}
		if r.Profiling.Status != receipt.StatusPartial || !strings.Contains(r.Profiling.Reason, "too long or too deep") {
			t.Errorf("profiling %s (%q), want partial: paths were cut", r.Profiling.Status, r.Profiling.Reason)
		}
	})
}

// A run that mounts in a mount namespace of its own (here, unprivileged,
// in a user namespace it made) sees paths the host does not: its receipt
// says so and is partial, on both builds.
func TestMountNamespaceIsBlind(t *testing.T) {
	forEachBuild(t, func(t *testing.T, f *fixture) {
		r := f.run(t, execution.NetworkNone, "mountns")
		if r.Outcome.ExitCode != 0 {
			t.Fatalf("tester mountns: exit %d", r.Outcome.ExitCode)
		}
		if r.Profiling.Status != receipt.StatusPartial || !strings.Contains(r.Profiling.Reason, "mount by pid") {
			t.Errorf("profiling %s (%q), want partial: the run mounted", r.Profiling.Status, r.Profiling.Reason)
		}
		created := false
		for _, fl := range r.Files {
			created = created || (fl.Op == receipt.OpCreate && strings.HasSuffix(fl.Path, "/m/f"))
		}
		if !created {
			t.Errorf("no create of m/f in %+v", r.Files)
		}
	})
}

// The newcomer's view: a Python urllib request gives a receipt that shows
// the connection and the files Python opened.
func TestPythonURLLibReceipt(t *testing.T) {
	f := setup(t)
	testenv.RequireBinary(t, "python3")
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "hello") })}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	defer srv.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	code := fmt.Sprintf("import urllib.request\nprint(urllib.request.urlopen('http://127.0.0.1:%d/', timeout=10).read().decode())\n", port)
	run, err := f.engine.Run(ctx, execution.Spec{
		Command: []string{"python3", "-c", code}, // found on the backend's own PATH
		Profile: profiling.Required,
		Limits:  execution.Limits{Network: execution.NetworkLoopback},
	})
	if err != nil {
		t.Fatal(err)
	}
	r := run.Receipt
	if string(run.Result.Stdout) != "hello\n" {
		t.Fatalf("python printed %q (stderr %q)", run.Result.Stdout, run.Result.Stderr)
	}
	if r.Profiling.Status != receipt.StatusComplete || r.Profiling.Dropped != 0 {
		t.Errorf("profiling %+v", r.Profiling)
	}
	connected := false
	for _, n := range r.Network {
		if n.Op == receipt.NetConnect && n.Address == "127.0.0.1" && n.Port == int64(port) && n.Protocol == receipt.ProtoTCP && n.OK {
			connected = true
		}
	}
	if !connected {
		t.Errorf("no successful connect to 127.0.0.1:%d in %+v", port, r.Network)
	}
	var sawModule, sawExec bool
	for _, fl := range r.Files {
		// Python reads the module's cached bytecode, not its source.
		if fl.Op == receipt.OpRead && strings.Contains(fl.Path, "/urllib/") && strings.Contains(fl.Path, "request.") && strings.HasPrefix(fl.Path, "/") {
			sawModule = true
		}
		if fl.Op == receipt.OpExec && strings.Contains(fl.Path, "python3") {
			sawExec = true
		}
	}
	if !sawModule || !sawExec {
		t.Errorf("files lack the python exec (%v) or urllib/request (%v)", sawExec, sawModule)
	}
}

// Issue 4's enforcement check through the engine and the process backend:
// a network-none run whose Python connects to a listener outside fails
// with EPERM inside the sandbox, the listener sees nothing, and the
// receipt shows the denied connect.
func TestNetworkNoneRunReceipt(t *testing.T) {
	f := setup(t)
	testenv.RequireBinary(t, "python3")
	ln := testenv.Listen(t, "tcp4", "127.0.0.1:0")
	port := ln.Port()
	code := fmt.Sprintf("import socket\ntry:\n    socket.create_connection(('127.0.0.1', %d), timeout=5)\n    print('connected')\nexcept PermissionError as e:\n    print('EPERM', e.errno)\n", port)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	run, err := f.engine.Run(ctx, execution.Spec{
		Command: []string{"python3", "-c", code},
		Profile: profiling.Required,
		Limits:  execution.Limits{Network: execution.NetworkNone},
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(string(run.Result.Stdout)); got != "EPERM 1" {
		t.Errorf("python printed %q (stderr %q), want EPERM 1", got, run.Result.Stderr)
	}
	if n := ln.Accepted(1, 200*time.Millisecond); n != 0 {
		t.Errorf("the listener outside accepted %d connections", n)
	}
	r := run.Receipt
	if r.Profiling.Status != receipt.StatusComplete || r.Profiling.Dropped != 0 {
		t.Errorf("profiling %+v", r.Profiling)
	}
	denied := false
	for _, n := range r.Network {
		if n.Op == receipt.NetConnect && n.Address == "127.0.0.1" && n.Port == int64(port) && !n.OK && n.Errno == "EPERM" {
			denied = true
		}
	}
	if !denied {
		t.Errorf("network section %+v lacks the denied connect to 127.0.0.1:%d", r.Network, port)
	}
}
