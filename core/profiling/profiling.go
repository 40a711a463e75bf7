// Package profiling defines how a run is observed: the profiling mode a spec
// asks for, the target a backend exposes, and the Controller/Session contract
// that collectors implement. It holds no collector itself: the host eBPF
// collector lives in audit/, guest collectors in the VM backends.
//
// Events are portable: the same Event comes from the host eBPF collector,
// from a collector inside a microVM guest, or from gVisor's monitoring, and
// the receipt aggregator (core/receipt) turns them into receipt sections.
package profiling

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Mode says how much the caller cares about observation.
type Mode string

// Modes.
const (
	// Off runs without observation; the receipt says status "off".
	Off Mode = "off"
	// BestEffort observes when possible and otherwise runs anyway, with the
	// receipt saying why it is "unavailable".
	BestEffort Mode = "best-effort"
	// Required refuses to start the run unless it can be observed.
	Required Mode = "required"
)

// ParseMode parses "off", "best-effort" or "required". The empty string is
// Off.
func ParseMode(s string) (Mode, error) {
	switch Mode(s) {
	case "", Off:
		return Off, nil
	case BestEffort, Required:
		return Mode(s), nil
	}
	return "", fmt.Errorf("profiling mode %q: want off, best-effort or required", s)
}

// ErrUnavailable is returned (wrapped, with the reason) when observation was
// required but is not possible.
var ErrUnavailable = errors.New("profiling unavailable")

// Target is what a controller observes: one run's host cgroup. Backends that
// run on the host expose it before the workload starts, so a controller can
// register it before the workload's first instruction.
type Target struct {
	// RunID identifies the run in logs and metrics.
	RunID string
	// CgroupID is the cgroup2 id (the inode number of its directory) of the
	// run's cgroup. Processes in this cgroup and in its descendants belong to
	// the run.
	CgroupID uint64
	// CgroupPath is the cgroup2 directory, for diagnostics.
	CgroupPath string
}

// Controller starts observation sessions. One controller is loaded once and
// serves many concurrent runs; implementations must be safe for concurrent
// use.
type Controller interface {
	// Collector names the collector in receipts: "ebpf-host", "ebpf-guest",
	// "gvisor".
	Collector() string
	// Available returns nil when the controller can observe runs on this
	// host, else an error saying why not.
	Available() error
	// Start begins observing target and delivers its events to sink until
	// the session is stopped. The caller must call Stop on the returned
	// session.
	Start(ctx context.Context, target Target, sink Sink) (Session, error)
}

// Session is one run's observation.
type Session interface {
	// Stop ends observation once everything the target did has been
	// delivered to the sink, and reports how complete it was. Stop must be
	// called after the target's processes have exited; it is safe to call
	// once.
	Stop(ctx context.Context) (Report, error)
}

// Syncer is implemented by sessions that hold counts they have not yet
// delivered while the target runs: the host collector counts a thread's
// repeated opens in the kernel and delivers them when the thread moves on
// to other files, exits, or the session stops. Sync delivers what was
// counted until the call and keeps observing. Rolling receipts call it
// before they cut a window.
type Syncer interface {
	Sync(ctx context.Context) error
}

// Sink receives a session's events. A session calls Add from one goroutine
// at a time and never after Stop returns. ev is the sink's only until Add
// returns (collectors reuse it for the next event): a sink that keeps an
// event keeps a copy, *ev. The strings and slices in it are never reused.
type Sink interface {
	Add(ev *Event)
}

// Report says how complete a session's observation was.
type Report struct {
	// Events is the number of events delivered to the sink.
	Events int64
	// Dropped is the number of events the collector lost for this target,
	// counted in the kernel when its buffer was full.
	Dropped int64
	// Blind lists things the collector knows it could not see (for example
	// "io_uring_setup by pid 42: io_uring operations are not traced"). Any
	// entry makes the observation partial.
	Blind []string
}

// Kind is the kind of an Event.
type Kind uint8

// Event kinds.
const (
	// KindExec is a successful execve/execveat: PID now runs Exe with Argv
	// in Cwd.
	KindExec Kind = iota + 1
	// KindExecFailed is an exec attempt that failed with Errno.
	KindExecFailed
	// KindFork is a new process (not a thread): PID was created by PPID.
	KindFork
	// KindExit is a process exit, reported once per process when its last
	// thread exits.
	KindExit
	// KindFile is a file operation (Op, Path, Target).
	KindFile
	// KindNet is a network operation (Op, Family, Protocol, Address, Port).
	KindNet
	// KindRunning describes a process that was already running Exe with
	// Argv in Cwd when observation began (its exec was not observed).
	KindRunning
)

func (k Kind) String() string {
	switch k {
	case KindExec:
		return "exec"
	case KindExecFailed:
		return "exec_failed"
	case KindFork:
		return "fork"
	case KindExit:
		return "exit"
	case KindFile:
		return "file"
	case KindNet:
		return "net"
	case KindRunning:
		return "running"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Event is one portable observation. Which fields are set depends on Kind.
// String fields use the receipt's vocabulary (receipt.OpRead,
// receipt.NetConnect, receipt.FamilyInet, errno names such as "ENOENT").
type Event struct {
	Kind Kind
	// Time is when the kernel saw the event, in wall-clock time. It may
	// be zero for KindFile and KindNet events: the receipt's file and
	// network entries have no time, and the host collector saves the
	// clock read (~100 ns per call in a VM) on the hottest path it has.
	Time time.Time
	// PID is the process (thread group) id; PPID its parent's. PPID and
	// UID may be zero for KindFile and KindNet events, as Time.
	PID, PPID int64
	UID       int64

	// Exe, Argv and Cwd describe an exec (or a failed exec's attempted
	// path in Exe).
	Exe  string
	Argv []string
	Cwd  string

	// ExitCode and Signal describe an exit. Signal is a name ("SIGKILL")
	// or "".
	ExitCode int64
	Signal   string

	// Op is the file or network operation.
	Op string
	// Path is the absolute file path as the kernel resolved it; Target is
	// the destination of a rename, link or symlink.
	Path, Target string

	// Family, Protocol, Address and Port describe a network operation.
	Family, Protocol, Address string
	Port                      int64

	// Errno is the error name of a failed operation, "" on success.
	Errno string

	// Count is how many times a KindFile event happened, when a collector
	// counted repeats of it in the kernel instead of sending each one.
	// Zero means once, as 1 does; other kinds ignore it (see Times).
	Count int64 `json:",omitempty"`
}

// Times returns how many times ev happened: its Count (at least 1) for a
// KindFile event, 1 for any other.
func (ev *Event) Times() int64 {
	if ev.Kind != KindFile {
		return 1
	}
	return max(ev.Count, 1)
}

// Capabilities describe what the host offers a collector, as probed.
type Capabilities struct {
	// BTF is true when kernel BTF is available for CO-RE relocations.
	BTF bool
	// Tracefs is true when tracepoint events are reachable.
	Tracefs bool
	// ProgramTypes lists the BPF program types the kernel accepts
	// ("tracepoint", "raw_tracepoint", "tracing", "cgroup_sock_addr").
	ProgramTypes []string
	// Missing explains what is missing, one line per gap.
	Missing []string
}

// Usable reports whether a collector can run with these capabilities.
func (c Capabilities) Usable() bool { return len(c.Missing) == 0 }
