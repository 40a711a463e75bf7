package receipt

import (
	"strings"
	"testing"
	"time"

	"glasshouse.dev/glasshouse/core/profiling"
)

func TestAggregatorSeed(t *testing.T) {
	start := time.Unix(1000, 0)
	a := NewAggregator(start, Caps{Processes: 2, Argv: 1, Arg: 4})
	a.Seed(Process{PID: 10, PPID: 1, Exe: "/bin/python3", Argv: []string{"python3", "x.py"}, Cwd: "/srv", UID: 7, EndOffsetMS: 5}, start)
	a.Seed(Process{PID: 10, Exe: "/bin/other"}, start) // already live: ignored
	a.Add(&profiling.Event{Kind: profiling.KindFork, Time: start.Add(time.Second), PID: 11, PPID: 10})
	a.Add(&profiling.Event{Kind: profiling.KindExit, Time: start.Add(2 * time.Second), PID: 10, ExitCode: 3})
	a.Seed(Process{PID: 12, Exe: "/bin/sh"}, start) // over the cap
	ps, fs, _, om := a.Sections()
	if len(fs) != 0 {
		t.Fatalf("seeding added file entries: %+v", fs)
	}
	if len(ps) != 2 || om.Processes != 1 {
		t.Fatalf("processes %+v omitted %d", ps, om.Processes)
	}
	p := ps[0]
	if p.PID != 10 || p.Exe != "/bin" || len(p.Argv) != 1 || p.Argv[0] != "pyth" || p.Cwd != "/srv" || p.UID != 7 {
		t.Fatalf("seeded process not clipped as expected: %+v", p)
	}
	if p.EndOffsetMS != 2000 || p.ExitCode != 3 {
		t.Fatalf("exit of seeded process not resolved: %+v", p)
	}
	if c := ps[1]; c.PID != 11 || c.Exe != "/bin" || c.EndOffsetMS != -1 {
		t.Fatalf("fork of seeded process did not inherit its image: %+v", c)
	}
}

// TestAggregatorSeedLateEvents covers events delivered after a seed that
// happened before it: the fork and exec that made the seeded process must
// not add a second image of it, while an exec after the seed is a real
// exec chain whose exit belongs to the new image.
func TestAggregatorSeedLateEvents(t *testing.T) {
	start := time.Unix(1000, 0)
	seenAt := start.Add(10 * time.Millisecond)
	a := NewAggregator(start, Caps{})
	// /proc still showed the image before the exec when it was read.
	a.Seed(Process{PID: 20, PPID: 1, Exe: "/usr/bin/launcher"}, seenAt)
	a.Add(&profiling.Event{Kind: profiling.KindFork, Time: start.Add(time.Millisecond), PID: 20, PPID: 1})
	a.Add(&profiling.Event{Kind: profiling.KindExec, Time: start.Add(2 * time.Millisecond), PID: 20, PPID: 1, Exe: "/bin/sh", Argv: []string{"sh", "-c", "x"}})
	ps, _, _, _ := a.Sections()
	if len(ps) != 1 || ps[0].Exe != "/bin/sh" || ps[0].Argv[2] != "x" || ps[0].EndOffsetMS != -1 {
		t.Fatalf("late fork/exec of a seeded process: %+v", ps)
	}
	a.Add(&profiling.Event{Kind: profiling.KindExec, Time: seenAt.Add(time.Millisecond), PID: 20, PPID: 1, Exe: "/usr/bin/python3"})
	a.Add(&profiling.Event{Kind: profiling.KindExit, Time: seenAt.Add(time.Second), PID: 20, ExitCode: 3})
	ps, _, _, _ = a.Sections()
	if len(ps) != 2 {
		t.Fatalf("exec after the seed did not start a new image: %+v", ps)
	}
	if ps[0].Exe != "/bin/sh" || ps[0].EndOffsetMS != 11 || ps[0].ExitCode != 0 {
		t.Fatalf("first image %+v", ps[0])
	}
	if ps[1].Exe != "/usr/bin/python3" || ps[1].ExitCode != 3 || ps[1].EndOffsetMS != 1010 {
		t.Fatalf("second image %+v", ps[1])
	}
}

