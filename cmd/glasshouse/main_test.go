package main

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"glasshouse.dev/glasshouse/core/execution"
	"glasshouse.dev/glasshouse/core/receipt"
	"glasshouse.dev/glasshouse/core/receipt/schema"
	"glasshouse.dev/glasshouse/internal/testenv"
)

// cli runs the CLI in-process and returns its exit code and output.
// The lean build hands `receipt verify` to the full build, which is not
// beside a test binary (TestLeanBuildDelegates covers the hand-over): its
// in-process tests check the schema themselves.
func init() {
	if validateSchema == nil {
		validateSchema = schema.Validate
	}
}

func cli(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := dispatch(args, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

// TestBadInput checks that every kind of bad input gets its exit code and
// one line that says what is wrong.
func TestBadInput(t *testing.T) {
	pyfile := filepath.Join(t.TempDir(), "x.py")
	if err := os.WriteFile(pyfile, []byte("print(1)"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no command at all", nil, exitUsage, "usage: glasshouse COMMAND"},
		{"unknown command", []string{"frobnicate"}, exitUsage, `unknown command "frobnicate"`},
		{"unknown flag", []string{"run", "--frobnicate", "--", "true"}, exitUsage, "flag provided but not defined: -frobnicate"},
		{"no command to run", []string{"run"}, exitUsage, "no command to run"},
		{"python and command", []string{"run", "--python", pyfile, "--", "true"}, exitUsage, "either --python or a command"},
		{"python file missing", []string{"run", "--python", "/nonexistent.py"}, exitUsage, "--python: open /nonexistent.py"},
		{"negative memory", []string{"run", "--memory", "-5", "--", "true"}, exitUsage, `"-5" is negative`},
		{"memory not a size", []string{"run", "--memory", "lots", "--", "true"}, exitUsage, `"lots" is not a size`},
		{"absurd memory", []string{"run", "--memory", "10TiB", "--", "true"}, exitUsage, "limits.memory_bytes: 10995116277760 is outside"},
		{"tiny memory", []string{"run", "--memory", "1KiB", "--", "true"}, exitUsage, "limits.memory_bytes: 1024 is outside"},
		{"zero memory", []string{"run", "--memory", "0", "--", "true"}, exitUsage, "--memory 0: must be positive"},
		{"negative pids", []string{"run", "--pids", "-1", "--", "true"}, exitUsage, "--pids -1: must not be negative"},
		{"absurd pids", []string{"run", "--pids", "99999999", "--", "true"}, exitUsage, "limits.pids: 99999999 is outside"},
		{"negative timeout", []string{"run", "--timeout", "-1s", "--", "true"}, exitUsage, "--timeout -1s: must be positive"},
		{"absurd timeout", []string{"run", "--timeout", "1000h", "--", "true"}, exitUsage, "timeout: 1000h0m0s is outside"},
		{"bad timeout", []string{"run", "--timeout", "soon", "--", "true"}, exitUsage, `invalid value "soon" for flag -timeout`},
		{"bad network", []string{"run", "--network", "some", "--", "true"}, exitUsage, `--network "some": want none, loopback or full`},
		{"negative cpu", []string{"run", "--cpu", "-1", "--", "true"}, exitUsage, "--cpu -1: must not be negative"},
		{"absurd output limit", []string{"run", "--output-limit", "2GiB", "--", "true"}, exitUsage, "limits.output_bytes: 2147483648 is outside"},
		{"bad env", []string{"run", "--env", "=x", "--", "true"}, exitUsage, `"=x": want NAME=VALUE or NAME`},
		{"missing host env", []string{"run", "--env", "GLASSHOUSE_SURELY_UNSET", "--", "true"}, exitUsage, "is not set in the host environment"},
		{"bad file flag", []string{"run", "--file", "nodst", "--", "true"}, exitUsage, `--file "nodst": want DST=SRC`},
		{"file escapes workspace", []string{"run", "--file", "../x=" + pyfile, "--", "true"}, exitUsage, "must not contain .."},
		{"bad profile mode", []string{"run", "--profile=sometimes", "--", "true"}, exitUsage, `profiling mode "sometimes"`},
		{"unknown backend", []string{"run", "--backend", "teleport", "--", "true"}, exitUsage, `unknown backend "teleport" (registered:`},
		{"receipt without file", []string{"receipt", "show"}, exitUsage, "want show or verify and one FILE"},
		{"receipt file missing", []string{"receipt", "verify", "/nonexistent.json"}, exitUsage, "open /nonexistent.json"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := cli(t, tt.args...)
			if code != tt.code {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tt.code, stdout, stderr)
			}
			if !strings.Contains(stderr, tt.want) {
				t.Fatalf("stderr %q does not say %q", stderr, tt.want)
			}
			if tt.args != nil && strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
				t.Fatalf("error is not one line: %q", stderr)
			}
		})
	}
}

