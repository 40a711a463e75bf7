package server

import (
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"glasshouse.dev/glasshouse/core/execution"
	"glasshouse.dev/glasshouse/core/profiling"
)

// RunRequest is the body of POST /run and each entry of a batch.
type RunRequest struct {
	Code     string            `json:"code"`
	Language string            `json:"language"`
	Files    []FileInput       `json:"files"`
	Stdin    string            `json:"stdin"`
	Env      map[string]string `json:"env"`
	// TimeoutMS is the run's wall-clock budget; 0 takes the server's
	// default, and more than the server's maximum is refused.
	TimeoutMS int64        `json:"timeout_ms"`
	Limits    *LimitsInput `json:"limits"`
	// Network is "none" (default), "loopback" or "full".
	Network string `json:"network"`
	// Profile is "off", "best-effort" or "required"; default the server's.
	Profile string `json:"profile"`
	// Policy is a built-in pack name (comma-separated list allowed) or
	// inline YAML.
	Policy  string       `json:"policy"`
	Expect  *ExpectInput `json:"expect"`
	Backend string       `json:"backend"`
}

// FileInput is a file placed in the run's workspace.
type FileInput struct {
	Path          string `json:"path"`
	ContentBase64 string `json:"content_base64"`
	Executable    bool   `json:"executable"`
}

// LimitsInput are the run's resource limits; zero fields take defaults.
type LimitsInput struct {
	MemoryBytes int64 `json:"memory_bytes"`
	PIDs        int64 `json:"pids"`
	CPUMillis   int64 `json:"cpu_millis"`
	OutputBytes int64 `json:"output_bytes"`
}

// ExpectInput is what the caller expects, for training signals.
type ExpectInput struct {
	Stdout *string `json:"stdout"`
}

// BatchRequest is the body of POST /runs.
type BatchRequest struct {
	Runs []RunRequest `json:"runs"`
	// Parallelism bounds how many of the batch's runs execute at once;
	// default and maximum the server's concurrency.
	Parallelism int `json:"parallelism"`
}

// runShape returns the strict shape of a RunRequest under l.
func runShape(l *Limits) *shape {
	return &shape{kind: "object", fields: map[string]*shape{
		"code":     str(),
		"language": str(),
		"files": {kind: "array", max: l.MaxFiles, elem: &shape{kind: "object", fields: map[string]*shape{
			"path": str(), "content_base64": str(), "executable": boolean(),
		}}},
		"stdin":      str(),
		"env":        {kind: "object", anyKeys: true, values: str(), max: l.MaxEnv},
		"timeout_ms": integer(),
		"limits": {kind: "object", fields: map[string]*shape{
			"memory_bytes": integer(), "pids": integer(), "cpu_millis": integer(), "output_bytes": integer(),
		}},
		"network": str(),
		"profile": str(),
		"policy":  str(),
		"expect":  {kind: "object", fields: map[string]*shape{"stdout": str()}},
		"backend": str(),
	}}
}

func batchShape(l *Limits) *shape {
	return &shape{kind: "object", fields: map[string]*shape{
		"runs":        {kind: "array", max: l.MaxBatch, elem: runShape(l)},
		"parallelism": integer(),
	}}
}

// readBody reads at most limit bytes of the request body; a longer body
// gets 413.
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, *Error) {
	if r.ContentLength > limit {
		return nil, fieldErr(http.StatusRequestEntityTooLarge, "body", limit, "is %d bytes, more than the limit of %d", r.ContentLength, limit)
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, fieldErr(http.StatusRequestEntityTooLarge, "body", limit, "is more than the limit of %d bytes", limit)
		}
		return nil, fieldErr(http.StatusBadRequest, "body", nil, "could not be read: %v", err)
	}
	return body, nil
}

// DecodeRun parses a POST /run body strictly under l. It is what the fuzz
// target exercises: it must never panic and must bound every allocation
// by the body's size.
func DecodeRun(body []byte, l *Limits) (*RunRequest, *Error) {
	if e := checkText(body); e != nil {
		return nil, e
	}
	if e := checkStrict(body, runShape(l)); e != nil {
		return nil, e
	}
	var req RunRequest
	if e := unmarshalStrict(body, &req); e != nil {
		return nil, e
	}
	return &req, nil
}

