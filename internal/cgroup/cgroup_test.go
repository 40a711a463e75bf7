//go:build linux

package cgroup

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"glasshouse.dev/glasshouse/internal/testenv"
)

func TestParseMountinfo(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		unified string
		v1      map[string]string
		wantErr bool
	}{
		{
			name: "hybrid",
			in: `31 23 0:28 / /sys/fs/cgroup rw - tmpfs tmpfs rw
32 31 0:29 / /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw,nsdelegate
33 31 0:30 / /sys/fs/cgroup/cpu,cpuacct rw shared:5 - cgroup cgroup rw,cpu,cpuacct
34 31 0:31 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
35 31 0:32 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids
36 31 0:33 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd`,
			unified: "/sys/fs/cgroup/unified",
			v1: map[string]string{"cpu": "/sys/fs/cgroup/cpu,cpuacct", "cpuacct": "/sys/fs/cgroup/cpu,cpuacct",
				"memory": "/sys/fs/cgroup/memory", "pids": "/sys/fs/cgroup/pids"},
		},
		{
			name:    "unified",
			in:      `29 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot`,
			unified: "/sys/fs/cgroup",
			v1:      map[string]string{},
		},
		{
			name:    "escaped mount point",
			in:      `29 23 0:26 / /mnt/my\040cgroups rw - cgroup2 cgroup2 rw`,
			unified: "/mnt/my cgroups",
			v1:      map[string]string{},
		},
		{name: "no cgroup2", in: `34 31 0:31 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory`, wantErr: true},
		{name: "garbage", in: "not a mountinfo line\n\n - \x00", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, err := parseMountinfo(bufio.NewScanner(strings.NewReader(tt.in)))
			if tt.wantErr {
				if err == nil {
					t.Fatalf("got %+v, want an error", l)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if l.Unified != tt.unified || len(l.V1) != len(tt.v1) {
				t.Fatalf("got %+v, want unified %s v1 %v", l, tt.unified, tt.v1)
			}
			for k, v := range tt.v1 {
				if l.V1[k] != v {
					t.Errorf("v1[%s] = %q, want %q", k, l.V1[k], v)
				}
			}
		})
	}
}

func FuzzParseMountinfo(f *testing.F) {
	f.Add("32 31 0:29 / /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw\n34 31 0:31 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory")
	f.Add(`29 23 0:26 / /mnt/my\040cgroups rw - cgroup2 cgroup2 rw`)
	f.Fuzz(func(t *testing.T, in string) {
		l, err := parseMountinfo(bufio.NewScanner(strings.NewReader(in)))
		if err == nil && l.Unified == "" {
			t.Fatal("no error but no unified mount")
		}
	})
}

func newTestGroup(tb testing.TB, lim Limits) (*Layout, *Group, string) {
	tb.Helper()
	testenv.RequireRoot(tb)
	l, err := Detect()
	if err != nil {
		testenv.Skip(tb, err.Error())
	}
	parent := "glasshouse-cgtest-" + strconv.Itoa(os.Getpid())
	tb.Cleanup(func() {
		_ = os.Remove(filepath.Join(l.Unified, parent))
		for _, m := range l.V1 {
			_ = os.Remove(filepath.Join(m, parent))
		}
	})
	g, err := l.Create(parent, "g", lim)
	if err != nil {
		tb.Fatal(err)
	}
	return l, g, parent
}

// TestKillEndsEscapedDaemon starts a process that double-forks a setsid
// daemon, then kills the group and checks nothing is left.
func TestKillEndsEscapedDaemon(t *testing.T) {
	_, g, _ := newTestGroup(t, Limits{MemoryBytes: 64 << 20, PIDs: 16})
	cmd := exec.Command("sh", "-c", "setsid sh -c 'sleep 100 & sleep 100' & sleep 100")
	if err := g.StartInGroup(cmd); err != nil {
		t.Fatal(err)
	}
	go cmd.Wait()
	if pop, err := g.Populated(); err != nil || !pop {
		t.Fatalf("populated = %v, %v", pop, err)
	}
	if err := g.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := g.WaitEmpty(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := g.Remove(); err != nil {
		t.Fatal(err)
	}
	if err := g.Remove(); err != nil {
		t.Fatalf("second Remove: %v", err)
	}
	if _, err := os.Stat(g.Path()); !os.IsNotExist(err) {
		t.Fatalf("cgroup still exists: %v", err)
	}
}

// BenchmarkSetup measures what a run pays for its cgroup: creating it with
// limits (the figure quoted as "cgroup setup") and removing it.
func BenchmarkSetup(b *testing.B) {
	l, g, parent := newTestGroup(b, Limits{})
	if err := g.Remove(); err != nil {
		b.Fatal(err)
	}
	lim := Limits{MemoryBytes: 256 << 20, PIDs: 256, CPUMillis: 1000}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		g, err := l.Create(parent, "bench", lim)
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if err := g.Remove(); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}

// TestSpawnerReturnsHome starts children in groups from several goroutines
// at once and checks that each child is in its group's v1 directories while
// no thread of this process is left in any of them.
func TestSpawnerReturnsHome(t *testing.T) {
	l, g0, parent := newTestGroup(t, Limits{PIDs: 8})
	if !l.Hybrid() {
		t.Skip("no v1 controllers: children are cloned into the cgroup2 directory directly")
	}
	if err := g0.Remove(); err != nil {
		t.Fatal(err)
	}
	const n = 6
	errc := make(chan error, n)
	for i := range n {
		go func() {
			errc <- func() error {
				g, err := l.Create(parent, "s"+strconv.Itoa(i), Limits{PIDs: 8, MemoryBytes: 64 << 20})
				if err != nil {
					return err
				}
				defer g.Remove()
				cmd := exec.Command("cat", "/proc/self/cgroup")
				var out strings.Builder
				r, w, err := os.Pipe()
				if err != nil {
					return err
				}
				cmd.Stdout = w
				if err := g.StartInGroup(cmd); err != nil {
					w.Close()
					r.Close()
					return err
				}
				w.Close()
				b := make([]byte, 4096)
				for {
					k, err := r.Read(b)
					out.Write(b[:k])
					if err != nil {
						break
					}
				}
				r.Close()
				if err := cmd.Wait(); err != nil {
					return err
				}
				name := "/" + parent + "/s" + strconv.Itoa(i)
				for _, c := range []string{"memory", "pids"} {
					if !inCgroup(out.String(), c, name) {
						return fmt.Errorf("child %d not in its %s cgroup:\n%s", i, c, out.String())
					}
				}
				return nil
			}()
		}()
	}
	for range n {
		if err := <-errc; err != nil {
			t.Error(err)
		}
	}
	tasks, _ := filepath.Glob("/proc/self/task/*/cgroup")
	for _, f := range tasks {
		b, err := os.ReadFile(f)
		if err != nil {
			continue // the thread exited
		}
		if strings.Contains(string(b), "/"+parent+"/") {
			t.Errorf("thread %s stayed in a run cgroup:\n%s", f, b)
		}
	}
}

// inCgroup reports whether a /proc/PID/cgroup listing puts controller c at
// path.
func inCgroup(listing, c, path string) bool {
	for _, line := range strings.Split(listing, "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) == 3 && strings.Contains(","+parts[1]+",", ","+c+",") {
			return parts[2] == path
		}
	}
	return false
}
