package execution

import (
	"fmt"
	"io"
	"path"
	"strings"
	"time"
	"unicode/utf8"

	"glasshouse.dev/glasshouse/core/profiling"
)

// Network is the network a run may use.
type Network string

// Network modes.
const (
	// NetworkNone denies every network operation, loopback included.
	NetworkNone Network = "none"
	// NetworkLoopback allows only loopback addresses.
	NetworkLoopback Network = "loopback"
	// NetworkFull allows everything the host allows.
	NetworkFull Network = "full"
)

// ParseNetwork parses "none", "loopback" or "full".
func ParseNetwork(s string) (Network, error) {
	switch n := Network(s); n {
	case NetworkNone, NetworkLoopback, NetworkFull:
		return n, nil
	}
	return "", fmt.Errorf("%w: network %q: want none, loopback or full", ErrInvalidSpec, s)
}

// Language values for Spec.Language.
const LanguagePython = "python"

// CodeFile is the workspace path that Spec.Code is written to.
const CodeFile = "main.py"

// Limits bound what a run may consume. Zero values take the defaults in
// DefaultLimits; Validate rejects values outside Bounds.
type Limits struct {
	// MemoryBytes caps resident memory; exceeding it ends the run as "oom".
	MemoryBytes int64
	// PIDs caps the number of live processes and threads.
	PIDs int64
	// CPUMillis caps CPU bandwidth in thousandths of a core (1000 = one
	// core); 0 leaves it unlimited.
	CPUMillis int64
	// OutputBytes caps each of stdout and stderr. A run that writes more is
	// stopped and ends as "output_limit", with what fitted kept.
	OutputBytes int64
	// Network is what the run may reach.
	Network Network
}

// DefaultLimits are applied to zero fields of Spec.Limits and Spec.Timeout.
var DefaultLimits = Limits{
	MemoryBytes: 512 << 20,
	PIDs:        256,
	OutputBytes: 1 << 20,
	Network:     NetworkNone,
}

// DefaultTimeout is used when Spec.Timeout is zero.
const DefaultTimeout = 30 * time.Second

// Bounds are the hard limits Validate enforces on a spec.
var Bounds = struct {
	Timeout         time.Duration
	MinMemoryBytes  int64
	MaxMemoryBytes  int64
	MaxPIDs         int64
	MaxCPUMillis    int64
	MaxOutputBytes  int64
	MaxArgs         int
	MaxArgBytes     int
	MaxCodeBytes    int
	MaxEnv          int
	MaxEnvBytes     int
	MaxStdinBytes   int
	MaxFiles        int
	MaxFileBytes    int64
	MaxFilesBytes   int64
	MaxPathBytes    int
	MaxOutputFiles  int
	MaxCollectBytes int64
}{
	Timeout:         24 * time.Hour,
	MinMemoryBytes:  4 << 20,
	MaxMemoryBytes:  1 << 40,
	MaxPIDs:         1 << 20,
	MaxCPUMillis:    1 << 20,
	MaxOutputBytes:  1 << 30,
	MaxArgs:         4096,
	MaxArgBytes:     128 << 10,
	MaxCodeBytes:    16 << 20,
	MaxEnv:          1024,
	MaxEnvBytes:     256 << 10,
	MaxStdinBytes:   64 << 20,
	MaxFiles:        4096,
	MaxFileBytes:    256 << 20,
	MaxFilesBytes:   1 << 30,
	MaxPathBytes:    1024,
	MaxOutputFiles:  1024,
	MaxCollectBytes: 256 << 20,
}

// File is a file placed in the run's workspace before it starts.
type File struct {
	// Path is relative to the workspace, slash-separated, without "..".
	Path string
	// Content is the file's bytes.
	Content []byte
	// Executable sets mode 0755 instead of 0644.
	Executable bool
}

// Spec is what to run and under which limits. It is plain data apart from
// the optional live output writers; Validate checks every field.
type Spec struct {
	// Command is the argv to run. Exactly one of Command and Code is set.
	Command []string
	// Code is source code in Language, written to CodeFile in the
	// workspace and run with the language's interpreter.
	Code     string
	Language string

	// Env is the workload's environment on top of the backend's minimal
	// base (PATH, HOME, LANG). Nothing from the host leaks in otherwise.
	Env map[string]string
	// Stdin is fed to the workload's standard input, then closed.
	Stdin []byte
	// Files are placed in the workspace before the run.
	Files []File
	// Collect lists workspace paths whose content is returned after the
	// run (see Result.Files). Missing paths are skipped.
	Collect []string

	// Timeout is the run's wall-clock budget; the whole process tree is
	// killed when it expires.
	Timeout time.Duration
	Limits  Limits
	// Profile says whether the run must be observed.
	Profile profiling.Mode

	// Stdout and Stderr, when set, receive a live copy of the workload's
	// output as it is captured, up to the output limit. They are written
	// from backend goroutines, one write at a time per stream.
	Stdout, Stderr io.Writer
}

