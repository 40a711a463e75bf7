//go:build linux

package qemu

import (
	"slices"
	"strings"
	"testing"

	"glasshouse.dev/glasshouse/core/execution"
	"glasshouse.dev/glasshouse/core/profiling"
	"glasshouse.dev/glasshouse/core/receipt"
)

func zygoteNoted(run *execution.Run) bool {
	return slices.ContainsFunc(run.Receipt.Backend.Notes, func(n string) bool {
		return strings.Contains(n, "resumed an interpreter started in the snapshot template")
	})
}

// TestPythonZygote checks the template's Python zygote end to end: a
// Python run resumes it, with a receipt that shows the interpreter as
// already running and leaves its startup out of the run's CPU time; a run
// whose environment the interpreter's startup reads differently, and a run
// of another program, start their own processes with the zygote gone; a
// -c run resumes it too.
func TestPythonZygote(t *testing.T) {
	b, _ := newTestBackend(t, nil)
	var resumedPeak int64

	t.Run("resumed", func(t *testing.T) {
		spec := python("import sys\nprint(sys.argv, __name__, open(__file__).read().count('sys'))")
		spec.Profile = profiling.Required
		run := runSpec(t, b, spec)
		wantFailure(t, run, receipt.FailureNone)
		if got, want := string(run.Result.Stdout), "['main.py'] __main__ 3\n"; got != want {
			t.Fatalf("stdout %q, want %q", got, want)
		}
		r := run.Receipt
		if !zygoteNoted(run) {
			t.Fatalf("no zygote note: %q", r.Backend.Notes)
		}
		if r.Profiling.Status != receipt.StatusComplete {
			t.Fatalf("profiling %+v", r.Profiling)
		}
		root := r.Processes[0]
		if root.Exe != "/usr/bin/python3" || !slices.Equal(root.Argv, []string{"python3", "main.py"}) || root.Cwd != "/workspace" || root.ExitCode != 0 || root.EndOffsetMS < 0 {
			t.Fatalf("root process %+v", root)
		}
		if !slices.ContainsFunc(r.Files, func(f receipt.File) bool { return f.Path == "/workspace/main.py" && f.Op == receipt.OpRead }) {
			t.Fatalf("the script's read is not in the receipt: %+v", r.Files)
		}
		// The template's interpreter startup took seconds of emulated CPU;
		// the run's own use must not include it.
		if cpu := r.Resources.CPUUserMS + r.Resources.CPUSystemMS; cpu > r.Outcome.DurationMS {
			t.Fatalf("CPU %d ms in a run of %d ms: the zygote's startup was counted", cpu, r.Outcome.DurationMS)
		}
		resumedPeak = r.Resources.MemoryPeakBytes
	})

	t.Run("fresh randomness", func(t *testing.T) {
		// Every guest resumes a copy of one interpreter: its random state
		// must not be one too.
		seen := map[string]bool{}
		for range 2 {
			run := runSpec(t, b, python("import os, random\nprint(random.random(), os.urandom(8).hex())"))
			wantFailure(t, run, receipt.FailureNone)
			if out := string(run.Result.Stdout); seen[out] || !zygoteNoted(run) {
				t.Fatalf("stdout %q repeats or the zygote was not used (notes %q)", out, run.Receipt.Backend.Notes)
			} else {
				seen[out] = true
			}
		}
	})

	t.Run("-c", func(t *testing.T) {
		run := runSpec(t, b, execution.Spec{Command: []string{"python3", "-c", "import sys; print(sys.argv)", "x"}, Timeout: python("").Timeout})
		wantFailure(t, run, receipt.FailureNone)
		if string(run.Result.Stdout) != "['-c', 'x']\n" || !zygoteNoted(run) {
			t.Fatalf("stdout %q notes %q", run.Result.Stdout, run.Receipt.Backend.Notes)
		}
	})

	t.Run("tight memory limit", func(t *testing.T) {
		// Applying a limit below what the zygote holds would kill it
		// before the run; the run must be judged on its own interpreter.
		spec := python("print(2+2)")
		spec.Limits.MemoryBytes = execution.Bounds.MinMemoryBytes
		run := runSpec(t, b, spec)
		wantFailure(t, run, receipt.FailureNone, receipt.FailureOOM, receipt.FailureCode)
		if zygoteNoted(run) {
			t.Fatalf("a run limited to %d bytes resumed the zygote", spec.Limits.MemoryBytes)
		}
	})

	t.Run("startup variable", func(t *testing.T) {
		spec := python("import sys\nprint(sys.flags.hash_randomization)")
		spec.Env = map[string]string{"PYTHONHASHSEED": "0"}
		run := runSpec(t, b, spec)
		wantFailure(t, run, receipt.FailureNone)
		if string(run.Result.Stdout) != "0\n" || zygoteNoted(run) {
			t.Fatalf("stdout %q notes %q: want a fresh interpreter that read PYTHONHASHSEED", run.Result.Stdout, run.Receipt.Backend.Notes)
		}
		// The interpreter's own pages were charged to the zygote's cgroup
		// before the run; they count as the run's, as a fresh one's do.
		if peak := run.Receipt.Resources.MemoryPeakBytes; resumedPeak < peak/2 {
			t.Fatalf("memory peak of the resumed interpreter %d, of a fresh one %d", resumedPeak, peak)
		}
	})

	t.Run("other program", func(t *testing.T) {
		run := runSpec(t, b, execution.Spec{Command: []string{"sh", "-c", "cat /proc/[0-9]*/cmdline"}, Timeout: python("").Timeout})
		wantFailure(t, run, receipt.FailureNone)
		if zygoteNoted(run) || strings.Contains(string(run.Result.Stdout), "_glasshouse_zygote") {
			t.Fatalf("the zygote outlived a run it did not serve: notes %q, processes:\n%s", run.Receipt.Backend.Notes, run.Result.Stdout)
		}
	})
}
