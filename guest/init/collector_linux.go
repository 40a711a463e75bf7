//go:build linux

package main

import (
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"glasshouse.dev/glasshouse/audit"
	"glasshouse.dev/glasshouse/core/profiling"
)

// collectorRing is the guest collector's ring buffer: one run at a time
// needs far less than the host's default.
const collectorRing = 4 << 20

// collectorName is what the guest announces in Hello.
const collectorName = "ebpf-guest"

// lazyCollector loads the same eBPF collector the host uses (audit/) on
// first use: loading takes seconds under emulation, which a run that is not
// profiled should not pay. Pooled guests load it before they report ready.
type lazyCollector struct {
	log   *slog.Logger
	clock *guestClock
	once  sync.Once
	c     profiling.Controller
	err   error
	// shiftAtLoad is the clock's total step when the collector loaded.
	shiftAtLoad time.Duration
}

// precheck says, without loading anything, whether the guest kernel can
// run the collector: it needs BTF for its CO-RE relocations.
func (l *lazyCollector) precheck() error {
	if _, err := os.Stat("/sys/kernel/btf/vmlinux"); err != nil {
		return fmt.Errorf("guest kernel has no BTF: %w", err)
	}
	return nil
}

// get loads the collector once and returns it.
func (l *lazyCollector) get() (profiling.Controller, error) {
	l.once.Do(func() {
		if l.err = l.precheck(); l.err != nil {
			return
		}
		start := time.Now()
		if l.clock != nil {
			l.shiftAtLoad = l.clock.shift()
		}
		c, err := audit.Open(audit.Config{RingBytes: collectorRing, Logger: l.log})
		if err != nil {
			l.err = fmt.Errorf("load the eBPF collector: %w", err)
			return
		}
		l.c = c
		l.log.Info("collector loaded", "ms", time.Since(start).Milliseconds())
	})
	return l.c, l.err
}