// WithDefaults returns a copy of s with zero limits and timeout replaced by
// their defaults.
func (s Spec) WithDefaults() Spec {
	if s.Timeout == 0 {
		s.Timeout = DefaultTimeout
	}
	if s.Limits.MemoryBytes == 0 {
		s.Limits.MemoryBytes = DefaultLimits.MemoryBytes
	}
	if s.Limits.PIDs == 0 {
		s.Limits.PIDs = DefaultLimits.PIDs
	}
	if s.Limits.OutputBytes == 0 {
		s.Limits.OutputBytes = DefaultLimits.OutputBytes
	}
	if s.Limits.Network == "" {
		s.Limits.Network = DefaultLimits.Network
	}
	if s.Profile == "" {
		s.Profile = profiling.Off
	}
	return s
}

// Argv returns the command the backend must run: Command, or the
// interpreter invocation for Code.
func (s *Spec) Argv() []string {
	if len(s.Command) > 0 {
		return s.Command
	}
	return []string{"python3", CodeFile}
}

// Validate checks every field of s against Bounds. Errors wrap
// ErrInvalidSpec and name the field and the limit.
func (s *Spec) Validate() error {
	if err := s.validateCommand(); err != nil {
		return err
	}
	if err := s.validateEnv(); err != nil {
		return err
	}
	if len(s.Stdin) > Bounds.MaxStdinBytes {
		return invalid("stdin", "%d bytes exceeds the limit of %d", len(s.Stdin), Bounds.MaxStdinBytes)
	}
	if err := s.validateFiles(); err != nil {
		return err
	}
	if s.Timeout < 0 || s.Timeout > Bounds.Timeout {
		return invalid("timeout", "%s is outside (0, %s]", s.Timeout, Bounds.Timeout)
	}
	if err := s.Limits.validate(); err != nil {
		return err
	}
	if _, err := profiling.ParseMode(string(s.Profile)); err != nil {
		return invalid("profile", "%v", err)
	}
	return nil
}

func (s *Spec) validateCommand() error {
	switch {
	case len(s.Command) > 0 && s.Code != "":
		return invalid("command", "set either a command or code, not both")
	case len(s.Command) == 0 && s.Code == "":
		return invalid("command", "no command and no code to run")
	case s.Code != "":
		if s.Language != LanguagePython {
			return invalid("language", "%q is not supported; want %q", s.Language, LanguagePython)
		}
		if len(s.Code) > Bounds.MaxCodeBytes {
			return invalid("code", "%d bytes exceeds the limit of %d", len(s.Code), Bounds.MaxCodeBytes)
		}
		if strings.IndexByte(s.Code, 0) >= 0 {
			return invalid("code", "contains a NUL byte")
		}
		for _, f := range s.Files {
			if path.Clean(f.Path) == CodeFile {
				return invalid("files", "%s is reserved for the code", CodeFile)
			}
		}
		return nil
	}
	if s.Language != "" {
		return invalid("language", "is only meaningful with code")
	}
	if len(s.Command) > Bounds.MaxArgs {
		return invalid("command", "%d arguments exceeds the limit of %d", len(s.Command), Bounds.MaxArgs)
	}
	if s.Command[0] == "" {
		return invalid("command[0]", "is empty")
	}
	for i, a := range s.Command {
		if len(a) > Bounds.MaxArgBytes {
			return invalid(fmt.Sprintf("command[%d]", i), "%d bytes exceeds the limit of %d", len(a), Bounds.MaxArgBytes)
		}
		if strings.IndexByte(a, 0) >= 0 {
			return invalid(fmt.Sprintf("command[%d]", i), "contains a NUL byte")
		}
	}
	return nil
}

