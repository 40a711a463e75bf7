//go:build linux

package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"glasshouse.dev/glasshouse/core/policy"
	"glasshouse.dev/glasshouse/core/profiling"
	"glasshouse.dev/glasshouse/core/receipt"
	"glasshouse.dev/glasshouse/core/receipt/schema"
)

// fakeController is a profiling.Controller whose sessions the test feeds.
type fakeController struct {
	mu       sync.Mutex
	sessions map[uint64]*fakeSession
	started  chan uint64
	refuse   bool
}

type fakeSession struct {
	c      *fakeController
	target profiling.Target
	sink   profiling.Sink
	mu     sync.Mutex
	n      int64
	stop   bool
	drops  int64
	// held are events delivered only by Sync, as the host collector
	// holds the counts of repeated opens.
	held []profiling.Event
}

func newFakeController() *fakeController {
	return &fakeController{sessions: map[uint64]*fakeSession{}, started: make(chan uint64, 100)}
}

func (c *fakeController) Collector() string { return receipt.CollectorEBPFHost }
func (c *fakeController) Available() error  { return nil }
func (c *fakeController) Start(_ context.Context, t profiling.Target, sink profiling.Sink) (profiling.Session, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.refuse {
		return nil, errors.New("refused")
	}
	if _, ok := c.sessions[t.CgroupID]; ok {
		return nil, errors.New("busy")
	}
	s := &fakeSession{c: c, target: t, sink: sink}
	c.sessions[t.CgroupID] = s
	c.started <- t.CgroupID
	return s, nil
}

func (c *fakeController) session(id uint64) *fakeSession {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sessions[id]
}

func (s *fakeSession) add(ev profiling.Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stop {
		return
	}
	s.n++
	s.sink.Add(&ev)
}

// hold keeps ev for the next Sync.
func (s *fakeSession) hold(ev profiling.Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.held = append(s.held, ev)
}

func (s *fakeSession) Sync(context.Context) error {
	s.mu.Lock()
	held := s.held
	s.held = nil
	s.mu.Unlock()
	for _, ev := range held {
		s.add(ev)
	}
	return nil
}

func (s *fakeSession) Stop(context.Context) (profiling.Report, error) {
	s.mu.Lock()
	s.stop = true
	rep := profiling.Report{Events: s.n, Dropped: s.drops}
	s.mu.Unlock()
	s.c.mu.Lock()
	delete(s.c.sessions, s.target.CgroupID)
	s.c.mu.Unlock()
	return rep, nil
}

// memSink collects receipts.
type memSink struct {
	mu   sync.Mutex
	docs [][]byte
	got  chan *receipt.Receipt
}

func newMemSink() *memSink      { return &memSink{got: make(chan *receipt.Receipt, 100)} }
func (m *memSink) Name() string { return "mem" }
func (m *memSink) Write(_ context.Context, r *receipt.Receipt, doc []byte) error {
	m.mu.Lock()
	m.docs = append(m.docs, append([]byte(nil), doc...))
	m.mu.Unlock()
	m.got <- r
	return nil
}

// syncBuffer is a goroutine-safe log buffer.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type harness struct {
	t      testing.TB
	root   string
	ctl    *fakeController
	sink   *memSink
	logs   *syncBuffer
	agent  *Agent
	cancel context.CancelFunc
	done   chan error
}

