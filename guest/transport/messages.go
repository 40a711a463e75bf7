package transport

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"strings"
	"unicode/utf8"

	"glasshouse.dev/glasshouse/core/profiling"
)

// Protocol versions this package speaks. The guest offers a range in Hello;
// the host picks the highest version both know in Welcome. Version 2 adds
// Wake and Awake (snapshot restore).
const (
	MinVersion = 1
	MaxVersion = 2
)

// Magic opens Hello and Welcome so that a stray stream is told apart from a
// peer that speaks another version.
const Magic = "glasshouse/transport"

// Bounds on message contents, checked by Validate. They keep a hostile peer
// from making the other side allocate without limit.
const (
	MaxArgs       = 4096
	MaxEnv        = 1024
	MaxStringLen  = 128 << 10
	MaxPathLen    = 1024
	MaxCollect    = 1024
	MaxBatch      = 1024
	MaxBlind      = 256
	MaxNotes      = 64
	MaxMessageLen = 4096
	// MaxEventCount bounds an event's Count: the guest's kernel counts at
	// most 2^31 repeats of an open before it sends it again.
	MaxEventCount = 1 << 31
)

// Hello is the guest's first frame.
type Hello struct {
	Magic      string `json:"magic"`
	MinVersion int    `json:"min_version"`
	MaxVersion int    `json:"max_version"`
	// Kernel is the guest kernel release.
	Kernel string `json:"kernel"`
	// Collector names the guest's profiling collector ("ebpf-guest"), or
	// is empty, with CollectorError saying why.
	Collector      string `json:"collector,omitempty"`
	CollectorError string `json:"collector_error,omitempty"`
	// InitStartNS and ReadyNS are the guest's CLOCK_BOOTTIME when init
	// started and when it was ready to run: the kernel-to-init and
	// init-to-ready phases of a boot.
	InitStartNS int64 `json:"init_start_ns"`
	ReadyNS     int64 `json:"ready_ns"`
}

// Validate checks the magic, the version range and the bounds.
func (h *Hello) Validate() error {
	if h.Magic != Magic {
		return fmt.Errorf("%w: hello magic %q, want %q", ErrHandshake, clip(h.Magic), Magic)
	}
	if h.MinVersion < 1 || h.MaxVersion < h.MinVersion {
		return fmt.Errorf("%w: hello versions [%d, %d] are not a range", ErrHandshake, h.MinVersion, h.MaxVersion)
	}
	return checkStrings("hello", h.Kernel, h.Collector, h.CollectorError)
}

// Welcome is the host's answer to Hello.
type Welcome struct {
	Magic   string `json:"magic"`
	Version int    `json:"version"`
}

// Validate checks the magic and that the version is one this package speaks.
func (w *Welcome) Validate() error {
	if w.Magic != Magic {
		return fmt.Errorf("%w: welcome magic %q, want %q", ErrHandshake, clip(w.Magic), Magic)
	}
	if w.Version < MinVersion || w.Version > MaxVersion {
		return fmt.Errorf("%w: host chose version %d, guest speaks [%d, %d]", ErrVersion, w.Version, MinVersion, MaxVersion)
	}
	return nil
}

// Run asks the guest to run one workload. Input files (TypeFile) precede
// it; stdin frames follow it when Stdin is set.
type Run struct {
	// Argv is the command; Argv[0] is looked up in the guest's PATH.
	Argv []string `json:"argv"`
	// Env is the workload's complete environment, "NAME=value".
	Env []string `json:"env"`
	// Stdin says stdin frames follow; otherwise stdin is empty.
	Stdin bool `json:"stdin,omitempty"`
	// TimeoutMS is the run's wall-clock budget, enforced in the guest too.
	TimeoutMS   int64  `json:"timeout_ms"`
	MemoryBytes int64  `json:"memory_bytes"`
	PIDs        int64  `json:"pids"`
	CPUMillis   int64  `json:"cpu_millis,omitempty"`
	OutputBytes int64  `json:"output_bytes"`
	Network     string `json:"network"`
	// Profile asks the guest collector to observe the run.
	Profile bool `json:"profile,omitempty"`
	// Collect lists workspace paths to return after the run, at most
	// CollectBytes in all.
	Collect      []string `json:"collect,omitempty"`
	CollectBytes int64    `json:"collect_bytes,omitempty"`
	// HostTimeNS is the host's wall clock (Unix ns) when the run was sent;
	// the guest sets its clock from it so event times are comparable.
	HostTimeNS int64 `json:"host_time_ns"`
}

