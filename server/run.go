package server

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"strings"
	"sync"
	"time"

	"glasshouse.dev/glasshouse/core/execution"
	"glasshouse.dev/glasshouse/core/profiling"
	"glasshouse.dev/glasshouse/core/receipt"
	"glasshouse.dev/glasshouse/store"
)

// RunResponse is the answer to POST /run, and the body of each result
// line of a stream or batch.
type RunResponse struct {
	ID string `json:"id"`
	// Stdout and Stderr are the captured output. Bytes that are not UTF-8
	// are replaced by U+FFFD; the receipt holds the exact digests.
	Stdout          string `json:"stdout"`
	Stderr          string `json:"stderr"`
	StdoutTruncated bool   `json:"stdout_truncated"`
	StderrTruncated bool   `json:"stderr_truncated"`
	ExitCode        int    `json:"exit_code"`
	Signal          string `json:"signal"`
	// Failure is the receipt's outcome.failure; FailureReason its error
	// text for infrastructure failures.
	Failure       string `json:"failure"`
	FailureReason string `json:"failure_reason,omitempty"`
	TimedOut      bool   `json:"timed_out"`
	DurationMS    int64  `json:"duration_ms"`
	ReceiptURL    string `json:"receipt_url"`
	Digest        string `json:"digest"`
	Backend       string `json:"backend"`
	// Profiling is the receipt's profiling.status.
	Profiling string `json:"profiling"`
	// Verdict is the policy verdict, null when no policy was given.
	Verdict *string `json:"verdict"`
	// Signals are the training signals, null when the server derives none.
	Signals any `json:"signals"`
}

func receiptURL(id string) string { return "/receipts/" + id }

func (s *Server) handleRun(w http.ResponseWriter, r *http.Request, tenant string) *Error {
	if s.draining.Load() {
		return errorf(http.StatusServiceUnavailable, "server is shutting down")
	}
	body, e := readBody(w, r, s.cfg.Limits.MaxBodyBytes)
	if e != nil {
		s.m.rejected.WithLabelValues("invalid").Inc()
		return e
	}
	plan, bs, ev, e := s.prepare(body)
	if e != nil {
		return e
	}
	release, e := s.admit(r.Context(), true)
	if e != nil {
		return e
	}
	if wantsStream(r) {
		return s.stream(w, r, tenant, bs, plan, ev, release)
	}
	resp, e := s.execute(tenant, bs, plan, ev, release, func(id string) { setRunID(r, id) })
	if e != nil {
		return e
	}
	writeJSON(w, http.StatusOK, resp)
	return nil
}

// prepare decodes and validates a POST /run body and resolves its backend
// and policy.
func (s *Server) prepare(body []byte) (*Plan, *backendState, execution.Evaluator, *Error) {
	fail := func(e *Error) (*Plan, *backendState, execution.Evaluator, *Error) {
		if e.Status < 500 {
			s.m.rejected.WithLabelValues("invalid").Inc()
		}
		return nil, nil, nil, e
	}
	if e := checkText(body); e != nil {
		return fail(e)
	}
	if e := checkStrict(body, s.runShape); e != nil {
		return fail(e)
	}
	var req RunRequest
	if e := unmarshalStrict(body, &req); e != nil {
		return fail(e)
	}
	return s.plan(&req, "")
}

func (s *Server) plan(req *RunRequest, prefix string) (*Plan, *backendState, execution.Evaluator, *Error) {
	fail := func(e *Error) (*Plan, *backendState, execution.Evaluator, *Error) {
		if e.Status < 500 {
			s.m.rejected.WithLabelValues("invalid").Inc()
		} else {
			s.m.rejected.WithLabelValues("unavailable").Inc()
		}
		return nil, nil, nil, e
	}
	plan, e := req.Validate(&s.cfg.Limits, s.cfg.DefaultProfile, prefix)
	if e != nil {
		return fail(e)
	}
	bs, e := s.pick(plan.Backend, prefix)
	if e != nil {
		return fail(e)
	}
	ev, e := s.policies.get(plan.Policy, prefix+"policy")
	if e != nil {
		return fail(e)
	}
	return plan, bs, ev, nil
}

