//go:build !linux

package agent

import (
	"context"
	"sync"
	"time"

	"glasshouse.dev/glasshouse/core/profiling"
)

// workload is one observed cgroup (Linux only).
type workload struct {
	id, path string
	cgroupID uint64
	kube     KubeRef
	sink     *windowSink
	sess     profiling.Session

	mu    sync.Mutex
	since time.Time
	seq   int
}

func kernelRelease() string { return "" }

// Run returns ErrNotSupported: the agent needs Linux cgroup2 and eBPF.
func (a *Agent) Run(context.Context) error { return ErrNotSupported }
