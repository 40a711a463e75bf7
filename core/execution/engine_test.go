package execution_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"glasshouse.dev/glasshouse/backend/fake"
	"glasshouse.dev/glasshouse/core/execution"
	"glasshouse.dev/glasshouse/core/profiling"
	"glasshouse.dev/glasshouse/core/receipt"
	"glasshouse.dev/glasshouse/core/receipt/schema"
)

// hostBackend is the fake backend posing as one whose runs a host
// collector can observe.
type hostBackend struct{ *fake.Backend }

func (h hostBackend) Capabilities() execution.Capabilities {
	c := h.Backend.Capabilities()
	c.Profiling = execution.ProfilingHostCgroup
	return c
}

func (h hostBackend) Prepare(ctx context.Context, spec execution.Spec) (execution.Instance, error) {
	inst, err := h.Backend.Prepare(ctx, spec)
	if err != nil {
		return nil, err
	}
	return targeted{inst}, nil
}

type targeted struct{ execution.Instance }

func (targeted) ProfilingTarget() profiling.Target { return profiling.Target{CgroupID: 42} }

// controller is a scripted profiling controller: it records what it was
// asked and replays events and a report.
type controller struct {
	availErr error
	startErr error
	events   []profiling.Event
	report   profiling.Report

	mu      sync.Mutex
	targets []profiling.Target
	// startedBeforeWorkload is set if Start ran before the workload.
	order []string
}

func (c *controller) Collector() string { return receipt.CollectorEBPFHost }
func (c *controller) Available() error  { return c.availErr }

func (c *controller) Start(_ context.Context, t profiling.Target, sink profiling.Sink) (profiling.Session, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.order = append(c.order, "profiling-start")
	if c.startErr != nil {
		return nil, c.startErr
	}
	c.targets = append(c.targets, t)
	return &session{c: c, sink: sink}, nil
}

type session struct {
	c    *controller
	sink profiling.Sink
}

func (s *session) Stop(context.Context) (profiling.Report, error) {
	for i := range s.c.events {
		s.sink.Add(&s.c.events[i])
	}
	return s.c.report, nil
}

