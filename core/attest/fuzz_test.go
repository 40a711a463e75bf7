package attest

import (
	"bytes"
	"errors"
	"testing"

	"glasshouse.dev/glasshouse/core/receipt"
)

// FuzzVerify feeds arbitrary envelopes to Verify: it must never panic, and
// every failure must name its reason.
func FuzzVerify(f *testing.F) {
	pub, priv := keys(f)
	env, err := Sign(testReceipt(f), priv)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(env)
	f.Add([]byte(`{"payload":"","payloadType":"application/vnd.in-toto+json","signatures":[]}`))
	f.Add([]byte(`{"payload":"e30=","payloadType":"application/vnd.in-toto+json","signatures":[{"keyid":"","sig":"AA=="}]}` + "\n"))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := Verify(b, pub)
		if err == nil {
			// Only bytes signed by priv verify; a receipt came out.
			if r == nil || !bytes.Equal(b, env) {
				t.Fatalf("verified something Sign did not write: %q", b)
			}
			return
		}
		if !isSentinel(err) {
			t.Fatalf("error without a reason: %v", err)
		}
	})
}

// FuzzDecodeReceipt feeds arbitrary bytes to receipt.Decode and Verify:
// they must never panic, must agree, and what Decode accepts must seal back
// to the digest it carried.
func FuzzDecodeReceipt(f *testing.F) {
	r := testReceipt(f)
	stored, _ := receipt.Marshal(r)
	compact, _ := receipt.MarshalCompact(r)
	f.Add(stored)
	f.Add(compact)
	f.Add([]byte(`{"digest":""}`))
	f.Add([]byte(`{"a":1}`))
	f.Add([]byte(`not json`))
	f.Add(bytes.Replace(stored, []byte(`"exit_code": 0`), []byte(`"exit_code": 1`), 1))
	sentinels := []error{receipt.ErrMalformed, receipt.ErrNoDigest, receipt.ErrDigestMismatch, receipt.ErrNotCanonical}
	f.Fuzz(func(t *testing.T, b []byte) {
		verr := receipt.Verify(b)
		got, err := receipt.Decode(b)
		if verr != nil {
			if err == nil {
				t.Fatal("Decode accepted what Verify rejected")
			}
			named := false
			for _, s := range sentinels {
				named = named || errors.Is(verr, s)
			}
			if !named {
				t.Fatalf("Verify error without a sentinel: %v", verr)
			}
			return
		}
		if err != nil {
			// Verified JSON that does not fit the receipt types (a string
			// where a number belongs) is a parse error, not a panic.
			return
		}
		if got.Digest == "" {
			t.Fatal("decoded receipt has no digest")
		}
	})
}
