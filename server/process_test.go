package server_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"glasshouse.dev/glasshouse/audit"
	"glasshouse.dev/glasshouse/backend/process"
	"glasshouse.dev/glasshouse/core/execution"
	"glasshouse.dev/glasshouse/internal/testenv"
	"glasshouse.dev/glasshouse/server"
)

// processEnv serves on the real process backend: python3 on this host, in
// per-run cgroups.
func processEnv(t *testing.T) *env {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.RequireBinary(t, "python3")
	// The workload runs as nobody, who must reach its workspace.
	state := t.TempDir()
	if err := os.Chmod(filepath.Dir(state), 0o755); err != nil {
		t.Fatal(err)
	}
	// Python runs are forked from the fork server, as glasshouse-server
	// configures the backend by default.
	pb, err := process.New(process.Config{StateDir: state, PythonZygote: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pb.Close() })
	return newEnv(t, func(c *server.Config) {
		c.Backends = []execution.Backend{pb}
		c.AllowUnisolated = true
		c.Limits.MaxFileBytes, c.Limits.MaxFilesBytes, c.Limits.MaxStdinBytes = 1024, 2048, 1024
	})
}

func TestProcessBackend(t *testing.T) {
	e := processEnv(t)
	t.Setenv("GLASSHOUSE_TEST_SECRET", "hunter2")
	cases := []struct {
		name, body       string
		stdout, failure  string
		exitCode         int
		stderrContaining string
	}{
		{"quickstart", `{"code": "print(2+2)"}`, "4\n", "none", 0, ""},
		{"exit code", `{"code":"import sys; sys.exit(7)"}`, "", "code", 7, ""},
		{"exception", `{"code":"raise ValueError('nope')"}`, "", "code", 1, "ValueError: nope"},
		{"stdin and env", `{"code":"import os,sys; print(sys.stdin.read(), os.environ['FOO'])","stdin":"in","env":{"FOO":"bar"}}`, "in bar\n", "none", 0, ""},
		{"files", `{"code":"print(open('d/x.txt').read())","files":[{"path":"d/x.txt","content_base64":"aGk="}]}`, "hi\n", "none", 0, ""},
		{"no host secrets", `{"code":"import os; print(os.environ.get('GLASSHOUSE_TEST_SECRET'))"}`, "None\n", "none", 0, ""},
		{"timeout", `{"code":"while True: pass","timeout_ms":500}`, "", "timeout", -1, ""},
		{"output limit", `{"code":"print('x'*100000)","limits":{"output_bytes":1000}}`, strings.Repeat("x", 1000), "output_limit", -1, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r, resp := e.run("", tc.body)
			if r.status != http.StatusOK {
				t.Fatalf("%d %s", r.status, r.body)
			}
			if resp.Stdout != tc.stdout || resp.Failure != tc.failure || resp.ExitCode != tc.exitCode ||
				!strings.Contains(resp.Stderr, tc.stderrContaining) || resp.Backend != "process" {
				t.Fatalf("response = %+v", resp)
			}
			rc := e.receipt("", resp.ID)
			if rc.Backend.Name != "process" || rc.Backend.Isolation != "none" || rc.Outcome.Failure != tc.failure ||
				!strings.Contains(strings.Join(rc.Backend.Notes, "\n"), "forked from a resident interpreter") {
				t.Fatalf("receipt backend %+v outcome %+v", rc.Backend, rc.Outcome)
			}
		})
	}
	var h server.Health
	e.do("GET", "/health", "", nil).json(t, &h)
	if len(h.Backends) != 1 || len(h.Backends[0].Details) != 1 || !strings.HasPrefix(h.Backends[0].Details[0], "python fork server: running ") {
		t.Errorf("health backends %+v", h.Backends)
	}
}

