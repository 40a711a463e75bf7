package store

import (
	"errors"
	"testing"
	"time"
)

func TestCursorRoundTrip(t *testing.T) {
	at := time.Unix(0, 1_700_000_000_123_456_789)
	c := EncodeCursor(at, "0190-abc")
	got, id, err := DecodeCursor(c)
	if err != nil || !got.Equal(at) || id != "0190-abc" {
		t.Fatalf("DecodeCursor(EncodeCursor) = %v, %q, %v", got, id, err)
	}
	for _, bad := range []string{"", "!!", "MTIz", "LTEvYQ", "MDEvYQ", "MS8"} {
		if _, _, err := DecodeCursor(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("DecodeCursor(%q) = %v, want ErrInvalid", bad, err)
		}
	}
}

func FuzzDecodeCursor(f *testing.F) {
	f.Add(EncodeCursor(time.Unix(0, 42), "id"))
	f.Add("MTIzL2E")
	f.Add("LTEvYQ")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		at, id, err := DecodeCursor(s)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v does not wrap ErrInvalid", err)
			}
			return
		}
		// A cursor that decodes re-encodes to the same bytes.
		if again := EncodeCursor(at, id); again != s {
			t.Fatalf("EncodeCursor(DecodeCursor(%q)) = %q", s, again)
		}
	})
}
