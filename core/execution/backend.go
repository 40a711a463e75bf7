package execution

import (
	"context"
	"errors"
	"time"

	"glasshouse.dev/glasshouse/core/profiling"
)

// Errors a caller must tell apart. Backends and the engine wrap them; test
// with errors.Is.
var (
	// ErrInvalidSpec means the spec was rejected before anything ran. The
	// message names the field and the limit.
	ErrInvalidSpec = errors.New("invalid spec")
	// ErrCommandNotFound means the command's program does not exist in the
	// sandbox.
	ErrCommandNotFound = errors.New("command not found")
	// ErrUnknownBackend means no backend is registered under the name.
	ErrUnknownBackend = errors.New("unknown backend")
	// ErrBackendUnavailable means the backend exists but cannot run on this
	// host (missing binary, privilege or kernel feature).
	ErrBackendUnavailable = errors.New("backend unavailable")
	// ErrAlreadyStarted is returned by Instance.Start when called twice.
	ErrAlreadyStarted = errors.New("instance already started")
	// ErrNotStarted is returned by Instance.Wait before a successful Start.
	ErrNotStarted = errors.New("instance not started")
	// ErrInfrastructure marks a failure of Glasshouse, the backend or the
	// host rather than of the workload. Receipts classify it as
	// "infrastructure" so training pipelines mask the run.
	ErrInfrastructure = errors.New("infrastructure failure")
)

// Backend turns specs into instances. Implementations must be safe for
// concurrent use: many runs prepare at once.
type Backend interface {
	// Name is the registry name ("process", "qemu").
	Name() string
	// Capabilities describe what the backend offers.
	Capabilities() Capabilities
	// Available returns nil when the backend can run on this host, else an
	// error wrapping ErrBackendUnavailable that says why.
	Available() error
	// Prepare acquires everything the run needs (workspace, cgroup, VM)
	// without starting the workload. The caller must call Cleanup on the
	// returned instance, even when a later step fails. A validated spec is
	// passed; Prepare may still reject it with ErrInvalidSpec or
	// ErrCommandNotFound.
	Prepare(ctx context.Context, spec Spec) (Instance, error)
}

// Instance is one prepared run. Start, Wait and Cleanup are called in that
// order; Cleanup may be called at any point and more than once.
type Instance interface {
	// Start starts the workload. It returns ErrAlreadyStarted if called
	// twice. ctx bounds only the start itself; the workload's lifetime is
	// bounded by the spec's timeout and by Cleanup.
	Start(ctx context.Context) error
	// Wait blocks until the workload has exited and its whole process tree
	// is gone, then returns the result. If ctx is cancelled first, the
	// workload is killed and Wait returns the result with ctx's error
	// wrapped. Wait is safe to call concurrently; every caller gets the same
	// result.
	Wait(ctx context.Context) (Result, error)
	// Cleanup kills anything still running and releases every resource in
	// reverse order of acquisition. It ignores ctx cancellation, is
	// idempotent and returns errors.Join of what failed.
	Cleanup(ctx context.Context) error
}

// Targeted is implemented by instances whose workload runs in a host cgroup
// that a host collector can observe. ProfilingTarget is valid after Prepare,
// before Start.
type Targeted interface {
	ProfilingTarget() profiling.Target
}

// Describer is implemented by instances whose workload may begin without
// an exec the collector sees, such as a fork of a resident interpreter.
// When the run is observed, the engine hands the instance the run's sink
// before Start; the instance adds a profiling.KindRunning event for that
// process before the process runs the workload's code.
type Describer interface {
	DescribeTo(profiling.Sink)
}

// Detailer is implemented by backends with state worth reporting to an
// operator beyond Available (a resident helper process and how it fares).
// Details returns short "name: state" lines; it must be cheap and safe for
// concurrent use.
type Detailer interface {
	Details() []string
}

// SelfProfiled is implemented by instances that observe themselves, such as
// a VM with a collector in its guest. Its controller is used instead of the
// engine's host controller.
type SelfProfiled interface {
	Profiler() profiling.Controller
}

// Result is what a finished instance reports.
type Result struct {
	// ExitCode is the workload's exit status, or -1 when it was killed by a
	// signal.
	ExitCode int
	// Signal is the name of the signal that killed the workload, or "".
	Signal    string
	TimedOut  bool
	OOMKilled bool
	// OutputLimited is set when the workload was stopped for writing more
	// than Limits.OutputBytes.
	OutputLimited bool

	// Stdout and Stderr hold what was captured, at most Limits.OutputBytes
	// each; the Truncated flags say whether more was written.
	Stdout, Stderr                   []byte
	StdoutTruncated, StderrTruncated bool

	Resources Resources
	// Files are the collected workspace files (Spec.Collect).
	Files []File

	StartedAt, FinishedAt time.Time

	// Accel is the accelerator a VM used ("kvm", "tcg").
	Accel string
	// Containment says how the run was confined ("cgroup", "rlimit",
	// "vm"); Notes list degradations such as limits not enforced.
	Containment string
	Notes       []string

	// Err is set when the backend failed to carry out the run. It wraps
	// ErrInfrastructure (or a context error) and makes the receipt's
	// failure "infrastructure".
	Err error
}

// Resources are what a run consumed.
type Resources struct {
	CPUUser, CPUSystem time.Duration
	MemoryPeakBytes    int64
	PIDsPeak           int64
	ReadBytes          int64
	WriteBytes         int64
}

// Isolation is how strongly a backend separates the workload from the host.
type Isolation string

// Isolation levels, weakest first; they match receipt.Isolation*.
const (
	IsolationNone      Isolation = "none"
	IsolationContainer Isolation = "container"
	IsolationGVisor    Isolation = "gvisor"
	IsolationMicroVM   Isolation = "microvm"
)

// Rank orders isolation levels: a higher rank isolates more.
func (i Isolation) Rank() int {
	switch i {
	case IsolationContainer:
		return 1
	case IsolationGVisor:
		return 2
	case IsolationMicroVM:
		return 3
	}
	return 0
}

// ProfilingSupport says how a backend's runs can be observed.
type ProfilingSupport string

// Profiling support kinds.
const (
	// ProfilingNone: runs cannot be observed.
	ProfilingNone ProfilingSupport = "none"
	// ProfilingHostCgroup: instances implement Targeted; the host eBPF
	// collector observes them.
	ProfilingHostCgroup ProfilingSupport = "host-cgroup"
	// ProfilingGuest: instances implement SelfProfiled.
	ProfilingGuest ProfilingSupport = "guest"
)

// Capabilities describe a backend.
type Capabilities struct {
	Isolation Isolation
	Profiling ProfilingSupport
	// Requirements are what the host must offer.
	Requirements Requirements
}

// Requirements are what a backend needs from the host.
type Requirements struct {
	Root     bool
	KVM      bool
	BPF      bool
	Binaries []string
}
