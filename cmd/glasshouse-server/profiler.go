package main

import (
	"log/slog"

	"glasshouse.dev/glasshouse/audit"
	"glasshouse.dev/glasshouse/core/profiling"
)

// profiler is the shared host profiler and its drop counter.
type profiler struct {
	controller profiling.Controller
	dropped    func() uint64
}

// openProfiler loads the host eBPF collector once for the server's life;
// every run shares it. The caller must call the returned close function
// when it is not nil.
func openProfiler(log *slog.Logger) (profiler, func(), error) {
	// DetachIdle: between runs, the host's other processes do not pay for
	// the syscall programs.
	c, err := audit.Open(audit.Config{Logger: log.With("component", "audit"), DetachIdle: true})
	if err != nil {
		return profiler{}, nil, err
	}
	log.Info("host profiler loaded", "load_time", c.LoadTime(), "socket_hooks", c.SocketHooks())
	return profiler{controller: c, dropped: func() uint64 { return c.Stats().Dropped }}, func() {
		if err := c.Close(); err != nil {
			log.Warn("close profiler", "err", err)
		}
	}, nil
}
