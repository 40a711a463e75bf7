//go:build linux

package transport

import (
	"context"
	"errors"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"glasshouse.dev/glasshouse/internal/testenv"
)

// TestListenVsock checks the guest side's listener and that AcceptOne gives
// up with its context. A host without AF_VSOCK skips (fails under CI):
// vsock is a feature of the kernel, not of this package. (No host here can connect to itself over
// vsock without vsock_loopback, so the data path is covered by the hybrid
// vsock test and by guests.)
func TestListenVsock(t *testing.T) {
	l, err := ListenVsock(52000 + uint32(time.Now().UnixNano()%1000))
	if errors.Is(err, unix.EAFNOSUPPORT) || errors.Is(err, unix.ENODEV) {
		testenv.Skip(t, "no AF_VSOCK on this kernel: "+err.Error())
	}
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := AcceptOne(ctx, l); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("AcceptOne = %v, want DeadlineExceeded", err)
	}
}
