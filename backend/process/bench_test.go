//go:build linux

package process_test

import (
	"context"
	"os/exec"
	"slices"
	"testing"
	"time"

	"glasshouse.dev/glasshouse/core/execution"
)

// BenchmarkEngineOverhead runs `python3 -c pass` through the engine and the
// process backend, interleaved with the same command run bare, and reports
// the medians and their ratio: the cost of a sandboxed run as a server,
// which keeps the engine loaded, pays it.
func BenchmarkEngineOverhead(b *testing.B) {
	backend := newBenchBackend(b)
	e, err := execution.New(execution.Config{Backend: backend})
	if err != nil {
		b.Fatal(err)
	}
	spec := execution.Spec{Command: []string{"python3", "-c", "pass"}}
	var bare, engine []time.Duration
	for i := 0; i < b.N+5; i++ {
		start := time.Now()
		if err := exec.Command("/usr/bin/python3", "-c", "pass").Run(); err != nil {
			b.Fatal(err)
		}
		mid := time.Now()
		r, err := e.Run(context.Background(), spec)
		if err != nil || r.Receipt.Outcome.Failure != "none" {
			b.Fatalf("run: %v %+v", err, r)
		}
		if i >= 5 { // the first runs warm caches
			bare = append(bare, mid.Sub(start))
			engine = append(engine, time.Since(mid))
		}
	}
	mb, me := median(bare), median(engine)
	b.ReportMetric(float64(mb.Microseconds())/1000, "bare-ms")
	b.ReportMetric(float64(me.Microseconds())/1000, "engine-ms")
	b.ReportMetric(float64(me)/float64(mb), "ratio")
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}
