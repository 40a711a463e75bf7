package schema_test

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"glasshouse.dev/glasshouse/core/receipt"
	"glasshouse.dev/glasshouse/core/receipt/schema"
)

// The schema's rules are tested against real receipts in package receipt's
// tests; these check what Validate does with input that is not a receipt.

func sealed(t testing.TB) []byte {
	t.Helper()
	start := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	r := &receipt.Receipt{
		ID:         "0194f3a0-0000-7000-8000-000000000001",
		StartedAt:  receipt.At(start),
		FinishedAt: receipt.At(start.Add(time.Millisecond)),
		Subject:    receipt.Subject{Argv: []string{"true"}},
		Backend:    receipt.Backend{Name: "process", Isolation: receipt.IsolationNone, Version: "dev", Containment: "cgroup"},
		Host:       receipt.Host{Kernel: "6.1.0", Arch: "amd64", GlasshouseVersion: "dev"},
		Limits:     receipt.Limits{TimeoutMS: 1000, MemoryBytes: 1 << 20, PIDs: 8, OutputBytes: 1 << 10, Network: receipt.NetworkNone},
		Outcome:    receipt.Outcome{Failure: receipt.FailureNone, DurationMS: 1},
		Output:     receipt.Output{StdoutSHA256: receipt.SHA256Hex(nil), StderrSHA256: receipt.SHA256Hex(nil)},
		Profiling:  receipt.Profiling{Mode: receipt.ModeOff, Status: receipt.StatusOff, Collector: receipt.CollectorNone},
	}
	if err := receipt.Seal(r); err != nil {
		t.Fatal(err)
	}
	doc, err := receipt.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	return doc
}

func TestValidate(t *testing.T) {
	doc := sealed(t)
	if err := schema.Validate(doc); err != nil {
		t.Fatalf("a sealed receipt: %v", err)
	}
	for name, tt := range map[string]struct {
		doc  []byte
		want error
	}{
		"empty":            {nil, receipt.ErrMalformed},
		"not JSON":         {[]byte("receipt"), receipt.ErrMalformed},
		"trailing data":    {append(bytes.Clone(doc), []byte(" {}")...), receipt.ErrMalformed},
		"too large":        {bytes.Repeat([]byte(" "), receipt.MaxSize+1), receipt.ErrMalformed},
		"an array":         {[]byte("[]"), schema.ErrSchema},
		"a missing field":  {bytes.Replace(doc, []byte(`"outcome"`), []byte(`"outcomes"`), 1), schema.ErrSchema},
		"a wrong type":     {bytes.Replace(doc, []byte(`"duration_ms": 1`), []byte(`"duration_ms": "1"`), 1), schema.ErrSchema},
		"an unknown value": {bytes.Replace(doc, []byte(`"failure": "none"`), []byte(`"failure": "bad luck"`), 1), schema.ErrSchema},
	} {
		if err := schema.Validate(tt.doc); !errors.Is(err, tt.want) {
			t.Errorf("%s: Validate = %v, want %v", name, err, tt.want)
		}
	}
}

// FuzzValidate: any input is accepted, or refused as malformed or as not
// matching the schema, without a panic.
func FuzzValidate(f *testing.F) {
	doc := sealed(f)
	f.Add(doc)
	f.Add([]byte(`{"schema":"glasshouse.dev/receipt/v1"}`))
	f.Add([]byte(`{"outcome":{"duration_ms":1e999}}`))
	f.Add([]byte(`[1,"a",null,{}]`))
	f.Fuzz(func(t *testing.T, in []byte) {
		err := schema.Validate(in)
		if err != nil && !errors.Is(err, schema.ErrSchema) && !errors.Is(err, receipt.ErrMalformed) {
			t.Fatalf("Validate(%q) = %v: neither ErrSchema nor ErrMalformed", in, err)
		}
	})
}
