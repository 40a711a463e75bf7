package receipt

import "time"

// Seed adds a process that was already running when observation began, so
// that later forks, execs and exits of it resolve against its image. It
// serves observers that start watching a running workload (the agent's
// /proc scan of a cgroup it found already populated) and rolling windows
// that carry live processes over from the previous window. Unlike an exec
// event it adds no file entry. p.EndOffsetMS is set to -1 (alive); p's
// argv and strings are clipped to the caps like an exec's. A seed beyond
// the process cap is counted in Omitted.Processes. Seeding a pid that is
// already live is ignored, unless only its fork was seen (a process cloned
// straight into an observed cgroup): the seed then gives it its image. A
// KindRunning event seeds its process the same way.
//
// seenAt is when p was described. Events of p's pid that happened before
// it but are delivered after (the ring buffer lags a /proc scan) describe
// what the seed already holds: a fork from then is ignored, and an exec
// from then updates the seeded image instead of starting a new one.
func (a *Aggregator) Seed(p Process, seenAt time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.seed(p, seenAt)
}

func (a *Aggregator) seed(p Process, seenAt time.Time) {
	i, live := a.live[p.PID]
	if live && (a.procs[i].execed || p.Exe == "") {
		return
	}
	argv := p.Argv
	if len(argv) > a.caps.Argv {
		argv = argv[:a.caps.Argv]
	}
	clipped := make([]string, len(argv))
	for i, s := range argv {
		clipped[i] = a.clip(s)
	}
	p.Argv = clipped
	p.Exe, p.Cwd = a.clip(p.Exe), a.clip(p.Cwd)
	if live {
		// Only a fork of it was seen (a process cloned straight into an
		// observed cgroup, its fork delivered before the seed): the seed
		// says what it runs.
		q := &a.procs[i]
		q.Exe, q.Argv, q.Cwd, q.UID = p.Exe, p.Argv, p.Cwd, p.UID
		q.execed, q.seenAt = true, seenAt
		return
	}
	p.EndOffsetMS = -1
	p.ExecFailed = nil
	i = a.newProc(p)
	if i < 0 {
		return
	}
	a.procs[i].execed = p.Exe != ""
	a.procs[i].seenAt = seenAt
}
