//go:build linux

package qemu

import (
	"context"
	"errors"
	"fmt"

	"glasshouse.dev/glasshouse/core/profiling"
	"glasshouse.dev/glasshouse/core/receipt"
)

// Profiler implements execution.SelfProfiled: the collector inside the
// guest, reached through the transport.
func (i *instance) Profiler() profiling.Controller { return guestController{i} }

// guestController observes one instance from inside its guest.
type guestController struct{ i *instance }

func (g guestController) Collector() string { return receipt.CollectorEBPFGuest }

// Available reports whether the guest announced a collector in its Hello.
func (g guestController) Available() error {
	h := g.i.m.hello
	if h.Collector != "" {
		return nil
	}
	why := h.CollectorError
	if why == "" {
		why = "it reported none"
	}
	return fmt.Errorf("guest has no collector: %s", why)
}

// Start asks the guest to observe the run; it must come before the
// instance's Start.
func (g guestController) Start(_ context.Context, _ profiling.Target, sink profiling.Sink) (profiling.Session, error) {
	if err := g.Available(); err != nil {
		return nil, err
	}
	if g.i.started.Load() {
		return nil, errors.New("guest profiling must start before the run")
	}
	if sink == nil {
		return nil, errors.New("guest profiling: nil sink")
	}
	g.i.sink, g.i.profile = sink, true
	return guestSession{g.i}, nil
}

type guestSession struct{ i *instance }

// Stop waits for the run to end (the guest sends its last events before
// Done) and reports what the guest collector said.
func (s guestSession) Stop(ctx context.Context) (profiling.Report, error) {
	i := s.i
	if !i.started.Load() {
		return profiling.Report{}, nil
	}
	select {
	case <-i.done:
	case <-ctx.Done():
		return profiling.Report{}, ctx.Err()
	}
	rep := profiling.Report{Events: i.events, Dropped: i.dropped}
	d := i.doneMsg
	if d == nil {
		return rep, errors.New("the guest did not report the end of its observation")
	}
	rep.Dropped += d.Dropped
	rep.Blind = append(rep.Blind, d.Blind...)
	if d.CollectorError != "" {
		return rep, fmt.Errorf("guest collector: %s", d.CollectorError)
	}
	return rep, nil
}
