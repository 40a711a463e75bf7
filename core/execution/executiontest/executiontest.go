// Package executiontest is the conformance suite every execution backend
// must pass. It drives a backend through the engine and through the raw
// Instance contract, with workloads written in Python — the one language
// every real sandbox runs — and checks exit codes, signals, timeouts that
// kill double-forked daemons, output caps, stdin, environment hygiene,
// workspace files, concurrency, cancellation and cleanup.
//
// The fake backend runs the same scenarios through Go scripts registered
// under each scenario's code (see Scenarios).
package executiontest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"glasshouse.dev/glasshouse/core/execution"
	"glasshouse.dev/glasshouse/core/receipt"
	"glasshouse.dev/glasshouse/core/receipt/schema"
)

// MarkerEnv is set in every run's environment to a value unique to the run,
// so Harness.Leftovers can find what a run left behind.
const MarkerEnv = "GLASSHOUSE_TEST_MARKER"

// AllRuns asks Harness.Leftovers about every run, not one.
const AllRuns = ""

// HostSecretEnv is set in the test process's own environment; it must never
// reach a workload.
const HostSecretEnv = "GLASSHOUSE_TEST_HOST_SECRET"

// Harness adapts the suite to one backend.
type Harness struct {
	// Backend is the backend under test.
	Backend execution.Backend
	// Leftovers returns a description of everything of the run marked with
	// marker that still exists after the run was cleaned up (processes,
	// cgroups, sockets, images, directories). With AllRuns it reports what
	// any run of this backend left. It must not return anything for a
	// properly torn-down run.
	Leftovers func(marker string) []string
	// Timeout is the timeout used for runs expected to end by themselves;
	// default 60s. Backends with slow starts (VMs under emulation) may
	// raise it.
	Timeout time.Duration
	// Concurrency is the number of simultaneous runs in the concurrency
	// test; default 20.
	Concurrency int
}

// Run runs the whole suite against h.
func Run(t *testing.T, h Harness) {
	if h.Timeout == 0 {
		h.Timeout = 60 * time.Second
	}
	if h.Concurrency == 0 {
		h.Concurrency = 20
	}
	t.Setenv(HostSecretEnv, "must-not-leak")
	s := &suite{h: h}
	t.Run("ExitCodes", s.testExitCodes)
	t.Run("Signal", s.testSignal)
	t.Run("TimeoutKillsDoubleForkedDaemon", s.testTimeoutKillsTree)
	t.Run("DaemonEndsWithMain", s.testDaemonEndsWithMain)
	t.Run("OutputCap", s.testOutputCap)
	t.Run("Stdin", s.testStdin)
	t.Run("CleanEnvironment", s.testCleanEnvironment)
	t.Run("WorkspaceFiles", s.testWorkspaceFiles)
	t.Run("Concurrent", s.testConcurrent)
	t.Run("ContextCancel", s.testContextCancel)
	t.Run("InstanceContract", s.testInstanceContract)
	t.Run("MissingBinary", s.testMissingBinary)
}

type suite struct{ h Harness }

// run runs spec through a fresh engine with a unique marker and checks that
// nothing of it is left afterwards.
func (s *suite) run(t *testing.T, ctx context.Context, spec execution.Spec) *execution.Run {
	t.Helper()
	marker := execution.NewID()
	if spec.Env == nil {
		spec.Env = map[string]string{}
	}
	spec.Env[MarkerEnv] = marker
	if spec.Timeout == 0 {
		spec.Timeout = s.h.Timeout
	}
	e, err := execution.New(execution.Config{Backend: s.h.Backend})
	if err != nil {
		t.Fatal(err)
	}
	run, err := e.Run(ctx, spec)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	s.checkReceipt(t, run.Receipt)
	s.checkLeftovers(t, marker)
	return run
}

func (s *suite) checkLeftovers(t *testing.T, marker string) {
	t.Helper()
	if left := s.h.Leftovers(marker); len(left) > 0 {
		t.Errorf("run left things behind:\n  %s", strings.Join(left, "\n  "))
	}
}

// checkReceipt asserts the receipt is sealed, verifies and matches the
// schema.
func (s *suite) checkReceipt(t *testing.T, r *receipt.Receipt) {
	t.Helper()
	b, err := receipt.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	if err := receipt.Verify(b); err != nil {
		t.Errorf("receipt does not verify: %v", err)
	}
	if err := schema.Validate(b); err != nil {
		t.Errorf("receipt does not match the schema: %v", err)
	}
	if r.Backend.Name != s.h.Backend.Name() {
		t.Errorf("receipt backend = %q, want %q", r.Backend.Name, s.h.Backend.Name())
	}
}

