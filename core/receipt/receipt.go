// Package receipt defines receipt v1, the portable record of one run: what
// was asked, where it ran, how it ended and, when profiling was on, what the
// code did as the kernel saw it.
//
// The field names are a public interface (see docs/receipt-v1.md and
// schema/receipt-v1.json): fields may be added, never renamed or dropped.
//
// A Receipt is plain data. Build one with the engine (core/execution) or by
// hand, call Seal to normalise it and compute its digest, and Encode it. Read
// a stored receipt with Decode, which checks its digest and canonical form.
// Nothing in this package touches the clock, the network or the disk, so the
// same inputs always give the same bytes. Values are not safe for concurrent
// mutation.
package receipt

import (
	"encoding/json"
	"fmt"
	"time"
)

// Receipt is one run's record. The zero value is not valid; use Seal before
// encoding.
type Receipt struct {
	Schema     string    `json:"schema"`
	ID         string    `json:"id"`
	StartedAt  Timestamp `json:"started_at"`
	FinishedAt Timestamp `json:"finished_at"`
	Subject    Subject   `json:"subject"`
	Backend    Backend   `json:"backend"`
	Host       Host      `json:"host"`
	Limits     Limits    `json:"limits"`
	Outcome    Outcome   `json:"outcome"`
	Output     Output    `json:"output"`
	Resources  Resources `json:"resources"`
	Profiling  Profiling `json:"profiling"`
	Processes  []Process `json:"processes"`
	Files      []File    `json:"files"`
	Network    []Net     `json:"network"`
	// Policy is present when a policy was evaluated at run time.
	Policy *Policy `json:"policy,omitempty"`
	Digest string  `json:"digest"`
}

// Subject describes the inputs of the run.
type Subject struct {
	Argv []string `json:"argv"`
	// Language is "python" when the run was submitted as source code.
	Language   string     `json:"language,omitempty"`
	CodeSHA256 string     `json:"code_sha256,omitempty"`
	Files      []Artifact `json:"files"`
}

// Artifact names a file by content: an input placed in the workspace, or an
// output collected from it.
type Artifact struct {
	Path   string `json:"path"`
	SHA256 string `json:"sha256"`
	Bytes  int64  `json:"bytes"`
}

// Isolation levels, weakest first.
const (
	IsolationNone      = "none"
	IsolationContainer = "container"
	IsolationGVisor    = "gvisor"
	IsolationMicroVM   = "microvm"
)

// Backend says where the run executed.
type Backend struct {
	Name      string `json:"name"`
	Isolation string `json:"isolation"`
	// Accel is "kvm" or "tcg" for virtual machines, "" otherwise.
	Accel   string `json:"accel"`
	Version string `json:"version"`
	// Containment says how the run was confined and accounted on the host:
	// "cgroup" (a per-run cgroup), "rlimit" (rlimits and a process group,
	// when cgroups were not available), "vm" or "" for the fake backend.
	Containment string `json:"containment,omitempty"`
	// Notes records degradations the caller should know about, such as a
	// limit that could not be enforced.
	Notes []string `json:"notes,omitempty"`
}

// Host describes the machine that ran the backend.
type Host struct {
	Kernel            string `json:"kernel"`
	Arch              string `json:"arch"`
	GlasshouseVersion string `json:"glasshouse_version"`
}

// Network modes.
const (
	NetworkNone     = "none"
	NetworkLoopback = "loopback"
	NetworkFull     = "full"
)

// Limits are the limits the run was given. Zero means "not limited".
type Limits struct {
	TimeoutMS   int64  `json:"timeout_ms"`
	MemoryBytes int64  `json:"memory_bytes"`
	PIDs        int64  `json:"pids"`
	CPUMillis   int64  `json:"cpu_millis,omitempty"`
	OutputBytes int64  `json:"output_bytes"`
	Network     string `json:"network"`
}

// Failure classes: who failed.
const (
	FailureNone           = "none"
	FailureCode           = "code"
	FailureTimeout        = "timeout"
	FailureOOM            = "oom"
	FailureOutputLimit    = "output_limit"
	FailureInfrastructure = "infrastructure"
)

// Outcome says how the run ended.
type Outcome struct {
	ExitCode int `json:"exit_code"`
	// Signal is the name of the signal that killed the workload ("SIGKILL"),
	// or "".
	Signal    string `json:"signal"`
	TimedOut  bool   `json:"timed_out"`
	OOMKilled bool   `json:"oom_killed"`
	Failure   string `json:"failure"`
	// Error is the infrastructure error text when Failure is
	// "infrastructure".
	Error      string `json:"error"`
	DurationMS int64  `json:"duration_ms"`
}

// Output summarises what the workload wrote.
type Output struct {
	StdoutBytes     int64  `json:"stdout_bytes"`
	StderrBytes     int64  `json:"stderr_bytes"`
	StdoutSHA256    string `json:"stdout_sha256"`
	StderrSHA256    string `json:"stderr_sha256"`
	StdoutTruncated bool   `json:"stdout_truncated"`
	StderrTruncated bool   `json:"stderr_truncated"`
	// Files are the workspace files collected after the run.
	Files []Artifact `json:"files,omitempty"`
}

// Resources are what the run consumed, as accounted by its cgroup or VM.
type Resources struct {
	CPUUserMS       int64 `json:"cpu_user_ms"`
	CPUSystemMS     int64 `json:"cpu_system_ms"`
	MemoryPeakBytes int64 `json:"memory_peak_bytes"`
	PIDsPeak        int64 `json:"pids_peak"`
	ReadBytes       int64 `json:"read_bytes"`
	WriteBytes      int64 `json:"write_bytes"`
}

