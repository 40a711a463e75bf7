//go:build linux

package audit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"

	"glasshouse.dev/glasshouse/core/profiling"
	"glasshouse.dev/glasshouse/core/receipt"
	"glasshouse.dev/glasshouse/ebpf/collector"
)

const (
	// globalSlot is the drops counter summed over all sessions (MAX_SLOTS-1
	// in collector.bpf.c).
	globalSlot = MaxSessions
	// The BPF side wakes the reader once 1/wakeFraction of the ring is
	// waiting; otherwise the reader polls every pollInterval. Flush markers
	// always wake it.
	wakeFraction = 8
	pollInterval = 20 * time.Millisecond
	// idleDetachDelay is how long a DetachIdle collector stays idle before
	// it detaches the syscall programs: attaching them again costs the
	// next Start ~11 ms here, which runs arriving one by one should not
	// each pay.
	idleDetachDelay = time.Second
)

// Collector is the loaded host collector. See the package documentation.
type Collector struct {
	log        *slog.Logger
	objs       objects
	build      string // "tp_btf" or "raw_tracepoint": see Build
	links      []link.Link
	sysLinks   []link.Link // the syscall programs' links (see Config.DetachIdle)
	detachIdle bool
	// detachTimer detaches the syscall programs once the collector has
	// been idle for idleDetachDelay (DetachIdle only).
	detachTimer *time.Timer
	rd          *ringbuf.Reader
	sockHooks   string // cgroup the socket hooks are attached to, or ""
	loadTime    time.Duration

	// monoToWall is wall-clock minus CLOCK_MONOTONIC, in nanoseconds.
	monoToWall atomic.Int64

	mu       sync.Mutex
	closed   bool
	gen      uint64 // generation of the targets map (see bumpGen)
	byCgroup map[uint64]*session
	freeSlot []uint32
	nextID   uint32
	// sessions maps session ids to sessions; replaced, never mutated, so
	// the reader reads it without a lock.
	sessions atomic.Pointer[map[uint32]*session]

	// reps follows the opens the kernel's open caches hold.
	reps         *repeats
	events       atomic.Uint64
	decodeErrors atomic.Uint64
	readerDone   chan struct{}
	closeOnce    sync.Once
	closeErr     error

	capsOnce sync.Once
	caps     profiling.Capabilities
}

var _ profiling.Controller = (*Collector)(nil)

