package transport

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
)

// DialHybridVsock connects to a guest's vsock port through Firecracker's
// hybrid vsock: a unix socket on the host (the VM's vsock uds_path) on
// which "CONNECT <port>\n" is answered "OK <host port>\n" once the guest
// accepts. Until the guest listens, Firecracker closes the connection; the
// dial is retried every retry interval until ctx is done.
func DialHybridVsock(ctx context.Context, udsPath string, port uint32, retry time.Duration) (net.Conn, error) {
	if retry <= 0 {
		retry = 10 * time.Millisecond
	}
	var lastErr error
	for {
		c, err := hybridConnect(ctx, udsPath, port)
		if err == nil {
			return c, nil
		}
		lastErr = err
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("dial hybrid vsock %s port %d: %w (last: %v)", udsPath, port, ctx.Err(), lastErr)
		case <-time.After(retry):
		}
	}
}

// maxHybridReply bounds the reply line; "OK 4294967295\n" is 14 bytes.
const maxHybridReply = 32

// hybridConn is a connected hybrid vsock stream; reads go through the
// buffered reader that consumed the reply line.
type hybridConn struct {
	net.Conn
	r *bufio.Reader
}

func (h *hybridConn) Read(p []byte) (int, error) { return h.r.Read(p) }

func hybridConnect(ctx context.Context, udsPath string, port uint32) (net.Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", udsPath)
	if err != nil {
		return nil, err
	}
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	if _, err := fmt.Fprintf(c, "CONNECT %d\n", port); err != nil {
		c.Close()
		return nil, err
	}
	r := bufio.NewReaderSize(c, 4096)
	line, err := readLine(r, maxHybridReply)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("read CONNECT reply: %w", err)
	}
	if err := ParseHybridReply(line); err != nil {
		c.Close()
		return nil, err
	}
	return &hybridConn{Conn: c, r: r}, nil
}

// ParseHybridReply checks a hybrid vsock CONNECT reply line (without its
// newline): "OK <port>".
func ParseHybridReply(line string) error {
	rest, ok := strings.CutPrefix(line, "OK ")
	if !ok {
		return fmt.Errorf("%w: CONNECT reply %q is not OK", ErrHandshake, clip(line))
	}
	if _, err := strconv.ParseUint(rest, 10, 32); err != nil {
		return fmt.Errorf("%w: CONNECT reply %q has no port", ErrHandshake, clip(line))
	}
	return nil
}

func readLine(r *bufio.Reader, max int) (string, error) {
	var b []byte
	for len(b) <= max {
		c, err := r.ReadByte()
		if err != nil {
			return "", err
		}
		if c == '\n' {
			return string(b), nil
		}
		b = append(b, c)
	}
	return "", fmt.Errorf("%w: reply longer than %d bytes", ErrHandshake, max)
}
