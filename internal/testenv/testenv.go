// Package testenv lets tests ask for host capabilities (root, a binary, BPF,
// KVM) and skip with the reason when one is missing, except under CI
// (CI=true), where a missing capability fails the test: CI machines have
// them all, so a skip there would hide a broken test.
package testenv

import (
	"os"
	"os/exec"
	"testing"
)

// CI reports whether the tests run under CI (CI=true).
func CI() bool { return os.Getenv("CI") == "true" }

// Skip skips t with reason, or fails it under CI.
func Skip(t testing.TB, reason string) {
	t.Helper()
	if CI() {
		t.Fatalf("required under CI=true: %s", reason)
	}
	t.Skip(reason)
}

// RequireRoot needs euid 0.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		Skip(t, "needs root")
	}
}

// RequireBinary needs name on PATH and returns its path.
func RequireBinary(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		Skip(t, "needs "+name+" on PATH")
	}
	return p
}

// RequireFile needs path to exist.
func RequireFile(t testing.TB, path, why string) {
	t.Helper()
	if _, err := os.Stat(path); err != nil {
		Skip(t, "needs "+path+" ("+why+")")
	}
}