func newEngine(t *testing.T, b execution.Backend, ctrl profiling.Controller) *execution.Engine {
	t.Helper()
	e, err := execution.New(execution.Config{Backend: b, Profiler: ctrl})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func printScript(out string) fake.Script {
	return func(p *fake.Proc) fake.Exit { fmt.Fprint(p.Stdout, out); return fake.Exit{} }
}

func TestProfilingModes(t *testing.T) {
	start := time.Now()
	events := []profiling.Event{
		{Kind: profiling.KindExec, Time: start, PID: 10, PPID: 1, Exe: "/usr/bin/python3", Argv: []string{"python3", "main.py"}, Cwd: "/ws"},
		{Kind: profiling.KindFile, Time: start, PID: 10, Op: receipt.OpRead, Path: "/ws/main.py"},
		{Kind: profiling.KindNet, Time: start, PID: 10, Op: receipt.NetConnect, Family: receipt.FamilyInet, Protocol: receipt.ProtoTCP, Address: "10.0.0.1", Port: 80, Errno: "EPERM"},
		{Kind: profiling.KindExit, Time: start.Add(time.Millisecond), PID: 10},
	}
	tests := []struct {
		name       string
		mode       profiling.Mode
		ctrl       *controller
		wantErr    error
		wantStatus string
		wantReason string
		wantProcs  int
	}{
		{name: "off", mode: profiling.Off, ctrl: &controller{}, wantStatus: receipt.StatusOff},
		{name: "complete", mode: profiling.BestEffort, ctrl: &controller{events: events, report: profiling.Report{Events: 4}}, wantStatus: receipt.StatusComplete, wantProcs: 1},
		{name: "dropped events", mode: profiling.BestEffort, ctrl: &controller{events: events, report: profiling.Report{Dropped: 3}}, wantStatus: receipt.StatusPartial, wantReason: "3 events were lost", wantProcs: 1},
		{name: "blind spot", mode: profiling.Required, ctrl: &controller{events: events, report: profiling.Report{Blind: []string{"io_uring_setup by pid 10"}}}, wantStatus: receipt.StatusPartial, wantReason: "io_uring", wantProcs: 1},
		{name: "best effort unavailable", mode: profiling.BestEffort, ctrl: &controller{availErr: errors.New("no BTF")}, wantStatus: receipt.StatusUnavailable, wantReason: "no BTF"},
		{name: "best effort start fails", mode: profiling.BestEffort, ctrl: &controller{startErr: errors.New("map full")}, wantStatus: receipt.StatusUnavailable, wantReason: "map full"},
		{name: "required unavailable", mode: profiling.Required, ctrl: &controller{availErr: errors.New("no BTF")}, wantErr: profiling.ErrUnavailable},
		{name: "required start fails", mode: profiling.Required, ctrl: &controller{startErr: errors.New("map full")}, wantErr: profiling.ErrUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fb := fake.New(fake.Config{Scripts: map[string]fake.Script{"print(1)": printScript("1\n")}})
			e := newEngine(t, hostBackend{fb}, tt.ctrl)
			run, err := e.Run(context.Background(), execution.Spec{Code: "print(1)", Language: "python", Profile: tt.mode})
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				if fb.Live() != 0 {
					t.Fatal("refused run left a live instance")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			p := run.Receipt.Profiling
			if p.Status != tt.wantStatus || !strings.Contains(p.Reason, tt.wantReason) || string(tt.mode) != p.Mode {
				t.Fatalf("profiling = %+v, want status %q reason containing %q", p, tt.wantStatus, tt.wantReason)
			}
			if len(run.Receipt.Processes) != tt.wantProcs {
				t.Fatalf("%d processes, want %d", len(run.Receipt.Processes), tt.wantProcs)
			}
			if tt.wantProcs > 0 {
				if len(tt.ctrl.targets) != 1 || tt.ctrl.targets[0].CgroupID != 42 || tt.ctrl.targets[0].RunID != run.Receipt.ID {
					t.Fatalf("controller targets = %+v", tt.ctrl.targets)
				}
				if n := run.Receipt.Network; len(n) != 1 || n[0].OK || n[0].Errno != "EPERM" {
					t.Fatalf("network = %+v", n)
				}
			}
			b, _ := receipt.Marshal(run.Receipt)
			if err := schema.Validate(b); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestTargetRegisteredBeforeStart checks the rule the engine adds to the
// seed's sequence: observation starts before the workload does.
func TestTargetRegisteredBeforeStart(t *testing.T) {
	ctrl := &controller{}
	fb := fake.New(fake.Config{Scripts: map[string]fake.Script{"x": func(p *fake.Proc) fake.Exit {
		ctrl.mu.Lock()
		ctrl.order = append(ctrl.order, "workload")
		ctrl.mu.Unlock()
		return fake.Exit{}
	}}})
	e := newEngine(t, hostBackend{fb}, ctrl)
	if _, err := e.Run(context.Background(), execution.Spec{Command: []string{"x"}, Profile: profiling.Required}); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(ctrl.order, ","); got != "profiling-start,workload" {
		t.Fatalf("order = %s", got)
	}
}

func TestFailureClassification(t *testing.T) {
	tests := []struct {
		name    string
		res     execution.Result
		failure string
	}{
		{"success", execution.Result{}, receipt.FailureNone},
		{"exit code", execution.Result{ExitCode: 2}, receipt.FailureCode},
		{"signal", execution.Result{ExitCode: -1, Signal: "SIGSEGV"}, receipt.FailureCode},
		{"timeout beats code", execution.Result{ExitCode: -1, Signal: "SIGKILL", TimedOut: true}, receipt.FailureTimeout},
		{"oom beats code", execution.Result{ExitCode: -1, Signal: "SIGKILL", OOMKilled: true}, receipt.FailureOOM},
		{"output limit", execution.Result{ExitCode: -1, Signal: "SIGKILL", OutputLimited: true}, receipt.FailureOutputLimit},
		{"infrastructure beats everything", execution.Result{TimedOut: true, Err: errors.New("vm died")}, receipt.FailureInfrastructure},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := execution.Classify(&tt.res)
			if o.Failure != tt.failure {
				t.Fatalf("failure = %q, want %q", o.Failure, tt.failure)
			}
			if tt.res.Err != nil && o.Error == "" {
				t.Fatal("infrastructure failure without error text")
			}
		})
	}
}

func TestBackendFailuresAreInfrastructure(t *testing.T) {
	tests := []struct {
		name string
		cfg  fake.Config
	}{
		{"prepare fails", fake.Config{PrepareErr: fmt.Errorf("%w: disk full", execution.ErrInfrastructure)}},
		{"start fails", fake.Config{StartErr: errors.New("vm did not boot")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.Scripts = map[string]fake.Script{"x": printScript("")}
			e := newEngine(t, fake.New(tt.cfg), nil)
			run, err := e.Run(context.Background(), execution.Spec{Command: []string{"x"}, Profile: profiling.BestEffort})
			if err != nil {
				t.Fatalf("Run: %v (a backend failure must still give a receipt)", err)
			}
			o := run.Receipt.Outcome
			if o.Failure != receipt.FailureInfrastructure || o.Error == "" {
				t.Fatalf("outcome = %+v", o)
			}
			if run.Receipt.Profiling.Status != receipt.StatusUnavailable {
				t.Fatalf("profiling status %q for a run that never started", run.Receipt.Profiling.Status)
			}
			b, _ := receipt.Marshal(run.Receipt)
			if err := schema.Validate(b); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestUsageErrorsGiveNoReceipt(t *testing.T) {
	e := newEngine(t, fake.New(fake.Config{}), nil)
	for _, spec := range []execution.Spec{
		{},
		{Command: []string{"x"}, Code: "y", Language: "python"},
		{Code: "1", Language: "cobol"},
		{Command: []string{"x"}, Limits: execution.Limits{MemoryBytes: 1}},
		{Command: []string{"x"}, Timeout: -time.Second},
		{Command: []string{"x"}, Env: map[string]string{"A=B": "c"}},
		{Command: []string{"x"}, Files: []execution.File{{Path: "../escape"}}},
		{Command: []string{"x"}, Files: []execution.File{{Path: "/abs"}}},
		{Command: []string{"x"}, Files: []execution.File{{Path: "a"}, {Path: "./a"}}},
		{Command: []string{"x"}, Collect: []string{"a/../../b"}},
		{Code: "x", Language: "python", Files: []execution.File{{Path: execution.CodeFile}}},
		{Command: []string{"x"}, Profile: "sometimes"},
	} {
		run, err := e.Run(context.Background(), spec)
		if !errors.Is(err, execution.ErrInvalidSpec) || run != nil {
			t.Errorf("spec %+v: got (%v, %v), want ErrInvalidSpec", spec, run, err)
		}
	}
	if _, err := e.Run(context.Background(), execution.Spec{Command: []string{"missing"}}); !errors.Is(err, execution.ErrCommandNotFound) {
		t.Errorf("missing command: %v", err)
	}
}

type denyAll struct{}

func (denyAll) Evaluate(r *receipt.Receipt) (*receipt.Policy, error) {
	return &receipt.Policy{Name: "deny-all", Verdict: receipt.VerdictDeny, Violations: []receipt.Violation{
		{Rule: "always", Severity: "deny", Message: "exit " + fmt.Sprint(r.Outcome.ExitCode), Evidence: []string{"/outcome"}},
	}}, nil
}

func TestPolicyIsSealedIntoReceipt(t *testing.T) {
	e := newEngine(t, fake.New(fake.Config{Scripts: map[string]fake.Script{"x": printScript("")}}), nil)
	run, err := e.Run(context.Background(), execution.Spec{Command: []string{"x"}}, execution.WithPolicy(denyAll{}), execution.WithID("run-1"))
	if err != nil {
		t.Fatal(err)
	}
	if p := run.Receipt.Policy; p == nil || p.Verdict != receipt.VerdictDeny || p.Violations[0].Message != "exit 0" {
		t.Fatalf("policy = %+v", run.Receipt.Policy)
	}
	if run.Receipt.ID != "run-1" {
		t.Fatalf("id = %q", run.Receipt.ID)
	}
	b, _ := receipt.Marshal(run.Receipt)
	if err := receipt.Verify(b); err != nil {
		t.Fatal(err)
	}
}

func TestStrongest(t *testing.T) {
	vm := fake.New(fake.Config{Isolation: execution.IsolationMicroVM})
	none := fake.New(fake.Config{})
	b, err := execution.Strongest([]execution.Backend{none, vm}, execution.IsolationNone)
	if err != nil || b != vm {
		t.Fatalf("Strongest = %v, %v", b, err)
	}
	if _, err := execution.Strongest([]execution.Backend{none}, execution.IsolationContainer); !errors.Is(err, execution.ErrBackendUnavailable) {
		t.Fatalf("Strongest without isolating backends = %v", err)
	}
	if _, err := execution.NewBackend("no-such-backend", execution.Options{}); !errors.Is(err, execution.ErrUnknownBackend) || !strings.Contains(err.Error(), "fake") {
		t.Fatalf("NewBackend = %v", err)
	}
}
