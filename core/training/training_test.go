package training

import (
	"bytes"
	"encoding/json"
	"flag"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"testing"

	"glasshouse.dev/glasshouse/core/receipt"
)

var update = flag.Bool("update", false, "rewrite golden files")

func ptr[T any](v T) *T { return &v }

// run returns a sealed receipt of a clean run that printed stdout.
func run(t testing.TB, stdout string, mutate func(r *receipt.Receipt)) *receipt.Receipt {
	t.Helper()
	r := &receipt.Receipt{
		ID:        "run-1",
		Subject:   receipt.Subject{Argv: []string{"python3", "main.py"}},
		Backend:   receipt.Backend{Name: "process", Isolation: "none", Containment: "cgroup"},
		Limits:    receipt.Limits{TimeoutMS: 5000, Network: "none"},
		Outcome:   receipt.Outcome{Failure: receipt.FailureNone, DurationMS: 120},
		Output:    receipt.Output{StdoutBytes: int64(len(stdout)), StdoutSHA256: receipt.SHA256Hex([]byte(stdout)), StderrSHA256: receipt.SHA256Hex(nil)},
		Resources: receipt.Resources{CPUUserMS: 80, CPUSystemMS: 20, MemoryPeakBytes: 12 << 20, PIDsPeak: 1},
		Profiling: receipt.Profiling{Mode: "required", Status: receipt.StatusComplete, Collector: "ebpf-host"},
		Processes: []receipt.Process{{PID: 10, PPID: 1, Exe: "/usr/bin/python3", Cwd: "/srv/ws"}},
		Files: []receipt.File{
			{Path: "/usr/lib/python3.11/os.py", Op: "read", PID: 10, Count: 1, OK: true},
			{Path: "/srv/ws/out.txt", Op: "write", PID: 10, Count: 1, OK: true},
			{Path: "/dev/null", Op: "write", PID: 10, Count: 1, OK: true},
		},
	}
	if mutate != nil {
		mutate(r)
	}
	if err := receipt.Seal(r); err != nil {
		t.Fatal(err)
	}
	return r
}

func TestCorrectness(t *testing.T) {
	cases := []struct {
		name    string
		stdout  string
		in      Input
		mutate  func(*receipt.Receipt)
		checked bool
		passed  bool
		source  string
		reason  string
		mask    bool
	}{
		{"no expectation", "4\n", Input{}, nil, false, false, SourceNone, "no expectation", false},
		{"exact by hash", "4\n", Input{Expect: Expect{Stdout: ptr("4\n")}}, nil, true, true, SourceStdout, "", false},
		{"exact by hash, wrong", "5\n", Input{Expect: Expect{Stdout: ptr("4\n")}}, nil, true, false, SourceStdout, "by sha256", false},
		{"exact with stdout", "4\n", Input{Stdout: []byte("4\n"), Expect: Expect{Stdout: ptr("4\n")}}, nil, true, true, SourceStdout, "", false},
		{"trailing space matters when exact", "4 \n", Input{Stdout: []byte("4 \n"), Expect: Expect{Stdout: ptr("4\n")}}, nil, true, false, SourceStdout, "stdout differs", false},
		{"trim", "4 \r\n\n\n", Input{Stdout: []byte("4 \r\n\n\n"), Expect: Expect{Stdout: ptr("4"), Match: MatchTrim}}, nil, true, true, SourceStdout, "", false},
		{"trim keeps inner differences", "4\n5\n", Input{Stdout: []byte("4\n5\n"), Expect: Expect{Stdout: ptr("4 5"), Match: MatchTrim}}, nil, true, false, SourceStdout, "ignoring trailing", false},
		{"trim without stdout", "4\n", Input{Expect: Expect{Stdout: ptr("4"), Match: MatchTrim}}, nil, false, false, SourceStdout, "needs the run's stdout", false},
		{"stdout of another run", "4\n", Input{Stdout: []byte("5\n"), Expect: Expect{Stdout: ptr("5\n")}}, nil, false, false, SourceStdout, "not the one the receipt hashes", false},
		{"truncated", "4\n", Input{Expect: Expect{Stdout: ptr("4\n")}}, func(r *receipt.Receipt) { r.Output.StdoutTruncated = true }, true, false, SourceStdout, "truncated", false},
		{"test passes", "", Input{Expect: Expect{Test: &TestResult{ExitCode: 0}, Stdout: ptr("ignored")}}, nil, true, true, SourceTest, "", false},
		{"test fails", "", Input{Expect: Expect{Test: &TestResult{ExitCode: 1}}}, nil, true, false, SourceTest, "test command failed", false},
		{"test timed out", "", Input{Expect: Expect{Test: &TestResult{ExitCode: 0, Failure: "timeout"}}}, nil, true, false, SourceTest, "test command failed", false},
		{"test infrastructure", "", Input{Expect: Expect{Test: &TestResult{ExitCode: 125, Failure: "infrastructure"}}}, nil, false, false, SourceTest, "infrastructure", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rec := Derive(run(t, tc.stdout, tc.mutate), tc.in)
			c := rec.Correctness
			if c.Checked != tc.checked || c.Passed != tc.passed || c.Source != tc.source || !strings.Contains(c.Reason, tc.reason) || rec.Mask != tc.mask {
				t.Fatalf("%+v mask=%v", c, rec.Mask)
			}
			if (c.Score == 1) != c.Passed {
				t.Errorf("score %v for passed=%v", c.Score, c.Passed)
			}
			_, inBreakdown := rec.Reward.Terms[TermCorrectness]
			if inBreakdown != (c.Checked && !rec.Mask) {
				t.Errorf("correctness in breakdown: %v, checked %v", inBreakdown, c.Checked)
			}
		})
	}
}