// admit takes a run slot, queueing; errors are 429 or 503.
func (s *Server) admit(ctx context.Context, queued bool) (func(), *Error) {
	release, err := s.adm.acquire(ctx, queued)
	switch {
	case err == nil:
		return release, nil
	case errors.Is(err, errQueueFull):
		s.m.rejected.WithLabelValues("queue_full").Inc()
		return nil, &Error{Status: http.StatusTooManyRequests, Message: "the run queue is full; retry later",
			Limit: s.adm.queueLimit(), RetryAfter: s.adm.retryAfter()}
	case errors.Is(err, errDraining):
		s.m.rejected.WithLabelValues("draining").Inc()
		return nil, errorf(http.StatusServiceUnavailable, "server is shutting down")
	default:
		s.m.rejected.WithLabelValues("cancelled").Inc()
		return nil, errorf(http.StatusServiceUnavailable, "request cancelled while queued: %v", err)
	}
}

func wantsStream(r *http.Request) bool {
	for _, v := range r.Header.Values("Accept") {
		for _, part := range strings.Split(v, ",") {
			mt, _, _ := strings.Cut(strings.TrimSpace(part), ";")
			if strings.EqualFold(strings.TrimSpace(mt), "application/x-ndjson") {
				return true
			}
		}
	}
	return false
}

// track registers a run for the graceful shutdown; it fails once shutdown
// began. The WaitGroup's Add happens under the same lock that Shutdown
// takes before waiting, so an Add never races a Wait.
func (s *Server) track() bool {
	s.trackMu.Lock()
	defer s.trackMu.Unlock()
	if s.draining.Load() {
		return false
	}
	s.runs.Add(1)
	s.active.Add(1)
	return true
}

func (s *Server) untrack() {
	s.active.Add(-1)
	s.runs.Done()
}

// storeTimeout bounds each store operation of a run; they must not hang a
// run forever, and they ignore the client going away.
const storeTimeout = 30 * time.Second

// execute runs plan for tenant on bs, recording it in the store before the
// workload starts and completing it after. It releases the slot once the
// run and its teardown are over, before the receipt is stored.
// started, when set, is called with the run id once the run is recorded.
func (s *Server) execute(tenant string, bs *backendState, plan *Plan, ev execution.Evaluator, release func(), started func(id string)) (*RunResponse, *Error) {
	defer release()
	if !s.track() {
		return nil, errorf(http.StatusServiceUnavailable, "server is shutting down")
	}
	defer s.untrack()

	id := execution.NewID()
	log := s.log.With("run_id", id, "tenant", tenant, "backend", bs.name())
	now := time.Now()
	draft := bs.engine.Draft(id, plan.Spec)
	draft.StartedAt = receipt.At(now)
	draftJSON, err := receipt.MarshalCompact(draft)
	if err != nil {
		return nil, errorf(http.StatusInternalServerError, "encode draft receipt: %v", err)
	}
	sctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	err = s.cfg.Store.Begin(sctx, store.Pending{ID: id, Tenant: tenant, Node: s.cfg.Node, Backend: bs.name(), StartedAt: now, Draft: draftJSON})
	cancel()
	if err != nil {
		s.m.storeErrors.WithLabelValues("begin").Inc()
		log.Error("record run", "err", err)
		return nil, errorf(http.StatusInternalServerError, "store: record run: %v", err)
	}
	if started != nil {
		started(id)
	}

	opts := []execution.RunOption{execution.WithID(id)}
	if ev != nil {
		opts = append(opts, execution.WithPolicy(ev))
	}
	runCtx, cancelRun := s.runContext()
	run, err := bs.engine.Run(runCtx, plan.Spec, opts...)
	cancelRun()
	// The workload and its sandbox are gone: the slot is free for the next
	// run while this one's receipt is stored and answered.
	release()
	if err != nil {
		sctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
		if aerr := s.cfg.Store.Abandon(sctx, id); aerr != nil {
			s.m.storeErrors.WithLabelValues("abandon").Inc()
			log.Warn("drop refused run from the store", "err", aerr)
		}
		cancel()
		return nil, s.runError(err)
	}
	rc := run.Receipt
	raw, err := receipt.MarshalCompact(rc)
	if err != nil {
		return nil, errorf(http.StatusInternalServerError, "encode receipt: %v", err)
	}
	verdict := ""
	if rc.Policy != nil {
		verdict = rc.Policy.Verdict
	}
	sctx, cancel = context.WithTimeout(context.Background(), storeTimeout)
	err = s.cfg.Store.Complete(sctx, store.Completed{
		ID: id, Tenant: tenant, Backend: rc.Backend.Name,
		StartedAt: rc.StartedAt.Time, FinishedAt: rc.FinishedAt.Time,
		Failure: rc.Outcome.Failure, Verdict: verdict, Digest: rc.Digest, Receipt: raw,
	})
	cancel()
	if err != nil {
		s.m.storeErrors.WithLabelValues("complete").Inc()
		log.Error("store receipt", "err", err)
		return nil, errorf(http.StatusInternalServerError, "store: record receipt of run %s: %v", id, err)
	}
	s.m.observeRun(rc)
	return s.response(run, plan, log), nil
}