func (s *Spec) validateEnv() error {
	if len(s.Env) > Bounds.MaxEnv {
		return invalid("env", "%d variables exceeds the limit of %d", len(s.Env), Bounds.MaxEnv)
	}
	total := 0
	for k, v := range s.Env {
		total += len(k) + len(v) + 2
		if k == "" || strings.ContainsAny(k, "=\x00") || !utf8.ValidString(k) {
			return invalid("env", "name %q must be non-empty UTF-8 without '=' or NUL", k)
		}
		if strings.IndexByte(v, 0) >= 0 {
			return invalid("env."+k, "contains a NUL byte")
		}
	}
	if total > Bounds.MaxEnvBytes {
		return invalid("env", "%d bytes exceeds the limit of %d", total, Bounds.MaxEnvBytes)
	}
	return nil
}

func (s *Spec) validateFiles() error {
	if len(s.Files) > Bounds.MaxFiles {
		return invalid("files", "%d files exceeds the limit of %d", len(s.Files), Bounds.MaxFiles)
	}
	var total int64
	seen := make(map[string]bool, len(s.Files))
	for i, f := range s.Files {
		field := fmt.Sprintf("files[%d].path", i)
		if err := ValidateWorkspacePath(f.Path); err != nil {
			return invalid(field, "%v", err)
		}
		clean := path.Clean(f.Path)
		if seen[clean] {
			return invalid(field, "%q is given twice", f.Path)
		}
		seen[clean] = true
		size := int64(len(f.Content))
		if size > Bounds.MaxFileBytes {
			return invalid(fmt.Sprintf("files[%d].content", i), "%d bytes exceeds the limit of %d", size, Bounds.MaxFileBytes)
		}
		total += size
	}
	if total > Bounds.MaxFilesBytes {
		return invalid("files", "%d bytes in all exceeds the limit of %d", total, Bounds.MaxFilesBytes)
	}
	if len(s.Collect) > Bounds.MaxOutputFiles {
		return invalid("collect", "%d paths exceeds the limit of %d", len(s.Collect), Bounds.MaxOutputFiles)
	}
	for i, p := range s.Collect {
		if err := ValidateWorkspacePath(p); err != nil {
			return invalid(fmt.Sprintf("collect[%d]", i), "%v", err)
		}
	}
	return nil
}

// ValidateWorkspacePath checks that p names a file inside a workspace: a
// relative, slash-separated UTF-8 path without "..", NUL or a trailing
// slash, at most Bounds.MaxPathBytes long.
func ValidateWorkspacePath(p string) error {
	switch {
	case p == "":
		return fmt.Errorf("is empty")
	case len(p) > Bounds.MaxPathBytes:
		return fmt.Errorf("%d bytes exceeds the limit of %d", len(p), Bounds.MaxPathBytes)
	case !utf8.ValidString(p) || strings.IndexByte(p, 0) >= 0:
		return fmt.Errorf("%q is not valid UTF-8 without NUL", p)
	case strings.HasPrefix(p, "/"):
		return fmt.Errorf("%q must be relative to the workspace", p)
	case strings.HasSuffix(p, "/"):
		return fmt.Errorf("%q must name a file", p)
	}
	for _, part := range strings.Split(p, "/") {
		if part == ".." {
			return fmt.Errorf("%q must not contain ..", p)
		}
	}
	if path.Clean(p) == "." {
		return fmt.Errorf("%q must name a file", p)
	}
	return nil
}

func (l *Limits) validate() error {
	switch {
	case l.MemoryBytes != 0 && (l.MemoryBytes < Bounds.MinMemoryBytes || l.MemoryBytes > Bounds.MaxMemoryBytes):
		return invalid("limits.memory_bytes", "%d is outside [%d, %d]", l.MemoryBytes, Bounds.MinMemoryBytes, Bounds.MaxMemoryBytes)
	case l.PIDs < 0 || l.PIDs > Bounds.MaxPIDs:
		return invalid("limits.pids", "%d is outside [1, %d]", l.PIDs, Bounds.MaxPIDs)
	case l.CPUMillis < 0 || l.CPUMillis > Bounds.MaxCPUMillis:
		return invalid("limits.cpu_millis", "%d is outside [0, %d]", l.CPUMillis, Bounds.MaxCPUMillis)
	case l.OutputBytes < 0 || l.OutputBytes > Bounds.MaxOutputBytes:
		return invalid("limits.output_bytes", "%d is outside [1, %d]", l.OutputBytes, Bounds.MaxOutputBytes)
	}
	if l.Network != "" {
		if _, err := ParseNetwork(string(l.Network)); err != nil {
			return invalid("limits.network", "%q: want none, loopback or full", l.Network)
		}
	}
	return nil
}

func invalid(field, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrInvalidSpec, field, fmt.Sprintf(format, args...))
}
