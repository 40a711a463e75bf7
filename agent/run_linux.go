//go:build linux

package agent

import (
	"bytes"
	"context"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"glasshouse.dev/glasshouse/core/execution"
	"glasshouse.dev/glasshouse/core/profiling"
	"glasshouse.dev/glasshouse/core/receipt"
)

// workload is one observed cgroup.
type workload struct {
	id       string
	path     string
	abs      string
	cgroupID uint64
	kube     KubeRef
	isKube   bool
	sess     profiling.Session
	sink     *windowSink

	// Fields below are changed by the run loop; mu guards them against
	// the live evaluator, the emitter and the HTTP handlers.
	mu          sync.Mutex
	since       time.Time
	winStart    time.Time
	seq         int // receipts cut so far
	active      bool
	seeded      int
	cpuUser     int64 // cpu.stat at window start, microseconds
	cpuSys      int64
	hostDropped uint64 // host-wide drop counter at window start
	emitted     map[string]bool
}

func kernelRelease() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return ""
	}
	return unix.ByteSliceToString(u.Release[:])
}

// Run observes until ctx ends, then stops every session, writes the final
// receipts and returns. It may be called once.
func (a *Agent) Run(ctx context.Context) error {
	if !a.running.CompareAndSwap(false, true) {
		return ErrAlreadyRunning
	}
	if _, err := os.Stat(a.cfg.CgroupRoot); err != nil {
		return err
	}
	w, err := newWatcher(a.cfg.CgroupRoot, a.cfg.MaxWatches, a.log)
	if err != nil {
		return err
	}
	emitCh := make(chan *snapshot, emitQueue)
	var bg sync.WaitGroup
	bg.Add(1)
	go func() { defer bg.Done(); a.emitter(emitCh) }()
	bg.Add(1)
	go func() { defer bg.Done(); w.run() }()

	l := &loop{a: a, w: w, emit: emitCh, byPath: map[string]*workload{}}
	if err := w.setRoots(a.sel.Load().WatchRoots()); err != nil {
		a.log.Warn("watch cgroups", "err", err)
	}
	l.rescan(ctx, "start")
	a.healthy.Store(true)
	a.log.Info("agent running", "cgroup_root", a.cfg.CgroupRoot, "select", a.sel.Load().Strings(),
		"workloads", len(l.byPath), "watches", w.watches())

	evalCtx, stopEval := context.WithCancel(context.WithoutCancel(ctx))
	bg.Add(1)
	go func() { defer bg.Done(); a.evaluator(evalCtx) }()

	rollTick := time.NewTicker(min(a.cfg.RollInterval/4, time.Second))
	rescanTick := time.NewTicker(a.cfg.RescanInterval)
	rateTick := time.NewTicker(2 * time.Second)
	defer rollTick.Stop()
	defer rescanTick.Stop()
	defer rateTick.Stop()

	changes := w.changes()
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case c, ok := <-changes:
			if !ok {
				changes = nil
				continue
			}
			l.handle(ctx, c)
		case <-rollTick.C:
			l.rollDue(a.cfg.Now())
		case <-rescanTick.C:
			l.rescan(ctx, "periodic")
		case <-rateTick.C:
			a.sampleRate(a.cfg.Now())
			a.m.watches.Set(float64(w.watches()))
		case req := <-a.reload:
			a.sel.Store(req.sel)
			a.pol.Store(req.pol)
			if err := w.setRoots(req.sel.WatchRoots()); err != nil {
				a.log.Warn("watch cgroups", "err", err)
			}
			l.rescan(ctx, "reload")
			name := ""
			if req.pol != nil {
				name = req.pol.Name()
			}
			a.lastReload.Store(&reloadStatus{At: a.cfg.Now().UTC(), Policy: name, Select: req.sel.Strings()})
			a.m.reloads.WithLabelValues("ok").Inc()
			a.log.Info("reloaded", "select", req.sel.Strings(), "policy", name, "workloads", len(l.byPath))
			close(req.done)
		}
	}
	a.healthy.Store(false)
	close(a.stopped)
	stopEval()
	_ = w.close()
	go func() {
		for range w.changes() {
		}
	}()
	for _, wl := range l.sorted() {
		l.finish(ctx, wl, EndAgentStopped)
	}
	close(emitCh)
	bg.Wait()
	a.log.Info("agent stopped")
	return nil
}