// DecodeBatch parses a POST /runs body strictly under l.
func DecodeBatch(body []byte, l *Limits) (*BatchRequest, *Error) {
	if e := checkText(body); e != nil {
		return nil, e
	}
	if e := checkStrict(body, batchShape(l)); e != nil {
		return nil, e
	}
	var req BatchRequest
	if e := unmarshalStrict(body, &req); e != nil {
		return nil, e
	}
	if len(req.Runs) == 0 {
		return nil, fieldErr(http.StatusBadRequest, "runs", nil, "must hold at least one run")
	}
	return &req, nil
}

// Plan is a validated request: the spec to run and what to do around it.
type Plan struct {
	Spec    execution.Spec
	Backend string // "" for the server's default
	Policy  string
	Expect  *string
}

// Validate checks every field of req against l and returns the plan.
// defaultProfile applies when req gives none. Size violations get 413,
// everything else 400; errors name the field (prefixed by prefix, as in
// "runs[3].") and the limit.
func (req *RunRequest) Validate(l *Limits, defaultProfile profiling.Mode, prefix string) (*Plan, *Error) {
	p, e := req.validate(l, defaultProfile)
	if e != nil && e.Field != "" && e.Field != "body" {
		e.Field = prefix + e.Field
	}
	return p, e
}

