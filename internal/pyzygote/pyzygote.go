// Package pyzygote holds what the Python zygotes share. A zygote is a
// Python interpreter that has done its startup and waits for a run; a run
// it takes skips the interpreter's startup, most of a short run's time.
// The guest keeps one in every snapshot template (one run per restored
// guest); the process backend keeps a fork server that forks one per run.
//
// A run fits a zygote when a fresh interpreter would have started the same
// way: the same interpreter, a script or -c CODE and no other option, and
// every environment variable the startup reads as the zygote had it.
package pyzygote

import (
	_ "embed"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"
)

// RunSource is the Python that turns a waiting interpreter into a run:
// _glasshouse_run(argv, env) with argv the run's (the interpreter's name,
// SCRIPT or -c CODE, the arguments) and env its NAME=VALUE byte strings.
// A zygote's script starts with it.
//
//go:embed run.py
var RunSource string

// Fits reports whether argv, run by the zygote's interpreter, may be taken
// by a zygote that started with environment zenv when the run's is env:
// argv runs a script or -c CODE (no other option), and every variable the
// startup reads, but those in ignore, is the same in both.
func Fits(argv, env, zenv []string, ignore ...string) bool {
	if len(argv) < 2 || argv[1] == "" {
		return false
	}
	if strings.HasPrefix(argv[1], "-") && (argv[1] != "-c" || len(argv) < 3) {
		return false
	}
	startup := func(env []string) map[string]string {
		m := map[string]string{}
		for _, e := range env {
			k, v, _ := strings.Cut(e, "=")
			if ReadAtStartup(k) && !slices.Contains(ignore, k) {
				m[k] = v
			}
		}
		return m
	}
	return maps.Equal(startup(env), startup(zenv))
}

// ReadAtStartup reports whether Python's startup, or the C library under
// it, may read the environment variable name.
func ReadAtStartup(name string) bool {
	for _, p := range []string{"PYTHON", "LC_", "LD_", "GLIBC_", "MALLOC_"} {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	switch name {
	case "HOME", "LANG", "LANGUAGE", "TZ":
		return true
	}
	return false
}

// AwaitReady waits until a starting zygote says it is ready: "R", the first
// byte it writes to its control socket r. On an error or timeout the caller
// kills the zygote, which also ends the read left waiting.
func AwaitReady(r io.Reader, timeout time.Duration) error {
	ready := make(chan error, 1)
	go func() {
		b := make([]byte, 1)
		_, err := r.Read(b)
		if err == nil && b[0] != 'R' {
			err = fmt.Errorf("said %q", b)
		}
		ready <- err
	}()
	select {
	case err := <-ready:
		return err
	case <-time.After(timeout):
		return fmt.Errorf("not ready after %v", timeout)
	}
}
