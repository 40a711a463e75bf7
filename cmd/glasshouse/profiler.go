package main

import (
	"log/slog"

	"glasshouse.dev/glasshouse/audit"
	"glasshouse.dev/glasshouse/core/profiling"
)

// openProfiler loads the host eBPF collector (package audit). The caller
// must call the returned close function.
func openProfiler(log *slog.Logger) (profiling.Controller, func(), error) {
	c, err := audit.Open(audit.Config{Logger: log})
	if err != nil {
		return nil, nil, err
	}
	return c, func() {
		if err := c.Close(); err != nil {
			log.Warn("close profiler", "err", err)
		}
	}, nil
}
