package receipt

import (
	"sync"
	"time"

	"glasshouse.dev/glasshouse/core/profiling"
)

// Caps bound the sections an Aggregator builds, so a run that opens millions
// of distinct files yields a receipt of bounded size. Events beyond a cap are
// counted in Profiling.Omitted instead of listed.
type Caps struct {
	Processes int
	Files     int
	Network   int
	// Argv bounds the arguments kept per process, and Arg the bytes kept
	// per argument or path.
	Argv int
	Arg  int
}

// DefaultCaps keep a receipt under a few megabytes.
var DefaultCaps = Caps{Processes: 4096, Files: 8192, Network: 2048, Argv: 256, Arg: 4096}

// Aggregator turns profiling events into receipt sections: a process tree
// with ppid links, file accesses deduplicated with counts, and network
// entries. It implements profiling.Sink. Memory is bounded by Caps whatever
// the event volume. It is safe for concurrent use.
type Aggregator struct {
	mu      sync.Mutex
	start   time.Time
	caps    Caps
	events  int64
	omitted Omitted

	procs []proc
	// live maps a pid to the index in procs of its current image.
	live  map[int64]int
	files map[File]*int64
	net   map[Net]int64
	// lastFile is the entry the previous file event counted in, and
	// lastCount its counter: a loop on one file repeats it, and with the
	// strings a reader interns, comparing it is cheaper than hashing the
	// path again.
	lastFile  File
	lastCount *int64
}

type proc struct {
	Process
	execed bool
	// seenAt is when a seeded image was described; zero for images built
	// from events.
	seenAt time.Time
}

// seededAfter reports whether pid's live image was seeded at or after t,
// so an event of pid at t is already reflected in it.
func (a *Aggregator) seededAfter(pid int64, t time.Time) (int, bool) {
	i, ok := a.live[pid]
	if !ok || a.procs[i].seenAt.IsZero() || t.After(a.procs[i].seenAt) {
		return i, false
	}
	return i, true
}

// NewAggregator returns an aggregator for a run that started at start.
// Zero fields of caps take DefaultCaps values.
func NewAggregator(start time.Time, caps Caps) *Aggregator {
	if caps.Processes <= 0 {
		caps.Processes = DefaultCaps.Processes
	}
	if caps.Files <= 0 {
		caps.Files = DefaultCaps.Files
	}
	if caps.Network <= 0 {
		caps.Network = DefaultCaps.Network
	}
	if caps.Argv <= 0 {
		caps.Argv = DefaultCaps.Argv
	}
	if caps.Arg <= 0 {
		caps.Arg = DefaultCaps.Arg
	}
	return &Aggregator{
		start: start,
		caps:  caps,
		live:  make(map[int64]int),
		files: make(map[File]*int64),
		net:   make(map[Net]int64),
	}
}

// Add folds one event into the sections.
func (a *Aggregator) Add(ev *profiling.Event) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.events += ev.Times()
	switch ev.Kind {
	case profiling.KindFork:
		a.fork(ev)
	case profiling.KindExec:
		a.exec(ev)
	case profiling.KindExecFailed:
		a.execFailed(ev)
	case profiling.KindExit:
		a.exit(ev)
	case profiling.KindFile:
		a.file(File{Path: a.clip(ev.Path), Op: ev.Op, Target: a.clip(ev.Target), PID: ev.PID, OK: ev.Errno == "", Errno: ev.Errno}, ev.Times())
	case profiling.KindNet:
		a.network(ev)
	case profiling.KindRunning:
		a.seed(Process{PID: ev.PID, PPID: ev.PPID, UID: ev.UID, Exe: ev.Exe, Argv: ev.Argv, Cwd: ev.Cwd,
			StartOffsetMS: a.offset(ev.Time)}, ev.Time)
	}
}

// Events returns the number of events added so far.
func (a *Aggregator) Events() int64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.events
}

// Sections returns the sections built so far, in canonical order, and what
// was omitted. It may be called more than once, for rolling receipts; the
// returned slices are the caller's.
func (a *Aggregator) Sections() ([]Process, []File, []Net, Omitted) {
	a.mu.Lock()
	defer a.mu.Unlock()
	ps := make([]Process, len(a.procs))
	for i, p := range a.procs {
		ps[i] = p.Process
		ps[i].Argv = append([]string(nil), p.Argv...)
		ps[i].ExecFailed = append([]string(nil), p.ExecFailed...)
	}
	fs := make([]File, 0, len(a.files))
	for f, n := range a.files {
		f.Count = *n
		fs = append(fs, f)
	}
	ns := make([]Net, 0, len(a.net))
	for n, c := range a.net {
		n.Count = c
		ns = append(ns, n)
	}
	SortProcesses(ps)
	SortFiles(fs)
	SortNetwork(ns)
	return ps, fs, ns, a.omitted
}

