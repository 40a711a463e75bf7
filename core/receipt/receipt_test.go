package receipt_test

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"glasshouse.dev/glasshouse/core/receipt"
	"glasshouse.dev/glasshouse/core/receipt/schema"
)

// sample returns a sealed receipt with every section populated.
func sample(t *testing.T) *receipt.Receipt {
	t.Helper()
	start := time.Date(2026, 11, 28, 8, 0, 0, 123, time.UTC)
	r := &receipt.Receipt{
		ID:         "0190d5a8-7c1e-7b3c-9f3e-2d5c1a7b8e90",
		StartedAt:  receipt.At(start),
		FinishedAt: receipt.At(start.Add(25 * time.Millisecond)),
		Subject:    receipt.Subject{Argv: []string{"python3", "main.py"}, Language: "python", CodeSHA256: sha("print(2+2)")},
		Backend:    receipt.Backend{Name: "process", Isolation: receipt.IsolationNone, Version: "dev", Containment: "cgroup"},
		Host:       receipt.Host{Kernel: "6.1.0", Arch: "amd64", GlasshouseVersion: "dev"},
		Limits:     receipt.Limits{TimeoutMS: 10000, MemoryBytes: 256 << 20, PIDs: 64, OutputBytes: 1 << 20, Network: receipt.NetworkNone},
		Outcome:    receipt.Outcome{Failure: receipt.FailureNone, DurationMS: 25},
		Output:     receipt.Output{StdoutBytes: 2, StdoutSHA256: sha("4\n"), StderrSHA256: sha("")},
		Profiling:  receipt.Profiling{Mode: receipt.ModeBestEffort, Status: receipt.StatusComplete, Collector: receipt.CollectorEBPFHost, Events: 3},
		Processes:  []receipt.Process{{PID: 10, PPID: 1, Exe: "/usr/bin/python3.11", Argv: []string{"python3", "main.py"}, Cwd: "/ws", EndOffsetMS: 20}},
		Files: []receipt.File{
			{Path: "/ws/main.py", Op: receipt.OpRead, PID: 10, Count: 1, OK: true},
			{Path: "/etc/<passwd>&", Op: receipt.OpRead, PID: 10, Count: 2, OK: false, Errno: "EACCES"},
		},
		Network: []receipt.Net{{Op: receipt.NetConnect, Family: receipt.FamilyInet, Protocol: receipt.ProtoTCP, Address: "127.0.0.1", Port: 80, PID: 10, Count: 1, OK: false, Errno: "EPERM"}},
	}
	if err := receipt.Seal(r); err != nil {
		t.Fatal(err)
	}
	return r
}

func sha(s string) string {
	return receipt.SHA256Hex([]byte(s))
}

func TestSealedReceiptVerifiesAndMatchesSchema(t *testing.T) {
	r := sample(t)
	for name, enc := range map[string]func(*receipt.Receipt) ([]byte, error){
		"indented": receipt.Marshal, "compact": receipt.MarshalCompact,
	} {
		t.Run(name, func(t *testing.T) {
			b, err := enc(r)
			if err != nil {
				t.Fatal(err)
			}
			if err := receipt.Verify(b); err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if err := schema.Validate(b); err != nil {
				t.Fatalf("ValidateSchema: %v", err)
			}
			got, err := receipt.Decode(b)
			if err != nil {
				t.Fatal(err)
			}
			if got.Digest != r.Digest || got.Files[0].Path != "/etc/<passwd>&" {
				t.Fatalf("round trip changed the receipt: %+v", got)
			}
		})
	}
}

// TestVerifyDetectsEveryByteChange flips each byte of a stored receipt in
// turn and expects Verify to notice.
func TestVerifyDetectsEveryByteChange(t *testing.T) {
	b, err := receipt.Marshal(sample(t))
	if err != nil {
		t.Fatal(err)
	}
	for i := range b {
		for _, repl := range []byte{' ', '0', 'x', '\n'} {
			if b[i] == repl {
				continue
			}
			mod := bytes.Clone(b)
			mod[i] = repl
			if err := receipt.Verify(mod); err == nil {
				t.Fatalf("byte %d changed from %q to %q: Verify passed", i, b[i], repl)
			}
		}
	}
}

func TestVerifyErrors(t *testing.T) {
	b, err := receipt.Marshal(sample(t))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		doc  []byte
		want error
	}{
		{"not json", []byte("hello"), receipt.ErrMalformed},
		{"array", []byte("[]"), receipt.ErrMalformed},
		{"trailing data", append(bytes.Clone(b), []byte("{}")...), receipt.ErrMalformed},
		{"no digest", []byte(`{"schema":"glasshouse.dev/receipt/v1"}`), receipt.ErrNoDigest},
		{"value edited", bytes.Replace(b, []byte(`"exit_code": 0`), []byte(`"exit_code": 1`), 1), receipt.ErrDigestMismatch},
		{"whitespace edited", bytes.Replace(b, []byte(`"exit_code": 0`), []byte(`"exit_code":  0`), 1), receipt.ErrNotCanonical},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := receipt.Verify(tt.doc); !errors.Is(err, tt.want) {
				t.Fatalf("Verify = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestSealIsDeterministic(t *testing.T) {
	a, b := sample(t), sample(t)
	// Same content in another order must seal to the same bytes.
	b.Files[0], b.Files[1] = b.Files[1], b.Files[0]
	if err := receipt.Seal(b); err != nil {
		t.Fatal(err)
	}
	ea, _ := receipt.Marshal(a)
	eb, _ := receipt.Marshal(b)
	if !bytes.Equal(ea, eb) {
		t.Fatalf("same receipt sealed differently:\n%s\n%s", ea, eb)
	}
}

func TestSchemaRejects(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*receipt.Receipt)
	}{
		{"bad failure", func(r *receipt.Receipt) { r.Outcome.Failure = "crashed" }},
		{"infrastructure without error", func(r *receipt.Receipt) { r.Outcome.Failure = receipt.FailureInfrastructure }},
		{"unknown file op", func(r *receipt.Receipt) { r.Files[0].Op = "peek" }},
		{"port out of range", func(r *receipt.Receipt) { r.Network[0].Port = 70000 }},
		{"dropped but complete", func(r *receipt.Receipt) { r.Profiling.Dropped = 1; r.Profiling.Status = "complete" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := sample(t)
			tt.mutate(r)
			r.Digest = "sha256:" + sha("x")
			b, err := receipt.MarshalCompact(r)
			if err != nil {
				t.Fatal(err)
			}
			if err := schema.Validate(b); !errors.Is(err, schema.ErrSchema) {
				t.Fatalf("ValidateSchema = %v, want ErrSchema", err)
			}
		})
	}
}
