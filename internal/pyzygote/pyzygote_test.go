package pyzygote

import (
	"io"
	"strings"
	"testing"
	"time"
)

func TestFitsIgnore(t *testing.T) {
	zenv := []string{"HOME=/nonexistent", "LANG=C.UTF-8", "PATH=/usr/bin"}
	run := []string{"HOME=/run/ws", "LANG=C.UTF-8", "PATH=/bin", "TMPDIR=/run/ws/.tmp"}
	argv := []string{"python3", "main.py"}
	if Fits(argv, run, zenv) {
		t.Error("a different HOME fits when it is not ignored")
	}
	if !Fits(argv, run, zenv, "HOME") {
		t.Error("a different HOME does not fit when ignored")
	}
	if Fits(argv, append(run, "PYTHONHASHSEED=0"), zenv, "HOME") {
		t.Error("a startup variable the zygote lacks fits")
	}
	if Fits([]string{"python3", "-m", "json.tool"}, run, zenv, "HOME") {
		t.Error("an interpreter option fits")
	}
}

func TestAwaitReady(t *testing.T) {
	if err := AwaitReady(strings.NewReader("R"), time.Second); err != nil {
		t.Errorf("ready: %v", err)
	}
	if err := AwaitReady(strings.NewReader("X"), time.Second); err == nil || !strings.Contains(err.Error(), `said "X"`) {
		t.Errorf("wrong byte: %v", err)
	}
	if err := AwaitReady(strings.NewReader(""), time.Second); err != io.EOF {
		t.Errorf("closed before ready: %v", err)
	}
	r, w := io.Pipe()
	defer w.Close()
	if err := AwaitReady(r, 10*time.Millisecond); err == nil || !strings.Contains(err.Error(), "not ready after") {
		t.Errorf("silent: %v", err)
	}
}
