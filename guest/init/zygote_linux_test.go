//go:build linux

package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"glasshouse.dev/glasshouse/internal/testenv"
)

// outcome is what a Python run shows the world.
type outcome struct {
	code           int
	stdout, stderr string
}

// exitCode is the status of a process, or minus the signal that ended it.
func exitCode(t *testing.T, err error) int {
	t.Helper()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return -int(ws.Signal())
		}
		return ee.ExitCode()
	}
	t.Fatal(err)
	return -1
}

// coldRun runs `python argv[1:]...` in dir the ordinary way.
func coldRun(t *testing.T, python, dir string, argv, env []string, stdin []byte) outcome {
	t.Helper()
	cmd := exec.Command(python, argv[1:]...)
	cmd.Dir, cmd.Env = dir, env
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	code := exitCode(t, cmd.Run())
	return outcome{code, out.String(), errb.String()}
}

// zygoteRun starts a zygote in dir under zygoteEnv, prefaults it, then
// resumes it with argv, env and stdin.
func zygoteRun(t *testing.T, python, dir string, zygoteEnv, argv, env []string, stdin []byte) outcome {
	t.Helper()
	cmd := exec.Command(python, "-c", zygoteScript)
	cmd.Args[0] = "python3"
	cmd.Dir, cmd.Env = dir, zygoteEnv
	z, err := launchZygote(cmd, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	defer z.closeFiles()
	// A pooled guest prefaults the zygote before its run: that must
	// leave the interpreter as it was.
	if n, err := z.prefault(); err != nil || n < 1<<20 {
		t.Fatalf("prefault touched %d bytes: %v", n, err)
	}
	if err := z.request(argv, env, stdin != nil); err != nil {
		t.Fatal(err)
	}
	if stdin != nil {
		go func() {
			z.stdin.Write(stdin)
			z.stdin.Close()
		}()
	} else {
		z.stdin.Close()
	}
	outc := make(chan []byte)
	go func() { b, _ := readAll(z.stdout); outc <- b }()
	errb, _ := readAll(z.stderr)
	out := <-outc
	code := exitCode(t, cmd.Wait())
	return outcome{code, string(out), string(errb)}
}

func readAll(f *os.File) ([]byte, error) {
	var b bytes.Buffer
	_, err := b.ReadFrom(f)
	return b.Bytes(), err
}

// TestZygoteMatchesColdPython runs scripts both ways and wants the same
// exit status, output and tracebacks: a resumed zygote must look to the
// script like `python3 SCRIPT ARGS` started with the run's environment.
func TestZygoteMatchesColdPython(t *testing.T) {
	python := "/usr/bin/python3"
	if _, err := os.Stat(python); err != nil {
		python = testenv.RequireBinary(t, "python3")
	}
	dir := t.TempDir()
	scripts := map[string]string{
		"main.py": "import os, sys\nprint(__name__, __file__, sys.argv, sys.path[0], sys.orig_argv[1:])\n" +
			"print(sorted(globals()), __loader__.name, __spec__, __cached__, __package__, __doc__)\n" +
			"print(os.environ.get('RUN'), os.environ.get('ZYGOTE'), os.getcwd(), sys.stdin.read())\n" +
			"print(sorted(sys.modules))\nimport helper; print(helper.X)\n",
		"helper.py":  "X = 42\n",
		"raise.py":   "def f():\n    return {}['missing']\ntry:\n    f()\nexcept KeyError as e:\n    raise ValueError('from f') from e\n",
		"syntax.py":  "def (:\n",
		"exit3.py":   "import sys\nprint('before', flush=True)\nsys.exit(3)\n",
		"exitmsg.py": "import sys\nsys.exit('goodbye')\n",
		"atexit.py":  "import atexit, threading\natexit.register(print, 'atexit ran')\nthreading.Thread(target=print, args=('thread ran',)).start()\nprint('main done')\n",
		"latin1.py":  "# -*- coding: latin-1 -*-\nprint('caf\xe9')\n",
		"hook.py":    "import sys\nsys.excepthook = lambda t, v, tb: print('hooked', t.__name__, tb.tb_frame.f_code.co_filename)\n1/0\n",
		"sigint.py":  "import atexit, threading\natexit.register(print, 'atexit ran')\nthreading.Thread(target=print, args=('thread ran',)).start()\nprint('before')\nraise KeyboardInterrupt\n",
	}
	for name, src := range scripts {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	base := []string{"HOME=" + dir, "LANG=C.UTF-8", "PATH=/usr/local/bin:/usr/bin:/bin"}
	runEnv := append([]string{"RUN=yes"}, base...)
	cases := []struct {
		name  string
		argv  []string
		stdin []byte
	}{
		{"globals argv env stdin", []string{"python3", "main.py", "a", "b c"}, []byte("input\n")},
		{"no stdin", []string{"python3", "main.py"}, nil},
		{"chained traceback", []string{"python3", "raise.py"}, nil},
		{"syntax error", []string{"python3", "syntax.py"}, nil},
		{"sys.exit(3)", []string{"python3", "exit3.py"}, nil},
		{"sys.exit(message)", []string{"python3", "exitmsg.py"}, nil},
		{"atexit and threads", []string{"python3", "atexit.py"}, nil},
		{"coding cookie", []string{"python3", "latin1.py"}, nil},
		{"excepthook", []string{"python3", "hook.py"}, nil},
		{"KeyboardInterrupt", []string{"python3", "sigint.py"}, nil},
		{"missing script", []string{"python3", "missing.py"}, nil},
		{"-c", []string{"python3", "-c", "import sys; print(sys.argv, sys.path[0], sorted(globals()), __loader__, __spec__, sys.stdin.read())", "x"}, []byte("in")},
		{"-c traceback", []string{"python3", "-c", "def f():\n    1/0\nf()"}, nil},
		{"-c syntax error", []string{"python3", "-c", "def (:"}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			want := coldRun(t, python, dir, c.argv, runEnv, c.stdin)
			got := zygoteRun(t, python, dir, append([]string{"ZYGOTE=1"}, base...), c.argv, runEnv, c.stdin)
			if got != want {
				t.Errorf("zygote run differs from a cold run\nzygote: %+v\ncold:   %+v", got, want)
			}
		})
	}
}

func TestZygoteFits(t *testing.T) {
	z := &zygote{prog: "/usr/bin/python3", env: []string{"HOME=/workspace", "LANG=C.UTF-8", "PATH=/usr/bin"}}
	same := []string{"PATH=/opt/bin", "LANG=C.UTF-8", "HOME=/workspace", "API=1"}
	cases := []struct {
		name string
		prog string
		argv []string
		env  []string
		want bool
	}{
		{"script", "/usr/bin/python3", []string{"python3", "main.py"}, same, true},
		{"script with arguments", "/usr/bin/python3", []string{"python3", "main.py", "-v"}, same, true},
		{"other interpreter", "/usr/local/bin/python3", []string{"python3", "main.py"}, same, false},
		{"-c", "/usr/bin/python3", []string{"python3", "-c", "pass", "x"}, same, true},
		{"-c without code", "/usr/bin/python3", []string{"python3", "-c"}, same, false},
		{"interpreter option", "/usr/bin/python3", []string{"python3", "-I", "main.py"}, same, false},
		{"module", "/usr/bin/python3", []string{"python3", "-m", "json.tool"}, same, false},
		{"stdin script", "/usr/bin/python3", []string{"python3", "-"}, same, false},
		{"no script", "/usr/bin/python3", []string{"python3"}, same, false},
		{"PYTHON variable", "/usr/bin/python3", []string{"python3", "main.py"}, append(same, "PYTHONHASHSEED=0"), false},
		{"other locale", "/usr/bin/python3", []string{"python3", "main.py"}, []string{"LANG=de_DE.UTF-8", "HOME=/workspace"}, false},
		{"extra LC_ variable", "/usr/bin/python3", []string{"python3", "main.py"}, append(same, "LC_ALL=C"), false},
		{"no HOME", "/usr/bin/python3", []string{"python3", "main.py"}, []string{"LANG=C.UTF-8"}, false},
		{"LD_PRELOAD", "/usr/bin/python3", []string{"python3", "main.py"}, append(same, "LD_PRELOAD=/x.so"), false},
	}
	for _, c := range cases {
		if got := z.fits(c.prog, c.argv, c.env); got != c.want {
			t.Errorf("%s: fits = %v, want %v", c.name, got, c.want)
		}
	}
}
