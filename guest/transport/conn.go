package transport

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
)

// Conn exchanges frames over a byte stream. It is safe for one reader and
// many concurrent writers; each frame is written with one Write call.
type Conn struct {
	rw  io.ReadWriteCloser
	r   *bufio.Reader
	max int

	wmu  sync.Mutex
	wbuf []byte

	closeOnce sync.Once
	closeErr  error
}

// NewConn wraps rw. maxFrame bounds the payload of frames read and written;
// 0 means DefaultMaxFrame, and it is clamped to MaxFrameLimit. The Conn owns
// rw: Close closes it.
func NewConn(rw io.ReadWriteCloser, maxFrame int) *Conn {
	if maxFrame <= 0 {
		maxFrame = DefaultMaxFrame
	}
	maxFrame = min(maxFrame, MaxFrameLimit)
	return &Conn{rw: rw, r: bufio.NewReaderSize(rw, 64<<10), max: maxFrame}
}

// MaxFrame is the largest payload this Conn reads or writes.
func (c *Conn) MaxFrame() int { return c.max }

// ReadFrame reads the next frame; see ReadFrame for its errors. Only one
// goroutine may read at a time.
func (c *Conn) ReadFrame() (Frame, error) { return ReadFrame(c.r, c.max) }

// WriteFrame writes one frame. Payloads larger than MaxFrame are refused
// with ErrFrameTooLarge.
func (c *Conn) WriteFrame(t Type, payload []byte) error {
	if !t.Valid() {
		return fmt.Errorf("%w: write of unknown type %d", ErrBadFrame, uint8(t))
	}
	if len(payload) > c.max {
		return fmt.Errorf("%w: %s frame of %d bytes exceeds the limit of %d", ErrFrameTooLarge, t, len(payload), c.max)
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.wbuf = AppendFrame(c.wbuf[:0], t, payload)
	_, err := c.rw.Write(c.wbuf)
	if cap(c.wbuf) > 256<<10 {
		c.wbuf = nil
	}
	return err
}

// Send encodes message v (see Encode) and writes it.
func (c *Conn) Send(v any) error {
	f, err := Encode(v)
	if err != nil {
		return err
	}
	return c.WriteFrame(f.Type, f.Payload)
}

// SendFile writes data as file chunks of at most MaxFrame bytes.
func (c *Conn) SendFile(path string, data []byte, executable, truncated bool) error {
	room := c.max - 2 - len(path) - 1
	if room < 1 {
		return fmt.Errorf("%w: path %q leaves no room for data", ErrFrameTooLarge, clip(path))
	}
	var buf []byte
	for first := true; first || len(data) > 0; first = false {
		n := min(len(data), room)
		ch := FileChunk{Path: path, Data: data[:n], Last: n == len(data), Executable: executable, Truncated: truncated}
		buf = AppendFileChunk(buf[:0], &ch)
		if err := c.WriteFrame(TypeFile, buf); err != nil {
			return err
		}
		data = data[n:]
	}
	return nil
}

// Close closes the stream, unblocking readers and writers. It is safe to
// call more than once.
func (c *Conn) Close() error {
	c.closeOnce.Do(func() { c.closeErr = c.rw.Close() })
	return c.closeErr
}

// GuestHandshake sends hello and waits for the host's Welcome. Cancelling
// ctx closes the Conn. Errors wrap ErrHandshake or ErrVersion when the host
// answered wrongly.
func GuestHandshake(ctx context.Context, c *Conn, hello Hello) (Welcome, error) {
	var w Welcome
	hello.Magic, hello.MinVersion, hello.MaxVersion = Magic, MinVersion, MaxVersion
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	err := c.Send(&hello)
	var f Frame
	if err == nil {
		f, err = c.ReadFrame()
	}
	if err != nil {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return w, fmt.Errorf("guest handshake: %w", err)
	}
	if f.Type == TypeError {
		var e Error
		if derr := Decode(f, &e); derr != nil {
			return w, fmt.Errorf("guest handshake: %w", derr)
		}
		return w, fmt.Errorf("guest handshake: %w: host refused: %s", ErrVersion, clip(e.Message))
	}
	if err := Decode(f, &w); err != nil {
		return w, fmt.Errorf("guest handshake: %w: %w", ErrHandshake, err)
	}
	return w, nil
}

// HostHandshake waits for the guest's Hello, picks the highest common
// version and answers Welcome (or an Error frame, then ErrVersion).
// Cancelling ctx closes the Conn.
func HostHandshake(ctx context.Context, c *Conn) (Hello, int, error) {
	var h Hello
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	f, err := c.ReadFrame()
	if err != nil {
		if ctx.Err() != nil {
			err = ctx.Err()
		} else if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
			err = fmt.Errorf("%w: stream closed before hello: %w", ErrHandshake, err)
		}
		return h, 0, fmt.Errorf("host handshake: %w", err)
	}
	if err := Decode(f, &h); err != nil {
		return h, 0, fmt.Errorf("host handshake: %w: %w", ErrHandshake, err)
	}
	v := min(h.MaxVersion, MaxVersion)
	if v < h.MinVersion || v < MinVersion {
		msg := fmt.Sprintf("guest speaks versions [%d, %d], host [%d, %d]", h.MinVersion, h.MaxVersion, MinVersion, MaxVersion)
		_ = c.Send(&Error{Code: CodeInvalid, Message: msg})
		return h, 0, fmt.Errorf("host handshake: %w: %s", ErrVersion, msg)
	}
	if err := c.Send(&Welcome{Magic: Magic, Version: v}); err != nil {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return h, 0, fmt.Errorf("host handshake: %w", err)
	}
	return h, v, nil
}

// Pipe returns two connected in-memory Conns, for tests: what one writes
// the other reads.
func Pipe(maxFrame int) (guest, host *Conn) {
	a, b := net.Pipe()
	return NewConn(a, maxFrame), NewConn(b, maxFrame)
}