// Profiling modes.
const (
	ModeOff        = "off"
	ModeBestEffort = "best-effort"
	ModeRequired   = "required"
)

// Profiling statuses.
const (
	StatusOff         = "off"
	StatusComplete    = "complete"
	StatusPartial     = "partial"
	StatusUnavailable = "unavailable"
)

// Collectors.
const (
	CollectorEBPFHost  = "ebpf-host"
	CollectorEBPFGuest = "ebpf-guest"
	CollectorGVisor    = "gvisor"
	CollectorNone      = "none"
)

// Profiling says whether and how the run was observed. A run that could not
// be observed says so here; its sections are then empty, never silently.
type Profiling struct {
	Mode      string `json:"mode"`
	Status    string `json:"status"`
	Collector string `json:"collector"`
	Reason    string `json:"reason"`
	// Events is the number of kernel events observed for the run.
	Events int64 `json:"events"`
	// Dropped is the number of events lost; > 0 makes Status "partial".
	Dropped int64 `json:"dropped"`
	// Omitted counts, per section, the events whose entries were cut to keep
	// the receipt bounded. Any cut makes Status "partial".
	Omitted Omitted `json:"omitted"`
}

// Omitted counts, per section, the events left out of a receipt to bound
// its size.
type Omitted struct {
	Processes int64 `json:"processes"`
	Files     int64 `json:"files"`
	Network   int64 `json:"network"`
}

// Total is the number of entries omitted across all sections.
func (o Omitted) Total() int64 { return o.Processes + o.Files + o.Network }

// Process is one process of the run's tree.
type Process struct {
	PID           int64    `json:"pid"`
	PPID          int64    `json:"ppid"`
	Exe           string   `json:"exe"`
	Argv          []string `json:"argv"`
	Cwd           string   `json:"cwd"`
	UID           int64    `json:"uid"`
	StartOffsetMS int64    `json:"start_offset_ms"`
	// EndOffsetMS is -1 when the process was still alive at the end of
	// observation.
	EndOffsetMS int64  `json:"end_offset_ms"`
	ExitCode    int64  `json:"exit_code"`
	Signal      string `json:"signal"`
	// ExecFailed lists the errno names of exec attempts by this process that
	// failed ("ENOENT").
	ExecFailed []string `json:"exec_failed,omitempty"`
}

// File operations.
const (
	OpRead     = "read"
	OpWrite    = "write"
	OpCreate   = "create"
	OpDelete   = "delete"
	OpRename   = "rename"
	OpMkdir    = "mkdir"
	OpRmdir    = "rmdir"
	OpChmod    = "chmod"
	OpLink     = "link"
	OpSymlink  = "symlink"
	OpTruncate = "truncate"
	OpExec     = "exec"
)

// File is one deduplicated file access: the same path, op, target, pid and
// result are counted once with Count.
type File struct {
	Path   string `json:"path"`
	Op     string `json:"op"`
	Target string `json:"target,omitempty"`
	PID    int64  `json:"pid"`
	Count  int64  `json:"count"`
	OK     bool   `json:"ok"`
	// Errno is the error name ("ENOENT") when OK is false.
	Errno string `json:"errno,omitempty"`
}

// Network operations.
const (
	NetConnect = "connect"
	NetBind    = "bind"
	NetListen  = "listen"
	NetAccept  = "accept"
	NetSendto  = "sendto"
)

// Address families and protocols.
const (
	FamilyInet  = "inet"
	FamilyInet6 = "inet6"
	FamilyUnix  = "unix"
	ProtoTCP    = "tcp"
	ProtoUDP    = "udp"
)

// Net is one deduplicated network operation.
type Net struct {
	Op       string `json:"op"`
	Family   string `json:"family"`
	Protocol string `json:"protocol"`
	Address  string `json:"address"`
	Port     int64  `json:"port"`
	PID      int64  `json:"pid"`
	Count    int64  `json:"count"`
	OK       bool   `json:"ok"`
	Errno    string `json:"errno,omitempty"`
}

// Verdicts.
const (
	VerdictAllow = "allow"
	VerdictWarn  = "warn"
	VerdictDeny  = "deny"
)

// Policy is the result of evaluating a policy over the receipt at run time.
type Policy struct {
	Name       string      `json:"name"`
	Verdict    string      `json:"verdict"`
	Violations []Violation `json:"violations"`
}

// Violation is one rule that matched.
type Violation struct {
	Rule     string `json:"rule"`
	Severity string `json:"severity"`
	Message  string `json:"message"`
	// Evidence are JSON pointers (RFC 6901) into the receipt at the entries
	// that matched, such as "/network/0".
	Evidence []string `json:"evidence"`
}

// Timestamp is a UTC time encoded as RFC 3339 with exactly nine fractional
// digits, so equal instants always encode to equal bytes.
type Timestamp struct{ time.Time }

// TimestampLayout is the encoding of a Timestamp.
const TimestampLayout = "2006-01-02T15:04:05.000000000Z"

// At returns t as a Timestamp.
func At(t time.Time) Timestamp { return Timestamp{t.UTC()} }

// MarshalJSON implements json.Marshaler. (It must be defined here: the
// embedded time.Time's own MarshalJSON would otherwise be promoted.)
func (t Timestamp) MarshalJSON() ([]byte, error) {
	return []byte(`"` + t.UTC().Format(TimestampLayout) + `"`), nil
}

// UnmarshalJSON implements json.Unmarshaler. It accepts any RFC 3339 time.
func (t *Timestamp) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("timestamp: %w", err)
	}
	v, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return fmt.Errorf("timestamp: %w", err)
	}
	t.Time = v.UTC()
	return nil
}
