//go:build !linux

package netguard

import (
	"fmt"
	"runtime"

	"glasshouse.dev/glasshouse/core/execution"
)

// Guard is the network policy attached to one cgroup; only Linux has one.
type Guard struct{}

// Attach returns ErrNotSupported, except for mode full, which needs
// nothing.
func Attach(cgroupDir string, mode execution.Network) (*Guard, error) {
	if err := checkMode(mode); err != nil {
		return nil, err
	}
	if mode == execution.NetworkFull {
		return &Guard{}, nil
	}
	return nil, fmt.Errorf("%w: cgroup BPF needs Linux, this is %s", ErrNotSupported, runtime.GOOS)
}

// Close does nothing.
func (g *Guard) Close() error { return nil }

// Enforce is not supported off Linux, except for mode full, which needs
// nothing.
func Enforce(_ string, mode execution.Network) error {
	if err := checkMode(mode); err != nil || mode == execution.NetworkFull {
		return err
	}
	return fmt.Errorf("%w: cgroup BPF needs Linux, this is %s", ErrNotSupported, runtime.GOOS)
}
