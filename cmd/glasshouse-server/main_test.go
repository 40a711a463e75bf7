package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
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

	"glasshouse.dev/glasshouse/core/receipt"
	"glasshouse.dev/glasshouse/core/receipt/schema"
	"glasshouse.dev/glasshouse/internal/cgroup"
	"glasshouse.dev/glasshouse/internal/testenv"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// binary builds glasshouse-server once per test process.
func binary(t *testing.T) string {
	t.Helper()
	goBin := testenv.RequireBinary(t, "go")
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "glasshouse-server-test-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "glasshouse-server")
		out, err := exec.Command(goBin, "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binPath != "" {
		os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}

// proc is a running server binary.
type proc struct {
	cmd  *exec.Cmd
	url  string
	logs *strings.Builder
	mu   *sync.Mutex
	done chan struct{}
}

// start runs the binary with args and waits until it listens.
func start(t *testing.T, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(binary(t), append([]string{"--listen", "127.0.0.1:0", "--log-format", "json"}, args...)...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, logs: &strings.Builder{}, mu: &sync.Mutex{}, done: make(chan struct{})}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			p.mu.Lock()
			p.logs.WriteString(line + "\n")
			p.mu.Unlock()
			var m map[string]any
			if json.Unmarshal([]byte(line), &m) == nil && m["msg"] == "listening" {
				addr <- m["addr"].(string)
			}
		}
	}()
	go func() { cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			cmd.Process.Kill()
			<-p.done
		}
	})
	select {
	case a := <-addr:
		p.url = "http://" + a
	case <-p.done:
		t.Fatalf("server exited before listening:\n%s", p.log())
	case <-time.After(30 * time.Second):
		t.Fatalf("server did not listen within 30s:\n%s", p.log())
	}
	return p
}

func (p *proc) log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.logs.String()
}