// Open loads the collector's BPF programs and attaches them. Errors wrap
// ErrInvalidConfig or ErrNotSupported (with the kernel's reason) when the
// host cannot run it. The caller must call Close.
func Open(cfg Config) (*Collector, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if runtime.GOARCH != "amd64" {
		return nil, fmt.Errorf("%w: the collector traces x86_64 syscalls; this is %s", ErrNotSupported, runtime.GOARCH)
	}
	start := time.Now()
	// No rlimit.RemoveMemlock: the kernels the collector needs (5.17+)
	// charge BPF memory to the memory cgroup, and importing cilium's rlimit
	// package would run a BPF probe at init, before a PID 1 has mounted
	// /proc.
	spec, err := collector.LoadBPF()
	if err != nil {
		return nil, fmt.Errorf("parse collector object: %w", err)
	}
	spec.Maps[collector.BPFMapEvents].MaxEntries = uint32(cfg.RingBytes)
	if err := spec.Variables[collector.BPFVarWakeBytes].Set(uint64(cfg.RingBytes / wakeFraction)); err != nil {
		return nil, fmt.Errorf("set wake threshold: %w", err)
	}
	c := &Collector{
		log:        cfg.Logger,
		detachIdle: cfg.DetachIdle,
		byCgroup:   make(map[uint64]*session),
		reps:       newRepeats(),
		nextID:     1,
		readerDone: make(chan struct{}),
	}
	for i := MaxSessions - 1; i >= 0; i-- {
		c.freeSlot = append(c.freeSlot, uint32(i))
	}
	empty := map[uint32]*session{}
	c.sessions.Store(&empty)
	c.calibrate()
	// One decoding of the kernel's BTF serves the check and the load.
	kernelBTF := btf.NewCache()
	c.build = "raw_tracepoint"
	if !cfg.RawTracepoints && haveBTFBuildNeeds(kernelBTF) {
		c.build = "tp_btf"
		spec.Programs[collector.BPFProgGhSysExit] = spec.Programs[collector.BPFProgGhSysExitBtf]
	} else {
		// Only the tp_btf build uses the cgroup-storage cache of matches,
		// a map type older kernels cannot create: a one-entry array
		// stands in for it.
		m := spec.Maps[collector.BPFMapCgrpMatches]
		m.Type, m.KeySize, m.MaxEntries, m.Flags = ebpf.Array, 4, 1, 0
	}
	if err := spec.LoadAndAssign(&c.objs, &ebpf.CollectionOptions{Cache: kernelBTF}); err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			return nil, fmt.Errorf("%w: load collector programs: %v", ErrNotSupported, ve)
		}
		return nil, fmt.Errorf("%w: load collector programs: %v", ErrNotSupported, err)
	}
	if err := c.attach(cfg.CgroupRoot); err != nil {
		return nil, errors.Join(err, c.closeObjects())
	}
	c.rd, err = ringbuf.NewReader(c.objs.Events)
	if err != nil {
		return nil, errors.Join(fmt.Errorf("open ring buffer: %w", err), c.closeObjects())
	}
	c.loadTime = time.Since(start)
	go c.read()
	c.log.Debug("collector loaded", "load_ms", c.loadTime.Milliseconds(), "socket_hooks", c.sockHooks, "build", c.build)
	return c, nil
}

// attach attaches the tracepoint programs and, when possible, the socket
// hooks on the cgroup2 root.
func (c *Collector) attach(cgroupRoot string) error {
	tps := []struct {
		name string
		prog *ebpf.Program
	}{
		{"sched_process_fork", c.objs.GhFork},
		{"sched_process_exec", c.objs.GhExec},
		{"sched_process_exit", c.objs.GhExit},
		{"inet_sock_set_state", c.objs.GhSockState},
	}
	// Attach the syscall programs; with DetachIdle only to check now that
	// they attach, as Start attaches them when there is something to
	// observe.
	if err := c.attachSyscalls(); err != nil {
		return err
	}
	if c.detachIdle {
		if err := c.detachSyscalls(); err != nil {
			return err
		}
	}
	for _, tp := range tps {
		l, err := link.AttachRawTracepoint(link.RawTracepointOptions{Name: tp.name, Program: tp.prog})
		if err != nil {
			return fmt.Errorf("%w: attach raw tracepoint %s: %v", ErrNotSupported, tp.name, err)
		}
		c.links = append(c.links, l)
	}
	if cgroupRoot == "-" {
		return nil
	}
	if cgroupRoot == "" {
		cgroupRoot = cgroup2Mount()
	}
	if cgroupRoot == "" {
		c.log.Warn("no cgroup2 mount: socket addresses will be read from process memory")
		return nil
	}
	hooks := []struct {
		attach ebpf.AttachType
		prog   *ebpf.Program
	}{
		{ebpf.AttachCGroupInet4Connect, c.objs.GhConnect4},
		{ebpf.AttachCGroupInet6Connect, c.objs.GhConnect6},
		{ebpf.AttachCGroupUDP4Sendmsg, c.objs.GhSendmsg4},
		{ebpf.AttachCGroupUDP6Sendmsg, c.objs.GhSendmsg6},
		{ebpf.AttachCGroupInet4Bind, c.objs.GhBind4},
		{ebpf.AttachCGroupInet6Bind, c.objs.GhBind6},
	}
	var attached []link.Link
	for _, h := range hooks {
		l, err := link.AttachCgroup(link.CgroupOptions{Path: cgroupRoot, Attach: h.attach, Program: h.prog})
		if err != nil {
			for _, l := range attached {
				l.Close()
			}
			c.log.Warn("socket hooks unavailable: socket addresses will be read from process memory", "cgroup", cgroupRoot, "err", err)
			return nil
		}
		attached = append(attached, l)
	}
	c.links = append(c.links, attached...)
	c.sockHooks = cgroupRoot
	return nil
}

