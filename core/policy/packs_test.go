package policy

import (
	"context"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"

	"glasshouse.dev/glasshouse/core/receipt"
)

// cleanReceipt is a fully observed Python run that stayed in its
// workspace: every pack allows it.
func cleanReceipt() *receipt.Receipt {
	r := &receipt.Receipt{
		ID:        "run-1",
		Subject:   receipt.Subject{Argv: []string{"python3", "-c", "print(1)"}},
		Backend:   receipt.Backend{Name: "process", Isolation: "none"},
		Limits:    receipt.Limits{TimeoutMS: 10000, MemoryBytes: 512 << 20, PIDs: 64, OutputBytes: 1 << 20, Network: "none"},
		Outcome:   receipt.Outcome{Failure: receipt.FailureNone, DurationMS: 40},
		Output:    receipt.Output{StdoutBytes: 2},
		Resources: receipt.Resources{MemoryPeakBytes: 9 << 20, PIDsPeak: 1},
		Profiling: receipt.Profiling{Mode: "required", Status: receipt.StatusComplete, Collector: "ebpf-host", Events: 120},
		Processes: []receipt.Process{{PID: 42, PPID: 1, Exe: "/usr/bin/python3.11", Argv: []string{"python3"}, Cwd: "/tmp/run/work", EndOffsetMS: 40}},
		Files: []receipt.File{
			{Path: "/usr/lib/python3.11/os.py", Op: "read", PID: 42, Count: 1, OK: true},
			{Path: "/usr/bin/python3.11", Op: "exec", PID: 42, Count: 1, OK: true},
			{Path: "/tmp/run/work/out.txt", Op: "create", PID: 42, Count: 1, OK: true},
			{Path: "/tmp/run/work/out.txt", Op: "write", PID: 42, Count: 3, OK: true},
			{Path: "/tmp/run/work/old.txt", Op: "rename", Target: "/tmp/run/work/new.txt", PID: 42, Count: 1, OK: true},
			{Path: "/dev/null", Op: "write", PID: 42, Count: 1, OK: true},
			{Path: "/dev/pts/3", Op: "write", PID: 42, Count: 1, OK: true},
			{Path: "/etc/passwd", Op: "read", PID: 42, Count: 1, OK: true},
			{Path: "/proc/self/status", Op: "read", PID: 42, Count: 1, OK: true},
		},
		Network: []receipt.Net{
			{Op: "connect", Family: "unix", Address: "/var/run/nscd/socket", PID: 42, Count: 1, OK: false, Errno: "ENOENT"},
		},
	}
	if err := receipt.Seal(r); err != nil {
		panic(err)
	}
	return r
}

type packCase struct {
	name    string
	pack    string
	mutate  func(r *receipt.Receipt)
	verdict string
	rule    string // the rule that must fire ("" for allow)
	// evidence names what the rule's evidence must point at, in order:
	// a JSON pointer ("/outcome/timed_out"), or the path, address or exe
	// of an entry of the rule's section ("/etc/shadow" is tried as a file
	// path first, then as a pointer).
	evidence []string
}

