//go:build linux

package agent_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"glasshouse.dev/glasshouse/audit"
	"glasshouse.dev/glasshouse/core/receipt"
	"glasshouse.dev/glasshouse/core/receipt/schema"
	"glasshouse.dev/glasshouse/internal/cgroup"
	"glasshouse.dev/glasshouse/internal/testenv"
)

// requireCollector skips (fails under CI) unless this host can load the
// eBPF collector.
func requireCollector(t *testing.T) string {
	t.Helper()
	testenv.RequireRoot(t)
	layout, err := cgroup.Detect()
	if err != nil {
		testenv.Skip(t, "no cgroup2: "+err.Error())
	}
	c, err := audit.Open(audit.Config{RingBytes: audit.MinRingBytes, CgroupRoot: "-"})
	if err != nil {
		testenv.Skip(t, "cannot load the eBPF collector: "+err.Error())
	}
	c.Close()
	return layout.Unified
}

var (
	buildOnce sync.Once
	builtBin  string
	buildErr  error
)

// buildAgent builds cmd/glasshouse-agent once per test binary.
func buildAgent(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "glasshouse-agent-e2e")
		if err != nil {
			buildErr = err
			return
		}
		builtBin = filepath.Join(dir, "glasshouse-agent")
		cmd := exec.Command("go", "build", "-o", builtBin, "glasshouse.dev/glasshouse/cmd/glasshouse-agent")
		cmd.Stderr = os.Stderr
		buildErr = cmd.Run()
	})
	if buildErr != nil {
		t.Fatalf("build glasshouse-agent: %v", buildErr)
	}
	return builtBin
}

