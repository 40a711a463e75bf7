//go:build linux

package main

import (
	"bytes"
	_ "embed"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"glasshouse.dev/glasshouse/core/profiling"
	"glasshouse.dev/glasshouse/guest/transport"
	"glasshouse.dev/glasshouse/internal/pyzygote"
)

// A zygote is a Python interpreter that a snapshot template starts and
// leaves blocked, waiting for a run (glasshouse.zygote=1). Every guest
// restored from the template holds its own copy of it. A run of
// `python3 SCRIPT ARGS...` or `python3 -c CODE ARGS...` whose environment
// the interpreter's startup would have read the same way resumes it
// instead of starting Python, and so skips the interpreter's startup (most
// of a warm run's time under emulation). The zygote runs as the sandbox
// user, chrooted, in a cgroup of its own that becomes the run's; other
// runs kill it first.
//
// What differs from a fresh interpreter is said in the run's notes: the
// startup is not in the receipt (the process is reported as already
// running), and runs from one template share str hash randomization.
type zygote struct {
	cmd *exec.Cmd
	cg  *cgroup
	// prog is the interpreter's path in the rootfs and env its startup
	// environment, which a run must match.
	prog string
	env  []string
	// ctrl is init's end of the request socket (the zygote's fd 3).
	ctrl *os.File
	// stdin is the write end of the zygote's fd 0; stdout and stderr are
	// the read ends of its fds 1 and 2.
	stdin, stdout, stderr *os.File
}

//go:embed zygote.py
var zygoteMain string

// zygoteScript is the zygote's program: the shared run, then its main.
var zygoteScript = pyzygote.RunSource + zygoteMain

// zygoteReadyTimeout bounds the interpreter's startup in a template.
const zygoteReadyTimeout = 60 * time.Second

// zygoteNote is the run note of a resumed zygote.
const zygoteNote = "python: resumed an interpreter started in the snapshot template (its startup is not in this receipt; runs from one template share str hash randomization)"

// startZygote starts the template's zygote in a cgroup of its own. It
// returns nil, after logging why, when the interpreter does not come up:
// runs then start Python themselves.
func startZygote(log *slog.Logger) *zygote {
	env := []string{"HOME=" + workspaceDir, "LANG=C.UTF-8", "PATH=" + defaultPath}
	prog, err := lookPath("python3", env)
	if err != nil {
		log.Warn("python zygote", "err", err)
		return nil
	}
	cg, err := newCgroup("python")
	if err != nil {
		log.Warn("python zygote", "err", err)
		return nil
	}
	cmd := &exec.Cmd{
		Path: prog,
		Args: []string{"python3", "-c", zygoteScript},
		Env:  env,
		Dir:  workspaceDir,
		SysProcAttr: &syscall.SysProcAttr{
			Chroot:      rootDir,
			Credential:  &syscall.Credential{Uid: sandboxUID, Gid: sandboxUID, Groups: []uint32{}},
			Setsid:      true,
			UseCgroupFD: true,
			CgroupFD:    cg.fd,
		},
	}
	z, err := launchZygote(cmd, zygoteReadyTimeout)
	if err != nil {
		log.Warn("python zygote", "err", err)
		cg.remove()
		return nil
	}
	z.cg, z.prog = cg, prog
	return z
}

// launchZygote starts cmd, whose Args run zygoteScript, with its standard
// streams on pipes, the request socket as fd 3 and /dev/null as fd 4, and
// waits until it says it is ready.
func launchZygote(cmd *exec.Cmd, timeout time.Duration) (_ *zygote, err error) {
	z := &zygote{cmd: cmd, env: cmd.Env}
	var theirs []*os.File
	defer func() {
		for _, f := range theirs {
			f.Close()
		}
		if err != nil {
			z.closeFiles()
		}
	}()
	pipe := func() (r, w *os.File) {
		if err == nil {
			r, w, err = os.Pipe()
		}
		return r, w
	}
	inR, inW := pipe()
	outR, outW := pipe()
	errR, errW := pipe()
	theirs = append(theirs, inR, outW, errW)
	z.stdin, z.stdout, z.stderr = inW, outR, errR
	if err != nil {
		return nil, err
	}
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("socketpair: %w", err)
	}
	z.ctrl = os.NewFile(uintptr(fds[0]), "zygote-ctrl")
	peer := os.NewFile(uintptr(fds[1]), "zygote-ctrl-peer")
	theirs = append(theirs, peer)
	null, err := os.Open(os.DevNull)
	if err != nil {
		return nil, err
	}
	theirs = append(theirs, null)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = inR, outW, errW
	cmd.ExtraFiles = []*os.File{peer, null}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start python: %w", err)
	}
	err = pyzygote.AwaitReady(z.ctrl, timeout)
	if err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		return nil, fmt.Errorf("python did not start: %w", err)
	}
	return z, nil
}

func (z *zygote) closeFiles() {
	for _, f := range []*os.File{z.ctrl, z.stdin, z.stdout, z.stderr} {
		if f != nil {
			f.Close()
		}
	}
}

// fits reports whether a run of prog with argv and env may resume z (see
// pyzygote.Fits).
func (z *zygote) fits(prog string, argv, env []string) bool {
	return prog == z.prog && pyzygote.Fits(argv, env, z.env)
}