func python(code string) execution.Spec {
	return execution.Spec{Code: code, Language: execution.LanguagePython}
}

func wantOutcome(t *testing.T, run *execution.Run, failure string, exit int, signal string) {
	t.Helper()
	o := run.Receipt.Outcome
	if o.Failure != failure || o.ExitCode != exit || o.Signal != signal {
		t.Fatalf("outcome = failure %q exit %d signal %q (error %q); want failure %q exit %d signal %q\nstderr: %s",
			o.Failure, o.ExitCode, o.Signal, o.Error, failure, exit, signal, run.Result.Stderr)
	}
}

func (s *suite) testExitCodes(t *testing.T) {
	for _, tt := range []struct {
		code    string
		exit    int
		failure string
	}{
		{CodeExit0, 0, receipt.FailureNone},
		{CodeExit7, 7, receipt.FailureCode},
		{CodeRaise, 1, receipt.FailureCode},
	} {
		run := s.run(t, context.Background(), python(tt.code))
		wantOutcome(t, run, tt.failure, tt.exit, "")
	}
	run := s.run(t, context.Background(), python(CodeExit0))
	if got := string(run.Result.Stdout); got != "ok\n" {
		t.Errorf("stdout = %q, want %q", got, "ok\n")
	}
	if run.Receipt.Output.StdoutSHA256 != receipt.SHA256Hex([]byte("ok\n")) {
		t.Errorf("stdout digest does not match the output")
	}
}

func (s *suite) testSignal(t *testing.T) {
	run := s.run(t, context.Background(), python(CodeSIGTERM))
	wantOutcome(t, run, receipt.FailureCode, -1, "SIGTERM")
}

func (s *suite) testTimeoutKillsTree(t *testing.T) {
	spec := python(CodeDaemonThenHang)
	spec.Timeout = s.h.Timeout/10 + 2*time.Second
	start := time.Now()
	run := s.run(t, context.Background(), spec)
	wantOutcome(t, run, receipt.FailureTimeout, -1, "SIGKILL")
	if !run.Receipt.Outcome.TimedOut {
		t.Error("timed_out = false")
	}
	if el := time.Since(start); el > spec.Timeout+s.h.Timeout/2 {
		t.Errorf("run took %s for a %s timeout", el, spec.Timeout)
	}
	if !strings.Contains(string(run.Result.Stdout), "daemon started") {
		t.Errorf("the daemon did not start: stdout %q stderr %q", run.Result.Stdout, run.Result.Stderr)
	}
}

func (s *suite) testDaemonEndsWithMain(t *testing.T) {
	run := s.run(t, context.Background(), python(CodeDaemonThenExit))
	wantOutcome(t, run, receipt.FailureNone, 0, "")
	if run.Receipt.Outcome.TimedOut {
		t.Error("a run whose main process exited waited for its daemon")
	}
}

func (s *suite) testOutputCap(t *testing.T) {
	for _, stream := range []string{"stdout", "stderr"} {
		t.Run(stream, func(t *testing.T) {
			spec := python(CodeFlood)
			spec.Env = map[string]string{"STREAM": stream}
			spec.Limits.OutputBytes = 1000
			run := s.run(t, context.Background(), spec)
			if run.Receipt.Outcome.Failure != receipt.FailureOutputLimit {
				t.Fatalf("failure = %q, want output_limit", run.Receipt.Outcome.Failure)
			}
			out, trunc := run.Result.Stdout, run.Result.StdoutTruncated
			if stream == "stderr" {
				out, trunc = run.Result.Stderr, run.Result.StderrTruncated
			}
			if len(out) != 1000 || !trunc {
				t.Fatalf("%s: %d bytes, truncated %v; want 1000, true", stream, len(out), trunc)
			}
			if strings.Trim(string(out), "x") != "" {
				t.Fatalf("%s holds something other than the flood", stream)
			}
			flag := run.Receipt.Output.StdoutTruncated
			if stream == "stderr" {
				flag = run.Receipt.Output.StderrTruncated
			}
			if !flag {
				t.Fatal("receipt does not flag the truncation")
			}
		})
	}
}

func (s *suite) testStdin(t *testing.T) {
	spec := python(CodeUpperStdin)
	spec.Stdin = []byte("hello, sandbox\n")
	run := s.run(t, context.Background(), spec)
	wantOutcome(t, run, receipt.FailureNone, 0, "")
	if got := string(run.Result.Stdout); got != "HELLO, SANDBOX\n" {
		t.Fatalf("stdout = %q", got)
	}
}

