//go:build linux

package qemu

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"glasshouse.dev/glasshouse/core/execution"
	"glasshouse.dev/glasshouse/core/execution/executiontest"
	"glasshouse.dev/glasshouse/internal/testenv"
)

// snapshotDir is shared by every backend of the test binary, so that the
// snapshot template is built once; TestMain removes it.
var snapshotDir string

func TestMain(m *testing.M) {
	if os.Getenv("GLASSHOUSE_REAP_CHILD") != "" {
		// TestReap's child is killed, and never cleans up.
		os.Exit(m.Run())
	}
	if dir := os.Getenv("GLASSHOUSE_TEST_SNAPSHOTS"); dir != "" {
		// Kept across runs, to skip template builds while developing.
		snapshotDir = dir
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "ghq-snap-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	snapshotDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// testArtifacts returns the guest artifacts directory: $GLASSHOUSE_ARTIFACTS
// or artifacts/ at the repository root. It skips (fails under CI) when the
// artifacts or QEMU are missing.
func testArtifacts(t testing.TB) string {
	t.Helper()
	testenv.RequireBinary(t, "qemu-system-x86_64")
	testenv.RequireBinary(t, "mkfs.ext4")
	dir := os.Getenv("GLASSHOUSE_ARTIFACTS")
	if dir == "" {
		wd, err := os.Getwd()
		if err != nil {
			t.Fatal(err)
		}
		for d := wd; ; d = filepath.Dir(d) {
			if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
				dir = filepath.Join(d, "artifacts")
				break
			}
			if d == filepath.Dir(d) {
				t.Fatal("no go.mod above the test directory")
			}
		}
	}
	for _, f := range []string{KernelFile, InitramfsFile, RootfsFile} {
		testenv.RequireFile(t, filepath.Join(dir, f), "guest artifacts: run scripts/build-guest.sh")
	}
	return dir
}

// tracker records what each run of a backend holds on the host, by the
// conformance suite's marker, so that leftovers can be checked precisely.
type tracker struct {
	mu    sync.Mutex
	runs  map[string][]*instance
	state string
	b     *Backend
}

func newTestBackend(t testing.TB, settings map[string]string) (*Backend, *tracker) {
	t.Helper()
	arts := testArtifacts(t)
	// A short state directory keeps unix socket paths under their limit.
	state, err := os.MkdirTemp("", "ghq-")
	if err != nil {
		t.Fatal(err)
	}
	opts := execution.Options{StateDir: state, ArtifactsDir: arts, Settings: map[string]string{"qemu.accel": "tcg", "qemu.snapshot_dir": snapshotDir}}
	for k, v := range settings {
		opts.Settings[k] = v
	}
	cfg, err := configFrom(opts)
	if err != nil {
		t.Fatal(err)
	}
	b, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	tr := &tracker{runs: map[string][]*instance{}, state: state, b: b}
	b.onPrepare = func(spec *execution.Spec, i *instance) {
		tr.mu.Lock()
		defer tr.mu.Unlock()
		m := spec.Env[executiontest.MarkerEnv]
		tr.runs[m] = append(tr.runs[m], i)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("close backend: %v", err)
		}
		if left := tr.leftovers(executiontest.AllRuns); len(left) > 0 {
			t.Errorf("backend left things behind:\n  %s", strings.Join(left, "\n  "))
		}
		os.RemoveAll(state)
	})
	return b, tr
}

// leftovers reports the QEMU processes and VM directories (sockets,
// workspace images) of the runs marked marker that still exist; with
// executiontest.AllRuns, of every run, plus any VM directory or QEMU process
// under the state directory that does not belong to an idle pooled guest.
func (tr *tracker) leftovers(marker string) []string {
	tr.mu.Lock()
	var insts []*instance
	for m, is := range tr.runs {
		if marker == executiontest.AllRuns || m == marker {
			insts = append(insts, is...)
		}
	}
	tr.mu.Unlock()
	var left []string
	for _, i := range insts {
		if i.m.cmd != nil && i.m.cmd.Process != nil && syscall.Kill(i.m.cmd.Process.Pid, 0) == nil && i.m.Alive() {
			left = append(left, fmt.Sprintf("qemu pid %d of vm %s", i.m.cmd.Process.Pid, i.m.id))
		}
		if _, err := os.Stat(i.m.dir); err == nil {
			left = append(left, "vm directory "+i.m.dir)
		}
	}
	if marker == executiontest.AllRuns {
		left = append(left, tr.strays()...)
	}
	return left
}

// strays lists VM directories and QEMU processes under the state directory
// that belong to no pooled guest; once the backend is closed, none may be
// left at all.
func (tr *tracker) strays() []string {
	// Look first, then ask which machines are pooled, then check that what
	// was seen still exists: a guest booting or closing meanwhile is not a
	// stray.
	entries, _ := os.ReadDir(tr.state)
	procs, _ := os.ReadDir("/proc")
	cmdlines := map[string]string{}
	for _, p := range procs {
		b, err := os.ReadFile(filepath.Join("/proc", p.Name(), "cmdline"))
		if err == nil && strings.Contains(string(b), tr.state+"/") {
			cmdlines[p.Name()] = string(b)
		}
	}
	pooled := tr.b.pooled()
	var left []string
	for _, e := range entries {
		dir := filepath.Join(tr.state, e.Name())
		if !strings.HasPrefix(e.Name(), "glasshouse-qemu-") || pooled[e.Name()] {
			continue
		}
		if _, err := os.Stat(dir); err == nil {
			left = append(left, "stray vm directory "+dir)
		}
	}
	for pid, cmd := range cmdlines {
		isPooled := false
		for id := range pooled {
			isPooled = isPooled || strings.Contains(cmd, filepath.Join(tr.state, id)+"/")
		}
		if isPooled {
			continue
		}
		if b, err := os.ReadFile(filepath.Join("/proc", pid, "cmdline")); err == nil && string(b) == cmd {
			left = append(left, "stray process "+pid+": "+strings.ReplaceAll(cmd[:min(len(cmd), 120)], "\x00", " "))
		}
	}
	return left
}

func background() context.Context { return context.Background() }
