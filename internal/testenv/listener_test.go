package testenv

import (
	"net"
	"testing"
	"time"
)

func TestListener(t *testing.T) {
	l := Listen(t, "tcp4", "127.0.0.1:0")
	if n := l.Accepted(1, 50*time.Millisecond); n != 0 {
		t.Fatalf("accepted %d before any connect", n)
	}
	for i := 0; i < 2; i++ {
		c, err := net.Dial("tcp4", l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
	if n := l.Accepted(2, 5*time.Second); n != 2 {
		t.Fatalf("accepted %d, want 2", n)
	}
	if l.Port() == 0 {
		t.Fatal("no port")
	}
}
