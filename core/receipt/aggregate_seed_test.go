package receipt

import (
	"testing"
	"time"

	"glasshouse.dev/glasshouse/core/profiling"
)

func TestAggregatorSeed(t *testing.T) {
	start := time.Unix(1000, 0)
	a := NewAggregator(start, Caps{Processes: 2, Argv: 1, Arg: 4})
	a.Seed(Process{PID: 10, PPID: 1, Exe: "/bin/python3", Argv: []string{"python3", "x.py"}, Cwd: "/srv", UID: 7, EndOffsetMS: 5})
	a.Seed(Process{PID: 10, Exe: "/bin/other"}) // already live: ignored
	a.Add(&profiling.Event{Kind: profiling.KindFork, Time: start.Add(time.Second), PID: 11, PPID: 10})
	a.Add(&profiling.Event{Kind: profiling.KindExit, Time: start.Add(2 * time.Second), PID: 10, ExitCode: 3})
	a.Seed(Process{PID: 12, Exe: "/bin/sh"}) // over the cap
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
