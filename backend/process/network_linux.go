//go:build linux

package process

import (
	"fmt"

	"glasshouse.dev/glasshouse/core/execution"
)

// prepareNetwork enforces the spec's network mode on the run's cgroup.
func (i *instance) prepareNetwork() error {
	if i.spec.Limits.Network == execution.NetworkFull {
		return nil
	}
	i.notes = append(i.notes, fmt.Sprintf("network %s is not enforced: this build has no kernel network guard", i.spec.Limits.Network))
	return nil
}

// prepareNetworkUnprivileged notes which network modes cannot be enforced
// without root. Mode none is enforced with a private network namespace at
// Start.
func (i *instance) prepareNetworkUnprivileged() error {
	if i.spec.Limits.Network == execution.NetworkLoopback {
		i.notes = append(i.notes, "network loopback is not enforced without root")
	}
	return nil
}
