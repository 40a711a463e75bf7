//go:build linux

package qemu

import (
	"context"
	"testing"
	"time"

	"glasshouse.dev/glasshouse/core/execution"
	"glasshouse.dev/glasshouse/core/receipt"
)

func runSpec(t *testing.T, b *Backend, spec execution.Spec) *execution.Run {
	t.Helper()
	e, err := execution.New(execution.Config{Backend: b})
	if err != nil {
		t.Fatal(err)
	}
	run, err := e.Run(context.Background(), spec)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	return run
}

func TestPrintTwoPlusTwo(t *testing.T) {
	b, _ := newTestBackend(t, nil)
	start := time.Now()
	run := runSpec(t, b, execution.Spec{Code: "print(2+2)", Language: execution.LanguagePython})
	t.Logf("run took %s", time.Since(start))
	if run.Receipt.Outcome.Failure != receipt.FailureNone || string(run.Result.Stdout) != "4\n" {
		t.Fatalf("outcome %+v stdout %q stderr %q", run.Receipt.Outcome, run.Result.Stdout, run.Result.Stderr)
	}
	if run.Receipt.Backend.Accel != "tcg" || run.Receipt.Backend.Isolation != "microvm" {
		t.Fatalf("backend %+v", run.Receipt.Backend)
	}
}
