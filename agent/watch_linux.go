//go:build linux

package agent

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// changeKind says what a watcher saw.
type changeKind uint8

const (
	// changeCreated: a cgroup directory appeared.
	changeCreated changeKind = iota + 1
	// changeRemoved: a cgroup directory was removed.
	changeRemoved
	// changeEvents: a cgroup's cgroup.events changed (populated or frozen).
	changeEvents
	// changeOverflow: the kernel's inotify queue overflowed or a watch
	// could not be added: what happened since is unknown, rescan.
	changeOverflow
)

// change is one thing the watcher saw, at a cgroup path relative to the
// mount.
type change struct {
	kind changeKind
	path string
}

// watchMask is what the watcher asks of each cgroup directory: children
// created and removed, and modifications of its files (cgroup.events is
// the only one the kernel notifies).
const watchMask = unix.IN_CREATE | unix.IN_DELETE | unix.IN_MODIFY | unix.IN_ONLYDIR | unix.IN_EXCL_UNLINK

// watcher follows cgroup directories with inotify: one watch per directory
// under the watch roots (and on the directories leading to a root that does
// not exist yet). It is used by one agent; setRoots and close may be called
// from any goroutine.
type watcher struct {
	mount string
	log   *slog.Logger
	max   int
	f     *os.File
	out   chan change

	mu     sync.Mutex
	roots  []string
	byWD   map[int32]string
	byPath map[string]int32
	full   bool // the watch limit was hit
}

// newWatcher opens an inotify instance for the cgroup2 tree at mount. At
// most max directories are watched; beyond that the agent relies on
// rescans.
func newWatcher(mount string, max int, log *slog.Logger) (*watcher, error) {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("inotify_init1: %w", err)
	}
	return &watcher{
		mount:  mount,
		log:    log,
		max:    max,
		f:      os.NewFile(uintptr(fd), "inotify"),
		out:    make(chan change, 4096),
		byWD:   map[int32]string{},
		byPath: map[string]int32{},
	}, nil
}

// changes returns the channel of what the watcher saw. It is closed when
// the watcher stops.
func (w *watcher) changes() <-chan change { return w.out }

// relevant reports whether directory p is under a root or on the way to
// one. w.mu must be held.
func (w *watcher) relevant(p string) bool {
	for _, r := range w.roots {
		if isUnder(p, r) || isUnder(r, p) {
			return true
		}
	}
	return false
}

// setRoots watches every directory under roots (and the existing
// directories on the way to roots that do not exist yet), and drops the
// watches no longer needed. It emits no changes: the caller rescans.
func (w *watcher) setRoots(roots []string) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.roots = append([]string(nil), roots...)
	w.full = false
	for p, wd := range w.byPath {
		if !w.relevant(p) {
			_, _ = unix.InotifyRmWatch(int(w.f.Fd()), uint32(wd))
			delete(w.byPath, p)
			delete(w.byWD, wd)
		}
	}
	var errs []error
	for _, r := range roots {
		// Watch the existing ancestors of r, so that its creation is seen.
		for _, a := range ancestors(r) {
			if _, err := os.Stat(abs(w.mount, a)); err != nil {
				break
			}
			if err := w.add(a); err != nil {
				errs = append(errs, err)
			}
		}
		if _, err := w.addTree(r); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// ancestors returns "/", "/a", "/a/b" for "/a/b/c" (not p itself).
func ancestors(p string) []string {
	if p == "/" {
		return nil
	}
	out := []string{"/"}
	parts := strings.Split(strings.Trim(p, "/"), "/")
	for i := 1; i < len(parts); i++ {
		out = append(out, "/"+strings.Join(parts[:i], "/"))
	}
	return out
}

// add watches one directory. w.mu must be held.
func (w *watcher) add(p string) error {
	if _, ok := w.byPath[p]; ok {
		return nil
	}
	if len(w.byPath) >= w.max {
		if !w.full {
			w.log.Warn("cgroup watch limit reached: cgroups below are found by rescans", "limit", w.max, "path", p)
		}
		w.full = true
		return nil
	}
	wd, err := unix.InotifyAddWatch(int(w.f.Fd()), abs(w.mount, p), watchMask)
	if err != nil {
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
			return nil
		}
		return fmt.Errorf("watch %s: %w", p, err)
	}
	// A directory removed and re-created can get its old descriptor back.
	if old, ok := w.byWD[int32(wd)]; ok && old != p {
		delete(w.byPath, old)
	}
	w.byWD[int32(wd)] = p
	w.byPath[p] = int32(wd)
	return nil
}

// addTree watches p and every directory below it and returns them, p
// first. Watches are added before listing, so a directory created while
// we walk is either listed or reported by inotify. w.mu must be held.
func (w *watcher) addTree(p string) ([]string, error) {
	var found []string
	var errs []error
	start := abs(w.mount, p)
	_ = filepath.WalkDir(start, func(ap string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return nil
		}
		rel := "/"
		if ap != w.mount {
			rel = filepath.Clean("/" + ap[len(w.mount):])
		}
		if err := w.add(rel); err != nil {
			errs = append(errs, err)
		}
		found = append(found, rel)
		return nil
	})
	return found, errors.Join(errs...)
}

// run reads inotify events until close, translating them into changes.
func (w *watcher) run() {
	defer close(w.out)
	buf := make([]byte, 64<<10)
	for {
		n, err := w.f.Read(buf)
		if err != nil {
			if !errors.Is(err, os.ErrClosed) {
				w.log.Error("read inotify", "err", err)
			}
			return
		}
		for off := 0; off+unix.SizeofInotifyEvent <= n; {
			ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
			nameBytes := buf[off+unix.SizeofInotifyEvent : off+unix.SizeofInotifyEvent+int(ev.Len)]
			name := strings.TrimRight(string(nameBytes), "\x00")
			off += unix.SizeofInotifyEvent + int(ev.Len)
			w.handle(ev.Wd, ev.Mask, name)
		}
	}
}

func (w *watcher) handle(wd int32, mask uint32, name string) {
	if mask&unix.IN_Q_OVERFLOW != 0 {
		w.out <- change{kind: changeOverflow}
		return
	}
	w.mu.Lock()
	dir, ok := w.byWD[wd]
	if mask&unix.IN_IGNORED != 0 {
		if ok {
			delete(w.byWD, wd)
			if w.byPath[dir] == wd {
				delete(w.byPath, dir)
			}
		}
		w.mu.Unlock()
		return
	}
	if !ok {
		w.mu.Unlock()
		return
	}
	p := dir + "/" + name
	if dir == "/" {
		p = "/" + name
	}
	var out []change
	switch {
	case mask&unix.IN_CREATE != 0 && mask&unix.IN_ISDIR != 0:
		if w.relevant(p) {
			found, err := w.addTree(p)
			if err != nil {
				w.log.Warn("watch new cgroup", "path", p, "err", err)
				out = append(out, change{kind: changeOverflow})
			}
			for _, f := range found {
				out = append(out, change{kind: changeCreated, path: f})
			}
		}
	case mask&unix.IN_DELETE != 0 && mask&unix.IN_ISDIR != 0:
		out = append(out, change{kind: changeRemoved, path: p})
	case mask&unix.IN_MODIFY != 0 && name == "cgroup.events":
		out = append(out, change{kind: changeEvents, path: dir})
	}
	w.mu.Unlock()
	for _, c := range out {
		w.out <- c
	}
}

// watches returns the number of directories watched.
func (w *watcher) watches() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.byPath)
}

// close stops the watcher; run returns and closes the changes channel.
func (w *watcher) close() error {
	return w.f.Close()
}