// TestAggregatorRunningEvent covers KindRunning, a guest's description of
// a process that exec'd before observation began: it seeds the process
// (no exec file entry), its forks inherit its image, and an exec of it is
// an exec chain.
func TestAggregatorRunningEvent(t *testing.T) {
	start := time.Unix(1000, 0)
	a := NewAggregator(start, Caps{})
	a.Add(&profiling.Event{Kind: profiling.KindRunning, PID: 30, PPID: 1, UID: 1000,
		Exe: "/usr/bin/python3", Argv: []string{"python3", "main.py"}, Cwd: "/workspace"})
	a.Add(&profiling.Event{Kind: profiling.KindFork, Time: start.Add(time.Millisecond), PID: 31, PPID: 30})
	a.Add(&profiling.Event{Kind: profiling.KindExec, Time: start.Add(2 * time.Millisecond), PID: 30, PPID: 1, Exe: "/bin/true", Argv: []string{"true"}})
	ps, fs, _, _ := a.Sections()
	if len(ps) != 3 {
		t.Fatalf("want the running image, its fork and the exec'd image: %+v", ps)
	}
	if p := ps[0]; p.PID != 30 || p.Exe != "/usr/bin/python3" || p.Argv[1] != "main.py" || p.Cwd != "/workspace" || p.UID != 1000 || p.StartOffsetMS != 0 || p.EndOffsetMS != 2 {
		t.Fatalf("running process %+v", p)
	}
	if f := ps[1]; f.PID != 31 || f.Exe != "/usr/bin/python3" {
		t.Fatalf("fork of the running process %+v", f)
	}
	if c := ps[2]; c.PID != 30 || c.Exe != "/bin/true" || c.EndOffsetMS != -1 {
		t.Fatalf("exec chain of the running process %+v", c)
	}
	if len(fs) != 1 || fs[0].Path != "/bin/true" {
		t.Fatalf("files: want only the exec of /bin/true: %+v", fs)
	}
}

// TestAggregatorRunningAfterFork delivers the fork of a process cloned
// straight into the observed cgroup before its KindRunning description:
// the description gives the forked entry its image, and a later exec
// still starts a new one.
func TestAggregatorRunningAfterFork(t *testing.T) {
	start := time.Unix(1000, 0)
	a := NewAggregator(start, Caps{})
	a.Add(&profiling.Event{Kind: profiling.KindFork, Time: start.Add(time.Millisecond), PID: 30, PPID: 7})
	a.Add(&profiling.Event{Kind: profiling.KindRunning, Time: start.Add(2 * time.Millisecond), PID: 30, PPID: 7, UID: 1000,
		Exe: "/usr/bin/python3", Argv: []string{"python3", "main.py"}, Cwd: "/workspace"})
	a.Add(&profiling.Event{Kind: profiling.KindRunning, Time: start.Add(3 * time.Millisecond), PID: 30, PPID: 7, Exe: "/other"})
	a.Add(&profiling.Event{Kind: profiling.KindExec, Time: start.Add(4 * time.Millisecond), PID: 30, PPID: 7, Exe: "/bin/true", Argv: []string{"true"}})
	ps, _, _, _ := a.Sections()
	if len(ps) != 2 {
		t.Fatalf("want the described fork and the exec'd image: %+v", ps)
	}
	if p := ps[0]; p.PID != 30 || p.PPID != 7 || p.Exe != "/usr/bin/python3" || strings.Join(p.Argv, " ") != "python3 main.py" || p.Cwd != "/workspace" || p.UID != 1000 || p.StartOffsetMS != 1 {
		t.Fatalf("described fork %+v", p)
	}
	if c := ps[1]; c.Exe != "/bin/true" {
		t.Fatalf("exec after the description %+v", c)
	}
}