// attachSyscalls attaches the sys_exit program, the only syscall hook. It
// runs on every syscall of every process on the host, observed or not (the
// "idle collector" cost scripts/bench-profiling.sh measures): with
// Config.DetachIdle it is attached only while a session is active. c.mu
// must be held.
func (c *Collector) attachSyscalls() error {
	if c.sysLinks != nil {
		return nil
	}
	var exit link.Link
	var err error
	if c.build == "tp_btf" {
		exit, err = link.AttachTracing(link.TracingOptions{Program: c.objs.GhSysExit, AttachType: ebpf.AttachTraceRawTp})
	} else {
		exit, err = link.AttachRawTracepoint(link.RawTracepointOptions{Name: "sys_exit", Program: c.objs.GhSysExit})
	}
	if err != nil {
		return fmt.Errorf("%w: attach %s sys_exit: %v", ErrNotSupported, c.build, err)
	}
	c.sysLinks = []link.Link{exit}
	return nil
}

// detachIfIdle detaches the syscall programs if no session started since
// the timer was set.
func (c *Collector) detachIfIdle() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.detachTimer = nil
	if len(c.byCgroup) > 0 || c.closed {
		return
	}
	if err := c.detachSyscalls(); err != nil {
		c.log.Warn("detach syscall programs", "err", err)
	}
}

// detachSyscalls detaches what attachSyscalls attached. c.mu must be held.
func (c *Collector) detachSyscalls() error {
	var errs []error
	for _, l := range c.sysLinks {
		errs = append(errs, l.Close())
	}
	c.sysLinks = nil
	return errors.Join(errs...)
}

// cgroup2Mount returns the first cgroup2 mount point, or "".
func cgroup2Mount() string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return ""
	}
	defer f.Close()
	return parseCgroup2Mount(f)
}

// calibrate measures the offset between CLOCK_MONOTONIC (bpf_ktime_get_ns)
// and the wall clock.
func (c *Collector) calibrate() {
	var ts unix.Timespec
	before := time.Now()
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return
	}
	after := time.Now()
	wall := before.UnixNano() + after.Sub(before).Nanoseconds()/2
	c.monoToWall.Store(wall - ts.Nano())
}

func (c *Collector) wallTime(ktime uint64) time.Time {
	return time.Unix(0, int64(ktime)+c.monoToWall.Load()).UTC()
}

// Collector implements profiling.Controller.
func (c *Collector) Collector() string { return receipt.CollectorEBPFHost }

// Available implements profiling.Controller: nil until Close.
func (c *Collector) Available() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return ErrClosed
	}
	return nil
}

// LoadTime is how long Open took to load and attach the programs.
func (c *Collector) LoadTime() time.Duration { return c.loadTime }

// SocketHooks returns the cgroup2 directory the socket hooks are attached
// to, or "" when socket addresses are read from process memory.
func (c *Collector) SocketHooks() string { return c.sockHooks }

// Stats returns counters for metrics.
func (c *Collector) Stats() Stats {
	c.mu.Lock()
	n := len(c.byCgroup)
	c.mu.Unlock()
	var dropped uint64
	if c.objs.Drops != nil {
		_ = c.objs.Drops.Lookup(uint32(globalSlot), &dropped)
	}
	st := Stats{
		Events:          c.events.Load(),
		Dropped:         dropped,
		Sessions:        n,
		DecodeErrors:    c.decodeErrors.Load(),
		RecursionMisses: c.recursionMisses(),
	}
	if c.objs.GhSysExit != nil {
		if s, err := c.objs.GhSysExit.Stats(); err == nil {
			st.ExitRunTime, st.ExitRuns = s.Runtime, s.RunCount
		}
	}
	return st
}

