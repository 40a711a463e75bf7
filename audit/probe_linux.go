//go:build linux

package audit

import (
	"errors"
	"fmt"
	"os"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/features"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"glasshouse.dev/glasshouse/core/profiling"
)

// TracefsDir is where Probe expects (and, if missing, mounts) tracefs.
const TracefsDir = "/sys/kernel/tracing"

// Capabilities returns what the host offers, probed once.
func (c *Collector) Capabilities() profiling.Capabilities {
	c.capsOnce.Do(func() { c.caps = Probe() })
	return c.caps
}

// Probe checks what the kernel offers a collector: BTF, tracefs (mounted at
// TracefsDir when its events are missing), BPF program types and the
// helpers the collector needs, and whether tp_btf and fentry programs
// attach. Gaps that stop the collector are listed in Missing; the collector
// itself needs neither tracefs, tp_btf nor fentry.
func Probe() profiling.Capabilities {
	var caps profiling.Capabilities
	missing := func(format string, args ...any) { caps.Missing = append(caps.Missing, fmt.Sprintf(format, args...)) }
	if os.Geteuid() != 0 {
		missing("not root: loading BPF programs needs CAP_BPF, CAP_PERFMON and CAP_SYS_ADMIN")
	}
	if _, err := btf.LoadKernelSpec(); err != nil {
		missing("kernel BTF (CONFIG_DEBUG_INFO_BTF, /sys/kernel/btf/vmlinux): %v", err)
	} else {
		caps.BTF = true
	}
	caps.Tracefs = ensureTracefs()

	types := []struct {
		name     string
		typ      ebpf.ProgramType
		required bool
	}{
		{"raw_tracepoint", ebpf.RawTracepoint, true},
		{"tracepoint", ebpf.TracePoint, false},
		{"tracing", ebpf.Tracing, false},
		{"cgroup_sock_addr", ebpf.CGroupSockAddr, false},
		{"cgroup_skb", ebpf.CGroupSKB, false},
	}
	for _, t := range types {
		err := features.HaveProgramType(t.typ)
		switch {
		case err == nil:
			caps.ProgramTypes = append(caps.ProgramTypes, t.name)
		case t.required:
			missing("BPF program type %s: %v", t.name, err)
		}
	}
	if err := features.HaveMapType(ebpf.RingBuf); err != nil {
		missing("BPF ring buffer (Linux 5.8): %v", err)
	}
	helpers := []struct {
		name string
		fn   asm.BuiltinFunc
	}{
		{"bpf_loop (Linux 5.17)", asm.FnLoop},
		{"bpf_get_current_ancestor_cgroup_id", asm.FnGetCurrentAncestorCgroupId},
		{"bpf_ringbuf_output", asm.FnRingbufOutput},
		{"bpf_probe_read_user_str", asm.FnProbeReadUserStr},
	}
	for _, h := range helpers {
		if err := features.HaveProgramHelper(ebpf.RawTracepoint, h.fn); err != nil {
			missing("helper %s in raw tracepoints: %v", h.name, err)
		}
	}
	if tryTracing(ebpf.AttachTraceRawTp, "sched_process_fork") == nil {
		caps.ProgramTypes = append(caps.ProgramTypes, "tp_btf")
	}
	if tryTracing(ebpf.AttachTraceFEntry, "vfs_read") == nil {
		caps.ProgramTypes = append(caps.ProgramTypes, "fentry")
	}
	return caps
}

// ensureTracefs reports whether tracefs events are reachable, mounting
// tracefs at TracefsDir when they are not.
func ensureTracefs() bool {
	events := TracefsDir + "/events"
	if _, err := os.Stat(events); err == nil {
		return true
	}
	if err := unix.Mount("nodev", TracefsDir, "tracefs", 0, ""); err != nil && !errors.Is(err, unix.EBUSY) {
		return false
	}
	_, err := os.Stat(events)
	return err == nil
}

// tryTracing loads and attaches a program that does nothing, to find out
// whether BTF-typed tracing programs work on this kernel.
func tryTracing(at ebpf.AttachType, fn string) error {
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type:         ebpf.Tracing,
		AttachType:   at,
		AttachTo:     fn,
		License:      "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()},
	})
	if err != nil {
		return err
	}
	defer prog.Close()
	l, err := link.AttachTracing(link.TracingOptions{Program: prog})
	if err != nil {
		return err
	}
	return l.Close()
}
