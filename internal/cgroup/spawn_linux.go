//go:build linux

package cgroup

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// A spawner is one OS thread, locked for its life, that starts children
// inside v1 cgroups on hybrid hosts: it moves itself into a run's v1
// directories, forks, and moves itself back to its home directories (the
// ones it started in). Keeping one dedicated thread means its home is
// read once and the home "tasks" files stay open, so a run pays one write
// per controller to leave instead of an open, a write and a close, and no
// read of /proc/thread-self/cgroup.
//
// Spawns are serialised on the thread; each takes a fork, which is short
// next to a run. If the thread cannot move back home, it is retired (its
// goroutine exits still locked, so the runtime ends the thread) and the
// next spawn starts a fresh spawner.
type spawner struct {
	reqs chan spawnReq
	// dead is closed when the thread has been retired.
	dead chan struct{}
}

type spawnReq struct {
	g    *Group
	cmd  *exec.Cmd
	done chan error
}

var (
	spawnMu      sync.Mutex
	spawnCurrent *spawner
)

// spawnInV1 starts cmd from a thread that is inside g's v1 directories.
func spawnInV1(g *Group, cmd *exec.Cmd) error {
	req := spawnReq{g: g, cmd: cmd, done: make(chan error, 1)}
	for {
		s, err := currentSpawner()
		if err != nil {
			return err
		}
		select {
		case s.reqs <- req:
			return <-req.done
		case <-s.dead:
			// Retired between lookup and send: try the next one.
		}
	}
}

func currentSpawner() (*spawner, error) {
	spawnMu.Lock()
	defer spawnMu.Unlock()
	if s := spawnCurrent; s != nil {
		select {
		case <-s.dead:
		default:
			return s, nil
		}
	}
	s := &spawner{reqs: make(chan spawnReq), dead: make(chan struct{})}
	ready := make(chan error, 1)
	go s.loop(ready)
	if err := <-ready; err != nil {
		return nil, err
	}
	spawnCurrent = s
	return s, nil
}

// loop runs on the locked thread until it must be retired.
func (s *spawner) loop(ready chan<- error) {
	runtime.LockOSThread()
	// Never unlocked: when loop returns, the runtime ends the thread.
	defer close(s.dead)
	home, err := openHome()
	if err != nil {
		ready <- err
		return
	}
	defer home.close()
	ready <- nil
	for req := range s.reqs {
		err, ok := home.spawn(req.g, req.cmd)
		req.done <- err
		if !ok {
			return
		}
	}
}

// home holds, per v1 hierarchy (by mount point), the open "tasks" file of
// the directory the spawner thread lives in.
type home struct {
	// dirs maps a controller to the thread's directory, relative to the
	// controller's mount point.
	dirs map[string]string
	// tasks holds the open descriptors, by mount point.
	tasks map[string]homeTasks
}

type homeTasks struct {
	fd   int
	path string
}

// openHome reads the calling thread's v1 cgroups and opens their tasks
// files.
func openHome() (*home, error) {
	dirs, err := v1Dirs("/proc/thread-self/cgroup")
	if err != nil {
		return nil, err
	}
	return &home{tasks: map[string]homeTasks{}, dirs: dirs}, nil
}

// V1Home returns the tasks files of the v1 directories process pid is in,
// in the hierarchies groups use: where a thread of it that entered a
// group's directories to fork into them returns to (see ForkTarget).
func (l *Layout) V1Home(pid int) ([]string, error) {
	dirs, err := v1Dirs(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return nil, err
	}
	var tasks []string
	seen := map[string]bool{}
	for _, c := range joinedControllers {
		mnt, ok := l.V1[c]
		if !ok || seen[mnt] {
			continue
		}
		rel, ok := dirs[c]
		if !ok {
			return nil, fmt.Errorf("process %d is in no %s cgroup", pid, c)
		}
		seen[mnt] = true
		tasks = append(tasks, filepath.Join(mnt, rel, "tasks"))
	}
	return tasks, nil
}

// v1Dirs reads a /proc cgroup file: v1 controller -> path relative to its
// mount.
func v1Dirs(file string) (map[string]string, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read cgroups: %w", err)
	}
	dirs := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 || parts[1] == "" {
			continue
		}
		for _, ctrl := range strings.Split(parts[1], ",") {
			dirs[ctrl] = parts[2]
		}
	}
	return dirs, nil
}

// tasksFor returns the open tasks file of the home directory in the
// hierarchy of controller c, mounted at mnt, opening it on first use.
func (h *home) tasksFor(c, mnt string) (homeTasks, error) {
	if t, ok := h.tasks[mnt]; ok {
		return t, nil
	}
	rel, ok := h.dirs[c]
	if !ok {
		return homeTasks{}, fmt.Errorf("the spawning thread is in no %s cgroup", c)
	}
	path := filepath.Join(mnt, rel, "tasks")
	fd, err := openRaw(path, unix.O_WRONLY)
	if err != nil {
		return homeTasks{}, fmt.Errorf("open home %s cgroup: %w", c, err)
	}
	t := homeTasks{fd: fd, path: path}
	h.tasks[mnt] = t
	return t, nil
}

func (h *home) close() {
	for _, t := range h.tasks {
		unix.Close(t.fd)
	}
}

// spawn moves the thread into g's v1 directories, starts cmd and moves the
// thread back. ok is false when the thread could not move back: it must
// then be retired rather than fork for another run from inside this one.
func (h *home) spawn(g *Group, cmd *exec.Cmd) (err error, ok bool) {
	// The group's directories, one per hierarchy (co-mounted controllers
	// share one), and the home tasks files, opened before the thread
	// leaves home so that a failure to open one cannot strand it.
	var enter []string
	var back []homeTasks
	for _, d := range g.hierarchies() {
		f, err := h.tasksFor(d.controller, g.layout.V1[d.controller])
		if err != nil {
			return err, true
		}
		enter, back = append(enter, d.dir), append(back, f)
	}
	var startErr error
	for _, dir := range enter {
		if startErr = writeFile(dir, "tasks", "0"); startErr != nil {
			startErr = fmt.Errorf("enter cgroup %s: %w", dir, startErr)
			break
		}
	}
	if startErr == nil {
		startErr = cmd.Start()
	}
	var leaveErr error
	for _, t := range back {
		if err := writeFD(t.fd, "0"); err != nil {
			leaveErr = errors.Join(leaveErr, fmt.Errorf("leave cgroup: write %s: %w", t.path, err))
		}
	}
	if leaveErr != nil {
		return errors.Join(startErr, leaveErr), false
	}
	return startErr, true
}
