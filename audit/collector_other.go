//go:build !linux

package audit

import (
	"context"
	"fmt"
	"runtime"
	"time"

	"glasshouse.dev/glasshouse/core/profiling"
)

// Collector is the host collector; it only exists on Linux.
type Collector struct{}

var _ profiling.Controller = (*Collector)(nil)

// Open returns ErrNotSupported: the collector needs Linux.
func Open(cfg Config) (*Collector, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return nil, fmt.Errorf("%w: the eBPF collector needs Linux, this is %s", ErrNotSupported, runtime.GOOS)
}

// Collector implements profiling.Controller.
func (c *Collector) Collector() string { return "ebpf-host" }

// Available implements profiling.Controller.
func (c *Collector) Available() error { return ErrNotSupported }

// Start implements profiling.Controller.
func (c *Collector) Start(context.Context, profiling.Target, profiling.Sink) (profiling.Session, error) {
	return nil, ErrNotSupported
}

// Close does nothing.
func (c *Collector) Close() error { return nil }

// Stats returns zero counters.
func (c *Collector) Stats() Stats { return Stats{} }

// Capabilities reports that nothing is available.
func (c *Collector) Capabilities() profiling.Capabilities { return Probe() }

// LoadTime is zero.
func (c *Collector) LoadTime() time.Duration { return 0 }

// SocketHooks is empty.
func (c *Collector) SocketHooks() string { return "" }

// Probe reports that the host cannot run the collector.
func Probe() profiling.Capabilities {
	return profiling.Capabilities{Missing: []string{"the eBPF collector needs Linux, this is " + runtime.GOOS}}
}
