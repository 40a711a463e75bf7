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