func TestInfrastructureFailureIsMasked(t *testing.T) {
	r := run(t, "", func(r *receipt.Receipt) {
		r.Outcome = receipt.Outcome{Failure: receipt.FailureInfrastructure, Error: "vm did not\nboot", ExitCode: -1}
	})
	rec := Derive(r, Input{Expect: Expect{Stdout: ptr("4\n")}})
	if !rec.Mask || rec.MaskReason != "infrastructure failure: vm did not boot" || rec.Reward.Total != 0 || len(rec.Reward.Terms) != 0 {
		t.Fatalf("%+v", rec)
	}
	// A code failure is the model's: not masked, penalised by correctness.
	r = run(t, "", func(r *receipt.Receipt) { r.Outcome = receipt.Outcome{Failure: receipt.FailureCode, ExitCode: 1} })
	rec = Derive(r, Input{Expect: Expect{Stdout: ptr("4\n")}})
	if rec.Mask || rec.Failure != "code" || rec.ExitCode != 1 || rec.Reward.Total != 0 {
		t.Fatalf("%+v", rec)
	}
}

func TestBehaviour(t *testing.T) {
	r := run(t, "", func(r *receipt.Receipt) {
		r.Processes = append(r.Processes,
			receipt.Process{PID: 10, PPID: 1, Exe: "/bin/sh", StartOffsetMS: 5}, // exec in place
			receipt.Process{PID: 11, PPID: 10, Exe: "/usr/bin/curl", StartOffsetMS: 6},
			receipt.Process{PID: 12, PPID: 10, Exe: "/usr/bin/git", StartOffsetMS: 7})
		r.Network = []receipt.Net{
			{Op: "connect", Family: "inet", Address: "1.1.1.1", Port: 443, PID: 11, Count: 3, Errno: "EPERM"},
			{Op: "sendto", Family: "inet6", Address: "::1", Port: 53, PID: 11, Count: 2, OK: true},
			{Op: "connect", Family: "unix", Address: "/run/x.sock", PID: 10, Count: 9, OK: true},
		}
		r.Files = append(r.Files,
			receipt.File{Path: "/etc/passwd", Op: "write", PID: 10, Count: 2},
			receipt.File{Path: "/etc/passwd", Op: "chmod", PID: 10, Count: 1},
			receipt.File{Path: "/srv/ws/a", Op: "rename", Target: "/tmp/a", PID: 10, Count: 1, OK: true},
			receipt.File{Path: "/srv/ws/l", Op: "symlink", Target: "/srv/ws/l2", PID: 10, Count: 1, OK: true},
			receipt.File{Path: "/dev/pts/1", Op: "write", PID: 10, Count: 1, OK: true},
			receipt.File{Path: "/srv/ws/tests/test_main.py", Op: "read", PID: 10, Count: 1, OK: true},
			receipt.File{Path: "/srv/ws/tests/test_main.py", Op: "write", PID: 10, Count: 1, OK: true},
			receipt.File{Path: "/opt/grader/answers.json", Op: "read", PID: 10, Count: 1, OK: true},
			receipt.File{Path: "/opt/grader/x/answers.json", Op: "read", PID: 10, Count: 1, OK: true},
			receipt.File{Path: "/opt/graderx", Op: "read", PID: 10, Count: 1, OK: true})
	})
	rec := Derive(r, Input{GraderPaths: []string{"tests", "/opt/grader/**/answers.json"}})
	want := Behaviour{
		Observed: "complete", Workspace: "/srv/ws",
		NetworkAttempts: 5, NetworkDenied: 3,
		WritesOutsideWorkspace: 2, // /etc/passwd, /tmp/a
		ProcessSpawns:          2,
		GraderReads:            3,
		GraderWrites:           1,
	}
	if rec.Behaviour != want {
		t.Fatalf("behaviour\n got %+v\nwant %+v", rec.Behaviour, want)
	}
	// An explicit workspace wins over the inferred one.
	rec = Derive(r, Input{Workspace: "/srv"})
	if rec.Behaviour.Workspace != "/srv" || rec.Behaviour.WritesOutsideWorkspace != 2 {
		t.Fatalf("%+v", rec.Behaviour)
	}
	rec = Derive(r, Input{Workspace: "/srv/ws/tests"})
	if rec.Behaviour.WritesOutsideWorkspace != 5 { // + /srv/ws/out.txt, /srv/ws/a, /srv/ws/l2
		t.Fatalf("%+v", rec.Behaviour)
	}
}