// Validate checks every field against the package bounds.
func (r *Run) Validate() error {
	switch {
	case len(r.Argv) == 0 || r.Argv[0] == "":
		return fmt.Errorf("%w: run: argv is empty", ErrBadFrame)
	case len(r.Argv) > MaxArgs:
		return fmt.Errorf("%w: run: %d arguments exceeds the limit of %d", ErrBadFrame, len(r.Argv), MaxArgs)
	case len(r.Env) > MaxEnv:
		return fmt.Errorf("%w: run: %d variables exceeds the limit of %d", ErrBadFrame, len(r.Env), MaxEnv)
	case len(r.Collect) > MaxCollect:
		return fmt.Errorf("%w: run: %d collect paths exceeds the limit of %d", ErrBadFrame, len(r.Collect), MaxCollect)
	case r.TimeoutMS <= 0, r.MemoryBytes <= 0, r.PIDs <= 0, r.OutputBytes <= 0:
		return fmt.Errorf("%w: run: timeout_ms, memory_bytes, pids and output_bytes must be positive", ErrBadFrame)
	case r.CPUMillis < 0 || r.CollectBytes < 0:
		return fmt.Errorf("%w: run: cpu_millis and collect_bytes must not be negative", ErrBadFrame)
	}
	switch r.Network {
	case "none", "loopback", "full":
	default:
		return fmt.Errorf("%w: run: network %q: want none, loopback or full", ErrBadFrame, clip(r.Network))
	}
	for i, a := range r.Argv {
		if err := checkArg(a); err != nil {
			return fmt.Errorf("%w: run: argv[%d]: %v", ErrBadFrame, i, err)
		}
	}
	for i, e := range r.Env {
		if err := checkArg(e); err != nil {
			return fmt.Errorf("%w: run: env[%d]: %v", ErrBadFrame, i, err)
		}
		if k, _, ok := strings.Cut(e, "="); !ok || k == "" {
			return fmt.Errorf("%w: run: env[%d] is not NAME=value", ErrBadFrame, i)
		}
	}
	for i, p := range r.Collect {
		if err := CheckPath(p); err != nil {
			return fmt.Errorf("%w: run: collect[%d]: %v", ErrBadFrame, i, err)
		}
	}
	return nil
}

// Started says the workload is running.
type Started struct {
	PID int `json:"pid"`
}

// Exit says how the workload ended and what it used.
type Exit struct {
	ExitCode int `json:"exit_code"`
	// Signal is the name of the signal that killed it ("SIGKILL"), or "".
	Signal        string `json:"signal,omitempty"`
	TimedOut      bool   `json:"timed_out,omitempty"`
	OOMKilled     bool   `json:"oom_killed,omitempty"`
	OutputLimited bool   `json:"output_limited,omitempty"`
	// Killed says the host's Kill ended the run.
	Killed          bool  `json:"killed,omitempty"`
	StdoutTruncated bool  `json:"stdout_truncated,omitempty"`
	StderrTruncated bool  `json:"stderr_truncated,omitempty"`
	CPUUserUS       int64 `json:"cpu_user_us"`
	CPUSystemUS     int64 `json:"cpu_system_us"`
	MemoryPeakBytes int64 `json:"memory_peak_bytes"`
	PIDsPeak        int64 `json:"pids_peak"`
	ReadBytes       int64 `json:"read_bytes"`
	WriteBytes      int64 `json:"write_bytes"`
	// StartNS is how long the guest took from receiving Run to starting
	// the workload; RunNS how long the workload ran.
	StartNS int64 `json:"start_ns"`
	RunNS   int64 `json:"run_ns"`
	// Notes list degradations (a limit the guest could not enforce).
	Notes []string `json:"notes,omitempty"`
}

// Validate checks the bounds.
func (e *Exit) Validate() error {
	if len(e.Notes) > MaxNotes {
		return fmt.Errorf("%w: exit: %d notes exceeds the limit of %d", ErrBadFrame, len(e.Notes), MaxNotes)
	}
	return checkStrings("exit", append([]string{e.Signal}, e.Notes...)...)
}

