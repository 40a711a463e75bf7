package daemon

import (
	"bytes"
	"flag"
	"io"
	"strings"
	"testing"
)

func TestNewLogger(t *testing.T) {
	var buf bytes.Buffer
	log, err := NewLogger(&buf, "warn", "json")
	if err != nil {
		t.Fatal(err)
	}
	log.Info("hidden")
	log.Warn("shown", "k", 1)
	if out := buf.String(); strings.Contains(out, "hidden") || !strings.Contains(out, `"msg":"shown"`) {
		t.Fatalf("json logger at warn wrote %q", out)
	}
	if _, err := NewLogger(&buf, "loud", "text"); err == nil || !strings.Contains(err.Error(), "--log-level") {
		t.Fatalf("bad level: %v", err)
	}
	if _, err := NewLogger(&buf, "info", "xml"); err == nil || !strings.Contains(err.Error(), "--log-format") {
		t.Fatalf("bad format: %v", err)
	}
}

func TestParse(t *testing.T) {
	tests := []struct {
		args           []string
		code           int
		logger         bool
		stdout, stderr string
	}{
		{args: nil, code: 0, logger: true},
		{args: []string{"--log-format", "text", "--log-level", "debug"}, code: 0, logger: true},
		{args: []string{"--version"}, code: 0, stdout: "d-test "},
		{args: []string{"--help"}, code: 0},
		{args: []string{"--nope"}, code: 2},
		{args: []string{"stray"}, code: 2, stderr: `d-test: unexpected argument "stray"`},
		{args: []string{"--log-level", "loud"}, code: 2, stderr: "d-test: --log-level"},
		{args: []string{"--log-format", "xml"}, code: 2, stderr: `d-test: --log-format "xml"`},
	}
	for _, tt := range tests {
		fs := flag.NewFlagSet("d-test", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		f := Register(fs, "d-test")
		var stdout, stderr bytes.Buffer
		log, code := f.Parse(fs, tt.args, &stdout, &stderr)
		if code != tt.code || (log != nil) != tt.logger {
			t.Errorf("%q: code %d logger %v, want %d %v", tt.args, code, log != nil, tt.code, tt.logger)
		}
		if !strings.HasPrefix(stdout.String(), tt.stdout) || !strings.HasPrefix(stderr.String(), tt.stderr) {
			t.Errorf("%q: stdout %q stderr %q", tt.args, stdout.String(), stderr.String())
		}
	}
}
