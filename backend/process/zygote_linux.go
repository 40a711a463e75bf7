//go:build linux

package process

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"glasshouse.dev/glasshouse/internal/cgroup"
	"glasshouse.dev/glasshouse/internal/pyzygote"
)

// A forkServer is a Python interpreter that has done its startup and forks
// one child per Python run (Config.PythonZygote), so that runs skip the
// interpreter's startup: most of a short run's CPU time. It runs as root,
// outside every run's cgroup, and never runs a workload's code itself; it
// clones each child straight into its run's cgroups, and the child takes
// the run's streams, directory and identity before it runs the code
// (forkserver.py). What differs
// from a fresh interpreter is said in the run's notes (zygoteNote).
//
// One reader goroutine takes the server's messages and hands them to the
// runs waiting for them. When the server dies, every run waiting on it
// fails as an infrastructure error and the next run starts a new one.
type forkServer struct {
	cmd  *exec.Cmd
	conn *os.File
	// prog is the interpreter's path and env its startup environment,
	// which a run must match (pyzygote.Fits, HOME aside).
	prog string
	env  []string

	mu      sync.Mutex
	next    uint64
	byToken map[string]*zygoteRun
	byPID   map[int]*zygoteRun
	// err says why the server is gone; dead is closed then.
	err  error
	dead chan struct{}
	// stderr keeps the end of what the interpreter wrote there.
	stderr *tailBuffer
}

// zygoteRun is one run's view of the fork server.
type zygoteRun struct {
	fs *forkServer
	// joined receives the child's pid once it is in the run's cgroups
	// and waits at its gate, or why it is not.
	joined chan zygoteJoin
	// exited receives the child's wait status.
	exited chan syscall.WaitStatus
}

type zygoteJoin struct {
	pid int
	err error
}

//go:embed forkserver.py
var forkServerMain string

// forkServerScript is the server's program: the shared run, then its main.
var forkServerScript = pyzygote.RunSource + forkServerMain

const (
	// forkServerReadyTimeout bounds the interpreter's startup.
	forkServerReadyTimeout = 30 * time.Second
	// zygoteJoinTimeout bounds a fork and its child's setup.
	zygoteJoinTimeout = 10 * time.Second
	// maxZygoteRequest bounds a request: the server reads at most 128 KiB
	// per message. Bigger requests (a large environment) start Python.
	maxZygoteRequest = 64 << 10
	// forkServerHome is the server's HOME: a directory that does not
	// exist, so that its startup adds no user site directory. A run's
	// child recomputes it from the run's HOME.
	forkServerHome = "/nonexistent"
)

// zygoteNote is the run note of a run forked from the server.
const zygoteNote = "python: forked from a resident interpreter (its startup is not in this receipt, memory it shares with that interpreter is not charged to the run, and runs share str hash randomization)"

// startForkServer starts the interpreter prog as a fork server and waits
// until it is ready.
func startForkServer(prog string, layout *cgroup.Layout) (*forkServer, error) {
	home, err := layout.V1Home(os.Getpid())
	if err != nil {
		return nil, err
	}
	env := []string{"HOME=" + forkServerHome, "LANG=C.UTF-8", "PATH=" + defaultPath}
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("socketpair: %w", err)
	}
	conn := os.NewFile(uintptr(fds[0]), "forkserver")
	peer := os.NewFile(uintptr(fds[1]), "forkserver-peer")
	fs := &forkServer{
		conn: conn, prog: prog, env: env,
		byToken: map[string]*zygoteRun{}, byPID: map[int]*zygoteRun{},
		dead: make(chan struct{}), stderr: &tailBuffer{max: 4 << 10},
	}
	fs.cmd = &exec.Cmd{
		Path:       prog,
		Args:       append([]string{"python3", "-c", forkServerScript}, home...),
		Env:        env,
		Dir:        "/",
		Stderr:     fs.stderr,
		ExtraFiles: []*os.File{peer},
		// Its own process group keeps a terminal's signals away. It exits
		// when its socket closes, as it does when this process dies.
		SysProcAttr: &syscall.SysProcAttr{Setpgid: true},
	}
	err = fs.cmd.Start()
	// Only the server may hold its end: if it dies, the wait below ends.
	peer.Close()
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("start %s: %w", prog, err)
	}
	if err = pyzygote.AwaitReady(conn, forkServerReadyTimeout); err != nil {
		fs.cmd.Process.Kill()
		fs.cmd.Wait()
		conn.Close()
		return nil, fmt.Errorf("python fork server did not start: %w%s", err, fs.stderr.suffix())
	}
	go fs.read()
	return fs, nil
}

// read dispatches the server's messages until its socket fails.
func (fs *forkServer) read() {
	buf := make([]byte, 4096)
	var err error
	for {
		var n int
		n, _, _, _, err = unix.Recvmsg(int(fs.conn.Fd()), buf, nil, 0)
		if err == unix.EINTR {
			continue
		}
		if err == nil && n == 0 {
			err = errors.New("closed its socket")
		}
		if err != nil {
			break
		}
		fs.dispatch(buf[:n])
	}
	werr := fs.cmd.Wait()
	fs.mu.Lock()
	fs.err = fmt.Errorf("python fork server is gone (%v; %v)%s", err, werr, fs.stderr.suffix())
	close(fs.dead)
	fs.mu.Unlock()
}