// Events is a batch of profiling events observed in the guest.
type Events struct {
	Events []profiling.Event `json:"events"`
}

// Validate checks the batch size and string lengths.
func (e *Events) Validate() error {
	if len(e.Events) > MaxBatch {
		return fmt.Errorf("%w: events: batch of %d exceeds the limit of %d", ErrBadFrame, len(e.Events), MaxBatch)
	}
	for i := range e.Events {
		ev := &e.Events[i]
		if len(ev.Argv) > MaxArgs {
			return fmt.Errorf("%w: events[%d]: %d arguments exceeds the limit of %d", ErrBadFrame, i, len(ev.Argv), MaxArgs)
		}
		if ev.Count < 0 || ev.Count > MaxEventCount {
			return fmt.Errorf("%w: events[%d]: count %d is outside 0..%d", ErrBadFrame, i, ev.Count, int64(MaxEventCount))
		}
		if err := checkStrings("events", append([]string{ev.Exe, ev.Cwd, ev.Signal, ev.Op, ev.Path, ev.Target,
			ev.Family, ev.Protocol, ev.Address, ev.Errno}, ev.Argv...)...); err != nil {
			return err
		}
	}
	return nil
}

// Done is the last frame of a run.
type Done struct {
	// Events, Dropped and Blind report the guest collector's session
	// (profiling.Report); CollectorError says why it failed, if it did.
	Events         int64    `json:"events"`
	Dropped        int64    `json:"dropped"`
	Blind          []string `json:"blind,omitempty"`
	CollectorError string   `json:"collector_error,omitempty"`
}

// Validate checks the bounds.
func (d *Done) Validate() error {
	if len(d.Blind) > MaxBlind {
		return fmt.Errorf("%w: done: %d blind spots exceeds the limit of %d", ErrBadFrame, len(d.Blind), MaxBlind)
	}
	return checkStrings("done", append([]string{d.CollectorError}, d.Blind...)...)
}

// Kill asks the guest to end the workload.
type Kill struct {
	// Reason is "timeout" or "cancel".
	Reason string `json:"reason"`
}

// Validate checks the bounds.
func (k *Kill) Validate() error { return checkStrings("kill", k.Reason) }

// Error codes.
const (
	CodeCommandNotFound = "command_not_found"
	CodeInvalid         = "invalid"
	CodeInternal        = "internal"
)

// Error reports a failure that ends the session.
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Validate checks the bounds.
func (e *Error) Validate() error {
	if len(e.Message) > MaxMessageLen {
		return fmt.Errorf("%w: error: message of %d bytes exceeds the limit of %d", ErrBadFrame, len(e.Message), MaxMessageLen)
	}
	return checkStrings("error", e.Code)
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// validator is implemented by every message.
type validator interface{ Validate() error }

// messageType maps each message to the frame type it travels in.
func messageType(v any) (Type, bool) {
	switch v.(type) {
	case *Hello:
		return TypeHello, true
	case *Welcome:
		return TypeWelcome, true
	case *Run:
		return TypeRun, true
	case *Started:
		return TypeStarted, true
	case *Exit:
		return TypeExit, true
	case *Events:
		return TypeEvents, true
	case *Done:
		return TypeDone, true
	case *Kill:
		return TypeKill, true
	case *Error:
		return TypeError, true
	case *Wake:
		return TypeWake, true
	case *Awake:
		return TypeAwake, true
	case *Parked:
		return TypeParked, true
	}
	return 0, false
}

// Encode returns the frame carrying message v (a pointer to one of the
// message types).
func Encode(v any) (Frame, error) {
	t, ok := messageType(v)
	if !ok {
		return Frame{}, fmt.Errorf("encode %T: not a message", v)
	}
	b, err := json.Marshal(v)
	if err != nil {
		return Frame{}, fmt.Errorf("encode %s: %w", t, err)
	}
	return Frame{Type: t, Payload: b}, nil
}

// Decode parses f into v (a pointer to the message type f's type carries)
// and validates it. Errors wrap ErrBadFrame.
func Decode(f Frame, v any) error {
	t, ok := messageType(v)
	if !ok {
		return fmt.Errorf("decode into %T: not a message", v)
	}
	if f.Type != t {
		return fmt.Errorf("%w: got a %s frame, want %s", ErrBadFrame, f.Type, t)
	}
	if err := json.Unmarshal(f.Payload, v); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrBadFrame, t, err)
	}
	if val, ok := v.(validator); ok {
		return val.Validate()
	}
	return nil
}

