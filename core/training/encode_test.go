package training

import (
	"bytes"
	"encoding/json"
	"math"
	"math/rand/v2"
	"testing"
)

func jsonOf(t testing.TB, r *Record) []byte {
	t.Helper()
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(r); err != nil {
		t.Fatal(err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}

// TestAppendJSONMatchesEncodingJSON checks the hand-written encoder against
// encoding/json on random records, so the two can never drift.
func TestAppendJSONMatchesEncodingJSON(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	strs := []string{"", "plain", "quote\"back\\slash", "ctl\x01\n\t", "<html>&", "ünï", "\u2028", "bad\xffutf8", "sha256:abc"}
	floats := []float64{0, 1, -1, 0.5, -0.7, 1e-7, -3e-9, 1e21, 123456789, 0.1 + 0.2, math.SmallestNonzeroFloat64, 1e300}
	s := func() string { return strs[rng.IntN(len(strs))] }
	f := func() float64 { return floats[rng.IntN(len(floats))] }
	i := func() int64 { return rng.Int64N(1<<40) - 1<<39 }
	for n := 0; n < 2000; n++ {
		r := Record{
			Schema: s(), ReceiptID: s(), ReceiptDigest: s(), Backend: s(), Mask: rng.IntN(2) == 0, MaskReason: s(),
			Failure: s(), ExitCode: int(i()),
			Correctness: Correctness{Checked: rng.IntN(2) == 0, Source: s(), Passed: rng.IntN(2) == 0, Score: f(), Reason: s()},
			Behaviour: Behaviour{Observed: s(), Workspace: s(), NetworkAttempts: i(), NetworkDenied: i(), WritesOutsideWorkspace: i(),
				ProcessSpawns: i(), GraderReads: i(), GraderWrites: i(), SleptToTimeout: rng.IntN(2) == 0},
			Resources: Resources{DurationMS: i(), CPUMS: i(), MemoryPeakBytes: i(), PIDsPeak: i(), ReadBytes: i(), WriteBytes: i(), StdoutBytes: i(), StderrBytes: i()},
			Reward:    Reward{Total: f()},
		}
		if rng.IntN(5) > 0 {
			r.Reward.Terms = map[string]float64{}
			for k := 0; k < rng.IntN(6); k++ {
				r.Reward.Terms[Terms[rng.IntN(len(Terms))]] = f()
			}
		}
		got, want := r.AppendJSON(nil), jsonOf(t, &r)
		if !bytes.Equal(got, want) {
			t.Fatalf("AppendJSON:\n%s\nencoding/json:\n%s", got, want)
		}
	}
}