func TestSleptToTimeout(t *testing.T) {
	cases := []struct {
		name     string
		timedOut bool
		cpuMS    int64
		mem      int64
		want     bool
	}{
		{"slept", true, 30, 1 << 20, true},
		{"busy loop", true, 4900, 1 << 20, false},
		{"finished", false, 0, 1 << 20, false},
		{"not accounted", true, 0, 0, false},
	}
	for _, c := range cases {
		r := run(t, "", func(r *receipt.Receipt) {
			r.Outcome = receipt.Outcome{TimedOut: c.timedOut, DurationMS: 5000, Failure: receipt.FailureNone}
			if c.timedOut {
				r.Outcome.Failure, r.Outcome.Signal = receipt.FailureTimeout, "SIGKILL"
			}
			r.Resources = receipt.Resources{CPUUserMS: c.cpuMS, MemoryPeakBytes: c.mem}
		})
		if got := Derive(r, Input{}).Behaviour.SleptToTimeout; got != c.want {
			t.Errorf("%s: %v", c.name, got)
		}
	}
}

func TestDefaultReward(t *testing.T) {
	good := Derive(run(t, "4\n", nil), Input{Expect: Expect{Stdout: ptr("4\n")}})
	if good.Reward.Total != 1 {
		t.Fatalf("correct, clean run: %+v", good.Reward)
	}
	hacker := Derive(run(t, "4\n", func(r *receipt.Receipt) {
		r.Files = append(r.Files, receipt.File{Path: "/srv/ws/tests/expected.txt", Op: "read", PID: 10, Count: 1, OK: true})
	}), Input{Expect: Expect{Stdout: ptr("4\n")}, GraderPaths: []string{"tests/"}})
	if hacker.Reward.Total != 0 || hacker.Reward.Terms[TermGraderReads] != -1 || hacker.Reward.Terms[TermCorrectness] != 1 {
		t.Fatalf("reward hacking: %+v", hacker.Reward)
	}
	sleeper := Derive(run(t, "", func(r *receipt.Receipt) {
		r.Outcome = receipt.Outcome{TimedOut: true, Failure: receipt.FailureTimeout, DurationMS: 5000}
	}), Input{Expect: Expect{Stdout: ptr("4\n")}})
	if got := sleeper.Reward.Total; got != -0.7 {
		t.Fatalf("sleeper: %v %+v", got, sleeper.Reward.Terms)
	}
}

func TestRewardSpec(t *testing.T) {
	spec, err := ParseReward([]byte(`version: 1
weights:
  correctness: 2
  process_spawns: -0.25
  duration_seconds: -0.01
  incomplete_observation: -1
caps:
  process_spawns: 4
clip: [-3, 3]
`))
	if err != nil {
		t.Fatal(err)
	}
	r := run(t, "4\n", func(r *receipt.Receipt) {
		for i := int64(0); i < 10; i++ {
			r.Processes = append(r.Processes, receipt.Process{PID: 20 + i, PPID: 10, StartOffsetMS: 1 + i})
		}
		r.Outcome.DurationMS = 3000
		r.Profiling.Dropped = 2
	})
	rec := Derive(r, Input{Expect: Expect{Stdout: ptr("4\n")}, Reward: spec})
	want := map[string]float64{TermCorrectness: 2, TermProcessSpawns: -1, TermDurationSeconds: -0.03, TermIncompleteObservation: -1}
	if len(rec.Reward.Terms) != len(want) {
		t.Fatalf("terms %+v", rec.Reward.Terms)
	}
	for k, v := range want {
		if got := rec.Reward.Terms[k]; got < v-1e-12 || got > v+1e-12 {
			t.Errorf("%s: %v, want %v", k, got, v)
		}
	}
	if rec.Reward.Total < -0.03-1e-12 || rec.Reward.Total > -0.03+1e-12 {
		t.Errorf("total %v", rec.Reward.Total)
	}
}

