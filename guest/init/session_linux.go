//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"glasshouse.dev/glasshouse/core/profiling"
	"glasshouse.dev/glasshouse/guest/transport"
)

// sandboxUID is the unprivileged user workloads run as (see
// scripts/build-minimal-rootfs.sh).
const sandboxUID = 1000

// defaultPath is used to find argv[0] when the run's env has no PATH.
const defaultPath = "/usr/local/bin:/usr/bin:/bin"

// session serves one run over conn.
type session struct {
	log       *slog.Logger
	conn      *transport.Conn
	cg        *cgroup
	collector *lazyCollector
	clock     *guestClock
	// zygote is the template's Python interpreter, if it started one.
	zygote *zygote
	// net says the guest has a network device (glasshouse.net=1).
	net bool
}

// serve receives input files and the Run request, runs it and reports.
func (s *session) serve() error {
	files := map[string]*os.File{}
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	for {
		f, err := s.conn.ReadFrame()
		if err != nil {
			return fmt.Errorf("read request: %w", err)
		}
		switch f.Type {
		case transport.TypeFile:
			if err := s.writeInput(files, f); err != nil {
				sendError(s.conn, transport.CodeInvalid, err)
				return err
			}
		case transport.TypeRun:
			var r transport.Run
			if err := transport.Decode(f, &r); err != nil {
				sendError(s.conn, transport.CodeInvalid, err)
				return err
			}
			for p, fh := range files {
				if err := fh.Close(); err != nil {
					return fmt.Errorf("write %s: %w", p, err)
				}
				delete(files, p)
			}
			return s.execute(&r)
		case transport.TypeKill:
			return nil
		default:
			err := fmt.Errorf("unexpected %s frame before run", f.Type)
			sendError(s.conn, transport.CodeInvalid, err)
			return err
		}
	}
}

// writeInput appends a file chunk to its workspace file. Paths were checked
// by DecodeFileChunk; the workspace is fresh, so nothing in it can redirect
// the writes.
func (s *session) writeInput(open map[string]*os.File, fr transport.Frame) error {
	c, err := transport.DecodeFileChunk(fr)
	if err != nil {
		return err
	}
	fh := open[c.Path]
	if fh == nil {
		p := filepath.Join(rootDir+workspaceDir, filepath.FromSlash(c.Path))
		if err := mkdirAllOwned(filepath.Dir(p)); err != nil {
			return fmt.Errorf("create %s: %w", c.Path, err)
		}
		mode := os.FileMode(0o644)
		if c.Executable {
			mode = 0o755
		}
		fh, err = os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW, mode)
		if err != nil {
			return fmt.Errorf("create %s: %w", c.Path, err)
		}
		if err := fh.Chown(sandboxUID, sandboxUID); err != nil {
			fh.Close()
			return fmt.Errorf("chown %s: %w", c.Path, err)
		}
		open[c.Path] = fh
	}
	if _, err := fh.Write(c.Data); err != nil {
		return fmt.Errorf("write %s: %w", c.Path, err)
	}
	if c.Last {
		delete(open, c.Path)
		if err := fh.Close(); err != nil {
			return fmt.Errorf("write %s: %w", c.Path, err)
		}
	}
	return nil
}

func mkdirAllOwned(dir string) error {
	ws := rootDir + workspaceDir
	if dir == ws {
		return nil
	}
	if _, err := os.Lstat(dir); err == nil {
		return nil
	}
	if err := mkdirAllOwned(filepath.Dir(dir)); err != nil {
		return err
	}
	if err := os.Mkdir(dir, 0o755); err != nil && !os.IsExist(err) {
		return err
	}
	return os.Chown(dir, sandboxUID, sandboxUID)
}