func TestMain(m *testing.M) {
	code := m.Run()
	if builtBin != "" {
		os.RemoveAll(filepath.Dir(builtBin))
	}
	os.Exit(code)
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// agentProc is a running glasshouse-agent.
type agentProc struct {
	cmd    *exec.Cmd
	addr   string
	stderr *os.File
	out    string
}

func startAgent(t *testing.T, bin string, args ...string) *agentProc {
	t.Helper()
	dir := t.TempDir()
	p := &agentProc{addr: freePort(t), out: filepath.Join(dir, "receipts.ndjson")}
	var err error
	if p.stderr, err = os.Create(filepath.Join(dir, "agent.log")); err != nil {
		t.Fatal(err)
	}
	args = append([]string{"--listen", p.addr, "--output", "file:" + p.out, "--log-format", "json"}, args...)
	p.cmd = exec.Command(bin, args...)
	p.cmd.Stderr = p.stderr
	p.cmd.Stdout = nil
	// Nothing from the test's environment is needed.
	p.cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			p.cmd.Process.Kill()
			p.cmd.Wait()
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get("http://" + p.addr + "/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return p
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("agent not healthy: %v\n%s", err, p.logs())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (p *agentProc) logs() string {
	b, _ := os.ReadFile(p.stderr.Name())
	return string(b)
}

func (p *agentProc) stop(t *testing.T) {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("agent exited: %v\n%s", err, p.logs())
		}
	case <-time.After(20 * time.Second):
		p.cmd.Process.Kill()
		t.Errorf("agent did not stop on SIGTERM")
	}
}

// workloads returns the cgroups the agent tracks.
func (p *agentProc) workloads(t *testing.T) []string {
	resp, err := http.Get("http://" + p.addr + "/workloads")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var ws []struct {
		Cgroup string `json:"cgroup"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&ws); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, w := range ws {
		out = append(out, w.Cgroup)
	}
	return out
}

// receipts returns the receipts written so far whose notes name cgroup.
func (p *agentProc) receipts(t *testing.T, cg string) []*receipt.Receipt {
	t.Helper()
	data, err := os.ReadFile(p.out)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var out []*receipt.Receipt
	// Only whole lines: the agent writes each receipt and its newline in
	// one write, which a reader of the file can see half done.
	for {
		line, rest, whole := bytes.Cut(data, []byte("\n"))
		if !whole {
			break
		}
		data = rest
		if err := schema.Validate(line); err != nil {
			t.Fatalf("receipt fails the schema: %v\n%s", err, line)
		}
		r, err := receipt.Decode(line)
		if err != nil {
			t.Fatalf("receipt does not verify: %v", err)
		}
		for _, n := range r.Backend.Notes {
			if n == "cgroup "+cg {
				out = append(out, r)
			}
		}
	}
	return out
}

// violation is a "policy violation" log line of the agent.
type violation struct {
	Time   time.Time `json:"time"`
	Msg    string    `json:"msg"`
	Cgroup string    `json:"cgroup"`
	Rule   string    `json:"rule"`
	What   string    `json:"what"`
	Found  string    `json:"found"`
}

func (p *agentProc) violations(cg string) []violation {
	var out []violation
	for _, line := range strings.Split(p.logs(), "\n") {
		var v violation
		if json.Unmarshal([]byte(line), &v) == nil && v.Msg == "policy violation" && v.Cgroup == cg {
			out = append(out, v)
		}
	}
	return out
}

// workloadScript execs python3 from sh, opens and writes a file, reads
// one, prints the time right before it connects to addr, connects, and
// stays alive a while so that a violation can only be reported live.
const workloadScript = `
import socket, sys, time
time.sleep(float(sys.argv[4]))
with open(sys.argv[1], "w") as f:
    f.write("hello")
open("/etc/hostname").read()
host, port = sys.argv[2], int(sys.argv[3])
print("connect_at", time.time_ns(), flush=True)
s = socket.create_connection((host, port), timeout=2)
s.close()
time.sleep(1.5)
`

func runWorkload(t *testing.T, cgDir string, scratch, addr string, delay string) (connectAt time.Time, exitCode int) {
	t.Helper()
	python := testenv.RequireBinary(t, "python3")
	fd, err := syscall.Open(cgDir, syscall.O_RDONLY|syscall.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fd)
	host, port, _ := net.SplitHostPort(addr)
	// sh execs python3 (an exec chain) and exits with 3 after it.
	cmd := exec.Command("/bin/sh", "-c", `"$0" -c "$1" "$2" "$3" "$4" "$5"; exit 3`, python, workloadScript, scratch, host, port, delay)
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: fd}
	cmd.Env = []string{"PATH=/usr/bin:/bin"}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	ee, ok := err.(*exec.ExitError)
	if !ok {
		t.Fatalf("workload: %v\n%s", err, stderr.String())
	}
	for _, line := range strings.Split(stdout.String(), "\n") {
		if rest, ok := strings.CutPrefix(line, "connect_at "); ok {
			ns, _ := strconv.ParseInt(rest, 10, 64)
			connectAt = time.Unix(0, ns)
		}
	}
	if connectAt.IsZero() {
		t.Fatalf("workload did not connect:\n%s\n%s", stdout.String(), stderr.String())
	}
	return connectAt, ee.ExitCode()
}

func waitUntil(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestE2EAgent starts the agent binary with a selector for cgroups that do
// not exist yet, creates a matching cgroup, runs a workload in it that
// execs, opens files and connects, and checks the receipt written when it
// exits and the live violation of the no-network policy.
func TestE2EAgent(t *testing.T) {
	mount := requireCollector(t)
	testenv.RequireBinary(t, "python3")
	bin := buildAgent(t)

	ln := testenv.Listen(t, "tcp4", "127.0.0.1:0")

	parent := fmt.Sprintf("gh-e2e-%d", os.Getpid())
	parentDir := filepath.Join(mount, parent)
	t.Cleanup(func() {
		entries, _ := os.ReadDir(parentDir)
		for _, e := range entries {
			if e.IsDir() {
				os.Remove(filepath.Join(parentDir, e.Name()))
			}
		}
		os.Remove(parentDir)
	})
	p := startAgent(t, bin, "--select", "/"+parent+"/job-*", "--policy", "no-network", "--policy-interval", "100ms")

	check := func(t *testing.T, name string, delay string, wantComplete bool) {
		cg := "/" + parent + "/" + name
		dir := filepath.Join(mount, parent, name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if wantComplete {
			// The agent finds the cgroup on its own (inotify); waiting for
			// it before starting makes the receipt complete by design.
			waitUntil(t, "agent to discover "+cg, 5*time.Second, func() bool {
				return strings.Contains(strings.Join(p.workloads(t), " "), cg)
			})
		}
		scratch := filepath.Join(t.TempDir(), "out.txt")
		connectAt, code := runWorkload(t, dir, scratch, ln.Addr().String(), delay)
		if code != 3 {
			t.Fatalf("workload exit %d", code)
		}

		// The violation was logged live, within a second of the connect,
		// while the workload still ran.
		vs := p.violations(cg)
		if len(vs) != 1 {
			t.Fatalf("%d violations logged for %s, want 1\n%s", len(vs), cg, p.logs())
		}
		v := vs[0]
		lag := v.Time.Sub(connectAt)
		t.Logf("%s: violation logged %v after the connect", name, lag)
		if v.Rule != "no-network/network" || v.Found != "live" || !strings.Contains(v.What, "connect inet tcp "+ln.Addr().String()) {
			t.Fatalf("violation %+v", v)
		}
		if lag > time.Second {
			t.Fatalf("violation logged %v after the connect, want < 1s", lag)
		}

		var rs []*receipt.Receipt
		waitUntil(t, "final receipt of "+cg, 10*time.Second, func() bool { rs = p.receipts(t, cg); return len(rs) > 0 })
		if len(rs) != 1 {
			t.Fatalf("%d receipts for %s, want 1", len(rs), cg)
		}
		r := rs[0]
		t.Logf("%s: profiling %s (%s), %d events, %d processes", name, r.Profiling.Status, r.Profiling.Reason, r.Profiling.Events, len(r.Processes))
		if r.Backend.Name != "agent" || r.Outcome.ExitCode != 3 || r.Outcome.Failure != receipt.FailureCode {
			t.Errorf("backend %+v outcome %+v", r.Backend, r.Outcome)
			for _, p := range r.Processes[:min(4, len(r.Processes))] {
				t.Logf("process pid %d ppid %d exe %s start %d end %d exit %d", p.PID, p.PPID, p.Exe, p.StartOffsetMS, p.EndOffsetMS, p.ExitCode)
			}
		}
		if wantComplete && (r.Profiling.Status != receipt.StatusComplete || r.Profiling.Dropped != 0) {
			t.Errorf("profiling %+v", r.Profiling)
		}
		if r.Profiling.Status == receipt.StatusPartial && r.Profiling.Reason == "" {
			t.Errorf("partial without reason")
		}
		var sawSh, sawPython bool
		for _, pr := range r.Processes {
			sawSh = sawSh || strings.HasSuffix(pr.Exe, "sh") && pr.ExitCode == 3
			sawPython = sawPython || strings.Contains(pr.Exe, "python3")
		}
		if !sawPython || (wantComplete && !sawSh) {
			t.Errorf("processes %+v", r.Processes)
		}
		if wantComplete && !strings.HasSuffix(strings.Join(r.Subject.Argv, " "), "exit 3") && r.Subject.Argv[0] != "/bin/sh" {
			t.Errorf("subject argv %q", r.Subject.Argv)
		}
		var wrote, read bool
		for _, f := range r.Files {
			wrote = wrote || f.Path == scratch && (f.Op == receipt.OpWrite || f.Op == receipt.OpCreate)
			read = read || f.Path == "/etc/hostname" && f.Op == receipt.OpRead
		}
		if !wrote || !read {
			t.Errorf("files: wrote %s %v, read /etc/hostname %v: %+v", scratch, wrote, read, r.Files)
		}
		host, portStr, _ := net.SplitHostPort(ln.Addr().String())
		port, _ := strconv.ParseInt(portStr, 10, 64)
		var connected bool
		for _, n := range r.Network {
			connected = connected || n.Op == receipt.NetConnect && n.Address == host && n.Port == port
		}
		if !connected {
			t.Errorf("network %+v", r.Network)
		}
		if r.Policy == nil || r.Policy.Verdict != receipt.VerdictDeny || len(r.Policy.Violations) != 1 {
			t.Errorf("policy %+v", r.Policy)
		}
	}

	t.Run("discovered before start", func(t *testing.T) { check(t, "job-a", "0", true) })
	// The workload starts the moment its cgroup exists: what it does after
	// the agent registers the cgroup (here after 300 ms) is observed;
	// processes that started earlier are described from /proc.
	t.Run("started at once", func(t *testing.T) { check(t, "job-b", "0.3", false) })

	// A cgroup outside the selector is not observed.
	other := filepath.Join(mount, parent, "other")
	if err := os.Mkdir(other, 0o755); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	for _, w := range p.workloads(t) {
		if strings.HasSuffix(w, "/other") {
			t.Errorf("unselected cgroup tracked: %s", w)
		}
	}
	resp, err := http.Get("http://" + p.addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	var metrics bytes.Buffer
	metrics.ReadFrom(resp.Body)
	resp.Body.Close()
	for _, m := range []string{`glasshouse_agent_policy_violations_total{rule="no-network/network",severity="deny"} 2`, "glasshouse_agent_events_total", "glasshouse_agent_dropped_events_total 0", "glasshouse_agent_syscall_exit_runs_total"} {
		if !strings.Contains(metrics.String(), m) {
			t.Errorf("metrics lack %q", m)
		}
	}
	p.stop(t)
}

func (p *agentProc) health(t *testing.T) map[string]any {
	t.Helper()
	resp, err := http.Get("http://" + p.addr + "/health")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var h map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&h); err != nil {
		t.Fatal(err)
	}
	return h
}

// TestE2EReload checks that SIGHUP re-reads the config file, and that a
// bad file leaves the running selection and policy in place.
func TestE2EReload(t *testing.T) {
	requireCollector(t)
	bin := buildAgent(t)
	cfg := filepath.Join(t.TempDir(), "agent.yaml")
	write := func(s string) {
		if err := os.WriteFile(cfg, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("select: [\"/gh-e2e-none/*\"]\npolicy: no-network\n")
	p := startAgent(t, bin, "--config", cfg)
	if h := p.health(t); h["policy"] != "no-network" {
		t.Fatalf("health %v", h)
	}
	write("select: [\"/gh-e2e-other/*\"]\npolicy: no-subprocess,no-network\n")
	p.cmd.Process.Signal(syscall.SIGHUP)
	waitUntil(t, "reload", 5*time.Second, func() bool { return p.health(t)["policy"] == "no-subprocess,no-network" })
	if sel := fmt.Sprint(p.health(t)["select"]); sel != "[glob:/gh-e2e-other/*]" {
		t.Fatalf("select after reload %s", sel)
	}
	write("select: [\"pod:not-a-uid\"]\n")
	p.cmd.Process.Signal(syscall.SIGHUP)
	waitUntil(t, "failed reload logged", 5*time.Second, func() bool { return strings.Contains(p.logs(), "reload failed") })
	if h := p.health(t); h["policy"] != "no-subprocess,no-network" {
		t.Fatalf("a bad config replaced the running one: %v", h)
	}
	p.stop(t)
}