func (c *Collector) recursionMisses() uint64 {
	var n uint64
	for _, p := range []*ebpf.Program{c.objs.GhSysExit, c.objs.GhFork, c.objs.GhExec, c.objs.GhExit, c.objs.GhSockState} {
		if p == nil {
			continue
		}
		if s, err := p.Stats(); err == nil {
			n += s.RecursionMisses
		}
	}
	return n
}

// Start implements profiling.Controller: it registers target's cgroup and
// returns once events of its processes (and of processes in descendant
// cgroups) are delivered to sink. Errors wrap ErrInvalidTarget,
// ErrTargetBusy, ErrTooManySessions or ErrClosed.
func (c *Collector) Start(ctx context.Context, target profiling.Target, sink profiling.Sink) (profiling.Session, error) {
	if target.CgroupID == 0 {
		return nil, fmt.Errorf("%w: run %q has no cgroup id", ErrInvalidTarget, target.RunID)
	}
	if sink == nil {
		return nil, fmt.Errorf("%w: nil sink", ErrInvalidTarget)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, ErrClosed
	}
	if s, ok := c.byCgroup[target.CgroupID]; ok {
		return nil, fmt.Errorf("%w: cgroup %d is observed for run %q", ErrTargetBusy, target.CgroupID, s.target.RunID)
	}
	if len(c.freeSlot) == 0 {
		return nil, fmt.Errorf("%w: all %d are in use", ErrTooManySessions, MaxSessions)
	}
	if c.detachTimer != nil {
		c.detachTimer.Stop()
		c.detachTimer = nil
	}
	if c.detachIdle && len(c.byCgroup) == 0 {
		if err := c.attachSyscalls(); err != nil {
			return nil, err
		}
		defer func() {
			if len(c.byCgroup) == 0 {
				c.detachSyscalls() // this first session failed to start
			}
		}()
	}
	slot := c.freeSlot[len(c.freeSlot)-1]
	id := c.nextID
	c.nextID++
	if c.nextID == 0 {
		c.nextID = 1
	}
	if err := c.objs.Drops.Put(slot, uint64(0)); err != nil {
		return nil, fmt.Errorf("reset drop counter: %w", err)
	}
	c.calibrate()
	s := &session{
		c:       c,
		target:  target,
		sink:    sink,
		id:      id,
		slot:    slot,
		misses0: c.recursionMisses(),
		marker:  make(chan struct{}),
		syncs:   make(map[int64]chan struct{}),
		exited:  newRecentPIDs(),
	}
	c.publish(func(m map[uint32]*session) { m[id] = s })
	if err := c.objs.Targets.Update(target.CgroupID, collector.BPFGhTarget{Sess: id, Slot: slot}, ebpf.UpdateNoExist); err != nil {
		c.publish(func(m map[uint32]*session) { delete(m, id) })
		return nil, fmt.Errorf("register cgroup %d: %w", target.CgroupID, err)
	}
	if err := c.bumpGen(); err != nil {
		c.objs.Targets.Delete(target.CgroupID)
		c.publish(func(m map[uint32]*session) { delete(m, id) })
		return nil, err
	}
	c.freeSlot = c.freeSlot[:len(c.freeSlot)-1]
	c.byCgroup[target.CgroupID] = s
	c.log.Debug("profiling session started", "run_id", target.RunID, "cgroup_id", target.CgroupID, "session", id)
	return s, nil
}

// bumpGen invalidates the kernel's cache of cgroup matches after targets
// changed. c.mu must be held.
func (c *Collector) bumpGen() error {
	c.gen++
	if err := c.objs.TargetsGen.Put(uint32(0), c.gen); err != nil {
		return fmt.Errorf("invalidate match cache: %w", err)
	}
	return nil
}

