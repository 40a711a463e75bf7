package execution

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"time"

	"github.com/google/uuid"

	"glasshouse.dev/glasshouse/core/profiling"
	"glasshouse.dev/glasshouse/core/receipt"
	"glasshouse.dev/glasshouse/core/version"
)

// Evaluator evaluates a policy over a receipt at run time; its result becomes
// the receipt's policy section. core/policy implements it.
type Evaluator interface {
	Evaluate(r *receipt.Receipt) (*receipt.Policy, error)
}

// Config configures an Engine.
type Config struct {
	// Backend runs the workloads. Required.
	Backend Backend
	// Profiler observes runs of backends whose instances expose a host
	// cgroup (ProfilingHostCgroup). Nil means such runs cannot be profiled.
	Profiler profiling.Controller
	// Caps bound the receipt's sections; zero fields take defaults.
	Caps receipt.Caps
	// Logger receives one line per run. Nil discards.
	Logger *slog.Logger
}

// Validate checks the configuration.
func (c *Config) Validate() error {
	if c.Backend == nil {
		return errors.New("engine config: no backend")
	}
	return nil
}

// Engine runs specs on one backend and turns what happened into receipts. It
// is safe for concurrent use; each Run is independent.
type Engine struct {
	cfg  Config
	log  *slog.Logger
	host receipt.Host
}

// New returns an engine for cfg.
func New(cfg Config) (*Engine, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Engine{
		cfg:  cfg,
		log:  log.With("backend", cfg.Backend.Name()),
		host: receipt.Host{Kernel: kernelRelease(), Arch: runtime.GOARCH, GlasshouseVersion: version.Version},
	}, nil
}

// Backend returns the engine's backend.
func (e *Engine) Backend() Backend { return e.cfg.Backend }

// Run is a finished run: the sealed receipt and the backend's result, which
// carries the captured output.
type Run struct {
	Receipt *receipt.Receipt
	Result  Result
}

// RunOption adjusts one run.
type RunOption func(*runOptions)

type runOptions struct {
	id        string
	evaluator Evaluator
	started   func(id string)
}

// WithID sets the run's id instead of a fresh UUIDv7. Callers that record a
// run before it finishes (a server's store) use it.
func WithID(id string) RunOption { return func(o *runOptions) { o.id = id } }

// WithPolicy evaluates ev over the receipt before it is sealed.
func WithPolicy(ev Evaluator) RunOption { return func(o *runOptions) { o.evaluator = ev } }

// OnStarted calls f just before the workload starts.
func OnStarted(f func(id string)) RunOption { return func(o *runOptions) { o.started = f } }

// NewID returns a fresh, time-sortable run id (UUIDv7).
func NewID() string {
	id, err := uuid.NewV7()
	if err != nil {
		return uuid.NewString()
	}
	return id.String()
}