func (a *Aggregator) offset(t time.Time) int64 {
	d := t.Sub(a.start)
	if d < 0 {
		return 0
	}
	return d.Milliseconds()
}

// newProc appends a process image, or counts it as omitted at the cap. It
// returns the index of the new image or -1.
func (a *Aggregator) newProc(p Process) int {
	if len(a.procs) >= a.caps.Processes {
		a.omitted.Processes++
		delete(a.live, p.PID)
		return -1
	}
	a.procs = append(a.procs, proc{Process: p})
	i := len(a.procs) - 1
	a.live[p.PID] = i
	return i
}

func (a *Aggregator) fork(ev *profiling.Event) {
	if _, seeded := a.seededAfter(ev.PID, ev.Time); seeded {
		return
	}
	p := Process{PID: ev.PID, PPID: ev.PPID, UID: ev.UID, StartOffsetMS: a.offset(ev.Time), EndOffsetMS: -1}
	if i, ok := a.live[ev.PPID]; ok {
		parent := a.procs[i]
		p.Exe, p.Argv, p.Cwd, p.UID = parent.Exe, parent.Argv, parent.Cwd, parent.UID
	}
	a.newProc(p)
}

// exec records a new program image. The first exec after a fork fills in the
// forked entry; a later exec in the same process (an exec chain) ends the
// old image and starts a new entry with the same pid and parent.
func (a *Aggregator) exec(ev *profiling.Event) {
	argv := ev.Argv
	if len(argv) > a.caps.Argv {
		argv = argv[:a.caps.Argv]
	}
	clipped := make([]string, len(argv))
	for i, s := range argv {
		clipped[i] = a.clip(s)
	}
	exe := a.clip(ev.Exe)
	a.file(File{Path: exe, Op: OpExec, PID: ev.PID, OK: true}, 1)
	i, ok := a.live[ev.PID]
	if _, seeded := a.seededAfter(ev.PID, ev.Time); seeded {
		// The seed described this image, perhaps before the exec reached
		// it in /proc; the event's strings are the kernel's own.
	} else if ok && a.procs[i].execed {
		old := &a.procs[i]
		old.EndOffsetMS = a.offset(ev.Time)
		i = a.newProc(Process{PID: ev.PID, PPID: old.PPID, StartOffsetMS: a.offset(ev.Time), EndOffsetMS: -1})
	} else if !ok {
		i = a.newProc(Process{PID: ev.PID, PPID: ev.PPID, StartOffsetMS: a.offset(ev.Time), EndOffsetMS: -1})
	}
	if i < 0 {
		return
	}
	p := &a.procs[i]
	p.execed = true
	p.Exe, p.Argv, p.Cwd, p.UID = exe, clipped, a.clip(ev.Cwd), ev.UID
}

func (a *Aggregator) execFailed(ev *profiling.Event) {
	a.file(File{Path: a.clip(ev.Exe), Op: OpExec, PID: ev.PID, OK: false, Errno: ev.Errno}, 1)
	i, ok := a.live[ev.PID]
	if !ok {
		i = a.newProc(Process{PID: ev.PID, PPID: ev.PPID, UID: ev.UID, StartOffsetMS: a.offset(ev.Time), EndOffsetMS: -1})
		if i < 0 {
			return
		}
	}
	if p := &a.procs[i]; len(p.ExecFailed) < a.caps.Argv {
		p.ExecFailed = append(p.ExecFailed, ev.Errno)
	}
}

func (a *Aggregator) exit(ev *profiling.Event) {
	i, ok := a.live[ev.PID]
	if !ok {
		return
	}
	p := &a.procs[i]
	p.EndOffsetMS = a.offset(ev.Time)
	p.ExitCode = ev.ExitCode
	p.Signal = ev.Signal
	delete(a.live, ev.PID)
}

// file counts f. Below the cap it is one map operation: the lookup that
// tells a new entry from a known one is only needed at the cap.
func (a *Aggregator) file(f File, times int64) {
	if a.lastCount != nil && f == a.lastFile {
		*a.lastCount += times
		return
	}
	n, ok := a.files[f]
	if !ok {
		if len(a.files) >= a.caps.Files {
			a.omitted.Files += times
			return
		}
		n = new(int64)
		a.files[f] = n
	}
	*n += times
	a.lastFile, a.lastCount = f, n
}

func (a *Aggregator) network(ev *profiling.Event) {
	n := Net{Op: ev.Op, Family: ev.Family, Protocol: ev.Protocol, Address: a.clip(ev.Address), Port: ev.Port, PID: ev.PID, OK: ev.Errno == "", Errno: ev.Errno}
	if len(a.net) >= a.caps.Network {
		if _, ok := a.net[n]; !ok {
			a.omitted.Network++
			return
		}
	}
	a.net[n]++
}

func (a *Aggregator) clip(s string) string {
	if len(s) <= a.caps.Arg {
		return s
	}
	return s[:a.caps.Arg]
}
