//go:build linux

package process

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"glasshouse.dev/glasshouse/core/execution"
	"glasshouse.dev/glasshouse/core/profiling"
	"glasshouse.dev/glasshouse/internal/cgroup"
)

// instance is one run on the process backend.
type instance struct {
	b    *Backend
	spec execution.Spec

	workspace string
	uid, gid  uint32
	exe       string
	argv, env []string
	group     *cgroup.Group
	// netErr says why the network mode could not be enforced through the
	// cgroup; Start then falls back to a private network namespace.
	netErr      error
	containment string
	notes       []string
	// cleanups run in reverse order of registration.
	cleanups []func() error

	// fork, when set, is the Python fork server the run is forked from
	// instead of starting its program (see forkServer); forked is the
	// run's view of it once started, and sink the run's profiling sink.
	fork   *forkServer
	forked *zygoteRun
	sink   profiling.Sink

	started atomic.Bool
	cmd     *exec.Cmd
	// reason is the first reason the run was killed for.
	reason     atomic.Pointer[error]
	outputDone sync.WaitGroup
	readers    []*os.File

	done   chan struct{}
	result execution.Result

	cleanOnce sync.Once
	cleanErr  error
}

// Reasons a run is killed.
var (
	errTimeout     = errors.New("timeout")
	errOutputLimit = errors.New("output limit exceeded")
	errCleanup     = errors.New("cleaned up while running")
)

func (i *instance) onCleanup(f func() error) { i.cleanups = append(i.cleanups, f) }

// ProfilingTarget implements execution.Targeted.
func (i *instance) ProfilingTarget() profiling.Target {
	if i.group == nil {
		return profiling.Target{}
	}
	return profiling.Target{CgroupID: i.group.ID(), CgroupPath: i.group.Path()}
}

// DescribeTo implements execution.Describer: a run forked from the fork
// server begins without an exec.
func (i *instance) DescribeTo(sink profiling.Sink) { i.sink = sink }

// Start implements execution.Instance.
func (i *instance) Start(ctx context.Context) error {
	if !i.started.CompareAndSwap(false, true) {
		return execution.ErrAlreadyStarted
	}
	err := i.start()
	if err != nil {
		close(i.done)
	}
	return err
}

func (i *instance) start() error {
	cmd := &exec.Cmd{Path: i.exe, Args: i.argv, Env: i.env, Dir: i.workspace}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if i.runsAsOther() {
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: i.uid, Gid: i.gid, Groups: []uint32{}}
	}
	switch {
	case i.spec.Limits.Network != execution.NetworkNone:
	case i.group == nil:
		// Not root: an empty network namespace in a user namespace of our
		// own is the one network limit we can still enforce.
		uid, gid := os.Getuid(), os.Getgid()
		cmd.SysProcAttr.Cloneflags = unix.CLONE_NEWUSER | unix.CLONE_NEWNET
		cmd.SysProcAttr.UidMappings = []syscall.SysProcIDMap{{ContainerID: uid, HostID: uid, Size: 1}}
		cmd.SysProcAttr.GidMappings = []syscall.SysProcIDMap{{ContainerID: gid, HostID: gid, Size: 1}}
	case i.netErr != nil:
		cmd.SysProcAttr.Cloneflags = unix.CLONE_NEWNET
	}

	stdin, err := i.stdinFile()
	if err != nil {
		return fmt.Errorf("%w: stdin: %v", execution.ErrInfrastructure, err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		stdin.Close()
		return fmt.Errorf("%w: stdout pipe: %v", execution.ErrInfrastructure, err)
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		stdin.Close()
		outR.Close()
		outW.Close()
		return fmt.Errorf("%w: stderr pipe: %v", execution.ErrInfrastructure, err)
	}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, outW, errW

	startedAt := time.Now()
	switch {
	case i.fork != nil:
		err = i.startForked(stdin, outW, errW)
	case i.group != nil:
		i.cmd = cmd
		err = i.group.StartInGroup(cmd)
	default:
		i.cmd = cmd
		err = cmd.Start()
	}
	// The child has its own copies; ours would keep the pipes open.
	stdin.Close()
	outW.Close()
	errW.Close()
	if err != nil {
		outR.Close()
		errR.Close()
		var pe *os.PathError
		if errors.As(err, &pe) && pe.Op == "fork/exec" && (errors.Is(err, unix.ENOENT) || errors.Is(err, unix.EACCES) || errors.Is(err, unix.ENOEXEC)) {
			return fmt.Errorf("%w: %s: %v", execution.ErrCommandNotFound, i.argv[0], pe.Err)
		}
		return fmt.Errorf("%w: start %s: %v", execution.ErrInfrastructure, i.argv[0], err)
	}
	if i.group == nil {
		i.applyRlimits(cmd.Process.Pid)
	}
	if i.fork != nil {
		i.notes = append(i.notes, zygoteNote)
	}

	limit := i.spec.Limits.OutputBytes
	stdout := &execution.Capture{Limit: limit, Live: i.spec.Stdout}
	stderr := &execution.Capture{Limit: limit, Live: i.spec.Stderr}
	i.readers = []*os.File{outR, errR}
	i.outputDone.Add(2)
	go i.pump(outR, stdout)
	go i.pump(errR, stderr)

	timer := time.AfterFunc(i.spec.Timeout, func() { i.kill(errTimeout) })
	go i.supervise(startedAt, timer, stdout, stderr)
	return nil
}