func TestRunExitCodes(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireBinary(t, "python3")
	tests := []struct {
		name string
		args []string
		code int
	}{
		{"success", []string{"--", "true"}, 0},
		{"exit code passes through", []string{"--", "sh", "-c", "exit 3"}, 3},
		{"killed by a signal", []string{"--", "sh", "-c", "kill -TERM $$"}, 128 + 15},
		{"timeout is SIGKILL", []string{"--timeout", "300ms", "--", "sleep", "10"}, 128 + 9},
		{"missing binary", []string{"--", "glasshouse-no-such-binary"}, exitNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := cli(t, append([]string{"run", "--backend", "process"}, tt.args...)...)
			if code != tt.code {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tt.code, stdout, stderr)
			}
		})
	}
}

// TestRunWritesVerifiableReceipt runs Python code, checks that the receipt
// validates against the schema and verifies, and that editing any one of
// its bytes makes `receipt verify` fail.
func TestRunWritesVerifiableReceipt(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireBinary(t, "python3")
	dir := t.TempDir()
	code := filepath.Join(dir, "main.py")
	if err := os.WriteFile(code, []byte("print(2+2)"), 0o644); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "receipt.json")
	exit, stdout, stderr := cli(t, "run", "--backend", "process", "--receipt", path, "--python", code)
	if exit != 0 || stdout != "4\n" {
		t.Fatalf("exit %d stdout %q stderr %q", exit, stdout, stderr)
	}
	doc, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := schema.Validate(doc); err != nil {
		t.Fatalf("schema: %v", err)
	}
	if c, out, errOut := cli(t, "receipt", "verify", path); c != 0 {
		t.Fatalf("verify: exit %d %s %s", c, out, errOut)
	}
	if c, out, _ := cli(t, "receipt", "show", path); c != 0 || !strings.Contains(out, "outcome   none, exit 0") {
		t.Fatalf("show: exit %d\n%s", c, out)
	}
	r, err := receipt.Decode(doc)
	if err != nil {
		t.Fatal(err)
	}
	if r.Subject.Language != "python" || r.Subject.CodeSHA256 != receipt.SHA256Hex([]byte("print(2+2)")) {
		t.Errorf("subject = %+v", r.Subject)
	}
	// Every position, one at a time: an edited receipt never verifies.
	edited := filepath.Join(dir, "edited.json")
	for i := 0; i < len(doc); i += 7 {
		mod := bytes.Clone(doc)
		mod[i] ^= 0x01
		if err := os.WriteFile(edited, mod, 0o644); err != nil {
			t.Fatal(err)
		}
		if c, _, _ := cli(t, "receipt", "verify", edited); c != exitFailure {
			t.Fatalf("byte %d edited (%q -> %q): verify exit %d, want %d", i, doc[i], mod[i], c, exitFailure)
		}
	}
}

// TestAutoNeverPicksTheHost checks that the default backend never runs code
// on the host without isolation: it picks an isolating backend or refuses,
// pointing at --backend process.
func TestAutoNeverPicksTheHost(t *testing.T) {
	b, err := selectBackend("auto", slog.New(slog.DiscardHandler))
	if err != nil {
		if !strings.Contains(err.Error(), "--backend process") {
			t.Fatalf("refusal %q does not say how to run on the host", err)
		}
		return
	}
	if iso := b.Capabilities().Isolation; iso.Rank() < execution.IsolationContainer.Rank() {
		t.Fatalf("auto picked %s with isolation %s", b.Name(), iso)
	}
}
