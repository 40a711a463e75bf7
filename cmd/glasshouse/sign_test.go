//go:build !lean

package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"glasshouse.dev/glasshouse/core/attest"
	"glasshouse.dev/glasshouse/core/receipt"
	"glasshouse.dev/glasshouse/internal/testenv"
)

func TestKeygenSignVerify(t *testing.T) {
	dir := t.TempDir()
	prefix := filepath.Join(dir, "k")
	code, out, errOut := runCLI(t, "keygen", "--out", prefix)
	if code != exitOK || !strings.Contains(out, "key id      sha256:") {
		t.Fatalf("keygen: %d %s %s", code, out, errOut)
	}
	if code, _, errOut := runCLI(t, "keygen", "--out", prefix); code != exitFailure || !strings.Contains(errOut, "key file exists") {
		t.Fatalf("keygen over existing keys: %d %s", code, errOut)
	}
	rec := writeTestReceipt(t, dir, "r.json", nil)
	if code, out, errOut := runCLI(t, "sign", "--key", prefix+".key", rec); code != exitOK || !strings.Contains(out, "signed "+rec+".dsse.json") {
		t.Fatalf("sign: %d %s %s", code, out, errOut)
	}
	env := rec + ".dsse.json"
	code, out, errOut = runCLI(t, "verify", "--key", prefix+".pub", env)
	if code != exitOK || !strings.Contains(out, env+": OK: receipt run-r.json") {
		t.Fatalf("verify: %d %s %s", code, out, errOut)
	}

	// A byte changed anywhere fails, with the reason on stderr.
	good, _ := os.ReadFile(env)
	for _, i := range []int{0, 10, len(good) / 2, len(good) - 10, len(good) - 1} {
		bad := bytes.Clone(good)
		bad[i] ^= 0x01
		p := filepath.Join(dir, "bad.dsse.json")
		os.WriteFile(p, bad, 0o644)
		code, _, errOut := runCLI(t, "verify", "--key", prefix+".pub", p)
		if code != exitFailure || !strings.Contains(errOut, "FAILED: ") {
			t.Fatalf("byte %d changed: exit %d %s", i, code, errOut)
		}
	}
	other := filepath.Join(dir, "other")
	runCLI(t, "keygen", "--out", other)
	if code, _, errOut := runCLI(t, "verify", "--key", other+".pub", env); code != exitFailure || !strings.Contains(errOut, "signature does not verify") {
		t.Fatalf("other key: %d %s", code, errOut)
	}
	for _, args := range [][]string{
		{"verify", env},
		{"verify", "--key", prefix + ".pub"},
		{"verify", "--key", prefix + ".key", env},
		{"sign", rec},
		{"sign", "--key", prefix + ".pub", rec},
		{"keygen", "extra"},
	} {
		if code, _, _ := runCLI(t, args...); code != exitUsage {
			t.Errorf("%v: exit %d, want %d", args, code, exitUsage)
		}
	}
	signer, err := loadSigner(prefix + ".key")
	if err != nil {
		t.Fatal(err)
	}
	r, _ := receipt.Decode(mustRead(t, rec))
	envBytes, err := signer(r)
	if err != nil || !bytes.Equal(envBytes, good) {
		t.Fatalf("loadSigner's envelope differs from sign's: %v", err)
	}
	if _, err := loadSigner(filepath.Join(dir, "none.key")); err == nil {
		t.Fatal("loadSigner accepted a missing key")
	}
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestRunPolicyAndSign runs real code on the process backend with
// --policy and --sign and checks the receipt carries the verdict and the
// signed envelope verifies.
func TestRunPolicyAndSign(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireBinary(t, "python3")
	dir := t.TempDir()
	prefix := filepath.Join(dir, "k")
	if code, _, errOut := runCLI(t, "keygen", "--out", prefix); code != exitOK {
		t.Fatalf("keygen: %s", errOut)
	}
	rec := filepath.Join(dir, "r.json")
	code, _, errOut := runCLI(t, "run", "--backend", "process", "--policy", "no-subprocess,resource-caps",
		"--sign", prefix+".key", "--receipt", rec, "--", "python3", "-c", "print(4)")
	if code != exitOK {
		t.Fatalf("run: exit %d %s", code, errOut)
	}
	r, err := receipt.Decode(mustRead(t, rec))
	if err != nil {
		t.Fatal(err)
	}
	if r.Policy == nil || r.Policy.Name != "no-subprocess,resource-caps" || r.Policy.Verdict != "allow" {
		t.Fatalf("policy section %+v", r.Policy)
	}
	pub, _ := attest.LoadPublicKey(prefix + ".pub")
	signed, err := attest.Verify(mustRead(t, rec+".dsse.json"), pub)
	if err != nil || signed.Digest != r.Digest {
		t.Fatalf("signed receipt: %v", err)
	}
	if code, out, errOut := runCLI(t, "verify", "--key", prefix+".pub", rec+".dsse.json"); code != exitOK {
		t.Fatalf("verify: %d %s %s", code, out, errOut)
	}
	// The signature is the standard DSSE form other tools read.
	var env map[string]any
	json.Unmarshal(mustRead(t, rec+".dsse.json"), &env)
	if env["payloadType"] != attest.PayloadType {
		t.Fatalf("payloadType %v", env["payloadType"])
	}
}