// loop is the run loop's state; only the run loop goroutine touches it.
type loop struct {
	a      *Agent
	w      *watcher
	emit   chan<- *snapshot
	byPath map[string]*workload
}

func (l *loop) sorted() []*workload {
	out := make([]*workload, 0, len(l.byPath))
	for _, w := range l.byPath {
		out = append(out, w)
	}
	return out
}

func (l *loop) handle(ctx context.Context, c change) {
	switch c.kind {
	case changeOverflow:
		l.rescan(ctx, "overflow")
	case changeCreated:
		l.consider(ctx, c.path, 0)
	case changeRemoved:
		for p, w := range l.byPath {
			if isUnder(p, c.path) {
				l.finish(ctx, w, EndRemoved)
			}
		}
	case changeEvents:
		w := l.byPath[c.path]
		if w == nil {
			return
		}
		l.checkPopulated(ctx, w)
	}
}

// checkPopulated ends a workload whose cgroup emptied, and starts
// observing the cgroup's next occupant.
func (l *loop) checkPopulated(ctx context.Context, w *workload) {
	populated, err := readPopulated(w.abs, w.path == "/")
	if err != nil {
		if _, serr := os.Stat(w.abs); serr != nil {
			l.finish(ctx, w, EndRemoved)
		}
		return
	}
	w.mu.Lock()
	if populated {
		w.active = true
	}
	ended := !populated && (w.active || w.sink.total.Load() > 0)
	w.mu.Unlock()
	if ended {
		l.finish(ctx, w, EndExited)
		l.consider(ctx, w.path, 0)
	}
}

// consider starts observing path if it is selected and no ancestor is.
// id is its cgroup id when known.
func (l *loop) consider(ctx context.Context, path string, id uint64) {
	if _, ok := l.byPath[path]; ok {
		return
	}
	sel := l.a.sel.Load()
	if !sel.Match(path) {
		return
	}
	for q := path; q != "/"; {
		q = parentOf(q)
		if sel.Match(q) {
			return
		}
	}
	l.track(ctx, path, id)
}

func (l *loop) track(ctx context.Context, path string, id uint64) {
	a := l.a
	if len(l.byPath) >= a.cfg.MaxWorkloads {
		a.m.untracked.Inc()
		a.log.Warn("workload limit reached: cgroup not observed", "cgroup", path, "limit", a.cfg.MaxWorkloads)
		return
	}
	dir := abs(a.cfg.CgroupRoot, path)
	if id == 0 {
		var err error
		if id, err = cgroupID(dir); err != nil {
			return // gone already
		}
	}
	now := a.cfg.Now()
	w := &workload{
		id:       execution.NewID(),
		path:     path,
		abs:      dir,
		cgroupID: id,
		sink:     newWindowSink(now, a.cfg.Caps),
		since:    now,
		winStart: now,
		emitted:  map[string]bool{},
	}
	w.kube, w.isKube = ParseKube(path)
	sess, err := a.cfg.Controller.Start(ctx, profiling.Target{RunID: w.id, CgroupID: id, CgroupPath: dir}, w.sink)
	if err != nil {
		a.m.untracked.Inc()
		a.log.Warn("observe cgroup", "cgroup", path, "err", err)
		return
	}
	w.sess = sess
	w.cpuUser, w.cpuSys = cpuUsage(dir)
	if a.cfg.Stats != nil {
		w.hostDropped = a.cfg.Stats().Dropped
	}
	// Processes already in the cgroup started before the session: describe
	// them from /proc so later events resolve against them.
	if populated, _ := readPopulated(dir, path == "/"); populated {
		w.active = true
		boot := bootTime()
		for _, pid := range treeProcs(dir, a.cfg.Caps.Processes) {
			p, start, err := readProc(pid, a.cfg.Caps, boot)
			if err != nil {
				continue
			}
			if d := start.Sub(w.winStart); d > 0 {
				p.StartOffsetMS = d.Milliseconds()
			}
			w.sink.seed(p, a.cfg.Now())
			w.seeded++
		}
		a.m.seeded.Add(float64(w.seeded))
	}
	l.byPath[path] = w
	a.mu.Lock()
	a.workloads[path] = w
	n := len(a.workloads)
	a.mu.Unlock()
	a.m.workloads.Set(float64(n))
	a.m.discovered.Inc()
	attrs := []any{"workload", w.id, "cgroup", path, "cgroup_id", id, "seeded", w.seeded}
	if w.isKube {
		attrs = append(attrs, "pod_uid", w.kube.PodUID, "container_id", w.kube.ContainerID)
	}
	a.log.Info("observing workload", attrs...)
}

