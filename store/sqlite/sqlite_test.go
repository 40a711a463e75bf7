package sqlite_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"glasshouse.dev/glasshouse/store"
	"glasshouse.dev/glasshouse/store/sqlite"
	"glasshouse.dev/glasshouse/store/storetest"
)

func open(t *testing.T, dir string) *sqlite.Store {
	t.Helper()
	s, err := sqlite.Open(context.Background(), sqlite.Config{Dir: dir})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return open(t, t.TempDir()) })
}

func TestConfigValidate(t *testing.T) {
	for _, c := range []sqlite.Config{{}, {Dir: "x", Synchronous: "off"}, {Dir: "x", Readers: -1}} {
		if err := c.Validate(); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("Validate(%+v) = %v, want ErrInvalid", c, err)
		}
	}
}

func TestReopenKeepsData(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	s := open(t, dir)
	now := time.Now()
	if err := s.Complete(ctx, store.Completed{ID: "done", Tenant: "a", StartedAt: now, FinishedAt: now, Failure: "none", Receipt: []byte("{}")}); err != nil {
		t.Fatal(err)
	}
	if err := s.Begin(ctx, store.Pending{ID: "flying", Tenant: "a", Node: "n", StartedAt: now, Draft: []byte("{}")}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, sqlite.FileName))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("database file mode = %v, %v; want 0600", fi.Mode(), err)
	}
	s = open(t, dir)
	defer s.Close()
	if _, err := s.Get(ctx, "a", "done"); err != nil {
		t.Fatalf("completed run lost on reopen: %v", err)
	}
	if fl, err := s.InFlight(ctx, "n"); err != nil || len(fl) != 1 || fl[0].ID != "flying" {
		t.Fatalf("in-flight run lost on reopen: %+v, %v", fl, err)
	}
}

func TestRefusesNewerSchema(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	s.Close()
	// Bump the schema version behind the store's back.
	if err := sqlite.BumpVersion(filepath.Join(dir, sqlite.FileName)); err != nil {
		t.Fatal(err)
	}
	if _, err := sqlite.Open(context.Background(), sqlite.Config{Dir: dir}); err == nil || !strings.Contains(err.Error(), "newer") {
		t.Fatalf("Open of a newer schema = %v, want refusal", err)
	}
}

// TestCrashKeepsCommitted kills a writer process with SIGKILL in the middle
// of a stream of writes and checks that everything it reported committed is
// intact and that its in-flight runs are still found.
func TestCrashKeepsCommitted(t *testing.T) {
	if os.Getenv("GLASSHOUSE_STORE_CRASH_CHILD") != "" {
		crashChild(os.Getenv("GLASSHOUSE_STORE_CRASH_CHILD"))
		return
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashKeepsCommitted$")
	cmd.Env = append(os.Environ(), "GLASSHOUSE_STORE_CRASH_CHILD="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	committed := -1
	for sc.Scan() {
		if n, ok := strings.CutPrefix(sc.Text(), "committed "); ok {
			committed, _ = strconv.Atoi(n)
			if committed >= 200 {
				break
			}
		}
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	if committed < 200 {
		t.Fatalf("child reported %d commits before dying", committed)
	}
	s := open(t, dir)
	defer s.Close()
	ctx := context.Background()
	for i := 0; i <= committed; i++ {
		rec, err := s.Get(ctx, "a", fmt.Sprintf("run-%06d", i))
		if err != nil || rec.State != store.StateDone || string(rec.Receipt) != fmt.Sprintf(`{"n":%d}`, i) {
			t.Fatalf("run %d after crash: %+v, %v", i, rec, err)
		}
	}
	fl, err := s.InFlight(ctx, "child")
	if err != nil || len(fl) == 0 {
		t.Fatalf("in-flight runs after crash: %d, %v; want at least the one in progress", len(fl), err)
	}
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("Ping after crash: %v", err)
	}
}

func crashChild(dir string) {
	s, err := sqlite.Open(context.Background(), sqlite.Config{Dir: dir})
	if err != nil {
		fmt.Println("open:", err)
		os.Exit(1)
	}
	ctx := context.Background()
	for i := 0; ; i++ {
		id := fmt.Sprintf("run-%06d", i)
		now := time.Now()
		if err := s.Begin(ctx, store.Pending{ID: id, Tenant: "a", Node: "child", StartedAt: now, Draft: []byte("{}")}); err != nil {
			fmt.Println("begin:", err)
			os.Exit(1)
		}
		if err := s.Complete(ctx, store.Completed{ID: id, Tenant: "a", StartedAt: now, FinishedAt: time.Now(), Failure: "none", Receipt: fmt.Appendf(nil, `{"n":%d}`, i)}); err != nil {
			fmt.Println("complete:", err)
			os.Exit(1)
		}
		// The next run is begun before the commit is reported, so the
		// parent always kills the child with one run in flight.
		if err := s.Begin(ctx, store.Pending{ID: fmt.Sprintf("flying-%06d", i), Tenant: "a", Node: "child", StartedAt: now}); err != nil {
			fmt.Println("begin:", err)
			os.Exit(1)
		}
		fmt.Printf("committed %d\n", i)
	}
}