func packCases() []packCase {
	return []packCase{
		// no-network
		{"no-network allows unix sockets", "no-network", nil, "allow", "", nil},
		{"no-network denies a refused connect", "no-network", func(r *receipt.Receipt) {
			r.Network = append(r.Network, receipt.Net{Op: "connect", Family: "inet", Protocol: "tcp", Address: "127.0.0.1", Port: 8080, PID: 42, Count: 1, Errno: "EPERM"})
		}, "deny", "no-network/network", []string{"127.0.0.1"}},
		{"no-network denies DNS over UDP", "no-network", func(r *receipt.Receipt) {
			r.Network = append(r.Network, receipt.Net{Op: "sendto", Family: "inet6", Protocol: "udp", Address: "::1", Port: 53, PID: 42, Count: 2, OK: true})
		}, "deny", "no-network/network", []string{"::1"}},

		// workspace-only-writes
		{"workspace writes are allowed", "workspace-only-writes", nil, "allow", "", nil},
		{"a write to /tmp outside the workspace", "workspace-only-writes", func(r *receipt.Receipt) {
			r.Files = append(r.Files, receipt.File{Path: "/tmp/evil", Op: "write", PID: 42, Count: 1, OK: true})
		}, "deny", "workspace-only-writes/write-outside-workspace", []string{"/tmp/evil"}},
		{"a sibling directory is not the workspace", "workspace-only-writes", func(r *receipt.Receipt) {
			r.Files = append(r.Files, receipt.File{Path: "/tmp/run/workshop/x", Op: "create", PID: 42, Count: 1, OK: true})
		}, "deny", "workspace-only-writes/write-outside-workspace", []string{"/tmp/run/workshop/x"}},
		{"a refused delete still counts", "workspace-only-writes", func(r *receipt.Receipt) {
			r.Files = append(r.Files, receipt.File{Path: "/etc/hosts", Op: "delete", PID: 42, Count: 1, Errno: "EACCES"})
		}, "deny", "workspace-only-writes/write-outside-workspace", []string{"/etc/hosts"}},
		{"rename out of the workspace", "workspace-only-writes", func(r *receipt.Receipt) {
			r.Files = append(r.Files, receipt.File{Path: "/tmp/run/work/a", Op: "rename", Target: "/home/u/a", PID: 42, Count: 1, OK: true})
		}, "deny", "workspace-only-writes/write-outside-workspace", []string{"/tmp/run/work/a"}},
		{"symlink planted outside", "workspace-only-writes", func(r *receipt.Receipt) {
			r.Files = append(r.Files, receipt.File{Path: "/tmp/run/work/x", Op: "symlink", Target: "/usr/local/bin/python3", PID: 42, Count: 1, OK: true})
		}, "deny", "workspace-only-writes/write-outside-workspace", []string{"/tmp/run/work/x"}},
		{"unknown workspace fails closed", "workspace-only-writes", func(r *receipt.Receipt) {
			r.Processes[0].Cwd = "/"
		}, "deny", "workspace-only-writes/write-outside-workspace", []string{"/tmp/run/work/old.txt", "/tmp/run/work/out.txt", "/tmp/run/work/out.txt"}},

		// no-subprocess
		{"one process is fine", "no-subprocess", nil, "allow", "", nil},
		{"exec in place is not a subprocess", "no-subprocess", func(r *receipt.Receipt) {
			r.Processes = append(r.Processes, receipt.Process{PID: 42, PPID: 1, Exe: "/bin/sh", StartOffsetMS: 20, EndOffsetMS: 30})
		}, "allow", "", nil},
		{"a child process", "no-subprocess", func(r *receipt.Receipt) {
			r.Processes = append(r.Processes, receipt.Process{PID: 43, PPID: 42, Exe: "/bin/sh", StartOffsetMS: 10, EndOffsetMS: 30},
				receipt.Process{PID: 44, PPID: 43, Exe: "/usr/bin/curl", StartOffsetMS: 12, EndOffsetMS: 30})
		}, "deny", "no-subprocess/subprocess", []string{"/bin/sh", "/usr/bin/curl"}},

		// no-sensitive-reads
		{"ordinary reads are fine", "no-sensitive-reads", nil, "allow", "", nil},
		{"/etc/shadow", "no-sensitive-reads", func(r *receipt.Receipt) {
			r.Files = append(r.Files, receipt.File{Path: "/etc/shadow", Op: "read", PID: 42, Count: 1, Errno: "EACCES"})
		}, "deny", "no-sensitive-reads/sensitive-file", []string{"/etc/shadow"}},
		{"/root itself and below", "no-sensitive-reads", func(r *receipt.Receipt) {
			r.Files = append(r.Files, receipt.File{Path: "/root", Op: "read", PID: 42, Count: 1, OK: true},
				receipt.File{Path: "/root/.bash_history", Op: "read", PID: 42, Count: 1, OK: true},
				receipt.File{Path: "/rootfs/x", Op: "read", PID: 42, Count: 1, OK: true})
		}, "deny", "no-sensitive-reads/sensitive-file", []string{"/root", "/root/.bash_history"}},
		{"another process's memory", "no-sensitive-reads", func(r *receipt.Receipt) {
			r.Files = append(r.Files, receipt.File{Path: "/proc/1/mem", Op: "read", PID: 42, Count: 1, OK: true},
				receipt.File{Path: "/proc/1/environ", Op: "read", PID: 42, Count: 1, OK: true})
		}, "deny", "no-sensitive-reads/sensitive-file", []string{"/proc/1/environ", "/proc/1/mem"}},
		{"ssh keys of a user", "no-sensitive-reads", func(r *receipt.Receipt) {
			r.Files = append(r.Files, receipt.File{Path: "/home/ann/.ssh/id_ed25519", Op: "read", PID: 42, Count: 1, OK: true})
		}, "deny", "no-sensitive-reads/sensitive-file", []string{"/home/ann/.ssh/id_ed25519"}},
		{"AWS metadata over IPv4", "no-sensitive-reads", func(r *receipt.Receipt) {
			r.Network = append(r.Network, receipt.Net{Op: "connect", Family: "inet", Protocol: "tcp", Address: "169.254.169.254", Port: 80, PID: 42, Count: 1, OK: true})
		}, "deny", "no-sensitive-reads/cloud-metadata", []string{"169.254.169.254"}},
		{"metadata as an IPv4-mapped address", "no-sensitive-reads", func(r *receipt.Receipt) {
			r.Network = append(r.Network, receipt.Net{Op: "connect", Family: "inet6", Protocol: "tcp", Address: "::ffff:169.254.169.254", Port: 80, PID: 42, Count: 1})
		}, "deny", "no-sensitive-reads/cloud-metadata", []string{"::ffff:169.254.169.254"}},
		{"AWS metadata over IPv6", "no-sensitive-reads", func(r *receipt.Receipt) {
			r.Network = append(r.Network, receipt.Net{Op: "sendto", Family: "inet6", Protocol: "udp", Address: "fd00:ec2::254", Port: 80, PID: 42, Count: 1, OK: true})
		}, "deny", "no-sensitive-reads/cloud-metadata", []string{"fd00:ec2::254"}},

		// resource-caps
		{"within limits", "resource-caps", nil, "allow", "", nil},
		{"timeout", "resource-caps", func(r *receipt.Receipt) {
			r.Outcome.TimedOut, r.Outcome.Failure, r.Outcome.Signal = true, receipt.FailureTimeout, "SIGKILL"
		}, "deny", "resource-caps/timeout", []string{"/outcome/timed_out"}},
		{"oom", "resource-caps", func(r *receipt.Receipt) {
			r.Outcome.OOMKilled, r.Outcome.Failure = true, receipt.FailureOOM
		}, "deny", "resource-caps/memory", []string{"/limits/memory_bytes", "/outcome/oom_killed", "/resources/memory_peak_bytes"}},
		{"fork bomb reached the pids limit", "resource-caps", func(r *receipt.Receipt) {
			r.Resources.PIDsPeak = 64
		}, "deny", "resource-caps/pids", []string{"/limits/pids", "/resources/pids_peak"}},
		{"no pids limit, no violation", "resource-caps", func(r *receipt.Receipt) {
			r.Limits.PIDs, r.Resources.PIDsPeak = 0, 900
		}, "allow", "", nil},
		{"output cut", "resource-caps", func(r *receipt.Receipt) {
			r.Output.StdoutTruncated, r.Outcome.Failure = true, receipt.FailureOutputLimit
		}, "deny", "resource-caps/output", []string{"/outcome/failure", "/output/stderr_truncated", "/output/stdout_truncated"}},

		// complete-observation
		{"complete", "complete-observation", nil, "allow", "", nil},
		{"profiling off", "complete-observation", func(r *receipt.Receipt) {
			r.Profiling = receipt.Profiling{Mode: "off", Status: receipt.StatusOff, Collector: "none"}
		}, "deny", "complete-observation/incomplete", []string{"/profiling/status"}},
		{"dropped events make a receipt partial", "complete-observation", func(r *receipt.Receipt) {
			r.Profiling.Dropped = 3
		}, "deny", "complete-observation/incomplete", []string{"/profiling/status"}},
		{"omitted entries make a receipt partial", "complete-observation", func(r *receipt.Receipt) {
			r.Profiling.Omitted.Files = 1
		}, "deny", "complete-observation/incomplete", []string{"/profiling/status"}},
		{"unavailable", "complete-observation", func(r *receipt.Receipt) {
			r.Profiling.Status, r.Profiling.Reason = receipt.StatusUnavailable, "no BPF"
		}, "deny", "complete-observation/incomplete", []string{"/profiling/status"}},
	}
}