func (p *proc) post(t *testing.T, body string) map[string]any {
	t.Helper()
	resp, err := http.Post(p.url+"/run", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("POST /run: %d %s", resp.StatusCode, b)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func (p *proc) get(t *testing.T, path string) (int, []byte) {
	t.Helper()
	resp, err := http.Get(p.url + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func TestRefusesNonLoopbackWithoutTokens(t *testing.T) {
	out, err := exec.Command(binary(t), "--listen", "0.0.0.0:0", "--data-dir", t.TempDir()).CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(string(out), "without --tokens") {
		t.Fatalf("exit %v, output:\n%s", err, out)
	}
	tokens := filepath.Join(t.TempDir(), "tokens")
	os.WriteFile(tokens, []byte("tok-0123456789abcdef alice\n"), 0o600)
	p := start(t, "--listen", "0.0.0.0:0", "--tokens", tokens, "--data-dir", t.TempDir())
	p.url = strings.NewReplacer("0.0.0.0", "127.0.0.1", "[::]", "127.0.0.1").Replace(p.url)
	if code, _ := p.get(t, "/receipts"); code != http.StatusUnauthorized {
		t.Fatalf("GET /receipts without a token: %d", code)
	}
}

// TestCrashDuringRun kills the server with SIGKILL while a run is in flight
// and restarts it on the same data directory: the completed run's receipt
// is intact and the lost run is recorded as an infrastructure failure.
func TestCrashDuringRun(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireBinary(t, "python3")
	data := t.TempDir()
	p := start(t, "--data-dir", data, "--allow-unisolated", "--backend", "process")

	done := p.post(t, `{"code":"print(2+2)"}`)
	doneID := done["id"].(string)
	_, before := p.get(t, "/receipts/"+doneID)

	// Start a long run, streaming, to learn its id and its pid.
	req, _ := http.NewRequest("POST", p.url+"/run", strings.NewReader(
		`{"code":"import os, time\nprint(os.getpid(), flush=True)\ntime.sleep(60)","timeout_ms":120000}`))
	req.Header.Set("Accept", "application/x-ndjson")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	var lostID string
	pid := 0
	for pid == 0 {
		line, err := br.ReadBytes('\n')
		if err != nil {
			t.Fatalf("stream ended: %v\n%s", err, p.log())
		}
		var m map[string]string
		json.Unmarshal(line, &m)
		switch m["type"] {
		case "started":
			lostID = m["id"]
		case "stdout":
			pid, _ = strconv.Atoi(strings.TrimSpace(m["data"]))
		}
	}
	// The server's death orphans the workload; remove it and its cgroup
	// and workspace afterwards, by pid, whatever the backend reaps.
	t.Cleanup(reapOrphan(t, pid))

	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-p.done

	p2 := start(t, "--data-dir", data, "--allow-unisolated", "--backend", "process")
	code, after := p2.get(t, "/receipts/"+doneID)
	if code != 200 || string(after) != string(before) {
		t.Fatalf("completed receipt after the crash: %d, unchanged %v", code, string(after) == string(before))
	}
	if err := receipt.Verify(after); err != nil {
		t.Fatal(err)
	}
	code, lost := p2.get(t, "/receipts/"+lostID)
	if code != 200 {
		t.Fatalf("lost run's receipt: %d %s\n%s", code, lost, p2.log())
	}
	if err := receipt.Verify(lost); err != nil {
		t.Fatalf("lost run's receipt does not verify: %v", err)
	}
	if err := schema.Validate(lost); err != nil {
		t.Fatalf("lost run's receipt does not match the schema: %v", err)
	}
	rc, _ := receipt.Decode(lost)
	if rc.Outcome.Failure != receipt.FailureInfrastructure || rc.Limits.TimeoutMS != 120000 || rc.Backend.Name != "process" {
		t.Fatalf("lost run's receipt: outcome %+v limits %+v", rc.Outcome, rc.Limits)
	}
	if !strings.Contains(p2.log(), "recorded lost run") {
		t.Fatalf("restart did not log the recovery:\n%s", p2.log())
	}
	// A clean stop: SIGTERM, exit 0.
	p2.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p2.done:
		if c := p2.cmd.ProcessState.ExitCode(); c != 0 {
			t.Fatalf("exit code %d after SIGTERM:\n%s", c, p2.log())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no exit within 30s of SIGTERM")
	}
}

// reapOrphan returns a cleanup that kills pid and removes the cgroups and
// workspace it ran in, when they belong to Glasshouse.
func reapOrphan(t *testing.T, pid int) func() {
	cg, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	cwd, _ := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid))
	return func() {
		if syscall.Kill(pid, syscall.SIGKILL) == nil {
			t.Logf("killed orphaned workload pid %d (the process backend does not reap after a crash)", pid)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for syscall.Kill(pid, 0) == nil && ctx.Err() == nil {
			time.Sleep(10 * time.Millisecond)
		}
		layout, err := cgroup.Detect()
		if err != nil {
			return
		}
		for _, line := range strings.Split(strings.TrimSpace(string(cg)), "\n") {
			parts := strings.SplitN(line, ":", 3)
			if len(parts) != 3 || !strings.Contains(parts[2], "glasshouse") {
				continue
			}
			var dirs []string
			if parts[1] == "" {
				dirs = append(dirs, filepath.Join(layout.Unified, parts[2]))
			}
			for _, c := range strings.Split(parts[1], ",") {
				if m, ok := layout.V1[c]; ok {
					dirs = append(dirs, filepath.Join(m, parts[2]))
				}
			}
			for _, d := range dirs {
				for ctx.Err() == nil {
					if err := os.Remove(d); err == nil || errors.Is(err, os.ErrNotExist) {
						break
					}
					time.Sleep(20 * time.Millisecond)
				}
			}
		}
		if strings.Contains(filepath.Base(cwd), "glasshouse-") {
			os.RemoveAll(cwd)
		}
	}
}