// startForked forks the run from the fork server, describes the child to
// the profiling sink and lets it go.
func (i *instance) startForked(stdin, stdout, stderr *os.File) error {
	tasks, cgroupFD := i.group.ForkTarget()
	gateR, gateW, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("%w: gate pipe: %v", execution.ErrInfrastructure, err)
	}
	defer gateW.Close()
	req := zygoteRequest{uid: -1, gid: -1, dir: i.workspace, tasks: tasks, cgroupFD: cgroupFD, argv: i.argv, env: i.env,
		stdin: stdin, stdout: stdout, stderr: stderr, gateReader: gateR}
	if i.runsAsOther() {
		req.uid, req.gid = int(i.uid), int(i.gid)
	}
	run, pid, err := i.fork.fork(req)
	gateR.Close()
	if err != nil {
		return fmt.Errorf("%w: %v", execution.ErrInfrastructure, err)
	}
	i.forked = run
	if err := i.group.Forked(); err != nil {
		return fmt.Errorf("%w: %v", execution.ErrInfrastructure, err)
	}
	if i.sink != nil {
		uid := int64(req.uid)
		if uid < 0 {
			uid = 0
		}
		i.sink.Add(&profiling.Event{Kind: profiling.KindRunning, Time: time.Now(), PID: int64(pid),
			PPID: int64(i.fork.cmd.Process.Pid), UID: uid, Exe: i.exe, Argv: i.argv, Cwd: i.workspace})
	}
	if _, err := gateW.Write([]byte("G")); err != nil {
		return fmt.Errorf("%w: python fork server: release the child: %v", execution.ErrInfrastructure, err)
	}
	return nil
}

func (i *instance) stdinFile() (*os.File, error) {
	if len(i.spec.Stdin) == 0 {
		return os.Open(os.DevNull)
	}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	go func() {
		// A workload that never reads stdin closes the pipe when it
		// exits; the write then fails with EPIPE, which is fine.
		_, _ = w.Write(i.spec.Stdin)
		w.Close()
	}()
	return r, nil
}

// applyRlimits bounds a process started without a cgroup. It runs just
// after the child started, so it is best effort: the receipt notes say so.
func (i *instance) applyRlimits(pid int) {
	if m := i.spec.Limits.MemoryBytes; m > 0 {
		lim := unix.Rlimit{Cur: uint64(m), Max: uint64(m)}
		if err := unix.Prlimit(pid, unix.RLIMIT_AS, &lim, nil); err != nil {
			i.notes = append(i.notes, "memory limit not applied: "+err.Error())
		}
	}
}

// pump copies one output stream into its capture and stops the run when
// the capture overflows.
func (i *instance) pump(r *os.File, c *execution.Capture) {
	defer i.outputDone.Done()
	buf := make([]byte, 32<<10)
	for {
		n, err := r.Read(buf)
		if n > 0 && !c.Add(buf[:n]) {
			i.kill(errOutputLimit)
		}
		if err != nil {
			return
		}
	}
}

// kill ends the whole run, remembering the first reason.
func (i *instance) kill(reason error) {
	if !i.reason.CompareAndSwap(nil, &reason) {
		return
	}
	i.killTree()
}

func (i *instance) killTree() {
	select {
	case <-i.done:
		return // already over; the process group id may belong to someone else
	default:
	}
	if i.group != nil {
		if err := i.group.Kill(); err == nil {
			return
		}
	}
	if i.cmd != nil {
		_ = unix.Kill(-i.cmd.Process.Pid, unix.SIGKILL)
	}
}

