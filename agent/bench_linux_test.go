//go:build linux

package agent

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// BenchmarkDiscoveryInotify measures how long the agent takes from a
// cgroup's mkdir to the start of its observation session, with inotify
// (rescans are set to an hour, so they never help).
func BenchmarkDiscoveryInotify(b *testing.B) {
	h := startHarness(b, []string{"/bench/*"}, "", nil)
	if err := os.MkdirAll(filepath.Join(h.root, "bench"), 0o755); err != nil {
		b.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	var total time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		dir := filepath.Join(h.root, "bench", fmt.Sprintf("w%d", i))
		if err := os.Mkdir(dir, 0o755); err != nil {
			b.Fatal(err)
		}
		select {
		case <-h.ctl.started:
		case <-time.After(5 * time.Second):
			b.Fatal("not discovered")
		}
		total += time.Since(start)
	}
	b.ReportMetric(float64(total.Microseconds())/float64(b.N), "µs/discovery")
}

// BenchmarkRescan measures one full rescan of a tree of 2000 cgroups, the
// cost the agent pays every --rescan-interval; a rescan-only design would
// find a new cgroup after half the interval on average.
func BenchmarkRescan(b *testing.B) {
	root := b.TempDir()
	for i := 0; i < 100; i++ {
		for j := 0; j < 20; j++ {
			if err := os.MkdirAll(filepath.Join(root, fmt.Sprintf("p%d/c%d", i, j)), 0o755); err != nil {
				b.Fatal(err)
			}
		}
	}
	sel, _ := ParseSelection([]string{"/*/*"})
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		dirs, _, err := scanTree(root, sel.WatchRoots(), DefaultMaxCgroups)
		if err != nil || len(dirs) != 2101 {
			b.Fatalf("%d dirs, %v", len(dirs), err)
		}
		paths := make([]string, len(dirs))
		for j, d := range dirs {
			paths[j] = d.Path
		}
		if n := len(sel.Topmost(paths)); n != 2000 {
			b.Fatalf("%d selected", n)
		}
	}
}