// publish replaces the session map with a modified copy. c.mu must be held.
func (c *Collector) publish(f func(map[uint32]*session)) {
	old := *c.sessions.Load()
	m := make(map[uint32]*session, len(old)+1)
	for k, v := range old {
		m[k] = v
	}
	f(m)
	c.sessions.Store(&m)
}

// release frees the slot of a stopped session.
func (c *Collector) release(s *session) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.publish(func(m map[uint32]*session) { delete(m, s.id) })
	if c.byCgroup[s.target.CgroupID] == s {
		delete(c.byCgroup, s.target.CgroupID)
	}
	c.freeSlot = append(c.freeSlot, s.slot)
	if c.detachIdle && len(c.byCgroup) == 0 && !c.closed && c.detachTimer == nil {
		c.detachTimer = time.AfterFunc(idleDetachDelay, c.detachIfIdle)
	}
}

// read is the single reader goroutine: it decodes records and hands them to
// their sessions.
func (c *Collector) read() {
	defer close(c.readerDone)
	var rec ringbuf.Record
	// Reused for every record: decoding allocates nothing for them.
	var r record
	names := newInterner()
	c.rd.SetDeadline(time.Now().Add(pollInterval))
	for {
		if err := c.rd.ReadInto(&rec); err != nil {
			switch {
			case errors.Is(err, os.ErrDeadlineExceeded):
				c.rd.SetDeadline(time.Now().Add(pollInterval))
			case errors.Is(err, ringbuf.ErrClosed) || errors.Is(err, os.ErrClosed):
				return
			default:
				c.log.Error("read ring buffer", "err", err)
			}
			continue
		}
		c.handle(rec.RawSample, &r, names)
	}
}

// handle decodes raw into r and delivers it to its sessions, with paths
// from names.
func (c *Collector) handle(raw []byte, r *record, names *interner) {
	c.events.Add(1)
	err := decodeRecord(raw, r)
	sessions := *c.sessions.Load()
	if err != nil {
		c.decodeErrors.Add(1)
		for _, id := range r.Sess {
			if s := sessions[id]; s != nil {
				s.decodeError()
			}
		}
		return
	}
	switch r.Kind {
	case evMarker:
		if len(r.Sess) == 1 {
			if s := sessions[r.Sess[0]]; s != nil {
				s.markerSeen(r.Ret)
			}
		}
		return
	case evCounts:
		c.reps.ended(r, giveTo(sessions))
		return
	}
	for _, id := range r.Sess {
		if s := sessions[id]; s != nil {
			s.deliver(r, names)
		}
	}
	if r.Flags&flagCached != 0 {
		var tmpl profiling.Event
		if ev := r.toEvent(&tmpl, c.wallTime, names); ev != nil && !c.reps.took(r, ev, giveTo(sessions)) {
			for _, id := range r.Sess {
				if s := sessions[id]; s != nil {
					s.untracked()
				}
			}
		}
	}
}

// giveTo delivers repeats to the sessions in sessions.
func giveTo(sessions map[uint32]*session) give {
	return func(e *cachedOpen, n int64) {
		for _, id := range e.sess {
			if s := sessions[id]; s != nil {
				s.repeat(&e.ev, n, false)
			}
		}
	}
}

// readCache returns the slots of thread tid's open cache (generation |
// repeats << 32), if it has one: entry tid % cacheThreads, if tid owns it.
func (c *Collector) readCache(tid uint32) ([cacheSlots]uint64, bool) {
	var v collector.BPFFcache
	var slots [cacheSlots]uint64
	if err := c.objs.Fcaches.Lookup(tid%cacheThreads, &v); err != nil || v.Tid != tid {
		return slots, false
	}
	for i := range slots {
		slots[i] = v.S[i].Gc
	}
	return slots, true
}

