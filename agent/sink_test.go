package agent

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"glasshouse.dev/glasshouse/core/receipt"
	"glasshouse.dev/glasshouse/core/receipt/schema"
	"glasshouse.dev/glasshouse/store"
	"glasshouse.dev/glasshouse/store/sqlite"
)

// sealed builds a sealed receipt of a small window, as the agent writes.
func sealed(t *testing.T, id string) (*receipt.Receipt, []byte) {
	t.Helper()
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	r := buildReceipt(id, &snapshot{
		workloadID: "w1", path: "/ci/job", seq: 1, final: true, endReason: EndExited,
		start: now, end: now.Add(time.Second),
		sec: sections{
			procs:  []receipt.Process{{PID: 10, PPID: 1, Exe: "/bin/sh", Argv: []string{"sh", "-c", "exit 2"}, EndOffsetMS: 900, ExitCode: 2}},
			files:  []receipt.File{{Path: "/etc/passwd", Op: receipt.OpRead, PID: 10, Count: 1, OK: true}},
			events: 3,
		},
		host: receipt.Host{Kernel: "6.1", Arch: "amd64", GlasshouseVersion: "dev"},
	})
	if err := receipt.Seal(r); err != nil {
		t.Fatal(err)
	}
	doc, err := receipt.MarshalCompact(r)
	if err != nil {
		t.Fatal(err)
	}
	return r, bytes.TrimSuffix(doc, []byte("\n"))
}

func TestBuildReceiptValid(t *testing.T) {
	r, doc := sealed(t, "r1")
	if err := schema.Validate(doc); err != nil {
		t.Fatal(err)
	}
	if err := receipt.Verify(doc); err != nil {
		t.Fatal(err)
	}
	if r.Outcome.ExitCode != 2 || r.Outcome.Failure != receipt.FailureCode || r.Outcome.DurationMS != 1000 {
		t.Fatalf("outcome %+v", r.Outcome)
	}
	if strings.Join(r.Subject.Argv, " ") != "sh -c exit 2" {
		t.Fatalf("argv %q", r.Subject.Argv)
	}
	// Partial states always carry a reason (the schema demands one).
	for _, s := range []*snapshot{
		{dropped: 3, final: true},
		{hostDropped: 9},
		{seeded: 2},
		{sec: sections{omitted: receipt.Omitted{Files: 1}}},
		{blind: []string{"io_uring_setup by pid 3"}},
	} {
		s.start, s.end, s.path, s.workloadID = time.Unix(0, 0), time.Unix(1, 0), "/x", "w"
		r := buildReceipt("p", s)
		if err := receipt.Seal(r); err != nil {
			t.Fatal(err)
		}
		doc, _ := receipt.Marshal(r)
		if err := schema.Validate(doc); err != nil {
			t.Fatalf("%+v: %v", s, err)
		}
		if r.Profiling.Status != receipt.StatusPartial || r.Profiling.Reason == "" {
			t.Fatalf("%+v: profiling %+v", s, r.Profiling)
		}
	}
}

func TestNDJSONSink(t *testing.T) {
	var buf bytes.Buffer
	s := NewNDJSONSink("stdout", &buf)
	for _, id := range []string{"a", "b"} {
		r, doc := sealed(t, id)
		if err := s.Write(context.Background(), r, doc); err != nil {
			t.Fatal(err)
		}
	}
	sc := bufio.NewScanner(&buf)
	sc.Buffer(nil, receipt.MaxSize)
	n := 0
	for sc.Scan() {
		if err := receipt.Verify(sc.Bytes()); err != nil {
			t.Fatalf("line %d: %v", n, err)
		}
		n++
	}
	if n != 2 {
		t.Fatalf("%d lines", n)
	}
}

func TestFileSinkRotates(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "receipts.ndjson")
	if _, err := OpenFileSink(path, 10); err == nil {
		t.Fatal("a tiny rotation size was accepted")
	}
	s, err := OpenFileSink(path, MinFileMaxBytes)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	r, doc := sealed(t, "x")
	n := int(MinFileMaxBytes)/(len(doc)+1) + 5
	for i := 0; i < n; i++ {
		if err := s.Write(context.Background(), r, doc); err != nil {
			t.Fatal(err)
		}
	}
	cur, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	old, err := os.Stat(path + ".1")
	if err != nil {
		t.Fatalf("no rotated file: %v", err)
	}
	if cur.Size() > MinFileMaxBytes || old.Size() > MinFileMaxBytes || cur.Mode().Perm() != 0o600 {
		t.Fatalf("sizes %d %d mode %v", cur.Size(), old.Size(), cur.Mode())
	}
	if (cur.Size()+old.Size())/int64(len(doc)+1) != int64(n) {
		t.Fatalf("lost lines: %d + %d bytes for %d receipts", cur.Size(), old.Size(), n)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Write(context.Background(), r, doc); err == nil {
		t.Fatal("write after close succeeded")
	}
}

func TestStoreSink(t *testing.T) {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, sqlite.Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := NewStoreSink(st, ""); err == nil {
		t.Fatal("empty tenant accepted")
	}
	s, err := NewStoreSink(st, "agent")
	if err != nil {
		t.Fatal(err)
	}
	r, doc := sealed(t, "01a2216c-0000-7000-8000-000000000001")
	if err := s.Write(ctx, r, doc); err != nil {
		t.Fatal(err)
	}
	rec, err := st.Get(ctx, "agent", r.ID)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Failure != receipt.FailureCode || rec.Digest != r.Digest || rec.Backend != BackendName {
		t.Fatalf("stored %+v", rec.Summary)
	}
	if err := receipt.Verify(rec.Receipt); err != nil {
		t.Fatalf("stored receipt: %v", err)
	}
	var back map[string]any
	if err := json.Unmarshal(rec.Receipt, &back); err != nil {
		t.Fatal(err)
	}
	// A second write of the same receipt is refused, not duplicated.
	if err := s.Write(ctx, r, doc); !errors.Is(err, store.ErrExists) {
		t.Fatalf("duplicate write: %v", err)
	}
}