// request sends z its run: argv (the interpreter's name, then the script
// and its arguments), env, and whether fd 0 stays the stdin pipe. Closing
// the socket lets the zygote go.
func (z *zygote) request(argv, env []string, stdin bool) error {
	fields := []string{"0", strconv.Itoa(len(argv))}
	if stdin {
		fields[0] = "1"
	}
	// Run.Validate refused NULs in the run's argv and env.
	fields = append(fields, argv...)
	fields = append(fields, env...)
	_, err := z.ctrl.Write([]byte(strings.Join(fields, "\x00")))
	if cerr := z.ctrl.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("python zygote: send the run: %w", err)
	}
	return nil
}

// discard kills an unused zygote and frees its cgroup.
func (z *zygote) discard() {
	z.cg.kill()
	z.cmd.Wait()
	z.closeFiles()
	z.cg.remove()
}

// resume starts run r in z: z's cgroup becomes the run's, with the usage
// of the interpreter's startup left out of the run's.
func (s *session) resume(z *zygote, r *transport.Run, prof *profiler) (*workload, error) {
	w := &workload{s: s, cg: z.cg, cmd: z.cmd, stdout: z.stdout, stderr: z.stderr}
	if r.Stdin {
		w.stdin = make(chan []byte, 4096)
		go feedStdin(z.stdin, w.stdin)
	} else {
		z.stdin.Close()
	}
	z.cg.excludeUsage()
	if prof != nil {
		// The interpreter exec'd before observation began: describe it.
		prof.sink.Add(&profiling.Event{Kind: profiling.KindRunning, PID: int64(z.cmd.Process.Pid), PPID: 1,
			UID: sandboxUID, Exe: rootDir + z.prog, Argv: r.Argv, Cwd: rootDir + workspaceDir})
	}
	w.started = time.Now()
	if err := z.request(r.Argv, r.Env, r.Stdin); err != nil {
		z.cg.kill()
		z.cmd.Wait()
		z.stdout.Close()
		z.stderr.Close()
		return nil, err
	}
	return w, nil
}

// prefaultChunk is how much of the zygote's memory prefault moves per
// system call.
const prefaultChunk = 256 << 10

// prefault reads every readable page of the zygote's mappings and writes
// its private anonymous memory (heap, stack, anonymous mappings) back
// unchanged, through /proc/PID/mem, and returns the bytes touched. A
// restored guest's RAM is the template's file mapped copy-on-write by the
// VMM: the first touch of each page by the guest costs the host a fault,
// and its first write a copy. A pooled guest's warmup pays for the
// zygote's pages here, off the run's path. The zygote is blocked in a read
// of its request socket, and stopped (SIGSTOP) while its memory is
// rewritten, so nothing it writes meanwhile can be overwritten with what
// was there before; the read resumes on SIGCONT.
func (z *zygote) prefault() (int64, error) {
	pid := z.cmd.Process.Pid
	if err := z.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		return 0, fmt.Errorf("prefault: stop: %w", err)
	}
	defer z.cmd.Process.Signal(syscall.SIGCONT)
	if err := waitStopped(pid, 10*time.Second); err != nil {
		return 0, fmt.Errorf("prefault: %w", err)
	}
	maps, err := os.ReadFile(fmt.Sprintf("/proc/%d/maps", pid))
	if err != nil {
		return 0, err
	}
	mem, err := os.OpenFile(fmt.Sprintf("/proc/%d/mem", pid), os.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, err
	}
	defer mem.Close()
	var touched int64
	buf := make([]byte, prefaultChunk)
	for _, line := range strings.Split(string(maps), "\n") {
		// start-end perms offset dev inode [path]
		f := strings.Fields(line)
		if len(f) < 5 || f[1][0] != 'r' || len(f) > 5 && (f[5] == "[vvar]" || f[5] == "[vsyscall]") {
			continue
		}
		lo, hi, _ := strings.Cut(f[0], "-")
		start, err1 := strconv.ParseUint(lo, 16, 64)
		end, err2 := strconv.ParseUint(hi, 16, 64)
		if err1 != nil || err2 != nil || end <= start {
			continue
		}
		anon := f[1] == "rw-p" && (f[4] == "0" || len(f) > 5 && (f[5] == "[heap]" || f[5] == "[stack]"))
		for a := start; a < end; a += prefaultChunk {
			b := buf[:min(prefaultChunk, end-a)]
			n, err := mem.ReadAt(b, int64(a))
			if anon && n > 0 {
				if _, werr := mem.WriteAt(b[:n], int64(a)); werr != nil {
					return touched, fmt.Errorf("prefault: write %s: %w", f[0], werr)
				}
			}
			touched += int64(n)
			if err != nil {
				break
			}
		}
	}
	return touched, nil
}

// waitStopped waits until process pid is in the stopped state.
func waitStopped(pid int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return err
		}
		// pid (comm) state ...; comm may hold spaces and parentheses.
		if i := bytes.LastIndexByte(b, ')'); i >= 0 && i+2 < len(b) && (b[i+2] == 'T' || b[i+2] == 't') {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("process %d did not stop within %v", pid, timeout)
		}
		time.Sleep(time.Millisecond)
	}
}
