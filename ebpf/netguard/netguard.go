package netguard

import (
	"errors"
	"fmt"

	"glasshouse.dev/glasshouse/core/execution"
)

// Errors Attach may return (wrapped).
var (
	// ErrInvalidMode means a network mode other than none, loopback or
	// full, or a cgroup directory that is not absolute.
	ErrInvalidMode = errors.New("invalid network guard request")
	// ErrNotSupported means the kernel cannot attach cgroup programs here
	// (not Linux, no cgroup BPF, or no privilege). The message says why.
	ErrNotSupported = errors.New("network guard not supported")
)

func checkMode(mode execution.Network) error {
	switch mode {
	case execution.NetworkNone, execution.NetworkLoopback, execution.NetworkFull:
		return nil
	}
	return fmt.Errorf("%w: network mode %q: want none, loopback or full", ErrInvalidMode, mode)
}
