package server

import (
	"encoding/json"
	"net/http"
	"sync"

	"glasshouse.dev/glasshouse/core/execution"
)

type batchItem struct {
	plan *Plan
	bs   *backendState
	ev   execution.Evaluator
}

// handleBatch runs a batch of runs with bounded parallelism and streams
// each result as an NDJSON line with its index as soon as it finishes, then
// a "done" line. The whole batch is validated before anything runs: one bad
// entry fails the request with 400 naming it ("runs[3].code"). The batch
// holds one place in the queue while its entries wait for slots.
func (s *Server) handleBatch(w http.ResponseWriter, r *http.Request, tenant string) *Error {
	if s.draining.Load() {
		return errorf(http.StatusServiceUnavailable, "server is shutting down")
	}
	body, e := readBody(w, r, s.cfg.Limits.MaxBatchBodyBytes)
	if e != nil {
		s.m.rejected.WithLabelValues("invalid").Inc()
		return e
	}
	req, e := DecodeBatch(body, &s.cfg.Limits)
	if e != nil {
		s.m.rejected.WithLabelValues("invalid").Inc()
		return e
	}
	par := req.Parallelism
	if par == 0 {
		par = s.cfg.MaxConcurrency
	}
	if par < 1 || par > s.cfg.MaxConcurrency {
		s.m.rejected.WithLabelValues("invalid").Inc()
		return fieldErr(http.StatusBadRequest, "parallelism", s.cfg.MaxConcurrency, "%d is outside [1, %d]", req.Parallelism, s.cfg.MaxConcurrency)
	}
	items := make([]batchItem, len(req.Runs))
	for i := range req.Runs {
		plan, bs, ev, e := s.plan(&req.Runs[i], "runs["+itoa(i)+"].")
		if e != nil {
			return e
		}
		items[i] = batchItem{plan: plan, bs: bs, ev: ev}
	}
	req = nil // the plans hold what is needed; let the decoded body go

	leave, err := s.adm.enter()
	if err != nil {
		_, e := s.admit(r.Context(), true) // for the same status and metrics
		if e == nil {
			e = errorf(http.StatusServiceUnavailable, "server is shutting down")
		}
		return e
	}
	defer leave()

	type done struct {
		index int
		resp  *RunResponse
		err   *Error
	}
	results := make(chan done, len(items))
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(par, len(items)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				// Entries wait for slots without counting against the
				// queue (the batch already holds its place); a client
				// that goes away stops the entries not yet started.
				release, e := s.admit(r.Context(), false)
				if e != nil {
					results <- done{index: i, err: e}
					continue
				}
				it := items[i]
				resp, e := s.execute(tenant, it.bs, it.plan, it.ev, release, nil)
				results <- done{index: i, resp: resp, err: e}
			}
		}()
	}
	go func() {
		for i := range items {
			next <- i
		}
		close(next)
		wg.Wait()
		close(results)
	}()

	out := newNDJSONWriter(w)
	failed := 0
	for d := range results {
		if d.err != nil {
			failed++
		}
		out.send(lineOf(&d.index, d.resp, d.err))
	}
	b, _ := json.Marshal(map[string]any{"type": "done", "runs": len(items), "errors": failed})
	out.send(append(b, '\n'))
	return nil
}

func itoa(i int) string {
	b, _ := json.Marshal(i)
	return string(b)
}