// Run validates spec, runs it and returns its sealed receipt. The sequence
// is: validate → Prepare → register the profiling target → Start → Wait →
// stop profiling → aggregate → Cleanup → seal. The target is registered
// before Start, so the workload's first instruction is already observed.
//
// Run returns an error, and no receipt, only when the request itself is at
// fault or cannot be honoured: ErrInvalidSpec, ErrCommandNotFound, or
// profiling.ErrUnavailable in required mode. Every other failure, including
// the backend's, yields a receipt whose outcome says "infrastructure".
func (e *Engine) Run(ctx context.Context, spec Spec, opts ...RunOption) (*Run, error) {
	var o runOptions
	for _, opt := range opts {
		opt(&o)
	}
	if o.id == "" {
		o.id = NewID()
	}
	spec = spec.WithDefaults()
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	b := e.cfg.Backend
	caps := b.Capabilities()
	log := e.log.With("run_id", o.id)

	prof := receipt.Profiling{Mode: string(spec.Profile), Status: receipt.StatusOff, Collector: receipt.CollectorNone}
	var ctrl profiling.Controller
	if spec.Profile != profiling.Off {
		switch caps.Profiling {
		case ProfilingHostCgroup:
			if e.cfg.Profiler == nil {
				prof.Reason = "no host profiler is loaded"
			} else {
				ctrl = e.cfg.Profiler
			}
		case ProfilingGuest:
			// Chosen after Prepare, from the instance.
		default:
			prof.Reason = fmt.Sprintf("backend %s cannot be profiled", b.Name())
		}
		if ctrl != nil {
			if err := ctrl.Available(); err != nil {
				ctrl, prof.Reason = nil, err.Error()
			}
		}
		if ctrl == nil && caps.Profiling != ProfilingGuest {
			if spec.Profile == profiling.Required {
				return nil, fmt.Errorf("%w: %s", profiling.ErrUnavailable, prof.Reason)
			}
			prof.Status = receipt.StatusUnavailable
		}
	}

	r := e.newReceipt(o.id, &spec, caps)
	started := time.Now()
	inst, err := b.Prepare(ctx, spec)
	if err != nil {
		if isUsageError(err) {
			return nil, err
		}
		return e.infrastructureRun(r, prof, started, fmt.Errorf("prepare: %w", err), log), nil
	}
	// Cleanup always runs, after the result is read and before sealing, so
	// that a failed teardown is recorded.
	cleanup := func() error { return inst.Cleanup(context.WithoutCancel(ctx)) }

	if spec.Profile != profiling.Off && caps.Profiling == ProfilingGuest {
		if sp, ok := inst.(SelfProfiled); ok {
			ctrl = sp.Profiler()
			if err := ctrl.Available(); err != nil {
				ctrl, prof.Reason = nil, err.Error()
			}
		} else {
			prof.Reason = fmt.Sprintf("backend %s has no guest collector", b.Name())
		}
		if ctrl == nil {
			if spec.Profile == profiling.Required {
				return nil, errors.Join(fmt.Errorf("%w: %s", profiling.ErrUnavailable, prof.Reason), cleanup())
			}
			prof.Status = receipt.StatusUnavailable
		}
	}

	agg := receipt.NewAggregator(started, e.cfg.Caps)
	var session profiling.Session
	if ctrl != nil {
		target := profiling.Target{RunID: o.id}
		if t, ok := inst.(Targeted); ok {
			target = t.ProfilingTarget()
			target.RunID = o.id
		}
		session, err = ctrl.Start(ctx, target, agg)
		if err != nil {
			if spec.Profile == profiling.Required {
				return nil, errors.Join(fmt.Errorf("%w: start %s: %v", profiling.ErrUnavailable, ctrl.Collector(), err), cleanup())
			}
			prof.Status, prof.Reason = receipt.StatusUnavailable, fmt.Sprintf("start %s: %v", ctrl.Collector(), err)
			session = nil
		} else {
			prof.Collector = ctrl.Collector()
			if d, ok := inst.(Describer); ok {
				d.DescribeTo(agg)
			}
		}
	}

	if o.started != nil {
		o.started(o.id)
	}
	if err := inst.Start(ctx); err != nil {
		stopErr := stopSession(ctx, session)
		cerr := cleanup()
		if isUsageError(err) {
			return nil, errors.Join(err, stopErr, cerr)
		}
		res := Result{Err: fmt.Errorf("start: %w", errors.Join(err, cerr))}
		return e.finish(r, prof, res, started, log, nil), nil
	}
	res, werr := inst.Wait(ctx)
	if werr != nil && res.Err == nil {
		res.Err = werr
	}

	if session != nil {
		rep, err := session.Stop(context.WithoutCancel(ctx))
		prof.Events = agg.Events()
		prof.Dropped = rep.Dropped
		switch {
		case err != nil:
			prof.Status, prof.Reason = receipt.StatusPartial, fmt.Sprintf("stop %s: %v", prof.Collector, err)
		case rep.Dropped > 0:
			prof.Status, prof.Reason = receipt.StatusPartial, fmt.Sprintf("%d events were lost in the kernel buffer", rep.Dropped)
		case len(rep.Blind) > 0:
			prof.Status, prof.Reason = receipt.StatusPartial, joinLimited(rep.Blind, 8)
		default:
			prof.Status = receipt.StatusComplete
		}
		ps, fs, ns, omitted := agg.Sections()
		r.Processes, r.Files, r.Network = ps, fs, ns
		prof.Omitted = omitted
		if omitted.Total() > 0 && prof.Reason == "" {
			prof.Reason = fmt.Sprintf("%d entries omitted to bound the receipt", omitted.Total())
		}
	}
	if err := cleanup(); err != nil {
		res.Notes = append(res.Notes, "cleanup: "+err.Error())
		log.Warn("cleanup failed", "err", err)
	}
	return e.finish(r, prof, res, started, log, o.evaluator), nil
}

func stopSession(ctx context.Context, s profiling.Session) error {
	if s == nil {
		return nil
	}
	_, err := s.Stop(context.WithoutCancel(ctx))
	return err
}

func isUsageError(err error) bool {
	return errors.Is(err, ErrInvalidSpec) || errors.Is(err, ErrCommandNotFound)
}

func (e *Engine) infrastructureRun(r *receipt.Receipt, prof receipt.Profiling, started time.Time, err error, log *slog.Logger) *Run {
	if prof.Status == receipt.StatusOff && prof.Mode != receipt.ModeOff {
		prof.Status = receipt.StatusUnavailable
	}
	return e.finish(r, prof, Result{Err: err}, started, log, nil)
}