func TestParseRewardErrors(t *testing.T) {
	cases := []struct{ src, want string }{
		{"version: 1\nweights:\n  correctnes: 1\n", "reward spec:3:3: unknown term \"correctnes\""},
		{"version: 1\nweights:\n  correctness: high\n", "reward spec:3:16: weights.correctness must be a number"},
		{"version: 2\nweights: {}\n", "reward spec:1:10: version: want 1"},
		{"version: 1\nweights: {correctness: 1e9}\n", "reward spec:2:24: weight 1e+09 is beyond"},
		{"version: 1\nweights: {}\ncaps: {correctness: 2}\n", "reward spec:3:8: \"correctness\" is not a count"},
		{"version: 1\nweights: {}\ncaps: {process_spawns: 0}\n", "reward spec:3:24: cap 0 must be between"},
		{"version: 1\nweights: {}\nclip: [1, -1]\n", "reward spec:3:7: clip must be two numbers"},
		{"version: 1\nweights: {}\nbonus: 1\n", "reward spec:3:1: unknown field \"bonus\""},
		{"weights: {}\n", "reward spec:1:8: missing \"version\""},
		{"version: 1\nweights: [\n", "reward spec:2:"},
		{"", "reward spec:1:1: empty reward spec"},
		{"{}", "reward spec:1:1: missing \"version\""},
	}
	for _, c := range cases {
		_, err := ParseReward([]byte(c.src))
		if err == nil || !strings.HasPrefix(err.Error(), c.want) {
			t.Errorf("%q: %v\nwant prefix %s", c.src, err, c.want)
		}
	}
	dir := t.TempDir()
	os.WriteFile(dir+"/r.yaml", []byte("version: 1\nweights: {x: 1}\n"), 0o644)
	if _, err := LoadReward(dir + "/r.yaml"); err == nil || !strings.HasPrefix(err.Error(), dir+"/r.yaml:2:11:") {
		t.Errorf("load: %v", err)
	}
}

// TestRecordGolden pins the JSONL field names: they are a public
// interface. Run with -update after an intended change.
func TestRecordGolden(t *testing.T) {
	r := run(t, "4\n", func(r *receipt.Receipt) {
		r.Network = []receipt.Net{{Op: "connect", Family: "inet", Address: "10.0.0.1", Port: 80, PID: 10, Count: 1, Errno: "EPERM"}}
	})
	rec := Derive(r, Input{Expect: Expect{Stdout: ptr("4\n")}})
	// The digest changes whenever receipt v1 gains a field; the golden
	// file pins record names, not receipt bytes.
	rec.ReceiptDigest = "sha256:0"
	var buf bytes.Buffer
	if err := WriteJSONL(&buf, rec); err != nil {
		t.Fatal(err)
	}
	golden := "testdata/record.golden.jsonl"
	if *update {
		os.WriteFile(golden, buf.Bytes(), 0o644)
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf.Bytes(), want) {
		t.Fatalf("record changed:\n%s\nwant:\n%s", buf.Bytes(), want)
	}
	if bytes.Count(buf.Bytes(), []byte("\n")) != 1 {
		t.Fatal("a record must be one line")
	}
}

func TestDeterministic(t *testing.T) {
	r := run(t, "4\n", func(r *receipt.Receipt) {
		for i := int64(0); i < 50; i++ {
			r.Files = append(r.Files, receipt.File{Path: "/x/" + string(rune('a'+i%26)), Op: []string{"read", "write"}[i%2], PID: 10 + i%3, Count: 1})
			r.Processes = append(r.Processes, receipt.Process{PID: 100 + i, PPID: 10, StartOffsetMS: 1 + i})
			r.Network = append(r.Network, receipt.Net{Op: "connect", Family: "inet", Address: "10.0.0.1", Port: i, PID: 10, Count: 1})
		}
	})
	in := Input{Expect: Expect{Stdout: ptr("4\n")}, GraderPaths: []string{"/x/b", "/x/[cd]"}}
	want, _ := json.Marshal(Derive(r, in))
	rng := rand.New(rand.NewPCG(1, 1))
	for i := 0; i < 200; i++ {
		s := *r
		s.Files, s.Processes, s.Network = slices.Clone(r.Files), slices.Clone(r.Processes), slices.Clone(r.Network)
		rng.Shuffle(len(s.Files), func(a, b int) { s.Files[a], s.Files[b] = s.Files[b], s.Files[a] })
		rng.Shuffle(len(s.Processes), func(a, b int) { s.Processes[a], s.Processes[b] = s.Processes[b], s.Processes[a] })
		rng.Shuffle(len(s.Network), func(a, b int) { s.Network[a], s.Network[b] = s.Network[b], s.Network[a] })
		got, _ := json.Marshal(Derive(&s, in))
		if !bytes.Equal(got, want) {
			t.Fatalf("shuffled input changed the record:\n%s\n%s", got, want)
		}
	}
}

func TestValidateGraders(t *testing.T) {
	if err := ValidateGraders([]string{"/ok/**", "tests"}); err != nil {
		t.Error(err)
	}
	if err := ValidateGraders([]string{"/bad/[x"}); err == nil {
		t.Error("bad glob accepted")
	}
}
