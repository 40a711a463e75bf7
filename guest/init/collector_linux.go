//go:build linux

package main

import (
	"errors"
	"log/slog"

	"glasshouse.dev/glasshouse/core/profiling"
)

// openCollector loads the guest's profiling collector.
func openCollector(*slog.Logger) (profiling.Controller, error) {
	return nil, errors.New("this guest init was built without an eBPF collector")
}