// Close detaches every program, stops the reader and frees the kernel
// objects. Sessions still active are stopped with what was delivered. It
// is safe to call more than once.
func (c *Collector) Close() error {
	c.closeOnce.Do(func() {
		c.mu.Lock()
		c.closed = true
		active := make([]*session, 0, len(c.byCgroup))
		for _, s := range c.byCgroup {
			active = append(active, s)
		}
		c.mu.Unlock()
		var errs []error
		for _, l := range c.links {
			errs = append(errs, l.Close())
		}
		c.links = nil
		c.mu.Lock()
		if c.detachTimer != nil {
			c.detachTimer.Stop()
			c.detachTimer = nil
		}
		errs = append(errs, c.detachSyscalls())
		c.mu.Unlock()
		if c.rd != nil {
			errs = append(errs, c.rd.Close())
			<-c.readerDone
		}
		for _, s := range active {
			s.abandon()
		}
		errs = append(errs, c.closeObjects())
		c.closeErr = errors.Join(errs...)
	})
	return c.closeErr
}

func (c *Collector) closeObjects() error {
	var errs []error
	for _, l := range append(c.links, c.sysLinks...) {
		errs = append(errs, l.Close())
	}
	c.links, c.sysLinks = nil, nil
	errs = append(errs, c.objs.Close())
	return errors.Join(errs...)
}

// session is one target's observation.
type session struct {
	c       *Collector
	target  profiling.Target
	sink    profiling.Sink
	id      uint32
	slot    uint32
	misses0 uint64
	marker  chan struct{}

	// mu serialises the reader's deliveries with Stop.
	mu        sync.Mutex
	stopped   bool
	sawMarker bool
	// syncs are the Sync calls waiting for their marker, by sequence.
	syncs        map[int64]chan struct{}
	lastSync     int64
	events       int64
	decodeErrors int64
	truncated    int64
	// untrackedOpens counts opens whose repeats could not be followed.
	untrackedOpens int64
	blind          blindSet
	exited         *recentPIDs
	// scratch is the event handed to the sink, reused for the next one
	// (profiling.Sink): no allocation per record.
	scratch profiling.Event

	stopOnce sync.Once
	report   profiling.Report
	stopErr  error
}

func (s *session) deliver(r *record, names *interner) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return
	}
	if r.pathTruncated() {
		s.truncated++
	}
	switch r.Kind {
	case evCompat:
		s.blind.add(fmt.Sprintf("32-bit syscalls (int 0x80) by pid %d are not traced", r.PID))
		return
	case evSyscall:
		if r.NR == sysIOURingSetup && r.Ret >= 0 {
			s.blind.add(fmt.Sprintf("io_uring_setup by pid %d: io_uring operations are not traced", r.PID))
			return
		}
		if name := mountCall(r.NR); r.Ret == 0 && name != "" {
			s.blind.add(fmt.Sprintf("%s by pid %d changed its mount namespace: the paths of it and its children are as that namespace shows them, not as the host does", name, r.PID))
			return
		}
		if r.Family == afPacket && r.Ret >= 0 {
			s.blind.add(fmt.Sprintf("packet socket used by pid %d: raw packets are not described", r.PID))
		}
	case evFork, evExec:
		s.exited.forget(int64(r.PID))
	case evExit:
		// Two threads exiting at once can both see the group dead.
		if !s.exited.add(int64(r.PID)) {
			return
		}
	}
	ev := r.toEvent(&s.scratch, s.c.wallTime, names)
	if ev == nil {
		return
	}
	s.sink.Add(ev)
	s.events++
}

// repeat delivers n more times ev, a file event whose repeats the kernel
// counted; force delivers to a session stopping (see stop).
func (s *session) repeat(ev *profiling.Event, n int64, force bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped && !force {
		return
	}
	s.scratch = *ev
	s.scratch.Count = n
	s.sink.Add(&s.scratch)
	s.events += n
}

func (s *session) untracked() {
	s.mu.Lock()
	s.untrackedOpens++
	s.mu.Unlock()
}

func (s *session) decodeError() {
	s.mu.Lock()
	s.decodeErrors++
	s.mu.Unlock()
}