// finish fills the outcome, output and resources of r from res, evaluates
// the policy and seals the receipt.
func (e *Engine) finish(r *receipt.Receipt, prof receipt.Profiling, res Result, started time.Time, log *slog.Logger, ev Evaluator) *Run {
	if res.StartedAt.IsZero() {
		res.StartedAt = started
	}
	if res.FinishedAt.IsZero() {
		res.FinishedAt = time.Now()
	}
	if res.Err != nil && prof.Status == receipt.StatusComplete {
		prof.Status, prof.Reason = receipt.StatusPartial, "the run failed before it finished"
	}
	if res.Err != nil && prof.Status == receipt.StatusOff && prof.Mode != receipt.ModeOff {
		prof.Status, prof.Reason = receipt.StatusUnavailable, "the run failed before observation began"
	}
	r.StartedAt = receipt.At(res.StartedAt)
	r.FinishedAt = receipt.At(res.FinishedAt)
	r.Backend.Accel = res.Accel
	r.Backend.Containment = res.Containment
	r.Backend.Notes = res.Notes
	r.Outcome = Classify(&res)
	r.Outcome.DurationMS = res.FinishedAt.Sub(res.StartedAt).Milliseconds()
	r.Output = receipt.Output{
		StdoutBytes:     int64(len(res.Stdout)),
		StderrBytes:     int64(len(res.Stderr)),
		StdoutSHA256:    receipt.SHA256Hex(res.Stdout),
		StderrSHA256:    receipt.SHA256Hex(res.Stderr),
		StdoutTruncated: res.StdoutTruncated,
		StderrTruncated: res.StderrTruncated,
	}
	for _, f := range res.Files {
		r.Output.Files = append(r.Output.Files, artifact(f))
	}
	r.Resources = receipt.Resources{
		CPUUserMS:       res.Resources.CPUUser.Milliseconds(),
		CPUSystemMS:     res.Resources.CPUSystem.Milliseconds(),
		MemoryPeakBytes: res.Resources.MemoryPeakBytes,
		PIDsPeak:        res.Resources.PIDsPeak,
		ReadBytes:       res.Resources.ReadBytes,
		WriteBytes:      res.Resources.WriteBytes,
	}
	r.Profiling = prof
	receipt.Normalize(r)
	if ev != nil {
		p, err := ev.Evaluate(r)
		if err != nil {
			p = &receipt.Policy{Verdict: receipt.VerdictDeny, Violations: []receipt.Violation{{
				Rule: "policy-error", Severity: "deny", Message: "policy evaluation failed: " + err.Error(),
			}}}
		}
		r.Policy = p
	}
	if err := receipt.Seal(r); err != nil {
		// Sealing only fails if encoding/json cannot encode the receipt's
		// own types, which is a programming error.
		panic(fmt.Sprintf("seal receipt: %v", err))
	}
	log.Info("run finished", "failure", r.Outcome.Failure, "exit_code", r.Outcome.ExitCode,
		"duration_ms", r.Outcome.DurationMS, "profiling", r.Profiling.Status)
	return &Run{Receipt: r, Result: res}
}

// Classify derives a receipt outcome from a result. Infrastructure faults
// win over everything, then limits (timeout, oom, output), then the code's
// own exit status.
func Classify(res *Result) receipt.Outcome {
	o := receipt.Outcome{
		ExitCode:  res.ExitCode,
		Signal:    res.Signal,
		TimedOut:  res.TimedOut,
		OOMKilled: res.OOMKilled,
		Failure:   receipt.FailureNone,
	}
	switch {
	case res.Err != nil:
		o.Failure, o.Error = receipt.FailureInfrastructure, res.Err.Error()
	case res.TimedOut:
		o.Failure = receipt.FailureTimeout
	case res.OOMKilled:
		o.Failure = receipt.FailureOOM
	case res.OutputLimited:
		o.Failure = receipt.FailureOutputLimit
	case res.ExitCode != 0 || res.Signal != "":
		o.Failure = receipt.FailureCode
	}
	return o
}

func (e *Engine) newReceipt(id string, spec *Spec, caps Capabilities) *receipt.Receipt {
	r := &receipt.Receipt{
		ID: id,
		Subject: receipt.Subject{
			Argv:     append([]string(nil), spec.Argv()...),
			Language: spec.Language,
		},
		Backend: receipt.Backend{
			Name:      e.cfg.Backend.Name(),
			Isolation: string(caps.Isolation),
			Version:   backendVersion(e.cfg.Backend),
		},
		Host: e.host,
		Limits: receipt.Limits{
			TimeoutMS:   spec.Timeout.Milliseconds(),
			MemoryBytes: spec.Limits.MemoryBytes,
			PIDs:        spec.Limits.PIDs,
			CPUMillis:   spec.Limits.CPUMillis,
			OutputBytes: spec.Limits.OutputBytes,
			Network:     string(spec.Limits.Network),
		},
	}
	if spec.Code != "" {
		r.Subject.CodeSHA256 = receipt.SHA256Hex([]byte(spec.Code))
	}
	for _, f := range spec.Files {
		r.Subject.Files = append(r.Subject.Files, artifact(f))
	}
	return r
}

// Versioned is implemented by backends that report their own version (a
// VMM's or runtime's), recorded as backend.version in receipts.
type Versioned interface {
	Version() string
}

func backendVersion(b Backend) string {
	if v, ok := b.(Versioned); ok {
		return v.Version()
	}
	return version.Version
}

func artifact(f File) receipt.Artifact {
	return receipt.Artifact{Path: f.Path, SHA256: receipt.SHA256Hex(f.Content), Bytes: int64(len(f.Content))}
}

func joinLimited(lines []string, n int) string {
	s := ""
	for i, l := range lines {
		if i == n {
			return s + fmt.Sprintf("; and %d more", len(lines)-n)
		}
		if i > 0 {
			s += "; "
		}
		s += l
	}
	return s
}
