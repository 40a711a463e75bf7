// Package fake is a backend that runs scripted Go functions instead of
// programs. It exists to test the engine, the server and the CLI without a
// sandbox: every script gets the spec's stdin, environment and a real
// temporary workspace, and the backend enforces the same contract as the
// real backends (output caps, timeouts that end every "process" a script
// spawned, idempotent cleanup), so it passes the same conformance suite.
//
// A fake backend is safe for concurrent use.
package fake

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"glasshouse.dev/glasshouse/core/execution"
)

// Name is the registry name of the fake backend.
const Name = "fake"

// Proc is what a script sees: its run's inputs and outputs. Scripts must
// honour Ctx, which is cancelled when the run times out or is killed.
type Proc struct {
	Ctx    context.Context
	Args   []string
	Env    map[string]string
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
	// Dir is the run's workspace, a real directory.
	Dir string

	inst *instance
}

// Spawn runs f as another "process" of the run, like a daemon that outlives
// its parent: the run is not over until f returns, and a timeout or Cleanup
// cancels its context.
func (p *Proc) Spawn(f func(ctx context.Context)) {
	p.inst.live.Add(1)
	p.inst.procs.Add(1)
	go func() {
		defer p.inst.procs.Done()
		defer p.inst.live.Add(-1)
		f(p.inst.killCtx)
	}()
}

// Exit is how a script ends: an exit code, or a signal name.
type Exit struct {
	Code   int
	Signal string
}

// Script is a scripted program.
type Script func(p *Proc) Exit

// Config configures a fake backend.
type Config struct {
	// Scripts maps a program to its script. A spec is looked up by its Code
	// when it has code, else by its argv[0].
	Scripts map[string]Script
	// Isolation is what Capabilities reports; default "none".
	Isolation execution.Isolation
	// PrepareErr and StartErr, when set, make every Prepare or Start fail.
	PrepareErr, StartErr error
}

// Backend is the fake backend.
type Backend struct {
	cfg  Config
	live atomic.Int64
}

// New returns a fake backend.
func New(cfg Config) *Backend {
	if cfg.Isolation == "" {
		cfg.Isolation = execution.IsolationNone
	}
	return &Backend{cfg: cfg}
}

func init() {
	execution.Register(Name, func(execution.Options) (execution.Backend, error) {
		return New(Config{Scripts: map[string]Script{}}), nil
	})
}

// Name implements execution.Backend.
func (b *Backend) Name() string { return Name }

// Capabilities implements execution.Backend.
func (b *Backend) Capabilities() execution.Capabilities {
	return execution.Capabilities{Isolation: b.cfg.Isolation, Profiling: execution.ProfilingNone}
}

// Available implements execution.Backend; the fake is always available.
func (b *Backend) Available() error { return nil }

// Live returns the number of script "processes" still running across all
// runs; after every run is cleaned up it is 0.
func (b *Backend) Live() int64 { return b.live.Load() }

// Prepare implements execution.Backend.
func (b *Backend) Prepare(ctx context.Context, spec execution.Spec) (execution.Instance, error) {
	if b.cfg.PrepareErr != nil {
		return nil, b.cfg.PrepareErr
	}
	key := spec.Code
	if key == "" {
		key = spec.Command[0]
	}
	script, ok := b.cfg.Scripts[key]
	if !ok {
		return nil, fmt.Errorf("%w: %s", execution.ErrCommandNotFound, firstLine(key))
	}
	dir, err := os.MkdirTemp("", "glasshouse-fake-")
	if err != nil {
		return nil, fmt.Errorf("%w: create workspace: %v", execution.ErrInfrastructure, err)
	}
	inst := &instance{b: b, spec: spec, script: script, dir: dir, done: make(chan struct{})}
	if spec.Code != "" {
		spec.Files = append(spec.Files, execution.File{Path: execution.CodeFile, Content: []byte(spec.Code)})
	}
	for _, f := range spec.Files {
		p := filepath.Join(dir, filepath.FromSlash(f.Path))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err == nil {
			err = os.WriteFile(p, f.Content, 0o644)
		}
		if err != nil {
			return nil, errors.Join(fmt.Errorf("%w: write %s: %v", execution.ErrInfrastructure, f.Path, err), inst.Cleanup(ctx))
		}
	}
	return inst, nil
}

type instance struct {
	b      *Backend
	spec   execution.Spec
	script Script
	dir    string

	started atomic.Bool
	killCtx context.Context
	kill    context.CancelCauseFunc
	live    *atomic.Int64
	procs   sync.WaitGroup

	done   chan struct{}
	result execution.Result

	cleanOnce sync.Once
	cleanErr  error
}