// lookPath finds argv0 in the rootfs the way a shell would, returning the
// path inside the rootfs.
func lookPath(argv0 string, env []string) (string, error) {
	isExec := func(p string) bool {
		st, err := os.Stat(filepath.Join(rootDir, p))
		return err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0
	}
	if strings.Contains(argv0, "/") {
		p := argv0
		if !path.IsAbs(p) {
			p = path.Join(workspaceDir, p)
		}
		if isExec(p) {
			return p, nil
		}
		return "", fmt.Errorf("%s: no such executable", argv0)
	}
	pathEnv := defaultPath
	for _, e := range env {
		if v, ok := strings.CutPrefix(e, "PATH="); ok {
			pathEnv = v
		}
	}
	for _, dir := range strings.Split(pathEnv, ":") {
		if dir == "" || !path.IsAbs(dir) {
			continue
		}
		if p := path.Join(dir, argv0); isExec(p) {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s: not found in PATH %s", argv0, pathEnv)
}

// execute runs r and reports Started, output, Exit, collected files, events
// and Done.
func (s *session) execute(r *transport.Run) error {
	received := time.Now()
	if r.HostTimeNS > 0 {
		// A failure leaves the guest's clock; event times stay comparable
		// within the run.
		if _, err := s.clock.set(r.HostTimeNS); err != nil {
			s.log.Warn("set clock", "err", err)
		}
		received = time.Now()
	}
	prog, err := lookPath(r.Argv[0], r.Env)
	if err != nil {
		sendError(s.conn, transport.CodeCommandNotFound, err)
		return nil
	}
	// The template's zygote serves this run or no other: one that does not
	// fit is killed before the run starts. Nor does it serve a run whose
	// memory limit is near what it already holds: applying the limit
	// could kill it before the run, which is then judged on its own
	// interpreter.
	z, cg := s.zygote, s.cg
	s.zygote = nil
	if z != nil && (!z.fits(prog, r.Argv, r.Env) || r.MemoryBytes < 2*z.cg.readInt("memory.current")) {
		z.discard()
		z = nil
	}
	if z != nil {
		cg = z.cg
	}
	notes, err := cg.apply(r)
	if err != nil {
		sendError(s.conn, transport.CodeInternal, err)
		return err
	}
	if z != nil {
		notes = append(notes, zygoteNote)
	}
	if r.Network != "none" {
		if err := linkUp("lo"); err != nil {
			notes = append(notes, err.Error())
		}
	}
	if r.Network == "full" {
		if !s.net {
			notes = append(notes, "network full: the guest has no network device; only loopback is up")
		} else if err := setupNetwork(); err != nil {
			notes = append(notes, "network full: "+err.Error())
		}
	}

	var (
		prof    *profiler
		profErr error
	)
	if r.Profile {
		var ctrl profiling.Controller
		if ctrl, profErr = s.collector.get(); profErr == nil {
			// The collector converts kernel time to wall time with the
			// clock it saw when it loaded; correct for the steps since.
			prof, profErr = startProfiler(s.conn, ctrl, cg, s.clock.shift()-s.collector.shiftAtLoad)
		}
	}

	var w *workload
	if z != nil {
		w, err = s.resume(z, r, prof)
	} else {
		w, err = s.startIn(r, prog, s.cg, false)
	}
	if err != nil {
		if prof != nil {
			prof.stop()
		}
		sendError(s.conn, transport.CodeInternal, err)
		return err
	}
	startNS := time.Since(received)
	if err := s.conn.Send(&transport.Started{PID: w.cmd.Process.Pid}); err != nil {
		w.cg.kill()
		return err
	}
	if prof != nil {
		prof.begin()
	}
	exit := w.wait(r)
	exit.StartNS = startNS.Nanoseconds()
	exit.Notes = append(notes, exit.Notes...)
	if len(exit.Notes) > transport.MaxNotes {
		exit.Notes = exit.Notes[:transport.MaxNotes]
	}
	if err := s.conn.Send(exit); err != nil {
		return err
	}
	if err := s.sendCollected(r); err != nil {
		return err
	}
	done := &transport.Done{}
	if prof != nil {
		rep, err := prof.stop()
		done.Events, done.Dropped, done.Blind = rep.Events, rep.Dropped, rep.Blind
		if err != nil {
			done.CollectorError = err.Error()
		}
	} else if profErr != nil {
		done.CollectorError = profErr.Error()
	}
	if len(done.Blind) > transport.MaxBlind {
		done.Blind = done.Blind[:transport.MaxBlind]
	}
	// No sync here: the host discards the workspace disk with the VM once
	// it has Done (collected files were read through the page cache), and
	// powerOff syncs anyway.
	return s.conn.Send(done)
}

// workload is a started run.
type workload struct {
	s   *session
	cg  *cgroup
	cmd *exec.Cmd

	stdout, stderr *os.File // read ends
	stdin          chan []byte

	timedOut, killed, outputLimited atomic.Bool
	pidsPeak                        atomic.Int64
	started                         time.Time
	// warmup runs are init's own: their output is discarded and the host
	// is not listening for them.
	warmup bool
}

// startIn starts r's workload in cgroup cg.
func (s *session) startIn(r *transport.Run, prog string, cg *cgroup, warmup bool) (*workload, error) {
	w := &workload{s: s, cg: cg, warmup: warmup}
	outR, outW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	var inR *os.File
	if r.Stdin {
		var inW *os.File
		inR, inW, err = os.Pipe()
		if err != nil {
			return nil, err
		}
		w.stdin = make(chan []byte, 4096)
		go feedStdin(inW, w.stdin)
	} else if inR, err = os.Open(os.DevNull); err != nil {
		return nil, err
	}
	w.stdout, w.stderr = outR, errR
	w.cmd = &exec.Cmd{
		Path:   prog,
		Args:   r.Argv,
		Env:    r.Env,
		Dir:    workspaceDir,
		Stdin:  inR,
		Stdout: outW,
		Stderr: errW,
		SysProcAttr: &syscall.SysProcAttr{
			Chroot:      rootDir,
			Credential:  &syscall.Credential{Uid: sandboxUID, Gid: sandboxUID, Groups: []uint32{}},
			Setsid:      true,
			UseCgroupFD: true,
			CgroupFD:    w.cg.fd,
		},
	}
	w.started = time.Now()
	err = w.cmd.Start()
	outW.Close()
	errW.Close()
	inR.Close()
	if err != nil {
		outR.Close()
		errR.Close()
		return nil, fmt.Errorf("start %s: %w", prog, err)
	}
	return w, nil
}

func feedStdin(w *os.File, ch <-chan []byte) {
	defer w.Close()
	for b := range ch {
		if len(b) == 0 {
			return
		}
		if _, err := w.Write(b); err != nil {
			// The workload closed its stdin; drain what the host still sends.
			for b := range ch {
				if len(b) == 0 {
					return
				}
			}
			return
		}
	}
}

// wait runs the workload to its end: it pumps output, serves stdin and
// Kill frames, enforces the timeout and the output cap, then kills whatever
// the main process left behind.
func (w *workload) wait(r *transport.Run) *transport.Exit {
	exit := &transport.Exit{}
	var pumps sync.WaitGroup
	pumps.Add(2)
	go func() {
		defer pumps.Done()
		exit.StdoutTruncated = w.pump(w.stdout, transport.TypeStdout, r.OutputBytes)
	}()
	go func() {
		defer pumps.Done()
		exit.StderrTruncated = w.pump(w.stderr, transport.TypeStderr, r.OutputBytes)
	}()
	if !w.warmup {
		go w.readHost()
	}
	timer := time.AfterFunc(time.Duration(r.TimeoutMS)*time.Millisecond, func() {
		w.timedOut.Store(true)
		w.cg.kill()
	})
	sampleDone := make(chan struct{})
	go w.samplePIDs(sampleDone)

	err := w.cmd.Wait()
	runNS := time.Since(w.started)
	timer.Stop()
	// The run ends with its main process: kill daemons it left behind.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	if cerr := w.cg.waitEmpty(ctx); cerr != nil {
		exit.Notes = append(exit.Notes, cerr.Error())
	}
	cancel()
	close(sampleDone)
	pumps.Wait()

	exit.RunNS = runNS.Nanoseconds()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			exit.ExitCode, exit.Signal = -1, unix.SignalName(ws.Signal())
		} else {
			exit.ExitCode = ee.ExitCode()
		}
	default:
		exit.ExitCode = -1
		exit.Notes = append(exit.Notes, "wait: "+err.Error())
	}
	exit.TimedOut = w.timedOut.Load()
	exit.Killed = w.killed.Load()
	exit.OutputLimited = w.outputLimited.Load()
	exit.OOMKilled = w.cg.oomKills() > 0 && (exit.Signal != "" || exit.ExitCode != 0)
	w.cg.usage(exit)
	exit.PIDsPeak = w.pidsPeak.Load()
	if keyed(filepath.Join(w.cg.dir, "pids.events"))["max"] > 0 {
		// A fork refused at the limit means the limit was reached.
		exit.PIDsPeak = max(exit.PIDsPeak, r.PIDs)
	}
	return exit
}