func TestPackVerdicts(t *testing.T) {
	covered := map[string]map[string]bool{}
	for _, tc := range packCases() {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Load(tc.pack)
			if err != nil {
				t.Fatal(err)
			}
			r := cleanReceipt()
			if tc.mutate != nil {
				tc.mutate(r)
			}
			if err := receipt.Seal(r); err != nil {
				t.Fatal(err)
			}
			got, err := p.Evaluate(r)
			if err != nil {
				t.Fatal(err)
			}
			if covered[tc.pack] == nil {
				covered[tc.pack] = map[string]bool{}
			}
			covered[tc.pack][got.Verdict] = true
			if got.Name != tc.pack || got.Verdict != tc.verdict {
				t.Fatalf("verdict %s/%s, want %s/%s: %+v", got.Name, got.Verdict, tc.pack, tc.verdict, got.Violations)
			}
			if tc.rule == "" {
				if len(got.Violations) != 0 {
					t.Fatalf("violations %+v", got.Violations)
				}
				return
			}
			if len(got.Violations) != 1 || got.Violations[0].Rule != tc.rule {
				t.Fatalf("violations %+v, want one of %s", got.Violations, tc.rule)
			}
			v := got.Violations[0]
			if want := expectedEvidence(t, r, tc.rule, tc.evidence); !slices.Equal(v.Evidence, want) {
				t.Errorf("evidence %v, want %v", v.Evidence, want)
			}
			if v.Severity != SeverityDeny || v.Message == "" {
				t.Errorf("violation %+v", v)
			}
			checkPointers(t, r, v.Evidence)
		})
	}
	for _, pk := range Packs() {
		if !covered[pk.Name]["allow"] || !covered[pk.Name]["deny"] {
			t.Errorf("pack %s lacks an allow or a deny case", pk.Name)
		}
	}
}

