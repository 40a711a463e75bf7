//go:build linux

package netguard

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"glasshouse.dev/glasshouse/core/execution"
)

// Guard is the network policy attached to one cgroup.
type Guard struct {
	mu       sync.Mutex
	dir      string
	cgroup   *os.File
	attached []attachment
	closed   bool
}

type attachment struct {
	prog   *ebpf.Program
	attach ebpf.AttachType
}

type program struct {
	name   string
	attach ebpf.AttachType
}

var modes = map[execution.Network][]program{
	execution.NetworkNone: {
		{netguardProgNgDenyConnect4, ebpf.AttachCGroupInet4Connect},
		{netguardProgNgDenyConnect6, ebpf.AttachCGroupInet6Connect},
		{netguardProgNgDenySendmsg4, ebpf.AttachCGroupUDP4Sendmsg},
		{netguardProgNgDenySendmsg6, ebpf.AttachCGroupUDP6Sendmsg},
		{netguardProgNgDenyBind4, ebpf.AttachCGroupInet4Bind},
		{netguardProgNgDenyBind6, ebpf.AttachCGroupInet6Bind},
		{netguardProgNgDenyEgress, ebpf.AttachCGroupInetEgress},
		{netguardProgNgDenyIngress, ebpf.AttachCGroupInetIngress},
	},
	execution.NetworkLoopback: {
		{netguardProgNgLoConnect4, ebpf.AttachCGroupInet4Connect},
		{netguardProgNgLoConnect6, ebpf.AttachCGroupInet6Connect},
		{netguardProgNgLoSendmsg4, ebpf.AttachCGroupUDP4Sendmsg},
		{netguardProgNgLoSendmsg6, ebpf.AttachCGroupUDP6Sendmsg},
		{netguardProgNgLoBind4, ebpf.AttachCGroupInet4Bind},
		{netguardProgNgLoBind6, ebpf.AttachCGroupInet6Bind},
		{netguardProgNgLoEgress, ebpf.AttachCGroupInetEgress},
		{netguardProgNgLoIngress, ebpf.AttachCGroupInetIngress},
	},
}

var specOnce = sync.OnceValues(loadNetguard)

// Attach enforces mode on the processes of the cgroup2 directory
// cgroupDir and of its descendants. Mode full attaches nothing and returns
// a Guard whose Close does nothing. Errors wrap ErrInvalidMode or
// ErrNotSupported; nothing stays attached when Attach fails.
func Attach(cgroupDir string, mode execution.Network) (*Guard, error) {
	if err := checkMode(mode); err != nil {
		return nil, err
	}
	if !filepath.IsAbs(cgroupDir) {
		return nil, fmt.Errorf("%w: cgroup directory %q is not absolute", ErrInvalidMode, cgroupDir)
	}
	g := &Guard{dir: cgroupDir}
	if mode == execution.NetworkFull {
		return g, nil
	}
	spec, err := specOnce()
	if err != nil {
		return nil, fmt.Errorf("parse netguard object: %w", err)
	}
	g.cgroup, err = os.Open(cgroupDir)
	if err != nil {
		return nil, fmt.Errorf("open cgroup: %w", err)
	}
	for _, p := range modes[mode] {
		if err := g.attach(spec.Programs[p.name], p.attach); err != nil {
			return nil, errors.Join(fmt.Errorf("%w: attach %s to %s: %v", ErrNotSupported, p.name, cgroupDir, err), g.Close())
		}
	}
	return g, nil
}

func (g *Guard) attach(ps *ebpf.ProgramSpec, at ebpf.AttachType) error {
	prog, err := ebpf.NewProgram(ps.Copy())
	if err != nil {
		return err
	}
	err = link.RawAttachProgram(link.RawAttachProgramOptions{
		Target:  int(g.cgroup.Fd()),
		Program: prog,
		Attach:  at,
		Flags:   unix.BPF_F_ALLOW_MULTI,
	})
	if err != nil {
		prog.Close()
		return err
	}
	g.attached = append(g.attached, attachment{prog, at})
	return nil
}

// Close detaches the programs. It is idempotent; a cgroup that was already
// removed took its programs with it, which is not an error.
func (g *Guard) Close() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return nil
	}
	g.closed = true
	var errs []error
	for i := len(g.attached) - 1; i >= 0; i-- {
		a := g.attached[i]
		err := link.RawDetachProgram(link.RawDetachProgramOptions{Target: int(g.cgroup.Fd()), Program: a.prog, Attach: a.attach})
		if err != nil && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("detach %s from %s: %w", a.attach, g.dir, err))
		}
		errs = append(errs, a.prog.Close())
	}
	g.attached = nil
	if g.cgroup != nil {
		errs = append(errs, g.cgroup.Close())
	}
	return errors.Join(errs...)
}
