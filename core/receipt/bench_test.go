package receipt

import (
	"bytes"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"glasshouse.dev/glasshouse/core/profiling"
)

// typical returns a sealed receipt shaped like a Python start's: a few
// processes and about 150 file entries.
func typical(tb testing.TB) *Receipt {
	tb.Helper()
	start := time.Date(2026, 11, 28, 8, 0, 0, 123456789, time.UTC)
	r := &Receipt{
		ID:         "0190d5a8-7c1e-7b3c-9f3e-2d5c1a7b8e90",
		StartedAt:  At(start),
		FinishedAt: At(start.Add(25 * time.Millisecond)),
		Subject:    Subject{Argv: []string{"python3", "/dev/shm/glasshouse-run-1-123/main.py"}, Language: "python", CodeSHA256: SHA256Hex([]byte("print(2+2)"))},
		Backend:    Backend{Name: "process", Isolation: IsolationNone, Version: "dev", Containment: "cgroup"},
		Host:       Host{Kernel: "6.18.0", Arch: "amd64", GlasshouseVersion: "dev"},
		Limits:     Limits{TimeoutMS: 10000, MemoryBytes: 256 << 20, PIDs: 64, OutputBytes: 1 << 20, Network: NetworkNone},
		Outcome:    Outcome{Failure: FailureNone, DurationMS: 25},
		Output:     Output{StdoutBytes: 2, StdoutSHA256: SHA256Hex([]byte("4\n")), StderrSHA256: SHA256Hex([]byte(""))},
		Resources:  Resources{CPUUserMS: 14, CPUSystemMS: 6, MemoryPeakBytes: 9 << 20, PIDsPeak: 1},
		Profiling:  Profiling{Mode: ModeBestEffort, Status: StatusComplete, Collector: CollectorEBPFHost, Events: 412},
	}
	for p := range 3 {
		r.Processes = append(r.Processes, Process{PID: int64(1000 + p), PPID: 999, Exe: "/usr/bin/python3.11",
			Argv: []string{"python3", "-c", "import subprocess"}, Cwd: "/dev/shm/glasshouse-run-1-123", UID: 60000, StartOffsetMS: int64(p), EndOffsetMS: 20})
	}
	for i := range 150 {
		op := []string{OpRead, OpWrite, OpExec}[i%3]
		f := File{Path: fmt.Sprintf("/usr/lib/python3.11/encodings/__pycache__/module_%03d.cpython-311.pyc", i), Op: op, PID: 1000, Count: int64(1 + i%4), OK: i%7 != 0}
		if !f.OK {
			f.Errno = "ENOENT"
		}
		r.Files = append(r.Files, f)
	}
	r.Network = []Net{{Op: NetConnect, Family: FamilyInet, Protocol: ProtoTCP, Address: "127.0.0.1", Port: 80, PID: 1000, Count: 1, Errno: "EPERM"}}
	if err := Seal(r); err != nil {
		tb.Fatal(err)
	}
	return r
}

// BenchmarkReceipt measures sealing, encoding and verified decoding of a
// typical 150-entry receipt, each next to its baseline in the same run:
// "generic" is the path the direct encoder replaced (encoding/json over the
// struct, then the generic canonicaliser, and Verify through a generic
// decode), which stays in the package for receipts with unknown fields.
//
//	go test ./core/receipt -run '^$' -bench BenchmarkReceipt
func BenchmarkReceipt(b *testing.B) {
	r := typical(b)
	doc, err := Marshal(r)
	if err != nil {
		b.Fatal(err)
	}
	compact, err := MarshalCompact(r)
	if err != nil {
		b.Fatal(err)
	}
	bench := func(name string, size int, f func() error) {
		b.Run(name, func(b *testing.B) {
			if size > 0 {
				b.SetBytes(int64(size))
			}
			b.ReportAllocs()
			for b.Loop() {
				if err := f(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	bench("Seal/direct", 0, func() error { return Seal(r) })
	bench("Seal/generic", 0, func() error {
		Normalize(r)
		r.Digest = ""
		raw, err := marshalPlain(r)
		if err != nil {
			return err
		}
		r.Digest, err = ComputeDigest(raw)
		return err
	})
	bench("MarshalCompact/direct", 0, func() error { _, err := MarshalCompact(r); return err })
	bench("MarshalCompact/generic", 0, func() error {
		raw, err := marshalPlain(r)
		if err == nil {
			_, err = Canonical(raw)
		}
		return err
	})
	bench("Marshal/direct", 0, func() error { _, err := Marshal(r); return err })
	bench("Marshal/generic", 0, func() error {
		raw, err := marshalPlain(r)
		if err != nil {
			return err
		}
		c, err := Canonical(raw)
		if err != nil {
			return err
		}
		var out bytes.Buffer
		return json.Indent(&out, c, "", "  ")
	})
	bench("Verify/direct", len(doc), func() error { return Verify(doc) })
	bench("Verify/generic", len(doc), func() error { return verifyGeneric(doc) })
	bench("Decode/direct", len(doc), func() error { _, err := Decode(doc); return err })
	bench("Decode/generic", len(doc), func() error {
		if err := verifyGeneric(doc); err != nil {
			return err
		}
		_, err := Parse(doc)
		return err
	})
	bench("DecodeCompact/direct", len(compact), func() error { _, err := Decode(compact); return err })
	bench("DecodeCompact/generic", len(compact), func() error {
		if err := verifyGeneric(compact); err != nil {
			return err
		}
		_, err := Parse(compact)
		return err
	})
	bench("Parse/direct", len(doc), func() error { _, err := Parse(doc); return err })
	bench("Parse/generic", len(doc), func() error { var r Receipt; return json.Unmarshal(doc, &r) })
}

// BenchmarkAggregateFiles adds file events as a collector's reader does,
// with paths that repeat as one string (the reader interns them): the
// same open over and over (a loop on one file), and a cycle over 1,000
// files (an interpreter's start).
//
//	go test ./core/receipt -run '^$' -bench BenchmarkAggregateFiles
func BenchmarkAggregateFiles(b *testing.B) {
	paths := make([]string, 1000)
	for i := range paths {
		paths[i] = fmt.Sprintf("/usr/lib/python3.11/encodings/__pycache__/module_%03d.cpython-311.pyc", i)
	}
	for _, c := range []struct {
		name  string
		paths []string
	}{{"repeat", paths[:1]}, {"cycle1000", paths}} {
		b.Run(c.name, func(b *testing.B) {
			a := NewAggregator(time.Now(), Caps{})
			ev := profiling.Event{Kind: profiling.KindFile, Op: OpRead, PID: 1000}
			i := 0
			b.ReportAllocs()
			for b.Loop() {
				ev.Path = c.paths[i%len(c.paths)]
				a.Add(&ev)
				i++
			}
		})
	}
}
