package training

import (
	"errors"
	"testing"
)

// FuzzParseReward: never panics; errors wrap ErrInvalidReward; a spec that
// parses applies to a record without NaN or infinity.
func FuzzParseReward(f *testing.F) {
	f.Add([]byte("version: 1\nweights:\n  correctness: 1\n  network_attempts: -0.5\ncaps:\n  network_attempts: 3\nclip: [-1, 1]\n"))
	f.Add([]byte("version: 1\nweights: {memory_gib: -0.1, cpu_seconds: -1e-3}\n"))
	f.Add([]byte("version: 1\nweights: {correctness: .nan}\n"))
	f.Add([]byte("version: 1\nweights: [\n"))
	f.Add([]byte("version: &a 1\nweights: *a\n"))
	f.Add([]byte(""))
	rec := Derive(run(f, "4\n", nil), Input{Expect: Expect{Stdout: ptr("4\n")}})
	f.Fuzz(func(t *testing.T, src []byte) {
		spec, err := ParseReward(src)
		if err != nil {
			if !errors.Is(err, ErrInvalidReward) {
				t.Fatalf("error does not wrap ErrInvalidReward: %v", err)
			}
			return
		}
		rw := spec.Apply(&rec)
		if rw.Total != rw.Total || rw.Total > 1e300 || rw.Total < -1e300 {
			t.Fatalf("reward %v", rw.Total)
		}
	})
}
