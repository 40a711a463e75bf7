//go:build linux

package qemu

import (
	"testing"
	"time"

	"glasshouse.dev/glasshouse/core/execution/executiontest"
)

// TestConformance runs the shared backend suite under TCG, with a warm pool
// of two guests so that the suite's many short runs mostly skip the boot.
func TestConformance(t *testing.T) {
	b, tr := newTestBackend(t, map[string]string{"qemu.pool": "2", "qemu.pool_boots": "2", "qemu.pool_collector": "false"})
	executiontest.Run(t, executiontest.Harness{
		Backend:     b,
		Leftovers:   tr.leftovers,
		Timeout:     90 * time.Second,
		Concurrency: 4,
	})
}