// supervise waits for the workload's main process, ends whatever it left
// behind, reads the accounting and publishes the result.
func (i *instance) supervise(startedAt time.Time, timer *time.Timer, stdout, stderr *execution.Capture) {
	if i.group == nil {
		// Kill the process group while its leader is still a zombie, so
		// that its id cannot have been reused by an unrelated group.
		var info unix.Siginfo
		_ = unix.Waitid(unix.P_PID, i.cmd.Process.Pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		_ = unix.Kill(-i.cmd.Process.Pid, unix.SIGKILL)
	}
	ws, rusage, waitErr := i.waitMain()
	finishedAt := time.Now()
	timer.Stop()
	var errs []error
	if i.group != nil {
		// The run is over when its main process exits; nothing else of it
		// may survive, including daemons that double-forked.
		if err := i.group.Kill(); err != nil {
			errs = append(errs, err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := i.group.WaitEmpty(ctx); err != nil {
			errs = append(errs, err)
		}
		cancel()
	}
	i.drainOutput()

	res := execution.Result{
		StartedAt:   startedAt,
		FinishedAt:  finishedAt,
		Containment: i.containment,
		Notes:       i.notes,
	}
	if waitErr != nil {
		errs = append(errs, fmt.Errorf("wait: %w", waitErr))
	} else {
		res.ExitCode = ws.ExitStatus()
		if ws.Signaled() {
			res.Signal = unix.SignalName(ws.Signal())
		}
		if ru := rusage; ru != nil {
			res.Resources = execution.Resources{
				CPUUser:         time.Duration(ru.Utime.Nano()),
				CPUSystem:       time.Duration(ru.Stime.Nano()),
				MemoryPeakBytes: ru.Maxrss * 1024,
				ReadBytes:       ru.Inblock * 512,
				WriteBytes:      ru.Oublock * 512,
			}
		}
	}
	if i.group != nil {
		st, err := i.group.Stats()
		if err != nil {
			errs = append(errs, err)
		}
		res.Resources.CPUUser, res.Resources.CPUSystem = st.CPUUser, st.CPUSystem
		if st.MemoryPeakBytes > 0 {
			res.Resources.MemoryPeakBytes = st.MemoryPeakBytes
		}
		res.Resources.PIDsPeak = st.PIDsPeak
		res.OOMKilled = st.OOMKills > 0
	}
	res.Stdout, res.StdoutTruncated = stdout.Bytes()
	res.Stderr, res.StderrTruncated = stderr.Bytes()
	if r := i.reason.Load(); r != nil {
		switch {
		case errors.Is(*r, errTimeout):
			res.TimedOut = true
		case errors.Is(*r, errOutputLimit):
			res.OutputLimited = true
		default:
			errs = append(errs, *r)
		}
	}
	files, notes := i.collect()
	res.Files = files
	res.Notes = append(res.Notes, notes...)
	if len(errs) > 0 {
		res.Err = fmt.Errorf("%w: %w", execution.ErrInfrastructure, errors.Join(errs...))
	}
	i.result = res
	close(i.done)
}

// waitMain waits for the workload's main process to exit. A forked run's
// status comes from the fork server (its parent), without resource usage:
// it always has a cgroup, whose counters replace it.
func (i *instance) waitMain() (syscall.WaitStatus, *syscall.Rusage, error) {
	if i.forked != nil {
		ws, err := i.forked.wait()
		return ws, nil, err
	}
	state, err := i.cmd.Process.Wait()
	if err != nil {
		return 0, nil, err
	}
	ws, _ := state.Sys().(syscall.WaitStatus)
	ru, _ := state.SysUsage().(*syscall.Rusage)
	return ws, ru, nil
}

// drainOutput waits for both output readers to reach EOF. Every writer is
// dead once the cgroup is empty; without a cgroup, a process that left the
// process group may still hold a pipe, so the wait is bounded.
func (i *instance) drainOutput() {
	drained := make(chan struct{})
	go func() { i.outputDone.Wait(); close(drained) }()
	select {
	case <-drained:
	case <-time.After(time.Second):
		for _, r := range i.readers {
			_ = r.SetReadDeadline(time.Now())
		}
		<-drained
	}
	for _, r := range i.readers {
		r.Close()
	}
}

// Wait implements execution.Instance.
func (i *instance) Wait(ctx context.Context) (execution.Result, error) {
	if !i.started.Load() || !i.launched() {
		return execution.Result{}, execution.ErrNotStarted
	}
	select {
	case <-i.done:
		return i.result, nil
	case <-ctx.Done():
		i.kill(fmt.Errorf("canceled: %w", ctx.Err()))
		<-i.done
		return i.result, i.result.Err
	}
}

// launched reports whether the workload's main process was started.
func (i *instance) launched() bool { return i.cmd != nil || i.forked != nil }

// Cleanup implements execution.Instance.
func (i *instance) Cleanup(context.Context) error {
	i.cleanOnce.Do(func() {
		if i.started.Load() && i.launched() {
			i.kill(errCleanup)
			<-i.done
		}
		var errs []error
		for j := len(i.cleanups) - 1; j >= 0; j-- {
			if err := i.cleanups[j](); err != nil {
				errs = append(errs, err)
			}
		}
		i.cleanErr = errors.Join(errs...)
	})
	return i.cleanErr
}
