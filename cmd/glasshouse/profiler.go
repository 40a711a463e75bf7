package main

import (
	"errors"
	"log/slog"

	"glasshouse.dev/glasshouse/core/profiling"
)

// openProfiler loads the host profiler. The caller must call the returned
// close function.
func openProfiler(*slog.Logger) (profiling.Controller, func(), error) {
	return nil, nil, errors.New("this build has no host profiler")
}
