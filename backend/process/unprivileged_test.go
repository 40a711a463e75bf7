//go:build linux

package process_test

import (
	"context"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"glasshouse.dev/glasshouse/backend/process"
	"glasshouse.dev/glasshouse/core/execution"
	"glasshouse.dev/glasshouse/core/receipt"
	"glasshouse.dev/glasshouse/internal/testenv"
)

const unprivilegedEnv = "GLASSHOUSE_TEST_UNPRIVILEGED"

// TestUnprivilegedFallback re-runs this test binary as nobody, where the
// backend cannot create cgroups, and checks the fallback: runs still work,
// the timeout still kills the process group, network none is still
// enforced, and the receipt says how the run was contained.
func TestUnprivilegedFallback(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireBinary(t, "python3")
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, d := range []string{dir, filepath.Dir(dir)} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	bin := filepath.Join(dir, "process.test")
	copyFile(t, self, bin)
	cmd := exec.Command(bin, "-test.run", "^TestUnprivilegedChild$", "-test.v")
	cmd.Env = []string{unprivilegedEnv + "=1", "PATH=/usr/bin:/bin", "CI=" + os.Getenv("CI")}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534, Groups: []uint32{}}}
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: TestUnprivilegedChild") {
		t.Fatalf("unprivileged run failed: %v\n%s", err, out)
	}
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestUnprivilegedChild is the half of TestUnprivilegedFallback that runs
// as nobody.
func TestUnprivilegedChild(t *testing.T) {
	if os.Getenv(unprivilegedEnv) == "" {
		t.Skip("run by TestUnprivilegedFallback")
	}
	b, err := process.New(process.Config{})
	if err != nil {
		t.Fatal(err)
	}
	e, err := execution.New(execution.Config{Backend: b})
	if err != nil {
		t.Fatal(err)
	}
	code := `import json, os, socket
try:
    socket.create_connection(("127.0.0.1", 9), timeout=2)
    net = "connected"
except OSError as e:
    net = type(e).__name__
print(json.dumps({"uid": os.getuid(), "net": net}))`
	r, err := e.Run(context.Background(), execution.Spec{Code: code, Language: "python", Timeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		UID int
		Net string
	}
	if err := json.Unmarshal(r.Result.Stdout, &got); err != nil {
		t.Fatalf("stdout %q stderr %q: %v", r.Result.Stdout, r.Result.Stderr, err)
	}
	if got.UID != os.Getuid() || got.Net == "connected" {
		t.Errorf("uid %d net %q: want uid %d and a refused connection", got.UID, got.Net, os.Getuid())
	}
	if r.Receipt.Backend.Containment != "rlimit" || !strings.Contains(strings.Join(r.Receipt.Backend.Notes, " "), "no per-run cgroup") {
		t.Errorf("backend = %+v, want containment rlimit and a note saying why", r.Receipt.Backend)
	}

	start := time.Now()
	r, err = e.Run(context.Background(), execution.Spec{Command: []string{"sh", "-c", "sleep 100 & sleep 100"}, Timeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if r.Receipt.Outcome.Failure != receipt.FailureTimeout || time.Since(start) > 5*time.Second {
		t.Errorf("outcome %+v after %s, want a prompt timeout", r.Receipt.Outcome, time.Since(start))
	}
}
