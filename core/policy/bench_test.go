package policy

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"glasshouse.dev/glasshouse/core/receipt"
)

// benchReceipt returns a sealed receipt shaped like a Python run with
// entries spread over the sections: a few processes, mostly file reads of
// the standard library, some writes in the workspace and some network.
func benchReceipt(tb testing.TB, entries int) *receipt.Receipt {
	tb.Helper()
	r := &receipt.Receipt{
		ID:        "bench",
		Limits:    receipt.Limits{TimeoutMS: 30000, MemoryBytes: 512 << 20, PIDs: 256, Network: "none"},
		Outcome:   receipt.Outcome{Failure: receipt.FailureNone},
		Profiling: receipt.Profiling{Mode: "required", Status: receipt.StatusComplete, Collector: "ebpf-host"},
		Resources: receipt.Resources{MemoryPeakBytes: 20 << 20, PIDsPeak: 3},
	}
	nproc, nnet := entries/20, entries/10
	nfile := entries - nproc - nnet
	for i := 0; i < nproc; i++ {
		r.Processes = append(r.Processes, receipt.Process{PID: int64(100 + i), PPID: 99, Exe: "/usr/bin/python3.11",
			Argv: []string{"python3", "-c", "pass"}, Cwd: "/tmp/gh-run-1/work", StartOffsetMS: int64(i), EndOffsetMS: 50})
	}
	for i := 0; i < nfile; i++ {
		f := receipt.File{Path: fmt.Sprintf("/usr/lib/python3.11/encodings/mod_%04d.py", i), Op: "read", PID: 100, Count: 1, OK: true}
		if i%10 == 0 {
			f = receipt.File{Path: fmt.Sprintf("/tmp/gh-run-1/work/out_%04d.txt", i), Op: "write", PID: 100, Count: 2, OK: true}
		}
		r.Files = append(r.Files, f)
	}
	for i := 0; i < nnet; i++ {
		r.Network = append(r.Network, receipt.Net{Op: "connect", Family: "unix", Address: fmt.Sprintf("/tmp/gh-run-1/work/sock%d", i), PID: 100, Count: 1, OK: true})
	}
	if err := receipt.Seal(r); err != nil {
		tb.Fatal(err)
	}
	return r
}

const allPacks = "no-network,workspace-only-writes,no-subprocess,no-sensitive-reads,resource-caps,complete-observation"

// BenchmarkEvaluatePacks evaluates every built-in pack over a receipt of
// 1,000 entries. The goal is <= 50 µs per receipt. The machine's load
// varies, so each iteration also times a baseline in the same loop — one
// hand-written pass over the entries (scanOnce) — and the benchmark reports
// the ratio as x-scan.
func BenchmarkEvaluatePacks(b *testing.B) {
	p, err := Load(allPacks)
	if err != nil {
		b.Fatal(err)
	}
	r := benchReceipt(b, 1000)
	var eval, scan time.Duration
	b.ReportAllocs()
	for b.Loop() {
		t0 := time.Now()
		if _, err := p.Evaluate(r); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		scanOnce(r)
		scan += time.Since(t1)
		eval += t1.Sub(t0)
	}
	b.ReportMetric(float64(eval.Nanoseconds())/float64(b.N), "eval-ns")
	b.ReportMetric(float64(scan.Nanoseconds())/float64(b.N), "scan-ns")
	b.ReportMetric(float64(eval)/float64(scan), "x-scan")
}

var scanSink int

// scanOnce is the floor a policy engine competes with: one pass over the
// receipt's entries testing each file path and network family in Go.
func scanOnce(r *receipt.Receipt) {
	for i := range r.Files {
		if strings.HasPrefix(r.Files[i].Path, "/etc/shadow") {
			scanSink++
		}
	}
	for i := range r.Network {
		if r.Network[i].Family != "unix" {
			scanSink++
		}
	}
	for i := range r.Processes {
		if r.Processes[i].PID != r.Processes[0].PID {
			scanSink++
		}
	}
}

// BenchmarkEvaluatePack evaluates each pack alone over the same receipt.
func BenchmarkEvaluatePack(b *testing.B) {
	r := benchReceipt(b, 1000)
	for _, pk := range Packs() {
		p, err := Load(pk.Name)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(pk.Name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := p.Evaluate(r); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkDecodeBaseline reads the same 1,000-entry receipt from its
// stored bytes (receipt.Decode): what a caller pays to get the receipt it
// then evaluates, the baseline for BenchmarkEvaluatePacks.
func BenchmarkDecodeBaseline(b *testing.B) {
	doc, err := receipt.MarshalCompact(benchReceipt(b, 1000))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := receipt.Decode(doc); err != nil {
			b.Fatal(err)
		}
	}
}