// finish stops a workload's session and queues its final receipt.
func (l *loop) finish(ctx context.Context, w *workload, reason string) {
	a := l.a
	delete(l.byPath, w.path)
	a.mu.Lock()
	delete(a.workloads, w.path)
	n := len(a.workloads)
	a.mu.Unlock()
	a.m.workloads.Set(float64(n))

	user, sys := cpuUsage(w.abs)
	stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	rep, err := w.sess.Stop(stopCtx)
	cancel()
	now := a.cfg.Now()
	blind := rep.Blind
	if err != nil {
		blind = append(blind, "observation did not end cleanly: "+err.Error())
	}
	w.mu.Lock()
	s := l.snap(w, now, w.sink.end(), user, sys)
	w.mu.Unlock()
	s.final, s.endReason = true, reason
	s.dropped, s.hostDropped, s.blind = rep.Dropped, 0, blind
	if !w.active && s.sec.events == 0 && len(s.sec.procs) == 0 {
		// A cgroup that never held a process: no workload, no receipt.
		return
	}
	l.queue(s)
	a.log.Info("workload ended", "workload", w.id, "cgroup", w.path, "reason", reason, "events", rep.Events, "dropped", rep.Dropped)
}

// snap builds the snapshot of w's current window ending at now, and
// starts counting the next. w.mu must be held.
func (l *loop) snap(w *workload, now time.Time, sec sections, user, sys int64) *snapshot {
	w.seq++
	s := &snapshot{
		workloadID: w.id, path: w.path, kube: w.kube, isKube: w.isKube,
		seq: w.seq, start: w.winStart, end: now, sec: sec,
		seeded: w.seeded, rolled: w.seq > 1,
		cpuUserUS: user - w.cpuUser, cpuSysUS: sys - w.cpuSys,
		host: l.a.host, owner: w,
	}
	if user == 0 && sys == 0 {
		s.cpuUserUS, s.cpuSysUS = 0, 0
	}
	if st := l.a.cfg.Stats; st != nil {
		d := st().Dropped
		if d > w.hostDropped {
			s.hostDropped = d - w.hostDropped
		}
		w.hostDropped = d
	}
	w.winStart, w.seeded, w.cpuUser, w.cpuSys = now, 0, user, sys
	return s
}

// syncTimeout bounds how long a window's cut waits for the collector to
// deliver what it holds.
const syncTimeout = 2 * time.Second

