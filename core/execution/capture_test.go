package execution

import (
	"bytes"
	"testing"
)

func TestCapture(t *testing.T) {
	var live bytes.Buffer
	c := &Capture{Limit: 5, Live: &live}
	if !c.Add([]byte("abc")) {
		t.Fatal("under the limit reported as over it")
	}
	if c.Add([]byte("defg")) {
		t.Fatal("past the limit not reported")
	}
	if c.Add([]byte("h")) {
		t.Fatal("a write after truncation reported as kept")
	}
	got, truncated := c.Bytes()
	if string(got) != "abcde" || !truncated || live.String() != "abcde" {
		t.Fatalf("kept %q truncated %v live %q", got, truncated, live.String())
	}

	exact := &Capture{Limit: 3}
	if !exact.Add([]byte("abc")) {
		t.Fatal("exactly the limit reported as over it")
	}
	if got, truncated := exact.Bytes(); string(got) != "abc" || truncated {
		t.Fatalf("kept %q truncated %v", got, truncated)
	}
}
