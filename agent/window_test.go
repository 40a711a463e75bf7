package agent

import (
	"testing"

	"glasshouse.dev/glasshouse/core/receipt"
)

func TestRootProcess(t *testing.T) {
	procs := []receipt.Process{
		{PID: 5, PPID: 1, Exe: "/bin/sh", Argv: []string{"sh", "-c", "exec python3 x.py"}, EndOffsetMS: 3},
		{PID: 6, PPID: 5, Exe: "/bin/true", EndOffsetMS: 2},
		{PID: 5, PPID: 1, Exe: "/usr/bin/python3", StartOffsetMS: 3, EndOffsetMS: 90, ExitCode: 4},
	}
	first, last := rootProcess(procs)
	if first != &procs[0] || last != &procs[2] {
		t.Fatalf("rootProcess = %+v, %+v; want the first and last image of pid 5", first, last)
	}
	if first, last := rootProcess(nil); first != nil || last != nil {
		t.Fatalf("rootProcess(nil) = %v, %v", first, last)
	}
}