func TestProcessStreaming(t *testing.T) {
	e := processEnv(t)
	code := `import sys, time\nprint('first', flush=True)\nsys.stderr.write('err\\n'); sys.stderr.flush()\ntime.sleep(0.5)\nprint('second')`
	req, _ := http.NewRequest("POST", e.http.URL+"/run", strings.NewReader(`{"code":"`+code+`"}`))
	req.Header.Set("Accept", "application/x-ndjson")
	resp, err := e.http.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	lines := make(chan map[string]any, 16)
	go readLines(t, bufio.NewReader(resp.Body), lines)
	var types []string
	out := map[string]string{}
	var result map[string]any
	for l := range lines {
		typ := l["type"].(string)
		types = append(types, typ)
		switch typ {
		case "stdout", "stderr":
			out[typ] += l["data"].(string)
			if result != nil {
				t.Fatal("chunk after the result")
			}
		case "result":
			result = l
		}
	}
	if len(types) < 4 || types[0] != "started" || types[len(types)-1] != "result" {
		t.Fatalf("line types %v", types)
	}
	if out["stdout"] != "first\nsecond\n" || out["stderr"] != "err\n" || result["stdout"] != "first\nsecond\n" {
		t.Fatalf("streamed %q, result %v", out, result)
	}
	// "first" was flushed before the sleep, so it must have come in its
	// own chunk, before "second".
	if types[1] == "result" || !strings.HasPrefix(out["stdout"], "first") {
		t.Fatalf("no live chunk before the result: %v", types)
	}
}

func TestProcessBatch(t *testing.T) {
	e := processEnv(t)
	var runs []string
	for i := range 6 {
		runs = append(runs, fmt.Sprintf(`{"code":"print(%d*7)"}`, i))
	}
	r := e.do("POST", "/runs", "", []byte(`{"runs":[`+strings.Join(runs, ",")+`]}`))
	if r.status != 200 {
		t.Fatalf("%d %s", r.status, r.body)
	}
	lines := strings.Split(strings.TrimSpace(string(r.body)), "\n")
	if len(lines) != 7 {
		t.Fatalf("%d lines:\n%s", len(lines), r.body)
	}
	seen := map[int]bool{}
	for _, l := range lines[:6] {
		var m struct {
			Index int `json:"index"`
			server.RunResponse
		}
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatal(err)
		}
		if m.Stdout != strconv.Itoa(m.Index*7)+"\n" || m.Failure != "none" {
			t.Fatalf("run %d: %+v", m.Index, m.RunResponse)
		}
		seen[m.Index] = true
		e.receipt("", m.ID)
	}
	if len(seen) != 6 {
		t.Fatalf("indices %v", seen)
	}
}

// TestProcessProfiled runs through the server with the shared host eBPF
// collector: one collector serves every run, and a required-profiling run
// gets a complete receipt that shows the interpreter's exec.
func TestProcessProfiled(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireBinary(t, "python3")
	col, err := audit.Open(audit.Config{})
	if err != nil {
		testenv.Skip(t, "host eBPF collector: "+err.Error())
	}
	t.Cleanup(func() { col.Close() })
	state := t.TempDir()
	if err := os.Chmod(filepath.Dir(state), 0o755); err != nil {
		t.Fatal(err)
	}
	pb, err := process.New(process.Config{StateDir: state})
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, func(c *server.Config) {
		c.Backends = []execution.Backend{pb}
		c.AllowUnisolated = true
		c.Profiler = col
		c.ProfilerDropped = func() uint64 { return col.Stats().Dropped }
	})
	var h server.Health
	e.do("GET", "/health", "", nil).json(t, &h)
	if h.Profiler.Status != "loaded" || h.Profiler.Collector != "ebpf-host" || h.Status != "ok" {
		t.Fatalf("health profiler %+v status %s", h.Profiler, h.Status)
	}
	r := e.do("POST", "/runs", "", []byte(`{"runs":[{"code":"print(2+2)","profile":"required"},{"code":"import subprocess; subprocess.run(['true'])","profile":"required"}]}`))
	if r.status != 200 {
		t.Fatalf("%d %s", r.status, r.body)
	}
	for _, l := range strings.Split(strings.TrimSpace(string(r.body)), "\n")[:2] {
		var m server.RunResponse
		json.Unmarshal([]byte(l), &m)
		if m.Profiling != "complete" || m.Failure != "none" {
			t.Fatalf("run %s", l)
		}
		rc := e.receipt("", m.ID)
		if rc.Profiling.Collector != "ebpf-host" || rc.Profiling.Events == 0 || len(rc.Processes) == 0 ||
			!strings.HasSuffix(rc.Processes[0].Exe, "python3") && !strings.Contains(rc.Processes[0].Exe, "python") {
			t.Fatalf("receipt profiling %+v processes %+v", rc.Profiling, rc.Processes)
		}
	}
	m := string(e.do("GET", "/metrics", "", nil).body)
	if !strings.Contains(m, "glasshouse_profiler_dropped_events_total 0") {
		t.Fatalf("metrics lack the profiler's drop counter:\n%s", grep(m, "dropped"))
	}
}