// dispatch hands one message to the run it concerns.
func (fs *forkServer) dispatch(msg []byte) {
	f := strings.SplitN(string(msg), " ", 4)
	fs.mu.Lock()
	defer fs.mu.Unlock()
	switch {
	case len(f) >= 3 && (f[0] == "J" || f[0] == "E"):
		r := fs.byToken[f[1]]
		if r == nil {
			return
		}
		delete(fs.byToken, f[1])
		pid, _ := strconv.Atoi(f[2])
		if pid > 0 {
			fs.byPID[pid] = r
		}
		j := zygoteJoin{pid: pid}
		if f[0] == "E" {
			reason := ""
			if len(f) == 4 {
				reason = f[3]
			}
			j.err = fmt.Errorf("python fork server: %s", reason)
		}
		r.joined <- j
	case len(f) == 3 && f[0] == "X":
		pid, _ := strconv.Atoi(f[1])
		status, _ := strconv.Atoi(f[2])
		if r := fs.byPID[pid]; r != nil {
			delete(fs.byPID, pid)
			r.exited <- syscall.WaitStatus(status)
		}
	}
}

// zygoteRequest is what a child needs to become a run.
type zygoteRequest struct {
	uid, gid int // -1: keep root
	dir      string
	// tasks and cgroupFD place the child (cgroup.Group.ForkTarget).
	tasks      []string
	cgroupFD   int
	argv, env  []string
	stdin      *os.File
	stdout     *os.File
	stderr     *os.File
	gateReader *os.File
}

// fork asks the server for a child running req and waits until the child
// is in the run's cgroups, waiting at its gate.
func (fs *forkServer) fork(req zygoteRequest) (*zygoteRun, int, error) {
	r := &zygoteRun{fs: fs, joined: make(chan zygoteJoin, 1), exited: make(chan syscall.WaitStatus, 1)}
	fs.mu.Lock()
	if fs.err != nil {
		fs.mu.Unlock()
		return nil, 0, fs.err
	}
	fs.next++
	token := strconv.FormatUint(fs.next, 10)
	fs.byToken[token] = r
	fs.mu.Unlock()

	fields := []string{token, strconv.Itoa(req.uid), strconv.Itoa(req.gid), req.dir, strconv.Itoa(len(req.tasks))}
	fields = append(fields, req.tasks...)
	fields = append(fields, strconv.Itoa(len(req.argv)))
	fields = append(fields, req.argv...)
	fields = append(fields, req.env...)
	rights := unix.UnixRights(int(req.stdin.Fd()), int(req.stdout.Fd()), int(req.stderr.Fd()), int(req.gateReader.Fd()), req.cgroupFD)
	err := unix.Sendmsg(int(fs.conn.Fd()), []byte(strings.Join(fields, "\x00")), rights, nil, 0)
	if err != nil {
		fs.forget(token)
		return nil, 0, fmt.Errorf("python fork server: send: %w", err)
	}
	select {
	case j := <-r.joined:
		return r, j.pid, j.err
	case <-fs.dead:
		fs.forget(token)
		return nil, 0, fs.gone()
	case <-time.After(zygoteJoinTimeout):
		// A child that joins later finds its gate closed and exits.
		fs.forget(token)
		return nil, 0, fmt.Errorf("python fork server: no child after %v", zygoteJoinTimeout)
	}
}

// forks returns the number of runs asked of the server.
func (fs *forkServer) forks() uint64 {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return fs.next
}

func (fs *forkServer) forget(token string) {
	fs.mu.Lock()
	delete(fs.byToken, token)
	fs.mu.Unlock()
}

func (fs *forkServer) gone() error {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return fs.err
}

// wait returns the child's wait status, or an error when the server died
// first: its status is then lost.
func (r *zygoteRun) wait() (syscall.WaitStatus, error) {
	select {
	case ws := <-r.exited:
		return ws, nil
	case <-r.fs.dead:
		select {
		case ws := <-r.exited:
			return ws, nil
		default:
			return 0, r.fs.gone()
		}
	}
}

// close stops the server and waits until it is gone: it exits when its
// socket is shut down, which also wakes the reader.
func (fs *forkServer) close() {
	_ = unix.Shutdown(int(fs.conn.Fd()), unix.SHUT_RDWR)
	<-fs.dead
	fs.conn.Close()
}

// fitsRun reports whether a run of exe with argv and env may be forked
// from fs. HOME is left out: a child derives the user site directory from
// the run's HOME (the caller checks that the workspace has none).
func (fs *forkServer) fitsRun(exe string, argv, env []string) bool {
	if exe != fs.prog || !pyzygote.Fits(argv, env, fs.env, "HOME") {
		return false
	}
	size := 0
	for _, list := range [][]string{argv, env} {
		for _, s := range list {
			if strings.IndexByte(s, 0) >= 0 {
				return false
			}
			size += len(s) + 1
		}
	}
	return size <= maxZygoteRequest/2
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if over := len(t.b) - t.max; over > 0 {
		t.b = append(t.b[:0], t.b[over:]...)
	}
	return len(p), nil
}

// suffix is ": " and what the buffer holds, on one line, or "".
func (t *tailBuffer) suffix() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := string(bytes.TrimSpace(t.b))
	if s == "" {
		return ""
	}
	return ": " + strings.ReplaceAll(s, "\n", " | ")
}
