package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestUsageErrors(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "agent.yaml")
	os.WriteFile(cfg, []byte("selects: [all]\n"), 0o600)
	tests := []struct {
		args []string
		want string
	}{
		{nil, "nothing selected"},
		{[]string{"--select", "pod:nope"}, "invalid selector"},
		{[]string{"--select", "all", "--policy", "no-such-pack"}, "unknown policy pack"},
		{[]string{"--config", cfg}, "invalid agent config file"},
		{[]string{"--select", "all", "extra"}, "unexpected argument"},
		{[]string{"--log-format", "xml", "--select", "all"}, "--log-format"},
	}
	for _, tt := range tests {
		var stdout, stderr bytes.Buffer
		if code := run(tt.args, &stdout, &stderr); code != 2 {
			t.Errorf("%q: exit %d, want 2 (%s)", tt.args, code, stderr.String())
		}
		if !strings.Contains(stderr.String(), tt.want) {
			t.Errorf("%q: stderr %q lacks %q", tt.args, stderr.String(), tt.want)
		}
	}
}

func TestVersion(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run([]string{"--version"}, &stdout, &stderr); code != 0 || !strings.HasPrefix(stdout.String(), "glasshouse-agent ") {
		t.Fatalf("exit %d, %q %q", code, stdout.String(), stderr.String())
	}
}