// markerSeen handles the session's marker with sequence seq: Stop's (0)
// or a Sync's.
func (s *session) markerSeen(seq int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if seq != 0 {
		if ch := s.syncs[seq]; ch != nil {
			delete(s.syncs, seq)
			close(ch)
		}
		return
	}
	if s.sawMarker {
		return
	}
	s.sawMarker = true
	s.stopped = true
	close(s.marker)
}

// abandon ends a session whose collector closed under it.
func (s *session) abandon() {
	s.mu.Lock()
	s.stopped = true
	s.mu.Unlock()
}

// Stop implements profiling.Session. It unregisters the cgroup, queues a
// marker behind everything the target wrote, waits until the reader has
// delivered up to the marker, and reports the session's drops and blind
// spots. If ctx ends first, the report is partial and the error says so.
func (s *session) Stop(ctx context.Context) (profiling.Report, error) {
	s.stopOnce.Do(func() { s.report, s.stopErr = s.stop(ctx) })
	return s.report, s.stopErr
}

func (s *session) stop(ctx context.Context) (profiling.Report, error) {
	c := s.c
	defer c.release(s)
	c.mu.Lock()
	if err := c.objs.Targets.Delete(s.target.CgroupID); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		c.log.Warn("unregister cgroup", "run_id", s.target.RunID, "err", err)
	}
	if err := c.bumpGen(); err != nil {
		c.log.Warn("unregister cgroup", "run_id", s.target.RunID, "err", err)
	}
	c.mu.Unlock()
	flushErr := s.flush(ctx)
	// The caches of threads still alive hold repeats no record carried.
	sessions := *c.sessions.Load()
	c.reps.live(s.id, c.readCache, func(e *cachedOpen, n int64) {
		for _, id := range e.sess {
			if id == s.id {
				s.repeat(&e.ev, n, true)
			} else if o := sessions[id]; o != nil {
				o.repeat(&e.ev, n, false)
			}
		}
	})
	c.reps.forget(s.id, func(id uint32) bool { return sessions[id] != nil })
	var dropped uint64
	if err := c.objs.Drops.Lookup(s.slot, &dropped); err != nil && flushErr == nil {
		flushErr = fmt.Errorf("read drop counter: %w", err)
	}
	misses := c.recursionMisses() - s.misses0

	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopped = true
	rep := profiling.Report{Events: s.events, Dropped: int64(dropped)}
	rep.Blind = s.blind.list()
	if s.truncated > 0 {
		rep.Blind = append(rep.Blind, fmt.Sprintf("%d paths were too long or too deep to record in full", s.truncated))
	}
	if s.untrackedOpens > 0 {
		rep.Blind = append(rep.Blind, fmt.Sprintf("repeats of %d opens were not counted (the reader's table of cached opens was full)", s.untrackedOpens))
	}
	if s.decodeErrors > 0 {
		rep.Blind = append(rep.Blind, fmt.Sprintf("%d kernel records could not be decoded", s.decodeErrors))
	}
	if misses > 0 {
		rep.Blind = append(rep.Blind, fmt.Sprintf("the kernel skipped %d collector program runs (recursion) during this session", misses))
	}
	c.log.Debug("profiling session stopped", "run_id", s.target.RunID, "events", rep.Events, "dropped", rep.Dropped, "blind", len(rep.Blind))
	return rep, flushErr
}

// Sync implements profiling.Syncer: once every record written before
// the call has been delivered (a marker, as Stop queues), it delivers what
// the kernel has counted since of the repeated opens of the target's
// threads. No count is delivered twice.
func (s *session) Sync(ctx context.Context) error {
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return errors.New("sync: the session has stopped")
	}
	s.lastSync++
	seq, done := s.lastSync, make(chan struct{})
	s.syncs[seq] = done
	s.mu.Unlock()
	if err := s.waitMarker(ctx, seq, done); err != nil {
		s.mu.Lock()
		delete(s.syncs, seq)
		s.mu.Unlock()
		return fmt.Errorf("sync: %w", err)
	}
	s.c.reps.live(s.id, s.c.readCache, giveTo(*s.c.sessions.Load()))
	return nil
}

