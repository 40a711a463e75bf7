package training

import (
	"fmt"
	"io"
	"math/rand/v2"
	"testing"

	"glasshouse.dev/glasshouse/core/receipt"
)

// rollouts returns n sealed receipts shaped like Python rollouts: one to
// three processes, about 150 file entries (mostly standard-library reads),
// a few workspace writes and some network attempts.
func rollouts(tb testing.TB, n int) []*receipt.Receipt {
	tb.Helper()
	rng := rand.New(rand.NewPCG(9, 9))
	out := make([]*receipt.Receipt, n)
	for k := range out {
		r := &receipt.Receipt{
			ID:        fmt.Sprintf("run-%d", k),
			Subject:   receipt.Subject{Argv: []string{"python3", "main.py"}},
			Backend:   receipt.Backend{Name: "process", Isolation: "none"},
			Limits:    receipt.Limits{TimeoutMS: 10000, Network: "none"},
			Outcome:   receipt.Outcome{Failure: []string{"none", "code", "timeout"}[rng.IntN(3)], DurationMS: int64(rng.IntN(10000))},
			Output:    receipt.Output{StdoutBytes: 2, StdoutSHA256: receipt.SHA256Hex([]byte("4\n"))},
			Resources: receipt.Resources{CPUUserMS: int64(rng.IntN(500)), MemoryPeakBytes: 20 << 20},
			Profiling: receipt.Profiling{Mode: "required", Status: receipt.StatusComplete, Collector: "ebpf-host"},
		}
		for p := 0; p < 1+rng.IntN(3); p++ {
			r.Processes = append(r.Processes, receipt.Process{PID: int64(100 + p), PPID: 99, Exe: "/usr/bin/python3", Cwd: "/ws", StartOffsetMS: int64(p)})
		}
		for f := 0; f < 140; f++ {
			r.Files = append(r.Files, receipt.File{Path: fmt.Sprintf("/usr/lib/python3.11/m%03d.py", f), Op: "read", PID: 100, Count: 1, OK: true})
		}
		for f := 0; f < 8; f++ {
			r.Files = append(r.Files, receipt.File{Path: fmt.Sprintf("/ws/out%d", f), Op: "write", PID: 100, Count: 2, OK: true})
		}
		r.Files = append(r.Files, receipt.File{Path: "/ws/tests/test_x.py", Op: "read", PID: 100, Count: 1, OK: true})
		for c := 0; c < rng.IntN(4); c++ {
			r.Network = append(r.Network, receipt.Net{Op: "connect", Family: "inet", Address: "10.0.0.1", Port: int64(80 + c), PID: 100, Count: 1, Errno: "EPERM"})
		}
		if err := receipt.Seal(r); err != nil {
			tb.Fatal(err)
		}
		out[k] = r
	}
	return out
}

const batch = 10_000

// BenchmarkSignals derives and writes the signals of 10,000 receipts (200
// distinct rollouts, cycled). Goal: >= 20,000 receipts/s on one core.
func BenchmarkSignals(b *testing.B) {
	rs := rollouts(b, 200)
	want := "4\n"
	in := Input{Expect: Expect{Stdout: &want}, GraderPaths: []string{"tests", "/opt/grader/**"}}
	b.ReportAllocs()
	for b.Loop() {
		for i := 0; i < batch; i++ {
			rec := Derive(rs[i%len(rs)], in)
			if err := WriteJSONL(io.Discard, rec); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(batch*b.N)/b.Elapsed().Seconds(), "receipts/s")
}

// BenchmarkDecodeBaseline is the cost of reading the same receipts from
// their stored bytes (receipt.Decode), which the CLI pays before Derive:
// the baseline the signal figures compare with. Decoding is slow, so an
// operation is 200 receipts, not 10,000; compare receipts/s.
func BenchmarkDecodeBaseline(b *testing.B) {
	rs := rollouts(b, 200)
	docs := make([][]byte, len(rs))
	for i, r := range rs {
		d, err := receipt.MarshalCompact(r)
		if err != nil {
			b.Fatal(err)
		}
		docs[i] = d
	}
	b.ReportAllocs()
	for b.Loop() {
		for _, d := range docs {
			if _, err := receipt.Decode(d); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(len(docs)*b.N)/b.Elapsed().Seconds(), "receipts/s")
}
