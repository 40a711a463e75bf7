//go:build linux

package process_test

import (
	"context"
	"os/exec"
	"slices"
	"testing"
	"time"

	"glasshouse.dev/glasshouse/backend/process"
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

// BenchmarkEngineForked runs Python code (`pass`) through the engine
// twice per iteration, interleaved: started as a fresh interpreter, and
// forked from the fork server (Config.PythonZygote). It reports the
// medians and their ratio.
func BenchmarkEngineForked(b *testing.B) {
	var engines []*execution.Engine
	for _, zygote := range []bool{false, true} {
		backend := newBenchBackend(b, func(c *process.Config) { c.PythonZygote = zygote })
		e, err := execution.New(execution.Config{Backend: backend})
		if err != nil {
			b.Fatal(err)
		}
		engines = append(engines, e)
	}
	spec := execution.Spec{Code: "pass", Language: execution.LanguagePython}
	times := make([][]time.Duration, 2)
	for i := 0; i < b.N+5; i++ {
		for j, e := range engines {
			start := time.Now()
			r, err := e.Run(context.Background(), spec)
			if err != nil || r.Receipt.Outcome.Failure != "none" {
				b.Fatalf("run: %v %+v", err, r)
			}
			if i >= 5 {
				times[j] = append(times[j], time.Since(start))
			}
		}
	}
	fresh, forked := median(times[0]), median(times[1])
	b.ReportMetric(float64(fresh.Microseconds())/1000, "fresh-ms")
	b.ReportMetric(float64(forked.Microseconds())/1000, "forked-ms")
	b.ReportMetric(float64(forked)/float64(fresh), "ratio")
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}
