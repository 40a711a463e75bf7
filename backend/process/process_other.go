//go:build !linux

package process

import (
	"context"
	"fmt"
	"os"
	"runtime"

	"glasshouse.dev/glasshouse/core/execution"
)

// Backend is the process backend; it only runs on Linux.
type Backend struct{ cfg Config }

func defaultStateDir() string { return os.TempDir() }

// New returns a backend that reports itself unavailable.
func New(cfg Config) (*Backend, error) { return &Backend{cfg: cfg}, nil }

// Available implements execution.Backend.
func (b *Backend) Available() error {
	return fmt.Errorf("%w: the process backend needs Linux, not %s", execution.ErrBackendUnavailable, runtime.GOOS)
}

// Prepare implements execution.Backend.
func (b *Backend) Prepare(context.Context, execution.Spec) (execution.Instance, error) {
	return nil, b.Available()
}
