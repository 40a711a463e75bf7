package policy

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"

	"cel.dev/cel-go/common/types"

	"glasshouse.dev/glasshouse/core/receipt"
)

// loweringCases are conditions that must lower entirely; each is checked
// against the CEL interpreter on many entries.
var loweringCases = map[string][]string{
	OverFiles: {
		`e.op == "write"`,
		`e.op != "read" && e.ok`,
		`e.op in ["write", "create", "delete"] && !e.path.under(workspace)`,
		`e.path.startsWith("/etc/") || e.path.endsWith(".py") || e.path.contains("shadow")`,
		`e.path.matches("^/proc/[0-9]+/mem$")`,
		`e.path.glob("/proc/*/mem") || e.path.glob(["/home/*/.ssh/**", "/root/**"])`,
		`e.path.under(["/root", "/run/secrets/", "/"]) && e.path != "/"`,
		`e.path.under("")`,
		`e.target.under(workspace) == e.ok`,
		`size(e.path) > 10 && e.path.size() < 30`,
		`e.pid == root.pid || e.count >= 3 || e.errno in ["EACCES", "EPERM"]`,
		`(e.ok ? e.path : e.target).startsWith(root.cwd)`,
		`e.path > "/proc" && e.path <= "/root"`,
		`e.pid in [1, 2, 3] || e.count < 0`,
		`e.path in ["/etc/shadow", "/etc/gshadow", "/a", "/b", "/c", "/d", "/e", "/f", "/g", "/h"]`,
		`e.path == "" || e.op == "" || workspace == ""`,
		`!(e.path.glob("/dev/pts/*") || e.path == "/dev/null")`,
		`e.path.startsWith(workspace)`,
	},
	OverNetwork: {
		`e.family != "unix"`,
		`e.address.inCIDR("169.254.169.254/32") || e.address.inCIDR(["fd00:ec2::254/128", "10.0.0.0/8"])`,
		`e.port in [80, 443] && e.protocol == "tcp" && !e.ok`,
		`e.op == "connect" && e.errno == "EPERM"`,
	},
	OverProcesses: {
		`e.pid != root.pid`,
		`e.ppid == root.pid && e.exe.endsWith("sh")`,
		`e.exit_code != 0 || e.signal != "" || e.end_offset_ms < 0`,
		`e.cwd.under(workspace) && e.uid == 0 && e.start_offset_ms > 5`,
	},
	"": {
		`profiling.status != "complete"`,
		`outcome.timed_out || outcome.oom_killed`,
		`limits.pids > 0 && resources.pids_peak >= limits.pids`,
		`outcome.failure == "output_limit" || output.stdout_truncated`,
		`profiling.omitted.files > 0 || size(files) > 3 || processes.size() == 0`,
		`backend.isolation in ["none", "container"] && host.arch == "amd64"`,
		`workspace == "" || root.exe.glob("/usr/bin/python*")`,
	},
}

var (
	paths = []string{"", "/", "/root", "/root/", "/root/x", "/rootx", "/proc/12/mem", "/proc/self/mem",
		"/proc/1/2/mem", "/work", "/work/a", "/work/a/b.py", "/workshop", "/dev/pts/0", "/dev/null",
		"/etc/shadow", "/etc/gshadow", "/home/u/.ssh/id_rsa", "/home/.ssh", "/run/secrets/tok",
		"/usr/lib/python3.11/os.py", "/tmp/é/ü", "/a", "relative/path", "/c"}
	ops       = []string{"read", "write", "create", "delete", "rename", "exec", "", "chmod"}
	addresses = []string{"", "169.254.169.254", "::ffff:169.254.169.254", "fd00:ec2::254", "FD00:EC2::254",
		"fe80::1%eth0", "/tmp/sock", "10.1.2.3", "127.0.0.1", "abc", "1.2.3", "@abstract"}
	words = []string{"", "unix", "inet", "inet6", "tcp", "udp", "connect", "bind", "EPERM", "EACCES",
		"/bin/sh", "/usr/bin/python3", "/work", "/", "SIGKILL"}
)

func pick[T any](r *rand.Rand, s []T) T { return s[r.IntN(len(s))] }

func randomReceipt(r *rand.Rand, n int) *receipt.Receipt {
	rc := &receipt.Receipt{
		Backend:   receipt.Backend{Isolation: pick(r, []string{"none", "container", "microvm"})},
		Host:      receipt.Host{Arch: pick(r, []string{"amd64", "arm64"})},
		Limits:    receipt.Limits{PIDs: int64(r.IntN(3)), MemoryBytes: int64(r.IntN(3))},
		Outcome:   receipt.Outcome{TimedOut: r.IntN(2) == 0, OOMKilled: r.IntN(4) == 0, Failure: pick(r, []string{"none", "code", "output_limit"})},
		Output:    receipt.Output{StdoutTruncated: r.IntN(3) == 0},
		Resources: receipt.Resources{PIDsPeak: int64(r.IntN(4))},
		Profiling: receipt.Profiling{Status: pick(r, []string{"complete", "partial", "off"}), Omitted: receipt.Omitted{Files: int64(r.IntN(2))}},
	}
	for i := 0; i < r.IntN(n+1); i++ {
		rc.Processes = append(rc.Processes, receipt.Process{PID: int64(r.IntN(4)), PPID: int64(r.IntN(4)),
			Exe: pick(r, words), Cwd: pick(r, paths), UID: int64(r.IntN(2)), StartOffsetMS: int64(r.IntN(10)),
			EndOffsetMS: int64(r.IntN(10) - 1), ExitCode: int64(r.IntN(3) - 1), Signal: pick(r, words)})
	}
	for i := 0; i < r.IntN(n+1); i++ {
		rc.Files = append(rc.Files, receipt.File{Path: pick(r, paths), Op: pick(r, ops), Target: pick(r, paths),
			PID: int64(r.IntN(4)), Count: int64(r.IntN(5)), OK: r.IntN(2) == 0, Errno: pick(r, words)})
	}
	for i := 0; i < r.IntN(n+1); i++ {
		rc.Network = append(rc.Network, receipt.Net{Op: pick(r, words), Family: pick(r, words), Protocol: pick(r, words),
			Address: pick(r, addresses), Port: int64(pick(r, []int{0, 80, 443, 53})), PID: int64(r.IntN(4)),
			Count: int64(r.IntN(3)), OK: r.IntN(2) == 0, Errno: pick(r, words)})
	}
	receipt.Normalize(rc)
	return rc
}

