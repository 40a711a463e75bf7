package server

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime"
	"time"

	"glasshouse.dev/glasshouse/core/execution"
	"glasshouse.dev/glasshouse/core/receipt"
	"glasshouse.dev/glasshouse/core/version"
	"glasshouse.dev/glasshouse/store"
)

// LostReason is the outcome error of a run recovered after a restart.
const LostReason = "the server stopped while the run was in flight; recorded as lost when it restarted"

// Recover lets backends tear down what a dead predecessor left behind,
// then records each run this node left in flight as an infrastructure
// failure with a sealed receipt built from its draft. It returns how many
// runs it recorded. Serve calls it before accepting requests.
func (s *Server) Recover(ctx context.Context) (int, error) {
	for _, bs := range s.backends {
		if rp, ok := bs.b.(execution.Reaper); ok && bs.unusable == nil {
			n, err := rp.Reap(ctx)
			if err != nil {
				s.log.Warn("reap leftovers", "backend", bs.name(), "err", err)
			} else if n > 0 {
				s.log.Warn("reaped leftovers of a previous process", "backend", bs.name(), "runs", n)
			}
		}
	}
	pending, err := s.cfg.Store.InFlight(ctx, s.cfg.Node)
	if err != nil {
		s.m.storeErrors.WithLabelValues("in_flight").Inc()
		return 0, err
	}
	for i, p := range pending {
		r := LostReceipt(p, time.Now(), LostReason)
		raw, err := receipt.MarshalCompact(r)
		if err != nil {
			return i, fmt.Errorf("encode receipt of lost run %s: %w", p.ID, err)
		}
		err = s.cfg.Store.Complete(ctx, store.Completed{
			ID: p.ID, Tenant: p.Tenant, Backend: r.Backend.Name,
			StartedAt: r.StartedAt.Time, FinishedAt: r.FinishedAt.Time,
			Failure: r.Outcome.Failure, Digest: r.Digest, Receipt: raw,
		})
		if err != nil {
			s.m.storeErrors.WithLabelValues("complete").Inc()
			return i, fmt.Errorf("record lost run %s: %w", p.ID, err)
		}
		s.m.recovered.Inc()
		s.m.observeRun(r)
		s.log.Warn("recorded lost run", "run_id", p.ID, "tenant", p.Tenant, "backend", r.Backend.Name)
	}
	return len(pending), nil
}

// LostReceipt builds the sealed receipt of a run that was in flight when
// its server died: the inputs from its draft, an infrastructure failure
// with reason, finished at now. A draft that cannot be read still yields a
// valid receipt, with what the store knows.
func LostReceipt(p store.Pending, now time.Time, reason string) *receipt.Receipt {
	var r receipt.Receipt
	if err := json.Unmarshal(p.Draft, &r); err != nil || r.ID != p.ID {
		r = receipt.Receipt{
			ID:      p.ID,
			Backend: receipt.Backend{Name: p.Backend, Isolation: receipt.IsolationNone, Version: version.Version},
			Host:    receipt.Host{Arch: runtime.GOARCH, GlasshouseVersion: version.Version},
			Limits:  receipt.Limits{Network: receipt.NetworkNone},
		}
		reason += " (its draft receipt was unreadable, so its inputs are unknown)"
	}
	if r.Backend.Name == "" {
		r.Backend.Name = "unknown"
	}
	if r.StartedAt.IsZero() {
		r.StartedAt = receipt.At(p.StartedAt)
	}
	if now.Before(r.StartedAt.Time) {
		now = r.StartedAt.Time
	}
	r.FinishedAt = receipt.At(now)
	r.Outcome = receipt.Outcome{
		ExitCode:   -1,
		Failure:    receipt.FailureInfrastructure,
		Error:      reason,
		DurationMS: now.Sub(r.StartedAt.Time).Milliseconds(),
	}
	r.Output = receipt.Output{StdoutSHA256: receipt.SHA256Hex(nil), StderrSHA256: receipt.SHA256Hex(nil)}
	r.Resources = receipt.Resources{}
	mode := r.Profiling.Mode
	switch mode {
	case receipt.ModeOff, receipt.ModeBestEffort, receipt.ModeRequired:
	default:
		mode = receipt.ModeOff
	}
	r.Profiling = receipt.Profiling{Mode: mode, Status: receipt.StatusOff, Collector: receipt.CollectorNone}
	if mode != receipt.ModeOff {
		r.Profiling.Status, r.Profiling.Reason = receipt.StatusUnavailable, "the run was lost before its observation was collected"
	}
	r.Processes, r.Files, r.Network, r.Policy = nil, nil, nil, nil
	if err := receipt.Seal(&r); err != nil {
		// Seal fails only if encoding/json cannot encode receipt types.
		panic(fmt.Sprintf("seal lost receipt: %v", err))
	}
	return &r
}
