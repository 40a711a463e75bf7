//go:build !lean

package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"glasshouse.dev/glasshouse/core/receipt"
)

// runCLI runs the CLI in-process and returns its exit code and output.
func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := dispatch(args, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

// writeTestReceipt seals a receipt of a clean, fully observed run, lets
// mutate change it first, and writes it to dir/name.
func writeTestReceipt(t *testing.T, dir, name string, mutate func(*receipt.Receipt)) string {
	t.Helper()
	r := &receipt.Receipt{
		ID:        "run-" + name,
		Subject:   receipt.Subject{Argv: []string{"python3", "-c", "print(4)"}},
		Backend:   receipt.Backend{Name: "process", Isolation: "none"},
		Limits:    receipt.Limits{TimeoutMS: 1000, Network: "none"},
		Outcome:   receipt.Outcome{Failure: "none", DurationMS: 20},
		Output:    receipt.Output{StdoutBytes: 2, StdoutSHA256: receipt.SHA256Hex([]byte("4\n")), StderrSHA256: receipt.SHA256Hex(nil)},
		Profiling: receipt.Profiling{Mode: "required", Status: "complete", Collector: "ebpf-host"},
		Processes: []receipt.Process{{PID: 5, PPID: 1, Exe: "/usr/bin/python3", Cwd: "/ws"}},
		Files:     []receipt.File{{Path: "/ws/out", Op: "write", PID: 5, Count: 1, OK: true}},
	}
	if mutate != nil {
		mutate(r)
	}
	if err := receipt.Seal(r); err != nil {
		t.Fatal(err)
	}
	b, err := receipt.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func withNetwork(r *receipt.Receipt) {
	r.Network = []receipt.Net{{Op: "connect", Family: "inet", Protocol: "tcp", Address: "127.0.0.1", Port: 8080, PID: 5, Count: 1, Errno: "EPERM"}}
}

func TestPolicyList(t *testing.T) {
	code, out, _ := runCLI(t, "policy", "list")
	if code != exitOK {
		t.Fatalf("exit %d", code)
	}
	for _, name := range []string{"no-network", "workspace-only-writes", "no-subprocess", "no-sensitive-reads", "resource-caps", "complete-observation"} {
		if !strings.Contains(out, name+" ") {
			t.Errorf("list lacks %s:\n%s", name, out)
		}
	}
	code, out, _ = runCLI(t, "policy", "show", "no-network")
	if code != exitOK || !strings.Contains(out, "name: no-network") {
		t.Errorf("show: %d %s", code, out)
	}
}

func TestPolicyCheck(t *testing.T) {
	dir := t.TempDir()
	clean := writeTestReceipt(t, dir, "clean.json", nil)
	netty := writeTestReceipt(t, dir, "net.json", withNetwork)
	slow := writeTestReceipt(t, dir, "slow.json", func(r *receipt.Receipt) { r.Outcome.DurationMS = 90000 })
	warnPolicy := filepath.Join(dir, "warn.yaml")
	os.WriteFile(warnPolicy, []byte("name: slow\nversion: 1\nrules:\n  - id: slow\n    severity: warn\n    description: Slow run.\n    condition: outcome.duration_ms > 60000\n"), 0o644)
	brokenPolicy := filepath.Join(dir, "broken.yaml")
	os.WriteFile(brokenPolicy, []byte("name: b\nversion: 1\nrules:\n  - id: r\n    severity: deny\n    condition: outcome.exit_cod == 0\n"), 0o644)
	tampered := filepath.Join(dir, "tampered.json")
	doc, _ := os.ReadFile(clean)
	os.WriteFile(tampered, bytes.Replace(doc, []byte(`"exit_code": 0`), []byte(`"exit_code": 1`), 1), 0o644)

	cases := []struct {
		name string
		args []string
		code int
		out  string // in stdout
		err  string // in stderr
	}{
		{"allow", []string{"--policy", "no-network", clean}, exitOK, "clean.json: allow (policy no-network)", ""},
		{"deny with evidence", []string{"--policy", "no-network", netty}, exitFailure, "/network/0  connect inet 127.0.0.1 port 8080 (pid 5, EPERM)", ""},
		{"warn exits 0", []string{"--policy", warnPolicy, slow}, exitOK, "slow.json: warn (policy slow, 1 violation)", ""},
		{"several receipts, one denied", []string{"--policy", "no-network,complete-observation", clean, netty}, exitFailure, "net.json: deny", ""},
		{"json", []string{"--json", "--policy", "no-network", netty}, exitFailure, `"verdict":"deny"`, ""},
		{"no policy", []string{clean}, exitUsage, "", "--policy is required"},
		{"no receipt", []string{"--policy", "no-network"}, exitUsage, "", "no receipt to check"},
		{"unknown pack", []string{"--policy", "no-netwrk", clean}, exitUsage, "", "unknown policy pack"},
		{"broken policy", []string{"--policy", brokenPolicy, clean}, exitUsage, "", brokenPolicy + ":6:23: rule \"r\": condition: undefined field 'exit_cod'"},
		{"tampered receipt", []string{"--policy", "no-network", tampered}, exitUsage, "", "digest does not match"},
		{"missing receipt", []string{"--policy", "no-network", filepath.Join(dir, "none.json")}, exitUsage, "", "no such file"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := runCLI(t, append([]string{"policy", "check"}, tc.args...)...)
			if code != tc.code || !strings.Contains(out, tc.out) || !strings.Contains(errOut, tc.err) {
				t.Fatalf("exit %d (want %d)\nstdout:\n%s\nstderr:\n%s", code, tc.code, out, errOut)
			}
		})
	}
	_, out, _ := runCLI(t, "policy", "check", "--json", "--policy", "no-network", netty)
	var line struct {
		Receipt string         `json:"receipt"`
		Policy  receipt.Policy `json:"policy"`
	}
	if err := json.Unmarshal([]byte(out), &line); err != nil || line.Receipt != netty || line.Policy.Violations[0].Evidence[0] != "/network/0" {
		t.Fatalf("json line %q: %v", out, err)
	}
}

func TestPolicyUsage(t *testing.T) {
	for _, args := range [][]string{{"policy"}, {"policy", "frob"}, {"policy", "list", "x"}, {"policy", "show"}, {"policy", "show", "nope"}} {
		if code, _, _ := runCLI(t, args...); code != exitUsage {
			t.Errorf("%v: exit %d", args, code)
		}
	}
}

func TestLoadEvaluator(t *testing.T) {
	ev, err := loadEvaluator("no-network,resource-caps")
	if err != nil {
		t.Fatal(err)
	}
	r := &receipt.Receipt{}
	withNetwork(r)
	receipt.Normalize(r)
	v, err := ev.Evaluate(r)
	if err != nil || v.Verdict != "deny" {
		t.Fatalf("%+v %v", v, err)
	}
	if _, err := loadEvaluator("nonsense-pack"); err == nil {
		t.Fatal("unknown pack loaded")
	}
}