// pump streams one output pipe to the host, keeping at most limit bytes.
// It returns whether the stream was truncated.
func (w *workload) pump(f *os.File, t transport.Type, limit int64) bool {
	defer f.Close()
	buf := make([]byte, 32<<10)
	var sent int64
	truncated := false
	for {
		n, err := f.Read(buf)
		if n > 0 && !truncated {
			chunk := buf[:n]
			if room := limit - sent; int64(n) > room {
				chunk = chunk[:room]
				truncated = true
				w.outputLimited.Store(true)
				w.cg.kill()
			}
			if len(chunk) > 0 && !w.warmup {
				if werr := w.s.conn.WriteFrame(t, chunk); werr != nil {
					w.cg.kill()
				}
			}
			sent += int64(len(chunk))
		}
		if err != nil {
			return truncated
		}
	}
}

// readHost serves the frames the host sends during a run: stdin and Kill.
func (w *workload) readHost() {
	defer func() {
		if w.stdin != nil {
			select {
			case w.stdin <- nil:
			default:
			}
		}
	}()
	for {
		f, err := w.s.conn.ReadFrame()
		if err != nil {
			// The host is gone: nothing may run unobserved.
			w.s.log.Debug("read from host", "err", err)
			w.killed.Store(true)
			w.cg.kill()
			return
		}
		switch f.Type {
		case transport.TypeStdin:
			if w.stdin != nil {
				w.stdin <- f.Payload
			}
		case transport.TypeKill:
			var k transport.Kill
			_ = transport.Decode(f, &k)
			if k.Reason == "timeout" {
				w.timedOut.Store(true)
			} else {
				w.killed.Store(true)
			}
			w.cg.kill()
		default:
			w.s.log.Warn("unexpected frame during run", "type", f.Type)
		}
	}
}