func (req *RunRequest) validate(l *Limits, defaultProfile profiling.Mode) (*Plan, *Error) {
	const bad, big = http.StatusBadRequest, http.StatusRequestEntityTooLarge
	spec := execution.Spec{Code: req.Code, Language: req.Language}
	if req.Code == "" {
		return nil, fieldErr(bad, "code", nil, "is required")
	}
	if len(req.Code) > l.MaxCodeBytes {
		return nil, fieldErr(big, "code", l.MaxCodeBytes, "is %d bytes, more than the limit of %d", len(req.Code), l.MaxCodeBytes)
	}
	if spec.Language == "" {
		spec.Language = execution.LanguagePython
	}
	if spec.Language != execution.LanguagePython {
		return nil, fieldErr(bad, "language", nil, "%q is not supported; want %q", truncate(spec.Language), execution.LanguagePython)
	}

	if len(req.Files) > l.MaxFiles {
		return nil, fieldErr(bad, "files", l.MaxFiles, "has %d files, more than the limit of %d", len(req.Files), l.MaxFiles)
	}
	var total int64
	for i, f := range req.Files {
		if err := execution.ValidateWorkspacePath(f.Path); err != nil {
			return nil, fieldErr(bad, fmt.Sprintf("files[%d].path", i), execution.Bounds.MaxPathBytes, "%v", err)
		}
		field := fmt.Sprintf("files[%d].content_base64", i)
		if n := int64(base64.StdEncoding.DecodedLen(len(f.ContentBase64))); n > l.MaxFileBytes+2 {
			return nil, fieldErr(big, field, l.MaxFileBytes, "decodes to about %d bytes, more than the limit of %d", n, l.MaxFileBytes)
		}
		content, err := base64.StdEncoding.Strict().DecodeString(f.ContentBase64)
		if err != nil {
			return nil, fieldErr(bad, field, nil, "is not standard padded base64: %v", err)
		}
		if int64(len(content)) > l.MaxFileBytes {
			return nil, fieldErr(big, field, l.MaxFileBytes, "decodes to %d bytes, more than the limit of %d", len(content), l.MaxFileBytes)
		}
		total += int64(len(content))
		if total > l.MaxFilesBytes {
			return nil, fieldErr(big, "files", l.MaxFilesBytes, "hold more than the limit of %d bytes in all", l.MaxFilesBytes)
		}
		spec.Files = append(spec.Files, execution.File{Path: f.Path, Content: content, Executable: f.Executable})
	}

	if len(req.Stdin) > l.MaxStdinBytes {
		return nil, fieldErr(big, "stdin", l.MaxStdinBytes, "is %d bytes, more than the limit of %d", len(req.Stdin), l.MaxStdinBytes)
	}
	if req.Stdin != "" {
		spec.Stdin = []byte(req.Stdin)
	}

	if len(req.Env) > l.MaxEnv {
		return nil, fieldErr(bad, "env", l.MaxEnv, "has %d variables, more than the limit of %d", len(req.Env), l.MaxEnv)
	}
	envBytes := 0
	for k, v := range req.Env {
		envBytes += len(k) + len(v) + 2
	}
	if envBytes > l.MaxEnvBytes {
		return nil, fieldErr(big, "env", l.MaxEnvBytes, "is %d bytes, more than the limit of %d", envBytes, l.MaxEnvBytes)
	}
	spec.Env = req.Env

	maxMS := l.MaxTimeout.Milliseconds()
	switch {
	case req.TimeoutMS < 0 || req.TimeoutMS > maxMS:
		return nil, fieldErr(bad, "timeout_ms", maxMS, "%d is outside [1, %d]", req.TimeoutMS, maxMS)
	case req.TimeoutMS == 0:
		spec.Timeout = l.DefaultTimeout
	default:
		spec.Timeout = time.Duration(req.TimeoutMS) * time.Millisecond
	}

	if li := req.Limits; li != nil {
		b := execution.Bounds
		switch {
		case li.MemoryBytes != 0 && (li.MemoryBytes < b.MinMemoryBytes || li.MemoryBytes > l.MaxMemoryBytes):
			return nil, fieldErr(bad, "limits.memory_bytes", l.MaxMemoryBytes, "%d is outside [%d, %d]", li.MemoryBytes, b.MinMemoryBytes, l.MaxMemoryBytes)
		case li.PIDs < 0 || li.PIDs > l.MaxPIDs:
			return nil, fieldErr(bad, "limits.pids", l.MaxPIDs, "%d is outside [1, %d]", li.PIDs, l.MaxPIDs)
		case li.CPUMillis < 0 || li.CPUMillis > l.MaxCPUMillis:
			return nil, fieldErr(bad, "limits.cpu_millis", l.MaxCPUMillis, "%d is outside [0, %d]", li.CPUMillis, l.MaxCPUMillis)
		case li.OutputBytes < 0 || li.OutputBytes > l.MaxOutputBytes:
			return nil, fieldErr(bad, "limits.output_bytes", l.MaxOutputBytes, "%d is outside [1, %d]", li.OutputBytes, l.MaxOutputBytes)
		}
		spec.Limits = execution.Limits{MemoryBytes: li.MemoryBytes, PIDs: li.PIDs, CPUMillis: li.CPUMillis, OutputBytes: li.OutputBytes}
	}
	if req.Network != "" {
		n, err := execution.ParseNetwork(req.Network)
		if err != nil {
			return nil, fieldErr(bad, "network", nil, "%q: want none, loopback or full", truncate(req.Network))
		}
		spec.Limits.Network = n
	}

	spec.Profile = defaultProfile
	if req.Profile != "" {
		m, err := profiling.ParseMode(req.Profile)
		if err != nil {
			return nil, fieldErr(bad, "profile", nil, "%q: want off, best-effort or required", truncate(req.Profile))
		}
		spec.Profile = m
	}

	if len(req.Policy) > l.MaxPolicyBytes {
		return nil, fieldErr(big, "policy", l.MaxPolicyBytes, "is %d bytes, more than the limit of %d", len(req.Policy), l.MaxPolicyBytes)
	}
	plan := &Plan{Policy: req.Policy}
	if req.Expect != nil && req.Expect.Stdout != nil {
		if len(*req.Expect.Stdout) > l.MaxExpectBytes {
			return nil, fieldErr(big, "expect.stdout", l.MaxExpectBytes, "is %d bytes, more than the limit of %d", len(*req.Expect.Stdout), l.MaxExpectBytes)
		}
		plan.Expect = req.Expect.Stdout
	}
	switch {
	case req.Backend == "" || req.Backend == "auto":
	case len(req.Backend) > 64:
		return nil, fieldErr(bad, "backend", 64, "is %d bytes, more than the limit of 64", len(req.Backend))
	default:
		plan.Backend = req.Backend
	}

	if err := spec.Validate(); err != nil {
		return nil, specError(err)
	}
	plan.Spec = spec
	return plan, nil
}

// specFields maps execution.Spec field names to request field names.
var specFields = map[string]string{
	"command":        "code",
	"timeout":        "timeout_ms",
	"limits.network": "network",
}

// specError turns an execution.ErrInvalidSpec error ("invalid spec: FIELD:
// message") into a 400 naming the request's field.
func specError(err error) *Error {
	msg := strings.TrimPrefix(err.Error(), execution.ErrInvalidSpec.Error()+": ")
	field, rest, ok := strings.Cut(msg, ": ")
	if !ok || strings.ContainsAny(field, " \"") {
		return fieldErr(http.StatusBadRequest, "", nil, "%s", msg)
	}
	if f, ok := specFields[field]; ok {
		field = f
	}
	if strings.HasPrefix(field, "files[") && strings.HasSuffix(field, "].content") {
		field += "_base64"
	}
	return fieldErr(http.StatusBadRequest, field, nil, "%s", rest)
}

// truncate shortens a client-supplied value quoted back in an error.
func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}