func (s *Server) runError(err error) *Error {
	switch {
	case errors.Is(err, execution.ErrInvalidSpec):
		return specError(err)
	case errors.Is(err, profiling.ErrUnavailable):
		s.m.rejected.WithLabelValues("profiling_unavailable").Inc()
		return fieldErr(http.StatusServiceUnavailable, "profile", nil, "required profiling is not possible on this server: %v", err)
	case errors.Is(err, execution.ErrCommandNotFound):
		return errorf(http.StatusServiceUnavailable, "the backend cannot run this language: %v", err)
	}
	return errorf(http.StatusInternalServerError, "run: %v", err)
}

func (s *Server) response(run *execution.Run, plan *Plan, log interface {
	Warn(string, ...any)
}) *RunResponse {
	rc, res := run.Receipt, run.Result
	resp := &RunResponse{
		ID:              rc.ID,
		Stdout:          string(res.Stdout),
		Stderr:          string(res.Stderr),
		StdoutTruncated: res.StdoutTruncated,
		StderrTruncated: res.StderrTruncated,
		ExitCode:        rc.Outcome.ExitCode,
		Signal:          rc.Outcome.Signal,
		Failure:         rc.Outcome.Failure,
		FailureReason:   rc.Outcome.Error,
		TimedOut:        rc.Outcome.TimedOut,
		DurationMS:      rc.Outcome.DurationMS,
		ReceiptURL:      receiptURL(rc.ID),
		Digest:          rc.Digest,
		Backend:         rc.Backend.Name,
		Profiling:       rc.Profiling.Status,
	}
	if rc.Policy != nil {
		v := rc.Policy.Verdict
		resp.Verdict = &v
	}
	if s.cfg.Signals != nil {
		sig, err := s.cfg.Signals(rc, res.Stdout, plan.Expect)
		if err != nil {
			log.Warn("derive training signals", "err", err)
		} else {
			resp.Signals = sig
		}
	}
	return resp
}

// policyCache keeps compiled policies by reference, so a rollout that sends
// the same policy thousands of times compiles it once.
type policyCache struct {
	loader PolicyLoader
	mu     sync.Mutex
	m      map[string]execution.Evaluator
}

const policyCacheSize = 256

func newPolicyCache(l PolicyLoader) *policyCache {
	return &policyCache{loader: l, m: map[string]execution.Evaluator{}}
}

// isInline tells inline YAML from a pack reference: pack names never hold
// a colon or a newline, and any YAML mapping does.
func isInline(ref string) bool { return strings.ContainsAny(ref, ":\n") }

func (c *policyCache) get(ref, field string) (execution.Evaluator, *Error) {
	if ref == "" {
		return nil, nil
	}
	if c.loader == nil {
		return nil, fieldErr(http.StatusBadRequest, field, nil, "this server has no policy engine")
	}
	key := "pack:" + ref
	if isInline(ref) {
		sum := sha256.Sum256([]byte(ref))
		key = "inline:" + hex.EncodeToString(sum[:])
	}
	c.mu.Lock()
	ev, ok := c.m[key]
	c.mu.Unlock()
	if ok {
		return ev, nil
	}
	var err error
	if isInline(ref) {
		ev, err = c.loader.Parse("inline", []byte(ref))
	} else {
		ev, err = c.loader.Load(ref)
	}
	if err != nil {
		return nil, fieldErr(http.StatusBadRequest, field, nil, "%v", err)
	}
	c.mu.Lock()
	if len(c.m) >= policyCacheSize {
		clear(c.m)
	}
	c.m[key] = ev
	c.mu.Unlock()
	return ev, nil
}
