//go:build linux

package process

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"glasshouse.dev/glasshouse/core/execution"
	"glasshouse.dev/glasshouse/ebpf/netguard"
)

// modeParent returns the cgroup, relative to the hierarchy roots, under
// which runs with network mode m are created: "<parent>/net-<mode>". The
// mode's kernel policy (netguard) is attached to it once, by the first run
// of any Glasshouse process to need it, and stays: every cgroup created
// below inherits it, so a run pays no BPF syscalls for its network limit.
func (b *Backend) modeParent(m execution.Network) (string, error) {
	rel := filepath.Join(b.cfg.CgroupParent, "net-"+string(m))
	v, _ := b.modes.LoadOrStore(m, sync.OnceValue(func() error {
		dir := filepath.Join(b.layout.Unified, rel)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("create %s: %w", dir, err)
		}
		return netguard.Enforce(dir, m)
	}))
	if err := v.(func() error)(); err != nil {
		return "", err
	}
	return rel, nil
}

// prepareNetwork records how the spec's network mode is enforced. With the
// kernel policy in place there is nothing to do; without it, mode none
// falls back to an empty network namespace (set up at Start), and mode
// loopback cannot be enforced, so the run is refused.
func (i *instance) prepareNetwork() error {
	switch {
	case i.netErr == nil:
		return nil
	case i.spec.Limits.Network == execution.NetworkNone:
		i.notes = append(i.notes, fmt.Sprintf("network none enforced by an empty network namespace: the kernel network policy is unavailable (%v), so denied connections fail with ENETUNREACH rather than EPERM", i.netErr))
		return nil
	}
	return fmt.Errorf("cannot enforce network %s: %w", i.spec.Limits.Network, i.netErr)
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