// compileCase compiles one condition as a rule over section.
func compileCase(t testing.TB, section, cond string) *rule {
	t.Helper()
	set, err := envs()
	if err != nil {
		t.Fatal(err)
	}
	env := set.whole
	if section != "" {
		env = set.over[section]
	}
	probs := &problems{file: "test"}
	r, ok := compileRule(env, "test", ruleSource{id: "r", severity: SeverityDeny, over: section, condition: cond}, probs)
	if !ok {
		t.Fatalf("compile %q: %v", cond, probs.err())
	}
	return r
}

// interpret evaluates a rule's condition with the CEL interpreter.
func interpret(t testing.TB, ru *rule, st *state, r *receipt.Receipt, section string, i int) bool {
	t.Helper()
	act := &activation{r: r, st: st}
	if section != "" {
		act.entry = st.entry(section, i)
	}
	val, _, err := ru.prg.ContextEval(context.Background(), act)
	if err != nil {
		t.Fatalf("interpret %s: %v", ru.id, err)
	}
	return val == types.True
}

func TestLoweringMatchesCEL(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for section, conds := range loweringCases {
		for _, cond := range conds {
			ru := compileCase(t, section, cond)
			if ru.full == nil {
				t.Errorf("%s %q: did not lower", section, cond)
				continue
			}
			trues, falses := 0, 0
			for n := 0; n < 300; n++ {
				r := randomReceipt(rng, 6)
				st := newState(r)
				count := 1
				if section != "" {
					count = st.size(section)
				}
				for i := 0; i < count; i++ {
					got, want := ru.full(st, i), interpret(t, ru, st, r, section, i)
					if got != want {
						t.Fatalf("%s %q at %d: lowered %v, CEL %v\nreceipt: %+v", section, cond, i, got, want, r)
					}
					if got {
						trues++
					} else {
						falses++
					}
				}
			}
			// A case that never (or always) holds on random entries checks
			// little; the fixed cases below cover the constant ones.
			if trues == 0 && cond != `e.path.under("")` {
				t.Errorf("%s %q: never true on random entries", section, cond)
			}
			_ = falses
		}
	}
}

func TestPackConditionsLower(t *testing.T) {
	for _, pk := range Packs() {
		p, err := Load(pk.Name)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range p.rules {
			if r.full == nil {
				t.Errorf("%s: condition does not lower; packs must stay on the fast path", r.id)
			}
		}
	}
}

// TestPrefilter checks a condition that only partly lowers: its lowerable
// conjuncts filter entries and the interpreter decides the rest.
func TestPrefilter(t *testing.T) {
	ru := compileCase(t, OverFiles, `e.op == "write" && e.path.split("/").size() > 3`)
	if ru.full != nil || ru.pre == nil {
		t.Fatalf("want a prefilter only, got full=%v pre=%v", ru.full != nil, ru.pre != nil)
	}
	r := &receipt.Receipt{Files: []receipt.File{
		{Path: "/a/b/c", Op: "write"}, {Path: "/a/b/c", Op: "read"}, {Path: "/a", Op: "write"},
	}}
	receipt.Normalize(r)
	st := newState(r)
	v, matched, err := ru.evaluate(context.Background(), st, &activation{r: r, st: st})
	if err != nil || !matched {
		t.Fatalf("matched=%v err=%v", matched, err)
	}
	if fmt.Sprint(v.Evidence) != "[/files/2]" {
		t.Fatalf("evidence %v, want [/files/2] (files sort as /a write, /a/b/c read, /a/b/c write)", v.Evidence)
	}
}

func FuzzLowering(f *testing.F) {
	f.Add("/proc/1/mem", "read", "/work/x", "169.254.169.254", "/work", int64(1), true)
	f.Add("/root", "write", "", "::ffff:169.254.169.254", "/", int64(0), false)
	f.Add("", "", "", "", "", int64(-1), false)
	var rules []struct {
		section string
		ru      *rule
	}
	for section, conds := range loweringCases {
		for _, cond := range conds {
			rules = append(rules, struct {
				section string
				ru      *rule
			}{section, compileCase(f, section, cond)})
		}
	}
	f.Fuzz(func(t *testing.T, path, op, target, address, cwd string, pid int64, ok bool) {
		r := &receipt.Receipt{
			Processes: []receipt.Process{{PID: pid, Cwd: cwd, Exe: path}},
			Files:     []receipt.File{{Path: path, Op: op, Target: target, PID: pid, OK: ok, Errno: op}},
			Network:   []receipt.Net{{Op: op, Family: target, Address: address, Port: pid, OK: ok}},
		}
		st := newState(r)
		for _, c := range rules {
			if c.ru.full == nil {
				continue
			}
			if got, want := c.ru.full(st, 0), interpret(t, c.ru, st, r, c.section, 0); got != want {
				t.Fatalf("%s: lowered %v, CEL %v", c.ru.id, got, want)
			}
		}
	})
}
