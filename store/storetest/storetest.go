// Package storetest is the conformance suite every store.Store must pass.
// Call Run from the implementation's tests with a function that opens a
// fresh, empty store.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"glasshouse.dev/glasshouse/store"
)

// Open returns a fresh, empty store; the suite closes it.
type Open func(t *testing.T) store.Store

// Run runs the conformance suite.
func Run(t *testing.T, open Open) {
	tests := []struct {
		name string
		f    func(t *testing.T, s store.Store)
	}{
		{"BeginComplete", testBeginComplete},
		{"Tenancy", testTenancy},
		{"Abandon", testAbandon},
		{"ListPages", testListPages},
		{"ListFilters", testListFilters},
		{"Prune", testPrune},
		{"Concurrent", testConcurrent},
		{"Closed", testClosed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := open(t)
			t.Cleanup(func() { s.Close() })
			tt.f(t, s)
		})
	}
}

var base = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

func completed(id, tenant string, i int) store.Completed {
	return store.Completed{
		ID: id, Tenant: tenant, Backend: "fake",
		StartedAt:  base.Add(time.Duration(i) * time.Second),
		FinishedAt: base.Add(time.Duration(i)*time.Second + 500*time.Millisecond),
		Failure:    "none", Digest: "sha256:" + id,
		Receipt: []byte(fmt.Sprintf(`{"id":%q}`, id)),
	}
}

func testBeginComplete(t *testing.T, s store.Store) {
	ctx := context.Background()
	p := store.Pending{ID: "r1", Tenant: "a", Node: "n1", Backend: "fake", StartedAt: base, Draft: []byte(`{"id":"r1"}`)}
	if err := s.Begin(ctx, p); err != nil {
		t.Fatalf("Begin: %v", err)
	}
	if err := s.Begin(ctx, p); !errors.Is(err, store.ErrExists) {
		t.Fatalf("second Begin = %v, want ErrExists", err)
	}
	got, err := s.InFlight(ctx, "n1")
	if err != nil || len(got) != 1 || got[0].ID != "r1" || got[0].Tenant != "a" || string(got[0].Draft) != `{"id":"r1"}` || !got[0].StartedAt.Equal(base) {
		t.Fatalf("InFlight = %+v, %v", got, err)
	}
	if other, _ := s.InFlight(ctx, "n2"); len(other) != 0 {
		t.Fatalf("InFlight(other node) = %+v, want none", other)
	}
	rec, err := s.Get(ctx, "a", "r1")
	if err != nil || rec.State != store.StateRunning || rec.Receipt != nil {
		t.Fatalf("Get running = %+v, %v", rec, err)
	}
	c := completed("r1", "a", 0)
	if err := s.Complete(ctx, c); err != nil {
		t.Fatalf("Complete: %v", err)
	}
	if err := s.Complete(ctx, c); !errors.Is(err, store.ErrExists) {
		t.Fatalf("second Complete = %v, want ErrExists", err)
	}
	rec, err = s.Get(ctx, "a", "r1")
	if err != nil || rec.State != store.StateDone || string(rec.Receipt) != `{"id":"r1"}` || rec.Digest != "sha256:r1" ||
		rec.Failure != "none" || !rec.FinishedAt.Equal(c.FinishedAt) {
		t.Fatalf("Get done = %+v, %v", rec, err)
	}
	if got, _ := s.InFlight(ctx, "n1"); len(got) != 0 {
		t.Fatalf("InFlight after Complete = %+v", got)
	}
	// Complete without Begin inserts (recovery of a run from elsewhere).
	if err := s.Complete(ctx, completed("r2", "a", 1)); err != nil {
		t.Fatalf("Complete without Begin: %v", err)
	}
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("Ping: %v", err)
	}
}

func testTenancy(t *testing.T, s store.Store) {
	ctx := context.Background()
	if err := s.Begin(ctx, store.Pending{ID: "r1", Tenant: "a", StartedAt: base}); err != nil {
		t.Fatal(err)
	}
	if err := s.Complete(ctx, completed("r1", "b", 0)); !errors.Is(err, store.ErrExists) {
		t.Fatalf("Complete by another tenant = %v, want ErrExists", err)
	}
	if err := s.Complete(ctx, completed("r1", "a", 0)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, "b", "r1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Get by another tenant = %v, want ErrNotFound", err)
	}
	if _, err := s.Get(ctx, "a", "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Get unknown = %v, want ErrNotFound", err)
	}
	page, err := s.List(ctx, "b", store.Query{Limit: 10})
	if err != nil || len(page.Runs) != 0 {
		t.Fatalf("List(b) = %+v, %v", page, err)
	}
}

func testAbandon(t *testing.T, s store.Store) {
	ctx := context.Background()
	if err := s.Begin(ctx, store.Pending{ID: "r1", Tenant: "a", StartedAt: base}); err != nil {
		t.Fatal(err)
	}
	if err := s.Abandon(ctx, "r1"); err != nil {
		t.Fatalf("Abandon: %v", err)
	}
	if err := s.Abandon(ctx, "r1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("second Abandon = %v, want ErrNotFound", err)
	}
	if _, err := s.Get(ctx, "a", "r1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Get abandoned = %v", err)
	}
	if err := s.Complete(ctx, completed("r2", "a", 0)); err != nil {
		t.Fatal(err)
	}
	if err := s.Abandon(ctx, "r2"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Abandon of a completed run = %v, want ErrNotFound", err)
	}
}

