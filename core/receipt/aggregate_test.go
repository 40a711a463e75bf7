package receipt

import (
	"strings"
	"testing"
	"time"

	"glasshouse.dev/glasshouse/core/profiling"
)

// TestAggregatorFiles checks file deduplication and its cap: repeats,
// repeats after another entry, the same path in a different string, the
// same path with another op, pid or result, and entries past the cap,
// which are counted as omitted, whether or not they repeat.
func TestAggregatorFiles(t *testing.T) {
	a := NewAggregator(time.Now(), Caps{Files: 3})
	file := func(path, op string, pid int64, errno string) {
		a.Add(&profiling.Event{Kind: profiling.KindFile, Path: path, Op: op, PID: pid, Errno: errno})
	}
	other := strings.Repeat("/x", 2) // "/x/x", not the same string as the literal
	for _, f := range []struct {
		path, op string
		pid      int64
		errno    string
	}{
		{"/x/x", OpRead, 1, ""}, {"/x/x", OpRead, 1, ""}, {"/y", OpRead, 1, ""},
		{other, OpRead, 1, ""}, {"/x/x", OpWrite, 1, ""}, {"/x/x", OpRead, 1, ""},
		{"/x/x", OpRead, 2, ""}, {"/x/x", OpRead, 2, ""}, // past the cap: omitted twice
		{"/y", OpRead, 1, "ENOENT"}, // likewise
		{"/y", OpRead, 1, ""},
	} {
		file(f.path, f.op, f.pid, f.errno)
	}
	_, files, _, omitted := a.Sections()
	want := map[string]int64{"read /x/x 1 ok": 4, "write /x/x 1 ok": 1, "read /y 1 ok": 2}
	got := map[string]int64{}
	for _, f := range files {
		ok := "ok"
		if !f.OK {
			ok = f.Errno
		}
		got[strings.Join([]string{f.Op, f.Path, string(rune('0' + f.PID)), ok}, " ")] = f.Count
	}
	if len(got) != len(want) {
		t.Errorf("files %v, want %v", got, want)
	}
	for k, n := range want {
		if got[k] != n {
			t.Errorf("%s: count %d, want %d (all: %v)", k, got[k], n, got)
		}
	}
	if omitted.Files != 3 {
		t.Errorf("omitted %d files, want 3", omitted.Files)
	}
	if a.Events() != 10 {
		t.Errorf("%d events, want 10", a.Events())
	}
}

// An event with a Count stands for that many: in the entry, in what the
// cap omits and in the event total. Other kinds ignore it.
func TestAggregatorFileCounts(t *testing.T) {
	a := NewAggregator(time.Now(), Caps{Files: 1})
	a.Add(&profiling.Event{Kind: profiling.KindFile, Path: "/a", Op: OpRead, PID: 1, Count: 5})
	a.Add(&profiling.Event{Kind: profiling.KindFile, Path: "/a", Op: OpRead, PID: 1})
	a.Add(&profiling.Event{Kind: profiling.KindFile, Path: "/a", Op: OpRead, PID: 1, Count: 3})
	a.Add(&profiling.Event{Kind: profiling.KindFile, Path: "/b", Op: OpRead, PID: 1, Count: 7}) // past the cap
	a.Add(&profiling.Event{Kind: profiling.KindFork, PID: 2, PPID: 1, Count: 9})
	_, files, _, omitted := a.Sections()
	if len(files) != 1 || files[0].Count != 9 {
		t.Errorf("files %+v, want /a 9 times", files)
	}
	if omitted.Files != 7 {
		t.Errorf("omitted %d file events, want 7", omitted.Files)
	}
	if a.Events() != 17 {
		t.Errorf("%d events, want 17 (9 + 7 file events and a fork)", a.Events())
	}
}