// Causes of a run's end, recorded on its kill context.
var (
	errTimeout     = errors.New("timeout")
	errOutputLimit = errors.New("output limit")
	errKilled      = errors.New("killed")
	// errMainExited ends the "processes" a script spawned once the script
	// itself returns, as the process backend kills a run's cgroup.
	errMainExited = errors.New("main exited")
)

func (i *instance) Start(ctx context.Context) error {
	if !i.started.CompareAndSwap(false, true) {
		return execution.ErrAlreadyStarted
	}
	if i.b.cfg.StartErr != nil {
		close(i.done)
		return i.b.cfg.StartErr
	}
	i.live = &i.b.live
	i.killCtx, i.kill = context.WithCancelCause(context.Background())
	stdout := &capture{Capture: execution.Capture{Limit: i.spec.Limits.OutputBytes, Live: i.spec.Stdout}, kill: i.kill}
	stderr := &capture{Capture: execution.Capture{Limit: i.spec.Limits.OutputBytes, Live: i.spec.Stderr}, kill: i.kill}
	p := &Proc{
		Ctx:    i.killCtx,
		Args:   i.spec.Argv(),
		Env:    cloneEnv(i.spec.Env),
		Stdin:  strings.NewReader(string(i.spec.Stdin)),
		Stdout: stdout,
		Stderr: stderr,
		Dir:    i.dir,
		inst:   i,
	}
	started := time.Now()
	timer := time.AfterFunc(i.spec.Timeout, func() { i.kill(errTimeout) })
	var exit Exit
	i.live.Add(1)
	i.procs.Add(1)
	go func() {
		defer i.procs.Done()
		defer i.live.Add(-1)
		exit = i.script(p)
		i.kill(errMainExited)
	}()
	go func() {
		i.procs.Wait()
		timer.Stop()
		res := execution.Result{
			ExitCode:   exit.Code,
			Signal:     exit.Signal,
			StartedAt:  started,
			FinishedAt: time.Now(),
		}
		res.Stdout, res.StdoutTruncated = stdout.Bytes()
		res.Stderr, res.StderrTruncated = stderr.Bytes()
		switch cause := context.Cause(i.killCtx); {
		case errors.Is(cause, errMainExited):
		case errors.Is(cause, errTimeout):
			res.TimedOut, res.ExitCode, res.Signal = true, -1, "SIGKILL"
		case errors.Is(cause, errOutputLimit):
			res.OutputLimited, res.ExitCode, res.Signal = true, -1, "SIGKILL"
		default:
			res.ExitCode, res.Signal = -1, "SIGKILL"
		}
		res.Files = i.collect()
		i.result = res
		close(i.done)
	}()
	return nil
}

func (i *instance) Wait(ctx context.Context) (execution.Result, error) {
	if !i.started.Load() {
		return execution.Result{}, execution.ErrNotStarted
	}
	select {
	case <-i.done:
		return i.result, nil
	case <-ctx.Done():
		if i.kill != nil {
			i.kill(errKilled)
		}
		<-i.done
		res := i.result
		res.Err = fmt.Errorf("wait: %w", ctx.Err())
		return res, res.Err
	}
}

func (i *instance) Cleanup(context.Context) error {
	i.cleanOnce.Do(func() {
		if i.kill != nil {
			i.kill(errKilled)
			<-i.done
		}
		i.cleanErr = os.RemoveAll(i.dir)
	})
	return i.cleanErr
}

func (i *instance) collect() []execution.File {
	var out []execution.File
	for _, p := range i.spec.Collect {
		b, err := os.ReadFile(filepath.Join(i.dir, filepath.FromSlash(p)))
		if err != nil {
			continue
		}
		out = append(out, execution.File{Path: p, Content: b})
	}
	sort.Slice(out, func(a, b int) bool { return out[a].Path < out[b].Path })
	return out
}

// capture is the io.Writer a script writes its output to: an
// execution.Capture that kills the run when more than the limit is
// written.
type capture struct {
	execution.Capture
	kill context.CancelCauseFunc
}

func (c *capture) Write(p []byte) (int, error) {
	if !c.Add(p) {
		c.kill(errOutputLimit)
		return 0, errOutputLimit
	}
	return len(p), nil
}

func cloneEnv(env map[string]string) map[string]string {
	out := make(map[string]string, len(env))
	for k, v := range env {
		out[k] = v
	}
	return out
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i] + "..."
	}
	return s
}