// flush queues a marker record for this session and waits until the reader
// has passed it: every record written before it has then been delivered.
func (s *session) flush(ctx context.Context) error {
	return s.waitMarker(ctx, 0, s.marker)
}

// waitMarker queues a marker record with sequence seq (0: Stop's) and
// waits until done is closed: the reader has passed the marker.
func (s *session) waitMarker(ctx context.Context, seq int64, done chan struct{}) error {
	c := s.c
	wait := time.Millisecond
	for {
		ret, err := c.objs.GhMarker.Run(&ebpf.RunOptions{Context: []uint64{uint64(s.id), uint64(seq)}})
		if err != nil {
			if errors.Is(err, os.ErrClosed) {
				return ErrClosed
			}
			return fmt.Errorf("queue flush marker: %w", err)
		}
		if ret == 0 {
			break
		}
		// The ring buffer is full: give the reader time to drain it.
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("flush events: %w", ctx.Err())
		case <-c.readerDone:
			t.Stop()
			return ErrClosed
		case <-t.C:
		}
		wait = min(2*wait, 50*time.Millisecond)
	}
	select {
	case <-done:
		return nil
	case <-c.readerDone:
		return ErrClosed
	case <-ctx.Done():
		return fmt.Errorf("flush events: %w", ctx.Err())
	}
}

// Build names the build of the syscall exit program in use: "tp_btf"
// (Linux 6.2 and later, with bpf_rdonly_cast), whose kernel reads are
// loads, or "raw_tracepoint" (any kernel the collector supports), whose
// kernel reads are bpf_probe_read_kernel calls. Both give the same records.
func (c *Collector) Build() string { return c.build }

// objects are the collector's maps and programs, with the build's exit
// program as GhSysExit: gh_sys_exit_btf or the raw tracepoint gh_sys_exit.
type objects struct {
	collector.BPFMaps
	collector.BPFVariables
	GhBind4     *ebpf.Program `ebpf:"gh_bind4"`
	GhBind6     *ebpf.Program `ebpf:"gh_bind6"`
	GhConnect4  *ebpf.Program `ebpf:"gh_connect4"`
	GhConnect6  *ebpf.Program `ebpf:"gh_connect6"`
	GhExec      *ebpf.Program `ebpf:"gh_exec"`
	GhExit      *ebpf.Program `ebpf:"gh_exit"`
	GhFork      *ebpf.Program `ebpf:"gh_fork"`
	GhMarker    *ebpf.Program `ebpf:"gh_marker"`
	GhSendmsg4  *ebpf.Program `ebpf:"gh_sendmsg4"`
	GhSendmsg6  *ebpf.Program `ebpf:"gh_sendmsg6"`
	GhSockState *ebpf.Program `ebpf:"gh_sock_state"`
	GhSysExit   *ebpf.Program `ebpf:"gh_sys_exit"`
}

func (o *objects) Close() error {
	errs := []error{o.BPFMaps.Close()}
	for _, p := range []*ebpf.Program{o.GhBind4, o.GhBind6, o.GhConnect4, o.GhConnect6, o.GhExec, o.GhExit, o.GhFork, o.GhMarker, o.GhSendmsg4, o.GhSendmsg6, o.GhSockState, o.GhSysExit} {
		if p != nil {
			errs = append(errs, p.Close())
		}
	}
	return errors.Join(errs...)
}

// haveBTFBuildNeeds reports whether the kernel has what the tp_btf exit
// program needs (both Linux 6.2): the bpf_rdonly_cast kfunc and cgroup
// local storage (its helper stands for the map type).
func haveBTFBuildNeeds(cache *btf.Cache) bool {
	spec, err := cache.Kernel()
	if err != nil {
		return false
	}
	for _, name := range []string{"bpf_rdonly_cast", "bpf_cgrp_storage_get"} {
		var fn *btf.Func
		if spec.TypeByName(name, &fn) != nil {
			return false
		}
	}
	return true
}