// rollDue cuts a rolling receipt for every workload whose window is
// older than the roll interval.
func (l *loop) rollDue(now time.Time) {
	for _, w := range l.byPath {
		w.mu.Lock()
		due := now.Sub(w.winStart) >= l.a.cfg.RollInterval
		w.mu.Unlock()
		if !due {
			continue
		}
		// Counts the collector still holds (repeated opens of threads
		// still running) belong to this window.
		if sy, ok := w.sess.(profiling.Syncer); ok {
			ctx, cancel := context.WithTimeout(context.Background(), syncTimeout)
			if err := sy.Sync(ctx); err != nil {
				l.a.log.Warn("sync profiling session", "workload", w.id, "err", err)
			}
			cancel()
		}
		user, sys := cpuUsage(w.abs)
		w.mu.Lock()
		sec := w.sink.roll(now)
		if sec.events == 0 && len(sec.procs) == 0 {
			// Idle window: restart it without a receipt.
			w.winStart = now
			w.mu.Unlock()
			continue
		}
		s := l.snap(w, now, sec, user, sys)
		w.mu.Unlock()
		l.queue(s)
	}
}

func (l *loop) queue(s *snapshot) {
	select {
	case l.emit <- s:
	default:
		l.a.log.Warn("receipt queue full: waiting for sinks", "queued", emitQueue)
		l.emit <- s
	}
}

// rescan lists the cgroup tree and reconciles the tracked workloads with
// what is selected now.
func (l *loop) rescan(ctx context.Context, reason string) {
	a := l.a
	a.m.rescans.WithLabelValues(reason).Inc()
	sel := a.sel.Load()
	dirs, truncated, err := scanTree(a.cfg.CgroupRoot, sel.WatchRoots(), DefaultMaxCgroups)
	if err != nil {
		a.log.Warn("rescan cgroups", "err", err)
	}
	if truncated {
		a.log.Warn("cgroup tree larger than the scan limit: some cgroups are not considered", "limit", DefaultMaxCgroups)
	}
	ids := make(map[string]uint64, len(dirs)+1)
	paths := make([]string, 0, len(dirs)+1)
	for _, d := range dirs {
		ids[d.Path] = d.ID
		paths = append(paths, d.Path)
	}
	if _, ok := ids["/"]; !ok {
		if id, err := cgroupID(a.cfg.CgroupRoot); err == nil {
			ids["/"] = id
			paths = append(paths, "/")
		}
	}
	want := map[string]bool{}
	for _, p := range sel.Topmost(paths) {
		want[p] = true
	}
	for p, w := range l.byPath {
		switch id, exists := ids[p]; {
		case !exists:
			if _, err := os.Stat(w.abs); err == nil && !want[p] {
				l.finish(ctx, w, EndDeselected)
			} else if err != nil {
				l.finish(ctx, w, EndRemoved)
			}
		case id != w.cgroupID:
			l.finish(ctx, w, EndRemoved)
		case !want[p]:
			l.finish(ctx, w, EndDeselected)
		default:
			l.checkPopulated(ctx, w)
		}
	}
	for _, p := range sel.Topmost(paths) {
		if _, ok := l.byPath[p]; !ok {
			l.track(ctx, p, ids[p])
		}
	}
}

// evaluator evaluates the policy over the current window of every
// workload that had new events, every PolicyInterval.
func (a *Agent) evaluator(ctx context.Context) {
	t := time.NewTicker(a.cfg.PolicyInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		pol := a.pol.Load()
		if pol == nil {
			continue
		}
		a.mu.Lock()
		ws := make([]*workload, 0, len(a.workloads))
		for _, w := range a.workloads {
			if w.sink.dirty.Load() {
				ws = append(ws, w)
			}
		}
		a.mu.Unlock()
		for _, w := range ws {
			if ctx.Err() != nil {
				return
			}
			a.evaluateLive(w)
		}
	}
}