// allowedBase are the variables a backend may add to the spec's env.
var allowedBase = []string{"PATH", "HOME", "LANG", "TMPDIR", "PWD", "LC_CTYPE", "USER", "LOGNAME", "SHLVL", "TERM"}

func (s *suite) testCleanEnvironment(t *testing.T) {
	spec := python(CodePrintEnv)
	spec.Env = map[string]string{"ASKED_FOR": "yes"}
	run := s.run(t, context.Background(), spec)
	wantOutcome(t, run, receipt.FailureNone, 0, "")
	var env map[string]string
	if err := json.Unmarshal(run.Result.Stdout, &env); err != nil {
		t.Fatalf("decode env: %v (stdout %q)", err, run.Result.Stdout)
	}
	if env["ASKED_FOR"] != "yes" {
		t.Errorf("ASKED_FOR = %q, want yes", env["ASKED_FOR"])
	}
	for k, v := range env {
		if k == "ASKED_FOR" || k == MarkerEnv || slices.Contains(allowedBase, k) {
			continue
		}
		t.Errorf("unexpected variable %s=%q in the sandbox", k, v)
	}
	if _, leaked := env[HostSecretEnv]; leaked {
		t.Errorf("host variable %s leaked into the sandbox", HostSecretEnv)
	}
	for _, hostVar := range []string{"GOPATH", "GOROOT", "SSH_AUTH_SOCK", "AWS_SECRET_ACCESS_KEY"} {
		if _, ok := os.LookupEnv(hostVar); ok {
			if _, leaked := env[hostVar]; leaked {
				t.Errorf("host variable %s leaked into the sandbox", hostVar)
			}
		}
	}
}

func (s *suite) testWorkspaceFiles(t *testing.T) {
	spec := python(CodeFiles)
	spec.Files = []execution.File{{Path: "data/in.txt", Content: []byte("abc")}}
	spec.Collect = []string{"out.txt", "nested/deep/out2.txt", "missing.txt"}
	run := s.run(t, context.Background(), spec)
	wantOutcome(t, run, receipt.FailureNone, 0, "")
	got := map[string]string{}
	for _, f := range run.Result.Files {
		got[f.Path] = string(f.Content)
	}
	want := map[string]string{"out.txt": "cba", "nested/deep/out2.txt": "ABC"}
	if len(got) != len(want) || got["out.txt"] != want["out.txt"] || got["nested/deep/out2.txt"] != want["nested/deep/out2.txt"] {
		t.Fatalf("collected %q, want %q", got, want)
	}
	if n := len(run.Receipt.Output.Files); n != 2 {
		t.Fatalf("receipt lists %d output files, want 2", n)
	}
	if in := run.Receipt.Subject.Files; len(in) != 1 || in[0].Path != "data/in.txt" || in[0].Bytes != 3 {
		t.Fatalf("receipt subject files = %+v", in)
	}
}

func (s *suite) testConcurrent(t *testing.T) {
	var wg sync.WaitGroup
	errs := make(chan error, s.h.Concurrency)
	for n := 0; n < s.h.Concurrency; n++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			spec := python(CodeConcurrent)
			spec.Env = map[string]string{"INDEX": fmt.Sprint(n), MarkerEnv: execution.NewID()}
			spec.Collect = []string{"index.txt"}
			spec.Timeout = s.h.Timeout * 2
			e, err := execution.New(execution.Config{Backend: s.h.Backend})
			if err != nil {
				errs <- err
				return
			}
			run, err := e.Run(context.Background(), spec)
			switch {
			case err != nil:
				errs <- fmt.Errorf("run %d: %w", n, err)
			case run.Receipt.Outcome.Failure != receipt.FailureNone:
				errs <- fmt.Errorf("run %d: failure %q: %s %s", n, run.Receipt.Outcome.Failure, run.Receipt.Outcome.Error, run.Result.Stderr)
			case string(run.Result.Stdout) != fmt.Sprintf("run %d\n", n):
				errs <- fmt.Errorf("run %d: stdout %q", n, run.Result.Stdout)
			case len(run.Result.Files) != 1 || string(run.Result.Files[0].Content) != fmt.Sprint(n):
				errs <- fmt.Errorf("run %d: collected %+v", n, run.Result.Files)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	s.checkLeftovers(t, AllRuns)
}

func (s *suite) testContextCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	spec := python(CodeHang)
	spec.Timeout = 10 * s.h.Timeout
	marker := execution.NewID()
	spec.Env = map[string]string{MarkerEnv: marker}
	e, err := execution.New(execution.Config{Backend: s.h.Backend})
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	go func() {
		<-started
		// Give the workload time to get going before cancelling.
		time.Sleep(s.h.Timeout / 60)
		cancel()
	}()
	begin := time.Now()
	run, err := e.Run(ctx, spec, execution.OnStarted(func(string) { close(started) }))
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if el := time.Since(begin); el > s.h.Timeout {
		t.Errorf("cancelled run took %s", el)
	}
	o := run.Receipt.Outcome
	if o.Failure != receipt.FailureInfrastructure || !strings.Contains(o.Error, "canceled") {
		t.Errorf("outcome = %q (%q), want infrastructure failure mentioning the cancellation", o.Failure, o.Error)
	}
	s.checkLeftovers(t, marker)
}

