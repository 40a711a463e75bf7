package testenv

import (
	"net"
	"sync/atomic"
	"testing"
	"time"
)

// Listener accepts connections on a host address and counts them, for
// tests that check whether a sandbox could reach the host's network.
type Listener struct {
	net.Listener
	accepted atomic.Int64
}

// Listen listens on network and addr (port 0 picks one) until t ends,
// accepting and closing every connection. A host that cannot listen there
// (no IPv6, say) skips t, or fails it under CI.
func Listen(t testing.TB, network, addr string) *Listener {
	t.Helper()
	ln, err := net.Listen(network, addr)
	if err != nil {
		Skip(t, "listen "+network+" "+addr+": "+err.Error())
	}
	l := &Listener{Listener: ln}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			l.accepted.Add(1)
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return l
}

// Port is the port the listener was given.
func (l *Listener) Port() int { return l.Addr().(*net.TCPAddr).Port }

// Accepted returns how many connections were accepted so far, waiting up
// to within for the count to reach want: accepting runs behind the
// client's connect, so a test expecting none waits the whole time for a
// connection that should not come, and one expecting some does not count
// too early.
func (l *Listener) Accepted(want int64, within time.Duration) int64 {
	deadline := time.Now().Add(within)
	for l.accepted.Load() < want && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	return l.accepted.Load()
}