// expectedEvidence turns entry keys into pointers into the sealed r.
func expectedEvidence(t *testing.T, r *receipt.Receipt, rule string, keys []string) []string {
	t.Helper()
	var out []string
	used := map[string]bool{}
	for _, k := range keys {
		found := ""
		switch {
		case strings.HasSuffix(rule, "network") || strings.HasSuffix(rule, "metadata"):
			for i, n := range r.Network {
				if p := "/network/" + itoa(i); n.Address == k && !used[p] {
					found = p
					break
				}
			}
		case strings.HasSuffix(rule, "subprocess"):
			for i, p := range r.Processes {
				if ptr := "/processes/" + itoa(i); p.Exe == k && !used[ptr] {
					found = ptr
					break
				}
			}
		default:
			for i, f := range r.Files {
				if p := "/files/" + itoa(i); f.Path == k && !used[p] {
					found = p
					break
				}
			}
		}
		if found == "" {
			found = k
		}
		used[found] = true
		out = append(out, found)
	}
	return out
}

// checkPointers resolves JSON pointers in the receipt's stored form.
func checkPointers(t *testing.T, r *receipt.Receipt, ptrs []string) {
	t.Helper()
	b, err := receipt.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var doc any
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	for _, p := range ptrs {
		cur := doc
		for _, tok := range strings.Split(strings.TrimPrefix(p, "/"), "/") {
			switch v := cur.(type) {
			case map[string]any:
				next, ok := v[tok]
				if !ok {
					t.Fatalf("pointer %s: no member %q", p, tok)
				}
				cur = next
			case []any:
				i := -1
				for j := range v {
					if tok == itoa(j) {
						i = j
					}
				}
				if i < 0 {
					t.Fatalf("pointer %s: no index %s", p, tok)
				}
				cur = v[i]
			default:
				t.Fatalf("pointer %s: cannot descend into %T", p, cur)
			}
		}
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

// TestAllPacksOnCleanRun: the run every pack allows is allowed by all of
// them together, and a run that breaks everything is denied by each.
func TestAllPacks(t *testing.T) {
	p, err := Load(strings.Join(packNames(), ","))
	if err != nil {
		t.Fatal(err)
	}
	got, err := p.Evaluate(cleanReceipt())
	if err != nil || got.Verdict != "allow" {
		t.Fatalf("clean run: %+v %v", got, err)
	}
	r := cleanReceipt()
	for _, tc := range packCases() {
		if tc.mutate != nil && tc.verdict == "deny" {
			tc.mutate(r)
		}
	}
	got, err = p.Evaluate(r)
	if err != nil || got.Verdict != "deny" {
		t.Fatalf("bad run: %+v %v", got, err)
	}
	fired := map[string]bool{}
	for _, v := range got.Violations {
		fired[strings.Split(v.Rule, "/")[0]] = true
	}
	for _, name := range packNames() {
		if !fired[name] {
			t.Errorf("pack %s did not fire", name)
		}
	}
}

// TestDeterminism evaluates one receipt 1000 times, its lists shuffled each
// time, and requires byte-identical verdicts.
func TestDeterminism(t *testing.T) {
	p, err := Load(strings.Join(packNames(), ","))
	if err != nil {
		t.Fatal(err)
	}
	r := benchReceipt(t, 300)
	// Give every pack something to report.
	r.Files = append(r.Files, receipt.File{Path: "/etc/shadow", Op: "read", PID: 100, Count: 1},
		receipt.File{Path: "/tmp/x", Op: "write", PID: 101, Count: 1, OK: true})
	r.Network = append(r.Network, receipt.Net{Op: "connect", Family: "inet", Protocol: "tcp", Address: "169.254.169.254", Port: 80, PID: 100, Count: 1})
	r.Outcome.TimedOut = true
	r.Profiling.Dropped = 1
	if err := receipt.Seal(r); err != nil {
		t.Fatal(err)
	}
	first, err := p.Evaluate(r)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := json.Marshal(first)
	if first.Verdict != "deny" || len(first.Violations) < 6 {
		t.Fatalf("want violations from every pack, got %s", want)
	}
	rng := rand.New(rand.NewPCG(7, 7))
	for i := 0; i < 1000; i++ {
		s := *r
		s.Processes = slices.Clone(r.Processes)
		s.Files = slices.Clone(r.Files)
		s.Network = slices.Clone(r.Network)
		rng.Shuffle(len(s.Processes), func(a, b int) { s.Processes[a], s.Processes[b] = s.Processes[b], s.Processes[a] })
		rng.Shuffle(len(s.Files), func(a, b int) { s.Files[a], s.Files[b] = s.Files[b], s.Files[a] })
		rng.Shuffle(len(s.Network), func(a, b int) { s.Network[a], s.Network[b] = s.Network[b], s.Network[a] })
		got, err := p.Evaluate(&s)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(got)
		if string(b) != string(want) {
			t.Fatalf("evaluation %d differs:\n%s\nwant:\n%s", i, b, want)
		}
	}
}

func TestEvaluateDoesNotModify(t *testing.T) {
	p, _ := Load("no-network")
	r := cleanReceipt()
	r.Files[0], r.Files[1] = r.Files[1], r.Files[0]
	before, _ := json.Marshal(r)
	if _, err := p.Evaluate(r); err != nil {
		t.Fatal(err)
	}
	after, _ := json.Marshal(r)
	if string(before) != string(after) {
		t.Fatal("Evaluate modified the receipt")
	}
}

func TestEvaluationErrors(t *testing.T) {
	src := `name: errs
version: 1
rules:
  - id: index
    severity: warn
    description: Reads the second process.
    condition: processes[1000].pid > 0
  - id: per-entry
    severity: deny
    over: files
    condition: e.path.split("/")[5] == "x"
  - id: costly
    severity: deny
    condition: files.all(a, files.all(b, files.all(c, a.path + b.path + c.path != "")))
`
	p, err := Parse("errs.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	r := benchReceipt(t, 300)
	got, err := p.Evaluate(r)
	if err != nil {
		t.Fatal(err)
	}
	if got.Verdict != "deny" || len(got.Violations) != 3 {
		t.Fatalf("%+v", got)
	}
	for i, want := range []string{"evaluation error: ", "evaluation error at /files/0: ", "evaluation error: "} {
		if !strings.HasPrefix(got.Violations[i].Message, want) {
			t.Errorf("violation %d: %q, want prefix %q", i, got.Violations[i].Message, want)
		}
	}
	if !strings.Contains(got.Violations[2].Message, "cost") {
		t.Errorf("cost limit not named: %q", got.Violations[2].Message)
	}
	if got.Violations[0].Severity != "warn" {
		t.Errorf("a failing warn rule stays a warning: %+v", got.Violations[0])
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	slow, err := Parse("slow.yaml", []byte(`name: slow
version: 1
rules:
  - id: loop
    severity: deny
    condition: files.exists(f, files.exists(g, f.path == g.path + "x"))
`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := slow.EvaluateContext(ctx, r); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled evaluation: %v", err)
	}
	if _, err := slow.Evaluate(nil); !errors.Is(err, ErrNilReceipt) {
		t.Errorf("nil receipt: %v", err)
	}
}

func TestEvidenceIsBounded(t *testing.T) {
	p, _ := Load("workspace-only-writes")
	r := cleanReceipt()
	for i := 0; i < MaxEvidence+10; i++ {
		r.Files = append(r.Files, receipt.File{Path: "/tmp/x" + itoa(i), Op: "write", PID: 42, Count: 1, OK: true})
	}
	got, err := p.Evaluate(r)
	if err != nil {
		t.Fatal(err)
	}
	v := got.Violations[0]
	if len(v.Evidence) != MaxEvidence || !strings.Contains(v.Message, "Matched 266 of") || !strings.Contains(v.Message, "first 256") {
		t.Fatalf("%d pointers, message %q", len(v.Evidence), v.Message)
	}
}

func TestConcurrentEvaluate(t *testing.T) {
	p, _ := Load(strings.Join(packNames(), ","))
	r := benchReceipt(t, 200)
	want, _ := p.Evaluate(r)
	wantJSON, _ := json.Marshal(want)
	done := make(chan string)
	for g := 0; g < 8; g++ {
		go func() {
			for i := 0; i < 50; i++ {
				got, _ := p.Evaluate(r)
				b, _ := json.Marshal(got)
				if string(b) != string(wantJSON) {
					done <- string(b)
					return
				}
			}
			done <- ""
		}()
	}
	for g := 0; g < 8; g++ {
		if d := <-done; d != "" {
			t.Fatalf("concurrent evaluation differs: %s", d)
		}
	}
}

func TestComparatorsAgreeWithReceipt(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for n := 0; n < 500; n++ {
		r := randomReceipt(rng, 12)
		if !sorted(r.Files, compareFiles) || !sorted(r.Network, compareNetwork) || !sorted(r.Processes, compareProcesses) {
			t.Fatalf("receipt.Normalize order is not sorted by our comparators: %+v", r)
		}
	}
}