// samplePIDs records the peak of pids.current; the guest kernel has no
// pids.peak. Every wakeup of init takes the workload's only vCPU, which
// under emulation costs milliseconds, so sampling starts fast (fork bombs
// are quick) and backs off; a run that hit pids.max reports it as its
// peak (see wait).
func (w *workload) samplePIDs(done <-chan struct{}) {
	f, err := os.Open(filepath.Join(w.cg.dir, "pids.current"))
	if err != nil {
		return
	}
	defer f.Close()
	buf := make([]byte, 32)
	interval := 10 * time.Millisecond
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
		}
		if n, err := f.ReadAt(buf, 0); n > 0 || err == io.EOF {
			if v, err := strconv.ParseInt(strings.TrimSpace(string(buf[:n])), 10, 64); err == nil && v > w.pidsPeak.Load() {
				w.pidsPeak.Store(v)
			}
		}
		t.Reset(interval)
		interval = min(2*interval, 250*time.Millisecond)
	}
}

// sendCollected returns the requested workspace files, at most
// r.CollectBytes in all. Files are opened beneath the workspace without
// following symlinks, so a workload cannot point the root-run init at
// another file.
func (s *session) sendCollected(r *transport.Run) error {
	if len(r.Collect) == 0 {
		return nil
	}
	dir, err := unix.Open(rootDir+workspaceDir, unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open workspace: %w", err)
	}
	defer unix.Close(dir)
	budget := r.CollectBytes
	seen := map[string]bool{}
	for _, p := range r.Collect {
		if seen[p] {
			continue
		}
		seen[p] = true
		fd, err := unix.Openat2(dir, p, &unix.OpenHow{
			Flags:   unix.O_RDONLY | unix.O_CLOEXEC | unix.O_NOFOLLOW | unix.O_NONBLOCK,
			Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
		})
		if err != nil {
			continue
		}
		f := os.NewFile(uintptr(fd), p)
		st, err := f.Stat()
		if err != nil || !st.Mode().IsRegular() {
			f.Close()
			continue
		}
		data, err := io.ReadAll(io.LimitReader(f, budget+1))
		f.Close()
		if err != nil {
			continue
		}
		truncated := int64(len(data)) > budget
		if truncated {
			data = data[:budget]
		}
		budget -= int64(len(data))
		if err := s.conn.SendFile(p, data, st.Mode()&0o111 != 0, truncated); err != nil {
			return err
		}
	}
	return nil
}
