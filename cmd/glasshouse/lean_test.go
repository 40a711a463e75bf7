package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"glasshouse.dev/glasshouse/internal/testenv"
)

// TestLeanBuildLinksNoPolicyOrSigning keeps the lean build lean: the
// libraries whose initialisation it exists to avoid (cel-go's protobuf
// registry, signing, the JSON Schema validator) must not come back in
// through some import.
func TestLeanBuildLinksNoPolicyOrSigning(t *testing.T) {
	goBin := testenv.RequireBinary(t, "go")
	out, err := exec.Command(goBin, "list", "-deps", "-tags", "lean", ".").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, dep := range strings.Fields(string(out)) {
		for _, banned := range []string{"cel.dev/", "google.golang.org/protobuf", "github.com/secure-systems-lab/", "glasshouse.dev/glasshouse/core/policy", "glasshouse.dev/glasshouse/core/attest", "glasshouse.dev/glasshouse/core/training", "github.com/google/jsonschema-go"} {
			if strings.HasPrefix(dep, banned) {
				t.Errorf("the lean build links %s", dep)
			}
		}
	}
}

// TestLeanBuildDelegates builds both flavours side by side, as
// scripts/setup.sh installs them, and checks that the lean one hands the
// full build's commands over with their arguments, stdin and exit codes,
// and says what is missing when the full build is not beside it.
func TestLeanBuildDelegates(t *testing.T) {
	goBin := testenv.RequireBinary(t, "go")
	dir := t.TempDir()
	lean, full := filepath.Join(dir, "glasshouse"), filepath.Join(dir, fullName)
	for _, args := range [][]string{{"-tags", "lean", "-o", lean}, {"-o", full}} {
		build := exec.Command(goBin, append(append([]string{"build"}, args...), ".")...)
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("go build %v: %v\n%s", args, err, out)
		}
	}
	run := func(bin string, stdin string, args ...string) (int, string, string) {
		cmd := exec.Command(bin, args...)
		cmd.Stdin = strings.NewReader(stdin)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return code, stdout.String(), stderr.String()
	}

	for _, args := range [][]string{{"policy", "list"}, {"policy", "show", "no-network"}, {"help"}} {
		lc, lout, _ := run(lean, "", args...)
		fc, fout, _ := run(full, "", args...)
		if lc != 0 || lc != fc || lout != fout {
			t.Errorf("%v: lean exit %d %q, full exit %d %q", args, lc, lout, fc, fout)
		}
	}
	// A usage error keeps its exit code through the hand-over.
	if c, _, errOut := run(lean, "", "policy", "check"); c != exitUsage || !strings.Contains(errOut, "--policy is required") {
		t.Errorf("policy check without --policy: exit %d %q", c, errOut)
	}
	// A run with --policy is handed over before stdin is read.
	testenv.RequireBinary(t, "python3")
	receiptPath := filepath.Join(dir, "receipt.json")
	c, out, errOut := run(lean, "print('hi')", "run", "--backend", "process", "--policy", "no-network", "--receipt", receiptPath, "--python", "-")
	if c != 0 || out != "hi\n" || !strings.Contains(errOut, "policy no-network: allow") {
		t.Errorf("run --policy: exit %d stdout %q stderr %q", c, out, errOut)
	}
	if c, _, errOut := run(lean, "", "receipt", "verify", receiptPath); c != 0 {
		t.Errorf("receipt of the handed-over run: verify exit %d %s", c, errOut)
	}
	// receipt verify is handed over too (the schema check), failures and all.
	doc, err := os.ReadFile(receiptPath)
	if err != nil {
		t.Fatal(err)
	}
	edited := filepath.Join(dir, "edited.json")
	if err := os.WriteFile(edited, bytes.Replace(doc, []byte(`"exit_code": 0`), []byte(`"exit_code": "0"`), 1), 0o644); err != nil {
		t.Fatal(err)
	}
	if c, _, errOut := run(lean, "", "receipt", "verify", edited); c != exitFailure || !strings.Contains(errOut, "schema") {
		t.Errorf("verify of a receipt that breaks the schema: exit %d %q", c, errOut)
	}

	if err := os.Remove(full); err != nil {
		t.Fatal(err)
	}
	if c, _, errOut := run(lean, "", "policy", "list"); c != exitGlasshouse || !strings.Contains(errOut, full) {
		t.Errorf("without the full build: exit %d %q", c, errOut)
	}
}
