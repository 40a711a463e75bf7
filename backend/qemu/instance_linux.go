//go:build linux

package qemu

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"glasshouse.dev/glasshouse/core/execution"
	"glasshouse.dev/glasshouse/core/profiling"
	"glasshouse.dev/glasshouse/guest/transport"
)

// baseEnv is the minimal environment every workload gets under its spec's
// own variables. Nothing else from the host reaches the guest.
var baseEnv = map[string]string{
	"PATH": "/usr/local/bin:/usr/bin:/bin",
	"HOME": "/workspace",
	"LANG": "C.UTF-8",
}

// maxEvents bounds the events taken from one guest; more are counted as
// dropped.
const maxEvents = 1 << 20

// stdinChunk is the size of stdin frames.
const stdinChunk = 64 << 10

// instance is one run in one VM.
type instance struct {
	b      *Backend
	spec   execution.Spec
	m      *machine
	phases Phases

	started atomic.Bool
	// sink receives guest events when a profiling session was started
	// before Start.
	sink    profiling.Sink
	profile bool

	stdout, stderr *execution.Capture
	startTime      time.Time

	killOnce sync.Once
	// stopped is set when the host itself ended the VM (cancellation,
	// cleanup): the lost connection that follows is no guest failure.
	stopped atomic.Bool
	timers  []*time.Timer
	abortMu sync.Mutex
	aborted error

	done    chan struct{}
	result  execution.Result
	doneMsg *transport.Done
	events  int64
	dropped int64

	cleanOnce sync.Once
	cleanErr  error
}

func newInstance(b *Backend, spec execution.Spec, m *machine, warm bool) *instance {
	i := &instance{b: b, spec: spec, m: m, phases: m.phases, done: make(chan struct{})}
	i.phases.Warm = warm
	i.stdout = &execution.Capture{Limit: spec.Limits.OutputBytes, Live: spec.Stdout}
	i.stderr = &execution.Capture{Limit: spec.Limits.OutputBytes, Live: spec.Stderr}
	return i
}

// Phases returns how long each step of the run took. It is complete after
// Wait returns.
func (i *instance) Phases() Phases {
	<-i.done
	return i.phases
}

// env is the workload's environment: the base, then the spec's variables.
func (i *instance) env() []string {
	env := maps.Clone(baseEnv)
	maps.Copy(env, i.spec.Env)
	out := make([]string, 0, len(env))
	for _, k := range slices.Sorted(maps.Keys(env)) {
		out = append(out, k+"="+env[k])
	}
	return out
}

// Start implements execution.Instance: it sends the workspace files and the
// run to the guest and returns once the guest started the workload. A
// missing program gives execution.ErrCommandNotFound; a guest that does not
// answer within the spec's timeout, execution.ErrInfrastructure.
func (i *instance) Start(ctx context.Context) error {
	if !i.started.CompareAndSwap(false, true) {
		return execution.ErrAlreadyStarted
	}
	err := i.start(ctx)
	if err != nil {
		i.kill()
		i.finish(execution.Result{Err: err})
	}
	return err
}

func (i *instance) start(ctx context.Context) error {
	conn := i.m.conn
	sctx, cancel := context.WithTimeout(ctx, i.spec.Timeout)
	defer cancel()
	stop := context.AfterFunc(sctx, func() { conn.Close() })
	defer stop()
	wrap := func(what string, err error) error {
		if sctx.Err() != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("%s: %w", what, ctx.Err())
			}
			err = fmt.Errorf("guest did not answer within %s", i.spec.Timeout)
		}
		return i.m.fail(what, err)
	}

	files := i.spec.Files
	if i.spec.Code != "" {
		files = append(slices.Clone(files), execution.File{Path: execution.CodeFile, Content: []byte(i.spec.Code)})
	}
	for _, f := range files {
		if err := conn.SendFile(f.Path, f.Content, f.Executable, false); err != nil {
			return wrap("send file "+f.Path, err)
		}
	}
	run := &transport.Run{
		Argv:         i.spec.Argv(),
		Env:          i.env(),
		Stdin:        len(i.spec.Stdin) > 0,
		TimeoutMS:    max(i.spec.Timeout.Milliseconds(), 1),
		MemoryBytes:  i.spec.Limits.MemoryBytes,
		PIDs:         i.spec.Limits.PIDs,
		CPUMillis:    i.spec.Limits.CPUMillis,
		OutputBytes:  i.spec.Limits.OutputBytes,
		Network:      string(i.spec.Limits.Network),
		Profile:      i.profile,
		Collect:      i.spec.Collect,
		CollectBytes: execution.Bounds.MaxCollectBytes,
		HostTimeNS:   time.Now().UnixNano(),
	}
	i.startTime = time.Now()
	if err := conn.Send(run); err != nil {
		return wrap("send run", err)
	}
	if run.Stdin {
		go i.sendStdin()
	}
	f, err := conn.ReadFrame()
	if err != nil {
		return wrap("wait for the workload to start", err)
	}
	switch f.Type {
	case transport.TypeStarted:
		var s transport.Started
		if err := transport.Decode(f, &s); err != nil {
			return i.m.fail("start", err)
		}
	case transport.TypeError:
		var e transport.Error
		if err := transport.Decode(f, &e); err != nil {
			return i.m.fail("start", err)
		}
		if e.Code == transport.CodeCommandNotFound {
			return fmt.Errorf("%w: %s", execution.ErrCommandNotFound, e.Message)
		}
		return i.m.fail("start", fmt.Errorf("guest: %s", e.Message))
	default:
		return i.m.fail("start", fmt.Errorf("unexpected %s frame", f.Type))
	}
	if !stop() {
		return wrap("start", errors.New("the transport closed"))
	}
	i.phases.Started = time.Since(i.startTime)
	// The guest enforces the timeout itself; the host asks it again at the
	// deadline and gives up on it a grace period later.
	i.timers = append(i.timers,
		time.AfterFunc(i.spec.Timeout, func() { _ = conn.Send(&transport.Kill{Reason: "timeout"}) }),
		time.AfterFunc(i.spec.Timeout+i.b.cfg.KillGrace, func() {
			i.abort(fmt.Errorf("guest did not report within %s of the %s timeout", i.b.cfg.KillGrace, i.spec.Timeout))
		}))
	go i.read()
	return nil
}

