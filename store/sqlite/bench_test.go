package sqlite

import (
	"context"
	"fmt"
	"testing"
	"time"

	"glasshouse.dev/glasshouse/store"
)

// BenchmarkRecordRun measures what the store costs a server run: Begin
// then Complete with a typical receipt. "prepared" is the store as built;
// "unprepared" executes the same SQL without the prepared statements (the
// baseline: the driver compiles the SQL on every call).
//
//	go test ./store/sqlite -run '^$' -bench BenchmarkRecordRun
func BenchmarkRecordRun(b *testing.B) {
	ctx := context.Background()
	st, err := Open(ctx, Config{Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	draft := make([]byte, 600)
	rec := make([]byte, 30<<10)
	for i := range rec {
		rec[i] = byte('a' + i%26)
	}
	now := time.Now()
	n := 0
	b.Run("prepared", func(b *testing.B) {
		for b.Loop() {
			n++
			id := fmt.Sprintf("run-%d", n)
			if err := st.Begin(ctx, store.Pending{ID: id, Tenant: "t", Node: "n", Backend: "process", StartedAt: now, Draft: draft}); err != nil {
				b.Fatal(err)
			}
			if err := st.Complete(ctx, store.Completed{ID: id, Tenant: "t", Backend: "process", StartedAt: now, FinishedAt: now,
				Failure: "none", Digest: "sha256:x", Receipt: rec}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("unprepared", func(b *testing.B) {
		for b.Loop() {
			n++
			id := fmt.Sprintf("run-%d", n)
			if _, err := st.w.ExecContext(ctx, beginSQL, id, "t", "n", "process", now.UnixNano(), draft); err != nil {
				b.Fatal(err)
			}
			if _, err := st.w.ExecContext(ctx, completeSQL, id, "t", "process", now.UnixNano(), now.UnixNano(), "none", "", "sha256:x", rec); err != nil {
				b.Fatal(err)
			}
		}
	})
}