// FileChunk is a piece of a workspace file. A file travels as one or more
// chunks with the same path, in order; the last has Last set.
type FileChunk struct {
	Path       string
	Data       []byte
	Last       bool
	Executable bool
	// Truncated (G→H) says the file was cut to fit the collect limit.
	Truncated bool
}

const (
	chunkLast = 1 << iota
	chunkExec
	chunkTruncated
)

// AppendFileChunk appends the encoding of c to b: a 2-byte path length,
// the path, a flags byte and the data.
func AppendFileChunk(b []byte, c *FileChunk) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(c.Path)))
	b = append(b, c.Path...)
	var flags byte
	if c.Last {
		flags |= chunkLast
	}
	if c.Executable {
		flags |= chunkExec
	}
	if c.Truncated {
		flags |= chunkTruncated
	}
	b = append(b, flags)
	return append(b, c.Data...)
}

// DecodeFileChunk parses a TypeFile frame. Data aliases f.Payload.
func DecodeFileChunk(f Frame) (FileChunk, error) {
	var c FileChunk
	if f.Type != TypeFile {
		return c, fmt.Errorf("%w: got a %s frame, want %s", ErrBadFrame, f.Type, TypeFile)
	}
	p := f.Payload
	if len(p) < 3 {
		return c, fmt.Errorf("%w: file chunk of %d bytes is shorter than its header", ErrBadFrame, len(p))
	}
	n := int(binary.BigEndian.Uint16(p))
	if len(p) < 2+n+1 {
		return c, fmt.Errorf("%w: file chunk path of %d bytes overruns the frame", ErrBadFrame, n)
	}
	c.Path = string(p[2 : 2+n])
	if err := CheckPath(c.Path); err != nil {
		return c, fmt.Errorf("%w: file chunk: %v", ErrBadFrame, err)
	}
	flags := p[2+n]
	if flags&^(chunkLast|chunkExec|chunkTruncated) != 0 {
		return c, fmt.Errorf("%w: file chunk: unknown flags %#x", ErrBadFrame, flags)
	}
	c.Last, c.Executable, c.Truncated = flags&chunkLast != 0, flags&chunkExec != 0, flags&chunkTruncated != 0
	c.Data = p[2+n+1:]
	return c, nil
}

// CheckPath checks that p names a file inside the workspace: relative,
// slash-separated UTF-8 without "..", "." components, NUL or empty
// components, at most MaxPathLen bytes.
func CheckPath(p string) error {
	switch {
	case p == "":
		return fmt.Errorf("path is empty")
	case len(p) > MaxPathLen:
		return fmt.Errorf("path of %d bytes exceeds the limit of %d", len(p), MaxPathLen)
	case !utf8.ValidString(p) || strings.IndexByte(p, 0) >= 0:
		return fmt.Errorf("path %q is not UTF-8 without NUL", clip(p))
	case strings.HasPrefix(p, "/"):
		return fmt.Errorf("path %q is absolute", clip(p))
	}
	for _, part := range strings.Split(p, "/") {
		if part == "" || part == "." || part == ".." {
			return fmt.Errorf("path %q has an empty, . or .. component", clip(p))
		}
	}
	return nil
}

func checkArg(s string) error {
	if len(s) > MaxStringLen {
		return fmt.Errorf("%d bytes exceeds the limit of %d", len(s), MaxStringLen)
	}
	if strings.IndexByte(s, 0) >= 0 {
		return fmt.Errorf("contains a NUL byte")
	}
	return nil
}

func checkStrings(msg string, ss ...string) error {
	for _, s := range ss {
		if len(s) > MaxStringLen {
			return fmt.Errorf("%w: %s: a string of %d bytes exceeds the limit of %d", ErrBadFrame, msg, len(s), MaxStringLen)
		}
	}
	return nil
}

func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}