// testInstanceContract exercises Start, Wait and Cleanup directly.
func (s *suite) testInstanceContract(t *testing.T) {
	ctx := context.Background()
	prepare := func(code string) (execution.Instance, string) {
		t.Helper()
		marker := execution.NewID()
		spec := python(code)
		spec.Env = map[string]string{MarkerEnv: marker}
		spec = spec.WithDefaults()
		spec.Timeout = s.h.Timeout
		inst, err := s.h.Backend.Prepare(ctx, spec)
		if err != nil {
			t.Fatalf("Prepare: %v", err)
		}
		t.Cleanup(func() { _ = inst.Cleanup(ctx) })
		return inst, marker
	}

	t.Run("CleanupTwiceAfterRun", func(t *testing.T) {
		inst, marker := prepare(CodeExit0)
		if _, err := inst.Wait(ctx); !errors.Is(err, execution.ErrNotStarted) {
			t.Errorf("Wait before Start = %v, want ErrNotStarted", err)
		}
		if err := inst.Start(ctx); err != nil {
			t.Fatal(err)
		}
		if err := inst.Start(ctx); !errors.Is(err, execution.ErrAlreadyStarted) {
			t.Errorf("second Start = %v, want ErrAlreadyStarted", err)
		}
		res1, err1 := inst.Wait(ctx)
		res2, err2 := inst.Wait(ctx)
		if err1 != nil || err2 != nil || res1.ExitCode != 0 || !bytes.Equal(res1.Stdout, res2.Stdout) {
			t.Errorf("Wait twice: (%v, %v), stdout %q vs %q", err1, err2, res1.Stdout, res2.Stdout)
		}
		if err := inst.Cleanup(ctx); err != nil {
			t.Errorf("Cleanup: %v", err)
		}
		if err := inst.Cleanup(ctx); err != nil {
			t.Errorf("second Cleanup: %v", err)
		}
		s.checkLeftovers(t, marker)
	})
	t.Run("CleanupWithoutStart", func(t *testing.T) {
		inst, marker := prepare(CodeExit0)
		if err := inst.Cleanup(ctx); err != nil {
			t.Errorf("Cleanup: %v", err)
		}
		if err := inst.Cleanup(ctx); err != nil {
			t.Errorf("second Cleanup: %v", err)
		}
		s.checkLeftovers(t, marker)
	})
	t.Run("CleanupWhileRunning", func(t *testing.T) {
		inst, marker := prepare(CodeDaemonThenHang)
		if err := inst.Start(ctx); err != nil {
			t.Fatal(err)
		}
		time.Sleep(s.h.Timeout / 60)
		cctx, cancel := context.WithCancel(ctx)
		cancel() // Cleanup must ignore cancellation.
		if err := inst.Cleanup(cctx); err != nil {
			t.Errorf("Cleanup: %v", err)
		}
		if err := inst.Cleanup(ctx); err != nil {
			t.Errorf("second Cleanup: %v", err)
		}
		s.checkLeftovers(t, marker)
	})
}

func (s *suite) testMissingBinary(t *testing.T) {
	e, err := execution.New(execution.Config{Backend: s.h.Backend})
	if err != nil {
		t.Fatal(err)
	}
	const name = "glasshouse-no-such-binary"
	run, err := e.Run(context.Background(), execution.Spec{Command: []string{name, "--flag"}, Timeout: s.h.Timeout})
	if !errors.Is(err, execution.ErrCommandNotFound) {
		t.Fatalf("Run = (%v, %v), want ErrCommandNotFound", run, err)
	}
	if !strings.Contains(err.Error(), name) {
		t.Errorf("error %q does not name the command", err)
	}
}