func (a *Agent) evaluateLive(w *workload) {
	pol := a.pol.Load()
	if pol == nil || !w.sink.dirty.Swap(false) {
		return
	}
	start := time.Now()
	sec := w.sink.peek()
	now := a.cfg.Now()
	w.mu.Lock()
	s := &snapshot{
		workloadID: w.id, path: w.path, kube: w.kube, isKube: w.isKube, seq: w.seq + 1,
		start: w.winStart, end: now, sec: sec, seeded: w.seeded, host: a.host, owner: w,
	}
	w.mu.Unlock()
	r := buildReceipt("live", s)
	receipt.Normalize(r)
	res, err := pol.Evaluate(r)
	a.m.policyEvals.Inc()
	a.m.policyEvalSecs.Observe(time.Since(start).Seconds())
	if err != nil {
		a.log.Error("evaluate policy", "workload", w.id, "err", err)
		return
	}
	a.reportViolations(w, r, res, "live")
}

// reportViolations logs and counts each violation of res not reported
// before for w.
func (a *Agent) reportViolations(w *workload, r *receipt.Receipt, res *receipt.Policy, when string) {
	if res == nil {
		return
	}
	for _, v := range res.Violations {
		key := violationKey(r, v)
		w.mu.Lock()
		seen := w.emitted[key]
		if !seen && len(w.emitted) < MaxViolationKeys {
			w.emitted[key] = true
		}
		w.mu.Unlock()
		if seen {
			continue
		}
		a.m.violations.WithLabelValues(v.Rule, v.Severity).Inc()
		attrs := []any{"workload", w.id, "cgroup", w.path, "policy", res.Name, "rule", v.Rule,
			"severity", v.Severity, "message", v.Message, "evidence", strings.Join(v.Evidence, ","),
			"what", evidenceSummary(r, v), "found", when}
		if w.isKube {
			attrs = append(attrs, "pod_uid", w.kube.PodUID, "container_id", w.kube.ContainerID)
		}
		a.log.Warn("policy violation", attrs...)
	}
}

// emitter builds, evaluates, seals and writes queued windows until ch
// closes.
func (a *Agent) emitter(ch <-chan *snapshot) {
	for s := range ch {
		a.write(s)
	}
}

// write turns one window into a sealed receipt, reports violations not
// seen live, and hands the receipt to every sink.
func (a *Agent) write(s *snapshot) {
	r := buildReceipt(execution.NewID(), s)
	if pol := a.pol.Load(); pol != nil {
		receipt.Normalize(r)
		res, err := pol.Evaluate(r)
		if err != nil {
			a.log.Error("evaluate policy", "workload", s.workloadID, "err", err)
		} else {
			r.Policy = res
			if s.owner != nil {
				a.reportViolations(s.owner, r, res, "receipt")
			}
		}
	}
	if err := receipt.Seal(r); err != nil {
		a.log.Error("seal receipt", "workload", s.workloadID, "err", err)
		return
	}
	doc, err := receipt.MarshalCompact(r)
	if err != nil {
		a.log.Error("encode receipt", "workload", s.workloadID, "err", err)
		return
	}
	doc = bytes.TrimSuffix(doc, []byte("\n"))
	kind := "rolling"
	if s.final {
		kind = "final"
	}
	a.m.receipts.WithLabelValues(kind).Inc()
	om := r.Profiling.Omitted
	a.m.omitted.WithLabelValues("processes").Add(float64(om.Processes))
	a.m.omitted.WithLabelValues("files").Add(float64(om.Files))
	a.m.omitted.WithLabelValues("network").Add(float64(om.Network))
	for _, sink := range a.cfg.Sinks {
		ctx, cancel := context.WithTimeout(context.Background(), writeTimeout)
		err := sink.Write(ctx, r, doc)
		cancel()
		if err != nil {
			a.m.sinkErrors.WithLabelValues(sink.Name()).Inc()
			a.log.Error("write receipt", "sink", sink.Name(), "receipt", r.ID, "workload", s.workloadID, "err", err)
		}
	}
	a.log.Debug("receipt written", "receipt", r.ID, "workload", s.workloadID, "kind", kind, "events", r.Profiling.Events)
}
