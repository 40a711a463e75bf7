//go:build linux

package transport

import (
	"context"
	"fmt"
	"net"

	"github.com/mdlayher/vsock"
)

// HostCID is the vsock context id of the host.
const HostCID = vsock.Host

// ListenVsock listens on AF_VSOCK port in the guest, for a host that
// connects in: Firecracker's hybrid vsock (see DialHybridVsock) or QEMU's
// vhost-vsock (see DialVsock). The caller must close the listener.
func ListenVsock(port uint32) (net.Listener, error) {
	l, err := vsock.Listen(port, nil)
	if err != nil {
		return nil, fmt.Errorf("listen vsock port %d: %w", port, err)
	}
	return l, nil
}

// AcceptOne accepts one connection from l, giving up when ctx is done.
func AcceptOne(ctx context.Context, l net.Listener) (net.Conn, error) {
	stop := context.AfterFunc(ctx, func() { l.Close() })
	defer stop()
	c, err := l.Accept()
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("accept: %w", ctx.Err())
		}
		return nil, fmt.Errorf("accept: %w", err)
	}
	return c, nil
}

// DialVsock connects from the host to a guest's AF_VSOCK port through the
// host kernel (QEMU's vhost-vsock-device; needs /dev/vhost-vsock).
func DialVsock(ctx context.Context, cid, port uint32) (net.Conn, error) {
	type result struct {
		c   net.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		c, err := vsock.Dial(cid, port, nil)
		ch <- result{c, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			return nil, fmt.Errorf("dial vsock %d:%d: %w", cid, port, r.err)
		}
		return r.c, nil
	case <-ctx.Done():
		go func() {
			if r := <-ch; r.c != nil {
				r.c.Close()
			}
		}()
		return nil, fmt.Errorf("dial vsock %d:%d: %w", cid, port, ctx.Err())
	}
}