func (i *instance) sendStdin() {
	data := i.spec.Stdin
	for len(data) > 0 {
		n := min(len(data), stdinChunk)
		if err := i.m.conn.WriteFrame(transport.TypeStdin, data[:n]); err != nil {
			return
		}
		data = data[n:]
	}
	_ = i.m.conn.WriteFrame(transport.TypeStdin, nil)
}

// abort gives up on the guest: it records why, for read to report
// instead of the closed connection that follows, and destroys the VM.
func (i *instance) abort(err error) {
	i.abortMu.Lock()
	if i.aborted == nil {
		i.aborted = i.m.fail("run", err)
	}
	i.abortMu.Unlock()
	i.kill()
}

func (i *instance) abortErr() error {
	i.abortMu.Lock()
	defer i.abortMu.Unlock()
	return i.aborted
}

// kill destroys the VM's QEMU process; the transport closes with it.
func (i *instance) kill() {
	i.killOnce.Do(func() {
		if i.m.cmd != nil && i.m.cmd.Process != nil && i.m.Alive() {
			_ = i.m.cmd.Process.Kill()
		}
		i.m.conn.Close()
	})
}

// read consumes the guest's frames until Done or until the guest is lost,
// then finishes the run.
func (i *instance) read() {
	var (
		exit  *transport.Exit
		files = map[string]*collected{}
		order []string
		total int64
	)
	res := execution.Result{StartedAt: i.startTime}
	for {
		f, err := i.m.conn.ReadFrame()
		if err != nil {
			if aerr := i.abortErr(); aerr != nil {
				res.Err = aerr
			} else if i.stopped.Load() {
				res.Err = fmt.Errorf("%w: vm %s stopped by the host", execution.ErrInfrastructure, i.m.id)
			} else {
				res.Err = i.m.fail("run", fmt.Errorf("guest connection lost: %w", err))
			}
			break
		}
		if f.Type == transport.TypeDone {
			var d transport.Done
			if err := transport.Decode(f, &d); err != nil {
				res.Err = i.m.fail("run", err)
			} else if exit == nil {
				res.Err = i.m.fail("run", errors.New("guest finished without an exit status"))
			}
			i.doneMsg = &d
			break
		}
		if err := i.handle(f, &exit, files, &order, &total); err != nil {
			res.Err = i.m.fail("run", err)
			break
		}
	}
	res.FinishedAt = time.Now()
	for _, t := range i.timers {
		t.Stop()
	}
	// The run is over: its whole "process tree" is the VM.
	killed := time.Now()
	i.kill()
	<-i.m.exited
	i.phases.Teardown = time.Since(killed)
	if exit != nil {
		i.fill(&res, exit)
	}
	var outCut, errCut bool
	res.Stdout, outCut = i.stdout.Bytes()
	res.Stderr, errCut = i.stderr.Bytes()
	res.StdoutTruncated = res.StdoutTruncated || outCut
	res.StderrTruncated = res.StderrTruncated || errCut
	if outCut || errCut {
		res.OutputLimited = true
	}
	for _, p := range order {
		if c := files[p]; c.complete {
			res.Files = append(res.Files, execution.File{Path: p, Content: c.data, Executable: c.exec})
			if c.truncated {
				res.Notes = append(res.Notes, "collected file "+p+" was truncated to the collect limit")
			}
		}
	}
	sort.Slice(res.Files, func(a, b int) bool { return res.Files[a].Path < res.Files[b].Path })
	i.phases.Total = res.FinishedAt.Sub(i.startTime)
	i.finish(res)
}