func startHarness(t testing.TB, selectors []string, pol string, mod func(*Config)) *harness {
	t.Helper()
	root := t.TempDir()
	sel, err := ParseSelection(selectors)
	if err != nil {
		t.Fatal(err)
	}
	var p *policy.Policy
	if pol != "" {
		if p, err = policy.Load(pol); err != nil {
			t.Fatal(err)
		}
	}
	h := &harness{t: t, root: root, ctl: newFakeController(), sink: newMemSink(), logs: &syncBuffer{}, done: make(chan error, 1)}
	cfg := Config{
		Controller:     h.ctl,
		CgroupRoot:     root,
		Selection:      sel,
		Policy:         p,
		Sinks:          []Sink{h.sink},
		PolicyInterval: 20 * time.Millisecond,
		RescanInterval: time.Hour,
		Logger:         slog.New(slog.NewJSONHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if mod != nil {
		mod(&cfg)
	}
	h.agent, err = New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	go func() { h.done <- h.agent.Run(ctx) }()
	waitFor(t, "agent healthy", func() bool { return h.agent.healthy.Load() })
	t.Cleanup(func() { h.stop() })
	return h
}

func (h *harness) stop() {
	if h.cancel == nil {
		return
	}
	h.cancel()
	h.cancel = nil
	select {
	case err := <-h.done:
		if err != nil {
			h.t.Errorf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		h.t.Error("Run did not return after cancel")
	}
}

// mkcg creates a fake cgroup directory with an empty cgroup.events.
func (h *harness) mkcg(rel string) uint64 {
	h.t.Helper()
	dir := filepath.Join(h.root, rel)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		h.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "cgroup.events"), []byte("populated 0\nfrozen 0\n"), 0o644); err != nil {
		h.t.Fatal(err)
	}
	id, err := cgroupID(dir)
	if err != nil {
		h.t.Fatal(err)
	}
	return id
}

func (h *harness) setPopulated(rel string, on bool) {
	h.t.Helper()
	v := "0"
	if on {
		v = "1"
	}
	// One write without truncation, as the kernel updates it: a reader
	// never sees the file empty.
	f, err := os.OpenFile(filepath.Join(h.root, rel, "cgroup.events"), os.O_WRONLY, 0)
	if err != nil {
		h.t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write([]byte("populated " + v + "\nfrozen 0\n")); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) waitSession(id uint64) *fakeSession {
	h.t.Helper()
	var s *fakeSession
	waitFor(h.t, fmt.Sprintf("session for cgroup %d", id), func() bool { s = h.ctl.session(id); return s != nil })
	return s
}

func (h *harness) nextReceipt() *receipt.Receipt {
	h.t.Helper()
	select {
	case r := <-h.sink.got:
		return r
	case <-time.After(10 * time.Second):
		h.t.Fatalf("no receipt; logs:\n%s", h.logs.String())
		return nil
	}
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// checkReceipt validates a sealed receipt against the schema and its
// digest, as every consumer would.
func checkReceipt(t *testing.T, r *receipt.Receipt) {
	t.Helper()
	doc, err := receipt.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	if err := schema.Validate(doc); err != nil {
		t.Fatalf("schema: %v\n%s", err, doc)
	}
	if err := receipt.Verify(doc); err != nil {
		t.Fatalf("verify: %v", err)
	}
}

func workloadEvents(now time.Time) []profiling.Event {
	return []profiling.Event{
		{Kind: profiling.KindExec, Time: now, PID: 100, PPID: 1, Exe: "/usr/bin/python3", Argv: []string{"python3", "job.py"}, Cwd: "/work"},
		{Kind: profiling.KindFile, Time: now, PID: 100, Op: receipt.OpRead, Path: "/etc/hostname"},
		{Kind: profiling.KindNet, Time: now, PID: 100, Op: receipt.NetConnect, Family: receipt.FamilyInet, Protocol: receipt.ProtoTCP, Address: "203.0.113.7", Port: 443},
	}
}

func TestAgentDiscoversAndWritesFinalReceipt(t *testing.T) {
	h := startHarness(t, []string{"/ci/*"}, "no-network", nil)
	id := h.mkcg("/ci/job-1")
	s := h.waitSession(id)
	h.setPopulated("/ci/job-1", true)
	now := time.Now()
	for _, ev := range workloadEvents(now) {
		s.add(ev)
	}
	// The violation is reported live, before the workload ends.
	waitFor(t, "live violation log", func() bool { return strings.Contains(h.logs.String(), `"msg":"policy violation"`) })
	s.add(profiling.Event{Kind: profiling.KindExit, Time: now.Add(time.Millisecond), PID: 100, ExitCode: 3})
	h.setPopulated("/ci/job-1", false)
	r := h.nextReceipt()
	checkReceipt(t, r)
	if r.Backend.Name != BackendName || r.Backend.Isolation != receipt.IsolationNone {
		t.Errorf("backend %+v", r.Backend)
	}
	if got := strings.Join(r.Subject.Argv, " "); got != "python3 job.py" {
		t.Errorf("subject argv %q", got)
	}
	if r.Outcome.ExitCode != 3 || r.Outcome.Failure != receipt.FailureCode {
		t.Errorf("outcome %+v", r.Outcome)
	}
	if r.Profiling.Status != receipt.StatusComplete || r.Profiling.Events != 4 {
		t.Errorf("profiling %+v", r.Profiling)
	}
	if len(r.Network) != 1 || r.Network[0].Address != "203.0.113.7" {
		t.Errorf("network %+v", r.Network)
	}
	if r.Policy == nil || r.Policy.Verdict != receipt.VerdictDeny || len(r.Policy.Violations) != 1 {
		t.Fatalf("policy %+v", r.Policy)
	}
	// Reported once: live, not again for the receipt.
	if n := strings.Count(h.logs.String(), `"msg":"policy violation"`); n != 1 {
		t.Errorf("violation logged %d times, want once", n)
	}
	if !strings.Contains(strings.Join(r.Backend.Notes, "\n"), "cgroup /ci/job-1") {
		t.Errorf("notes %q", r.Backend.Notes)
	}
	// The same cgroup's next occupant is observed as a new workload.
	s2 := h.waitSession(id)
	if s2 == s {
		t.Fatal("session was not restarted")
	}
}

func TestAgentIgnoresUnselectedAndNested(t *testing.T) {
	h := startHarness(t, []string{"/ci/**"}, "", nil)
	id := h.mkcg("/ci")
	h.waitSession(id)
	h.mkcg("/other/x")
	h.mkcg("/ci/nested")
	time.Sleep(100 * time.Millisecond)
	ws := h.agent.Workloads()
	if len(ws) != 1 || ws[0].Cgroup != "/ci" {
		t.Fatalf("workloads %+v, want only /ci", ws)
	}
}

func TestAgentRemovedCgroup(t *testing.T) {
	h := startHarness(t, []string{"/jobs/*"}, "", nil)
	id := h.mkcg("/jobs/a")
	s := h.waitSession(id)
	h.setPopulated("/jobs/a", true)
	s.add(workloadEvents(time.Now())[0])
	if err := os.RemoveAll(filepath.Join(h.root, "jobs/a")); err != nil {
		t.Fatal(err)
	}
	r := h.nextReceipt()
	checkReceipt(t, r)
	if !strings.Contains(strings.Join(r.Backend.Notes, "\n"), "final: removed") {
		t.Fatalf("notes %q", r.Backend.Notes)
	}
}

func TestAgentRollingReceipts(t *testing.T) {
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	h := startHarness(t, []string{"/svc"}, "", func(c *Config) { c.RollInterval = time.Second; c.Now = clock })
	id := h.mkcg("/svc")
	s := h.waitSession(id)
	h.setPopulated("/svc", true)
	evs := workloadEvents(clock())
	s.add(evs[0])
	s.add(evs[1])
	// Counts the collector holds until a Sync belong to the window too.
	s.hold(profiling.Event{Kind: profiling.KindFile, PID: 100, Op: receipt.OpRead, Path: "/etc/hosts", Count: 7})
	advance(1500 * time.Millisecond)
	r1 := h.nextReceipt()
	checkReceipt(t, r1)
	if len(r1.Files) != 3 || len(r1.Processes) != 1 || r1.Processes[0].EndOffsetMS != -1 {
		t.Fatalf("first window: files %+v processes %+v", r1.Files, r1.Processes)
	}
	if i := slices.IndexFunc(r1.Files, func(f receipt.File) bool { return f.Path == "/etc/hosts" }); i < 0 || r1.Files[i].Count != 7 {
		t.Fatalf("first window lacks the held count of /etc/hosts: %+v", r1.Files)
	}
	if !strings.Contains(strings.Join(r1.Backend.Notes, "\n"), "receipt 1 (rolling)") {
		t.Fatalf("notes %q", r1.Backend.Notes)
	}
	// The second window carries the live process over: its exit resolves.
	s.add(profiling.Event{Kind: profiling.KindNet, Time: clock(), PID: 100, Op: receipt.NetConnect, Family: receipt.FamilyInet, Protocol: receipt.ProtoTCP, Address: "198.51.100.1", Port: 80})
	s.add(profiling.Event{Kind: profiling.KindExit, Time: clock().Add(10 * time.Millisecond), PID: 100, ExitCode: 0})
	h.setPopulated("/svc", false)
	r2 := h.nextReceipt()
	checkReceipt(t, r2)
	if len(r2.Processes) != 1 || r2.Processes[0].Exe != "/usr/bin/python3" || r2.Processes[0].EndOffsetMS < 0 {
		t.Fatalf("second window processes %+v", r2.Processes)
	}
	if len(r2.Files) != 0 || len(r2.Network) != 1 {
		t.Fatalf("second window files %+v network %+v", r2.Files, r2.Network)
	}
	if r2.Outcome.Failure != receipt.FailureNone || !r2.StartedAt.Equal(r1.FinishedAt.Time) {
		t.Fatalf("second window outcome %+v start %v (first ended %v)", r2.Outcome, r2.StartedAt, r1.FinishedAt)
	}
	wid := func(r *receipt.Receipt) string { return strings.Fields(r.Backend.Notes[1])[1] }
	if wid(r1) != wid(r2) || r1.ID == r2.ID {
		t.Fatalf("workload ids %s %s receipt ids %s %s", wid(r1), wid(r2), r1.ID, r2.ID)
	}
}

func TestAgentBoundedUnderManyFiles(t *testing.T) {
	h := startHarness(t, []string{"/big"}, "", func(c *Config) { c.Caps = receipt.Caps{Files: 100} })
	id := h.mkcg("/big")
	s := h.waitSession(id)
	h.setPopulated("/big", true)
	now := time.Now()
	s.add(workloadEvents(now)[0])
	for i := 0; i < 20000; i++ {
		s.add(profiling.Event{Kind: profiling.KindFile, Time: now, PID: 100, Op: receipt.OpRead, Path: fmt.Sprintf("/data/%d", i), Errno: "ENOENT"})
	}
	h.setPopulated("/big", false)
	r := h.nextReceipt()
	checkReceipt(t, r)
	if len(r.Files) != 100 || r.Profiling.Omitted.Files != 20000+1-100 || r.Profiling.Status != receipt.StatusPartial {
		t.Fatalf("files %d omitted %+v status %s", len(r.Files), r.Profiling.Omitted, r.Profiling.Status)
	}
	if !strings.Contains(r.Profiling.Reason, "entries cut") {
		t.Fatalf("reason %q", r.Profiling.Reason)
	}
}

func TestAgentSeedsRunningProcesses(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "pre")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "cgroup.events"), []byte("populated 1\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(fmt.Sprintf("%d\n", os.Getpid())), 0o644)
	ctl := newFakeController()
	sink := newMemSink()
	sel, _ := ParseSelection([]string{"/pre"})
	a, err := New(Config{Controller: ctl, CgroupRoot: root, Selection: sel, Sinks: []Sink{sink}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	<-ctl.started
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	r := <-sink.got
	checkReceipt(t, r)
	if len(r.Processes) != 1 || r.Processes[0].PID != int64(os.Getpid()) || r.Processes[0].Exe == "" {
		t.Fatalf("seeded processes %+v", r.Processes)
	}
	if r.Profiling.Status != receipt.StatusPartial || !strings.Contains(r.Profiling.Reason, "already running") {
		t.Fatalf("profiling %+v", r.Profiling)
	}
	if !strings.Contains(strings.Join(r.Backend.Notes, "\n"), "final: agent stopped") {
		t.Fatalf("notes %q", r.Backend.Notes)
	}
}

func TestAgentReloadSelection(t *testing.T) {
	h := startHarness(t, []string{"/a"}, "", nil)
	ida := h.mkcg("/a")
	idb := h.mkcg("/b")
	sa := h.waitSession(ida)
	h.setPopulated("/a", true)
	sa.add(workloadEvents(time.Now())[0])
	sel, _ := ParseSelection([]string{"/b"})
	pol, _ := policy.Load("no-subprocess")
	if err := h.agent.Reload(sel, pol); err != nil {
		t.Fatal(err)
	}
	r := h.nextReceipt()
	checkReceipt(t, r)
	if !strings.Contains(strings.Join(r.Backend.Notes, "\n"), "final: deselected") {
		t.Fatalf("notes %q\n%s", r.Backend.Notes, h.logs.String())
	}
	h.waitSession(idb)
	if ws := h.agent.Workloads(); len(ws) != 1 || ws[0].Cgroup != "/b" {
		t.Fatalf("workloads after reload %+v", ws)
	}
	// /health reports the reload.
	rec := httptest.NewRecorder()
	h.agent.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/health", nil))
	var body map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || rec.Code != 200 {
		t.Fatalf("health %d %s", rec.Code, rec.Body)
	}
	if body["policy"] != "no-subprocess" || body["workloads"].(float64) != 1 {
		t.Fatalf("health %v", body)
	}
	rec = httptest.NewRecorder()
	h.agent.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	for _, m := range []string{"glasshouse_agent_tracked_workloads 1", `glasshouse_agent_reloads_total{result="ok"} 1`, `glasshouse_agent_receipts_total{kind="final"} 1`} {
		if !strings.Contains(rec.Body.String(), m) {
			t.Errorf("metrics lack %q", m)
		}
	}
}

func TestAgentOverflowRescanFindsMissed(t *testing.T) {
	h := startHarness(t, []string{"/r/*"}, "", nil)
	// Simulate a missed inotify event: a rescan must find the cgroup.
	h.mkcg("/r")
	id := h.mkcg("/r/x")
	h.waitSession(id)
	// The session starts before the agent records the workload.
	workloads := func() int {
		h.agent.mu.Lock()
		defer h.agent.mu.Unlock()
		return len(h.agent.workloads)
	}
	waitFor(t, "the workload", func() bool { return workloads() > 0 })
	if n := workloads(); n != 1 {
		t.Fatalf("%d workloads", n)
	}
}

func TestConfigValidate(t *testing.T) {
	sel, _ := ParseSelection([]string{"all"})
	ok := Config{Controller: newFakeController(), Selection: sel, Sinks: []Sink{newMemSink()}, CgroupRoot: "/sys/fs/cgroup"}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	bad := []func(*Config){
		func(c *Config) { c.Controller = nil },
		func(c *Config) { c.Selection = nil },
		func(c *Config) { c.Sinks = nil },
		func(c *Config) { c.Sinks = []Sink{nil} },
		func(c *Config) { c.CgroupRoot = "rel" },
		func(c *Config) { c.RollInterval = time.Millisecond },
		func(c *Config) { c.PolicyInterval = time.Minute },
		func(c *Config) { c.RescanInterval = time.Millisecond },
		func(c *Config) { c.MaxWorkloads = -1 },
		func(c *Config) { c.Caps.Files = -1 },
	}
	for i, mod := range bad {
		c := ok
		mod(&c)
		if err := c.Validate(); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("case %d: %v", i, err)
		}
	}
}