func testListPages(t *testing.T, s store.Store) {
	ctx := context.Background()
	const n = 23
	for i := range n {
		// Two runs share each start time, so the cursor must break ties.
		c := completed(fmt.Sprintf("r%02d", i), "a", i/2)
		if err := s.Complete(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Begin(ctx, store.Pending{ID: "zz-running", Tenant: "a", StartedAt: base.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	var prev store.Summary
	cursor := ""
	pages := 0
	for {
		page, err := s.List(ctx, "a", store.Query{Limit: 5, Cursor: cursor})
		if err != nil {
			t.Fatalf("List: %v", err)
		}
		pages++
		for _, r := range page.Runs {
			if seen[r.ID] {
				t.Fatalf("run %s listed twice", r.ID)
			}
			if r.State != store.StateDone {
				t.Fatalf("List returned in-flight run %s", r.ID)
			}
			if prev.ID != "" && (r.StartedAt.After(prev.StartedAt) || (r.StartedAt.Equal(prev.StartedAt) && r.ID > prev.ID)) {
				t.Fatalf("run %s listed after %s: not newest first", r.ID, prev.ID)
			}
			seen[r.ID], prev = true, r
		}
		if page.Next == "" {
			break
		}
		cursor = page.Next
	}
	if len(seen) != n || pages != 5 {
		t.Fatalf("listed %d runs in %d pages, want %d in 5", len(seen), pages, n)
	}
	for _, q := range []store.Query{{Limit: 0}, {Limit: store.MaxLimit + 1}, {Limit: 1, Cursor: "!!"}} {
		if _, err := s.List(ctx, "a", q); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("List(%+v) = %v, want ErrInvalid", q, err)
		}
	}
}

func testListFilters(t *testing.T, s store.Store) {
	ctx := context.Background()
	kinds := []struct{ failure, verdict string }{{"none", "allow"}, {"code", "deny"}, {"timeout", ""}, {"none", "deny"}}
	for i, k := range kinds {
		c := completed(fmt.Sprintf("r%d", i), "a", i*10)
		c.Failure, c.Verdict = k.failure, k.verdict
		if err := s.Complete(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	count := func(q store.Query) int {
		t.Helper()
		q.Limit = 100
		page, err := s.List(ctx, "a", q)
		if err != nil {
			t.Fatal(err)
		}
		return len(page.Runs)
	}
	if got := count(store.Query{Failure: "none"}); got != 2 {
		t.Errorf("failure=none: %d runs, want 2", got)
	}
	if got := count(store.Query{Verdict: "deny"}); got != 2 {
		t.Errorf("verdict=deny: %d runs, want 2", got)
	}
	if got := count(store.Query{Failure: "none", Verdict: "deny"}); got != 1 {
		t.Errorf("failure=none verdict=deny: %d runs, want 1", got)
	}
	if got := count(store.Query{Since: base.Add(15 * time.Second)}); got != 2 {
		t.Errorf("since +15s: %d runs, want 2", got)
	}
}

func testPrune(t *testing.T, s store.Store) {
	ctx := context.Background()
	for i := range 10 {
		if err := s.Complete(ctx, completed(fmt.Sprintf("r%d", i), "a", i*60)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Begin(ctx, store.Pending{ID: "old-running", Tenant: "a", Node: "n", StartedAt: base.Add(-time.Hour)}); err != nil {
		t.Fatal(err)
	}
	now := base.Add(10 * time.Minute)
	// Runs finished at 0.5s, 60.5s, ...; MaxAge 5m at +10m keeps those
	// finishing at or after +5m: r5..r9.
	n, err := s.Prune(ctx, store.Retention{MaxAge: 5 * time.Minute}, now)
	if err != nil || n != 5 {
		t.Fatalf("Prune by age deleted %d, %v; want 5", n, err)
	}
	n, err = s.Prune(ctx, store.Retention{MaxCount: 2}, now)
	if err != nil || n != 3 {
		t.Fatalf("Prune by count deleted %d, %v; want 3", n, err)
	}
	page, _ := s.List(ctx, "a", store.Query{Limit: 100})
	if len(page.Runs) != 2 || page.Runs[0].ID != "r9" || page.Runs[1].ID != "r8" {
		t.Fatalf("after prune: %+v", page.Runs)
	}
	if fl, _ := s.InFlight(ctx, "n"); len(fl) != 1 {
		t.Fatalf("prune removed an in-flight run: %+v", fl)
	}
	if _, err := s.Prune(ctx, store.Retention{MaxAge: -1}, now); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("negative retention = %v", err)
	}
}

func testConcurrent(t *testing.T, s store.Store) {
	ctx := context.Background()
	const workers, each = 8, 40
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				id := fmt.Sprintf("w%d-%03d", w, i)
				if err := s.Begin(ctx, store.Pending{ID: id, Tenant: "a", Node: "n", StartedAt: base}); err != nil {
					errs <- err
					return
				}
				if _, err := s.Get(ctx, "a", id); err != nil {
					errs <- err
					return
				}
				if err := s.Complete(ctx, completed(id, "a", i)); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	total := 0
	cursor := ""
	for {
		page, err := s.List(ctx, "a", store.Query{Limit: store.MaxLimit, Cursor: cursor})
		if err != nil {
			t.Fatal(err)
		}
		total += len(page.Runs)
		if cursor = page.Next; cursor == "" {
			break
		}
	}
	if total != workers*each {
		t.Fatalf("stored %d runs, want %d", total, workers*each)
	}
}

func testClosed(t *testing.T, s store.Store) {
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	ctx := context.Background()
	if err := s.Begin(ctx, store.Pending{ID: "x", Tenant: "a"}); !errors.Is(err, store.ErrClosed) {
		t.Fatalf("Begin after Close = %v", err)
	}
	if _, err := s.Get(ctx, "a", "x"); !errors.Is(err, store.ErrClosed) {
		t.Fatalf("Get after Close = %v", err)
	}
	if err := s.Ping(ctx); !errors.Is(err, store.ErrClosed) {
		t.Fatalf("Ping after Close = %v", err)
	}
}
