//go:build !linux

package qemu

import (
	"context"
	"fmt"

	"glasshouse.dev/glasshouse/core/execution"
)

// Backend is the QEMU backend; it only runs on linux.
type Backend struct{}

func init() {
	execution.Register(Name, func(execution.Options) (execution.Backend, error) { return &Backend{}, nil })
}

// Name implements execution.Backend.
func (*Backend) Name() string { return Name }

// Capabilities implements execution.Backend.
func (*Backend) Capabilities() execution.Capabilities {
	return execution.Capabilities{Isolation: execution.IsolationMicroVM, Profiling: execution.ProfilingGuest}
}

// Available implements execution.Backend.
func (*Backend) Available() error {
	return fmt.Errorf("%w: the qemu backend needs linux", execution.ErrBackendUnavailable)
}

// Prepare implements execution.Backend.
func (b *Backend) Prepare(context.Context, execution.Spec) (execution.Instance, error) {
	return nil, b.Available()
}