type collected struct {
	data                      []byte
	exec, truncated, complete bool
}

// handle processes one frame of a running workload.
func (i *instance) handle(f transport.Frame, exit **transport.Exit, files map[string]*collected, order *[]string, total *int64) error {
	switch f.Type {
	case transport.TypeStdout, transport.TypeStderr:
		c := i.stdout
		if f.Type == transport.TypeStderr {
			c = i.stderr
		}
		if !c.Add(f.Payload) {
			// The guest should have stopped the run itself.
			_ = i.m.conn.Send(&transport.Kill{Reason: "output"})
		}
	case transport.TypeEvents:
		var ev transport.Events
		if err := transport.Decode(f, &ev); err != nil {
			return err
		}
		for k := range ev.Events {
			if i.sink == nil || i.events >= maxEvents {
				i.dropped++
				continue
			}
			i.sink.Add(&ev.Events[k])
			i.events++
		}
	case transport.TypeExit:
		var e transport.Exit
		if err := transport.Decode(f, &e); err != nil {
			return err
		}
		if *exit != nil {
			return errors.New("guest sent two exit statuses")
		}
		*exit = &e
	case transport.TypeFile:
		c, err := transport.DecodeFileChunk(f)
		if err != nil {
			return err
		}
		if !slices.Contains(i.spec.Collect, c.Path) {
			return fmt.Errorf("guest returned %q, which was not asked for", c.Path)
		}
		col := files[c.Path]
		if col == nil {
			col = &collected{}
			files[c.Path] = col
			*order = append(*order, c.Path)
		}
		if col.complete {
			return fmt.Errorf("guest returned %q twice", c.Path)
		}
		*total += int64(len(c.Data))
		if *total > execution.Bounds.MaxCollectBytes {
			return fmt.Errorf("guest returned more than %d bytes of files", execution.Bounds.MaxCollectBytes)
		}
		col.data = append(col.data, c.Data...)
		col.exec, col.truncated, col.complete = c.Executable, c.Truncated, c.Last
	case transport.TypeError:
		var e transport.Error
		if err := transport.Decode(f, &e); err != nil {
			return err
		}
		return fmt.Errorf("guest: %s", e.Message)
	default:
		return fmt.Errorf("unexpected %s frame during a run", f.Type)
	}
	return nil
}

// fill copies the guest's exit report into res.
func (i *instance) fill(res *execution.Result, e *transport.Exit) {
	res.ExitCode, res.Signal = e.ExitCode, e.Signal
	res.TimedOut, res.OOMKilled, res.OutputLimited = e.TimedOut, e.OOMKilled, e.OutputLimited
	if res.TimedOut || res.OutputLimited {
		// The guest killed the workload; report it the way host backends do.
		if res.Signal == "" {
			res.ExitCode, res.Signal = -1, "SIGKILL"
		}
	}
	res.StdoutTruncated, res.StderrTruncated = e.StdoutTruncated, e.StderrTruncated
	res.Resources = execution.Resources{
		CPUUser:         time.Duration(e.CPUUserUS) * time.Microsecond,
		CPUSystem:       time.Duration(e.CPUSystemUS) * time.Microsecond,
		MemoryPeakBytes: e.MemoryPeakBytes,
		PIDsPeak:        e.PIDsPeak,
		ReadBytes:       e.ReadBytes,
		WriteBytes:      e.WriteBytes,
	}
	res.Notes = append(res.Notes, e.Notes...)
	i.phases.GuestStart = time.Duration(e.StartNS)
	i.phases.Run = time.Duration(e.RunNS)
}

func (i *instance) finish(res execution.Result) {
	res.Accel = i.m.accel
	res.Containment = "vm"
	if i.dropped > 0 && i.sink != nil {
		res.Notes = append(res.Notes, fmt.Sprintf("%d guest events over the limit of %d were dropped", i.dropped, maxEvents))
	}
	i.result = res
	close(i.done)
}

// Wait implements execution.Instance. Cancelling ctx destroys the VM.
func (i *instance) Wait(ctx context.Context) (execution.Result, error) {
	if !i.started.Load() {
		return execution.Result{}, execution.ErrNotStarted
	}
	select {
	case <-i.done:
		return i.result, nil
	case <-ctx.Done():
		i.stopped.Store(true)
		i.kill()
		<-i.done
		res := i.result
		res.Err = fmt.Errorf("%w: wait: %w", execution.ErrInfrastructure, ctx.Err())
		return res, res.Err
	}
}

// Cleanup implements execution.Instance: it destroys the VM and removes its
// directory. It ignores ctx and is idempotent.
func (i *instance) Cleanup(context.Context) error {
	i.cleanOnce.Do(func() {
		for _, t := range i.timers {
			t.Stop()
		}
		if i.started.Load() {
			i.stopped.Store(true)
			i.kill()
			<-i.done
		}
		i.cleanErr = i.m.Close()
	})
	return i.cleanErr
}
